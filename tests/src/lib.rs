//! Helpers for end-to-end tests: start `verigate` and `verigate-sim` as
//! processes on port 0, talk to their HTTP APIs, find third-party peers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Path of a binary built in the same target directory as this test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built; run `cargo build --workspace --bins` first (the test script does)",
        p.display()
    );
    p
}

/// True when running in CI, where a missing peer is a failure.
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI").as_deref(),
        Ok("true" | "TRUE" | "True" | "1" | "yes")
    )
}

/// Checks a third-party peer is present; in CI its absence fails the test,
/// elsewhere the test is skipped with a message (returns false).
pub fn require_peer(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    let msg = format!("{what} is not installed: run tests/interop/setup.sh");
    if in_ci() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// A running `verigate-sim smsc`, killed on drop.
#[derive(Debug)]
pub struct Sim {
    child: Child,
    /// SMPP port.
    pub port: u16,
    /// Control API `host:port`.
    pub control: String,
}

impl Sim {
    /// Starts the simulator with system_id `verigate`, password `secret`
    /// and extra arguments.
    pub fn start(extra: &[&str]) -> Sim {
        Sim::start_on("127.0.0.1:0", extra)
    }

    /// Like [`Sim::start`] on a given SMPP listen address.
    pub fn start_on(listen: &str, extra: &[&str]) -> Sim {
        let mut child = Command::new(bin("verigate-sim"))
            .args([
                "smsc",
                "--listen",
                listen,
                "--control",
                "127.0.0.1:0",
                "--system-id",
                "verigate",
                "--password",
                "secret",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start verigate-sim");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read sim banner");
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("sim banner {line:?} is not JSON: {e}"));
        let smpp = v["smpp"].as_str().expect("smpp addr");
        let port = smpp.rsplit(':').next().unwrap().parse().expect("port");
        Sim {
            child,
            port,
            control: v["control"].as_str().expect("control").to_string(),
        }
    }

    /// GET a control path, parsed as JSON.
    pub fn get(&self, path: &str) -> serde_json::Value {
        let (status, body) = http(&self.control, "GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("json")
    }

    /// Sends JSON to a control path; returns (status, body).
    pub fn send(&self, method: &str, path: &str, body: &serde_json::Value) -> (u16, String) {
        http(&self.control, method, path, Some(&body.to_string()))
    }

    /// The handset inbox of `msisdn`.
    pub fn inbox(&self, msisdn: &str) -> Vec<serde_json::Value> {
        self.get(&format!("/inbox/{msisdn}"))["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response: status, header block (lower-cased names kept as sent) and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code (0 if the response was unreadable).
    pub status: u16,
    /// The header block as received.
    pub head: String,
    /// The body (chunked encoding undone).
    pub body: String,
}

impl HttpResponse {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// A minimal HTTP/1.1 client for loopback APIs, with an optional bearer token.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> HttpResponse {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let body = body.unwrap_or("");
    let auth = bearer
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read response");
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((resp.as_str(), ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    HttpResponse {
        status,
        head: head.to_string(),
        body,
    }
}

/// [`http_request`] without a token: (status, body).
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let r = http_request(addr, method, path, body, None);
    (r.status, r.body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Runs `verigate` with arguments and returns its output.
pub fn verigate(args: &[&str]) -> Output {
    Command::new(bin("verigate"))
        .args(args)
        .output()
        .expect("run verigate")
}

/// Runs `verigate smpp probe` against a port; returns (exit code, stdout JSON, stderr).
pub fn probe(port: u16, password: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let port = port.to_string();
    let mut args = vec![
        "smpp",
        "probe",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--system-id",
        "verigate",
        "--password",
        password,
        "--to",
        "+447700900123",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = verigate(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "probe printed no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// True when a command can be run.
pub fn has_command(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

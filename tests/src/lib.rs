//! Helpers for end-to-end tests: start `verigate` and `verigate-sim` as
//! processes on port 0, talk to their HTTP APIs, find third-party peers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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
    try_http_request(addr, method, path, body, bearer)
        .unwrap_or_else(|e| panic!("{method} {path} at {addr}: {e}"))
}

/// [`http_request`] that reports a refused or cut connection as an error
/// (for requests racing a shutdown).
pub fn try_http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let auth = bearer.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    try_http_with(addr, method, path, body, &headers)
}

/// An HTTP/1.1 request with extra `headers` (a JSON body's content type is
/// always sent).
pub fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> HttpResponse {
    try_http_with(addr, method, path, body, headers)
        .unwrap_or_else(|e| panic!("{method} {path} at {addr}: {e}"))
}

fn try_http_with(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
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
    Ok(HttpResponse {
        status,
        head: head.to_string(),
        body,
    })
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

/// A running daemon in a scratch directory, killed on drop.
#[derive(Debug)]
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Public API `host:port`.
    pub api: String,
    /// Admin endpoint `host:port`.
    pub admin: String,
    /// The lab SMSC's control API (or the one given to `start_in`).
    pub control: String,
    /// The lab switch's control API, if it runs.
    pub switch: String,
    /// The lab bank simulator, if it runs.
    pub bank: String,
    /// Its scratch directory (removed on drop).
    pub dir: PathBuf,
}

/// Lab mode's listeners on free ports.
pub const LAB_PORTS: &[&str] = &[
    "api.listen=127.0.0.1:0",
    "api.admin_listen=127.0.0.1:0",
    "lab.smsc.listen=127.0.0.1:0",
    "lab.smsc.control=127.0.0.1:0",
    "lab.switch.listen=127.0.0.1:0",
    "lab.switch.control=127.0.0.1:0",
    "lab.bank.listen=127.0.0.1:0",
    "sip.listen=127.0.0.1:0",
];

/// A loopback port that was free a moment ago (for two daemons that must
/// know each other's address before they start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A fresh directory under the system temp dir.
pub fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "verigate-e2e-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Daemon {
    /// Lab mode (conf/verigate.toml) on free ports.
    pub fn start(sets: &[&str]) -> Daemon {
        let mut all = LAB_PORTS.to_vec();
        all.extend_from_slice(sets);
        Daemon::start_in(
            scratch_dir(),
            &workspace().join("conf/verigate.toml"),
            &all,
            "",
        )
    }

    /// `verigate run` with a config file, in `dir`.
    pub fn start_in(
        dir: PathBuf,
        config: &std::path::Path,
        sets: &[&str],
        control: &str,
    ) -> Daemon {
        Daemon::start_in_env(dir, config, sets, control, &[])
    }

    /// [`Daemon::start_in`] with extra environment variables.
    pub fn start_in_env(
        dir: PathBuf,
        config: &std::path::Path,
        sets: &[&str],
        control: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::spawn(dir, config, sets, control, env, Stdio::inherit())
    }

    /// [`Daemon::start_in`] with its log (stderr) written to `dir/daemon.log`.
    pub fn start_logged(dir: PathBuf, config: &std::path::Path, sets: &[&str]) -> Daemon {
        let log = std::fs::File::create(dir.join("daemon.log")).expect("log file");
        Daemon::spawn(dir, config, sets, "", &[], Stdio::from(log))
    }

    fn spawn(
        dir: PathBuf,
        config: &std::path::Path,
        sets: &[&str],
        control: &str,
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Daemon {
        let mut cmd = Command::new(bin("verigate"));
        cmd.current_dir(&dir).arg("run").arg("--config").arg(config);
        cmd.envs(env.iter().copied());
        for s in sets {
            cmd.args(["--set", s]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start verigate run");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("banner {line:?}: {e}"));
        Daemon {
            api: v["api"].as_str().unwrap().to_string(),
            admin: v["admin"].as_str().unwrap().to_string(),
            control: v["lab_control"].as_str().unwrap_or(control).to_string(),
            switch: v["lab_switch_control"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            bank: v["lab_bank"].as_str().unwrap_or_default().to_string(),
            child,
            dir,
        }
    }

    /// Runs `verigate ARGS --config CONFIG` against this daemon's admin
    /// endpoint: (exit code, stdout, stderr).
    pub fn cli(&self, config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin("verigate"))
            .current_dir(&self.dir)
            .args(args)
            .arg("--config")
            .arg(config)
            .args(["--set", &format!("api.admin_listen={}", self.admin)])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// kill -9, leaving the directory (database) in place.
    pub fn kill9(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, PathBuf::new())
    }

    /// An API request with the lab's API key: (status, JSON body or null).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let body = body.map(|b| b.to_string());
        let (st, text) = http_auth(
            &self.api,
            method,
            path,
            body.as_deref(),
            "lab-key-change-me",
        );
        (
            st,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// [`http_request`] with a bearer token: (status, body).
pub fn http_auth(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    key: &str,
) -> (u16, String) {
    let r = http_request(addr, method, path, body, Some(key));
    (r.status, r.body)
}

/// `tests/interop/`: the third-party peers and capture scripts.
pub fn interop_dir() -> PathBuf {
    workspace().join("tests/interop")
}

/// A tshark capture on loopback, stopped on drop.
#[derive(Debug)]
pub struct Capture {
    /// The capture file.
    pub pcap: PathBuf,
    stopped: std::cell::Cell<bool>,
}

impl Capture {
    /// Starts capturing TCP and UDP on loopback (returns once tshark captures).
    pub fn start(name: &str) -> Capture {
        let pcap =
            std::env::temp_dir().join(format!("verigate-{name}-{}.pcapng", std::process::id()));
        let st = Command::new(interop_dir().join("capture.sh"))
            .arg("start")
            .arg(&pcap)
            .status()
            .expect("capture.sh");
        assert!(st.success(), "capture did not start");
        Capture {
            pcap,
            stopped: std::cell::Cell::new(false),
        }
    }

    /// Stops the capture and waits until the file is flushed.
    pub fn stop(&self) {
        if self.stopped.replace(true) {
            return;
        }
        let _ = Command::new(interop_dir().join("capture.sh"))
            .arg("stop")
            .arg(&self.pcap)
            .status();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `nth` SMS the simulated handset `msisdn` received (waits up to 10 s).
pub fn handset_text(control: &str, msisdn: &str, nth: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http(control, "GET", &format!("/inbox/{msisdn}"), None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if let Some(m) = v["messages"].as_array().and_then(|a| a.get(nth)) {
            return m["text"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no SMS reached {msisdn}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first run of 4+ digits in an SMS (the code).
pub fn code_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() >= 4)
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_string()
}

/// A running `verigate-sim bank`, killed on drop.
#[derive(Debug)]
pub struct BankSim {
    /// The process, when this handle started it.
    child: Option<Child>,
    /// Its HTTP address.
    pub addr: String,
}

impl BankSim {
    /// On a free port, with `accounts` (name=minor) opened.
    pub fn start(accounts: &[&str]) -> BankSim {
        let mut cmd = Command::new(bin("verigate-sim"));
        cmd.args(["bank", "--listen", "127.0.0.1:0"]);
        for a in accounts {
            cmd.args(["--account", a]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start verigate-sim bank");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read bank banner");
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("bank banner {line:?} is not JSON: {e}"));
        BankSim {
            addr: v["bank"].as_str().expect("bank addr").to_string(),
            child: Some(child),
        }
    }

    /// Its process id, when this handle started it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The bank at `addr` (a lab daemon's), not stopped by this handle.
    pub fn at(addr: &str) -> BankSim {
        BankSim {
            child: None,
            addr: addr.to_string(),
        }
    }

    /// GETs JSON: (status, JSON answer).
    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let (st, text) = http(&self.addr, "GET", path, None);
        (
            st,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// POSTs JSON: (status, JSON answer).
    pub fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let (st, text) = http(&self.addr, "POST", path, Some(&body.to_string()));
        (
            st,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }
}

impl Drop for BankSim {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

//! Interop with SMPP software we did not write: npm `smpp` 0.5.1 (SMSC and
//! ESME), PyPI `smpplib` 2.2.4 (ESME), and Wireshark's dissector via tshark.
//! Peers are installed by tests/interop/setup.sh; in CI a missing peer fails.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use verigate_e2e::{has_command, interop_dir, probe, require_peer, Capture, Sim};

fn npm_ready() -> bool {
    require_peer(
        "npm smpp 0.5.1 (tests/interop/npm/node_modules)",
        has_command("node")
            && interop_dir()
                .join("npm/node_modules/smpp/package.json")
                .exists(),
    )
}

fn python() -> PathBuf {
    interop_dir().join(".venv/bin/python")
}

/// The npm SMSC peer, killed on drop.
struct NpmSmsc {
    child: Child,
    port: u16,
}

impl NpmSmsc {
    fn start(mode: &str) -> NpmSmsc {
        let mut child = Command::new("node")
            .arg(interop_dir().join("npm/smsc.js"))
            .args([
                "--port",
                "0",
                "--system-id",
                "verigate",
                "--password",
                "secret",
                "--mode",
                mode,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start npm smsc");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("banner");
        let v: serde_json::Value = serde_json::from_str(&line).expect("banner json");
        NpmSmsc {
            port: v["port"].as_u64().expect("port") as u16,
            child,
        }
    }

    /// Has it deliver a mobile-originated SMS to the bound ESME.
    fn send_mo(&mut self, from: &str, to: &str, text: &str) {
        use std::io::Write;
        let line = serde_json::json!({"mo": {"from": from, "to": to, "text": text}});
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to npm smsc");
        stdin.flush().expect("flush");
    }

    /// Stops it and returns its last summary line.
    fn stop(mut self) -> serde_json::Value {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let mut out = String::new();
        if let Some(mut so) = self.child.stdout.take() {
            use std::io::Read;
            let _ = so.read_to_string(&mut out);
        }
        let _ = self.child.wait();
        let last = out.lines().rfind(|l| l.starts_with('{')).unwrap_or("{}");
        serde_json::from_str(last).expect("summary json")
    }
}

impl Drop for NpmSmsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn probe_against_hostile_npm_smsc() {
    if !npm_ready() {
        return;
    }
    // Throttles, header-only errors, DLR before submit_sm_resp, decimal ids in
    // text-only receipts vs hex in responses, an unknown command_id.
    let smsc = NpmSmsc::start("hostile");
    let (code, json, err) = probe(smsc.port, "secret", &["--count", "6", "--wait-dlr", "20"]);
    assert_eq!(code, 0, "{json}\n{err}");
    assert_eq!(json["accepted"], 6);
    assert_eq!(json["dlrs"], 6, "every receipt correlated: {json}");
    assert_eq!(json["unmatched_dlrs"], 0);
    let (code, json, _) = probe(
        smsc.port,
        "secret",
        &["--text", "please REJECT this", "--count", "1"],
    );
    assert_eq!(code, 1);
    assert_eq!(
        json["messages"][0]["status"],
        "rejected 0x45 ESME_RSUBMITFAIL"
    );
    let (code, _, err) = probe(smsc.port, "wrong", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("wrong password"), "{err}");
    let summary = smsc.stop();
    assert_eq!(summary["generic_nack_seen"], true, "{summary}");
    assert!(summary["throttled"].as_u64().unwrap() >= 2, "{summary}");
    assert_eq!(summary["rejected"], 1, "{summary}");
}

#[test]
fn probe_against_plain_npm_smsc() {
    if !npm_ready() {
        return;
    }
    let smsc = NpmSmsc::start("plain");
    let (code, json, err) = probe(smsc.port, "secret", &["--count", "25", "--wait-dlr", "20"]);
    assert_eq!(code, 0, "{json}\n{err}");
    assert_eq!(json["dlrs"], 25);
}

#[test]
fn npm_esme_against_simulator() {
    if !npm_ready() {
        return;
    }
    let sim = Sim::start(&[]);
    let out = Command::new("node")
        .arg(interop_dir().join("npm/esme.js"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &sim.port.to_string(),
            "--system-id",
            "verigate",
            "--password",
            "secret",
        ])
        .output()
        .expect("run esme.js");
    assert!(
        out.status.success(),
        "npm esme failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn smpplib_esme_against_simulator_decodes_cleanly_in_tshark() {
    if !require_peer("smpplib 2.2.4 (tests/interop/.venv)", python().exists()) {
        return;
    }
    let tshark = require_peer("tshark", has_command("tshark"));
    let capture = tshark.then(|| Capture::start("smpplib"));
    let sim = Sim::start(&[]);
    let started = Instant::now();
    let out = Command::new(python())
        .arg(interop_dir().join("py/smpplib_esme.py"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &sim.port.to_string(),
            "--control",
            &sim.control,
            "--system-id",
            "verigate",
            "--password",
            "secret",
        ])
        .output()
        .expect("run smpplib_esme.py");
    assert!(
        out.status.success(),
        "smpplib esme failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    if let Some(c) = capture {
        c.stop();
        let check = Command::new(interop_dir().join("tshark_check.sh"))
            .arg(&c.pcap)
            .arg(sim.port.to_string())
            .output()
            .expect("tshark_check.sh");
        assert!(
            check.status.success(),
            "tshark found malformed SMPP:\n{}\n{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

/// The tshark check is only worth something if it fails on bad SMPP: a
/// submit_sm whose body ends inside its first C-Octet String is flagged, on
/// the port under check; the same bytes on a port not under check are not.
#[test]
fn the_tshark_check_flags_malformed_smpp_on_the_ports_it_checks() {
    if !require_peer("tshark", has_command("tshark")) {
        return;
    }
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let capture = Capture::start("bad-pdu");
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
    });
    let mut pdu = Vec::new();
    pdu.extend_from_slice(&24u32.to_be_bytes()); // command_length
    pdu.extend_from_slice(&4u32.to_be_bytes()); // submit_sm
    pdu.extend_from_slice(&0u32.to_be_bytes()); // command_status
    pdu.extend_from_slice(&1u32.to_be_bytes()); // sequence_number
    pdu.extend_from_slice(b"ABCDEFGH"); // service_type with no terminating NUL
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(&pdu).unwrap();
    drop(c);
    server.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    capture.stop();
    let check = |ports: &[u16]| {
        Command::new(interop_dir().join("tshark_check.sh"))
            .arg(&capture.pcap)
            .args(ports.iter().map(|p| p.to_string()))
            .output()
            .expect("tshark_check.sh")
    };
    let other = if port == 1 { 2 } else { port - 1 };
    // Several ports at once (a set filter) still find it.
    let flagged = check(&[other, port]);
    assert!(
        flagged.status.code() == Some(1)
            && String::from_utf8_lossy(&flagged.stdout).contains("malformed or with expert errors"),
        "tshark_check passed a malformed submit_sm:\n{}\n{}",
        String::from_utf8_lossy(&flagged.stdout),
        String::from_utf8_lossy(&flagged.stderr)
    );
    let ignored = check(&[other]);
    let out = String::from_utf8_lossy(&ignored.stdout);
    assert!(
        out.contains("no SMPP PDUs decoded") && !out.contains("malformed or with expert errors"),
        "frames on ports not under check must not count:\n{out}"
    );
}

/// MO-SMS login through an SMSC we did not write: npm `smpp` 0.5.1 delivers
/// the phone's SMS as a deliver_sm; verigate stores it, answers it with
/// deliver_sm_resp status 0, and the app's poll gets the session.
#[test]
fn an_mo_from_the_npm_smsc_logs_the_phone_in() {
    if !npm_ready() {
        return;
    }
    let mut smsc = NpmSmsc::start("plain");
    let port = format!("smsc.0.port={}", smsc.port);
    let d = verigate_e2e::Daemon::start(&[&port]);
    // Wait for the bind (the daemon's readiness says so).
    let deadline = Instant::now() + Duration::from_secs(20);
    while verigate_e2e::http(&d.admin, "GET", "/readyz", None).0 != 200 {
        assert!(Instant::now() < deadline, "no bind to the npm SMSC");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (st, v) = d.call("POST", "/v1/mo-logins", Some(serde_json::json!({})));
    assert_eq!(st, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    smsc.send_mo("447400100600", "7799", v["sms_body"].as_str().unwrap());
    let (_, v) = d.call("GET", &format!("/v1/mo-logins/{token}?wait=8"), None);
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["msisdn"], "+447400100600");
    // The new account's password goes back through the npm SMSC.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = verigate_e2e::http(&d.admin, "GET", "/metrics", None);
        if m.contains("verigate_sends_total{result=\"submitted\"} 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the password SMS was not submitted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let summary = smsc.stop();
    assert_eq!(
        (summary["mos_sent"].as_u64(), summary["mos_acked"].as_u64()),
        (Some(1), Some(1)),
        "{summary}"
    );
    assert_eq!(summary["accepted"], 1, "{summary}");
}

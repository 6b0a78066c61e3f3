//! Interop with SIP software we did not write: SIPp (Debian `sip-tester`)
//! plays the far end of the trunk with the scenarios in
//! `tests/interop/sipp/`, and Wireshark's SIP and RTP dissectors (tshark,
//! through `tests/interop/sip_rtp_check.py`) judge what went over the wire.
//! Peers are installed by tests/interop/setup.sh; in CI a missing peer fails.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use verigate_e2e::{has_command, interop_dir, require_peer, scratch_dir, Capture, Daemon};

/// One SIPp test at a time: each runs a daemon, SIPp and often a capture of
/// all loopback traffic, and the RTP pacing check wants a quiet machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The A-law RTP SIPp streams back (shipped with Debian's sip-tester).
const SIPP_PCAP: &str = "/usr/share/sip-tester/g711a.pcap";

fn sipp_ready() -> bool {
    require_peer(
        "SIPp (Debian sip-tester, with /usr/share/sip-tester/g711a.pcap)",
        has_command("sipp") && Path::new(SIPP_PCAP).exists(),
    )
}

fn tshark_ready() -> bool {
    require_peer("tshark", has_command("tshark"))
}

/// A UDP port free now on loopback (and, for media, the one two above it,
/// which SIPp takes for video).
fn free_udp_port(pair: bool) -> u16 {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = s.local_addr().unwrap().port();
        if !pair || (p < 65000 && UdpSocket::bind(("127.0.0.1", p + 2)).is_ok()) {
            return p;
        }
    }
}

/// One SIPp UAS running a scenario for one call, killed on drop.
struct Sipp {
    child: Child,
    port: u16,
    media_port: u16,
    dir: PathBuf,
}

impl Sipp {
    /// Starts SIPp on free ports, again on others if a port was taken
    /// between choosing it and SIPp binding it (SIPp then exits at once).
    fn start(scenario: &str) -> Sipp {
        for _ in 0..5 {
            if let Some(s) = Sipp::try_start(scenario) {
                return s;
            }
        }
        panic!("sipp did not start on free ports five times");
    }

    fn try_start(scenario: &str) -> Option<Sipp> {
        let dir = scratch_dir();
        let port = free_udp_port(false);
        let media_port = free_udp_port(true);
        let mut child = Command::new("sipp")
            .current_dir(&dir)
            .arg("-sf")
            .arg(interop_dir().join("sipp").join(scenario))
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &media_port.to_string()])
            .args(["-m", "1", "-timeout", "120s", "-timeout_error"])
            .args(["-trace_err", "-trace_msg"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sipp");
        // SIPp binds its socket within a moment of starting; one that lost
        // a port to another process exits.
        let deadline = Instant::now() + Duration::from_secs(5);
        while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            assert!(Instant::now() < deadline, "sipp did not bind port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        if child.try_wait().unwrap().is_some() {
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        }
        Some(Sipp {
            child,
            port,
            media_port,
            dir,
        })
    }

    /// Waits for SIPp to finish its one call: whether it succeeded, and its
    /// error and message logs.
    fn finish(&mut self, within: Duration) -> (bool, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break Some(st);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut logs = String::new();
        for e in std::fs::read_dir(&self.dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with("_errors.log") || name.ends_with("_messages.log") {
                logs += &format!(
                    "--- {name}\n{}\n",
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                );
            }
        }
        (status.is_some_and(|s| s.success()), logs)
    }

    /// The daemon, in lab mode, with its trunk pointed at this SIPp.
    fn daemon(&self, extra: &[&str]) -> Daemon {
        let port = format!("sip_trunk.0.port={}", self.port);
        let mut sets = vec![port.as_str(), "sip_trunk.0.options_interval=0s"];
        sets.extend_from_slice(extra);
        Daemon::start(&sets)
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a verification on `channel` and returns its id.
fn start(d: &Daemon, to: &str, channel: &str) -> String {
    let (st, v) = d.call(
        "POST",
        "/v1/verifications",
        Some(serde_json::json!({"to": to, "channel": channel})),
    );
    assert_eq!(st, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// The verification's call once it has an outcome.
fn call_outcome(d: &Daemon, id: &str) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let (_, v) = d.call("GET", &format!("/v1/verifications/{id}"), None);
        if !matches!(
            v["call"]["state"].as_str(),
            Some("queued" | "calling") | None
        ) {
            return v["call"].clone();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs tests/interop/sip_rtp_check.py on a capture.
fn sip_rtp_check(pcap: &Path, args: &[String]) -> (bool, String) {
    let out = Command::new(interop_dir().join("sip_rtp_check.py"))
        .arg(pcap)
        .args(args)
        .output()
        .expect("sip_rtp_check.py");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn sipp_answers_a_voice_call_and_tshark_finds_clean_sip_and_20ms_rtp() {
    if !sipp_ready() || !tshark_ready() {
        return;
    }
    let _one = one_at_a_time();
    let capture = Capture::start("sipp-voice");
    let mut sipp = Sipp::start("voice_answer.xml");
    let d = sipp.daemon(&[]);
    let id = start(&d, "+447400300101", "voice");
    let (ok, logs) = sipp.finish(Duration::from_secs(120));
    assert!(ok, "SIPp failed the voice call:\n{logs}");
    let c = call_outcome(&d, &id);
    assert_eq!(
        (c["state"].as_str(), c["sip_code"].as_u64()),
        (Some("answered"), Some(200)),
        "{c}"
    );
    capture.stop();
    // SIPp answered PCMA only: every packet must be PT 8. The reading of a
    // code lasts ~20 s, so well over 500 packets.
    let (ok, report) = sip_rtp_check(
        &capture.pcap,
        &[
            format!("--sip-port={}", sipp.port),
            format!("--media-port={}", sipp.media_port),
            "--pt=8".into(),
            "--min-packets=500".into(),
        ],
    );
    assert!(ok, "{report}");
    eprintln!("{report}");
}

#[test]
fn sipp_sees_a_flash_call_from_the_pool_cancelled_after_ringing() {
    if !sipp_ready() || !tshark_ready() {
        return;
    }
    let _one = one_at_a_time();
    let capture = Capture::start("sipp-flash");
    let mut sipp = Sipp::start("flash_cancel.xml");
    let d = sipp.daemon(&[]);
    let id = start(&d, "+447400300102", "flash_call");
    // SIPp checks the caller number (From and PAI) is in the pool, sends
    // 487 after our CANCEL and waits for our ACK.
    let (ok, logs) = sipp.finish(Duration::from_secs(60));
    assert!(ok, "SIPp failed the flash call:\n{logs}");
    let c = call_outcome(&d, &id);
    assert_eq!(
        (c["state"].as_str(), c["sip_code"].as_u64()),
        (Some("rang"), Some(487)),
        "{c}"
    );
    capture.stop();
    let (ok, report) = sip_rtp_check(&capture.pcap, &[format!("--sip-port={}", sipp.port)]);
    assert!(ok, "{report}");
    assert!(
        report.contains("CANCEL x1") && report.contains("487 x1"),
        "{report}"
    );
}

#[test]
fn sipp_busy_486_ends_the_call_as_busy() {
    if !sipp_ready() {
        return;
    }
    let _one = one_at_a_time();
    let mut sipp = Sipp::start("busy.xml");
    let d = sipp.daemon(&[]);
    let id = start(&d, "+447400300103", "voice");
    let (ok, logs) = sipp.finish(Duration::from_secs(60));
    assert!(
        ok,
        "SIPp failed the busy call (no ACK for the 486?):\n{logs}"
    );
    let c = call_outcome(&d, &id);
    assert_eq!(
        (c["state"].as_str(), c["sip_code"].as_u64()),
        (Some("busy"), Some(486)),
        "{c}"
    );
}

#[test]
fn sipp_407_challenge_is_answered_with_proxy_authorization() {
    if !sipp_ready() {
        return;
    }
    let _one = one_at_a_time();
    let mut sipp = Sipp::start("auth_407.xml");
    let d = sipp.daemon(&[
        "sip_trunk.0.username=lab",
        "sip_trunk.0.password=lab-secret",
    ]);
    let id = start(&d, "+447400300104", "flash_call");
    let (ok, logs) = sipp.finish(Duration::from_secs(60));
    assert!(
        ok,
        "SIPp refused our Proxy-Authorization or the call after it:\n{logs}"
    );
    let c = call_outcome(&d, &id);
    assert_eq!(
        (c["state"].as_str(), c["sip_code"].as_u64()),
        (Some("rang"), Some(487)),
        "{c}"
    );
}

#[test]
fn sipp_401_challenge_gets_a_digest_sipp_recomputes_and_a_wrong_password_fails() {
    if !sipp_ready() {
        return;
    }
    let _one = one_at_a_time();
    let mut sipp = Sipp::start("auth_401.xml");
    let d = sipp.daemon(&[
        "sip_trunk.0.username=lab",
        "sip_trunk.0.password=lab-secret",
    ]);
    let id = start(&d, "+447400300105", "flash_call");
    let (ok, logs) = sipp.finish(Duration::from_secs(60));
    assert!(ok, "SIPp's verifyauth refused our digest:\n{logs}");
    let c = call_outcome(&d, &id);
    assert_eq!(
        (c["state"].as_str(), c["sip_code"].as_u64()),
        (Some("rang"), Some(487)),
        "{c}"
    );
    // The check is real: a digest made with the wrong password is refused.
    let mut sipp = Sipp::start("auth_401.xml");
    let d = sipp.daemon(&["sip_trunk.0.username=lab", "sip_trunk.0.password=wrong"]);
    let id = start(&d, "+447400300106", "flash_call");
    let (ok, logs) = sipp.finish(Duration::from_secs(60));
    assert!(
        !ok,
        "SIPp accepted a digest made with the wrong password:\n{logs}"
    );
    let c = call_outcome(&d, &id);
    assert_eq!(
        (c["state"].as_str(), c["sip_code"].as_u64()),
        (Some("failed"), Some(403)),
        "{c}"
    );
}

/// The check is only worth something if it fails on bad RTP: a stream with
/// a sequence gap, the wrong payload type, timestamps that do not step by
/// whole frames, too much time skipped and no pacing is flagged on every
/// count.
#[test]
fn the_sip_rtp_check_flags_a_broken_stream() {
    if !tshark_ready() {
        return;
    }
    let capture = Capture::start("bad-rtp");
    let sip_port = free_udp_port(false);
    let media_port = free_udp_port(false);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let options = format!(
        "OPTIONS sip:probe@127.0.0.1:{sip_port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKcheck1\r\nMax-Forwards: 70\r\nFrom: <sip:check@127.0.0.1>;tag=1\r\nTo: <sip:probe@127.0.0.1>\r\nCall-ID: check-1@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        s.local_addr().unwrap().port()
    );
    s.send_to(options.as_bytes(), ("127.0.0.1", sip_port))
        .unwrap();
    for i in 0..60u16 {
        // PT 0 where 8 was negotiated, a gap after packet 30, ts steps of
        // 80 for the first 20, then 50 frames skipped, then steps of 160.
        let seq = if i < 30 { 1000 + i } else { 1001 + i };
        let n = u32::from(i);
        let ts = if i < 20 {
            8000 + n * 80
        } else {
            8000 + 19 * 80 + 160 * 50 + (n - 19) * 160
        };
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        s.send_to(&p, ("127.0.0.1", media_port)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    capture.stop();
    let (ok, report) = sip_rtp_check(
        &capture.pcap,
        &[
            format!("--sip-port={sip_port}"),
            format!("--media-port={media_port}"),
            "--pt=8".into(),
            "--min-packets=50".into(),
        ],
    );
    assert!(!ok, "a broken stream passed:\n{report}");
    for want in [
        "payload types [0], negotiated 8",
        "1 sequence breaks",
        "timestamp steps that are not whole 160-sample frames",
        "frames skipped of",
        "ms per 20 ms frame, not 20 ms",
    ] {
        assert!(report.contains(want), "missing {want:?} in:\n{report}");
    }
    assert!(report.contains("OPTIONS x1"), "{report}");
}

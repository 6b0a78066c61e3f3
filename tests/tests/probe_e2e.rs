//! `verigate smpp probe` against `verigate-sim smsc`, as processes.

use verigate_e2e::{probe, Sim};

#[test]
fn probe_sends_and_correlates_every_receipt() {
    let sim = Sim::start(&[]);
    let (code, json, err) = probe(sim.port, "secret", &["--count", "20", "--wait-dlr", "10"]);
    assert_eq!(code, 0, "{json}\n{err}");
    let msgs = json["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 20);
    for m in msgs {
        assert_eq!(m["status"], "accepted");
        assert_eq!(m["dlr_stat"], "DELIVRD");
        assert!(m["message_id"].as_str().is_some_and(|s| !s.is_empty()));
    }
    assert_eq!(sim.inbox("447700900123").len(), 20);
}

#[test]
fn wrong_password_is_a_clear_bind_error() {
    let sim = Sim::start(&[]);
    let (code, json, err) = probe(sim.port, "nope", &[]);
    assert_eq!(code, 2);
    assert_eq!(json["ok"], false);
    assert!(
        err.contains("bind refused by the SMSC: wrong password (0x0E ESME_RINVPASWD)"),
        "{err}"
    );
}

#[test]
fn unreachable_smsc_times_out_with_a_message() {
    // A port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let (code, _json, err) = probe(port, "secret", &["--bind-timeout", "1"]);
    assert_eq!(code, 2);
    assert!(err.contains("not bound within"), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn bad_flags_exit_64_not_the_no_bind_code() {
    for bad in ["--bind-timeout=-1", "--wait-dlr=nan", "--bind-timeout=soon"] {
        let out = std::process::Command::new(verigate_e2e::bin("verigate"))
            .args(["smpp", "probe", "--host", "127.0.0.1", "--system-id", "s"])
            .args(["--password", "p", "--to", "+447400123456", bad])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{bad}: {err}");
        assert!(err.contains("seconds"), "{bad}: {err}");
    }
}

#[test]
fn rejected_messages_are_reported_with_their_status() {
    let sim = Sim::start(&[
        "--faults",
        r#"{"reject_ratio":1.0,"empty_error_bodies":true}"#,
    ]);
    let (code, json, err) = probe(sim.port, "secret", &["--count", "3"]);
    assert_eq!(code, 1, "{json}");
    for m in json["messages"].as_array().unwrap() {
        assert_eq!(m["status"], "rejected 0x45 ESME_RSUBMITFAIL");
        assert_eq!(m["command_status"], 0x45);
    }
    assert!(err.contains("3 of 3 messages not accepted"), "{err}");
}

#[test]
fn hostile_smsc_throttles_nacks_and_mixes_id_formats() {
    // Throttles a third of submits with header-only errors, sends the DLR
    // before the response, quotes ids in decimal in text-only receipts while
    // answering hex, and injects malformed PDUs.
    let sim = Sim::start(&[
        "--id-format",
        "hex",
        "--dlr-id-format",
        "decimal",
        "--dlr-text-only",
        "--faults",
        r#"{"throttle_every_n":3,"empty_error_bodies":true,"dlr_before_response":true,"malformed_every_n":2}"#,
    ]);
    let (code, json, err) = probe(sim.port, "secret", &["--count", "12", "--wait-dlr", "20"]);
    assert_eq!(code, 0, "{json}\n{err}");
    assert_eq!(json["dlrs"], 12);
    assert_eq!(json["unmatched_dlrs"], 0);
    let stats = sim.get("/stats");
    assert!(stats["throttled"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["malformed_sent"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(
        stats["generic_nacks_received"], stats["malformed_sent"],
        "every malformed PDU got a generic_nack: {stats}"
    );
}

#[test]
fn long_unicode_text_reaches_the_handset_whole() {
    let sim = Sim::start(&[]);
    let text = "验证码 123456 — 😀 ".repeat(12);
    let (code, json, _) = probe(sim.port, "secret", &["--text", &text, "--wait-dlr", "10"]);
    assert_eq!(code, 0, "{json}");
    let inbox = sim.inbox("447700900123");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["text"], text);
    assert!(inbox[0]["parts"].as_u64().unwrap() > 1);
    assert_eq!(inbox[0]["data_coding"], 8);
}

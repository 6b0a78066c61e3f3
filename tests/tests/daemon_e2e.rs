//! `verigate run` in lab mode as a process: send a code, read it from the
//! simulated handset, check it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use verigate_e2e::{
    bin, code_in, handset_text, http, http_auth, http_request, scratch_dir, workspace, Daemon,
    HttpResponse, LAB_PORTS,
};

#[test]
fn send_code_read_it_on_the_handset_and_check_it() {
    let d = Daemon::start(&[]);
    // Ready once the lab SMSC bind is up.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, body) = http(&d.admin, "GET", "/readyz", None);
        if st == 200 {
            assert!(body.contains("\"smsc_binds_up\":1"), "{body}");
            break;
        }
        assert_eq!(st, 503, "{body}");
        assert!(Instant::now() < deadline, "never ready: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Probes and scrapers ask the admin listener; the public API tells
    // nobody how the service is doing.
    for path in ["/metrics", "/readyz"] {
        let (st, body) = http(&d.api, "GET", path, None);
        assert_eq!(st, 404, "{path} on the public API: {body}");
    }
    let (st, v) = d.call(
        "POST",
        "/v1/verifications",
        Some(serde_json::json!({"to": "+447400123456", "channel": "sms"})),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["status"], "pending");
    let id = v["id"].as_str().unwrap().to_string();
    let text = handset_text(&d.control, "447400123456", 0);
    assert!(text.contains("Verigate Lab"), "{text}");
    let code = code_in(&text);
    assert_eq!(code.len(), 6);
    let (st, v) = d.call(
        "POST",
        &format!("/v1/verifications/{id}/check"),
        Some(serde_json::json!({"code": code})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "approved");
    // The receipt reaches the status view.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = d.call("GET", &format!("/v1/verifications/{id}"), None);
        if v["delivery"]["state"] == "delivered" {
            break;
        }
        assert!(Instant::now() < deadline, "no receipt: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (st, m) = http(&d.admin, "GET", "/metrics", None);
    assert_eq!(st, 200);
    for line in [
        "verigate_verifications_total{channel=\"sms\",outcome=\"approved\"} 1",
        "verigate_verifications_total{channel=\"sms\",outcome=\"started\"} 1",
        "verigate_smpp_binds_up{smsc=\"lab\"} 1",
        "verigate_sends_total{result=\"submitted\"} 1",
        "verigate_dlrs_total{state=\"DELIVRD\"} 1",
        "verigate_submit_latency_seconds_count 1",
    ] {
        assert!(m.contains(line), "missing {line} in\n{m}");
    }
    assert!(!m.contains("447400123456"), "no numbers in metrics");
}

#[test]
fn five_wrong_codes_end_in_max_attempts_reached() {
    let d = Daemon::start(&[]);
    let (_, v) = d.call(
        "POST",
        "/v1/verifications",
        Some(serde_json::json!({"to": "+447400123457"})),
    );
    let id = v["id"].as_str().unwrap().to_string();
    let code = code_in(&handset_text(&d.control, "447400123457", 0));
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let mut last = serde_json::Value::Null;
    for _ in 0..5 {
        let (_, v) = d.call(
            "POST",
            &format!("/v1/verifications/{id}/check"),
            Some(serde_json::json!({"code": wrong})),
        );
        last = v;
    }
    assert_eq!(last["status"], "max_attempts_reached", "{last}");
    let (_, v) = d.call(
        "POST",
        &format!("/v1/verifications/{id}/check"),
        Some(serde_json::json!({"code": code})),
    );
    assert_eq!(v["status"], "max_attempts_reached");
    // The outcome is counted once; the check after it changed nothing.
    let (_, m) = http(&d.admin, "GET", "/metrics", None);
    for line in [
        "verigate_verifications_total{channel=\"sms\",outcome=\"wrong_code\"} 4",
        "verigate_verifications_total{channel=\"sms\",outcome=\"max_attempts_reached\"} 1",
        "verigate_verifications_total{channel=\"sms\",outcome=\"check_on_closed\"} 1",
    ] {
        assert!(m.contains(line), "missing {line} in\n{m}");
    }
    // Cancelling or checking a closed one again does not count a close again.
    d.call("POST", &format!("/v1/verifications/{id}/cancel"), None);
    let (_, m) = http(&d.admin, "GET", "/metrics", None);
    assert!(
        !m.contains("outcome=\"canceled\""),
        "a cancel of a closed verification is not a close:\n{m}"
    );
    let line = "verigate_verifications_total{channel=\"sms\",outcome=\"max_attempts_reached\"} 1";
    assert!(m.contains(line), "missing {line} in\n{m}");
}

#[test]
fn bad_config_exits_64_naming_the_key() {
    let out = Command::new(bin("verigate"))
        .args(["run", "--config"])
        .arg(workspace().join("conf/verigate.toml"))
        .args(["--set", "verify.code_length=99"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("verify.code_length = 99"), "{err}");
}

/// A deployment config pointing at a separately started simulator (no
/// simulators of its own; `lab = true` only lets it use the lab's secrets).
fn deployment_config(dir: &std::path::Path, smsc_port: u16) -> PathBuf {
    let text = format!(
        r#"
lab = true
[api]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[store]
kind = "sqlite"
path = "./var/verigate.db"
[secrets]
server_secret_file = "./var/server.secret"
[verify.limits]
per_number = "5/10m"
per_service = "100000/1m"
per_prefix = "100000/1m"
per_ip = "100000/1m"
[outbox]
lease = "2s"
[[smsc]]
name = "sim"
host = "127.0.0.1"
port = {smsc_port}
system_id = "verigate"
password = "secret"
window = 1
[[service]]
code = "lab"
name = "Verigate Lab"
api_key = "lab-key-change-me"
"#
    );
    let p = dir.join("verigate.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn kill_9_during_1000_accepted_starts_loses_nothing() {
    // A slow SMSC (window 1, 10 ms per response: 10 s for all 1000) so
    // most messages are still in the outbox when the daemon is killed.
    let sim = verigate_e2e::Sim::start(&["--faults", r#"{"response_delay_ms":10}"#]);
    let dir = scratch_dir();
    let cfg = deployment_config(&dir, sim.port);
    let d = Daemon::start_in(dir.clone(), &cfg, &[], &sim.control);
    let numbers: Vec<String> = (0..1000).map(|i| format!("+4474001{i:05}")).collect();
    // Accepted from 8 clients at once, so the kill lands long before the
    // slow SMSC has taken them all, however fast this machine is.
    std::thread::scope(|scope| {
        for chunk in numbers.chunks(125) {
            let d = &d;
            scope.spawn(move || {
                for n in chunk {
                    let (st, v) = d.call(
                        "POST",
                        "/v1/verifications",
                        Some(serde_json::json!({"to": n})),
                    );
                    assert_eq!(st, 201, "{n}: {v}");
                }
            });
        }
    });
    let dir = d.kill9();
    let before = sim.get("/stats")["submits"].as_u64().unwrap();
    assert!(
        before < 1000,
        "the kill must land mid-way (already {before} sent)"
    );
    let d = Daemon::start_in(dir, &cfg, &[], &sim.control);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let submits = sim.get("/stats")["submits"].as_u64().unwrap();
        if submits >= 1000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {submits} of 1000 reached the SMSC"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut missing = 0;
    let mut duplicated = 0;
    for n in &numbers {
        match sim.inbox(n.trim_start_matches('+')).len() {
            0 => missing += 1,
            1 => {}
            _ => duplicated += 1,
        }
    }
    assert_eq!(missing, 0, "every accepted start reached the SMSC");
    // Delivery is at least once: a message the SMSC took whose acceptance
    // was not yet recorded goes again after the restart. The sender holds
    // at most twice the bind's window (2) between claim and record, so no
    // more than 2 may go twice.
    assert!(duplicated <= 2, "{duplicated} numbers got their code twice");
    drop(d);
}

#[test]
fn messages_wait_while_the_smsc_is_down_and_drain_when_it_returns() {
    let sim = verigate_e2e::Sim::start(&[]);
    let port = sim.port;
    let dir = scratch_dir();
    let cfg = deployment_config(&dir, port);
    let d = Daemon::start_in(dir, &cfg, &["smsc.0.window=10"], &sim.control);
    drop(sim); // the SMSC goes away
    let numbers: Vec<String> = (0..20).map(|i| format!("+4474002{i:05}")).collect();
    let mut ids = Vec::new();
    for n in &numbers {
        let (st, v) = d.call(
            "POST",
            "/v1/verifications",
            Some(serde_json::json!({"to": n})),
        );
        assert_eq!(st, 201, "accepted while the SMSC is down: {v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    // Longer than the 2 s outbox lease: leases run out while the SMSC is down.
    std::thread::sleep(Duration::from_millis(3000));
    let (_, v) = d.call("GET", &format!("/v1/verifications/{}", ids[0]), None);
    let state = v["delivery"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(state == "queued" || state == "sending", "not sent yet: {v}");
    // The SMSC comes back on the same port.
    let sim = verigate_e2e::Sim::start_on(&format!("127.0.0.1:{port}"), &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in &numbers {
        loop {
            if !sim.inbox(n.trim_start_matches('+')).is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "{n} never got its code");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // And each exactly once, although leases expired during the outage.
    std::thread::sleep(Duration::from_millis(1500));
    for n in &numbers {
        assert_eq!(
            sim.inbox(n.trim_start_matches('+')).len(),
            1,
            "{n} got duplicates"
        );
    }
}

#[test]
fn an_smsc_throttling_longer_than_the_lease_gets_each_message_once() {
    // Every submit_sm is answered 0x58 for 4 s, four times the 1 s lease:
    // the sender keeps extending its lease while the session backs off, so
    // no second claim (and no second submit_sm) happens.
    let sim = verigate_e2e::Sim::start(&["--faults", r#"{"throttle_ratio":1.0}"#]);
    let dir = scratch_dir();
    let cfg = deployment_config(&dir, sim.port);
    let d = Daemon::start_in(
        dir,
        &cfg,
        &["outbox.lease=1s", "smsc.0.window=10"],
        &sim.control,
    );
    let numbers: Vec<String> = (0..10).map(|i| format!("+4474006{i:05}")).collect();
    for n in &numbers {
        let (st, v) = d.call(
            "POST",
            "/v1/verifications",
            Some(serde_json::json!({"to": n})),
        );
        assert_eq!(st, 201, "{n}: {v}");
    }
    std::thread::sleep(Duration::from_secs(4));
    let throttled = sim.get("/stats")["throttled"].as_u64().unwrap();
    assert!(throttled > 0, "the SMSC throttled nothing");
    for n in &numbers {
        assert!(
            sim.inbox(n.trim_start_matches('+')).is_empty(),
            "{n} got through while every submit is throttled"
        );
    }
    let (st, body) = sim.send(
        "PUT",
        "/faults",
        &serde_json::json!({"throttle_ratio": 0.0}),
    );
    assert_eq!(st, 200, "{body}");
    eventually(
        "every number gets its code once the SMSC takes them",
        || {
            numbers
                .iter()
                .all(|n| !sim.inbox(n.trim_start_matches('+')).is_empty())
        },
    );
    // Leases keep expiring and being swept meanwhile: any second claim
    // would show here as a second message.
    std::thread::sleep(Duration::from_secs(3));
    for n in &numbers {
        assert_eq!(
            sim.inbox(n.trim_start_matches('+')).len(),
            1,
            "{n} got its code more than once"
        );
    }
    let stats = sim.get("/stats");
    let accepted = stats["submits"].as_u64().unwrap() - stats["throttled"].as_u64().unwrap();
    assert_eq!(accepted, 10, "one accepted submit_sm per message: {stats}");
}

#[test]
fn sigterm_during_a_burst_exits_0_and_every_accepted_code_is_sent_after_restart() {
    // A slow SMSC (window 1, 20 ms per response) so the outbox still holds
    // most of the burst when SIGTERM lands.
    let sim = verigate_e2e::Sim::start(&["--faults", r#"{"response_delay_ms":20}"#]);
    let dir = scratch_dir();
    let cfg = deployment_config(&dir, sim.port);
    let mut d = Daemon::start_in(dir, &cfg, &[], &sim.control);
    let accepted = std::sync::Mutex::new(Vec::new());
    let term_after = 150;
    let termed_at = std::cell::Cell::new(None);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (d, accepted) = (&d, &accepted);
            scope.spawn(move || {
                // Until the API stops answering.
                for i in 0.. {
                    let n = format!("+447400{t}{i:05}");
                    let body = serde_json::json!({"to": n}).to_string();
                    match verigate_e2e::try_http_request(
                        &d.api,
                        "POST",
                        "/v1/verifications",
                        Some(&body),
                        Some("lab-key-change-me"),
                    ) {
                        Ok(r) if r.status == 201 => accepted.lock().unwrap().push(n),
                        // Refused or cut while shutting down: not accepted.
                        Ok(r) if r.status == 0 || r.status == 503 => {}
                        Ok(r) => panic!("{n}: {} {}", r.status, r.body),
                        Err(_) => break,
                    }
                }
            });
        }
        // SIGTERM in the middle of the burst.
        eventually("the burst is under way", || {
            accepted.lock().unwrap().len() >= term_after
        });
        signal(&d, "-TERM");
        termed_at.set(Some(Instant::now()));
    });
    // Drain deadline: the stages' limits are far above what an orderly
    // drain of this burst needs.
    let deadline = termed_at.get().unwrap() + Duration::from_secs(30);
    loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no exit within the drain deadline"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let accepted = accepted.into_inner().unwrap();
    let before = sim.get("/stats")["submits"].as_u64().unwrap() as usize;
    assert!(
        before < accepted.len(),
        "SIGTERM must land before everything was sent ({before} of {})",
        accepted.len()
    );
    let dir = d.kill9();
    let _d = Daemon::start_in(dir, &cfg, &["smsc.0.window=10"], &sim.control);
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in &accepted {
        while sim.inbox(n.trim_start_matches('+')).is_empty() {
            assert!(
                Instant::now() < deadline,
                "{n} was accepted before SIGTERM and never sent"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Accepts one webhook delivery on `hook`, answers 204: (request head, body).
fn accept_webhook(hook: &std::net::TcpListener) -> (String, String) {
    use std::io::{Read, Write};
    hook.set_nonblocking(false).unwrap();
    let (mut conn, _) = hook.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the body (Content-Length) is complete.
    loop {
        let n = conn.read(&mut buf).unwrap();
        req.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&req).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
        assert!(n > 0, "connection closed early");
    }
    conn.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let text = String::from_utf8_lossy(&req).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

#[test]
fn approval_is_sent_to_the_service_webhook_signed() {
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("http://{}/events", hook.local_addr().unwrap());
    let d = Daemon::start(&[
        &format!("service.0.webhook_url={hook_url}"),
        "service.0.webhook_secret=0123456789abcdef-secret",
    ]);
    let (_, v) = d.call(
        "POST",
        "/v1/verifications",
        Some(serde_json::json!({"to": "+447400123458"})),
    );
    let id = v["id"].as_str().unwrap().to_string();
    let code = code_in(&handset_text(&d.control, "447400123458", 0));
    let (_, v) = d.call(
        "POST",
        &format!("/v1/verifications/{id}/check"),
        Some(serde_json::json!({"code": code})),
    );
    assert_eq!(v["status"], "approved");
    let (head, body) = accept_webhook(&hook);
    let body = body.as_str();
    assert!(head.starts_with("POST /events"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("verigate-signature: t="),
        "{head}"
    );
    let event: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["type"], "verification.approved");
    assert_eq!(event["data"]["id"], id.as_str());
    assert!(!body.contains(&code), "the code never leaves in a webhook");
}

/// Runs `verigate ARGS --config CONFIG` against the daemon's admin endpoint;
/// (exit code, stdout, stderr).
fn cli(d: &Daemon, config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    d.cli(config, args)
}

#[test]
fn operator_cli_shows_status_and_manages_services() {
    let d = Daemon::start(&[]);
    let lab = workspace().join("conf/verigate.toml");
    let run = |args: &[&str]| cli(&d, &lab, args);
    let (code, out, err) = run(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("SMSC") && out.contains("lab"), "{out}");
    let (code, out, err) = run(&["services", "add", "acme", "ACME Bank", "--country", "GB"]);
    assert_eq!(code, 0, "{err}");
    let key = out.split_whitespace().last().unwrap().to_string();
    assert!(key.starts_with("vg_"), "{out}");
    // The new key works on the public API.
    let (st, _) = http_auth(
        &d.api,
        "POST",
        "/v1/verifications",
        Some(r#"{"to":"+447400123459"}"#),
        &key,
    );
    assert_eq!(st, 201);
    let (code, out, _) = run(&["services", "rotate-key", "acme"]);
    assert_eq!(code, 0);
    let new_key = out
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    let (st, _) = http_auth(&d.api, "GET", "/v1/verifications/vf_x", None, &key);
    assert_eq!(st, 401, "the rotated-out key is refused");
    let (st, _) = http_auth(&d.api, "GET", "/v1/verifications/vf_x", None, &new_key);
    assert_eq!(st, 404, "the new key is accepted");
    let (code, out, _) = run(&["services", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("ACME Bank") && out.contains("(revoked)"),
        "{out}"
    );
    let (code, _, err) = run(&["services", "add", "Bad Code", "x"]);
    assert_eq!(code, 1);
    assert!(err.contains("code: use"), "{err}");
    let (code, _, err) = run(&["services", "add", "acme", "Again"]);
    assert_eq!(code, 1);
    assert!(err.contains("409") && err.contains("acme"), "{err}");
    // The admin endpoint itself: no token, garbage, unknown fields.
    let r = http_request(&d.admin, "GET", "/admin/status", None, Some("wrong"));
    assert_eq!(r.status, 401);
    assert!(
        r.body.contains("admin token missing or wrong"),
        "{}",
        r.body
    );
    let token = std::fs::read_to_string(d.dir.join("var/admin.token")).unwrap();
    let token = token.trim();
    for (body, want) in [
        ("{not json", "invalid_json"),
        (r#"{"code":"x","name":"y","extra":1}"#, "unknown_field"),
        (
            r#"{"code":"x","name":"y","allowed_countries":["UK"]}"#,
            "is not an ISO 3166 code",
        ),
    ] {
        let r = http_request(&d.admin, "POST", "/admin/services", Some(body), Some(token));
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.body.contains(want), "{body}: {}", r.body);
    }
    // verify start / show / check from the command line.
    let (code, out, err) = run(&["verify", "start", "+447400123469"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("status pending"), "{out}");
    let id = out.split_whitespace().next().unwrap().to_string();
    let sms = handset_text(&d.control, "447400123469", 0);
    let (code, out, _) = run(&["verify", "check", &id, &code_in(&sms)]);
    assert_eq!(code, 0);
    assert!(
        out.contains("status approved") && out.contains("(code accepted)"),
        "{out}"
    );
    let (code, out, _) = run(&["verify", "show", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("status approved"), "{out}");
    let (code, _, err) = run(&["verify", "show", "vf_nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no such verification"), "{err}");
}

/// Waits until `check` holds, polling.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn operator_disables_and_enables_smscs_and_traffic_follows() {
    // SMSC "a" serves +4474003…, "b" is the default route and starts
    // disabled (config), so it must come up only when enabled.
    let sim_a = verigate_e2e::Sim::start(&[]);
    let sim_b = verigate_e2e::Sim::start(&[]);
    let dir = scratch_dir();
    let cfg = deployment_config(&dir, sim_a.port);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text = text.replacen(
        "name = \"sim\"",
        "name = \"a\"\nprefixes = [\"+4474003\"]",
        1,
    );
    text.push_str(&format!(
        "[[smsc]]\nname = \"b\"\nhost = \"127.0.0.1\"\nport = {}\nsystem_id = \"verigate\"\npassword = \"secret\"\ndisabled = true\n",
        sim_b.port
    ));
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start_in(dir, &cfg, &[], &sim_a.control);
    let list = || cli(&d, &cfg, &["smsc", "list"]).1;
    eventually("a bound", || {
        list()
            .lines()
            .any(|l| l.starts_with("a ") && l.contains("enabled") && l.contains(" bound"))
    });
    let out = list();
    let b_line = out
        .lines()
        .find(|l| l.starts_with("b "))
        .unwrap_or_default();
    assert!(
        b_line.contains("disabled") && b_line.contains("default"),
        "{out}"
    );
    assert_eq!(
        sim_b.get("/stats")["bound_now"].as_u64(),
        Some(0),
        "a disabled SMSC is not bound"
    );

    let start = |to: &str| {
        let (st, v) = d.call(
            "POST",
            "/v1/verifications",
            Some(serde_json::json!({"to": to})),
        );
        assert_eq!(st, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    };
    start("+447400300001");
    eventually("a gets its traffic", || {
        !sim_a.inbox("447400300001").is_empty()
    });

    // Disable "a": its traffic falls back to the default route, which is
    // disabled too, so it waits.
    let (code, out, err) = cli(&d, &cfg, &["smsc", "disable", "a"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("a disabled"), "{out}");
    eventually("a unbound", || {
        sim_a.get("/stats")["bound_now"].as_u64() == Some(0)
    });
    let waiting = start("+447400300002");
    std::thread::sleep(Duration::from_millis(1000));
    let (_, v) = d.call("GET", &format!("/v1/verifications/{waiting}"), None);
    assert_eq!(
        v["delivery"]["state"], "queued",
        "held while every route is disabled: {v}"
    );
    assert!(sim_a.inbox("447400300002").is_empty());

    // Enable "b": the held message goes out through it, exactly once.
    let (code, out, _) = cli(&d, &cfg, &["smsc", "enable", "b"]);
    assert_eq!(code, 0);
    assert!(out.contains("b enabled"), "{out}");
    eventually("b takes a's traffic", || {
        !sim_b.inbox("447400300002").is_empty()
    });
    let (code, out, _) = cli(&d, &cfg, &["smsc", "enable", "b"]);
    assert_eq!(code, 0);
    assert!(out.contains("already enabled"), "{out}");

    // Enable "a" again: its prefix goes back to it.
    cli(&d, &cfg, &["smsc", "enable", "a"]);
    eventually("a bound again", || {
        sim_a.get("/stats")["bound_now"].as_u64() == Some(1)
    });
    start("+447400300003");
    eventually("a serves its prefix again", || {
        !sim_a.inbox("447400300003").is_empty()
    });
    assert!(sim_b.inbox("447400300003").is_empty());
    assert_eq!(sim_b.inbox("447400300002").len(), 1);
    assert!(sim_a.inbox("447400300002").is_empty());

    let (code, _, err) = cli(&d, &cfg, &["smsc", "disable", "nope"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no SMSC named \"nope\" (configured: a, b)"),
        "{err}"
    );
    let (code, out, _) = cli(&d, &cfg, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("+4474003"), "routes shown: {out}");
}

fn signal(d: &Daemon, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &d.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn sighup_reloads_templates_and_sigterm_exits_cleanly() {
    let dir = scratch_dir();
    let cfg = dir.join("verigate.toml");
    let base = std::fs::read_to_string(workspace().join("conf/verigate.toml")).unwrap();
    std::fs::write(&cfg, &base).unwrap();
    let mut d = Daemon::start_in(dir, &cfg, LAB_PORTS, "");
    std::fs::write(
        &cfg,
        format!("{base}\n[verify.templates]\nen = \"RELOADED {{service}} code {{code}}\"\n"),
    )
    .unwrap();
    signal(&d, "-HUP");
    std::thread::sleep(Duration::from_millis(300));
    let (st, v) = d.call(
        "POST",
        "/v1/verifications",
        Some(serde_json::json!({"to": "+447400123460"})),
    );
    assert_eq!(st, 201, "{v}");
    let text = handset_text(&d.control, "447400123460", 0);
    assert!(text.starts_with("RELOADED Verigate Lab code "), "{text}");
    // SIGTERM: drains and exits 0.
    sigterm_and_wait(&mut d);
}

#[test]
fn sighup_applies_what_it_can_and_names_what_needs_a_restart() {
    let dir = scratch_dir();
    let cfg = dir.join("verigate.toml");
    let base = std::fs::read_to_string(workspace().join("conf/verigate.toml")).unwrap();
    std::fs::write(&cfg, &base).unwrap();
    let d = Daemon::start_logged(dir.clone(), &cfg, LAB_PORTS);
    let start = |to: &str| {
        d.call(
            "POST",
            "/v1/verifications",
            Some(serde_json::json!({"to": to})),
        )
        .0
    };
    assert_eq!(start("+447400123470"), 201);
    assert_eq!(start("+447400123471"), 201);
    // A limit (applied at once) and the store's path (only at a restart).
    let changed = base
        .replace("per_ip = \"600/1m\"", "per_ip = \"1/1m\"")
        .replace("path = \"./var/verigate.db\"", "path = \"./var/other.db\"");
    assert_ne!(changed, base);
    std::fs::write(&cfg, &changed).unwrap();
    signal(&d, "-HUP");
    let log = dir.join("daemon.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("needs a restart") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let applied = text
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .unwrap_or_else(|| panic!("no reload line in:\n{text}"));
    assert!(applied.contains("verify.limits.per_ip"), "{applied}");
    assert!(!applied.contains("store.path"), "{applied}");
    let restart = text
        .lines()
        .find(|l| l.contains("needs a restart"))
        .unwrap();
    assert!(restart.contains("store.path"), "{restart}");
    assert!(!restart.contains("per_ip"), "{restart}");
    // The new per-IP limit holds now (a fresh window may allow one more).
    let codes: Vec<u16> = (0..3).map(|i| start(&format!("+44740012348{i}"))).collect();
    assert!(codes.contains(&429), "{codes:?}");
    // The store did not move: the first verifications are still there.
    assert!(!dir.join("var/other.db").exists());
}

/// SIGTERM, then the daemon must exit 0 within 15 s.
fn sigterm_and_wait(d: &mut Daemon) {
    signal(d, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st:?}");
            break;
        }
        assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// POST /v1/verifications with the lab key, keeping headers for the checks.
fn call_raw(d: &Daemon, body: &str) -> HttpResponse {
    http_request(
        &d.api,
        "POST",
        "/v1/verifications",
        Some(body),
        Some("lab-key-change-me"),
    )
}

#[test]
fn every_rate_limit_answers_429_with_retry_after() {
    // (limit to tighten, first number, second number, wait for resend cooldown)
    // Windows of an hour: the limits are fixed windows, and two requests
    // either side of a minute's turn would both pass a 1/1m limit.
    let cases: [(&str, &str, &str, bool); 4] = [
        (
            "verify.limits.per_number=1/10m",
            "+447400123461",
            "+447400123461",
            true,
        ),
        (
            "verify.limits.per_service=1/1h",
            "+447400123462",
            "+8613800138000",
            false,
        ),
        (
            "verify.limits.per_prefix=1/1h",
            "+447400123463",
            "+447400123464",
            false,
        ),
        (
            "verify.limits.per_ip=1/1h",
            "+447400123465",
            "+447400123466",
            false,
        ),
    ];
    for (limit, first, second, cooldown) in cases {
        let d = Daemon::start(&[limit, "verify.resend_cooldown=1s"]);
        let r = call_raw(&d, &format!(r#"{{"to":"{first}"}}"#));
        assert_eq!(r.status, 201, "{limit}: {}", r.body);
        if cooldown {
            std::thread::sleep(Duration::from_millis(1100));
        }
        let r = call_raw(&d, &format!(r#"{{"to":"{second}"}}"#));
        assert_eq!(r.status, 429, "{limit}: {}", r.body);
        let retry: u64 = r
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(retry >= 1, "{limit}: no Retry-After in {}", r.head);
        assert!(
            r.body.contains("\"code\":\"rate_limited\""),
            "{limit}: {}",
            r.body
        );
    }
}

#[test]
fn bad_requests_get_clear_problems() {
    let d = Daemon::start(&[]);
    for (body, code) in [
        ("{not json", "invalid_json"),
        (r#"{"to":"+447400123467","colour":"red"}"#, "unknown_field"),
        (r#"{"to":"hello"}"#, "invalid_phone_number"),
        (
            r#"{"to":"+447400123467","channel":"pigeon"}"#,
            "unsupported_channel",
        ),
        (
            r#"{"to":"+447400123467","code_length":3}"#,
            "invalid_code_length",
        ),
    ] {
        let r = call_raw(&d, body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{}",
            r.head
        );
        assert!(
            r.body.contains(&format!("\"code\":\"{code}\"")),
            "{body}: {}",
            r.body
        );
    }
    let (st, resp) = http_auth(
        &d.api,
        "POST",
        "/v1/verifications",
        Some(r#"{"to":"+447400123467"}"#),
        "wrong-key",
    );
    assert_eq!(st, 401, "{resp}");
    assert!(resp.contains("unauthorized"), "{resp}");
}

#[test]
fn codes_not_sent_before_they_expire_are_recorded_as_expired() {
    let sim = verigate_e2e::Sim::start(&[]);
    let port = sim.port;
    let dir = scratch_dir();
    let cfg = deployment_config(&dir, port);
    let d = Daemon::start_in(dir, &cfg, &["verify.ttl=30s"], &sim.control);
    drop(sim);
    let (st, v) = d.call(
        "POST",
        "/v1/verifications",
        Some(serde_json::json!({"to": "+447400123468"})),
    );
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(31_500));
    let (_, v) = d.call("GET", &format!("/v1/verifications/{id}"), None);
    assert_eq!(v["status"], "expired", "{v}");
    assert_eq!(v["delivery"]["state"], "expired", "{v}");
    // When the SMSC returns, the dead code is not sent.
    let sim = verigate_e2e::Sim::start_on(&format!("127.0.0.1:{port}"), &[]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sim.inbox("447400123468").is_empty());
}

fn demo(dir: &std::path::Path, sets: &[String]) -> (i32, String, String) {
    let mut cmd = Command::new(bin("verigate"));
    cmd.current_dir(dir)
        .arg("demo")
        .arg("--config")
        .arg(workspace().join("conf/verigate.toml"));
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn demo_walks_through_a_verification_against_a_running_lab_daemon() {
    let d = Daemon::start(&[]);
    let (code, out, err) = demo(
        &d.dir,
        &[
            format!("api.listen={}", d.api),
            format!("lab.smsc.control={}", d.control),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!("using the daemon at {}", d.api)),
        "{out}"
    );
    for step in [
        "✔ 201 and status pending",
        "┃ Your Verigate Lab code is",
        "✔ delivery state delivered",
        "✔ approved: the user holds the number",
        "✔ 400 invalid_phone_number",
        "✔ max_attempts_reached",
        "✔ status canceled",
        "✔ 401 unauthorized",
        "Every step behaved as described",
    ] {
        assert!(out.contains(step), "missing {step:?} in:\n{out}");
    }
    assert!(!out.contains('✘'), "{out}");
}

#[test]
fn demo_starts_its_own_lab_daemon_when_none_answers() {
    let dir = scratch_dir();
    // Nothing listens on port 1: the demo starts a throw-away daemon.
    let (code, out, err) = demo(&dir, &["api.listen=127.0.0.1:1".into()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("starting a lab daemon for the demo"), "{out}");
    assert!(out.contains("Every step behaved as described"), "{out}");
    // It cleans up after itself: nothing written where it was run.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The secrets conf/example.toml reads from the environment, with values
/// a real deployment could use.
const EXAMPLE_ENV: [(&str, &str); 3] = [
    ("VERIGATE_SMSC_PASSWORD", "Zt8q2Wxk"),
    ("VERIGATE_GATEWAY_6258_K1", "k1-q8WvN3x7Lr2ZpK5tY9cB"),
    ("VERIGATE_EXAMPLE_API_KEY", "vg_live_q8WvN3x7Lr2ZpK5t"),
];

#[test]
fn run_refuses_lab_and_example_secrets_outside_lab_mode() {
    let dir = scratch_dir();
    let example = workspace().join("conf/example.toml");
    let verigate = |cmd: &str, env: &[(&str, &str)]| {
        let mut c = Command::new(bin("verigate"));
        c.current_dir(&dir).arg(cmd);
        if cmd == "run" {
            c.arg("--config");
        }
        c.arg(&example);
        for (k, _) in EXAMPLE_ENV {
            c.env_remove(k);
        }
        c.envs(env.iter().copied());
        c.output().unwrap()
    };
    // The example reads its secrets from the environment: unset, each is named.
    let out = verigate("run", &[]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "smsc[0].password_env = \"VERIGATE_SMSC_PASSWORD\": the environment variable is not set"
        ),
        "{err}"
    );
    // Set to the lab's published values (or too short), `run` refuses them by key.
    let out = verigate(
        "run",
        &[
            ("VERIGATE_SMSC_PASSWORD", "secret"),
            ("VERIGATE_GATEWAY_6258_K1", "123321"),
            ("VERIGATE_EXAMPLE_API_KEY", "q8WvN3x7"),
        ],
    );
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "smsc[0] (primary).password: is a lab or example value",
        "voice_gateway[0] (6258).k1: is a lab or example value",
        "service[0] (example).api_key: must be at least 16 characters outside lab mode",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "nothing started"
    );
    // With its own secrets the example is a valid deployment, and
    // check-config says how guessable its flash-call pool is.
    let out = verigate("check-config", &EXAMPLE_ENV);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("flash_call.pool[0] (GB): 1000 numbers; guess probability 5/1000 = 0.500% per verification"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_refuses_a_config_without_lab_mode() {
    let dir = scratch_dir();
    let out = Command::new(bin("verigate"))
        .current_dir(&dir)
        .envs(EXAMPLE_ENV)
        .args(["demo", "--config"])
        .arg(workspace().join("conf/example.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs lab mode"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_log_section_sets_format_and_filter() {
    let dir = scratch_dir();
    let mut child = Command::new(bin("verigate"))
        .current_dir(&dir)
        .env_remove("VERIGATE_LOG")
        .args(["run", "--config"])
        .arg(workspace().join("conf/verigate.toml"))
        .args([
            "--set",
            "api.listen=127.0.0.1:0",
            "--set",
            "api.admin_listen=127.0.0.1:0",
            "--set",
            "lab.smsc.listen=127.0.0.1:0",
            "--set",
            "lab.smsc.control=127.0.0.1:0",
            "--set",
            "lab.switch.listen=127.0.0.1:0",
            "--set",
            "lab.switch.control=127.0.0.1:0",
            "--set",
            "lab.bank.listen=127.0.0.1:0",
            "--set",
            "sip.listen=127.0.0.1:0",
            "--set",
            "log.format=json",
            "--set",
            "log.filter=verigate=info",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
    assert_eq!(v["level"], "INFO", "{line}");
    assert!(
        v["target"].as_str().unwrap_or("").starts_with("verigate"),
        "{line}"
    );
}

// ---- calls: voice and flash call against the lab switch

/// The calls handset `to` received, from the lab switch.
fn handset_calls(d: &Daemon, to: &str) -> Vec<serde_json::Value> {
    let (st, body) = http(&d.switch, "GET", &format!("/handsets/{to}/calls"), None);
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["calls"].as_array().cloned().unwrap_or_default()
}

fn set_handset(d: &Daemon, to: &str, behaviour: serde_json::Value) {
    let (st, body) = http(
        &d.switch,
        "PUT",
        &format!("/handsets/{to}"),
        Some(&behaviour.to_string()),
    );
    assert_eq!(st, 200, "{body}");
}

/// Waits for the handset's `nth` call to reach a final outcome.
fn finished_call(d: &Daemon, to: &str, nth: usize, within: Duration) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let calls = handset_calls(d, to);
        if let Some(c) = calls.get(nth) {
            let o = c["outcome"].as_str().unwrap_or_default();
            if !matches!(o, "ringing" | "answered") {
                return c.clone();
            }
        }
        assert!(
            start.elapsed() < within,
            "call {nth} to {to} did not finish in {within:?}: {calls:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for the verification's latest call to have an outcome.
fn call_outcome(d: &Daemon, id: &str) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let (_, v) = d.call("GET", &format!("/v1/verifications/{id}"), None);
        let state = v["call"]["state"].as_str().unwrap_or_default().to_string();
        if !matches!(state.as_str(), "queued" | "calling" | "") {
            return v["call"].clone();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The digits read after the last "your code is" the handset heard.
fn last_reading(call: &serde_json::Value) -> String {
    let prompts: Vec<&str> = call["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let last = prompts
        .iter()
        .rposition(|p| *p == "CodeIs")
        .expect("a reading");
    prompts[last + 1..]
        .iter()
        .take_while(|p| **p != "Repeat")
        .filter_map(|p| {
            p.strip_prefix("Digit(")?
                .strip_suffix(')')
                .map(str::to_string)
        })
        .collect()
}

fn start_call(d: &Daemon, to: &str, body: serde_json::Value) -> serde_json::Value {
    let mut b = body;
    b["to"] = serde_json::json!(to);
    let (st, v) = d.call("POST", "/v1/verifications", Some(b));
    assert_eq!(st, 201, "{v}");
    v
}

fn check(d: &Daemon, id: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    d.call("POST", &format!("/v1/verifications/{id}/check"), Some(body))
}

#[test]
fn a_voice_call_reads_the_code_in_english_and_mandarin_and_the_code_approves() {
    let d = Daemon::start(&[]);
    for (to, locale) in [("+447400300001", "en"), ("+8613988888888", "zh")] {
        let v = start_call(
            &d,
            to,
            serde_json::json!({"channel": "voice", "locale": locale}),
        );
        let id = v["id"].as_str().unwrap();
        // The worker may have claimed it before the answer was built.
        assert!(
            matches!(v["call"]["state"].as_str(), Some("queued" | "calling")),
            "{v}"
        );
        let call = finished_call(&d, to, 0, Duration::from_secs(60));
        assert_eq!(call["caller"], "+442071838750", "{call}");
        assert_eq!(call["readings"], 1, "{call}");
        let code = call["heard"].as_str().unwrap().to_string();
        assert_eq!(code.len(), 6, "the handset heard the whole code: {call}");
        // Read twice, then "press 1", then goodbye, then BYE from us.
        let prompts = call["prompts"].to_string();
        assert!(
            prompts.contains("Repeat") && prompts.ends_with("\"Goodbye\"]"),
            "{prompts}"
        );
        assert_eq!(last_reading(&call), code);
        assert_eq!(call["hung_up_by"], "caller");
        let c = call_outcome(&d, id);
        assert_eq!(c["state"], "answered", "{c}");
        assert_eq!(c["sip_code"], 200);
        let (st, r) = check(&d, id, serde_json::json!({"code": code}));
        assert_eq!((st, r["status"].as_str()), (200, Some("approved")), "{r}");
    }
    // Every packet's send lateness is in /metrics (the workers report each
    // second, and at once when they fall idle).
    let start = Instant::now();
    let count = loop {
        let (_, m) = http(&d.admin, "GET", "/metrics", None);
        let count: u64 = m
            .lines()
            .find_map(|l| l.strip_prefix("verigate_rtp_send_lateness_seconds_count "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if count > 1_000 || start.elapsed() > Duration::from_secs(5) {
            assert!(m.contains("verigate_rtp_packets_skipped_total 0"), "{m}");
            break count;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Two calls of ~20 s at 50 packets a second.
    assert!(count > 1_000, "{count} packets counted");
}

/// `POST /v1/voice-calls` (no API key: K2 proves the request).
fn gateway_request(d: &Daemon, body: serde_json::Value) -> (u16, serde_json::Value) {
    let (st, text) = http(&d.api, "POST", "/v1/voice-calls", Some(&body.to_string()));
    (st, serde_json::from_str(&text).unwrap_or_default())
}

/// Polls `GET /v1/voice-calls/{id}` until the call has an outcome.
fn gateway_outcome(d: &Daemon, id: &str) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let (st, text) = http(&d.api, "GET", &format!("/v1/voice-calls/{id}"), None);
        assert_eq!(st, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if !matches!(v["state"].as_str(), Some("queued" | "calling")) {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_voice_gateway_calls_only_for_a_right_k2_and_the_handset_hears_the_code() {
    let d = Daemon::start(&[]);
    // Service number 6258 is the seed's example: K1 "123321", legacy MD5.
    let seed = serde_json::json!({"tn": "13988888888", "vn": "365882", "sn": "6258",
                                  "k2": "241cf04a9dd186585ff23b9e7ae76493"});
    let mut forged = seed.clone();
    forged["k2"] = serde_json::json!("e588ad90b3c1aa7e78cdf221eac09efc");
    let (st, r) = gateway_request(&d, forged);
    assert_eq!((st, r["code"].as_str()), (403, Some("forbidden")), "{r}");
    let (st, r) = gateway_request(&d, seed.clone());
    assert_eq!(st, 202, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    let to = "+8613988888888";
    let call = finished_call(&d, to, 0, Duration::from_secs(60));
    assert_eq!(call["heard"], "365882", "the handset heard VN: {call}");
    assert_eq!(call["caller"], "+442071838750", "{call}");
    assert_eq!(call["hung_up_by"], "caller");
    let o = gateway_outcome(&d, &id);
    assert_eq!(
        (o["state"].as_str(), o["sip_code"].as_u64()),
        (Some("answered"), Some(200)),
        "{o}"
    );
    assert_eq!(o["locale"], "zh");
    // The same request again is answered with that call, not a new one.
    let (st, r) = gateway_request(&d, seed);
    assert_eq!((st, r["id"].as_str()), (200, Some(id.as_str())), "{r}");
    assert_eq!(r["state"], "answered");
    assert_eq!(
        handset_calls(&d, to).len(),
        1,
        "one call: the forged K2 placed none"
    );

    // 7001 is on HMAC-SHA256; a busy number shows as the call's outcome.
    let to = "+447400300077";
    set_handset(&d, to, serde_json::json!({"mode": "busy"}));
    let ts = now_secs();
    let k2 = verigate::voice_gateway::k2::compute(
        verigate::config::K2Scheme::HmacSha256,
        b"lab-k1-change-me-0123456789",
        to,
        "4711",
        ts,
    );
    let body = serde_json::json!({"tn": to, "vn": "4711", "sn": "7001", "k2": hex(&k2), "ts": ts});
    let (st, r) = gateway_request(&d, body);
    assert_eq!(
        (st, r["code"].as_str()),
        (400, Some("invalid_code")),
        "4 digits, not 6: {r}"
    );
    let k2 = verigate::voice_gateway::k2::compute(
        verigate::config::K2Scheme::HmacSha256,
        b"lab-k1-change-me-0123456789",
        to,
        "471147",
        ts,
    );
    let body = serde_json::json!({"tn": to, "vn": "471147", "sn": "7001", "k2": hex(&k2),
                                  "ts": ts, "locale": "en"});
    let (st, r) = gateway_request(&d, body);
    assert_eq!(st, 202, "{r}");
    let o = gateway_outcome(&d, r["id"].as_str().unwrap());
    assert_eq!(
        (o["state"].as_str(), o["sip_code"].as_u64()),
        (Some("busy"), Some(486)),
        "{o}"
    );
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn pressing_1_hears_the_code_again() {
    let d = Daemon::start(&[]);
    let to = "+447400300002";
    set_handset(
        &d,
        to,
        serde_json::json!({"mode": "answer", "keys": "1", "key_after_ms": 4000}),
    );
    // 4 s in, "your verification code is" has been heard whole (a press
    // during it cuts it short, and a cut prompt is not recognised).
    let v = start_call(&d, to, serde_json::json!({"channel": "voice"}));
    let call = finished_call(&d, to, 0, Duration::from_secs(60));
    assert_eq!(call["keys_sent"], "1");
    assert_eq!(call["readings"], 2, "read again after the key: {call}");
    let code = last_reading(&call);
    let (_, r) = check(
        &d,
        v["id"].as_str().unwrap(),
        serde_json::json!({"code": code}),
    );
    assert_eq!(r["status"], "approved", "{r}");
    let c = call_outcome(&d, v["id"].as_str().unwrap());
    assert_eq!(c["state"], "answered");
}

#[test]
fn a_busy_voice_call_reports_486_and_falls_back_to_sms() {
    let d = Daemon::start(&[]);
    let to = "+447400300003";
    set_handset(&d, to, serde_json::json!({"mode": "busy"}));
    let v = start_call(
        &d,
        to,
        serde_json::json!({"channel": "voice", "fallback": "sms"}),
    );
    let id = v["id"].as_str().unwrap();
    let c = call_outcome(&d, id);
    assert_eq!(
        (c["state"].as_str(), c["sip_code"].as_u64()),
        (Some("busy"), Some(486)),
        "{c}"
    );
    // The fallback SMS carries the same code.
    let text = handset_text(&d.control, "447400300003", 0);
    let (_, r) = check(&d, id, serde_json::json!({"code": code_in(&text)}));
    assert_eq!(r["status"], "approved", "{r}");
    // Without fallback: the verification stays pending, no SMS.
    let to = "+447400300004";
    set_handset(&d, to, serde_json::json!({"mode": "unreachable"}));
    let v = start_call(&d, to, serde_json::json!({"channel": "voice"}));
    let c = call_outcome(&d, v["id"].as_str().unwrap());
    assert_eq!(
        (c["state"].as_str(), c["sip_code"].as_u64()),
        (Some("no_answer"), Some(480)),
        "{c}"
    );
}

/// The SIP dialogs the daemon holds (its /metrics gauge).
fn sip_dialogs(d: &Daemon) -> i64 {
    let (st, body) = http(&d.admin, "GET", "/metrics", None);
    assert_eq!(st, 200);
    body.lines()
        .find_map(|l| l.strip_prefix("verigate_sip_dialogs "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sip_dialogs gauge in {body}"))
}

#[test]
fn a_503_pauses_the_trunk_for_its_retry_after_and_the_call_is_retried() {
    let d = Daemon::start(&[]);
    let to = "+447400300040";
    set_handset(
        &d,
        to,
        serde_json::json!({"mode": "overloaded", "retry_after_s": 2}),
    );
    let v = start_call(&d, to, serde_json::json!({"channel": "voice"}));
    let c = call_outcome(&d, v["id"].as_str().unwrap());
    // voice.max_attempts = 2: placed again after the Retry-After, then given up.
    assert_eq!(
        (c["state"].as_str(), c["sip_code"].as_u64()),
        (Some("failed"), Some(503)),
        "{c}"
    );
    let calls = handset_calls(&d, to);
    assert_eq!(calls.len(), 2, "{calls:?}");
    let gap = calls[1]["at"].as_i64().unwrap() - calls[0]["at"].as_i64().unwrap();
    assert!(
        gap >= 1900,
        "the second INVITE waited for Retry-After: {gap} ms"
    );
}

#[test]
fn a_tcp_trunk_carries_the_calls_and_no_dialog_is_left() {
    let d = Daemon::start(&["sip_trunk.0.transport=tcp"]);
    let to = "+447400300041";
    let v = start_call(&d, to, serde_json::json!({"channel": "flash_call"}));
    let call = finished_call(&d, to, 0, Duration::from_secs(30));
    assert_eq!(call["outcome"], "canceled", "{call}");
    assert_eq!(call_outcome(&d, v["id"].as_str().unwrap())["state"], "rang");
    let to = "+447400300042";
    set_handset(
        &d,
        to,
        serde_json::json!({"mode": "answer", "hangup_after_ms": 1500}),
    );
    let v = start_call(&d, to, serde_json::json!({"channel": "voice"}));
    let call = finished_call(&d, to, 0, Duration::from_secs(30));
    assert_eq!(call["hung_up_by"], "handset", "{call}");
    assert_eq!(
        call_outcome(&d, v["id"].as_str().unwrap())["state"],
        "answered"
    );
    eventually("no SIP dialog left", || sip_dialogs(&d) == 0);
}

#[test]
fn a_flash_call_rings_from_a_pool_number_is_cancelled_and_the_caller_approves() {
    let d = Daemon::start(&[]);
    let to = "+447400300005";
    let v = start_call(&d, to, serde_json::json!({"channel": "flash_call"}));
    let id = v["id"].as_str().unwrap();
    assert_eq!(v["flash_call"]["cli_prefix"], "+447400900", "{v}");
    assert_eq!(v["flash_call"]["report_digits"], 4);
    let call = finished_call(&d, to, 0, Duration::from_secs(30));
    assert_eq!(
        (call["outcome"].as_str(), call["status"].as_u64()),
        (Some("canceled"), Some(487)),
        "{call}"
    );
    let cli = call["caller"].as_str().unwrap().to_string();
    assert!(cli.starts_with("+447400900") && cli.len() == 13, "{cli}");
    assert_eq!(call["pai"], format!("<sip:{cli}@127.0.0.1;user=phone>"));
    assert_eq!(call_outcome(&d, id)["state"], "rang");
    // A wrong number is an attempt; the national form of the right one approves.
    let (st, r) = check(&d, id, serde_json::json!({"caller": "+447400900000x"}));
    assert_eq!((st, r["code"].as_str()), (400, Some("invalid_code")), "{r}");
    let wrong = if cli.ends_with('0') {
        "+447400900001"
    } else {
        "+447400900000"
    };
    let (_, r) = check(&d, id, serde_json::json!({"caller": wrong}));
    assert_eq!(
        (r["status"].as_str(), r["remaining_attempts"].as_u64()),
        (Some("pending"), Some(4)),
        "{r}"
    );
    let national = format!("0{}", &cli[3..]);
    let (_, r) = check(
        &d,
        id,
        serde_json::json!({"callers": ["Private", "+15550100", national]}),
    );
    assert_eq!(r["status"], "approved", "{r}");
    // The last digits alone approve another.
    let to = "+447400300006";
    let v = start_call(&d, to, serde_json::json!({"channel": "flash_call"}));
    let call = finished_call(&d, to, 0, Duration::from_secs(30));
    let cli = call["caller"].as_str().unwrap();
    let (_, r) = check(
        &d,
        v["id"].as_str().unwrap(),
        serde_json::json!({"code": &cli[cli.len() - 4..]}),
    );
    assert_eq!(r["status"], "approved", "{r}");
}

#[test]
fn a_held_ring_is_cancelled_as_soon_as_the_report_approves() {
    let d = Daemon::start(&["flash_call.ring_hold=30s"]);
    let to = "+447400300007";
    set_handset(&d, to, serde_json::json!({"mode": "ring"}));
    let v = start_call(&d, to, serde_json::json!({"channel": "flash_call"}));
    let id = v["id"].as_str().unwrap();
    let start = Instant::now();
    let cli = loop {
        if let Some(c) = handset_calls(&d, to).first() {
            break c["caller"].as_str().unwrap().to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    };
    let (_, r) = check(&d, id, serde_json::json!({"caller": cli}));
    assert_eq!(r["status"], "approved", "{r}");
    let call = finished_call(&d, to, 0, Duration::from_secs(10));
    assert_eq!(call["outcome"], "canceled", "{call}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "cancelled long before the 30 s hold"
    );
    assert_eq!(call_outcome(&d, id)["state"], "rang");
}

#[test]
fn a_200_racing_the_cancel_gets_ack_and_bye() {
    let d = Daemon::start(&[]);
    for (i, to) in ["+447400300010", "+447400300011", "+447400300012"]
        .iter()
        .enumerate()
    {
        // Answers right after ringing: our CANCEL and its 200 cross.
        set_handset(&d, to, serde_json::json!({"mode": "answer", "ring_ms": 0}));
        let v = start_call(&d, to, serde_json::json!({"channel": "flash_call"}));
        let c = call_outcome(&d, v["id"].as_str().unwrap());
        assert!(
            matches!(c["state"].as_str(), Some("answered" | "rang")),
            "call {i}: {c}"
        );
        let call = finished_call(&d, to, 0, Duration::from_secs(30));
        // Whichever won, the call is over on the handset too (BYE or 487).
        assert!(
            matches!(call["outcome"].as_str(), Some("ended" | "canceled")),
            "{call}"
        );
    }
}

#[test]
fn a_trunk_that_challenges_gets_digest_answers_md5_and_sha256() {
    for alg in ["MD5", "SHA-256"] {
        let algorithm = format!("lab.switch.algorithm={alg}");
        let d = Daemon::start(&[
            "lab.switch.username=verigate",
            "lab.switch.password=trunk-secret",
            &algorithm,
            "sip_trunk.0.username=verigate",
            "sip_trunk.0.password=trunk-secret",
        ]);
        let to = "+447400300020";
        let v = start_call(&d, to, serde_json::json!({"channel": "flash_call"}));
        finished_call(&d, to, 1, Duration::from_secs(30));
        let calls = handset_calls(&d, to);
        assert_eq!(calls[0]["outcome"], "challenged", "{alg}: {calls:?}");
        assert_eq!(calls[1]["authenticated"], true, "{alg}: {calls:?}");
        assert_eq!(calls[1]["outcome"], "canceled");
        assert_eq!(calls[0]["call_id"], calls[1]["call_id"], "same Call-ID");
        assert_eq!(call_outcome(&d, v["id"].as_str().unwrap())["state"], "rang");
    }
    // A wrong password: the second challenge fails the call with 407.
    let d = Daemon::start(&[
        "lab.switch.username=verigate",
        "lab.switch.password=trunk-secret",
        "sip_trunk.0.username=verigate",
        "sip_trunk.0.password=wrong-secret",
    ]);
    let v = start_call(
        &d,
        "+447400300021",
        serde_json::json!({"channel": "flash_call"}),
    );
    let c = call_outcome(&d, v["id"].as_str().unwrap());
    assert_eq!(
        (c["state"].as_str(), c["sip_code"].as_u64()),
        (Some("failed"), Some(407)),
        "{c}"
    );
}

#[test]
fn call_channels_refuse_bad_input_clearly() {
    let d = Daemon::start(&[]);
    let (st, v) = d.call(
        "POST",
        "/v1/verifications",
        Some(serde_json::json!({"to": "+447400300030", "channel": "voice", "locale": "fr"})),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("unsupported_locale")),
        "{v}"
    );
    assert!(v["detail"].as_str().unwrap().contains("en, zh"), "{v}");
    let (st, v) = d.call(
        "POST",
        "/v1/verifications",
        Some(serde_json::json!({"to": "12", "channel": "flash_call"})),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("invalid_phone_number")),
        "{v}"
    );
    let (st, v) = d.call(
        "POST",
        "/v1/verifications",
        Some(serde_json::json!({"to": "+447400300031", "channel": "sms", "fallback": "sms"})),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("invalid_field")),
        "{v}"
    );
    // Caller numbers for an SMS verification.
    let (_, v) = d.call(
        "POST",
        "/v1/verifications",
        Some(serde_json::json!({"to": "+447400300032"})),
    );
    let (st, r) = check(
        &d,
        v["id"].as_str().unwrap(),
        serde_json::json!({"callers": ["+447400900001"]}),
    );
    assert_eq!((st, r["code"].as_str()), (400, Some("invalid_code")), "{r}");
}

#[test]
fn a_call_ringing_at_shutdown_is_cancelled_and_placed_again_after_restart() {
    let dir = scratch_dir();
    let cfg = workspace().join("conf/verigate.toml");
    let mut d = Daemon::start_in(dir.clone(), &cfg, LAB_PORTS, "");
    let to = "+447400300050";
    set_handset(&d, to, serde_json::json!({"mode": "ring"}));
    let v = start_call(&d, to, serde_json::json!({"channel": "voice"}));
    let id = v["id"].as_str().unwrap().to_string();
    eventually("the handset rings", || {
        handset_calls(&d, to)
            .first()
            .is_some_and(|c| c["outcome"] == "ringing")
    });
    sigterm_and_wait(&mut d);
    let dir = d.kill9();
    // Restarted (with a fresh lab switch, whose handsets answer): the call
    // is placed again and the code it reads approves.
    let d = Daemon::start_in(dir, &cfg, LAB_PORTS, "");
    let call = finished_call(&d, to, 0, Duration::from_secs(60));
    let code = call["heard"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 6, "{call}");
    let (_, r) = check(&d, &id, serde_json::json!({"code": code}));
    assert_eq!(r["status"], "approved", "{r}");
}

#[test]
fn a_voice_locale_without_prompts_stops_the_start_naming_it() {
    let dir = scratch_dir();
    let out = Command::new(bin("verigate"))
        .current_dir(&dir)
        .args(["run", "--config"])
        .arg(workspace().join("conf/verigate.toml"))
        .args(["--set", r#"voice.locales=["en","zh","fr"]"#])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(71), "{err}");
    assert!(
        err.contains("voice.locales") && err.contains("\"fr\""),
        "{err}"
    );
    // Nothing was started: the lab ports were never bound.
    assert!(!err.contains("bound"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

// ---- MO-SMS login

#[test]
fn an_mo_sms_logs_the_phone_in_and_the_app_collects_the_session() {
    let d = Daemon::start(&[]);
    let (st, v) = d.call("POST", "/v1/mo-logins", Some(serde_json::json!({})));
    assert_eq!(st, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    assert_eq!(v["short_code"], "7799");
    let phone = "447400100200";
    // The phone sends the SMS; the simulated SMSC delivers it as deliver_sm.
    let send = |text: &str| {
        let body = serde_json::json!({"from": phone, "to": "7799", "text": text}).to_string();
        let (st, r) = http(&d.control, "POST", "/mo", Some(&body));
        assert_eq!(st, 202, "{r}");
    };
    send(v["sms_body"].as_str().unwrap());
    let (st, v) = d.call("GET", &format!("/v1/mo-logins/{token}?wait=15"), None);
    assert_eq!((st, v["status"].as_str()), (200, Some("completed")), "{v}");
    assert!(v["session"].as_str().unwrap().starts_with("vgs_"));
    assert_eq!(v["msisdn"], "+447400100200");
    assert_eq!(v["created"], true);
    // The new account's password reached the phone by SMS.
    assert!(handset_text(&d.control, phone, 0).contains("Password:"));
    // Collected once; the token sent again is answered by SMS ("login
    // <token>" retyped in lower case would be the same MO redelivered: the
    // redelivery key reads the text as a token is read).
    let (_, v) = d.call("GET", &format!("/v1/mo-logins/{token}"), None);
    assert_eq!(v["status"], "used");
    send(&token.to_lowercase());
    assert!(handset_text(&d.control, phone, 1).contains("already used"));
    // An unknown token and an SMS without one are answered too.
    send("LOGIN ZZZZ9999");
    assert!(handset_text(&d.control, phone, 2).contains("not valid"));
    send("what is this?");
    assert!(handset_text(&d.control, phone, 3).contains("send the code"));
    let (_, m) = http(&d.admin, "GET", "/metrics", None);
    for want in [
        "verigate_mo_total{outcome=\"login_completed\"} 1",
        "verigate_mo_total{outcome=\"used\"} 1",
        "verigate_mo_total{outcome=\"unknown\"} 1",
        "verigate_mo_total{outcome=\"no_token\"} 1",
    ] {
        assert!(m.contains(want), "missing {want} in metrics");
    }
}

/// The MO the phone sends to the lab's short code (the simulator delivers it).
fn phone_sends(d: &Daemon, from: &str, text: &str) -> serde_json::Value {
    let body = serde_json::json!({"from": from, "to": "7799", "text": text}).to_string();
    let (st, r) = http(&d.control, "POST", "/mo", Some(&body));
    assert_eq!(st, 202, "{r}");
    serde_json::from_str(&r).unwrap()
}

fn new_login(d: &Daemon) -> String {
    let (st, v) = d.call("POST", "/v1/mo-logins", Some(serde_json::json!({})));
    assert_eq!(st, 201, "{v}");
    v["token"].as_str().unwrap().to_string()
}

#[test]
fn a_long_mo_is_reassembled_and_a_redelivered_one_is_handled_once() {
    let d = Daemon::start(&[]);
    let phone = "447400100300";
    // A 215-character MO arrives in two parts; the token is found in the whole.
    let token = new_login(&d);
    let long = format!("LOGIN {token}{}", " ".repeat(200));
    assert_eq!(phone_sends(&d, phone, &long)["parts"], 2);
    let (_, v) = d.call("GET", &format!("/v1/mo-logins/{token}?wait=15"), None);
    assert_eq!(v["status"], "completed", "{v}");
    // The SMSC delivers an MO again (same sender, destination and text):
    // it is acknowledged and stored once, answered once.
    let unknown = "LOGIN ZZZZ8888";
    phone_sends(&d, phone, unknown);
    phone_sends(&d, phone, unknown);
    // The password and the answer may arrive in either order.
    handset_text(&d.control, phone, 1);
    std::thread::sleep(Duration::from_millis(500));
    let (_, inbox) = http(&d.control, "GET", &format!("/inbox/{phone}"), None);
    let inbox: serde_json::Value = serde_json::from_str(&inbox).unwrap();
    let texts: Vec<&str> = inbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 2, "password + one answer: {texts:?}");
    assert!(texts.iter().any(|t| t.contains("Password:")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("not valid")), "{texts:?}");
    let (_, m) = http(&d.admin, "GET", "/metrics", None);
    assert!(
        m.contains("verigate_mo_total{outcome=\"redelivered\"} 1"),
        "{m}"
    );
}

#[test]
fn a_crash_between_storing_an_mo_and_answering_it_loses_no_login() {
    let dir = scratch_dir();
    let cfg = workspace().join("conf/verigate.toml");
    let mut d = Daemon::start_in_env(
        dir,
        &cfg,
        LAB_PORTS,
        "",
        &[("VERIGATE_TEST_CRASH_AFTER_MO_STORED", "1")],
    );
    let token = new_login(&d);
    phone_sends(&d, "447400100400", &format!("LOGIN {token}"));
    // The daemon dies after the MO is stored, before its deliver_sm_resp.
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the crash hook did not fire");
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = d.kill9();
    // The MO was stored together with its completion (one transaction,
    // before the resp): after the restart the app's poll gets the session.
    let d = Daemon::start_in(dir, &cfg, LAB_PORTS, "");
    let start = Instant::now();
    let v = loop {
        let (_, v) = d.call("GET", &format!("/v1/mo-logins/{token}?wait=5"), None);
        if v["status"] != "pending" || start.elapsed() > Duration::from_secs(40) {
            break v;
        }
    };
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["msisdn"], "+447400100400");
}

#[test]
fn a_completed_mo_login_is_sent_to_the_service_webhook_signed() {
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let secret = "0123456789abcdef-secret";
    let d = Daemon::start(&[
        &format!(
            "service.0.webhook_url=http://{}/events",
            hook.local_addr().unwrap()
        ),
        &format!("service.0.webhook_secret={secret}"),
    ]);
    let token = new_login(&d);
    phone_sends(&d, "447400100500", &format!("LOGIN {token}"));
    let (head, body) = accept_webhook(&hook);
    let sig = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("verigate-signature")
                .then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no signature in {head}"));
    let now = verigate::clock::unix_ms() / 1000;
    verigate::webhook::verify_signature(secret.as_bytes(), sig, &body, now, 300)
        .unwrap_or_else(|e| panic!("bad signature {sig}: {e:?}"));
    assert!(
        verigate::webhook::verify_signature(b"another-secret-0000", sig, &body, now, 300).is_err()
    );
    let event: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["type"], "mo_login.completed", "{event}");
    assert_eq!(event["data"]["token"], token.as_str());
    assert_eq!(event["data"]["msisdn"], "+447400100500");
    assert_eq!(event["data"]["created"], true);
    assert!(
        !body.contains("vgs_"),
        "the session never leaves in a webhook"
    );
}

#[test]
fn a_national_sender_is_read_in_the_region_not_as_an_international_number() {
    let d = Daemon::start(&[]);
    let token = new_login(&d);
    // The SMSC sends the sender as a national number (TON 2).
    let body = serde_json::json!({"from": "07400100700", "ton": 2, "to": "7799",
                                  "text": format!("LOGIN {token}")})
    .to_string();
    let (st, r) = http(&d.control, "POST", "/mo", Some(&body));
    assert_eq!(st, 202, "{r}");
    let (_, v) = d.call("GET", &format!("/v1/mo-logins/{token}?wait=8"), None);
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["msisdn"], "+447400100700", "read in GB, the lab's region");
    // And the password SMS went to that number.
    assert!(handset_text(&d.control, "447400100700", 0).contains("Password:"));
}

// ---- number-binding registry

/// Polls `f` until it gives something (bounded).
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The README's walk in one lab daemon playing both roles: bind through
/// the app side, the registry lists it, the phone texts UNBIND ALL, the
/// app side's binding is gone and the account server got the webhook;
/// then a recycled number and the CAMARA check.
#[test]
fn the_lab_walk_binds_through_the_app_side_and_the_subscribers_unbind_reaches_the_account_server() {
    let d = Daemon::start(&[]);
    let lab = workspace().join("conf/verigate.toml");
    let number = "447400100960";
    let (st, v) = d.call(
        "POST",
        "/v1/bindings",
        Some(serde_json::json!({"account_ref": "alice", "to": format!("+{number}")})),
    );
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let code = code_in(&handset_text(&d.control, number, 0));
    let (st, v) = d.call(
        "POST",
        &format!("/v1/bindings/{id}/confirm"),
        Some(serde_json::json!({"code": code})),
    );
    assert_eq!(
        (st, v["binding"]["status"].as_str()),
        (200, Some("active")),
        "{v}"
    );
    // The app side's report reaches the registry (a signed PUT to itself).
    wait_for("the registry to list the binding", || {
        let (code, out, _) = cli(&d, &lab, &["registry", "show", &format!("+{number}")]);
        (code == 0 && out.starts_with("lab ")).then_some(())
    });
    // The phone unbinds everything through the simulated SMSC.
    let body = serde_json::json!({"from": number, "to": "7788", "text": "UNBIND ALL"}).to_string();
    let (st, r) = http(&d.control, "POST", "/mo", Some(&body));
    assert_eq!(st, 202, "{r}");
    assert!(handset_text(&d.control, number, 1)
        .starts_with("Your number is no longer bound to: Verigate Lab."));
    wait_for("the app side to drop the binding", || {
        let (_, v) = d.call("GET", "/v1/bindings?account_ref=alice", None);
        (v["bindings"].as_array().is_some_and(Vec::is_empty)).then_some(())
    });
    let hook = wait_for("the account server's webhook", || {
        let (_, text) = http(&d.control, "GET", "/hooks/lab", None);
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["hooks"]
            .as_array()?
            .iter()
            .find(|h| h["body"]["type"] == "binding.removed")
            .cloned()
    });
    assert_eq!(hook["body"]["data"]["account_ref"], "alice");
    assert_eq!(hook["body"]["data"]["reason"], "unbind");
    // Signed with the lab service's webhook secret, as the account server checks.
    verigate::webhook::verify_signature(
        b"lab-webhook-secret-0123",
        hook["signature"].as_str().unwrap(),
        hook["raw"].as_str().unwrap(),
        verigate::clock::unix_ms() / 1000,
        300,
    )
    .unwrap();
    // Recycled after binding again: the CAMARA check says so.
    let (_, v) = d.call(
        "POST",
        "/v1/bindings",
        Some(serde_json::json!({"account_ref": "alice", "to": format!("+{number}")})),
    );
    let id = v["id"].as_str().unwrap().to_string();
    let code = code_in(&handset_text(&d.control, number, 2));
    d.call(
        "POST",
        &format!("/v1/bindings/{id}/confirm"),
        Some(serde_json::json!({"code": code})),
    );
    wait_for("the second binding at the registry", || {
        let (_, out, _) = cli(&d, &lab, &["registry", "show", &format!("+{number}")]);
        out.starts_with("lab ").then_some(())
    });
    let (code, out, err) = cli(&d, &lab, &["registry", "recycle", &format!("+{number}")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("unbound from 1 app platform(s), 1 notified"),
        "{out}"
    );
    wait_for("the recycled binding to go", || {
        let (_, v) = d.call("GET", &format!("/v1/bindings/{id}"), None);
        (v["code"] == "not_found").then_some(())
    });
    // Records begin when the registry got its first app: today.
    let today = &verigate_codecs::time::rfc3339(verigate::clock::unix_ms())[..10];
    let check = |date: &str| {
        d.call(
            "POST",
            "/number-recycling/v0.2/check",
            Some(serde_json::json!({"phoneNumber": format!("+{number}"), "specifiedDate": date})),
        )
    };
    assert_eq!(
        check(today),
        (200, serde_json::json!({"phoneNumberRecycled": true}))
    );
    let (st, v) = check("2026-01-01");
    assert_eq!((st, v["code"].as_str()), (400, Some("OUT_OF_RANGE")), "{v}");
}

#[test]
fn a_subscriber_texts_the_registry_short_code_to_list_and_unbind_their_apps() {
    // The operator registers the app here (the lab config would at start).
    let d = Daemon::start(&["registry.apps=[]"]);
    let lab = workspace().join("conf/verigate.toml");
    let (code, _, err) = cli(
        &d,
        &lab,
        &[
            "registry",
            "apps",
            "add",
            "lab",
            "http://127.0.0.1:9/registry",
            "--secret",
            "lab-registry-secret-0123",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (st, v) = d.call("PUT", "/v1/registry/bindings/+447400100950/lab", None);
    assert_eq!(st, 201, "{v}");
    let mo = |text: &str| {
        let body =
            serde_json::json!({"from": "447400100950", "to": "7788", "text": text}).to_string();
        let (st, r) = http(&d.control, "POST", "/mo", Some(&body));
        assert_eq!(st, 202, "{r}");
    };
    mo("BINDINGS");
    assert_eq!(
        handset_text(&d.control, "447400100950", 0),
        "Your number is bound to: Verigate Lab."
    );
    mo("解绑全部");
    assert_eq!(
        handset_text(&d.control, "447400100950", 1),
        "您的号码已解除与以下应用的绑定：Verigate Lab，已通知对方。"
    );
    let (code, out, _) = cli(&d, &lab, &["registry", "show", "+447400100950"]);
    assert_eq!((code, out.as_str()), (0, "bound to no app platform\n"));
    // The app's notification waits in the outbox (nobody listens on port 9).
    let (_, out, _) = cli(&d, &lab, &["registry", "outbox"]);
    assert!(out.contains("unbind") && out.contains("lab"), "{out}");
}

#[test]
fn the_operator_registers_an_app_which_binds_a_number_and_recycling_purges_it() {
    // The operator registers the app here (the lab config would at start).
    let d = Daemon::start(&["registry.apps=[]"]);
    let lab = workspace().join("conf/verigate.toml");
    let run = |args: &[&str]| cli(&d, &lab, args);
    // A notify URL nobody listens on: the notification waits in the queue.
    let (code, out, err) = run(&[
        "registry",
        "apps",
        "add",
        "lab",
        "http://127.0.0.1:9/registry",
        "--secret",
        "lab-registry-secret-0123",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("app platform lab added"), "{out}");
    let (code, out, _) = run(&["registry", "apps", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("lab") && out.contains("yes"), "{out}");
    // The app binds a number with its API key (idempotent).
    let path = "/v1/registry/bindings/+447400100900/lab";
    let (st, v) = d.call("PUT", path, None);
    assert_eq!(st, 201, "{v}");
    let (st, _) = d.call("PUT", path, None);
    assert_eq!(st, 200);
    let (code, out, _) = run(&["registry", "show", "+447400100900"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("lab "), "{out}");
    // Bad input is named.
    let (code, _, err) = run(&[
        "registry",
        "recycle",
        "+447400100900",
        "--date",
        "2026-02-30",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a date such as"), "{err}");
    let (code, _, err) = run(&["registry", "recycle", "12"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not a phone number") || err.contains("not a valid phone number"),
        "{err}"
    );
    // Recycled on a past date: a binding made since is the new owner's.
    let (code, out, err) = run(&[
        "registry",
        "recycle",
        "+447400100900",
        "--date",
        "2026-12-01",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "recycled at 2026-12-01T00:00:00.000Z: unbound from 0 app platform(s), 0 notified"
        ),
        "{out}"
    );
    // Recycled now: the binding is gone, the app is told (one notification queued).
    let (code, out, err) = run(&["registry", "recycle", "+447400100900"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("unbound from 1 app platform(s), 1 notified"),
        "{out}"
    );
    // The notification waits for its app (nobody listens on port 9).
    let (code, out, err) = run(&["registry", "outbox", "--service", "lab"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("recycled") && out.contains("+**********00") && out.contains("lab"),
        "{out}"
    );
    // The nightly deactivation file: checked whole, one bad line and
    // nothing is recycled.
    let bad = d.dir.join("bad.csv");
    std::fs::write(
        &bad,
        "msisdn,deactivated_at\n+447400100901,2026-12-01\n+44740010,2026-12-01\n",
    )
    .unwrap();
    let (code, _, err) = run(&["registry", "import", bad.to_str().unwrap()]);
    assert_eq!(code, 65, "{err}");
    assert!(
        err.contains("1 bad line(s); nothing was recycled") && err.contains("line 3:"),
        "{err}"
    );
    let (st, _) = d.call("PUT", "/v1/registry/bindings/+447400100901/lab", None);
    assert_eq!(st, 201);
    let good = d.dir.join("good.csv");
    std::fs::write(&good, "# nightly\n+447400100901\n07400100902,2026-12-01\n").unwrap();
    let (code, out, err) = run(&["registry", "import", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "2 number(s) recycled: 1 binding(s) purged, 1 app notification(s) queued\n"
    );
    let body = serde_json::json!({"phoneNumber": "+447400100902", "specifiedDate": "2026-11-30"});
    let (st, v) = d.call("POST", "/number-recycling/v0.2/check", Some(body));
    assert_eq!(
        (st, v),
        (200, serde_json::json!({"phoneNumberRecycled": true}))
    );
    let (_, out, _) = run(&["registry", "show", "+447400100900"]);
    assert_eq!(out, "bound to no app platform\n");
}

// ---- carrier–bank relay: the subscriber directory

#[test]
fn the_operator_loads_the_subscriber_extract_and_sim_swap_answers_from_it() {
    let d = Daemon::start(&[]);
    let lab = workspace().join("conf/verigate.toml");
    let bad = d.dir.join("bad.csv");
    std::fs::write(
        &bad,
        "msisdn,imsi,status\n+447400100990,234150999999999,active\n+447400100991,2341,active\n",
    )
    .unwrap();
    let (code, _, err) = cli(
        &d,
        &lab,
        &["txrelay", "subscribers", "import", bad.to_str().unwrap()],
    );
    assert_eq!(code, 65, "{err}");
    assert!(
        err.contains("1 bad line(s); nothing was changed") && err.contains("line 3: imsi"),
        "{err}"
    );
    let good = d.dir.join("good.csv");
    std::fs::write(
        &good,
        "+447400100990,234150999999999,active,\n+447400100991,234150999999998,suspended,2026-11-30\n",
    )
    .unwrap();
    let (code, out, err) = cli(
        &d,
        &lab,
        &["txrelay", "subscribers", "import", good.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "2 line(s) added, 0 changed (0 SIM change(s) recorded)\n"
    );
    // The next extract: ...990 is on a new SIM.
    std::fs::write(&good, "+447400100990,234150777777777,active\n").unwrap();
    let (_, out, _) = cli(
        &d,
        &lab,
        &["txrelay", "subscribers", "import", good.to_str().unwrap()],
    );
    assert_eq!(
        out,
        "0 line(s) added, 1 changed (1 SIM change(s) recorded)\n"
    );
    let (code, out, _) = cli(&d, &lab, &["txrelay", "subscribers", "show", "07400100990"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("+447400100990  IMSI 234150777777777  active  SIM changed 20"),
        "{out}"
    );
    let (st, v) = d.call(
        "POST",
        "/sim-swap/v2/check",
        Some(serde_json::json!({"phoneNumber": "+447400100990", "maxAge": 1})),
    );
    assert_eq!((st, v), (200, serde_json::json!({"swapped": true})));
    let (st, v) = d.call(
        "POST",
        "/sim-swap/v2/retrieve-date",
        Some(serde_json::json!({"phoneNumber": "+447400100991"})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["latestSimChange"], "2026-11-30T00:00:00.000Z");
}

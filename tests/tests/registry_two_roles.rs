//! The number registry's two roles as two daemons: a carrier (the
//! registry, its short code on its own simulated SMSC) and an app (the
//! app side, its codes on its own). The app binds through the carrier;
//! the subscriber unbinds by SMS to the carrier; the carrier's
//! notifications reach the app, forged and replayed ones do not; a
//! notification pending when the carrier is killed -9 is delivered after.

use std::time::{Duration, Instant};
use verigate_e2e::{code_in, free_port, handset_text, http, workspace, Daemon, LAB_PORTS};

/// The secret the carrier signs acme's notifications with (shared with acme).
const SHARED: &str = "acme-carrier-shared-0123";
const NUMBER: &str = "447400100970";

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The carrier's settings: the registry, no app side of its own.
fn carrier_sets(port: u16) -> Vec<String> {
    let mut s: Vec<String> = LAB_PORTS.iter().map(|s| s.to_string()).collect();
    s.extend([
        format!("api.listen=127.0.0.1:{port}"),
        "registry.apps=[]".into(),
        "bindings=[]".into(),
    ]);
    s
}

/// The app's settings: its lab service reports to the carrier as `acme`.
fn app_sets(port: u16, carrier: u16, key: &str) -> Vec<String> {
    let mut s: Vec<String> = LAB_PORTS.iter().map(|s| s.to_string()).collect();
    s.extend([
        format!("api.listen=127.0.0.1:{port}"),
        "registry.enabled=false".into(),
        "registry.short_code=".into(),
        "registry.apps=[]".into(),
        format!("bindings.0.registry_url=http://127.0.0.1:{carrier}"),
        "bindings.0.registry_service=acme".into(),
        format!("bindings.0.registry_api_key={key}"),
        format!("bindings.0.registry_secret={SHARED}"),
    ]);
    s
}

fn start(dir: Option<std::path::PathBuf>, sets: &[String]) -> Daemon {
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let dir = dir.unwrap_or_else(verigate_e2e::scratch_dir);
    Daemon::start_in(dir, &workspace().join("conf/verigate.toml"), &sets, "")
}

/// Binds `account` to NUMBER through the app side (the code from the app's
/// SMSC, its `nth` SMS) and waits for the carrier to list it.
fn bind(app: &Daemon, carrier: &Daemon, account: &str, nth: usize) -> String {
    let (st, v) = app.call(
        "POST",
        "/v1/bindings",
        Some(serde_json::json!({"account_ref": account, "to": format!("+{NUMBER}")})),
    );
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let code = code_in(&handset_text(&app.control, NUMBER, nth));
    let (_, v) = app.call(
        "POST",
        &format!("/v1/bindings/{id}/confirm"),
        Some(serde_json::json!({"code": code})),
    );
    assert_eq!(v["binding"]["status"], "active", "{v}");
    let lab = workspace().join("conf/verigate.toml");
    wait_for("the carrier to list the binding", 15, || {
        let (_, out, _) = carrier.cli(&lab, &["registry", "show", &format!("+{NUMBER}")]);
        out.starts_with("acme ").then_some(())
    });
    id
}

/// The account server's webhooks of `kind` the app's sink holds.
fn account_hooks(app: &Daemon, kind: &str) -> Vec<serde_json::Value> {
    let (_, text) = http(&app.control, "GET", "/hooks/lab", None);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["hooks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["body"]["type"] == kind)
        .cloned()
        .collect()
}

#[test]
fn carrier_and_app_as_two_daemons_bind_unbind_refuse_forgeries_and_survive_a_kill() {
    let lab = workspace().join("conf/verigate.toml");
    let (cp, ap) = (free_port(), free_port());
    let carrier = start(None, &carrier_sets(cp));
    let (code, out, err) = carrier.cli(&lab, &["services", "add", "acme", "ACME Bank"]);
    assert_eq!(code, 0, "{err}");
    let key = out.split_whitespace().last().unwrap().to_string();
    let notify = format!("http://127.0.0.1:{ap}/v1/registry-events");
    let (code, _, err) = carrier.cli(
        &lab,
        &[
            "registry", "apps", "add", "acme", &notify, "--secret", SHARED,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let app = start(None, &app_sets(ap, cp, &key));

    // Bind through the app side: the carrier lists it.
    let id = bind(&app, &carrier, "alice", 0);

    // Notifications that are not the carrier's are refused.
    let body = serde_json::json!({"type": "unbind", "id": "evt_forged-acme",
        "data": {"msisdn": format!("+{NUMBER}"), "service": "acme"}})
    .to_string();
    let post = |sig: String| {
        verigate_e2e::http_with(
            &app.api,
            "POST",
            "/v1/registry-events",
            Some(&body),
            &[("Verigate-Signature", &sig)],
        )
    };
    let now = verigate::clock::unix_ms() / 1000;
    let forged = post(verigate::webhook::sign(
        b"guessed-secret-000000",
        now,
        &body,
    ));
    assert_eq!(forged.status, 403, "{}", forged.body);
    // A genuine one captured an hour ago and replayed.
    let replayed = post(verigate::webhook::sign(
        SHARED.as_bytes(),
        now - 3600,
        &body,
    ));
    assert_eq!(replayed.status, 403, "{}", replayed.body);
    assert!(replayed.body.contains("stale_request"), "{}", replayed.body);
    let (_, v) = app.call("GET", &format!("/v1/bindings/{id}"), None);
    assert_eq!(v["status"], "active", "nothing refused changed it: {v}");

    // The subscriber texts UNBIND ALL to the carrier's short code.
    let sms = serde_json::json!({"from": NUMBER, "to": "7788", "text": "UNBIND ALL"}).to_string();
    let (st, r) = http(&carrier.control, "POST", "/mo", Some(&sms));
    assert_eq!(st, 202, "{r}");
    assert!(handset_text(&carrier.control, NUMBER, 0).contains("ACME Bank"));
    wait_for("the app side to drop the binding", 15, || {
        let (_, v) = app.call("GET", &format!("/v1/bindings/{id}"), None);
        (v["code"] == "not_found").then_some(())
    });
    let hooks = wait_for("the account server's webhook", 15, || {
        let h = account_hooks(&app, "binding.removed");
        (!h.is_empty()).then_some(h)
    });
    assert_eq!(hooks[0]["body"]["data"]["account_ref"], "alice");
    assert_eq!(hooks[0]["body"]["data"]["reason"], "unbind");

    // Bound again; the app is down when the carrier recycles the number,
    // and the carrier is killed -9 with the notification still queued.
    let id = bind(&app, &carrier, "alice", 1);
    let app_dir = app.kill9();
    let (code, out, err) = carrier.cli(&lab, &["registry", "recycle", &format!("+{NUMBER}")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 notified"), "{out}");
    wait_for("a failed delivery in the outbox", 15, || {
        let (_, out, _) = carrier.cli(&lab, &["registry", "outbox"]);
        (out.contains("recycled") && out.contains("connect error")).then_some(())
    });
    let carrier_dir = carrier.kill9();
    let carrier = start(Some(carrier_dir), &carrier_sets(cp));
    let app = start(Some(app_dir), &app_sets(ap, cp, &key));
    // Delivered after both restarts (the queue's retry time may be a few
    // seconds out by now).
    wait_for("the recycled binding to go", 60, || {
        let (_, v) = app.call("GET", &format!("/v1/bindings/{id}"), None);
        (v["code"] == "not_found").then_some(())
    });
    let hooks = wait_for("the account server's recycled webhook", 15, || {
        let h: Vec<_> = account_hooks(&app, "binding.removed")
            .into_iter()
            .filter(|h| h["body"]["data"]["reason"] == "recycled")
            .collect();
        (!h.is_empty()).then_some(h)
    });
    assert_eq!(hooks.len(), 1, "told once: {hooks:?}");
    wait_for("the carrier's outbox to empty", 15, || {
        let (_, out, _) = carrier.cli(&lab, &["registry", "outbox"]);
        (out == "no notification waiting\n").then_some(())
    });
}

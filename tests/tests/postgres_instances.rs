//! Two lab daemons on one PostgreSQL database (the test script's server,
//! VERIGATE_TEST_PG_URL; under CI=true its absence is a failure), each with
//! its own simulated SMSC: a code started on one instance is sent once (by
//! whichever claims it), checked on the other, and "one pending
//! verification per number" holds across them.

use serde_json::{json, Value};
use std::process::Command;
use verigate_e2e::{code_in, http_with, Daemon, LAB_PORTS};

const KEY: &str = "Bearer lab-key-change-me";
const TO: &str = "+447400100377";

fn call(d: &Daemon, method: &str, path: &str, body: Value) -> (u16, Value) {
    let b = body.to_string();
    let r = http_with(&d.api, method, path, Some(&b), &[("Authorization", KEY)]);
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

#[test]
fn a_code_sent_through_one_instance_is_checked_on_another() {
    let Ok(pg) = std::env::var("VERIGATE_TEST_PG_URL") else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true and no VERIGATE_TEST_PG_URL: the test script must start PostgreSQL"
        );
        eprintln!("no VERIGATE_TEST_PG_URL: not run");
        return;
    };
    let schema = format!("two_{}", std::process::id());
    let st = Command::new("psql")
        .args([
            pg.as_str(),
            "-q",
            "-c",
            &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
        ])
        .status()
        .expect("psql");
    assert!(st.success());
    let url = format!("{pg}?options=-csearch_path%3D{schema}");
    // The lab config with its [store] on PostgreSQL.
    let lab =
        std::fs::read_to_string(verigate_e2e::workspace().join("conf/verigate.toml")).unwrap();
    let text = lab.replace(
        "[store]\nkind = \"sqlite\"\npath = \"./var/verigate.db\"",
        &format!("[store]\nkind = \"postgres\"\nurl = \"{url}\"\npool = 8"),
    );
    assert_ne!(text, lab, "the lab config's [store] section moved");
    // Instances of one deployment share the server secret: codes and API
    // keys are stored as keyed hashes under it.
    let shared = verigate_e2e::scratch_dir().join("server.secret");
    let text = text.replace(
        "server_secret_file = \"./var/server.secret\"",
        &format!("server_secret_file = {:?}", shared.display().to_string()),
    );
    let start = || {
        let dir = verigate_e2e::scratch_dir();
        let cfg = dir.join("pg.toml");
        std::fs::write(&cfg, &text).unwrap();
        Daemon::start_logged(dir, &cfg, LAB_PORTS)
    };
    let a = start();
    let b = start();

    let (st, v) = call(&a, "POST", "/v1/verifications", json!({"to": TO}));
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    // The same number through the other instance: the pending one, not a second.
    let (st, again) = call(&b, "POST", "/v1/verifications", json!({"to": TO}));
    assert!(st == 200 || st == 409 || st == 201, "{st} {again}");
    if st != 409 {
        assert_eq!(
            again["id"],
            id.as_str(),
            "one pending verification per number: {again}"
        );
    }
    // The shared outbox is sent by whichever instance claims it first:
    // the SMS reaches one of the two simulated SMSCs, once.
    let inbox = |d: &Daemon| -> Vec<Value> {
        let (_, body) =
            verigate_e2e::http(&d.control, "GET", &format!("/inbox/{}", &TO[1..]), None);
        serde_json::from_str::<Value>(&body).unwrap_or_default()["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let texts = loop {
        let got: Vec<Value> = inbox(&a).into_iter().chain(inbox(&b)).collect();
        if !got.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(500));
            break inbox(&a).into_iter().chain(inbox(&b)).collect::<Vec<_>>();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no SMS reached {TO} through either instance"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(texts.len(), 1, "sent once, by one instance: {texts:?}");
    let code = code_in(texts[0]["text"].as_str().unwrap());
    let (st, c) = call(
        &b,
        "POST",
        &format!("/v1/verifications/{id}/check"),
        json!({"code": code}),
    );
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["status"], "approved", "{c}");
    let (_, shown) = call(&a, "GET", &format!("/v1/verifications/{id}"), Value::Null);
    assert_eq!(shown["status"], "approved", "{shown}");
    drop((a, b));
    let _ = Command::new("psql")
        .args([
            pg.as_str(),
            "-q",
            "-c",
            &format!("DROP SCHEMA {schema} CASCADE"),
        ])
        .status();
}

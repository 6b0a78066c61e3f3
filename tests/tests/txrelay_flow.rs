//! The relay end to end as processes: a lab daemon and its bank simulator
//! run the key ceremony; the carrier's subscriber extract is loaded; a
//! front end opens a session (the carrier vouches for the terminal and
//! registers it with the bank under a DUKPT counter) and pays in it; the
//! bank's ledger shows the payment once, with the vouched-for IMSI and
//! number. Refusals: a wrong IMSI, a recent SIM swap, another front end's
//! session, a replayed payment (its first answer again, executed once),
//! and a kill -9 between acceptance and relay that loses nothing.

use serde_json::{json, Value};
use verigate_e2e::{http_request, http_with, BankSim, Daemon, LAB_PORTS};

const FRONT_END_KEY: &str = "lab-front-end-key-0123";

/// A lab daemon (the flow's settings on top of the lab's) in `dir`.
fn daemon(dir: Option<std::path::PathBuf>, extra: &[&str]) -> Daemon {
    let mut sets = LAB_PORTS.to_vec();
    sets.extend_from_slice(extra);
    let dir = dir.unwrap_or_else(verigate_e2e::scratch_dir);
    Daemon::start_logged(
        dir,
        &verigate_e2e::workspace().join("conf/verigate.toml"),
        &sets,
    )
}

fn admin(d: &Daemon, path: &str, body: &str) -> (u16, Value) {
    let token = std::fs::read_to_string(d.dir.join("var/admin.token")).unwrap();
    let r = http_request(&d.admin, "POST", path, Some(body), Some(token.trim()));
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

/// The ceremony through the admin API, the initial key imported, and the
/// subscriber extract loaded (one line swapped yesterday).
fn ready(d: &Daemon, bank: &str) -> BankSim {
    let bank = BankSim::at(bank);
    let (st, c) = bank.post("/ceremony", &json!({}));
    assert_eq!(st, 200, "{c}");
    for (i, slot) in ["A", "B"].iter().enumerate() {
        let comp = c["components"][i]["component"].as_str().unwrap();
        let (st, v) = admin(
            d,
            "/admin/txrelay/keys/components",
            &json!({"slot": slot, "component": comp}).to_string(),
        );
        assert_eq!(st, 200, "{v}");
    }
    let (st, v) = admin(
        d,
        "/admin/txrelay/keys/activate",
        &json!({"kcv": c["kcv"]}).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    let (_, ik) = bank.post("/initial-keys", &json!({"derivation_id": "90123456"}));
    let (st, v) = admin(
        d,
        "/admin/txrelay/keys/initial",
        &json!({"initial_key_id": ik["initial_key_id"], "wrapped": ik["wrapped"], "kcv": ik["kcv"]})
            .to_string(),
    );
    assert_eq!(st, 200, "{v}");
    let yesterday = verigate_codecs::time::rfc3339(verigate::clock::unix_ms() - 86_400_000);
    let extract = format!(
        "msisdn,imsi,status,sim_changed_at\n\
         +447400100990,234150999999999,active,\n\
         +447400100991,234150999999998,active,{yesterday}\n"
    );
    let token = std::fs::read_to_string(d.dir.join("var/admin.token")).unwrap();
    let r = http_request(
        &d.admin,
        "POST",
        "/admin/txrelay/subscribers/import",
        Some(&extract),
        Some(token.trim()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    bank
}

/// A front-end call: (status, JSON).
fn call(
    d: &Daemon,
    method: &str,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let auth = format!("Bearer {FRONT_END_KEY}");
    let mut h = vec![("Authorization", auth.as_str())];
    h.extend_from_slice(headers);
    let body = body.map(|b| b.to_string());
    let r = http_with(&d.api, method, path, body.as_deref(), &h);
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

fn open(d: &Daemon, imsi: &str, msisdn: &str) -> (u16, Value) {
    call(
        d,
        "POST",
        "/v1/tx/sessions",
        Some(json!({"imsi": imsi, "msisdn": msisdn, "bank": "lab-bank"})),
        &[],
    )
}

fn payment(amount: u64) -> Value {
    json!({"from_account": "alice", "to_account": "shop", "amount_minor": amount,
           "currency": "GBP", "reference": "order 7"})
}

#[test]
fn a_terminal_registers_pays_and_the_banks_ledger_shows_it_once() {
    let d = daemon(None, &[]);
    let bank = ready(&d, &d.bank);

    let (st, s) = open(&d, "234150999999999", "+447400100990");
    assert_eq!(st, 201, "{s}");
    assert_eq!(s["state"], "registered", "{s}");
    let ksn = s["ksn"].as_str().unwrap();
    assert!(ksn.starts_with("1234567890123456"), "{ksn}");
    let sid = s["id"].as_str().unwrap().to_string();
    let (_, regs) = bank.get("/registrations");
    assert_eq!(regs["registrations"][0]["registration_id"], sid.as_str());
    assert_eq!(regs["registrations"][0]["imsi"], "234150999999999");

    let path = format!("/v1/tx/sessions/{sid}/transactions");
    let (st, t) = call(
        &d,
        "POST",
        &path,
        Some(payment(1250)),
        &[("Idempotency-Key", "pay-1")],
    );
    assert_eq!(st, 201, "{t}");
    assert_eq!(t["state"], "executed", "{t}");
    assert_eq!(t["seq"], 1);
    let bank_ref = t["bank_ref"].as_str().unwrap().to_string();
    assert!(
        t["result_mac"].as_str().is_some_and(|m| m.len() == 32),
        "{t}"
    );
    // The same request again (the front end lost the answer): the same
    // transaction, not a second payment.
    let (st, again) = call(
        &d,
        "POST",
        &path,
        Some(payment(1250)),
        &[("Idempotency-Key", "pay-1")],
    );
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["id"], t["id"]);
    // The key with another payment: refused.
    let (st, v) = call(
        &d,
        "POST",
        &path,
        Some(payment(9)),
        &[("Idempotency-Key", "pay-1")],
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{v}"
    );
    // The bank declines what alice cannot pay; it is MACed all the same.
    let (st, t2) = call(&d, "POST", &path, Some(payment(10_000_000)), &[]);
    assert_eq!(st, 201);
    assert_eq!(
        (t2["state"].as_str(), t2["reason"].as_str()),
        (Some("declined"), Some("insufficient funds")),
        "{t2}"
    );
    assert_eq!(t2["seq"], 2);

    let (_, ledger) = bank.get("/ledger");
    let executed = ledger["executed"].as_array().unwrap();
    assert_eq!(executed.len(), 1, "executed once: {ledger}");
    assert_eq!(executed[0]["bank_ref"], bank_ref.as_str());
    assert_eq!(executed[0]["msisdn"], "+447400100990");
    assert_eq!(executed[0]["imsi"], "234150999999999");
    assert_eq!(executed[0]["amount_minor"], 1250);
    assert_eq!(bank.get("/accounts/shop").1["balance_minor"], 1250);
    let (st, list) = call(&d, "GET", &path, None, &[]);
    assert_eq!(st, 200);
    assert_eq!(list["transactions"].as_array().unwrap().len(), 2);
    let (st, one) = call(
        &d,
        "GET",
        &format!("/v1/tx/transactions/{}", t["id"].as_str().unwrap()),
        None,
        &[],
    );
    assert_eq!((st, one["state"].as_str()), (200, Some("executed")));

    // Refusals, each with its code.
    let (st, v) = open(&d, "234150999999998", "+447400100990");
    assert_eq!(
        (st, v["code"].as_str()),
        (403, Some("imsi_mismatch")),
        "{v}"
    );
    let (st, v) = open(&d, "234150999999998", "+447400100991");
    assert_eq!(
        (st, v["code"].as_str()),
        (403, Some("recent_sim_swap")),
        "{v}"
    );
    assert!(v["detail"].as_str().unwrap().contains("168 h"), "{v}");
    let (st, v) = open(&d, "234150999999999", "+447400100999");
    assert_eq!(
        (st, v["code"].as_str()),
        (404, Some("unknown_subscriber")),
        "{v}"
    );
    let (st, v) = call(
        &d,
        "POST",
        "/v1/tx/sessions",
        Some(json!({"imsi": "1", "msisdn": "+447400100990", "bank": "other"})),
        &[],
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("invalid_field")),
        "{v}"
    );
    let (st, v) = call(
        &d,
        "POST",
        &path,
        Some(json!({"from_account": "alice"})),
        &[],
    );
    assert_eq!(st, 400, "{v}");
    // Another key is not a front end's; a service's key is not either.
    let r = http_with(
        &d.api,
        "GET",
        &format!("/v1/tx/sessions/{sid}"),
        None,
        &[("Authorization", "Bearer lab-key-change-me")],
    );
    assert_eq!(r.status, 401, "{}", r.body);

    // A captured registration replayed at the bank under a new id cannot
    // be made (the id is sealed in); the same counter is refused: the
    // bank has seen it.
    let (_, regs) = bank.get("/registrations");
    assert_eq!(
        regs["registrations"].as_array().unwrap().len(),
        1,
        "refused sessions never reach the bank"
    );
    let (_, m) = verigate_e2e::http(&d.admin, "GET", "/metrics", None);
    for line in [
        r#"verigate_txrelay_outcomes_total{kind="session",outcome="registered"} 1"#,
        r#"verigate_txrelay_outcomes_total{kind="transaction",outcome="executed"} 1"#,
        r#"verigate_txrelay_outcomes_total{kind="transaction",outcome="declined"} 1"#,
        r#"verigate_txrelay_outcomes_total{kind="vouch",outcome="imsi_mismatch"} 1"#,
        r#"verigate_txrelay_outcomes_total{kind="vouch",outcome="recent_sim_swap"} 1"#,
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
}

#[test]
fn a_payment_accepted_before_a_kill_9_is_relayed_once_after_the_restart() {
    let dir = verigate_e2e::scratch_dir();
    // The bank outlives the daemon: it is the lab daemon's own simulator,
    // so this test runs its own bank and points the daemon at it.
    let bank = BankSim::start(&["alice=100000", "shop=0"]);
    let url = format!("txrelay.bank.url=http://{}", bank.addr);
    let fast = ["txrelay.answer_wait=1s", "txrelay.queue.lease=3s"];
    let d = daemon(Some(dir.clone()), &[&url, fast[0], fast[1]]);
    ready(&d, &bank.addr);
    let (st, s) = open(&d, "234150999999999", "+447400100990");
    assert_eq!((st, s["state"].as_str()), (201, Some("registered")), "{s}");
    let sid = s["id"].as_str().unwrap().to_string();
    let path = format!("/v1/tx/sessions/{sid}/transactions");
    // The bank stops answering (SIGSTOP): payments are accepted (202)
    // and wait in the queue; then the daemon is killed.
    let pid = bank.pid().unwrap().to_string();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success())
    };
    signal("-STOP");
    let mut ids = Vec::new();
    for i in 0..3 {
        let key = format!("crash-{i}");
        let (st, t) = call(
            &d,
            "POST",
            &path,
            Some(payment(100 + i)),
            &[("Idempotency-Key", &key)],
        );
        assert_eq!((st, t["state"].as_str()), (202, Some("queued")), "{t}");
        ids.push(t["id"].as_str().unwrap().to_string());
    }
    // A session opened now is stored but not yet registered, with a
    // payment waiting for it.
    let (st, late) = open(&d, "234150999999999", "+447400100990");
    assert_eq!(
        (st, late["state"].as_str()),
        (202, Some("registering")),
        "{late}"
    );
    let late_path = format!(
        "/v1/tx/sessions/{}/transactions",
        late["id"].as_str().unwrap()
    );
    let (st, t) = call(
        &d,
        "POST",
        &late_path,
        Some(payment(103)),
        &[("Idempotency-Key", "crash-late")],
    );
    assert_eq!((st, t["state"].as_str()), (202, Some("queued")), "{t}");
    ids.push(t["id"].as_str().unwrap().to_string());
    let dir = d.kill9();
    signal("-CONT");
    let d = daemon(Some(dir), &[&url, fast[0], fast[1]]);
    // The relayed requests that reached the bank before the kill are
    // answered with their first answers; each payment executes once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for id in &ids {
        loop {
            let (st, t) = call(&d, "GET", &format!("/v1/tx/transactions/{id}"), None, &[]);
            assert_eq!(st, 200, "{t}");
            if t["state"] == "executed" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{t}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    let (_, ledger) = bank.get("/ledger");
    let amounts = |of: &str| -> Vec<u64> {
        ledger["executed"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["registration_id"] == of)
            .map(|e| e["amount_minor"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        amounts(&sid),
        [100, 101, 102],
        "each once, in order: {ledger}"
    );
    assert_eq!(amounts(late["id"].as_str().unwrap()), [103], "{ledger}");
    assert_eq!(ledger["executed"].as_array().unwrap().len(), 4);
    let (_, regs) = bank.get("/registrations");
    assert_eq!(regs["registrations"].as_array().unwrap().len(), 2, "{regs}");
    // The same keys after the restart: the same transactions.
    let (st, t) = call(
        &d,
        "POST",
        &path,
        Some(payment(100)),
        &[("Idempotency-Key", "crash-0")],
    );
    assert_eq!((st, t["id"].as_str()), (200, Some(ids[0].as_str())));
}

#[test]
fn a_zone_key_rotation_under_load_loses_no_session_and_no_payment() {
    let d = daemon(None, &[]);
    let bank = ready(&d, &d.bank);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (done, paid) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let (mut sessions, mut payments) = (0, 0);
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) || sessions < 5 {
                        let (st, v) = open(&d, "234150999999999", "+447400100990");
                        assert_eq!((st, v["state"].as_str()), (201, Some("registered")), "{v}");
                        sessions += 1;
                        let path =
                            format!("/v1/tx/sessions/{}/transactions", v["id"].as_str().unwrap());
                        let (st, t) = call(&d, "POST", &path, Some(payment(1)), &[]);
                        assert_eq!((st, t["state"].as_str()), (201, Some("executed")), "{t}");
                        payments += 1;
                    }
                    (sessions, payments)
                })
            })
            .collect();
        // Meanwhile: the bank's new ceremony (the carrier still seals under
        // the old key), then the carrier's rotation with its overlap.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (_, c) = bank.post("/ceremony", &json!({}));
        std::thread::sleep(std::time::Duration::from_millis(300));
        for (i, slot) in ["A", "B"].iter().enumerate() {
            let comp = c["components"][i]["component"].as_str().unwrap();
            let (st, v) = admin(
                &d,
                "/admin/txrelay/keys/components",
                &json!({"slot": slot, "component": comp}).to_string(),
            );
            assert_eq!(st, 200, "{v}");
        }
        let (st, v) = admin(
            &d,
            "/admin/txrelay/keys/activate",
            &json!({"kcv": c["kcv"], "overlap": "10m"}).to_string(),
        );
        assert_eq!(st, 200, "{v}");
        std::thread::sleep(std::time::Duration::from_millis(500));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    assert!(done >= 20, "{done} sessions");
    let (_, regs) = bank.get("/registrations");
    assert_eq!(
        regs["registrations"].as_array().unwrap().len(),
        done,
        "every session registered once"
    );
    let (_, ledger) = bank.get("/ledger");
    assert_eq!(
        ledger["executed"].as_array().unwrap().len(),
        paid,
        "every payment executed once"
    );
    assert_eq!(bank.get("/accounts/shop").1["balance_minor"], paid as u64);
}

#[test]
fn a_subscriber_pays_by_sms_and_the_result_comes_back_by_sms() {
    let d = daemon(None, &[]);
    let bank = ready(&d, &d.bank);
    let mo = |from: &str, text: &str| {
        let sms = json!({"from": from, "to": "7733", "text": text}).to_string();
        let (st, r) = verigate_e2e::http(&d.control, "POST", "/mo", Some(&sms));
        assert_eq!(st, 202, "{r}");
    };
    // The network vouches for the sender; the directory gives its SIM.
    mo("447400100990", "PAY alice shop 2.50 lunch");
    let text = verigate_e2e::handset_text(&d.control, "447400100990", 0);
    assert!(
        text.starts_with("Paid 2.50 GBP from alice to shop. Bank ref bank_"),
        "{text}"
    );
    let (_, ledger) = bank.get("/ledger");
    let e = &ledger["executed"][0];
    assert_eq!(
        (
            e["amount_minor"].as_u64(),
            e["msisdn"].as_str(),
            e["imsi"].as_str()
        ),
        (Some(250), Some("+447400100990"), Some("234150999999999")),
        "{ledger}"
    );
    // What alice cannot pay: declined, by SMS.
    mo("447400100990", "pay alice shop 99999");
    let text = verigate_e2e::handset_text(&d.control, "447400100990", 1);
    assert_eq!(
        text,
        "Payment of 99999.00 GBP to shop was declined by the bank: insufficient funds."
    );
    // A SIM changed yesterday: refused at once, nothing sent to the bank.
    mo("447400100991", "PAY alice shop 1");
    let text = verigate_e2e::handset_text(&d.control, "447400100991", 0);
    assert!(
        text.contains("blocked for a while after a SIM change"),
        "{text}"
    );
    // A malformed one gets the usage.
    mo("447400100990", "PAY alice shop lots");
    let text = verigate_e2e::handset_text(&d.control, "447400100990", 2);
    assert!(
        text.starts_with("Not sent: \"lots\" is not an amount")
            && text.contains("text PAY <your account>"),
        "{text}"
    );
    let (_, ledger) = bank.get("/ledger");
    assert_eq!(ledger["executed"].as_array().unwrap().len(), 1, "{ledger}");
    assert_eq!(
        bank.get("/registrations").1["registrations"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

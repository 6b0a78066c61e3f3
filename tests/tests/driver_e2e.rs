//! The daemon's tokio SMPP driver against the simulator process: reconnect,
//! TX+RX binds, long MO reassembly, prefix routing.

use std::time::Duration;
use tokio::sync::mpsc;
use verigate::random::Random;
use verigate::smpp::{BindLayout, Router, SmppEvent, SmscClient, SmscConfig, SubmitError};
use verigate_codecs::smpp::{Address, SubmitSm};
use verigate_e2e::Sim;

fn cfg(sim: &Sim) -> SmscConfig {
    let mut c = SmscConfig::new("sim", "127.0.0.1", sim.port, "verigate", "secret");
    c.reconnect_min = Duration::from_millis(20);
    c.reconnect_max = Duration::from_millis(200);
    c
}

fn sm(to: &str, text: &str, dlr: bool) -> SubmitSm {
    SubmitSm {
        source: Address::new(5, 0, "Verigate"),
        dest: Address::international(to),
        registered_delivery: u8::from(dlr),
        short_message: bytes::Bytes::copy_from_slice(text.as_bytes()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_smsc_drops_the_connection() {
    let sim = Sim::start(&["--faults", r#"{"drop_every_n_pdus":12}"#]);
    let (tx, _rx) = mpsc::channel(1024);
    let mut c = cfg(&sim);
    c.session.window = 1;
    let client = SmscClient::start(c, tx, Random::os());
    client.wait_bound(Duration::from_secs(5)).await.unwrap();
    let mut accepted = 0;
    for i in 0..40 {
        // Retry a message whose outcome was lost with the connection.
        for _attempt in 0..5 {
            let r = client
                .submit_sm(sm("447700900001", &format!("m{i}"), false))
                .await;
            match r.await.unwrap() {
                Ok(_) => {
                    accepted += 1;
                    break;
                }
                Err(SubmitError::ConnectionLost) => continue,
                Err(e) => panic!("message {i}: {e}"),
            }
        }
    }
    assert_eq!(accepted, 40);
    let stats = sim.get("/stats");
    assert!(
        stats["binds"].as_u64().unwrap() >= 3,
        "reconnected: {stats}"
    );
    let texts: std::collections::HashSet<String> = sim
        .inbox("447700900001")
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 40);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_wait_while_the_smsc_is_down_and_go_out_when_it_returns() {
    // Reserve a port, start the client first, then the simulator on it.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let (tx, _rx) = mpsc::channel(16);
    let mut c = SmscConfig::new("late", "127.0.0.1", port, "verigate", "secret");
    c.reconnect_min = Duration::from_millis(50);
    c.reconnect_max = Duration::from_millis(100);
    let client = SmscClient::start(c, tx, Random::os());
    let pending = client
        .submit_sm(sm("447700900002", "queued while down", false))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listen = format!("127.0.0.1:{port}");
    let sim = Sim::start_on(&listen, &[]);
    let r = tokio::time::timeout(Duration::from_secs(5), pending).await;
    assert!(matches!(r, Ok(Ok(Ok(_)))), "{r:?}");
    assert_eq!(sim.inbox("447700900002").len(), 1);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_and_rx_binds_split_submit_and_receipts() {
    let sim = Sim::start(&[]);
    let (tx, mut rx) = mpsc::channel(1024);
    let mut c = cfg(&sim);
    c.layout = BindLayout::TxRx { tx: 2, rx: 1 };
    let client = SmscClient::start(c, tx, Random::os());
    client.wait_bound(Duration::from_secs(5)).await.unwrap();
    // Wait for all three binds.
    for _ in 0..50 {
        if client.bound_count() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client.bound_count(), 3);
    let mut ids = Vec::new();
    for i in 0..10 {
        let r = client
            .submit_sm(sm("447700900003", &format!("d{i}"), true))
            .await;
        ids.push(r.await.unwrap().unwrap().message_id);
    }
    let mut got = 0;
    while got < 10 {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(SmppEvent::Dlr { dlr, ack, .. })) => {
                assert!(ids
                    .iter()
                    .any(|id| verigate_codecs::dlr::ids_match(id, &dlr.message_id)));
                ack.accept();
                got += 1;
            }
            other => panic!("expected a receipt, got {other:?}"),
        }
    }
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_part_of_a_long_mo_is_an_event_answered_on_its_own() {
    let sim = Sim::start(&[]);
    let (tx, mut rx) = mpsc::channel(16);
    let client = SmscClient::start(cfg(&sim), tx, Random::os());
    client.wait_bound(Duration::from_secs(5)).await.unwrap();
    let text = "LOGIN 7Q2X9 ".repeat(30) + "€ [done]";
    let (status, body) = sim.send(
        "POST",
        "/mo",
        &serde_json::json!({"from": "+447700900004", "to": "12345", "text": text}),
    );
    assert_eq!(status, 202, "{body}");
    let parts: serde_json::Value = serde_json::from_str(&body).unwrap();
    let n = parts["parts"].as_u64().unwrap() as usize;
    assert!(n >= 3);
    let mut got = Vec::new();
    let mut acks = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(SmppEvent::MoPart { part, ack, .. })) => {
                assert_eq!(
                    (part.from.as_str(), part.to.as_str()),
                    ("447700900004", "12345")
                );
                assert_eq!(usize::from(part.total), n);
                got.push(part);
                acks.push(ack);
            }
            other => panic!("expected an MO part, got {other:?}"),
        }
    }
    // Answering one part needs none of the others: its resp goes at once.
    acks.remove(0).accept();
    let sim = &sim;
    let resps = |want: u64| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let st = sim.get("/stats");
            if st["deliver_sm_resps_received"].as_u64() == Some(want) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{st}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    resps(1).await;
    for a in acks {
        a.accept();
    }
    resps(n as u64).await;
    // Put together in order, the parts are the text.
    got.sort_by_key(|p| p.seq);
    let joined = verigate_codecs::text::assemble(
        got.into_iter()
            .map(|p| (p.data_coding, p.payload))
            .collect(),
    );
    assert_eq!(joined.text, text);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mo_sent_as_data_sm_is_answered_with_data_sm_resp() {
    let sim = Sim::start(&[]);
    let (tx, mut rx) = mpsc::channel(16);
    let client = SmscClient::start(cfg(&sim), tx, Random::os());
    client.wait_bound(Duration::from_secs(5)).await.unwrap();
    for (i, answer) in ["accept", "retry"].into_iter().enumerate() {
        let (status, body) = sim.send(
            "POST",
            "/mo",
            &serde_json::json!({"from": "+447700900006", "to": "12345", "text": format!("LOGIN {i}"), "data_sm": true}),
        );
        assert_eq!(status, 202, "{body}");
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(SmppEvent::Mo { text, ack, .. })) => {
                assert_eq!(text, format!("LOGIN {i}"));
                if answer == "accept" {
                    ack.accept();
                } else {
                    ack.retry_later();
                }
            }
            other => panic!("expected an MO, got {other:?}"),
        }
    }
    // Both answers (OK and the temporary error) are data_sm_resp.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let st = sim.get("/stats");
        if st["data_sm_resps_received"].as_u64() == Some(2) {
            assert_eq!(st["deliver_sm_resps_received"].as_u64(), Some(0), "{st}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_given_up_while_the_bind_is_pending_is_never_sent() {
    // The SMSC accepts TCP at once but answers the bind only after 800 ms.
    let sim = Sim::start(&["--faults", r#"{"bind_delay_ms":800}"#]);
    let (tx, _rx) = mpsc::channel(16);
    let client = SmscClient::start(cfg(&sim), tx, Random::os());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The caller gives this one up (as the outbox does after its give-up
    // time) before the bind succeeds…
    let abandoned = client
        .submit_sm(sm("447700900007", "given up", false))
        .await;
    drop(abandoned);
    // …and keeps waiting for this one.
    let kept = client.submit_sm(sm("447700900008", "kept", false)).await;
    let r = tokio::time::timeout(Duration::from_secs(5), kept)
        .await
        .expect("kept submit answered")
        .expect("reply");
    assert!(r.is_ok(), "{r:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sim.inbox("447700900008").len(), 1);
    assert!(
        sim.inbox("447700900007").is_empty(),
        "a submit nobody waits for any more was sent"
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_picks_the_smsc_by_longest_prefix() {
    let uk = Sim::start(&[]);
    let other = Sim::start(&[]);
    let (tx, _rx) = mpsc::channel(16);
    let mut router = Router::new();
    let mut a = cfg(&uk);
    a.name = "uk".into();
    let mut b = cfg(&other);
    b.name = "default".into();
    router.add(
        SmscClient::start(a, tx.clone(), Random::os()),
        &["+44".to_string()],
    );
    router.add(SmscClient::start(b, tx, Random::os()), &[]);
    for c in router.smscs() {
        c.wait_bound(Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(router.route("+447700900005").unwrap().name(), "uk");
    assert_eq!(router.route("4915112345678").unwrap().name(), "default");
    let c = router.route("+447700900005").unwrap();
    c.submit_sm(sm("447700900005", "hi", false))
        .await
        .await
        .unwrap()
        .unwrap();
    assert_eq!(uk.inbox("447700900005").len(), 1);
    assert_eq!(other.inbox("447700900005").len(), 0);
    for c in router.smscs() {
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_smsc_is_detected_by_enquire_link_and_rebound() {
    let sim = Sim::start(&["--faults", r#"{"enquire_link_silence":true}"#]);
    let (tx, _rx) = mpsc::channel(16);
    let mut c = cfg(&sim);
    c.session.enquire_link_interval = Duration::from_millis(150);
    c.session.response_timeout = Duration::from_millis(150);
    let client = SmscClient::start(c, tx, Random::os());
    client.wait_bound(Duration::from_secs(5)).await.unwrap();
    // Idle long enough for enquire_link to go unanswered twice over.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stats = sim.get("/stats");
    assert!(
        stats["binds"].as_u64().unwrap() >= 2,
        "a dead link is dropped and rebound: {stats}"
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_responses_time_out_with_unknown_outcome() {
    let sim = Sim::start(&["--faults", r#"{"response_delay_ms":600}"#]);
    let (tx, _rx) = mpsc::channel(16);
    let mut c = cfg(&sim);
    c.session.response_timeout = Duration::from_millis(200);
    let client = SmscClient::start(c, tx, Random::os());
    client.wait_bound(Duration::from_secs(5)).await.unwrap();
    let r = client.submit_sm(sm("447700900006", "slow", false)).await;
    assert_eq!(r.await.unwrap(), Err(SubmitError::Timeout));
    // The late response is ignored and the session stays usable.
    let (status, _) = sim.send("PUT", "/faults", &serde_json::json!({}));
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = client.submit_sm(sm("447700900006", "fast", false)).await;
    assert!(r.await.unwrap().is_ok());
    assert_eq!(client.bound_count(), 1);
    client.shutdown().await;
}

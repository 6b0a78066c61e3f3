//! The relay's sessions and transactions: a session's transactions wait
//! for its registration and go out one at a time in order; idempotency
//! keys answer with the first transaction; a refused session refuses its
//! queued transactions; every outcome is fenced by its lease.

use super::*;

/// Every check of this domain, on `store`.
pub async fn run<S: SmsPath + TxQueueStore>(store: &S) {
    order_and_outcomes(store).await;
    refusals_and_fences(store).await;
}

fn session(id: &str, front_end: &str, at: Millis) -> TxSession {
    TxSession {
        id: id.into(),
        front_end: front_end.into(),
        bank: "bank".into(),
        msisdn: "+447700900123".into(),
        imsi: "234150999999999".into(),
        ksn: "123456789012345600000001".into(),
        issued_at: at,
        expires_at: at + TTL,
        state: SessionState::Registering,
        error_code: None,
        error: None,
        attempts: 0,
        next_attempt_at: at,
    }
}

fn new_tx(id: &str, session: &str, key: Option<&str>, at: Millis) -> NewTransaction {
    NewTransaction {
        id: id.into(),
        session_id: session.into(),
        front_end: "fe".into(),
        idempotency_key: key.map(Into::into),
        request_hash: format!("hash-{id}"),
        transfer: format!("{{\"n\":\"{id}\"}}"),
        at,
    }
}

fn added(a: TxAdded) -> TxTransaction {
    match a {
        TxAdded::Added(t) => t,
        other => panic!("expected Added, got {other:?}"),
    }
}

fn answered(state: TxState, bank_ref: &str) -> TxOutcome {
    TxOutcome::Answered {
        state,
        reason: None,
        bank_ref: Some(bank_ref.into()),
        mac: Some("MAC".into()),
    }
}

/// Sessions register before their transactions go; a session's
/// transactions are claimed lowest first, one at a time.
pub async fn order_and_outcomes<S: SmsPath + TxQueueStore>(store: &S) {
    let t = T_TXQUEUE;
    let lease = 30_000;
    store
        .create_tx_session(&session("txs_a", "fe", t))
        .await
        .unwrap();
    let a1 = added(
        store
            .add_tx_transaction(&new_tx("txt_a1", "txs_a", Some("k1"), t))
            .await
            .unwrap(),
    );
    let a2 = added(
        store
            .add_tx_transaction(&new_tx("txt_a2", "txs_a", None, t))
            .await
            .unwrap(),
    );
    assert_eq!((a1.seq, a2.seq), (1, 2), "sequence numbers in order from 1");
    assert_eq!(a1.state, TxState::Queued);
    assert!(
        store
            .claim_tx_transactions(t, 10, lease)
            .await
            .unwrap()
            .is_empty(),
        "no transaction goes before its session is registered"
    );
    let s = store.claim_tx_sessions(t, 10, lease).await.unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].job.attempts, 1, "the claim counts the attempt");
    assert!(
        store
            .claim_tx_sessions(t, 10, lease)
            .await
            .unwrap()
            .is_empty(),
        "a leased registration is not handed out twice"
    );
    store
        .finish_tx_session(&s[0].lease, &answered(TxState::Executed, "-"), t)
        .await
        .unwrap();
    assert_eq!(
        store.get_tx_session("txs_a").await.unwrap().unwrap().state,
        SessionState::Registered
    );
    let j = store.claim_tx_transactions(t, 10, lease).await.unwrap();
    assert_eq!(j.len(), 1, "one message of a session at a time: {j:?}");
    assert_eq!(j[0].job.tx.id, "txt_a1", "the lowest first");
    assert_eq!(j[0].job.session.ksn, "123456789012345600000001");
    assert!(
        store
            .claim_tx_transactions(t, 10, lease)
            .await
            .unwrap()
            .is_empty(),
        "the next waits while the first is held"
    );
    // A failed attempt: retried later, still blocking the second.
    store
        .retry_tx_transaction(&j[0].lease, "bank unreachable", t + 1000)
        .await
        .unwrap();
    assert!(store
        .claim_tx_transactions(t + 500, 10, lease)
        .await
        .unwrap()
        .is_empty());
    let j = store
        .claim_tx_transactions(t + 1000, 10, lease)
        .await
        .unwrap();
    assert_eq!(j.len(), 1);
    assert_eq!(
        (j[0].job.tx.id.as_str(), j[0].job.tx.attempts),
        ("txt_a1", 2)
    );
    store
        .finish_tx_transaction(
            &j[0].lease,
            &answered(TxState::Executed, "bank_1"),
            None,
            t + 1001,
        )
        .await
        .unwrap();
    let done = store.get_tx_transaction("txt_a1").await.unwrap().unwrap();
    assert_eq!(done.state, TxState::Executed);
    assert_eq!(done.bank_ref.as_deref(), Some("bank_1"));
    assert_eq!(done.result_mac.as_deref(), Some("MAC"));
    assert_eq!(done.finished_at, Some(t + 1001));
    let j = store
        .claim_tx_transactions(t + 1002, 10, lease)
        .await
        .unwrap();
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].job.tx.id, "txt_a2", "then the next");
    // The MO channel's result SMS goes in the same write.
    create_service(store, "txq-replies", t).await;
    let mut reply = message(
        "msg_txq_reply",
        "-",
        "txq-replies",
        "+447700900123",
        t + 1003,
    );
    reply.verification_id = None;
    reply.from = "7733".into();
    store
        .finish_tx_transaction(
            &j[0].lease,
            &answered(TxState::Declined, "-"),
            Some(&reply),
            t + 1003,
        )
        .await
        .unwrap();
    let queued = store
        .get_message("msg_txq_reply")
        .await
        .unwrap()
        .expect("the reply is queued");
    assert_eq!(
        (queued.to.as_str(), queued.state),
        ("+447700900123", MessageState::Queued)
    );
    assert_eq!(
        store
            .find_tx_transaction("fe", "k1")
            .await
            .unwrap()
            .map(|t| t.id),
        Some("txt_a1".to_string()),
        "found by its idempotency key"
    );
    assert_eq!(
        store.find_tx_transaction("fe2", "k1").await.unwrap(),
        None,
        "per front end"
    );
    // The idempotency key answers with the first transaction, even done.
    match store
        .add_tx_transaction(&new_tx("txt_a3", "txs_a", Some("k1"), t + 2000))
        .await
        .unwrap()
    {
        TxAdded::Existing(had) => {
            assert_eq!(had.id, "txt_a1");
            assert_eq!(had.state, TxState::Executed);
        }
        other => panic!("a reused key finds its transaction, got {other:?}"),
    }
    let all = store.tx_transactions_of("txs_a").await.unwrap();
    assert_eq!(
        all.iter()
            .map(|t| (t.id.as_str(), t.seq))
            .collect::<Vec<_>>(),
        [("txt_a1", 1), ("txt_a2", 2)]
    );
    // Another front end's session is not found; an expired one is closed.
    let mut other = new_tx("txt_x", "txs_a", None, t + 2000);
    other.front_end = "fe2".into();
    assert_eq!(
        store.add_tx_transaction(&other).await.unwrap(),
        TxAdded::NoSession
    );
    assert_eq!(
        store
            .add_tx_transaction(&new_tx("txt_x", "txs_none", None, t))
            .await
            .unwrap(),
        TxAdded::NoSession
    );
    assert!(matches!(
        store
            .add_tx_transaction(&new_tx("txt_x", "txs_a", None, t + TTL))
            .await
            .unwrap(),
        TxAdded::SessionClosed(_)
    ));
}

/// A refusal refuses the session's queued transactions; a holder whose
/// claim was taken over records nothing.
pub async fn refusals_and_fences<S: SmsPath + TxQueueStore>(store: &S) {
    let t = T_TXQUEUE + 10_000_000;
    let lease = 30_000;
    store
        .create_tx_session(&session("txs_b", "fe", t))
        .await
        .unwrap();
    added(
        store
            .add_tx_transaction(&new_tx("txt_b1", "txs_b", None, t))
            .await
            .unwrap(),
    );
    let first = store.claim_tx_sessions(t, 10, lease).await.unwrap();
    assert_eq!(first.len(), 1);
    // Its holder stalled past the lease: another claim takes it over.
    let second = store.claim_tx_sessions(t + lease, 10, lease).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].job.attempts, 2);
    assert!(matches!(
        store
            .finish_tx_session(
                &first[0].lease,
                &answered(TxState::Executed, "-"),
                t + lease
            )
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    assert!(matches!(
        store
            .retry_tx_session(&first[0].lease, "late", t + lease)
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    assert_eq!(
        store
            .extend_tx_sessions(
                &[first[0].lease.clone(), second[0].lease.clone()],
                t + 2 * lease
            )
            .await
            .unwrap(),
        [Extension::TakenOver, Extension::Held]
    );
    store
        .finish_tx_session(
            &second[0].lease,
            &TxOutcome::Refused {
                code: "stale".into(),
                detail: "too late".into(),
            },
            t + lease + 1,
        )
        .await
        .unwrap();
    let s = store.get_tx_session("txs_b").await.unwrap().unwrap();
    assert_eq!(s.state, SessionState::Refused);
    assert_eq!(
        (s.error_code.as_deref(), s.error.as_deref()),
        (Some("stale"), Some("too late"))
    );
    let b1 = store.get_tx_transaction("txt_b1").await.unwrap().unwrap();
    assert_eq!(
        b1.state,
        TxState::Refused,
        "its queued transactions go with it"
    );
    assert_eq!(b1.error_code.as_deref(), Some("session_refused"));
    assert!(matches!(
        store.add_tx_transaction(&new_tx("txt_b2", "txs_b", None, t + lease + 2)).await.unwrap(),
        TxAdded::SessionClosed(s) if s.state == SessionState::Refused
    ));
    assert_eq!(
        store
            .extend_tx_sessions(&[second[0].lease.clone()], t + 3 * lease)
            .await
            .unwrap(),
        [Extension::Finished]
    );
    // A transaction's fence.
    store
        .create_tx_session(&session("txs_c", "fe", t))
        .await
        .unwrap();
    added(
        store
            .add_tx_transaction(&new_tx("txt_c1", "txs_c", None, t))
            .await
            .unwrap(),
    );
    let s = store.claim_tx_sessions(t, 10, lease).await.unwrap();
    store
        .finish_tx_session(&s[0].lease, &answered(TxState::Executed, "-"), t)
        .await
        .unwrap();
    let first = store.claim_tx_transactions(t, 10, lease).await.unwrap();
    assert_eq!(first.len(), 1);
    let second = store
        .claim_tx_transactions(t + lease, 10, lease)
        .await
        .unwrap();
    assert_eq!(second.len(), 1, "taken over after the lease");
    assert!(matches!(
        store
            .finish_tx_transaction(
                &first[0].lease,
                &answered(TxState::Executed, "x"),
                None,
                t + lease
            )
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    store
        .finish_tx_transaction(
            &second[0].lease,
            &TxOutcome::Refused {
                code: "forged".into(),
                detail: "bank says".into(),
            },
            None,
            t + lease,
        )
        .await
        .unwrap();
    let c1 = store.get_tx_transaction("txt_c1").await.unwrap().unwrap();
    assert_eq!(
        (c1.state, c1.error_code.as_deref()),
        (TxState::Refused, Some("forged"))
    );
    assert_eq!(c1.bank_ref, None);
    // Retention: sessions done with go with their transactions; one with
    // a payment still queued stays.
    store
        .create_tx_session(&session("txs_d", "fe", t))
        .await
        .unwrap();
    added(
        store
            .add_tx_transaction(&new_tx("txt_d1", "txs_d", None, t))
            .await
            .unwrap(),
    );
    let gone = store
        .prune_batch(Retained::RelaySessions, t + TTL + 1, 1000)
        .await
        .unwrap();
    assert!(
        gone >= 4,
        "sessions b and c with their transactions: {gone}"
    );
    assert_eq!(store.get_tx_session("txs_b").await.unwrap(), None);
    assert_eq!(store.get_tx_transaction("txt_c1").await.unwrap(), None);
    assert!(
        store.get_tx_session("txs_d").await.unwrap().is_some(),
        "still registering, a payment queued"
    );
    assert!(store.get_tx_transaction("txt_d1").await.unwrap().is_some());
}

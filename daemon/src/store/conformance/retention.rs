//! Retention: batched deletes of what is past its keep, and SMS texts
//! blanked at their final state or after their expiry.

use super::*;

/// Every check of this domain, on `store`.
pub async fn run<S: Store>(store: &S) {
    prune_in_batches(store).await;
    texts_are_blanked(store).await;
}

/// Closed verifications go with everything that refers to them, at most a
/// batch per call; pending ones and newer ones stay; unowned SMS, finished
/// gateway calls and audit events go by age.
pub async fn prune_in_batches<S: Store>(store: &S) {
    let t = T_RETENTION;
    let svc = "conf-retention";
    create_service(store, svc, t).await;
    let mut ids = Vec::new();
    for (tag, to, status, at) in [
        ("ret_old1", "+15550007001", VerificationStatus::Approved, t),
        ("ret_old2", "+15550007002", VerificationStatus::Expired, t),
        (
            "ret_new",
            "+15550007003",
            VerificationStatus::Approved,
            t + 10,
        ),
        (
            "ret_pending",
            "+15550007004",
            VerificationStatus::Pending,
            t,
        ),
    ] {
        let (v, m) = pair(tag, svc, to, at);
        let idem = IdempotencyRecord {
            service: svc.into(),
            key: format!("key-{tag}"),
            request_hash: vec![1],
            verification_id: v.id.clone(),
        };
        store
            .insert_verification(&v, (&m).into(), Some(&idem))
            .await
            .expect("insert_verification");
        if status != VerificationStatus::Pending {
            assert!(store
                .update_verification(&v.id, VerificationStatus::Pending, 0, status, 0, at)
                .await
                .unwrap());
        }
        ids.push((v.id, m.id));
    }
    // A gateway call finished long ago, one still queued; an MO reply sent
    // and delivered long ago, one still queued; an old audit event.
    let call = |id: &str, state: CallState| CallJob {
        id: id.into(),
        verification_id: None,
        service: "vg:conf".into(),
        kind: CallKind::Voice,
        to: "+15550007010".into(),
        caller: None,
        code: None,
        fallback_text: None,
        locale: "en".into(),
        state,
        sip_code: None,
        detail: None,
        attempts: 0,
        next_attempt_at: t,
        expires_at: t + TTL * 1000,
        created_at: t,
        updated_at: t,
    };
    for c in [
        call("call_conf_ret_done", CallState::Answered),
        call("call_conf_ret_queued", CallState::Queued),
    ] {
        store.enqueue_call(&c, None).await.expect("enqueue_call");
    }
    let reply = |id: &str, state: MessageState| OutboxMessage {
        verification_id: None,
        state,
        expires_at: t + TTL * 1000,
        ..message(id, "", svc, "+15550007011", t)
    };
    for (n, m) in [
        reply("msg_conf_ret_reply_done", MessageState::Delivered),
        reply("msg_conf_ret_reply_queued", MessageState::Queued),
    ]
    .iter()
    .enumerate()
    {
        let plan = MoPlan::Finish {
            outcome: "no_token",
            reply: Some(m),
        };
        let mo = MoMessage {
            id: format!("mo_conf_ret_{n}"),
            smsc: "conf".into(),
            source: "+15550007011".into(),
            dest: "7799".into(),
            text: format!("hello {n}"),
            received_at: t,
            parts: None,
        };
        store
            .receive_mo(&mo, format!("ret-{n}").as_bytes(), 1, &plan, &[], t)
            .await
            .expect("receive_mo");
    }
    store
        .audit(&AuditEvent {
            at: t,
            service: Some(svc.into()),
            kind: "conf.retention".into(),
            detail: serde_json::json!({}),
        })
        .await
        .unwrap();

    let cut = t + 5;
    // One row per call with a batch of one (the batteries before left old
    // closed verifications too): at least our two old ones, one at a time.
    let mut calls = 0;
    loop {
        let n = store
            .prune_batch(Retained::Verifications, cut, 1)
            .await
            .unwrap();
        assert!(n <= 1, "a batch of one deleted {n}");
        if n == 0 {
            break;
        }
        calls += 1;
    }
    assert!(calls >= 2, "{calls}");
    for (i, (vid, mid)) in ids.iter().enumerate() {
        let kept = i >= 2;
        assert_eq!(
            store.get_verification(vid).await.unwrap().is_some(),
            kept,
            "{vid}"
        );
        assert_eq!(
            store.get_message(mid).await.unwrap().is_some(),
            kept,
            "{mid}"
        );
        let tag = vid.trim_start_matches("vf_conf_");
        assert_eq!(
            store
                .get_idempotency(svc, &format!("key-{tag}"))
                .await
                .unwrap()
                .is_some(),
            kept,
            "the idempotency key of {vid}"
        );
    }
    assert!(store.prune_batch(Retained::Calls, cut, 1000).await.unwrap() >= 1);
    assert!(store
        .get_call("call_conf_ret_done")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get_call("call_conf_ret_queued")
        .await
        .unwrap()
        .is_some());
    assert!(
        store
            .prune_batch(Retained::Outbox, cut, 1000)
            .await
            .unwrap()
            >= 1
    );
    assert!(store
        .get_message("msg_conf_ret_reply_done")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get_message("msg_conf_ret_reply_queued")
        .await
        .unwrap()
        .is_some());
    assert!(store.prune_batch(Retained::Audit, cut, 1000).await.unwrap() >= 1);
    assert!(store
        .recent_audit(1000)
        .await
        .unwrap()
        .iter()
        .all(|e| e.kind != "conf.retention"));
    // Leave the queues empty for other checks.
    let far = t + TTL * 10_000;
    for m in store.claim_outbox(far - 1, 1000, 60_000).await.unwrap() {
        store
            .mark_failed(&m.lease, "battery", None, far)
            .await
            .unwrap();
    }
    store.expire_calls(far).await.unwrap();
}

/// A finished SMS's text goes at its final state; one with no final state
/// (no receipt came) once its expiry has passed; at most a batch per call.
pub async fn texts_are_blanked<S: Store>(store: &S) {
    let t = T_RETENTION + 100_000_000;
    let svc = "conf-retention-texts";
    create_service(store, svc, t).await;
    let (v1, m1) = pair("ret_txt_done", svc, "+15550007101", t);
    let (v2, m2) = pair("ret_txt_open", svc, "+15550007102", t);
    let m1 = OutboxMessage {
        state: MessageState::Delivered,
        ..m1
    };
    let m2 = OutboxMessage {
        state: MessageState::Submitted,
        ..m2
    };
    for (v, m) in [(&v1, &m1), (&v2, &m2)] {
        store
            .insert_verification(v, m.into(), None)
            .await
            .expect("insert_verification");
    }
    let text = |id: &'static str| async move { store.get_message(id).await.unwrap().unwrap().text };
    // Before the final state's time nothing goes; at it, the finished one.
    let cut = |final_before, expired_before| TextCut {
        final_before,
        expired_before,
    };
    store.blank_texts(cut(t, 0), 1000).await.unwrap();
    assert!(!text("msg_conf_ret_txt_done").await.is_empty());
    store.blank_texts(cut(t + 1, 0), 1000).await.unwrap();
    assert_eq!(text("msg_conf_ret_txt_done").await, "");
    assert!(
        !text("msg_conf_ret_txt_open").await.is_empty(),
        "not final, not expired"
    );
    // Submitted and never receipted: kept until its expiry has passed.
    store
        .blank_texts(cut(t + 1, m2.expires_at), 1000)
        .await
        .unwrap();
    assert!(!text("msg_conf_ret_txt_open").await.is_empty());
    store
        .blank_texts(cut(t + 1, m2.expires_at + 1), 1000)
        .await
        .unwrap();
    assert_eq!(text("msg_conf_ret_txt_open").await, "");
    // A receipt that makes an SMS final blanks its text in the same write,
    // before any sweep.
    let (v5, m5) = pair("ret_txt_dlr", svc, "+15550007105", t);
    store
        .insert_verification(&v5, (&m5).into(), None)
        .await
        .unwrap();
    let claimed = store.claim_outbox(t, 1000, 60_000).await.unwrap();
    let c5 = claimed
        .iter()
        .find(|c| c.job.id == m5.id)
        .expect("the SMS is claimed");
    let sent = store
        .mark_submitted(&c5.lease, "conf", &["ret-dlr-1".into()], t + 1)
        .await
        .unwrap();
    assert!(!sent.text.is_empty(), "kept while a receipt may come");
    for c in claimed.iter().filter(|c| c.job.id != m5.id) {
        store
            .mark_failed(&c.lease, "battery", None, t + 1)
            .await
            .unwrap();
    }
    store
        .record_dlr(&["ret-dlr-1".into()], MessageState::Delivered, t + 2)
        .await
        .unwrap();
    assert_eq!(
        text("msg_conf_ret_txt_dlr").await,
        "",
        "blanked with the receipt"
    );
    // A batch of one blanks one text per call.
    let (v3, m3) = pair("ret_txt_b1", svc, "+15550007103", t);
    let (v4, m4) = pair("ret_txt_b2", svc, "+15550007104", t);
    for (v, m) in [(&v3, &m3), (&v4, &m4)] {
        let m = OutboxMessage {
            state: MessageState::Delivered,
            ..m.clone()
        };
        store
            .insert_verification(v, (&m).into(), None)
            .await
            .unwrap();
    }
    assert_eq!(store.blank_texts(cut(t + 1, 0), 1).await.unwrap(), 1);
    assert_eq!(store.blank_texts(cut(t + 1, 0), 1).await.unwrap(), 1);
    assert_eq!(store.blank_texts(cut(t + 1, 0), 1).await.unwrap(), 0);
}

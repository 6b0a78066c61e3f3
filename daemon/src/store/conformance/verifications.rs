//! Verifications: insert and the one pending per number, idempotency,
//! compare-and-set checks and resends.

use super::*;

/// Every check of this domain, on `store`.
pub async fn run<S: SmsPath>(store: &S) {
    verification_insert_and_pending(store).await;
    verification_idempotency(store).await;
    verification_cas_and_resend(store).await;
    status_change_with_webhook(store).await;
}

/// A status change carries its webhook into the same write (none when the
/// compare-and-set misses); the expiry sweep finds what is past expiry.
pub async fn status_change_with_webhook<S: SmsPath>(store: &S) {
    let t = T_VERIFY + 50_000_000;
    let svc = "conf-verify-wh";
    create_service(store, svc, t).await;
    let (v, m) = pair("v_conf_wh", svc, "+15550000901", t);
    store
        .insert_verification(&v, (&m).into(), None)
        .await
        .expect("insert_verification");
    let ids = |list: Vec<Verification>| list.into_iter().map(|v| v.id).collect::<Vec<_>>();
    let due = ids(store.pending_expired(v.expires_at - 1, 100).await.unwrap());
    assert!(!due.contains(&v.id), "not due before its expiry: {due:?}");
    let due = ids(store.pending_expired(v.expires_at, 100).await.unwrap());
    assert!(due.contains(&v.id), "due at its expiry: {due:?}");
    let hook = |id: &str| WebhookJob {
        id: id.into(),
        service: svc.into(),
        url: "https://app.example/hook".into(),
        body: "{}".into(),
        attempts: 0,
        next_attempt_at: t,
        last_error: None,
        method: HttpMethod::Post,
        credential: None,
        deliver_until: None,
        topic: None,
    };
    let (missed, applied) = (hook("wh_conf_cas_missed"), hook("wh_conf_cas_applied"));
    let change = |expect_attempts, w| StatusChange {
        id: &v.id,
        expect_status: VerificationStatus::Pending,
        expect_attempts,
        status: VerificationStatus::Expired,
        attempts: 0,
        webhook: Some(w),
    };
    assert!(
        !store
            .change_status(&change(3, &missed), v.expires_at)
            .await
            .unwrap(),
        "a compare-and-set that misses applies nothing"
    );
    assert!(store
        .change_status(&change(0, &applied), v.expires_at)
        .await
        .unwrap());
    let claimed = store
        .claim_webhooks(v.expires_at, 1000, 60_000)
        .await
        .unwrap();
    let queued: Vec<&str> = claimed.iter().map(|j| j.job.id.as_str()).collect();
    assert!(queued.contains(&"wh_conf_cas_applied"), "{queued:?}");
    assert!(!queued.contains(&"wh_conf_cas_missed"), "{queued:?}");
    // Leave the queue empty for other checks.
    for j in &claimed {
        store.complete_webhook(&j.lease).await.unwrap();
    }
    let due = ids(store.pending_expired(v.expires_at + 1, 100).await.unwrap());
    assert!(!due.contains(&v.id), "closed, no longer due: {due:?}");
}

/// Inserting a verification stores it with its first message; one pending
/// verification per (service, number), even when several race; conflicting
/// ids write nothing.
pub async fn verification_insert_and_pending<S: SmsPath>(store: &S) {
    let t = T_VERIFY;
    let svc = "conf-verify";
    create_service(store, svc, t).await;
    let to = "+15550000001";
    let (v1, m1) = pair("v1", svc, to, t);
    let created = store
        .insert_verification(&v1, (&m1).into(), None)
        .await
        .expect("insert_verification");
    assert_eq!(
        created,
        InsertOutcome::Created,
        "a first verification is Created"
    );
    assert_eq!(
        store
            .get_verification(&v1.id)
            .await
            .expect("get_verification"),
        Some(v1.clone()),
        "stored as given"
    );
    assert_eq!(
        store.find_pending(svc, to).await.expect("find_pending"),
        Some(v1.clone()),
        "find_pending finds it"
    );
    assert_eq!(
        store
            .find_pending(svc, "+15550000999")
            .await
            .expect("find_pending"),
        None,
        "other number: none"
    );
    assert_eq!(
        store
            .find_pending("conf-svc-a", to)
            .await
            .expect("find_pending"),
        None,
        "pending is per service"
    );
    assert_eq!(
        store.get_message(&m1.id).await.expect("get_message"),
        Some(m1.clone()),
        "first message stored as given"
    );
    assert_eq!(
        store
            .messages_for_verification(&v1.id)
            .await
            .expect("messages_for_verification"),
        vec![m1.clone()],
        "the first message belongs to the verification"
    );
    assert_eq!(
        store
            .get_verification("vf_conf_none")
            .await
            .expect("get_verification"),
        None,
        "unknown id is None"
    );

    // A second pending verification for the number: nothing written.
    let (v2, m2) = pair("v2", svc, to, t + 1);
    let outcome = store
        .insert_verification(&v2, (&m2).into(), None)
        .await
        .expect("insert_verification");
    assert_eq!(
        outcome,
        InsertOutcome::PendingExists(v1.clone()),
        "a second pending one returns the existing one"
    );
    assert_eq!(
        store
            .get_verification(&v2.id)
            .await
            .expect("get_verification"),
        None,
        "PendingExists writes nothing"
    );
    assert_eq!(
        store.get_message(&m2.id).await.expect("get_message"),
        None,
        "PendingExists writes no message"
    );

    // Conflicting ids: Conflict, and nothing written.
    let to3 = "+15550000003";
    let v_dup = verification(&v1.id, svc, to3, t + 2);
    let m_new = message("msg_conf_v3", &v_dup.id, svc, to3, t + 2);
    let dup = store
        .insert_verification(&v_dup, (&m_new).into(), None)
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "an existing verification id is a Conflict, got {dup:?}"
    );
    assert_eq!(
        store.get_message(&m_new.id).await.expect("get_message"),
        None,
        "a failed insert writes no message"
    );
    let v3 = verification("vf_conf_v3", svc, to3, t + 3);
    let m_dup = message(&m1.id, &v3.id, svc, to3, t + 3);
    let dup = store.insert_verification(&v3, (&m_dup).into(), None).await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "an existing message id is a Conflict, got {dup:?}"
    );
    assert_eq!(
        store
            .get_verification(&v3.id)
            .await
            .expect("get_verification"),
        None,
        "all or nothing"
    );
    assert_eq!(
        store.find_pending(svc, to3).await.expect("find_pending"),
        None,
        "all or nothing: no pending"
    );

    // Past its expiry but still pending: still blocks (the caller closes it).
    let to4 = "+15550000004";
    let mut old = verification("vf_conf_v4_old", svc, to4, t + 4);
    old.expires_at = t + 4;
    let m_old = message("msg_conf_v4_old", &old.id, svc, to4, t + 4);
    assert_eq!(
        store
            .insert_verification(&old, (&m_old).into(), None)
            .await
            .expect("insert"),
        InsertOutcome::Created
    );
    let (fresh, m_fresh) = pair("v4_new", svc, to4, t + 5);
    let outcome = store
        .insert_verification(&fresh, (&m_fresh).into(), None)
        .await
        .expect("insert_verification");
    assert_eq!(
        outcome,
        InsertOutcome::PendingExists(old.clone()),
        "an expired-by-time pending one still blocks"
    );
    assert_eq!(
        store.find_pending(svc, to4).await.expect("find_pending"),
        Some(old.clone()),
        "found even past expiry"
    );
    let closed = store
        .update_verification(
            &old.id,
            VerificationStatus::Pending,
            0,
            VerificationStatus::Expired,
            0,
            t + 6,
        )
        .await
        .expect("update_verification");
    assert!(closed, "closing the expired verification applies");
    let outcome = store
        .insert_verification(&fresh, (&m_fresh).into(), None)
        .await
        .expect("insert_verification");
    assert_eq!(
        outcome,
        InsertOutcome::Created,
        "after closing, a new pending verification is Created"
    );

    // Racing inserts for one number: exactly one wins.
    let to5 = "+15550000005";
    let racers: Vec<(Verification, OutboxMessage)> = (0..8)
        .map(|i| {
            let v = verification(&format!("vf_conf_race_{i}"), svc, to5, t + 10);
            let m = message(&format!("msg_conf_race_{i}"), &v.id, svc, to5, t + 10);
            (v, m)
        })
        .collect();
    let outcomes = futures::future::join_all(
        racers
            .iter()
            .map(|(v, m)| store.insert_verification(v, m.into(), None)),
    )
    .await;
    let mut created = Vec::new();
    for (i, o) in outcomes.into_iter().enumerate() {
        match o.expect("racing insert_verification") {
            InsertOutcome::Created => created.push(i),
            InsertOutcome::PendingExists(_) => {}
            other => panic!("racing insert: unexpected {other:?}"),
        }
    }
    assert_eq!(
        created.len(),
        1,
        "exactly one racing insert is Created, got {created:?}"
    );
    let winner = &racers[created[0]].0;
    assert_eq!(
        store
            .find_pending(svc, to5)
            .await
            .expect("find_pending")
            .as_ref(),
        Some(winner),
        "the winner is pending"
    );
}

/// Idempotency keys: a replay writes nothing and returns the first record
/// (with its request hash); keys are per service; the key wins over the
/// pending check.
pub async fn verification_idempotency<S: SmsPath>(store: &S) {
    let t = T_VERIFY + 100_000;
    let svc = "conf-idem";
    let other_svc = "conf-idem-other";
    create_service(store, svc, t).await;
    create_service(store, other_svc, t).await;
    let idem = |service: &str, key: &str, hash: &[u8], vid: &str| IdempotencyRecord {
        service: service.to_owned(),
        key: key.to_owned(),
        request_hash: hash.to_vec(),
        verification_id: vid.to_owned(),
    };

    let to = "+15550001001";
    let (v1, m1) = pair("idem_1", svc, to, t);
    let first = idem(svc, "key-1", b"body-1", &v1.id);
    let outcome = store
        .insert_verification(&v1, (&m1).into(), Some(&first))
        .await
        .expect("insert_verification");
    assert_eq!(
        outcome,
        InsertOutcome::Created,
        "first use of a key creates"
    );
    assert_eq!(
        store
            .get_idempotency(svc, "key-1")
            .await
            .expect("get_idempotency"),
        Some(first.clone()),
        "a used key can be looked up"
    );
    assert_eq!(
        store
            .get_idempotency(other_svc, "key-1")
            .await
            .expect("get_idempotency"),
        None,
        "keys are per service"
    );

    // Same key, same number (the replay of the same start): the key wins.
    let (v2, m2) = pair("idem_2", svc, to, t + 1);
    let outcome = store
        .insert_verification(
            &v2,
            (&m2).into(),
            Some(&idem(svc, "key-1", b"body-1", &v2.id)),
        )
        .await
        .expect("insert_verification");
    assert_eq!(
        outcome,
        InsertOutcome::IdempotentReplay(first.clone()),
        "a replay returns the first record"
    );

    // Same key, another body and number: still the first record (the caller
    // compares request hashes), nothing written.
    let to3 = "+15550001003";
    let (v3, m3) = pair("idem_3", svc, to3, t + 2);
    let outcome = store
        .insert_verification(
            &v3,
            (&m3).into(),
            Some(&idem(svc, "key-1", b"body-3", &v3.id)),
        )
        .await
        .expect("insert_verification");
    assert_eq!(
        outcome,
        InsertOutcome::IdempotentReplay(first.clone()),
        "the stored hash comes back, not the new one"
    );
    assert_eq!(
        store
            .get_verification(&v3.id)
            .await
            .expect("get_verification"),
        None,
        "a replay writes nothing"
    );
    assert_eq!(
        store.get_message(&m3.id).await.expect("get_message"),
        None,
        "a replay writes no message"
    );
    assert_eq!(
        store.find_pending(svc, to3).await.expect("find_pending"),
        None,
        "a replay leaves no pending one"
    );

    // Another key: a normal insert. The same key in another service: independent.
    let outcome = store
        .insert_verification(
            &v3,
            (&m3).into(),
            Some(&idem(svc, "key-3", b"body-3", &v3.id)),
        )
        .await
        .expect("insert_verification");
    assert_eq!(outcome, InsertOutcome::Created, "a new key creates");
    let (v4, m4) = pair("idem_4", other_svc, to, t + 3);
    let outcome = store
        .insert_verification(
            &v4,
            (&m4).into(),
            Some(&idem(other_svc, "key-1", b"body-4", &v4.id)),
        )
        .await
        .expect("insert_verification");
    assert_eq!(
        outcome,
        InsertOutcome::Created,
        "idempotency keys are per service"
    );

    // A key whose first use hit a pending verification was not recorded.
    let to5 = "+15550001005";
    let (v5, m5) = pair("idem_5", svc, to5, t + 4);
    assert_eq!(
        store
            .insert_verification(&v5, (&m5).into(), None)
            .await
            .expect("insert"),
        InsertOutcome::Created
    );
    let (v6, m6) = pair("idem_6", svc, to5, t + 5);
    let outcome = store
        .insert_verification(
            &v6,
            (&m6).into(),
            Some(&idem(svc, "key-6", b"body-6", &v6.id)),
        )
        .await
        .expect("insert_verification");
    assert_eq!(
        outcome,
        InsertOutcome::PendingExists(v5.clone()),
        "pending blocks"
    );
    let to7 = "+15550001007";
    let (v7, m7) = pair("idem_7", svc, to7, t + 6);
    let outcome = store
        .insert_verification(
            &v7,
            (&m7).into(),
            Some(&idem(svc, "key-6", b"body-7", &v7.id)),
        )
        .await
        .expect("insert_verification");
    assert_eq!(
        outcome,
        InsertOutcome::Created,
        "PendingExists does not record the idempotency key"
    );
}

/// Compare-and-set updates (stale expectations fail, racing checks consume
/// one attempt) and resends.
pub async fn verification_cas_and_resend<S: SmsPath>(store: &S) {
    let t = T_VERIFY + 200_000;
    let svc = "conf-cas";
    create_service(store, svc, t).await;
    let to = "+15550002001";
    let (v, m1) = pair("cas_1", svc, to, t);
    assert_eq!(
        store
            .insert_verification(&v, (&m1).into(), None)
            .await
            .expect("insert"),
        InsertOutcome::Created
    );
    use VerificationStatus::{Approved, Pending};

    let ok = store
        .update_verification(&v.id, Pending, 0, Pending, 1, t + 1)
        .await
        .expect("update_verification");
    assert!(ok, "a CAS with the stored status and attempts applies");
    let got = store
        .get_verification(&v.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (got.status, got.attempts, got.updated_at),
        (Pending, 1, t + 1),
        "CAS writes status, attempts, updated_at"
    );
    assert_eq!(
        (got.sends, got.last_sent_at, got.code_hash.clone()),
        (v.sends, v.last_sent_at, v.code_hash.clone()),
        "CAS leaves the rest"
    );
    let stale = store
        .update_verification(&v.id, Pending, 0, Pending, 1, t + 2)
        .await
        .expect("update_verification");
    assert!(!stale, "a CAS with stale attempts does not apply");
    let wrong = store
        .update_verification(&v.id, Approved, 1, Pending, 2, t + 2)
        .await
        .expect("update_verification");
    assert!(!wrong, "a CAS with the wrong status does not apply");
    let missing = store
        .update_verification("vf_conf_cas_none", Pending, 0, Approved, 0, t + 2)
        .await;
    assert!(
        matches!(missing, Ok(false)),
        "a CAS on an unknown id does not apply, got {missing:?}"
    );
    let got = store
        .get_verification(&v.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (got.attempts, got.updated_at),
        (1, t + 1),
        "failed CAS writes nothing"
    );

    // Two checks race on the same attempt count: one applies.
    let (a, b) = tokio::join!(
        store.update_verification(&v.id, Pending, 1, Pending, 2, t + 3),
        store.update_verification(&v.id, Pending, 1, Pending, 2, t + 3),
    );
    let applied = [a.expect("racing CAS"), b.expect("racing CAS")];
    assert_eq!(
        applied.iter().filter(|x| **x).count(),
        1,
        "exactly one racing CAS applies, got {applied:?}"
    );

    // Resend: sends + 1, last_sent_at, expiry, code, the new message and
    // the idempotency key, together.
    let m2 = message("msg_conf_cas_2", &v.id, svc, to, t + 60_000);
    let key = IdempotencyRecord {
        service: svc.to_owned(),
        key: "resend-key".to_owned(),
        request_hash: b"resend-body".to_vec(),
        verification_id: v.id.clone(),
    };
    fn resend(msg: &OutboxMessage, last_sent_at: Millis, expires_at: Millis) -> Resend<'_> {
        Resend {
            verification_id: "",
            last_sent_at,
            code_hash: b"new-hash",
            expires_at,
            send: msg.into(),
            idempotency: None,
        }
    }
    let applied = store
        .record_resend(
            &Resend {
                verification_id: &v.id,
                idempotency: Some(&key),
                ..resend(&m2, t, t + 60_000 + TTL)
            },
            t + 60_000,
        )
        .await
        .expect("record_resend");
    assert!(applied, "a resend on the read state applies");
    let got = store
        .get_verification(&v.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (got.sends, got.last_sent_at, got.expires_at),
        (2, t + 60_000, t + 60_000 + TTL),
        "record_resend counts the send, its time and the fresh expiry"
    );
    assert_eq!(got.attempts, 2, "record_resend keeps attempts");
    assert_eq!(
        got.code_hash, b"new-hash",
        "record_resend replaces the code hash"
    );
    assert_eq!(
        store
            .get_idempotency(svc, "resend-key")
            .await
            .expect("get_idempotency")
            .map(|r| r.verification_id),
        Some(v.id.clone()),
        "the resend's idempotency key is recorded"
    );
    assert_eq!(
        ids(&store
            .messages_for_verification(&v.id)
            .await
            .expect("messages_for_verification")),
        vec![m1.id.as_str(), m2.id.as_str()],
        "messages_for_verification: oldest first"
    );
    // A second resend based on the state before the first: nothing happens.
    let m_late = message("msg_conf_cas_late", &v.id, svc, to, t + 60_001);
    let applied = store
        .record_resend(
            &Resend {
                verification_id: &v.id,
                ..resend(&m_late, t, t + 60_000 + TTL)
            },
            t + 60_001,
        )
        .await
        .expect("record_resend");
    assert!(!applied, "a resend that lost the race applies nothing");
    assert_eq!(
        store.get_message(&m_late.id).await.expect("get_message"),
        None,
        "a resend that lost the race queues no message"
    );
    let m3 = message("msg_conf_cas_3", "vf_conf_cas_none", svc, to, t + 61_000);
    let missing = store
        .record_resend(
            &Resend {
                verification_id: "vf_conf_cas_none",
                ..resend(&m3, t, t + 60_000 + TTL)
            },
            t + 61_000,
        )
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "resend of an unknown verification: NotFound, got {missing:?}"
    );
    assert_eq!(
        store.get_message(&m3.id).await.expect("get_message"),
        None,
        "a failed resend writes no message"
    );
    let dup = store
        .record_resend(
            &Resend {
                verification_id: &v.id,
                ..resend(&m2, t + 60_000, t + 60_000 + TTL)
            },
            t + 62_000,
        )
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "a resend with an existing message id: Conflict, got {dup:?}"
    );
    let got = store
        .get_verification(&v.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.sends, 2, "a failed resend does not count");

    // An idempotency key recorded for an existing verification; a key
    // already recorded is kept as it was.
    let other = IdempotencyRecord {
        key: "existing-key".to_owned(),
        ..key.clone()
    };
    store
        .record_idempotency(&other, t + 63_000)
        .await
        .expect("record_idempotency");
    store
        .record_idempotency(
            &IdempotencyRecord {
                request_hash: b"changed".to_vec(),
                ..other.clone()
            },
            t + 63_001,
        )
        .await
        .expect("record_idempotency again");
    assert_eq!(
        store
            .get_idempotency(svc, "existing-key")
            .await
            .expect("get_idempotency")
            .map(|r| r.request_hash),
        Some(b"resend-body".to_vec()),
        "the first record of a key stays"
    );

    // Approval frees the number for a new verification.
    let ok = store
        .update_verification(&v.id, Pending, 2, Approved, 2, t + 70_000)
        .await
        .expect("update");
    assert!(ok, "approve applies");
    assert_eq!(
        store.find_pending(svc, to).await.expect("find_pending"),
        None,
        "an approved one is not pending"
    );
    let v2 = verification("vf_conf_cas_2", svc, to, t + 80_000);
    let m4 = message("msg_conf_cas_4", &v2.id, svc, to, t + 80_000);
    let outcome = store
        .insert_verification(&v2, (&m4).into(), None)
        .await
        .expect("insert_verification");
    assert_eq!(
        outcome,
        InsertOutcome::Created,
        "a new verification after approval is Created"
    );
}

//! The conformance battery every store backend must pass.
//!
//! A backend's tests call [`run_all`] on a fresh, migrated store (SQLite:
//! `store::sqlite` tests; a PostgreSQL backend: the same call on a fresh
//! schema). Every check is a plain `assert!` naming the rule it checks.
//!
//! The individual tests are public so a failing one can be run alone. They
//! share one store without interfering: each uses its own service codes,
//! numbers, message ids and rate-limit keys, and its own time range (see
//! the `T_*` constants); queue tests (outbox, webhooks) finish all their
//! work, and work left queued by the verification tests is due only far in
//! the future, so no test claims another's messages or jobs.
//!
//! Beyond the doc comments on [`Store`], the battery pins these choices
//! (every backend must make the same ones):
//!
//! * insert_verification checks the idempotency key before the pending
//!   verification (a replayed start finds its own pending verification);
//!   a pending verification blocks a new one even when past its expiry.
//! * claim_outbox does not hand out a message past its expiry (it is left
//!   to expire_outbox, which expires messages with `expires_at < now`).
//! * mark_failed changes only a queued or sending message: a late failure
//!   report does not requeue a message another sender got accepted.
//! * Receipts: the first final state (delivered, undeliverable, rejected,
//!   expired) sticks; later receipts (non-final or final) leave it. Among
//!   messages sharing a correlation key, a receipt goes to the one whose
//!   primary key equals the receipt's primary key (same id format), else
//!   to the most recently submitted. Parked receipts are applied oldest
//!   first through the same rule and are consumed.
//! * recent_audit orders by time, then by insertion (newest first).
//! * Calls: claim_calls, like claim_outbox, skips calls past their expiry
//!   (expire_calls takes queued ones, and calling ones whose lease ran
//!   out); finish_call changes only an unfinished call, forgets its code
//!   and fallback text on a final state, and queues the fallback SMS only
//!   when it changed the call.

use std::collections::HashSet;

use verigate_codecs::dlr::message_id_keys;

use super::{
    Account, ApiKeyRecord, AuditEvent, CallJob, CallKind, CallResult, CallState, CompleteMoLogin,
    DlrOutcome, Forget, IdempotencyRecord, InsertOutcome, MessageState, Millis, MoIntent, MoLogin,
    MoLoginOutcome, MoLoginState, MoMessage, MoPlan, OutboxMessage, RateHit, RequestKey, Resend,
    Service, Session, Store, StoreError, Verification, VerificationStatus, WebhookJob,
};

/// Time ranges of the tests (Unix ms). Queue tests use ranges below the
/// verification tests, whose first messages stay queued.
const T_SERVICES: Millis = 1_000_000_000_000;
const T_OUTBOX: Millis = 2_000_000_000_000;
const T_EXPIRY: Millis = 2_100_000_000_000;
const T_RECEIPTS: Millis = 2_200_000_000_000;
const T_PARKED: Millis = 2_300_000_000_000;
const T_WEBHOOKS: Millis = 2_400_000_000_000;
const T_ACCOUNTS: Millis = 2_500_000_000_000;
const T_CALLS: Millis = 2_600_000_000_000;
const T_MO: Millis = 2_700_000_000_000;
const T_VERIFY: Millis = 9_000_000_000_000;
const T_AUDIT: Millis = 9_500_000_000_000;

/// How long fixtures stay valid.
const TTL: Millis = 600_000;

/// Runs every test of the battery on `store`.
pub async fn run_all<S: Store>(store: &S) {
    services_and_api_keys(store).await;
    verification_insert_and_pending(store).await;
    verification_idempotency(store).await;
    verification_cas_and_resend(store).await;
    outbox_claims_and_leases(store).await;
    outbox_expiry(store).await;
    receipt_correlation(store).await;
    receipts_before_submit(store).await;
    rate_limits(store).await;
    pruning(store).await;
    webhook_queue(store).await;
    accounts_and_sessions(store).await;
    call_queue(store).await;
    mo_login(store).await;
    audit_order(store).await;
}

// ---- fixtures

/// A service fixture (shared with the backends' own tests).
pub(crate) fn service(code: &str, at: Millis) -> Service {
    Service {
        code: code.to_owned(),
        name: format!("Service {code}"),
        settings: serde_json::json!({ "limits": { "per_number_per_hour": 5 }, "templates": { "en": "Code {code}" } }),
        created_at: at,
    }
}

async fn create_service<S: Store>(store: &S, code: &str, at: Millis) {
    store
        .create_service(&service(code, at))
        .await
        .unwrap_or_else(|e| panic!("create_service {code}: {e}"));
}

/// A pending verification fixture.
pub(crate) fn verification(id: &str, service: &str, to: &str, at: Millis) -> Verification {
    Verification {
        id: id.to_owned(),
        service: service.to_owned(),
        to: to.to_owned(),
        channel: "sms".to_owned(),
        locale: "en".to_owned(),
        status: VerificationStatus::Pending,
        code_hash: format!("hash-of-{id}").into_bytes(),
        attempts: 0,
        max_attempts: 5,
        sends: 1,
        created_at: at,
        expires_at: at + TTL,
        last_sent_at: at,
        updated_at: at,
    }
}

/// A queued message fixture.
pub(crate) fn message(
    id: &str,
    verification_id: &str,
    service: &str,
    to: &str,
    at: Millis,
) -> OutboxMessage {
    OutboxMessage {
        id: id.to_owned(),
        verification_id: Some(verification_id.to_owned()),
        service: service.to_owned(),
        to: to.to_owned(),
        from: "VERIGATE".to_owned(),
        text: format!("Your code for {verification_id}"),
        state: MessageState::Queued,
        attempts: 0,
        next_attempt_at: at,
        expires_at: at + TTL,
        smsc: None,
        message_ids: Vec::new(),
        last_error: None,
        created_at: at,
        updated_at: at,
    }
}

/// A verification and its first message, ids `vf_conf_{tag}` / `msg_conf_{tag}`.
fn pair(tag: &str, service: &str, to: &str, at: Millis) -> (Verification, OutboxMessage) {
    let v = verification(&format!("vf_conf_{tag}"), service, to, at);
    let m = message(&format!("msg_conf_{tag}"), &v.id, service, to, at);
    (v, m)
}

/// Stores verification `n` of `svc` (number `+1555…n`) with its first
/// message `msg_<svc>_<n>`, due at `at` and created at `at`; returns the message.
async fn queued<S: Store>(
    store: &S,
    svc: &str,
    n: u32,
    at: Millis,
    expires_at: Millis,
) -> OutboxMessage {
    let to = format!("+1555{n:07}");
    let vid = format!("vf_{svc}_{n}");
    let mut m = message(&format!("msg_{svc}_{n}"), &vid, svc, &to, at);
    m.expires_at = expires_at;
    let outcome = store
        .insert_verification(&verification(&vid, svc, &to, at), (&m).into(), None)
        .await
        .unwrap_or_else(|e| panic!("insert_verification {vid}: {e}"));
    assert_eq!(
        outcome,
        InsertOutcome::Created,
        "fixture verification {vid} must be created"
    );
    m
}

fn ids(msgs: &[OutboxMessage]) -> Vec<&str> {
    msgs.iter().map(|m| m.id.as_str()).collect()
}

fn keys(message_id: &str) -> Vec<String> {
    message_id_keys(message_id).to_vec()
}

async fn message_state<S: Store>(store: &S, id: &str) -> MessageState {
    store
        .get_message(id)
        .await
        .unwrap_or_else(|e| panic!("get_message {id}: {e}"))
        .unwrap_or_else(|| panic!("message {id} must exist"))
        .state
}

async fn submit<S: Store>(store: &S, id: &str, message_ids: &[&str], at: Millis) -> OutboxMessage {
    let ids: Vec<String> = message_ids.iter().map(|s| (*s).to_owned()).collect();
    store
        .mark_submitted(id, "smsc-a", &ids, at)
        .await
        .unwrap_or_else(|e| panic!("mark_submitted {id}: {e}"))
}

async fn dlr<S: Store>(store: &S, receipt_id: &str, state: MessageState, at: Millis) -> DlrOutcome {
    store
        .record_dlr(&keys(receipt_id), state, at)
        .await
        .unwrap_or_else(|e| panic!("record_dlr {receipt_id}: {e}"))
}

/// Asserts `outcome` applied the receipt to message `id`, leaving `state`.
fn assert_applied(outcome: &DlrOutcome, id: &str, state: MessageState, what: &str) {
    match outcome {
        DlrOutcome::Applied(m) => {
            assert_eq!(m.id, id, "{what}: receipt applied to the wrong message");
            assert_eq!(m.state, state, "{what}: state after the receipt");
        }
        DlrOutcome::Parked => panic!("{what}: receipt must be applied to {id}, was parked"),
    }
}

// ---- services and API keys

/// Services (create, conflict, get, list by code, settings) and API keys
/// (conflicts, lookup by hash, rotation).
pub async fn services_and_api_keys<S: Store>(store: &S) {
    let t = T_SERVICES;
    create_service(store, "conf-svc-b", t).await;
    create_service(store, "conf-svc-a", t + 1).await;
    let dup = store.create_service(&service("conf-svc-a", t + 2)).await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "a duplicate service code is a Conflict, got {dup:?}"
    );

    let a = store.get_service("conf-svc-a").await.expect("get_service");
    assert_eq!(
        a,
        Some(service("conf-svc-a", t + 1)),
        "get_service returns the stored service, settings included"
    );
    assert_eq!(
        store
            .get_service("conf-svc-none")
            .await
            .expect("get_service"),
        None,
        "unknown service is None"
    );

    let all = store.list_services().await.expect("list_services");
    let codes: Vec<&str> = all.iter().map(|s| s.code.as_str()).collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    assert_eq!(codes, sorted, "list_services is ordered by code");
    let pos_a = codes
        .iter()
        .position(|c| *c == "conf-svc-a")
        .expect("list_services includes conf-svc-a");
    let pos_b = codes
        .iter()
        .position(|c| *c == "conf-svc-b")
        .expect("list_services includes conf-svc-b");
    assert!(pos_a < pos_b, "conf-svc-a sorts before conf-svc-b");

    let settings =
        serde_json::json!({ "webhook": { "url": "https://example.invalid/hook" }, "n": [1, 2, 3] });
    store
        .update_service_settings("conf-svc-a", &settings)
        .await
        .expect("update_service_settings");
    let a = store
        .get_service("conf-svc-a")
        .await
        .expect("get_service")
        .expect("conf-svc-a exists");
    assert_eq!(
        a.settings, settings,
        "update_service_settings replaces the settings"
    );
    assert_eq!(
        a.name, "Service conf-svc-a",
        "update_service_settings keeps the name"
    );
    let missing = store
        .update_service_settings("conf-svc-none", &settings)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "settings of an unknown service: NotFound, got {missing:?}"
    );

    let key = |id: &str, hash: &[u8], at: Millis| ApiKeyRecord {
        key_id: id.to_owned(),
        service: "conf-svc-a".to_owned(),
        hash: hash.to_vec(),
        created_at: at,
        revoked_at: None,
    };
    let k1 = key("conf-k1", b"hash-k1", t + 10);
    let k2 = key("conf-k2", b"hash-k2", t + 11);
    let k3 = key("conf-k3", b"hash-k3", t + 12);
    for k in [&k1, &k2, &k3] {
        store.add_api_key(k).await.expect("add_api_key");
    }
    let dup_id = store
        .add_api_key(&key("conf-k1", b"hash-other", t + 13))
        .await;
    assert!(
        matches!(dup_id, Err(StoreError::Conflict(_))),
        "a duplicate key_id is a Conflict, got {dup_id:?}"
    );
    let dup_hash = store.add_api_key(&key("conf-k4", b"hash-k2", t + 13)).await;
    assert!(
        matches!(dup_hash, Err(StoreError::Conflict(_))),
        "a duplicate key hash is a Conflict, got {dup_hash:?}"
    );

    assert_eq!(
        store.find_api_key(b"hash-k2").await.expect("find_api_key"),
        Some(k2.clone()),
        "find_api_key by hash"
    );
    assert_eq!(
        store
            .find_api_key(b"hash-none")
            .await
            .expect("find_api_key"),
        None,
        "unknown hash is None"
    );
    assert_eq!(
        store
            .list_api_keys("conf-svc-a")
            .await
            .expect("list_api_keys"),
        vec![k1.clone(), k2.clone(), k3.clone()],
        "list_api_keys: the service's keys, oldest first"
    );
    assert!(
        store
            .list_api_keys("conf-svc-b")
            .await
            .expect("list_api_keys")
            .is_empty(),
        "keys are per service"
    );

    let revoked = store
        .revoke_api_keys("conf-svc-a", "conf-k3", t + 20)
        .await
        .expect("revoke_api_keys");
    assert_eq!(
        revoked, 2,
        "revoke_api_keys revokes every other unrevoked key"
    );
    assert_eq!(
        store.find_api_key(b"hash-k1").await.expect("find_api_key"),
        None,
        "a revoked key is not found"
    );
    assert_eq!(
        store.find_api_key(b"hash-k3").await.expect("find_api_key"),
        Some(k3.clone()),
        "the kept key still works"
    );
    let listed = store
        .list_api_keys("conf-svc-a")
        .await
        .expect("list_api_keys");
    let revoked_at: Vec<Option<Millis>> = listed.iter().map(|k| k.revoked_at).collect();
    assert_eq!(
        revoked_at,
        vec![Some(t + 20), Some(t + 20), None],
        "list_api_keys includes revoked keys with revoked_at"
    );
    let again = store
        .revoke_api_keys("conf-svc-a", "conf-k3", t + 30)
        .await
        .expect("revoke_api_keys");
    assert_eq!(again, 0, "revoking again changes nothing");
    let listed = store
        .list_api_keys("conf-svc-a")
        .await
        .expect("list_api_keys");
    assert_eq!(
        listed[0].revoked_at,
        Some(t + 20),
        "an earlier revocation time is kept"
    );
}

// ---- verifications

/// Inserting a verification stores it with its first message; one pending
/// verification per (service, number), even when several race; conflicting
/// ids write nothing.
pub async fn verification_insert_and_pending<S: Store>(store: &S) {
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
pub async fn verification_idempotency<S: Store>(store: &S) {
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
pub async fn verification_cas_and_resend<S: Store>(store: &S) {
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

// ---- outbox

/// Claims: due only, oldest first, up to the limit, leased (not handed out
/// twice while the lease runs, handed out again after it ran out), attempts
/// counted; failures requeue or reject; depth counts.
pub async fn outbox_claims_and_leases<S: Store>(store: &S) {
    let t = T_OUTBOX;
    let svc = "conf-outbox";
    create_service(store, svc, t).await;
    let depth0 = store.outbox_depth().await.expect("outbox_depth");
    let m1 = queued(store, svc, 1, t, t + TTL).await;
    let m2 = queued(store, svc, 2, t + 1, t + TTL).await;
    let m3 = queued(store, svc, 3, t + 2, t + TTL).await;
    let m4 = queued(store, svc, 4, t + 10_000, t + TTL).await;
    let depth = store.outbox_depth().await.expect("outbox_depth");
    assert_eq!(
        depth.queued,
        depth0.queued + 4,
        "outbox_depth counts queued messages"
    );

    let c = store
        .claim_outbox(t + 5, 2, 1_000)
        .await
        .expect("claim_outbox");
    assert_eq!(
        ids(&c),
        vec![m1.id.as_str(), m2.id.as_str()],
        "claim: due messages, oldest first, up to the limit"
    );
    for m in &c {
        assert_eq!(
            m.state,
            MessageState::Sending,
            "a claimed message is sending"
        );
        assert_eq!(m.attempts, 1, "a claim counts the attempt");
        let original = if m.id == m1.id { &m1 } else { &m2 };
        assert_eq!(
            (&m.to, &m.from, &m.text, m.expires_at, m.created_at),
            (
                &original.to,
                &original.from,
                &original.text,
                original.expires_at,
                original.created_at
            ),
            "a claim returns the stored message"
        );
    }
    let depth = store.outbox_depth().await.expect("outbox_depth");
    assert_eq!(
        (depth.queued, depth.sending),
        (depth0.queued + 2, depth0.sending + 2),
        "depth after a claim"
    );

    let c = store
        .claim_outbox(t + 6, 10, 1_000)
        .await
        .expect("claim_outbox");
    assert_eq!(
        ids(&c),
        vec![m3.id.as_str()],
        "claim: not the leased ones, not the ones not yet due"
    );
    let c = store
        .claim_outbox(t + 7, 10, 1_000)
        .await
        .expect("claim_outbox");
    assert!(
        c.is_empty(),
        "nothing is handed out twice while leased, got {:?}",
        ids(&c)
    );

    let sub = submit(store, &m2.id, &["C0FFEE01"], t + 8).await;
    assert_eq!(
        sub.state,
        MessageState::Submitted,
        "mark_submitted: submitted"
    );
    let failed = store
        .mark_failed(&m3.id, "throttled", Some(t + 500), t + 9)
        .await;
    failed.expect("mark_failed");
    let got = store
        .get_message(&m3.id)
        .await
        .expect("get_message")
        .expect("exists");
    assert_eq!(
        (
            got.state,
            got.next_attempt_at,
            got.last_error.as_deref(),
            got.attempts
        ),
        (MessageState::Queued, t + 500, Some("throttled"), 1),
        "mark_failed with a retry time: queued again at that time, with the error"
    );
    assert!(
        store
            .claim_outbox(t + 499, 10, 1_000)
            .await
            .expect("claim")
            .is_empty(),
        "a retry is not due before its time"
    );
    let c = store
        .claim_outbox(t + 500, 10, 1_000)
        .await
        .expect("claim_outbox");
    assert_eq!(
        ids(&c),
        vec![m3.id.as_str()],
        "a retry is claimed at its time"
    );
    assert_eq!(c[0].attempts, 2, "the retry counts as another attempt");

    // m1's sender died: its lease (t+5+1000) runs out.
    assert!(
        store
            .claim_outbox(t + 1_004, 10, 1_000)
            .await
            .expect("claim")
            .is_empty(),
        "lease still running"
    );
    let c = store
        .claim_outbox(t + 1_005, 10, 1_000)
        .await
        .expect("claim_outbox");
    assert_eq!(
        ids(&c),
        vec![m1.id.as_str()],
        "a message whose lease ran out is claimed again"
    );
    assert_eq!(
        (c[0].state, c[0].attempts),
        (MessageState::Sending, 2),
        "reclaim counts the attempt"
    );

    store
        .mark_failed(&m1.id, "rejected: ESME_RINVDSTADR", None, t + 1_006)
        .await
        .expect("mark_failed");
    let got = store
        .get_message(&m1.id)
        .await
        .expect("get_message")
        .expect("exists");
    assert_eq!(
        (got.state, got.last_error.as_deref()),
        (MessageState::Rejected, Some("rejected: ESME_RINVDSTADR")),
        "mark_failed without a retry time: rejected"
    );
    store
        .mark_failed(
            &m2.id,
            "late failure of a duplicate",
            Some(t + 1_007),
            t + 1_007,
        )
        .await
        .expect("mark_failed");
    assert_eq!(
        message_state(store, &m2.id).await,
        MessageState::Submitted,
        "mark_failed does not requeue a submitted message"
    );
    let missing = store.mark_failed("msg_conf_none", "x", None, t).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "mark_failed of an unknown message: NotFound, got {missing:?}"
    );
    let missing = store
        .mark_submitted("msg_conf_none", "smsc-a", &["1".to_owned()], t)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "mark_submitted of an unknown message: NotFound, got {missing:?}"
    );

    // Two claimers racing: disjoint.
    let (a, b) = tokio::join!(
        store.claim_outbox(t + 20_000, 10, 1_000),
        store.claim_outbox(t + 20_000, 10, 1_000)
    );
    let (a, b) = (a.expect("racing claim"), b.expect("racing claim"));
    let mut all: Vec<&str> = ids(&a).into_iter().chain(ids(&b)).collect();
    all.sort_unstable();
    assert_eq!(
        all,
        vec![m3.id.as_str(), m4.id.as_str()],
        "racing claimers share the due messages without overlap"
    );
    assert_eq!(
        store
            .get_message(&m4.id)
            .await
            .expect("get")
            .expect("exists")
            .attempts,
        1,
        "a message claimed once has one attempt"
    );

    submit(store, &m3.id, &["C0FFEE03"], t + 20_001).await;
    submit(store, &m4.id, &["C0FFEE04"], t + 20_002).await;
    assert!(
        store
            .claim_outbox(t + 100_000, 10, 1_000)
            .await
            .expect("claim")
            .is_empty(),
        "submitted and rejected ones are never claimed"
    );
    let depth = store.outbox_depth().await.expect("outbox_depth");
    assert_eq!(
        (depth.queued, depth.sending, depth.submitted),
        (depth0.queued, depth0.sending, depth0.submitted + 3),
        "depth after the run (rejected ones are not counted)"
    );
    assert!(
        store
            .claim_outbox(t + 100_000, 0, 1_000)
            .await
            .expect("claim")
            .is_empty(),
        "limit 0 claims nothing"
    );
}

/// Expiry: messages queued or sending past their expiry are expired (once)
/// and returned; they are not claimed; others are left alone.
pub async fn outbox_expiry<S: Store>(store: &S) {
    let t = T_EXPIRY;
    let svc = "conf-expiry";
    create_service(store, svc, t).await;
    let sending = queued(store, svc, 1, t, t + 100).await;
    let waiting = queued(store, svc, 2, t + 1, t + 100).await;
    let valid = queued(store, svc, 3, t + 2, t + TTL).await;

    let c = store
        .claim_outbox(t + 2, 1, 10_000)
        .await
        .expect("claim_outbox");
    assert_eq!(ids(&c), vec![sending.id.as_str()], "claim the oldest");
    let c = store
        .claim_outbox(t + 101, 10, 10_000)
        .await
        .expect("claim_outbox");
    assert_eq!(
        ids(&c),
        vec![valid.id.as_str()],
        "a message past its expiry is not claimed"
    );
    submit(store, &valid.id, &["E0E0E003"], t + 102).await;

    let expired = store.expire_outbox(t + 101).await.expect("expire_outbox");
    assert_eq!(
        ids(&expired),
        vec![sending.id.as_str(), waiting.id.as_str()],
        "expire_outbox returns the queued and sending messages past expiry, oldest first"
    );
    assert!(
        expired.iter().all(|m| m.state == MessageState::Expired),
        "returned in state expired"
    );
    assert_eq!(
        message_state(store, &waiting.id).await,
        MessageState::Expired,
        "stored as expired"
    );
    assert!(
        store
            .expire_outbox(t + 200)
            .await
            .expect("expire_outbox")
            .is_empty(),
        "expired only once"
    );
    assert_eq!(
        message_state(store, &valid.id).await,
        MessageState::Submitted,
        "a submitted message does not expire"
    );
    assert!(
        store
            .claim_outbox(t + 100_000, 10, 1_000)
            .await
            .expect("claim")
            .is_empty(),
        "expired ones are never claimed"
    );
}

// ---- receipts

/// Receipts find their message by correlation key: hex vs decimal ids,
/// case and leading zeros, multipart ids, the same-format preference; the
/// first final state sticks; unknown ids park.
pub async fn receipt_correlation<S: Store>(store: &S) {
    let t = T_RECEIPTS;
    let svc = "conf-dlr";
    create_service(store, svc, t).await;

    // Hex in submit_sm_resp, decimal in the receipt (0x1A2B = 6699).
    let m1 = queued(store, svc, 1, t, t + TTL).await;
    let sub = submit(store, &m1.id, &["1A2B"], t + 1).await;
    assert_eq!(
        sub.state,
        MessageState::Submitted,
        "mark_submitted: submitted"
    );
    assert_eq!(
        sub.smsc.as_deref(),
        Some("smsc-a"),
        "mark_submitted records the SMSC"
    );
    assert_eq!(
        sub.message_ids,
        vec!["1A2B".to_owned()],
        "mark_submitted records the ids as given"
    );
    assert_eq!(sub.updated_at, t + 1, "mark_submitted sets updated_at");
    let out = dlr(store, "6699", MessageState::Delivered, t + 2).await;
    assert_applied(
        &out,
        &m1.id,
        MessageState::Delivered,
        "decimal receipt for a hex id",
    );
    assert_eq!(
        message_state(store, &m1.id).await,
        MessageState::Delivered,
        "stored as delivered"
    );

    // The first final state sticks.
    let out = dlr(store, "1a2b", MessageState::Submitted, t + 3).await;
    assert_applied(
        &out,
        &m1.id,
        MessageState::Delivered,
        "a later non-final receipt",
    );
    let out = dlr(store, "00001A2B", MessageState::Undeliverable, t + 4).await;
    assert_applied(
        &out,
        &m1.id,
        MessageState::Delivered,
        "a later final receipt",
    );
    assert_eq!(
        message_state(store, &m1.id).await,
        MessageState::Delivered,
        "still delivered"
    );

    // Decimal in submit_sm_resp, hex in the receipt (4660 = 0x1234).
    let m2 = queued(store, svc, 2, t + 10, t + TTL).await;
    submit(store, &m2.id, &["4660"], t + 11).await;
    let out = dlr(store, "1234", MessageState::Undeliverable, t + 12).await;
    assert_applied(
        &out,
        &m2.id,
        MessageState::Undeliverable,
        "hex receipt for a decimal id",
    );

    // Case and leading zeros.
    let m3 = queued(store, svc, 3, t + 20, t + TTL).await;
    submit(store, &m3.id, &["000AbC9F"], t + 21).await;
    let out = dlr(store, "abc9f", MessageState::Delivered, t + 22).await;
    assert_applied(
        &out,
        &m3.id,
        MessageState::Delivered,
        "case and leading zeros do not matter",
    );

    // Multipart: a receipt for any part finds the message.
    let m4 = queued(store, svc, 4, t + 30, t + TTL).await;
    let sub = submit(store, &m4.id, &["5000000001", "5000000002"], t + 31).await;
    assert_eq!(
        sub.message_ids,
        vec!["5000000001".to_owned(), "5000000002".to_owned()],
        "every part's id is kept"
    );
    let out = dlr(store, "5000000002", MessageState::Submitted, t + 32).await;
    assert_applied(
        &out,
        &m4.id,
        MessageState::Submitted,
        "a non-final receipt of part 2",
    );
    let out = dlr(store, "5000000001", MessageState::Delivered, t + 33).await;
    assert_applied(
        &out,
        &m4.id,
        MessageState::Delivered,
        "a final receipt of part 1",
    );

    // Same-format preference: "4242" (decimal 4242 = 0x1092, or hex 0x4242)
    // and "16962" (decimal 16962 = 0x4242) share the key 4242; a receipt
    // quoting "4242" means the message whose id is "4242", although the
    // other one is newer.
    let m5 = queued(store, svc, 5, t + 40, t + TTL).await;
    let m6 = queued(store, svc, 6, t + 41, t + TTL).await;
    submit(store, &m5.id, &["4242"], t + 42).await;
    submit(store, &m6.id, &["16962"], t + 43).await;
    let out = dlr(store, "4242", MessageState::Delivered, t + 44).await;
    assert_applied(
        &out,
        &m5.id,
        MessageState::Delivered,
        "the same-format id is preferred over a newer one",
    );
    let out = dlr(store, "16962", MessageState::Undeliverable, t + 45).await;
    assert_applied(
        &out,
        &m6.id,
        MessageState::Undeliverable,
        "and the other way round",
    );

    // Reused id: the most recent message with it.
    let m7 = queued(store, svc, 7, t + 50, t + TTL).await;
    let m8 = queued(store, svc, 8, t + 51, t + TTL).await;
    submit(store, &m7.id, &["7A7A7A"], t + 52).await;
    submit(store, &m8.id, &["7A7A7A"], t + 53).await;
    let out = dlr(store, "7a7a7a", MessageState::Delivered, t + 54).await;
    assert_applied(
        &out,
        &m8.id,
        MessageState::Delivered,
        "a reused id means the most recent message",
    );
    assert_eq!(
        message_state(store, &m7.id).await,
        MessageState::Submitted,
        "the older message is untouched"
    );

    // Unknown id: parked.
    let out = dlr(store, "DEADBEEF42", MessageState::Delivered, t + 60).await;
    assert_eq!(
        out,
        DlrOutcome::Parked,
        "a receipt for an unknown id is parked"
    );
}

/// Receipts that arrive before submit_sm_resp is recorded are parked and
/// applied (oldest first, consumed) when the id is recorded.
pub async fn receipts_before_submit<S: Store>(store: &S) {
    let t = T_PARKED;
    let svc = "conf-parked";
    create_service(store, svc, t).await;

    let out = dlr(store, "77FF01", MessageState::Delivered, t).await;
    assert_eq!(out, DlrOutcome::Parked, "receipt before submit: parked");
    let m1 = queued(store, svc, 1, t, t + TTL).await;
    let sub = submit(store, &m1.id, &["77FF01"], t + 5).await;
    assert_eq!(
        sub.state,
        MessageState::Delivered,
        "mark_submitted applies the parked receipt"
    );
    assert_eq!(
        sub.message_ids,
        vec!["77FF01".to_owned()],
        "and records the id"
    );
    assert_eq!(
        message_state(store, &m1.id).await,
        MessageState::Delivered,
        "stored as delivered"
    );
    let m2 = queued(store, svc, 2, t + 6, t + TTL).await;
    let sub = submit(store, &m2.id, &["77FF01"], t + 7).await;
    assert_eq!(
        sub.state,
        MessageState::Submitted,
        "a parked receipt is consumed when applied"
    );

    // Several parked receipts for one id: applied oldest first.
    dlr(store, "88AA", MessageState::Submitted, t + 10).await;
    dlr(store, "88AA", MessageState::Delivered, t + 11).await;
    let m3 = queued(store, svc, 3, t + 12, t + TTL).await;
    let sub = submit(store, &m3.id, &["88AA"], t + 13).await;
    assert_eq!(
        sub.state,
        MessageState::Delivered,
        "intermediate then final receipt: final"
    );
    dlr(store, "99BB", MessageState::Undeliverable, t + 20).await;
    dlr(store, "99BB", MessageState::Submitted, t + 21).await;
    let m4 = queued(store, svc, 4, t + 22, t + TTL).await;
    let sub = submit(store, &m4.id, &["99BB"], t + 23).await;
    assert_eq!(
        sub.state,
        MessageState::Undeliverable,
        "final then late intermediate receipt: still final"
    );

    // Parked under the decimal form, submitted in hex (0x1A2C = 6700).
    let out = dlr(store, "6700", MessageState::Delivered, t + 30).await;
    assert_eq!(out, DlrOutcome::Parked, "parked");
    let m5 = queued(store, svc, 5, t + 31, t + TTL).await;
    let sub = submit(store, &m5.id, &["1A2C"], t + 32).await;
    assert_eq!(
        sub.state,
        MessageState::Delivered,
        "a parked decimal receipt applies to a hex id"
    );

    // Multipart: the parked receipt of part 2.
    let out = dlr(store, "6000000002", MessageState::Delivered, t + 40).await;
    assert_eq!(out, DlrOutcome::Parked, "parked");
    let m6 = queued(store, svc, 6, t + 41, t + TTL).await;
    let sub = submit(store, &m6.id, &["6000000001", "6000000002"], t + 42).await;
    assert_eq!(
        sub.state,
        MessageState::Delivered,
        "a parked receipt of any part applies"
    );

    // A parked receipt of an unrelated id stays parked.
    dlr(store, "ABCDEF0123", MessageState::Delivered, t + 50).await;
    let m7 = queued(store, svc, 7, t + 51, t + TTL).await;
    let sub = submit(store, &m7.id, &["ABCDEF0124"], t + 52).await;
    assert_eq!(
        sub.state,
        MessageState::Submitted,
        "an unrelated parked receipt is not applied"
    );
    let m8 = queued(store, svc, 8, t + 53, t + TTL).await;
    let sub = submit(store, &m8.id, &["ABCDEF0123"], t + 54).await;
    assert_eq!(
        sub.state,
        MessageState::Delivered,
        "it applies to its own message later"
    );
}

// ---- rate limits

/// Fixed windows: hits counted up to the limit, refused after, reset at the
/// window end; keys independent.
pub async fn rate_limits<S: Store>(store: &S) {
    let key = "conf:rate:number:+15550003001";
    for (i, now) in [10_500, 10_600, 10_999].into_iter().enumerate() {
        let d = store.rate_hit(key, 3, 1_000, now).await.expect("rate_hit");
        assert!(d.allowed, "hit {} of 3 is allowed", i + 1);
        assert_eq!(d.count, i as u32 + 1, "count includes the allowed hit");
        assert_eq!(
            d.reset_at, 11_000,
            "the window [10000, 11000) ends at 11000"
        );
    }
    let d = store
        .rate_hit(key, 3, 1_000, 10_999)
        .await
        .expect("rate_hit");
    assert!(!d.allowed, "the 4th hit in the window is refused");
    assert_eq!(
        (d.count, d.reset_at),
        (3, 11_000),
        "a refused hit is not counted"
    );
    let d = store
        .rate_hit(key, 3, 1_000, 11_000)
        .await
        .expect("rate_hit");
    assert!(d.allowed, "a new window starts at 11000");
    assert_eq!(
        (d.count, d.reset_at),
        (1, 12_000),
        "counting restarts in the new window"
    );

    let other = "conf:rate:ip:192.0.2.1";
    let d = store
        .rate_hit(other, 3, 1_000, 10_999)
        .await
        .expect("rate_hit");
    assert!(d.allowed && d.count == 1, "keys are independent, got {d:?}");
    let d = store
        .rate_hit("conf:rate:zero", 0, 1_000, 10_000)
        .await
        .expect("rate_hit");
    assert_eq!(
        (d.allowed, d.count, d.reset_at),
        (false, 0, 11_000),
        "limit 0 refuses everything"
    );

    let hour = 3_600_000;
    let now = 1_700_000_123_456;
    let start = now - now % hour;
    let d = store
        .rate_hit("conf:rate:hour", 1, hour, now)
        .await
        .expect("rate_hit");
    assert_eq!(
        (d.allowed, d.count, d.reset_at),
        (true, 1, start + hour),
        "an hour window"
    );
    let d = store
        .rate_hit("conf:rate:hour", 1, hour, start + hour - 1)
        .await
        .expect("rate_hit");
    assert!(!d.allowed, "limit 1: the second hit in the hour is refused");

    let hits = futures::future::join_all(
        (0..10).map(|_| store.rate_hit("conf:rate:race", 4, 1_000, 50_000)),
    )
    .await;
    let allowed = hits
        .into_iter()
        .map(|d| d.expect("racing rate_hit"))
        .filter(|d| d.allowed)
        .count();
    assert_eq!(allowed, 4, "racing hits: exactly the limit is allowed");

    // Several limits in one call: counted in order up to the first refusal.
    let hit = |key, limit| RateHit {
        key,
        limit,
        window_ms: 1_000,
    };
    let batch = [
        hit("conf:rate:batch:a", 5),
        hit("conf:rate:batch:b", 1),
        hit("conf:rate:batch:c", 5),
    ];
    let first = store.rate_hits(&batch, 70_000).await.expect("rate_hits");
    assert_eq!(
        first
            .iter()
            .map(|d| (d.allowed, d.count))
            .collect::<Vec<_>>(),
        [(true, 1), (true, 1), (true, 1)],
        "all three counted"
    );
    let second = store.rate_hits(&batch, 70_001).await.expect("rate_hits");
    assert_eq!(
        second
            .iter()
            .map(|d| (d.allowed, d.count))
            .collect::<Vec<_>>(),
        [(true, 2), (false, 1)],
        "stops at the refused limit"
    );
    let c = store
        .rate_hit("conf:rate:batch:c", 5, 1_000, 70_002)
        .await
        .expect("rate_hit");
    assert_eq!(c.count, 2, "the limit after the refusal was not counted");
    assert!(store
        .rate_hits(&[], 70_000)
        .await
        .expect("empty")
        .is_empty());
}

/// Pruning drops rate windows and idempotency keys older than the cut-offs
/// and keeps newer ones.
pub async fn pruning<S: Store>(store: &S) {
    let t = T_VERIFY + 900_000;
    let svc = "conf-prune";
    create_service(store, svc, t).await;
    let hour = 3_600_000;
    let old_t = t - 2 * hour;
    for (key, at) in [("conf:prune:old", old_t), ("conf:prune:new", t)] {
        let d = store.rate_hit(key, 1, hour, at).await.expect("rate_hit");
        assert!(d.allowed);
    }
    for (tag, to, at) in [
        ("prune_old", "+15550009001", old_t),
        ("prune_new", "+15550009002", t),
    ] {
        let (v, m) = pair(tag, svc, to, at);
        let rec = IdempotencyRecord {
            service: svc.to_owned(),
            key: tag.to_owned(),
            request_hash: b"h".to_vec(),
            verification_id: v.id.clone(),
        };
        store
            .insert_verification(&v, (&m).into(), Some(&rec))
            .await
            .expect("insert");
    }
    let deleted = store.prune(t - hour, t - hour).await.expect("prune");
    assert!(
        deleted >= 2,
        "the old window and the old key, got {deleted}"
    );
    let d = store
        .rate_hit("conf:prune:old", 1, hour, old_t)
        .await
        .expect("rate_hit");
    assert!(d.allowed && d.count == 1, "the old window is gone: {d:?}");
    let d = store
        .rate_hit("conf:prune:new", 1, hour, t)
        .await
        .expect("rate_hit");
    assert!(!d.allowed, "the new window is kept");
    assert_eq!(
        store.get_idempotency(svc, "prune_old").await.expect("get"),
        None,
        "the old key is gone"
    );
    assert!(
        store
            .get_idempotency(svc, "prune_new")
            .await
            .expect("get")
            .is_some(),
        "the new key is kept"
    );
}

// ---- webhooks

/// The webhook queue: due jobs oldest first with a lease, reclaimed after
/// it ran out, retried at their time, removed when completed or dropped.
pub async fn webhook_queue<S: Store>(store: &S) {
    let t = T_WEBHOOKS;
    let job = |id: &str, at: Millis| WebhookJob {
        id: id.to_owned(),
        service: "conf-hooks".to_owned(),
        url: "https://example.invalid/hook".to_owned(),
        body: format!("{{\"event\":\"verification.approved\",\"id\":\"{id}\"}}"),
        attempts: 0,
        next_attempt_at: at,
        last_error: None,
    };
    let j1 = job("wh_conf_1", t);
    let j2 = job("wh_conf_2", t + 1);
    let j3 = job("wh_conf_3", t + 1_000);
    for j in [&j1, &j2, &j3] {
        store.enqueue_webhook(j).await.expect("enqueue_webhook");
    }
    let dup = store.enqueue_webhook(&j1).await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "a duplicate job id is a Conflict, got {dup:?}"
    );

    let c = store
        .claim_webhooks(t + 1, 10, 100)
        .await
        .expect("claim_webhooks");
    let expect = |j: &WebhookJob, attempts: u32, err: Option<&str>, next: Millis| WebhookJob {
        attempts,
        last_error: err.map(str::to_owned),
        next_attempt_at: next,
        ..j.clone()
    };
    assert_eq!(
        c,
        vec![expect(&j1, 1, None, t), expect(&j2, 1, None, t + 1)],
        "due jobs, oldest first, attempt counted"
    );
    assert!(
        store
            .claim_webhooks(t + 2, 10, 100)
            .await
            .expect("claim")
            .is_empty(),
        "leased jobs are not handed out"
    );
    let c = store
        .claim_webhooks(t + 101, 1, 100)
        .await
        .expect("claim_webhooks");
    assert_eq!(
        c,
        vec![expect(&j1, 2, None, t)],
        "lease ran out: claimed again, oldest first, up to the limit"
    );
    store
        .complete_webhook(&j1.id)
        .await
        .expect("complete_webhook");
    let c = store
        .claim_webhooks(t + 101, 10, 100)
        .await
        .expect("claim_webhooks");
    assert_eq!(
        c,
        vec![expect(&j2, 2, None, t + 1)],
        "a completed job is gone"
    );

    store
        .retry_webhook(&j2.id, "HTTP 503", Some(t + 500))
        .await
        .expect("retry_webhook");
    assert!(
        store
            .claim_webhooks(t + 499, 10, 100)
            .await
            .expect("claim")
            .is_empty(),
        "a retry waits for its time"
    );
    let c = store
        .claim_webhooks(t + 1_000, 10, 100)
        .await
        .expect("claim_webhooks");
    assert_eq!(
        c,
        vec![
            expect(&j2, 3, Some("HTTP 503"), t + 500),
            expect(&j3, 1, None, t + 1_000)
        ],
        "a retry is due at its time with its error; oldest first"
    );
    store
        .retry_webhook(&j2.id, "HTTP 410", None)
        .await
        .expect("retry_webhook");
    store
        .complete_webhook(&j3.id)
        .await
        .expect("complete_webhook");
    assert!(
        store
            .claim_webhooks(t + 1_000_000, 10, 100)
            .await
            .expect("claim")
            .is_empty(),
        "dropped and completed jobs are gone"
    );
}

// ---- accounts and sessions

/// Accounts are unique per (service, number); sessions per token hash.
pub async fn accounts_and_sessions<S: Store>(store: &S) {
    let t = T_ACCOUNTS;
    create_service(store, "conf-acct", t).await;
    create_service(store, "conf-acct-other", t).await;
    let account = |id: &str, service: &str, msisdn: &str| Account {
        id: id.to_owned(),
        service: service.to_owned(),
        msisdn: msisdn.to_owned(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
        created_at: t,
    };
    let a1 = account("acct_conf_1", "conf-acct", "+15550004001");
    store.create_account(&a1).await.expect("create_account");
    let dup = store
        .create_account(&account("acct_conf_2", "conf-acct", "+15550004001"))
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "a second account for (service, number): Conflict, got {dup:?}"
    );
    let dup = store
        .create_account(&account("acct_conf_1", "conf-acct", "+15550004002"))
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "a duplicate account id: Conflict, got {dup:?}"
    );
    let mut a3 = account("acct_conf_3", "conf-acct-other", "+15550004001");
    a3.password_hash = None;
    store
        .create_account(&a3)
        .await
        .expect("the same number in another service is another account");
    assert_eq!(
        store
            .get_account_by_msisdn("conf-acct", "+15550004001")
            .await
            .expect("get_account_by_msisdn"),
        Some(a1.clone()),
        "account by (service, number)"
    );
    assert_eq!(
        store
            .get_account_by_msisdn("conf-acct-other", "+15550004001")
            .await
            .expect("get_account_by_msisdn"),
        Some(a3.clone()),
        "accounts are per service"
    );
    assert_eq!(
        store
            .get_account_by_msisdn("conf-acct", "+15550004999")
            .await
            .expect("get"),
        None,
        "unknown number: None"
    );

    let s1 = Session {
        id: "sess_conf_1".to_owned(),
        account_id: a1.id.clone(),
        token_hash: vec![0xAB; 32],
        created_at: t + 1,
        expires_at: t + 86_400_000,
    };
    store.create_session(&s1).await.expect("create_session");
    let dup = store
        .create_session(&Session {
            id: "sess_conf_2".to_owned(),
            ..s1.clone()
        })
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "a duplicate token hash: Conflict, got {dup:?}"
    );
    assert_eq!(
        store
            .get_session_by_token_hash(&[0xAB; 32])
            .await
            .expect("get_session_by_token_hash"),
        Some(s1.clone()),
        "session by token hash"
    );
    assert_eq!(
        store
            .get_session_by_token_hash(&[0xCD; 32])
            .await
            .expect("get_session"),
        None,
        "unknown token: None"
    );
}

// ---- audit

/// Audit events come back newest first (by time, then insertion), intact.
pub async fn audit_order<S: Store>(store: &S) {
    let t = T_AUDIT;
    let event = |at: Millis, n: u32, service: Option<&str>| AuditEvent {
        at,
        service: service.map(str::to_owned),
        kind: format!("conf.audit.{n}"),
        detail: serde_json::json!({ "n": n, "to": "+1555***4001", "nested": { "ok": true } }),
    };
    let events = [
        event(t, 1, Some("conf-svc-a")),
        event(t + 1, 2, None),
        event(t + 2, 3, Some("conf-svc-a")),
        event(t + 3, 4, None),
        event(t + 3, 5, Some("conf-svc-b")),
    ];
    for e in &events {
        store.audit(e).await.expect("audit");
    }
    let recent = store.recent_audit(3).await.expect("recent_audit");
    assert_eq!(
        recent,
        vec![events[4].clone(), events[3].clone(), events[2].clone()],
        "newest first, insertion breaks ties"
    );
    let recent = store.recent_audit(5).await.expect("recent_audit");
    let kinds: Vec<&str> = recent.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec![
            "conf.audit.5",
            "conf.audit.4",
            "conf.audit.3",
            "conf.audit.2",
            "conf.audit.1"
        ],
        "the whole order"
    );
    assert!(
        store
            .recent_audit(0)
            .await
            .expect("recent_audit")
            .is_empty(),
        "limit 0: nothing"
    );
    let unique: HashSet<&str> = kinds.iter().copied().collect();
    assert_eq!(unique.len(), 5, "each event once");
}

/// A call fixture `call_conf_{tag}`.
fn call(tag: &str, vid: Option<&str>, kind: CallKind, to: &str, at: Millis) -> CallJob {
    CallJob {
        id: format!("call_conf_{tag}"),
        verification_id: vid.map(str::to_owned),
        service: "conf-calls".into(),
        kind,
        to: to.into(),
        caller: (kind == CallKind::FlashCall).then(|| "+447400900123".into()),
        code: (kind == CallKind::Voice).then(|| "365882".into()),
        fallback_text: (kind == CallKind::Voice).then(|| "Your code is 365882".into()),
        locale: "en".into(),
        state: CallState::Queued,
        sip_code: None,
        detail: None,
        attempts: 0,
        next_attempt_at: at,
        expires_at: at + TTL,
        created_at: at,
        updated_at: at,
    }
}

fn key(k: &[u8], since: Millis) -> RequestKey<'_> {
    RequestKey { key: k, since }
}

/// A call as stored now (what a worker holding its claim has).
async fn current<S: Store>(store: &S, id: &str) -> CallJob {
    store.get_call(id).await.unwrap().expect("call exists")
}

fn outcome(state: CallState, sip: Option<u16>) -> CallResult {
    CallResult {
        state,
        sip_code: sip,
        detail: Some(format!("{} in the battery", state.as_str())),
        retry_at: None,
        not_placed: false,
        fallback: None,
    }
}

/// The call queue: verification + call in one transaction, claims with
/// leases, outcomes, fallback SMS, cancel on close, expiry, CLIs in use.
pub async fn call_queue<S: Store>(store: &S) {
    let t = T_CALLS;
    let svc = "conf-calls";
    create_service(store, svc, t).await;
    let mut v = verification("vf_conf_call_voice", svc, "+447400500001", t);
    v.channel = "voice".into();
    let voice = call("voice", Some(&v.id), CallKind::Voice, &v.to, t);
    assert_eq!(
        store
            .insert_verification(&v, (&voice).into(), None)
            .await
            .unwrap(),
        InsertOutcome::Created
    );
    assert_eq!(
        store.calls_for_verification(&v.id).await.unwrap(),
        vec![voice.clone()],
        "a verification's first call is stored with it"
    );
    let gateway = call("gateway", None, CallKind::Voice, "+447400500002", t + 1);
    store.enqueue_call(&gateway, None).await.unwrap();
    let mut later = call("later", None, CallKind::Voice, "+447400500003", t);
    later.next_attempt_at = t + 60_000;
    store.enqueue_call(&later, None).await.unwrap();
    let mut stale = call(
        "stale",
        None,
        CallKind::Voice,
        "+447400500004",
        t - TTL - 10,
    );
    stale.expires_at = t - 1;
    store.enqueue_call(&stale, None).await.unwrap();

    // Claims: due ones, oldest first, counted; not again within the lease.
    let claimed = store.claim_calls(t + 10, 10, 5_000).await.unwrap();
    let ids: Vec<&str> = claimed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["call_conf_voice", "call_conf_gateway"],
        "due calls, oldest first; not one due later, not one past its expiry"
    );
    assert!(claimed
        .iter()
        .all(|c| c.state == CallState::Calling && c.attempts == 1));
    assert!(store
        .claim_calls(t + 20, 10, 5_000)
        .await
        .unwrap()
        .is_empty());
    // A worker that died: its calls come back after the lease.
    let again = store.claim_calls(t + 5_011, 10, 5_000).await.unwrap();
    assert_eq!(again.len(), 2, "claimed again after the lease");
    assert!(again.iter().all(|c| c.attempts == 2));

    // Expiry takes the queued call past its expiry, forgetting its code.
    let expired = store.expire_calls(t + 5_011).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (
            expired[0].id.as_str(),
            expired[0].state,
            expired[0].code.as_deref()
        ),
        ("call_conf_stale", CallState::Expired, None)
    );

    // A retry keeps the code; a final outcome forgets it and the fallback text.
    let retry = CallResult {
        retry_at: Some(t + 30_000),
        ..outcome(CallState::Queued, Some(503))
    };
    let c = store
        .finish_call(&current(store, &gateway.id).await, &retry, t + 6_000)
        .await
        .unwrap();
    assert_eq!(
        (c.state, c.next_attempt_at, c.code.as_deref()),
        (CallState::Queued, t + 30_000, Some("365882"))
    );
    let c = store
        .finish_call(
            &current(store, &voice.id).await,
            &outcome(CallState::Answered, Some(200)),
            t + 6_000,
        )
        .await
        .unwrap();
    assert_eq!(
        (c.state, c.sip_code, c.code, c.fallback_text),
        (CallState::Answered, Some(200), None, None)
    );
    // A late report from a worker whose lease ran out changes nothing,
    // and queues no fallback.
    let late = CallResult {
        fallback: Some(message("msg_conf_late_fallback", &v.id, svc, &v.to, t)),
        ..outcome(CallState::Busy, Some(486))
    };
    let c = store
        .finish_call(&current(store, &voice.id).await, &late, t + 7_000)
        .await
        .unwrap();
    assert_eq!(c.state, CallState::Answered, "the first outcome sticks");
    assert!(
        store
            .get_message("msg_conf_late_fallback")
            .await
            .unwrap()
            .is_none(),
        "no fallback for a call that did not change"
    );
    assert!(matches!(
        store
            .finish_call(
                &current(store, &voice.id).await,
                &outcome(CallState::Calling, None),
                t
            )
            .await,
        Err(StoreError::Database(_))
    ));
    assert!(matches!(
        store
            .finish_call(
                &call("nope", None, CallKind::Voice, "+447400500099", t),
                &outcome(CallState::Failed, None),
                t
            )
            .await,
        Err(StoreError::NotFound(_))
    ));

    // A failed voice call's fallback SMS is queued with the outcome.
    let mut v2 = verification("vf_conf_call_fallback", svc, "+447400500005", t);
    v2.channel = "voice".into();
    let c2 = call("fallback", Some(&v2.id), CallKind::Voice, &v2.to, t);
    store
        .insert_verification(&v2, (&c2).into(), None)
        .await
        .unwrap();
    let sms = message("msg_conf_fallback", &v2.id, svc, &v2.to, t + 8_000);
    let busy = CallResult {
        fallback: Some(sms.clone()),
        ..outcome(CallState::Busy, Some(486))
    };
    let c = store
        .finish_call(&current(store, &c2.id).await, &busy, t + 8_000)
        .await
        .unwrap();
    assert_eq!((c.state, c.sip_code), (CallState::Busy, Some(486)));
    assert_eq!(
        store.messages_for_verification(&v2.id).await.unwrap(),
        vec![sms],
        "the fallback SMS is stored with the outcome"
    );

    // Flash calls: the CLI counts as in use while its verification is
    // pending and unexpired, for that destination only.
    let mut fv = verification("vf_conf_call_flash", svc, "+447400500006", t);
    fv.channel = "flash_call".into();
    let fc = call("flash", Some(&fv.id), CallKind::FlashCall, &fv.to, t);
    store
        .insert_verification(&fv, (&fc).into(), None)
        .await
        .unwrap();
    assert_eq!(
        store.flash_clis_in_use(&fv.to, t + 1).await.unwrap(),
        vec!["+447400900123".to_string()]
    );
    assert!(store
        .flash_clis_in_use("+447400500007", t + 1)
        .await
        .unwrap()
        .is_empty());
    assert!(
        store
            .flash_clis_in_use(&fv.to, fv.expires_at)
            .await
            .unwrap()
            .is_empty(),
        "not once the verification expired"
    );
    // A resend places another call (another CLI) in the same transaction.
    let mut fc2 = call(
        "flash2",
        Some(&fv.id),
        CallKind::FlashCall,
        &fv.to,
        t + 9_000,
    );
    fc2.caller = Some("+447400900124".into());
    assert!(store
        .record_resend(
            &Resend {
                verification_id: &fv.id,
                last_sent_at: fv.last_sent_at,
                code_hash: b"new-hash",
                expires_at: t + 9_000 + TTL,
                send: (&fc2).into(),
                idempotency: None,
            },
            t + 9_000,
        )
        .await
        .unwrap());
    let mut clis = store.flash_clis_in_use(&fv.to, t + 9_001).await.unwrap();
    clis.sort();
    assert_eq!(clis, vec!["+447400900123", "+447400900124"]);
    // Closing the verification: queued calls are cancelled, calling ones
    // are returned (their worker hangs up).
    let claimed = store.claim_calls(t + 9_001, 10, 60_000).await.unwrap();
    assert!(claimed.iter().any(|c| c.id == fc.id) && claimed.iter().any(|c| c.id == fc2.id));
    let c = store
        .finish_call(
            &current(store, &fc2.id).await,
            &CallResult {
                retry_at: Some(t + 20_000),
                ..outcome(CallState::Queued, None)
            },
            t + 9_002,
        )
        .await
        .unwrap();
    assert_eq!(c.state, CallState::Queued);
    assert!(store
        .update_verification(
            &fv.id,
            VerificationStatus::Pending,
            0,
            VerificationStatus::Approved,
            0,
            t + 9_003
        )
        .await
        .unwrap());
    let calling = store
        .cancel_calls_for_verification(&fv.id, t + 9_003)
        .await
        .unwrap();
    assert_eq!(
        calling.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        vec!["call_conf_flash"]
    );
    assert_eq!(
        store.get_call(&fc2.id).await.unwrap().map(|c| c.state),
        Some(CallState::Canceled)
    );
    assert!(store
        .flash_clis_in_use(&fv.to, t + 9_004)
        .await
        .unwrap()
        .is_empty());
    // A worker whose lease ran out reports after the call was claimed again:
    // its report does not overwrite the new attempt's.
    let mut fenced = call("fenced", None, CallKind::Voice, "+447400500010", t + 9_500);
    fenced.service = "vg:fence".into();
    store.enqueue_call(&fenced, None).await.unwrap();
    let first_claim = store
        .claim_calls(t + 9_500, 100, 1_000)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == fenced.id)
        .expect("claimed");
    let second_claim = store
        .claim_calls(t + 10_600, 100, 60_000)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == fenced.id)
        .expect("claimed again after the lease");
    assert_eq!((first_claim.attempts, second_claim.attempts), (1, 2));
    let c = store
        .finish_call(
            &first_claim,
            &outcome(CallState::Busy, Some(486)),
            t + 10_700,
        )
        .await
        .unwrap();
    assert_eq!(
        c.state,
        CallState::Calling,
        "the stale worker's report is ignored"
    );
    let c = store
        .finish_call(
            &second_claim,
            &outcome(CallState::Answered, Some(200)),
            t + 10_800,
        )
        .await
        .unwrap();
    assert_eq!(c.state, CallState::Answered);
    // A due call of a closed verification is cancelled, never placed.
    let mut cv = verification("vf_conf_call_closed", svc, "+447400500011", t);
    cv.channel = "voice".into();
    let cc = call("closed", Some(&cv.id), CallKind::Voice, &cv.to, t + 10_900);
    store
        .insert_verification(&cv, (&cc).into(), None)
        .await
        .unwrap();
    assert!(store
        .update_verification(
            &cv.id,
            VerificationStatus::Pending,
            0,
            VerificationStatus::Canceled,
            0,
            t + 10_900
        )
        .await
        .unwrap());
    assert!(store
        .claim_calls(t + 10_901, 100, 60_000)
        .await
        .unwrap()
        .iter()
        .all(|c| c.id != cc.id));
    let c = current(store, &cc.id).await;
    assert_eq!((c.state, c.code), (CallState::Canceled, None));

    // Voice-gateway requests: a repeated request key returns the first
    // call and writes nothing; the key is per service.
    let mut first = call("req1", None, CallKind::Voice, "+447400500009", t + 10_000);
    first.service = "vg:6258".into();
    assert_eq!(
        store
            .enqueue_call(&first, Some(key(b"k2-digest", t)))
            .await
            .unwrap(),
        None
    );
    let mut again = call("req2", None, CallKind::Voice, "+447400500009", t + 10_001);
    again.service = "vg:6258".into();
    assert_eq!(
        store
            .enqueue_call(&again, Some(key(b"k2-digest", t)))
            .await
            .unwrap(),
        Some(first.clone()),
        "a repeated request returns the call it made"
    );
    assert_eq!(store.get_call(&again.id).await.unwrap(), None);
    assert_eq!(
        store
            .find_call_by_request("vg:6258", key(b"k2-digest", t))
            .await
            .unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store
            .find_call_by_request("vg:6258", key(b"other", t))
            .await
            .unwrap(),
        None
    );
    again.service = "vg:6259".into();
    assert_eq!(
        store
            .enqueue_call(&again, Some(key(b"k2-digest", t)))
            .await
            .unwrap(),
        None
    );
    // The key outlives the call's code: a replay after the outcome still
    // finds the call.
    store.claim_calls(t + 10_002, 10, 60_000).await.unwrap();
    store
        .finish_call(
            &current(store, &first.id).await,
            &outcome(CallState::Answered, Some(200)),
            t + 10_003,
        )
        .await
        .unwrap();
    let found = store
        .find_call_by_request("vg:6258", key(b"k2-digest", t))
        .await
        .unwrap()
        .expect("found after its outcome");
    assert_eq!((found.state, found.code), (CallState::Answered, None));
    // Past the window the same request is a new call, and takes the key.
    let mut later = call("req3", None, CallKind::Voice, "+447400500009", t + 400_000);
    later.service = "vg:6258".into();
    assert_eq!(
        store
            .find_call_by_request("vg:6258", key(b"k2-digest", t + 100_000))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .enqueue_call(&later, Some(key(b"k2-digest", t + 100_000)))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .find_call_by_request("vg:6258", key(b"k2-digest", t + 100_000))
            .await
            .unwrap()
            .map(|c| c.id),
        Some(later.id.clone())
    );
    // Leave the queue empty for other tests.
    store
        .finish_call(
            &current(store, &fc.id).await,
            &outcome(CallState::Rang, Some(487)),
            t + 9_005,
        )
        .await
        .unwrap();
    for c in store.claim_calls(t + 100_000, 100, 60_000).await.unwrap() {
        store
            .finish_call(
                &current(store, &c.id).await,
                &outcome(CallState::Failed, None),
                t + 100_000,
            )
            .await
            .unwrap();
    }
}

fn mo(id: &str, from: &str, text: &str, at: Millis) -> MoMessage {
    MoMessage {
        id: id.into(),
        smsc: "conf".into(),
        source: from.into(),
        dest: "7799".into(),
        text: text.into(),
        received_at: at,
    }
}

fn pending_login(token: &str, svc: &str, at: Millis) -> MoLogin {
    MoLogin {
        token: token.into(),
        service: svc.into(),
        intent: MoIntent::Login,
        state: MoLoginState::Pending,
        msisdn: None,
        account_id: None,
        created_account: false,
        session_token: None,
        created_at: at,
        expires_at: at + TTL,
        completed_at: None,
    }
}

/// MOs stored with their outcome in one write: a login completed (account
/// found or made with its password SMS, session, webhook), a refusal with
/// its reply, a redelivery that writes nothing; the session handed out once.
pub async fn mo_login<S: Store>(store: &S) {
    let t = T_MO;
    let svc = "conf-mo";
    create_service(store, svc, t).await;
    let account = Account {
        id: "acc_conf_mo".into(),
        service: svc.into(),
        msisdn: "+447400600001".into(),
        password_hash: Some("$hmac-sha256$v1$fixture".into()),
        created_at: t,
    };
    let session = |n: u8| Session {
        id: format!("ses_conf_mo_{n}"),
        account_id: String::new(),
        token_hash: format!("session-hash-{n}").into_bytes(),
        created_at: t,
        expires_at: t + TTL,
    };
    let sms = |id: &str, text: &str| OutboxMessage {
        verification_id: None,
        text: text.into(),
        expires_at: t + 100 * TTL,
        ..message(id, "", svc, "+447400600001", t)
    };
    let hook = |id: &str| WebhookJob {
        id: id.into(),
        service: svc.into(),
        url: "https://app.example/hook".into(),
        body: "{}".into(),
        attempts: 0,
        next_attempt_at: t,
        last_error: None,
    };
    let (unknown, expired, used) = (
        sms("msg_conf_mo_unknown", "unknown"),
        sms("msg_conf_mo_expired", "expired"),
        sms("msg_conf_mo_used", "used"),
    );
    let plan = |c: CompleteMoLogin<'static>| MoPlan::Login {
        complete: c,
        unknown: Box::leak(Box::new(unknown.clone())),
        expired: Box::leak(Box::new(expired.clone())),
        used: Box::leak(Box::new(used.clone())),
    };
    let complete =
        |token: &'static str, mo_id: &'static str, n: u8, pw: Option<&str>, wh: Option<&str>| {
            CompleteMoLogin {
                token,
                msisdn: "+447400600001",
                mo_id,
                new_account: Box::leak(Box::new(account.clone())),
                session: Box::leak(Box::new(session(n))),
                session_token: "st_secret",
                password_sms: pw.map(|id| &*Box::leak(Box::new(sms(id, "password")))),
                webhook: wh.map(|id| &*Box::leak(Box::new(hook(id)))),
            }
        };
    // What was queued since the last look (each is then closed).
    let queued_ids = |at: Millis| async move {
        let mut ids = Vec::new();
        for m in store.claim_outbox(at, 100, 60_000).await.unwrap() {
            store.mark_failed(&m.id, "battery", None, at).await.unwrap();
            ids.push(m.id);
        }
        ids
    };

    // A login completed by its MO: the account is made with it, its
    // password SMS and the webhook queued, all in the MO's write.
    store
        .create_mo_login(&pending_login("ABCD2345", svc, t))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_mo_login(&pending_login("ABCD2345", svc, t))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let m1 = mo("mo_conf_1", "+447400600001", "LOGIN ABCD2345", t);
    let out = store
        .receive_mo(
            &m1,
            b"key-1",
            600_000,
            &plan(complete(
                "ABCD2345",
                "mo_conf_1",
                1,
                Some("msg_conf_mo_pw"),
                Some("wh_conf_mo"),
            )),
            t + 10,
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        Some(MoLoginOutcome::Completed {
            account: account.clone(),
            created: true
        })
    );
    let got = store.get_mo_login("ABCD2345").await.unwrap().unwrap();
    assert_eq!(got.state, MoLoginState::Completed);
    assert_eq!(got.msisdn.as_deref(), Some("+447400600001"));
    assert_eq!(got.account_id.as_deref(), Some("acc_conf_mo"));
    assert!(got.created_account);
    assert_eq!(got.session_token.as_deref(), Some("st_secret"));
    let ses = store
        .get_session_by_token_hash(b"session-hash-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ses.account_id, "acc_conf_mo");
    assert_eq!(
        queued_ids(t + 20).await,
        vec!["msg_conf_mo_pw"],
        "password only, no refusal"
    );
    let hooks = store.claim_webhooks(t + 20, 100, 60_000).await.unwrap();
    assert!(hooks.iter().any(|w| w.id == "wh_conf_mo"));

    // The SMSC delivers it again: nothing is written, not even a reply.
    let again = mo("mo_conf_1b", "+447400600001", "LOGIN ABCD2345", t + 1_000);
    assert_eq!(
        store
            .receive_mo(
                &again,
                b"key-1",
                600_000,
                &plan(complete("ABCD2345", "mo_conf_1b", 9, None, None)),
                t + 1_000
            )
            .await
            .unwrap(),
        None
    );
    assert!(queued_ids(t + 1_001).await.is_empty());
    assert_eq!(
        store
            .get_session_by_token_hash(b"session-hash-9")
            .await
            .unwrap(),
        None
    );

    // The token in a new MO: used; only that refusal is queued, no session.
    let m2 = mo("mo_conf_2", "+447400600001", "ABCD2345", t + 2_000);
    assert_eq!(
        store
            .receive_mo(
                &m2,
                b"key-2",
                600_000,
                &plan(complete(
                    "ABCD2345",
                    "mo_conf_2",
                    2,
                    Some("msg_conf_mo_pw2"),
                    None
                )),
                t + 2_000
            )
            .await
            .unwrap(),
        Some(MoLoginOutcome::Used)
    );
    assert_eq!(queued_ids(t + 2_001).await, vec!["msg_conf_mo_used"]);
    assert_eq!(
        store
            .get_session_by_token_hash(b"session-hash-2")
            .await
            .unwrap(),
        None
    );
    // An unknown token.
    let m3 = mo("mo_conf_3", "+447400600001", "ZZZZ9999", t + 3_000);
    assert_eq!(
        store
            .receive_mo(
                &m3,
                b"key-3",
                600_000,
                &plan(complete("ZZZZ9999", "mo_conf_3", 3, None, None)),
                t + 3_000
            )
            .await
            .unwrap(),
        Some(MoLoginOutcome::Unknown)
    );
    assert_eq!(queued_ids(t + 3_001).await, vec!["msg_conf_mo_unknown"]);
    // An expired one.
    store
        .create_mo_login(&pending_login("JKMN2345", svc, t))
        .await
        .unwrap();
    let m4 = mo("mo_conf_4", "+447400600001", "JKMN2345", t + TTL + 1);
    assert_eq!(
        store
            .receive_mo(
                &m4,
                b"key-4",
                600_000,
                &plan(complete("JKMN2345", "mo_conf_4", 4, None, None)),
                t + TTL + 1
            )
            .await
            .unwrap(),
        Some(MoLoginOutcome::Expired)
    );
    assert_eq!(queued_ids(t + TTL + 2).await, vec!["msg_conf_mo_expired"]);
    // A second login from the number reaches the same account; no password
    // SMS (the account exists), though one was offered.
    store
        .create_mo_login(&pending_login("EFGH6789", svc, t + 50))
        .await
        .unwrap();
    let m5 = mo("mo_conf_5", "+447400600001", "EFGH6789", t + 5_000);
    let mut c5 = complete("EFGH6789", "mo_conf_5", 5, Some("msg_conf_mo_pw5"), None);
    c5.new_account = Box::leak(Box::new(Account {
        id: "acc_conf_mo_unused".into(),
        ..account.clone()
    }));
    assert_eq!(
        store
            .receive_mo(&m5, b"key-5", 600_000, &plan(c5), t + 5_000)
            .await
            .unwrap(),
        Some(MoLoginOutcome::Completed {
            account: account.clone(),
            created: false
        })
    );
    assert!(
        queued_ids(t + 5_001).await.is_empty(),
        "no password for an existing account"
    );
    // A plain Finish: recorded, its reply queued.
    let m6 = mo("mo_conf_6", "+447400600001", "hello", t + 6_000);
    let no_token = sms("msg_conf_mo_notoken", "no token");
    assert!(store
        .receive_mo(
            &m6,
            b"key-6",
            600_000,
            &MoPlan::Finish {
                outcome: "no_token",
                reply: Some(&no_token)
            },
            t + 6_000
        )
        .await
        .unwrap()
        .is_some());
    assert_eq!(queued_ids(t + 6_001).await, vec!["msg_conf_mo_notoken"]);
    // Outside the redelivery window the same MO is a new one.
    let m7 = mo("mo_conf_7", "+447400600001", "hello", t + 700_000);
    assert!(store
        .receive_mo(
            &m7,
            b"key-6",
            600_000,
            &MoPlan::Finish {
                outcome: "no_token",
                reply: None
            },
            t + 700_000
        )
        .await
        .unwrap()
        .is_some());

    // The session is handed out once.
    let first = store.collect_mo_login("ABCD2345").await.unwrap().unwrap();
    assert_eq!(first.session_token.as_deref(), Some("st_secret"));
    let second = store.collect_mo_login("ABCD2345").await.unwrap().unwrap();
    assert_eq!(
        (second.state, second.session_token),
        (MoLoginState::Collected, None)
    );
    assert_eq!(store.collect_mo_login("NOPE2345").await.unwrap(), None);
    // Housekeeping: old MOs, logins long expired (with a session token never
    // collected), expired sessions and the texts of finished SMS go.
    let uncollected = store.get_mo_login("EFGH6789").await.unwrap().unwrap();
    assert_eq!(uncollected.session_token.as_deref(), Some("st_secret"));
    let forgotten = store
        .forget_old(&Forget {
            mos_before: t + 5_500,
            logins_expired_before: t + 50 + TTL + 1,
            sessions_expired_before: t + TTL + 1,
            texts_before: t + 100_000_000,
        })
        .await
        .unwrap();
    assert!(forgotten >= 5, "{forgotten}");
    assert_eq!(store.get_mo_login("EFGH6789").await.unwrap(), None);
    assert_eq!(
        store
            .get_session_by_token_hash(b"session-hash-1")
            .await
            .unwrap(),
        None
    );
    // The MOs before the cut are gone: the first one is new again.
    assert!(store
        .receive_mo(
            &mo("mo_conf_1c", "+447400600001", "LOGIN ABCD2345", t + 5_600),
            b"key-1",
            600_000,
            &MoPlan::Finish {
                outcome: "no_token",
                reply: None
            },
            t + 5_600
        )
        .await
        .unwrap()
        .is_some());
    // A finished SMS keeps no text (the password is not kept).
    let pw = store.get_message("msg_conf_mo_pw").await.unwrap().unwrap();
    assert_eq!(pw.text, "");
    // Leave the queues empty for other tests.
    for m in store
        .claim_outbox(t + 100_000_000, 1000, 60_000)
        .await
        .unwrap()
    {
        store
            .mark_failed(&m.id, "battery", None, t + 100_000_000)
            .await
            .unwrap();
    }
}

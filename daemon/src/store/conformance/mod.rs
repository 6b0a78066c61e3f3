//! The conformance battery every store backend must pass.
//!
//! One battery per domain (a module each, its `run` does every check of
//! the domain). A backend's tests call each domain's `run`, or [`run_all`],
//! on a fresh, migrated store (SQLite: `store::sqlite` tests; a PostgreSQL
//! backend: the same calls on a fresh schema). Every check is a plain
//! `assert!` naming the rule it checks. Built for this crate's tests, or
//! with the `conformance` feature; never in the release binary.
//!
//! The individual checks are public so a failing one can be run alone. They
//! share one store without interfering: each uses its own service codes,
//! numbers, message ids and rate-limit keys, and its own time range (see
//! the `T_*` constants); queue tests (outbox, webhooks) finish all their
//! work, and work left queued by the verification tests is due only far in
//! the future, so no test claims another's messages or jobs.
//!
//! Beyond the doc comments on the domain traits, the battery pins these choices
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

pub mod audit;
pub mod bindings;
pub mod calls;
pub mod limits;
pub mod mologin;
pub mod outbox;
pub mod registry;
pub mod retention;
pub mod services;
pub mod txqueue;
pub mod txrelay;
pub mod verifications;
pub mod webhooks;

pub(crate) use std::collections::HashSet;

pub(crate) use verigate_codecs::dlr::message_id_keys;

pub(crate) use super::*;

/// The domains the SMS path's batteries (verifications, outbox, rate
/// limits' pruning) use together: a backend passes those once it has these.
pub trait SmsPath:
    ServiceStore + VerificationStore + OutboxStore + WebhookStore + RetentionStore + RateLimitStore
{
}

impl<T> SmsPath for T where
    T: ServiceStore
        + VerificationStore
        + OutboxStore
        + WebhookStore
        + RetentionStore
        + RateLimitStore
{
}

/// Time ranges of the tests (Unix ms). Queue tests use ranges below the
/// verification tests, whose first messages stay queued.
pub(crate) const T_SERVICES: Millis = 1_000_000_000_000;

pub(crate) const T_OUTBOX: Millis = 2_000_000_000_000;

pub(crate) const T_EXPIRY: Millis = 2_100_000_000_000;

pub(crate) const T_RECEIPTS: Millis = 2_200_000_000_000;

pub(crate) const T_PARKED: Millis = 2_300_000_000_000;

pub(crate) const T_FENCE: Millis = 2_350_000_000_000;

pub(crate) const T_WEBHOOKS: Millis = 2_400_000_000_000;

pub(crate) const T_ACCOUNTS: Millis = 2_500_000_000_000;

pub(crate) const T_CALLS: Millis = 2_600_000_000_000;

pub(crate) const T_MO: Millis = 2_700_000_000_000;

pub(crate) const T_VERIFY: Millis = 9_000_000_000_000;

pub(crate) const T_AUDIT: Millis = 9_500_000_000_000;

pub(crate) const T_RETENTION: Millis = 9_700_000_000_000;

pub(crate) const T_REGISTRY: Millis = 2_800_000_000_000;

pub(crate) const T_BINDINGS: Millis = 2_900_000_000_000;

pub(crate) const T_TXRELAY: Millis = 2_950_000_000_000;

pub(crate) const T_TXQUEUE: Millis = 2_960_000_000_000;

/// How long fixtures stay valid.
pub(crate) const TTL: Millis = 600_000;

/// A service fixture (shared with the backends' own tests).
pub(crate) fn service(code: &str, at: Millis) -> Service {
    Service {
        code: code.to_owned(),
        name: format!("Service {code}"),
        settings: serde_json::json!({ "limits": { "per_number_per_hour": 5 }, "templates": { "en": "Code {code}" } }),
        created_at: at,
    }
}

pub(crate) async fn create_service<S: ServiceStore>(store: &S, code: &str, at: Millis) {
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
pub(crate) fn pair(
    tag: &str,
    service: &str,
    to: &str,
    at: Millis,
) -> (Verification, OutboxMessage) {
    let v = verification(&format!("vf_conf_{tag}"), service, to, at);
    let m = message(&format!("msg_conf_{tag}"), &v.id, service, to, at);
    (v, m)
}

/// Stores verification `n` of `svc` (number `+1555…n`) with its first
/// message `msg_<svc>_<n>`, due at `at` and created at `at`; returns the message.
pub(crate) async fn queued<S: SmsPath>(
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

/// Something with a message id: a message, or a claimed one.
pub(crate) trait MessageId {
    fn message_id(&self) -> &str;
}

impl MessageId for OutboxMessage {
    fn message_id(&self) -> &str {
        &self.id
    }
}

impl MessageId for Claimed<OutboxMessage> {
    fn message_id(&self) -> &str {
        &self.job.id
    }
}

pub(crate) fn ids<M: MessageId>(msgs: &[M]) -> Vec<&str> {
    msgs.iter().map(MessageId::message_id).collect()
}

/// The jobs of a claim, without their leases.
pub(crate) fn jobs<T>(claimed: Vec<Claimed<T>>) -> Vec<T> {
    claimed.into_iter().map(|c| c.job).collect()
}

/// The lease of job `id` among claimed jobs.
pub(crate) fn lease_of<T>(claimed: &[Claimed<T>], id: &str) -> Lease {
    claimed
        .iter()
        .map(|c| &c.lease)
        .find(|l| l.id == id)
        .unwrap_or_else(|| panic!("{id} must be among the claimed"))
        .clone()
}

pub(crate) fn keys(message_id: &str) -> Vec<String> {
    message_id_keys(message_id).to_vec()
}

pub(crate) async fn message_state<S: SmsPath>(store: &S, id: &str) -> MessageState {
    store
        .get_message(id)
        .await
        .unwrap_or_else(|e| panic!("get_message {id}: {e}"))
        .unwrap_or_else(|| panic!("message {id} must exist"))
        .state
}

/// Marks never-claimed message `id` submitted (as a tool acting on the
/// queue directly would).
pub(crate) async fn submit<S: SmsPath>(
    store: &S,
    id: &str,
    message_ids: &[&str],
    at: Millis,
) -> OutboxMessage {
    submit_held(store, &Lease::unclaimed(id), message_ids, at).await
}

/// Marks the message held by `lease` submitted.
pub(crate) async fn submit_held<S: SmsPath>(
    store: &S,
    lease: &Lease,
    message_ids: &[&str],
    at: Millis,
) -> OutboxMessage {
    let ids: Vec<String> = message_ids.iter().map(|s| (*s).to_owned()).collect();
    store
        .mark_submitted(lease, "smsc-a", &ids, at)
        .await
        .unwrap_or_else(|e| panic!("mark_submitted {}: {e}", lease.id))
}

pub(crate) async fn dlr<S: SmsPath>(
    store: &S,
    receipt_id: &str,
    state: MessageState,
    at: Millis,
) -> DlrOutcome {
    store
        .record_dlr(&keys(receipt_id), state, at)
        .await
        .unwrap_or_else(|e| panic!("record_dlr {receipt_id}: {e}"))
}

/// Asserts `outcome` applied the receipt to message `id`, leaving `state`.
pub(crate) fn assert_applied(outcome: &DlrOutcome, id: &str, state: MessageState, what: &str) {
    match outcome {
        DlrOutcome::Applied(m) => {
            assert_eq!(m.id, id, "{what}: receipt applied to the wrong message");
            assert_eq!(m.state, state, "{what}: state after the receipt");
        }
        DlrOutcome::Parked => panic!("{what}: receipt must be applied to {id}, was parked"),
    }
}

/// Runs every domain's battery on `store`.
pub async fn run_all<S: Store>(store: &S) {
    services::run(store).await;
    verifications::run(store).await;
    outbox::run(store).await;
    limits::run(store).await;
    webhooks::run(store).await;
    mologin::run(store).await;
    calls::run(store).await;
    audit::run(store).await;
    registry::run(store).await;
    bindings::run(store).await;
    txrelay::run(store).await;
    txqueue::run(store).await;
    retention::run(store).await;
}

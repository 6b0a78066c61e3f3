//! The store: a domain trait (not a SQL abstraction) with one backend per
//! database. Every backend must pass the conformance battery in
//! [`conformance`]; SQLite (WAL) is the embedded default.

pub mod conformance;
pub mod sqlite;
mod types;

pub use types::*;

use async_trait::async_trait;

/// Who is at fault when the store fails.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A record with this key exists already (the caller's request conflicts).
    #[error("already exists: {0}")]
    Conflict(String),
    /// The record does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The database failed (our side or the operator's database).
    #[error("database error: {0}")]
    Database(String),
    /// Stored data could not be read back (a bug or a manual edit).
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// Result alias.
pub type StoreResult<T> = Result<T, StoreError>;

/// An Idempotency-Key seen on a start request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// Service code.
    pub service: String,
    /// The client's key.
    pub key: String,
    /// Hash of the request body, to refuse a reused key with another body.
    pub request_hash: Vec<u8>,
    /// Verification the key produced.
    pub verification_id: String,
}

/// Outcome of inserting a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored together with its first message.
    Created,
    /// Another pending verification for (service, to) exists: returned instead.
    PendingExists(Verification),
    /// The idempotency key was used before: its record is returned.
    IdempotentReplay(IdempotencyRecord),
}

/// Outcome of a delivery receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one per receipt; boxing buys nothing here
pub enum DlrOutcome {
    /// Applied to this message (its state after the update).
    Applied(OutboxMessage),
    /// No message has this id yet (receipt before submit_sm_resp was
    /// recorded): parked, and applied when the id is recorded.
    Parked,
}

/// A webhook delivery in the durable webhook queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookJob {
    /// Opaque id.
    pub id: String,
    /// Service code.
    pub service: String,
    /// Target URL.
    pub url: String,
    /// JSON body to POST.
    pub body: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before this time.
    pub next_attempt_at: Millis,
    /// Last error.
    pub last_error: Option<String>,
}

/// Number of outbox messages per state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    /// Waiting to be sent.
    pub queued: u64,
    /// Claimed by a sender.
    pub sending: u64,
    /// Accepted by an SMSC, no final receipt yet.
    pub submitted: u64,
}

/// Everything verigate keeps. Implementations must be safe to share between
/// tasks and between instances on one database (claims use leases).
/// One hit on a fixed-window rate limit (see [`Store::rate_hits`]).
#[derive(Debug, Clone, Copy)]
pub struct RateHit<'a> {
    /// What is limited, e.g. `num:acme:447700900123`.
    pub key: &'a str,
    /// Hits allowed per window.
    pub limit: u32,
    /// Window length.
    pub window_ms: i64,
}

/// What [`Store::forget_old`] forgets: everything before these times.
#[derive(Debug, Clone, Copy)]
pub struct Forget {
    /// MOs stored before this.
    pub mos_before: Millis,
    /// Logins whose token expired before this.
    pub logins_expired_before: Millis,
    /// Sessions that expired before this.
    pub sessions_expired_before: Millis,
    /// Texts of SMS whose final state came before this.
    pub texts_before: Millis,
}

/// A voice-gateway request's key and how far back a repeat of it counts.
#[derive(Debug, Clone, Copy)]
pub struct RequestKey<'a> {
    /// The key (a digest of the request's K2).
    pub key: &'a [u8],
    /// Calls made before this do not count.
    pub since: Millis,
}

/// An MO that carries a pending login's token (see [`Store::receive_mo`]).
#[derive(Debug, Clone)]
pub struct CompleteMoLogin<'a> {
    /// The token the MO carried.
    pub token: &'a str,
    /// The sender's number (E.164 with `+`).
    pub msisdn: &'a str,
    /// The MO, marked processed in the same transaction.
    pub mo_id: &'a str,
    /// The account to create if the service has none for the number.
    pub new_account: &'a Account,
    /// The session to create (its `account_id` is set to the account used).
    pub session: &'a Session,
    /// The session token in clear, kept until the app collects it.
    pub session_token: &'a str,
    /// SMS with the new account's password, queued only if the account is created.
    pub password_sms: Option<&'a OutboxMessage>,
    /// Webhook to the service, queued on completion.
    pub webhook: Option<&'a WebhookJob>,
}

/// What to do with an MO in the transaction that stores it (see
/// [`Store::receive_mo`]).
#[derive(Debug, Clone)]
pub enum MoPlan<'a> {
    /// Complete the login its token names; if that cannot be done, queue
    /// the matching refusal instead.
    Login {
        /// The completion.
        complete: CompleteMoLogin<'a>,
        /// Reply when no login has the token.
        unknown: &'a OutboxMessage,
        /// Reply when the token expired.
        expired: &'a OutboxMessage,
        /// Reply when the token was used.
        used: &'a OutboxMessage,
    },
    /// Record `outcome` and queue `reply`, if any.
    Finish {
        /// The MO's outcome.
        outcome: &'a str,
        /// The SMS back.
        reply: Option<&'a OutboxMessage>,
    },
}

/// A resend to record (see [`Store::record_resend`]).
#[derive(Debug, Clone)]
pub struct Resend<'a> {
    /// The verification.
    pub verification_id: &'a str,
    /// Its `last_sent_at` as the caller read it.
    pub last_sent_at: Millis,
    /// Hash of the fresh code.
    pub code_hash: &'a [u8],
    /// The fresh code's expiry (the verification's new expiry).
    pub expires_at: Millis,
    /// The SMS or call carrying it.
    pub send: Dispatch<'a>,
    /// The request's idempotency key, if it sent one.
    pub idempotency: Option<&'a IdempotencyRecord>,
}

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    // ---- durability
    /// Returns once every write committed before the call is durable. An
    /// answer built from rows another request wrote (a replayed or repeated
    /// start) waits for this, so it never promises a row that could still
    /// be lost.
    async fn barrier(&self) -> StoreResult<()> {
        Ok(())
    }
    /// Why the store can no longer make writes durable, if so (readiness
    /// reports it; the operator restarts).
    fn durability_problem(&self) -> Option<String> {
        None
    }

    // ---- services and API keys
    /// Adds a service; `Conflict` if the code exists.
    async fn create_service(&self, s: &Service) -> StoreResult<()>;
    /// A service by code.
    async fn get_service(&self, code: &str) -> StoreResult<Option<Service>>;
    /// All services, by code.
    async fn list_services(&self) -> StoreResult<Vec<Service>>;
    /// Replaces a service's settings; `NotFound` if absent.
    async fn update_service_settings(
        &self,
        code: &str,
        settings: &serde_json::Value,
    ) -> StoreResult<()>;
    /// Adds an API key; `Conflict` on a duplicate key_id or hash.
    async fn add_api_key(&self, k: &ApiKeyRecord) -> StoreResult<()>;
    /// The unrevoked key with this hash.
    async fn find_api_key(&self, hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>>;
    /// A service's keys, revoked ones included, oldest first.
    async fn list_api_keys(&self, service: &str) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Revokes every unrevoked key of `service` except `keep_key_id`; returns how many.
    async fn revoke_api_keys(
        &self,
        service: &str,
        keep_key_id: &str,
        at: Millis,
    ) -> StoreResult<u64>;

    // ---- verifications
    /// Stores a new pending verification and its first send (an outbox
    /// message or a queued call) in one transaction. At most one pending verification per (service, to): if one
    /// exists, nothing is written and it is returned. With an idempotency
    /// record whose (service, key) was seen before, nothing is written and
    /// the earlier record is returned.
    async fn insert_verification(
        &self,
        v: &Verification,
        first: Dispatch<'_>,
        idem: Option<&IdempotencyRecord>,
    ) -> StoreResult<InsertOutcome>;
    /// The idempotency record of (service, key), if the key was used.
    async fn get_idempotency(
        &self,
        service: &str,
        key: &str,
    ) -> StoreResult<Option<IdempotencyRecord>>;
    /// A verification by id.
    async fn get_verification(&self, id: &str) -> StoreResult<Option<Verification>>;
    /// The pending verification of (service, to), if any (even if past expiry).
    async fn find_pending(&self, service: &str, to: &str) -> StoreResult<Option<Verification>>;
    /// Writes status, attempts and updated_at if the stored status and
    /// attempts still equal `expect_status`/`expect_attempts` (compare and
    /// set, so concurrent checks cannot both consume an attempt). Returns
    /// whether it was applied.
    async fn update_verification(
        &self,
        id: &str,
        expect_status: VerificationStatus,
        expect_attempts: u32,
        status: VerificationStatus,
        attempts: u32,
        at: Millis,
    ) -> StoreResult<bool>;
    /// Records a resend with a fresh code, atomically: new code hash and
    /// expiry, sends+1, last_sent_at, the new outbox message and (if given)
    /// the request's idempotency key. Applies only while the verification
    /// is pending and its `last_sent_at` is still `r.last_sent_at`; returns
    /// false (writing nothing) when another resend or a close came first,
    /// `NotFound` for an unknown verification. The old code stops working:
    /// only its hash was kept.
    async fn record_resend(&self, r: &Resend<'_>, at: Millis) -> StoreResult<bool>;
    /// Records an idempotency key for an existing verification (a start that
    /// was answered with the pending one); a key already recorded is kept.
    async fn record_idempotency(&self, rec: &IdempotencyRecord, at: Millis) -> StoreResult<()>;

    // ---- outbox and receipts
    /// Claims up to `limit` messages due at `now` (queued with
    /// next_attempt_at ≤ now, or sending whose lease ran out — a sender that
    /// died), marks them sending with a lease until `now + lease_ms`, and
    /// counts the attempt. Oldest first.
    async fn claim_outbox(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<OutboxMessage>>;
    /// The SMSC accepted the message: records smsc and ids (with their
    /// correlation keys from `verigate_codecs::dlr::message_id_keys`) and
    /// applies any receipt parked for those ids. Returns the message after.
    async fn mark_submitted(
        &self,
        id: &str,
        smsc: &str,
        message_ids: &[String],
        at: Millis,
    ) -> StoreResult<OutboxMessage>;
    /// A send failed: back to queued at `retry_at`, or to `Rejected` when
    /// `retry_at` is None.
    async fn mark_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<Millis>,
        at: Millis,
    ) -> StoreResult<()>;
    /// Marks messages still queued or sending past their expiry as Expired and returns them.
    async fn expire_outbox(&self, now: Millis) -> StoreResult<Vec<OutboxMessage>>;
    /// Applies a receipt to the message with any of these correlation keys;
    /// parks it if none is known yet.
    async fn record_dlr(
        &self,
        keys: &[String],
        state: MessageState,
        at: Millis,
    ) -> StoreResult<DlrOutcome>;
    /// A message by id.
    async fn get_message(&self, id: &str) -> StoreResult<Option<OutboxMessage>>;
    /// Messages of a verification, oldest first.
    async fn messages_for_verification(
        &self,
        verification_id: &str,
    ) -> StoreResult<Vec<OutboxMessage>>;
    /// Counts per state.
    async fn outbox_depth(&self) -> StoreResult<OutboxDepth>;

    // ---- calls
    /// Queues a call that belongs to no verification (the voice gateway).
    /// With a request key that (service, key) already has on a call made
    /// since `request.since`, nothing is written and that call is returned
    /// (a repeated or replayed request); an older call gives the key up.
    async fn enqueue_call(
        &self,
        call: &CallJob,
        request: Option<RequestKey<'_>>,
    ) -> StoreResult<Option<CallJob>>;
    /// The call made since `request.since` for (service, key), if any.
    async fn find_call_by_request(
        &self,
        service: &str,
        request: RequestKey<'_>,
    ) -> StoreResult<Option<CallJob>>;
    /// Claims up to `limit` calls due at `now` (queued and due, or calling
    /// with a lease that ran out: a worker that died, whose call is placed
    /// again), like [`Store::claim_outbox`]. Calls past their expiry are
    /// left to [`Store::finish_call`] by the caller's sweep. Oldest first.
    async fn claim_calls(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<CallJob>>;
    /// Records the outcome of the call as `claimed` (or a retry, `state ==
    /// Queued`). Applies only if the call is unfinished and still at the
    /// claim's attempt: a worker whose lease ran out and whose call was
    /// claimed again cannot overwrite the new attempt. A final state forgets
    /// the code. Returns the call after, `NotFound` for an unknown id.
    async fn finish_call(
        &self,
        claimed: &CallJob,
        r: &CallResult,
        at: Millis,
    ) -> StoreResult<CallJob>;
    /// Cancels the unfinished calls of a verification that was closed
    /// (approved, cancelled, expired); returns those that were `calling`,
    /// whose worker should hang up.
    async fn cancel_calls_for_verification(
        &self,
        verification_id: &str,
        at: Millis,
    ) -> StoreResult<Vec<CallJob>>;
    /// Marks calls still queued past their expiry as expired and returns them.
    async fn expire_calls(&self, now: Millis) -> StoreResult<Vec<CallJob>>;
    /// A call by id.
    async fn get_call(&self, id: &str) -> StoreResult<Option<CallJob>>;
    /// Calls of a verification, oldest first.
    async fn calls_for_verification(&self, verification_id: &str) -> StoreResult<Vec<CallJob>>;
    /// The caller numbers of flash calls to `to` whose verification is
    /// still pending and unexpired at `now` (a pool number is not reused for
    /// the same destination while one is).
    async fn flash_clis_in_use(&self, to: &str, now: Millis) -> StoreResult<Vec<String>>;

    // ---- rate limits
    /// Counts one hit on `key` in the fixed window of `window_ms` containing
    /// `now`, unless `limit` hits were counted already. Atomic across
    /// instances.
    async fn rate_hit(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now: Millis,
    ) -> StoreResult<RateDecision> {
        let d = self
            .rate_hits(
                &[RateHit {
                    key,
                    limit,
                    window_ms,
                }],
                now,
            )
            .await?;
        d.into_iter()
            .next()
            .ok_or_else(|| StoreError::Database("rate_hits answered nothing".into()))
    }
    /// Several hits in one go (a request passes several limits): each as
    /// [`Store::rate_hit`], in order, stopping at the first refused one, so
    /// a refused request counts only against the limits before it. Returns
    /// the decisions made, the last one refused if any was.
    async fn rate_hits(&self, hits: &[RateHit<'_>], now: Millis) -> StoreResult<Vec<RateDecision>>;
    /// Deletes rate-limit windows that started before `windows_before` and
    /// idempotency keys recorded before `keys_before` (housekeeping, so keys
    /// that never recur do not accumulate). Returns the rows deleted.
    async fn prune(&self, windows_before: Millis, keys_before: Millis) -> StoreResult<u64>;
    /// Forgets what no longer needs keeping (housekeeping): MOs stored
    /// before `f.mos_before`; logins whose token expired before
    /// `f.logins_expired_before` (with any session token never collected);
    /// sessions that expired before `f.sessions_expired_before`; the text of
    /// SMS that reached a final state before `f.texts_before` (codes and
    /// passwords are not kept). Returns the rows changed.
    async fn forget_old(&self, f: &Forget) -> StoreResult<u64>;

    // ---- webhooks
    /// Queues a webhook delivery.
    async fn enqueue_webhook(&self, job: &WebhookJob) -> StoreResult<()>;
    /// Claims due webhook jobs with a lease (like [`Store::claim_outbox`]).
    async fn claim_webhooks(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<WebhookJob>>;
    /// Delivered: removes the job.
    async fn complete_webhook(&self, id: &str) -> StoreResult<()>;
    /// Failed: retry at `retry_at`, or drop when None (recorded in audit by the caller).
    async fn retry_webhook(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<Millis>,
    ) -> StoreResult<()>;

    // ---- MO login
    /// Stores a new MO login; `Conflict` if its token exists.
    async fn create_mo_login(&self, l: &MoLogin) -> StoreResult<()>;
    /// An MO login by token.
    async fn get_mo_login(&self, token: &str) -> StoreResult<Option<MoLogin>>;
    /// Stores an MO and carries out `plan` on it in one transaction, so an
    /// MO is never stored without its outcome (one durable write; the
    /// deliver_sm_resp goes out after it). An MO with the same `dedup_key`
    /// as one stored within `window_ms` before `m.received_at` is the SMSC
    /// delivering it again: nothing is written and `None` returned.
    /// Otherwise the login's outcome (`Unknown` for a `Finish` plan). A
    /// login plan checks the token is pending and unexpired at `at`; finds
    /// the service's account for the sender or creates `new_account`
    /// (queueing `password_sms`); creates the session; completes the login;
    /// queues the webhook. When the token is unknown, expired or used it
    /// queues the matching refusal instead.
    async fn receive_mo(
        &self,
        m: &MoMessage,
        dedup_key: &[u8],
        window_ms: i64,
        plan: &MoPlan<'_>,
        at: Millis,
    ) -> StoreResult<Option<MoLoginOutcome>>;
    /// Hands a completed login's session token out once: returns the login
    /// as it was (with the token) and marks it collected, forgetting the
    /// token. Other states are returned unchanged.
    async fn collect_mo_login(&self, token: &str) -> StoreResult<Option<MoLogin>>;

    // ---- accounts and sessions (MO login)
    /// Adds an account; `Conflict` if (service, msisdn) exists.
    async fn create_account(&self, a: &Account) -> StoreResult<()>;
    /// The account of (service, msisdn).
    async fn get_account_by_msisdn(
        &self,
        service: &str,
        msisdn: &str,
    ) -> StoreResult<Option<Account>>;
    /// Adds a session.
    async fn create_session(&self, s: &Session) -> StoreResult<()>;
    /// The session with this token hash.
    async fn get_session_by_token_hash(&self, token_hash: &[u8]) -> StoreResult<Option<Session>>;

    // ---- audit
    /// Appends an audit event.
    async fn audit(&self, e: &AuditEvent) -> StoreResult<()>;
    /// Latest audit events, newest first.
    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditEvent>>;
}

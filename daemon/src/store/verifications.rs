//! Verifications: one number, one service, one code at a time; their
//! idempotency keys and the first or repeated send each carries.

use super::*;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Lifecycle of a verification (also its API schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerificationStatus {
    /// Waiting for the right code.
    Pending,
    /// The right code was given.
    Approved,
    /// Not approved in time.
    Expired,
    /// Too many wrong codes.
    MaxAttemptsReached,
    /// Canceled by the service.
    Canceled,
}

impl VerificationStatus {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationStatus::Pending => "pending",
            VerificationStatus::Approved => "approved",
            VerificationStatus::Expired => "expired",
            VerificationStatus::MaxAttemptsReached => "max_attempts_reached",
            VerificationStatus::Canceled => "canceled",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => VerificationStatus::Pending,
            "approved" => VerificationStatus::Approved,
            "expired" => VerificationStatus::Expired,
            "max_attempts_reached" => VerificationStatus::MaxAttemptsReached,
            "canceled" => VerificationStatus::Canceled,
            _ => return None,
        })
    }
}

/// One verification of one number for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Opaque id (`vf_…`).
    pub id: String,
    /// Service code.
    pub service: String,
    /// E.164 number with `+`.
    pub to: String,
    /// Channel (`sms`; later `voice`, `flashcall`).
    pub channel: String,
    /// Locale of the message template.
    pub locale: String,
    /// Status.
    pub status: VerificationStatus,
    /// Keyed hash of the code (never the code itself).
    pub code_hash: Vec<u8>,
    /// Wrong checks so far.
    pub attempts: u32,
    /// Wrong checks allowed.
    pub max_attempts: u32,
    /// Messages sent for it (first send and resends).
    pub sends: u32,
    /// When created.
    pub created_at: Millis,
    /// When it stops accepting codes.
    pub expires_at: Millis,
    /// Last send (for the resend cooldown).
    pub last_sent_at: Millis,
    /// Last status change.
    pub updated_at: Millis,
}

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

/// A resend to record (see [`VerificationStore::record_resend`]).
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

/// The first (or a repeated) send of a verification: an SMS or a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch<'a> {
    /// An SMS through the outbox.
    Sms(&'a OutboxMessage),
    /// A call through the call queue.
    Call(&'a CallJob),
}

impl<'a> From<&'a OutboxMessage> for Dispatch<'a> {
    fn from(m: &'a OutboxMessage) -> Self {
        Dispatch::Sms(m)
    }
}

impl<'a> From<&'a CallJob> for Dispatch<'a> {
    fn from(c: &'a CallJob) -> Self {
        Dispatch::Call(c)
    }
}

impl Dispatch<'_> {
    /// An owned copy.
    pub fn to_owned(self) -> OwnedDispatch {
        match self {
            Dispatch::Sms(m) => OwnedDispatch::Sms(m.clone()),
            Dispatch::Call(c) => OwnedDispatch::Call(c.clone()),
        }
    }
}

/// [`Dispatch`] owned, to move onto a store thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedDispatch {
    /// An SMS.
    Sms(OutboxMessage),
    /// A call.
    Call(CallJob),
}

/// A compare-and-set status change of a verification (see
/// [`VerificationStore::change_status`]).
#[derive(Debug, Clone, Copy)]
pub struct StatusChange<'a> {
    /// The verification.
    pub id: &'a str,
    /// The status it must still have.
    pub expect_status: VerificationStatus,
    /// The attempts it must still have.
    pub expect_attempts: u32,
    /// The new status.
    pub status: VerificationStatus,
    /// The new attempts.
    pub attempts: u32,
    /// Queued in the same transaction when the change applies, so a crash
    /// cannot keep the change and lose its webhook.
    pub webhook: Option<&'a WebhookJob>,
}

/// Verifications and their idempotency keys.
#[async_trait]
pub trait VerificationStore: Send + Sync {
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
    ) -> StoreResult<bool> {
        let change = StatusChange {
            id,
            expect_status,
            expect_attempts,
            status,
            attempts,
            webhook: None,
        };
        self.change_status(&change, at).await
    }
    /// [`VerificationStore::update_verification`] with its webhook queued in
    /// the same transaction when the change applies.
    async fn change_status(&self, c: &StatusChange<'_>, at: Millis) -> StoreResult<bool>;
    /// Up to `limit` verifications still pending at `now` past their
    /// expiry, oldest expiry first (for the sweep that expires them).
    async fn pending_expired(&self, now: Millis, limit: u32) -> StoreResult<Vec<Verification>>;
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
    /// Forgets idempotency keys recorded before `before` (housekeeping:
    /// a key is honoured for a day). Returns the rows deleted.
    async fn forget_idempotency_keys(&self, before: Millis) -> StoreResult<u64>;
}

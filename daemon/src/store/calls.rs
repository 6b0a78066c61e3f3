//! The durable call queue (voice and flash calls, voice-gateway calls).

use super::*;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// What a call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// Reads a code aloud after answer.
    Voice,
    /// Rings from a pool number and hangs up; the caller ID is the proof.
    FlashCall,
}

impl CallKind {
    /// Storage/API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Voice => "voice",
            CallKind::FlashCall => "flash_call",
        }
    }

    /// Parses the storage spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "voice" => CallKind::Voice,
            "flash_call" => CallKind::FlashCall,
            _ => return None,
        })
    }
}

/// Where a call is (also its API schema). `queued` and `calling` are
/// unfinished; the rest are outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Stored, waiting for a call worker.
    Queued,
    /// Taken by a worker; the call is being placed or is up.
    Calling,
    /// Answered (a voice call read its code; a flash call's 200 raced the CANCEL).
    Answered,
    /// The phone rang and the call was cancelled (a flash call's success).
    Rang,
    /// The callee was busy (486/600).
    Busy,
    /// Nobody answered in time (voice), or it never rang (flash).
    NoAnswer,
    /// The network refused or failed the call (SIP code recorded).
    Failed,
    /// Cancelled by us before it was placed or finished (verification closed).
    Canceled,
    /// Not placed before it expired.
    Expired,
}

impl CallState {
    /// Storage/API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Queued => "queued",
            CallState::Calling => "calling",
            CallState::Answered => "answered",
            CallState::Rang => "rang",
            CallState::Busy => "busy",
            CallState::NoAnswer => "no_answer",
            CallState::Failed => "failed",
            CallState::Canceled => "canceled",
            CallState::Expired => "expired",
        }
    }

    /// Parses the storage spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => CallState::Queued,
            "calling" => CallState::Calling,
            "answered" => CallState::Answered,
            "rang" => CallState::Rang,
            "busy" => CallState::Busy,
            "no_answer" => CallState::NoAnswer,
            "failed" => CallState::Failed,
            "canceled" => CallState::Canceled,
            "expired" => CallState::Expired,
            _ => return None,
        })
    }

    /// True once the call has an outcome.
    pub fn is_final(self) -> bool {
        !matches!(self, CallState::Queued | CallState::Calling)
    }
}

/// A call in the durable call queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallJob {
    /// Opaque id (`call_…`).
    pub id: String,
    /// Verification it belongs to (none for voice-gateway calls).
    pub verification_id: Option<String>,
    /// Service code (or voice-gateway service number).
    pub service: String,
    /// Voice or flash call.
    pub kind: CallKind,
    /// Callee, E.164 with `+`.
    pub to: String,
    /// Caller number shown (a flash call's pool CLI; none: the trunk's).
    pub caller: Option<String>,
    /// Digits a voice call reads; forgotten once the call has an outcome.
    pub code: Option<String>,
    /// SMS text sent instead if a voice call fails; forgotten with the code.
    pub fallback_text: Option<String>,
    /// Prompt locale.
    pub locale: String,
    /// State.
    pub state: CallState,
    /// Final SIP status, if one came.
    pub sip_code: Option<u16>,
    /// Outcome details or the last error, for operators.
    pub detail: Option<String>,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before this time.
    pub next_attempt_at: Millis,
    /// Give up placing it after this time.
    pub expires_at: Millis,
    /// When created.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
}

/// The outcome of a call, to record (see [`CallStore::finish_call`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    /// Final state, or `Queued` to retry at `retry_at`.
    pub state: CallState,
    /// Final SIP status, if one came.
    pub sip_code: Option<u16>,
    /// Details for operators.
    pub detail: Option<String>,
    /// With `state == Queued`: when to try again.
    pub retry_at: Option<Millis>,
    /// With `state == Queued`: the claim did not place the call (every
    /// trunk was at its limit), so it does not count as an attempt.
    pub not_placed: bool,
    /// An SMS to queue with the outcome (a failed voice call's fallback),
    /// in the same transaction.
    pub fallback: Option<OutboxMessage>,
}

/// A voice-gateway request's key and how far back a repeat of it counts.
#[derive(Debug, Clone, Copy)]
pub struct RequestKey<'a> {
    /// The key (a digest of the request's K2).
    pub key: &'a [u8],
    /// Calls made before this do not count.
    pub since: Millis,
}

/// The call queue.
#[async_trait]
pub trait CallStore: Send + Sync {
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
    /// again), like [`OutboxStore::claim_outbox`]. Calls past their expiry are
    /// left to [`CallStore::finish_call`] by the caller's sweep. Oldest first.
    async fn claim_calls(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<Claimed<CallJob>>>;
    /// Extends each lease still held (its call still calling under that
    /// claim) to `until`; says which were, in order.
    async fn extend_calls(&self, leases: &[Lease], until: Millis) -> StoreResult<Vec<Extension>>;
    /// Records the outcome of the call held by `lease` (or a retry, `state
    /// == Queued`). Fenced: a worker whose lease ran out and whose call was
    /// claimed again gets `LeaseLost` and cannot overwrite the new attempt;
    /// a call already finished (expired, cancelled) is left as it is. A
    /// final state forgets the code. Returns the call after, `NotFound` for
    /// an unknown id.
    async fn finish_call(&self, lease: &Lease, r: &CallResult, at: Millis) -> StoreResult<CallJob>;
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
}

//! Domain records kept by the store. Times are Unix milliseconds (UTC).

use serde::{Deserialize, Serialize};

pub use crate::clock::Millis;

/// A service (an app or tenant) that uses verigate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Stable service code, e.g. `acme-login`.
    pub code: String,
    /// Display name used in message templates.
    pub name: String,
    /// Settings as JSON (limits, templates, webhook), interpreted by the services.
    pub settings: serde_json::Value,
    /// When created.
    pub created_at: Millis,
}

/// A stored API key: only its keyed hash is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public identifier of the key (first characters shown to operators).
    pub key_id: String,
    /// Service the key belongs to.
    pub service: String,
    /// Keyed hash (HMAC-SHA256 under the server secret) of the full key.
    pub hash: Vec<u8>,
    /// When created.
    pub created_at: Millis,
    /// When revoked (rotated out), if so.
    pub revoked_at: Option<Millis>,
}

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

/// Delivery state of an outbound message (also its API schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Stored, waiting for the SMPP sender.
    Queued,
    /// Taken by a sender; submit_sm on the wire.
    Sending,
    /// Accepted by the SMSC (message ids recorded).
    Submitted,
    /// Receipt says delivered.
    Delivered,
    /// Receipt says not delivered.
    Undeliverable,
    /// Rejected by the SMSC.
    Rejected,
    /// Not sent before it expired.
    Expired,
}

impl MessageState {
    /// Storage/API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Queued => "queued",
            MessageState::Sending => "sending",
            MessageState::Submitted => "submitted",
            MessageState::Delivered => "delivered",
            MessageState::Undeliverable => "undeliverable",
            MessageState::Rejected => "rejected",
            MessageState::Expired => "expired",
        }
    }

    /// Parses the storage spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => MessageState::Queued,
            "sending" => MessageState::Sending,
            "submitted" => MessageState::Submitted,
            "delivered" => MessageState::Delivered,
            "undeliverable" => MessageState::Undeliverable,
            "rejected" => MessageState::Rejected,
            "expired" => MessageState::Expired,
            _ => return None,
        })
    }
}

/// A message in the durable outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Opaque id (`msg_…`).
    pub id: String,
    /// Verification it belongs to, if any.
    pub verification_id: Option<String>,
    /// Service code.
    pub service: String,
    /// Destination, E.164 with `+`.
    pub to: String,
    /// Sender address.
    pub from: String,
    /// Text to send.
    pub text: String,
    /// Delivery state.
    pub state: MessageState,
    /// Send attempts so far.
    pub attempts: u32,
    /// Not before this time (backoff).
    pub next_attempt_at: Millis,
    /// Give up after this time.
    pub expires_at: Millis,
    /// SMSC that took it.
    pub smsc: Option<String>,
    /// SMSC message ids (one per part).
    pub message_ids: Vec<String>,
    /// Last error, for operators.
    pub last_error: Option<String>,
    /// When created.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
}

/// An audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// When.
    pub at: Millis,
    /// Service, if any.
    pub service: Option<String>,
    /// Kind, e.g. `verification.approved`.
    pub kind: String,
    /// Details (never codes; numbers masked).
    pub detail: serde_json::Value,
}

/// A subscriber account (created by MO-SMS login).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Opaque id.
    pub id: String,
    /// Service code.
    pub service: String,
    /// E.164 number with `+` (the login id).
    pub msisdn: String,
    /// Password hash (PHC string), if a password was issued.
    pub password_hash: Option<String>,
    /// When created.
    pub created_at: Millis,
}

/// A login session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Opaque id.
    pub id: String,
    /// Account.
    pub account_id: String,
    /// Keyed hash of the session token.
    pub token_hash: Vec<u8>,
    /// When created.
    pub created_at: Millis,
    /// When it stops being valid.
    pub expires_at: Millis,
}

/// Outcome of a fixed-window rate-limit hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// True if this hit is within the limit (and was counted).
    pub allowed: bool,
    /// Hits counted in the current window (including this one when allowed).
    pub count: u32,
    /// When the current window ends.
    pub reset_at: Millis,
}

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

/// [`Dispatch`] owned, to move onto a store thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedDispatch {
    /// An SMS.
    Sms(OutboxMessage),
    /// A call.
    Call(CallJob),
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

/// The outcome of a call, to record (see [`crate::store::Store::finish_call`]).
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

/// What an MO login is for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MoIntent {
    /// Log into the number's account (made if missing).
    Login,
    /// Register: the same, said by an app that expects a new account.
    Register,
}

impl MoIntent {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MoIntent::Login => "login",
            MoIntent::Register => "register",
        }
    }

    /// From the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "login" => Some(MoIntent::Login),
            "register" => Some(MoIntent::Register),
            _ => None,
        }
    }
}

/// Where an MO login stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoLoginState {
    /// Waiting for the phone's SMS.
    Pending,
    /// The SMS came: a session waits to be collected.
    Completed,
    /// The app collected the session (the token is used up).
    Collected,
}

impl MoLoginState {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MoLoginState::Pending => "pending",
            MoLoginState::Completed => "completed",
            MoLoginState::Collected => "collected",
        }
    }

    /// From the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(MoLoginState::Pending),
            "completed" => Some(MoLoginState::Completed),
            "collected" => Some(MoLoginState::Collected),
            _ => None,
        }
    }
}

/// A login an app asked for: the phone proves its number by texting the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoLogin {
    /// The token the phone sends (canonical: upper case, no separators).
    pub token: String,
    /// Service code.
    pub service: String,
    /// Login or register.
    pub intent: MoIntent,
    /// State.
    pub state: MoLoginState,
    /// The sender's number, once the SMS came.
    pub msisdn: Option<String>,
    /// The account logged into.
    pub account_id: Option<String>,
    /// Whether the SMS created the account.
    pub created_account: bool,
    /// The session token, until collected.
    pub session_token: Option<String>,
    /// When asked for.
    pub created_at: Millis,
    /// The token stops working after this.
    pub expires_at: Millis,
    /// When the SMS completed it.
    pub completed_at: Option<Millis>,
}

/// A mobile-originated SMS as stored (before its deliver_sm_resp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoMessage {
    /// Opaque id.
    pub id: String,
    /// SMSC it came from.
    pub smsc: String,
    /// Sender (E.164 with `+` when it could be read so; else as sent).
    pub source: String,
    /// Our short code it was sent to.
    pub dest: String,
    /// Text (long MOs reassembled).
    pub text: String,
    /// When stored.
    pub received_at: Millis,
}

/// What became of an MO login attempt (see [`crate::store::Store::receive_mo`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoLoginOutcome {
    /// Logged in: the account (made now if `created`).
    Completed {
        /// The account.
        account: Account,
        /// Whether this SMS created it.
        created: bool,
    },
    /// No login has this token.
    Unknown,
    /// The token's time ran out.
    Expired,
    /// The token was already used.
    Used,
}

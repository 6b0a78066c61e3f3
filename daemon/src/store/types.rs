//! Domain records kept by the store. Times are Unix milliseconds (UTC).

use serde::{Deserialize, Serialize};

/// Unix time in milliseconds.
pub type Millis = i64;

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

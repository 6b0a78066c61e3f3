//! Why a verification operation failed, grouped by who must act: the API
//! client ([`CallerError`]), the operator's setup ([`SetupError`]), or our
//! side (the store). The API edge (`api::problem`) turns each into a
//! problem+json code; nothing here knows HTTP.

use super::phone::PhoneError;
use crate::flashcall::ReportError;
use crate::store::StoreError;

/// Why a verification operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The request cannot be served as sent: the caller must change it (or wait).
    #[error(transparent)]
    Caller(#[from] CallerError),
    /// This server is not set up, or has no capacity now, for what was
    /// asked: the operator's configuration.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The store failed (our side or the operator's database; logged, never
    /// shown to the caller).
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
}

impl From<PhoneError> for VerifyError {
    fn from(e: PhoneError) -> Self {
        VerifyError::Caller(CallerError::BadNumber(e))
    }
}

impl From<ReportError> for VerifyError {
    fn from(e: ReportError) -> Self {
        VerifyError::Caller(CallerError::BadReport(e))
    }
}

/// The caller's request is at fault (or over its limits).
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    /// The caller's number is unusable.
    #[error(transparent)]
    BadNumber(#[from] PhoneError),
    /// The service does not allow this destination country.
    #[error("numbers in {country} are not allowed for this service")]
    CountryNotAllowed {
        /// ISO 3166 region of the number (or "unknown").
        country: String,
    },
    /// Unknown channel.
    #[error("channel {0:?} is not supported (use one of: sms, voice, flash_call)")]
    UnsupportedChannel(String),
    /// Locale without a template (SMS) or prompts (voice).
    #[error("locale {0:?} has no message template or prompts for this channel (available: {1})")]
    UnsupportedLocale(String, String),
    /// code_length outside `verify.min_code_length`–10.
    #[error("code_length {len} is out of range: use {min} to 10 digits")]
    BadCodeLength {
        /// What was asked for.
        len: u8,
        /// The server's floor (`verify.min_code_length`).
        min: u8,
    },
    /// A rate limit was hit.
    #[error("too many requests ({scope}); retry after {retry_after_secs} s")]
    RateLimited {
        /// Which limit.
        scope: &'static str,
        /// Seconds until the window resets.
        retry_after_secs: u64,
    },
    /// No such verification for this service.
    #[error("verification not found")]
    NotFound,
    /// The Idempotency-Key was used with a different request body.
    #[error("Idempotency-Key was already used with a different request body")]
    IdempotencyMismatch,
    /// The code is empty or not digits.
    #[error(
        "code must be 4 to 10 digits (for a flash call: the caller number or its last digits)"
    )]
    BadCode,
    /// A reported caller number cannot be read.
    #[error(transparent)]
    BadReport(#[from] ReportError),
    /// A check of the wrong kind (caller numbers for a code verification).
    #[error("verification {0} checks a code: send `code`, not caller numbers")]
    NotAFlashCall(String),
}

/// The operator's setup cannot serve the request.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A known channel this server is not set up for.
    #[error("channel {channel} is not available on this server: {why}")]
    ChannelUnavailable {
        /// The channel.
        channel: String,
        /// What is missing (the operator's configuration).
        why: String,
    },
    /// Every pool number is in use for this destination (the pool is too
    /// small for the traffic).
    #[error("every caller number for this destination is in use by a pending flash call; retry after {retry_after_secs} s")]
    NoCallerNumber {
        /// When one frees up at the latest.
        retry_after_secs: u64,
    },
}

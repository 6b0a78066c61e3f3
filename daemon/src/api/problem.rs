//! Errors as `application/problem+json` (RFC 9457) with a stable `code`
//! per case, and the mapping from [`VerifyError`].

use crate::store::StoreError;
use crate::verify::error::{CallerError, SetupError, VerifyError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Media type of problem responses.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Prefix of the `type` URI; the code follows.
pub const PROBLEM_TYPE_BASE: &str = "https://verigate.dev/problems/";

/// Stable, machine-readable reason of a problem. Clients branch on this,
/// never on `title` or `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    /// The body is not JSON, or not sent as `application/json` (400/415).
    InvalidJson,
    /// The body has a field the endpoint does not know (400).
    UnknownField,
    /// A field is missing or has the wrong type (400).
    InvalidField,
    /// The `Idempotency-Key` header is not 1–255 printable ASCII characters (400).
    InvalidIdempotencyKey,
    /// `to` is not a usable phone number (400).
    InvalidPhoneNumber,
    /// The service may not send to the number's country (400).
    CountryNotAllowed,
    /// `channel` is not supported (400).
    UnsupportedChannel,
    /// `locale` has no message template (400).
    UnsupportedLocale,
    /// The channel exists but this server is not set up for it (400).
    ChannelUnavailable,
    /// Every flash-call caller number for the destination is in use; see `Retry-After` (503).
    CallerNumbersExhausted,
    /// The request's credentials are valid but not for this (403).
    Forbidden,
    /// The request's signed timestamp is outside the accepted window (403).
    StaleRequest,
    /// `code_length` is outside 4–10 (400).
    InvalidCodeLength,
    /// The submitted code is not 4–10 digits (400).
    InvalidCode,
    /// Missing or invalid API key (401).
    Unauthorized,
    /// No such verification, or no such route (404).
    NotFound,
    /// The route exists but not with this method (405).
    MethodNotAllowed,
    /// The `Idempotency-Key` was used before with a different body (422).
    IdempotencyKeyReused,
    /// The body is larger than 16 KiB (413).
    PayloadTooLarge,
    /// A rate limit was hit; see `Retry-After` (429).
    RateLimited,
    /// The request was not completed in time (408).
    RequestTimeout,
    /// The server has too many requests in progress; see `Retry-After` (503).
    ServiceUnavailable,
    /// The request conflicts with what exists (admin endpoint).
    Conflict,
    /// The number is not a subscriber of this carrier (relay; 404).
    UnknownSubscriber,
    /// The IMSI is not the SIM the number is on (relay; 403).
    ImsiMismatch,
    /// The number's line is suspended or ceased (relay; 403).
    LineInactive,
    /// The number moved to this SIM too recently (relay, SIM-swap fraud; 403).
    RecentSimSwap,
    /// The session is expired or was refused: open a new one (relay; 409).
    SessionClosed,
    /// Our side failed (500).
    Internal,
}

impl ProblemCode {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemCode::InvalidJson => "invalid_json",
            ProblemCode::UnknownField => "unknown_field",
            ProblemCode::InvalidField => "invalid_field",
            ProblemCode::InvalidIdempotencyKey => "invalid_idempotency_key",
            ProblemCode::InvalidPhoneNumber => "invalid_phone_number",
            ProblemCode::CountryNotAllowed => "country_not_allowed",
            ProblemCode::UnsupportedChannel => "unsupported_channel",
            ProblemCode::UnsupportedLocale => "unsupported_locale",
            ProblemCode::ChannelUnavailable => "channel_unavailable",
            ProblemCode::CallerNumbersExhausted => "caller_numbers_exhausted",
            ProblemCode::Forbidden => "forbidden",
            ProblemCode::StaleRequest => "stale_request",
            ProblemCode::InvalidCodeLength => "invalid_code_length",
            ProblemCode::InvalidCode => "invalid_code",
            ProblemCode::Unauthorized => "unauthorized",
            ProblemCode::NotFound => "not_found",
            ProblemCode::MethodNotAllowed => "method_not_allowed",
            ProblemCode::IdempotencyKeyReused => "idempotency_key_reused",
            ProblemCode::PayloadTooLarge => "payload_too_large",
            ProblemCode::RateLimited => "rate_limited",
            ProblemCode::RequestTimeout => "request_timeout",
            ProblemCode::ServiceUnavailable => "service_unavailable",
            ProblemCode::Conflict => "conflict",
            ProblemCode::UnknownSubscriber => "unknown_subscriber",
            ProblemCode::ImsiMismatch => "imsi_mismatch",
            ProblemCode::LineInactive => "line_inactive",
            ProblemCode::RecentSimSwap => "recent_sim_swap",
            ProblemCode::SessionClosed => "session_closed",
            ProblemCode::Internal => "internal",
        }
    }

    /// Short human summary (the same for every occurrence of the code).
    pub fn title(self) -> &'static str {
        match self {
            ProblemCode::InvalidJson => "Request body is not valid JSON",
            ProblemCode::UnknownField => "Unknown field in request body",
            ProblemCode::InvalidField => "Invalid field in request body",
            ProblemCode::InvalidIdempotencyKey => "Invalid Idempotency-Key header",
            ProblemCode::InvalidPhoneNumber => "Invalid phone number",
            ProblemCode::CountryNotAllowed => "Destination country not allowed",
            ProblemCode::UnsupportedChannel => "Unsupported channel",
            ProblemCode::UnsupportedLocale => "Unsupported locale",
            ProblemCode::ChannelUnavailable => "Channel not available on this server",
            ProblemCode::CallerNumbersExhausted => "No caller number free for this destination",
            ProblemCode::Forbidden => "Forbidden",
            ProblemCode::StaleRequest => "Request timestamp outside the accepted window",
            ProblemCode::InvalidCodeLength => "Invalid code length",
            ProblemCode::InvalidCode => "Invalid code format",
            ProblemCode::Unauthorized => "Unauthorized",
            ProblemCode::NotFound => "Not found",
            ProblemCode::MethodNotAllowed => "Method not allowed",
            ProblemCode::IdempotencyKeyReused => "Idempotency-Key reused with a different request",
            ProblemCode::PayloadTooLarge => "Request body too large",
            ProblemCode::RateLimited => "Too many requests",
            ProblemCode::RequestTimeout => "Request timeout",
            ProblemCode::ServiceUnavailable => "Service unavailable",
            ProblemCode::Conflict => "Conflicts with what exists",
            ProblemCode::UnknownSubscriber => "Not a subscriber of this carrier",
            ProblemCode::ImsiMismatch => "The IMSI is not the number's SIM",
            ProblemCode::LineInactive => "The line is not active",
            ProblemCode::RecentSimSwap => "The number moved to this SIM too recently",
            ProblemCode::SessionClosed => "The session takes no more transactions",
            ProblemCode::Internal => "Internal server error",
        }
    }

    /// The usual HTTP status of the code.
    pub fn status(self) -> StatusCode {
        match self {
            ProblemCode::InvalidJson
            | ProblemCode::UnknownField
            | ProblemCode::InvalidField
            | ProblemCode::InvalidIdempotencyKey
            | ProblemCode::InvalidPhoneNumber
            | ProblemCode::CountryNotAllowed
            | ProblemCode::UnsupportedChannel
            | ProblemCode::UnsupportedLocale
            | ProblemCode::ChannelUnavailable
            | ProblemCode::InvalidCodeLength
            | ProblemCode::InvalidCode => StatusCode::BAD_REQUEST,
            ProblemCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ProblemCode::Forbidden
            | ProblemCode::StaleRequest
            | ProblemCode::ImsiMismatch
            | ProblemCode::LineInactive
            | ProblemCode::RecentSimSwap => StatusCode::FORBIDDEN,
            ProblemCode::UnknownSubscriber => StatusCode::NOT_FOUND,
            ProblemCode::SessionClosed => StatusCode::CONFLICT,
            ProblemCode::CallerNumbersExhausted | ProblemCode::ServiceUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProblemCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ProblemCode::NotFound => StatusCode::NOT_FOUND,
            ProblemCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProblemCode::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ProblemCode::Conflict => StatusCode::CONFLICT,
            ProblemCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Problem, example = json!({
    "type": "https://verigate.dev/problems/invalid_phone_number",
    "title": "Invalid phone number",
    "status": 400,
    "code": "invalid_phone_number",
    "detail": "\"0123\" is not a valid phone number (wrong length or unassigned range for its country)"
}))]
pub struct ProblemBody {
    /// `https://verigate.dev/problems/<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short summary of the code.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// Stable reason.
    pub code: ProblemCode,
    /// What exactly was wrong with this request.
    pub detail: String,
}

/// An error response.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    code: ProblemCode,
    detail: String,
    retry_after_secs: Option<u64>,
    www_authenticate: bool,
}

impl Problem {
    /// A problem with the code's usual status.
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Self {
        Problem {
            status: code.status(),
            code,
            detail: detail.into(),
            retry_after_secs: None,
            www_authenticate: false,
        }
    }

    /// Overrides the status (e.g. 415 for `invalid_json` on a wrong content type).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// 401 with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem {
            www_authenticate: true,
            ..Problem::new(ProblemCode::Unauthorized, detail)
        }
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Problem {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Problem::new(ProblemCode::RateLimited, detail)
        }
    }

    /// 503 with `Retry-After`: the server is busy, not the request wrong.
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Problem {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Problem::new(ProblemCode::ServiceUnavailable, detail)
        }
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(ProblemCode::NotFound, detail)
    }

    /// 500 with a generic detail; the real error goes to the log only.
    pub fn internal(err: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %err, "API request failed");
        Problem::new(
            ProblemCode::Internal,
            "the server failed to handle the request; try again later",
        )
    }

    /// The code.
    pub fn code(&self) -> ProblemCode {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON body.
    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            type_uri: format!("{PROBLEM_TYPE_BASE}{}", self.code.as_str()),
            title: self.code.title().to_string(),
            status: self.status.as_u16(),
            code: self.code,
            detail: self.detail.clone(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (self.status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.www_authenticate {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<VerifyError> for Problem {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Caller(e) => Problem::from(e),
            VerifyError::Setup(e) => Problem::from(e),
            VerifyError::Store(e) => Problem::from(e),
        }
    }
}

impl From<CallerError> for Problem {
    fn from(e: CallerError) -> Self {
        let detail = e.to_string();
        let code = match e {
            CallerError::BadNumber(_) => ProblemCode::InvalidPhoneNumber,
            CallerError::CountryNotAllowed { .. } => ProblemCode::CountryNotAllowed,
            CallerError::UnsupportedChannel(_) => ProblemCode::UnsupportedChannel,
            CallerError::UnsupportedLocale(..) => ProblemCode::UnsupportedLocale,
            CallerError::BadCodeLength { .. } => ProblemCode::InvalidCodeLength,
            CallerError::RateLimited {
                retry_after_secs, ..
            } => return Problem::rate_limited(detail, retry_after_secs),
            CallerError::NotFound => ProblemCode::NotFound,
            CallerError::IdempotencyMismatch => ProblemCode::IdempotencyKeyReused,
            CallerError::BadCode | CallerError::BadReport(_) | CallerError::NotAFlashCall(_) => {
                ProblemCode::InvalidCode
            }
        };
        Problem::new(code, detail)
    }
}

impl From<SetupError> for Problem {
    fn from(e: SetupError) -> Self {
        let detail = e.to_string();
        match e {
            SetupError::ChannelUnavailable { .. } => {
                Problem::new(ProblemCode::ChannelUnavailable, detail)
            }
            SetupError::NoCallerNumber { retry_after_secs } => Problem {
                retry_after_secs: Some(retry_after_secs.max(1)),
                ..Problem::new(ProblemCode::CallerNumbersExhausted, detail)
            },
        }
    }
}

impl From<StoreError> for Problem {
    fn from(err: StoreError) -> Self {
        // Every store failure is ours (or the operator's database): the
        // caller learns nothing about it.
        Problem::internal(&err)
    }
}

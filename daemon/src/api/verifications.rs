//! `/v1/verifications`: start, show, check, cancel.

use super::auth::{Caller, ClientIp, IdempotencyKey};
use super::json::JsonBody;
use super::problem::{Problem, ProblemBody, ProblemCode};
use crate::app::AppState;
use crate::store::{CallState, MessageState, Verification, VerificationStatus};
use crate::verify::service::{CallerError, StartRequest, Submission, VerifyError};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use verigate_codecs::time::rfc3339;

/// Body of `POST /v1/verifications`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// Number to verify: E.164 (`+447400123456`) or national in the
    /// server's default region.
    #[schema(example = "+447400123456")]
    pub to: String,
    /// `sms` (default), `voice` (a call reads the code aloud) or
    /// `flash_call` (a call from a pool number; the app reports the caller
    /// number it saw).
    #[schema(example = "sms")]
    #[serde(default)]
    pub channel: Option<String>,
    /// `sms`: with channel `voice`, send the code by SMS if the call fails
    /// (busy, no answer, refused).
    #[schema(example = "sms")]
    #[serde(default)]
    pub fallback: Option<String>,
    /// Message template or voice prompt locale (default: the server's default locale).
    #[schema(example = "en")]
    #[serde(default)]
    pub locale: Option<String>,
    /// Digits in the code (default: the server's setting); at least the
    /// server's `verify.min_code_length` (6 unless configured).
    #[schema(minimum = 4, maximum = 10, example = 6)]
    #[serde(default)]
    pub code_length: Option<u32>,
}

/// Body of `POST /v1/verifications/{id}/check`: exactly one of the fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// The code the user typed (4–10 digits); for a flash call, the caller
    /// number or its last `report_digits` digits.
    #[schema(example = "123456")]
    #[serde(default)]
    pub code: Option<String>,
    /// Flash calls: the caller number the app saw (international or national form).
    #[schema(example = "+447400100123")]
    #[serde(default)]
    pub caller: Option<String>,
    /// Flash calls: the caller numbers of the calls the app saw since the
    /// start (at most 20). Each distinct number that could be one of ours
    /// (under `cli_prefix`, or last digits) counts as one attempt, so a
    /// list of guesses costs as many guesses.
    #[serde(default)]
    pub callers: Option<Vec<String>>,
}

impl CheckBody {
    fn submission(self) -> Result<Submission, Problem> {
        match (self.code, self.caller, self.callers) {
            (Some(c), None, None) => Ok(Submission::Code(c)),
            (None, Some(c), None) => Ok(Submission::Callers(vec![c])),
            (None, None, Some(list)) => Ok(Submission::Callers(list)),
            _ => Err(Problem::new(
                ProblemCode::InvalidField,
                "send exactly one of `code`, `caller` or `callers`",
            )),
        }
    }
}

/// A call placed for a verification.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallView {
    /// `queued` and `calling` are unfinished; then `answered`, `rang`,
    /// `busy`, `no_answer`, `failed` (see `sip_code`), `canceled` or `expired`.
    pub state: CallState,
    /// The final SIP status, when the network sent one (e.g. 486, 503).
    #[schema(required = true)]
    pub sip_code: Option<u16>,
    /// Calls placed for the verification (first and repeats).
    pub calls: usize,
}

/// What the app watches for during a flash call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlashCallView {
    /// The calling number begins with this (E.164).
    #[schema(example = "+4474001")]
    pub cli_prefix: String,
    /// Report the caller number's last this many digits (or the whole number).
    #[schema(example = 4)]
    pub report_digits: usize,
    /// Report before this (RFC 3339, UTC); the verification's expiry.
    #[schema(format = DateTime)]
    pub report_deadline: String,
}

/// Delivery of a verification's messages.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryView {
    /// State of the latest message.
    pub state: MessageState,
    /// Messages sent (first send and resends).
    pub messages: usize,
}

/// A verification.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VerificationView {
    /// Opaque id.
    #[schema(example = "vf_0123456789abcdef01234567")]
    pub id: String,
    /// Status.
    pub status: VerificationStatus,
    /// Channel the code is sent over.
    #[schema(example = "sms")]
    pub channel: String,
    /// The number, in E.164.
    #[schema(example = "+447400123456")]
    pub to: String,
    /// When the code stops working (RFC 3339, UTC).
    #[schema(format = DateTime, example = "2026-11-22T12:44:56.123Z")]
    pub expires_at: String,
    /// When the verification was created (RFC 3339, UTC).
    #[schema(format = DateTime, example = "2026-11-22T12:34:56.123Z")]
    pub created_at: String,
    /// Messages sent for it (first send and resends).
    pub send_count: u32,
    /// Checks left; 0 once the verification is no longer pending.
    pub remaining_attempts: u32,
    /// Delivery of the code messages; null before any was queued (and for
    /// call channels, unless a failed voice call fell back to SMS).
    #[schema(required = true)]
    pub delivery: Option<DeliveryView>,
    /// Channels `voice` and `flash_call`: the latest call.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub call: Option<CallView>,
    /// Channel `flash_call`: what the app watches for and reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub flash_call: Option<FlashCallView>,
    /// Only on `200` answers to a start that found a pending verification
    /// for the number: whether a fresh code was sent (after the resend cooldown).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub resent: Option<bool>,
}

/// Result of a check.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckView {
    /// Opaque id.
    pub id: String,
    /// Status after the check.
    pub status: VerificationStatus,
    /// Checks left; 0 once the verification is no longer pending.
    pub remaining_attempts: u32,
    /// True only when this request's code was right (a repeated check of an
    /// approved verification reports status `approved` with `valid: false`).
    pub valid: bool,
}

fn remaining(v: &Verification) -> u32 {
    if v.status == VerificationStatus::Pending {
        v.max_attempts.saturating_sub(v.attempts)
    } else {
        0
    }
}

async fn view(
    state: &AppState,
    v: &Verification,
    resent: Option<bool>,
) -> Result<VerificationView, Problem> {
    let delivery = state.verify.delivery(&v.id).await?;
    let call = if v.channel == "sms" {
        None
    } else {
        let calls = state.verify.calls(&v.id).await?;
        calls.last().map(|c| CallView {
            state: c.state,
            sip_code: c.sip_code,
            calls: calls.len(),
        })
    };
    let flash_call = state.verify.flash_hint(v).map(|h| FlashCallView {
        cli_prefix: h.cli_prefix,
        report_digits: h.report_digits,
        report_deadline: rfc3339(v.expires_at),
    });
    Ok(VerificationView {
        id: v.id.clone(),
        status: v.status,
        channel: v.channel.clone(),
        to: v.to.clone(),
        expires_at: rfc3339(v.expires_at),
        created_at: rfc3339(v.created_at),
        send_count: v.sends,
        remaining_attempts: remaining(v),
        delivery: delivery.map(|d| DeliveryView {
            state: d.state,
            messages: d.messages,
        }),
        call,
        flash_call,
        resent,
    })
}

/// The `{id}` segment; an undecodable one cannot name a verification.
fn path_id(p: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    p.map(|Path(id)| id)
        .map_err(|_| Problem::from(VerifyError::Caller(CallerError::NotFound)))
}

/// Start a verification (or return the pending one for the number).
#[utoipa::path(
    post,
    path = "/v1/verifications",
    operation_id = "startVerification",
    tag = "verifications",
    request_body(content = StartBody, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header,
            description = "1–255 printable ASCII characters. A retry with the same key and body returns the verification the first request created; the same key with another body is refused (422 idempotency_key_reused)."),
    ),
    responses(
        (status = 201, description = "Verification created and its code queued", body = VerificationView),
        (status = 200, description = "A pending verification for this number exists (or an idempotent replay): returned, with `resent`", body = VerificationView),
        (status = 400, description = "invalid_json, unknown_field, invalid_field, invalid_idempotency_key, invalid_phone_number, country_not_allowed, unsupported_channel, channel_unavailable, unsupported_locale, invalid_code_length", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 413, description = "payload_too_large", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "invalid_json (not sent as application/json)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "idempotency_key_reused", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = ProblemBody, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until the limit resets"))),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "caller_numbers_exhausted (flash_call)", body = ProblemBody, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until a caller number frees up"))),
    ),
    security(("bearer" = []))
)]
pub async fn start(
    State(state): State<AppState>,
    Caller(svc): Caller,
    ClientIp(client_ip): ClientIp,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<StartBody>,
) -> Result<Response, Problem> {
    let JsonBody { value: b, raw } = body;
    let code_length = match b.code_length {
        None => None,
        Some(n) => Some(u8::try_from(n).map_err(|_| {
            Problem::new(
                ProblemCode::InvalidCodeLength,
                format!("code_length {n} is out of range: at most 10 digits"),
            )
        })?),
    };
    let idempotency = key.map(|k| (k, Sha256::digest(&raw).to_vec()));
    // For the error metric: the channel asked for, if it is one we have.
    let channel = b
        .channel
        .clone()
        .filter(|c| crate::verify::service::CHANNELS.contains(&c.as_str()));
    let fallback_sms = match b.fallback.as_deref() {
        None => false,
        Some("sms") => true,
        Some(other) => {
            return Err(Problem::new(
                ProblemCode::InvalidField,
                format!("fallback {other:?} is not supported (use \"sms\")"),
            ))
        }
    };
    if fallback_sms && b.channel.as_deref() != Some("voice") {
        return Err(Problem::new(
            ProblemCode::InvalidField,
            "fallback applies to channel \"voice\" only",
        ));
    }
    let req = StartRequest {
        to: b.to,
        // Left out means SMS; an empty string is a mistake, not a default.
        channel: b.channel.unwrap_or_else(|| "sms".into()),
        locale: b.locale,
        code_length,
        client_ip,
        idempotency,
        fallback_sms,
    };
    let st = match state.verify.start(&svc, req, state.clock.now_ms()).await {
        Ok(st) => {
            let outcome = match (st.created, st.sent) {
                (true, _) => "started",
                (false, true) => "resent",
                (false, false) => "existing",
            };
            crate::metrics::verification(&st.verification.channel, outcome);
            st
        }
        Err(e) => {
            let outcome = match &e {
                VerifyError::Caller(CallerError::RateLimited { .. }) => "rate_limited",
                VerifyError::Caller(_) | VerifyError::Setup(_) => "rejected_input",
                VerifyError::Store(_) => "error",
            };
            crate::metrics::verification(channel.as_deref().unwrap_or("sms"), outcome);
            return Err(e.into());
        }
    };
    let v = &st.verification;
    tracing::info!(
        service = %svc.code,
        verification = %v.id,
        to = %crate::verify::phone::mask(&v.to),
        created = st.created,
        sent = st.sent,
        "verification start"
    );
    if st.created {
        let body = view(&state, v, None).await?;
        Ok((StatusCode::CREATED, Json(body)).into_response())
    } else {
        let body = view(&state, v, Some(st.sent)).await?;
        Ok((StatusCode::OK, Json(body)).into_response())
    }
}

/// Show a verification.
#[utoipa::path(
    get,
    path = "/v1/verifications/{id}",
    operation_id = "getVerification",
    tag = "verifications",
    params(("id" = String, Path, description = "Verification id")),
    responses(
        (status = 200, description = "The verification", body = VerificationView),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "not_found", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(svc): Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<VerificationView>, Problem> {
    let id = path_id(id)?;
    let v = state.verify.get(&svc, &id, state.clock.now_ms()).await?;
    Ok(Json(view(&state, &v, None).await?))
}

/// Check a code.
#[utoipa::path(
    post,
    path = "/v1/verifications/{id}/check",
    operation_id = "checkVerification",
    tag = "verifications",
    params(("id" = String, Path, description = "Verification id")),
    request_body(content = CheckBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Status after the check; a closed verification answers its status without consuming an attempt", body = CheckView),
        (status = 400, description = "invalid_json, unknown_field, invalid_field, invalid_code", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "not_found", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "invalid_json (not sent as application/json)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn check(
    State(state): State<AppState>,
    Caller(svc): Caller,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody<CheckBody>,
) -> Result<Json<CheckView>, Problem> {
    let id = path_id(id)?;
    let submission = body.value.submission()?;
    let c = state
        .verify
        .check(&svc, &id, submission, state.clock.now_ms())
        .await?;
    let v = c.verification;
    // Closing outcomes (approved, expired, …) are counted where the
    // verification changes (VerifyService); these say what checks found.
    if !c.counted {
        crate::metrics::verification(&v.channel, "check_on_closed");
    } else if v.status == VerificationStatus::Pending {
        crate::metrics::verification(&v.channel, "wrong_code");
    }
    Ok(Json(CheckView {
        remaining_attempts: remaining(&v),
        valid: c.matched,
        status: v.status,
        id: v.id,
    }))
}

/// Cancel a pending verification (a closed one is returned as it is).
#[utoipa::path(
    post,
    path = "/v1/verifications/{id}/cancel",
    operation_id = "cancelVerification",
    tag = "verifications",
    params(("id" = String, Path, description = "Verification id")),
    responses(
        (status = 200, description = "The verification after the cancel", body = VerificationView),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "not_found", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    Caller(svc): Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<VerificationView>, Problem> {
    let id = path_id(id)?;
    let v = state.verify.cancel(&svc, &id, state.clock.now_ms()).await?;
    Ok(Json(view(&state, &v, None).await?))
}

//! `/v1/voice-calls`: the voice gateway. A third party proves each request
//! with K2 (no API key) and polls the call's outcome by id.

use super::json::JsonBody;
use super::problem::{Problem, ProblemBody, ProblemCode};
use crate::app::AppState;
use crate::store::{CallJob, CallState};
use crate::voice_gateway::{GatewayError, GatewayRequest, VoiceGateway};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use verigate_codecs::time::rfc3339;

/// Body of `POST /v1/voice-calls`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoiceCallBody {
    /// Number to call (E.164, or national in the service number's region),
    /// exactly as K2 was computed over it.
    #[schema(example = "13988888888")]
    pub tn: String,
    /// The code to read aloud (the service number's count of digits).
    #[schema(example = "365882")]
    pub vn: String,
    /// Service number.
    #[schema(example = "6258")]
    pub sn: String,
    /// Hex HMAC-SHA256(K1, ts "." tn‖vn), or MD5(tn‖vn‖K1) for a service
    /// number set to `md5-legacy`; either case.
    #[schema(example = "241cf04a9dd186585ff23b9e7ae76493")]
    pub k2: String,
    /// When the request was signed, Unix seconds: required by the HMAC form
    /// and accepted within the service number's `ts_skew` (5 minutes) of
    /// our clock; not used by `md5-legacy`.
    #[schema(example = 1800000000)]
    #[serde(default)]
    pub ts: Option<i64>,
    /// Prompt locale, `en` or `zh` (default: the service number's).
    #[schema(example = "zh")]
    #[serde(default)]
    pub locale: Option<String>,
}

/// A voice-gateway call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VoiceCallView {
    /// Opaque id: poll `GET /v1/voice-calls/{id}`.
    #[schema(example = "call_0123456789abcdef01234567")]
    pub id: String,
    /// Service number that asked for it.
    #[schema(example = "6258")]
    pub sn: String,
    /// The number called, E.164 with all but the last two digits masked.
    #[schema(example = "+***********88")]
    pub tn: String,
    /// Prompt locale.
    #[schema(example = "zh")]
    pub locale: String,
    /// `queued` and `calling` are unfinished; then `answered` (the code was
    /// read), `busy`, `no_answer`, `failed` (see `sip_code`) or `expired`
    /// (not placed in time).
    pub state: CallState,
    /// The final SIP status, when the network sent one (e.g. 486, 503).
    #[schema(required = true)]
    pub sip_code: Option<u16>,
    /// Placement attempts so far.
    pub attempts: u32,
    /// Not placed after this (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// When requested (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Last change (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub updated_at: String,
}

fn view(c: &CallJob) -> VoiceCallView {
    VoiceCallView {
        id: c.id.clone(),
        sn: VoiceGateway::service_number(c).to_string(),
        tn: crate::verify::phone::mask(&c.to),
        locale: c.locale.clone(),
        state: c.state,
        sip_code: c.sip_code,
        attempts: c.attempts,
        expires_at: rfc3339(c.expires_at),
        created_at: rfc3339(c.created_at),
        updated_at: rfc3339(c.updated_at),
    }
}

/// The detail of every 403.
pub const FORBIDDEN_DETAIL: &str = "sn, ts and k2 do not verify: k2 must be the hex HMAC-SHA256 of ts (Unix seconds), \".\", tn and vn, keyed with the service number's K1 (or the MD5 of tn, vn and K1 for a service number on the legacy scheme)";

impl From<GatewayError> for Problem {
    fn from(e: GatewayError) -> Self {
        let detail = e.to_string();
        match e {
            // One answer for an unknown service number, a malformed k2 and
            // a wrong one: the caller learns neither which service numbers
            // exist nor which use the legacy scheme (the log says which).
            GatewayError::UnknownServiceNumber(_) | GatewayError::BadK2(_) => {
                Problem::new(ProblemCode::Forbidden, FORBIDDEN_DETAIL)
            }
            GatewayError::Stale { .. } => Problem::new(ProblemCode::StaleRequest, detail),
            GatewayError::BadCode { .. } => Problem::new(ProblemCode::InvalidCode, detail),
            GatewayError::BadNumber(_) => Problem::new(ProblemCode::InvalidPhoneNumber, detail),
            GatewayError::CountryNotAllowed { .. } => {
                Problem::new(ProblemCode::CountryNotAllowed, detail)
            }
            GatewayError::UnsupportedLocale(..) => {
                Problem::new(ProblemCode::UnsupportedLocale, detail)
            }
            GatewayError::RateLimited {
                retry_after_secs, ..
            } => Problem::rate_limited(detail, retry_after_secs),
            GatewayError::NotFound => Problem::not_found(detail),
            GatewayError::Store(err) => Problem::from(err),
        }
    }
}

/// Ask for a call that reads a code (the seed's telephone gateway).
#[utoipa::path(
    post,
    path = "/v1/voice-calls",
    operation_id = "requestVoiceCall",
    tag = "voice-gateway",
    request_body(content = VoiceCallBody, content_type = "application/json"),
    responses(
        (status = 202, description = "K2 checked; the call is queued", body = VoiceCallView),
        (status = 200, description = "The same service number, number and code were asked for within the replay window (24 h): the first call, which is not placed again", body = VoiceCallView),
        (status = 400, description = "invalid_json, unknown_field, invalid_field, invalid_code, invalid_phone_number, country_not_allowed, unsupported_locale", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: unknown service number, or a k2 that is malformed or does not match (or no ts for the HMAC form); stale_request: ts is outside the window; no call is placed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "invalid_json (not sent as application/json)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited (per service number, or per number for the service number)", body = ProblemBody, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until the limit resets"))),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(())
)]
pub async fn request(
    State(state): State<AppState>,
    body: JsonBody<VoiceCallBody>,
) -> Result<Response, Problem> {
    let b = body.value;
    let sn = b.sn.clone();
    let req = GatewayRequest {
        tn: b.tn,
        vn: b.vn,
        sn: b.sn,
        k2: b.k2,
        ts: b.ts,
        locale: b.locale,
    };
    match state.voice_gateway.request(req, state.clock.now_ms()).await {
        Ok(r) => {
            crate::metrics::gateway_request(if r.created { "queued" } else { "repeated" });
            tracing::info!(
                sn = %sn,
                call = %r.call.id,
                to = %crate::verify::phone::mask(&r.call.to),
                created = r.created,
                "voice gateway request"
            );
            let status = if r.created {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(view(&r.call))).into_response())
        }
        Err(e) => {
            crate::metrics::gateway_request(e.outcome());
            if matches!(
                e,
                GatewayError::UnknownServiceNumber(_)
                    | GatewayError::BadK2(_)
                    | GatewayError::Stale { .. }
            ) {
                tracing::warn!(sn = %sn, error = %e, "voice gateway request refused");
            }
            Err(e.into())
        }
    }
}

/// Show a voice-gateway call.
#[utoipa::path(
    get,
    path = "/v1/voice-calls/{id}",
    operation_id = "getVoiceCall",
    tag = "voice-gateway",
    params(("id" = String, Path, description = "Call id from the request's answer")),
    responses(
        (status = 200, description = "The call", body = VoiceCallView),
        (status = 404, description = "not_found", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(())
)]
pub async fn get(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<VoiceCallView>, Problem> {
    let Ok(Path(id)) = id else {
        return Err(GatewayError::NotFound.into());
    };
    let call = state.voice_gateway.get(&id).await?;
    Ok(Json(view(&call)))
}

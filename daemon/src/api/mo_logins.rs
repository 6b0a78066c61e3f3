//! `/v1/mo-logins`: log in or register by sending one SMS. The app asks for
//! a token, shows the user the SMS to send (or opens the `sms:` link), and
//! polls until the SMS has come and the session is ready.

use super::auth::Caller;
use super::json::JsonBody;
use super::problem::{Problem, ProblemBody, ProblemCode};
use crate::app::AppState;
use crate::mologin::{MoLoginError, Polled};
use crate::store::{MoIntent, MoLogin};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;
use verigate_codecs::time::rfc3339;

/// Body of `POST /v1/mo-logins`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// `login` (default) or `register`; either logs into the number's
    /// account, creating it if missing.
    #[serde(default)]
    pub intent: Option<MoIntent>,
}

/// A new login: what the phone must send, and where.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedView {
    /// Single-use token; poll `GET /v1/mo-logins/{token}`.
    #[schema(example = "K7QXM9TP")]
    pub token: String,
    /// `login` or `register`.
    pub intent: MoIntent,
    /// The number the SMS goes to.
    #[schema(example = "7799")]
    pub short_code: String,
    /// The text of the SMS.
    #[schema(example = "LOGIN K7QXM9TP")]
    pub sms_body: String,
    /// An RFC 5724 `sms:` link that opens the phone's messaging app with it.
    #[schema(example = "sms:7799?body=LOGIN%20K7QXM9TP")]
    pub sms_uri: String,
    /// The token stops working after this (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// A login as the app sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoginView {
    /// The token.
    pub token: String,
    /// `pending` (no SMS yet), `completed` (here is the session, shown
    /// this once), `expired`, `used` (the session was collected) or
    /// `unknown`.
    #[schema(example = "completed")]
    pub status: &'static str,
    /// Only when completed: the session token for the app's requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub session: Option<String>,
    /// When completed or used: the account logged into.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub account_id: Option<String>,
    /// When completed or used: the number that sent the SMS (E.164).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub msisdn: Option<String>,
    /// When completed or used: whether the SMS created the account.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub created: Option<bool>,
    /// When the token stops (or stopped) working; absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub expires_at: Option<String>,
}

impl From<MoLoginError> for Problem {
    fn from(e: MoLoginError) -> Self {
        match e {
            MoLoginError::Unavailable => {
                Problem::new(ProblemCode::ChannelUnavailable, e.to_string())
            }
            MoLoginError::RateLimited { retry_after_secs } => {
                Problem::rate_limited(e.to_string(), retry_after_secs)
            }
            MoLoginError::Store(err) => Problem::from(err),
        }
    }
}

/// Ask for a login by SMS.
#[utoipa::path(
    post,
    path = "/v1/mo-logins",
    operation_id = "createMoLogin",
    tag = "mo-login",
    request_body(content = CreateBody, content_type = "application/json"),
    responses(
        (status = 201, description = "A token the phone texts to the short code", body = CreatedView),
        (status = 400, description = "invalid_json, unknown_field, invalid_field, channel_unavailable (MO login not set up)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 429, description = "rate_limited (mo_login.per_service)", body = ProblemBody, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until the limit resets"))),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(svc): Caller,
    body: JsonBody<CreateBody>,
) -> Result<Response, Problem> {
    let intent = body.value.intent.unwrap_or(MoIntent::Login);
    let c = state
        .mo_login
        .create(&svc, intent, state.clock.now_ms())
        .await?;
    let view = CreatedView {
        token: c.login.token.clone(),
        intent,
        sms_uri: format!(
            "sms:{}?body={}",
            c.short_code,
            percent_encoding::utf8_percent_encode(&c.sms_body, percent_encoding::NON_ALPHANUMERIC)
        ),
        short_code: c.short_code,
        sms_body: c.sms_body,
        expires_at: rfc3339(c.login.expires_at),
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

fn view(
    token: &str,
    status: &'static str,
    l: Option<&MoLogin>,
    session: Option<String>,
) -> LoginView {
    let done = l.filter(|l| l.account_id.is_some());
    LoginView {
        token: token.to_string(),
        status,
        session,
        account_id: done.and_then(|l| l.account_id.clone()),
        msisdn: done.and_then(|l| l.msisdn.clone()),
        created: done.map(|l| l.created_account),
        expires_at: l.map(|l| rfc3339(l.expires_at)),
    }
}

/// The query of `GET /v1/mo-logins/{token}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollQuery {
    /// Seconds to wait while pending.
    #[serde(default)]
    wait: Option<u64>,
}

/// The login's status; with `?wait=SECONDS` (capped by the server) the
/// answer waits while it is pending.
#[utoipa::path(
    get,
    path = "/v1/mo-logins/{token}",
    operation_id = "getMoLogin",
    tag = "mo-login",
    params(
        ("token" = String, Path, description = "The token from the create answer (any case)"),
        ("wait" = Option<u64>, Query, description = "Seconds to wait while pending (long poll; capped by mo_login.max_wait)"),
    ),
    responses(
        (status = 200, description = "The login; `completed` carries the session this once, later polls say `used`", body = LoginView),
        (status = 400, description = "invalid_field (a bad `wait`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(svc): Caller,
    token: Result<Path<String>, PathRejection>,
    query: Result<Query<PollQuery>, QueryRejection>,
) -> Result<Json<LoginView>, Problem> {
    let Query(q) = query.map_err(|e| {
        Problem::new(
            ProblemCode::InvalidField,
            format!(
                "{} (the query takes only `wait`, whole seconds)",
                e.body_text()
            ),
        )
    })?;
    let wait = Duration::from_secs(q.wait.unwrap_or(0));
    let Ok(Path(token)) = token else {
        return Ok(Json(view("", "unknown", None, None)));
    };
    let polled = state
        .mo_login
        .poll(&svc, &token, wait, state.clock.now_ms())
        .await?;
    let t = token.trim().to_ascii_uppercase();
    Ok(Json(match polled {
        Polled::Pending(l) => view(&t, "pending", Some(&l), None),
        Polled::Completed {
            login,
            session_token,
        } => view(&t, "completed", Some(&login), Some(session_token)),
        Polled::Expired(l) => view(&t, "expired", Some(&l), None),
        Polled::Used(l) => view(&t, "used", Some(&l), None),
        Polled::Unknown => view(&t, "unknown", None, None),
    }))
}

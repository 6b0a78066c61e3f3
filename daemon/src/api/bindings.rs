//! `/v1/bindings` and `/v1/registry-events`: the app side of the number
//! registry. The app's account server binds an account's number on a
//! typed SMS code (reported to the carrier's registry) and removes it on a
//! fresh one; the carrier's registry posts its notifications here.

use super::auth::{Caller, ClientIp};
use super::json::JsonBody;
use super::problem::{Problem, ProblemBody, ProblemCode};
use crate::app::AppState;
use crate::bindings::{BindingsError, BindingsService, Notification};
use crate::store::AppBinding;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use verigate_codecs::time::rfc3339;

impl From<BindingsError> for Problem {
    fn from(e: BindingsError) -> Self {
        let detail = e.to_string();
        match e {
            BindingsError::NotAnApp(_) | BindingsError::Forged(_) => {
                Problem::new(ProblemCode::Forbidden, detail)
            }
            BindingsError::Stale => Problem::new(ProblemCode::StaleRequest, detail),
            BindingsError::BadRequest(_) | BindingsError::Unreadable(_) => {
                Problem::new(ProblemCode::InvalidField, detail)
            }
            BindingsError::OtherNumber { .. } => Problem::new(ProblemCode::Forbidden, detail),
            BindingsError::NoBinding(_) => Problem::not_found(detail),
            BindingsError::Taken(_) => Problem::new(ProblemCode::Conflict, detail),
            BindingsError::BadNumber(_) => Problem::new(ProblemCode::InvalidPhoneNumber, detail),
            BindingsError::Proof(e) => Problem::from(e),
            BindingsError::Verify(e) => Problem::from(e),
            BindingsError::Store(e) => Problem::from(e),
        }
    }
}

/// One of the app's bindings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BindingView {
    /// Its id.
    #[schema(example = "bnd_01J9Z8Q4M2K7N3P5R6S8T0V1W2")]
    pub id: String,
    /// The app's account.
    #[schema(example = "user-42")]
    pub account_ref: String,
    /// The number, E.164.
    #[schema(example = "+447400100200")]
    pub msisdn: String,
    /// `pending` (code sent) or `active` (confirmed, reported to the carrier).
    #[schema(example = "pending")]
    pub status: String,
    /// The verification that carries the code.
    pub verification_id: String,
    /// When asked for (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When last changed.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&AppBinding> for BindingView {
    fn from(b: &AppBinding) -> Self {
        BindingView {
            id: b.id.clone(),
            account_ref: b.account_ref.clone(),
            msisdn: b.msisdn.clone(),
            status: b.state.as_str().to_string(),
            verification_id: b.verification_id.clone(),
            created_at: rfc3339(b.created_at),
            updated_at: rfc3339(b.updated_at),
        }
    }
}

/// Body of `POST /v1/bindings`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// The app's own account id (1–128 printable characters).
    #[schema(example = "user-42")]
    pub account_ref: String,
    /// The number to bind (E.164, or national in the default region).
    #[schema(example = "+447400100200")]
    pub to: String,
}

/// Body of `POST /v1/bindings/{id}/confirm`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    /// The code the subscriber received by SMS.
    #[schema(example = "123456")]
    pub code: String,
}

/// What a confirmation found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConfirmView {
    /// The binding now.
    pub binding: BindingView,
    /// Whether this code was right (an active binding: true).
    pub valid: bool,
    /// Codes left to try while pending.
    pub remaining_attempts: Option<u32>,
}

/// Body of `DELETE /v1/bindings/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveBody {
    /// An approved SMS verification to the binding's number, fresh (the
    /// proof that its holder wants it removed).
    pub verification_id: String,
}

/// Query of `GET /v1/bindings`: exactly one of the two.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The bindings of this account.
    pub account_ref: Option<String>,
    /// The bindings of this number.
    pub msisdn: Option<String>,
}

/// A list of bindings, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BindingList {
    /// The bindings.
    pub bindings: Vec<BindingView>,
}

/// What a registry notification did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReceivedView {
    /// Its event id.
    pub id: String,
    /// Its type (`unbind`, `recycled`, `number_updated`).
    #[serde(rename = "type")]
    pub kind: String,
    /// False: seen before, or a type not acted on.
    pub applied: bool,
    /// Bindings removed or moved.
    pub changed: usize,
}

fn bindings(state: &AppState) -> Result<&Arc<BindingsService>, Problem> {
    state.bindings.as_ref().ok_or_else(|| {
        Problem::not_found("this server runs no app side of a registry (no [[bindings]])")
    })
}

/// Bind a number to an account: the code goes by SMS.
#[utoipa::path(
    post,
    path = "/v1/bindings",
    operation_id = "createBinding",
    tag = "bindings",
    request_body = CreateBody,
    responses(
        (status = 201, description = "Pending: the code was sent", body = BindingView),
        (status = 200, description = "Bound to this account already", body = BindingView),
        (status = 400, description = "invalid_json, unknown_field, invalid_field, invalid_phone_number", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "forbidden: this service has no [[bindings]]", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "not_found: no app side here", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "conflict: the number is another account's", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(svc): Caller,
    ClientIp(ip): ClientIp,
    body: JsonBody<CreateBody>,
) -> Result<Response, Problem> {
    let s = bindings(&state)?;
    let now = state.clock.now_ms();
    let b = s
        .create(&svc, &body.value.account_ref, &body.value.to, ip, now)
        .await?;
    let status = if b.state == crate::store::AppBindingState::Active {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(BindingView::from(&b))).into_response())
}

/// One binding.
#[utoipa::path(
    get,
    path = "/v1/bindings/{id}",
    operation_id = "getBinding",
    tag = "bindings",
    params(("id" = String, Path, description = "The binding's id")),
    responses(
        (status = 200, description = "The binding", body = BindingView),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "forbidden: this service has no [[bindings]]", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "not_found", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(svc): Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<BindingView>, Problem> {
    let s = bindings(&state)?;
    let b = s.get(&svc, &super::path_params(id)?).await?;
    Ok(Json(BindingView::from(&b)))
}

/// Confirm a binding with the code: it becomes active and is reported to
/// the carrier's registry.
#[utoipa::path(
    post,
    path = "/v1/bindings/{id}/confirm",
    operation_id = "confirmBinding",
    tag = "bindings",
    params(("id" = String, Path, description = "The binding's id")),
    request_body = ConfirmBody,
    responses(
        (status = 200, description = "Checked: active when valid", body = ConfirmView),
        (status = 400, description = "invalid_json, unknown_field, invalid_field, invalid_code", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "forbidden: this service has no [[bindings]]", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "not_found", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "conflict: the number was bound to another account meanwhile", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn confirm(
    State(state): State<AppState>,
    Caller(svc): Caller,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody<ConfirmBody>,
) -> Result<Json<ConfirmView>, Problem> {
    let s = bindings(&state)?;
    let c = s
        .confirm(
            &svc,
            &super::path_params(id)?,
            &body.value.code,
            state.clock.now_ms(),
        )
        .await?;
    let active = c.binding.state == crate::store::AppBindingState::Active;
    let remaining = c.check.as_ref().filter(|_| !active).map(|k| {
        k.verification
            .max_attempts
            .saturating_sub(k.verification.attempts)
    });
    Ok(Json(ConfirmView {
        binding: BindingView::from(&c.binding),
        valid: active,
        remaining_attempts: remaining,
    }))
}

/// Remove a binding on a fresh code proof to its number; the carrier's
/// registry is told.
#[utoipa::path(
    delete,
    path = "/v1/bindings/{id}",
    operation_id = "removeBinding",
    tag = "bindings",
    params(("id" = String, Path, description = "The binding's id")),
    request_body = RemoveBody,
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "invalid_json, unknown_field, invalid_field", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "forbidden: no [[bindings]], or the proof does not hold for this number", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "not_found: no such binding or verification", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn remove(
    State(state): State<AppState>,
    Caller(svc): Caller,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody<RemoveBody>,
) -> Result<StatusCode, Problem> {
    let s = bindings(&state)?;
    s.remove(
        &svc,
        &super::path_params(id)?,
        &body.value.verification_id,
        state.clock.now_ms(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The bindings of an account or of a number.
#[utoipa::path(
    get,
    path = "/v1/bindings",
    operation_id = "listBindings",
    tag = "bindings",
    params(ListQuery),
    responses(
        (status = 200, description = "Newest first", body = BindingList),
        (status = 400, description = "invalid_field (not exactly one filter), invalid_phone_number", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "forbidden: this service has no [[bindings]]", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "not_found: no app side here", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(svc): Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<BindingList>, Problem> {
    let s = bindings(&state)?;
    let Query(q) = q.map_err(|e| Problem::new(ProblemCode::InvalidField, e.body_text()))?;
    let list = s
        .list(&svc, q.account_ref.as_deref(), q.msisdn.as_deref())
        .await?;
    Ok(Json(BindingList {
        bindings: list.iter().map(BindingView::from).collect(),
    }))
}

/// The carrier registry's notifications (`unbind`, `recycled`,
/// `number_updated`), signed with the shared secret: applied once each.
#[utoipa::path(
    post,
    path = "/v1/registry-events",
    operation_id = "receiveRegistryEvent",
    tag = "bindings",
    request_body(content = String, content_type = "application/json", description = "The registry's event, signed in `Verigate-Signature`"),
    params(("Verigate-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>`")),
    responses(
        (status = 200, description = "Received (applied now, or seen before)", body = ReceivedView),
        (status = 400, description = "invalid_field: not a readable event", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "forbidden (not genuine, or for no app here); stale_request (signed too long ago)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "not_found: no app side here", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(())
)]
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ReceivedView>, Problem> {
    let s = bindings(&state)?;
    let signature = headers
        .get(crate::webhook::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    let r = s
        .receive(
            Notification {
                signature,
                body: &body,
            },
            state.clock.now_ms(),
        )
        .await?;
    Ok(Json(ReceivedView {
        id: r.event_id,
        kind: r.kind,
        applied: r.applied,
        changed: r.changed,
    }))
}

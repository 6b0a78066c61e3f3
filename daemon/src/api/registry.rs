//! `/v1/registry/…`: the carrier's number-binding registry. App platforms
//! bind and unbind the numbers of their accounts with their API key; the
//! directory maps service codes to names (the seed's step 4.a).

use super::auth::Caller;
use super::json::JsonBody;
use super::problem::{Problem, ProblemBody, ProblemCode};
use crate::app::AppState;
use crate::registry::{Registry, RegistryError};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use verigate_codecs::time::rfc3339;

/// A binding of a number to an app platform.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BindingView {
    /// The number, E.164.
    #[schema(example = "+447400100200")]
    pub msisdn: String,
    /// The app platform's service code.
    #[schema(example = "bank")]
    pub service: String,
    /// When bound (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub bound_at: String,
}

/// One app platform of the directory.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DirectoryEntry {
    /// Service code.
    #[schema(example = "bank")]
    pub code: String,
    /// Its name, as subscribers know it.
    #[schema(example = "Example Bank")]
    pub name: String,
}

/// The directory of app platforms.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DirectoryView {
    /// Every app platform, by code.
    pub services: Vec<DirectoryEntry>,
}

impl From<RegistryError> for Problem {
    fn from(e: RegistryError) -> Self {
        let detail = e.to_string();
        match e {
            RegistryError::NotAnApp(_)
            | RegistryError::OtherApp { .. }
            | RegistryError::NotSelfCare(_) => Problem::new(ProblemCode::Forbidden, detail),
            RegistryError::Proof(e) => Problem::from(e),
            RegistryError::SameNumber(_) => Problem::new(ProblemCode::InvalidField, detail),
            RegistryError::BadNumber(_) => Problem::new(ProblemCode::InvalidPhoneNumber, detail),
            RegistryError::BeforeRecords { .. } => Problem::new(ProblemCode::InvalidField, detail),
            RegistryError::Store(err) => Problem::from(err),
        }
    }
}

impl From<crate::verify::proof::ProofError> for Problem {
    fn from(e: crate::verify::proof::ProofError) -> Self {
        use crate::verify::proof::ProofError;
        let detail = e.to_string();
        match e {
            ProofError::NoVerification(_) => Problem::not_found(detail),
            ProofError::NotProven { .. } => Problem::new(ProblemCode::Forbidden, detail),
            ProofError::Store(err) => Problem::from(err),
        }
    }
}

/// The registry, or 404 when this server does not run one.
fn registry(state: &AppState) -> Result<&Arc<Registry>, Problem> {
    state.registry.as_ref().ok_or_else(|| {
        Problem::not_found(
            "this server runs no number-binding registry ([registry] enabled = false)",
        )
    })
}

/// Bind a number to the calling app platform (idempotent).
#[utoipa::path(
    put,
    path = "/v1/registry/bindings/{msisdn}/{service_code}",
    operation_id = "bindNumber",
    tag = "registry",
    params(
        ("msisdn" = String, Path, description = "The number (E.164, or national in the registry's region)"),
        ("service_code" = String, Path, description = "The calling app platform's own service code"),
    ),
    responses(
        (status = 201, description = "Bound now", body = BindingView),
        (status = 200, description = "Was bound already: the binding as it stands", body = BindingView),
        (status = 400, description = "invalid_phone_number, invalid_field", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "forbidden: the caller is not this app platform, or not an app platform at all", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "not_found: this server runs no registry", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn bind(
    State(state): State<AppState>,
    Caller(svc): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, Problem> {
    let r = registry(&state)?;
    let (msisdn, service) = super::path_params(path)?;
    let (b, created) = r
        .bind(&svc, &msisdn, &service, state.clock.now_ms())
        .await?;
    let view = BindingView {
        msisdn: b.msisdn,
        service: b.service,
        bound_at: rfc3339(b.bound_at),
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

/// Unbind a number from the calling app platform (idempotent).
#[utoipa::path(
    delete,
    path = "/v1/registry/bindings/{msisdn}/{service_code}",
    operation_id = "unbindNumber",
    tag = "registry",
    params(
        ("msisdn" = String, Path, description = "The number (E.164, or national in the registry's region)"),
        ("service_code" = String, Path, description = "The calling app platform's own service code"),
    ),
    responses(
        (status = 204, description = "Not bound (any more)"),
        (status = 400, description = "invalid_phone_number, invalid_field", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "forbidden: the caller is not this app platform, or not an app platform at all", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "not_found: this server runs no registry", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn unbind(
    State(state): State<AppState>,
    Caller(svc): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let r = registry(&state)?;
    let (msisdn, service) = super::path_params(path)?;
    r.unbind(&svc, &msisdn, &service).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The app platforms of this registry: service code → name.
#[utoipa::path(
    get,
    path = "/v1/registry/services",
    operation_id = "listRegistryServices",
    tag = "registry",
    responses(
        (status = 200, description = "Every app platform", body = DirectoryView),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "not_found: this server runs no registry", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn services(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<DirectoryView>, Problem> {
    registry(&state)?;
    let mut services = Vec::new();
    for app in state.store.list_registry_apps().await? {
        let name = state
            .store
            .get_service(&app.service)
            .await?
            .map_or_else(|| app.service.clone(), |s| s.name);
        services.push(DirectoryEntry {
            code: app.service,
            name,
        });
    }
    Ok(Json(DirectoryView { services }))
}

/// Body of `POST /v1/registry/unbind`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnbindBody {
    /// An approved SMS verification of this service to the subscriber's
    /// number (the proof of possession).
    #[schema(example = "vf_01J9Z8Q4M2K7N3P5R6S8T0V1W2")]
    pub verification_id: String,
    /// Only this app platform's binding (default: every one).
    #[serde(default)]
    #[schema(example = "bank")]
    pub service: Option<String>,
}

/// What a subscriber's unbind did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UnbindView {
    /// The proven number.
    pub msisdn: String,
    /// The app platforms unbound (each is told).
    pub unbound: Vec<String>,
    /// Notifications queued.
    pub notified: usize,
}

/// Body of `POST /v1/registry/move`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    /// An approved SMS verification to the old number.
    pub verification_id: String,
    /// An approved SMS verification to the new number.
    pub new_verification_id: String,
}

/// What a subscriber's move did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MoveView {
    /// The number the bindings left.
    pub old: String,
    /// The number they are on now.
    pub new: String,
    /// The app platforms moved (each is told `number_updated`).
    pub moved: Vec<String>,
    /// Notifications queued.
    pub notified: usize,
}

/// A subscriber unbinds one app platform or all, proven by an SMS code
/// (for a carrier's self-care service).
#[utoipa::path(
    post,
    path = "/v1/registry/unbind",
    operation_id = "subscriberUnbind",
    tag = "registry",
    request_body = UnbindBody,
    responses(
        (status = 200, description = "Unbound; each app told", body = UnbindView),
        (status = 400, description = "invalid_json, unknown_field, invalid_field", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "forbidden: not a self-care service, or the verification proves nothing now", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "not_found: no such verification of this service, or no registry here", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn subscriber_unbind(
    State(state): State<AppState>,
    Caller(svc): Caller,
    body: JsonBody<UnbindBody>,
) -> Result<Json<UnbindView>, Problem> {
    let r = registry(&state)?;
    let b = body.value;
    let (msisdn, purged) = r
        .unbind_proven(
            &svc,
            &b.verification_id,
            b.service.as_deref(),
            state.clock.now_ms(),
        )
        .await?;
    Ok(Json(UnbindView {
        msisdn,
        unbound: purged.services,
        notified: purged.notified,
    }))
}

/// A subscriber moves every binding to a new number, both proven by SMS
/// codes (for a carrier's self-care service).
#[utoipa::path(
    post,
    path = "/v1/registry/move",
    operation_id = "subscriberMove",
    tag = "registry",
    request_body = MoveBody,
    responses(
        (status = 200, description = "Moved; each app told number_updated", body = MoveView),
        (status = 400, description = "invalid_json, unknown_field, invalid_field (the same number twice)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "forbidden: not a self-care service, or a verification proves nothing now", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "not_found: no such verification of this service, or no registry here", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn subscriber_move(
    State(state): State<AppState>,
    Caller(svc): Caller,
    body: JsonBody<MoveBody>,
) -> Result<Json<MoveView>, Problem> {
    let r = registry(&state)?;
    let b = body.value;
    let (old, new, moved) = r
        .move_proven(
            &svc,
            &b.verification_id,
            &b.new_verification_id,
            state.clock.now_ms(),
        )
        .await?;
    Ok(Json(MoveView {
        old,
        new,
        moved: moved.services,
        notified: moved.notified,
    }))
}

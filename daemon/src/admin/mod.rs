//! Admin endpoint (loopback only, bearer admin token) behind the operator
//! CLI: status, services and API keys.

use crate::app::{api_key_hash, now_ms};
use crate::smpp::Router;
use crate::store::{ApiKeyRecord, Service, Store, StoreError};
use crate::verify::code::ServerSecret;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use rand::rngs::OsRng;
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// What admin handlers need.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// SMSC links.
    pub router: Arc<Router>,
    /// Server secret (API key hashes).
    pub secret: ServerSecret,
    /// The admin token.
    pub token: Arc<str>,
    /// Process start (Unix ms).
    pub started_at: i64,
    /// The verification service (for `verigate verify …`).
    pub verify: Arc<crate::verify::service::VerifyService>,
    /// The API's key cache, cleared when keys change here.
    pub callers: Arc<crate::app::CallerCache>,
}

/// The admin routes.
pub fn router(state: AdminState) -> axum::Router {
    axum::Router::new()
        .route("/admin/status", get(status))
        .route("/admin/services", get(list_services).post(add_service))
        .route("/admin/services/:code/rotate-key", post(rotate_key))
        .route("/admin/smscs", get(list_smscs))
        .route("/admin/smscs/:name/enable", post(enable_smsc))
        .route("/admin/smscs/:name/disable", post(disable_smsc))
        .route("/admin/verify", post(verify_start))
        .route("/admin/verify/:id", get(verify_show))
        .route("/admin/verify/:id/check", post(verify_check))
        .with_state(state)
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"status": status.as_u16(), "detail": detail.into()})),
    )
        .into_response()
}

fn authorized(s: &AdminState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(s.token.as_bytes())) && !given.is_empty() {
        Ok(())
    } else {
        Err(Box::new(problem(
            StatusCode::UNAUTHORIZED,
            "admin token missing or wrong (the CLI reads it from api.admin_token_file)",
        )))
    }
}

fn store_err(e: StoreError) -> Response {
    match e {
        StoreError::Conflict(m) => problem(StatusCode::CONFLICT, m),
        StoreError::NotFound(m) => problem(StatusCode::NOT_FOUND, m),
        other => {
            tracing::error!(error = %other, "admin request failed");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage failure; see the daemon log",
            )
        }
    }
}

async fn status(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let depth = match s.store.outbox_depth().await {
        Ok(d) => d,
        Err(e) => return store_err(e),
    };
    let services = s.store.list_services().await.map(|v| v.len()).unwrap_or(0);
    let smscs = smscs_json(&s.router);
    Json(json!({
        "uptime_seconds": (now_ms() - s.started_at) / 1000,
        "smscs": smscs,
        "outbox": {"queued": depth.queued, "sending": depth.sending, "submitted": depth.submitted},
        "services": services,
    }))
    .into_response()
}

/// Every SMSC: where it is, whether it is enabled, its binds and routes.
fn smscs_json(router: &Router) -> Vec<serde_json::Value> {
    router
        .with_prefixes()
        .map(|(c, prefixes)| {
            json!({
                "name": c.name(),
                "host": format!("{}:{}", c.config().host, c.config().port),
                "enabled": c.is_enabled(),
                "bound": c.bound_count(),
                "binds": c.bind_statuses().iter().map(bind_status_text).collect::<Vec<_>>(),
                "window": c.config().session.window,
                "prefixes": prefixes,
            })
        })
        .collect()
}

/// A bind's state in words an operator reads.
fn bind_status_text(b: &crate::smpp::BindStatus) -> String {
    use crate::smpp::BindStatus as B;
    match b {
        B::Connecting => "connecting".into(),
        B::Bound => "bound".into(),
        B::Down(why) => format!("down ({why})"),
        B::Rejected(st) => format!("refused: {}", crate::smpp::describe_bind_status(*st)),
        B::Disabled => "disabled".into(),
        B::Stopped => "stopped".into(),
    }
}

async fn list_smscs(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    Json(json!({"smscs": smscs_json(&s.router)})).into_response()
}

async fn enable_smsc(s: State<AdminState>, h: HeaderMap, name: Path<String>) -> Response {
    switch_smsc(s, h, name, true).await
}

async fn disable_smsc(s: State<AdminState>, h: HeaderMap, name: Path<String>) -> Response {
    switch_smsc(s, h, name, false).await
}

/// Enables or disables an SMSC at run time (not persisted: the config's
/// `disabled` applies again at the next start).
async fn switch_smsc(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    on: bool,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let Some(c) = s.router.by_name(&name) else {
        let known: Vec<&str> = s.router.smscs().iter().map(|c| c.name()).collect();
        return problem(
            StatusCode::NOT_FOUND,
            format!("no SMSC named {name:?} (configured: {})", known.join(", ")),
        );
    };
    let changed = c.set_enabled(on);
    tracing::info!(smsc = %name, enabled = on, changed, "SMSC switched by operator");
    if changed {
        let ev = crate::store::AuditEvent {
            at: now_ms(),
            service: None,
            kind: if on { "smsc.enabled" } else { "smsc.disabled" }.into(),
            detail: json!({"smsc": name}),
        };
        if let Err(e) = s.store.audit(&ev).await {
            tracing::warn!(error = %e, "cannot record the SMSC switch in the audit trail");
        }
    }
    Json(json!({"name": name, "enabled": on, "changed": changed})).into_response()
}

async fn list_services(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let services = match s.store.list_services().await {
        Ok(v) => v,
        Err(e) => return store_err(e),
    };
    let mut out = Vec::new();
    for svc in services {
        let keys = s.store.list_api_keys(&svc.code).await.unwrap_or_default();
        out.push(json!({
            "code": svc.code,
            "name": svc.name,
            "allowed_countries": svc.settings.get("allowed_countries"),
            "webhook": svc.settings.get("webhook_url").and_then(|u| u.as_str()).is_some(),
            "keys": keys.iter().map(|k| json!({"key_id": k.key_id, "revoked": k.revoked_at.is_some()})).collect::<Vec<_>>(),
        }));
    }
    Json(json!({"services": out})).into_response()
}

/// Body of `POST /admin/services`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewService {
    code: String,
    name: String,
    #[serde(default)]
    allowed_countries: Vec<String>,
}

/// A fresh API key: `vg_` and 32 random bytes in hex; shown once.
fn new_api_key() -> (String, String) {
    let b: [u8; 32] = OsRng.gen();
    let key = format!("vg_{}", hex::encode(b));
    let key_id = format!("key_{}", &hex::encode(b)[..8]);
    (key, key_id)
}

async fn issue_key(s: &AdminState, service: &str) -> Result<(String, String), StoreError> {
    let (key, key_id) = new_api_key();
    s.store
        .add_api_key(&ApiKeyRecord {
            key_id: key_id.clone(),
            service: service.to_string(),
            hash: api_key_hash(&s.secret, &key),
            created_at: now_ms(),
            revoked_at: None,
        })
        .await?;
    Ok((key, key_id))
}

async fn add_service(
    State(s): State<AdminState>,
    headers: HeaderMap,
    body: Result<Json<NewService>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let Json(n) = match body {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if !crate::config::is_service_code(&n.code) {
        return problem(
            StatusCode::BAD_REQUEST,
            "code: use 1-64 of a-z, 0-9, '-', '_'",
        );
    }
    if n.name.trim().is_empty() {
        return problem(StatusCode::BAD_REQUEST, "name must not be empty");
    }
    if let Some(c) = n
        .allowed_countries
        .iter()
        .find(|c| !crate::config::is_region(c))
    {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("allowed_countries: {c:?} is not an ISO 3166 code like \"GB\""),
        );
    }
    let svc = Service {
        code: n.code.clone(),
        name: n.name,
        settings: json!({"allowed_countries": n.allowed_countries}),
        created_at: now_ms(),
    };
    if let Err(e) = s.store.create_service(&svc).await {
        return store_err(e);
    }
    match issue_key(&s, &n.code).await {
        Ok((key, key_id)) => (
            StatusCode::CREATED,
            Json(json!({"code": n.code, "api_key": key, "key_id": key_id})),
        )
            .into_response(),
        Err(e) => store_err(e),
    }
}

async fn rotate_key(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    match s.store.get_service(&code).await {
        Ok(Some(_)) => {}
        Ok(None) => return problem(StatusCode::NOT_FOUND, format!("no service {code:?}")),
        Err(e) => return store_err(e),
    }
    let (key, key_id) = match issue_key(&s, &code).await {
        Ok(k) => k,
        Err(e) => return store_err(e),
    };
    let revoked = s.store.revoke_api_keys(&code, &key_id, now_ms()).await;
    // The old keys stop working now, not when their cache entries expire.
    s.callers.clear();
    match revoked {
        Ok(n) => Json(json!({"code": code, "api_key": key, "key_id": key_id, "revoked": n}))
            .into_response(),
        Err(e) => store_err(e),
    }
}

fn verification_json(v: &crate::store::Verification) -> serde_json::Value {
    json!({
        "id": v.id,
        "service": v.service,
        "to": v.to,
        "status": v.status.as_str(),
        "attempts": v.attempts,
        "max_attempts": v.max_attempts,
        "sends": v.sends,
        "expires_at": verigate_codecs::time::rfc3339(v.expires_at),
    })
}

fn verify_err(e: crate::verify::service::VerifyError) -> Response {
    use crate::verify::service::VerifyError as E;
    match e {
        E::NotFound => problem(StatusCode::NOT_FOUND, "no such verification"),
        E::RateLimited { .. } => problem(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
        E::Store(se) => store_err(se),
        other => problem(StatusCode::BAD_REQUEST, other.to_string()),
    }
}

/// Body of `POST /admin/verify`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminStart {
    service: String,
    to: String,
    #[serde(default)]
    locale: Option<String>,
}

async fn verify_start(
    State(s): State<AdminState>,
    headers: HeaderMap,
    body: Result<Json<AdminStart>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let svc = match s.store.get_service(&b.service).await {
        Ok(Some(svc)) => svc,
        Ok(None) => return problem(StatusCode::NOT_FOUND, format!("no service {:?}", b.service)),
        Err(e) => return store_err(e),
    };
    let req = crate::verify::service::StartRequest {
        to: b.to,
        channel: "sms".into(),
        locale: b.locale,
        ..Default::default()
    };
    match s.verify.start(&svc, req, now_ms()).await {
        Ok(st) => {
            let mut v = verification_json(&st.verification);
            v["created"] = json!(st.created);
            v["sent"] = json!(st.sent);
            Json(v).into_response()
        }
        Err(e) => verify_err(e),
    }
}

async fn service_of(s: &AdminState, id: &str) -> Result<Service, Response> {
    let v = match s.store.get_verification(id).await {
        Ok(Some(v)) => v,
        Ok(None) => return Err(problem(StatusCode::NOT_FOUND, "no such verification")),
        Err(e) => return Err(store_err(e)),
    };
    match s.store.get_service(&v.service).await {
        Ok(Some(svc)) => Ok(svc),
        Ok(None) => Err(problem(
            StatusCode::NOT_FOUND,
            "its service no longer exists",
        )),
        Err(e) => Err(store_err(e)),
    }
}

async fn verify_show(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let svc = match service_of(&s, &id).await {
        Ok(svc) => svc,
        Err(r) => return r,
    };
    match s.verify.get(&svc, &id, now_ms()).await {
        Ok(v) => {
            let mut out = verification_json(&v);
            if let Ok(Some(d)) = s.verify.delivery(&id).await {
                out["delivery"] = json!(d.state.as_str());
            }
            Json(out).into_response()
        }
        Err(e) => verify_err(e),
    }
}

/// Body of `POST /admin/verify/{id}/check`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminCheck {
    code: String,
}

async fn verify_check(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<AdminCheck>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let svc = match service_of(&s, &id).await {
        Ok(svc) => svc,
        Err(r) => return r,
    };
    match s.verify.check(&svc, &id, &b.code, now_ms()).await {
        Ok(c) => {
            let mut out = verification_json(&c.verification);
            out["valid"] = json!(c.matched);
            Json(out).into_response()
        }
        Err(e) => verify_err(e),
    }
}

//! Admin endpoint (loopback only, bearer admin token) behind the operator
//! CLI: status, services and API keys, verifications, SMSC switches.
//! Errors are the API's problem+json: the CLI prints their `detail`.

use crate::api::json::JsonBody;
use crate::api::problem::{Problem, ProblemCode};
use crate::app::api_key_hash;
use crate::clock::Clock;
use crate::random::Random;
use crate::smpp::Router;
use crate::store::{ApiKeyRecord, Service, Store, StoreError};
use crate::verify::code::ServerSecret;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// What admin handlers need.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The wall clock.
    pub clock: Clock,
    /// Where new API keys are drawn from.
    pub rng: Random,
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
    /// The number-binding registry, when this server runs one.
    pub registry: Option<Arc<crate::registry::Registry>>,
    /// The carrier–bank relay, when this server runs one.
    pub txrelay: Option<Arc<crate::txrelay::TxRelay>>,
}

mod registry;
mod txrelay;

/// An admin answer: JSON, or a problem.
type Answer = Result<Json<Value>, Problem>;

/// The admin routes; every one needs the admin token.
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
        .merge(registry::routes())
        .merge(txrelay::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state)
}

/// Refuses a request without the admin token (compared in constant time).
async fn require_token(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !given.is_empty() && bool::from(given.as_bytes().ct_eq(s.token.as_bytes())) {
        next.run(req).await
    } else {
        Problem::unauthorized(
            "admin token missing or wrong (the CLI reads it from api.admin_token_file)",
        )
        .into_response()
    }
}

/// A store failure as the operator should see it: conflicts and missing
/// records say what; anything else points at the log.
fn store_problem(e: StoreError) -> Problem {
    match e {
        StoreError::Conflict(m) => Problem::new(ProblemCode::Conflict, m),
        StoreError::NotFound(m) => Problem::not_found(m),
        other => Problem::internal(&other),
    }
}

/// A service by code, or 404.
async fn service_named(s: &AdminState, code: &str) -> Result<Service, Problem> {
    s.store
        .get_service(code)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| Problem::not_found(format!("no service {code:?}")))
}

async fn status(State(s): State<AdminState>) -> Answer {
    let depth = s.store.outbox_depth().await.map_err(store_problem)?;
    let services = s.store.list_services().await.map_err(store_problem)?.len();
    Ok(Json(json!({
        "uptime_seconds": (s.clock.now_ms() - s.started_at) / 1000,
        "smscs": smscs_json(&s.router),
        "outbox": {"queued": depth.queued, "sending": depth.sending, "submitted": depth.submitted},
        "services": services,
    })))
}

/// Every SMSC: where it is, whether it is enabled, its binds and routes.
fn smscs_json(router: &Router) -> Vec<Value> {
    router
        .with_prefixes()
        .map(|(c, prefixes)| {
            json!({
                "name": c.name(),
                "host": format!("{}:{}", c.config().host, c.config().port),
                "enabled": c.is_enabled(),
                "bound": c.bound_count(),
                "binds": c.bind_statuses().iter().map(|b| b.to_string()).collect::<Vec<_>>(),
                "window": c.config().session.window,
                "prefixes": prefixes,
            })
        })
        .collect()
}

async fn list_smscs(State(s): State<AdminState>) -> Answer {
    Ok(Json(json!({"smscs": smscs_json(&s.router)})))
}

async fn enable_smsc(s: State<AdminState>, name: Path<String>) -> Answer {
    switch_smsc(s, name, true).await
}

async fn disable_smsc(s: State<AdminState>, name: Path<String>) -> Answer {
    switch_smsc(s, name, false).await
}

/// Enables or disables an SMSC at run time (not persisted: the config's
/// `disabled` applies again at the next start).
async fn switch_smsc(State(s): State<AdminState>, Path(name): Path<String>, on: bool) -> Answer {
    let Some(c) = s.router.by_name(&name) else {
        let known: Vec<&str> = s.router.smscs().iter().map(|c| c.name()).collect();
        return Err(Problem::not_found(format!(
            "no SMSC named {name:?} (configured: {})",
            known.join(", ")
        )));
    };
    let changed = c.set_enabled(on);
    tracing::info!(smsc = %name, enabled = on, changed, "SMSC switched by operator");
    if changed {
        let ev = crate::store::AuditEvent {
            at: s.clock.now_ms(),
            service: None,
            kind: if on { "smsc.enabled" } else { "smsc.disabled" }.into(),
            detail: json!({"smsc": name}),
        };
        if let Err(e) = s.store.audit(&ev).await {
            tracing::warn!(error = %e, "cannot record the SMSC switch in the audit trail");
        }
    }
    Ok(Json(
        json!({"name": name, "enabled": on, "changed": changed}),
    ))
}

async fn list_services(State(s): State<AdminState>) -> Answer {
    let mut out = Vec::new();
    for svc in s.store.list_services().await.map_err(store_problem)? {
        let keys = s
            .store
            .list_api_keys(&svc.code)
            .await
            .map_err(store_problem)?;
        out.push(json!({
            "code": svc.code,
            "name": svc.name,
            "allowed_countries": svc.settings.get("allowed_countries"),
            "webhook": svc.settings.get("webhook_url").and_then(|u| u.as_str()).is_some(),
            "keys": keys.iter().map(|k| json!({"key_id": k.key_id, "revoked": k.revoked_at.is_some()})).collect::<Vec<_>>(),
        }));
    }
    Ok(Json(json!({"services": out})))
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

/// Issues a fresh API key (`vg_` and 32 random bytes in hex, shown once);
/// its id is derived from the key's hash, so it gives nothing of the key away.
async fn issue_key(s: &AdminState, service: &str) -> Result<(String, String), StoreError> {
    let key = format!("vg_{}", hex::encode(s.rng.rng().gen::<[u8; 32]>()));
    let hash = api_key_hash(&s.secret, &key);
    let key_id = format!("key_{}", hex::encode(&hash[..4]));
    s.store
        .add_api_key(&ApiKeyRecord {
            key_id: key_id.clone(),
            service: service.to_string(),
            hash,
            created_at: s.clock.now_ms(),
            revoked_at: None,
        })
        .await?;
    Ok((key, key_id))
}

async fn add_service(
    State(s): State<AdminState>,
    body: JsonBody<NewService>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let n = body.value;
    let invalid = |m: String| Problem::new(ProblemCode::InvalidField, m);
    if !crate::config::is_service_code(&n.code) {
        return Err(invalid("code: use 1-64 of a-z, 0-9, '-', '_'".into()));
    }
    if n.name.trim().is_empty() {
        return Err(invalid("name must not be empty".into()));
    }
    if let Some(c) = n
        .allowed_countries
        .iter()
        .find(|c| !crate::config::is_region(c))
    {
        return Err(invalid(format!(
            "allowed_countries: {c:?} is not an ISO 3166 code like \"GB\""
        )));
    }
    let svc = Service {
        code: n.code.clone(),
        name: n.name,
        settings: json!({"allowed_countries": n.allowed_countries}),
        created_at: s.clock.now_ms(),
    };
    s.store.create_service(&svc).await.map_err(store_problem)?;
    let (key, key_id) = issue_key(&s, &n.code).await.map_err(|e| {
        tracing::error!(error = %e, service = %n.code, "service created without a key");
        Problem::new(
            ProblemCode::Internal,
            format!(
                "service {} was created but its API key could not be issued ({e}); run `verigate services rotate-key {}`",
                n.code, n.code
            ),
        )
    })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"code": n.code, "api_key": key, "key_id": key_id})),
    ))
}

async fn rotate_key(State(s): State<AdminState>, Path(code): Path<String>) -> Answer {
    service_named(&s, &code).await?;
    let (key, key_id) = issue_key(&s, &code).await.map_err(store_problem)?;
    let revoked = s
        .store
        .revoke_api_keys(&code, &key_id, s.clock.now_ms())
        .await;
    // The old keys stop working now, not when their cache entries expire.
    s.callers.clear();
    // The new key exists either way: it must be shown, or it is lost.
    Ok(Json(match revoked {
        Ok(n) => json!({"code": code, "api_key": key, "key_id": key_id, "revoked": n}),
        Err(e) => {
            tracing::error!(error = %e, service = %code, "old API keys not revoked");
            json!({"code": code, "api_key": key, "key_id": key_id, "revoked": null,
                   "warning": format!("the old keys could not be revoked ({e}) and still work; run rotate-key again")})
        }
    }))
}

fn verification_json(v: &crate::store::Verification) -> Value {
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

/// Body of `POST /admin/verify`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminStart {
    service: String,
    to: String,
    #[serde(default)]
    locale: Option<String>,
}

async fn verify_start(State(s): State<AdminState>, body: JsonBody<AdminStart>) -> Answer {
    let b = body.value;
    let svc = service_named(&s, &b.service).await?;
    let req = crate::verify::service::StartRequest {
        to: b.to,
        channel: "sms".into(),
        locale: b.locale,
        ..Default::default()
    };
    let st = s.verify.start(&svc, req, s.clock.now_ms()).await?;
    let mut v = verification_json(&st.verification);
    v["created"] = json!(st.created);
    v["sent"] = json!(st.sent);
    Ok(Json(v))
}

/// The service a verification belongs to.
async fn service_of(s: &AdminState, id: &str) -> Result<Service, Problem> {
    let v = s
        .store
        .get_verification(id)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| Problem::not_found("no such verification"))?;
    service_named(s, &v.service).await
}

async fn verify_show(State(s): State<AdminState>, Path(id): Path<String>) -> Answer {
    let svc = service_of(&s, &id).await?;
    let v = s.verify.get(&svc, &id, s.clock.now_ms()).await?;
    let mut out = verification_json(&v);
    if let Some(d) = s.verify.delivery(&id).await? {
        out["delivery"] = json!(d.state.as_str());
    }
    Ok(Json(out))
}

/// Body of `POST /admin/verify/{id}/check`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminCheck {
    code: String,
}

async fn verify_check(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    body: JsonBody<AdminCheck>,
) -> Answer {
    let svc = service_of(&s, &id).await?;
    let c = s
        .verify
        .check(
            &svc,
            &id,
            crate::verify::service::Submission::Code(body.value.code.clone()),
            s.clock.now_ms(),
        )
        .await?;
    let mut out = verification_json(&c.verification);
    out["valid"] = json!(c.matched);
    Ok(Json(out))
}

// ---- the number-binding registry

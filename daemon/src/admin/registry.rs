//! The registry's admin routes: app platforms, bindings, recycling (one
//! number or the carrier's deactivation file) and the notification outbox.

use super::{service_named, store_problem, AdminState, Answer};
use crate::api::json::JsonBody;
use crate::api::problem::{Problem, ProblemCode};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The routes (the caller adds the admin token check).
pub(super) fn routes() -> axum::Router<AdminState> {
    axum::Router::new()
        .route("/admin/registry/apps", get(list_apps).post(add_app))
        .route("/admin/registry/recycle", post(recycle))
        .route("/admin/registry/import", post(import))
        .route("/admin/registry/bindings/:msisdn", get(show_bindings))
        .route("/admin/registry/outbox", get(outbox))
}

/// The registry, or 404 when this server runs none.
fn registry_of(s: &AdminState) -> Result<&Arc<crate::registry::Registry>, Problem> {
    s.registry.as_ref().ok_or_else(|| {
        Problem::not_found(
            "this server runs no number-binding registry ([registry] enabled = false)",
        )
    })
}

fn registry_problem(e: crate::registry::RegistryError) -> Problem {
    match e {
        crate::registry::RegistryError::Store(e) => store_problem(e),
        other => Problem::from(other),
    }
}

async fn list_apps(State(s): State<AdminState>) -> Answer {
    registry_of(&s)?;
    let mut apps = Vec::new();
    for a in s.store.list_registry_apps().await.map_err(store_problem)? {
        let svc = s
            .store
            .get_service(&a.service)
            .await
            .map_err(store_problem)?;
        apps.push(json!({
            "service": a.service,
            "name": svc.as_ref().map(|s| s.name.clone()),
            "notify_url": a.notify_url,
            "signed": svc.as_ref().is_some_and(|s| s.settings.get("webhook_secret").and_then(Value::as_str).is_some_and(|v| !v.is_empty())),
            "created_at": verigate_codecs::time::rfc3339(a.created_at),
        }));
    }
    Ok(Json(json!({"apps": apps})))
}

/// Body of `POST /admin/registry/apps`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApp {
    service: String,
    notify_url: String,
    /// Signing secret of its notifications (the service's webhook secret).
    #[serde(default)]
    secret: Option<String>,
}

/// Registers a service as an app platform of the registry.
async fn add_app(State(s): State<AdminState>, body: JsonBody<NewApp>) -> Answer {
    registry_of(&s)?;
    let a = body.value;
    if !(a.notify_url.starts_with("https://") || a.notify_url.starts_with("http://")) {
        return Err(Problem::new(
            ProblemCode::InvalidField,
            format!(
                "notify_url {:?} must be an http:// or https:// URL",
                a.notify_url
            ),
        ));
    }
    let svc = service_named(&s, &a.service).await?;
    if let Some(secret) = &a.secret {
        if secret.len() < 16 {
            return Err(Problem::new(
                ProblemCode::InvalidField,
                "secret must be at least 16 characters",
            ));
        }
        let mut settings = svc.settings.clone();
        settings["webhook_secret"] = json!(secret);
        s.store
            .update_service_settings(&svc.code, &settings)
            .await
            .map_err(store_problem)?;
    } else if svc
        .settings
        .get("webhook_secret")
        .and_then(Value::as_str)
        .is_none()
    {
        return Err(Problem::new(
            ProblemCode::InvalidField,
            format!(
                "service {:?} has no webhook secret to sign its notifications: give secret",
                svc.code
            ),
        ));
    }
    let app = crate::store::RegistryApp {
        service: svc.code.clone(),
        notify_url: a.notify_url.clone(),
        created_at: s.clock.now_ms(),
    };
    s.store
        .add_registry_app(&app)
        .await
        .map_err(store_problem)?;
    s.callers.clear();
    tracing::info!(service = %svc.code, "registry app platform added");
    Ok(Json(
        json!({"service": svc.code, "notify_url": a.notify_url}),
    ))
}

/// Body of `POST /admin/registry/recycle`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Recycle {
    msisdn: String,
    /// `YYYY-MM-DD` (default: now).
    #[serde(default)]
    date: Option<String>,
}

/// The carrier recycled a number: purge its bindings, tell every app.
async fn recycle(State(s): State<AdminState>, body: JsonBody<Recycle>) -> Answer {
    let r = registry_of(&s)?;
    let b = body.value;
    let (at, day) = match b.date.as_deref() {
        None => (s.clock.now_ms(), false),
        Some(d) => (
            verigate_codecs::time::parse_date(d).ok_or_else(|| {
                Problem::new(
                    ProblemCode::InvalidField,
                    format!("date {d:?} is not a date such as 2026-12-04 (YYYY-MM-DD)"),
                )
            })?,
            true,
        ),
    };
    let purged = r
        .recycle(&b.msisdn, at, day)
        .await
        .map_err(registry_problem)?;
    Ok(Json(json!({
        "msisdn": crate::verify::phone::mask(&b.msisdn),
        "recycled_at": verigate_codecs::time::rfc3339(at),
        "unbound": purged.services,
        "notified": purged.notified,
    })))
}

async fn show_bindings(State(s): State<AdminState>, Path(msisdn): Path<String>) -> Answer {
    let r = registry_of(&s)?;
    let list = r.bindings_of(&msisdn).await.map_err(registry_problem)?;
    Ok(Json(json!({
        "bindings": list.iter().map(|b| json!({
            "service": b.service,
            "bound_at": verigate_codecs::time::rfc3339(b.bound_at),
        })).collect::<Vec<_>>(),
    })))
}

/// Most bad lines named in one answer (the rest are counted).
const BAD_LINES_SHOWN: usize = 20;

/// The carrier's deactivation file (CSV, see [`crate::registry::import`]):
/// every line checked first; a file with a bad line recycles nothing.
async fn import(State(s): State<AdminState>, body: String) -> Answer {
    let r = registry_of(&s)?;
    let list = crate::registry::import::parse(&body, r.region()).map_err(|bad| {
        let mut detail = format!(
            "{} bad line(s); nothing was recycled: {}",
            bad.len(),
            bad.iter()
                .take(BAD_LINES_SHOWN)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
        if bad.len() > BAD_LINES_SHOWN {
            detail.push_str("; …");
        }
        Problem::new(ProblemCode::InvalidField, detail)
    })?;
    let now = s.clock.now_ms();
    let (mut unbound, mut notified) = (0usize, 0usize);
    for d in &list {
        let purged = r
            .recycle(&d.msisdn, d.at.unwrap_or(now), d.at.is_some())
            .await
            .map_err(registry_problem)?;
        unbound += purged.services.len();
        notified += purged.notified;
    }
    tracing::info!(
        numbers = list.len(),
        unbound,
        notified,
        "deactivation file imported"
    );
    Ok(Json(json!({
        "recycled": list.len(),
        "unbound": unbound,
        "notified": notified,
    })))
}

/// Query of `GET /admin/registry/outbox`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboxQuery {
    service: Option<String>,
    limit: Option<u32>,
}

/// The notifications waiting for delivery, oldest first.
async fn outbox(State(s): State<AdminState>, Query(q): Query<OutboxQuery>) -> Answer {
    registry_of(&s)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let jobs = s
        .store
        .pending_webhooks("registry", q.service.as_deref(), limit)
        .await
        .map_err(store_problem)?;
    let rfc = verigate_codecs::time::rfc3339;
    Ok(Json(json!({
        "notifications": jobs.iter().map(|j| {
            let body: Value = serde_json::from_str(&j.body).unwrap_or(Value::Null);
            json!({
                "event": body["id"],
                "type": body["type"],
                "service": j.service,
                "msisdn": body["data"]["msisdn"].as_str().map(crate::verify::phone::mask),
                "url": j.url,
                "attempts": j.attempts,
                "next_attempt_at": rfc(j.next_attempt_at),
                "deliver_until": j.deliver_until.map(rfc),
                "last_error": j.last_error,
            })
        }).collect::<Vec<_>>(),
    })))
}

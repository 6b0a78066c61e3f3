//! Loopback HTTP control API of the simulated SMSC (and the lab's webhook
//! sink, [`super::hooks`]).

use super::conn::inject_mo;
use super::state::{Faults, SimState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Body of `POST /mo`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoRequest {
    from: String,
    /// The sender's SMPP type of number (default 1, international; 2 national).
    #[serde(default)]
    ton: Option<u8>,
    to: String,
    text: String,
    /// Send it as a data_sm instead of deliver_sm.
    #[serde(default)]
    data_sm: bool,
}

/// The control routes.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/mo", post(mo))
        .route("/inbox/:msisdn", get(inbox))
        .route("/faults", get(get_faults).put(put_faults))
        .route("/stats", get(stats))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
        .merge(super::hooks::router(Arc::default()))
}

fn problem(status: StatusCode, detail: String) -> Response {
    (status, Json(json!({ "error": detail }))).into_response()
}

async fn mo(
    State(s): State<Arc<SimState>>,
    body: Result<Json<MoRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match inject_mo(&s, &req.from, req.ton, &req.to, &req.text, req.data_sm) {
        Ok(parts) => (StatusCode::ACCEPTED, Json(json!({ "parts": parts }))).into_response(),
        Err(e @ super::conn::MoError::Encode(_)) => problem(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => problem(StatusCode::CONFLICT, e.to_string()),
    }
}

async fn inbox(State(s): State<Arc<SimState>>, Path(msisdn): Path<String>) -> Response {
    Json(json!({ "messages": s.inbox_of(&msisdn) })).into_response()
}

async fn get_faults(State(s): State<Arc<SimState>>) -> Response {
    Json(s.faults.lock().expect("faults lock").clone()).into_response()
}

async fn put_faults(
    State(s): State<Arc<SimState>>,
    body: Result<Json<Faults>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(f) = match body {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    for (name, v) in [
        ("throttle_ratio", f.throttle_ratio),
        ("reject_ratio", f.reject_ratio),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("{name} must be between 0 and 1, got {v}"),
            );
        }
    }
    *s.faults.lock().expect("faults lock") = f.clone();
    Json(f).into_response()
}

async fn stats(State(s): State<Arc<SimState>>) -> Response {
    let st = s.stats.lock().expect("stats lock");
    Json(serde_json::to_value(&*st).unwrap_or_default()).into_response()
}

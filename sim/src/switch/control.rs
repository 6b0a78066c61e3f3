//! Loopback HTTP control API of the simulated switch: set handsets'
//! behaviours, read the calls each received (the caller ID it saw, the
//! digits it heard), so a test can play the app.

use super::state::{number_key, Behaviour, SwitchState, MODES};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

/// The control routes.
pub fn router(state: Arc<SwitchState>) -> Router {
    Router::new()
        .route("/handsets/:number", put(set_handset))
        .route("/handsets/:number/calls", get(calls))
        .route("/default", put(set_default))
        .route("/stats", get(stats))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

fn problem(status: StatusCode, detail: String) -> Response {
    (status, Json(json!({ "error": detail }))).into_response()
}

fn checked(
    body: Result<Json<Behaviour>, axum::extract::rejection::JsonRejection>,
) -> Result<Behaviour, Box<Response>> {
    let bad = |d: String| Box::new(problem(StatusCode::BAD_REQUEST, d));
    let Json(b) = body.map_err(|e| bad(e.body_text()))?;
    if !MODES.contains(&b.mode.as_str()) {
        return Err(bad(format!(
            "mode {:?} is not one of {}",
            b.mode,
            MODES.join(", ")
        )));
    }
    if let Some(k) = b.keys.chars().find(|c| !"0123456789*#ABCD".contains(*c)) {
        return Err(bad(format!("key {k:?} is not a DTMF key (0-9, *, #, A-D)")));
    }
    if b.law.as_deref().is_some_and(|l| l != "pcmu" && l != "pcma") {
        return Err(bad("law must be \"pcmu\" or \"pcma\"".into()));
    }
    Ok(b)
}

async fn set_handset(
    State(s): State<Arc<SwitchState>>,
    Path(number): Path<String>,
    body: Result<Json<Behaviour>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if number_key(&number).is_empty() {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("{number:?} is not a number"),
        );
    }
    match checked(body) {
        Ok(b) => {
            s.set_behaviour(&number, b.clone());
            Json(b).into_response()
        }
        Err(r) => *r,
    }
}

async fn set_default(
    State(s): State<Arc<SwitchState>>,
    body: Result<Json<Behaviour>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match checked(body) {
        Ok(b) => {
            s.set_default(b.clone());
            Json(b).into_response()
        }
        Err(r) => *r,
    }
}

async fn calls(State(s): State<Arc<SwitchState>>, Path(number): Path<String>) -> Response {
    Json(json!({ "calls": s.calls_of(&number) })).into_response()
}

async fn stats(State(s): State<Arc<SwitchState>>) -> Response {
    let (calls, up) = s.stats();
    Json(json!({ "calls": calls, "up": up })).into_response()
}

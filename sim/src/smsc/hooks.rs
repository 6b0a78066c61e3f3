//! A webhook sink on the control API: the lab's stand-in for an app's
//! account server. `POST /hooks/{name}` keeps what arrived (the signature
//! and event id headers, and the body); `GET /hooks/{name}` lists it, so a
//! walk through the lab can show the webhook an account server got.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Deliveries kept per name (the oldest go first).
const KEPT: usize = 1000;

/// What arrived, by name.
#[derive(Debug, Default)]
pub struct Hooks {
    by_name: Mutex<HashMap<String, Vec<Value>>>,
}

/// The sink's routes.
pub fn router(hooks: Arc<Hooks>) -> Router {
    Router::new()
        .route("/hooks/:name", get(list).post(receive))
        .with_state(hooks)
}

async fn receive(
    State(h): State<Arc<Hooks>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let text = String::from_utf8_lossy(&body).to_string();
    let entry = json!({
        "signature": header("verigate-signature"),
        "event_id": header("verigate-event-id"),
        "body": serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
        // Exactly as sent, to check the signature against.
        "raw": text,
    });
    let mut all = h.by_name.lock().expect("hooks lock");
    let list = all.entry(name).or_default();
    if list.len() == KEPT {
        list.remove(0);
    }
    list.push(entry);
    StatusCode::NO_CONTENT.into_response()
}

async fn list(State(h): State<Arc<Hooks>>, Path(name): Path<String>) -> Response {
    let all = h.by_name.lock().expect("hooks lock");
    Json(json!({ "hooks": all.get(&name).cloned().unwrap_or_default() })).into_response()
}

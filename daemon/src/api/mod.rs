//! Public HTTP API: `/v1/verifications` (Bearer API keys, problem+json
//! errors), `/v1/voice-calls` (the voice gateway, proven by K2),
//! `/openapi.json` and `/healthz`.

pub mod auth;
pub mod json;
pub mod mo_logins;
pub mod openapi;
pub mod problem;
pub mod verifications;
pub mod voice_calls;

#[cfg(test)]
mod tests;

use crate::app::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use problem::{Problem, ProblemCode};

/// The public API. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so per-IP limits
/// see the peer address.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/verifications", post(verifications::start))
        .route("/v1/verifications/:id", get(verifications::get))
        .route("/v1/verifications/:id/check", post(verifications::check))
        .route("/v1/verifications/:id/cancel", post(verifications::cancel))
        .route("/v1/mo-logins", post(mo_logins::create))
        .route("/v1/mo-logins/:token", get(mo_logins::get))
        .route("/v1/voice-calls", post(voice_calls::request))
        .route("/v1/voice-calls/:id", get(voice_calls::get))
        .route("/openapi.json", get(openapi::serve))
        .route("/healthz", get(healthz))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(json::BODY_LIMIT))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn not_found() -> Problem {
    Problem::not_found("no such route")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        ProblemCode::MethodNotAllowed,
        "this route does not support the request method",
    )
}

//! Public HTTP API: `/v1/verifications` (Bearer API keys, problem+json
//! errors), `/v1/voice-calls` (the voice gateway, proven by K2),
//! `/v1/mo-logins`, `/openapi.json` and `/healthz`; [`edge`] bounds every
//! connection and request. `/metrics` and `/readyz` are on the admin listener.

pub mod auth;
pub mod bindings;
pub mod camara;
pub mod edge;
pub mod json;
pub mod mo_logins;
pub mod number_recycling;
pub mod openapi;
pub mod problem;
pub mod registry;
pub mod sim_swap;
pub mod tx;
pub mod verifications;
pub mod voice_calls;

#[cfg(test)]
mod tests;

use crate::app::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use problem::{Problem, ProblemCode};

/// The public API with the default edge bounds (see [`router_with`]).
pub fn router(state: AppState) -> Router {
    router_with(state, &edge::EdgeLimits::default())
}

/// A handler's path parameters, or why they are unusable (400
/// `invalid_field`).
fn path_params<T>(
    p: Result<axum::extract::Path<T>, axum::extract::rejection::PathRejection>,
) -> Result<T, problem::Problem> {
    p.map(|axum::extract::Path(v)| v)
        .map_err(|e| problem::Problem::new(problem::ProblemCode::InvalidField, e.body_text()))
}

/// The public API, each request bounded by `limits` (a deadline and the
/// in-flight cap) except the MO-login long poll, which waits by design.
/// Serve it with [`edge::serve`] (or `into_make_service_with_connect_info`)
/// so per-IP limits see the peer address.
pub fn router_with(state: AppState, limits: &edge::EdgeLimits) -> Router {
    let bounded = Router::new()
        .route("/v1/verifications", post(verifications::start))
        .route("/v1/verifications/:id", get(verifications::get))
        .route("/v1/verifications/:id/check", post(verifications::check))
        .route("/v1/verifications/:id/cancel", post(verifications::cancel))
        .route("/v1/mo-logins", post(mo_logins::create))
        .route("/v1/voice-calls", post(voice_calls::request))
        .route("/v1/voice-calls/:id", get(voice_calls::get))
        .route(
            "/v1/registry/bindings/:msisdn/:service_code",
            axum::routing::put(registry::bind).delete(registry::unbind),
        )
        .route("/v1/registry/services", get(registry::services))
        .route(
            "/v1/registry/unbind",
            axum::routing::post(registry::subscriber_unbind),
        )
        .route(
            "/v1/registry/move",
            axum::routing::post(registry::subscriber_move),
        )
        .route("/v1/bindings", post(bindings::create).get(bindings::list))
        .route(
            "/v1/bindings/:id",
            get(bindings::get).delete(bindings::remove),
        )
        .route("/v1/bindings/:id/confirm", post(bindings::confirm))
        .route("/v1/registry-events", post(bindings::receive))
        .route("/v1/tx/sessions", post(tx::open))
        .route("/v1/tx/sessions/:id", get(tx::get_session))
        .route(
            "/v1/tx/sessions/:id/transactions",
            post(tx::pay).get(tx::list),
        )
        .route("/v1/tx/transactions/:id", get(tx::get_transaction))
        .route("/sim-swap/v2/check", post(sim_swap::check))
        .route("/sim-swap/v2/retrieve-date", post(sim_swap::retrieve_date))
        .route(
            "/number-recycling/v0.2/check",
            post(number_recycling::check),
        )
        .route("/openapi.json", get(openapi::serve))
        .route("/healthz", get(healthz))
        .method_not_allowed_fallback(method_not_allowed);
    let long_poll = Router::new()
        .route("/v1/mo-logins/:token", get(mo_logins::get))
        .method_not_allowed_fallback(method_not_allowed);
    edge::bounded(bounded, limits)
        .merge(long_poll)
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

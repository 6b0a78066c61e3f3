//! CAMARA SIM Swap v2 (`POST /sim-swap/v2/check`, `/retrieve-date`): did
//! this number move to another SIM lately, and when. Answered from the
//! relay's subscriber directory; errors in CAMARA's own body.

use super::auth::Caller;
use super::camara::{camara, from_problem, CamaraError, Refusal};
use super::problem::Problem;
use crate::app::AppState;
use crate::txrelay::{TxRelay, TxRelayError};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// `maxAge` when the request gives none (CAMARA's default).
const DEFAULT_MAX_AGE_HOURS: i64 = 240;

/// The check request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCheckSimSwap {
    /// The number, E.164 with `+`.
    #[schema(example = "+447400100990")]
    pub phone_number: Option<String>,
    /// Hours to look back (1–2400, default 240).
    #[schema(example = 240, minimum = 1, maximum = 2400)]
    pub max_age: Option<i64>,
}

/// The check answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckSimSwapInfo {
    /// The SIM changed within `maxAge`.
    pub swapped: bool,
}

/// The retrieve-date request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSimSwapDate {
    /// The number, E.164 with `+`.
    #[schema(example = "+447400100990")]
    pub phone_number: Option<String>,
}

/// The retrieve-date answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SimSwapInfo {
    /// The latest SIM change (RFC 3339), or null if none within the
    /// monitored period.
    pub latest_sim_change: Option<String>,
    /// The monitored period in days, when the date is null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitored_period: Option<u32>,
}

/// The relay, or CAMARA's 404.
fn relay(state: &AppState) -> Result<&Arc<TxRelay>, Refusal> {
    state.txrelay.as_ref().ok_or_else(|| {
        Refusal::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "this server runs no transaction relay ([txrelay] enabled = false)",
        )
    })
}

/// The number the request names, or CAMARA's refusal.
fn number(raw: Option<String>) -> Result<String, Refusal> {
    let n = raw.ok_or_else(|| {
        Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "MISSING_IDENTIFIER",
            "phoneNumber is required (the API key does not identify a line)",
        )
    })?;
    if !n.starts_with('+') {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "phoneNumber must be E.164 with a leading +",
        ));
    }
    Ok(n)
}

fn refused(e: TxRelayError) -> Response {
    match e {
        TxRelayError::BadNumber(e) => {
            camara(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", e.to_string())
        }
        TxRelayError::MaxAge(_) => camara(StatusCode::BAD_REQUEST, "OUT_OF_RANGE", e.to_string()),
        TxRelayError::UnknownSubscriber(_) => {
            camara(StatusCode::NOT_FOUND, "IDENTIFIER_NOT_FOUND", e.to_string())
        }
        TxRelayError::Store(e) => from_problem(Problem::from(e)),
        other => from_problem(Problem::internal(&other)),
    }
}

/// Whether the number's SIM changed within the last `maxAge` hours.
#[utoipa::path(
    post,
    path = "/sim-swap/v2/check",
    operation_id = "checkSimSwap",
    tag = "txrelay",
    request_body(content = CreateCheckSimSwap, content_type = "application/json"),
    responses(
        (status = 200, description = "The answer", body = CheckSimSwapInfo),
        (status = 400, description = "INVALID_ARGUMENT (a bad body or number), OUT_OF_RANGE (maxAge outside 1–2400)", body = CamaraError),
        (status = 401, description = "UNAUTHENTICATED", body = CamaraError),
        (status = 404, description = "IDENTIFIER_NOT_FOUND (not our subscriber), NOT_FOUND (no relay here)", body = CamaraError),
        (status = 422, description = "MISSING_IDENTIFIER (no phoneNumber)", body = CamaraError),
        (status = 429, description = "TOO_MANY_REQUESTS (wrong API keys from this address)", body = CamaraError),
        (status = 500, description = "INTERNAL", body = CamaraError),
    ),
    security(("bearer" = []))
)]
pub async fn check(
    State(state): State<AppState>,
    caller: Result<Caller, Problem>,
    body: Result<Json<CreateCheckSimSwap>, JsonRejection>,
) -> Response {
    if let Err(p) = caller {
        return from_problem(p);
    }
    let r = match relay(&state) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return camara(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", e.body_text()),
    };
    let n = match number(req.phone_number) {
        Ok(n) => n,
        Err(refusal) => return refusal.into_response(),
    };
    let max_age = req.max_age.unwrap_or(DEFAULT_MAX_AGE_HOURS);
    match r.swapped(&n, max_age, state.clock.now_ms()).await {
        Ok(swapped) => Json(CheckSimSwapInfo { swapped }).into_response(),
        Err(e) => refused(e),
    }
}

/// When the number's SIM last changed.
#[utoipa::path(
    post,
    path = "/sim-swap/v2/retrieve-date",
    operation_id = "retrieveSimSwapDate",
    tag = "txrelay",
    request_body(content = CreateSimSwapDate, content_type = "application/json"),
    responses(
        (status = 200, description = "The latest SIM change, or null with the monitored period", body = SimSwapInfo),
        (status = 400, description = "INVALID_ARGUMENT (a bad body or number)", body = CamaraError),
        (status = 401, description = "UNAUTHENTICATED", body = CamaraError),
        (status = 404, description = "IDENTIFIER_NOT_FOUND (not our subscriber), NOT_FOUND (no relay here)", body = CamaraError),
        (status = 422, description = "MISSING_IDENTIFIER (no phoneNumber)", body = CamaraError),
        (status = 429, description = "TOO_MANY_REQUESTS (wrong API keys from this address)", body = CamaraError),
        (status = 500, description = "INTERNAL", body = CamaraError),
    ),
    security(("bearer" = []))
)]
pub async fn retrieve_date(
    State(state): State<AppState>,
    caller: Result<Caller, Problem>,
    body: Result<Json<CreateSimSwapDate>, JsonRejection>,
) -> Response {
    if let Err(p) = caller {
        return from_problem(p);
    }
    let r = match relay(&state) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return camara(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", e.body_text()),
    };
    let n = match number(req.phone_number) {
        Ok(n) => n,
        Err(refusal) => return refusal.into_response(),
    };
    match r.latest_change(&n, state.clock.now_ms()).await {
        Ok(c) => Json(SimSwapInfo {
            latest_sim_change: c.at.map(verigate_codecs::time::rfc3339),
            monitored_period: c.monitored_days,
        })
        .into_response(),
        Err(e) => refused(e),
    }
}

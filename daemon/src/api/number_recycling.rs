//! `POST /number-recycling/v0.2/check` (CAMARA NumberRecycling): was this
//! number recycled (did it change hands) since a date? Answered from the
//! registry's recorded recyclings; errors in CAMARA's own body.

use super::auth::Caller;
use super::camara::{camara, from_problem, CamaraError};
use super::problem::Problem;
use crate::app::AppState;
use crate::registry::RegistryError;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckRequest {
    /// The number, E.164 with `+`.
    #[schema(example = "+447400100900")]
    pub phone_number: String,
    /// The date the caller last confirmed the number (`YYYY-MM-DD`).
    #[schema(example = "2026-11-01")]
    pub specified_date: String,
}

/// The answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckResponse {
    /// The number changed hands on or after the date.
    pub phone_number_recycled: bool,
}

/// Whether the number was recycled since the date.
#[utoipa::path(
    post,
    path = "/number-recycling/v0.2/check",
    operation_id = "checkNumberRecycling",
    tag = "registry",
    request_body(content = CheckRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The answer", body = CheckResponse),
        (status = 400, description = "INVALID_ARGUMENT (a bad body, number or date), OUT_OF_RANGE (a date before the records begin)", body = CamaraError),
        (status = 401, description = "UNAUTHENTICATED", body = CamaraError),
        (status = 404, description = "NOT_FOUND: this server runs no registry", body = CamaraError),
        (status = 429, description = "TOO_MANY_REQUESTS (wrong API keys from this address)", body = CamaraError),
        (status = 500, description = "INTERNAL", body = CamaraError),
    ),
    security(("bearer" = []))
)]
pub async fn check(
    State(state): State<AppState>,
    caller: Result<Caller, Problem>,
    body: Result<Json<CheckRequest>, JsonRejection>,
) -> Response {
    if let Err(p) = caller {
        return from_problem(p);
    }
    let Some(registry) = state.registry.as_ref() else {
        return camara(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "this server runs no number-binding registry",
        );
    };
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return camara(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", e.body_text()),
    };
    let Some(since) = verigate_codecs::time::parse_date(&req.specified_date) else {
        return camara(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!(
                "specifiedDate {:?} is not a date such as 2026-11-01",
                req.specified_date
            ),
        );
    };
    if !req.phone_number.starts_with('+') {
        return camara(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "phoneNumber must be E.164 with a leading +",
        );
    }
    match registry.recycled_since(&req.phone_number, since).await {
        Ok(recycled) => Json(CheckResponse {
            phone_number_recycled: recycled,
        })
        .into_response(),
        Err(RegistryError::BeforeRecords { began }) => camara(
            StatusCode::BAD_REQUEST,
            "OUT_OF_RANGE",
            format!("specifiedDate is before the records begin ({began})"),
        ),
        Err(RegistryError::BadNumber(e)) => {
            camara(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", e.to_string())
        }
        Err(e) => from_problem(Problem::from(e)),
    }
}

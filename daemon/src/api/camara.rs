//! What the CAMARA APIs (NumberRecycling, SIM Swap) share: their error
//! body `{status, code, message}` and our problems in their words.

use super::problem::Problem;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// CAMARA's error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct CamaraError {
    /// HTTP status.
    #[schema(example = 400)]
    pub status: u16,
    /// CAMARA code, e.g. `INVALID_ARGUMENT`, `OUT_OF_RANGE`, `UNAUTHENTICATED`.
    #[schema(example = "INVALID_ARGUMENT")]
    pub code: String,
    /// What was wrong.
    pub message: String,
}

pub(super) fn camara(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = CamaraError {
        status: status.as_u16(),
        code: code.into(),
        message: message.into(),
    };
    (status, Json(body)).into_response()
}

/// Our problem (an auth refusal, a store failure) in CAMARA's words.
pub(super) fn from_problem(p: Problem) -> Response {
    let status = p.status();
    let code = match status.as_u16() {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        429 => "TOO_MANY_REQUESTS",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    camara(status, code, p.body().detail)
}

/// A CAMARA refusal not yet turned into a response (small, for `?`).
#[derive(Debug)]
pub(super) struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    /// A refusal with CAMARA's `code`.
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        camara(self.status, self.code, self.message)
    }
}

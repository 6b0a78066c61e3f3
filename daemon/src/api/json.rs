//! JSON request bodies: every way a body can be wrong becomes a problem
//! with a stable code, and the raw bytes are kept (for Idempotency-Key).

use super::problem::{Problem, ProblemCode};
use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 16 * 1024;

/// A JSON body deserialized into `T`, with the bytes it came from.
#[derive(Debug)]
pub struct JsonBody<T> {
    /// The parsed body.
    pub value: T,
    /// The body as received.
    pub raw: Bytes,
}

#[axum::async_trait]
impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let headers = req.headers().clone();
        // Honours DefaultBodyLimit (set on the router).
        let raw = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    ProblemCode::PayloadTooLarge,
                    format!("the request body is larger than {BODY_LIMIT} bytes"),
                )
            } else {
                Problem::new(ProblemCode::InvalidJson, r.body_text()).with_status(r.status())
            }
        })?;
        // axum's own checks: content type, then JSON syntax.
        let mut probe = Request::new(Body::from(raw.clone()));
        *probe.headers_mut() = headers;
        let Json(doc) = Json::<serde_json::Value>::from_request(probe, &())
            .await
            .map_err(json_problem)?;
        // serde would also take an array as a struct's fields in order.
        if !doc.is_object() {
            return Err(Problem::new(
                ProblemCode::InvalidField,
                "the request body must be a JSON object",
            ));
        }
        // From the bytes, not from `doc`: a map would silently keep the last
        // of two equal keys, the struct's own visitor refuses duplicates.
        let mut de = serde_json::Deserializer::from_slice(&raw);
        let value = serde_path_to_error::deserialize(&mut de).map_err(field_problem)?;
        Ok(JsonBody { value, raw })
    }
}

fn json_problem(r: JsonRejection) -> Problem {
    let status = match r.status() {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    };
    Problem::new(ProblemCode::InvalidJson, r.body_text()).with_status(status)
}

/// A serde error naming the field it is about.
fn field_problem(e: serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let path = e.path().to_string();
    let msg = e.inner().to_string();
    let code = if msg.starts_with("unknown field") {
        ProblemCode::UnknownField
    } else {
        ProblemCode::InvalidField
    };
    let root = path == "." || path.is_empty();
    let detail = if root || code == ProblemCode::UnknownField {
        msg
    } else {
        format!("{path}: {msg}")
    };
    Problem::new(code, detail)
}

//! `verigate-sim bank`: the carrier's counterpart in the transaction relay,
//! over HTTP. [`ledger`] is the bank (sans-IO); this serves it:
//!
//! - the relay: `POST /v1/registrations`, `POST /v1/transactions` (the
//!   contract of `verigate_keys::relay`); refusals are 4xx with a stable
//!   `code` (`forged`, `counter_replayed`, `auth_mismatch`, …);
//! - its half of the key ceremony: `POST /ceremony` (two zone-key
//!   components for the carrier's custodians, with KCVs) and `POST
//!   /initial-keys` {derivation_id} (the initial key wrapped under the zone
//!   key);
//! - control: `GET /ceremony` (the zone key's KCV), `GET /registrations`,
//!   `GET /ledger`, `GET /accounts`, `GET`/`PUT /accounts/{name}`
//!   {balance_minor}, `GET /healthz`.

pub mod ledger;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use ledger::{Bank, BankError};
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, Mutex};
use verigate_keys::relay::{RegistrationRequest, TransactionRequest};

type Shared = Arc<Mutex<Bank>>;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn refused(e: &BankError) -> Response {
    let status = match e {
        BankError::NoZoneKey => StatusCode::SERVICE_UNAVAILABLE,
        BankError::UnknownRegistration(_) => StatusCode::NOT_FOUND,
        BankError::DuplicateRegistration(_) => StatusCode::CONFLICT,
        BankError::Malformed(_) | BankError::Key(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::FORBIDDEN,
    };
    (
        status,
        Json(json!({"code": e.code(), "detail": e.to_string()})),
    )
        .into_response()
}

fn bad_json(e: axum::extract::rejection::JsonRejection) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"code": "malformed", "detail": e.body_text()})),
    )
        .into_response()
}

/// The routes.
pub fn router(bank: Shared) -> Router {
    Router::new()
        .route("/v1/registrations", post(register))
        .route("/v1/transactions", post(transact))
        .route("/ceremony", post(ceremony).get(zone))
        .route("/initial-keys", post(initial_key))
        .route("/registrations", get(registrations))
        .route("/ledger", get(ledger_view))
        .route("/accounts", get(accounts))
        .route("/accounts/:name", put(set_account).get(account))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(bank)
}

async fn register(
    State(b): State<Shared>,
    body: Result<Json<RegistrationRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    match b.lock().expect("bank lock").register(&req, now_ms()) {
        Ok(r) => (
            match r {
                ledger::Registered::New => StatusCode::CREATED,
                ledger::Registered::Repeat => StatusCode::OK,
            },
            Json(json!({"registration_id": req.registration_id})),
        )
            .into_response(),
        Err(e) => refused(&e),
    }
}

async fn transact(
    State(b): State<Shared>,
    body: Result<Json<TransactionRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    match b.lock().expect("bank lock").transact(&req, now_ms()) {
        Ok(signed) => Json(signed).into_response(),
        Err(e) => refused(&e),
    }
}

async fn ceremony(State(b): State<Shared>) -> Response {
    let c = b
        .lock()
        .expect("bank lock")
        .ceremony(&mut rand::thread_rng());
    Json(json!({
        "components": [
            {"custodian": "A", "component": c.a.0, "kcv": c.a.1},
            {"custodian": "B", "component": c.b.0, "kcv": c.b.1},
        ],
        "kcv": c.kcv,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InitialKeyRequest {
    /// The carrier's derivation id (8 hex digits).
    derivation_id: String,
    /// `rfc3394` (the default) or `tr31` (a version D key block).
    #[serde(default)]
    format: Option<String>,
}

async fn initial_key(
    State(b): State<Shared>,
    body: Result<Json<InitialKeyRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    let id: [u8; 4] = match hex::decode(&req.derivation_id)
        .ok()
        .and_then(|v| v.try_into().ok())
    {
        Some(id) => id,
        None => {
            return refused(&BankError::Malformed(
                "derivation_id is 8 hex digits".into(),
            ))
        }
    };
    if req.format.as_deref() == Some("tr31") {
        return match b
            .lock()
            .expect("bank lock")
            .issue_initial_key_block(id, &mut rand::thread_rng())
        {
            Ok((ikid, block, kcv)) => Json(json!({
                "initial_key_id": ikid,
                "key_block": block,
                "wrapping": "TR-31 version D key block under the zone key",
                "kcv": kcv,
            }))
            .into_response(),
            Err(e) => refused(&e),
        };
    }
    if req.format.as_deref().is_some_and(|f| f != "rfc3394") {
        return refused(&BankError::Malformed(
            "format is rfc3394 (the default) or tr31".into(),
        ));
    }
    match b.lock().expect("bank lock").issue_initial_key(id) {
        Ok((ikid, wrapped, kcv)) => Json(json!({
            "initial_key_id": ikid,
            "wrapped": wrapped,
            "wrapping": "AES key wrap (RFC 3394) under the zone key",
            "kcv": kcv,
        }))
        .into_response(),
        Err(e) => refused(&e),
    }
}

async fn zone(State(b): State<Shared>) -> Response {
    Json(json!({"kcv": b.lock().expect("bank lock").zone_kcv()})).into_response()
}

async fn account(State(b): State<Shared>, Path(name): Path<String>) -> Response {
    match b.lock().expect("bank lock").balance(&name) {
        Some(bal) => Json(json!({"account": name, "balance_minor": bal})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"code": "unknown_account", "detail": format!("no account {name:?}")})),
        )
            .into_response(),
    }
}

async fn registrations(State(b): State<Shared>) -> Response {
    let regs = b.lock().expect("bank lock").registrations();
    Json(
        json!({"registrations": regs.into_iter().map(|(id, a, at)| json!({
        "registration_id": id, "imsi": a.imsi, "msisdn": a.msisdn, "ksn": a.ksn, "at": at,
    })).collect::<Vec<_>>()}),
    )
    .into_response()
}

async fn ledger_view(State(b): State<Shared>) -> Response {
    Json(json!({"executed": b.lock().expect("bank lock").executed()})).into_response()
}

async fn accounts(State(b): State<Shared>) -> Response {
    let a = b.lock().expect("bank lock").accounts();
    Json(json!({"accounts": a.into_iter().map(|(name, bal)| json!({"account": name, "balance_minor": bal})).collect::<Vec<_>>()}))
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Balance {
    balance_minor: i64,
}

async fn set_account(
    State(b): State<Shared>,
    Path(name): Path<String>,
    body: Result<Json<Balance>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    b.lock()
        .expect("bank lock")
        .set_balance(&name, req.balance_minor);
    Json(json!({"account": name, "balance_minor": req.balance_minor})).into_response()
}

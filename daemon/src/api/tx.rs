//! `/v1/tx/…`: the carrier–bank relay for the carrier's trusted front ends
//! (each with its own API key, `[[txrelay.front_ends]]`). A front end opens
//! a session for a terminal (the carrier vouches for its IMSI and number
//! and registers it with the bank) and sends the terminal's payments in it;
//! each answer comes once the bank has answered, or as 202 with the work
//! going on (poll the resource).

use super::auth::{bearer_token, ClientIp, IdempotencyKey};
use super::json::JsonBody;
use super::problem::{Problem, ProblemBody, ProblemCode};
use crate::app::AppState;
use crate::store::{SessionState, TxSession, TxState, TxTransaction};
use crate::txrelay::{TxRelay, TxRelayError};
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use verigate_codecs::time::rfc3339;
use verigate_keys::relay::Transfer;

impl From<TxRelayError> for Problem {
    fn from(e: TxRelayError) -> Self {
        let detail = e.to_string();
        match e {
            TxRelayError::BadNumber(_) => Problem::new(ProblemCode::InvalidPhoneNumber, detail),
            TxRelayError::UnknownSubscriber(_) => {
                Problem::new(ProblemCode::UnknownSubscriber, detail)
            }
            TxRelayError::ImsiMismatch(_) => Problem::new(ProblemCode::ImsiMismatch, detail),
            TxRelayError::LineInactive { .. } => Problem::new(ProblemCode::LineInactive, detail),
            TxRelayError::RecentSimSwap { .. } => Problem::new(ProblemCode::RecentSimSwap, detail),
            TxRelayError::MaxAge(_)
            | TxRelayError::BadFile(_)
            | TxRelayError::UnknownBank(_)
            | TxRelayError::BadTransfer(_) => Problem::new(ProblemCode::InvalidField, detail),
            TxRelayError::NoBank | TxRelayError::Keys(_) | TxRelayError::CountersExhausted(_) => {
                Problem::unavailable(detail, 60)
            }
            TxRelayError::NoSession(_) | TxRelayError::NoTransaction(_) => {
                Problem::not_found(detail)
            }
            TxRelayError::SessionClosed { .. } => Problem::new(ProblemCode::SessionClosed, detail),
            TxRelayError::IdempotencyKeyReused => {
                Problem::new(ProblemCode::IdempotencyKeyReused, detail)
            }
            TxRelayError::Store(e) => Problem::from(e),
        }
    }
}

/// The front end whose API key authenticated the request.
#[derive(Debug, Clone)]
pub struct FrontEnd(pub String);

#[axum::async_trait]
impl FromRequestParts<AppState> for FrontEnd {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let relay = relay(state)?;
        let Some(key) = bearer_token(&parts.headers).map(str::to_string) else {
            return Err(Problem::unauthorized(
                "send the front end's API key as `Authorization: Bearer <key>`",
            ));
        };
        let now = state.clock.now_ms();
        let ClientIp(ip) = match ClientIp::from_request_parts(parts, state).await {
            Ok(ip) => ip,
            Err(never) => match never {},
        };
        if let Some(retry) = ip.and_then(|ip| state.auth_failures.blocked(ip, now)) {
            return Err(Problem::rate_limited(
                "too many requests with a wrong API key from this address",
                retry,
            ));
        }
        match relay.front_end(&key) {
            Some(name) => Ok(FrontEnd(name.to_string())),
            None => {
                if let Some(ip) = ip {
                    state.auth_failures.failed(ip, now);
                }
                Err(Problem::unauthorized("the API key is not a front end's"))
            }
        }
    }
}

fn relay(state: &AppState) -> Result<&Arc<TxRelay>, Problem> {
    state
        .txrelay
        .as_ref()
        .ok_or_else(|| Problem::not_found("this server runs no carrier–bank relay ([txrelay])"))
}

/// Why the bank (or the relay) refused a session or a transaction.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefusalView {
    /// Stable code: the bank's (`forged`, `counter_replayed`, `stale`,
    /// `wrong_zone_key`, …) or the relay's (`bank_unreachable`,
    /// `session_refused`, `outcome_unknown`, `result_not_authentic`).
    #[schema(example = "counter_replayed")]
    pub code: String,
    /// What happened.
    pub detail: String,
}

/// A relay session.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    /// Its id (also its registration id at the bank).
    #[schema(example = "txs_01J9Z8Q4M2K7N3P5R6S8T0V1W2")]
    pub id: String,
    /// `registering`, `registered` (transactions go to the bank) or `refused`.
    #[schema(example = "registered")]
    pub state: String,
    /// The bank.
    #[schema(example = "lab-bank")]
    pub bank: String,
    /// The vouched-for number, E.164.
    #[schema(example = "+447400100990")]
    pub msisdn: String,
    /// The session's DUKPT key serial number (initial key id ‖ counter, hex).
    #[schema(example = "123456789012345600000001")]
    pub ksn: String,
    /// Transactions are taken until then (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<RefusalView>,
}

impl From<&TxSession> for SessionView {
    fn from(s: &TxSession) -> Self {
        SessionView {
            id: s.id.clone(),
            state: s.state.as_str().into(),
            bank: s.bank.clone(),
            msisdn: s.msisdn.clone(),
            ksn: s.ksn.clone(),
            expires_at: rfc3339(s.expires_at),
            refusal: (s.state == SessionState::Refused).then(|| RefusalView {
                code: s.error_code.clone().unwrap_or_default(),
                detail: s.error.clone().unwrap_or_default(),
            }),
        }
    }
}

/// A transaction of a session.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransactionView {
    /// Its id.
    #[schema(example = "txt_01J9Z8Q4M2K7N3P5R6S8T0V1W2")]
    pub id: String,
    /// The session.
    pub session_id: String,
    /// Its number in the session (from 1).
    pub seq: u32,
    /// `queued` (being relayed), `executed`, `declined` (by the bank: see
    /// `reason`) or `refused` (see `refusal`; nothing moved).
    #[schema(example = "executed")]
    pub state: String,
    /// The bank's reference of an executed payment.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "bank_00000001")]
    pub bank_ref: Option<String>,
    /// The bank's reason for a decline.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "insufficient funds")]
    pub reason: Option<String>,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<RefusalView>,
    /// The bank's AES-CMAC over its result (hex), checked by the relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_mac: Option<String>,
    /// When accepted (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When the bank's answer was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
}

impl From<&TxTransaction> for TransactionView {
    fn from(t: &TxTransaction) -> Self {
        let refused = t.state == TxState::Refused;
        TransactionView {
            id: t.id.clone(),
            session_id: t.session_id.clone(),
            seq: t.seq,
            state: t.state.as_str().into(),
            bank_ref: t.bank_ref.clone(),
            reason: (t.state == TxState::Declined)
                .then(|| t.reason.clone())
                .flatten(),
            refusal: refused.then(|| RefusalView {
                code: t.error_code.clone().unwrap_or_default(),
                detail: t.reason.clone().unwrap_or_default(),
            }),
            result_mac: t.result_mac.clone(),
            created_at: rfc3339(t.created_at),
            finished_at: t.finished_at.map(rfc3339),
        }
    }
}

/// A session's transactions, in order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransactionList {
    /// The transactions.
    pub transactions: Vec<TransactionView>,
}

/// Body of `POST /v1/tx/sessions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    /// The terminal's SIM (as the network saw it).
    #[schema(example = "234150999999999")]
    pub imsi: String,
    /// The terminal's number (E.164, or national in the relay's region).
    #[schema(example = "+447400100990")]
    pub msisdn: String,
    /// The bank (`[txrelay.bank] name`).
    #[schema(example = "lab-bank")]
    pub bank: String,
}

/// Body of `POST /v1/tx/sessions/{id}/transactions`: a payment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayBody {
    /// The payer's account at the bank (1–34 characters).
    #[schema(example = "alice")]
    pub from_account: String,
    /// The payee's account.
    #[schema(example = "shop")]
    pub to_account: String,
    /// Amount in minor units (pence, fen), at least 1.
    #[schema(example = 1250)]
    pub amount_minor: u64,
    /// ISO 4217.
    #[schema(example = "GBP")]
    pub currency: String,
    /// The payer's reference (at most 140 characters).
    #[serde(default)]
    #[schema(example = "order 7")]
    pub reference: String,
}

/// Open a session for a terminal: the carrier vouches for it (IMSI and
/// number are its subscriber's, the line is active, the SIM not changed
/// within `txrelay.max_sim_age`) and registers it with the bank.
#[utoipa::path(
    post,
    path = "/v1/tx/sessions",
    operation_id = "openTxSession",
    tag = "txrelay",
    request_body = OpenBody,
    responses(
        (status = 201, description = "The bank answered: `registered`, or `refused` with the bank's code", body = SessionView),
        (status = 202, description = "Still `registering` after `txrelay.answer_wait`: poll the session", body = SessionView),
        (status = 400, description = "invalid_json, unknown_field, invalid_field (an unknown bank), invalid_phone_number", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized (not a front end's key)", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "imsi_mismatch, line_inactive, recent_sim_swap", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "unknown_subscriber; not_found (no relay here)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "service_unavailable: no bank, keys not ready, or counters exhausted", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn open(
    State(state): State<AppState>,
    FrontEnd(front_end): FrontEnd,
    body: JsonBody<OpenBody>,
) -> Result<Response, Problem> {
    let r = relay(&state)?;
    let b = &body.value;
    let s = r
        .open_session(
            &front_end,
            (&b.imsi, &b.msisdn),
            &b.bank,
            r.answer_wait(),
            state.clock.now_ms(),
        )
        .await?;
    Ok(session_answer(&s, StatusCode::CREATED))
}

fn session_answer(s: &TxSession, done: StatusCode) -> Response {
    let status = if s.state == SessionState::Registering {
        StatusCode::ACCEPTED
    } else {
        done
    };
    (status, Json(SessionView::from(s))).into_response()
}

/// One session of this front end.
#[utoipa::path(
    get,
    path = "/v1/tx/sessions/{id}",
    operation_id = "getTxSession",
    tag = "txrelay",
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "not_found", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_session(
    State(state): State<AppState>,
    FrontEnd(front_end): FrontEnd,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<SessionView>, Problem> {
    let r = relay(&state)?;
    let s = r
        .session(
            &front_end,
            &super::path_params(id)?,
            std::time::Duration::ZERO,
        )
        .await?;
    Ok(Json(SessionView::from(&s)))
}

/// Pay in a session: the payment is stored (once per `Idempotency-Key`),
/// relayed to the bank under the session's DUKPT key, and the bank's
/// MACed answer checked.
#[utoipa::path(
    post,
    path = "/v1/tx/sessions/{id}/transactions",
    operation_id = "payInTxSession",
    tag = "txrelay",
    params(
        ("id" = String, Path, description = "The session's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Sent again with the same payment: the same transaction, relayed once"),
    ),
    request_body = PayBody,
    responses(
        (status = 201, description = "The bank answered: `executed`, `declined` or `refused`", body = TransactionView),
        (status = 200, description = "The Idempotency-Key's transaction, answered", body = TransactionView),
        (status = 202, description = "Still `queued` after `txrelay.answer_wait`: poll the transaction", body = TransactionView),
        (status = 400, description = "invalid_json, unknown_field, invalid_field, invalid_idempotency_key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "not_found (no such session)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "session_closed (expired or refused)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "idempotency_key_reused", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn pay(
    State(state): State<AppState>,
    FrontEnd(front_end): FrontEnd,
    IdempotencyKey(key): IdempotencyKey,
    id: Result<Path<String>, PathRejection>,
    body: JsonBody<PayBody>,
) -> Result<Response, Problem> {
    let r = relay(&state)?;
    let id = super::path_params(id)?;
    let b = body.value;
    let transfer = Transfer {
        from_account: b.from_account,
        to_account: b.to_account,
        amount_minor: b.amount_minor,
        currency: b.currency,
        reference: b.reference,
    };
    let paid = r
        .pay(
            &front_end,
            &id,
            key.as_deref(),
            &transfer,
            r.answer_wait(),
            state.clock.now_ms(),
        )
        .await?;
    let status = match (paid.tx.state, paid.new) {
        (TxState::Queued, _) => StatusCode::ACCEPTED,
        (_, true) => StatusCode::CREATED,
        (_, false) => StatusCode::OK,
    };
    Ok((status, Json(TransactionView::from(&paid.tx))).into_response())
}

/// A session's transactions, in order.
#[utoipa::path(
    get,
    path = "/v1/tx/sessions/{id}/transactions",
    operation_id = "listTxTransactions",
    tag = "txrelay",
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 200, description = "Its transactions", body = TransactionList),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "not_found", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    FrontEnd(front_end): FrontEnd,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<TransactionList>, Problem> {
    let r = relay(&state)?;
    let txs = r
        .transactions_of(&front_end, &super::path_params(id)?)
        .await?;
    Ok(Json(TransactionList {
        transactions: txs.iter().map(TransactionView::from).collect(),
    }))
}

/// One transaction of this front end.
#[utoipa::path(
    get,
    path = "/v1/tx/transactions/{id}",
    operation_id = "getTxTransaction",
    tag = "txrelay",
    params(("id" = String, Path, description = "The transaction's id")),
    responses(
        (status = 200, description = "The transaction", body = TransactionView),
        (status = 401, description = "unauthorized", body = ProblemBody, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "not_found", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "internal", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_transaction(
    State(state): State<AppState>,
    FrontEnd(front_end): FrontEnd,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<TransactionView>, Problem> {
    let r = relay(&state)?;
    let t = r
        .transaction(
            &front_end,
            &super::path_params(id)?,
            std::time::Duration::ZERO,
        )
        .await?;
    Ok(Json(TransactionView::from(&t)))
}

//! The relay's admin routes: the subscriber directory (import, show).

use super::{AdminState, Answer};
use crate::api::problem::{Problem, ProblemCode};
use crate::txrelay::{TxRelay, TxRelayError};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

/// The routes (the caller adds the admin token check).
pub(super) fn routes() -> axum::Router<AdminState> {
    axum::Router::new()
        .route("/admin/txrelay/subscribers/import", post(import))
        .route("/admin/txrelay/subscribers/:msisdn", get(show))
}

fn relay_of(s: &AdminState) -> Result<&Arc<TxRelay>, Problem> {
    s.txrelay.as_ref().ok_or_else(|| {
        Problem::not_found("this server runs no transaction relay ([txrelay] enabled = false)")
    })
}

fn relay_problem(e: TxRelayError) -> Problem {
    match e {
        TxRelayError::Store(e) => super::store_problem(e),
        TxRelayError::UnknownSubscriber(_) => Problem::not_found(e.to_string()),
        other => Problem::new(ProblemCode::InvalidField, other.to_string()),
    }
}

/// The carrier's subscriber extract (CSV, see [`crate::txrelay::directory`]).
async fn import(State(s): State<AdminState>, body: String) -> Answer {
    let r = relay_of(&s)?;
    let u = r
        .import(&body, s.clock.now_ms())
        .await
        .map_err(relay_problem)?;
    tracing::info!(
        added = u.added,
        changed = u.changed,
        sim_changes = u.sim_changes,
        "subscriber extract imported"
    );
    Ok(Json(
        json!({"added": u.added, "changed": u.changed, "sim_changes": u.sim_changes}),
    ))
}

async fn show(State(s): State<AdminState>, Path(msisdn): Path<String>) -> Answer {
    let r = relay_of(&s)?;
    let n = crate::verify::phone::normalize(&msisdn, r.region())
        .map_err(|e| Problem::new(ProblemCode::InvalidPhoneNumber, e.to_string()))?;
    let sub = s
        .store
        .get_subscriber(n.as_str())
        .await
        .map_err(super::store_problem)?
        .ok_or_else(|| {
            Problem::not_found(format!(
                "{} is not in the subscriber directory",
                crate::verify::phone::mask(n.as_str())
            ))
        })?;
    let rfc = verigate_codecs::time::rfc3339;
    Ok(Json(json!({
        "msisdn": sub.msisdn,
        "imsi": sub.imsi,
        "status": sub.status.as_str(),
        "sim_changed_at": sub.sim_changed_at.map(rfc),
        "updated_at": rfc(sub.updated_at),
    })))
}

//! The relay's admin routes: the subscriber directory (import, show) and
//! the key ceremony (components, activation and rotation, the initial key).

use super::{AdminState, Answer};
use crate::api::json::JsonBody;
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
        .route("/admin/txrelay/keys", get(keys_status))
        .route("/admin/txrelay/keys/components", post(add_component))
        .route("/admin/txrelay/keys/activate", post(activate))
        .route("/admin/txrelay/keys/initial", post(initial_key))
}

fn keys_problem(e: crate::txrelay::keys::KeysError) -> Problem {
    use crate::txrelay::keys::KeysError;
    match e {
        KeysError::Store(e) => super::store_problem(e),
        KeysError::Conflict(m) => Problem::new(ProblemCode::Conflict, m),
        KeysError::NoZoneKey => Problem::new(ProblemCode::Conflict, e.to_string()),
        KeysError::LocalKek => Problem::internal(&e),
        other => Problem::new(ProblemCode::InvalidField, other.to_string()),
    }
}

async fn keys_status(State(s): State<AdminState>) -> Answer {
    let r = relay_of(&s)?;
    let rfc = verigate_codecs::time::rfc3339;
    let keys = r.keys.status().await.map_err(keys_problem)?;
    Ok(Json(json!({"keys": keys.iter().map(|k| json!({
        "kind": k.kind, "slot": k.slot, "kcv": k.kcv, "state": k.state,
        "created_at": rfc(k.created_at), "retire_at": k.retire_at.map(rfc),
    })).collect::<Vec<_>>()})))
}

/// Body of `POST /admin/txrelay/keys/components`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewComponent {
    slot: String,
    component: String,
}

async fn add_component(State(s): State<AdminState>, body: JsonBody<NewComponent>) -> Answer {
    let r = relay_of(&s)?;
    let b = body.value;
    let kcv = r
        .keys
        .add_component(&b.slot, &b.component, s.clock.now_ms())
        .await
        .map_err(keys_problem)?;
    // The component's check value only: never the component.
    tracing::info!(slot = %b.slot.to_uppercase(), %kcv, "zone key component entered");
    Ok(Json(json!({"slot": b.slot.to_uppercase(), "kcv": kcv})))
}

/// Body of `POST /admin/txrelay/keys/activate`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Activate {
    /// The bank's KCV of the combined key.
    kcv: String,
    /// A rotation: how long the old key keeps working (e.g. "10m").
    #[serde(default)]
    overlap: Option<String>,
}

async fn activate(State(s): State<AdminState>, body: JsonBody<Activate>) -> Answer {
    let r = relay_of(&s)?;
    let b = body.value;
    let overlap = match b.overlap.as_deref() {
        None => None,
        Some(o) => Some(
            o.parse::<crate::config::Span>()
                .map_err(|e| {
                    Problem::new(ProblemCode::InvalidField, format!("overlap {o:?}: {e}"))
                })?
                .millis(),
        ),
    };
    let kcv = r
        .keys
        .activate(&b.kcv, overlap, s.clock.now_ms())
        .await
        .map_err(keys_problem)?;
    tracing::info!(%kcv, rotation = overlap.is_some(), "zone key activated");
    Ok(Json(json!({"kcv": kcv, "rotated": overlap.is_some()})))
}

/// Body of `POST /admin/txrelay/keys/initial`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InitialKey {
    /// With `wrapped` (RFC 3394).
    #[serde(default)]
    initial_key_id: Option<String>,
    #[serde(default)]
    wrapped: Option<String>,
    /// Or a TR-31 version D key block.
    #[serde(default)]
    key_block: Option<String>,
    kcv: String,
}

async fn initial_key(State(s): State<AdminState>, body: JsonBody<InitialKey>) -> Answer {
    let r = relay_of(&s)?;
    let b = body.value;
    let now = s.clock.now_ms();
    let (ikid, kcv) = match (&b.key_block, &b.initial_key_id, &b.wrapped) {
        (Some(block), None, None) => r
            .keys
            .import_initial_key_block(block, &b.kcv, now)
            .await
            .map_err(keys_problem)?,
        (None, Some(id), Some(w)) => {
            let kcv = r
                .keys
                .import_initial_key(id, w, &b.kcv, now)
                .await
                .map_err(keys_problem)?;
            (id.to_uppercase(), kcv)
        }
        _ => {
            return Err(Problem::new(
                ProblemCode::InvalidField,
                "give initial_key_id and wrapped (RFC 3394), or key_block (TR-31)",
            ))
        }
    };
    tracing::info!(initial_key_id = %ikid, %kcv, "DUKPT initial key imported");
    Ok(Json(json!({"initial_key_id": ikid, "kcv": kcv})))
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

//! A verification as proof that someone holds a number now: the registry
//! (a subscriber unbinding or moving through self-care) and the app side
//! (removing a binding) act only on a fresh approved SMS code.

use crate::store::{Millis, Store, StoreError, Verification, VerificationStatus};

/// Why a verification proves nothing.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The caller has no verification with this id.
    #[error("no verification {0:?} of this service")]
    NoVerification(String),
    /// It does not prove possession now.
    #[error("verification {id} does not prove the number: {why}")]
    NotProven {
        /// The verification.
        id: String,
        /// Why (pending, expired, too old, a voice call…).
        why: String,
    },
    /// The store failed (our side).
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
}

/// The verification `id` of `service` if it proves its number at `now`:
/// approved (the person typed the code we sent by SMS) at most `ttl` ms ago.
pub async fn approved_sms(
    store: &dyn Store,
    service: &str,
    id: &str,
    now: Millis,
    ttl: Millis,
) -> Result<Verification, ProofError> {
    let v = match store.get_verification(id).await? {
        Some(v) if v.service == service => v,
        _ => return Err(ProofError::NoVerification(id.to_string())),
    };
    let not = |why: String| ProofError::NotProven {
        id: id.to_string(),
        why,
    };
    if v.status != VerificationStatus::Approved {
        return Err(not(format!("it is {}, not approved", v.status.as_str())));
    }
    if v.channel != "sms" {
        return Err(not(format!(
            "it went by {}; only an SMS code proves possession here",
            v.channel
        )));
    }
    if now - v.updated_at > ttl {
        return Err(not(format!("approved more than {} s ago", ttl / 1000)));
    }
    Ok(v)
}

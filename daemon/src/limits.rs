//! Fixed-window rate limits counted in the store (so every instance on one
//! database shares them), used by the verify service and the voice gateway.

use crate::config::RateLimit;
use crate::store::{Millis, RateHit, Store, StoreResult};

/// One limit: a name for errors, the store key it counts under, the rate.
pub type Limit = (&'static str, String, RateLimit);

/// A limit that refused the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Which limit (its name).
    pub scope: &'static str,
    /// Seconds until its window resets (at least 1).
    pub retry_after_secs: u64,
}

/// Counts a hit on each limit in order (one store call); the first refused
/// one is returned, and the limits after it are not counted.
pub async fn hit(
    store: &dyn Store,
    limits: &[Limit],
    now: Millis,
) -> StoreResult<Result<(), Refused>> {
    let hits: Vec<RateHit<'_>> = limits
        .iter()
        .map(|(_, key, l)| RateHit {
            key,
            limit: l.count,
            window_ms: l.window.0.as_millis() as i64,
        })
        .collect();
    let decisions = store.rate_hits(&hits, now).await?;
    for ((scope, _, _), d) in limits.iter().zip(decisions) {
        if !d.allowed {
            return Ok(Err(Refused {
                scope,
                retry_after_secs: ((d.reset_at - now).max(0) as u64).div_ceil(1000).max(1),
            }));
        }
    }
    Ok(Ok(()))
}

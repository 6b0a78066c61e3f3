//! Fixed-window rate-limit counters shared by every instance on one database.

use super::*;
use async_trait::async_trait;

/// One hit on a fixed-window rate limit (see [`RateLimitStore::rate_hits`]).
#[derive(Debug, Clone, Copy)]
pub struct RateHit<'a> {
    /// What is limited, e.g. `num:acme:447700900123`.
    pub key: &'a str,
    /// Hits allowed per window.
    pub limit: u32,
    /// Window length.
    pub window_ms: i64,
}

/// Outcome of a fixed-window rate-limit hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// True if this hit is within the limit (and was counted).
    pub allowed: bool,
    /// Hits counted in the current window (including this one when allowed).
    pub count: u32,
    /// When the current window ends.
    pub reset_at: Millis,
}

/// Rate-limit windows.
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Counts one hit on `key` in the fixed window of `window_ms` containing
    /// `now`, unless `limit` hits were counted already. Atomic across
    /// instances.
    async fn rate_hit(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now: Millis,
    ) -> StoreResult<RateDecision> {
        let d = self
            .rate_hits(
                &[RateHit {
                    key,
                    limit,
                    window_ms,
                }],
                now,
            )
            .await?;
        d.into_iter()
            .next()
            .ok_or_else(|| StoreError::Bug("rate_hits answered nothing".into()))
    }
    /// Several hits in one go (a request passes several limits): each as
    /// [`RateLimitStore::rate_hit`], in order, stopping at the first refused one, so
    /// a refused request counts only against the limits before it. Returns
    /// the decisions made, the last one refused if any was.
    async fn rate_hits(&self, hits: &[RateHit<'_>], now: Millis) -> StoreResult<Vec<RateDecision>>;
    /// Deletes rate-limit windows that started before `before`
    /// (housekeeping: keys that never recur do not accumulate). Returns the
    /// rows deleted.
    async fn prune_windows(&self, before: Millis) -> StoreResult<u64>;
}

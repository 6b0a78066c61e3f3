//! Rate-limit windows.

use super::rows::{col, corrupt, exec, one};
use super::SqliteStore;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{params, Connection};

fn rate_hit(c: &Connection, key: &str, limit: u32, start: Millis) -> StoreResult<(bool, i64)> {
    // Counts the hit unless the limit is reached; RETURNING yields no row
    // when the conflict update's WHERE refuses it.
    let counted = if limit == 0 {
        None
    } else {
        one(
            c,
            "INSERT INTO rate_windows (key, window_start, count) VALUES (?1, ?2, 1)
             ON CONFLICT (key, window_start) DO UPDATE SET count = count + 1 WHERE count < ?3
             RETURNING count",
            params![key, start, limit],
            |row| col::<i64>(row, "rate_windows", "count"),
        )?
    };
    match counted {
        Some(n) => {
            if n == 1 {
                // A new window: earlier windows of this key are over.
                // Housekeeping only: the hit counts either way (the sweep
                // prunes what is left).
                if let Err(e) = exec(
                    c,
                    "DELETE FROM rate_windows WHERE key = ?1 AND window_start < ?2",
                    params![key, start],
                ) {
                    tracing::warn!(error = %e, "cannot prune old rate-limit windows");
                }
            }
            Ok((true, n))
        }
        None => {
            let n = one(
                c,
                "SELECT count FROM rate_windows WHERE key = ?1 AND window_start = ?2",
                params![key, start],
                |row| col::<i64>(row, "rate_windows", "count"),
            )?;
            Ok((false, n.unwrap_or(0)))
        }
    }
}

/// A rate hit ready for the writer thread: key, limit, window start, reset.
pub(super) type OwnedHit = (String, u32, Millis, Millis);

/// `hits` in the windows that contain `now`.
pub(super) fn own_hits(hits: &[RateHit<'_>], now: Millis) -> Vec<OwnedHit> {
    hits.iter()
        .map(|h| {
            let window = h.window_ms.max(1);
            let start = now - now.rem_euclid(window);
            (
                h.key.to_owned(),
                h.limit,
                start,
                start.saturating_add(window),
            )
        })
        .collect()
}

/// Counts `hits` in order inside the caller's transaction, stopping at the
/// first refused one (see [`RateLimitStore::rate_hits`]).
pub(super) fn count_hits(c: &Connection, hits: &[OwnedHit]) -> StoreResult<Vec<RateDecision>> {
    let mut out = Vec::with_capacity(hits.len());
    for (key, limit, start, reset_at) in hits {
        let (allowed, count) = rate_hit(c, key, *limit, *start)?;
        let count = u32::try_from(count).map_err(|_| corrupt("rate_windows", "count", count))?;
        out.push(RateDecision {
            allowed,
            count,
            reset_at: *reset_at,
        });
        if !allowed {
            break;
        }
    }
    Ok(out)
}

#[async_trait]
impl RateLimitStore for SqliteStore {
    async fn rate_hits(&self, hits: &[RateHit<'_>], now: Millis) -> StoreResult<Vec<RateDecision>> {
        let hits = own_hits(hits, now);
        // Not waited to disk: a counter lost with the machine undercounts
        // by moments of traffic, and the next durable write covers it anyway.
        self.write_volatile(move |c| count_hits(c, &hits)).await
    }

    async fn prune_windows(&self, before: Millis) -> StoreResult<u64> {
        // Not waited to disk: a lost prune runs again at the next sweep.
        self.write_volatile(move |c| {
            Ok(exec(
                c,
                "DELETE FROM rate_windows WHERE window_start < ?1",
                [before],
            )? as u64)
        })
        .await
    }
}

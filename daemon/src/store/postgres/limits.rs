//! Rate-limit windows: one row per (key, window start), counted with an
//! atomic upsert that refuses past the limit, so a limit holds across every
//! instance on the database.

use super::{pg_err, PostgresStore};
use crate::store::*;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;

/// Counts `hits` in order inside the caller's transaction, stopping at the
/// first refused one (see [`RateLimitStore::rate_hits`]).
pub(super) async fn count_hits(
    c: &impl GenericClient,
    hits: &[RateHit<'_>],
    now: Millis,
) -> StoreResult<Vec<RateDecision>> {
    let mut out = Vec::with_capacity(hits.len());
    let upsert = c
        .prepare_cached(
            "INSERT INTO rate_windows (key, window_start, count) VALUES ($1, $2, 1)
             ON CONFLICT (key, window_start) DO UPDATE SET count = rate_windows.count + 1
                 WHERE rate_windows.count < $3
             RETURNING count",
        )
        .await
        .map_err(pg_err("preparing"))?;
    for h in hits {
        let window = h.window_ms.max(1);
        let start = now - now.rem_euclid(window);
        let reset_at = start.saturating_add(window);
        let counted: Option<i64> = if h.limit == 0 {
            None
        } else {
            c.query_opt(&upsert, &[&h.key, &start, &i64::from(h.limit)])
                .await
                .map_err(pg_err("counting a rate-limit hit"))?
                .map(|r| r.get(0))
        };
        let (allowed, count) = match counted {
            Some(n) => {
                if n == 1 {
                    // A new window: earlier windows of this key are over.
                    c.execute(
                        "DELETE FROM rate_windows WHERE key = $1 AND window_start < $2",
                        &[&h.key, &start],
                    )
                    .await
                    .map_err(pg_err("pruning old rate-limit windows"))?;
                }
                (true, n)
            }
            None => {
                let n: Option<i64> = c
                    .query_opt(
                        "SELECT count FROM rate_windows WHERE key = $1 AND window_start = $2",
                        &[&h.key, &start],
                    )
                    .await
                    .map_err(pg_err("reading a rate-limit window"))?
                    .map(|r| r.get(0));
                (false, n.unwrap_or(0))
            }
        };
        let count = u32::try_from(count)
            .map_err(|_| StoreError::Corrupt(format!("rate_windows.count: {count}")))?;
        out.push(RateDecision {
            allowed,
            count,
            reset_at,
        });
        if !allowed {
            break;
        }
    }
    Ok(out)
}

#[async_trait]
impl RateLimitStore for PostgresStore {
    async fn rate_hits(&self, hits: &[RateHit<'_>], now: Millis) -> StoreResult<Vec<RateDecision>> {
        let mut c = self.conn().await?;
        let tx = c
            .transaction()
            .await
            .map_err(pg_err("starting rate-limit hits"))?;
        let d = count_hits(&tx, hits, now).await?;
        tx.commit()
            .await
            .map_err(pg_err("committing rate-limit hits"))?;
        Ok(d)
    }

    async fn prune_windows(&self, before: Millis) -> StoreResult<u64> {
        let c = self.conn().await?;
        c.execute(
            "DELETE FROM rate_windows WHERE window_start < $1",
            &[&before],
        )
        .await
        .map_err(pg_err("pruning rate-limit windows"))
    }
}

//! Retention: batched deletes and text blanking, as on SQLite.

use super::{pg_err, PostgresStore};
use crate::store::*;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;

/// SMS states no receipt changes.
const FINAL: &str = "('delivered', 'undeliverable', 'rejected', 'expired')";

/// The single-statement prunes: `$1` the cut, `$2` the batch.
fn limited(what: Retained) -> Option<String> {
    Some(match what {
        Retained::Outbox => format!(
            "DELETE FROM outbox WHERE rowid IN (
                 SELECT rowid FROM outbox
                 WHERE verification_id IS NULL AND updated_at < $1
                   AND (state IN {FINAL} OR expires_at < $1)
                 LIMIT $2)"
        ),
        Retained::Calls => "DELETE FROM calls WHERE rowid IN (
                 SELECT rowid FROM calls
                 WHERE verification_id IS NULL AND updated_at < $1
                   AND state NOT IN ('queued', 'calling')
                 LIMIT $2)"
            .into(),
        Retained::Audit => "DELETE FROM audit_events WHERE seq IN (
                 SELECT seq FROM audit_events WHERE at < $1 LIMIT $2)"
            .into(),
        Retained::MoMessages => "DELETE FROM mo_messages WHERE rowid IN (
                 SELECT rowid FROM mo_messages WHERE received_at < $1 LIMIT $2)"
            .into(),
        Retained::MoParts => "DELETE FROM mo_parts WHERE rowid IN (
                 SELECT rowid FROM mo_parts WHERE received_at < $1 LIMIT $2)"
            .into(),
        Retained::MoLogins => "DELETE FROM mo_logins WHERE rowid IN (
                 SELECT rowid FROM mo_logins WHERE expires_at < $1 LIMIT $2)"
            .into(),
        Retained::Sessions => "DELETE FROM sessions WHERE rowid IN (
                 SELECT rowid FROM sessions WHERE expires_at < $1 LIMIT $2)"
            .into(),
        Retained::MoveOffers => "DELETE FROM registry_moves WHERE rowid IN (
                 SELECT rowid FROM registry_moves WHERE expires_at < $1 LIMIT $2)"
            .into(),
        Retained::PendingBindings => "DELETE FROM app_bindings WHERE rowid IN (
                 SELECT rowid FROM app_bindings
                 WHERE state = 'pending' AND created_at < $1 LIMIT $2)"
            .into(),
        Retained::RegistryEvents => "DELETE FROM registry_events_seen WHERE rowid IN (
                 SELECT rowid FROM registry_events_seen WHERE received_at < $1 LIMIT $2)"
            .into(),
        Retained::Verifications | Retained::RelaySessions => return None,
    })
}

/// Deletes the rows of `ids` in each of `sqls` (`$1` the id).
async fn delete_each(c: &impl GenericClient, sqls: &[&str], ids: &[String]) -> StoreResult<u64> {
    let mut gone = 0;
    for sql in sqls {
        let st = c.prepare_cached(sql).await.map_err(pg_err("preparing"))?;
        for id in ids {
            gone += c.execute(&st, &[id]).await.map_err(pg_err("pruning"))?;
        }
    }
    Ok(gone)
}

async fn ids(
    c: &impl GenericClient,
    sql: &str,
    before: Millis,
    batch: i64,
) -> StoreResult<Vec<String>> {
    Ok(c.query(sql, &[&before, &batch])
        .await
        .map_err(pg_err("choosing rows to prune"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

#[async_trait]
impl RetentionStore for PostgresStore {
    async fn prune_batch(&self, what: Retained, before: Millis, batch: u32) -> StoreResult<u64> {
        let batch = i64::from(batch.max(1));
        let mut c = self.conn().await?;
        if let Some(sql) = limited(what) {
            return c
                .execute(&sql, &[&before, &batch])
                .await
                .map_err(pg_err(format!("pruning {}", what.as_str())));
        }
        let tx = c.transaction().await.map_err(pg_err("starting a prune"))?;
        let gone = match what {
            Retained::Verifications => {
                let ids = ids(
                    &tx,
                    "SELECT id FROM verifications
                     WHERE status <> 'pending' AND updated_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED",
                    before,
                    batch,
                )
                .await?;
                // Message keys go with their SMS (ON DELETE CASCADE).
                delete_each(
                    &tx,
                    &[
                        "DELETE FROM idempotency_keys WHERE verification_id = $1",
                        "DELETE FROM outbox WHERE verification_id = $1",
                        "DELETE FROM calls WHERE verification_id = $1",
                        "DELETE FROM verifications WHERE id = $1",
                    ],
                    &ids,
                )
                .await?;
                ids.len() as u64
            }
            Retained::RelaySessions => {
                // Only sessions done with: not registering, no payment queued.
                let ids = ids(
                    &tx,
                    "SELECT id FROM tx_sessions s
                     WHERE expires_at < $1 AND state <> 'registering'
                       AND NOT EXISTS (SELECT 1 FROM tx_transactions t
                                       WHERE t.session_id = s.id AND t.state = 'queued')
                     LIMIT $2 FOR UPDATE SKIP LOCKED",
                    before,
                    batch,
                )
                .await?;
                delete_each(
                    &tx,
                    &[
                        "DELETE FROM tx_transactions WHERE session_id = $1",
                        "DELETE FROM tx_sessions WHERE id = $1",
                    ],
                    &ids,
                )
                .await?
            }
            _ => unreachable!("the other kinds are single statements"),
        };
        tx.commit().await.map_err(pg_err("committing a prune"))?;
        Ok(gone)
    }

    async fn blank_texts(&self, cut: TextCut, batch: u32) -> StoreResult<u64> {
        let batch = i64::from(batch.max(1));
        let c = self.conn().await?;
        let finished = if cut.final_before == Millis::MIN {
            0
        } else {
            c.execute(
                &format!(
                    "UPDATE outbox SET text = '' WHERE rowid IN (
                         SELECT rowid FROM outbox
                         WHERE text <> '' AND updated_at < $1 AND state IN {FINAL}
                         LIMIT $2)"
                ),
                &[&cut.final_before, &batch],
            )
            .await
            .map_err(pg_err("blanking finished texts"))? as i64
        };
        let expired = c
            .execute(
                "UPDATE outbox SET text = '' WHERE rowid IN (
                     SELECT rowid FROM outbox WHERE text <> '' AND expires_at < $1 LIMIT $2)",
                &[&cut.expired_before, &(batch - finished.min(batch))],
            )
            .await
            .map_err(pg_err("blanking expired texts"))? as i64;
        Ok((finished + expired) as u64)
    }
}

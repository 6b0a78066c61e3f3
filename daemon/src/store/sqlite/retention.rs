//! Retention: batched deletes and text blanking.

use super::rows::exec;
use super::SqliteStore;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::outbox::FINAL_STATES as FINAL;

/// Deletes the verifications of `ids` and what refers to them.
fn delete_verifications(c: &Connection, ids: &[String]) -> StoreResult<()> {
    for sql in [
        "DELETE FROM idempotency_keys WHERE verification_id = ?1",
        // Message keys go with their SMS (ON DELETE CASCADE).
        "DELETE FROM outbox WHERE verification_id = ?1",
        "DELETE FROM calls WHERE verification_id = ?1",
        "DELETE FROM verifications WHERE id = ?1",
    ] {
        let mut st = c.prepare_cached(sql)?;
        for id in ids {
            st.execute([id])?;
        }
    }
    Ok(())
}

fn prune(c: &Connection, what: Retained, before: Millis, batch: u32) -> StoreResult<u64> {
    let limited =
        |sql: &str| -> StoreResult<u64> { Ok(exec(c, sql, params![before, batch])? as u64) };
    match what {
        Retained::Verifications => {
            let ids: Vec<String> = c
                .prepare_cached(
                    "SELECT id FROM verifications
                     WHERE status <> 'pending' AND updated_at < ?1 LIMIT ?2",
                )?
                .query_map(params![before, batch], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            delete_verifications(c, &ids)?;
            Ok(ids.len() as u64)
        }
        Retained::Outbox => limited(&format!(
            "DELETE FROM outbox WHERE rowid IN (
                 SELECT rowid FROM outbox INDEXED BY outbox_unowned_by_update
                 WHERE verification_id IS NULL AND updated_at < ?1
                   AND (state IN {FINAL} OR expires_at < ?1)
                 LIMIT ?2)"
        )),
        Retained::Calls => limited(
            "DELETE FROM calls WHERE rowid IN (
                 SELECT rowid FROM calls
                 WHERE verification_id IS NULL AND updated_at < ?1
                   AND state NOT IN ('queued', 'calling')
                 LIMIT ?2)",
        ),
        Retained::Audit => limited(
            "DELETE FROM audit_events WHERE rowid IN (
                 SELECT rowid FROM audit_events WHERE at < ?1 LIMIT ?2)",
        ),
        Retained::MoMessages => limited(
            "DELETE FROM mo_messages WHERE rowid IN (
                 SELECT rowid FROM mo_messages WHERE received_at < ?1 LIMIT ?2)",
        ),
        Retained::MoParts => limited(
            "DELETE FROM mo_parts WHERE rowid IN (
                 SELECT rowid FROM mo_parts WHERE received_at < ?1 LIMIT ?2)",
        ),
        Retained::MoLogins => limited(
            "DELETE FROM mo_logins WHERE rowid IN (
                 SELECT rowid FROM mo_logins WHERE expires_at < ?1 LIMIT ?2)",
        ),
        Retained::Sessions => limited(
            "DELETE FROM sessions WHERE rowid IN (
                 SELECT rowid FROM sessions WHERE expires_at < ?1 LIMIT ?2)",
        ),
        Retained::MoveOffers => limited(
            "DELETE FROM registry_moves WHERE rowid IN (
                 SELECT rowid FROM registry_moves WHERE expires_at < ?1 LIMIT ?2)",
        ),
        Retained::PendingBindings => limited(
            "DELETE FROM app_bindings WHERE rowid IN (
                 SELECT rowid FROM app_bindings INDEXED BY app_bindings_pending
                 WHERE state = 'pending' AND created_at < ?1 LIMIT ?2)",
        ),
        Retained::RelaySessions => {
            // Only sessions done with: not registering, no payment queued.
            let ids: Vec<String> = c
                .prepare_cached(
                    "SELECT id FROM tx_sessions s
                     WHERE expires_at < ?1 AND state <> 'registering'
                       AND NOT EXISTS (SELECT 1 FROM tx_transactions t
                                       WHERE t.session_id = s.id AND t.state = 'queued')
                     LIMIT ?2",
                )?
                .query_map(params![before, batch], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut gone = 0;
            for sql in [
                "DELETE FROM tx_transactions WHERE session_id = ?1",
                "DELETE FROM tx_sessions WHERE id = ?1",
            ] {
                let mut st = c.prepare_cached(sql)?;
                for id in &ids {
                    gone += st.execute([id])? as u64;
                }
            }
            Ok(gone)
        }
        Retained::RegistryEvents => limited(
            "DELETE FROM registry_events_seen WHERE rowid IN (
                 SELECT rowid FROM registry_events_seen WHERE received_at < ?1 LIMIT ?2)",
        ),
    }
}

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn prune_batch(&self, what: Retained, before: Millis, batch: u32) -> StoreResult<u64> {
        // Not waited to disk: a lost batch is deleted again at the next sweep.
        self.write_volatile(move |c| prune(c, what, before, batch.max(1)))
            .await
    }

    async fn blank_texts(&self, cut: TextCut, batch: u32) -> StoreResult<u64> {
        let batch = batch.max(1);
        // Not waited to disk: a lost run is done again at the next sweep.
        self.write_volatile(move |c| {
            // Through the index of texts still kept (finished SMS are
            // blanked as they finish, so it is small): by state, SQLite
            // would read every delivered SMS there ever was.
            let finished = if cut.final_before == Millis::MIN {
                0
            } else {
                exec(
                    c,
                    &format!(
                        "UPDATE outbox SET text = '' WHERE rowid IN (
                             SELECT rowid FROM outbox INDEXED BY outbox_texts_kept
                             WHERE text <> '' AND updated_at < ?1 AND state IN {FINAL}
                             LIMIT ?2)"
                    ),
                    params![cut.final_before, batch],
                )? as u32
            };
            let expired = exec(
                c,
                "UPDATE outbox SET text = '' WHERE rowid IN (
                     SELECT rowid FROM outbox WHERE text <> '' AND expires_at < ?1 LIMIT ?2)",
                params![cut.expired_before, batch - finished.min(batch)],
            )? as u32;
            Ok(u64::from(finished + expired))
        })
        .await
    }
}

//! The webhook queue.

use super::rows::{self, all, col, exec, write_err};
use super::SqliteStore;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{params, Connection};

pub(super) fn insert_webhook(c: &Connection, job: &WebhookJob) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO webhook_jobs (id, service, url, body, attempts, next_attempt_at, last_error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        job.id,
        job.service,
        job.url,
        job.body,
        job.attempts,
        job.next_attempt_at,
        job.last_error
    ])
    .map_err(|e| write_err(e, &format!("webhook job {}", job.id)))?;
    Ok(())
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn enqueue_webhook(&self, job: &WebhookJob) -> StoreResult<()> {
        let job = job.clone();
        self.write(move |c| insert_webhook(c, &job)).await
    }

    async fn claim_webhooks(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<WebhookJob>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Not waited to disk, like outbox claims.
        self.write_volatile(move |c| {
            let mut jobs = all(
                c,
                "UPDATE webhook_jobs SET attempts = attempts + 1, lease_until = ?2
                 WHERE id IN (
                     SELECT id FROM webhook_jobs
                     WHERE COALESCE(lease_until, next_attempt_at) <= ?1
                     ORDER BY next_attempt_at, rowid
                     LIMIT ?3)
                 RETURNING rowid AS seq, id, service, url, body, attempts, next_attempt_at, last_error",
                params![now, now.saturating_add(lease_ms.max(0)), limit],
                |row| Ok((col::<i64>(row, "webhook_jobs", "seq")?, rows::webhook(row)?)),
            )?;
            jobs.sort_by_key(|(seq, j)| (j.next_attempt_at, *seq));
            Ok(jobs.into_iter().map(|(_, j)| j).collect())
        })
        .await
    }

    async fn complete_webhook(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |c| {
            // Idempotent: a job another worker finished is gone already.
            exec(c, "DELETE FROM webhook_jobs WHERE id = ?1", [id])?;
            Ok(())
        })
        .await
    }

    async fn retry_webhook(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<Millis>,
    ) -> StoreResult<()> {
        let (id, error) = (id.to_owned(), error.to_owned());
        self.write(move |c| {
            match retry_at {
                Some(at) => exec(
                    c,
                    "UPDATE webhook_jobs SET next_attempt_at = ?2, last_error = ?3, lease_until = NULL
                     WHERE id = ?1",
                    params![id, at, error],
                )?,
                None => exec(c, "DELETE FROM webhook_jobs WHERE id = ?1", [id])?,
            };
            Ok(())
        })
        .await
    }
}

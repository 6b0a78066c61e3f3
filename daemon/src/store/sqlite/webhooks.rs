//! The webhook queue.

use super::queue::{claim_of, fenced, returned_claims, taken_over};
use super::rows::{self, exec, write_err};
use super::SqliteStore;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{params, Connection};

pub(super) fn insert_webhook(c: &Connection, job: &WebhookJob) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO webhook_jobs (id, service, url, body, attempts, next_attempt_at, last_error,
                                   method, credential, deliver_until, topic)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        job.id,
        job.service,
        job.url,
        job.body,
        job.attempts,
        job.next_attempt_at,
        job.last_error,
        job.method.as_str(),
        job.credential,
        job.deliver_until,
        job.topic
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
    ) -> StoreResult<Vec<Claimed<WebhookJob>>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Not waited to disk: a claim lost with the machine is a job
        // delivered again (receivers deduplicate on the event id).
        self.write_volatile(move |c| {
            returned_claims(
                c,
                "webhook_jobs",
                "UPDATE webhook_jobs SET attempts = attempts + 1, claim = claim + 1, lease_until = ?2
                 WHERE id IN (
                     SELECT id FROM webhook_jobs
                     WHERE COALESCE(lease_until, next_attempt_at) <= ?1
                     ORDER BY next_attempt_at, rowid
                     LIMIT ?3)
                 RETURNING rowid AS seq, claim, lease_until,
                           id, service, url, body, attempts, next_attempt_at, last_error,
                           method, credential, deliver_until, topic",
                params![now, now.saturating_add(lease_ms.max(0)), limit],
                rows::webhook,
                |j| j.next_attempt_at,
                |j| &j.id,
            )
        })
        .await
    }

    async fn extend_webhooks(
        &self,
        leases: &[Lease],
        until: Millis,
    ) -> StoreResult<Vec<Extension>> {
        self.extend_leases("webhook_jobs", "1 = 1", leases, until)
            .await
    }

    async fn pending_webhooks(
        &self,
        topic: &str,
        service: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookJob>> {
        let (topic, service) = (topic.to_owned(), service.map(str::to_owned));
        self.read(move |c| {
            rows::all(
                c,
                "SELECT id, service, url, body, attempts, next_attempt_at, last_error,
                        method, credential, deliver_until, topic
                 FROM webhook_jobs WHERE topic = ?1 AND (?2 IS NULL OR service = ?2)
                 ORDER BY next_attempt_at, rowid LIMIT ?3",
                params![topic, service, limit],
                rows::webhook,
            )
        })
        .await
    }

    async fn complete_webhook(&self, lease: &Lease) -> StoreResult<()> {
        let lease = lease.clone();
        fenced(
            self.write(move |c| {
                match claim_of(c, "webhook_jobs", &lease.id)? {
                    // A job already gone was finished before: nothing to do.
                    None => Ok(Ok(())),
                    Some(claim) if claim != lease.token => {
                        Ok(Err(taken_over("webhook job", &lease, claim)))
                    }
                    Some(_) => {
                        exec(c, "DELETE FROM webhook_jobs WHERE id = ?1", [&lease.id])?;
                        Ok(Ok(()))
                    }
                }
            })
            .await,
        )
    }

    async fn retry_webhook(
        &self,
        lease: &Lease,
        error: &str,
        retry_at: Option<Millis>,
    ) -> StoreResult<()> {
        let (lease, error) = (lease.clone(), error.to_owned());
        fenced(
            self.write(move |c| {
                match claim_of(c, "webhook_jobs", &lease.id)? {
                    None => return Ok(Ok(())),
                    Some(claim) if claim != lease.token => {
                        return Ok(Err(taken_over("webhook job", &lease, claim)))
                    }
                    Some(_) => {}
                }
                match retry_at {
                    Some(at) => exec(
                        c,
                        "UPDATE webhook_jobs
                         SET next_attempt_at = ?2, last_error = ?3, lease_until = NULL
                         WHERE id = ?1",
                        params![lease.id, at, error],
                    )?,
                    None => exec(c, "DELETE FROM webhook_jobs WHERE id = ?1", [&lease.id])?,
                };
                Ok(Ok(()))
            })
            .await,
        )
    }
}

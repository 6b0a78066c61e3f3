//! The webhook queue.

use super::queue::{extend_leases, held, returned_claims};
use super::rows::{col, write_err};
use super::{pg_err, PostgresStore};
use crate::store::*;
use async_trait::async_trait;
use tokio_postgres::Row;

const COLS: &str = "id, service, url, body, attempts, next_attempt_at, last_error, method,
                    credential, deliver_until, topic";

fn job(r: &Row) -> StoreResult<WebhookJob> {
    const T: &str = "webhook_jobs";
    let attempts: i64 = col(r, T, "attempts")?;
    let method: String = col(r, T, "method")?;
    Ok(WebhookJob {
        id: col(r, T, "id")?,
        service: col(r, T, "service")?,
        url: col(r, T, "url")?,
        body: col(r, T, "body")?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::Corrupt(format!("{T}.attempts: {attempts}")))?,
        next_attempt_at: col(r, T, "next_attempt_at")?,
        last_error: col(r, T, "last_error")?,
        method: HttpMethod::parse(&method)
            .ok_or_else(|| StoreError::Corrupt(format!("{T}.method: unknown {method:?}")))?,
        credential: col(r, T, "credential")?,
        deliver_until: col(r, T, "deliver_until")?,
        topic: col(r, T, "topic")?,
    })
}

/// Inserts a job (also inside another write's transaction).
pub(super) async fn insert_webhook(
    c: &impl deadpool_postgres::GenericClient,
    j: &WebhookJob,
) -> StoreResult<()> {
    c.execute(
        &format!(
            "INSERT INTO webhook_jobs ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ),
        &[
            &j.id,
            &j.service,
            &j.url,
            &j.body,
            &i64::from(j.attempts),
            &j.next_attempt_at,
            &j.last_error,
            &j.method.as_str(),
            &j.credential,
            &j.deliver_until,
            &j.topic,
        ],
    )
    .await
    .map_err(write_err(&format!("webhook job {}", j.id)))?;
    Ok(())
}

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn enqueue_webhook(&self, job: &WebhookJob) -> StoreResult<()> {
        let c = self.conn().await?;
        insert_webhook(&c, job).await
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
        let c = self.conn().await?;
        let until = now.saturating_add(lease_ms.max(0));
        let rows = c
            .query(
                &format!(
                    "UPDATE webhook_jobs SET attempts = attempts + 1, claim = claim + 1, lease_until = $2
                     WHERE id IN (
                         SELECT id FROM webhook_jobs
                         WHERE COALESCE(lease_until, next_attempt_at) <= $1
                         ORDER BY next_attempt_at, rowid
                         LIMIT $3
                         FOR UPDATE SKIP LOCKED)
                     RETURNING rowid, claim, lease_until, {COLS}"
                ),
                &[&now, &until, &i64::from(limit)],
            )
            .await
            .map_err(pg_err("claiming webhook jobs"))?;
        returned_claims(&rows, "webhook_jobs", job, |j| j.next_attempt_at, |j| &j.id)
    }

    async fn extend_webhooks(
        &self,
        leases: &[Lease],
        until: Millis,
    ) -> StoreResult<Vec<Extension>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.conn().await?;
        extend_leases(&c, "webhook_jobs", "TRUE", leases, until).await
    }

    async fn pending_webhooks(
        &self,
        topic: &str,
        service: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookJob>> {
        let c = self.conn().await?;
        c.query(
            &format!(
                "SELECT {COLS} FROM webhook_jobs WHERE topic = $1 AND ($2::TEXT IS NULL OR service = $2)
                 ORDER BY next_attempt_at, rowid LIMIT $3"
            ),
            &[&topic, &service, &i64::from(limit)],
        )
        .await
        .map_err(pg_err("listing webhook jobs"))?
        .iter()
        .map(job)
        .collect()
    }

    async fn complete_webhook(&self, lease: &Lease) -> StoreResult<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting"))?;
        if held(&tx, "webhook_jobs", "webhook job", lease).await? {
            tx.execute("DELETE FROM webhook_jobs WHERE id = $1", &[&lease.id])
                .await
                .map_err(pg_err("finishing a webhook job"))?;
        }
        tx.commit().await.map_err(pg_err("committing"))
    }

    async fn retry_webhook(
        &self,
        lease: &Lease,
        error: &str,
        retry_at: Option<Millis>,
    ) -> StoreResult<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting"))?;
        if held(&tx, "webhook_jobs", "webhook job", lease).await? {
            match retry_at {
                Some(at) => tx
                    .execute(
                        "UPDATE webhook_jobs SET next_attempt_at = $2, last_error = $3, lease_until = NULL
                         WHERE id = $1",
                        &[&lease.id, &at, &error],
                    )
                    .await,
                None => {
                    tx.execute("DELETE FROM webhook_jobs WHERE id = $1", &[&lease.id])
                        .await
                }
            }
            .map_err(pg_err("retrying a webhook job"))?;
        }
        tx.commit().await.map_err(pg_err("committing"))
    }
}

//! Verifications and their idempotency keys. "One pending verification
//! per (service, number)" and "one verification per idempotency key" hold
//! across instances: a start takes transaction-scoped advisory locks on
//! its key and on its (service, number) before it looks, and the unique
//! index of pending verifications backs that up.

use super::calls::insert_call;
use super::outbox::insert_message;
use super::rows::{col, write_err};
use super::webhooks::insert_webhook;
use super::{pg_err, PostgresStore};
use crate::store::*;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

const COLS: &str = r#"id, service, "to", channel, locale, status, code_hash, attempts, max_attempts,
    sends, created_at, expires_at, last_sent_at, updated_at"#;

fn count(r: &Row, name: &str) -> StoreResult<u32> {
    let v: i64 = col(r, "verifications", name)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("verifications.{name}: {v}")))
}

fn verification(r: &Row) -> StoreResult<Verification> {
    const T: &str = "verifications";
    let status: String = col(r, T, "status")?;
    Ok(Verification {
        id: col(r, T, "id")?,
        service: col(r, T, "service")?,
        to: col(r, T, "to")?,
        channel: col(r, T, "channel")?,
        locale: col(r, T, "locale")?,
        status: VerificationStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("{T}.status: unknown {status:?}")))?,
        code_hash: col(r, T, "code_hash")?,
        attempts: count(r, "attempts")?,
        max_attempts: count(r, "max_attempts")?,
        sends: count(r, "sends")?,
        created_at: col(r, T, "created_at")?,
        expires_at: col(r, T, "expires_at")?,
        last_sent_at: col(r, T, "last_sent_at")?,
        updated_at: col(r, T, "updated_at")?,
    })
}

async fn dispatch(c: &impl GenericClient, d: Dispatch<'_>) -> StoreResult<()> {
    match d {
        Dispatch::Sms(m) => insert_message(c, m).await,
        Dispatch::Call(j) => insert_call(c, j).await,
    }
}

async fn lock(c: &impl GenericClient, parts: &[&str]) -> StoreResult<()> {
    c.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 1))",
        // Length-prefixed: the parts cannot run into one another (PostgreSQL
        // text holds no NUL to separate them with).
        &[&parts
            .iter()
            .map(|p| format!("{}:{p}", p.len()))
            .collect::<String>()],
    )
    .await
    .map_err(pg_err("locking"))?;
    Ok(())
}

async fn find_pending(
    c: &impl GenericClient,
    service: &str,
    to: &str,
) -> StoreResult<Option<Verification>> {
    c.query_opt(
        &format!(r#"SELECT {COLS} FROM verifications WHERE service = $1 AND "to" = $2 AND status = 'pending'"#),
        &[&service, &to],
    )
    .await
    .map_err(pg_err("reading a pending verification"))?
    .as_ref()
    .map(verification)
    .transpose()
}

async fn get_idempotency(
    c: &impl GenericClient,
    service: &str,
    key: &str,
) -> StoreResult<Option<IdempotencyRecord>> {
    c.query_opt(
        "SELECT request_hash, verification_id FROM idempotency_keys WHERE service = $1 AND key = $2",
        &[&service, &key],
    )
    .await
    .map_err(pg_err("reading an idempotency key"))?
    .map(|r| {
        Ok(IdempotencyRecord {
            service: service.to_string(),
            key: key.to_string(),
            request_hash: col(&r, "idempotency_keys", "request_hash")?,
            verification_id: col(&r, "idempotency_keys", "verification_id")?,
        })
    })
    .transpose()
}

async fn insert_idempotency(
    c: &impl GenericClient,
    i: &IdempotencyRecord,
    at: Millis,
) -> StoreResult<()> {
    c.execute(
        "INSERT INTO idempotency_keys (service, key, request_hash, verification_id, created_at)
         VALUES ($1, $2, $3, $4, $5)",
        &[&i.service, &i.key, &i.request_hash, &i.verification_id, &at],
    )
    .await
    .map_err(write_err(&format!(
        "idempotency key {} of service {}",
        i.key, i.service
    )))?;
    Ok(())
}

#[async_trait]
impl VerificationStore for PostgresStore {
    async fn insert_verification(
        &self,
        v: &Verification,
        first: Dispatch<'_>,
        idem: Option<&IdempotencyRecord>,
    ) -> StoreResult<InsertOutcome> {
        let mut c = self.conn().await?;
        let tx = c
            .transaction()
            .await
            .map_err(pg_err("starting a verification"))?;
        // Key first, then number: every start takes them in this order.
        if let Some(i) = idem {
            lock(&tx, &["idem", &i.service, &i.key]).await?;
            if let Some(seen) = get_idempotency(&tx, &i.service, &i.key).await? {
                return Ok(InsertOutcome::IdempotentReplay(seen));
            }
        }
        lock(&tx, &["pending", &v.service, &v.to]).await?;
        if let Some(pending) = find_pending(&tx, &v.service, &v.to).await? {
            return Ok(InsertOutcome::PendingExists(pending));
        }
        tx.execute(
            &format!(
                "INSERT INTO verifications ({COLS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ),
            &[
                &v.id,
                &v.service,
                &v.to,
                &v.channel,
                &v.locale,
                &v.status.as_str(),
                &v.code_hash,
                &i64::from(v.attempts),
                &i64::from(v.max_attempts),
                &i64::from(v.sends),
                &v.created_at,
                &v.expires_at,
                &v.last_sent_at,
                &v.updated_at,
            ],
        )
        .await
        .map_err(write_err(&format!("verification {}", v.id)))?;
        dispatch(&tx, first).await?;
        if let Some(i) = idem {
            insert_idempotency(&tx, i, v.created_at).await?;
        }
        tx.commit()
            .await
            .map_err(pg_err("committing a verification"))?;
        Ok(InsertOutcome::Created)
    }

    async fn get_idempotency(
        &self,
        service: &str,
        key: &str,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        let c = self.conn().await?;
        get_idempotency(&c, service, key).await
    }

    async fn get_verification(&self, id: &str) -> StoreResult<Option<Verification>> {
        let c = self.conn().await?;
        c.query_opt(
            &format!("SELECT {COLS} FROM verifications WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(pg_err("reading a verification"))?
        .as_ref()
        .map(verification)
        .transpose()
    }

    async fn find_pending(&self, service: &str, to: &str) -> StoreResult<Option<Verification>> {
        let c = self.conn().await?;
        find_pending(&c, service, to).await
    }

    async fn change_status(&self, ch: &StatusChange<'_>, at: Millis) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting"))?;
        let n = tx
            .execute(
                "UPDATE verifications SET status = $4, attempts = $5, updated_at = $6
                 WHERE id = $1 AND status = $2 AND attempts = $3",
                &[
                    &ch.id,
                    &ch.expect_status.as_str(),
                    &i64::from(ch.expect_attempts),
                    &ch.status.as_str(),
                    &i64::from(ch.attempts),
                    &at,
                ],
            )
            .await
            .map_err(write_err(&format!("verification {}", ch.id)))?;
        if n == 1 {
            if let Some(w) = ch.webhook {
                insert_webhook(&tx, w).await?;
            }
        }
        tx.commit().await.map_err(pg_err("committing"))?;
        Ok(n == 1)
    }

    async fn pending_expired(&self, now: Millis, limit: u32) -> StoreResult<Vec<Verification>> {
        let c = self.conn().await?;
        c.query(
            &format!(
                "SELECT {COLS} FROM verifications WHERE status = 'pending' AND expires_at <= $1
                 ORDER BY expires_at LIMIT $2"
            ),
            &[&now, &i64::from(limit)],
        )
        .await
        .map_err(pg_err("reading expired verifications"))?
        .iter()
        .map(verification)
        .collect()
    }

    async fn record_resend(&self, r: &Resend<'_>, at: Millis) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting"))?;
        let done = tx
            .execute(
                "UPDATE verifications
                 SET sends = sends + 1, last_sent_at = $2, code_hash = $3, expires_at = $4, updated_at = $2
                 WHERE id = $1 AND status = 'pending' AND last_sent_at = $5",
                &[&r.verification_id, &at, &r.code_hash, &r.expires_at, &r.last_sent_at],
            )
            .await
            .map_err(pg_err("recording a resend"))?;
        if done == 0 {
            let exists = tx
                .query_opt(
                    "SELECT 1 FROM verifications WHERE id = $1",
                    &[&r.verification_id],
                )
                .await
                .map_err(pg_err("reading a verification"))?
                .is_some();
            return if exists {
                Ok(false)
            } else {
                Err(StoreError::NotFound(format!(
                    "verification {}",
                    r.verification_id
                )))
            };
        }
        dispatch(&tx, r.send).await?;
        if let Some(i) = r.idempotency {
            insert_idempotency(&tx, i, at).await?;
        }
        tx.commit().await.map_err(pg_err("committing a resend"))?;
        Ok(true)
    }

    async fn record_idempotency(&self, rec: &IdempotencyRecord, at: Millis) -> StoreResult<()> {
        let c = self.conn().await?;
        c.execute(
            "INSERT INTO idempotency_keys (service, key, request_hash, verification_id, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[
                &rec.service,
                &rec.key,
                &rec.request_hash,
                &rec.verification_id,
                &at,
            ],
        )
        .await
        .map_err(write_err(&format!(
            "idempotency key {} of service {}",
            rec.key, rec.service
        )))?;
        Ok(())
    }

    async fn forget_idempotency_keys(&self, before: Millis) -> StoreResult<u64> {
        let c = self.conn().await?;
        c.execute(
            "DELETE FROM idempotency_keys WHERE created_at < $1",
            &[&before],
        )
        .await
        .map_err(pg_err("forgetting idempotency keys"))
    }
}

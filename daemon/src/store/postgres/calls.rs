//! The call queue (voice codes, flash calls, voice-gateway calls).

use super::outbox::insert_message;
use super::queue::{claim_of, extend_leases, returned_claims};
use super::rows::{col, write_err};
use super::{pg_err, PostgresStore};
use crate::store::*;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

pub(super) const COLS: &str = r#"id, verification_id, service, kind, "to", caller, code, fallback_text,
    locale, state, sip_code, detail, attempts, next_attempt_at, expires_at, created_at, updated_at"#;

fn call(r: &Row) -> StoreResult<CallJob> {
    const T: &str = "calls";
    let kind: String = col(r, T, "kind")?;
    let state: String = col(r, T, "state")?;
    let sip_code: Option<i64> = col(r, T, "sip_code")?;
    let attempts: i64 = col(r, T, "attempts")?;
    let bad = |what: &str| StoreError::Corrupt(format!("{T}.{what}"));
    Ok(CallJob {
        id: col(r, T, "id")?,
        verification_id: col(r, T, "verification_id")?,
        service: col(r, T, "service")?,
        kind: CallKind::parse(&kind).ok_or_else(|| bad(&format!("kind: unknown {kind:?}")))?,
        to: col(r, T, "to")?,
        caller: col(r, T, "caller")?,
        code: col(r, T, "code")?,
        fallback_text: col(r, T, "fallback_text")?,
        locale: col(r, T, "locale")?,
        state: CallState::parse(&state).ok_or_else(|| bad(&format!("state: unknown {state:?}")))?,
        sip_code: sip_code
            .map(|c| u16::try_from(c).map_err(|_| bad(&format!("sip_code: {c}"))))
            .transpose()?,
        detail: col(r, T, "detail")?,
        attempts: u32::try_from(attempts).map_err(|_| bad(&format!("attempts: {attempts}")))?,
        next_attempt_at: col(r, T, "next_attempt_at")?,
        expires_at: col(r, T, "expires_at")?,
        created_at: col(r, T, "created_at")?,
        updated_at: col(r, T, "updated_at")?,
    })
}

/// Inserts a call (also inside a verification's transaction).
pub(super) async fn insert_call(c: &impl GenericClient, j: &CallJob) -> StoreResult<()> {
    c.execute(
        &format!(
            "INSERT INTO calls ({COLS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        ),
        &[
            &j.id,
            &j.verification_id,
            &j.service,
            &j.kind.as_str(),
            &j.to,
            &j.caller,
            &j.code,
            &j.fallback_text,
            &j.locale,
            &j.state.as_str(),
            &j.sip_code.map(i64::from),
            &j.detail,
            &i64::from(j.attempts),
            &j.next_attempt_at,
            &j.expires_at,
            &j.created_at,
            &j.updated_at,
        ],
    )
    .await
    .map_err(write_err(&format!("call {}", j.id)))?;
    Ok(())
}

async fn get_call(c: &impl GenericClient, id: &str) -> StoreResult<Option<CallJob>> {
    c.query_opt(&format!("SELECT {COLS} FROM calls WHERE id = $1"), &[&id])
        .await
        .map_err(pg_err("reading a call"))?
        .as_ref()
        .map(call)
        .transpose()
}

async fn by_request(
    c: &impl GenericClient,
    service: &str,
    key: &[u8],
    since: Millis,
) -> StoreResult<Option<CallJob>> {
    c.query_opt(
        &format!(
            "SELECT {COLS} FROM calls WHERE service = $1 AND request_key = $2 AND created_at >= $3"
        ),
        &[&service, &key, &since],
    )
    .await
    .map_err(pg_err("reading a call by its request"))?
    .as_ref()
    .map(call)
    .transpose()
}

fn sorted(rows: &[Row]) -> StoreResult<Vec<(i64, CallJob, &Row)>> {
    let mut v = rows
        .iter()
        .map(|r| Ok((col::<i64>(r, "calls", "rowid")?, call(r)?, r)))
        .collect::<StoreResult<Vec<_>>>()?;
    v.sort_by_key(|(seq, j, _)| (j.created_at, *seq));
    Ok(v)
}

#[async_trait]
impl CallStore for PostgresStore {
    async fn enqueue_call(
        &self,
        j: &CallJob,
        request: Option<RequestKey<'_>>,
    ) -> StoreResult<Option<CallJob>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting"))?;
        let Some(r) = request else {
            insert_call(&tx, j).await?;
            tx.commit().await.map_err(pg_err("committing a call"))?;
            return Ok(None);
        };
        // Instances taking the same request one at a time.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || encode($2, 'hex'), 3))",
            &[&j.service, &r.key],
        )
        .await
        .map_err(pg_err("locking a request"))?;
        if let Some(first) = by_request(&tx, &j.service, r.key, r.since).await? {
            return Ok(Some(first));
        }
        // An older call with the key gives it up (the key is unique).
        tx.execute(
            "UPDATE calls SET request_key = NULL WHERE service = $1 AND request_key = $2 AND created_at < $3",
            &[&j.service, &r.key, &r.since],
        )
        .await
        .map_err(pg_err("releasing an old request key"))?;
        insert_call(&tx, j).await?;
        tx.execute(
            "UPDATE calls SET request_key = $2 WHERE id = $1",
            &[&j.id, &r.key],
        )
        .await
        .map_err(pg_err("keying a call"))?;
        tx.commit().await.map_err(pg_err("committing a call"))?;
        Ok(None)
    }

    async fn find_call_by_request(
        &self,
        service: &str,
        r: RequestKey<'_>,
    ) -> StoreResult<Option<CallJob>> {
        let c = self.conn().await?;
        by_request(&c, service, r.key, r.since).await
    }

    async fn claim_calls(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<Claimed<CallJob>>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let c = self.conn().await?;
        // A due call whose verification closed meanwhile is never placed.
        c.execute(
            "UPDATE calls SET state = 'canceled', code = NULL, fallback_text = NULL, lease_until = NULL,
                 detail = 'the verification was closed first', updated_at = $1
             WHERE state IN ('queued', 'calling')
               AND ((state = 'queued' AND next_attempt_at <= $1)
                    OR (state = 'calling' AND COALESCE(lease_until, 0) <= $1))
               AND verification_id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM verifications v
                               WHERE v.id = calls.verification_id AND v.status = 'pending')",
            &[&now],
        )
        .await
        .map_err(pg_err("cancelling calls of closed verifications"))?;
        let until = now.saturating_add(lease_ms.max(0));
        let rows = c
            .query(
                &format!(
                    "UPDATE calls
                     SET state = 'calling', attempts = attempts + 1, claim = claim + 1,
                         lease_until = $2, updated_at = $1
                     WHERE id IN (
                         SELECT id FROM calls
                         WHERE state IN ('queued', 'calling')
                           AND ((state = 'queued' AND next_attempt_at <= $1)
                                OR (state = 'calling' AND COALESCE(lease_until, 0) <= $1))
                           AND expires_at >= $1
                         ORDER BY created_at, rowid
                         LIMIT $3
                         FOR UPDATE SKIP LOCKED)
                     RETURNING rowid, claim, lease_until, {COLS}"
                ),
                &[&now, &until, &i64::from(limit)],
            )
            .await
            .map_err(pg_err("claiming calls"))?;
        returned_claims(&rows, "calls", call, |j| j.created_at, |j| &j.id)
    }

    async fn extend_calls(&self, leases: &[Lease], until: Millis) -> StoreResult<Vec<Extension>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.conn().await?;
        extend_leases(&c, "calls", "state = 'calling'", leases, until).await
    }

    async fn finish_call(&self, lease: &Lease, r: &CallResult, at: Millis) -> StoreResult<CallJob> {
        let id = lease.id.as_str();
        let retry = r.state == CallState::Queued;
        if r.state == CallState::Calling || (retry && r.retry_at.is_none()) {
            return Err(StoreError::Bug(format!(
                "call {id}: {} is not an outcome",
                r.state.as_str()
            )));
        }
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting"))?;
        let Some(claim) = claim_of(&tx, "calls", id).await? else {
            return Err(StoreError::NotFound(format!("call {id}")));
        };
        if claim != lease.token {
            return Err(StoreError::LeaseLost(format!(
                "call {id} was claimed again (claim {claim}) after this holder's claim {}",
                lease.token
            )));
        }
        // Only an unfinished call changes (an expiry or a cancel that came first stands).
        let changed = tx
            .execute(
                "UPDATE calls
                 SET state = $2, sip_code = $3, detail = $4,
                     next_attempt_at = COALESCE($5, next_attempt_at),
                     attempts = CASE WHEN $6 AND $8 AND attempts > 0 THEN attempts - 1 ELSE attempts END,
                     code = CASE WHEN $6 THEN code ELSE NULL END,
                     fallback_text = CASE WHEN $6 THEN fallback_text ELSE NULL END,
                     lease_until = NULL, updated_at = $7
                 WHERE id = $1 AND state IN ('queued', 'calling')",
                &[
                    &id,
                    &r.state.as_str(),
                    &r.sip_code.map(i64::from),
                    &r.detail,
                    &r.retry_at,
                    &retry,
                    &at,
                    &r.not_placed,
                ],
            )
            .await
            .map_err(pg_err("recording a call's outcome"))?;
        if changed == 1 && !retry {
            if let Some(m) = &r.fallback {
                insert_message(&tx, m).await?;
            }
        }
        let j = get_call(&tx, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("call {id}")))?;
        tx.commit().await.map_err(pg_err("committing"))?;
        Ok(j)
    }

    async fn cancel_calls_for_verification(
        &self,
        verification_id: &str,
        at: Millis,
    ) -> StoreResult<Vec<CallJob>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting"))?;
        let calling = tx
            .query(
                &format!(
                    "SELECT {COLS} FROM calls WHERE verification_id = $1 AND state = 'calling'
                     ORDER BY created_at, rowid"
                ),
                &[&verification_id],
            )
            .await
            .map_err(pg_err("reading calls"))?
            .iter()
            .map(call)
            .collect::<StoreResult<Vec<_>>>()?;
        tx.execute(
            "UPDATE calls SET state = 'canceled', code = NULL, fallback_text = NULL, lease_until = NULL,
                 detail = 'the verification was closed first', updated_at = $2
             WHERE verification_id = $1 AND state = 'queued'",
            &[&verification_id, &at],
        )
        .await
        .map_err(pg_err("cancelling calls"))?;
        tx.commit().await.map_err(pg_err("committing"))?;
        Ok(calling)
    }

    async fn expire_calls(&self, now: Millis) -> StoreResult<Vec<CallJob>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                &format!(
                    "UPDATE calls SET state = 'expired', code = NULL, fallback_text = NULL,
                         lease_until = NULL, updated_at = $1
                     WHERE state IN ('queued', 'calling') AND expires_at < $1
                       AND (state = 'queued' OR COALESCE(lease_until, 0) <= $1)
                     RETURNING rowid, {COLS}"
                ),
                &[&now],
            )
            .await
            .map_err(pg_err("expiring calls"))?;
        Ok(sorted(&rows)?.into_iter().map(|(_, j, _)| j).collect())
    }

    async fn get_call(&self, id: &str) -> StoreResult<Option<CallJob>> {
        let c = self.conn().await?;
        get_call(&c, id).await
    }

    async fn calls_for_verification(&self, verification_id: &str) -> StoreResult<Vec<CallJob>> {
        let c = self.conn().await?;
        c.query(
            &format!(
                "SELECT {COLS} FROM calls WHERE verification_id = $1 ORDER BY created_at, rowid"
            ),
            &[&verification_id],
        )
        .await
        .map_err(pg_err("reading a verification's calls"))?
        .iter()
        .map(call)
        .collect()
    }

    async fn flash_clis_in_use(&self, to: &str, now: Millis) -> StoreResult<Vec<String>> {
        let c = self.conn().await?;
        Ok(c.query(
            r#"SELECT DISTINCT calls.caller FROM calls
                   JOIN verifications v ON v.id = calls.verification_id
                   WHERE calls."to" = $1 AND calls.kind = 'flash_call' AND calls.caller IS NOT NULL
                     AND v.status = 'pending' AND v.expires_at > $2"#,
            &[&to, &now],
        )
        .await
        .map_err(pg_err("reading flash-call callers in use"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
    }
}

//! The relay's sessions and transactions, each a fenced queue row.

use super::outbox::insert_message;
use super::queue::{extend_leases, held, returned_claims};
use super::rows::{col, write_err};
use super::{pg_err, PostgresStore};
use crate::store::*;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

const SESSION_COLS: &str = "id, front_end, bank, msisdn, imsi, ksn, issued_at, expires_at, state,
     error_code, error, attempts, next_attempt_at";
const TX_COLS: &str = "id, session_id, seq, front_end, idempotency_key, request_hash, transfer,
     state, reason, error_code, bank_ref, result_mac, attempts, next_attempt_at, created_at,
     finished_at";

fn u32_of(r: &Row, t: &str, name: &str) -> StoreResult<u32> {
    let v: i64 = col(r, t, name)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{t}.{name}: {v}")))
}

fn session_row(r: &Row) -> StoreResult<TxSession> {
    const T: &str = "tx_sessions";
    let state: String = col(r, T, "state")?;
    Ok(TxSession {
        id: col(r, T, "id")?,
        front_end: col(r, T, "front_end")?,
        bank: col(r, T, "bank")?,
        msisdn: col(r, T, "msisdn")?,
        imsi: col(r, T, "imsi")?,
        ksn: col(r, T, "ksn")?,
        issued_at: col(r, T, "issued_at")?,
        expires_at: col(r, T, "expires_at")?,
        state: SessionState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("{T}.state: unknown {state:?}")))?,
        error_code: col(r, T, "error_code")?,
        error: col(r, T, "error")?,
        attempts: u32_of(r, T, "attempts")?,
        next_attempt_at: col(r, T, "next_attempt_at")?,
    })
}

fn tx_row(r: &Row) -> StoreResult<TxTransaction> {
    const T: &str = "tx_transactions";
    let state: String = col(r, T, "state")?;
    Ok(TxTransaction {
        id: col(r, T, "id")?,
        session_id: col(r, T, "session_id")?,
        seq: u32_of(r, T, "seq")?,
        front_end: col(r, T, "front_end")?,
        idempotency_key: col(r, T, "idempotency_key")?,
        request_hash: col(r, T, "request_hash")?,
        transfer: col(r, T, "transfer")?,
        state: TxState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("{T}.state: unknown {state:?}")))?,
        reason: col(r, T, "reason")?,
        error_code: col(r, T, "error_code")?,
        bank_ref: col(r, T, "bank_ref")?,
        result_mac: col(r, T, "result_mac")?,
        attempts: u32_of(r, T, "attempts")?,
        next_attempt_at: col(r, T, "next_attempt_at")?,
        created_at: col(r, T, "created_at")?,
        finished_at: col(r, T, "finished_at")?,
    })
}

async fn session(c: &impl GenericClient, id: &str, lock: bool) -> StoreResult<Option<TxSession>> {
    let sql = format!(
        "SELECT {SESSION_COLS} FROM tx_sessions WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    c.query_opt(&sql, &[&id])
        .await
        .map_err(pg_err("reading a relay session"))?
        .as_ref()
        .map(session_row)
        .transpose()
}

async fn transaction(c: &impl GenericClient, id: &str) -> StoreResult<Option<TxTransaction>> {
    c.query_opt(
        &format!("SELECT {TX_COLS} FROM tx_transactions WHERE id = $1"),
        &[&id],
    )
    .await
    .map_err(pg_err("reading a relay transaction"))?
    .as_ref()
    .map(tx_row)
    .transpose()
}

async fn by_key(
    c: &impl GenericClient,
    front_end: &str,
    key: &str,
) -> StoreResult<Option<TxTransaction>> {
    c.query_opt(
        &format!(
            "SELECT {TX_COLS} FROM tx_transactions WHERE front_end = $1 AND idempotency_key = $2"
        ),
        &[&front_end, &key],
    )
    .await
    .map_err(pg_err("reading a relay transaction"))?
    .as_ref()
    .map(tx_row)
    .transpose()
}

async fn add(c: &impl GenericClient, t: &NewTransaction) -> StoreResult<TxAdded> {
    if let Some(key) = &t.idempotency_key {
        // Two instances with the same key: one adds, the other finds it.
        c.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 2))",
            &[&format!("{}:{}{key}", t.front_end.len(), t.front_end)],
        )
        .await
        .map_err(pg_err("locking an idempotency key"))?;
        if let Some(had) = by_key(c, &t.front_end, key).await? {
            return Ok(TxAdded::Existing(had));
        }
    }
    // Locked: the session's sequence numbers are handed out one at a time.
    let Some(s) = session(c, &t.session_id, true)
        .await?
        .filter(|s| s.front_end == t.front_end)
    else {
        return Ok(TxAdded::NoSession);
    };
    if s.state == SessionState::Refused || t.at >= s.expires_at {
        return Ok(TxAdded::SessionClosed(s));
    }
    let seq: i64 = c
        .query_one(
            "UPDATE tx_sessions SET next_seq = next_seq + 1 WHERE id = $1 RETURNING next_seq",
            &[&t.session_id],
        )
        .await
        .map_err(pg_err("numbering a transaction"))?
        .get(0);
    c.execute(
        "INSERT INTO tx_transactions (id, session_id, seq, front_end, idempotency_key, request_hash,
                                      transfer, state, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $8)",
        &[
            &t.id,
            &t.session_id,
            &seq,
            &t.front_end,
            &t.idempotency_key,
            &t.request_hash,
            &t.transfer,
            &t.at,
        ],
    )
    .await
    .map_err(write_err(&format!("transaction {}", t.id)))?;
    let added = transaction(c, &t.id)
        .await?
        .ok_or_else(|| StoreError::Bug("a transaction inserted in this write is gone".into()))?;
    Ok(TxAdded::Added(added))
}

/// Runs `f` inside a transaction on a row `lease` still holds.
macro_rules! fenced {
    ($self:ident, $table:literal, $what:literal, $lease:ident, |$tx:ident| $body:block) => {{
        let mut c = $self.conn().await?;
        let $tx = c.transaction().await.map_err(pg_err("starting"))?;
        if held(&$tx, $table, $what, $lease).await? {
            $body
        }
        $tx.commit().await.map_err(pg_err("committing"))
    }};
}

#[async_trait]
impl TxQueueStore for PostgresStore {
    async fn create_tx_session(&self, s: &TxSession) -> StoreResult<()> {
        let c = self.conn().await?;
        c.execute(
            "INSERT INTO tx_sessions (id, front_end, bank, msisdn, imsi, ksn, issued_at, expires_at,
                                      state, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &s.id,
                &s.front_end,
                &s.bank,
                &s.msisdn,
                &s.imsi,
                &s.ksn,
                &s.issued_at,
                &s.expires_at,
                &s.state.as_str(),
                &s.next_attempt_at,
            ],
        )
        .await
        .map_err(write_err(&format!("session {}", s.id)))?;
        Ok(())
    }

    async fn get_tx_session(&self, id: &str) -> StoreResult<Option<TxSession>> {
        let c = self.conn().await?;
        session(&c, id, false).await
    }

    async fn claim_tx_sessions(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<Claimed<TxSession>>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let c = self.conn().await?;
        let until = now.saturating_add(lease_ms.max(0));
        let rows = c
            .query(
                &format!(
                    "UPDATE tx_sessions SET attempts = attempts + 1, claim = claim + 1, lease_until = $2
                     WHERE id IN (
                         SELECT id FROM tx_sessions
                         WHERE state = 'registering' AND COALESCE(lease_until, next_attempt_at) <= $1
                         ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                     RETURNING rowid, claim, lease_until, {SESSION_COLS}"
                ),
                &[&now, &until, &i64::from(limit)],
            )
            .await
            .map_err(pg_err("claiming relay sessions"))?;
        returned_claims(
            &rows,
            "tx_sessions",
            session_row,
            |s| s.next_attempt_at,
            |s| &s.id,
        )
    }

    async fn extend_tx_sessions(
        &self,
        leases: &[Lease],
        until: Millis,
    ) -> StoreResult<Vec<Extension>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.conn().await?;
        extend_leases(&c, "tx_sessions", "state = 'registering'", leases, until).await
    }

    async fn finish_tx_session(
        &self,
        lease: &Lease,
        outcome: &TxOutcome,
        at: Millis,
    ) -> StoreResult<()> {
        fenced!(self, "tx_sessions", "session", lease, |tx| {
            match outcome {
                TxOutcome::Answered { .. } => tx
                    .execute(
                        "UPDATE tx_sessions SET state = 'registered', error = NULL, lease_until = NULL
                         WHERE id = $1",
                        &[&lease.id],
                    )
                    .await
                    .map_err(pg_err("recording a registration"))?,
                TxOutcome::Refused { code, detail } => {
                    tx.execute(
                        "UPDATE tx_transactions
                         SET state = 'refused', error_code = 'session_refused', reason = $2,
                             finished_at = $3, lease_until = NULL
                         WHERE session_id = $1 AND state = 'queued'",
                        &[&lease.id, &format!("its session was refused: {detail}"), &at],
                    )
                    .await
                    .map_err(pg_err("refusing a session's transactions"))?;
                    tx.execute(
                        "UPDATE tx_sessions SET state = 'refused', error_code = $2, error = $3,
                                lease_until = NULL
                         WHERE id = $1",
                        &[&lease.id, code, detail],
                    )
                    .await
                    .map_err(pg_err("refusing a session"))?
                }
            };
        })
    }

    async fn retry_tx_session(
        &self,
        lease: &Lease,
        error: &str,
        retry_at: Millis,
    ) -> StoreResult<()> {
        fenced!(self, "tx_sessions", "session", lease, |tx| {
            tx.execute(
                "UPDATE tx_sessions SET next_attempt_at = $2, error = $3, lease_until = NULL WHERE id = $1",
                &[&lease.id, &retry_at, &error],
            )
            .await
            .map_err(pg_err("retrying a registration"))?;
        })
    }

    async fn add_tx_transaction(&self, t: &NewTransaction) -> StoreResult<TxAdded> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting"))?;
        let added = add(&tx, t).await?;
        tx.commit()
            .await
            .map_err(pg_err("committing a transaction"))?;
        Ok(added)
    }

    async fn get_tx_transaction(&self, id: &str) -> StoreResult<Option<TxTransaction>> {
        let c = self.conn().await?;
        transaction(&c, id).await
    }

    async fn find_tx_transaction(
        &self,
        front_end: &str,
        idempotency_key: &str,
    ) -> StoreResult<Option<TxTransaction>> {
        let c = self.conn().await?;
        by_key(&c, front_end, idempotency_key).await
    }

    async fn tx_transactions_of(&self, session_id: &str) -> StoreResult<Vec<TxTransaction>> {
        let c = self.conn().await?;
        c.query(
            &format!("SELECT {TX_COLS} FROM tx_transactions WHERE session_id = $1 ORDER BY seq"),
            &[&session_id],
        )
        .await
        .map_err(pg_err("reading a session's transactions"))?
        .iter()
        .map(tx_row)
        .collect()
    }

    async fn claim_tx_transactions(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<Claimed<RelayJob>>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let c = self.conn().await?;
        let until = now.saturating_add(lease_ms.max(0));
        // Only a session's lowest queued message, while no claim on another
        // of its messages is live, of registered sessions. The session row
        // is locked with the candidate (SKIP LOCKED), so two instances never
        // take two messages of one session at once.
        let rows = c
            .query(
                &format!(
                    "UPDATE tx_transactions SET attempts = attempts + 1, claim = claim + 1, lease_until = $2
                     WHERE id IN (
                         SELECT t.id FROM tx_transactions t
                         JOIN tx_sessions s ON s.id = t.session_id AND s.state = 'registered'
                         WHERE t.state = 'queued' AND COALESCE(t.lease_until, t.next_attempt_at) <= $1
                           AND NOT EXISTS (SELECT 1 FROM tx_transactions p
                                           WHERE p.session_id = t.session_id AND p.state = 'queued'
                                             AND p.seq < t.seq)
                         ORDER BY t.next_attempt_at LIMIT $3
                         FOR UPDATE OF t, s SKIP LOCKED)
                     RETURNING rowid, claim, lease_until, {TX_COLS}"
                ),
                &[&now, &until, &i64::from(limit)],
            )
            .await
            .map_err(pg_err("claiming relay transactions"))?;
        let claimed = returned_claims(
            &rows,
            "tx_transactions",
            tx_row,
            |t| t.next_attempt_at,
            |t| &t.id,
        )?;
        let mut out = Vec::with_capacity(claimed.len());
        for Claimed { job, lease } in claimed {
            let session = session(&c, &job.session_id, false).await?.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "tx_transactions.session_id: no session {}",
                    job.session_id
                ))
            })?;
            out.push(Claimed {
                job: RelayJob { tx: job, session },
                lease,
            });
        }
        Ok(out)
    }

    async fn extend_tx_transactions(
        &self,
        leases: &[Lease],
        until: Millis,
    ) -> StoreResult<Vec<Extension>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.conn().await?;
        extend_leases(&c, "tx_transactions", "state = 'queued'", leases, until).await
    }

    async fn finish_tx_transaction(
        &self,
        lease: &Lease,
        outcome: &TxOutcome,
        reply: Option<&OutboxMessage>,
        at: Millis,
    ) -> StoreResult<()> {
        let (state, reason, code, bank_ref, mac): (
            &str,
            Option<&str>,
            Option<&str>,
            Option<&str>,
            Option<&str>,
        ) = match outcome {
            TxOutcome::Answered {
                state,
                reason,
                bank_ref,
                mac,
            } => (
                state.as_str(),
                reason.as_deref(),
                None,
                bank_ref.as_deref(),
                mac.as_deref(),
            ),
            TxOutcome::Refused { code, detail } => (
                TxState::Refused.as_str(),
                Some(detail.as_str()),
                Some(code.as_str()),
                None,
                None,
            ),
        };
        fenced!(self, "tx_transactions", "transaction", lease, |tx| {
            if let Some(r) = reply {
                insert_message(&tx, r).await?;
            }
            tx.execute(
                "UPDATE tx_transactions
                 SET state = $2, reason = $3, error_code = $4, bank_ref = $5, result_mac = $6,
                     finished_at = $7, lease_until = NULL
                 WHERE id = $1 AND state = 'queued'",
                &[&lease.id, &state, &reason, &code, &bank_ref, &mac, &at],
            )
            .await
            .map_err(pg_err("recording a transaction's outcome"))?;
        })
    }

    async fn retry_tx_transaction(
        &self,
        lease: &Lease,
        error: &str,
        retry_at: Millis,
    ) -> StoreResult<()> {
        fenced!(self, "tx_transactions", "transaction", lease, |tx| {
            tx.execute(
                "UPDATE tx_transactions SET next_attempt_at = $2, reason = $3, lease_until = NULL
                 WHERE id = $1 AND state = 'queued'",
                &[&lease.id, &retry_at, &error],
            )
            .await
            .map_err(pg_err("retrying a transaction"))?;
        })
    }
}

//! The relay's sessions and transactions, each a fenced queue row.

use super::queue::{claim_of, fenced, returned_claims, taken_over, Fenced};
use super::rows::{all, col, col_u32, corrupt, exec, one, write_err};
use super::SqliteStore;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{params, Connection};

const SESSION_COLS: &str = "id, front_end, bank, msisdn, imsi, ksn, issued_at, expires_at, state,
     error_code, error, attempts, next_attempt_at";
const TX_COLS: &str = "id, session_id, seq, front_end, idempotency_key, request_hash, transfer,
     state, reason, error_code, bank_ref, result_mac, attempts, next_attempt_at, created_at,
     finished_at";

fn session_row(r: &rusqlite::Row<'_>) -> StoreResult<TxSession> {
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
            .ok_or_else(|| corrupt(T, "state", format!("unknown {state:?}")))?,
        error_code: col(r, T, "error_code")?,
        error: col(r, T, "error")?,
        attempts: col_u32(r, T, "attempts")?,
        next_attempt_at: col(r, T, "next_attempt_at")?,
    })
}

fn tx_row(r: &rusqlite::Row<'_>) -> StoreResult<TxTransaction> {
    const T: &str = "tx_transactions";
    let state: String = col(r, T, "state")?;
    Ok(TxTransaction {
        id: col(r, T, "id")?,
        session_id: col(r, T, "session_id")?,
        seq: col_u32(r, T, "seq")?,
        front_end: col(r, T, "front_end")?,
        idempotency_key: col(r, T, "idempotency_key")?,
        request_hash: col(r, T, "request_hash")?,
        transfer: col(r, T, "transfer")?,
        state: TxState::parse(&state)
            .ok_or_else(|| corrupt(T, "state", format!("unknown {state:?}")))?,
        reason: col(r, T, "reason")?,
        error_code: col(r, T, "error_code")?,
        bank_ref: col(r, T, "bank_ref")?,
        result_mac: col(r, T, "result_mac")?,
        attempts: col_u32(r, T, "attempts")?,
        next_attempt_at: col(r, T, "next_attempt_at")?,
        created_at: col(r, T, "created_at")?,
        finished_at: col(r, T, "finished_at")?,
    })
}

fn session(c: &Connection, id: &str) -> StoreResult<Option<TxSession>> {
    one(
        c,
        &format!("SELECT {SESSION_COLS} FROM tx_sessions WHERE id = ?1"),
        [id],
        session_row,
    )
}

fn transaction(c: &Connection, id: &str) -> StoreResult<Option<TxTransaction>> {
    one(
        c,
        &format!("SELECT {TX_COLS} FROM tx_transactions WHERE id = ?1"),
        [id],
        tx_row,
    )
}

/// Runs `f` if `lease` is still the row's latest claim (a row gone was
/// finished before: nothing to do).
fn if_held(
    c: &Connection,
    table: &str,
    what: &str,
    lease: &Lease,
    f: impl FnOnce() -> StoreResult<()>,
) -> StoreResult<Fenced<()>> {
    match claim_of(c, table, &lease.id)? {
        None => Ok(Ok(())),
        Some(claim) if claim != lease.token => Ok(Err(taken_over(what, lease, claim))),
        Some(_) => f().map(Ok),
    }
}

fn add(c: &Connection, t: &NewTransaction) -> StoreResult<TxAdded> {
    if let Some(key) = &t.idempotency_key {
        let had = one(
            c,
            &format!(
                "SELECT {TX_COLS} FROM tx_transactions WHERE front_end = ?1 AND idempotency_key = ?2"
            ),
            params![t.front_end, key],
            tx_row,
        )?;
        if let Some(had) = had {
            return Ok(TxAdded::Existing(had));
        }
    }
    let Some(s) = session(c, &t.session_id)?.filter(|s| s.front_end == t.front_end) else {
        return Ok(TxAdded::NoSession);
    };
    if s.state == SessionState::Refused || t.at >= s.expires_at {
        return Ok(TxAdded::SessionClosed(s));
    }
    let seq: i64 = one(
        c,
        "UPDATE tx_sessions SET next_seq = next_seq + 1 WHERE id = ?1 RETURNING next_seq",
        [&t.session_id],
        |r| col(r, "tx_sessions", "next_seq"),
    )?
    .ok_or_else(|| StoreError::Bug("a session read in this write is gone".into()))?;
    c.prepare_cached(
        "INSERT INTO tx_transactions (id, session_id, seq, front_end, idempotency_key, request_hash,
                                      transfer, state, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?8)",
    )?
    .execute(params![
        t.id,
        t.session_id,
        seq,
        t.front_end,
        t.idempotency_key,
        t.request_hash,
        t.transfer,
        t.at
    ])
    .map_err(|e| write_err(e, &format!("transaction {}", t.id)))?;
    let added = transaction(c, &t.id)?
        .ok_or_else(|| StoreError::Bug("a transaction inserted in this write is gone".into()))?;
    Ok(TxAdded::Added(added))
}

fn outcome_parts(
    o: &TxOutcome,
) -> (
    &'static str,
    Option<&str>,
    Option<&str>,
    Option<&str>,
    Option<&str>,
) {
    match o {
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
    }
}

#[async_trait]
impl TxQueueStore for SqliteStore {
    async fn create_tx_session(&self, s: &TxSession) -> StoreResult<()> {
        let s = s.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO tx_sessions (id, front_end, bank, msisdn, imsi, ksn, issued_at,
                                          expires_at, state, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                s.id,
                s.front_end,
                s.bank,
                s.msisdn,
                s.imsi,
                s.ksn,
                s.issued_at,
                s.expires_at,
                s.state.as_str(),
                s.next_attempt_at
            ])
            .map_err(|e| write_err(e, &format!("session {}", s.id)))?;
            Ok(())
        })
        .await
    }

    async fn get_tx_session(&self, id: &str) -> StoreResult<Option<TxSession>> {
        let id = id.to_owned();
        self.read(move |c| session(c, &id)).await
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
        // Not waited to disk: a claim lost with the machine is a
        // registration sent again (the bank takes a repeat as the same).
        self.write_volatile(move |c| {
            returned_claims(
                c,
                "tx_sessions",
                &format!(
                    "UPDATE tx_sessions SET attempts = attempts + 1, claim = claim + 1, lease_until = ?2
                     WHERE id IN (
                         SELECT id FROM tx_sessions
                         WHERE state = 'registering' AND COALESCE(lease_until, next_attempt_at) <= ?1
                         ORDER BY next_attempt_at LIMIT ?3)
                     RETURNING rowid AS seq, claim, lease_until, {SESSION_COLS}"
                ),
                params![now, now.saturating_add(lease_ms.max(0)), limit],
                session_row,
                |s| s.next_attempt_at,
                |s| &s.id,
            )
        })
        .await
    }

    async fn extend_tx_sessions(
        &self,
        leases: &[Lease],
        until: Millis,
    ) -> StoreResult<Vec<Extension>> {
        self.extend_leases("tx_sessions", "state = 'registering'", leases, until)
            .await
    }

    async fn finish_tx_session(
        &self,
        lease: &Lease,
        outcome: &TxOutcome,
        at: Millis,
    ) -> StoreResult<()> {
        let (lease, outcome) = (lease.clone(), outcome.clone());
        fenced(
            self.write(move |c| {
                if_held(c, "tx_sessions", "session", &lease, || {
                    match &outcome {
                        TxOutcome::Answered { .. } => exec(
                            c,
                            "UPDATE tx_sessions SET state = 'registered', error = NULL, lease_until = NULL
                             WHERE id = ?1",
                            [&lease.id],
                        )?,
                        TxOutcome::Refused { code, detail } => {
                            exec(
                                c,
                                "UPDATE tx_transactions
                                 SET state = 'refused', error_code = 'session_refused', reason = ?2,
                                     finished_at = ?3, lease_until = NULL
                                 WHERE session_id = ?1 AND state = 'queued'",
                                params![lease.id, format!("its session was refused: {detail}"), at],
                            )?;
                            exec(
                                c,
                                "UPDATE tx_sessions SET state = 'refused', error_code = ?2, error = ?3,
                                        lease_until = NULL
                                 WHERE id = ?1",
                                params![lease.id, code, detail],
                            )?
                        }
                    };
                    Ok(())
                })
            })
            .await,
        )
    }

    async fn retry_tx_session(
        &self,
        lease: &Lease,
        error: &str,
        retry_at: Millis,
    ) -> StoreResult<()> {
        let (lease, error) = (lease.clone(), error.to_owned());
        fenced(
            self.write(move |c| {
                if_held(c, "tx_sessions", "session", &lease, || {
                    exec(
                        c,
                        "UPDATE tx_sessions SET next_attempt_at = ?2, error = ?3, lease_until = NULL
                         WHERE id = ?1",
                        params![lease.id, retry_at, error],
                    )
                    .map(drop)
                })
            })
            .await,
        )
    }

    async fn add_tx_transaction(&self, t: &NewTransaction) -> StoreResult<TxAdded> {
        let t = t.clone();
        self.write(move |c| add(c, &t)).await
    }

    async fn get_tx_transaction(&self, id: &str) -> StoreResult<Option<TxTransaction>> {
        let id = id.to_owned();
        self.read(move |c| transaction(c, &id)).await
    }

    async fn find_tx_transaction(
        &self,
        front_end: &str,
        idempotency_key: &str,
    ) -> StoreResult<Option<TxTransaction>> {
        let (f, k) = (front_end.to_owned(), idempotency_key.to_owned());
        self.read(move |c| {
            one(
                c,
                &format!(
                    "SELECT {TX_COLS} FROM tx_transactions WHERE front_end = ?1 AND idempotency_key = ?2"
                ),
                params![f, k],
                tx_row,
            )
        })
        .await
    }

    async fn tx_transactions_of(&self, session_id: &str) -> StoreResult<Vec<TxTransaction>> {
        let id = session_id.to_owned();
        self.read(move |c| {
            all(
                c,
                &format!(
                    "SELECT {TX_COLS} FROM tx_transactions WHERE session_id = ?1 ORDER BY seq"
                ),
                [&id],
                tx_row,
            )
        })
        .await
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
        // Not waited to disk: a claim lost with the machine is a message
        // relayed again, which the bank answers with its first answer.
        self.write_volatile(move |c| {
            // Only a session's lowest queued message, and only while no
            // claim on another of its messages is live (in order, one at a
            // time), of registered sessions.
            let claimed = returned_claims(
                c,
                "tx_transactions",
                &format!(
                    "UPDATE tx_transactions SET attempts = attempts + 1, claim = claim + 1, lease_until = ?2
                     WHERE id IN (
                         SELECT t.id FROM tx_transactions t
                         JOIN tx_sessions s ON s.id = t.session_id AND s.state = 'registered'
                         WHERE t.state = 'queued' AND COALESCE(t.lease_until, t.next_attempt_at) <= ?1
                           AND NOT EXISTS (SELECT 1 FROM tx_transactions p
                                           WHERE p.session_id = t.session_id AND p.state = 'queued'
                                             AND p.seq < t.seq)
                         ORDER BY t.next_attempt_at LIMIT ?3)
                     RETURNING rowid AS seq, claim, lease_until, {TX_COLS}"
                ),
                params![now, now.saturating_add(lease_ms.max(0)), limit],
                tx_row,
                |t| t.next_attempt_at,
                |t| &t.id,
            )?;
            claimed
                .into_iter()
                .map(|Claimed { job, lease }| {
                    let session = session(c, &job.session_id)?.ok_or_else(|| {
                        corrupt("tx_transactions", "session_id", format!("no session {}", job.session_id))
                    })?;
                    Ok(Claimed {
                        job: RelayJob { tx: job, session },
                        lease,
                    })
                })
                .collect()
        })
        .await
    }

    async fn extend_tx_transactions(
        &self,
        leases: &[Lease],
        until: Millis,
    ) -> StoreResult<Vec<Extension>> {
        self.extend_leases("tx_transactions", "state = 'queued'", leases, until)
            .await
    }

    async fn finish_tx_transaction(
        &self,
        lease: &Lease,
        outcome: &TxOutcome,
        reply: Option<&OutboxMessage>,
        at: Millis,
    ) -> StoreResult<()> {
        let (lease, outcome, reply) = (lease.clone(), outcome.clone(), reply.cloned());
        fenced(
            self.write(move |c| {
                if_held(c, "tx_transactions", "transaction", &lease, || {
                    let (state, reason, code, bank_ref, mac) = outcome_parts(&outcome);
                    if let Some(r) = &reply {
                        super::outbox::insert_message(c, r)?;
                    }
                    exec(
                        c,
                        "UPDATE tx_transactions
                         SET state = ?2, reason = ?3, error_code = ?4, bank_ref = ?5, result_mac = ?6,
                             finished_at = ?7, lease_until = NULL
                         WHERE id = ?1 AND state = 'queued'",
                        params![lease.id, state, reason, code, bank_ref, mac, at],
                    )
                    .map(drop)
                })
            })
            .await,
        )
    }

    async fn retry_tx_transaction(
        &self,
        lease: &Lease,
        error: &str,
        retry_at: Millis,
    ) -> StoreResult<()> {
        let (lease, error) = (lease.clone(), error.to_owned());
        fenced(
            self.write(move |c| {
                if_held(c, "tx_transactions", "transaction", &lease, || {
                    exec(
                        c,
                        "UPDATE tx_transactions SET next_attempt_at = ?2, reason = ?3, lease_until = NULL
                         WHERE id = ?1 AND state = 'queued'",
                        params![lease.id, retry_at, error],
                    )
                    .map(drop)
                })
            })
            .await,
        )
    }
}

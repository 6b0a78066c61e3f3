//! The SMS outbox and delivery receipts. A receipt and the submit it
//! answers may arrive on different instances at the same moment: both take
//! transaction-scoped advisory locks on the receipt's correlation keys
//! (sorted, so never in a cycle), so a receipt is either applied to the
//! message or parked and found by its submit, never lost between them.

use super::queue::{claim_of, extend_leases, returned_claims};
use super::rows::{col, write_err};
use super::{pg_err, PostgresStore};
use crate::store::*;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use verigate_codecs::dlr::message_id_keys;

/// Parked receipts older than this (relative to a newly parked one) are
/// dropped (see the SQLite backend).
const PARKED_DLR_TTL_MS: i64 = 24 * 60 * 60 * 1000;

pub(super) const COLS: &str = r#"id, verification_id, service, "to", "from", text, state, attempts,
    next_attempt_at, expires_at, smsc, message_ids, last_error, created_at, updated_at"#;

const FINAL: &str = "('delivered', 'undeliverable', 'rejected', 'expired')";

fn parse_state(s: &str) -> StoreResult<MessageState> {
    MessageState::parse(s)
        .ok_or_else(|| StoreError::Corrupt(format!("outbox.state: unknown {s:?}")))
}

pub(super) fn message(r: &Row) -> StoreResult<OutboxMessage> {
    const T: &str = "outbox";
    let state: String = col(r, T, "state")?;
    let ids: String = col(r, T, "message_ids")?;
    let attempts: i64 = col(r, T, "attempts")?;
    Ok(OutboxMessage {
        id: col(r, T, "id")?,
        verification_id: col(r, T, "verification_id")?,
        service: col(r, T, "service")?,
        to: col(r, T, "to")?,
        from: col(r, T, "from")?,
        text: col(r, T, "text")?,
        state: parse_state(&state)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::Corrupt(format!("{T}.attempts: {attempts}")))?,
        next_attempt_at: col(r, T, "next_attempt_at")?,
        expires_at: col(r, T, "expires_at")?,
        smsc: col(r, T, "smsc")?,
        message_ids: serde_json::from_str(&ids)
            .map_err(|e| StoreError::Corrupt(format!("{T}.message_ids: {e}")))?,
        last_error: col(r, T, "last_error")?,
        created_at: col(r, T, "created_at")?,
        updated_at: col(r, T, "updated_at")?,
    })
}

fn ids_json(ids: &[String]) -> StoreResult<String> {
    serde_json::to_string(ids).map_err(|e| StoreError::Bug(format!("cannot encode JSON: {e}")))
}

pub(super) async fn get_message(
    c: &impl GenericClient,
    id: &str,
) -> StoreResult<Option<OutboxMessage>> {
    c.query_opt(&format!("SELECT {COLS} FROM outbox WHERE id = $1"), &[&id])
        .await
        .map_err(pg_err("reading an outbox message"))?
        .as_ref()
        .map(message)
        .transpose()
}

/// Inserts a message (also inside another write's transaction).
pub(super) async fn insert_message(c: &impl GenericClient, m: &OutboxMessage) -> StoreResult<()> {
    c.execute(
        &format!(
            "INSERT INTO outbox ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ),
        &[
            &m.id,
            &m.verification_id,
            &m.service,
            &m.to,
            &m.from,
            &m.text,
            &m.state.as_str(),
            &i64::from(m.attempts),
            &m.next_attempt_at,
            &m.expires_at,
            &m.smsc,
            &ids_json(&m.message_ids)?,
            &m.last_error,
            &m.created_at,
            &m.updated_at,
        ],
    )
    .await
    .map_err(write_err(&format!("outbox message {}", m.id)))?;
    Ok(())
}

/// Locks correlation keys for this transaction (sorted, once each).
async fn lock_keys(c: &impl GenericClient, keys: &[String]) -> StoreResult<()> {
    let mut k: Vec<&String> = keys.iter().collect();
    k.sort();
    k.dedup();
    for key in k {
        c.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[key],
        )
        .await
        .map_err(pg_err("locking a receipt key"))?;
    }
    Ok(())
}

/// The correlation keys of `message_ids`, each with whether it is its
/// id's primary form.
fn keys_of(message_ids: &[String]) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    for mid in message_ids {
        for (rank, key) in message_id_keys(mid).iter().enumerate() {
            out.push((key.clone(), rank == 0));
        }
    }
    out
}

/// Records the correlation keys of `message_ids` for message `id`, returns them.
async fn record_keys(
    c: &impl GenericClient,
    id: &str,
    keys: &[(String, bool)],
    at: Millis,
) -> StoreResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for (key, primary) in keys {
        c.execute(
            "INSERT INTO message_keys (key, outbox_id, is_primary, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key, outbox_id) DO UPDATE
             SET is_primary = GREATEST(message_keys.is_primary, excluded.is_primary)",
            &[key, &id, &i64::from(*primary), &at],
        )
        .await
        .map_err(write_err(&format!("message key {key} of {id}")))?;
        if !out.contains(key) {
            out.push(key.clone());
        }
    }
    Ok(out)
}

async fn mark_submitted(
    c: &impl GenericClient,
    lease: &Lease,
    smsc: &str,
    message_ids: &[String],
    at: Millis,
) -> StoreResult<OutboxMessage> {
    let id = lease.id.as_str();
    let keys = keys_of(message_ids);
    lock_keys(c, &keys.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()).await?;
    let Some(claim) = claim_of(c, "outbox", id).await? else {
        return Err(StoreError::NotFound(format!("outbox message {id}")));
    };
    let msg = get_message(c, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("outbox message {id}")))?;
    if claim != lease.token {
        // This copy went out all the same: its receipts must still find
        // the message; nothing else changes.
        record_keys(c, id, &keys, at).await?;
        return Err(StoreError::LeaseLost(format!(
            "outbox message {id} was claimed again (claim {claim}) after this holder's claim {}",
            lease.token
        )));
    }
    let mut ids = msg.message_ids.clone();
    for mid in message_ids {
        if !ids.contains(mid) {
            ids.push(mid.clone());
        }
    }
    let recorded = record_keys(c, id, &keys, at).await?;
    let mut state = match msg.state {
        MessageState::Delivered | MessageState::Undeliverable => msg.state,
        _ => MessageState::Submitted,
    };
    // Receipts that beat this call, oldest first, through the same rule.
    let parked = c
        .query(
            "SELECT DISTINCT p.id, p.state, p.at FROM parked_dlrs p
             JOIN parked_dlr_keys k ON k.parked_id = p.id
             WHERE k.key = ANY($1)
             ORDER BY p.at, p.id",
            &[&recorded],
        )
        .await
        .map_err(pg_err("reading parked receipts"))?;
    if !parked.is_empty() {
        let mut applied: Vec<i64> = Vec::with_capacity(parked.len());
        for r in &parked {
            let s: String = col(r, "parked_dlrs", "state")?;
            state = state.after_receipt(parse_state(&s)?);
            applied.push(col(r, "parked_dlrs", "id")?);
        }
        // Their keys go with them (ON DELETE CASCADE).
        c.execute("DELETE FROM parked_dlrs WHERE id = ANY($1)", &[&applied])
            .await
            .map_err(pg_err("applying parked receipts"))?;
    }
    c.execute(
        &format!(
            "UPDATE outbox SET state = $2, smsc = $3, message_ids = $4, lease_until = NULL, updated_at = $5,
                 text = CASE WHEN $2 IN {FINAL} THEN '' ELSE text END
             WHERE id = $1"
        ),
        &[&id, &state.as_str(), &smsc, &ids_json(&ids)?, &at],
    )
    .await
    .map_err(pg_err("recording a submit"))?;
    Ok(OutboxMessage {
        state,
        smsc: Some(smsc.to_string()),
        message_ids: ids,
        updated_at: at,
        text: if state.is_final() {
            String::new()
        } else {
            msg.text.clone()
        },
        ..msg
    })
}

async fn record_dlr(
    c: &impl GenericClient,
    keys: &[String],
    state: MessageState,
    at: Millis,
) -> StoreResult<DlrOutcome> {
    let mut unique: Vec<String> = Vec::with_capacity(keys.len());
    for k in keys.iter().filter(|k| !k.is_empty()) {
        if !unique.contains(k) {
            unique.push(k.clone());
        }
    }
    let Some(primary) = unique.first().cloned() else {
        return Ok(DlrOutcome::Parked);
    };
    lock_keys(c, &unique).await?;
    // Prefer a message whose primary key is the receipt's primary key
    // (same id format), then the most recently submitted.
    let target: Option<String> = c
        .query_opt(
            "SELECT outbox_id FROM message_keys WHERE key = ANY($1)
             ORDER BY (key = $2 AND is_primary = 1) DESC, created_at DESC, rowid DESC
             LIMIT 1",
            &[&unique, &primary],
        )
        .await
        .map_err(pg_err("correlating a receipt"))?
        .map(|r| r.get(0));
    if let Some(id) = target {
        let msg = c
            .query_opt(
                &format!("SELECT {COLS} FROM outbox WHERE id = $1 FOR UPDATE"),
                &[&id],
            )
            .await
            .map_err(pg_err("reading an outbox message"))?
            .as_ref()
            .map(message)
            .transpose()?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("message_keys: outbox message {id} is missing"))
            })?;
        let next = msg.state.after_receipt(state);
        if next == msg.state {
            return Ok(DlrOutcome::Applied(msg));
        }
        c.execute(
            &format!(
                "UPDATE outbox SET state = $2, lease_until = NULL, updated_at = $3,
                     text = CASE WHEN $2 IN {FINAL} THEN '' ELSE text END
                 WHERE id = $1"
            ),
            &[&id, &next.as_str(), &at],
        )
        .await
        .map_err(pg_err("applying a receipt"))?;
        return Ok(DlrOutcome::Applied(OutboxMessage {
            state: next,
            updated_at: at,
            text: if next.is_final() {
                String::new()
            } else {
                msg.text.clone()
            },
            ..msg
        }));
    }
    c.execute(
        "DELETE FROM parked_dlrs WHERE at < $1",
        &[&at.saturating_sub(PARKED_DLR_TTL_MS)],
    )
    .await
    .map_err(pg_err("dropping old parked receipts"))?;
    let parked_id: i64 = c
        .query_one(
            "INSERT INTO parked_dlrs (state, at) VALUES ($1, $2) RETURNING id",
            &[&state.as_str(), &at],
        )
        .await
        .map_err(pg_err("parking a receipt"))?
        .get(0);
    c.execute(
        "INSERT INTO parked_dlr_keys (key, parked_id) SELECT k, $2 FROM unnest($1::TEXT[]) AS k
         ON CONFLICT DO NOTHING",
        &[&unique, &parked_id],
    )
    .await
    .map_err(pg_err("parking a receipt's keys"))?;
    Ok(DlrOutcome::Parked)
}

fn sorted(rows: &[Row]) -> StoreResult<Vec<(i64, OutboxMessage)>> {
    let mut msgs = rows
        .iter()
        .map(|r| Ok((col::<i64>(r, "outbox", "rowid")?, message(r)?)))
        .collect::<StoreResult<Vec<_>>>()?;
    msgs.sort_by_key(|(seq, m)| (m.created_at, *seq));
    Ok(msgs)
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn claim_outbox(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<Claimed<OutboxMessage>>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let c = self.conn().await?;
        let until = now.saturating_add(lease_ms.max(0));
        let rows = c
            .query(
                &format!(
                    "UPDATE outbox
                     SET state = 'sending', attempts = attempts + 1, claim = claim + 1,
                         lease_until = $2, updated_at = $1
                     WHERE id IN (
                         SELECT id FROM outbox
                         WHERE state IN ('queued', 'sending')
                           AND ((state = 'queued' AND next_attempt_at <= $1)
                                OR (state = 'sending' AND COALESCE(lease_until, 0) <= $1))
                           AND expires_at >= $1
                         ORDER BY created_at, rowid
                         LIMIT $3
                         FOR UPDATE SKIP LOCKED)
                     RETURNING rowid, claim, lease_until, {COLS}"
                ),
                &[&now, &until, &i64::from(limit)],
            )
            .await
            .map_err(pg_err("claiming outbox messages"))?;
        returned_claims(&rows, "outbox", message, |m| m.created_at, |m| &m.id)
    }

    async fn extend_outbox(&self, leases: &[Lease], until: Millis) -> StoreResult<Vec<Extension>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.conn().await?;
        extend_leases(&c, "outbox", "state = 'sending'", leases, until).await
    }

    async fn mark_submitted(
        &self,
        lease: &Lease,
        smsc: &str,
        message_ids: &[String],
        at: Millis,
    ) -> StoreResult<OutboxMessage> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting"))?;
        match mark_submitted(&tx, lease, smsc, message_ids, at).await {
            Ok(m) => {
                tx.commit().await.map_err(pg_err("committing a submit"))?;
                Ok(m)
            }
            // The keys of a copy sent under a lost lease are kept.
            Err(StoreError::LeaseLost(m)) => {
                tx.commit().await.map_err(pg_err("committing a submit"))?;
                Err(StoreError::LeaseLost(m))
            }
            Err(e) => Err(e),
        }
    }

    async fn mark_failed(
        &self,
        lease: &Lease,
        error: &str,
        retry_at: Option<Millis>,
        at: Millis,
    ) -> StoreResult<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting"))?;
        let id = lease.id.as_str();
        let Some(claim) = claim_of(&tx, "outbox", id).await? else {
            return Err(StoreError::NotFound(format!("outbox message {id}")));
        };
        if claim != lease.token {
            return Err(StoreError::LeaseLost(format!(
                "outbox message {id} was claimed again (claim {claim}) after this holder's claim {}",
                lease.token
            )));
        }
        // Only an unfinished message changes: a receipt or an expiry that
        // came first stands.
        tx.execute(
            "UPDATE outbox
             SET state = CASE WHEN $3::BIGINT IS NULL THEN 'rejected' ELSE 'queued' END,
                 text = CASE WHEN $3::BIGINT IS NULL THEN '' ELSE text END,
                 next_attempt_at = COALESCE($3, next_attempt_at),
                 last_error = $2, lease_until = NULL, updated_at = $4
             WHERE id = $1 AND state IN ('queued', 'sending')",
            &[&id, &error, &retry_at, &at],
        )
        .await
        .map_err(pg_err("recording a failed submit"))?;
        tx.commit().await.map_err(pg_err("committing"))
    }

    async fn expire_outbox(&self, now: Millis) -> StoreResult<Vec<OutboxMessage>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                &format!(
                    "UPDATE outbox SET state = 'expired', lease_until = NULL, updated_at = $1, text = ''
                     WHERE state IN ('queued', 'sending') AND expires_at < $1
                     RETURNING rowid, {COLS}"
                ),
                &[&now],
            )
            .await
            .map_err(pg_err("expiring outbox messages"))?;
        Ok(sorted(&rows)?.into_iter().map(|(_, m)| m).collect())
    }

    async fn record_dlr(
        &self,
        keys: &[String],
        state: MessageState,
        at: Millis,
    ) -> StoreResult<DlrOutcome> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting"))?;
        let out = record_dlr(&tx, keys, state, at).await?;
        tx.commit().await.map_err(pg_err("committing a receipt"))?;
        Ok(out)
    }

    async fn get_message(&self, id: &str) -> StoreResult<Option<OutboxMessage>> {
        let c = self.conn().await?;
        get_message(&c, id).await
    }

    async fn messages_for_verification(
        &self,
        verification_id: &str,
    ) -> StoreResult<Vec<OutboxMessage>> {
        let c = self.conn().await?;
        c.query(
            &format!(
                "SELECT {COLS} FROM outbox WHERE verification_id = $1 ORDER BY created_at, rowid"
            ),
            &[&verification_id],
        )
        .await
        .map_err(pg_err("reading a verification's messages"))?
        .iter()
        .map(message)
        .collect()
    }

    async fn outbox_depth(&self) -> StoreResult<OutboxDepth> {
        let c = self.conn().await?;
        let rows = c
            .query(
                "SELECT state, COUNT(*) AS n FROM outbox
                 WHERE state IN ('queued', 'sending', 'submitted') GROUP BY state",
                &[],
            )
            .await
            .map_err(pg_err("counting the outbox"))?;
        let mut depth = OutboxDepth::default();
        for r in &rows {
            let state: String = col(r, "outbox", "state")?;
            let n: i64 = col(r, "outbox", "n")?;
            let n = u64::try_from(n)
                .map_err(|_| StoreError::Corrupt("outbox: negative count".into()))?;
            match parse_state(&state)? {
                MessageState::Queued => depth.queued = n,
                MessageState::Sending => depth.sending = n,
                MessageState::Submitted => depth.submitted = n,
                _ => {}
            }
        }
        Ok(depth)
    }
}

//! The SMS outbox and delivery receipts.

use super::queue::{claim_of, fenced, returned_claims, taken_over, Fenced};
use super::rows::{self, all, col, corrupt, exec, one, parse_state, to_json, write_err};
use super::SqliteStore;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{params, Connection};
use verigate_codecs::dlr::message_id_keys;

/// Parked receipts older than this (relative to a newly parked one) are
/// dropped: a receipt precedes its submit_sm_resp by moments, so an old one
/// belongs to a message whose id was never recorded (e.g. a sender died
/// after the SMSC accepted) and would otherwise stay forever.
const PARKED_DLR_TTL_MS: i64 = 24 * 60 * 60 * 1000;

pub(super) fn get_message(c: &Connection, id: &str) -> StoreResult<Option<OutboxMessage>> {
    one(
        c,
        concat!("SELECT ", outbox_cols!(), " FROM outbox WHERE id = ?1"),
        [id],
        rows::message,
    )
}

pub(super) fn insert_message(c: &Connection, m: &OutboxMessage) -> StoreResult<()> {
    c.prepare_cached(concat!(
        "INSERT INTO outbox (",
        outbox_cols!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    ))?
    .execute(params![
        m.id,
        m.verification_id,
        m.service,
        m.to,
        m.from,
        m.text,
        m.state.as_str(),
        m.attempts,
        m.next_attempt_at,
        m.expires_at,
        m.smsc,
        to_json(&m.message_ids)?,
        m.last_error,
        m.created_at,
        m.updated_at,
    ])
    .map_err(|e| write_err(e, &format!("outbox message {}", m.id)))?;
    Ok(())
}

/// Messages from an `UPDATE … RETURNING rowid AS seq, …` (whose row order
/// SQLite leaves unspecified), oldest first.
/// Final states of an SMS: its text (a code, a password) is blanked as it
/// reaches one.
pub(super) const FINAL_STATES: &str = "('delivered', 'undeliverable', 'rejected', 'expired')";

fn returned_messages(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<OutboxMessage>> {
    let mut msgs = all(c, sql, params, |row| {
        Ok((col::<i64>(row, "outbox", "seq")?, rows::message(row)?))
    })?;
    msgs.sort_by_key(|(seq, m)| (m.created_at, *seq));
    Ok(msgs.into_iter().map(|(_, m)| m).collect())
}

/// Records the correlation keys of `message_ids` for message `id`, returns them.
fn record_keys(
    c: &Connection,
    id: &str,
    message_ids: &[String],
    at: Millis,
) -> StoreResult<Vec<String>> {
    let mut keys: Vec<String> = Vec::new();
    for mid in message_ids {
        for (rank, key) in message_id_keys(mid).iter().enumerate() {
            c.prepare_cached(
                "INSERT INTO message_keys (key, outbox_id, is_primary, created_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key, outbox_id) DO UPDATE
                 SET is_primary = max(is_primary, excluded.is_primary)",
            )?
            .execute(params![key, id, rank == 0, at])
            .map_err(|e| write_err(e, &format!("message id {mid} of {id}")))?;
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
    }
    Ok(keys)
}

fn mark_submitted(
    c: &Connection,
    lease: &Lease,
    smsc: &str,
    message_ids: &[String],
    at: Millis,
) -> StoreResult<Fenced<OutboxMessage>> {
    let id = lease.id.as_str();
    let Some(msg) = get_message(c, id)? else {
        return Err(StoreError::NotFound(format!("outbox message {id}")));
    };
    let claim = claim_of(c, "outbox", id)?.unwrap_or(0);
    if claim != lease.token {
        // Another claim holds it now: this copy went out all the same, so
        // its receipts must still find the message; nothing else changes.
        record_keys(c, id, message_ids, at)?;
        return Ok(Err(taken_over("outbox message", lease, claim)));
    }
    // Ids accumulate: a message sent twice (a submit whose outcome was
    // unknown, retried) correlates receipts of both copies.
    let mut ids = msg.message_ids.clone();
    for mid in message_ids {
        if !ids.contains(mid) {
            ids.push(mid.clone());
        }
    }
    let keys = record_keys(c, id, message_ids, at)?;

    // An SMSC acceptance supersedes the sender-side verdicts (expired,
    // rejected, still queued); receipt outcomes stay.
    let mut state = match msg.state {
        MessageState::Delivered | MessageState::Undeliverable => msg.state,
        _ => MessageState::Submitted,
    };

    // Receipts that beat this call, oldest first, through the same rule
    // as live receipts.
    let parked = all(
        c,
        "SELECT DISTINCT p.id, p.state, p.at FROM parked_dlrs p
         JOIN parked_dlr_keys k ON k.parked_id = p.id
         WHERE k.key IN (SELECT value FROM json_each(?1))
         ORDER BY p.at, p.id",
        [to_json(&keys)?],
        |row| {
            let s: String = col(row, "parked_dlrs", "state")?;
            Ok((
                col::<i64>(row, "parked_dlrs", "id")?,
                parse_state("parked_dlrs", "state", &s)?,
            ))
        },
    )?;
    if !parked.is_empty() {
        let mut applied = Vec::with_capacity(parked.len());
        for (pid, dlr_state) in parked {
            state = state.after_receipt(dlr_state);
            applied.push(pid);
        }
        // Their keys go with them (ON DELETE CASCADE).
        exec(
            c,
            "DELETE FROM parked_dlrs WHERE id IN (SELECT value FROM json_each(?1))",
            [to_json(&applied)?],
        )?;
    }

    exec(
        c,
        &format!(
            "UPDATE outbox SET state = ?2, smsc = ?3, message_ids = ?4, lease_until = NULL, updated_at = ?5,
                 text = CASE WHEN ?2 IN {FINAL_STATES} THEN '' ELSE text END
             WHERE id = ?1"
        ),
        params![id, state.as_str(), smsc, to_json(&ids)?, at],
    )?;
    Ok(Ok(OutboxMessage {
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
    }))
}

fn record_dlr(
    c: &Connection,
    keys: &[String],
    state: MessageState,
    at: Millis,
) -> StoreResult<DlrOutcome> {
    let mut unique: Vec<&String> = Vec::with_capacity(keys.len());
    for k in keys.iter().filter(|k| !k.is_empty()) {
        if !unique.contains(&k) {
            unique.push(k);
        }
    }
    let Some(primary) = unique.first().copied() else {
        // An empty id correlates with nothing, now or later: there is
        // nothing to keep.
        return Ok(DlrOutcome::Parked);
    };
    let keys_json = to_json(&unique)?;

    // Prefer a message whose primary key is the receipt's primary key
    // (same id format), then the most recently submitted.
    let target = one(
        c,
        "SELECT outbox_id FROM message_keys
         WHERE key IN (SELECT value FROM json_each(?1))
         ORDER BY (key = ?2 AND is_primary) DESC, created_at DESC, rowid DESC
         LIMIT 1",
        params![keys_json, primary],
        |row| col::<String>(row, "message_keys", "outbox_id"),
    )?;

    if let Some(id) = target {
        let msg = get_message(c, &id)?.ok_or_else(|| {
            StoreError::Corrupt(format!("message_keys: outbox message {id} is missing"))
        })?;
        let next = msg.state.after_receipt(state);
        if next == msg.state {
            return Ok(DlrOutcome::Applied(msg));
        }
        // A final state blanks the text (a code, a password) in the same write.
        exec(
            c,
            &format!(
                "UPDATE outbox SET state = ?2, lease_until = NULL, updated_at = ?3,
                     text = CASE WHEN ?2 IN {FINAL_STATES} THEN '' ELSE text END
                 WHERE id = ?1"
            ),
            params![id, next.as_str(), at],
        )?;
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

    // Their keys go with them (ON DELETE CASCADE).
    exec(
        c,
        "DELETE FROM parked_dlrs WHERE at < ?1",
        [at.saturating_sub(PARKED_DLR_TTL_MS)],
    )?;
    let parked_id: i64 = one(
        c,
        "INSERT INTO parked_dlrs (state, at) VALUES (?1, ?2) RETURNING id",
        params![state.as_str(), at],
        |row| col(row, "parked_dlrs", "id"),
    )?
    .ok_or_else(|| StoreError::Bug("INSERT … RETURNING gave no row".into()))?;
    exec(
        c,
        "INSERT OR IGNORE INTO parked_dlr_keys (key, parked_id)
         SELECT value, ?2 FROM json_each(?1)",
        params![keys_json, parked_id],
    )?;
    Ok(DlrOutcome::Parked)
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn claim_outbox(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<Claimed<OutboxMessage>>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Waited to disk, though the claim itself could be lost harmlessly:
        // the flush also covers the inserts of the claimed messages, so no
        // code goes out for a start that is not yet on disk (and whose
        // caller may never get its 201). Claims are batched, so this costs
        // one shared flush per batch. Messages past their expiry are left to
        // `expire_outbox`: sending them would deliver a code that no longer
        // works.
        self.write(move |c| {
            returned_claims(
                c,
                "outbox",
                claim_due_sql!("outbox", "sending", outbox_cols!()),
                params![now, now.saturating_add(lease_ms.max(0)), limit],
                rows::message,
                |m| m.created_at,
                |m| &m.id,
            )
        })
        .await
    }

    async fn extend_outbox(&self, leases: &[Lease], until: Millis) -> StoreResult<Vec<Extension>> {
        self.extend_leases("outbox", "state = 'sending'", leases, until)
            .await
    }

    async fn mark_submitted(
        &self,
        lease: &Lease,
        smsc: &str,
        message_ids: &[String],
        at: Millis,
    ) -> StoreResult<OutboxMessage> {
        let (lease, smsc, ids) = (lease.clone(), smsc.to_owned(), message_ids.to_vec());
        fenced(
            self.write(move |c| mark_submitted(c, &lease, &smsc, &ids, at))
                .await,
        )
    }

    async fn mark_failed(
        &self,
        lease: &Lease,
        error: &str,
        retry_at: Option<Millis>,
        at: Millis,
    ) -> StoreResult<()> {
        let (lease, error) = (lease.clone(), error.to_owned());
        fenced(
            self.write(move |c| {
                let id = lease.id.as_str();
                let Some(claim) = claim_of(c, "outbox", id)? else {
                    return Err(StoreError::NotFound(format!("outbox message {id}")));
                };
                if claim != lease.token {
                    return Ok(Err(taken_over("outbox message", &lease, claim)));
                }
                // Only an unfinished message changes: a receipt or an
                // expiry that came first stands.
                exec(
                    c,
                    "UPDATE outbox
                     SET state = CASE WHEN ?3 IS NULL THEN 'rejected' ELSE 'queued' END,
                         text = CASE WHEN ?3 IS NULL THEN '' ELSE text END,
                         next_attempt_at = COALESCE(?3, next_attempt_at),
                         last_error = ?2, lease_until = NULL, updated_at = ?4
                     WHERE id = ?1 AND state IN ('queued', 'sending')",
                    params![id, error, retry_at, at],
                )?;
                Ok(Ok(()))
            })
            .await,
        )
    }

    async fn expire_outbox(&self, now: Millis) -> StoreResult<Vec<OutboxMessage>> {
        self.write(move |c| {
            returned_messages(
                c,
                concat!(
                    "UPDATE outbox SET state = 'expired', lease_until = NULL, updated_at = ?1, text = ''
                     WHERE state IN ('queued', 'sending') AND expires_at < ?1
                     RETURNING rowid AS seq, ",
                    outbox_cols!()
                ),
                [now],
            )
        })
        .await
    }

    async fn record_dlr(
        &self,
        keys: &[String],
        state: MessageState,
        at: Millis,
    ) -> StoreResult<DlrOutcome> {
        let keys = keys.to_vec();
        self.write(move |c| record_dlr(c, &keys, state, at)).await
    }

    async fn get_message(&self, id: &str) -> StoreResult<Option<OutboxMessage>> {
        let id = id.to_owned();
        self.read(move |c| get_message(c, &id)).await
    }

    async fn messages_for_verification(
        &self,
        verification_id: &str,
    ) -> StoreResult<Vec<OutboxMessage>> {
        let id = verification_id.to_owned();
        self.read(move |c| {
            all(
                c,
                concat!(
                    "SELECT ",
                    outbox_cols!(),
                    " FROM outbox WHERE verification_id = ?1 ORDER BY created_at, rowid"
                ),
                [id],
                rows::message,
            )
        })
        .await
    }

    async fn outbox_depth(&self) -> StoreResult<OutboxDepth> {
        self.read(|c| {
            let counts = all(
                c,
                "SELECT state, COUNT(*) AS n FROM outbox
                 WHERE state IN ('queued', 'sending', 'submitted') GROUP BY state",
                [],
                |row| {
                    let state: String = col(row, "outbox", "state")?;
                    let n: i64 = col(row, "outbox", "n")?;
                    let n = u64::try_from(n)
                        .map_err(|_| corrupt("outbox", "state", "negative count"))?;
                    Ok((parse_state("outbox", "state", &state)?, n))
                },
            )?;
            let mut depth = OutboxDepth::default();
            for (state, n) in counts {
                match state {
                    MessageState::Queued => depth.queued = n,
                    MessageState::Sending => depth.sending = n,
                    MessageState::Submitted => depth.submitted = n,
                    _ => {}
                }
            }
            Ok(depth)
        })
        .await
    }
}

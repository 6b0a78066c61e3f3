//! Verifications and their idempotency keys.

use super::calls::insert_call;
use super::outbox::insert_message;
use super::rows::{self, all, col, exec, one, write_err};
use super::webhooks::insert_webhook;
use super::SqliteStore;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{params, Connection};

pub(super) fn find_pending(
    c: &Connection,
    service: &str,
    to: &str,
) -> StoreResult<Option<Verification>> {
    one(
        c,
        concat!(
            "SELECT ",
            verification_cols!(),
            r#" FROM verifications WHERE service = ?1 AND "to" = ?2 AND status = 'pending'"#
        ),
        [service, to],
        rows::verification,
    )
}

fn get_idempotency(
    c: &Connection,
    service: &str,
    key: &str,
) -> StoreResult<Option<IdempotencyRecord>> {
    one(
        c,
        "SELECT request_hash, verification_id FROM idempotency_keys WHERE service = ?1 AND key = ?2",
        [service, key],
        |row| {
            Ok(IdempotencyRecord {
                service: service.to_string(),
                key: key.to_string(),
                request_hash: col(row, "idempotency_keys", "request_hash")?,
                verification_id: col(row, "idempotency_keys", "verification_id")?,
            })
        },
    )
}

fn insert_idempotency(c: &Connection, idem: &IdempotencyRecord, at: Millis) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO idempotency_keys (service, key, request_hash, verification_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        idem.service,
        idem.key,
        idem.request_hash,
        idem.verification_id,
        at
    ])
    .map_err(|e| {
        write_err(
            e,
            &format!("idempotency key {} of service {}", idem.key, idem.service),
        )
    })?;
    Ok(())
}

fn insert_dispatch(c: &Connection, d: &OwnedDispatch) -> StoreResult<()> {
    match d {
        OwnedDispatch::Sms(m) => insert_message(c, m),
        OwnedDispatch::Call(j) => insert_call(c, j),
    }
}

fn insert_verification(
    c: &Connection,
    v: &Verification,
    first: &OwnedDispatch,
    idem: Option<&IdempotencyRecord>,
) -> StoreResult<InsertOutcome> {
    // A replayed request wins over the pending check: the replay of a
    // start would otherwise meet its own pending verification.
    if let Some(idem) = idem {
        if let Some(seen) = get_idempotency(c, &idem.service, &idem.key)? {
            return Ok(InsertOutcome::IdempotentReplay(seen));
        }
    }
    if let Some(pending) = find_pending(c, &v.service, &v.to)? {
        return Ok(InsertOutcome::PendingExists(pending));
    }
    c.prepare_cached(concat!(
        "INSERT INTO verifications (",
        verification_cols!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?
    .execute(params![
        v.id,
        v.service,
        v.to,
        v.channel,
        v.locale,
        v.status.as_str(),
        v.code_hash,
        v.attempts,
        v.max_attempts,
        v.sends,
        v.created_at,
        v.expires_at,
        v.last_sent_at,
        v.updated_at,
    ])
    .map_err(|e| write_err(e, &format!("verification {}", v.id)))?;
    insert_dispatch(c, first)?;
    if let Some(idem) = idem {
        insert_idempotency(c, idem, v.created_at)?;
    }
    Ok(InsertOutcome::Created)
}

fn record_resend(c: &Connection, r: &OwnedResend, at: Millis) -> StoreResult<bool> {
    let done = exec(
        c,
        "UPDATE verifications
         SET sends = sends + 1, last_sent_at = ?2, code_hash = ?3, expires_at = ?4, updated_at = ?2
         WHERE id = ?1 AND status = 'pending' AND last_sent_at = ?5",
        params![
            r.verification_id,
            at,
            r.code_hash,
            r.expires_at,
            r.last_sent_at
        ],
    )?;
    if done == 0 {
        let exists = one(
            c,
            "SELECT 1 FROM verifications WHERE id = ?1",
            [&r.verification_id],
            |_| Ok(()),
        )?;
        return match exists {
            Some(()) => Ok(false),
            None => Err(StoreError::NotFound(format!(
                "verification {}",
                r.verification_id
            ))),
        };
    }
    insert_dispatch(c, &r.send)?;
    if let Some(idem) = &r.idempotency {
        insert_idempotency(c, idem, at)?;
    }
    Ok(true)
}

/// [`Resend`] with owned fields, to move onto the writer thread.
struct OwnedResend {
    verification_id: String,
    last_sent_at: Millis,
    code_hash: Vec<u8>,
    expires_at: Millis,
    send: OwnedDispatch,
    idempotency: Option<IdempotencyRecord>,
}

#[async_trait]
impl VerificationStore for SqliteStore {
    async fn insert_verification(
        &self,
        v: &Verification,
        first: Dispatch<'_>,
        idem: Option<&IdempotencyRecord>,
    ) -> StoreResult<InsertOutcome> {
        let (v, first, idem) = (v.clone(), first.to_owned(), idem.cloned());
        self.write(move |c| insert_verification(c, &v, &first, idem.as_ref()))
            .await
    }

    async fn get_idempotency(
        &self,
        service: &str,
        key: &str,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        let (service, key) = (service.to_owned(), key.to_owned());
        self.read(move |c| get_idempotency(c, &service, &key)).await
    }

    async fn get_verification(&self, id: &str) -> StoreResult<Option<Verification>> {
        let id = id.to_owned();
        self.read(move |c| {
            one(
                c,
                concat!(
                    "SELECT ",
                    verification_cols!(),
                    " FROM verifications WHERE id = ?1"
                ),
                [id],
                rows::verification,
            )
        })
        .await
    }

    async fn find_pending(&self, service: &str, to: &str) -> StoreResult<Option<Verification>> {
        let (service, to) = (service.to_owned(), to.to_owned());
        self.read(move |c| find_pending(c, &service, &to)).await
    }

    async fn change_status(&self, ch: &StatusChange<'_>, at: Millis) -> StoreResult<bool> {
        let (id, webhook) = (ch.id.to_owned(), ch.webhook.cloned());
        let (expect_status, expect_attempts) = (ch.expect_status, ch.expect_attempts);
        let (status, attempts) = (ch.status, ch.attempts);
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE verifications SET status = ?4, attempts = ?5, updated_at = ?6
                     WHERE id = ?1 AND status = ?2 AND attempts = ?3",
                )?
                .execute(params![
                    id,
                    expect_status.as_str(),
                    expect_attempts,
                    status.as_str(),
                    attempts,
                    at
                ])
                .map_err(|e| write_err(e, &format!("verification {id}")))?;
            if n == 1 {
                if let Some(w) = &webhook {
                    insert_webhook(c, w)?;
                }
            }
            Ok(n == 1)
        })
        .await
    }

    async fn pending_expired(&self, now: Millis, limit: u32) -> StoreResult<Vec<Verification>> {
        self.read(move |c| {
            all(
                c,
                concat!(
                    "SELECT ",
                    verification_cols!(),
                    " FROM verifications WHERE status = 'pending' AND expires_at <= ?1
                     ORDER BY expires_at LIMIT ?2"
                ),
                params![now, limit],
                rows::verification,
            )
        })
        .await
    }

    async fn record_resend(&self, r: &Resend<'_>, at: Millis) -> StoreResult<bool> {
        let r = OwnedResend {
            verification_id: r.verification_id.to_owned(),
            last_sent_at: r.last_sent_at,
            code_hash: r.code_hash.to_vec(),
            expires_at: r.expires_at,
            send: r.send.to_owned(),
            idempotency: r.idempotency.cloned(),
        };
        self.write(move |c| record_resend(c, &r, at)).await
    }

    async fn record_idempotency(&self, rec: &IdempotencyRecord, at: Millis) -> StoreResult<()> {
        let rec = rec.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT OR IGNORE INTO idempotency_keys (service, key, request_hash, verification_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![rec.service, rec.key, rec.request_hash, rec.verification_id, at])
            .map_err(|e| {
                write_err(e, &format!("idempotency key {} of service {}", rec.key, rec.service))
            })?;
            Ok(())
        })
        .await
    }

    async fn forget_idempotency_keys(&self, before: Millis) -> StoreResult<u64> {
        // Not waited to disk: a lost run is done again at the next sweep.
        self.write_volatile(move |c| {
            Ok(exec(
                c,
                "DELETE FROM idempotency_keys WHERE created_at < ?1",
                [before],
            )? as u64)
        })
        .await
    }
}

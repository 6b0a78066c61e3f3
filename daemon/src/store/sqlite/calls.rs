//! The call queue.

use super::outbox::insert_message;
use super::queue::{claim_of, fenced, returned_claims, taken_over};
use super::rows::{self, all, col, exec, one, write_err};
use super::SqliteStore;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{params, Connection};

pub(super) fn insert_call(c: &Connection, j: &CallJob) -> StoreResult<()> {
    c.prepare_cached(concat!(
        "INSERT INTO calls (",
        call_cols!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?
    .execute(params![
        j.id,
        j.verification_id,
        j.service,
        j.kind.as_str(),
        j.to,
        j.caller,
        j.code,
        j.fallback_text,
        j.locale,
        j.state.as_str(),
        j.sip_code,
        j.detail,
        j.attempts,
        j.next_attempt_at,
        j.expires_at,
        j.created_at,
        j.updated_at,
    ])
    .map_err(|e| write_err(e, &format!("call {}", j.id)))?;
    Ok(())
}

/// Calls from an `UPDATE … RETURNING rowid AS seq, …`, oldest first.
fn returned_calls(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<CallJob>> {
    let mut calls = all(c, sql, params, |row| {
        Ok((col::<i64>(row, "calls", "seq")?, rows::call(row)?))
    })?;
    calls.sort_by_key(|(seq, j)| (j.created_at, *seq));
    Ok(calls.into_iter().map(|(_, j)| j).collect())
}

pub(super) fn get_call(c: &Connection, id: &str) -> StoreResult<Option<CallJob>> {
    one(
        c,
        concat!("SELECT ", call_cols!(), " FROM calls WHERE id = ?1"),
        [id],
        rows::call,
    )
}

fn call_by_request(
    c: &Connection,
    service: &str,
    key: &[u8],
    since: Millis,
) -> StoreResult<Option<CallJob>> {
    one(
        c,
        concat!(
            "SELECT ",
            call_cols!(),
            " FROM calls WHERE service = ?1 AND request_key = ?2 AND created_at >= ?3"
        ),
        params![service, key, since],
        rows::call,
    )
}

#[async_trait]
impl CallStore for SqliteStore {
    async fn enqueue_call(
        &self,
        call: &CallJob,
        request: Option<RequestKey<'_>>,
    ) -> StoreResult<Option<CallJob>> {
        let call = call.clone();
        let request = request.map(|r| (r.key.to_vec(), r.since));
        self.write(move |c| {
            let Some((key, since)) = request else {
                insert_call(c, &call)?;
                return Ok(None);
            };
            if let Some(first) = call_by_request(c, &call.service, &key, since)? {
                return Ok(Some(first));
            }
            // An older call with the key gives it up (the key is unique).
            exec(
                c,
                "UPDATE calls SET request_key = NULL
                 WHERE service = ?1 AND request_key = ?2 AND created_at < ?3",
                params![call.service, key, since],
            )?;
            insert_call(c, &call)?;
            c.prepare_cached("UPDATE calls SET request_key = ?2 WHERE id = ?1")?
                .execute(params![call.id, key])?;
            Ok(None)
        })
        .await
    }

    async fn find_call_by_request(
        &self,
        service: &str,
        request: RequestKey<'_>,
    ) -> StoreResult<Option<CallJob>> {
        let (service, key, since) = (service.to_owned(), request.key.to_vec(), request.since);
        self.read(move |c| call_by_request(c, &service, &key, since))
            .await
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
        // Durable like claim_outbox: no call goes out for a start whose
        // insert could still be lost.
        self.write(move |c| {
            // A due call whose verification closed meanwhile (a retry that
            // landed after the cancel, or a call whose worker died) is
            // never placed: cancelled here, code forgotten.
            exec(
                c,
                "UPDATE calls SET state = 'canceled', code = NULL, fallback_text = NULL, lease_until = NULL,
                     detail = 'the verification was closed first', updated_at = ?1
                 WHERE state IN ('queued', 'calling')
                   AND ((state = 'queued' AND next_attempt_at <= ?1)
                        OR (state = 'calling' AND COALESCE(lease_until, 0) <= ?1))
                   AND verification_id IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM verifications v
                                   WHERE v.id = calls.verification_id AND v.status = 'pending')",
                [now],
            )?;
            returned_claims(
                c,
                "calls",
                claim_due_sql!("calls", "calling", call_cols!()),
                params![now, now.saturating_add(lease_ms.max(0)), limit],
                rows::call,
                |j| j.created_at,
                |j| &j.id,
            )
        })
        .await
    }

    async fn extend_calls(&self, leases: &[Lease], until: Millis) -> StoreResult<Vec<Extension>> {
        self.extend_leases("calls", "state = 'calling'", leases, until)
            .await
    }

    async fn finish_call(&self, lease: &Lease, r: &CallResult, at: Millis) -> StoreResult<CallJob> {
        let (lease, r) = (lease.clone(), r.clone());
        let id = lease.id.clone();
        let retry = r.state == CallState::Queued;
        if r.state == CallState::Calling || (retry && r.retry_at.is_none()) {
            return Err(StoreError::Bug(format!(
                "call {id}: {} is not an outcome",
                r.state.as_str()
            )));
        }
        fenced(self.write(move |c| {
            let Some(claim) = claim_of(c, "calls", &id)? else {
                return Err(StoreError::NotFound(format!("call {id}")));
            };
            if claim != lease.token {
                return Ok(Err(taken_over("call", &lease, claim)));
            }
            // Only an unfinished call changes (an expiry or a cancel that
            // came first stands).
            let changed = exec(
                c,
                "UPDATE calls
                 SET state = ?2, sip_code = ?3, detail = ?4,
                     next_attempt_at = COALESCE(?5, next_attempt_at),
                     attempts = CASE WHEN ?6 AND ?8 AND attempts > 0 THEN attempts - 1 ELSE attempts END,
                     code = CASE WHEN ?6 THEN code ELSE NULL END,
                     fallback_text = CASE WHEN ?6 THEN fallback_text ELSE NULL END,
                     lease_until = NULL, updated_at = ?7
                 WHERE id = ?1 AND state IN ('queued', 'calling')",
                params![
                    id,
                    r.state.as_str(),
                    r.sip_code,
                    r.detail,
                    r.retry_at,
                    retry,
                    at,
                    r.not_placed,
                ],
            )?;
            if changed == 1 && !retry {
                if let Some(m) = &r.fallback {
                    insert_message(c, m)?;
                }
            }
            get_call(c, &id)?
                .map(Ok)
                .ok_or_else(|| StoreError::NotFound(format!("call {id}")))
        })
        .await)
    }

    async fn cancel_calls_for_verification(
        &self,
        verification_id: &str,
        at: Millis,
    ) -> StoreResult<Vec<CallJob>> {
        let vid = verification_id.to_owned();
        self.write(move |c| {
            // The worker of a `calling` call hangs up and records what the
            // network said; a queued one is never placed.
            let calling = all(
                c,
                concat!(
                    "SELECT ",
                    call_cols!(),
                    " FROM calls WHERE verification_id = ?1 AND state = 'calling' ORDER BY created_at, rowid"
                ),
                [&vid],
                rows::call,
            )?;
            exec(
                c,
                "UPDATE calls SET state = 'canceled', code = NULL, fallback_text = NULL, lease_until = NULL,
                     detail = 'the verification was closed first', updated_at = ?2
                 WHERE verification_id = ?1 AND state = 'queued'",
                params![vid, at],
            )?;
            Ok(calling)
        })
        .await
    }

    async fn expire_calls(&self, now: Millis) -> StoreResult<Vec<CallJob>> {
        self.write(move |c| {
            returned_calls(
                c,
                concat!(
                    "UPDATE calls SET state = 'expired', code = NULL, fallback_text = NULL,
                         lease_until = NULL, updated_at = ?1
                     WHERE state IN ('queued', 'calling') AND expires_at < ?1
                       AND (state = 'queued' OR COALESCE(lease_until, 0) <= ?1)
                     RETURNING rowid AS seq, ",
                    call_cols!()
                ),
                [now],
            )
        })
        .await
    }

    async fn get_call(&self, id: &str) -> StoreResult<Option<CallJob>> {
        let id = id.to_owned();
        self.read(move |c| get_call(c, &id)).await
    }

    async fn calls_for_verification(&self, verification_id: &str) -> StoreResult<Vec<CallJob>> {
        let vid = verification_id.to_owned();
        self.read(move |c| {
            all(
                c,
                concat!(
                    "SELECT ",
                    call_cols!(),
                    " FROM calls WHERE verification_id = ?1 ORDER BY created_at, rowid"
                ),
                [vid],
                rows::call,
            )
        })
        .await
    }

    async fn flash_clis_in_use(&self, to: &str, now: Millis) -> StoreResult<Vec<String>> {
        let to = to.to_owned();
        self.read(move |c| {
            all(
                c,
                r#"SELECT DISTINCT calls.caller AS caller FROM calls
                   JOIN verifications v ON v.id = calls.verification_id
                   WHERE calls."to" = ?1 AND calls.kind = 'flash_call' AND calls.caller IS NOT NULL
                     AND v.status = 'pending' AND v.expires_at > ?2"#,
                params![to, now],
                |row| col(row, "calls", "caller"),
            )
        })
        .await
    }
}

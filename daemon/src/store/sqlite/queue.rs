//! What the three durable queues (outbox, calls, webhook jobs) share:
//! claims counted in a `claim` column, leases extended while held, and
//! fenced writes that refuse a holder whose claim was taken over.

use super::rows::{all, col, exec, one};
use crate::store::{Claimed, Extension, Lease, Millis, StoreError, StoreResult};
use rusqlite::{params, Connection};

/// What a fenced write found: done, or refused because another claim
/// took the job (the write's own changes, if any, are kept).
pub(super) type Fenced<T> = Result<T, TakenOver>;

/// A fenced write's refusal: the job was claimed again after the holder's
/// claim (what it says becomes [`StoreError::LeaseLost`]).
#[derive(Debug)]
pub(super) struct TakenOver(String);

/// The claim number a queue row is at, if the row exists.
pub(super) fn claim_of(c: &Connection, table: &str, id: &str) -> StoreResult<Option<i64>> {
    // `table` is one of ours, never input.
    one(
        c,
        &format!("SELECT claim FROM {table} WHERE id = ?1"),
        [id],
        |row| col(row, table, "claim"),
    )
}

/// The refusal of a holder whose claim was taken over.
pub(super) fn taken_over(what: &str, lease: &Lease, now_at: i64) -> TakenOver {
    TakenOver(format!(
        "{what} {} was claimed again (claim {now_at}) after this holder's claim {}",
        lease.id, lease.token
    ))
}

/// Claimed jobs from an `UPDATE … RETURNING rowid AS seq, claim,
/// lease_until, …` (whose row order SQLite leaves unspecified), oldest first.
pub(super) fn returned_claims<T>(
    c: &Connection,
    table: &str,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&rusqlite::Row<'_>) -> StoreResult<T>,
    order: impl Fn(&T) -> Millis,
    id: impl Fn(&T) -> &str,
) -> StoreResult<Vec<Claimed<T>>> {
    let mut jobs = all(c, sql, params, |row| {
        let job = decode(row)?;
        let lease = Lease {
            id: id(&job).to_string(),
            token: col(row, table, "claim")?,
            until: col(row, table, "lease_until")?,
        };
        Ok((col::<i64>(row, table, "seq")?, Claimed { job, lease }))
    })?;
    jobs.sort_by_key(|(seq, j)| (order(&j.job), *seq));
    Ok(jobs.into_iter().map(|(_, j)| j).collect())
}

impl super::SqliteStore {
    /// Extends the leases still held on `table` (`held`: the condition of a
    /// row being worked on); one answer per lease. Not waited to disk: a
    /// lost extension is made again at the next one.
    pub(super) async fn extend_leases(
        &self,
        table: &'static str,
        held: &'static str,
        leases: &[Lease],
        until: Millis,
    ) -> StoreResult<Vec<Extension>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let leases = leases.to_vec();
        self.write_volatile(move |c| extend_leases(c, table, held, &leases, until))
            .await
    }
}

/// Extends the leases of `table` whose row is still `held` under their
/// claim; of the others, tells a row finished under the lease's claim (or
/// gone) from one a later claim took.
fn extend_leases(
    c: &Connection,
    table: &str,
    held: &str,
    leases: &[Lease],
    until: Millis,
) -> StoreResult<Vec<Extension>> {
    let sql =
        format!("UPDATE {table} SET lease_until = ?3 WHERE id = ?1 AND claim = ?2 AND {held}");
    leases
        .iter()
        .map(|l| {
            if exec(c, &sql, params![l.id, l.token, until])? == 1 {
                return Ok(Extension::Held);
            }
            Ok(match claim_of(c, table, &l.id)? {
                Some(claim) if claim != l.token => Extension::TakenOver,
                _ => Extension::Finished,
            })
        })
        .collect()
}

/// A fenced answer: the value, or `LeaseLost`.
pub(super) fn fenced<T>(r: StoreResult<Fenced<T>>) -> StoreResult<T> {
    r?.map_err(|t| StoreError::LeaseLost(t.0))
}

//! What the durable queues share on PostgreSQL: claims with `FOR UPDATE
//! SKIP LOCKED` (instances claiming at once take different jobs, none
//! waits on another's), a `claim` counter as the fence, leases extended
//! while held, and fenced writes that lock the row and refuse a holder whose
//! claim was taken over.

use super::pg_err;
use crate::store::{Extension, Lease, Millis, StoreError, StoreResult};
use deadpool_postgres::GenericClient;

/// The claim number a queue row is at (locked until the transaction ends),
/// if the row exists.
pub(super) async fn claim_of(
    c: &impl GenericClient,
    table: &str,
    id: &str,
) -> StoreResult<Option<i64>> {
    // `table` is one of ours, never input.
    Ok(c.query_opt(
        &format!("SELECT claim FROM {table} WHERE id = $1 FOR UPDATE"),
        &[&id],
    )
    .await
    .map_err(pg_err(format!("reading a {table} claim")))?
    .map(|r| r.get(0)))
}

/// Whether `lease` still holds its row: Ok(true) held, Ok(false) the row
/// is gone (finished before), Err(LeaseLost) a later claim took it.
pub(super) async fn held(
    c: &impl GenericClient,
    table: &str,
    what: &str,
    lease: &Lease,
) -> StoreResult<bool> {
    match claim_of(c, table, &lease.id).await? {
        None => Ok(false),
        Some(claim) if claim != lease.token => Err(StoreError::LeaseLost(format!(
            "{what} {} was claimed again (claim {claim}) after this holder's claim {}",
            lease.id, lease.token
        ))),
        Some(_) => Ok(true),
    }
}

/// Extends the leases of `table` whose row is still `held_if` under their
/// claim; of the others, tells a row finished under the lease's claim (or
/// gone) from one a later claim took.
pub(super) async fn extend_leases(
    c: &impl GenericClient,
    table: &str,
    held_if: &str,
    leases: &[Lease],
    until: Millis,
) -> StoreResult<Vec<Extension>> {
    let sql =
        format!("UPDATE {table} SET lease_until = $3 WHERE id = $1 AND claim = $2 AND {held_if}");
    let mut out = Vec::with_capacity(leases.len());
    for l in leases {
        let n = c
            .execute(&sql, &[&l.id, &l.token, &until])
            .await
            .map_err(pg_err(format!("extending a {table} lease")))?;
        if n == 1 {
            out.push(Extension::Held);
            continue;
        }
        let claim: Option<i64> = c
            .query_opt(
                &format!("SELECT claim FROM {table} WHERE id = $1"),
                &[&l.id],
            )
            .await
            .map_err(pg_err(format!("reading a {table} claim")))?
            .map(|r| r.get(0));
        out.push(match claim {
            Some(claim) if claim != l.token => Extension::TakenOver,
            _ => Extension::Finished,
        });
    }
    Ok(out)
}

/// Claimed jobs from an `UPDATE … RETURNING rowid, claim, lease_until, …`
/// (whose row order PostgreSQL leaves unspecified), ordered by `order`
/// then insertion.
pub(super) fn returned_claims<T>(
    rows: &[tokio_postgres::Row],
    table: &str,
    decode: impl Fn(&tokio_postgres::Row) -> StoreResult<T>,
    order: impl Fn(&T) -> Millis,
    id: impl Fn(&T) -> &str,
) -> StoreResult<Vec<crate::store::Claimed<T>>> {
    use super::rows::col;
    let mut jobs = rows
        .iter()
        .map(|r| {
            let job = decode(r)?;
            let lease = Lease {
                id: id(&job).to_string(),
                token: col(r, table, "claim")?,
                until: col(r, table, "lease_until")?,
            };
            Ok((
                col::<i64>(r, table, "rowid")?,
                crate::store::Claimed { job, lease },
            ))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    jobs.sort_by_key(|(seq, j)| (order(&j.job), *seq));
    Ok(jobs.into_iter().map(|(_, j)| j).collect())
}

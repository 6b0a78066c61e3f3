//! `verigate store copy`: a stopped lab's SQLite database onto an empty
//! PostgreSQL schema, table by table in dependency order, in one
//! transaction (all or nothing), identities carried over and their
//! sequences moved past them.

use super::{pg_err, PostgresStore};
use crate::store::{StoreError, StoreResult};
use rusqlite::types::ValueRef;
use tokio_postgres::types::ToSql;

/// The tables, parents before the tables that refer to them.
const TABLES: &[&str] = &[
    "services",
    "api_keys",
    "verifications",
    "idempotency_keys",
    "outbox",
    "message_keys",
    "parked_dlrs",
    "parked_dlr_keys",
    "rate_windows",
    "webhook_jobs",
    "accounts",
    "sessions",
    "audit_events",
    "calls",
    "mo_logins",
    "mo_messages",
    "mo_parts",
    "registry_apps",
    "bindings",
    "number_recycles",
    "registry_moves",
    "app_bindings",
    "registry_events_seen",
    "subscribers",
    "relay_keys",
    "relay_counters",
    "tx_sessions",
    "tx_transactions",
];

/// Rows read from SQLite per batch.
const BATCH: i64 = 5_000;

/// One value as read from SQLite.
#[derive(Debug, Clone)]
enum Val {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// Rows copied, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    /// (table, rows).
    pub tables: Vec<(String, u64)>,
}

fn read_batch(
    db: &rusqlite::Connection,
    table: &str,
    cols: &[String],
    after: i64,
) -> StoreResult<Vec<(i64, Vec<Val>)>> {
    let wanted: Vec<String> = cols
        .iter()
        .map(|c| {
            if c == "rowid" {
                "rowid".into()
            } else {
                format!("\"{c}\"")
            }
        })
        .collect();
    let sql = format!(
        "SELECT rowid, {} FROM {table} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        wanted.join(", ")
    );
    let mut st = db.prepare(&sql)?;
    let mut rows = st.query(rusqlite::params![after, BATCH])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let rowid: i64 = r.get(0)?;
        let mut vals = Vec::with_capacity(cols.len());
        for i in 0..cols.len() {
            vals.push(match r.get_ref(i + 1)? {
                ValueRef::Null => Val::Null,
                ValueRef::Integer(n) => Val::Int(n),
                ValueRef::Real(f) => Val::Text(f.to_string()),
                ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Val::Bytes(b.to_vec()),
            });
        }
        out.push((rowid, vals));
    }
    Ok(out)
}

/// A SQLite value as a parameter of a PostgreSQL column of `pg_type`.
fn param(v: &Val, pg_type: &str, at: &str) -> StoreResult<Box<dyn ToSql + Sync + Send>> {
    let wrong = || StoreError::Corrupt(format!("{at}: a {v:?} cannot go into a {pg_type} column"));
    Ok(match (pg_type, v) {
        ("bigint", Val::Null) => Box::new(None::<i64>),
        ("bigint", Val::Int(n)) => Box::new(*n),
        ("text", Val::Null) => Box::new(None::<String>),
        ("text", Val::Text(t)) => Box::new(t.clone()),
        ("text", Val::Int(n)) => Box::new(n.to_string()),
        ("bytea", Val::Null) => Box::new(None::<Vec<u8>>),
        ("bytea", Val::Bytes(b)) => Box::new(b.clone()),
        ("bytea", Val::Text(t)) => Box::new(t.clone().into_bytes()),
        _ => return Err(wrong()),
    })
}

/// Copies the SQLite database at `path` into `pg`'s (empty) schema.
pub async fn from_sqlite(path: &str, pg: &PostgresStore) -> StoreResult<Copied> {
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| StoreError::database(format!("cannot open {path}"), e))?;
    let mut c = pg.conn().await?;
    let tx = c.transaction().await.map_err(pg_err("starting the copy"))?;
    for t in TABLES {
        let n: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .await
            .map_err(pg_err(format!("counting {t}")))?
            .get(0);
        if n > 0 {
            return Err(StoreError::Conflict(format!(
                "the PostgreSQL schema holds data already ({n} rows in {t}): copy into an empty one"
            )));
        }
    }
    let mut copied = Copied::default();
    for t in TABLES {
        let cols: Vec<(String, String, bool)> = tx
            .query(
                "SELECT column_name::text, data_type::text, is_identity = 'YES'
                 FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                &[t],
            )
            .await
            .map_err(pg_err(format!("reading {t}'s columns")))?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let names: Vec<String> = cols.iter().map(|c| c.0.clone()).collect();
        let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        let marks: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let insert = tx
            .prepare(&format!(
                "INSERT INTO {t} ({}) OVERRIDING SYSTEM VALUE VALUES ({})",
                quoted.join(", "),
                marks.join(", ")
            ))
            .await
            .map_err(pg_err(format!("preparing {t}")))?;
        let mut after = 0i64;
        let mut rows = 0u64;
        loop {
            let batch = read_batch(&db, t, &names, after)?;
            let Some(last) = batch.last().map(|b| b.0) else {
                break;
            };
            for (rowid, vals) in &batch {
                let at = format!("{t} row {rowid}");
                let params = cols
                    .iter()
                    .zip(vals)
                    .map(|((_, ty, _), v)| param(v, ty, &at))
                    .collect::<StoreResult<Vec<_>>>()?;
                let refs: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                tx.execute(&insert, &refs)
                    .await
                    .map_err(pg_err(format!("copying {at}")))?;
                rows += 1;
            }
            after = last;
        }
        // Identities continue after the copied rows.
        for (name, _, identity) in &cols {
            if *identity {
                tx.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{t}', '{name}'),
                                       COALESCE((SELECT MAX(\"{name}\") FROM {t}), 0) + 1, false)"
                    ),
                    &[],
                )
                .await
                .map_err(pg_err(format!("moving {t}.{name}'s sequence")))?;
            }
        }
        copied.tables.push((t.to_string(), rows));
    }
    tx.commit().await.map_err(pg_err("committing the copy"))?;
    Ok(copied)
}

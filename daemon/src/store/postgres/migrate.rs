//! Migrations of the PostgreSQL schema: numbered scripts, each applied
//! once in its own transaction and recorded in `verigate_migrations`. A
//! transaction-scoped advisory lock serializes instances that start at the
//! same moment: the second waits, then finds the work done.

use super::{pg_err, PostgresStore};
use crate::store::{StoreError, StoreResult};

/// The scripts, in order: (version, name, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "schema (SQLite migrations 0001-0014)",
    include_str!("../../../migrations/postgres/0001_schema.sql"),
)];

/// The advisory lock key of migrations ("verigate" in ASCII, as an i64).
const LOCK: i64 = 0x7665_7269_6761_7465;

/// The schema version this build writes.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The version applied (0 on an empty database).
pub(super) async fn applied(c: &impl deadpool_postgres::GenericClient) -> StoreResult<i64> {
    let exists: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema()
                                AND tablename = 'verigate_migrations')",
            &[],
        )
        .await
        .map_err(pg_err("reading the schema version"))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i64> = c
        .query_one("SELECT max(version) FROM verigate_migrations", &[])
        .await
        .map_err(pg_err("reading the schema version"))?
        .get(0);
    Ok(v.unwrap_or(0))
}

/// Applies what is missing; refuses a database newer than this build.
pub(super) async fn run(store: &PostgresStore) -> StoreResult<()> {
    let mut c = store.conn().await?;
    let tx = c
        .transaction()
        .await
        .map_err(pg_err("starting the migrations"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(pg_err("waiting for another instance's migrations"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS verigate_migrations (
             version    BIGINT NOT NULL PRIMARY KEY,
             name       TEXT   NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await
    .map_err(pg_err("making verigate_migrations"))?;
    let have = applied(&tx).await?;
    if have > latest() {
        return Err(StoreError::Unavailable(format!(
            "the database is at schema version {have}, newer than this build's {}: upgrade verigate",
            latest()
        )));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > have) {
        tx.batch_execute(sql)
            .await
            .map_err(pg_err(format!("migration {version} ({name}) failed")))?;
        tx.execute(
            "INSERT INTO verigate_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(pg_err("recording a migration"))?;
    }
    tx.commit()
        .await
        .map_err(pg_err("committing the migrations"))
}

//! Schema migrations (`daemon/migrations/sqlite/`, embedded in the binary).
//! The applied version is SQLite's `user_version`; each migration runs in
//! its own transaction together with the version bump, so a crash leaves
//! the schema at a whole version.

use rusqlite::{Connection, TransactionBehavior};

use crate::store::{StoreError, StoreResult};

/// Version, name and SQL of every migration, in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "prune_indexes",
        include_str!("../../../migrations/sqlite/0002_prune_indexes.sql"),
    ),
    (
        3,
        "calls",
        include_str!("../../../migrations/sqlite/0003_calls.sql"),
    ),
    (
        4,
        "gateway_requests",
        include_str!("../../../migrations/sqlite/0004_gateway_requests.sql"),
    ),
    (
        5,
        "mo_login",
        include_str!("../../../migrations/sqlite/0005_mo_login.sql"),
    ),
    (
        6,
        "claims",
        include_str!("../../../migrations/sqlite/0006_claims.sql"),
    ),
    (
        7,
        "retention",
        include_str!("../../../migrations/sqlite/0007_retention.sql"),
    ),
    (
        8,
        "registry",
        include_str!("../../../migrations/sqlite/0008_registry.sql"),
    ),
    (
        9,
        "deliveries",
        include_str!("../../../migrations/sqlite/0009_deliveries.sql"),
    ),
    (
        10,
        "registry moves",
        include_str!("../../../migrations/sqlite/0010_registry_moves.sql"),
    ),
    (
        11,
        "app bindings",
        include_str!("../../../migrations/sqlite/0011_app_bindings.sql"),
    ),
    (
        12,
        "subscribers",
        include_str!("../../../migrations/sqlite/0012_subscribers.sql"),
    ),
    (
        13,
        "relay keys",
        include_str!("../../../migrations/sqlite/0013_relay_keys.sql"),
    ),
    (
        14,
        "relay sessions and transactions",
        include_str!("../../../migrations/sqlite/0014_tx_relay.sql"),
    ),
];

/// The schema version this build writes.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

fn failed(what: &str, e: rusqlite::Error) -> StoreError {
    StoreError::database(format!("migration failed: {what}"), e)
}

/// The applied version. Databases made before verigate kept it in
/// `user_version` recorded their migrations in `_sqlx_migrations`.
fn applied(c: &Connection) -> rusqlite::Result<i64> {
    let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if v != 0 {
        return Ok(v);
    }
    let legacy: bool = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
        [],
        |r| r.get(0),
    )?;
    if !legacy {
        return Ok(0);
    }
    c.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
        [],
        |r| r.get(0),
    )
}

/// Applies the migrations the database lacks. Refuses a database written
/// by a newer verigate (its schema may mean things this build ignores).
pub fn run(c: &mut Connection) -> StoreResult<()> {
    for &(version, name, sql) in MIGRATIONS {
        // Re-read inside the write lock: another instance may be migrating.
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| failed("cannot lock the database", e))?;
        let current = applied(&tx).map_err(|e| failed("cannot read the schema version", e))?;
        if current > latest() {
            return Err(StoreError::database_failed(format!(
                "the database has schema version {current}, newer than this verigate knows ({}); use a newer verigate",
                latest()
            )));
        }
        if current >= version {
            continue;
        }
        tx.execute_batch(sql)
            .map_err(|e| failed(&format!("{version:04}_{name}"), e))?;
        tx.pragma_update(None, "user_version", version)
            .map_err(|e| failed("cannot record the schema version", e))?;
        tx.commit()
            .map_err(|e| failed(&format!("{version:04}_{name}"), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(c: &Connection) -> i64 {
        c.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_new_database_gets_every_migration_once() {
        let mut c = Connection::open_in_memory().unwrap();
        run(&mut c).unwrap();
        assert_eq!(version(&c), latest());
        run(&mut c).expect("running again changes nothing");
        assert_eq!(version(&c), latest());
    }

    #[test]
    fn a_database_migrated_by_earlier_verigate_builds_is_adopted() {
        // Earlier builds (sqlx) recorded migrations in _sqlx_migrations and
        // left user_version at 0; running 0001 again would fail on its tables.
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch(MIGRATIONS[0].2).unwrap();
        c.execute_batch(
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, success BOOLEAN NOT NULL);
             INSERT INTO _sqlx_migrations VALUES (1, TRUE);",
        )
        .unwrap();
        run(&mut c).expect("adopts the sqlx history");
        assert_eq!(version(&c), latest(), "the missing 0002 was applied");
    }

    #[test]
    fn a_database_from_a_newer_verigate_is_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", latest() + 1).unwrap();
        let e = run(&mut c).unwrap_err().to_string();
        assert!(e.contains("newer than this verigate"), "{e}");
    }
}

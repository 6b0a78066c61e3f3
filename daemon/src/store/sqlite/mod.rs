//! SQLite backend (embedded default): WAL mode, migrations in
//! `daemon/migrations/sqlite/`.
//!
//! Every store operation runs whole on a thread that owns its connection
//! ([`engine`]): writes on the one writer, which commits everything queued
//! meanwhile as one transaction, reads on reader threads. A write is
//! answered only once it is committed and, unless noted (rate-limit hits,
//! webhook claims, pruning), once a shared fsync of the WAL covers it ([`wal_sync`]), so a
//! start is acknowledged only after it is stored, across `kill -9` and the
//! machine going down.
//!
//! Each write runs inside a `BEGIN IMMEDIATE` transaction, so its
//! read-then-write steps cannot interleave with another process sharing
//! the file; another instance on the same file waits for the lock
//! (busy timeout).

#[macro_use]
mod columns;
mod audit;
mod bindings;
mod calls;
mod engine;
mod limits;
mod migrate;
pub use migrate::latest as schema_latest;
mod mologin;
mod outbox;
mod queue;
mod registry;
mod retention;
mod rows;
mod services;
mod txqueue;
mod txrelay;
mod verifications;
mod wal_sync;
mod webhooks;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};

use self::engine::Engine;
use super::{Durability, StoreError, StoreResult};

/// How long SQLite waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Reader connections (threads) for a database file.
const READ_CONNECTIONS: usize = 2;

/// Prepared statements kept per connection (every statement we run fits).
const STATEMENT_CACHE: usize = 128;

/// Page cache of the writer and of each reader, in KiB: the hot indexes
/// stay in memory instead of being read back from the OS for every write.
const WRITER_CACHE_KIB: i64 = 8 * 1024;
const READER_CACHE_KIB: i64 = 8 * 1024;

/// WAL pages after which the writer checkpoints by itself. The checkpointer
/// thread normally keeps the WAL far below this; it is the bound if it
/// cannot (readers holding old snapshots for a long time).
const WAL_FALLBACK_CHECKPOINT_PAGES: i64 = 16_000;

/// The SQLite store (cheap to clone; clones share the threads).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    engine: Arc<Engine>,
}

/// Opens a connection with the settings every connection gets.
/// Savepoint journals stay in memory (`temp_store`); `cache_kib` sizes the page cache.
fn connect(path: &str, cache_kib: i64) -> StoreResult<Connection> {
    let cannot = |e: rusqlite::Error| StoreError::database(format!("cannot open {path}"), e);
    let c = Connection::open_with_flags(path, OpenFlags::default()).map_err(cannot)?;
    c.busy_timeout(BUSY_TIMEOUT).map_err(cannot)?;
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Plans must not depend on bound values: otherwise SQLite re-prepares a
    // cached statement whenever a value it planned with changes (a LIMIT,
    // a column of a partial index's WHERE), which costs more than the query.
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(cannot)?;
    c.execute_batch(&format!(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; \
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{cache_kib};"
    ))
    .map_err(cannot)?;
    Ok(c)
}

impl SqliteStore {
    /// Opens (creating it and its directory if missing) the database file at
    /// `path` and applies pending migrations.
    pub async fn open(path: &str) -> StoreResult<Self> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(|e| StoreError::database("cannot open the database", e))?
    }

    fn open_blocking(path: &str) -> StoreResult<Self> {
        let file = Path::new(path);
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::database(format!("cannot create directory {}", dir.display()), e)
            })?;
        }
        let mut writer = connect(path, WRITER_CACHE_KIB)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| StoreError::database(format!("cannot open {path}"), e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::database_failed(format!(
                "{path}: SQLite refused write-ahead logging (journal mode {mode}); \
                 is the file on a network filesystem?"
            )));
        }
        migrate::run(&mut writer)?;
        writer.pragma_update(None, "wal_autocheckpoint", WAL_FALLBACK_CHECKPOINT_PAGES)?;
        let mut readers = Vec::with_capacity(READ_CONNECTIONS);
        for _ in 0..READ_CONNECTIONS {
            let r = connect(path, READER_CACHE_KIB)?;
            r.execute_batch("PRAGMA query_only = ON")?;
            readers.push(r);
        }
        let checkpointer = connect(path, 1024)?;
        // The WAL sits next to the database file SQLite resolved. If it is
        // not where we look, flushing it would silently sync nothing.
        let db = std::fs::canonicalize(file)
            .map_err(|e| StoreError::database(format!("cannot resolve {path}"), e))?;
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        if !Path::new(&wal).exists() {
            return Err(StoreError::database_failed(format!(
                "{path}: no write-ahead log at {} after opening; cannot guarantee durable writes",
                Path::new(&wal).display()
            )));
        }
        Ok(Self {
            engine: Arc::new(Engine::start(writer, readers, Some((&db, checkpointer)))?),
        })
    }

    /// A private in-memory database, for tests: one connection, so every
    /// operation runs on the writer thread, one at a time.
    pub async fn open_in_memory() -> StoreResult<Self> {
        let mut c = connect(":memory:", 2 * 1024)?;
        migrate::run(&mut c)?;
        Ok(Self {
            engine: Arc::new(Engine::start(c, Vec::new(), None)?),
        })
    }

    /// Stops the threads once queued work is done. The WAL is checkpointed
    /// when the last connection closes.
    pub async fn close(&self) {
        self.engine.close().await;
    }

    /// A write, answered once it is on disk.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.engine.write(true, f).await
    }

    /// A write answered at commit, before the flush (its loss with the
    /// machine is harmless: see the callers).
    async fn write_volatile<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.engine.write(false, f).await
    }

    /// Runs raw SQL on the writer (tests that inspect or damage the database).
    #[cfg(test)]
    async fn on_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> T {
        self.write_volatile(f).await.expect("raw SQL")
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.engine.read(f).await
    }
}

#[async_trait]
impl Durability for SqliteStore {
    async fn barrier(&self) -> StoreResult<()> {
        self.write(|_| Ok(())).await
    }

    fn durability_problem(&self) -> Option<String> {
        self.engine.problem()
    }
}

//! SQLite backend (embedded default): WAL mode, migrations in
//! `daemon/migrations/sqlite/`.
//!
//! Durability with group commit: every write commits with
//! `synchronous=NORMAL` (no fsync of its own) and then waits for a shared
//! fsync of the WAL (`group_sync`), so a write returns only once it is on
//! disk — as with `synchronous=FULL` — while concurrent writes share one
//! flush. A start is acknowledged only after it is stored, and that holds
//! across `kill -9` and the machine going down.
//!
//! Concurrency: one pooled connection writes, the others read. Writes queue
//! for that connection instead of contending for SQLite's lock (whose busy
//! handler sleeps) and invalidating each other's page caches. Every
//! multi-statement write still runs in a `BEGIN IMMEDIATE` transaction, so
//! read-then-write sequences cannot interleave with another process sharing
//! the file. Claims are single `UPDATE … WHERE id IN (SELECT … LIMIT n)
//! RETURNING …` statements, which are atomic on their own.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::error::ErrorKind;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use verigate_codecs::dlr::message_id_keys;

use super::group_sync::GroupSync;
use super::{
    Account, ApiKeyRecord, AuditEvent, DlrOutcome, IdempotencyRecord, InsertOutcome, MessageState,
    Millis, OutboxDepth, OutboxMessage, RateDecision, Resend, Service, Session, Store, StoreError,
    StoreResult, Verification, VerificationStatus, WebhookJob,
};

/// How long SQLite waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the write connection before a write fails.
const WRITE_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// Reader connections for a database file (WAL: readers run in parallel).
const READ_CONNECTIONS: u32 = 4;
/// Parked receipts older than this (relative to a newly parked one) are
/// dropped: a receipt precedes its submit_sm_resp by moments, so an old one
/// belongs to a message whose id was never recorded (e.g. a sender died
/// after the SMSC accepted) and would otherwise stay forever.
const PARKED_DLR_TTL_MS: i64 = 24 * 60 * 60 * 1000;

macro_rules! verification_cols {
    () => {
        r#"id, service, "to", channel, locale, status, code_hash, attempts, max_attempts,
           sends, created_at, expires_at, last_sent_at, updated_at"#
    };
}

macro_rules! outbox_cols {
    () => {
        r#"id, verification_id, service, "to", "from", text, state, attempts, next_attempt_at,
           expires_at, smsc, message_ids, last_error, created_at, updated_at"#
    };
}

macro_rules! api_key_cols {
    () => {
        "key_id, service, hash, created_at, revoked_at"
    };
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Connections for reads.
    reads: SqlitePool,
    /// The one connection that writes.
    writes: SqlitePool,
    /// Shared WAL fsync (None for the in-memory database).
    sync: Option<Arc<GroupSync>>,
}

impl SqliteStore {
    /// Opens (creating it and its directory if missing) the database file at
    /// `path` and applies pending migrations.
    pub async fn open(path: &str) -> StoreResult<Self> {
        let file = Path::new(path);
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                StoreError::Database(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let cannot = |e: sqlx::Error| StoreError::Database(format!("cannot open {path}: {e}"));
        let writes = SqlitePoolOptions::new()
            .max_connections(1)
            // Writes queue here; a wait this long means the writer is stuck.
            .acquire_timeout(WRITE_QUEUE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(cannot)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writes)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        let reads = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(cannot)?;
        // The WAL sits next to the database file SQLite resolved. If it is
        // not where we look, flushing it would silently sync nothing.
        let db = std::fs::canonicalize(file)
            .map_err(|e| StoreError::Database(format!("cannot resolve {path}: {e}")))?;
        let sync = GroupSync::start(&db);
        if !sync.wal_path().exists() {
            return Err(StoreError::Database(format!(
                "{path}: no write-ahead log at {} after opening; cannot guarantee durable writes",
                sync.wal_path().display()
            )));
        }
        Ok(Self {
            reads,
            writes,
            sync: Some(sync),
        })
    }

    /// A private in-memory database, for tests. It lives on a single pooled
    /// connection that is never recycled (`:memory:` gives every connection
    /// its own database, and the database vanishes with its last
    /// connection), so operations run one at a time.
    pub async fn open_in_memory() -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| StoreError::Database(e.to_string()))?
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Database(format!("cannot open in-memory database: {e}")))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        Ok(Self {
            reads: pool.clone(),
            writes: pool,
            sync: None,
        })
    }

    /// Closes the pools (waits for connections to be returned). The WAL is
    /// checkpointed when the last connection closes.
    pub async fn close(&self) {
        self.reads.close().await;
        self.writes.close().await;
    }

    /// Runs a write and, if it succeeded, waits until it is on disk.
    async fn durable<T>(
        &self,
        write: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let out = write.await?;
        if let Some(sync) = &self.sync {
            sync.wait().await.map_err(StoreError::Database)?;
        }
        Ok(out)
    }

    /// Starts a transaction holding the write lock from its first statement.
    async fn begin_write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.writes
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)
    }
}

// ---- error and row helpers

/// Any database failure.
fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// A failed write of `what`: a unique violation is the caller's conflict, a
/// missing referenced record (service, account, verification) is NotFound.
fn write_err(e: sqlx::Error, what: &str) -> StoreError {
    if let sqlx::Error::Database(d) = &e {
        match d.kind() {
            ErrorKind::UniqueViolation => {
                return StoreError::Conflict(format!("{what} ({})", d.message()));
            }
            ErrorKind::ForeignKeyViolation => {
                return StoreError::NotFound(format!(
                    "{what} refers to a record that does not exist ({})",
                    d.message()
                ));
            }
            _ => {}
        }
    }
    db_err(e)
}

/// True for a violation of the one-pending-verification index.
fn is_pending_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if d.kind() == ErrorKind::UniqueViolation && d.message().contains("verifications.service"))
}

fn corrupt(table: &str, col: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{table}.{col}: {detail}"))
}

fn col<'r, T>(row: &'r SqliteRow, table: &str, name: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get::<T, _>(name)
        .map_err(|e| corrupt(table, name, e))
}

fn col_u32(row: &SqliteRow, table: &str, name: &str) -> StoreResult<u32> {
    let v: i64 = col(row, table, name)?;
    u32::try_from(v).map_err(|_| corrupt(table, name, format!("{v} is not a count")))
}

fn col_json(row: &SqliteRow, table: &str, name: &str) -> StoreResult<serde_json::Value> {
    let text: String = col(row, table, name)?;
    serde_json::from_str(&text).map_err(|e| corrupt(table, name, e))
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Database(format!("cannot encode JSON: {e}")))
}

fn parse_state(table: &str, name: &str, s: &str) -> StoreResult<MessageState> {
    MessageState::parse(s).ok_or_else(|| corrupt(table, name, format!("unknown state {s:?}")))
}

fn service_from_row(row: &SqliteRow) -> StoreResult<Service> {
    Ok(Service {
        code: col(row, "services", "code")?,
        name: col(row, "services", "name")?,
        settings: col_json(row, "services", "settings")?,
        created_at: col(row, "services", "created_at")?,
    })
}

fn api_key_from_row(row: &SqliteRow) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        key_id: col(row, "api_keys", "key_id")?,
        service: col(row, "api_keys", "service")?,
        hash: col(row, "api_keys", "hash")?,
        created_at: col(row, "api_keys", "created_at")?,
        revoked_at: col(row, "api_keys", "revoked_at")?,
    })
}

fn verification_from_row(row: &SqliteRow) -> StoreResult<Verification> {
    const T: &str = "verifications";
    let status: String = col(row, T, "status")?;
    Ok(Verification {
        id: col(row, T, "id")?,
        service: col(row, T, "service")?,
        to: col(row, T, "to")?,
        channel: col(row, T, "channel")?,
        locale: col(row, T, "locale")?,
        status: VerificationStatus::parse(&status)
            .ok_or_else(|| corrupt(T, "status", format!("unknown status {status:?}")))?,
        code_hash: col(row, T, "code_hash")?,
        attempts: col_u32(row, T, "attempts")?,
        max_attempts: col_u32(row, T, "max_attempts")?,
        sends: col_u32(row, T, "sends")?,
        created_at: col(row, T, "created_at")?,
        expires_at: col(row, T, "expires_at")?,
        last_sent_at: col(row, T, "last_sent_at")?,
        updated_at: col(row, T, "updated_at")?,
    })
}

fn message_from_row(row: &SqliteRow) -> StoreResult<OutboxMessage> {
    const T: &str = "outbox";
    let state: String = col(row, T, "state")?;
    let ids: String = col(row, T, "message_ids")?;
    Ok(OutboxMessage {
        id: col(row, T, "id")?,
        verification_id: col(row, T, "verification_id")?,
        service: col(row, T, "service")?,
        to: col(row, T, "to")?,
        from: col(row, T, "from")?,
        text: col(row, T, "text")?,
        state: parse_state(T, "state", &state)?,
        attempts: col_u32(row, T, "attempts")?,
        next_attempt_at: col(row, T, "next_attempt_at")?,
        expires_at: col(row, T, "expires_at")?,
        smsc: col(row, T, "smsc")?,
        message_ids: serde_json::from_str(&ids).map_err(|e| corrupt(T, "message_ids", e))?,
        last_error: col(row, T, "last_error")?,
        created_at: col(row, T, "created_at")?,
        updated_at: col(row, T, "updated_at")?,
    })
}

fn webhook_from_row(row: &SqliteRow) -> StoreResult<WebhookJob> {
    const T: &str = "webhook_jobs";
    Ok(WebhookJob {
        id: col(row, T, "id")?,
        service: col(row, T, "service")?,
        url: col(row, T, "url")?,
        body: col(row, T, "body")?,
        attempts: col_u32(row, T, "attempts")?,
        next_attempt_at: col(row, T, "next_attempt_at")?,
        last_error: col(row, T, "last_error")?,
    })
}

fn account_from_row(row: &SqliteRow) -> StoreResult<Account> {
    const T: &str = "accounts";
    Ok(Account {
        id: col(row, T, "id")?,
        service: col(row, T, "service")?,
        msisdn: col(row, T, "msisdn")?,
        password_hash: col(row, T, "password_hash")?,
        created_at: col(row, T, "created_at")?,
    })
}

fn session_from_row(row: &SqliteRow) -> StoreResult<Session> {
    const T: &str = "sessions";
    Ok(Session {
        id: col(row, T, "id")?,
        account_id: col(row, T, "account_id")?,
        token_hash: col(row, T, "token_hash")?,
        created_at: col(row, T, "created_at")?,
        expires_at: col(row, T, "expires_at")?,
    })
}

fn audit_from_row(row: &SqliteRow) -> StoreResult<AuditEvent> {
    const T: &str = "audit_events";
    Ok(AuditEvent {
        at: col(row, T, "at")?,
        service: col(row, T, "service")?,
        kind: col(row, T, "kind")?,
        detail: col_json(row, T, "detail")?,
    })
}

// ---- delivery-state rules

/// States no receipt moves a message out of.
fn is_final(s: MessageState) -> bool {
    matches!(
        s,
        MessageState::Delivered
            | MessageState::Undeliverable
            | MessageState::Rejected
            | MessageState::Expired
    )
}

/// The state after a receipt saying `incoming` reaches a message in
/// `current`: a final state is kept (the first final receipt wins, later
/// receipts of other parts or duplicates do not change it); a final
/// receipt finishes an unfinished message; a non-final receipt only moves
/// an unfinished message forward (queued → sending → submitted), never
/// back to a state that would send it again.
fn merge_receipt(current: MessageState, incoming: MessageState) -> MessageState {
    fn progress(s: MessageState) -> u8 {
        match s {
            MessageState::Queued => 0,
            MessageState::Sending => 1,
            _ => 2,
        }
    }
    if is_final(current) {
        current
    } else if is_final(incoming) || progress(incoming) > progress(current) {
        incoming
    } else {
        current
    }
}

// ---- statements shared by several methods

async fn fetch_message(
    tx: &mut Transaction<'static, Sqlite>,
    id: &str,
) -> StoreResult<Option<OutboxMessage>> {
    sqlx::query(concat!(
        "SELECT ",
        outbox_cols!(),
        " FROM outbox WHERE id = ?1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?
    .as_ref()
    .map(message_from_row)
    .transpose()
}

async fn fetch_pending(
    tx: &mut Transaction<'static, Sqlite>,
    service: &str,
    to: &str,
) -> StoreResult<Option<Verification>> {
    sqlx::query(concat!(
        "SELECT ",
        verification_cols!(),
        r#" FROM verifications WHERE service = ?1 AND "to" = ?2 AND status = 'pending'"#
    ))
    .bind(service)
    .bind(to)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?
    .as_ref()
    .map(verification_from_row)
    .transpose()
}

async fn insert_idempotency(
    tx: &mut Transaction<'static, Sqlite>,
    idem: &IdempotencyRecord,
    at: Millis,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO idempotency_keys (service, key, request_hash, verification_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(&idem.service)
    .bind(&idem.key)
    .bind(&idem.request_hash)
    .bind(&idem.verification_id)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        write_err(
            e,
            &format!("idempotency key {} of service {}", idem.key, idem.service),
        )
    })?;
    Ok(())
}

async fn insert_message(
    tx: &mut Transaction<'static, Sqlite>,
    m: &OutboxMessage,
) -> StoreResult<()> {
    sqlx::query(concat!(
        "INSERT INTO outbox (",
        outbox_cols!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    ))
    .bind(&m.id)
    .bind(&m.verification_id)
    .bind(&m.service)
    .bind(&m.to)
    .bind(&m.from)
    .bind(&m.text)
    .bind(m.state.as_str())
    .bind(i64::from(m.attempts))
    .bind(m.next_attempt_at)
    .bind(m.expires_at)
    .bind(&m.smsc)
    .bind(to_json(&m.message_ids)?)
    .bind(&m.last_error)
    .bind(m.created_at)
    .bind(m.updated_at)
    .execute(&mut **tx)
    .await
    .map_err(|e| write_err(e, &format!("outbox message {}", m.id)))?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn barrier(&self) -> StoreResult<()> {
        self.durable(async { Ok(()) }).await
    }

    fn durability_problem(&self) -> Option<String> {
        self.sync.as_ref().and_then(|s| s.failure())
    }

    // ---- services and API keys

    async fn create_service(&self, s: &Service) -> StoreResult<()> {
        self.durable(async {
            sqlx::query(
                "INSERT INTO services (code, name, settings, created_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .bind(&s.code)
            .bind(&s.name)
            .bind(to_json(&s.settings)?)
            .bind(s.created_at)
            .execute(&self.writes)
            .await
            .map_err(|e| write_err(e, &format!("service {}", s.code)))?;
            Ok(())
        })
        .await
    }

    async fn get_service(&self, code: &str) -> StoreResult<Option<Service>> {
        sqlx::query("SELECT code, name, settings, created_at FROM services WHERE code = ?1")
            .bind(code)
            .fetch_optional(&self.reads)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(service_from_row)
            .transpose()
    }

    async fn list_services(&self) -> StoreResult<Vec<Service>> {
        sqlx::query("SELECT code, name, settings, created_at FROM services ORDER BY code")
            .fetch_all(&self.reads)
            .await
            .map_err(db_err)?
            .iter()
            .map(service_from_row)
            .collect()
    }

    async fn update_service_settings(
        &self,
        code: &str,
        settings: &serde_json::Value,
    ) -> StoreResult<()> {
        self.durable(async {
            let done = sqlx::query("UPDATE services SET settings = ?2 WHERE code = ?1")
                .bind(code)
                .bind(to_json(settings)?)
                .execute(&self.writes)
                .await
                .map_err(db_err)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("service {code}")));
            }
            Ok(())
        })
        .await
    }

    async fn add_api_key(&self, k: &ApiKeyRecord) -> StoreResult<()> {
        self.durable(async {
            sqlx::query(concat!(
                "INSERT INTO api_keys (",
                api_key_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5)"
            ))
            .bind(&k.key_id)
            .bind(&k.service)
            .bind(&k.hash)
            .bind(k.created_at)
            .bind(k.revoked_at)
            .execute(&self.writes)
            .await
            .map_err(|e| write_err(e, &format!("API key {} of service {}", k.key_id, k.service)))?;
            Ok(())
        })
        .await
    }

    async fn find_api_key(&self, hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            api_key_cols!(),
            " FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL"
        ))
        .bind(hash)
        .fetch_optional(&self.reads)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(api_key_from_row)
        .transpose()
    }

    async fn list_api_keys(&self, service: &str) -> StoreResult<Vec<ApiKeyRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            api_key_cols!(),
            " FROM api_keys WHERE service = ?1 ORDER BY created_at, rowid"
        ))
        .bind(service)
        .fetch_all(&self.reads)
        .await
        .map_err(db_err)?
        .iter()
        .map(api_key_from_row)
        .collect()
    }

    async fn revoke_api_keys(
        &self,
        service: &str,
        keep_key_id: &str,
        at: Millis,
    ) -> StoreResult<u64> {
        self.durable(async {
            let done = sqlx::query(
                "UPDATE api_keys SET revoked_at = ?3
                 WHERE service = ?1 AND key_id <> ?2 AND revoked_at IS NULL",
            )
            .bind(service)
            .bind(keep_key_id)
            .bind(at)
            .execute(&self.writes)
            .await
            .map_err(db_err)?;
            Ok(done.rows_affected())
        })
        .await
    }

    // ---- verifications

    async fn insert_verification(
        &self,
        v: &Verification,
        first: &OutboxMessage,
        idem: Option<&IdempotencyRecord>,
    ) -> StoreResult<InsertOutcome> {
        self.durable(async {
            let mut tx = self.begin_write().await?;

            // A replayed request wins over the pending check: the replay of a
            // start would otherwise meet its own pending verification.
            if let Some(idem) = idem {
                let seen = sqlx::query(
                    "SELECT request_hash, verification_id FROM idempotency_keys
                     WHERE service = ?1 AND key = ?2",
                )
                .bind(&idem.service)
                .bind(&idem.key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
                if let Some(row) = seen {
                    let record = IdempotencyRecord {
                        service: idem.service.clone(),
                        key: idem.key.clone(),
                        request_hash: col(&row, "idempotency_keys", "request_hash")?,
                        verification_id: col(&row, "idempotency_keys", "verification_id")?,
                    };
                    tx.rollback().await.map_err(db_err)?;
                    return Ok(InsertOutcome::IdempotentReplay(record));
                }
            }

            if let Some(pending) = fetch_pending(&mut tx, &v.service, &v.to).await? {
                tx.rollback().await.map_err(db_err)?;
                return Ok(InsertOutcome::PendingExists(pending));
            }

            let inserted = sqlx::query(concat!(
                "INSERT INTO verifications (",
                verification_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ))
            .bind(&v.id)
            .bind(&v.service)
            .bind(&v.to)
            .bind(&v.channel)
            .bind(&v.locale)
            .bind(v.status.as_str())
            .bind(&v.code_hash)
            .bind(i64::from(v.attempts))
            .bind(i64::from(v.max_attempts))
            .bind(i64::from(v.sends))
            .bind(v.created_at)
            .bind(v.expires_at)
            .bind(v.last_sent_at)
            .bind(v.updated_at)
            .execute(&mut *tx)
            .await;
            if let Err(e) = inserted {
                // Cannot happen under the write lock taken above, but the index
                // is the authority: report the winner if it fired anyway.
                if is_pending_violation(&e) {
                    if let Some(pending) = fetch_pending(&mut tx, &v.service, &v.to).await? {
                        tx.rollback().await.map_err(db_err)?;
                        return Ok(InsertOutcome::PendingExists(pending));
                    }
                }
                return Err(write_err(e, &format!("verification {}", v.id)));
            }

            insert_message(&mut tx, first).await?;

            if let Some(idem) = idem {
                insert_idempotency(&mut tx, idem, v.created_at).await?;
            }

            tx.commit().await.map_err(db_err)?;
            Ok(InsertOutcome::Created)
        })
        .await
    }

    async fn get_idempotency(
        &self,
        service: &str,
        key: &str,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        let row = sqlx::query(
            "SELECT request_hash, verification_id FROM idempotency_keys
             WHERE service = ?1 AND key = ?2",
        )
        .bind(service)
        .bind(key)
        .fetch_optional(&self.reads)
        .await
        .map_err(db_err)?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(IdempotencyRecord {
                service: service.to_string(),
                key: key.to_string(),
                request_hash: col(&row, "idempotency_keys", "request_hash")?,
                verification_id: col(&row, "idempotency_keys", "verification_id")?,
            })),
        }
    }

    async fn get_verification(&self, id: &str) -> StoreResult<Option<Verification>> {
        sqlx::query(concat!(
            "SELECT ",
            verification_cols!(),
            " FROM verifications WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.reads)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(verification_from_row)
        .transpose()
    }

    async fn find_pending(&self, service: &str, to: &str) -> StoreResult<Option<Verification>> {
        sqlx::query(concat!(
            "SELECT ",
            verification_cols!(),
            r#" FROM verifications WHERE service = ?1 AND "to" = ?2 AND status = 'pending'"#
        ))
        .bind(service)
        .bind(to)
        .fetch_optional(&self.reads)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(verification_from_row)
        .transpose()
    }

    async fn update_verification(
        &self,
        id: &str,
        expect_status: VerificationStatus,
        expect_attempts: u32,
        status: VerificationStatus,
        attempts: u32,
        at: Millis,
    ) -> StoreResult<bool> {
        self.durable(async {
            let done = sqlx::query(
                "UPDATE verifications SET status = ?4, attempts = ?5, updated_at = ?6
                 WHERE id = ?1 AND status = ?2 AND attempts = ?3",
            )
            .bind(id)
            .bind(expect_status.as_str())
            .bind(i64::from(expect_attempts))
            .bind(status.as_str())
            .bind(i64::from(attempts))
            .bind(at)
            .execute(&self.writes)
            .await
            .map_err(|e| write_err(e, &format!("verification {id}")))?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    async fn record_resend(&self, r: &Resend<'_>, at: Millis) -> StoreResult<bool> {
        self.durable(async {
            let mut tx = self.begin_write().await?;
            let done = sqlx::query(
                "UPDATE verifications
                 SET sends = sends + 1, last_sent_at = ?2, code_hash = ?3, expires_at = ?4, updated_at = ?2
                 WHERE id = ?1 AND status = 'pending' AND last_sent_at = ?5",
            )
            .bind(r.verification_id)
            .bind(at)
            .bind(r.code_hash)
            .bind(r.expires_at)
            .bind(r.last_sent_at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if done.rows_affected() == 0 {
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT 1 FROM verifications WHERE id = ?1")
                        .bind(r.verification_id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err)?;
                tx.rollback().await.map_err(db_err)?;
                return match exists {
                    Some(_) => Ok(false),
                    None => Err(StoreError::NotFound(format!(
                        "verification {}",
                        r.verification_id
                    ))),
                };
            }
            insert_message(&mut tx, r.message).await?;
            if let Some(idem) = r.idempotency {
                insert_idempotency(&mut tx, idem, at).await?;
            }
            tx.commit().await.map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    async fn record_idempotency(&self, rec: &IdempotencyRecord, at: Millis) -> StoreResult<()> {
        self.durable(async {
            sqlx::query(
                "INSERT OR IGNORE INTO idempotency_keys (service, key, request_hash, verification_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(&rec.service)
            .bind(&rec.key)
            .bind(&rec.request_hash)
            .bind(&rec.verification_id)
            .bind(at)
            .execute(&self.writes)
            .await
            .map_err(|e| write_err(e, &format!("idempotency key {} of service {}", rec.key, rec.service)))?;
            Ok(())
        })
        .await
    }

    // ---- outbox and receipts

    async fn claim_outbox(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<OutboxMessage>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Messages past their expiry are left to `expire_outbox`: sending
        // them would deliver a code that no longer works.
        let rows = sqlx::query(concat!(
            "UPDATE outbox
             SET state = 'sending', attempts = attempts + 1, lease_until = ?2, updated_at = ?1
             WHERE id IN (
                 SELECT id FROM outbox
                 WHERE state IN ('queued', 'sending')
                   AND ((state = 'queued' AND next_attempt_at <= ?1)
                        OR (state = 'sending' AND COALESCE(lease_until, 0) <= ?1))
                   AND expires_at >= ?1
                 ORDER BY created_at, rowid
                 LIMIT ?3)
             RETURNING rowid AS seq, ",
            outbox_cols!()
        ))
        .bind(now)
        .bind(now.saturating_add(lease_ms.max(0)))
        .bind(i64::from(limit))
        .fetch_all(&self.writes)
        .await
        .map_err(db_err)?;
        sorted_messages(rows)
    }

    async fn mark_submitted(
        &self,
        id: &str,
        smsc: &str,
        message_ids: &[String],
        at: Millis,
    ) -> StoreResult<OutboxMessage> {
        self.durable(async {
            let mut tx = self.begin_write().await?;
            let Some(msg) = fetch_message(&mut tx, id).await? else {
                return Err(StoreError::NotFound(format!("outbox message {id}")));
            };

            // Ids accumulate: a message sent twice (a lease ran out while the
            // first submit_sm was in flight) correlates receipts of both copies.
            let mut ids = msg.message_ids.clone();
            for mid in message_ids {
                if !ids.contains(mid) {
                    ids.push(mid.clone());
                }
            }
            let mut keys: Vec<String> = Vec::new();
            for mid in message_ids {
                for (rank, key) in message_id_keys(mid).iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO message_keys (key, outbox_id, is_primary, created_at)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (key, outbox_id) DO UPDATE
                         SET is_primary = max(is_primary, excluded.is_primary)",
                    )
                    .bind(key)
                    .bind(id)
                    .bind(rank == 0)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| write_err(e, &format!("message id {mid} of {id}")))?;
                    if !keys.contains(key) {
                        keys.push(key.clone());
                    }
                }
            }

            // An SMSC acceptance supersedes the sender-side verdicts (expired,
            // rejected, still queued); receipt outcomes stay.
            let mut state = match msg.state {
                MessageState::Delivered | MessageState::Undeliverable => msg.state,
                _ => MessageState::Submitted,
            };

            // Receipts that beat this call, oldest first, through the same rule
            // as live receipts.
            let parked = sqlx::query(
                "SELECT DISTINCT p.id, p.state, p.at FROM parked_dlrs p
                 JOIN parked_dlr_keys k ON k.parked_id = p.id
                 WHERE k.key IN (SELECT value FROM json_each(?1))
                 ORDER BY p.at, p.id",
            )
            .bind(to_json(&keys)?)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
            let mut applied: Vec<i64> = Vec::with_capacity(parked.len());
            for row in &parked {
                let dlr_state: String = col(row, "parked_dlrs", "state")?;
                state = merge_receipt(state, parse_state("parked_dlrs", "state", &dlr_state)?);
                applied.push(col(row, "parked_dlrs", "id")?);
            }
            if !applied.is_empty() {
                let applied = to_json(&applied)?;
                sqlx::query(
                    "DELETE FROM parked_dlr_keys WHERE parked_id IN (SELECT value FROM json_each(?1))",
                )
                .bind(&applied)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                sqlx::query("DELETE FROM parked_dlrs WHERE id IN (SELECT value FROM json_each(?1))")
                    .bind(&applied)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }

            sqlx::query(
                "UPDATE outbox SET state = ?2, smsc = ?3, message_ids = ?4, lease_until = NULL, updated_at = ?5
                 WHERE id = ?1",
            )
            .bind(id)
            .bind(state.as_str())
            .bind(smsc)
            .bind(to_json(&ids)?)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;

            let after = fetch_message(&mut tx, id)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("outbox message {id}")))?;
            tx.commit().await.map_err(db_err)?;
            Ok(after)
        })
        .await
    }

    async fn mark_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<Millis>,
        at: Millis,
    ) -> StoreResult<()> {
        self.durable(async {
            // Only an unfinished message changes: a late failure report from a
            // sender whose lease ran out must not requeue (and so resend) a
            // message another sender got accepted.
            let done = sqlx::query(
                "UPDATE outbox
                 SET state = CASE WHEN ?3 IS NULL THEN 'rejected' ELSE 'queued' END,
                     next_attempt_at = COALESCE(?3, next_attempt_at),
                     last_error = ?2, lease_until = NULL, updated_at = ?4
                 WHERE id = ?1 AND state IN ('queued', 'sending')",
            )
            .bind(id)
            .bind(error)
            .bind(retry_at)
            .bind(at)
            .execute(&self.writes)
            .await
            .map_err(db_err)?;
            if done.rows_affected() == 0 && self.get_message(id).await?.is_none() {
                return Err(StoreError::NotFound(format!("outbox message {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn expire_outbox(&self, now: Millis) -> StoreResult<Vec<OutboxMessage>> {
        self.durable(async {
            let rows = sqlx::query(concat!(
                "UPDATE outbox SET state = 'expired', lease_until = NULL, updated_at = ?1
                 WHERE state IN ('queued', 'sending') AND expires_at < ?1
                 RETURNING rowid AS seq, ",
                outbox_cols!()
            ))
            .bind(now)
            .fetch_all(&self.writes)
            .await
            .map_err(db_err)?;
            sorted_messages(rows)
        })
        .await
    }

    async fn record_dlr(
        &self,
        keys: &[String],
        state: MessageState,
        at: Millis,
    ) -> StoreResult<DlrOutcome> {
        self.durable(async {
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

            let mut tx = self.begin_write().await?;
            // Prefer a message whose primary key is the receipt's primary key
            // (same id format), then the most recently submitted.
            let target: Option<String> = sqlx::query_scalar(
                "SELECT outbox_id FROM message_keys
                 WHERE key IN (SELECT value FROM json_each(?1))
                 ORDER BY (key = ?2 AND is_primary) DESC, created_at DESC, rowid DESC
                 LIMIT 1",
            )
            .bind(&keys_json)
            .bind(primary)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;

            if let Some(id) = target {
                let msg = fetch_message(&mut tx, &id).await?.ok_or_else(|| {
                    StoreError::Corrupt(format!("message_keys: outbox message {id} is missing"))
                })?;
                let next = merge_receipt(msg.state, state);
                if next == msg.state {
                    tx.rollback().await.map_err(db_err)?;
                    return Ok(DlrOutcome::Applied(msg));
                }
                sqlx::query(
                    "UPDATE outbox SET state = ?2, lease_until = NULL, updated_at = ?3 WHERE id = ?1",
                )
                .bind(&id)
                .bind(next.as_str())
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                let after = fetch_message(&mut tx, &id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("outbox message {id}")))?;
                tx.commit().await.map_err(db_err)?;
                return Ok(DlrOutcome::Applied(after));
            }

            sqlx::query("DELETE FROM parked_dlr_keys WHERE parked_id IN (SELECT id FROM parked_dlrs WHERE at < ?1)")
                .bind(at.saturating_sub(PARKED_DLR_TTL_MS))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            sqlx::query("DELETE FROM parked_dlrs WHERE at < ?1")
                .bind(at.saturating_sub(PARKED_DLR_TTL_MS))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let parked_id: i64 =
                sqlx::query_scalar("INSERT INTO parked_dlrs (state, at) VALUES (?1, ?2) RETURNING id")
                    .bind(state.as_str())
                    .bind(at)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err)?;
            sqlx::query(
                "INSERT OR IGNORE INTO parked_dlr_keys (key, parked_id)
                 SELECT value, ?2 FROM json_each(?1)",
            )
            .bind(&keys_json)
            .bind(parked_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            Ok(DlrOutcome::Parked)
        })
        .await
    }

    async fn get_message(&self, id: &str) -> StoreResult<Option<OutboxMessage>> {
        sqlx::query(concat!(
            "SELECT ",
            outbox_cols!(),
            " FROM outbox WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.reads)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(message_from_row)
        .transpose()
    }

    async fn messages_for_verification(
        &self,
        verification_id: &str,
    ) -> StoreResult<Vec<OutboxMessage>> {
        sqlx::query(concat!(
            "SELECT ",
            outbox_cols!(),
            " FROM outbox WHERE verification_id = ?1 ORDER BY created_at, rowid"
        ))
        .bind(verification_id)
        .fetch_all(&self.reads)
        .await
        .map_err(db_err)?
        .iter()
        .map(message_from_row)
        .collect()
    }

    async fn outbox_depth(&self) -> StoreResult<OutboxDepth> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM outbox
             WHERE state IN ('queued', 'sending', 'submitted') GROUP BY state",
        )
        .fetch_all(&self.reads)
        .await
        .map_err(db_err)?;
        let mut depth = OutboxDepth::default();
        for row in &rows {
            let state: String = col(row, "outbox", "state")?;
            let n: i64 = col(row, "outbox", "n")?;
            let n = u64::try_from(n).map_err(|_| corrupt("outbox", "state", "negative count"))?;
            match parse_state("outbox", "state", &state)? {
                MessageState::Queued => depth.queued = n,
                MessageState::Sending => depth.sending = n,
                MessageState::Submitted => depth.submitted = n,
                _ => {}
            }
        }
        Ok(depth)
    }

    // ---- rate limits

    async fn rate_hit(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now: Millis,
    ) -> StoreResult<RateDecision> {
        // Not waited to disk: a counter lost with the machine undercounts
        // by moments of traffic, and the next durable write covers it
        // anyway. One statement in the common case (the upsert is atomic on
        // its own); older windows are pruned when a new one starts.
        let window = window_ms.max(1);
        let start = now - now.rem_euclid(window);
        let reset_at = start.saturating_add(window);
        // Counts the hit unless the limit is reached; RETURNING yields no
        // row when the conflict update's WHERE refuses it.
        let counted: Option<i64> = if limit == 0 {
            None
        } else {
            sqlx::query_scalar(
                "INSERT INTO rate_windows (key, window_start, count) VALUES (?1, ?2, 1)
                 ON CONFLICT (key, window_start) DO UPDATE SET count = count + 1 WHERE count < ?3
                 RETURNING count",
            )
            .bind(key)
            .bind(start)
            .bind(i64::from(limit))
            .fetch_optional(&self.writes)
            .await
            .map_err(db_err)?
        };
        let (allowed, count) = match counted {
            Some(n) => {
                if n == 1 {
                    // A new window: earlier windows of this key are over.
                    // Housekeeping only: the hit is counted either way.
                    if let Err(e) =
                        sqlx::query("DELETE FROM rate_windows WHERE key = ?1 AND window_start < ?2")
                            .bind(key)
                            .bind(start)
                            .execute(&self.writes)
                            .await
                    {
                        tracing::warn!(error = %e, "cannot prune old rate-limit windows");
                    }
                }
                (true, n)
            }
            None => {
                let n: Option<i64> = sqlx::query_scalar(
                    "SELECT count FROM rate_windows WHERE key = ?1 AND window_start = ?2",
                )
                .bind(key)
                .bind(start)
                .fetch_optional(&self.reads)
                .await
                .map_err(db_err)?;
                (false, n.unwrap_or(0))
            }
        };
        let count = u32::try_from(count).map_err(|_| corrupt("rate_windows", "count", count))?;
        Ok(RateDecision {
            allowed,
            count,
            reset_at,
        })
    }

    async fn prune(&self, windows_before: Millis, keys_before: Millis) -> StoreResult<u64> {
        let windows = sqlx::query("DELETE FROM rate_windows WHERE window_start < ?1")
            .bind(windows_before)
            .execute(&self.writes)
            .await
            .map_err(db_err)?;
        let keys = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?1")
            .bind(keys_before)
            .execute(&self.writes)
            .await
            .map_err(db_err)?;
        Ok(windows.rows_affected() + keys.rows_affected())
    }

    // ---- webhooks

    async fn enqueue_webhook(&self, job: &WebhookJob) -> StoreResult<()> {
        self.durable(async {
            sqlx::query(
                "INSERT INTO webhook_jobs (id, service, url, body, attempts, next_attempt_at, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .bind(&job.id)
            .bind(&job.service)
            .bind(&job.url)
            .bind(&job.body)
            .bind(i64::from(job.attempts))
            .bind(job.next_attempt_at)
            .bind(&job.last_error)
            .execute(&self.writes)
            .await
            .map_err(|e| write_err(e, &format!("webhook job {}", job.id)))?;
            Ok(())
        })
        .await
    }

    async fn claim_webhooks(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<WebhookJob>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "UPDATE webhook_jobs SET attempts = attempts + 1, lease_until = ?2
             WHERE id IN (
                 SELECT id FROM webhook_jobs
                 WHERE COALESCE(lease_until, next_attempt_at) <= ?1
                 ORDER BY next_attempt_at, rowid
                 LIMIT ?3)
             RETURNING rowid AS seq, id, service, url, body, attempts, next_attempt_at, last_error",
        )
        .bind(now)
        .bind(now.saturating_add(lease_ms.max(0)))
        .bind(i64::from(limit))
        .fetch_all(&self.writes)
        .await
        .map_err(db_err)?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = col(row, "webhook_jobs", "seq")?;
            jobs.push((seq, webhook_from_row(row)?));
        }
        jobs.sort_by_key(|(seq, j)| (j.next_attempt_at, *seq));
        Ok(jobs.into_iter().map(|(_, j)| j).collect())
    }

    async fn complete_webhook(&self, id: &str) -> StoreResult<()> {
        self.durable(async {
            // Idempotent: a job another worker finished is gone already.
            sqlx::query("DELETE FROM webhook_jobs WHERE id = ?1")
                .bind(id)
                .execute(&self.writes)
                .await
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn retry_webhook(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<Millis>,
    ) -> StoreResult<()> {
        self.durable(async {
            match retry_at {
                Some(at) => {
                    sqlx::query(
                        "UPDATE webhook_jobs SET next_attempt_at = ?2, last_error = ?3, lease_until = NULL
                         WHERE id = ?1",
                    )
                    .bind(id)
                    .bind(at)
                    .bind(error)
                    .execute(&self.writes)
                    .await
                    .map_err(db_err)?;
                }
                None => {
                    sqlx::query("DELETE FROM webhook_jobs WHERE id = ?1")
                        .bind(id)
                        .execute(&self.writes)
                        .await
                        .map_err(db_err)?;
                }
            }
            Ok(())
        })
        .await
    }

    // ---- accounts and sessions

    async fn create_account(&self, a: &Account) -> StoreResult<()> {
        self.durable(async {
            sqlx::query(
                "INSERT INTO accounts (id, service, msisdn, password_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(&a.id)
            .bind(&a.service)
            .bind(&a.msisdn)
            .bind(&a.password_hash)
            .bind(a.created_at)
            .execute(&self.writes)
            .await
            .map_err(|e| {
                write_err(
                    e,
                    &format!("account {} ({} of service {})", a.id, a.msisdn, a.service),
                )
            })?;
            Ok(())
        })
        .await
    }

    async fn get_account_by_msisdn(
        &self,
        service: &str,
        msisdn: &str,
    ) -> StoreResult<Option<Account>> {
        sqlx::query(
            "SELECT id, service, msisdn, password_hash, created_at FROM accounts
             WHERE service = ?1 AND msisdn = ?2",
        )
        .bind(service)
        .bind(msisdn)
        .fetch_optional(&self.reads)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(account_from_row)
        .transpose()
    }

    async fn create_session(&self, s: &Session) -> StoreResult<()> {
        self.durable(async {
            sqlx::query(
                "INSERT INTO sessions (id, account_id, token_hash, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(&s.id)
            .bind(&s.account_id)
            .bind(&s.token_hash)
            .bind(s.created_at)
            .bind(s.expires_at)
            .execute(&self.writes)
            .await
            .map_err(|e| write_err(e, &format!("session {} of account {}", s.id, s.account_id)))?;
            Ok(())
        })
        .await
    }

    async fn get_session_by_token_hash(&self, token_hash: &[u8]) -> StoreResult<Option<Session>> {
        sqlx::query(
            "SELECT id, account_id, token_hash, created_at, expires_at FROM sessions
             WHERE token_hash = ?1",
        )
        .bind(token_hash)
        .fetch_optional(&self.reads)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(session_from_row)
        .transpose()
    }

    // ---- audit

    async fn audit(&self, e: &AuditEvent) -> StoreResult<()> {
        self.durable(async {
            sqlx::query(
                "INSERT INTO audit_events (at, service, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            )
            .bind(e.at)
            .bind(&e.service)
            .bind(&e.kind)
            .bind(to_json(&e.detail)?)
            .execute(&self.writes)
            .await
            .map_err(|err| write_err(err, &format!("audit event {}", e.kind)))?;
            Ok(())
        })
        .await
    }

    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        sqlx::query(
            "SELECT at, service, kind, detail FROM audit_events
             ORDER BY at DESC, seq DESC LIMIT ?1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await
        .map_err(db_err)?
        .iter()
        .map(audit_from_row)
        .collect()
    }
}

/// Messages from an `UPDATE … RETURNING rowid AS seq, …` (whose row order
/// SQLite leaves unspecified), oldest first.
fn sorted_messages(rows: Vec<SqliteRow>) -> StoreResult<Vec<OutboxMessage>> {
    let mut msgs = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = col(row, "outbox", "seq")?;
        msgs.push((seq, message_from_row(row)?));
    }
    msgs.sort_by_key(|(seq, m)| (m.created_at, *seq));
    Ok(msgs.into_iter().map(|(_, m)| m).collect())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::store::conformance;

    /// A directory removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "verigate-store-{tag}-{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            Self(dir)
        }

        /// A database path in a subdirectory that does not exist yet.
        fn db(&self) -> String {
            self.0
                .join("data")
                .join("verigate.db")
                .to_string_lossy()
                .into_owned()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    use crate::store::conformance::{message, verification};

    fn service(code: &str) -> Service {
        crate::store::conformance::service(code, 1)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_passes_conformance() {
        let dir = TempDir::new("conformance");
        let store = SqliteStore::open(&dir.db()).await.expect("open");
        conformance::run_all(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn in_memory_passes_conformance() {
        let store = SqliteStore::open_in_memory().await.expect("open_in_memory");
        conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn open_sets_wal_group_commit_and_foreign_keys() {
        let dir = TempDir::new("pragmas");
        let store = SqliteStore::open(&dir.db()).await.expect("open");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.writes)
            .await
            .expect("pragma");
        assert_eq!(mode, "wal", "journal mode");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.writes)
            .await
            .expect("pragma");
        // NORMAL: commits do not fsync each; `durable` waits for the shared flush.
        assert_eq!(sync, 1, "synchronous=NORMAL");
        assert!(store.sync.is_some(), "a file database has group commit");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&store.writes)
            .await
            .expect("pragma");
        assert_eq!(fk, 1, "foreign keys on");
        let orphan = Account {
            id: "acct_orphan".to_owned(),
            service: "no-such-service".to_owned(),
            msisdn: "+15550000001".to_owned(),
            password_hash: None,
            created_at: 1,
        };
        let err = store.create_account(&orphan).await;
        assert!(
            matches!(err, Err(StoreError::NotFound(_))),
            "a missing service is NotFound, got {err:?}"
        );
        store.close().await;
    }

    /// Every write that promises durability returns only after a WAL flush
    /// that started after it committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_return_only_after_a_wal_flush() {
        let dir = TempDir::new("durable");
        let store = SqliteStore::open(&dir.db()).await.expect("open");
        let sync = store.sync.clone().expect("group commit");
        let mut flushes = sync.flushes();
        let mut check = |what: &str| {
            let now = sync.flushes();
            assert!(now > flushes, "{what} returned before a flush");
            flushes = now;
        };
        let svc = "svc-durable";
        let to = "+15550000042";
        store.create_service(&service(svc)).await.unwrap();
        check("create_service");
        store
            .update_service_settings(svc, &serde_json::json!({"a": 1}))
            .await
            .unwrap();
        check("update_service_settings");
        let key = ApiKeyRecord {
            key_id: "k1".into(),
            service: svc.into(),
            hash: vec![1; 32],
            created_at: 1,
            revoked_at: None,
        };
        store.add_api_key(&key).await.unwrap();
        check("add_api_key");
        store.revoke_api_keys(svc, "k2", 2).await.unwrap();
        check("revoke_api_keys");
        let v = verification("vf_durable", svc, to, 1_000);
        let m = message("msg_durable", &v.id, svc, to, 1_000);
        store.insert_verification(&v, &m, None).await.unwrap();
        check("insert_verification");
        store
            .update_verification(
                &v.id,
                VerificationStatus::Pending,
                0,
                VerificationStatus::Pending,
                1,
                1_001,
            )
            .await
            .unwrap();
        check("update_verification");
        let m2 = message("msg_durable_2", &v.id, svc, to, 1_002);
        store
            .record_resend(
                &Resend {
                    verification_id: &v.id,
                    last_sent_at: 1_000,
                    code_hash: &[9; 32],
                    expires_at: 700_000,
                    message: &m2,
                    idempotency: None,
                },
                1_002,
            )
            .await
            .unwrap();
        check("record_resend");
        let rec = IdempotencyRecord {
            service: svc.into(),
            key: "k".into(),
            request_hash: vec![1],
            verification_id: v.id.clone(),
        };
        store.record_idempotency(&rec, 1_002).await.unwrap();
        check("record_idempotency");
        store
            .mark_failed(&m2.id, "down", Some(1_003), 1_003)
            .await
            .unwrap();
        check("mark_failed");
        store
            .mark_submitted(&m.id, "smsc", &["77".to_string()], 1_004)
            .await
            .unwrap();
        check("mark_submitted");
        store
            .record_dlr(&message_id_keys("77"), MessageState::Delivered, 1_005)
            .await
            .unwrap();
        check("record_dlr");
        store.expire_outbox(10_000_000).await.unwrap();
        check("expire_outbox");
        store.barrier().await.unwrap();
        check("barrier");
        let job = WebhookJob {
            id: "wh1".into(),
            service: svc.into(),
            url: "http://127.0.0.1:9/".into(),
            body: "{}".into(),
            attempts: 0,
            next_attempt_at: 0,
            last_error: None,
        };
        store.enqueue_webhook(&job).await.unwrap();
        check("enqueue_webhook");
        store
            .retry_webhook("wh1", "refused", Some(5))
            .await
            .unwrap();
        check("retry_webhook");
        store.complete_webhook("wh1").await.unwrap();
        check("complete_webhook");
        store
            .create_account(&Account {
                id: "acct_d".into(),
                service: svc.into(),
                msisdn: to.into(),
                password_hash: None,
                created_at: 1,
            })
            .await
            .unwrap();
        check("create_account");
        store
            .create_session(&Session {
                id: "ses_d".into(),
                account_id: "acct_d".into(),
                token_hash: vec![3; 32],
                created_at: 1,
                expires_at: 2,
            })
            .await
            .unwrap();
        check("create_session");
        store
            .audit(&AuditEvent {
                at: 1,
                service: None,
                kind: "test".into(),
                detail: serde_json::json!({}),
            })
            .await
            .unwrap();
        check("audit");
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = TempDir::new("reopen");
        let path = dir.db();
        let v = verification("vf_reopen", "svc-reopen", "+15550000001", 1_000);
        let m = message("msg_reopen", &v.id, "svc-reopen", "+15550000001", 1_000);
        {
            let store = SqliteStore::open(&path).await.expect("open");
            store
                .create_service(&service("svc-reopen"))
                .await
                .expect("create_service");
            let outcome = store
                .insert_verification(&v, &m, None)
                .await
                .expect("insert_verification");
            assert_eq!(outcome, InsertOutcome::Created);
            let out = store
                .record_dlr(&message_id_keys("6699"), MessageState::Delivered, 1_001)
                .await
                .expect("record_dlr");
            assert_eq!(out, DlrOutcome::Parked);
            store
                .rate_hit("k", 1, 1_000, 1_000)
                .await
                .expect("rate_hit");
            store.close().await;
        }
        let store = SqliteStore::open(&path)
            .await
            .expect("reopen (migrations already applied)");
        assert_eq!(
            store
                .get_service("svc-reopen")
                .await
                .expect("get")
                .map(|s| s.code),
            Some("svc-reopen".to_owned())
        );
        assert_eq!(
            store
                .find_pending("svc-reopen", "+15550000001")
                .await
                .expect("find_pending"),
            Some(v.clone())
        );
        assert_eq!(
            store.get_message(&m.id).await.expect("get_message"),
            Some(m.clone())
        );
        let sub = store
            .mark_submitted(&m.id, "smsc-a", &["1A2B".to_owned()], 1_002)
            .await
            .expect("mark_submitted");
        assert_eq!(
            sub.state,
            MessageState::Delivered,
            "the receipt parked before reopening applies"
        );
        let d = store
            .rate_hit("k", 1, 1_000, 1_500)
            .await
            .expect("rate_hit");
        assert!(!d.allowed, "the rate window survived");
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_starts_create_one_pending() {
        let dir = TempDir::new("race-insert");
        let path = dir.db();
        // Two instances on one database file.
        let a = Arc::new(SqliteStore::open(&path).await.expect("open a"));
        let b = Arc::new(SqliteStore::open(&path).await.expect("open b"));
        a.create_service(&service("svc-race"))
            .await
            .expect("create_service");
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = if i % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            tasks.push(tokio::spawn(async move {
                let v = verification(
                    &format!("vf_race_{i}"),
                    "svc-race",
                    "+15550000001",
                    1_000 + i,
                );
                let m = message(
                    &format!("msg_race_{i}"),
                    &v.id,
                    "svc-race",
                    "+15550000001",
                    1_000 + i,
                );
                store.insert_verification(&v, &m, None).await
            }));
        }
        let mut created = 0;
        let mut existing = HashSet::new();
        for t in tasks {
            match t.await.expect("task").expect("insert_verification") {
                InsertOutcome::Created => created += 1,
                InsertOutcome::PendingExists(v) => {
                    existing.insert(v.id);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(created, 1, "exactly one insert is Created");
        assert_eq!(
            existing.len(),
            1,
            "the 19 others all see the same winner: {existing:?}"
        );
        let winner = a
            .find_pending("svc-race", "+15550000001")
            .await
            .expect("find_pending")
            .expect("pending");
        assert!(
            existing.contains(&winner.id),
            "PendingExists returns the winner"
        );
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
            .fetch_one(&a.writes)
            .await
            .expect("count");
        assert_eq!(n, 1, "only the winner's message was written");
        a.close().await;
        b.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_claimers_never_share_a_message() {
        let dir = TempDir::new("race-claim");
        let path = dir.db();
        let a = Arc::new(SqliteStore::open(&path).await.expect("open a"));
        let b = Arc::new(SqliteStore::open(&path).await.expect("open b"));
        a.create_service(&service("svc-claim"))
            .await
            .expect("create_service");
        let total = 200;
        for i in 0..total {
            let to = format!("+1555{i:07}");
            let v = verification(&format!("vf_{i}"), "svc-claim", &to, 1_000 + i);
            let m = message(&format!("msg_{i}"), &v.id, "svc-claim", &to, 1_000 + i);
            a.insert_verification(&v, &m, None)
                .await
                .expect("insert_verification");
        }
        let claimer = |store: Arc<SqliteStore>| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                // Bounded: a store that hands leased messages out again
                // would otherwise never run dry.
                for _ in 0..100 {
                    let batch = store
                        .claim_outbox(10_000, 7, 60_000)
                        .await
                        .expect("claim_outbox");
                    if batch.is_empty() {
                        return got;
                    }
                    got.extend(batch.into_iter().map(|m| m.id));
                    tokio::task::yield_now().await;
                }
                panic!("claim_outbox never ran dry: leased messages handed out again");
            })
        };
        let (ga, gb) = (claimer(Arc::clone(&a)), claimer(Arc::clone(&b)));
        let (ga, gb) = (ga.await.expect("claimer a"), gb.await.expect("claimer b"));
        let sa: HashSet<&String> = ga.iter().collect();
        let sb: HashSet<&String> = gb.iter().collect();
        assert_eq!(sa.len(), ga.len(), "claimer a never got a message twice");
        assert_eq!(sb.len(), gb.len(), "claimer b never got a message twice");
        assert!(
            sa.is_disjoint(&sb),
            "the claimers never got the same message"
        );
        assert_eq!(
            sa.len() + sb.len(),
            total as usize,
            "every message was claimed"
        );
        a.close().await;
        b.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_rate_hits_across_instances_respect_the_limit() {
        let dir = TempDir::new("race-rate");
        let path = dir.db();
        let a = Arc::new(SqliteStore::open(&path).await.expect("open a"));
        let b = Arc::new(SqliteStore::open(&path).await.expect("open b"));
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = if i % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            tasks.push(tokio::spawn(async move {
                store.rate_hit("race", 10, 60_000, 120_000).await
            }));
        }
        let mut allowed = 0;
        for t in tasks {
            if t.await.expect("task").expect("rate_hit").allowed {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 10, "exactly the limit is allowed");
        a.close().await;
        b.close().await;
    }

    #[tokio::test]
    async fn unknown_enum_text_is_corrupt() {
        let store = SqliteStore::open_in_memory().await.expect("open_in_memory");
        store
            .create_service(&service("svc-corrupt"))
            .await
            .expect("create_service");
        let v = verification("vf_corrupt", "svc-corrupt", "+15550000001", 1_000);
        let m = message("msg_corrupt", &v.id, "svc-corrupt", "+15550000001", 1_000);
        store
            .insert_verification(&v, &m, None)
            .await
            .expect("insert_verification");
        sqlx::query("UPDATE verifications SET status = 'bogus'")
            .execute(&store.writes)
            .await
            .expect("update");
        sqlx::query("UPDATE outbox SET state = 'lost'")
            .execute(&store.writes)
            .await
            .expect("update");
        let err = store.get_verification(&v.id).await;
        assert!(
            matches!(err, Err(StoreError::Corrupt(_))),
            "unknown status: Corrupt, got {err:?}"
        );
        let err = store.get_message(&m.id).await;
        assert!(
            matches!(err, Err(StoreError::Corrupt(_))),
            "unknown state: Corrupt, got {err:?}"
        );
    }

    #[test]
    fn receipts_never_reopen_a_final_state() {
        use MessageState::*;
        let all = [
            Queued,
            Sending,
            Submitted,
            Delivered,
            Undeliverable,
            Rejected,
            Expired,
        ];
        for current in all {
            for incoming in all {
                let next = merge_receipt(current, incoming);
                if is_final(current) {
                    assert_eq!(next, current, "{current:?} + {incoming:?}");
                } else if is_final(incoming) {
                    assert_eq!(next, incoming, "{current:?} + {incoming:?}");
                } else {
                    assert!(!is_final(next), "{current:?} + {incoming:?}");
                }
            }
        }
        assert_eq!(
            merge_receipt(Submitted, Queued),
            Submitted,
            "a receipt never requeues"
        );
        assert_eq!(
            merge_receipt(Queued, Submitted),
            Submitted,
            "an accepted receipt moves forward"
        );
    }
}

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

mod engine;
mod migrate;
mod rows;
mod wal_sync;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags};
use verigate_codecs::dlr::message_id_keys;

use self::engine::Engine;
use self::rows::{all, col, corrupt, exec, one, parse_state, to_json, write_err};
use super::{
    Account, ApiKeyRecord, AuditEvent, CallJob, CallResult, CallState, CompleteMoLogin, Dispatch,
    DlrOutcome, Forget, IdempotencyRecord, InsertOutcome, MessageState, Millis, MoLogin,
    MoLoginOutcome, MoLoginState, MoMessage, MoPlan, OutboxDepth, OutboxMessage, OwnedDispatch,
    RateDecision, RateHit, RequestKey, Resend, Service, Session, Store, StoreError, StoreResult,
    Verification, VerificationStatus, WebhookJob,
};

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

macro_rules! call_cols {
    () => {
        r#"id, verification_id, service, kind, "to", caller, code, fallback_text, locale, state,
           sip_code, detail, attempts, next_attempt_at, expires_at, created_at, updated_at"#
    };
}

macro_rules! api_key_cols {
    () => {
        "key_id, service, hash, created_at, revoked_at"
    };
}

/// The SQLite store (cheap to clone; clones share the threads).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    engine: Arc<Engine>,
}

/// Opens a connection with the settings every connection gets.
/// Savepoint journals stay in memory (`temp_store`); `cache_kib` sizes the page cache.
fn connect(path: &str, cache_kib: i64) -> StoreResult<Connection> {
    let cannot = |e: rusqlite::Error| StoreError::Database(format!("cannot open {path}: {e}"));
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
            .map_err(|e| StoreError::Database(format!("cannot open the database: {e}")))?
    }

    fn open_blocking(path: &str) -> StoreResult<Self> {
        let file = Path::new(path);
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Database(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let mut writer = connect(path, WRITER_CACHE_KIB)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| StoreError::Database(format!("cannot open {path}: {e}")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(format!(
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
            .map_err(|e| StoreError::Database(format!("cannot resolve {path}: {e}")))?;
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        if !Path::new(&wal).exists() {
            return Err(StoreError::Database(format!(
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

// ---- statements shared by several operations

fn get_message(c: &Connection, id: &str) -> StoreResult<Option<OutboxMessage>> {
    one(
        c,
        concat!("SELECT ", outbox_cols!(), " FROM outbox WHERE id = ?1"),
        [id],
        rows::message,
    )
}

fn find_pending(c: &Connection, service: &str, to: &str) -> StoreResult<Option<Verification>> {
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

fn insert_message(c: &Connection, m: &OutboxMessage) -> StoreResult<()> {
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

fn insert_call(c: &Connection, j: &CallJob) -> StoreResult<()> {
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

fn insert_dispatch(c: &Connection, d: &OwnedDispatch) -> StoreResult<()> {
    match d {
        OwnedDispatch::Sms(m) => insert_message(c, m),
        OwnedDispatch::Call(j) => insert_call(c, j),
    }
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

fn get_call(c: &Connection, id: &str) -> StoreResult<Option<CallJob>> {
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

/// Whether an MO with `key` was stored at or after `since`.
fn seen_mo(c: &Connection, key: &[u8], since: Millis) -> StoreResult<bool> {
    Ok(one(
        c,
        "SELECT 1 FROM mo_messages WHERE dedup_key = ?1 AND received_at >= ?2",
        params![key, since],
        |_| Ok(()),
    )?
    .is_some())
}

fn insert_mo(c: &Connection, m: &MoMessage, key: &[u8]) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO mo_messages (id, smsc, source, dest, text, dedup_key, state, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'received', ?7)",
    )?
    .execute(params![
        m.id,
        m.smsc,
        m.source,
        m.dest,
        m.text,
        key,
        m.received_at
    ])
    .map_err(|e| write_err(e, &format!("MO {}", m.id)))?;
    Ok(())
}

/// [`CompleteMoLogin`] owned, to move onto the writer thread.
struct OwnedCompletion {
    token: String,
    msisdn: String,
    mo_id: String,
    new_account: Account,
    session: Session,
    session_token: String,
    password_sms: Option<OutboxMessage>,
    webhook: Option<WebhookJob>,
}

impl From<&CompleteMoLogin<'_>> for OwnedCompletion {
    fn from(x: &CompleteMoLogin<'_>) -> Self {
        OwnedCompletion {
            token: x.token.to_owned(),
            msisdn: x.msisdn.to_owned(),
            mo_id: x.mo_id.to_owned(),
            new_account: x.new_account.clone(),
            session: x.session.clone(),
            session_token: x.session_token.to_owned(),
            password_sms: x.password_sms.cloned(),
            webhook: x.webhook.cloned(),
        }
    }
}

/// [`MoPlan`] owned.
#[allow(clippy::large_enum_variant)] // one per MO, moved once onto the writer
enum OwnedPlan {
    /// The completion and the replies for unknown, expired, used.
    Login(OwnedCompletion, [OutboxMessage; 3]),
    Finish(String, Option<OutboxMessage>),
}

/// A login completed by its MO, inside [`Store::receive_mo`]'s transaction.
fn complete_login(c: &Connection, x: &OwnedCompletion, at: Millis) -> StoreResult<MoLoginOutcome> {
    let Some(login) = get_mo_login(c, &x.token)? else {
        return Ok(MoLoginOutcome::Unknown);
    };
    if login.state != MoLoginState::Pending {
        return Ok(MoLoginOutcome::Used);
    }
    if at > login.expires_at {
        return Ok(MoLoginOutcome::Expired);
    }
    let existing = one(
        c,
        "SELECT id, service, msisdn, password_hash, created_at FROM accounts
         WHERE service = ?1 AND msisdn = ?2",
        params![login.service, x.msisdn],
        rows::account,
    )?;
    let (account, created) = match existing {
        Some(a) => (a, false),
        None => {
            let a = Account {
                service: login.service.clone(),
                msisdn: x.msisdn.clone(),
                ..x.new_account.clone()
            };
            exec(
                c,
                "INSERT INTO accounts (id, service, msisdn, password_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![a.id, a.service, a.msisdn, a.password_hash, a.created_at],
            )?;
            if let Some(m) = &x.password_sms {
                insert_message(c, m)?;
            }
            (a, true)
        }
    };
    let s = &x.session;
    exec(
        c,
        "INSERT INTO sessions (id, account_id, token_hash, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![s.id, account.id, s.token_hash, s.created_at, s.expires_at],
    )?;
    exec(
        c,
        "UPDATE mo_logins SET state = 'completed', msisdn = ?2, account_id = ?3,
             created_account = ?4, session_token = ?5, completed_at = ?6
         WHERE token = ?1 AND state = 'pending'",
        params![x.token, x.msisdn, account.id, created, x.session_token, at],
    )?;
    if let Some(w) = &x.webhook {
        exec(
            c,
            "INSERT INTO webhook_jobs (id, service, url, body, attempts, next_attempt_at, last_error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![w.id, w.service, w.url, w.body, w.attempts, w.next_attempt_at, w.last_error],
        )?;
    }
    finish_mo(c, &x.mo_id, "login_completed", at)?;
    Ok(MoLoginOutcome::Completed { account, created })
}

fn get_mo_login(c: &Connection, token: &str) -> StoreResult<Option<MoLogin>> {
    one(
        c,
        "SELECT token, service, intent, state, msisdn, account_id, created_account, session_token,
                created_at, expires_at, completed_at
         FROM mo_logins WHERE token = ?1",
        [token],
        rows::mo_login,
    )
}

/// Marks an MO processed; false if it already was (a second processor).
fn finish_mo(c: &Connection, id: &str, outcome: &str, at: Millis) -> StoreResult<bool> {
    Ok(exec(
        c,
        "UPDATE mo_messages SET state = 'processed', outcome = ?2, processed_at = ?3
         WHERE id = ?1 AND state = 'received'",
        params![id, outcome, at],
    )? > 0)
}

/// Messages from an `UPDATE … RETURNING rowid AS seq, …` (whose row order
/// SQLite leaves unspecified), oldest first.
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

// ---- the operations, each run whole on one connection

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

fn mark_submitted(
    c: &Connection,
    id: &str,
    smsc: &str,
    message_ids: &[String],
    at: Millis,
) -> StoreResult<OutboxMessage> {
    let Some(msg) = get_message(c, id)? else {
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
            state = merge_receipt(state, dlr_state);
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
        "UPDATE outbox SET state = ?2, smsc = ?3, message_ids = ?4, lease_until = NULL, updated_at = ?5
         WHERE id = ?1",
        params![id, state.as_str(), smsc, to_json(&ids)?, at],
    )?;
    Ok(OutboxMessage {
        state,
        smsc: Some(smsc.to_string()),
        message_ids: ids,
        updated_at: at,
        ..msg
    })
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
        let next = merge_receipt(msg.state, state);
        if next == msg.state {
            return Ok(DlrOutcome::Applied(msg));
        }
        exec(
            c,
            "UPDATE outbox SET state = ?2, lease_until = NULL, updated_at = ?3 WHERE id = ?1",
            params![id, next.as_str(), at],
        )?;
        return Ok(DlrOutcome::Applied(OutboxMessage {
            state: next,
            updated_at: at,
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
    .ok_or_else(|| StoreError::Database("INSERT … RETURNING gave no row".into()))?;
    exec(
        c,
        "INSERT OR IGNORE INTO parked_dlr_keys (key, parked_id)
         SELECT value, ?2 FROM json_each(?1)",
        params![keys_json, parked_id],
    )?;
    Ok(DlrOutcome::Parked)
}

fn rate_hit(c: &Connection, key: &str, limit: u32, start: Millis) -> StoreResult<(bool, i64)> {
    // Counts the hit unless the limit is reached; RETURNING yields no row
    // when the conflict update's WHERE refuses it.
    let counted = if limit == 0 {
        None
    } else {
        one(
            c,
            "INSERT INTO rate_windows (key, window_start, count) VALUES (?1, ?2, 1)
             ON CONFLICT (key, window_start) DO UPDATE SET count = count + 1 WHERE count < ?3
             RETURNING count",
            params![key, start, limit],
            |row| col::<i64>(row, "rate_windows", "count"),
        )?
    };
    match counted {
        Some(n) => {
            if n == 1 {
                // A new window: earlier windows of this key are over.
                // Housekeeping only: the hit counts either way (the sweep
                // prunes what is left).
                if let Err(e) = exec(
                    c,
                    "DELETE FROM rate_windows WHERE key = ?1 AND window_start < ?2",
                    params![key, start],
                ) {
                    tracing::warn!(error = %e, "cannot prune old rate-limit windows");
                }
            }
            Ok((true, n))
        }
        None => {
            let n = one(
                c,
                "SELECT count FROM rate_windows WHERE key = ?1 AND window_start = ?2",
                params![key, start],
                |row| col::<i64>(row, "rate_windows", "count"),
            )?;
            Ok((false, n.unwrap_or(0)))
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn barrier(&self) -> StoreResult<()> {
        self.write(|_| Ok(())).await
    }

    fn durability_problem(&self) -> Option<String> {
        self.engine.problem()
    }

    // ---- services and API keys

    async fn create_service(&self, s: &Service) -> StoreResult<()> {
        let s = s.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO services (code, name, settings, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![s.code, s.name, to_json(&s.settings)?, s.created_at])
            .map_err(|e| write_err(e, &format!("service {}", s.code)))?;
            Ok(())
        })
        .await
    }

    async fn get_service(&self, code: &str) -> StoreResult<Option<Service>> {
        let code = code.to_owned();
        self.read(move |c| {
            one(
                c,
                "SELECT code, name, settings, created_at FROM services WHERE code = ?1",
                [code],
                rows::service,
            )
        })
        .await
    }

    async fn list_services(&self) -> StoreResult<Vec<Service>> {
        self.read(|c| {
            all(
                c,
                "SELECT code, name, settings, created_at FROM services ORDER BY code",
                [],
                rows::service,
            )
        })
        .await
    }

    async fn update_service_settings(
        &self,
        code: &str,
        settings: &serde_json::Value,
    ) -> StoreResult<()> {
        let code = code.to_owned();
        let settings = to_json(settings)?;
        self.write(move |c| {
            let n = exec(
                c,
                "UPDATE services SET settings = ?2 WHERE code = ?1",
                params![code, settings],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("service {code}")));
            }
            Ok(())
        })
        .await
    }

    async fn add_api_key(&self, k: &ApiKeyRecord) -> StoreResult<()> {
        let k = k.clone();
        self.write(move |c| {
            c.prepare_cached(concat!(
                "INSERT INTO api_keys (",
                api_key_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5)"
            ))?
            .execute(params![
                k.key_id,
                k.service,
                k.hash,
                k.created_at,
                k.revoked_at
            ])
            .map_err(|e| write_err(e, &format!("API key {} of service {}", k.key_id, k.service)))?;
            Ok(())
        })
        .await
    }

    async fn find_api_key(&self, hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>> {
        let hash = hash.to_vec();
        self.read(move |c| {
            one(
                c,
                concat!(
                    "SELECT ",
                    api_key_cols!(),
                    " FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL"
                ),
                [hash],
                rows::api_key,
            )
        })
        .await
    }

    async fn list_api_keys(&self, service: &str) -> StoreResult<Vec<ApiKeyRecord>> {
        let service = service.to_owned();
        self.read(move |c| {
            all(
                c,
                concat!(
                    "SELECT ",
                    api_key_cols!(),
                    " FROM api_keys WHERE service = ?1 ORDER BY created_at, rowid"
                ),
                [service],
                rows::api_key,
            )
        })
        .await
    }

    async fn revoke_api_keys(
        &self,
        service: &str,
        keep_key_id: &str,
        at: Millis,
    ) -> StoreResult<u64> {
        let (service, keep) = (service.to_owned(), keep_key_id.to_owned());
        self.write(move |c| {
            let n = exec(
                c,
                "UPDATE api_keys SET revoked_at = ?3
                 WHERE service = ?1 AND key_id <> ?2 AND revoked_at IS NULL",
                params![service, keep, at],
            )?;
            Ok(n as u64)
        })
        .await
    }

    // ---- verifications

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

    async fn update_verification(
        &self,
        id: &str,
        expect_status: VerificationStatus,
        expect_attempts: u32,
        status: VerificationStatus,
        attempts: u32,
        at: Millis,
    ) -> StoreResult<bool> {
        let id = id.to_owned();
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
            Ok(n == 1)
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

    // ---- calls

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
    ) -> StoreResult<Vec<CallJob>> {
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
            returned_calls(
                c,
                concat!(
                    "UPDATE calls
                     SET state = 'calling', attempts = attempts + 1, lease_until = ?2, updated_at = ?1
                     WHERE id IN (
                         SELECT id FROM calls
                         WHERE state IN ('queued', 'calling')
                           AND ((state = 'queued' AND next_attempt_at <= ?1)
                                OR (state = 'calling' AND COALESCE(lease_until, 0) <= ?1))
                           AND expires_at >= ?1
                         ORDER BY created_at, rowid
                         LIMIT ?3)
                     RETURNING rowid AS seq, ",
                    call_cols!()
                ),
                params![now, now.saturating_add(lease_ms.max(0)), limit],
            )
        })
        .await
    }

    async fn finish_call(
        &self,
        claimed: &CallJob,
        r: &CallResult,
        at: Millis,
    ) -> StoreResult<CallJob> {
        let (id, attempt, r) = (claimed.id.clone(), claimed.attempts, r.clone());
        self.write(move |c| {
            let retry = r.state == CallState::Queued;
            if r.state == CallState::Calling || (retry && r.retry_at.is_none()) {
                return Err(StoreError::Database(format!(
                    "call {id}: {} is not an outcome",
                    r.state.as_str()
                )));
            }
            // Only an unfinished call changes (a late report from a worker
            // whose lease ran out does not overwrite an outcome).
            let changed = exec(
                c,
                "UPDATE calls
                 SET state = ?2, sip_code = ?3, detail = ?4,
                     next_attempt_at = COALESCE(?5, next_attempt_at),
                     attempts = CASE WHEN ?6 AND ?8 AND attempts > 0 THEN attempts - 1 ELSE attempts END,
                     code = CASE WHEN ?6 THEN code ELSE NULL END,
                     fallback_text = CASE WHEN ?6 THEN fallback_text ELSE NULL END,
                     lease_until = NULL, updated_at = ?7
                 WHERE id = ?1 AND state IN ('queued', 'calling') AND attempts = ?9",
                params![
                    id,
                    r.state.as_str(),
                    r.sip_code,
                    r.detail,
                    r.retry_at,
                    retry,
                    at,
                    r.not_placed,
                    attempt
                ],
            )?;
            if changed == 1 && !retry {
                if let Some(m) = &r.fallback {
                    insert_message(c, m)?;
                }
            }
            get_call(c, &id)?.ok_or_else(|| StoreError::NotFound(format!("call {id}")))
        })
        .await
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
        // Waited to disk, though the claim itself could be lost harmlessly:
        // the flush also covers the inserts of the claimed messages, so no
        // code goes out for a start that is not yet on disk (and whose
        // caller may never get its 201). Claims are batched, so this costs
        // one shared flush per batch. Messages past their expiry are left to
        // `expire_outbox`: sending them would deliver a code that no longer
        // works.
        self.write(move |c| {
            returned_messages(
                c,
                concat!(
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
                ),
                params![now, now.saturating_add(lease_ms.max(0)), limit],
            )
        })
        .await
    }

    async fn mark_submitted(
        &self,
        id: &str,
        smsc: &str,
        message_ids: &[String],
        at: Millis,
    ) -> StoreResult<OutboxMessage> {
        let (id, smsc, ids) = (id.to_owned(), smsc.to_owned(), message_ids.to_vec());
        self.write(move |c| mark_submitted(c, &id, &smsc, &ids, at))
            .await
    }

    async fn mark_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<Millis>,
        at: Millis,
    ) -> StoreResult<()> {
        let (id, error) = (id.to_owned(), error.to_owned());
        self.write(move |c| {
            // Only an unfinished message changes: a late failure report from a
            // sender whose lease ran out must not requeue (and so resend) a
            // message another sender got accepted.
            let n = exec(
                c,
                "UPDATE outbox
                 SET state = CASE WHEN ?3 IS NULL THEN 'rejected' ELSE 'queued' END,
                     next_attempt_at = COALESCE(?3, next_attempt_at),
                     last_error = ?2, lease_until = NULL, updated_at = ?4
                 WHERE id = ?1 AND state IN ('queued', 'sending')",
                params![id, error, retry_at, at],
            )?;
            if n == 0 && one(c, "SELECT 1 FROM outbox WHERE id = ?1", [&id], |_| Ok(()))?.is_none()
            {
                return Err(StoreError::NotFound(format!("outbox message {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn expire_outbox(&self, now: Millis) -> StoreResult<Vec<OutboxMessage>> {
        self.write(move |c| {
            returned_messages(
                c,
                concat!(
                    "UPDATE outbox SET state = 'expired', lease_until = NULL, updated_at = ?1
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

    // ---- rate limits

    async fn rate_hits(&self, hits: &[RateHit<'_>], now: Millis) -> StoreResult<Vec<RateDecision>> {
        let hits: Vec<(String, u32, Millis, Millis)> = hits
            .iter()
            .map(|h| {
                let window = h.window_ms.max(1);
                let start = now - now.rem_euclid(window);
                (
                    h.key.to_owned(),
                    h.limit,
                    start,
                    start.saturating_add(window),
                )
            })
            .collect();
        // Not waited to disk: a counter lost with the machine undercounts
        // by moments of traffic, and the next durable write covers it anyway.
        self.write_volatile(move |c| {
            let mut out = Vec::with_capacity(hits.len());
            for (key, limit, start, reset_at) in hits {
                let (allowed, count) = rate_hit(c, &key, limit, start)?;
                let count =
                    u32::try_from(count).map_err(|_| corrupt("rate_windows", "count", count))?;
                out.push(RateDecision {
                    allowed,
                    count,
                    reset_at,
                });
                if !allowed {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn prune(&self, windows_before: Millis, keys_before: Millis) -> StoreResult<u64> {
        // Not waited to disk: a lost prune runs again at the next sweep.
        self.write_volatile(move |c| {
            let windows = exec(
                c,
                "DELETE FROM rate_windows WHERE window_start < ?1",
                [windows_before],
            )?;
            let keys = exec(
                c,
                "DELETE FROM idempotency_keys WHERE created_at < ?1",
                [keys_before],
            )?;
            Ok((windows + keys) as u64)
        })
        .await
    }

    async fn forget_old(&self, f: &Forget) -> StoreResult<u64> {
        let f = *f;
        // Not waited to disk: a lost run is done again at the next sweep.
        self.write_volatile(move |c| {
            let mos = exec(
                c,
                "DELETE FROM mo_messages WHERE received_at < ?1",
                [f.mos_before],
            )?;
            let logins = exec(
                c,
                "DELETE FROM mo_logins WHERE expires_at < ?1",
                [f.logins_expired_before],
            )?;
            let sessions = exec(
                c,
                "DELETE FROM sessions WHERE expires_at < ?1",
                [f.sessions_expired_before],
            )?;
            let texts = exec(
                c,
                "UPDATE outbox SET text = ''
                 WHERE text <> '' AND updated_at < ?1
                   AND state IN ('delivered', 'undeliverable', 'rejected', 'expired')",
                [f.texts_before],
            )?;
            Ok((mos + logins + sessions + texts) as u64)
        })
        .await
    }

    // ---- webhooks

    async fn enqueue_webhook(&self, job: &WebhookJob) -> StoreResult<()> {
        let job = job.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO webhook_jobs (id, service, url, body, attempts, next_attempt_at, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                job.id,
                job.service,
                job.url,
                job.body,
                job.attempts,
                job.next_attempt_at,
                job.last_error
            ])
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
        // Not waited to disk, like outbox claims.
        self.write_volatile(move |c| {
            let mut jobs = all(
                c,
                "UPDATE webhook_jobs SET attempts = attempts + 1, lease_until = ?2
                 WHERE id IN (
                     SELECT id FROM webhook_jobs
                     WHERE COALESCE(lease_until, next_attempt_at) <= ?1
                     ORDER BY next_attempt_at, rowid
                     LIMIT ?3)
                 RETURNING rowid AS seq, id, service, url, body, attempts, next_attempt_at, last_error",
                params![now, now.saturating_add(lease_ms.max(0)), limit],
                |row| Ok((col::<i64>(row, "webhook_jobs", "seq")?, rows::webhook(row)?)),
            )?;
            jobs.sort_by_key(|(seq, j)| (j.next_attempt_at, *seq));
            Ok(jobs.into_iter().map(|(_, j)| j).collect())
        })
        .await
    }

    async fn complete_webhook(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |c| {
            // Idempotent: a job another worker finished is gone already.
            exec(c, "DELETE FROM webhook_jobs WHERE id = ?1", [id])?;
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
        let (id, error) = (id.to_owned(), error.to_owned());
        self.write(move |c| {
            match retry_at {
                Some(at) => exec(
                    c,
                    "UPDATE webhook_jobs SET next_attempt_at = ?2, last_error = ?3, lease_until = NULL
                     WHERE id = ?1",
                    params![id, at, error],
                )?,
                None => exec(c, "DELETE FROM webhook_jobs WHERE id = ?1", [id])?,
            };
            Ok(())
        })
        .await
    }

    // ---- accounts and sessions

    // ---- MO login

    async fn create_mo_login(&self, l: &MoLogin) -> StoreResult<()> {
        let l = l.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO mo_logins (token, service, intent, state, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                l.token,
                l.service,
                l.intent.as_str(),
                l.state.as_str(),
                l.created_at,
                l.expires_at
            ])
            .map_err(|e| write_err(e, &format!("MO login of service {}", l.service)))?;
            Ok(())
        })
        .await
    }

    async fn get_mo_login(&self, token: &str) -> StoreResult<Option<MoLogin>> {
        let token = token.to_owned();
        self.read(move |c| get_mo_login(c, &token)).await
    }

    async fn receive_mo(
        &self,
        m: &MoMessage,
        dedup_key: &[u8],
        window_ms: i64,
        plan: &MoPlan<'_>,
        at: Millis,
    ) -> StoreResult<Option<MoLoginOutcome>> {
        let (m, key) = (m.clone(), dedup_key.to_vec());
        let plan = match plan {
            MoPlan::Login {
                complete,
                unknown,
                expired,
                used,
            } => OwnedPlan::Login(
                OwnedCompletion::from(complete),
                [(*unknown).clone(), (*expired).clone(), (*used).clone()],
            ),
            MoPlan::Finish { outcome, reply } => {
                OwnedPlan::Finish((*outcome).to_owned(), reply.cloned())
            }
        };
        self.write(move |c| {
            if seen_mo(c, &key, m.received_at.saturating_sub(window_ms))? {
                return Ok(None);
            }
            insert_mo(c, &m, &key)?;
            match plan {
                OwnedPlan::Login(x, replies) => {
                    let out = complete_login(c, &x, at)?;
                    let refusal = match out {
                        MoLoginOutcome::Completed { .. } => None,
                        MoLoginOutcome::Unknown => Some(("unknown", &replies[0])),
                        MoLoginOutcome::Expired => Some(("expired", &replies[1])),
                        MoLoginOutcome::Used => Some(("used", &replies[2])),
                    };
                    if let Some((outcome, reply)) = refusal {
                        finish_mo(c, &m.id, outcome, at)?;
                        insert_message(c, reply)?;
                    }
                    Ok(Some(out))
                }
                OwnedPlan::Finish(outcome, reply) => {
                    finish_mo(c, &m.id, &outcome, at)?;
                    if let Some(r) = &reply {
                        insert_message(c, r)?;
                    }
                    Ok(Some(MoLoginOutcome::Unknown))
                }
            }
        })
        .await
    }

    async fn collect_mo_login(&self, token: &str) -> StoreResult<Option<MoLogin>> {
        let token = token.to_owned();
        self.write(move |c| {
            let login = get_mo_login(c, &token)?;
            if login
                .as_ref()
                .is_some_and(|l| l.state == MoLoginState::Completed)
            {
                exec(
                    c,
                    "UPDATE mo_logins SET state = 'collected', session_token = NULL
                     WHERE token = ?1 AND state = 'completed'",
                    [&token],
                )?;
            }
            Ok(login)
        })
        .await
    }

    async fn create_account(&self, a: &Account) -> StoreResult<()> {
        let a = a.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO accounts (id, service, msisdn, password_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                a.id,
                a.service,
                a.msisdn,
                a.password_hash,
                a.created_at
            ])
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
        let (service, msisdn) = (service.to_owned(), msisdn.to_owned());
        self.read(move |c| {
            one(
                c,
                "SELECT id, service, msisdn, password_hash, created_at FROM accounts
                 WHERE service = ?1 AND msisdn = ?2",
                [service, msisdn],
                rows::account,
            )
        })
        .await
    }

    async fn create_session(&self, s: &Session) -> StoreResult<()> {
        let s = s.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO sessions (id, account_id, token_hash, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                s.id,
                s.account_id,
                s.token_hash,
                s.created_at,
                s.expires_at
            ])
            .map_err(|e| write_err(e, &format!("session {} of account {}", s.id, s.account_id)))?;
            Ok(())
        })
        .await
    }

    async fn get_session_by_token_hash(&self, token_hash: &[u8]) -> StoreResult<Option<Session>> {
        let hash = token_hash.to_vec();
        self.read(move |c| {
            one(
                c,
                "SELECT id, account_id, token_hash, created_at, expires_at FROM sessions
                 WHERE token_hash = ?1",
                [hash],
                rows::session,
            )
        })
        .await
    }

    // ---- audit

    async fn audit(&self, e: &AuditEvent) -> StoreResult<()> {
        let e = e.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO audit_events (at, service, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![e.at, e.service, e.kind, to_json(&e.detail)?])
            .map_err(|err| write_err(err, &format!("audit event {}", e.kind)))?;
            Ok(())
        })
        .await
    }

    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        self.read(move |c| {
            all(
                c,
                "SELECT at, service, kind, detail FROM audit_events
                 ORDER BY at DESC, seq DESC LIMIT ?1",
                [limit],
                rows::audit,
            )
        })
        .await
    }
}

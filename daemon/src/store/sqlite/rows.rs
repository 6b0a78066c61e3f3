//! Statement helpers, error mapping and row decoding for the SQLite store.

use rusqlite::types::FromSql;
use rusqlite::{Connection, ErrorCode, Params, Row};

use crate::store::{
    Account, ApiKeyRecord, AuditEvent, CallJob, CallKind, CallState, HttpMethod, MessageState,
    MoIntent, MoLogin, MoLoginState, OutboxMessage, Service, Session, StoreError, StoreResult,
    Verification, VerificationStatus, WebhookJob,
};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::database("SQLite", e)
    }
}

/// A failed write of `what`: a unique violation is the caller's conflict, a
/// missing referenced record (service, account, verification) is NotFound.
pub fn write_err(e: rusqlite::Error, what: &str) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        let msg = msg.as_deref().unwrap_or("constraint failed");
        if f.code == ErrorCode::ConstraintViolation {
            match f.extended_code {
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    return StoreError::Conflict(format!("{what} ({msg})"));
                }
                rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                    return StoreError::NotFound(format!(
                        "{what} refers to a record that does not exist ({msg})"
                    ));
                }
                _ => {}
            }
        }
    }
    e.into()
}

/// Runs a statement (cached), returning the rows it changed.
pub fn exec(c: &Connection, sql: &str, params: impl Params) -> StoreResult<usize> {
    Ok(c.prepare_cached(sql)?.execute(params)?)
}

/// The first row of a query, decoded.
pub fn one<T>(
    c: &Connection,
    sql: &str,
    params: impl Params,
    decode: impl FnOnce(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let mut stmt = c.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    match rows.next()? {
        Some(r) => decode(r).map(Some),
        None => Ok(None),
    }
}

/// Every row of a query, decoded.
pub fn all<T>(
    c: &Connection,
    sql: &str,
    params: impl Params,
    mut decode: impl FnMut(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = c.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(decode(r)?);
    }
    Ok(out)
}

pub fn corrupt(table: &str, col: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{table}.{col}: {detail}"))
}

pub fn col<T: FromSql>(row: &Row<'_>, table: &str, name: &str) -> StoreResult<T> {
    row.get::<_, T>(name).map_err(|e| corrupt(table, name, e))
}

pub fn col_u32(row: &Row<'_>, table: &str, name: &str) -> StoreResult<u32> {
    let v: i64 = col(row, table, name)?;
    u32::try_from(v).map_err(|_| corrupt(table, name, format!("{v} is not a count")))
}

pub fn col_json(row: &Row<'_>, table: &str, name: &str) -> StoreResult<serde_json::Value> {
    let text: String = col(row, table, name)?;
    serde_json::from_str(&text).map_err(|e| corrupt(table, name, e))
}

pub fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Bug(format!("cannot encode JSON: {e}")))
}

pub fn parse_state(table: &str, name: &str, s: &str) -> StoreResult<MessageState> {
    MessageState::parse(s).ok_or_else(|| corrupt(table, name, format!("unknown state {s:?}")))
}

pub fn service(row: &Row<'_>) -> StoreResult<Service> {
    Ok(Service {
        code: col(row, "services", "code")?,
        name: col(row, "services", "name")?,
        settings: col_json(row, "services", "settings")?,
        created_at: col(row, "services", "created_at")?,
    })
}

pub fn api_key(row: &Row<'_>) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        key_id: col(row, "api_keys", "key_id")?,
        service: col(row, "api_keys", "service")?,
        hash: col(row, "api_keys", "hash")?,
        created_at: col(row, "api_keys", "created_at")?,
        revoked_at: col(row, "api_keys", "revoked_at")?,
    })
}

pub fn verification(row: &Row<'_>) -> StoreResult<Verification> {
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

pub fn message(row: &Row<'_>) -> StoreResult<OutboxMessage> {
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

pub fn webhook(row: &Row<'_>) -> StoreResult<WebhookJob> {
    const T: &str = "webhook_jobs";
    Ok(WebhookJob {
        id: col(row, T, "id")?,
        service: col(row, T, "service")?,
        url: col(row, T, "url")?,
        body: col(row, T, "body")?,
        attempts: col_u32(row, T, "attempts")?,
        next_attempt_at: col(row, T, "next_attempt_at")?,
        last_error: col(row, T, "last_error")?,
        method: {
            let m: String = col(row, T, "method")?;
            HttpMethod::parse(&m).ok_or_else(|| corrupt(T, "method", format!("unknown {m:?}")))?
        },
        credential: col(row, T, "credential")?,
        deliver_until: col(row, T, "deliver_until")?,
        topic: col(row, T, "topic")?,
    })
}

pub fn account(row: &Row<'_>) -> StoreResult<Account> {
    const T: &str = "accounts";
    Ok(Account {
        id: col(row, T, "id")?,
        service: col(row, T, "service")?,
        msisdn: col(row, T, "msisdn")?,
        password_hash: col(row, T, "password_hash")?,
        created_at: col(row, T, "created_at")?,
    })
}

pub fn session(row: &Row<'_>) -> StoreResult<Session> {
    const T: &str = "sessions";
    Ok(Session {
        id: col(row, T, "id")?,
        account_id: col(row, T, "account_id")?,
        token_hash: col(row, T, "token_hash")?,
        created_at: col(row, T, "created_at")?,
        expires_at: col(row, T, "expires_at")?,
    })
}

pub fn audit(row: &Row<'_>) -> StoreResult<AuditEvent> {
    const T: &str = "audit_events";
    Ok(AuditEvent {
        at: col(row, T, "at")?,
        service: col(row, T, "service")?,
        kind: col(row, T, "kind")?,
        detail: col_json(row, T, "detail")?,
    })
}

pub fn call(row: &Row<'_>) -> StoreResult<CallJob> {
    const T: &str = "calls";
    let kind: String = col(row, T, "kind")?;
    let state: String = col(row, T, "state")?;
    let sip_code: Option<i64> = col(row, T, "sip_code")?;
    Ok(CallJob {
        id: col(row, T, "id")?,
        verification_id: col(row, T, "verification_id")?,
        service: col(row, T, "service")?,
        kind: CallKind::parse(&kind)
            .ok_or_else(|| corrupt(T, "kind", format!("unknown kind {kind:?}")))?,
        to: col(row, T, "to")?,
        caller: col(row, T, "caller")?,
        code: col(row, T, "code")?,
        fallback_text: col(row, T, "fallback_text")?,
        locale: col(row, T, "locale")?,
        state: CallState::parse(&state)
            .ok_or_else(|| corrupt(T, "state", format!("unknown state {state:?}")))?,
        sip_code: sip_code
            .map(|c| u16::try_from(c).map_err(|_| corrupt(T, "sip_code", c)))
            .transpose()?,
        detail: col(row, T, "detail")?,
        attempts: col_u32(row, T, "attempts")?,
        next_attempt_at: col(row, T, "next_attempt_at")?,
        expires_at: col(row, T, "expires_at")?,
        created_at: col(row, T, "created_at")?,
        updated_at: col(row, T, "updated_at")?,
    })
}

pub fn mo_login(row: &Row<'_>) -> StoreResult<MoLogin> {
    const T: &str = "mo_logins";
    let intent: String = col(row, T, "intent")?;
    let state: String = col(row, T, "state")?;
    let created: i64 = col(row, T, "created_account")?;
    Ok(MoLogin {
        token: col(row, T, "token")?,
        service: col(row, T, "service")?,
        intent: MoIntent::parse(&intent)
            .ok_or_else(|| corrupt(T, "intent", format!("unknown intent {intent:?}")))?,
        state: MoLoginState::parse(&state)
            .ok_or_else(|| corrupt(T, "state", format!("unknown state {state:?}")))?,
        msisdn: col(row, T, "msisdn")?,
        account_id: col(row, T, "account_id")?,
        created_account: created != 0,
        session_token: col(row, T, "session_token")?,
        created_at: col(row, T, "created_at")?,
        expires_at: col(row, T, "expires_at")?,
        completed_at: col(row, T, "completed_at")?,
    })
}

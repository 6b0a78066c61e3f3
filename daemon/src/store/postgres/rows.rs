//! Reading rows and telling driver errors apart, as `sqlite::rows` does
//! for SQLite: a unique violation is the caller's conflict, a missing
//! referenced record is NotFound, anything else the database's failure.

use crate::store::StoreError;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

/// A failed write of `what`.
pub fn write_err(what: &str) -> impl FnOnce(tokio_postgres::Error) -> StoreError + '_ {
    move |e| match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => {
            StoreError::Conflict(format!("{what} ({})", detail(&e)))
        }
        Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => StoreError::NotFound(format!(
            "{what} refers to a record that does not exist ({})",
            detail(&e)
        )),
        _ => StoreError::database(format!("writing {what}"), e),
    }
}

fn detail(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// A column, or Corrupt naming it.
pub fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    table: &str,
    name: &str,
) -> Result<T, StoreError> {
    row.try_get(name)
        .map_err(|e| StoreError::Corrupt(format!("{table}.{name}: {e}")))
}

/// A JSON text column.
pub fn col_json(row: &Row, table: &str, name: &str) -> Result<serde_json::Value, StoreError> {
    let text: String = col(row, table, name)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{table}.{name}: {e}")))
}

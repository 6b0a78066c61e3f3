//! The audit trail.

use super::rows::{self, all, to_json, write_err};
use super::SqliteStore;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::params;

#[async_trait]
impl AuditStore for SqliteStore {
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

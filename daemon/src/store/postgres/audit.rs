//! The audit trail.

use super::rows::{col, col_json, write_err};
use super::{pg_err, PostgresStore};
use crate::store::*;
use async_trait::async_trait;

#[async_trait]
impl AuditStore for PostgresStore {
    async fn audit(&self, e: &AuditEvent) -> StoreResult<()> {
        let c = self.conn().await?;
        let detail = serde_json::to_string(&e.detail)
            .map_err(|err| StoreError::Bug(format!("cannot encode JSON: {err}")))?;
        c.execute(
            "INSERT INTO audit_events (at, service, kind, detail) VALUES ($1, $2, $3, $4)",
            &[&e.at, &e.service, &e.kind, &detail],
        )
        .await
        .map_err(write_err(&format!("audit event {}", e.kind)))?;
        Ok(())
    }

    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        const T: &str = "audit_events";
        let c = self.conn().await?;
        c.query(
            "SELECT at, service, kind, detail FROM audit_events
             ORDER BY at DESC, seq DESC LIMIT $1",
            &[&i64::from(limit)],
        )
        .await
        .map_err(pg_err("reading the audit trail"))?
        .iter()
        .map(|r| {
            Ok(AuditEvent {
                at: col(r, T, "at")?,
                service: col(r, T, "service")?,
                kind: col(r, T, "kind")?,
                detail: col_json(r, T, "detail")?,
            })
        })
        .collect()
    }
}

//! The append-only audit trail.

use super::*;
use async_trait::async_trait;

/// An audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// When.
    pub at: Millis,
    /// Service, if any.
    pub service: Option<String>,
    /// Kind, e.g. `verification.approved`.
    pub kind: String,
    /// Details (never codes; numbers masked).
    pub detail: serde_json::Value,
}

/// The audit trail.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an audit event.
    async fn audit(&self, e: &AuditEvent) -> StoreResult<()>;
    /// Latest audit events, newest first.
    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditEvent>>;
}

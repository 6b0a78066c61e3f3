//! Retention: what the sweep deletes once it no longer needs keeping, in
//! batches (each its own short write, so the writer serves other requests
//! between them), and the SMS texts it blanks.

use super::*;
use async_trait::async_trait;

/// Rows [`RetentionStore::prune_batch`] deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retained {
    /// Closed verifications last changed before the cut, with their
    /// idempotency keys, SMS (and message keys) and calls.
    Verifications,
    /// SMS of no verification (MO replies) finished, or past expiry,
    /// before the cut, with their message keys.
    Outbox,
    /// Finished calls of no verification (voice-gateway calls) before the cut.
    Calls,
    /// Audit events before the cut.
    Audit,
    /// MOs received before the cut.
    MoMessages,
    /// Parts of long MOs whose other parts never came, stored before the cut.
    MoParts,
    /// MO logins whose token expired before the cut.
    MoLogins,
    /// Sessions expired before the cut.
    Sessions,
    /// Registry move offers expired before the cut.
    MoveOffers,
    /// The app side's bindings still pending (code never typed), asked
    /// for before the cut.
    PendingBindings,
    /// Registry notifications the app side applied, received before the
    /// cut (their ids keep a retry from applying twice).
    RegistryEvents,
    /// Relay sessions expired before the cut with nothing left to relay,
    /// with their transactions.
    RelaySessions,
}

impl Retained {
    /// Every kind, in the order the sweep prunes them.
    pub const ALL: [Retained; 12] = [
        Retained::Verifications,
        Retained::Outbox,
        Retained::Calls,
        Retained::Audit,
        Retained::MoMessages,
        Retained::MoParts,
        Retained::MoLogins,
        Retained::Sessions,
        Retained::MoveOffers,
        Retained::PendingBindings,
        Retained::RegistryEvents,
        Retained::RelaySessions,
    ];

    /// Name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Retained::Verifications => "verifications",
            Retained::Outbox => "outbox",
            Retained::Calls => "calls",
            Retained::Audit => "audit",
            Retained::MoMessages => "mo_messages",
            Retained::MoParts => "mo_parts",
            Retained::MoLogins => "mo_logins",
            Retained::Sessions => "sessions",
            Retained::MoveOffers => "move_offers",
            Retained::PendingBindings => "pending_bindings",
            Retained::RegistryEvents => "registry_events",
            Retained::RelaySessions => "relay_sessions",
        }
    }
}

/// Which SMS texts (codes, passwords) [`RetentionStore::blank_texts`] blanks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextCut {
    /// Texts of SMS in a final state reached before this.
    pub final_before: Millis,
    /// Texts of SMS in any state whose expiry passed before this (a
    /// receipt that never comes does not keep a code).
    pub expired_before: Millis,
}

/// Deleting and blanking what is no longer needed.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Deletes up to `batch` rows of `what` past `before` (see [`Retained`])
    /// in one write; returns how many (a full batch: call again).
    async fn prune_batch(&self, what: Retained, before: Millis, batch: u32) -> StoreResult<u64>;
    /// Blanks up to `batch` of the texts `cut` names in one write; returns
    /// how many (a full batch: call again).
    async fn blank_texts(&self, cut: TextCut, batch: u32) -> StoreResult<u64>;
}

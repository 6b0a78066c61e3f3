//! The store: one trait per domain (services, verifications, outbox,
//! calls, webhooks, MO login, the registry and the app side's bindings, the
//! relay's subscriber directory,
//! audit, rate limits, retention), not a SQL abstraction,
//! with one backend per database. [`Store`] is all of them together: a
//! backend implements each domain trait and passes each domain's battery in
//! `conformance` (built for tests, or with the `conformance` feature).
//! SQLite (WAL) is the embedded default.

pub mod audit;
pub mod bindings;
pub mod calls;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod limits;
pub mod mologin;
pub mod outbox;
pub mod postgres;
pub mod queue;
pub mod registry;
pub mod retention;
pub mod services;
pub mod sqlite;
pub mod txqueue;
pub mod txrelay;
pub mod verifications;
pub mod webhooks;

pub use crate::clock::Millis;
pub use audit::*;
pub use bindings::*;
pub use calls::*;
pub use limits::*;
pub use mologin::*;
pub use outbox::*;
pub use queue::*;
pub use registry::*;
pub use retention::*;
pub use services::*;
pub use txqueue::*;
pub use txrelay::*;
pub use verifications::*;
pub use webhooks::*;

use async_trait::async_trait;

/// The error a database driver gave, kept as the source of a
/// [`StoreError::Database`] (shared: one failed commit answers every write in it).
pub type DriverError = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Who is at fault when the store fails.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A record with this key exists already (the caller's request conflicts).
    #[error("already exists: {0}")]
    Conflict(String),
    /// The record does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The database failed (our side or the operator's database): what we
    /// were doing, and the driver's error when there is one.
    #[error("database error: {context}{}", .source.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Database {
        /// What the store was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: Option<DriverError>,
    },
    /// The store cannot take the operation now (closed, overloaded, its
    /// writer or flusher stopped, or a record kept changing under us): the
    /// operator's machine or a restart, not the caller.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Verigate broke the store's contract (a bug, logged; nothing was written).
    #[error("store misuse (a bug): {0}")]
    Bug(String),
    /// The caller's claim on a queued job was taken over (its lease ran
    /// out and another claim took the job) or the job was finished by
    /// someone else: the holder must drop the job without recording anything.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// Stored data could not be read back (a bug or a manual edit).
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// The database failed doing `context`, with the driver's error.
    pub fn database(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Database {
            context: context.into(),
            source: Some(std::sync::Arc::new(source)),
        }
    }

    /// The database failed doing `context`, with no driver error to keep.
    pub fn database_failed(context: impl Into<String>) -> Self {
        StoreError::Database {
            context: context.into(),
            source: None,
        }
    }
}

/// Result alias.
pub type StoreResult<T> = Result<T, StoreError>;

/// When writes are on disk, and whether they still can be.
#[async_trait]
pub trait Durability: Send + Sync {
    /// Returns once every write committed before the call is durable. An
    /// answer built from rows another request wrote (a replayed or repeated
    /// start) waits for this, so it never promises a row that could still
    /// be lost.
    async fn barrier(&self) -> StoreResult<()> {
        Ok(())
    }
    /// Why the store can no longer make writes durable, if so (readiness
    /// reports it; the operator restarts).
    fn durability_problem(&self) -> Option<String> {
        None
    }
}

/// Declares [`Store`] as the sum of the listed traits, and implements it
/// for everything that implements them all (one list, so the two cannot
/// drift apart).
macro_rules! store_of {
    ($(#[$m:meta])* $($t:path),+ $(,)?) => {
        $(#[$m])*
        pub trait Store: $($t +)+ std::fmt::Debug {}
        impl<T> Store for T where T: $($t +)+ std::fmt::Debug {}
    };
}

store_of! {
    /// Everything verigate keeps: every domain's trait. Implementations must be
    /// safe to share between tasks and between instances on one database
    /// (claims use leases). Adding a backend means implementing each domain
    /// trait and passing each battery in `conformance`.
    Durability,
    ServiceStore,
    VerificationStore,
    OutboxStore,
    CallStore,
    WebhookStore,
    MoLoginStore,
    AuditStore,
    RateLimitStore,
    RetentionStore,
    RegistryStore,
    BindingsStore,
    SubscriberStore,
    RelayKeyStore,
    TxQueueStore,
}

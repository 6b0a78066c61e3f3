//! The carrier's number-binding registry (CN103746792A): which app
//! platforms each number is bound to, purged and notified when the number
//! is unbound by its subscriber or recycled by the carrier.

use super::*;
use async_trait::async_trait;

/// An app platform the operator registered with the registry (a service
/// of ours: it calls with that service's API key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryApp {
    /// Its service code.
    pub service: String,
    /// Where its notifications go.
    pub notify_url: String,
    /// When registered.
    pub created_at: Millis,
}

/// A number bound to an app platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// E.164 with `+`.
    pub msisdn: String,
    /// The app platform's service code.
    pub service: String,
    /// When bound.
    pub bound_at: Millis,
}

/// Why bindings are purged, and what each bound app is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge<'a> {
    /// The number.
    pub msisdn: &'a str,
    /// Only this app's binding (`UNBIND <service>`); None: every binding.
    pub only: Option<&'a str>,
    /// The number changed hands: the date is recorded for the
    /// NumberRecycling check.
    pub recycled: bool,
    /// Event type of the notifications (`unbind`, `recycled`).
    pub kind: &'a str,
    /// Event id; each app's notification id is this with its service code.
    pub event_id: &'a str,
    /// How long each notification is retried before it is given up.
    pub notify_for: Millis,
    /// Only bindings made before this time (a number recycled on a past
    /// date keeps what its new owner bound since); None: every one.
    pub bound_before: Option<Millis>,
}

/// What [`RegistryStore::purge`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purged {
    /// The services whose bindings were removed.
    pub services: Vec<String>,
    /// Notifications queued (one per purged app with a notify URL).
    pub notified: usize,
}

/// The registry's app platforms, bindings and recycled numbers.
#[async_trait]
pub trait RegistryStore: Send + Sync {
    /// Registers an app platform; `Conflict` if its service has one.
    async fn add_registry_app(&self, app: &RegistryApp) -> StoreResult<()>;
    /// The app platform of a service.
    async fn get_registry_app(&self, service: &str) -> StoreResult<Option<RegistryApp>>;
    /// Every app platform, by service code.
    async fn list_registry_apps(&self) -> StoreResult<Vec<RegistryApp>>;
    /// Binds `msisdn` to `service` (an app platform); true if it was not
    /// bound (idempotent: binding again changes nothing).
    async fn bind(&self, msisdn: &str, service: &str, at: Millis) -> StoreResult<bool>;
    /// Unbinds `msisdn` from `service` at the app's own request (no
    /// notification: the app asked); true if it was bound.
    async fn unbind(&self, msisdn: &str, service: &str) -> StoreResult<bool>;
    /// The bindings of a number, by service code.
    async fn bindings_of(&self, msisdn: &str) -> StoreResult<Vec<Binding>>;
    /// Removes the bindings `p` names and, in the same transaction, queues
    /// a signed notification to each purged app that has a notify URL
    /// (`{"type": kind, "id": …, "data": {"msisdn", "service", "at"}}`)
    /// and, for a recycled number, records the date. Nothing bound: only
    /// the date (if recycled) is written.
    async fn purge(&self, p: &Purge<'_>, at: Millis) -> StoreResult<Purged>;
    /// Whether `msisdn` was recycled at or after `since`.
    async fn recycled_since(&self, msisdn: &str, since: Millis) -> StoreResult<bool>;
    /// When the registry's records of recycled numbers begin (the first
    /// recorded recycling, or the first app registered), if any.
    async fn records_began(&self) -> StoreResult<Option<Millis>>;
}

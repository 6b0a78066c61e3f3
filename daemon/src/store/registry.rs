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
    /// Points an app platform's notifications at `notify_url`; false if
    /// the service is no app platform.
    async fn set_registry_app_url(&self, service: &str, notify_url: &str) -> StoreResult<bool>;
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
    /// The move offer with this token (expired or not).
    async fn move_offer(&self, token: &str) -> StoreResult<Option<MoveOffer>>;
    /// Stores a move offer; `Conflict` if its token is taken.
    async fn offer_move(&self, offer: &MoveOffer) -> StoreResult<()>;
    /// Moves every binding of `old` to `new` (both proven by the caller)
    /// and queues the `number_updated` notifications, as
    /// [`RegistryStore::take_move`] does once its offer is taken.
    async fn move_bindings(
        &self,
        old: &str,
        new: &str,
        event_id: &str,
        notify_for: Millis,
        at: Millis,
    ) -> StoreResult<MoveDone>;
    /// Takes a move offer at `at`: moves every binding of its old number
    /// to the new one and, in the same transaction, queues a signed
    /// `number_updated` notification (`data: {old, new, service, at}`) to
    /// each moved app with a notify URL; the offer is used up.
    async fn take_move(&self, take: &TakeMove<'_>, at: Millis) -> StoreResult<Moved>;
}

/// A subscriber's offer to move the bindings of `old` to `new`: made by
/// an MO (or a code) from the old number, taken by one from the new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveOffer {
    /// What the new number's MO must carry.
    pub token: String,
    /// The number the bindings leave (proven already).
    pub old_msisdn: String,
    /// The number they go to (to be proven).
    pub new_msisdn: String,
    /// When offered.
    pub created_at: Millis,
    /// Not taken after this.
    pub expires_at: Millis,
}

/// The new number's half of a move: the offer `token` is taken if `new`
/// is its new number and it has not expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeMove<'a> {
    /// The offer's token.
    pub token: &'a str,
    /// The number that proved itself (the MO's sender).
    pub new_msisdn: &'a str,
    /// Event id of the `number_updated` notifications.
    pub event_id: &'a str,
    /// How long each notification is retried.
    pub notify_for: Millis,
}

/// Bindings moved to a new number; each app was told (`number_updated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveDone {
    /// The number they left.
    pub old_msisdn: String,
    /// The services whose bindings moved.
    pub services: Vec<String>,
    /// Notifications queued.
    pub notified: usize,
}

/// What taking a move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// The bindings moved.
    Moved(MoveDone),
    /// No offer has the token for this number (unknown, another number's,
    /// or taken already).
    NoOffer,
    /// The offer's time ran out.
    Expired,
}

/// What an MO to the registry's short code does, in the transaction that
/// stores it (see [`super::MoPlan::Registry`]).
#[derive(Debug, Clone)]
pub enum RegistryAct<'a> {
    /// The subscriber unbinds (one app or all).
    Purge(Purge<'a>),
    /// The old number offers a move.
    Offer(&'a MoveOffer),
    /// The new number takes it.
    Take(TakeMove<'a>),
    /// Nothing to change (`BINDINGS`, help).
    Read,
}

/// What a [`RegistryAct`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryActed {
    /// Bindings purged.
    Purged(Purged),
    /// The offer is stored.
    Offered,
    /// A move taken (or refused).
    Moved(Moved),
    /// Nothing changed.
    Read,
}

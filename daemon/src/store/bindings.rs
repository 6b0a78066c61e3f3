//! The app side of the number registry (the "phone verification platform"
//! of an app): its accounts' numbers, each proven by an SMS code and
//! reported to the carrier's registry, and the registry's notifications
//! applied once each.

use super::*;
use async_trait::async_trait;

/// A number bound to one of the app's accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppBinding {
    /// Opaque id (`bnd_…`).
    pub id: String,
    /// The local service (the app).
    pub service: String,
    /// The app's own account id.
    pub account_ref: String,
    /// E.164 with `+`.
    pub msisdn: String,
    /// Waiting for the code, or in force.
    pub state: AppBindingState,
    /// The verification that sends (and checks) the code.
    pub verification_id: String,
    /// When asked for.
    pub created_at: Millis,
    /// When last changed (confirmed, moved).
    pub updated_at: Millis,
}

/// Where a binding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppBindingState {
    /// The code was sent; not confirmed yet.
    Pending,
    /// Confirmed and reported to the carrier's registry.
    Active,
}

impl AppBindingState {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AppBindingState::Pending => "pending",
            AppBindingState::Active => "active",
        }
    }

    /// From its stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(AppBindingState::Pending),
            "active" => Some(AppBindingState::Active),
            _ => None,
        }
    }
}

/// Which bindings a listing wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingFilter<'a> {
    /// Of one account.
    Account(&'a str),
    /// Of one number.
    Msisdn(&'a str),
}

/// A notification from the carrier's registry, to apply once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEvent<'a> {
    /// The local service it is for.
    pub service: &'a str,
    /// Its id (the same on every retry).
    pub event_id: &'a str,
    /// What the registry did.
    pub change: RegistryChange<'a>,
    /// When received.
    pub at: Millis,
    /// Where the app's account server hears of it (the local service's
    /// webhook URL), if anywhere: a signed `binding.removed` or
    /// `binding.moved` per binding changed, queued in the same write.
    pub account_hook: Option<&'a str>,
}

/// What the registry did to a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryChange<'a> {
    /// The subscriber unbound it, or the carrier recycled it (`reason`):
    /// the number's binding goes.
    Removed {
        /// The number.
        msisdn: &'a str,
        /// `unbind` or `recycled`.
        reason: &'a str,
    },
    /// The subscriber moved to a new number: the binding follows (another
    /// account's binding of the new number is removed, reason `replaced`).
    Moved {
        /// The number it was.
        old: &'a str,
        /// The number it is.
        new: &'a str,
    },
}

/// What applying a registry event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventApplied {
    /// Applied now: the bindings it changed (as they were).
    Applied(Vec<AppBinding>),
    /// Its id was applied before: nothing changed.
    Duplicate,
}

/// The app side's bindings.
#[async_trait]
pub trait BindingsStore: Send + Sync {
    /// Stores a pending binding.
    async fn create_app_binding(&self, b: &AppBinding) -> StoreResult<()>;
    /// The binding `id` of `service`.
    async fn get_app_binding(&self, service: &str, id: &str) -> StoreResult<Option<AppBinding>>;
    /// The bindings of `service` matching `filter`, newest first, at most
    /// `limit`.
    async fn list_app_bindings(
        &self,
        service: &str,
        filter: BindingFilter<'_>,
        limit: u32,
    ) -> StoreResult<Vec<AppBinding>>;
    /// Makes a pending binding active at `at` and, in the same write,
    /// queues `report` (the signed bind message to the carrier). `Conflict`
    /// if the service has another active binding of that number; the
    /// binding as it is now, None if it is gone. An active one is returned
    /// as it is (nothing queued).
    async fn activate_app_binding(
        &self,
        service: &str,
        id: &str,
        report: &WebhookJob,
        at: Millis,
    ) -> StoreResult<Option<AppBinding>>;
    /// Removes a binding and, if it was active, queues `report` (the
    /// unbind message) in the same write; the binding as it was.
    async fn remove_app_binding(
        &self,
        service: &str,
        id: &str,
        report: &WebhookJob,
    ) -> StoreResult<Option<AppBinding>>;
    /// Applies a registry notification once per event id: removes or moves
    /// the service's active bindings of the number, records the id, and
    /// queues the account server's webhooks, in one write.
    async fn apply_registry_event(&self, e: &RegistryEvent<'_>) -> StoreResult<EventApplied>;
}

//! The carrier's number-binding registry (CN103746792A): app platforms
//! bind and unbind the numbers of their accounts; a subscriber (proven by
//! possession) unbinds one app or all; the carrier recycles a number, which
//! purges every binding and tells every bound app; anyone authorised asks
//! whether a number was recycled since a date (CAMARA NumberRecycling).
//! Notifications go through the durable, signed webhook queue, written in
//! the same transaction as the purge.

pub mod command;
pub mod import;
pub mod mo;

use crate::random::Random;
use crate::store::{Binding, Millis, Purge, Purged, Service, Store, StoreError};
use crate::verify::phone::{self, PhoneError};
use std::sync::Arc;

/// Why a registry request was refused; each says who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The calling service is not a registered app platform.
    #[error("service {0:?} is not an app platform of this registry")]
    NotAnApp(String),
    /// An app platform may touch only its own bindings.
    #[error("service {caller:?} cannot change the bindings of {target:?}")]
    OtherApp {
        /// Who asked.
        caller: String,
        /// Whose binding it named.
        target: String,
    },
    /// The number is not a usable phone number.
    #[error(transparent)]
    BadNumber(#[from] PhoneError),
    /// A date before the registry's records begin cannot be answered.
    #[error("records of recycled numbers begin on {began}; no answer for an earlier date")]
    BeforeRecords {
        /// When they begin (RFC 3339).
        began: String,
    },
    /// Only the services `registry.self_care_services` names act for
    /// subscribers.
    #[error("service {0:?} may not act for subscribers (registry.self_care_services)")]
    NotSelfCare(String),
    /// The verification given proves nothing (missing, pending, old).
    #[error(transparent)]
    Proof(crate::verify::proof::ProofError),
    /// A move needs two different numbers.
    #[error("the old and the new number are the same ({0})")]
    SameNumber(String),
    /// The store failed (our side).
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
}

/// The registry.
#[derive(Debug)]
pub struct Registry {
    store: Arc<dyn Store>,
    rng: Random,
    region: String,
    notify_for: Millis,
    /// Services that act for subscribers (a carrier's self-care portal).
    self_care: Vec<String>,
    /// How recent a verification's approval must be to prove a number.
    proof_ttl: Millis,
}

impl Registry {
    /// The registry on `store`; national numbers are read in `region`.
    pub fn new(store: Arc<dyn Store>, region: &str, rng: Random) -> Self {
        Registry {
            store,
            rng,
            region: region.to_string(),
            notify_for: DEFAULT_NOTIFY_FOR,
            self_care: Vec::new(),
            proof_ttl: DEFAULT_PROOF_TTL,
        }
    }

    /// Services `self_care` may act for subscribers on a code proof no
    /// older than `proof_ttl` ms.
    pub fn with_self_care(mut self, self_care: Vec<String>, proof_ttl: Millis) -> Self {
        self.self_care = self_care;
        self.proof_ttl = proof_ttl;
        self
    }

    /// Notifications are retried for `ms` before they are given up.
    pub fn with_notify_for(mut self, ms: Millis) -> Self {
        self.notify_for = ms;
        self
    }

    /// The region national numbers are read in.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The number as E.164.
    fn number(&self, raw: &str) -> Result<String, RegistryError> {
        Ok(phone::normalize(raw, &self.region)?.as_str().to_string())
    }

    /// `caller` may change `target`'s bindings only if both are the same
    /// registered app platform.
    async fn own_app(&self, caller: &Service, target: &str) -> Result<(), RegistryError> {
        if caller.code != target {
            return Err(RegistryError::OtherApp {
                caller: caller.code.clone(),
                target: target.to_string(),
            });
        }
        match self.store.get_registry_app(target).await? {
            Some(_) => Ok(()),
            None => Err(RegistryError::NotAnApp(target.to_string())),
        }
    }

    /// Binds a number to the calling app platform (idempotent): the
    /// binding, and whether it is new.
    pub async fn bind(
        &self,
        caller: &Service,
        msisdn: &str,
        service: &str,
        now: Millis,
    ) -> Result<(Binding, bool), RegistryError> {
        self.own_app(caller, service).await?;
        let msisdn = self.number(msisdn)?;
        let created = self.store.bind(&msisdn, service, now).await?;
        let binding = self
            .store
            .bindings_of(&msisdn)
            .await?
            .into_iter()
            .find(|b| b.service == service)
            .ok_or_else(|| StoreError::Unavailable("binding removed as it was made".into()))?;
        Ok((binding, created))
    }

    /// Unbinds a number from the calling app platform (idempotent): whether
    /// it was bound. The app asked, so it is not notified.
    pub async fn unbind(
        &self,
        caller: &Service,
        msisdn: &str,
        service: &str,
    ) -> Result<bool, RegistryError> {
        self.own_app(caller, service).await?;
        let msisdn = self.number(msisdn)?;
        Ok(self.store.unbind(&msisdn, service).await?)
    }

    /// The subscriber of `msisdn` (proven by possession) unbinds `only`
    /// one app platform, or all: each purged app is notified (`unbind`).
    pub async fn subscriber_unbind(
        &self,
        msisdn: &str,
        only: Option<&str>,
        now: Millis,
    ) -> Result<Purged, RegistryError> {
        let msisdn = self.number(msisdn)?;
        let event_id = self.rng.id("evt", now);
        let purge = Purge {
            msisdn: &msisdn,
            only,
            recycled: false,
            kind: "unbind",
            event_id: &event_id,
            notify_for: self.notify_for,
            bound_before: None,
        };
        Ok(self.store.purge(&purge, now).await?)
    }

    /// The number verification `id` of `caller` proves now: approved (the
    /// subscriber typed the code we sent by SMS) no longer than the proof
    /// time ago.
    async fn proven(
        &self,
        caller: &Service,
        id: &str,
        now: Millis,
    ) -> Result<String, RegistryError> {
        if !self.self_care.contains(&caller.code) {
            return Err(RegistryError::NotSelfCare(caller.code.clone()));
        }
        crate::verify::proof::approved_sms(&*self.store, &caller.code, id, now, self.proof_ttl)
            .await
            .map(|v| v.to)
            .map_err(|e| match e {
                crate::verify::proof::ProofError::Store(e) => RegistryError::Store(e),
                other => RegistryError::Proof(other),
            })
    }

    /// A subscriber proven by an SMS code (verification `id`) unbinds one
    /// app platform or all, through a self-care service.
    pub async fn unbind_proven(
        &self,
        caller: &Service,
        id: &str,
        only: Option<&str>,
        now: Millis,
    ) -> Result<(String, Purged), RegistryError> {
        let msisdn = self.proven(caller, id, now).await?;
        let purged = self.subscriber_unbind(&msisdn, only, now).await?;
        Ok((msisdn, purged))
    }

    /// A subscriber proven on both numbers by SMS codes moves every
    /// binding from the old to the new: each app is told `number_updated`.
    pub async fn move_proven(
        &self,
        caller: &Service,
        old_id: &str,
        new_id: &str,
        now: Millis,
    ) -> Result<(String, String, crate::store::MoveDone), RegistryError> {
        let old = self.proven(caller, old_id, now).await?;
        let new = self.proven(caller, new_id, now).await?;
        if old == new {
            return Err(RegistryError::SameNumber(phone::mask(&old)));
        }
        let event_id = self.rng.id("evt", now);
        let moved = self
            .store
            .move_bindings(&old, &new, &event_id, self.notify_for, now)
            .await?;
        Ok((old, new, moved))
    }

    /// The carrier recycled (or deactivated) `msisdn` at `at`: every
    /// binding is purged, every bound app notified (`recycled`), the date
    /// recorded. Given as a past `day` (its midnight), bindings made after
    /// that day are the new owner's and stay; the day's own are purged
    /// (a stale binding is the risk, a new owner's rebind is not).
    pub async fn recycle(
        &self,
        msisdn: &str,
        at: Millis,
        day: bool,
    ) -> Result<Purged, RegistryError> {
        let msisdn = self.number(msisdn)?;
        let event_id = self.rng.id("evt", at);
        let bound_before = day.then(|| at.saturating_add(DAY));
        let purge = Purge {
            msisdn: &msisdn,
            only: None,
            recycled: true,
            kind: "recycled",
            event_id: &event_id,
            notify_for: self.notify_for,
            bound_before,
        };
        Ok(self.store.purge(&purge, at).await?)
    }

    /// Whether `msisdn` changed hands at or after `since` (CAMARA
    /// NumberRecycling). A date before the records begin has no answer.
    pub async fn recycled_since(&self, msisdn: &str, since: Millis) -> Result<bool, RegistryError> {
        let msisdn = self.number(msisdn)?;
        match self.store.records_began().await? {
            Some(began) if since < began - DAY => Err(RegistryError::BeforeRecords {
                began: verigate_codecs::time::rfc3339(began),
            }),
            _ => Ok(self.store.recycled_since(&msisdn, since).await?),
        }
    }

    /// The bindings of a number (for the operator and the subscriber's
    /// `BINDINGS`).
    pub async fn bindings_of(&self, msisdn: &str) -> Result<Vec<Binding>, RegistryError> {
        let msisdn = self.number(msisdn)?;
        Ok(self.store.bindings_of(&msisdn).await?)
    }
}

/// How recent a code proof must be unless configured (`registry.proof_ttl`).
const DEFAULT_PROOF_TTL: Millis = 10 * 60 * 1000;

/// How long notifications are retried unless configured (`registry.notify_for`).
const DEFAULT_NOTIFY_FOR: Millis = 3 * DAY;

/// A date names a whole day: records that began during it answer for it.
pub(crate) const DAY: Millis = 24 * 3600 * 1000;

#[cfg(test)]
mod tests;

//! The app side of the number registry (CN103746792A's "phone
//! verification platform" of an app): an account's number is bound once
//! the subscriber typed the SMS code we sent, and reported to the carrier's
//! registry; the registry's notifications (unbind, recycled, moved) are
//! checked, applied once, and passed on to the app's account server.
//! Reports and webhooks go through the durable webhook queue, written in
//! the same transaction as the change they report.

use crate::config::BindingsApp;
use crate::random::Random;
use crate::store::{
    AppBinding, AppBindingState, BindingFilter, EventApplied, HttpMethod, Millis, RegistryChange,
    RegistryEvent, Service, Store, StoreError, WebhookJob,
};
use crate::verify::error::VerifyError;
use crate::verify::phone::{self, PhoneError};
use crate::verify::proof::ProofError;
use crate::verify::service::{Checked, StartRequest, VerifyService};
use crate::webhook::{SignatureError, SIGNATURE_HEADER};
use std::collections::HashMap;
use std::sync::Arc;
use tracing::info;

/// Why a bindings request was refused; each says who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum BindingsError {
    /// The calling service has no `[[bindings]]` entry.
    #[error("service {0:?} has no [[bindings]] entry: it reports to no carrier registry")]
    NotAnApp(String),
    /// The caller's request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// No binding of the caller's with this id.
    #[error("no binding {0:?} of this service")]
    NoBinding(String),
    /// The number is another account's binding.
    #[error("{0}")]
    Taken(String),
    /// The number is not a usable phone number.
    #[error(transparent)]
    BadNumber(#[from] PhoneError),
    /// The removal's proof does not hold.
    #[error(transparent)]
    Proof(ProofError),
    /// The proof is for another number.
    #[error("verification {id} proves {proves}, not the binding's number {bound}")]
    OtherNumber {
        /// The verification.
        id: String,
        /// Its number (masked).
        proves: String,
        /// The binding's (masked).
        bound: String,
    },
    /// Sending or checking the code failed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A registry notification that cannot be read.
    #[error("registry notification refused: {0}")]
    Unreadable(String),
    /// A registry notification that is not genuine (or not for us).
    #[error("registry notification refused: {0}")]
    Forged(String),
    /// A genuine notification signed too long ago (a replay, or a clock
    /// far off).
    #[error("registry notification refused: the signature's time is outside the tolerance (a replay, or a clock far off)")]
    Stale,
    /// The store failed (our side).
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
}

impl From<ProofError> for BindingsError {
    fn from(e: ProofError) -> Self {
        match e {
            ProofError::Store(e) => BindingsError::Store(e),
            other => BindingsError::Proof(other),
        }
    }
}

/// What a confirmation found.
#[derive(Debug, Clone)]
pub struct Confirmed {
    /// The binding now (active when the code was right).
    pub binding: AppBinding,
    /// The code check (None: the binding was active already).
    pub check: Option<Checked>,
}

/// A registry notification as received: the raw body and its signature.
#[derive(Debug, Clone, Copy)]
pub struct Notification<'a> {
    /// The `Verigate-Signature` header.
    pub signature: Option<&'a str>,
    /// The body exactly as received.
    pub body: &'a [u8],
}

/// What a notification did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The notification's event id.
    pub event_id: String,
    /// Its type.
    pub kind: String,
    /// False: seen before (or of a type we do not act on).
    pub applied: bool,
    /// Bindings removed or moved.
    pub changed: usize,
}

/// Longest `account_ref`.
const MAX_ACCOUNT_REF: usize = 128;

/// The app side.
#[derive(Debug)]
pub struct BindingsService {
    store: Arc<dyn Store>,
    verify: Arc<VerifyService>,
    rng: Random,
    region: String,
    apps: HashMap<String, BindingsApp>,
}

impl BindingsService {
    /// The apps of `apps`; national numbers read in `region`.
    pub fn new(
        store: Arc<dyn Store>,
        verify: Arc<VerifyService>,
        apps: &[BindingsApp],
        region: &str,
        rng: Random,
    ) -> Self {
        BindingsService {
            store,
            verify,
            rng,
            region: region.to_string(),
            apps: apps
                .iter()
                .map(|a| (a.service.clone(), a.clone()))
                .collect(),
        }
    }

    fn app(&self, caller: &Service) -> Result<&BindingsApp, BindingsError> {
        self.apps
            .get(&caller.code)
            .ok_or_else(|| BindingsError::NotAnApp(caller.code.clone()))
    }

    /// Asks to bind `to` to the caller's account `account_ref`: the code
    /// goes by SMS; the binding waits for it.
    pub async fn create(
        &self,
        caller: &Service,
        account_ref: &str,
        to: &str,
        client_ip: Option<std::net::IpAddr>,
        now: Millis,
    ) -> Result<AppBinding, BindingsError> {
        self.app(caller)?;
        let account_ref = account_ref.trim();
        if account_ref.is_empty()
            || account_ref.chars().count() > MAX_ACCOUNT_REF
            || account_ref.chars().any(char::is_control)
        {
            return Err(BindingsError::BadRequest(format!(
                "account_ref must be 1-{MAX_ACCOUNT_REF} printable characters"
            )));
        }
        let msisdn = phone::normalize(to, &self.region)?.as_str().to_string();
        let bound = self
            .store
            .list_app_bindings(&caller.code, BindingFilter::Msisdn(&msisdn), 100)
            .await?;
        let active = bound.iter().find(|b| b.state == AppBindingState::Active);
        if let Some(b) = active.filter(|b| b.account_ref == account_ref) {
            // Bound already: nothing to prove again.
            return Ok(b.clone());
        }
        if let Some(b) = active {
            return Err(BindingsError::Taken(format!(
                "{} is bound to another account of this service ({}); remove that binding first",
                phone::mask(&msisdn),
                b.id
            )));
        }
        let started = self
            .verify
            .start(
                caller,
                StartRequest {
                    to: msisdn.clone(),
                    channel: "sms".into(),
                    client_ip,
                    ..Default::default()
                },
                now,
            )
            .await?;
        let b = AppBinding {
            id: self.rng.id("bnd", now),
            service: caller.code.clone(),
            account_ref: account_ref.to_string(),
            msisdn,
            state: AppBindingState::Pending,
            verification_id: started.verification.id,
            created_at: now,
            updated_at: now,
        };
        self.store.create_app_binding(&b).await?;
        Ok(b)
    }

    /// The binding `id` of the caller.
    pub async fn get(&self, caller: &Service, id: &str) -> Result<AppBinding, BindingsError> {
        self.app(caller)?;
        self.store
            .get_app_binding(&caller.code, id)
            .await?
            .ok_or_else(|| BindingsError::NoBinding(id.to_string()))
    }

    /// The caller's bindings of one account or one number.
    pub async fn list(
        &self,
        caller: &Service,
        account_ref: Option<&str>,
        msisdn: Option<&str>,
    ) -> Result<Vec<AppBinding>, BindingsError> {
        self.app(caller)?;
        let number;
        let filter = match (account_ref, msisdn) {
            (Some(a), None) => BindingFilter::Account(a),
            (None, Some(m)) => {
                number = phone::normalize(m, &self.region)?.as_str().to_string();
                BindingFilter::Msisdn(&number)
            }
            _ => {
                return Err(BindingsError::BadRequest(
                    "give exactly one of account_ref and msisdn".into(),
                ))
            }
        };
        Ok(self
            .store
            .list_app_bindings(&caller.code, filter, 100)
            .await?)
    }

    /// Checks the code of a pending binding; right, it is active and
    /// reported to the carrier (in the same write).
    pub async fn confirm(
        &self,
        caller: &Service,
        id: &str,
        code: &str,
        now: Millis,
    ) -> Result<Confirmed, BindingsError> {
        let app = self.app(caller)?;
        let b = self.get(caller, id).await?;
        if b.state == AppBindingState::Active {
            return Ok(Confirmed {
                binding: b,
                check: None,
            });
        }
        let check = self
            .verify
            .check(caller, &b.verification_id, code, now)
            .await?;
        if check.verification.status != crate::store::VerificationStatus::Approved {
            return Ok(Confirmed {
                binding: b,
                check: Some(check),
            });
        }
        let report = self.report(app, HttpMethod::Put, &b, now);
        let binding = self
            .store
            .activate_app_binding(&caller.code, id, &report, now)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(m) => BindingsError::Taken(m),
                other => other.into(),
            })?
            .ok_or_else(|| BindingsError::NoBinding(id.to_string()))?;
        info!(service = %caller.code, binding = %binding.id, "binding confirmed; reporting it to the registry");
        Ok(Confirmed {
            binding,
            check: Some(check),
        })
    }

    /// Removes a binding on a fresh code proof to its number
    /// (`verification_id`, approved); an active one is reported unbound.
    pub async fn remove(
        &self,
        caller: &Service,
        id: &str,
        verification_id: &str,
        now: Millis,
    ) -> Result<AppBinding, BindingsError> {
        let app = self.app(caller)?;
        let b = self.get(caller, id).await?;
        let proof = crate::verify::proof::approved_sms(
            &*self.store,
            &caller.code,
            verification_id,
            now,
            app.proof_ttl.millis(),
        )
        .await?;
        if proof.to != b.msisdn {
            return Err(BindingsError::OtherNumber {
                id: verification_id.to_string(),
                proves: phone::mask(&proof.to),
                bound: phone::mask(&b.msisdn),
            });
        }
        let report = self.report(app, HttpMethod::Delete, &b, now);
        self.store
            .remove_app_binding(&caller.code, id, &report)
            .await?
            .ok_or_else(|| BindingsError::NoBinding(id.to_string()))
    }

    /// The report of `b` to the carrier registry: `PUT` (bind) or `DELETE`
    /// (unbind) of `/v1/registry/bindings/{msisdn}/{code}`, with the app's
    /// API key, signed with the shared secret, retried for `report_for`.
    fn report(
        &self,
        app: &BindingsApp,
        method: HttpMethod,
        b: &AppBinding,
        now: Millis,
    ) -> WebhookJob {
        let msisdn =
            percent_encoding::utf8_percent_encode(&b.msisdn, percent_encoding::NON_ALPHANUMERIC);
        let url = format!(
            "{}/v1/registry/bindings/{msisdn}/{}",
            app.registry_url.trim_end_matches('/'),
            app.carrier_code()
        );
        let event = self.rng.id("evt", now);
        let body = serde_json::json!({
            "id": event,
            "type": if method == HttpMethod::Put { "bind" } else { "unbind" },
            "data": {"binding": b.id, "msisdn": b.msisdn},
        });
        WebhookJob {
            method,
            credential: Some(app.credential_name()),
            deliver_until: Some(now.saturating_add(app.report_for.millis())),
            topic: Some("bindings".into()),
            ..WebhookJob::post(
                self.rng.id("wh", now),
                &b.service,
                &url,
                body.to_string(),
                now,
            )
        }
    }

    /// A notification from a carrier registry: its signature checked with
    /// the app's shared secret and within the tolerance, then applied once
    /// (its event id), the account server told in the same write.
    pub async fn receive(
        &self,
        n: Notification<'_>,
        now: Millis,
    ) -> Result<Received, BindingsError> {
        let bad = |m: &str| BindingsError::Unreadable(m.to_string());
        let forged = |m: &str| BindingsError::Forged(m.to_string());
        let text = std::str::from_utf8(n.body).map_err(|_| bad("the body is not UTF-8"))?;
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(&format!("the body is not JSON: {e}")))?;
        let field =
            |path: &[&str]| -> Option<&str> { path.iter().try_fold(&v, |v, k| v.get(k))?.as_str() };
        // Which app it is for decides the secret; nothing else is read
        // before the signature holds.
        let carrier_code =
            field(&["data", "service"]).ok_or_else(|| bad("data.service is missing"))?;
        let app = self
            .apps
            .values()
            .find(|a| a.carrier_code() == carrier_code)
            .ok_or_else(|| {
                forged(&format!(
                    "no [[bindings]] app is {carrier_code:?} at its registry"
                ))
            })?;
        let signature = n
            .signature
            .ok_or_else(|| forged(&format!("no {SIGNATURE_HEADER} header")))?;
        crate::webhook::verify_signature(
            app.registry_secret.as_bytes(),
            signature,
            text,
            now.div_euclid(1000),
            i64::try_from(app.tolerance.0.as_secs()).unwrap_or(i64::MAX),
        )
        .map_err(|e| match e {
            SignatureError::Stale => BindingsError::Stale,
            SignatureError::Mismatch => forged("the signature does not match"),
            SignatureError::Malformed => forged("the signature header is malformed"),
        })?;
        let event_id = field(&["id"]).ok_or_else(|| bad("id is missing"))?;
        let kind = field(&["type"]).ok_or_else(|| bad("type is missing"))?;
        let number = |k: &str| -> Result<String, BindingsError> {
            let raw = field(&["data", k]).ok_or_else(|| bad(&format!("data.{k} is missing")))?;
            Ok(phone::normalize(raw, &self.region)?.as_str().to_string())
        };
        let (old, new);
        let change = match kind {
            "unbind" | "recycled" => {
                old = number("msisdn")?;
                RegistryChange::Removed {
                    msisdn: &old,
                    reason: kind,
                }
            }
            "number_updated" => {
                old = number("old")?;
                new = number("new")?;
                RegistryChange::Moved {
                    old: &old,
                    new: &new,
                }
            }
            // A type added later: acknowledged, not acted on (the registry
            // would retry a refusal for days).
            _ => {
                return Ok(Received {
                    event_id: event_id.to_string(),
                    kind: kind.to_string(),
                    applied: false,
                    changed: 0,
                })
            }
        };
        let svc = self.store.get_service(&app.service).await?;
        let hook = svc
            .as_ref()
            .and_then(|s| s.settings.get("webhook_url"))
            .and_then(serde_json::Value::as_str)
            .filter(|u| !u.trim().is_empty());
        let applied = self
            .store
            .apply_registry_event(&RegistryEvent {
                service: &app.service,
                event_id,
                change,
                at: now,
                account_hook: hook,
            })
            .await?;
        let (applied, changed) = match applied {
            EventApplied::Applied(list) => (true, list.len()),
            EventApplied::Duplicate => (false, 0),
        };
        info!(service = %app.service, event = %event_id, kind, applied, changed, "registry notification");
        Ok(Received {
            event_id: event_id.to_string(),
            kind: kind.to_string(),
            applied,
            changed,
        })
    }
}

#[cfg(test)]
mod tests;

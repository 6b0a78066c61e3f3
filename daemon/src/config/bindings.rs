//! `[[bindings]]`: the app side of the number registry, one entry per app
//! (a local service) and the carrier registry it reports to.

use super::Span;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One app's link to a carrier's number registry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BindingsApp {
    /// The local service (its API key calls `/v1/bindings`; its webhook
    /// URL is the account server that hears of removed and moved bindings).
    pub service: String,
    /// The carrier registry's API, e.g. `https://registry.carrier.example`.
    pub registry_url: String,
    /// The app's service code at the carrier (default: `service`).
    #[serde(default)]
    pub registry_service: String,
    /// The app's API key at the carrier (secret; `_file`/`_env` work).
    pub registry_api_key: String,
    /// The secret the carrier signs notifications with, and we sign our
    /// reports with (secret; `_file`/`_env` work).
    pub registry_secret: String,
    /// How far a notification's signature time may be from ours.
    #[serde(default = "default_tolerance")]
    pub tolerance: Span,
    /// How long a report to the carrier is retried.
    #[serde(default = "default_report_for")]
    pub report_for: Span,
    /// How recent the code proof of a removal must be.
    #[serde(default = "default_proof_ttl")]
    pub proof_ttl: Span,
}

fn default_tolerance() -> Span {
    Span(Duration::from_secs(300))
}

fn default_report_for() -> Span {
    Span(Duration::from_secs(3 * 86_400))
}

fn default_proof_ttl() -> Span {
    Span(Duration::from_secs(600))
}

impl BindingsApp {
    /// The app's code at the carrier.
    pub fn carrier_code(&self) -> &str {
        if self.registry_service.is_empty() {
            &self.service
        } else {
            &self.registry_service
        }
    }

    /// The webhook worker's credential for this app's reports.
    pub fn credential_name(&self) -> String {
        format!("bindings:{}", self.service)
    }
}

/// What is wrong with `[[bindings]]`.
pub(super) fn problems(c: &super::Config, p: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    for (i, b) in c.bindings.iter().enumerate() {
        let k = format!("bindings[{i}] ({})", b.service);
        if !seen.insert(&b.service) {
            p.push(format!("{k}.service: another [[bindings]] has it"));
        }
        if !super::is_service_code(&b.service) {
            p.push(format!("{k}.service: not a service code"));
        }
        if !b.registry_service.is_empty() && !super::is_service_code(&b.registry_service) {
            p.push(format!("{k}.registry_service: not a service code"));
        }
        let url = b.registry_url.trim_end_matches('/');
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or("");
        if host.is_empty() || host.contains(['/', '?', '#']) {
            p.push(format!(
                "{k}.registry_url = {:?}: must be http(s)://host[:port] (the registry's API, no path)",
                b.registry_url
            ));
        }
        for (key, v) in [
            ("registry_api_key", &b.registry_api_key),
            ("registry_secret", &b.registry_secret),
        ] {
            if v.is_empty() {
                p.push(format!("{k}.{key}: must be set"));
            }
        }
        if b.tolerance.0 > Duration::from_secs(3600) || b.tolerance.0 < Duration::from_secs(1) {
            p.push(format!("{k}.tolerance: must be 1s to 1h"));
        }
    }
}

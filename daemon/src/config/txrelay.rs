//! `[txrelay]`: the carrier side of the carrier–bank relay: its bank, the
//! front ends that open sessions, and the checks of both.

use super::{is_region, Config, Span};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// `[txrelay]`: the carrier side of the carrier–bank relay.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TxRelayConfig {
    /// Run it (`/sim-swap/v2/…`, `verigate txrelay …`).
    pub enabled: bool,
    /// Region national numbers are read in (empty: verify.default_region).
    pub region: String,
    /// How far back SIM changes are known, in days (CAMARA `monitoredPeriod`).
    pub monitored_days: u32,
    /// A number that moved to its SIM more recently than this cannot start
    /// a transaction (the SIM-swap fraud case).
    pub max_sim_age: Span,
    /// How long a session takes transactions.
    pub session_ttl: Span,
    /// How long a request waits for the bank's answer before it is
    /// answered 202 (the work goes on; the front end polls).
    pub answer_wait: Span,
    /// The bank the relay talks to.
    pub bank: Option<TxBankConfig>,
    /// The carrier's trusted front ends that open sessions.
    pub front_ends: Vec<FrontEndConfig>,
    /// Relay workers' settings.
    pub queue: TxQueueConfig,
    /// The short code subscribers text `PAY <account> <payee> <amount>
    /// [reference]` to (the network vouches for the sender; the SIM comes
    /// from the directory); empty: no SMS channel.
    pub short_code: String,
    /// The currency of amounts paid by SMS (ISO 4217, two decimals).
    pub mo_currency: String,
    /// Budgets of SMS the short code sends back (refusals, usage; a
    /// payment's result is one per payment).
    pub reply_limits: super::MoReplyLimits,
}

impl Default for TxRelayConfig {
    fn default() -> Self {
        TxRelayConfig {
            enabled: false,
            region: String::new(),
            monitored_days: 120,
            max_sim_age: Span(std::time::Duration::from_secs(7 * 86_400)),
            session_ttl: Span(std::time::Duration::from_secs(600)),
            answer_wait: Span(std::time::Duration::from_secs(5)),
            bank: None,
            front_ends: Vec::new(),
            queue: TxQueueConfig::default(),
            short_code: String::new(),
            mo_currency: "GBP".into(),
            reply_limits: super::MoReplyLimits::default(),
        }
    }
}

/// `[txrelay.bank]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TxBankConfig {
    /// Its name, as front ends give it (`bank` of a session).
    pub name: String,
    /// Base URL of its relay API (`http://lab-bank` in lab mode: the
    /// simulator started with the daemon).
    pub url: String,
    /// Per request.
    #[serde(default = "bank_timeout")]
    pub timeout: Span,
}

fn bank_timeout() -> Span {
    Span(std::time::Duration::from_secs(10))
}

/// `[[txrelay.front_ends]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FrontEndConfig {
    /// Its name (recorded with its sessions).
    pub name: String,
    /// Its API key (`Authorization: Bearer`).
    pub api_key: String,
}

/// `[txrelay.queue]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TxQueueConfig {
    /// How long a claimed registration or transaction stays with its
    /// worker; after a crash the next worker takes it once this runs out.
    pub lease: Span,
    /// Jobs claimed per round.
    pub batch: u32,
    /// Requests to the bank in flight at once.
    pub max_in_flight: usize,
    /// First retry delay after the bank could not be reached (doubling).
    pub retry_delay: Span,
}

impl Default for TxQueueConfig {
    fn default() -> Self {
        TxQueueConfig {
            lease: Span(std::time::Duration::from_secs(30)),
            batch: 256,
            max_in_flight: 512,
            retry_delay: Span(std::time::Duration::from_millis(500)),
        }
    }
}

/// What is wrong with `[txrelay]`, each naming its key.
pub(super) fn problems(c: &Config, p: &mut Vec<String>) {
    let t = &c.txrelay;
    if !t.region.is_empty() && !is_region(&t.region) {
        p.push(format!(
            "txrelay.region = {:?}: must be an ISO 3166 country code such as \"GB\"",
            t.region
        ));
    }
    if !(1..=3650).contains(&t.monitored_days) {
        p.push("txrelay.monitored_days: must be 1 to 3650".into());
    }
    let secs = |s: &Span| s.0.as_secs_f64();
    if !(60.0..=86_400.0).contains(&secs(&t.session_ttl)) {
        p.push("txrelay.session_ttl: must be 1m to 24h".into());
    }
    if secs(&t.answer_wait) > 60.0 {
        p.push("txrelay.answer_wait: must be at most 60s".into());
    }
    if let Some(b) = &t.bank {
        if b.name.trim().is_empty() {
            p.push("txrelay.bank.name: must not be empty".into());
        }
        if !(b.url.starts_with("http://") || b.url.starts_with("https://")) {
            p.push(format!(
                "txrelay.bank.url = {:?}: must be an http:// or https:// URL",
                b.url
            ));
        }
    }
    let (mut names, mut keys) = (HashSet::new(), HashSet::new());
    for (i, f) in t.front_ends.iter().enumerate() {
        if f.name.trim().is_empty() || f.name == crate::txrelay::MO_FRONT_END {
            p.push(format!(
                "txrelay.front_ends[{i}].name = {:?}: must be a name other than {:?}",
                f.name,
                crate::txrelay::MO_FRONT_END
            ));
        }
        if !names.insert(f.name.as_str()) {
            p.push(format!(
                "txrelay.front_ends[{i}].name = {:?}: used twice",
                f.name
            ));
        }
        if f.api_key.is_empty() {
            p.push(format!(
                "txrelay.front_ends[{i}].api_key: must not be empty"
            ));
        } else if !keys.insert(f.api_key.as_str()) {
            p.push(format!(
                "txrelay.front_ends[{i}] ({}).api_key: another front end has the same key",
                f.name
            ));
        }
    }
    if !t.short_code.is_empty() {
        if !(3..=15).contains(&t.short_code.len())
            || !t.short_code.bytes().all(|b| b.is_ascii_digit())
        {
            p.push(format!(
                "txrelay.short_code = {:?}: must be 3 to 15 digits",
                t.short_code
            ));
        }
        for (key, other) in [
            ("mo_login.short_code", &c.mo_login.short_code),
            ("registry.short_code", &c.registry.short_code),
        ] {
            if *other == t.short_code {
                p.push(format!(
                    "txrelay.short_code = {:?}: {key} is the same; each short code has one use",
                    t.short_code
                ));
            }
        }
        if t.bank.is_none() {
            p.push("txrelay.short_code: needs a [txrelay.bank] to pay".into());
        }
    }
    if t.mo_currency.len() != 3 || !t.mo_currency.bytes().all(|b| b.is_ascii_uppercase()) {
        p.push(format!(
            "txrelay.mo_currency = {:?}: must be an ISO 4217 code such as \"GBP\"",
            t.mo_currency
        ));
    }
    let q = &t.queue;
    if q.batch == 0 || q.max_in_flight == 0 {
        p.push("txrelay.queue.batch and max_in_flight: must be at least 1".into());
    }
    if secs(&q.lease) < 1.0 {
        p.push("txrelay.queue.lease: must be at least 1s".into());
    }
}

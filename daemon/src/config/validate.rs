//! Checks that values make sense together; every problem names its key.

use super::Config;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

impl Config {
    /// Every problem found (empty when the configuration is usable).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        addr(&mut p, "api.listen", &self.api.listen);
        if let Some(a) = addr(&mut p, "api.admin_listen", &self.api.admin_listen) {
            if !a.ip().is_loopback() {
                p.push(format!(
                    "api.admin_listen = {:?}: the admin endpoint must listen on loopback (127.0.0.1 or ::1)",
                    self.api.admin_listen
                ));
            }
        }
        if !self.api.admin_token.is_empty() && self.api.admin_token.len() < 16 {
            p.push(
                "api.admin_token: must be at least 16 characters (or empty to generate one)".into(),
            );
        }
        let a = &self.api;
        let secs = Duration::from_secs;
        for (key, v, lo, hi) in [
            (
                "api.header_read_timeout",
                a.header_read_timeout,
                secs(1),
                secs(120),
            ),
            ("api.request_timeout", a.request_timeout, secs(1), secs(600)),
        ] {
            super::calls::span_between(&mut p, key, v, lo, hi);
        }
        if !(1..=1_000_000).contains(&a.max_in_flight) {
            p.push(format!(
                "api.max_in_flight = {}: must be between 1 and 1000000",
                a.max_in_flight
            ));
        }
        if !(1..=1_000_000).contains(&a.max_connections) {
            p.push(format!(
                "api.max_connections = {}: must be between 1 and 1000000",
                a.max_connections
            ));
        }
        let v = &self.verify;
        if !(4..=10).contains(&v.code_length) {
            p.push(format!(
                "verify.code_length = {}: must be between 4 and 10",
                v.code_length
            ));
        }
        if !(4..=10).contains(&v.min_code_length) {
            p.push(format!(
                "verify.min_code_length = {}: must be between 4 and 10",
                v.min_code_length
            ));
        } else if v.code_length < v.min_code_length {
            p.push(format!(
                "verify.code_length = {}: below verify.min_code_length = {}",
                v.code_length, v.min_code_length
            ));
        }
        if v.ttl.0 < Duration::from_secs(30) || v.ttl.0 > Duration::from_secs(600) {
            p.push(format!(
                "verify.ttl = \"{}\": must be between 30s and 10m",
                v.ttl
            ));
        }
        if v.resend_cooldown.0 > v.ttl.0 {
            p.push(format!(
                "verify.resend_cooldown = \"{}\": must not be longer than verify.ttl (\"{}\")",
                v.resend_cooldown, v.ttl
            ));
        }
        if !(1..=5).contains(&v.max_attempts) {
            p.push(format!(
                "verify.max_attempts = {}: must be between 1 and 5",
                v.max_attempts
            ));
        }
        if v.sender.is_empty() || v.sender.len() > 20 {
            p.push(format!(
                "verify.sender = {:?}: must be 1 to 20 characters",
                v.sender
            ));
        }
        if !is_region(&v.default_region) {
            p.push(format!(
                "verify.default_region = {:?}: must be an ISO 3166 country code such as \"GB\"",
                v.default_region
            ));
        }
        if !v.templates.contains_key(&v.default_locale) {
            p.push(format!(
                "verify.default_locale = {:?}: no template for it in verify.templates",
                v.default_locale
            ));
        }
        for (locale, t) in &v.templates {
            if !t.contains("{code}") {
                p.push(format!("verify.templates.{locale}: must contain {{code}}"));
            }
        }
        if !(1..=15).contains(&v.limits.prefix_digits) {
            p.push(format!(
                "verify.limits.prefix_digits = {}: must be between 1 and 15",
                v.limits.prefix_digits
            ));
        }
        let mut names = HashSet::new();
        for (i, s) in self.smsc.iter().enumerate() {
            let k = format!("smsc[{i}] ({})", s.name);
            if s.name.is_empty() || !names.insert(s.name.clone()) {
                p.push(format!("{k}.name: must be non-empty and unique"));
            }
            if s.port == 0 && self.lab.smsc.is_none() {
                p.push(format!("{k}.port: must not be 0 (0 means the lab simulator, and [lab.smsc] is not set)"));
            }
            if !(1..=32).contains(&s.binds) {
                p.push(format!("{k}.binds = {}: must be between 1 and 32", s.binds));
            }
            if !(1..=1024).contains(&s.window) {
                p.push(format!(
                    "{k}.window = {}: must be between 1 and 1024",
                    s.window
                ));
            }
            if !(s.rate >= 0.0 && s.rate.is_finite()) {
                p.push(format!(
                    "{k}.rate = {}: must be 0 (unlimited) or a positive number",
                    s.rate
                ));
            }
            prefix_problems(&k, &s.prefixes, &mut p);
        }
        super::calls::problems(self, &mut p);
        super::voice_gateway::problems(self, &mut p);
        super::mo_login::problems(self, &mut p);
        super::registry::problems(self, &mut p);
        super::bindings::problems(self, &mut p);
        super::txrelay::problems(self, &mut p);
        super::retention::problems(self, &mut p);
        let mut codes = HashSet::new();
        let mut keys = HashSet::new();
        for (i, s) in self.service.iter().enumerate() {
            let k = format!("service[{i}] ({})", s.code);
            if !is_service_code(&s.code) {
                p.push(format!("{k}.code: use 1-64 of a-z, 0-9, '-', '_'"));
            }
            if !codes.insert(s.code.clone()) {
                p.push(format!("{k}.code: duplicate service code"));
            }
            if s.name.is_empty() {
                p.push(format!("{k}.name: must not be empty"));
            }
            if let Some(key) = &s.api_key {
                if key.len() < 8 {
                    p.push(format!("{k}.api_key: must be at least 8 characters"));
                }
                if !keys.insert(key.clone()) {
                    p.push(format!("{k}.api_key: the same key is used by two services"));
                }
            }
            for c in &s.allowed_countries {
                if !is_region(c) {
                    p.push(format!(
                        "{k}.allowed_countries: {c:?} is not an ISO 3166 code like \"GB\""
                    ));
                }
            }
            match (&s.webhook_url, &s.webhook_secret) {
                (Some(u), sec) => {
                    if !(u.starts_with("http://") || u.starts_with("https://")) {
                        p.push(format!(
                            "{k}.webhook_url = {u:?}: must be an http:// or https:// URL"
                        ));
                    }
                    if sec.as_deref().is_none_or(|s| s.len() < 16) {
                        p.push(format!(
                            "{k}.webhook_secret: needed with webhook_url, at least 16 characters"
                        ));
                    }
                }
                // A registry app platform's secret signs its notifications.
                (None, Some(_)) if self.registry.apps.iter().any(|a| a.service == s.code) => {}
                (None, Some(_)) => p.push(format!(
                    "{k}.webhook_secret: set without webhook_url (and not a registry.apps platform)"
                )),
                (None, None) => {}
            }
        }
        if self.outbox.lease.0 < Duration::from_secs(1) {
            p.push(format!(
                "outbox.lease = \"{}\": must be at least 1s",
                self.outbox.lease
            ));
        }
        if self.outbox.retry_delay.0 < Duration::from_millis(100)
            || self.outbox.retry_delay.0 > Duration::from_secs(3600)
        {
            p.push(format!(
                "outbox.retry_delay = \"{}\": must be between 100ms and 1h",
                self.outbox.retry_delay
            ));
        }
        if !(1..=10_000).contains(&self.outbox.batch) {
            p.push(format!(
                "outbox.batch = {}: must be between 1 and 10000",
                self.outbox.batch
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            p.push(format!(
                "log.filter = {:?}: {e} (e.g. \"info\" or \"info,verigate::smpp=debug\")",
                self.log.filter
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            p.push(format!(
                "log.format = {:?}: must be \"text\" or \"json\"",
                self.log.format
            ));
        }
        if let Some(l) = &self.lab.smsc {
            addr(&mut p, "lab.smsc.listen", &l.listen);
            addr(&mut p, "lab.smsc.control", &l.control);
        }
        if let Some(l) = &self.lab.bank {
            addr(&mut p, "lab.bank.listen", &l.listen);
            for a in &l.accounts {
                let ok = a
                    .split_once('=')
                    .is_some_and(|(n, b)| !n.is_empty() && b.parse::<i64>().is_ok());
                if !ok {
                    p.push(format!(
                        "lab.bank.accounts: {a:?} must be NAME=BALANCE_MINOR (e.g. \"alice=100000\")"
                    ));
                }
            }
        }
        if let Some(l) = &self.lab.switch {
            addr(&mut p, "lab.switch.listen", &l.listen);
            addr(&mut p, "lab.switch.control", &l.control);
            if l.username.is_some() != l.password.is_some() {
                p.push("lab.switch: username and password go together".into());
            }
            if let Some(a) = l
                .algorithm
                .as_deref()
                .filter(|a| !matches!(*a, "MD5" | "SHA-256"))
            {
                p.push(format!(
                    "lab.switch.algorithm = {a:?}: must be \"MD5\" or \"SHA-256\""
                ));
            }
        }
        match &self.store {
            super::StoreConfig::Sqlite { path } if path.is_empty() => {
                p.push("store.path: must not be empty".into());
            }
            super::StoreConfig::Postgres { url, pool } => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    p.push("store.url: must be a postgres:// URL".into());
                }
                if !(1..=1000).contains(pool) {
                    p.push("store.pool: must be 1 to 1000 connections".into());
                }
            }
            super::StoreConfig::Sqlite { .. } => {}
        }
        if self.secrets.server_secret_file.is_empty() {
            p.push("secrets.server_secret_file: must not be empty".into());
        }
        super::secrets::problems(self, &mut p);
        p
    }
}

fn addr(p: &mut Vec<String>, key: &str, v: &str) -> Option<SocketAddr> {
    match v.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.push(format!(
                "{key} = {v:?}: must be an address with port, e.g. \"127.0.0.1:8080\""
            ));
            None
        }
    }
}

/// A service code: 1-64 of a-z, 0-9, '-', '_' (shared by config and admin).
pub fn is_service_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Routing prefixes of `key` that are not digits (an optional `+` first).
pub(super) fn prefix_problems(key: &str, prefixes: &[String], p: &mut Vec<String>) {
    for pre in prefixes {
        let d = pre.trim_start_matches('+');
        if d.is_empty() || !d.chars().all(|c| c.is_ascii_digit()) {
            p.push(format!(
                "{key}.prefixes: {pre:?} must be digits, e.g. \"+44\""
            ));
        }
    }
}

/// An ISO 3166 alpha-2 region code that has a numbering plan, such as
/// `GB` (`UK` is not one, and would silently refuse every GB number).
pub fn is_region(s: &str) -> bool {
    s.len() == 2
        && s.chars().all(|c| c.is_ascii_uppercase())
        && s.parse::<phonenumber::country::Id>().is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn regions_are_real() {
        for ok in ["GB", "CN", "US", "DE"] {
            assert!(super::is_region(ok), "{ok}");
        }
        for bad in ["UK", "XX", "gb", "GBR", ""] {
            assert!(!super::is_region(bad), "{bad}");
        }
    }
}

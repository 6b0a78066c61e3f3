//! SIGHUP: read the config file again, apply what can change while running
//! (verification settings and limits, the call worker's settings and the
//! flash-call pools, the voice gateway, MO login, retention) and say, key by
//! key, what changed and what waits for a restart (listeners, the store,
//! SMSCs and trunks, services, secrets, lab simulators, the log).

use crate::config::{Config, MoLoginConfig};
use std::sync::{Arc, RwLock};
use tracing::{info, warn};

/// Keys (and the sections under them) applied on SIGHUP.
const RELOADABLE: &[&str] = &[
    "verify",
    "voice.ring_timeout",
    "voice.dtmf_wait",
    "voice.max_duration",
    "voice.max_repeats",
    "voice.max_attempts",
    "flash_call",
    "voice_gateway",
    "mo_login",
    "retention",
    "outbox.retry_delay",
];

/// Whether a changed key is applied on SIGHUP.
pub fn is_reloadable(path: &str) -> bool {
    RELOADABLE.iter().any(|k| {
        path == *k
            || path
                .strip_prefix(k)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    })
}

/// The keys whose values differ between `a` and `b`, as `section.key`
/// (lists by index: `smsc[0].port`; a list that changed length as a whole).
pub fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    let (Ok(a), Ok(b)) = (serde_json::to_value(a), serde_json::to_value(b)) else {
        return vec!["(the configuration)".into()];
    };
    let mut out = Vec::new();
    diff("", &a, &b, &mut out);
    out
}

fn diff(at: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let null = Value::Null;
                diff(
                    &join(k),
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(&format!("{at}[{i}]"), p, q, out);
            }
        }
        _ if a != b => out.push(at.to_string()),
        _ => {}
    }
}

/// What a reload found: keys applied, and keys that differ from what the
/// daemon started with but need a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Changed since the last reload and applied now.
    pub applied: Vec<String>,
    /// Different from the running daemon's start; applied at the next start.
    pub need_restart: Vec<String>,
}

/// Compares `new` with the last applied config and with the one the daemon
/// started with. MO login turned on or off needs a restart (the SMPP
/// consumer is wired at start); a new short code does not.
pub fn report(started: &Config, applied: &Config, new: &Config) -> Report {
    let on = |c: &Config| !c.mo_login.short_code.is_empty();
    let mo_switch = on(started) != on(new);
    let applied_keys = changed_keys(applied, new)
        .into_iter()
        .filter(|k| is_reloadable(k) && !(mo_switch && k == "mo_login.short_code"))
        .collect();
    let need_restart = changed_keys(started, new)
        .into_iter()
        .filter(|k| !is_reloadable(k) || (mo_switch && k == "mo_login.short_code"))
        .collect();
    Report {
        applied: applied_keys,
        need_restart,
    }
}

/// What a reload replaces.
#[derive(Debug, Clone)]
pub struct Targets {
    /// Verification settings and limits.
    pub verify: Arc<crate::verify::service::VerifyService>,
    /// MO login.
    pub mo_login: Arc<crate::mologin::MoLoginService>,
    /// The voice gateway.
    pub voice_gateway: Arc<crate::voice_gateway::VoiceGateway>,
    /// Wrong API keys per IP.
    pub auth_failures: Arc<crate::limits::AuthFailures>,
    /// The call worker's settings.
    pub calls: crate::calls::LiveSettings,
    /// The config the sweeps read (retention, rate-window pruning).
    pub current: Arc<RwLock<Config>>,
}

/// Applies the reloadable part of `new` and logs what changed.
pub fn apply(t: &Targets, started: &Config, new: Config) -> Report {
    let applied = t.current.read().unwrap_or_else(|e| e.into_inner()).clone();
    let r = report(started, &applied, &new);
    t.verify.reload(new.verify.clone());
    let mut channels = match crate::verify::channels::CallChannels::from_config(&new) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "reload: flash_call.pool kept as it was");
            (*t.verify.call_channels()).clone()
        }
    };
    // Prompts are loaded at start: the locales stay those of the start.
    channels.voice_locales = t.verify.call_channels().voice_locales.clone();
    if started.sip_trunk.is_empty() {
        channels.unavailable = t.verify.call_channels().unavailable.clone();
    }
    t.verify.set_call_channels(channels);
    t.calls.set(crate::run::call_settings(&new));
    let mut mo: MoLoginConfig = new.mo_login.clone();
    if mo.region.is_empty() {
        mo.region = new.verify.default_region.clone();
    }
    if (started.mo_login.short_code.is_empty()) != mo.short_code.is_empty() {
        // On or off waits for the restart; the rest applies.
        mo.short_code = applied.mo_login.short_code.clone();
    }
    t.mo_login.reload(mo);
    t.voice_gateway
        .reload(&new.voice_gateway, &new.verify.default_region);
    t.auth_failures
        .set_limit(new.verify.limits.failed_auth_per_ip);
    *t.current.write().unwrap_or_else(|e| e.into_inner()) = new;
    if r.applied.is_empty() {
        info!("configuration reloaded: nothing that applies while running changed");
    } else {
        info!(keys = %r.applied.join(", "), "configuration reloaded; applied");
    }
    if !r.need_restart.is_empty() {
        warn!(keys = %r.need_restart.join(", "), "changed in the file but needs a restart to apply");
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
lab = true
[api]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[store]
kind = "sqlite"
path = "./var/x.db"
[secrets]
server_secret_file = "./var/s"
[[smsc]]
name = "s"
host = "127.0.0.1"
port = 2775
system_id = "v"
password = "pw"
"#;

    fn cfg(sets: &[&str]) -> Config {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        crate::config::load_str(BASE, "t.toml", &sets).unwrap()
    }

    #[test]
    fn each_changed_key_is_named_and_sorted_into_applied_or_restart() {
        let started = cfg(&[]);
        let new = cfg(&[
            "verify.limits.per_ip=1/1m",
            "mo_login.reply_limits.global=10/1h",
            "retention.keep=7d",
            "api.listen=127.0.0.1:9",
            "store.path=./var/y.db",
        ]);
        let r = report(&started, &started, &new);
        assert_eq!(
            r.applied,
            vec![
                "mo_login.reply_limits.global",
                "retention.keep",
                "verify.limits.per_ip"
            ]
        );
        assert_eq!(r.need_restart, vec!["api.listen", "store.path"]);
        // Reloaded once, the applied keys are not reported again; the
        // restart-only ones are, until the restart.
        let r = report(&started, &new, &new);
        assert!(r.applied.is_empty());
        assert_eq!(r.need_restart, vec!["api.listen", "store.path"]);
    }

    #[test]
    fn mo_login_turned_on_needs_a_restart_but_a_new_short_code_does_not() {
        let off = cfg(&[]);
        let on = cfg(&["mo_login.short_code=7799"]);
        let r = report(&off, &off, &on);
        assert!(r.need_restart.contains(&"mo_login.short_code".to_string()));
        assert!(!r.applied.contains(&"mo_login.short_code".to_string()));
        let other = cfg(&["mo_login.short_code=8800"]);
        let r = report(&on, &on, &other);
        assert_eq!(r.applied, vec!["mo_login.short_code"]);
        assert!(r.need_restart.is_empty());
    }

    #[test]
    fn reloadable_prefixes_match_whole_keys_only() {
        assert!(is_reloadable("verify"));
        assert!(is_reloadable("verify.limits.per_ip"));
        assert!(is_reloadable("voice_gateway[0].k1"));
        assert!(is_reloadable("flash_call.pool[1].ranges"));
        assert!(!is_reloadable("voice.locales"));
        assert!(!is_reloadable("verifyx"));
        assert!(!is_reloadable("sip_trunk[0].host"));
        assert!(!is_reloadable("outbox.lease"));
    }
}

//! Configuration: TOML with unknown keys refused, `--set section.key=value`
//! overrides, and validation that runs before any port is bound.

mod bindings;
mod calls;
mod load;
pub mod local_urls;
mod mo_login;
mod registry;
mod retention;
mod secrets;
mod txrelay;
mod units;
mod validate;
mod voice_gateway;

pub use bindings::BindingsApp;
pub use calls::{
    CallerIdStyle, CliPoolEntry, FlashCallConfig, SipConfig, SipTransport, SipTrunkEntry,
    VoiceConfig,
};
pub use load::{load, load_str, load_str_with_env, load_with_env, ConfigError};
pub use mo_login::{MoLoginConfig, MoReplyLimits, MoTemplates, NoTokenAction};
pub use registry::{RegistryAppEntry, RegistryConfig, RegistryTemplates};
pub use retention::RetentionConfig;
pub use txrelay::{FrontEndConfig, TxBankConfig, TxQueueConfig, TxRelayConfig};
pub use units::{RateLimit, Span};
pub use validate::{is_region, is_service_code};
pub use voice_gateway::{K2Scheme, VoiceGatewayEntry, MIN_HMAC_KEY_LEN};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP API and admin endpoint.
    pub api: ApiConfig,
    /// Where state is kept.
    pub store: StoreConfig,
    /// Secrets for hashing codes and keys.
    pub secrets: SecretsConfig,
    /// Verification defaults.
    #[serde(default)]
    pub verify: VerifyConfig,
    /// SMSCs to bind to.
    #[serde(default)]
    pub smsc: Vec<SmscEntry>,
    /// SIP trunks (used by the call services).
    #[serde(default)]
    pub sip_trunk: Vec<SipTrunkEntry>,
    /// Our SIP/RTP endpoint.
    #[serde(default)]
    pub sip: SipConfig,
    /// The voice channel.
    #[serde(default)]
    pub voice: VoiceConfig,
    /// The flash-call channel.
    #[serde(default)]
    pub flash_call: FlashCallConfig,
    /// Third parties that ask for calls reading their codes.
    #[serde(default)]
    pub voice_gateway: Vec<VoiceGatewayEntry>,
    /// Log in or register by sending one SMS.
    #[serde(default)]
    pub mo_login: MoLoginConfig,
    /// Services (apps) and their API keys.
    #[serde(default)]
    pub service: Vec<ServiceEntry>,
    /// Outbox workers.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// How long rows and SMS texts are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// The app side of number registries, one per app.
    #[serde(default)]
    pub bindings: Vec<BindingsApp>,
    /// The carrier's number-binding registry.
    #[serde(default)]
    pub registry: RegistryConfig,
    /// The carrier–bank transaction relay (its subscriber directory and
    /// CAMARA SIM Swap so far).
    #[serde(default)]
    pub txrelay: TxRelayConfig,
    /// Lab mode (`lab = true`), or simulators started with the daemon (`[lab.smsc]`, `[lab.switch]`).
    #[serde(default)]
    pub lab: LabConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
}

/// `[api]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Public HTTP API address.
    pub listen: String,
    /// Admin endpoint address (loopback) for the CLI.
    pub admin_listen: String,
    /// Admin bearer token; when empty, a random one is written to `admin_token_file`.
    #[serde(default)]
    pub admin_token: String,
    /// Where the admin token is kept for the CLI.
    #[serde(default = "default_admin_token_file")]
    pub admin_token_file: String,
    /// Take the client IP from the last `X-Forwarded-For` entry (only behind
    /// one proxy you run, which appends the address it saw).
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// A connection must send a request's headers within this (slowloris).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Span,
    /// A request must be read and answered within this (long polls aside).
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Span,
    /// Requests handled at once (long polls aside); more get 503.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Connections open at once on the public listener.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_admin_token_file() -> String {
    "./var/admin.token".into()
}
fn default_header_read_timeout() -> Span {
    Span(crate::api::edge::EdgeLimits::default().header_read_timeout)
}
fn default_request_timeout() -> Span {
    Span(crate::api::edge::EdgeLimits::default().request_timeout)
}
fn default_max_in_flight() -> usize {
    crate::api::edge::EdgeLimits::default().max_in_flight
}
fn default_max_connections() -> usize {
    crate::api::edge::EdgeLimits::default().max_connections
}

impl ApiConfig {
    /// The edge bounds of the public listener.
    pub fn edge(&self) -> crate::api::edge::EdgeLimits {
        crate::api::edge::EdgeLimits {
            header_read_timeout: self.header_read_timeout.0,
            request_timeout: self.request_timeout.0,
            max_in_flight: self.max_in_flight,
            max_connections: self.max_connections,
        }
    }
}

/// `[store]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum StoreConfig {
    /// Embedded SQLite (WAL).
    Sqlite {
        /// Database file.
        path: String,
    },
    /// PostgreSQL: several instances may share one database.
    Postgres {
        /// `postgres://user[:password]@host[:port]/database` (or `url_env`,
        /// `url_file`: a password is a secret).
        url: String,
        /// Connections this instance keeps.
        #[serde(default = "pg_pool")]
        pool: usize,
    },
}

fn pg_pool() -> usize {
    crate::store::postgres::DEFAULT_POOL
}

/// `[secrets]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// File holding the server secret (hex, ≥ 32 bytes); created with a
    /// random secret when missing.
    pub server_secret_file: String,
}

/// `[verify]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// Digits in a code (4–10).
    pub code_length: u8,
    /// Fewest digits a request's `code_length` may ask for (4–10; default 6).
    pub min_code_length: u8,
    /// How long a code is valid (at most 10m).
    pub ttl: Span,
    /// Wrong checks allowed (1–5).
    pub max_attempts: u32,
    /// A repeated start resends only after this long.
    pub resend_cooldown: Span,
    /// Sender address of code messages.
    pub sender: String,
    /// Region for numbers given without a country code (ISO 3166, e.g. `GB`).
    pub default_region: String,
    /// Locale used when a start names none.
    pub default_locale: String,
    /// Rate limits.
    pub limits: LimitsConfig,
    /// Message templates per locale; `{code}`, `{service}`, `{minutes}`.
    pub templates: BTreeMap<String, String>,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        let mut templates = BTreeMap::new();
        templates.insert(
            "en".into(),
            "Your {service} code is {code}. It expires in {minutes} minutes. Do not share it."
                .into(),
        );
        templates.insert(
            "zh".into(),
            "您的{service}验证码是{code}，{minutes}分钟内有效。请勿告诉他人。".into(),
        );
        VerifyConfig {
            code_length: 6,
            min_code_length: 6,
            ttl: Span(std::time::Duration::from_secs(600)),
            max_attempts: 5,
            resend_cooldown: Span(std::time::Duration::from_secs(30)),
            sender: "Verigate".into(),
            default_region: "GB".into(),
            default_locale: "en".into(),
            limits: LimitsConfig::default(),
            templates,
        }
    }
}

/// `[verify.limits]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Sends per number, per service.
    pub per_number: RateLimit,
    /// Sends per number across every service.
    pub per_number_all_services: RateLimit,
    /// Starts per service.
    pub per_service: RateLimit,
    /// Sends per destination prefix (SMS-pumping guard).
    pub per_prefix: RateLimit,
    /// Digits of the E.164 number (after `+`) that make a prefix.
    pub prefix_digits: u8,
    /// Starts per client IP (IPv6: per /64).
    pub per_ip: RateLimit,
    /// Requests with a wrong API key per client IP (IPv6: per /64); beyond
    /// it every request from there gets 429 before any key is looked up.
    pub failed_auth_per_ip: RateLimit,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            per_number: "5/10m".parse().expect("valid"),
            per_number_all_services: "10/1h".parse().expect("valid"),
            per_service: "6000/1m".parse().expect("valid"),
            per_prefix: "600/1m".parse().expect("valid"),
            prefix_digits: 6,
            per_ip: "60/1m".parse().expect("valid"),
            failed_auth_per_ip: "20/1m".parse().expect("valid"),
        }
    }
}

/// Bind layout of an SMSC.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BindKind {
    /// Transceiver binds.
    Transceiver,
    /// Transmitter and receiver pairs.
    TxRx,
}

/// How long text is split.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SplitKind {
    /// 8-bit UDH reference.
    Udh8,
    /// 16-bit UDH reference.
    Udh16,
    /// SAR TLVs.
    Sar,
    /// message_payload TLV.
    Payload,
}

/// `[[smsc]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmscEntry {
    /// Name in logs, metrics and CLI.
    pub name: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// system_id.
    pub system_id: String,
    /// Password.
    pub password: String,
    /// Bind layout.
    #[serde(default = "default_bind")]
    pub bind: BindKind,
    /// Binds (or TX/RX pairs).
    #[serde(default = "one")]
    pub binds: usize,
    /// Window per bind.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Submits per second per bind (0: unlimited).
    #[serde(default)]
    pub rate: f64,
    /// Long-text splitting.
    #[serde(default = "default_split")]
    pub split: SplitKind,
    /// Destination prefixes routed here (empty: default route).
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Start disabled (no binds, no traffic) until `verigate smsc enable`.
    #[serde(default)]
    pub disabled: bool,
}

fn default_bind() -> BindKind {
    BindKind::Transceiver
}
fn one() -> usize {
    1
}
fn default_window() -> usize {
    50
}
fn default_split() -> SplitKind {
    SplitKind::Udh8
}

/// `[[service]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// Service code.
    pub code: String,
    /// Display name in messages.
    pub name: String,
    /// Bootstrap API key (stored hashed at start); keys can also be made with the CLI.
    #[serde(default)]
    pub api_key: Option<String>,
    /// ISO 3166 countries allowed (empty: any).
    #[serde(default)]
    pub allowed_countries: Vec<String>,
    /// Status webhook URL.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Webhook signing secret.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// MO login: send a new account's password by SMS (default:
    /// `mo_login.send_password`).
    #[serde(default)]
    pub mo_send_password: Option<bool>,
}

/// `[outbox]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// How long a claimed message stays with its sender; after a crash its
    /// messages are sent by the next sender once the lease runs out.
    pub lease: Span,
    /// Messages claimed per round.
    pub batch: u32,
    /// Delay before retrying a temporary failure.
    pub retry_delay: Span,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            lease: Span(std::time::Duration::from_secs(60)),
            batch: 256,
            retry_delay: Span(std::time::Duration::from_secs(5)),
        }
    }
}

/// `lab = true`, or `[lab]` with simulators: lab mode, where lab and
/// example secrets and small flash-call pools are allowed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LabConfig {
    /// `lab = true` (or `[lab] enabled = true`) without simulators.
    pub enabled: bool,
    /// Start `verigate-sim smsc` with the daemon.
    pub smsc: Option<LabSmsc>,
    /// Start `verigate-sim switch` with the daemon.
    pub switch: Option<LabSwitch>,
    /// Start `verigate-sim bank` with the daemon.
    pub bank: Option<LabBank>,
}

impl LabConfig {
    /// Lab mode: said so, or simulators started (nobody serves real
    /// subscribers through a simulated SMSC, switch or bank).
    pub fn is_lab(&self) -> bool {
        self.enabled || self.smsc.is_some() || self.switch.is_some() || self.bank.is_some()
    }
}

/// `[lab.bank]`: the bank simulator started with the daemon.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabBank {
    /// Its HTTP address (relay and control API).
    pub listen: String,
    /// Accounts to open, `name=balance_minor`.
    #[serde(default)]
    pub accounts: Vec<String>,
}

/// The table form of `[lab]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabTable {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    smsc: Option<LabSmsc>,
    #[serde(default)]
    switch: Option<LabSwitch>,
    #[serde(default)]
    bank: Option<LabBank>,
}

impl<'de> Deserialize<'de> for LabConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Form;
        impl<'de> serde::de::Visitor<'de> for Form {
            type Value = LabConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or a [lab] table")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<LabConfig, E> {
                Ok(LabConfig {
                    enabled: v,
                    ..LabConfig::default()
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<LabConfig, A::Error> {
                // Through the map deserializer, so errors inside keep their key.
                let t = LabTable::deserialize(serde::de::value::MapAccessDeserializer::new(m))?;
                Ok(LabConfig {
                    enabled: t.enabled,
                    smsc: t.smsc,
                    switch: t.switch,
                    bank: t.bank,
                })
            }
        }
        d.deserialize_any(Form)
    }
}

/// `[lab.switch]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabSwitch {
    /// SIP listen address.
    pub listen: String,
    /// Control API address.
    pub control: String,
    /// Digest user name the switch challenges for (none: no challenge).
    #[serde(default)]
    pub username: Option<String>,
    /// Digest password.
    #[serde(default)]
    pub password: Option<String>,
    /// Digest algorithm of its challenges: `MD5` or `SHA-256`.
    #[serde(default)]
    pub algorithm: Option<String>,
}

/// `[lab.smsc]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabSmsc {
    /// SMPP listen address.
    pub listen: String,
    /// Control API address.
    pub control: String,
    /// Receipt delay.
    #[serde(default)]
    pub dlr_delay: Option<Span>,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter, e.g. `info` or `verigate=debug`.
    pub filter: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
            format: "text".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[api]
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:8081"
[store]
kind = "sqlite"
path = "./var/x.db"
[secrets]
server_secret_file = "./var/s"
"#;

    #[test]
    fn a_postgres_store_reads_its_url_from_the_environment_and_says_what_is_wrong() {
        let pg = MIN.replace(
            "kind = \"sqlite\"\npath = \"./var/x.db\"",
            "kind = \"postgres\"\nurl_env = \"PGURL\"",
        );
        let env = |v: &'static str| move |k: &str| (k == "PGURL").then(|| v.to_string());
        let c = load_str_with_env(
            &pg,
            "t.toml",
            &[],
            &env("postgres://v:pw-0123456789abcdef@db/v"),
        )
        .unwrap();
        assert!(
            matches!(&c.store, StoreConfig::Postgres { url, pool: 16 } if url.ends_with("@db/v"))
        );
        let e = load_str_with_env(&pg, "t.toml", &[], &env("mysql://x")).unwrap_err();
        assert!(
            e.to_string()
                .contains("store.url: must be a postgres:// URL"),
            "{e}"
        );
    }

    #[test]
    fn minimal_file_gets_secure_defaults() {
        let c = load_str(MIN, "t.toml", &[]).unwrap();
        assert_eq!(c.verify.code_length, 6);
        assert_eq!(c.verify.max_attempts, 5);
        assert_eq!(c.verify.ttl.0.as_secs(), 600);
        assert!(c.verify.templates.contains_key("zh"));
    }

    #[test]
    fn lab_and_example_secrets_are_refused_outside_lab_mode() {
        let lab_values = r#"
[api]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
admin_token = "change-me-admin-token"
[store]
kind = "sqlite"
path = "./var/x.db"
[secrets]
server_secret_file = "./var/s"
[[smsc]]
name = "s"
host = "h"
port = 2775
system_id = "v"
password = "secret"
[[sip_trunk]]
name = "t"
host = "h"
username = "u"
password = "lab-secret"
caller_id = "+442071838750"
[[voice_gateway]]
sn = "7001"
k1 = "lab-k1-change-me-0123456789"
[[service]]
code = "lab"
name = "Lab"
api_key = "q8WvN3x7Lr"
webhook_url = "https://app.example/hook"
webhook_secret = "at-least-16-characters"
"#;
        let e = load_str(lab_values, "t.toml", &[]).unwrap_err().to_string();
        for want in [
            "api.admin_token: is a lab or example value",
            "smsc[0] (s).password: is a lab or example value",
            "sip_trunk[0] (t).password: is a lab or example value",
            "voice_gateway[0] (7001).k1: is a lab or example value",
            "service[0] (lab).api_key: must be at least 16 characters outside lab mode",
            "service[0] (lab).webhook_secret: is a lab or example value",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
        // `lab = true` allows them; so does `[lab] enabled = true`.
        let c = load_str(lab_values, "t.toml", &["lab=true".into()]).unwrap();
        assert!(c.lab.is_lab());
        let table = format!("{}\n[lab]\nenabled = true\n", lab_values);
        assert!(load_str(&table, "t.toml", &[]).unwrap().lab.is_lab());
        // A typo inside [lab] is named.
        let e = load_str(&format!("{MIN}\n[lab]\nenabeld = true\n"), "t.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("enabeld"), "{e}");
    }

    #[test]
    fn a_small_flash_call_pool_is_refused_outside_lab_mode() {
        let text = format!(
            "{MIN}[[flash_call.pool]]\ncountries = [\"GB\"]\nranges = [\"+447400900000-+447400900099\"]\n"
        );
        let e = load_str(&text, "t.toml", &[]).unwrap_err().to_string();
        let want = "flash_call.pool[0]: 100 numbers; outside lab mode a pool needs at least 1000 \
                    (with 5 attempts a guesser wins one verification in 20)";
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
        let lab = load_str(&text, "t.toml", &["lab=true".into()]);
        let e = lab.map(|_| String::new()).unwrap_or_else(|e| e.to_string());
        assert!(!e.contains("outside lab mode"), "{e}");
        let big = text.replace("+447400900099", "+447400900999");
        let e = load_str(&big, "t.toml", &[])
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string());
        assert!(!e.contains("flash_call.pool[0]"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = format!("{MIN}\n[verify]\ncode_lenght = 6\n");
        let e = load_str(&text, "t.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("code_lenght"), "{e}");
        assert!(e.starts_with("t.toml: "), "{e}");
    }

    #[test]
    fn bad_value_type_is_named() {
        let text = format!("{MIN}\n[verify]\nttl = \"ten minutes\"\n");
        let e = load_str(&text, "t.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("ten minutes"), "{e}");
    }

    #[test]
    fn every_invalid_value_is_listed() {
        let text = format!(
            "{MIN}\n[verify]\ncode_length = 12\nmax_attempts = 9\nresend_cooldown = \"1h\"\n[outbox]\nretry_delay = \"2d\"\n[[service]]\ncode = \"Bad Code\"\nname = \"x\"\napi_key = \"short\"\n"
        );
        let e = load_str(&text, "t.toml", &[]).unwrap_err().to_string();
        assert!(
            e.contains("verify.code_length = 12: must be between 4 and 10"),
            "{e}"
        );
        assert!(e.contains("verify.max_attempts = 9"), "{e}");
        assert!(e.contains("service[0] (Bad Code).code"), "{e}");
        assert!(e.contains("api_key: must be at least 8"), "{e}");
        assert!(
            e.contains("verify.resend_cooldown = \"1h\": must not be longer than verify.ttl"),
            "{e}"
        );
        assert!(
            e.contains("outbox.retry_delay = \"2d\": must be between 100ms and 1h"),
            "{e}"
        );
        let e = load_str(MIN, "t.toml", &["log.filter=verigate=loud".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.filter = \"verigate=loud\""), "{e}");
    }

    #[test]
    fn call_settings_are_checked_and_each_problem_named() {
        let text = format!(
            r#"{MIN}
[sip]
listen = "0.0.0.0:5060"
t1 = "10ms"
[[sip_trunk]]
name = "a"
host = "switch.example"
port = 0
transport = "udp"
username = "only-user"
caller_id = "0207"
calls_per_second = 0
max_concurrent = 0
options_interval = "500ms"
prefixes = ["+4x"]
[[sip_trunk]]
name = "a"
host = ""
[voice]
locales = []
ring_timeout = "1s"
max_attempts = 9
[flash_call]
ring_hold = "2m"
[[flash_call.pool]]
countries = ["GB", "XX"]
ranges = ["+447400900000-+447400900999"]
report_digits = 2
[[flash_call.pool]]
countries = ["GB"]
numbers = ["+447400900000", "+447400900000"]
"#
        );
        let e = load_str(&text, "t.toml", &[]).unwrap_err().to_string();
        for want in [
            "sip.listen = \"0.0.0.0:5060\": listening on all addresses needs sip.public_ip",
            "sip.t1 = \"10ms\": must be between 50ms and 2s",
            "sip_trunk[0] (a).port: must not be 0",
            "sip_trunk[0] (a): username and password go together",
            "sip_trunk[0] (a).caller_id = \"0207\": must be an E.164 number",
            "sip_trunk[0] (a).calls_per_second = 0",
            "sip_trunk[0] (a).max_concurrent = 0",
            "sip_trunk[0] (a).options_interval = \"500ms\"",
            "sip_trunk[0] (a).prefixes: \"+4x\" must be digits",
            "sip_trunk[1] (a).name: must be non-empty and unique",
            "sip_trunk[1] (a).host: must not be empty",
            "voice.locales: name at least one locale",
            "voice.ring_timeout = \"1s\": must be between 5s and 170s",
            "voice.max_attempts = 9",
            "flash_call.ring_hold = \"2m\": must be between 0ms and 1m",
            "flash_call.pool[0].countries: \"XX\" is not an ISO 3166 code",
            "flash_call.pool[0].report_digits = 2: must be between 4 and 8",
            "flash_call.pool[1].countries: \"GB\" has two pools",
            "flash_call.pool[1]: ",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
        // A trunk pointing at our own listen address.
        let e = load_str(
            &format!("{MIN}\n[sip]\nlisten = \"0.0.0.0:5060\"\npublic_ip = \"192.0.2.1\"\n[[sip_trunk]]\nname = \"me\"\nhost = \"127.0.0.1\"\nport = 5060\n"),
            "t.toml",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sip_trunk[0] (me): 127.0.0.1:5060 is our own sip.listen"),
            "{e}"
        );
        // A transport that is neither is refused by name.
        let e = load_str(
            &format!("{MIN}\n[[sip_trunk]]\nname = \"b\"\nhost = \"h\"\ntransport = \"sctp\"\n"),
            "t.toml",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sctp") && e.contains("udp"), "{e}");
    }

    #[test]
    fn voice_gateway_settings_are_checked_and_each_problem_named() {
        // Without a trunk, and with every field wrong.
        let text = format!(
            r#"{MIN}
[[voice_gateway]]
sn = "6 258"
k1 = "short"
code_digits = 3
region = "XX"
countries = ["CN", "YY"]
default_locale = "fr"
caller_id = "021"
expires_after = "2h"
[[voice_gateway]]
sn = "6 258"
k1 = ""
k2 = "md5-legacy"
"#
        );
        let e = load_str(&text, "t.toml", &[]).unwrap_err().to_string();
        for want in [
            "voice_gateway: calls need a [[sip_trunk]]",
            "voice_gateway[0] (6 258).sn: use 1-32 of",
            "voice_gateway[0] (6 258).k1: must be at least 16 characters for hmac-sha256",
            "voice_gateway[0] (6 258).code_digits = 3: must be between 4 and 10",
            "voice_gateway[0] (6 258).region = \"XX\"",
            "voice_gateway[0] (6 258).countries: \"YY\" is not an ISO 3166 code",
            "voice_gateway[0] (6 258).default_locale = \"fr\": not one of voice.locales (en, zh)",
            "voice_gateway[0] (6 258).caller_id = \"021\"",
            "voice_gateway[0] (6 258).expires_after = \"2h\": must be between 30s and 1h",
            "voice_gateway[1] (6 258).sn: duplicate service number",
            "voice_gateway[1] (6 258).k1: must not be empty",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
        let e = load_str(
            &format!("{MIN}\n[[voice_gateway]]\nsn = \"1\"\nk1 = \"x\"\nk2 = \"sha1\"\n"),
            "t.toml",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sha1") && e.contains("hmac-sha256"), "{e}");
        // The seed's legacy example is refused outside lab mode (its K1 is
        // published and short), and accepted as it stands in lab mode.
        let seed = "[[sip_trunk]]\nname = \"t\"\nhost = \"h\"\n[[voice_gateway]]\nsn = \"6258\"\nk1 = \"123321\"\nk2 = \"md5-legacy\"\nregion = \"CN\"\n";
        let e = load_str(&format!("{MIN}{seed}"), "t.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("voice_gateway[0] (6258).k1: is a lab or example value"),
            "{e}"
        );
        let c = load_str(
            &format!(
                "lab = true\n{MIN}\n[[sip_trunk]]\nname = \"t\"\nhost = \"h\"\n[[voice_gateway]]\nsn = \"6258\"\nk1 = \"123321\"\nk2 = \"md5-legacy\"\nregion = \"CN\"\n"
            ),
            "t.toml",
            &[],
        )
        .expect("valid");
        let g = &c.voice_gateway[0];
        assert_eq!(g.k2, K2Scheme::Md5Legacy);
        assert_eq!(g.code_digits, 6);
        assert_eq!(g.countries("GB"), vec!["CN"]);
        assert_eq!(g.locale(&c.voice.locales), "en");
        assert_eq!(g.limit.to_string(), "60/1m");
    }

    #[test]
    fn admin_endpoint_must_be_loopback() {
        let e = load_str(MIN, "t.toml", &["api.admin_listen=0.0.0.0:8081".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("must listen on loopback"), "{e}");
    }

    #[test]
    fn set_overrides_values_sections_and_list_elements() {
        let text = format!(
            "{MIN}\n[[smsc]]\nname = \"a\"\nhost = \"h\"\nport = 2775\nsystem_id = \"s\"\npassword = \"p\"\n"
        );
        let c = load_str(
            &text,
            "t.toml",
            &[
                "smsc.0.port=2776".into(),
                "verify.code_length=8".into(),
                "verify.sender=ACME".into(),
                "verify.limits.per_number=3/1h".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.smsc[0].port, 2776);
        assert_eq!(c.verify.code_length, 8);
        assert_eq!(c.verify.sender, "ACME");
        assert_eq!(c.verify.limits.per_number.count, 3);
        let e = load_str(&text, "t.toml", &["smsc.3.port=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("has 1 element(s), no index 3"), "{e}");
        // Text keys keep digits as text, in the file or not.
        let c = load_str(
            &text,
            "t.toml",
            &["verify.sender=12345".into(), "smsc.0.password=0042".into()],
        )
        .unwrap();
        assert_eq!(c.verify.sender, "12345");
        assert_eq!(c.smsc[0].password, "0042");
        let e = load_str(MIN, "t.toml", &["smsc.0.port=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("there is no list `smsc` to index"), "{e}");
        let e = load_str(MIN, "t.toml", &["verify.code_length=many".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("with --set overrides") && e.contains("code_length"),
            "{e}"
        );
        let e = load_str(&text, "t.toml", &["noequals".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("must look like section.key=value"), "{e}");
        let e = load_str(&text, "t.toml", &["verify.bogus=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }
}

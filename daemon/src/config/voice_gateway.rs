//! `[[voice_gateway]]`: third parties (service numbers with a key K1) that
//! ask verigate to call a number and read their code (the seed's telephone
//! gateway interface, `POST /v1/voice-calls`).

use super::{RateLimit, Span};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::Duration;

/// How K2 is made from TN, VN and K1.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub enum K2Scheme {
    /// Hex HMAC-SHA256 with key K1 over TN‖VN (the default).
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// Hex MD5 of TN‖VN‖K1, the seed's form, for operators that cannot
    /// change (MD5 is broken; prefer HMAC).
    #[serde(rename = "md5-legacy")]
    Md5Legacy,
}

impl K2Scheme {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            K2Scheme::HmacSha256 => "hmac-sha256",
            K2Scheme::Md5Legacy => "md5-legacy",
        }
    }
}

/// `[[voice_gateway]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceGatewayEntry {
    /// Service number SN the operator sends.
    pub sn: String,
    /// Service key K1 shared with the operator.
    pub k1: String,
    /// How K2 is computed.
    #[serde(default = "default_scheme")]
    pub k2: K2Scheme,
    /// Digits of every code VN: fixed, so TN‖VN splits one way only.
    #[serde(default = "default_code_digits")]
    pub code_digits: usize,
    /// Region national TNs are read in (default: verify.default_region).
    #[serde(default)]
    pub region: String,
    /// Countries TNs may be in (default: the region's; `["*"]`: any).
    #[serde(default)]
    pub countries: Vec<String>,
    /// Calls the service number may ask for.
    #[serde(default = "default_limit")]
    pub limit: RateLimit,
    /// Calls to one number the service number may ask for.
    #[serde(default = "default_per_number")]
    pub per_number: RateLimit,
    /// Locale of calls that name none (default: the first of voice.locales).
    #[serde(default)]
    pub default_locale: String,
    /// Caller number shown (E.164; default: the trunk's).
    #[serde(default)]
    pub caller_id: String,
    /// Give up placing a call this long after the request.
    #[serde(default = "default_expires_after")]
    pub expires_after: Span,
    /// A (SN, TN, VN) makes one call in this long: a repeat, or a replay,
    /// gets the first call back.
    #[serde(default = "default_replay_window")]
    pub replay_window: Span,
    /// How far the signed `ts` of the HMAC form may be from our clock.
    #[serde(default = "default_ts_skew")]
    pub ts_skew: Span,
}

fn default_scheme() -> K2Scheme {
    K2Scheme::HmacSha256
}
fn default_code_digits() -> usize {
    6
}
fn default_limit() -> RateLimit {
    RateLimit {
        count: 60,
        window: Span(Duration::from_secs(60)),
    }
}
fn default_per_number() -> RateLimit {
    RateLimit {
        count: 3,
        window: Span(Duration::from_secs(3600)),
    }
}
fn default_expires_after() -> Span {
    Span(Duration::from_secs(300))
}
fn default_replay_window() -> Span {
    Span(Duration::from_secs(24 * 3600))
}
fn default_ts_skew() -> Span {
    Span(Duration::from_secs(300))
}

/// Shortest K1 accepted for HMAC-SHA256: a guessable key lets anyone make
/// verigate call any number.
pub const MIN_HMAC_KEY_LEN: usize = 16;

impl VoiceGatewayEntry {
    /// The region national TNs are read in.
    pub fn region<'a>(&'a self, default_region: &'a str) -> &'a str {
        if self.region.is_empty() {
            default_region
        } else {
            &self.region
        }
    }

    /// The countries TNs may be in (`*`: any).
    pub fn countries(&self, default_region: &str) -> Vec<String> {
        if self.countries.is_empty() {
            vec![self.region(default_region).to_string()]
        } else {
            self.countries.clone()
        }
    }

    /// The locale of calls that name none.
    pub fn locale<'a>(&'a self, locales: &'a [String]) -> &'a str {
        if self.default_locale.is_empty() {
            locales.first().map_or("en", String::as_str)
        } else {
            &self.default_locale
        }
    }
}

/// Problems of the `[[voice_gateway]]` entries (see [`super::Config::problems`]).
pub fn problems(c: &super::Config, p: &mut Vec<String>) {
    let mut sns = HashSet::new();
    if !c.voice_gateway.is_empty() && c.sip_trunk.is_empty() {
        p.push("voice_gateway: calls need a [[sip_trunk]] to go out on".into());
    }
    for (i, g) in c.voice_gateway.iter().enumerate() {
        let k = format!("voice_gateway[{i}] ({})", g.sn);
        let sn_ok = (1..=32).contains(&g.sn.len())
            && g.sn
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !sn_ok {
            p.push(format!("{k}.sn: use 1-32 of A-Z, a-z, 0-9, '-', '_'"));
        }
        if !sns.insert(g.sn.clone()) {
            p.push(format!("{k}.sn: duplicate service number"));
        }
        match g.k2 {
            K2Scheme::HmacSha256 if g.k1.len() < MIN_HMAC_KEY_LEN => p.push(format!(
                "{k}.k1: must be at least {MIN_HMAC_KEY_LEN} characters for hmac-sha256 (a short key can be guessed)"
            )),
            K2Scheme::Md5Legacy if g.k1.is_empty() => {
                p.push(format!("{k}.k1: must not be empty"))
            }
            _ => {}
        }
        if !(4..=10).contains(&g.code_digits) {
            p.push(format!(
                "{k}.code_digits = {}: must be between 4 and 10",
                g.code_digits
            ));
        }
        if !g.region.is_empty() && !super::is_region(&g.region) {
            p.push(format!(
                "{k}.region = {:?}: must be an ISO 3166 country code such as \"CN\"",
                g.region
            ));
        }
        for country in &g.countries {
            if country != "*" && !super::is_region(country) {
                p.push(format!(
                    "{k}.countries: {country:?} is not an ISO 3166 code like \"CN\" (or \"*\")"
                ));
            }
        }
        let locale = g.locale(&c.voice.locales);
        if !c.voice.locales.iter().any(|l| l == locale) {
            p.push(format!(
                "{k}.default_locale = {locale:?}: not one of voice.locales ({})",
                c.voice.locales.join(", ")
            ));
        }
        if !g.caller_id.is_empty() && !super::calls::is_e164(&g.caller_id) {
            p.push(format!(
                "{k}.caller_id = {:?}: must be an E.164 number such as \"+862161234567\"",
                g.caller_id
            ));
        }
        let e = g.expires_after.0;
        if e < Duration::from_secs(30) || e > Duration::from_secs(3600) {
            p.push(format!(
                "{k}.expires_after = \"{}\": must be between 30s and 1h",
                g.expires_after
            ));
        }
        // Shorter than expires_after, a replay could place a second call
        // while the first may still be placed.
        let secs = Duration::from_secs;
        super::calls::span_between(
            p,
            &format!("{k}.replay_window"),
            g.replay_window,
            e.max(secs(3600)),
            secs(30 * 24 * 3600),
        );
        super::calls::span_between(p, &format!("{k}.ts_skew"), g.ts_skew, secs(10), secs(3600));
    }
}

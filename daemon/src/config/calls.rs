//! Call settings: SIP trunks, the local SIP/RTP endpoint, the voice channel
//! and flash-call CLI pools.

use super::Span;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How the caller number is presented on a trunk.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CallerIdStyle {
    /// In the From header only.
    From,
    /// In From and in P-Asserted-Identity (trunks that trust us, RFC 3325).
    Pai,
}

/// SIP transport of a trunk.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SipTransport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// `[[sip_trunk]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SipTrunkEntry {
    /// Name in logs, metrics and call records.
    pub name: String,
    /// Host (an IP address or a name resolved at start).
    pub host: String,
    /// Port (0 in lab mode: the simulated switch's port).
    #[serde(default = "default_sip_port")]
    pub port: u16,
    /// `udp` or `tcp`.
    #[serde(default = "default_transport")]
    pub transport: SipTransport,
    /// Digest user name for 401/407 challenges (empty: none configured,
    /// a challenge fails the call).
    #[serde(default)]
    pub username: String,
    /// Digest password.
    #[serde(default)]
    pub password: String,
    /// Domain of From URIs (default: the trunk host).
    #[serde(default)]
    pub from_domain: String,
    /// Caller number of voice calls (E.164), e.g. "+442071234567".
    #[serde(default)]
    pub caller_id: String,
    /// How the caller number is presented.
    #[serde(default = "default_caller_style")]
    pub caller_id_style: CallerIdStyle,
    /// New calls per second at most.
    #[serde(default = "default_cps")]
    pub calls_per_second: f64,
    /// Calls up at once at most.
    #[serde(default = "default_concurrent")]
    pub max_concurrent: u32,
    /// OPTIONS health ping interval ("0s": off).
    #[serde(default = "default_options_interval")]
    pub options_interval: Span,
    /// Destination prefixes routed here (empty: default route).
    #[serde(default)]
    pub prefixes: Vec<String>,
}

fn default_sip_port() -> u16 {
    5060
}
fn default_transport() -> SipTransport {
    SipTransport::Udp
}
fn default_caller_style() -> CallerIdStyle {
    CallerIdStyle::From
}
fn default_cps() -> f64 {
    10.0
}
fn default_concurrent() -> u32 {
    100
}
fn default_options_interval() -> Span {
    Span(Duration::from_secs(30))
}

/// `[sip]`: our side of the calls.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// SIP listen address (UDP and TCP); port 0 picks one.
    pub listen: String,
    /// Address put in SDP and Contact (default: the listen IP).
    pub public_ip: String,
    /// RFC 3261 T1 (Timer A start, Timer B = 64·T1).
    pub t1: Span,
    /// Media worker threads (each paces its calls off one 20 ms tick).
    pub media_workers: usize,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: "127.0.0.1:5062".into(),
            public_ip: String::new(),
            t1: Span(Duration::from_millis(500)),
            media_workers: 1,
        }
    }
}

/// `[voice]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoiceConfig {
    /// Prompt directory with one folder per locale (empty: the bundled prompts).
    pub prompts_dir: String,
    /// Locales voice calls can read codes in.
    pub locales: Vec<String>,
    /// Give up when not answered within this.
    pub ring_timeout: Span,
    /// Times a caller may press 1 to hear the code again.
    pub max_repeats: u32,
    /// How long to wait for a key after the reading before saying goodbye.
    pub dtmf_wait: Span,
    /// Longest call (then BYE whatever happens).
    pub max_duration: Span,
    /// Placement attempts on a temporary failure (503, timeouts).
    pub max_attempts: u32,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        VoiceConfig {
            prompts_dir: String::new(),
            locales: vec!["en".into(), "zh".into()],
            ring_timeout: Span(Duration::from_secs(45)),
            max_repeats: 2,
            dtmf_wait: Span(Duration::from_secs(4)),
            max_duration: Span(Duration::from_secs(180)),
            max_attempts: 2,
        }
    }
}

/// `[flash_call]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlashCallConfig {
    /// Cancel when the call has not rung within this.
    pub ring_timeout: Span,
    /// Let it ring this long before cancelling ("0s": cancel at the first
    /// ring); an approving report cancels it sooner.
    pub ring_hold: Span,
    /// How long the app has to report the caller number.
    pub report_window: Span,
    /// CLI pools, one per destination country.
    pub pool: Vec<CliPoolEntry>,
}

impl Default for FlashCallConfig {
    fn default() -> Self {
        FlashCallConfig {
            ring_timeout: Span(Duration::from_secs(20)),
            ring_hold: Span(Duration::ZERO),
            report_window: Span(Duration::from_secs(120)),
            pool: Vec::new(),
        }
    }
}

/// `[[flash_call.pool]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CliPoolEntry {
    /// Destination countries (ISO 3166) this pool calls; `["*"]`: any.
    pub countries: Vec<String>,
    /// Single numbers (E.164).
    #[serde(default)]
    pub numbers: Vec<String>,
    /// Ranges `+FIRST-+LAST`.
    #[serde(default)]
    pub ranges: Vec<String>,
    /// Trailing digits the app reports.
    #[serde(default = "default_report_digits")]
    pub report_digits: usize,
}

fn default_report_digits() -> usize {
    4
}

pub(super) fn span_between(p: &mut Vec<String>, key: &str, v: Span, lo: Duration, hi: Duration) {
    if v.0 < lo || v.0 > hi {
        p.push(format!(
            "{key} = \"{v}\": must be between {} and {}",
            Span(lo),
            Span(hi)
        ));
    }
}

/// Whether `s` is `+` and 8–15 digits not starting with 0.
pub(super) fn is_e164(s: &str) -> bool {
    let d = s.strip_prefix('+').unwrap_or("");
    (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
}

/// Fewest numbers of a flash-call pool outside lab mode: the caller ID is
/// the code, so a small pool is a guessable one.
pub const MIN_POOL: u64 = 1000;

/// Problems of the call settings (see [`super::Config::problems`]).
pub fn problems(c: &super::Config, p: &mut Vec<String>) {
    let mut names = HashSet::new();
    for (i, t) in c.sip_trunk.iter().enumerate() {
        let k = format!("sip_trunk[{i}] ({})", t.name);
        if t.name.is_empty() || !names.insert(t.name.clone()) {
            p.push(format!("{k}.name: must be non-empty and unique"));
        }
        if t.host.is_empty() {
            p.push(format!("{k}.host: must not be empty"));
        }
        if t.port == 0 && c.lab.switch.is_none() {
            p.push(format!(
                "{k}.port: must not be 0 (0 means the lab switch, and [lab.switch] is not set)"
            ));
        }
        if !(t.calls_per_second > 0.0 && t.calls_per_second <= 10_000.0) {
            p.push(format!(
                "{k}.calls_per_second = {}: must be above 0 and at most 10000",
                t.calls_per_second
            ));
        }
        if !(1..=100_000).contains(&t.max_concurrent) {
            p.push(format!(
                "{k}.max_concurrent = {}: must be between 1 and 100000",
                t.max_concurrent
            ));
        }
        if t.username.is_empty() != t.password.is_empty() {
            p.push(format!(
                "{k}: username and password go together (set both or neither)"
            ));
        }
        if !t.caller_id.is_empty() && !is_e164(&t.caller_id) {
            p.push(format!(
                "{k}.caller_id = {:?}: must be an E.164 number such as \"+442071234567\"",
                t.caller_id
            ));
        }
        let ping = t.options_interval.0;
        if !ping.is_zero() && (ping < Duration::from_secs(1) || ping > Duration::from_secs(3600)) {
            p.push(format!(
                "{k}.options_interval = \"{}\": must be 0s (off) or between 1s and 1h",
                t.options_interval
            ));
        }
        super::validate::prefix_problems(&k, &t.prefixes, p);
    }
    let s = &c.sip;
    // A trunk that is our own SIP address sends every INVITE to ourselves.
    if let Ok(listen) = s.listen.parse::<SocketAddr>() {
        let public: Option<IpAddr> = s.public_ip.parse().ok();
        for (i, t) in c.sip_trunk.iter().enumerate() {
            let Ok(host) = t.host.parse::<IpAddr>() else {
                continue;
            };
            let ours = host == listen.ip()
                || Some(host) == public
                || (listen.ip().is_unspecified() && host.is_loopback());
            // Port 0 names the lab switch, which listens on its own port.
            if t.port != 0 && t.port == listen.port() && ours {
                p.push(format!(
                    "sip_trunk[{i}] ({}): {}:{} is our own sip.listen ({}): calls would go to ourselves",
                    t.name, t.host, t.port, s.listen
                ));
            }
        }
    }
    match s.listen.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() && s.public_ip.is_empty() => p.push(format!(
            "sip.listen = {:?}: listening on all addresses needs sip.public_ip (the address peers send RTP and requests to)",
            s.listen
        )),
        Ok(_) => {}
        Err(e) => p.push(format!(
            "sip.listen = {:?}: {e} (use IP:PORT, e.g. \"0.0.0.0:5060\")",
            s.listen
        )),
    }
    if !s.public_ip.is_empty() && s.public_ip.parse::<IpAddr>().is_err() {
        p.push(format!(
            "sip.public_ip = {:?}: must be an IP address",
            s.public_ip
        ));
    }
    span_between(
        p,
        "sip.t1",
        s.t1,
        Duration::from_millis(50),
        // 64·T1 bounds how long shutdown waits for CANCEL/BYE.
        Duration::from_secs(2),
    );
    if !(1..=64).contains(&s.media_workers) {
        p.push(format!(
            "sip.media_workers = {}: must be between 1 and 64",
            s.media_workers
        ));
    }
    let v = &c.voice;
    if v.locales.is_empty() {
        p.push("voice.locales: name at least one locale, e.g. [\"en\"]".into());
    }
    if v.max_repeats > 5 {
        p.push(format!(
            "voice.max_repeats = {}: must be at most 5",
            v.max_repeats
        ));
    }
    if !(1..=5).contains(&v.max_attempts) {
        p.push(format!(
            "voice.max_attempts = {}: must be between 1 and 5",
            v.max_attempts
        ));
    }
    let f = &c.flash_call;
    let secs = Duration::from_secs;
    for (key, value, lo, hi) in [
        ("voice.ring_timeout", v.ring_timeout, secs(5), secs(170)),
        ("voice.dtmf_wait", v.dtmf_wait, Duration::ZERO, secs(30)),
        ("voice.max_duration", v.max_duration, secs(20), secs(900)),
        (
            "flash_call.ring_timeout",
            f.ring_timeout,
            secs(2),
            secs(120),
        ),
        (
            "flash_call.ring_hold",
            f.ring_hold,
            Duration::ZERO,
            secs(60),
        ),
        (
            "flash_call.report_window",
            f.report_window,
            secs(10),
            secs(600),
        ),
    ] {
        span_between(p, key, value, lo, hi);
    }
    let mut countries = HashSet::new();
    for (i, pool) in f.pool.iter().enumerate() {
        let k = format!("flash_call.pool[{i}]");
        if pool.countries.is_empty() {
            p.push(format!(
                "{k}.countries: name the destination countries, e.g. [\"GB\"], or [\"*\"]"
            ));
        }
        for country in &pool.countries {
            if country != "*" && !super::is_region(country) {
                p.push(format!(
                    "{k}.countries: {country:?} is not an ISO 3166 code like \"GB\" (or \"*\")"
                ));
            }
            if !countries.insert(country.clone()) {
                p.push(format!("{k}.countries: {country:?} has two pools"));
            }
        }
        if !(4..=8).contains(&pool.report_digits) {
            p.push(format!(
                "{k}.report_digits = {}: must be between 4 and 8",
                pool.report_digits
            ));
        } else {
            match crate::flashcall::CliPool::new(&pool.numbers, &pool.ranges, pool.report_digits) {
                Err(e) => p.push(format!("{k}: {e}")),
                Ok(cli) if cli.size() < MIN_POOL && !c.lab.is_lab() => p.push(format!(
                    "{k}: {} numbers; outside lab mode a pool needs at least {MIN_POOL} \
                     (with {} attempts a guesser wins one verification in {:.0})",
                    cli.size(),
                    c.verify.max_attempts,
                    cli.size() as f64 / f64::from(c.verify.max_attempts.max(1)),
                )),
                Ok(_) => {}
            }
        }
    }
}

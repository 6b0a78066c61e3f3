//! `[mo_login]`: log in or register by sending one SMS to a short code.

use super::{RateLimit, Span};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// What to do with an MO to the short code that carries no token.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NoTokenAction {
    /// Store it and send nothing.
    Ignore,
    /// Answer with the `no_token` template.
    Reply,
}

/// SMS texts of one locale.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MoTemplates {
    /// The token is not one we issued.
    pub unknown: String,
    /// The token's time ran out.
    pub expired: String,
    /// The token was used already.
    pub used: String,
    /// The message carried no token.
    pub no_token: String,
    /// A new account's password (`{password}`, `{msisdn}`).
    pub password: String,
}

/// `[mo_login]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoLoginConfig {
    /// Short code phones text (empty: MO login off).
    pub short_code: String,
    /// Words that may come before the token ("LOGIN ABCD2345").
    pub keywords: Vec<String>,
    /// How long a token works.
    pub token_ttl: Span,
    /// How long a session lasts.
    pub session_ttl: Span,
    /// Send a new account's random password by SMS.
    pub send_password: bool,
    /// MOs without a token.
    pub no_token: NoTokenAction,
    /// Region national senders (SMPP TON 2) are read in (empty: verify.default_region).
    pub region: String,
    /// Locale of SMS replies.
    pub locale: String,
    /// Longest long poll (`?wait=`).
    pub max_wait: Span,
    /// Reply texts per locale (en and zh built in).
    pub templates: BTreeMap<String, MoTemplates>,
    /// Budgets of SMS the short code sends back (refusals, password SMS).
    pub reply_limits: MoReplyLimits,
    /// Logins (`POST /v1/mo-logins`) one service may ask for.
    pub per_service: RateLimit,
}

/// `[mo_login.reply_limits]`: every SMS sent back to an MO's sender costs
/// us (and can earn a pumper a share), so replies are budgeted; an MO over
/// budget is still handled, its reply is not sent (and counted in
/// `mo_replies_suppressed_total`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoReplyLimits {
    /// Replies per sender number.
    pub per_sender: RateLimit,
    /// Replies per sender prefix (the first `prefix_digits` after `+`).
    pub per_prefix: RateLimit,
    /// Digits of the sender that make a prefix.
    pub prefix_digits: u8,
    /// Replies in all.
    pub global: RateLimit,
}

impl Default for MoReplyLimits {
    fn default() -> Self {
        MoReplyLimits {
            per_sender: "5/1h".parse().expect("valid"),
            per_prefix: "200/1h".parse().expect("valid"),
            prefix_digits: 6,
            global: "2000/1h".parse().expect("valid"),
        }
    }
}

impl Default for MoLoginConfig {
    fn default() -> Self {
        let mut templates = BTreeMap::new();
        templates.insert(
            "en".into(),
            MoTemplates {
                unknown: "This login code is not valid. Request a new one in the app.".into(),
                expired: "This login code has expired. Request a new one in the app.".into(),
                used: "This login code was already used. Request a new one in the app.".into(),
                no_token: "To log in, send the code shown in the app.".into(),
                password: "Your account {msisdn} is ready. Password: {password}".into(),
            },
        );
        templates.insert(
            "zh".into(),
            MoTemplates {
                unknown: "登录码无效，请在应用中重新获取。".into(),
                expired: "登录码已过期，请在应用中重新获取。".into(),
                used: "登录码已被使用，请在应用中重新获取。".into(),
                no_token: "登录请发送应用中显示的登录码。".into(),
                password: "您的账号{msisdn}已开通，密码：{password}".into(),
            },
        );
        MoLoginConfig {
            short_code: String::new(),
            keywords: vec!["LOGIN".into(), "REGISTER".into(), "REG".into()],
            token_ttl: Span(Duration::from_secs(300)),
            session_ttl: Span(Duration::from_secs(30 * 24 * 3600)),
            send_password: true,
            no_token: NoTokenAction::Reply,
            region: String::new(),
            locale: "en".into(),
            max_wait: Span(Duration::from_secs(30)),
            templates,
            reply_limits: MoReplyLimits::default(),
            per_service: "600/1m".parse().expect("valid"),
        }
    }
}

impl MoLoginConfig {
    /// The reply texts.
    pub fn texts(&self) -> &MoTemplates {
        self.templates
            .get(&self.locale)
            .or_else(|| self.templates.values().next())
            .expect("validated: the locale has templates")
    }
}

/// Problems of `[mo_login]` (see [`super::Config::problems`]).
pub fn problems(c: &super::Config, p: &mut Vec<String>) {
    let m = &c.mo_login;
    if m.short_code.is_empty() {
        return;
    }
    if !(3..=15).contains(&m.short_code.len()) || !m.short_code.bytes().all(|b| b.is_ascii_digit())
    {
        p.push(format!(
            "mo_login.short_code = {:?}: must be 3 to 15 digits",
            m.short_code
        ));
    }
    if c.smsc.is_empty() {
        p.push("mo_login: needs an [[smsc]] to receive the SMS and send replies".into());
    }
    for k in &m.keywords {
        if k.is_empty() || !k.chars().all(|ch| ch.is_ascii_alphabetic()) {
            p.push(format!("mo_login.keywords: {k:?} must be letters"));
        }
    }
    let secs = Duration::from_secs;
    for (key, v, lo, hi) in [
        ("mo_login.token_ttl", m.token_ttl, secs(30), secs(3600)),
        (
            "mo_login.session_ttl",
            m.session_ttl,
            secs(60),
            secs(365 * 24 * 3600),
        ),
        ("mo_login.max_wait", m.max_wait, secs(1), secs(120)),
    ] {
        if v.0 < lo || v.0 > hi {
            p.push(format!(
                "{key} = \"{v}\": must be between {} and {}",
                Span(lo),
                Span(hi)
            ));
        }
    }
    if !(3..=15).contains(&m.reply_limits.prefix_digits) {
        p.push(format!(
            "mo_login.reply_limits.prefix_digits = {}: must be 3 to 15",
            m.reply_limits.prefix_digits
        ));
    }
    if !m.region.is_empty() && !super::is_region(&m.region) {
        p.push(format!(
            "mo_login.region = {:?}: must be an ISO 3166 country code such as \"CN\"",
            m.region
        ));
    }
    if !m.templates.contains_key(&m.locale) {
        p.push(format!(
            "mo_login.locale = {:?}: no templates for it in mo_login.templates",
            m.locale
        ));
    }
    for (l, t) in &m.templates {
        if !t.password.contains("{password}") {
            p.push(format!(
                "mo_login.templates.{l}.password: must contain {{password}}"
            ));
        }
    }
}

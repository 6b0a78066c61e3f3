//! `[registry]`: the carrier's number-binding registry, and what its short
//! code answers subscribers.

use super::{MoReplyLimits, Span};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// `[registry]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Run the registry (`/v1/registry/…`).
    pub enabled: bool,
    /// Region national numbers are read in (empty: verify.default_region).
    pub region: String,
    /// How long a notification to an app platform is retried before it is
    /// given up (an app down for a weekend still hears of the purge).
    pub notify_for: Span,
    /// The short code subscribers text `UNBIND ALL`, `UNBIND <code>`,
    /// `BINDINGS`, `MOVE <number>` (and the Mandarin forms) to; empty: no
    /// MO commands.
    pub short_code: String,
    /// How long a move offered from the old number waits for the new one.
    pub move_ttl: Span,
    /// Reply texts per locale (en and zh built in); a command's language
    /// picks them.
    pub templates: BTreeMap<String, RegistryTemplates>,
    /// Budgets of SMS the short code sends back.
    pub reply_limits: MoReplyLimits,
    /// Services that act for subscribers on an SMS-code proof (a carrier's
    /// self-care portal: `POST /v1/registry/unbind`, `/v1/registry/move`).
    pub self_care_services: Vec<String>,
    /// How recent that proof (the verification's approval) must be.
    pub proof_ttl: Span,
    /// App platforms registered at start (each a service; its webhook
    /// secret signs its notifications); `verigate registry apps add` adds
    /// others.
    pub apps: Vec<RegistryAppEntry>,
}

/// An app platform the config declares.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryAppEntry {
    /// Its service code.
    pub service: String,
    /// Where its notifications are POSTed.
    pub notify_url: String,
}

/// The registry short code's replies in one locale. `{services}` is the
/// list of app names, `{service}` one, `{code}` what was typed, `{new}` /
/// `{old}` numbers, `{token}` the move code, `{short_code}` and
/// `{minutes}` the move's instructions.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryTemplates {
    /// `UNBIND ALL` unbound some apps.
    pub unbound_all: String,
    /// `UNBIND <code>` unbound it.
    pub unbound_one: String,
    /// `UNBIND …` found nothing to unbind.
    pub not_bound: String,
    /// `BINDINGS` with some.
    pub bindings: String,
    /// `BINDINGS` (or `UNBIND ALL`) with none.
    pub no_bindings: String,
    /// `MOVE <number>`: what to text from the new number.
    pub move_offer: String,
    /// `MOVE <token>` from the new number: done.
    pub moved: String,
    /// `MOVE <token>` that no offer for this number has.
    pub move_refused: String,
    /// `MOVE <token>` after its time.
    pub move_expired: String,
    /// `MOVE <x>` where x is not a number (or is the sender's own).
    pub bad_number: String,
    /// Anything else.
    pub help: String,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        let mut templates = BTreeMap::new();
        templates.insert(
            "en".into(),
            RegistryTemplates {
                unbound_all: "Your number is no longer bound to: {services}. They have been told."
                    .into(),
                unbound_one: "Your number is no longer bound to {service}. It has been told.".into(),
                not_bound: "Your number is not bound to {code}. Text BINDINGS to list your apps."
                    .into(),
                bindings: "Your number is bound to: {services}.".into(),
                no_bindings: "Your number is bound to no app.".into(),
                move_offer: "To move your apps to {new}, text MOVE {token} from that phone to {short_code} within {minutes} minutes.".into(),
                moved: "Your apps ({services}) now use this number instead of {old}.".into(),
                move_refused: "This move code is not valid for this number. Start again from your old number.".into(),
                move_expired: "This move code has expired. Start again from your old number.".into(),
                bad_number: "{code} is not a new phone number. Text MOVE and your new number, e.g. MOVE +447400123456.".into(),
                help: "Text BINDINGS to list your apps, UNBIND ALL or UNBIND <app> to unbind, MOVE <new number> to move them.".into(),
            },
        );
        templates.insert(
            "zh".into(),
            RegistryTemplates {
                unbound_all: "您的号码已解除与以下应用的绑定：{services}，已通知对方。".into(),
                unbound_one: "您的号码已解除与{service}的绑定，已通知对方。".into(),
                not_bound: "您的号码未绑定{code}。发送“查询绑定”查看已绑定的应用。".into(),
                bindings: "您的号码已绑定：{services}。".into(),
                no_bindings: "您的号码未绑定任何应用。".into(),
                move_offer: "如需将应用转到{new}，请在{minutes}分钟内用该手机发送“换号 {token}”到{short_code}。".into(),
                moved: "您的应用（{services}）已从{old}转到本号码。".into(),
                move_refused: "换号码无效，请从原号码重新开始。".into(),
                move_expired: "换号码已过期，请从原号码重新开始。".into(),
                bad_number: "{code}不是新的手机号码。请发送“换号”加新号码。".into(),
                help: "发送“查询绑定”查看应用，“解绑全部”或“解绑 应用代码”解除绑定，“换号 新号码”更换号码。".into(),
            },
        );
        RegistryConfig {
            enabled: false,
            region: String::new(),
            notify_for: Span(Duration::from_secs(3 * 86_400)),
            short_code: String::new(),
            move_ttl: Span(Duration::from_secs(15 * 60)),
            templates,
            reply_limits: MoReplyLimits::default(),
            self_care_services: Vec::new(),
            proof_ttl: Span(Duration::from_secs(600)),
            apps: Vec::new(),
        }
    }
}

impl RegistryConfig {
    /// The texts of `locale`, else English.
    pub fn texts(&self, locale: &str) -> &RegistryTemplates {
        self.templates
            .get(locale)
            .or_else(|| self.templates.get("en"))
            .or_else(|| self.templates.values().next())
            .expect("validated: templates exist")
    }
}

/// What is wrong with `[registry]`.
pub(super) fn problems(c: &super::Config, p: &mut Vec<String>) {
    let r = &c.registry;
    if !r.region.is_empty() && !super::is_region(&r.region) {
        p.push(format!(
            "registry.region = {:?}: must be an ISO 3166 country code such as \"GB\"",
            r.region
        ));
    }
    if r.notify_for.0 < Duration::from_secs(60) {
        p.push(
            "registry.notify_for: must be at least 1m (notifications are retried for days)".into(),
        );
    }
    if !r.short_code.is_empty() {
        if !r.enabled {
            p.push("registry.short_code is set but registry.enabled = false".into());
        }
        if !r.short_code.bytes().all(|b| b.is_ascii_digit()) || r.short_code.len() > 15 {
            p.push(format!(
                "registry.short_code = {:?}: must be up to 15 digits",
                r.short_code
            ));
        }
        if r.short_code == c.mo_login.short_code {
            p.push(format!(
                "registry.short_code = {:?} is also mo_login.short_code: each needs its own",
                r.short_code
            ));
        }
        if r.templates.is_empty() {
            p.push("registry.templates: at least one locale is needed".into());
        }
    }
    if !(3..=15).contains(&r.reply_limits.prefix_digits) {
        p.push(format!(
            "registry.reply_limits.prefix_digits = {}: must be 3 to 15",
            r.reply_limits.prefix_digits
        ));
    }
    for s in &r.self_care_services {
        if !super::is_service_code(s) {
            p.push(format!(
                "registry.self_care_services: {s:?} is not a service code (1-64 of a-z, 0-9, '-', '_')"
            ));
        }
    }
    for (i, a) in r.apps.iter().enumerate() {
        if !super::is_service_code(&a.service) {
            p.push(format!("registry.apps[{i}].service: not a service code"));
        }
        if !(a.notify_url.starts_with("https://") || a.notify_url.starts_with("http://")) {
            p.push(format!(
                "registry.apps[{i}].notify_url = {:?}: must be an http:// or https:// URL",
                a.notify_url
            ));
        }
        if let Some(s) = c.service.iter().find(|s| s.code == a.service) {
            if s.webhook_secret.is_none() {
                p.push(format!(
                    "registry.apps[{i}] ({}): its [[service]] needs a webhook_secret to sign its notifications",
                    a.service
                ));
            }
        }
    }
    for (l, t) in &r.templates {
        if !t.move_offer.contains("{token}") {
            p.push(format!(
                "registry.templates.{l}.move_offer: must contain {{token}}"
            ));
        }
    }
}

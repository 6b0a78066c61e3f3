//! What the call channels need at start and check time: which voice
//! locales exist, the flash-call CLI pools, and how a reported caller
//! number is compared with the one we called from.

use super::cli_pool::{CliPool, PoolError};
use super::phone;
use crate::config::Config;
use std::time::Duration;

/// One destination country group's pool.
#[derive(Debug, Clone)]
pub struct FlashPool {
    /// ISO 3166 regions it calls (`*`: any).
    pub countries: Vec<String>,
    /// The numbers.
    pub pool: CliPool,
    /// Trailing digits the app reports.
    pub report_digits: usize,
}

/// Flash-call settings.
#[derive(Debug, Clone)]
pub struct FlashSettings {
    /// Pools by country.
    pub pools: Vec<FlashPool>,
    /// How long the app has to report.
    pub report_window: Duration,
}

impl FlashSettings {
    /// The pool that calls numbers of `region` (an exact country before `*`).
    pub fn pool_for(&self, region: Option<&str>) -> Option<&FlashPool> {
        let region = region.unwrap_or("");
        self.pools
            .iter()
            .find(|p| p.countries.iter().any(|c| c == region))
            .or_else(|| {
                self.pools
                    .iter()
                    .find(|p| p.countries.iter().any(|c| c == "*"))
            })
    }
}

/// The call channels' settings (absent channels are refused at start).
#[derive(Debug, Clone, Default)]
pub struct CallChannels {
    /// Locales voice calls read codes in; empty when no trunk is configured.
    pub voice_locales: Vec<String>,
    /// None when no trunk or no pool is configured.
    pub flash: Option<FlashSettings>,
    /// Why the call channels are unavailable, if they are.
    pub unavailable: Option<String>,
}

impl CallChannels {
    /// From a validated configuration.
    pub fn from_config(c: &Config) -> Result<Self, PoolError> {
        if c.sip_trunk.is_empty() {
            return Ok(CallChannels {
                unavailable: Some("no SIP trunk is configured ([[sip_trunk]])".into()),
                ..Default::default()
            });
        }
        let mut pools = Vec::new();
        for p in &c.flash_call.pool {
            pools.push(FlashPool {
                countries: p.countries.clone(),
                pool: CliPool::new(&p.numbers, &p.ranges, p.report_digits)?,
                report_digits: p.report_digits,
            });
        }
        Ok(CallChannels {
            voice_locales: c.voice.locales.clone(),
            flash: (!pools.is_empty()).then_some(FlashSettings {
                pools,
                report_window: c.flash_call.report_window.0,
            }),
            unavailable: None,
        })
    }
}

/// A caller number as an app reported it, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reported {
    /// Only the last digits (as many as the pool asks for).
    Suffix(String),
    /// A whole number, in E.164.
    Full(String),
}

/// Why a report cannot be compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("caller number {0:?} is not a phone number or its last digits")]
pub struct BadReport(pub String);

/// Normalises what an app saw: separators dropped; exactly `suffix_len`
/// digits are the last digits; anything longer is a whole number, in
/// international form (`+44…`, `0044…`) or national form of `region`
/// (`07400…`), as phones display either.
pub fn normalise_report(raw: &str, suffix_len: usize, region: &str) -> Result<Reported, BadReport> {
    let bad = || BadReport(raw.to_string());
    let t = raw.trim();
    if t.is_empty() || t.len() > 32 {
        return Err(bad());
    }
    let plus = t.starts_with('+');
    let body = if plus { &t[1..] } else { t };
    if !body
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'))
    {
        return Err(bad());
    }
    let digits: String = body.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return Err(bad());
    }
    if !plus && digits.len() == suffix_len {
        return Ok(Reported::Suffix(digits));
    }
    let intl = if plus {
        Some(format!("+{digits}"))
    } else {
        digits.strip_prefix("00").map(|d| format!("+{d}"))
    };
    let n = match intl {
        Some(i) => phone::normalize(&i, region),
        None => phone::normalize(&digits, region),
    }
    .map_err(|_| bad())?;
    Ok(Reported::Full(n.as_str().to_string()))
}

/// Whether a report names `cli` (E.164): its last digits, or the whole
/// number. Constant time in the compared digits.
pub fn report_matches(r: &Reported, cli: &str, suffix_len: usize) -> bool {
    use subtle::ConstantTimeEq;
    match r {
        Reported::Suffix(d) => {
            let tail = &cli.as_bytes()[cli.len().saturating_sub(suffix_len)..];
            d.len() == tail.len() && bool::from(d.as_bytes().ct_eq(tail))
        }
        Reported::Full(n) => n.len() == cli.len() && bool::from(n.as_bytes().ct_eq(cli.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLI: &str = "+447400100123";

    #[test]
    fn reports_in_every_form_a_phone_shows_match() {
        for raw in [
            "+447400100123",
            "+44 7400 100123",
            "00447400100123",
            "07400 100123",
            "(07400) 100-123",
            "0123",
        ] {
            let r = normalise_report(raw, 4, "GB").unwrap();
            assert!(report_matches(&r, CLI, 4), "{raw} -> {r:?}");
        }
    }

    #[test]
    fn other_numbers_and_other_suffixes_do_not_match() {
        for raw in ["+447400100124", "07400100124", "0124", "123"] {
            if let Ok(r) = normalise_report(raw, 4, "GB") {
                assert!(!report_matches(&r, CLI, 4), "{raw}");
            }
        }
        // A national number read in the wrong region is another number.
        let r = normalise_report("07400100123", 4, "US");
        assert!(r.map_or(true, |r| !report_matches(&r, CLI, 4)));
    }

    #[test]
    fn garbage_is_refused_with_the_input() {
        for raw in [
            "",
            "abc",
            "+",
            "12ab",
            "+44 7400 1001 23 45 67 89 01 23 45 67",
        ] {
            let e = normalise_report(raw, 4, "GB").unwrap_err();
            assert_eq!(e.0, raw);
        }
    }

    #[test]
    fn the_pool_for_a_country_wins_over_the_catch_all() {
        let pool = |c: &str, n: &str| FlashPool {
            countries: vec![c.into()],
            pool: CliPool::new(&[], &[format!("{n}0-{n}9")], 1).unwrap(),
            report_digits: 1,
        };
        let s = FlashSettings {
            pools: vec![pool("*", "+1555010000"), pool("GB", "+44740010000")],
            report_window: Duration::from_secs(60),
        };
        assert!(s
            .pool_for(Some("GB"))
            .unwrap()
            .pool
            .contains("+447400100005"));
        assert!(s
            .pool_for(Some("FR"))
            .unwrap()
            .pool
            .contains("+15550100005"));
        assert!(s.pool_for(None).unwrap().pool.contains("+15550100005"));
    }
}

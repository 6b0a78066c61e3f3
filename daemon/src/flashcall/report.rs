//! Report matching: the caller numbers an app saw, normalised, compared
//! with the number we called from, and what the report costs in attempts.

use crate::verify::phone;

/// Caller numbers one check may list.
pub const MAX_REPORTED: usize = 20;

/// What an app watches for during a flash-call verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashHint {
    /// What the calling number begins with (E.164).
    pub cli_prefix: String,
    /// Trailing digits to report (or report the whole number).
    pub report_digits: usize,
}

/// A check's report, normalised: fixed before the attempt is counted.
#[derive(Debug, Clone)]
pub struct Report {
    reports: Vec<Reported>,
    suffix: usize,
    prefix: Option<String>,
}

/// What a report amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    /// Whether a reported number is the call's caller number.
    pub matched: bool,
    /// Attempts it costs: one per distinct plausible guess (at least one).
    pub cost: u32,
}

impl Report {
    /// Normalises what an app saw (its whole call log may come, "Private"
    /// entries and all: one usable number is enough). `region` reads
    /// national numbers; without a `hint` 4 trailing digits are assumed.
    pub fn parse(
        raw: &[String],
        hint: Option<&FlashHint>,
        region: &str,
    ) -> Result<Report, ReportError> {
        if raw.is_empty() || raw.len() > MAX_REPORTED {
            return Err(ReportError::Count(raw.len()));
        }
        let suffix = hint.map_or(4, |h| h.report_digits);
        let mut reports = Vec::new();
        let mut bad = None;
        for r in raw {
            match normalise_report(r, suffix, region) {
                Ok(n) => reports.push(n),
                Err(e) => bad = Some(e),
            }
        }
        match bad {
            Some(e) if reports.is_empty() => Err(e),
            _ => Ok(Report {
                reports,
                suffix,
                prefix: hint.map(|h| h.cli_prefix.clone()),
            }),
        }
    }

    /// Compares the report with `cli`, the number we called from (None:
    /// no call was placed yet, so nothing matches).
    pub fn judge(&self, cli: Option<&str>) -> Judged {
        // Every distinct report that could be one of our numbers (any last
        // digits; a whole number under the pool's prefix) is a guess.
        let mut guesses: Vec<&Reported> = self
            .reports
            .iter()
            .filter(|r| match (r, &self.prefix) {
                (Reported::Full(n), Some(p)) => n.starts_with(p.as_str()),
                _ => true,
            })
            .collect();
        guesses.sort_unstable();
        guesses.dedup();
        Judged {
            // Every entry is compared, so the time does not say which matched.
            matched: cli.is_some_and(|cli| {
                self.reports
                    .iter()
                    .fold(false, |m, r| m | report_matches(r, cli, self.suffix))
            }),
            cost: (guesses.len() as u32).max(1),
        }
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

/// Why a report cannot be compared (the caller's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// An entry is neither a phone number nor its last digits.
    #[error("caller number {0:?} is not a phone number or its last digits")]
    NotANumber(String),
    /// Too few or too many entries.
    #[error("report 1 to {MAX_REPORTED} caller numbers (got {0})")]
    Count(usize),
}

/// Normalises what an app saw: separators dropped; exactly `suffix_len`
/// digits are the last digits; anything longer is a whole number, in
/// international form (`+44…`, `0044…`) or national form of `region`
/// (`07400…`), as phones display either.
pub fn normalise_report(
    raw: &str,
    suffix_len: usize,
    region: &str,
) -> Result<Reported, ReportError> {
    let bad = || ReportError::NotANumber(raw.to_string());
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
            assert_eq!(e, ReportError::NotANumber(raw.into()));
        }
    }

    fn report(raw: &[&str]) -> Result<Report, ReportError> {
        let hint = FlashHint {
            cli_prefix: "+44740010".into(),
            report_digits: 4,
        };
        let raw: Vec<String> = raw.iter().map(|s| s.to_string()).collect();
        Report::parse(&raw, Some(&hint), "GB")
    }

    #[test]
    fn a_call_log_matches_on_any_entry_and_costs_one_attempt_per_guess() {
        let r = report(&["Private", "+447400100123", "+15550100000"]).unwrap();
        // The US number is not under the pool's prefix: not a guess.
        assert_eq!(
            r.judge(Some(CLI)),
            Judged {
                matched: true,
                cost: 1
            }
        );
        let r = report(&["0123", "0124", "0125", "0124"]).unwrap();
        assert_eq!(
            r.judge(Some(CLI)),
            Judged {
                matched: true,
                cost: 3
            }
        );
        assert!(!r.judge(None).matched, "no call placed: nothing matches");
    }

    #[test]
    fn a_report_of_nothing_usable_or_too_much_is_refused() {
        assert_eq!(report(&[]).unwrap_err(), ReportError::Count(0));
        let many: Vec<&str> = vec!["0123"; MAX_REPORTED + 1];
        assert_eq!(report(&many).unwrap_err(), ReportError::Count(21));
        assert_eq!(
            report(&["Private"]).unwrap_err(),
            ReportError::NotANumber("Private".into())
        );
        assert_eq!(
            ReportError::Count(0).to_string(),
            "report 1 to 20 caller numbers (got 0)"
        );
    }
}

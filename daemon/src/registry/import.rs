//! The carrier's deactivation file: numbers that changed hands (or were
//! deactivated) and when, as CSV, for `verigate registry import`.
//!
//! One number per line: `msisdn[,date]`, where `date` is `YYYY-MM-DD` (or
//! empty: the import's time). A header line naming its columns may come
//! first (`msisdn`/`number`/`phone_number` and `date`/`recycled_at`/
//! `deactivated_at`); other columns are then ignored, so a carrier's own
//! export can be fed as it is. Blank lines and `#` comments are skipped.
//! Every line is checked before anything is recycled: a file with a bad
//! line recycles nothing, and each bad line is named.

use crate::clock::Millis;
use crate::verify::phone;

/// One number of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deactivation {
    /// E.164.
    pub msisdn: String,
    /// When it changed hands (None: at the import).
    pub at: Option<Millis>,
    /// Its line in the file (1-based), for messages.
    pub line: usize,
}

/// A line that is not a deactivation, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct BadLine {
    /// 1-based.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Where the two columns are.
struct Columns {
    msisdn: usize,
    date: Option<usize>,
}

const NUMBER_NAMES: &[&str] = &["msisdn", "number", "phone_number", "phonenumber", "e164"];
const DATE_NAMES: &[&str] = &[
    "date",
    "recycled_at",
    "deactivated_at",
    "recycled",
    "deactivated",
];

/// Reads a header line, if `fields` is one (no field reads as a number).
fn header(fields: &[&str]) -> Result<Option<Columns>, String> {
    let names: Vec<String> = fields
        .iter()
        .map(|f| f.trim().to_ascii_lowercase())
        .collect();
    let looks_like_header = names
        .iter()
        .all(|n| !n.is_empty() && !n.starts_with('+') && !n.bytes().all(|b| b.is_ascii_digit()));
    if !looks_like_header {
        return Ok(None);
    }
    let find = |wanted: &[&str]| names.iter().position(|n| wanted.contains(&n.as_str()));
    let msisdn = find(NUMBER_NAMES).ok_or_else(|| {
        format!(
            "the header names no number column (one of {}): {}",
            NUMBER_NAMES.join(", "),
            fields.join(",")
        )
    })?;
    Ok(Some(Columns {
        msisdn,
        date: find(DATE_NAMES),
    }))
}

/// The deactivations of a file, numbers read in `region`; every bad line
/// if any (then none is to be applied).
pub fn parse(text: &str, region: &str) -> Result<Vec<Deactivation>, Vec<BadLine>> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let mut columns: Option<Columns> = None;
    let mut first = true;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.trim_start_matches('\u{feff}').trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = raw.split(',').map(|f| f.trim().trim_matches('"')).collect();
        if first {
            first = false;
            match header(&fields) {
                Ok(Some(c)) => {
                    columns = Some(c);
                    continue;
                }
                Ok(None) => {}
                Err(reason) => {
                    bad.push(BadLine { line, reason });
                    break;
                }
            }
        }
        let (ni, di) = match &columns {
            Some(c) => (c.msisdn, c.date),
            None => {
                if fields.len() > 2 {
                    bad.push(BadLine {
                        line,
                        reason: format!(
                            "{} fields; without a header a line is msisdn[,date]",
                            fields.len()
                        ),
                    });
                    continue;
                }
                (0, Some(1))
            }
        };
        let number = fields.get(ni).copied().unwrap_or("");
        let msisdn = match phone::normalize(number, region) {
            Ok(n) => n.as_str().to_string(),
            Err(e) => {
                bad.push(BadLine {
                    line,
                    reason: format!("{number:?}: {e}"),
                });
                continue;
            }
        };
        let date = di.and_then(|d| fields.get(d)).copied().unwrap_or("");
        let at = if date.is_empty() {
            None
        } else {
            match verigate_codecs::time::parse_date(date) {
                Some(ms) => Some(ms),
                None => {
                    bad.push(BadLine {
                        line,
                        reason: format!("{date:?} is not a date such as 2026-12-04 (YYYY-MM-DD)"),
                    });
                    continue;
                }
            }
        };
        out.push(Deactivation { msisdn, at, line });
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_lines_with_and_without_dates() {
        let got = parse(
            "# nightly deactivations\n+447400100200,2026-11-30\n\n07400 100201\n+447400100202,\n",
            "GB",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Deactivation {
                    msisdn: "+447400100200".into(),
                    at: verigate_codecs::time::parse_date("2026-11-30"),
                    line: 2
                },
                Deactivation {
                    msisdn: "+447400100201".into(),
                    at: None,
                    line: 4
                },
                Deactivation {
                    msisdn: "+447400100202".into(),
                    at: None,
                    line: 5
                },
            ]
        );
    }

    #[test]
    fn a_header_picks_the_columns_and_others_are_ignored() {
        let got = parse(
            "\u{feff}account,Deactivated_At,MSISDN,reason\r\n991,2026-12-01,+447400100203,ported\r\n",
            "GB",
        )
        .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].msisdn, "+447400100203");
        assert_eq!(got[0].at, verigate_codecs::time::parse_date("2026-12-01"));
        assert_eq!(got[0].line, 2);
    }

    #[test]
    fn every_bad_line_is_named_and_nothing_is_returned() {
        let bad = parse(
            "+447400100200,2026-11-30\nnot-a-number,2026-11-30\n+447400100201,2026-02-30\n+44,x,y\n",
            "GB",
        )
        .unwrap_err();
        let lines: Vec<usize> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [2, 3, 4], "{bad:?}");
        assert!(bad[1].reason.contains("YYYY-MM-DD"), "{}", bad[1]);
        assert!(bad[2].reason.contains("msisdn[,date]"), "{}", bad[2]);
        let header = parse("when,who\n2026-11-30,+447400100200\n", "GB").unwrap_err();
        assert_eq!(header[0].line, 1);
        assert!(
            header[0].reason.contains("no number column"),
            "{}",
            header[0]
        );
    }
}

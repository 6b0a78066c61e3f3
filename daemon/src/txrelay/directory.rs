//! The carrier's subscriber extract, as CSV, for `verigate txrelay
//! subscribers import`: `msisdn,imsi,status[,sim_changed_at]` per line, or
//! a header naming those columns (others ignored). `status` is `active`,
//! `suspended` or `ceased`; `sim_changed_at` is `YYYY-MM-DD` or RFC 3339
//! UTC (empty: unknown, or now if the IMSI changed). Blank lines and `#`
//! comments are skipped. Every line is checked first: a file with a bad
//! line changes nothing, and each bad line is named.

use crate::registry::import::BadLine;
use crate::store::{LineStatus, Subscriber};
use crate::verify::phone;

const COLUMNS: [(&str, &[&str]); 4] = [
    ("msisdn", &["msisdn", "number", "phone_number", "e164"]),
    ("imsi", &["imsi"]),
    ("status", &["status", "state", "line_status"]),
    (
        "sim_changed_at",
        &[
            "sim_changed_at",
            "last_sim_change",
            "sim_change",
            "sim_changed",
        ],
    ),
];

/// The lines of a file, numbers read in `region`; every bad line if any.
pub fn parse(text: &str, region: &str) -> Result<Vec<Subscriber>, Vec<BadLine>> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let mut cols: Option<[Option<usize>; 4]> = None;
    let mut first = true;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.trim_start_matches('\u{feff}').trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = raw.split(',').map(|f| f.trim().trim_matches('"')).collect();
        let fail = |bad: &mut Vec<BadLine>, reason: String| bad.push(BadLine { line, reason });
        if first {
            first = false;
            let names: Vec<String> = fields.iter().map(|f| f.to_ascii_lowercase()).collect();
            if names.iter().any(|n| COLUMNS[0].1.contains(&n.as_str())) {
                let find = |alts: &[&str]| names.iter().position(|n| alts.contains(&n.as_str()));
                let c = [
                    find(COLUMNS[0].1),
                    find(COLUMNS[1].1),
                    find(COLUMNS[2].1),
                    find(COLUMNS[3].1),
                ];
                if c[1].is_none() || c[2].is_none() {
                    fail(
                        &mut bad,
                        "the header needs msisdn, imsi and status columns".into(),
                    );
                    break;
                }
                cols = Some(c);
                continue;
            }
        }
        let c = cols.unwrap_or([Some(0), Some(1), Some(2), Some(3)]);
        if cols.is_none() && !(3..=4).contains(&fields.len()) {
            fail(
                &mut bad,
                format!(
                    "{} fields; without a header a line is msisdn,imsi,status[,sim_changed_at]",
                    fields.len()
                ),
            );
            continue;
        }
        let field = |k: usize| c[k].and_then(|i| fields.get(i)).copied().unwrap_or("");
        let number = field(0);
        let msisdn = match phone::normalize(number, region) {
            Ok(n) => n.as_str().to_string(),
            Err(e) => {
                fail(&mut bad, format!("{number:?}: {e}"));
                continue;
            }
        };
        let imsi = field(1);
        if !(6..=15).contains(&imsi.len()) || !imsi.bytes().all(|b| b.is_ascii_digit()) {
            fail(&mut bad, format!("imsi {imsi:?} is not 6-15 digits"));
            continue;
        }
        let status = match LineStatus::parse(&field(2).to_ascii_lowercase()) {
            Some(s) => s,
            None => {
                fail(
                    &mut bad,
                    format!("status {:?} is not active, suspended or ceased", field(2)),
                );
                continue;
            }
        };
        let when = field(3);
        let sim_changed_at = if when.is_empty() {
            None
        } else {
            match verigate_codecs::time::parse_date_or_time(when) {
                Some(t) => Some(t),
                None => {
                    fail(
                        &mut bad,
                        format!("sim_changed_at {when:?} is not a date (2026-12-04) or a UTC time (2026-12-04T10:00:00Z)"),
                    );
                    continue;
                }
            }
        };
        out.push(Subscriber {
            msisdn,
            imsi: imsi.to_string(),
            status,
            sim_changed_at,
            updated_at: 0,
        });
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
    fn lines_with_and_without_a_header() {
        let got = parse(
            "+447400100990,234150999999999,active,2026-11-30\n07400100991,234150999999998,Suspended\n",
            "GB",
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].sim_changed_at,
            verigate_codecs::time::parse_date("2026-11-30")
        );
        assert_eq!(
            (got[1].msisdn.as_str(), got[1].status),
            ("+447400100991", LineStatus::Suspended)
        );
        let got = parse(
            "account,IMSI,msisdn,state,last_sim_change\n9,234150999999997,+447400100992,ceased,2026-12-01T08:00:00Z\n",
            "GB",
        )
        .unwrap();
        assert_eq!(
            (got[0].imsi.as_str(), got[0].status),
            ("234150999999997", LineStatus::Ceased)
        );
        assert!(got[0].sim_changed_at.is_some());
    }

    #[test]
    fn every_bad_line_is_named() {
        let bad = parse(
            "+447400100990,234150999999999,active\n+4474,234150999999999,active\n+447400100991,23415X,active\n+447400100992,234150999999999,gone\n+447400100993,234150999999999,active,yesterday\n",
            "GB",
        )
        .unwrap_err();
        let lines: Vec<usize> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [2, 3, 4, 5], "{bad:?}");
        assert!(bad[2].reason.contains("not active, suspended or ceased"));
        let header = parse("msisdn,status\n+447400100990,active\n", "GB").unwrap_err();
        assert!(header[0].reason.contains("needs msisdn, imsi and status"));
    }
}

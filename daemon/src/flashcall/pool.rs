//! Caller-ID pools for flash calls: the numbers verigate calls *from*. The
//! app proves the number by reporting the caller ID it saw, so the CLI is
//! drawn at random from a pool (lists and ranges per destination country)
//! and not reused for the same destination while a verification is pending.
//! The app is told the CLI without its last digits; the digits it reports
//! are the proof.

use std::collections::HashSet;

use rand::Rng;

/// One contiguous run of numbers (a single number is a run of one).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    /// Digits of the first number, without `+`.
    first: u64,
    /// How many numbers.
    len: u64,
    /// Digit count (all numbers of a run have the same length).
    width: usize,
}

impl Run {
    fn number(&self, i: u64) -> String {
        format!("+{:0width$}", self.first + i, width = self.width)
    }
}

/// The numbers one destination country is called from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliPool {
    runs: Vec<Run>,
    size: u64,
}

/// Why a pool entry is unusable (the operator's config).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Not an E.164 number.
    #[error("{0:?} is not an E.164 number (+, a country code not starting with 0, 8 to 15 digits in all)")]
    BadNumber(String),
    /// A range that is not `+first-+last` of equal length, first ≤ last.
    #[error("{0:?} is not a range: write +FIRST-+LAST, both the same length, FIRST ≤ LAST")]
    BadRange(String),
    /// Numbers listed twice, or ranges that overlap (draws would favour them).
    #[error("{0} and {1} overlap; list each number once")]
    Overlap(String, String),
    /// Numbers of different lengths in one pool.
    #[error("the pool mixes numbers of {0} and {1} digits; apps are told one prefix and one number of digits to report, so a pool holds numbers of one length")]
    MixedLengths(usize, usize),
    /// Fewer numbers than two.
    #[error("a flash-call pool needs at least two numbers, this one has {0}")]
    TooSmall(u64),
    /// The digits the app reports do not vary across the pool.
    #[error("apps report the last {report} digits, but the pool's numbers differ in more of them ({differ}); the report would not tell them apart")]
    ReportTooShort {
        /// Digits reported.
        report: usize,
        /// Trailing digits in which the numbers differ.
        differ: usize,
    },
}

fn e164_digits(s: &str) -> Option<(u64, usize)> {
    let d = s.strip_prefix('+')?;
    if !(8..=15).contains(&d.len()) || !d.bytes().all(|b| b.is_ascii_digit()) || d.starts_with('0')
    {
        return None;
    }
    Some((d.parse().ok()?, d.len()))
}

impl CliPool {
    /// A pool from single numbers and `+FIRST-+LAST` ranges; `report_digits`
    /// is how many trailing digits apps report.
    pub fn new(
        numbers: &[String],
        ranges: &[String],
        report_digits: usize,
    ) -> Result<Self, PoolError> {
        // Each run with the entry it came from, for error messages.
        let mut runs: Vec<(Run, &String)> = Vec::new();
        for n in numbers {
            let (first, width) =
                e164_digits(n.trim()).ok_or_else(|| PoolError::BadNumber(n.clone()))?;
            runs.push((
                Run {
                    first,
                    len: 1,
                    width,
                },
                n,
            ));
        }
        for r in ranges {
            let bad = || PoolError::BadRange(r.clone());
            let (a, b) = r.trim().split_once("-+").ok_or_else(bad)?;
            let (first, w1) = e164_digits(a).ok_or_else(bad)?;
            let (last, w2) = e164_digits(&format!("+{b}")).ok_or_else(bad)?;
            if w1 != w2 || last < first {
                return Err(bad());
            }
            runs.push((
                Run {
                    first,
                    len: last - first + 1,
                    width: w1,
                },
                r,
            ));
        }
        runs.sort_by_key(|(r, _)| (r.width, r.first));
        for pair in runs.windows(2) {
            let ((a, an), (b, bn)) = (&pair[0], &pair[1]);
            if a.width != b.width {
                return Err(PoolError::MixedLengths(a.width, b.width));
            }
            if b.first < a.first + a.len {
                return Err(PoolError::Overlap(an.to_string(), bn.to_string()));
            }
        }
        let runs: Vec<Run> = runs.into_iter().map(|(r, _)| r).collect();
        let size = runs.iter().map(|r| r.len).sum::<u64>();
        if size < 2 {
            return Err(PoolError::TooSmall(size));
        }
        let pool = Self { runs, size };
        let differ = pool.differing_tail();
        if differ > report_digits {
            return Err(PoolError::ReportTooShort {
                report: report_digits,
                differ,
            });
        }
        Ok(pool)
    }

    /// How many trailing digits the pool's numbers differ in (the rest is
    /// a prefix they share, which tells the app what to watch for).
    fn differing_tail(&self) -> usize {
        let all: Vec<String> = self
            .runs
            .iter()
            .flat_map(|r| [r.number(0), r.number(r.len - 1)])
            .collect();
        let first = &all[0];
        // All numbers have one length (checked when the pool was made).
        let shared = all.iter().fold(first.len(), |n, s| {
            first
                .bytes()
                .zip(s.bytes())
                .take(n)
                .take_while(|(a, b)| a == b)
                .count()
        });
        first.len() - shared
    }

    /// What every number of the pool begins with (E.164, `+` and the
    /// digits they share): what the app watches incoming calls for.
    pub fn prefix(&self) -> String {
        let first = self.runs[0].number(0);
        first[..first.len() - self.differing_tail()].to_string()
    }

    /// How many numbers.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether `number` (E.164) is in the pool.
    pub fn contains(&self, number: &str) -> bool {
        let Some((v, w)) = e164_digits(number) else {
            return false;
        };
        self.runs
            .iter()
            .any(|r| r.width == w && v >= r.first && v - r.first < r.len)
    }

    /// A number drawn uniformly at random, not one of `in_use` (the CLIs
    /// of verifications to this destination still pending). None if every
    /// number is in use.
    pub fn draw(&self, rng: &mut impl Rng, in_use: &HashSet<String>) -> Option<String> {
        if in_use.len() as u64 >= self.size && (0..self.size).all(|i| in_use.contains(&self.nth(i)))
        {
            return None;
        }
        // Random tries first (the pool is normally far larger than what is
        // in use), then a walk from a random start so a crowded pool still
        // yields its free numbers.
        for _ in 0..32 {
            let n = self.nth(rng.gen_range(0..self.size));
            if !in_use.contains(&n) {
                return Some(n);
            }
        }
        let start = rng.gen_range(0..self.size);
        (0..self.size)
            .map(|i| self.nth((start + i) % self.size))
            .find(|n| !in_use.contains(n))
    }

    fn nth(&self, mut i: u64) -> String {
        for r in &self.runs {
            if i < r.len {
                return r.number(i);
            }
            i -= r.len;
        }
        unreachable!("index below the pool size")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn lists_and_ranges_make_one_pool() {
        let p = CliPool::new(
            &s(&["+447700900001"]),
            &s(&["+447700900100-+447700900199"]),
            3,
        )
        .unwrap();
        assert_eq!(p.size(), 101);
        assert!(p.contains("+447700900001"));
        assert!(p.contains("+447700900150"));
        assert!(!p.contains("+447700900200"));
        assert!(!p.contains("+4477009001"));
    }

    #[test]
    fn draws_are_in_the_pool_spread_out_and_skip_numbers_in_use() {
        let p = CliPool::new(&[], &s(&["+861390000000-+861390000009"]), 1).unwrap();
        let mut rng = rand::thread_rng();
        let mut seen = HashSet::new();
        for _ in 0..500 {
            let n = p.draw(&mut rng, &HashSet::new()).unwrap();
            assert!(p.contains(&n), "{n}");
            seen.insert(n);
        }
        assert_eq!(seen.len(), 10, "every number comes up");
        // All but one in use: that one is drawn.
        let in_use: HashSet<String> = (0..10)
            .filter(|i| *i != 7)
            .map(|i| format!("+86139000000{i}"))
            .collect();
        for _ in 0..20 {
            assert_eq!(p.draw(&mut rng, &in_use).as_deref(), Some("+861390000007"));
        }
        let all: HashSet<String> = (0..10).map(|i| format!("+86139000000{i}")).collect();
        assert_eq!(p.draw(&mut rng, &all), None, "all in use");
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let e = |n: &[&str], r: &[&str], d| CliPool::new(&s(n), &s(r), d).unwrap_err();
        assert_eq!(
            e(&["447700900001", "+447700900002"], &[], 4),
            PoolError::BadNumber("447700900001".into())
        );
        assert!(matches!(
            e(&[], &["+447700900100..+447700900199"], 4),
            PoolError::BadRange(_)
        ));
        assert!(matches!(
            e(&[], &["+447700900199-+447700900100"], 4),
            PoolError::BadRange(_)
        ));
        assert!(matches!(
            e(&[], &["+447700900100-+4477009001999"], 4),
            PoolError::BadRange(_)
        ));
        assert_eq!(e(&["+447700900001"], &[], 4), PoolError::TooSmall(1));
        assert_eq!(
            e(&[], &["+447700900000-+447700999999"], 4),
            PoolError::ReportTooShort {
                report: 4,
                differ: 5
            }
        );
        assert_eq!(
            e(&["+447700900001", "+447700900001"], &[], 4),
            PoolError::Overlap("+447700900001".into(), "+447700900001".into())
        );
        assert_eq!(
            e(&["+447700900150"], &["+447700900100-+447700900199"], 4),
            PoolError::Overlap("+447700900100-+447700900199".into(), "+447700900150".into())
        );
        assert_eq!(
            e(&["+447700900001", "+4477009001"], &[], 4),
            PoolError::MixedLengths(10, 12)
        );
        assert_eq!(
            e(&["+0447700900001"], &[], 4),
            PoolError::BadNumber("+0447700900001".into())
        );
        let msg = e(&[], &["+447700900000-+447700999999"], 4).to_string();
        assert!(msg.contains("last 4 digits"), "{msg}");
    }
}

//! Which pool calls which country, and how long the app has to report.

use super::pool::{CliPool, PoolError};
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
    /// From a validated configuration; None without a `[[flash_call.pool]]`.
    pub fn from_config(c: &Config) -> Result<Option<Self>, PoolError> {
        let mut pools = Vec::new();
        for p in &c.flash_call.pool {
            pools.push(FlashPool {
                countries: p.countries.clone(),
                pool: CliPool::new(&p.numbers, &p.ranges, p.report_digits)?,
                report_digits: p.report_digits,
            });
        }
        Ok((!pools.is_empty()).then_some(FlashSettings {
            pools,
            report_window: c.flash_call.report_window.0,
        }))
    }

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

/// How many verifications in 1,000 a caller who guesses passes, with
/// `attempts` guesses against a pool of `size` numbers (A in N).
pub fn guesses_passing_per_1000(attempts: u32, size: u64) -> u64 {
    (u64::from(attempts) * 1_000 / size.max(1)).min(1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn guessing_odds_are_attempts_over_pool_size() {
        assert_eq!(guesses_passing_per_1000(5, 1_000), 5);
        assert_eq!(guesses_passing_per_1000(5, 100), 50);
        assert_eq!(guesses_passing_per_1000(5, 3), 1_000);
        assert_eq!(guesses_passing_per_1000(5, 0), 1_000);
    }
}

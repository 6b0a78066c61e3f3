//! A trunk's admission rules, sans-IO: calls per second (token bucket),
//! calls up at once, a pause after 503 (honouring Retry-After) and the
//! OPTIONS health state.

use std::time::{Duration, Instant};

/// Pause after a 503 without Retry-After.
pub const DEFAULT_503_PAUSE: Duration = Duration::from_secs(5);
/// Longest pause a Retry-After can impose.
pub const MAX_503_PAUSE: Duration = Duration::from_secs(600);

/// Why a call cannot go out on this trunk now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Try again at this time (rate, or a 503 pause).
    Until(Instant),
    /// At the concurrent-call limit: try again when a call ends.
    Full,
    /// The trunk failed its health check.
    Down,
}

/// One trunk's gate.
#[derive(Debug)]
pub struct Gate {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    active: u32,
    max_active: u32,
    paused_until: Option<Instant>,
    up: bool,
}

impl Gate {
    /// `rate` calls per second (bursts of up to one second's worth, at
    /// least one), at most `max_active` up at once.
    pub fn new(now: Instant, rate: f64, max_active: u32) -> Self {
        let burst = rate.max(1.0);
        Self {
            rate,
            burst,
            tokens: burst,
            refilled: now,
            active: 0,
            max_active,
            paused_until: None,
            up: true,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.refilled = now;
    }

    /// Admits one call (counting it as active) or says why not.
    pub fn admit(&mut self, now: Instant) -> Result<(), Refusal> {
        if !self.up {
            return Err(Refusal::Down);
        }
        if let Some(p) = self.paused_until {
            if now < p {
                return Err(Refusal::Until(p));
            }
            self.paused_until = None;
        }
        if self.active >= self.max_active {
            return Err(Refusal::Full);
        }
        self.refill(now);
        if self.tokens < 1.0 {
            let wait = (1.0 - self.tokens) / self.rate;
            return Err(Refusal::Until(now + Duration::from_secs_f64(wait)));
        }
        self.tokens -= 1.0;
        self.active += 1;
        Ok(())
    }

    /// A call admitted by [`Gate::admit`] ended.
    pub fn release(&mut self) {
        self.active = self.active.saturating_sub(1);
    }

    /// Calls up now.
    pub fn active(&self) -> u32 {
        self.active
    }

    /// The trunk answered 503: no new calls until Retry-After (capped), or
    /// a short default pause.
    pub fn on_503(&mut self, now: Instant, retry_after: Option<Duration>) {
        let d = retry_after.unwrap_or(DEFAULT_503_PAUSE).min(MAX_503_PAUSE);
        let until = now + d;
        self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
    }

    /// When the 503 pause ends, if one holds at `now`.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|p| now < *p)
    }

    /// An OPTIONS ping answered (any response: the trunk is alive) or not.
    pub fn on_health(&mut self, up: bool) {
        self.up = up;
    }

    /// Whether the last health check passed.
    pub fn is_up(&self) -> bool {
        self.up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_held_with_a_one_second_burst() {
        let t0 = Instant::now();
        let mut g = Gate::new(t0, 10.0, 1000);
        for _ in 0..10 {
            g.admit(t0).unwrap();
        }
        let Err(Refusal::Until(at)) = g.admit(t0) else {
            panic!("the 11th call in the same instant must wait");
        };
        assert_eq!(at, t0 + Duration::from_millis(100));
        assert!(g.admit(t0 + Duration::from_millis(99)).is_err());
        g.admit(t0 + Duration::from_millis(100)).unwrap();
        // Over 10 s of steady asks, 10/s get through (plus the burst).
        let mut n = 0;
        for ms in (101..10_100).step_by(10) {
            n += u32::from(g.admit(t0 + Duration::from_millis(ms)).is_ok());
        }
        assert!((99..=101).contains(&n), "{n}");
    }

    #[test]
    fn concurrency_is_capped_until_calls_end() {
        let t0 = Instant::now();
        let mut g = Gate::new(t0, 1000.0, 2);
        g.admit(t0).unwrap();
        g.admit(t0).unwrap();
        assert_eq!(g.admit(t0), Err(Refusal::Full));
        g.release();
        g.admit(t0).unwrap();
        assert_eq!(g.active(), 2);
    }

    #[test]
    fn a_503_pauses_the_trunk_for_its_retry_after() {
        let t0 = Instant::now();
        let mut g = Gate::new(t0, 1000.0, 10);
        g.on_503(t0, Some(Duration::from_secs(30)));
        assert_eq!(
            g.admit(t0 + Duration::from_secs(29)),
            Err(Refusal::Until(t0 + Duration::from_secs(30)))
        );
        g.admit(t0 + Duration::from_secs(30)).unwrap();
        // Without Retry-After: the default pause; an absurd one is capped.
        g.on_503(t0, None);
        assert_eq!(g.paused_until(t0), Some(t0 + DEFAULT_503_PAUSE));
        let mut g = Gate::new(t0, 1000.0, 10);
        g.on_503(t0, Some(Duration::from_secs(86_400)));
        assert_eq!(g.paused_until(t0), Some(t0 + MAX_503_PAUSE));
    }

    #[test]
    fn a_failed_health_check_stops_new_calls() {
        let t0 = Instant::now();
        let mut g = Gate::new(t0, 1000.0, 10);
        g.on_health(false);
        assert_eq!(g.admit(t0), Err(Refusal::Down));
        g.on_health(true);
        g.admit(t0).unwrap();
    }
}

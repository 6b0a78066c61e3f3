//! Token-bucket rate limiter on caller-supplied time.

use std::time::{Duration, Instant};

/// Slowest rate accepted: one token a day.
const MIN_RATE: f64 = 1.0 / 86_400.0;

/// A token bucket: `rate` tokens per second, at most `burst` stored.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            // A zero, negative or NaN rate would never refill: clamp to one
            // token a day, the slowest rate that keeps deadlines finite.
            rate: if rate_per_sec.is_finite() && rate_per_sec > 0.0 {
                rate_per_sec.max(MIN_RATE)
            } else {
                MIN_RATE
            },
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.last {
            let dt = now.duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
            self.last = now;
        }
    }

    /// Takes one token if available.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token will be available (`now` if one is).
    pub fn next_available(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= 1.0 {
            now
        } else {
            let wait = (1.0 - self.tokens) / self.rate;
            // At least 1 µs: a shortfall of a rounding error would otherwise
            // give a deadline equal to `now`, and a driver would spin.
            let wait = Duration::try_from_secs_f64(wait)
                .unwrap_or(Duration::from_secs(86_400))
                .max(Duration::from_micros(1));
            now + wait
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rounding_shortfall_still_waits() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3.0, 1, t0);
        assert!(b.try_take(t0));
        // Leave the bucket a hair below one token.
        b.tokens = 1.0 - f64::EPSILON;
        assert!(b.next_available(t0) > t0);
    }

    #[test]
    fn zero_or_nan_rate_does_not_panic() {
        let t0 = Instant::now();
        for r in [0.0, -1.0, f64::NAN, 1e-300] {
            let mut b = TokenBucket::new(r, 1, t0);
            assert!(b.try_take(t0));
            assert!(b.next_available(t0) <= t0 + Duration::from_secs(86_400));
        }
    }

    #[test]
    fn allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3, t0);
        assert!(b.try_take(t0) && b.try_take(t0) && b.try_take(t0));
        assert!(!b.try_take(t0));
        assert_eq!(b.next_available(t0), t0 + Duration::from_millis(100));
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(150)));
        // Long idle refills only up to burst.
        let later = t0 + Duration::from_secs(60);
        assert!(b.try_take(later) && b.try_take(later) && b.try_take(later));
        assert!(!b.try_take(later));
    }
}

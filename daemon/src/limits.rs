//! Fixed-window rate limits counted in the store (so every instance on one
//! database shares them), used by the verify service and the voice gateway.

use crate::config::RateLimit;
use crate::store::{Millis, RateHit, Store, StoreResult};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// One limit: a name for errors, the store key it counts under, the rate.
pub type Limit = (&'static str, String, RateLimit);

/// A limit that refused the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Which limit (its name).
    pub scope: &'static str,
    /// Seconds until its window resets (at least 1).
    pub retry_after_secs: u64,
}

/// Counts a hit on each limit in order (one store call); the first refused
/// one is returned, and the limits after it are not counted.
pub async fn hit(
    store: &dyn Store,
    limits: &[Limit],
    now: Millis,
) -> StoreResult<Result<(), Refused>> {
    let hits: Vec<RateHit<'_>> = limits
        .iter()
        .map(|(_, key, l)| RateHit {
            key,
            limit: l.count,
            window_ms: l.window.0.as_millis() as i64,
        })
        .collect();
    let decisions = store.rate_hits(&hits, now).await?;
    for ((scope, _, _), d) in limits.iter().zip(decisions) {
        if !d.allowed {
            return Ok(Err(Refused {
                scope,
                retry_after_secs: ((d.reset_at - now).max(0) as u64).div_ceil(1000).max(1),
            }));
        }
    }
    Ok(Ok(()))
}

/// The bucket an IP is limited in: an IPv4 address (or an IPv4-mapped IPv6
/// one) on its own, an IPv6 address by its /64 (one subscriber's
/// allocation, so rotating through it does not win new budgets).
pub fn ip_bucket(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Failed API-key attempts per client IP bucket, counted in memory (an
/// attacker guessing keys must not cost a store read per guess): a fixed
/// window per bucket, at most [`AuthFailures::MAX_BUCKETS`] of them.
#[derive(Debug)]
pub struct AuthFailures {
    limit: Mutex<RateLimit>,
    buckets: Mutex<HashMap<String, (Millis, u32)>>,
}

impl AuthFailures {
    /// Buckets kept at most (then those of past windows go, or all).
    pub const MAX_BUCKETS: usize = 100_000;

    /// A counter allowing `limit` failures per window.
    pub fn new(limit: RateLimit) -> Self {
        AuthFailures {
            limit: Mutex::new(limit),
            buckets: Mutex::default(),
        }
    }

    /// Replaces the limit (SIGHUP).
    pub fn set_limit(&self, limit: RateLimit) {
        *self.limit.lock().unwrap_or_else(|e| e.into_inner()) = limit;
    }

    fn limit(&self) -> RateLimit {
        *self.limit.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn window(&self, now: Millis) -> (Millis, Millis) {
        let w = (self.limit().window.0.as_millis() as i64).max(1);
        let start = now - now.rem_euclid(w);
        (start, start + w)
    }

    /// Seconds to wait if `ip` has used up its failures at `now`.
    pub fn blocked(&self, ip: IpAddr, now: Millis) -> Option<u64> {
        let (start, end) = self.window(now);
        let b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        b.get(&ip_bucket(ip))
            .filter(|(s, n)| *s == start && *n >= self.limit().count)
            .map(|_| ((end - now).max(0) as u64).div_ceil(1000).max(1))
    }

    /// Counts one failed attempt from `ip` at `now`.
    pub fn failed(&self, ip: IpAddr, now: Millis) {
        let (start, _) = self.window(now);
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() >= Self::MAX_BUCKETS {
            b.retain(|_, (s, _)| *s == start);
            if b.len() >= Self::MAX_BUCKETS {
                b.clear();
            }
        }
        let e = b.entry(ip_bucket(ip)).or_insert((start, 0));
        if e.0 != start {
            *e = (start, 0);
        }
        e.1 = e.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_v4_is_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_bucket(a), "2001:db8:1:2::/64");
        assert_eq!(ip_bucket(a), ip_bucket(b));
        assert_ne!(ip_bucket(a), ip_bucket(c));
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(ip_bucket(mapped), "203.0.113.7");
    }

    #[test]
    fn failures_block_an_ip_bucket_for_the_rest_of_the_window() {
        let f = AuthFailures::new("3/1m".parse().unwrap());
        let t0 = 1_800_000_000_000;
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::9999".parse().unwrap();
        for i in 0..3 {
            assert_eq!(f.blocked(ip, t0 + i), None);
            f.failed(if i % 2 == 0 { ip } else { same_64 }, t0 + i);
        }
        assert_eq!(f.blocked(ip, t0 + 10), Some(60));
        assert!(f.blocked(same_64, t0 + 10).is_some());
        assert_eq!(f.blocked("192.0.2.1".parse().unwrap(), t0 + 10), None);
        assert_eq!(f.blocked(ip, t0 + 60_000), None, "the next window");
    }
}

//! State shared by the HTTP API, the admin endpoint and the background tasks.

use crate::clock::Clock;
use crate::store::{Service, Store};
use crate::verify::code::ServerSecret;
use crate::verify::service::VerifyService;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything a request handler needs.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The wall clock requests are timed by.
    pub clock: Clock,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The verification service.
    pub verify: Arc<VerifyService>,
    /// Server secret (API key hashes).
    pub secret: ServerSecret,
    /// Trust X-Forwarded-For for the client IP.
    pub trust_forwarded_for: bool,
    /// Services by API-key hash, briefly.
    pub callers: Arc<CallerCache>,
    /// The voice gateway (`/v1/voice-calls`).
    pub voice_gateway: Arc<crate::voice_gateway::VoiceGateway>,
    /// MO-SMS login (`/v1/mo-logins`).
    pub mo_login: Arc<crate::mologin::MoLoginService>,
    /// Wrong API keys per client IP, in memory.
    pub auth_failures: Arc<crate::limits::AuthFailures>,
    /// The number-binding registry, when this server runs one.
    pub registry: Option<Arc<crate::registry::Registry>>,
    /// The app side of number registries, when `[[bindings]]` are set.
    pub bindings: Option<Arc<crate::bindings::BindingsService>>,
    /// The carrier–bank relay, when `[txrelay] enabled`.
    pub txrelay: Option<Arc<crate::txrelay::TxRelay>>,
}

/// How long a looked-up API key is trusted without asking the store again.
pub const CALLER_CACHE_TTL: Duration = Duration::from_secs(5);

/// Entries kept at most; a full cache is emptied rather than evicted
/// piecemeal (it refills from the store in one request per key).
const CALLER_CACHE_MAX: usize = 10_000;

/// The service behind each recently used API key (by key hash), so a
/// request does not read the key and its service from the store every
/// time. Key changes made through this process's admin endpoint clear it at
/// once; another instance sharing the database sees them within the TTL.
/// Unknown keys are not cached.
#[derive(Debug)]
pub struct CallerCache {
    ttl: Duration,
    /// The map, and how many times it was cleared: a lookup that began
    /// before a clear must not put back what the clear removed.
    map: Mutex<(CallerMap, u64)>,
}

/// Service and when it was looked up, by API-key hash.
type CallerMap = HashMap<Vec<u8>, (Service, Instant)>;

impl CallerCache {
    /// An empty cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        CallerCache {
            ttl,
            map: Mutex::new((HashMap::new(), 0)),
        }
    }

    /// The cached service for this key hash if still fresh; else the
    /// generation to hand to [`CallerCache::put`] after the store lookup.
    pub fn get(&self, hash: &[u8]) -> Result<Service, u64> {
        let map = self.map.lock().expect("caller cache");
        map.0
            .get(hash)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(s, _)| s.clone())
            .ok_or(map.1)
    }

    /// Remembers the service for this key hash, unless the cache was cleared
    /// since `generation` (the lookup may have read a key revoked since).
    pub fn put(&self, generation: u64, hash: Vec<u8>, svc: Service) {
        let mut map = self.map.lock().expect("caller cache");
        if map.1 != generation {
            return;
        }
        if map.0.len() >= CALLER_CACHE_MAX {
            map.0.clear();
        }
        map.0.insert(hash, (svc, Instant::now()));
    }

    /// Forgets everything (after keys or services changed).
    pub fn clear(&self) {
        let mut map = self.map.lock().expect("caller cache");
        map.0.clear();
        map.1 += 1;
    }
}

impl AppState {
    /// The stored hash of an API key.
    pub fn api_key_hash(&self, key: &str) -> Vec<u8> {
        api_key_hash(&self.secret, key)
    }
}

/// The stored hash of an API key (HMAC under the server secret).
pub fn api_key_hash(secret: &ServerSecret, key: &str) -> Vec<u8> {
    secret.mac("verigate/api-key/v1", &[key.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(code: &str) -> Service {
        Service {
            code: code.into(),
            name: code.into(),
            settings: serde_json::json!({}),
            created_at: 0,
        }
    }

    #[test]
    fn caller_cache_keeps_for_its_ttl_and_clears() {
        let c = CallerCache::new(Duration::from_secs(60));
        let g = c.get(b"k").unwrap_err();
        c.put(g, b"k".to_vec(), svc("a"));
        assert_eq!(c.get(b"k").map(|s| s.code), Ok("a".into()));
        c.clear();
        assert!(c.get(b"k").is_err());
        let stale = CallerCache::new(Duration::ZERO);
        stale.put(0, b"k".to_vec(), svc("a"));
        assert!(stale.get(b"k").is_err(), "an expired entry is not used");
    }

    #[test]
    fn a_lookup_that_began_before_a_clear_is_not_cached() {
        let c = CallerCache::new(Duration::from_secs(60));
        let g = c.get(b"old-key").unwrap_err();
        // rotate-key revokes the key and clears the cache meanwhile…
        c.clear();
        // …so what the lookup read must not be cached.
        c.put(g, b"old-key".to_vec(), svc("a"));
        assert!(c.get(b"old-key").is_err());
    }
}

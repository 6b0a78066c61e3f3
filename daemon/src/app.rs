//! State shared by the HTTP API, the admin endpoint and the background tasks.

use crate::store::{Millis, Store};
use crate::verify::code::ServerSecret;
use crate::verify::service::VerifyService;
use std::sync::Arc;

/// Unix milliseconds now (the one place the daemon reads the wall clock).
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Everything a request handler needs.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The verification service.
    pub verify: Arc<VerifyService>,
    /// Server secret (API key hashes).
    pub secret: ServerSecret,
    /// Trust X-Forwarded-For for the client IP.
    pub trust_forwarded_for: bool,
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

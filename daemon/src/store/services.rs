//! Services (the apps and tenants that use verigate) and their API keys.

use super::*;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A service (an app or tenant) that uses verigate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Stable service code, e.g. `acme-login`.
    pub code: String,
    /// Display name used in message templates.
    pub name: String,
    /// Settings as JSON (limits, templates, webhook), interpreted by the services.
    pub settings: serde_json::Value,
    /// When created.
    pub created_at: Millis,
}

/// A stored API key: only its keyed hash is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public identifier of the key (first characters shown to operators).
    pub key_id: String,
    /// Service the key belongs to.
    pub service: String,
    /// Keyed hash (HMAC-SHA256 under the server secret) of the full key.
    pub hash: Vec<u8>,
    /// When created.
    pub created_at: Millis,
    /// When revoked (rotated out), if so.
    pub revoked_at: Option<Millis>,
}

/// Services and API keys.
#[async_trait]
pub trait ServiceStore: Send + Sync {
    /// Adds a service; `Conflict` if the code exists.
    async fn create_service(&self, s: &Service) -> StoreResult<()>;
    /// A service by code.
    async fn get_service(&self, code: &str) -> StoreResult<Option<Service>>;
    /// All services, by code.
    async fn list_services(&self) -> StoreResult<Vec<Service>>;
    /// Replaces a service's settings; `NotFound` if absent.
    async fn update_service_settings(
        &self,
        code: &str,
        settings: &serde_json::Value,
    ) -> StoreResult<()>;
    /// Adds an API key; `Conflict` on a duplicate key_id or hash.
    async fn add_api_key(&self, k: &ApiKeyRecord) -> StoreResult<()>;
    /// The unrevoked key with this hash.
    async fn find_api_key(&self, hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>>;
    /// A service's keys, revoked ones included, oldest first.
    async fn list_api_keys(&self, service: &str) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Revokes every unrevoked key of `service` except `keep_key_id`; returns how many.
    async fn revoke_api_keys(
        &self,
        service: &str,
        keep_key_id: &str,
        at: Millis,
    ) -> StoreResult<u64>;
}

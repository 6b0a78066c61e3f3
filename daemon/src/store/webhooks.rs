//! The durable webhook queue.

use super::*;
use async_trait::async_trait;

/// A webhook delivery in the durable webhook queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookJob {
    /// Opaque id.
    pub id: String,
    /// Service code.
    pub service: String,
    /// Target URL.
    pub url: String,
    /// JSON body to POST.
    pub body: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before this time.
    pub next_attempt_at: Millis,
    /// Last error.
    pub last_error: Option<String>,
}

/// The webhook queue.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Queues a webhook delivery.
    async fn enqueue_webhook(&self, job: &WebhookJob) -> StoreResult<()>;
    /// Claims due webhook jobs with a lease (like [`OutboxStore::claim_outbox`]).
    async fn claim_webhooks(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<WebhookJob>>;
    /// Delivered: removes the job.
    async fn complete_webhook(&self, id: &str) -> StoreResult<()>;
    /// Failed: retry at `retry_at`, or drop when None (recorded in audit by the caller).
    async fn retry_webhook(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<Millis>,
    ) -> StoreResult<()>;
}

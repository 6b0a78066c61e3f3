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
    ) -> StoreResult<Vec<Claimed<WebhookJob>>>;
    /// Extends each lease still held to `until`; says which were, in order.
    async fn extend_webhooks(&self, leases: &[Lease], until: Millis)
        -> StoreResult<Vec<Extension>>;
    /// Delivered: removes the job. Fenced (`LeaseLost` when another claim
    /// took it); a job already gone is not an error.
    async fn complete_webhook(&self, lease: &Lease) -> StoreResult<()>;
    /// Failed: retry at `retry_at`, or drop when None (recorded in audit by
    /// the caller). Fenced like [`WebhookStore::complete_webhook`].
    async fn retry_webhook(
        &self,
        lease: &Lease,
        error: &str,
        retry_at: Option<Millis>,
    ) -> StoreResult<()>;
}

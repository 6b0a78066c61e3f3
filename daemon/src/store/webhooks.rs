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
    /// The HTTP method (a status event is a POST; the app side's messages
    /// to a carrier registry are PUT and DELETE).
    pub method: HttpMethod,
    /// Sign (and authenticate) with this named credential of the worker's
    /// instead of the service's webhook secret. The row names it; the
    /// secret itself is never stored with the job.
    pub credential: Option<String>,
    /// Keep retrying until this time, however many attempts that takes
    /// (registry notifications are retried for days); None: the worker's
    /// `max_attempts`.
    pub deliver_until: Option<Millis>,
    /// What the delivery belongs to, for listing (`registry`: a registry
    /// notification; `bindings`: an app side's message to its registry);
    /// None: a status event.
    pub topic: Option<String>,
}

impl WebhookJob {
    /// A POST of `body` to `url` for `service`, due at `at`, signed with
    /// the service's webhook secret and tried `max_attempts` times.
    pub fn post(id: String, service: &str, url: &str, body: String, at: Millis) -> Self {
        WebhookJob {
            id,
            service: service.to_string(),
            url: url.to_string(),
            body,
            attempts: 0,
            next_attempt_at: at,
            last_error: None,
            method: HttpMethod::Post,
            credential: None,
            deliver_until: None,
            topic: None,
        }
    }
}

/// The HTTP method of a queued delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
}

impl HttpMethod {
    /// As stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
        }
    }

    /// From its stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "POST" => Some(HttpMethod::Post),
            "PUT" => Some(HttpMethod::Put),
            "DELETE" => Some(HttpMethod::Delete),
            _ => None,
        }
    }
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
    /// The jobs waiting (due or not) on `topic`, of `service` only if
    /// given, oldest first, at most `limit` (for operators: `verigate
    /// registry outbox`).
    async fn pending_webhooks(
        &self,
        topic: &str,
        service: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookJob>>;
    /// Failed: retry at `retry_at`, or drop when None (recorded in audit by
    /// the caller). Fenced like [`WebhookStore::complete_webhook`].
    async fn retry_webhook(
        &self,
        lease: &Lease,
        error: &str,
        retry_at: Option<Millis>,
    ) -> StoreResult<()>;
}

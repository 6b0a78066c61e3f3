//! Status webhooks: signed JSON events POSTed to the service's
//! `webhook_url`, through the durable webhook queue of the store.
//!
//! The API only queues ([`enqueue`]); [`run_worker`] claims due jobs with a
//! lease, delivers them with bounded concurrency and retries failures with
//! exponential backoff and jitter until `max_attempts`. Delivery is at least
//! once: a worker that dies after the receiver answered but before the job
//! was completed delivers it again after the lease, so receivers deduplicate
//! on the `Verigate-Event-Id` header (the event's `id`).
//!
//! Each delivery is signed Stripe-style, freshly at every attempt:
//! `Verigate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//! Receivers check it with [`verify_signature`], which also rejects stale
//! timestamps (replay protection).

use crate::clock::Clock;
use crate::queue::{self, Held, Queue, WorkerConfig};
use crate::random::Random;
use crate::store::{
    AuditEvent, Claimed, Extension, HttpMethod, Lease, Millis, Service, Store, StoreResult,
    Verification, WebhookJob,
};
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::Value;
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

/// Header carrying the signature (`t=…,v1=…`).
pub const SIGNATURE_HEADER: &str = "Verigate-Signature";
/// Header carrying the event id (stable across retries, for deduplication).
pub const EVENT_ID_HEADER: &str = "Verigate-Event-Id";
/// Receiver-side tolerance on the signature timestamp that verigate recommends.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Audit kind recorded when a webhook job is given up.
const AUDIT_DROPPED: &str = "webhook.dropped";
/// Headroom of the claim lease over the request timeout, so a slow delivery
/// is never claimed again by another worker while still in flight.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

type HmacSha256 = Hmac<Sha256>;

/// Webhook worker settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Time allowed for one delivery (connect, request and response head).
    pub timeout: Duration,
    /// Delay before the first retry; doubles per attempt.
    pub initial_backoff: Duration,
    /// Upper bound of the retry delay.
    pub max_backoff: Duration,
    /// Deliveries tried before a job is dropped.
    pub max_attempts: u32,
    /// Jobs claimed per round, and deliveries in flight at once.
    pub batch: u32,
    /// Lease on a claimed job (raised to exceed `timeout` if shorter).
    pub lease: Duration,
    /// Pause when no job is due.
    pub idle_poll: Duration,
    /// Named credentials jobs may sign with instead of their service's
    /// webhook secret (the app side's credential at a carrier registry).
    pub credentials: HashMap<String, Credential>,
}

/// A credential a queued delivery names: the secret it is signed with and,
/// if set, the bearer token it authenticates with.
#[derive(Clone)]
pub struct Credential {
    /// HMAC key of the `Verigate-Signature`.
    pub signing_secret: String,
    /// Sent as `Authorization: Bearer …`.
    pub bearer: Option<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets themselves.
        f.debug_struct("Credential")
            .field("bearer", &self.bearer.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout: Duration::from_secs(5),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            max_attempts: 12,
            batch: 64,
            lease: Duration::from_secs(60),
            idle_poll: Duration::from_millis(200),
            credentials: HashMap::new(),
        }
    }
}

impl WebhookConfig {
    /// Delay before retrying after failed attempt number `attempt` (1-based):
    /// `initial_backoff · 2^(attempt-1)` capped at `max_backoff`, with equal
    /// jitter (uniform in the upper half).
    pub fn backoff(&self, attempt: u32, rng: &Random) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
        let half = ms / 2;
        let jitter = rng.rng().gen_range(0..=ms - half);
        Duration::from_millis(half + jitter)
    }
}

/// The JSON event for a verification (never its code or code hash).
pub fn event_body(rng: &Random, kind: &str, verification: &Verification, at: Millis) -> Value {
    serde_json::json!({
        "type": kind,
        "id": rng.id("evt", at),
        "created_at": verigate_codecs::time::rfc3339(at),
        "data": {
            "id": verification.id,
            "service": verification.service,
            "to": verification.to,
            "channel": verification.channel,
            "status": verification.status.as_str(),
            "attempts": verification.attempts,
        },
    })
}

/// The service's webhook URL, if one is set.
fn webhook_url(service: &Service) -> Option<&str> {
    setting(service, "webhook_url")
}

/// The service's webhook signing secret, if one is set.
fn webhook_secret(service: &Service) -> Option<&str> {
    setting(service, "webhook_secret")
}

fn setting<'a>(service: &'a Service, key: &str) -> Option<&'a str> {
    service
        .settings
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Whether the service has a webhook URL.
pub fn has_url(service: &Service) -> bool {
    webhook_url(service).is_some()
}

/// The job delivering `body` to the service's webhook, if it has a
/// `webhook_url` (for callers that queue it in their own transaction).
pub fn job(rng: &Random, service: &Service, body: &Value, now: Millis) -> Option<WebhookJob> {
    Some(WebhookJob::post(
        rng.id("wh", now),
        &service.code,
        webhook_url(service)?,
        body.to_string(),
        now,
    ))
}

/// Queues `body` for the service's webhook, if it has a `webhook_url`;
/// returns whether a job was queued. Only writes to the store (no network).
pub async fn enqueue(
    store: &dyn Store,
    rng: &Random,
    service: &Service,
    body: &Value,
    now: Millis,
) -> StoreResult<bool> {
    let Some(job) = job(rng, service, body, now) else {
        return Ok(false);
    };
    store.enqueue_webhook(&job).await?;
    Ok(true)
}

fn mac(secret: &[u8], t: i64, body: &str) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body.as_bytes());
    m
}

/// The `Verigate-Signature` header value for `body` signed at Unix second `t`:
/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn sign(secret: &[u8], t: i64, body: &str) -> String {
    let tag = mac(secret, t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(tag))
}

/// Why a `Verigate-Signature` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<seconds>,v1=<hex>[,…]`.
    #[error("malformed signature header")]
    Malformed,
    /// No `v1` signature matches the body under this secret.
    #[error("signature mismatch")]
    Mismatch,
    /// The signature is genuine but its timestamp is outside the tolerance
    /// (a replay, or a badly skewed clock).
    #[error("signature timestamp outside tolerance")]
    Stale,
}

/// Checks a `Verigate-Signature` header against the raw request body, for
/// receivers: some `v1` must match (compared in constant time) and `t` must
/// be within `tolerance_secs` of `now_secs`. Unknown fields are ignored.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut t: Option<i64> = None;
    let mut sigs: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match k.trim() {
            "t" => {
                if t.is_some() {
                    return Err(SignatureError::Malformed);
                }
                let v = v.trim();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SignatureError::Malformed);
                }
                t = Some(v.parse().map_err(|_| SignatureError::Malformed)?);
            }
            // Undecodable signatures cannot match; skip rather than refuse,
            // like an unknown scheme.
            "v1" => sigs.extend(hex::decode(v.trim()).ok()),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if sigs.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    let expected = mac(secret, t, body).finalize().into_bytes();
    let matched = sigs.iter().fold(subtle::Choice::from(0), |acc, s| {
        acc | expected.as_slice().ct_eq(s)
    });
    if !bool::from(matched) {
        return Err(SignatureError::Mismatch);
    }
    if now_secs.abs_diff(t) > tolerance_secs.max(0).unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// An HTTP client suited to webhook delivery: no redirects (a 3xx counts as
/// a failure, so receivers must configure their final URL) and connect
/// timeout from `cfg`.
pub fn http_client(cfg: &WebhookConfig) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(cfg.timeout)
        .user_agent(user_agent())
        .build()
}

fn user_agent() -> String {
    format!("verigate/{}", env!("CARGO_PKG_VERSION"))
}

/// The webhook queue: deliveries of claimed jobs, with a fenced outcome.
struct Webhooks {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    cfg: WebhookConfig,
    ctx: (Clock, Random),
}

#[async_trait::async_trait]
impl Queue for Webhooks {
    type Job = WebhookJob;
    const NAME: &'static str = "webhooks";

    async fn claim(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<Claimed<WebhookJob>>> {
        self.store.claim_webhooks(now, limit, lease_ms).await
    }

    async fn extend(&self, leases: &[Lease], until: Millis) -> StoreResult<Vec<Extension>> {
        self.store.extend_webhooks(leases, until).await
    }

    async fn work(&self, job: Claimed<WebhookJob>, held: Held) {
        // A lost lease: the new holder delivers it (receivers deduplicate
        // on the event id if this copy got through too).
        tokio::select! {
            _ = deliver(&*self.store, &self.client, &self.cfg, &self.ctx, &held.lease, job.job) => {}
            _ = held.lost.cancelled() => {}
        }
    }
}

/// Delivers due webhook jobs until `stop`, then waits for deliveries in
/// flight (each is bounded by the request timeout).
pub async fn run_worker(
    store: Arc<dyn Store>,
    client: reqwest::Client,
    cfg: WebhookConfig,
    (clock, rng): (Clock, Random),
    stop: CancellationToken,
) {
    let lease = cfg.lease.max(cfg.timeout.saturating_add(LEASE_MARGIN));
    let worker = WorkerConfig {
        batch: cfg.batch.max(1),
        lease,
        idle_poll: cfg.idle_poll,
        max_in_flight: cfg.batch.max(1) as usize,
        drain: cfg.timeout.saturating_add(LEASE_MARGIN),
    };
    let queue = Webhooks {
        store,
        client,
        cfg,
        ctx: (clock.clone(), rng),
    };
    queue::run(Arc::new(queue), worker, clock, stop).await;
}

/// The event id of a queued body (its `id`), else the job id.
fn event_id(job: &WebhookJob) -> String {
    serde_json::from_str::<Value>(&job.body)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| job.id.clone())
}

/// One delivery attempt of a claimed job, and its bookkeeping.
async fn deliver(
    store: &dyn Store,
    client: &reqwest::Client,
    cfg: &WebhookConfig,
    ctx: &(Clock, Random),
    lease: &Lease,
    job: WebhookJob,
) {
    let credential = match &job.credential {
        Some(name) => cfg
            .credentials
            .get(name)
            .cloned()
            .ok_or("its credential is not configured"),
        None => match store.get_service(&job.service).await {
            Ok(svc) => svc
                .as_ref()
                .and_then(webhook_secret)
                .map(|s| Credential {
                    signing_secret: s.to_string(),
                    bearer: None,
                })
                .ok_or("the service or its webhook secret is gone"),
            Err(e) => {
                // Our failure, not the receiver's: try again later.
                error!(service = %job.service, job = %job.id, error = %e, "cannot load service for webhook");
                reschedule(store, cfg, ctx, lease, &job, &format!("store: {e}")).await;
                return;
            }
        },
    };
    let credential = match credential {
        Ok(c) => c,
        Err(why) => {
            warn!(service = %job.service, job = %job.id, "webhook dropped: {why}");
            give_up(store, &ctx.0, lease, &job, why).await;
            return;
        }
    };
    let event_id = event_id(&job);
    let now = ctx.0.now_ms();
    let signature = sign(
        credential.signing_secret.as_bytes(),
        now.div_euclid(1000),
        &job.body,
    );
    let method = match job.method {
        HttpMethod::Post => reqwest::Method::POST,
        HttpMethod::Put => reqwest::Method::PUT,
        HttpMethod::Delete => reqwest::Method::DELETE,
    };
    let mut request = client
        .request(method, &job.url)
        .timeout(cfg.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::USER_AGENT, user_agent())
        .header(SIGNATURE_HEADER, signature)
        .header(EVENT_ID_HEADER, &event_id);
    if let Some(token) = &credential.bearer {
        request = request.bearer_auth(token);
    }
    let sent = request.body(job.body.clone()).send().await;
    let failure = match sent {
        Ok(resp) if resp.status().is_success() => None,
        Ok(resp) => Some(format!("HTTP {}", resp.status().as_u16())),
        Err(e) => Some(describe(e)),
    };
    match failure {
        None => {
            if let Err(e) = store.complete_webhook(lease).await {
                // The lease will run out and the event be delivered again;
                // receivers deduplicate on the event id.
                error!(service = %job.service, job = %job.id, error = %e, "cannot complete webhook job");
            } else {
                debug!(service = %job.service, job = %job.id, attempt = job.attempts, "webhook delivered");
            }
        }
        Some(err) if out_of_tries(cfg, &job, now) => {
            warn!(
                service = %job.service,
                job = %job.id,
                event = %event_id,
                attempts = job.attempts,
                error = %err,
                "webhook undeliverable, giving up"
            );
            give_up(store, &ctx.0, lease, &job, &err).await;
        }
        Some(err) => {
            debug!(service = %job.service, job = %job.id, attempt = job.attempts, error = %err, "webhook delivery failed; will retry");
            reschedule(store, cfg, ctx, lease, &job, &err).await;
        }
    }
}

/// Whether a failed job is given up: at its deadline if it has one (the
/// last retry is scheduled at the deadline), else at the worker's attempt
/// limit.
fn out_of_tries(cfg: &WebhookConfig, job: &WebhookJob, now: Millis) -> bool {
    match job.deliver_until {
        Some(until) => now >= until,
        None => job.attempts >= cfg.max_attempts.max(1),
    }
}

/// A reqwest error for operators: kind and cause chain, without the URL
/// (which may carry a token).
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else {
        "request error"
    };
    let e = e.without_url();
    let mut out = format!("{kind}: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

async fn reschedule(
    store: &dyn Store,
    cfg: &WebhookConfig,
    (clock, rng): &(Clock, Random),
    lease: &Lease,
    job: &WebhookJob,
    err: &str,
) {
    let delay = i64::try_from(cfg.backoff(job.attempts, rng).as_millis()).unwrap_or(i64::MAX);
    let mut at = clock.now_ms().saturating_add(delay);
    if let Some(until) = job.deliver_until {
        at = at.min(until);
    }
    if let Err(e) = store.retry_webhook(lease, err, Some(at)).await {
        // The lease will run out and the job be claimed again.
        error!(service = %job.service, job = %job.id, error = %e, "cannot reschedule webhook job");
    }
}

async fn give_up(store: &dyn Store, clock: &Clock, lease: &Lease, job: &WebhookJob, err: &str) {
    if let Err(e) = store.retry_webhook(lease, err, None).await {
        error!(service = %job.service, job = %job.id, error = %e, "cannot drop webhook job");
        return;
    }
    let event = AuditEvent {
        at: clock.now_ms(),
        service: Some(job.service.clone()),
        kind: AUDIT_DROPPED.to_string(),
        detail: serde_json::json!({
            "job": job.id,
            "event": event_id(job),
            "attempts": job.attempts,
            "error": err,
        }),
    };
    if let Err(e) = store.audit(&event).await {
        error!(service = %job.service, job = %job.id, error = %e, "cannot audit dropped webhook job");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::VerificationStatus;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use tokio::task::JoinHandle;

    const SECRET: &str = "whsec-0123456789abcdef";
    /// Upper bound on every wait in these tests.
    const WAIT: Duration = Duration::from_secs(10);

    fn service(code: &str, settings: Value) -> Service {
        Service {
            code: code.into(),
            name: "ACME".into(),
            settings,
            created_at: 1_795_000_000_000,
        }
    }

    fn verification(service: &str) -> Verification {
        Verification {
            id: "vf_0123456789abcdef01234567".into(),
            service: service.into(),
            to: "+447400123456".into(),
            channel: "sms".into(),
            locale: "en".into(),
            status: VerificationStatus::Approved,
            code_hash: vec![0xAB; 32],
            attempts: 1,
            max_attempts: 5,
            sends: 1,
            created_at: 1_795_000_000_000,
            expires_at: 1_795_000_600_000,
            last_sent_at: 1_795_000_000_000,
            updated_at: 1_795_000_030_000,
        }
    }

    fn fast_cfg() -> WebhookConfig {
        WebhookConfig {
            timeout: Duration::from_secs(2),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            max_attempts: 3,
            batch: 8,
            lease: Duration::from_secs(10),
            idle_poll: Duration::from_millis(10),
            credentials: HashMap::new(),
        }
    }

    fn test_client() -> reqwest::Client {
        // No proxy from the environment: the receiver is on loopback.
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    async fn store_with(svc: &Service) -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        store.create_service(svc).await.unwrap();
        store
    }

    #[derive(Debug)]
    struct Hit {
        method: axum::http::Method,
        headers: HeaderMap,
        body: String,
    }

    #[derive(Debug, Default)]
    struct Script {
        /// Status per delivery; the last one repeats.
        statuses: Vec<u16>,
        hits: Mutex<Vec<Hit>>,
    }

    async fn record(
        State(s): State<Arc<Script>>,
        method: axum::http::Method,
        headers: HeaderMap,
        body: String,
    ) -> StatusCode {
        let mut hits = s.hits.lock().unwrap();
        let n = hits.len();
        hits.push(Hit {
            method,
            headers,
            body,
        });
        let code = s
            .statuses
            .get(n)
            .or(s.statuses.last())
            .copied()
            .unwrap_or(200);
        StatusCode::from_u16(code).unwrap()
    }

    /// A local receiver answering with `statuses` in turn.
    async fn receiver(statuses: Vec<u16>) -> (SocketAddr, Arc<Script>, JoinHandle<()>) {
        let script = Arc::new(Script {
            statuses,
            ..Default::default()
        });
        let app = axum::Router::new()
            .route("/hook", axum::routing::any(record))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (addr, script, task)
    }

    fn start(store: &Arc<dyn Store>, cfg: WebhookConfig) -> (CancellationToken, JoinHandle<()>) {
        let tx = CancellationToken::new();
        let rx = tx.clone();
        let h = tokio::spawn(run_worker(
            store.clone(),
            test_client(),
            cfg,
            (Clock::system(), Random::os()),
            rx,
        ));
        (tx, h)
    }

    async fn stop(tx: CancellationToken, h: JoinHandle<()>) {
        tx.cancel();
        tokio::time::timeout(WAIT, h)
            .await
            .expect("worker stops in time")
            .unwrap();
    }

    /// Waits (bounded) until `n` deliveries reached the receiver.
    async fn wait_hits(script: &Script, n: usize) {
        tokio::time::timeout(WAIT, async {
            while script.hits.lock().unwrap().len() < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} deliveries in time"));
    }

    /// Waits (bounded) for the audit event of a dropped job.
    async fn wait_dropped(store: &Arc<dyn Store>) -> AuditEvent {
        tokio::time::timeout(WAIT, async {
            loop {
                let events = store.recent_audit(10).await.unwrap();
                if let Some(e) = events.into_iter().find(|e| e.kind == AUDIT_DROPPED) {
                    return e;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("job dropped in time")
    }

    /// Every job due by far in the future (empty when the queue is empty).
    async fn remaining(store: &Arc<dyn Store>) -> Vec<WebhookJob> {
        store
            .claim_webhooks(i64::MAX / 2, 100, 1)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.job)
            .collect()
    }

    fn header<'a>(h: &'a Hit, name: &str) -> &'a str {
        h.headers.get(name).unwrap().to_str().unwrap()
    }

    #[test]
    fn event_body_has_the_fields_and_never_the_code() {
        let v = verification("acme");
        let b = event_body(
            &Random::os(),
            "verification.approved",
            &v,
            1_795_000_030_000,
        );
        assert_eq!(b["type"], "verification.approved");
        assert!(b["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(b["created_at"], "2026-11-18T11:07:10.000Z");
        assert_eq!(
            b["data"],
            serde_json::json!({
                "id": v.id, "service": "acme", "to": "+447400123456",
                "channel": "sms", "status": "approved", "attempts": 1,
            })
        );
        let text = b.to_string();
        assert!(!text.contains("code"), "{text}");
        assert!(!text.contains(&hex::encode(&v.code_hash)), "{text}");
        // Each event has its own id.
        assert_ne!(
            event_body(&Random::os(), "x", &v, 0)["id"],
            event_body(&Random::os(), "x", &v, 0)["id"]
        );
    }

    #[test]
    fn sign_and_verify_round_trip() {
        let body = r#"{"type":"verification.approved"}"#;
        let h = sign(SECRET.as_bytes(), 1_700_000_000, body);
        assert!(h.starts_with("t=1700000000,v1="), "{h}");
        assert_eq!(h.len(), "t=1700000000,v1=".len() + 64);
        let ok = |hdr: &str, now| verify_signature(SECRET.as_bytes(), hdr, body, now, 300);
        assert_eq!(ok(&h, 1_700_000_000), Ok(()));
        assert_eq!(ok(&h, 1_700_000_300), Ok(()));
        assert_eq!(ok(&h, 1_699_999_700), Ok(()));
        assert_eq!(ok(&h, 1_700_000_301), Err(SignatureError::Stale));
        assert_eq!(ok(&h, 1_699_999_699), Err(SignatureError::Stale));
        // A rotated secret: any matching v1 is accepted; unknown fields are ignored.
        let other = sign(b"old-secret", 1_700_000_000, body);
        let v1 = |s: &str| s.split_once(",v1=").unwrap().1.to_string();
        let both = format!("t=1700000000, v0=zz, v1={}, v1={}", v1(&other), v1(&h));
        assert_eq!(ok(&both, 1_700_000_000), Ok(()));
        // Moving the timestamp breaks the signature.
        let moved = h.replace("t=1700000000", "t=1700000100");
        assert_eq!(ok(&moved, 1_700_000_100), Err(SignatureError::Mismatch));
        for bad in [
            "",
            "v1=00",
            "t=abc,v1=00",
            "t=-5,v1=00",
            "t=1,t=1,v1=00",
            "garbage",
        ] {
            assert_eq!(ok(bad, 1), Err(SignatureError::Malformed), "{bad:?}");
        }
        assert_eq!(
            ok("t=1700000000", 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            ok("t=1700000000,v1=nothex", 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let cfg = WebhookConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            ..Default::default()
        };
        for (attempt, base) in [
            (1u32, 1_000u64),
            (2, 2_000),
            (3, 4_000),
            (10, 512_000),
            (11, 600_000),
            (40, 600_000),
            (u32::MAX, 600_000),
        ] {
            for _ in 0..50 {
                let d = cfg.backoff(attempt, &Random::os()).as_millis() as u64;
                assert!((base / 2..=base).contains(&d), "attempt {attempt}: {d} ms");
            }
        }
        // Jitter spreads retries.
        let spread: std::collections::HashSet<_> =
            (0..50).map(|_| cfg.backoff(5, &Random::os())).collect();
        assert!(spread.len() > 1);
    }

    #[tokio::test]
    async fn enqueue_without_webhook_url_queues_nothing() {
        for settings in [
            serde_json::json!({}),
            serde_json::json!({ "webhook_url": null, "webhook_secret": null }),
            serde_json::json!({ "webhook_url": "  " }),
        ] {
            let svc = service("acme", settings);
            let store = store_with(&svc).await;
            let body = event_body(
                &Random::os(),
                "verification.approved",
                &verification("acme"),
                crate::clock::unix_ms(),
            );
            assert!(
                !enqueue(&*store, &Random::os(), &svc, &body, crate::clock::unix_ms())
                    .await
                    .unwrap()
            );
            assert!(remaining(&store).await.is_empty());
        }
    }

    #[tokio::test]
    async fn enqueue_queues_the_body_for_the_url() {
        let svc = service(
            "acme",
            serde_json::json!({ "webhook_url": "https://app.example/hook", "webhook_secret": SECRET }),
        );
        let store = store_with(&svc).await;
        let body = event_body(
            &Random::os(),
            "verification.approved",
            &verification("acme"),
            1_000,
        );
        assert!(enqueue(&*store, &Random::os(), &svc, &body, 1_000)
            .await
            .unwrap());
        let jobs = remaining(&store).await;
        assert_eq!(jobs.len(), 1);
        let j = &jobs[0];
        assert!(j.id.starts_with("wh_"), "{}", j.id);
        assert_eq!(j.service, "acme");
        assert_eq!(j.url, "https://app.example/hook");
        assert_eq!(j.next_attempt_at, 1_000);
        assert_eq!(serde_json::from_str::<Value>(&j.body).unwrap(), body);
    }

    #[tokio::test]
    async fn delivers_a_signed_event_that_verify_signature_accepts() {
        let (addr, script, server) = receiver(vec![200]).await;
        let svc = service(
            "acme",
            serde_json::json!({ "webhook_url": format!("http://{addr}/hook"), "webhook_secret": SECRET }),
        );
        let store = store_with(&svc).await;
        let body = event_body(
            &Random::os(),
            "verification.approved",
            &verification("acme"),
            crate::clock::unix_ms(),
        );
        assert!(
            enqueue(&*store, &Random::os(), &svc, &body, crate::clock::unix_ms())
                .await
                .unwrap()
        );

        let (tx, h) = start(&store, fast_cfg());
        wait_hits(&script, 1).await;
        stop(tx, h).await;
        server.abort();

        let hits = std::mem::take(&mut *script.hits.lock().unwrap());
        assert_eq!(hits.len(), 1);
        let hit = &hits[0];
        assert_eq!(serde_json::from_str::<Value>(&hit.body).unwrap(), body);
        assert_eq!(header(hit, "content-type"), "application/json");
        assert_eq!(
            header(hit, "user-agent"),
            format!("verigate/{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            header(hit, "verigate-event-id"),
            body["id"].as_str().unwrap()
        );

        let sig = header(hit, "verigate-signature");
        let now = crate::clock::unix_ms() / 1000;
        let check = |secret: &[u8], body: &str, now| {
            verify_signature(secret, sig, body, now, DEFAULT_TOLERANCE_SECS)
        };
        assert_eq!(check(SECRET.as_bytes(), &hit.body, now), Ok(()));
        let tampered = hit.body.replace("approved", "canceled");
        assert_ne!(tampered, hit.body);
        assert_eq!(
            check(SECRET.as_bytes(), &tampered, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(b"not-the-secret", &hit.body, now),
            Err(SignatureError::Mismatch)
        );
        // Replayed later than the tolerance.
        assert_eq!(
            check(
                SECRET.as_bytes(),
                &hit.body,
                now + DEFAULT_TOLERANCE_SECS + 5
            ),
            Err(SignatureError::Stale)
        );
        // Delivered: the job is gone and nothing was dropped.
        assert!(remaining(&store).await.is_empty());
        assert!(store.recent_audit(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn retries_after_errors_until_delivered() {
        let (addr, script, server) = receiver(vec![500, 500, 200]).await;
        let svc = service(
            "acme",
            serde_json::json!({ "webhook_url": format!("http://{addr}/hook"), "webhook_secret": SECRET }),
        );
        let store = store_with(&svc).await;
        let body = event_body(
            &Random::os(),
            "verification.approved",
            &verification("acme"),
            crate::clock::unix_ms(),
        );
        assert!(
            enqueue(&*store, &Random::os(), &svc, &body, crate::clock::unix_ms())
                .await
                .unwrap()
        );

        let cfg = WebhookConfig {
            max_attempts: 5,
            ..fast_cfg()
        };
        let (tx, h) = start(&store, cfg);
        wait_hits(&script, 3).await;
        // No fourth delivery once the receiver said 200.
        tokio::time::sleep(Duration::from_millis(150)).await;
        stop(tx, h).await;
        server.abort();

        let hits = std::mem::take(&mut *script.hits.lock().unwrap());
        assert_eq!(hits.len(), 3);
        let now = crate::clock::unix_ms() / 1000;
        for hit in hits.iter() {
            // Same event each time (receivers deduplicate on its id), each signed.
            assert_eq!(
                header(hit, "verigate-event-id"),
                body["id"].as_str().unwrap()
            );
            let sig = header(hit, "verigate-signature");
            assert_eq!(
                verify_signature(SECRET.as_bytes(), sig, &hit.body, now, 60),
                Ok(())
            );
        }
        assert!(remaining(&store).await.is_empty(), "job completed");
        assert!(
            store.recent_audit(10).await.unwrap().is_empty(),
            "nothing dropped"
        );
    }

    #[tokio::test]
    async fn unreachable_url_exhausts_attempts_and_drops_the_job() {
        // A port that was just free: nothing listens there.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let svc = service(
            "acme",
            serde_json::json!({ "webhook_url": format!("http://{addr}/hook"), "webhook_secret": SECRET }),
        );
        let store = store_with(&svc).await;
        let body = event_body(
            &Random::os(),
            "verification.expired",
            &verification("acme"),
            crate::clock::unix_ms(),
        );
        assert!(
            enqueue(&*store, &Random::os(), &svc, &body, crate::clock::unix_ms())
                .await
                .unwrap()
        );

        let (tx, h) = start(&store, fast_cfg());
        let dropped = wait_dropped(&store).await;
        stop(tx, h).await;

        assert_eq!(dropped.service.as_deref(), Some("acme"));
        assert_eq!(dropped.detail["attempts"], 3);
        assert_eq!(dropped.detail["event"], body["id"]);
        let err = dropped.detail["error"].as_str().unwrap();
        assert!(err.starts_with("connect error"), "{err}");
        // Never the body (the number) in the audit trail.
        assert!(!dropped.detail.to_string().contains("+447400123456"));
        assert!(remaining(&store).await.is_empty(), "job dropped");
    }

    #[tokio::test]
    async fn a_job_with_a_deadline_is_retried_past_the_attempt_limit_until_delivered() {
        // Six failures, then 200: three attempts would have dropped it.
        let (addr, script, server) = receiver(vec![500, 503, 500, 502, 500, 500, 200]).await;
        let svc = service("acme", serde_json::json!({ "webhook_secret": SECRET }));
        let store = store_with(&svc).await;
        let now = crate::clock::unix_ms();
        let job = WebhookJob {
            deliver_until: Some(now + 60_000),
            ..WebhookJob::post(
                "wh_deadline".into(),
                "acme",
                &format!("http://{addr}/hook"),
                r#"{"type":"recycled","id":"evt_1-acme"}"#.into(),
                now,
            )
        };
        store.enqueue_webhook(&job).await.unwrap();
        let (tx, h) = start(&store, fast_cfg());
        wait_hits(&script, 7).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop(tx, h).await;
        server.abort();
        assert_eq!(script.hits.lock().unwrap().len(), 7);
        assert!(
            remaining(&store).await.is_empty(),
            "delivered and completed"
        );
        assert!(store.recent_audit(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_job_with_a_deadline_is_given_up_at_it_and_not_before() {
        let (addr, script, server) = receiver(vec![500]).await;
        let svc = service("acme", serde_json::json!({ "webhook_secret": SECRET }));
        let store = store_with(&svc).await;
        let now = crate::clock::unix_ms();
        let job = WebhookJob {
            deliver_until: Some(now + 400),
            ..WebhookJob::post(
                "wh_deadline".into(),
                "acme",
                &format!("http://{addr}/hook"),
                r#"{"type":"unbind","id":"evt_2-acme"}"#.into(),
                now,
            )
        };
        store.enqueue_webhook(&job).await.unwrap();
        let (tx, h) = start(&store, fast_cfg());
        let dropped = wait_dropped(&store).await;
        let given_up = crate::clock::unix_ms();
        stop(tx, h).await;
        server.abort();
        assert!(given_up >= now + 400, "not before the deadline");
        let tries = script.hits.lock().unwrap().len();
        assert!(tries > 3, "tried past max_attempts: {tries}");
        assert_eq!(dropped.detail["event"], "evt_2-acme");
        assert_eq!(dropped.detail["error"], "HTTP 500");
    }

    #[tokio::test]
    async fn a_job_naming_a_credential_goes_with_its_method_bearer_and_signature() {
        let (addr, script, server) = receiver(vec![204]).await;
        // The service's own webhook secret is not the one used.
        let svc = service("acme", serde_json::json!({ "webhook_secret": SECRET }));
        let store = store_with(&svc).await;
        let now = crate::clock::unix_ms();
        let job = WebhookJob {
            method: HttpMethod::Put,
            credential: Some("registry".into()),
            ..WebhookJob::post(
                "wh_put".into(),
                "acme",
                &format!("http://{addr}/hook"),
                r#"{"id":"bnd_1"}"#.into(),
                now,
            )
        };
        store.enqueue_webhook(&job).await.unwrap();
        let mut cfg = fast_cfg();
        cfg.credentials.insert(
            "registry".into(),
            Credential {
                signing_secret: "carrier-shared-0123456789".into(),
                bearer: Some("vg_live_key".into()),
            },
        );
        let (tx, h) = start(&store, cfg);
        wait_hits(&script, 1).await;
        stop(tx, h).await;
        server.abort();
        let hit = script.hits.lock().unwrap().remove(0);
        let hit = &hit;
        assert_eq!(hit.method, axum::http::Method::PUT);
        assert_eq!(header(hit, "authorization"), "Bearer vg_live_key");
        let sig = header(hit, "verigate-signature");
        let secs = now / 1000;
        assert_eq!(
            verify_signature(b"carrier-shared-0123456789", sig, &hit.body, secs, 60),
            Ok(())
        );
        assert_eq!(
            verify_signature(SECRET.as_bytes(), sig, &hit.body, secs, 60),
            Err(SignatureError::Mismatch)
        );
        // A job naming a credential the worker lacks is dropped unsent.
        let lost = WebhookJob {
            credential: Some("gone".into()),
            ..WebhookJob::post(
                "wh_gone".into(),
                "acme",
                &format!("http://{addr}/hook"),
                "{}".into(),
                now,
            )
        };
        store.enqueue_webhook(&lost).await.unwrap();
        let (tx, h) = start(&store, fast_cfg());
        let dropped = wait_dropped(&store).await;
        stop(tx, h).await;
        assert_eq!(dropped.detail["error"], "its credential is not configured");
    }

    #[tokio::test]
    async fn missing_secret_drops_the_job_without_sending() {
        let (addr, script, server) = receiver(vec![200]).await;
        let svc = service(
            "acme",
            serde_json::json!({ "webhook_url": format!("http://{addr}/hook") }),
        );
        let store = store_with(&svc).await;
        let body = event_body(
            &Random::os(),
            "verification.approved",
            &verification("acme"),
            crate::clock::unix_ms(),
        );
        assert!(
            enqueue(&*store, &Random::os(), &svc, &body, crate::clock::unix_ms())
                .await
                .unwrap()
        );

        let (tx, h) = start(&store, fast_cfg());
        let dropped = wait_dropped(&store).await;
        stop(tx, h).await;
        server.abort();

        assert_eq!(dropped.detail["attempts"], 1);
        assert!(
            script.hits.lock().unwrap().is_empty(),
            "nothing unsigned is sent"
        );
        assert!(remaining(&store).await.is_empty());
    }

    #[tokio::test]
    async fn worker_stops_when_told() {
        let svc = service("acme", serde_json::json!({}));
        let store = store_with(&svc).await;
        let (tx, h) = start(&store, fast_cfg());
        tx.cancel();
        tokio::time::timeout(WAIT, h)
            .await
            .expect("worker stops")
            .unwrap();
    }
}

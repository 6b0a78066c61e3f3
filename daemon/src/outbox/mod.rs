//! The SMS outbox's sender: a [`Queue`] over the stored outbox that hands
//! each claimed message to an [`SmsGateway`] (SMPP in [`smpp`]) and records
//! the outcome with the claim's lease. The lease is extended while the
//! gateway works (a throttled SMSC can hold a message for minutes), so no
//! other sender claims it meanwhile; a sender that lost its lease (it
//! stalled past it) records nothing but the ids of a copy that went out.
//! Once a submit_sm_resp is recorded the message is never sent again.

pub mod smpp;

use crate::clock::Clock;
use crate::queue::{self, Held, Queue, WorkerConfig};
use crate::store::{
    Claimed, Extension, Lease, Millis, OutboxMessage, Store, StoreError, StoreResult,
};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

/// Sender settings.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Messages claimed per round.
    pub batch: u32,
    /// Lease on a claimed message (a crashed sender's messages return after
    /// it); extended every third of it while a message is being sent.
    pub lease: Duration,
    /// Pause when the outbox is empty.
    pub idle_poll: Duration,
    /// Submits in flight at once.
    pub max_in_flight: usize,
    /// Retry delay after a temporary failure.
    pub retry_delay: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            batch: 256,
            lease: Duration::from_secs(60),
            idle_poll: Duration::from_millis(50),
            max_in_flight: 2048,
            retry_delay: Duration::from_secs(5),
        }
    }
}

/// What a gateway made of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The SMSC took it (every part, or some: resending would duplicate
    /// those), with these message ids.
    Submitted {
        /// The SMSC's name.
        smsc: String,
        /// Its message ids, one per part taken.
        ids: Vec<String>,
    },
    /// Refused for good (the message or its destination is at fault).
    Rejected(String),
    /// Not sent; worth another try after the retry delay (or at once, when
    /// `now`: another route or sender may take it).
    Retry {
        /// Why it was not sent.
        error: String,
        /// Retry at once rather than after the delay.
        now: bool,
    },
}

/// Something that can send a stored message as SMS.
#[async_trait]
pub trait SmsGateway: std::fmt::Debug + Send + Sync + 'static {
    /// How many messages it can take at once now (0: no link is up, so
    /// claiming would only age leases; another instance may have a link).
    fn capacity(&self) -> usize;
    /// Sends `msg`; gives it back (a `Retry` at once) rather than hold it
    /// while no link is up.
    async fn send(&self, msg: &OutboxMessage) -> Sent;
}

/// The outbox as a durable queue.
#[derive(Debug)]
pub struct Outbox {
    store: Arc<dyn Store>,
    gateway: Arc<dyn SmsGateway>,
    clock: Clock,
    retry_delay: Duration,
    lease: Duration,
}

impl Outbox {
    /// The outbox of `store`, sent through `gateway`.
    pub fn new(
        store: Arc<dyn Store>,
        gateway: Arc<dyn SmsGateway>,
        cfg: &SenderConfig,
        clock: Clock,
    ) -> Self {
        Outbox {
            store,
            gateway,
            clock,
            retry_delay: cfg.retry_delay,
            lease: cfg.lease,
        }
    }

    /// How long a result is retried against a failing store: half a lease.
    fn give_up(&self) -> Duration {
        self.lease / 2
    }
}

#[async_trait]
impl Queue for Outbox {
    type Job = OutboxMessage;
    const NAME: &'static str = "outbox";

    fn capacity(&self) -> usize {
        self.gateway.capacity()
    }

    async fn claim(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<Claimed<OutboxMessage>>> {
        self.store.claim_outbox(now, limit, lease_ms).await
    }

    async fn extend(&self, leases: &[Lease], until: Millis) -> StoreResult<Vec<Extension>> {
        self.store.extend_outbox(leases, until).await
    }

    async fn work(&self, job: Claimed<OutboxMessage>, held: Held) {
        let started = std::time::Instant::now();
        // A lost lease drops the send: the new holder sends the message (an
        // unsent copy is discarded by the bind when the submit is dropped).
        let sent = tokio::select! {
            s = self.gateway.send(&job.job) => s,
            _ = held.lost.cancelled() => return,
        };
        crate::metrics::get()
            .submit_latency
            .observe(started.elapsed().as_secs_f64());
        let result = match &sent {
            Sent::Submitted { .. } => "submitted",
            Sent::Rejected(_) => "rejected",
            Sent::Retry { now: true, .. } => "requeued",
            Sent::Retry { .. } => "retry",
        };
        crate::metrics::get()
            .sends
            .with_label_values(&[result])
            .inc();
        let now = self.clock.now_ms();
        let outcome = match sent {
            Sent::Submitted { smsc, ids } => Record::Submitted(smsc, ids),
            Sent::Rejected(e) => Record::Failed(e, None),
            Sent::Retry { error, now: true } => Record::Failed(error, Some(now)),
            Sent::Retry { error, .. } => {
                debug!(message = %job.id, %error, "send failed; will retry");
                let delay = i64::try_from(self.retry_delay.as_millis()).unwrap_or(i64::MAX);
                Record::Failed(error, Some(now.saturating_add(delay)))
            }
        };
        record(&*self.store, &held.lease, &outcome, now, self.give_up()).await;
    }
}

/// Drains the outbox through `gateway` until `stop`, then lets the submits
/// in flight be recorded.
pub async fn run_sender(
    store: Arc<dyn Store>,
    gateway: Arc<dyn SmsGateway>,
    cfg: SenderConfig,
    clock: Clock,
    stop: CancellationToken,
) {
    let worker = WorkerConfig {
        batch: cfg.batch,
        lease: cfg.lease,
        idle_poll: cfg.idle_poll,
        max_in_flight: cfg.max_in_flight,
        // A submit's outcome comes within the response timeout; past half
        // a lease the message is handed back by its lease anyway.
        drain: cfg.lease / 2,
    };
    let outbox = Outbox::new(store, gateway, &cfg, clock.clone());
    queue::run(Arc::new(outbox), worker, clock, stop).await;
}

/// What a send attempt left to record.
enum Record {
    /// The SMSC took it: its name and message ids.
    Submitted(String, Vec<String>),
    /// Not taken: the reason, and when to retry (None: never).
    Failed(String, Option<Millis>),
}

/// Records a send result, retrying a failing store until `give_up`: an
/// acceptance that is not recorded would be sent again after the lease. A
/// lost lease ends it: the message is someone else's now.
async fn record(store: &dyn Store, lease: &Lease, record: &Record, at: Millis, give_up: Duration) {
    let done = retry_until(give_up, || async {
        match record {
            Record::Submitted(smsc, ids) => {
                store.mark_submitted(lease, smsc, ids, at).await.map(|_| ())
            }
            Record::Failed(error, retry_at) => store.mark_failed(lease, error, *retry_at, at).await,
        }
    })
    .await;
    match done {
        Ok(()) => {}
        Err(StoreError::LeaseLost(why)) => {
            warn!(message = %lease.id, %why, "the message was claimed again meanwhile; its new holder sends it");
            crate::metrics::get()
                .leases_lost
                .with_label_values(&[Outbox::NAME])
                .inc();
        }
        Err(e) => {
            error!(message = %lease.id, error = %e, "cannot record the send result; the message will be claimed again after its lease")
        }
    }
}

/// Runs `op` until it succeeds or fails for good (a lost lease, an unknown
/// job), backing off from 50 ms to 2 s, for at most `give_up`; the last
/// error if it never did.
async fn retry_until<F, Fut>(give_up: Duration, mut op: F) -> StoreResult<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<()>>,
{
    let deadline = tokio::time::Instant::now() + give_up;
    let mut delay = Duration::from_millis(50);
    loop {
        let e = match op().await {
            Ok(()) => return Ok(()),
            Err(e @ (StoreError::LeaseLost(_) | StoreError::NotFound(_))) => return Err(e),
            Err(e) => e,
        };
        if tokio::time::Instant::now() + delay >= deadline {
            return Err(e);
        }
        warn!(error = %e, "store write failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests;

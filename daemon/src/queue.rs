//! The one durable-queue worker, shared by the SMS outbox, the call queue
//! and the webhook queue: it claims due jobs with a lease, runs each while
//! extending its lease, and tells a job whose lease was taken over (this
//! process stalled past it and another claim took the job) to drop it. The
//! job records its outcome through the store's fenced operations with its
//! [`Lease`], so a holder that lost its lease can neither finish, fail nor
//! requeue the job a second time.

use crate::clock::Clock;
use crate::store::{Claimed, Extension, Lease, Millis, StoreResult};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

/// One kind of durable job and how to do it.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// The stored job.
    type Job: Send + Sync + 'static;
    /// The queue's name in logs and metrics.
    const NAME: &'static str;

    /// How many jobs may be in flight at once now (the worker claims no
    /// more than this minus those in flight); 0 pauses claiming.
    fn capacity(&self) -> usize {
        usize::MAX
    }

    /// Work before each claim (expiring what is past due).
    async fn sweep(&self, _now: Millis) {}

    /// Rung (`notify_one`) when a job is stored in this process, so the
    /// worker claims it at once instead of at its next poll.
    fn wakeup(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }

    /// Claims up to `limit` due jobs, held until `now + lease_ms`.
    async fn claim(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<Claimed<Self::Job>>>;

    /// Extends the leases still held to `until`; says what it found of
    /// each, in order.
    async fn extend(&self, leases: &[Lease], until: Millis) -> StoreResult<Vec<Extension>>;

    /// Does one claimed job and records its outcome with `held.lease`.
    async fn work(&self, job: Claimed<Self::Job>, held: Held);
}

/// What a running job is told by its worker.
#[derive(Debug, Clone)]
pub struct Held {
    /// The job's lease, for its fenced writes.
    pub lease: Lease,
    /// Cancelled when an extension found the lease taken over: the job
    /// stops and records nothing (the new holder does the job).
    pub lost: CancellationToken,
    /// Cancelled when the worker shuts down: the job winds up (a call is
    /// ended) within [`WorkerConfig::drain`].
    pub stop: CancellationToken,
}

/// How a worker claims.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs claimed per round at most.
    pub batch: u32,
    /// Lease of a claim; extended every third of it while the job runs.
    pub lease: Duration,
    /// Pause when nothing was due.
    pub idle_poll: Duration,
    /// Jobs in flight at once at most.
    pub max_in_flight: usize,
    /// How long shutdown waits for jobs in flight (their leases are kept
    /// meanwhile); jobs still running then are abandoned to their leases.
    pub drain: Duration,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The leases of the jobs in flight.
struct Holding {
    leases: HashMap<String, (Lease, CancellationToken)>,
}

impl Holding {
    /// Extends every lease; cancels the `lost` token of those taken over.
    async fn extend<Q: Queue>(&mut self, queue: &Q, until: Millis) {
        if self.leases.is_empty() {
            return;
        }
        let leases: Vec<Lease> = self.leases.values().map(|(l, _)| l.clone()).collect();
        match queue.extend(&leases, until).await {
            Ok(found) => {
                for (lease, found) in leases.iter().zip(found) {
                    match found {
                        Extension::Held => {
                            if let Some((l, _)) = self.leases.get_mut(&lease.id) {
                                l.until = until;
                            }
                        }
                        // The job recorded its outcome while we extended;
                        // its task is returning.
                        Extension::Finished => {
                            self.leases.remove(&lease.id);
                        }
                        Extension::TakenOver => {
                            if let Some((_, lost)) = self.leases.remove(&lease.id) {
                                warn!(queue = Q::NAME, job = %lease.id, "lease taken over; dropping the job");
                                crate::metrics::get()
                                    .leases_lost
                                    .with_label_values(&[Q::NAME])
                                    .inc();
                                lost.cancel();
                            }
                        }
                    }
                }
            }
            // Tried again at the next extension, well inside the lease.
            Err(e) => error!(queue = Q::NAME, error = %e, "cannot extend leases"),
        }
    }
}

/// Runs `queue` until `stop`, then lets the jobs in flight finish (for at
/// most `cfg.drain`, their leases still extended) and returns.
pub async fn run<Q: Queue>(
    queue: Arc<Q>,
    cfg: WorkerConfig,
    clock: Clock,
    stop: CancellationToken,
) {
    let lease_ms = millis(cfg.lease);
    let extend_every = (cfg.lease / 3).max(Duration::from_millis(100));
    let jobs_stop = CancellationToken::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    let mut holding = Holding {
        leases: HashMap::new(),
    };
    let mut next_extend = Instant::now() + extend_every;
    let wakeup = queue.wakeup();
    loop {
        while let Some(done) = tasks.try_join_next() {
            finished(&mut holding, done);
        }
        if stop.is_cancelled() {
            break;
        }
        if Instant::now() >= next_extend {
            next_extend = Instant::now() + extend_every;
            holding.extend(&*queue, clock.now_ms() + lease_ms).await;
        }
        let now = clock.now_ms();
        queue.sweep(now).await;
        let room = queue
            .capacity()
            .min(cfg.max_in_flight)
            .saturating_sub(tasks.len());
        let want = u32::try_from(room).unwrap_or(u32::MAX).min(cfg.batch);
        let claimed = if want == 0 {
            Vec::new()
        } else {
            match queue.claim(now, want, lease_ms).await {
                Ok(c) => c,
                Err(e) => {
                    error!(queue = Q::NAME, error = %e, "cannot claim jobs");
                    Vec::new()
                }
            }
        };
        let short = (claimed.len() as u32) < want;
        for job in claimed {
            let held = Held {
                lease: job.lease.clone(),
                lost: CancellationToken::new(),
                stop: jobs_stop.child_token(),
            };
            holding
                .leases
                .insert(job.lease.id.clone(), (job.lease.clone(), held.lost.clone()));
            let queue = queue.clone();
            tasks.spawn(async move {
                let id = held.lease.id.clone();
                queue.work(job, held).await;
                id
            });
        }
        // Full (no room): wait for a job to finish; nothing due: poll later.
        let pause = if want == 0 && tasks.is_empty() || short {
            cfg.idle_poll
        } else if want == 0 {
            Duration::from_secs(3600)
        } else {
            Duration::ZERO
        };
        // A finished job wakes the worker only when it was full: waking on
        // every finish would run a sweep and a claim (two store writes) per
        // job; with room to spare, finished jobs are collected at the top.
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(pause.min(extend_every)) => {}
            _ = rung(wakeup.as_deref()), if want > 0 => {}
            Some(done) = tasks.join_next(), if want == 0 && !tasks.is_empty() => finished(&mut holding, done),
        }
    }
    // Drain: no more claims; running jobs wind up while their leases hold.
    jobs_stop.cancel();
    let deadline = Instant::now() + cfg.drain;
    while !tasks.is_empty() {
        tokio::select! {
            Some(done) = tasks.join_next() => finished(&mut holding, done),
            _ = tokio::time::sleep_until(next_extend) => {
                next_extend = Instant::now() + extend_every;
                holding.extend(&*queue, clock.now_ms() + lease_ms).await;
            }
            _ = tokio::time::sleep_until(deadline) => {
                warn!(queue = Q::NAME, jobs = tasks.len(), "jobs still running at the end of the drain; their leases hand them back");
                tasks.abort_all();
                break;
            }
        }
    }
}

/// Waits for `wakeup` to ring (forever without one).
async fn rung(wakeup: Option<&tokio::sync::Notify>) {
    match wakeup {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

fn finished(holding: &mut Holding, done: Result<String, tokio::task::JoinError>) {
    match done {
        Ok(id) => {
            holding.leases.remove(&id);
        }
        // A job that panicked keeps its lease entry until the next
        // extension finds it still held; it is handed back when the
        // process ends. Say so loudly: it is a bug.
        Err(e) => error!(error = %e, "a queue job failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// One job; its lease is taken over by another claim at `lost_at`, or
    /// its outcome is stored at `finished_at` (its task returns later).
    #[derive(Default)]
    struct OneJob {
        claimed: AtomicUsize,
        extensions: Mutex<Vec<Millis>>,
        lost_at: Option<Millis>,
        finished_at: Option<Millis>,
        outcome: Mutex<Option<&'static str>>,
    }

    #[async_trait]
    impl Queue for OneJob {
        type Job = ();
        const NAME: &'static str = "test";

        async fn claim(&self, now: Millis, _: u32, lease_ms: i64) -> StoreResult<Vec<Claimed<()>>> {
            if self.claimed.fetch_add(1, Ordering::SeqCst) > 0 {
                return Ok(Vec::new());
            }
            Ok(vec![Claimed {
                job: (),
                lease: Lease {
                    id: "job".into(),
                    token: 1,
                    until: now + lease_ms,
                },
            }])
        }

        async fn extend(&self, leases: &[Lease], until: Millis) -> StoreResult<Vec<Extension>> {
            self.extensions.lock().unwrap().push(until);
            let now = until - 60_000;
            let found = if self.lost_at.is_some_and(|at| now >= at) {
                Extension::TakenOver
            } else if self.finished_at.is_some_and(|at| now >= at) {
                Extension::Finished
            } else {
                Extension::Held
            };
            Ok(vec![found; leases.len()])
        }

        async fn work(&self, _: Claimed<()>, held: Held) {
            // Works for five minutes unless its lease is lost.
            let outcome = tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(300)) => "done",
                _ = held.lost.cancelled() => "dropped",
            };
            *self.outcome.lock().unwrap() = Some(outcome);
        }
    }

    fn cfg() -> WorkerConfig {
        WorkerConfig {
            batch: 10,
            lease: Duration::from_secs(60),
            idle_poll: Duration::from_millis(50),
            max_in_flight: 10,
            drain: Duration::from_secs(600),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_job_keeps_its_lease_extended_every_third_of_it() {
        let q = Arc::new(OneJob::default());
        let stop = CancellationToken::new();
        let t0: Millis = 1_000_000;
        let w = tokio::spawn(run(q.clone(), cfg(), Clock::virtual_at(t0), stop.clone()));
        tokio::time::sleep(Duration::from_secs(301)).await;
        stop.cancel();
        w.await.unwrap();
        assert_eq!(*q.outcome.lock().unwrap(), Some("done"));
        let ext = q.extensions.lock().unwrap().clone();
        // Every 20 s for the five minutes, each 60 s ahead.
        assert!((14..=16).contains(&ext.len()), "{ext:?}");
        for pair in ext.windows(2) {
            assert!((pair[1] - pair[0] - 20_000).abs() <= 100, "{ext:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_whose_lease_was_taken_over_is_dropped() {
        let q = Arc::new(OneJob {
            lost_at: Some(1_000_000 + 45_000),
            ..OneJob::default()
        });
        let stop = CancellationToken::new();
        let lost_before = crate::metrics::get()
            .leases_lost
            .with_label_values(&["test"])
            .get();
        let w = tokio::spawn(run(
            q.clone(),
            cfg(),
            Clock::virtual_at(1_000_000),
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(*q.outcome.lock().unwrap(), Some("dropped"));
        stop.cancel();
        w.await.unwrap();
        assert!(
            crate::metrics::get()
                .leases_lost
                .with_label_values(&["test"])
                .get()
                > lost_before
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_whose_own_outcome_landed_before_its_extension_is_not_dropped() {
        // Under load the extension's answer (at commit) can come before the
        // job's own completion (after the fsync) has returned to it.
        let q = Arc::new(OneJob {
            finished_at: Some(1_000_000 + 45_000),
            ..OneJob::default()
        });
        let stop = CancellationToken::new();
        let w = tokio::spawn(run(
            q.clone(),
            cfg(),
            Clock::virtual_at(1_000_000),
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(301)).await;
        assert_eq!(*q.outcome.lock().unwrap(), Some("done"), "not dropped");
        // Extended at 20 s and 40 s; found finished at 60 s; never again.
        assert_eq!(q.extensions.lock().unwrap().len(), 3);
        stop.cancel();
        w.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_the_jobs_in_flight_up_to_the_drain() {
        let q = Arc::new(OneJob::default());
        let stop = CancellationToken::new();
        let mut c = cfg();
        c.drain = Duration::from_secs(10);
        let w = tokio::spawn(run(q.clone(), c, Clock::virtual_at(0), stop.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.cancel();
        let started = Instant::now();
        w.await.unwrap();
        // The five-minute job is abandoned (to its lease) after the drain.
        assert_eq!(started.elapsed().as_secs(), 10);
        assert_eq!(*q.outcome.lock().unwrap(), None);
    }
}

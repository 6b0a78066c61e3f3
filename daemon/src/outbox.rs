//! The durable outbox's workers: the sender that drains stored messages
//! into SMPP, the receipt consumer, and the expiry sweep. A message is
//! claimed with a lease, so if this process dies its messages are claimed
//! again after the lease; once a submit_sm_resp is recorded it is never sent
//! again.

use crate::clock::Clock;
use crate::mologin::MoLoginService;
use crate::random::Random;
use crate::smpp::{NoRoute, Router, SmppEvent, SubmitError};
use crate::store::{MessageState, MoPlan, OutboxMessage, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{debug, error, warn};
use verigate_codecs::dlr::{message_id_keys, DlrState};
use verigate_codecs::smpp::{Address, CommandStatus, SubmitSm};

/// Sender settings.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Messages claimed per round.
    pub batch: u32,
    /// Lease on a claimed message (a crashed sender's messages return after it).
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

/// Drains the outbox until `stop` turns true, then waits for in-flight submits.
pub async fn run_sender(
    store: Arc<dyn Store>,
    router: Arc<Router>,
    cfg: SenderConfig,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(cfg.max_in_flight));
    loop {
        if *stop.borrow() {
            break;
        }
        // With no SMSC bound, claiming would only age leases: leave the
        // messages queued (another instance may have a link).
        if !router.smscs().iter().any(|c| c.submit_bound_count() > 0) {
            tokio::select! {
                _ = tokio::time::sleep(cfg.idle_poll) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        // Claim no more than the bound links can have on the wire (twice
        // their windows): a message must not wait in memory until its lease
        // runs out and another sender claims it again.
        let capacity: usize = router
            .smscs()
            .iter()
            .map(|c| c.submit_bound_count() * c.config().session.window * 2)
            .sum();
        let in_flight = cfg.max_in_flight - permits.available_permits();
        let room = capacity.min(cfg.max_in_flight).saturating_sub(in_flight);
        let want = (cfg.batch as usize).min(room) as u32;
        if want == 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let claimed = match store
            .claim_outbox(clock.now_ms(), want, cfg.lease.as_millis() as i64)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "cannot claim outbox messages");
                Vec::new()
            }
        };
        let n = claimed.len();
        for msg in claimed {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let store = store.clone();
            let router = router.clone();
            let retry = cfg.retry_delay;
            let give_up = cfg.lease / 2;
            let clock = clock.clone();
            tokio::spawn(async move {
                send_one(&*store, &router, &clock, msg, retry, give_up).await;
                drop(permit);
            });
        }
        if (n as u32) < want {
            tokio::select! {
                _ = tokio::time::sleep(cfg.idle_poll) => {}
                _ = stop.changed() => {}
            }
        }
    }
    // Wait for submits in flight to be recorded.
    let _ = permits.acquire_many(cfg.max_in_flight as u32).await;
}

fn address(from: &str) -> Address {
    let digits = from.trim_start_matches('+');
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        if from.starts_with('+') || digits.len() > 8 {
            Address::international(digits)
        } else {
            // A short code.
            Address::new(3, 0, digits)
        }
    } else {
        // Alphanumeric sender id.
        Address::new(5, 0, from)
    }
}

/// Whether a refusal may succeed later (ours to retry) or is final.
fn is_temporary(st: CommandStatus) -> bool {
    matches!(st.0, 0x08 | 0x14 | 0x58 | 0x64 | 0xFE | 0xFF)
}

async fn send_one(
    store: &dyn Store,
    router: &Router,
    clock: &Clock,
    msg: OutboxMessage,
    retry: Duration,
    give_up: Duration,
) {
    let client = match router.route(&msg.to) {
        Ok(c) => c,
        Err(NoRoute::Unrouted) => {
            let _ = store
                .mark_failed(
                    &msg.id,
                    &NoRoute::Unrouted.to_string(),
                    None,
                    clock.now_ms(),
                )
                .await;
            return;
        }
        Err(NoRoute::Disabled) => {
            // An operator took the link out: wait for it (or another route).
            let now = clock.now_ms();
            let _ = store
                .mark_failed(
                    &msg.id,
                    &NoRoute::Disabled.to_string(),
                    Some(now + retry.as_millis() as i64),
                    now,
                )
                .await;
            return;
        }
    };
    let template = SubmitSm {
        source: address(&msg.from),
        dest: Address::international(&msg.to),
        registered_delivery: 1,
        ..Default::default()
    };
    // While the link is down, give the message back well inside its lease
    // (dropping the submit makes the bind discard its unsent copy), so it is
    // never held here while another sender claims it again.
    let started = std::time::Instant::now();
    let submit = client.submit_text(&template, &msg.text);
    tokio::pin!(submit);
    let mut down_since: Option<tokio::time::Instant> = None;
    let outcome = loop {
        tokio::select! {
            o = &mut submit => break o,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                if client.submit_bound_count() > 0 {
                    down_since = None;
                } else if !client.is_enabled()
                    || down_since.get_or_insert_with(tokio::time::Instant::now).elapsed() >= give_up
                {
                    // Disabled: hand it back at once so another route can take it.
                    let now = clock.now_ms();
                    let _ = store
                        .mark_failed(&msg.id, "SMSC link down; requeued", Some(now), now)
                        .await;
                    crate::metrics::get().sends.with_label_values(&["requeued"]).inc();
                    return;
                }
            }
        }
    };
    crate::metrics::get()
        .submit_latency
        .observe(started.elapsed().as_secs_f64());
    let now = clock.now_ms();
    let retry_at = Some(now + retry.as_millis() as i64);
    let record = match outcome {
        Err(e) => SendRecord::Failed(e.to_string(), None),
        Ok(parts) => {
            let mut ids = Vec::new();
            let mut failure: Option<SubmitError> = None;
            for p in parts {
                match p {
                    Ok(s) => ids.push(s.message_id),
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            let result = match &failure {
                None => "submitted",
                Some(SubmitError::Rejected(st)) if !is_temporary(*st) => "rejected",
                Some(_) => "retry",
            };
            crate::metrics::get()
                .sends
                .with_label_values(&[result])
                .inc();
            match failure {
                None => SendRecord::Submitted(ids),
                Some(SubmitError::Rejected(st)) if !is_temporary(st) => {
                    SendRecord::Failed(format!("rejected by SMSC: {st}"), None)
                }
                // Some parts were taken: resending would duplicate them.
                Some(_) if !ids.is_empty() => SendRecord::Submitted(ids),
                // Disabled meanwhile: nothing went out; another route may take it now.
                Some(SubmitError::Disabled) => {
                    SendRecord::Failed(SubmitError::Disabled.to_string(), Some(now))
                }
                Some(e) => {
                    // Temporary or unknown outcome (timeout, connection lost):
                    // retry. A lost response may mean the SMSC took it, so the
                    // handset might get the code twice — better than never.
                    debug!(error = %e, "send failed; will retry");
                    SendRecord::Failed(e.to_string(), retry_at)
                }
            }
        }
    };
    record_send(store, &msg.id, client.name(), &record, now, give_up).await;
}

/// What a send attempt left to record.
enum SendRecord {
    /// The SMSC took it, with these message ids.
    Submitted(Vec<String>),
    /// Not taken: the reason, and when to retry (None: never).
    Failed(String, Option<i64>),
}

/// Records a send result, retrying a failing store until `give_up`: an
/// acceptance that is not recorded would be sent again after the lease.
async fn record_send(
    store: &dyn Store,
    id: &str,
    smsc: &str,
    record: &SendRecord,
    at: i64,
    give_up: Duration,
) {
    let done = retry_until(give_up, || async {
        match record {
            SendRecord::Submitted(ids) => store.mark_submitted(id, smsc, ids, at).await.map(|_| ()),
            SendRecord::Failed(error, retry_at) => {
                store.mark_failed(id, error, *retry_at, at).await
            }
        }
    })
    .await;
    if let Err(e) = done {
        error!(message = %id, error = %e, "cannot record the send result; the message will be claimed again after its lease");
    }
}

/// Runs `op` until it succeeds, backing off from 50 ms to 2 s, for at most
/// `give_up`; the last error if it never did.
async fn retry_until<F, Fut, E>(give_up: Duration, mut op: F) -> Result<(), E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let deadline = tokio::time::Instant::now() + give_up;
    let mut delay = Duration::from_millis(50);
    loop {
        let Err(e) = op().await else { return Ok(()) };
        if tokio::time::Instant::now() + delay >= deadline {
            return Err(e);
        }
        warn!(error = %e, "store write failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Maps a receipt state to the message state it implies.
pub fn message_state(s: DlrState) -> MessageState {
    match s {
        DlrState::Delivered => MessageState::Delivered,
        DlrState::Undeliverable | DlrState::Rejected | DlrState::Deleted => {
            MessageState::Undeliverable
        }
        DlrState::Expired => MessageState::Expired,
        DlrState::Enroute | DlrState::Accepted | DlrState::Unknown | DlrState::Skipped => {
            MessageState::Submitted
        }
    }
}

/// Lanes receipts and MOs are spread over. Each lane stores its events in
/// order; the lanes run at once so their writes share the store's group
/// commit.
const EVENT_LANES: usize = 64;

/// Consumes receipts and MOs: each is stored before it is acknowledged.
/// Events for the same message id (or, for MOs, the same sender) go to the
/// same lane, so they are stored in the order the SMSC sent them: which of
/// two conflicting final receipts wins must not depend on scheduling.
pub async fn run_events(
    store: Arc<dyn Store>,
    mo_login: Option<Arc<MoLoginService>>,
    (clock, rng): (Clock, Random),
    mut events: mpsc::Receiver<SmppEvent>,
) {
    let mut lanes = Vec::with_capacity(EVENT_LANES);
    let mut tasks = Vec::with_capacity(EVENT_LANES);
    for _ in 0..EVENT_LANES {
        let (tx, mut rx) = mpsc::channel::<SmppEvent>(256);
        let store = store.clone();
        let mo_login = mo_login.clone();
        let (clock, rng) = (clock.clone(), rng.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                handle_event(&*store, mo_login.as_deref(), &clock, &rng, ev).await;
            }
        }));
        lanes.push(tx);
    }
    while let Some(ev) = events.recv().await {
        let lane = lane_of(&ev);
        if lanes[lane].send(ev).await.is_err() {
            break;
        }
    }
    // Let the last ones be stored (and acknowledged) before returning.
    drop(lanes);
    for t in tasks {
        let _ = t.await;
    }
}

/// The lane for an event: by receipt id, or by MO sender.
fn lane_of(ev: &SmppEvent) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match ev {
        SmppEvent::Dlr { dlr, .. } => message_id_keys(&dlr.message_id).iter().next().hash(&mut h),
        // By the sender's digits, so "+447…" and "447…" share a lane and
        // one number's MOs are handled in order.
        SmppEvent::Mo { from, .. } => from
            .bytes()
            .filter(u8::is_ascii_digit)
            .collect::<Vec<u8>>()
            .hash(&mut h),
    }
    (h.finish() % EVENT_LANES as u64) as usize
}

async fn handle_event(
    store: &dyn Store,
    mo_login: Option<&MoLoginService>,
    clock: &Clock,
    rng: &Random,
    ev: SmppEvent,
) {
    match ev {
        SmppEvent::Dlr { dlr, ack, .. } => {
            let keys: Vec<String> = message_id_keys(&dlr.message_id).iter().cloned().collect();
            match store
                .record_dlr(&keys, message_state(dlr.state), clock.now_ms())
                .await
            {
                Ok(_) => {
                    // Counted once stored, so the figure means "receipts we hold".
                    crate::metrics::get()
                        .dlrs
                        .with_label_values(&[dlr.state.as_stat()])
                        .inc();
                    ack.accept()
                }
                Err(e) => {
                    warn!(error = %e, "cannot store receipt; SMSC will redeliver");
                    ack.retry_later();
                }
            }
        }
        SmppEvent::Mo {
            smsc,
            from,
            from_ton,
            to,
            text,
            ack,
            ..
        } => {
            let taken = std::time::Instant::now();
            let now = clock.now_ms();
            let region = mo_login.map_or("", |svc| svc.region());
            let mo = crate::mologin::incoming(rng, &smsc, &from, from_ton, to, text, region, now);
            let key = crate::mologin::redelivery_key(&mo);
            // The MO is stored together with its outcome: one durable write,
            // then the deliver_sm_resp. With MO login off it is stored closed
            // (a later start with MO login on must not answer it then).
            let stored = match mo_login {
                Some(svc) => svc
                    .receive(&mo, &key, MO_REDELIVERY_WINDOW_MS, now)
                    .await
                    .map_err(|e| e.to_string())
                    .map(|h| h.map(Some)),
                None => {
                    let plan = MoPlan::Finish {
                        outcome: "mo_login_off",
                        reply: None,
                    };
                    store
                        .receive_mo(&mo, &key, MO_REDELIVERY_WINDOW_MS, &plan, now)
                        .await
                        .map_err(|e| e.to_string())
                        .map(|o| o.map(|_| None))
                }
            };
            match stored {
                Ok(handled) => {
                    // Test hook: die between storing and answering, as a
                    // crash would (the e2e test shows no login is lost).
                    if handled.is_some() && std::env::var_os(CRASH_AFTER_MO_STORED).is_some() {
                        std::process::abort();
                    }
                    // Durable now: the SMSC may forget it.
                    ack.accept();
                    match handled {
                        None => crate::metrics::mo("redelivered"),
                        Some(h) => {
                            crate::metrics::mo("stored");
                            if let Some(h) = h {
                                crate::metrics::mo(h.as_str());
                                if h == crate::mologin::Handled::Completed {
                                    crate::metrics::get()
                                        .mo_login_latency
                                        .observe(taken.elapsed().as_secs_f64());
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot store MO; SMSC will redeliver");
                    ack.retry_later();
                }
            }
        }
    }
}

/// An MO equal to one stored this recently is a redelivery.
pub const MO_REDELIVERY_WINDOW_MS: i64 = 10 * 60 * 1000;
/// Environment variable that makes the daemon abort right after storing an
/// MO, before its deliver_sm_resp (for the crash test only).
pub const CRASH_AFTER_MO_STORED: &str = "VERIGATE_TEST_CRASH_AFTER_MO_STORED";

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_failing_record_is_retried_until_it_succeeds_or_gives_up() {
        let calls = AtomicU32::new(0);
        let r: Result<(), String> = retry_until(Duration::from_secs(30), || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err("database is locked".to_string())
            } else {
                Ok(())
            }
        })
        .await;
        assert!(r.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        let calls = AtomicU32::new(0);
        let r: Result<(), String> = retry_until(Duration::from_secs(1), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err("disk gone".to_string())
        })
        .await;
        assert_eq!(r.unwrap_err(), "disk gone");
        // 50 + 100 + 200 + 400 ms fit in a second; the next 800 would not.
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn sender_addresses() {
        assert_eq!(address("Verigate").ton, 5);
        assert_eq!(address("+447400123456").ton, 1);
        assert_eq!(address("12345").ton, 3);
    }
}

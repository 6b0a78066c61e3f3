//! Inbound SMPP: what SMSCs send us. [`decode`] turns a bind's deliver_sm
//! and data_sm into receipts and whole MOs (sans-IO, long MOs reassembled);
//! [`run_events`] stores each — a receipt against its outbox message, an MO
//! routed to MO login or stored closed when MO login is off — and only
//! then lets its deliver_sm_resp go, so nothing acknowledged is lost.

pub mod decode;

use crate::clock::Clock;
use crate::mologin::MoLoginService;
use crate::random::Random;
use crate::smpp::SmppEvent;
use crate::store::{MessageState, MoPlan, Store};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::warn;
use verigate_codecs::dlr::{message_id_keys, DlrState};

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
                        .receive_mo(&mo, &key, MO_REDELIVERY_WINDOW_MS, &plan, &[], now)
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

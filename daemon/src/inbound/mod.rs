//! Inbound SMPP: what SMSCs send us. [`decode`] turns a bind's deliver_sm
//! and data_sm into receipts, whole MOs and parts of long MOs (sans-IO);
//! [`run_events`] stores each — a receipt against its outbox message, an MO
//! routed to MO login or stored closed when MO login is off, a part on its
//! own until its MO can be put together from the store — and only then lets
//! its deliver_sm_resp go, so nothing acknowledged is lost. An MO to the
//! number registry's short code goes to the registry's commands.

pub mod decode;

use crate::clock::Clock;
use crate::mologin::{Handled, MoLoginService};
use crate::random::Random;
use crate::registry::mo::RegistryMo;
use crate::smpp::SmppEvent;
use crate::store::{MessageState, MoMessage, MoPart, MoPartGroup, MoPlan, Store};
use decode::Part;
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

/// Who handles MOs: MO login, the registry's short code; either may be off.
#[derive(Debug, Clone, Default)]
pub struct MoHandlers {
    /// MO-SMS login (its short code, and any MO no other takes).
    pub login: Option<Arc<MoLoginService>>,
    /// The registry's subscriber commands (MOs to its short code).
    pub registry: Option<Arc<RegistryMo>>,
    /// Payments by SMS to the relay's short code.
    pub relay: Option<Arc<crate::txrelay::mo::RelayMo>>,
}

impl MoHandlers {
    /// MO login only.
    pub fn login(svc: &MoLoginService) -> MoHandlersRef<'_> {
        MoHandlersRef {
            login: Some(svc),
            registry: None,
            relay: None,
        }
    }

    fn by_ref(&self) -> MoHandlersRef<'_> {
        MoHandlersRef {
            login: self.login.as_deref(),
            registry: self.registry.as_deref(),
            relay: self.relay.as_deref(),
        }
    }
}

/// [`MoHandlers`] borrowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct MoHandlersRef<'a> {
    login: Option<&'a MoLoginService>,
    registry: Option<&'a RegistryMo>,
    relay: Option<&'a crate::txrelay::mo::RelayMo>,
}

impl<'a> MoHandlersRef<'a> {
    /// The registry, if the MO to `dest` is its.
    fn registry_for(&self, dest: &str) -> Option<&'a RegistryMo> {
        self.registry.filter(|r| r.takes(dest))
    }

    /// The relay, if the MO to `dest` is its.
    fn relay_for(&self, dest: &str) -> Option<&'a crate::txrelay::mo::RelayMo> {
        self.relay.filter(|r| r.takes(dest))
    }

    /// The region an MO to `dest` reads a national sender in.
    fn region_for(&self, dest: &str) -> String {
        if let Some(r) = self.relay_for(dest) {
            return r.region().to_string();
        }
        match (self.registry_for(dest), self.login) {
            (Some(r), _) => r.region().to_string(),
            (None, Some(l)) => l.region(),
            (None, None) => String::new(),
        }
    }
}

/// What became of a stored MO, by who took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MoOutcome {
    /// MO login's.
    Login(Handled),
    /// A registry command's.
    Registry(crate::registry::mo::Outcome),
    /// A payment by SMS's.
    Relay(crate::txrelay::mo::Outcome),
    /// Stored closed: nobody takes it.
    Closed,
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
    mo: MoHandlers,
    (clock, rng): (Clock, Random),
    mut events: mpsc::Receiver<SmppEvent>,
) {
    let mut lanes = Vec::with_capacity(EVENT_LANES);
    let mut tasks = Vec::with_capacity(EVENT_LANES);
    for _ in 0..EVENT_LANES {
        let (tx, mut rx) = mpsc::channel::<SmppEvent>(256);
        let store = store.clone();
        let mo = mo.clone();
        let (clock, rng) = (clock.clone(), rng.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                handle_event(&*store, mo.by_ref(), &clock, &rng, ev).await;
            }
        }));
        lanes.push(tx);
    }
    // Long MOs whose last part was stored just before a stop: at start, then
    // now and then (a long MO that failed to store is tried again too).
    let recovery = {
        let (store, mo, clock, rng) = (store.clone(), mo.clone(), clock.clone(), rng.clone());
        tokio::spawn(async move {
            loop {
                if let Err(e) = recover_long_mos(&*store, mo.by_ref(), &clock, &rng).await {
                    warn!(error = %e, "cannot look for complete long MOs");
                }
                tokio::time::sleep(LONG_MO_RECOVERY_EVERY).await;
            }
        })
    };
    while let Some(ev) = events.recv().await {
        let lane = lane_of(&ev);
        if lanes[lane].send(ev).await.is_err() {
            break;
        }
    }
    recovery.abort();
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
        SmppEvent::Mo { from, .. }
        | SmppEvent::MoPart {
            part: Part { from, .. },
            ..
        } => from
            .bytes()
            .filter(u8::is_ascii_digit)
            .collect::<Vec<u8>>()
            .hash(&mut h),
    }
    (h.finish() % EVENT_LANES as u64) as usize
}

async fn handle_event(
    store: &dyn Store,
    mo_login: MoHandlersRef<'_>,
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
            let region = mo_login.region_for(&to);
            let mo = crate::mologin::incoming(rng, &smsc, &from, from_ton, to, text, &region, now);
            match store_mo(store, mo_login, &mo, now).await {
                Ok(handled) => {
                    // Test hook: die between storing and answering, as a
                    // crash would (the e2e test shows no login is lost).
                    if handled.is_some() && std::env::var_os(CRASH_AFTER_MO_STORED).is_some() {
                        std::process::abort();
                    }
                    // Durable now: the SMSC may forget it.
                    ack.accept();
                    count_mo(handled, taken);
                }
                Err(e) => {
                    warn!(error = %e, "cannot store MO; SMSC will redeliver");
                    ack.retry_later();
                }
            }
        }
        SmppEvent::MoPart { smsc, part, ack } => {
            let taken = std::time::Instant::now();
            let now = clock.now_ms();
            let p = stored_part(&smsc, part, now);
            // Stored, then answered at once: the SMSC's window slot is free
            // while the other parts are on their way.
            let whole = match store.store_mo_part(&p).await {
                Ok(whole) => {
                    ack.accept();
                    crate::metrics::mo("part_stored");
                    whole
                }
                Err(e) => {
                    warn!(error = %e, "cannot store MO part; SMSC will redeliver");
                    ack.retry_later();
                    return;
                }
            };
            if let Some(parts) = whole {
                take_long_mo(store, mo_login, rng, &parts, now, taken).await;
            }
        }
    }
}

/// A part as the store keeps it, received from `smsc` at `now`.
fn stored_part(smsc: &str, part: Part<()>, now: crate::store::Millis) -> MoPart {
    MoPart {
        group: MoPartGroup {
            smsc: smsc.to_string(),
            source: part.from,
            dest: part.to,
            reference: part.reference,
            total: part.total,
        },
        seq: part.seq,
        source_ton: part.from_ton,
        data_coding: part.data_coding,
        payload: part.payload,
        received_at: now,
    }
}

/// Stores an MO with its outcome: through the registry (its short code),
/// MO login, or closed when neither takes it (a later start with MO login
/// on must not answer it then). `None` for a redelivery.
async fn store_mo(
    store: &dyn Store,
    handlers: MoHandlersRef<'_>,
    mo: &MoMessage,
    now: crate::store::Millis,
) -> Result<Option<MoOutcome>, String> {
    let key = crate::mologin::redelivery_key(mo);
    if let Some(r) = handlers.relay_for(&mo.dest) {
        return r
            .receive(mo, &key, MO_REDELIVERY_WINDOW_MS, now)
            .await
            .map_err(|e| e.to_string())
            .map(|o| o.map(MoOutcome::Relay));
    }
    if let Some(r) = handlers.registry_for(&mo.dest) {
        return r
            .receive(mo, &key, MO_REDELIVERY_WINDOW_MS, now)
            .await
            .map_err(|e| e.to_string())
            .map(|o| o.map(MoOutcome::Registry));
    }
    match handlers.login {
        Some(svc) => svc
            .receive(mo, &key, MO_REDELIVERY_WINDOW_MS, now)
            .await
            .map_err(|e| e.to_string())
            .map(|h| h.map(MoOutcome::Login)),
        None => {
            let plan = MoPlan::Finish {
                outcome: "mo_login_off",
                reply: None,
            };
            store
                .receive_mo(mo, &key, MO_REDELIVERY_WINDOW_MS, &plan, &[], now)
                .await
                .map_err(|e| e.to_string())
                .map(|o| o.map(|_| MoOutcome::Closed))
        }
    }
}

/// A long MO whose parts are all stored: put together and stored like a
/// whole one (its parts go in the same write). Its parts were answered
/// already; if this fails they stay, and [`recover_long_mos`] tries again.
async fn take_long_mo(
    store: &dyn Store,
    mo_login: MoHandlersRef<'_>,
    rng: &Random,
    parts: &[MoPart],
    now: crate::store::Millis,
    taken: std::time::Instant,
) {
    let region = mo_login.region_for(&parts[0].group.dest);
    let mo = crate::mologin::incoming_long(rng, parts, &region, now);
    match store_mo(store, mo_login, &mo, now).await {
        Ok(handled) => count_mo(handled, taken),
        Err(e) => {
            warn!(error = %e, "cannot store long MO; its parts are kept and it is tried again")
        }
    }
}

/// Long MOs left complete in the store when the daemon stopped between
/// storing their last part and storing the MO: stored now.
pub async fn recover_long_mos(
    store: &dyn Store,
    mo_login: MoHandlersRef<'_>,
    clock: &Clock,
    rng: &Random,
) -> Result<usize, crate::store::StoreError> {
    let groups = store.complete_mo_parts(100).await?;
    for parts in &groups {
        take_long_mo(
            store,
            mo_login,
            rng,
            parts,
            clock.now_ms(),
            std::time::Instant::now(),
        )
        .await;
    }
    Ok(groups.len())
}

/// Counts what became of a stored MO.
fn count_mo(handled: Option<MoOutcome>, taken: std::time::Instant) {
    let Some(h) = handled else {
        crate::metrics::mo("redelivered");
        return;
    };
    crate::metrics::mo("stored");
    match h {
        MoOutcome::Login(h) => {
            crate::metrics::mo(h.as_str());
            if h == Handled::Completed {
                crate::metrics::get()
                    .mo_login_latency
                    .observe(taken.elapsed().as_secs_f64());
            }
        }
        MoOutcome::Registry(outcome) => crate::metrics::mo(&format!("registry_{outcome}")),
        MoOutcome::Relay(outcome) => crate::metrics::mo(&format!("pay_{outcome}")),
        MoOutcome::Closed => {}
    }
}

/// How often complete long MOs left in the store are looked for.
const LONG_MO_RECOVERY_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// An MO equal to one stored this recently is a redelivery.
pub const MO_REDELIVERY_WINDOW_MS: i64 = 10 * 60 * 1000;
/// Environment variable that makes the daemon abort right after storing an
/// MO, before its deliver_sm_resp (for the crash test only).
pub const CRASH_AFTER_MO_STORED: &str = "VERIGATE_TEST_CRASH_AFTER_MO_STORED";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MoLoginConfig;
    use crate::smpp::events::{AckMsg, DeliveryAck, Owed};
    use crate::store::{MoIntent, MoLoginState};
    use verigate_codecs::smpp::CommandStatus;

    async fn setup() -> (Arc<dyn Store>, MoLoginService, String) {
        let (store, svc) = crate::mologin::tests::service_with(MoLoginConfig {
            short_code: "7799".into(),
            ..Default::default()
        })
        .await;
        let acme = store.get_service("acme").await.unwrap().unwrap();
        let now = Clock::system().now_ms();
        let token = svc
            .create(&acme, MoIntent::Login, now)
            .await
            .unwrap()
            .login
            .token;
        (store, svc, token)
    }

    /// Part `seq` of 2 of "LOGIN <token>" padded to two parts, owed as `sequence`.
    fn part(token: &str, seq: u8, sequence: u32, tx: &mpsc::UnboundedSender<AckMsg>) -> SmppEvent {
        let text = format!("LOGIN {token}{}", " ".repeat(200));
        let (a, b) = text.as_bytes().split_at(153);
        SmppEvent::MoPart {
            smsc: Arc::from("smsc"),
            part: Part {
                from: "447400100500".into(),
                from_ton: 1,
                to: "7799".into(),
                reference: 42,
                total: 2,
                seq,
                data_coding: 0,
                payload: if seq == 1 { a } else { b }.to_vec(),
                owed: (),
            },
            ack: DeliveryAck {
                generation: 1,
                sequences: vec![Owed {
                    sequence,
                    data_sm: false,
                }],
                tx: tx.clone(),
                sent: false,
            },
        }
    }

    #[tokio::test]
    async fn each_part_of_a_long_mo_is_answered_as_soon_as_it_is_stored() {
        let (store, svc, token) = setup().await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (clock, rng) = (Clock::system(), Random::os());
        handle_event(
            &*store,
            MoHandlers::login(&svc),
            &clock,
            &rng,
            part(&token, 1, 11, &tx),
        )
        .await;
        // Answered with the other part still to come: no window slot held.
        let ack = rx.try_recv().expect("part 1 answered at once");
        assert_eq!(
            (ack.status, ack.sequences[0].sequence),
            (CommandStatus::ESME_ROK, 11)
        );
        let login = store.get_mo_login(&token).await.unwrap().unwrap();
        assert_eq!(login.state, MoLoginState::Pending);
        handle_event(
            &*store,
            MoHandlers::login(&svc),
            &clock,
            &rng,
            part(&token, 2, 12, &tx),
        )
        .await;
        let ack = rx.try_recv().expect("part 2 answered");
        assert_eq!(
            (ack.status, ack.sequences[0].sequence),
            (CommandStatus::ESME_ROK, 12)
        );
        // Put together from the store: the login completes, nothing is left.
        let login = store.get_mo_login(&token).await.unwrap().unwrap();
        assert_eq!(login.state, MoLoginState::Completed);
        assert_eq!(login.msisdn.as_deref(), Some("+447400100500"));
        assert!(store.complete_mo_parts(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_long_mo_whose_parts_were_stored_before_a_stop_is_taken_after_it() {
        let (store, svc, token) = setup().await;
        let (tx, _rx) = mpsc::unbounded_channel();
        // Both parts stored and answered, then the daemon stopped before
        // the MO itself was stored (as a crash between the two writes).
        for seq in 1..=2 {
            let SmppEvent::MoPart { smsc, part, ack } = part(&token, seq, u32::from(seq), &tx)
            else {
                unreachable!()
            };
            store
                .store_mo_part(&stored_part(&smsc, part, 0))
                .await
                .unwrap();
            ack.accept();
        }
        assert_eq!(
            store.get_mo_login(&token).await.unwrap().unwrap().state,
            MoLoginState::Pending
        );
        let (clock, rng) = (Clock::system(), Random::os());
        assert_eq!(
            recover_long_mos(&*store, MoHandlers::login(&svc), &clock, &rng)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store.get_mo_login(&token).await.unwrap().unwrap().state,
            MoLoginState::Completed
        );
        assert_eq!(
            recover_long_mos(&*store, MoHandlers::login(&svc), &clock, &rng)
                .await
                .unwrap(),
            0
        );
    }
}

//! The sender on virtual time, against a fake gateway.

use super::*;
use crate::store::conformance::{create_service, queued};
use crate::store::sqlite::SqliteStore;
use crate::store::MessageState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

const T0: Millis = 1_800_000_000_000;

/// A gateway whose SMSC throttles: every submit waits `hold` before it is
/// taken. Counts the submits each message got.
#[derive(Debug)]
struct Throttled {
    hold: Duration,
    capacity: usize,
    sends: Mutex<HashMap<String, u32>>,
}

impl Throttled {
    fn new(hold: Duration, capacity: usize) -> Arc<Self> {
        Arc::new(Throttled {
            hold,
            capacity,
            sends: Mutex::default(),
        })
    }

    fn sends(&self) -> HashMap<String, u32> {
        self.sends.lock().unwrap().clone()
    }
}

#[async_trait]
impl SmsGateway for Throttled {
    fn capacity(&self) -> usize {
        self.capacity
    }

    async fn send(&self, msg: &OutboxMessage) -> Sent {
        tokio::time::sleep(self.hold).await;
        let mut sends = self.sends.lock().unwrap();
        let n = sends.entry(msg.id.clone()).or_default();
        *n += 1;
        Sent::Submitted {
            smsc: "fake".into(),
            ids: vec![format!("{}-{n}", msg.id)],
        }
    }
}

async fn store_with(messages: u32) -> (Arc<dyn Store>, Vec<OutboxMessage>) {
    let store = SqliteStore::open_in_memory().await.unwrap();
    create_service(&store, "svc", T0).await;
    let mut queued_msgs = Vec::new();
    for n in 0..messages {
        queued_msgs.push(queued(&store, "svc", n, T0, T0 + 3_600_000).await);
    }
    (Arc::new(store), queued_msgs)
}

fn cfg(lease: Duration) -> SenderConfig {
    SenderConfig {
        lease,
        ..SenderConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_message_throttled_past_its_lease_is_submitted_exactly_once() {
    // Throttled for 90 s against a 60 s lease, with two senders on one
    // outbox: without the extensions the second would claim each message
    // again at 60 s and send it a second time.
    let (store, msgs) = store_with(6).await;
    let gateway = Throttled::new(Duration::from_secs(90), 4);
    let clock = Clock::virtual_at(T0);
    let stop = CancellationToken::new();
    let senders: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(run_sender(
                store.clone(),
                gateway.clone(),
                cfg(Duration::from_secs(60)),
                clock.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(400)).await;
    stop.cancel();
    for s in senders {
        s.await.unwrap();
    }
    let sends = gateway.sends();
    for m in &msgs {
        assert_eq!(sends.get(&m.id), Some(&1), "{} sends: {sends:?}", m.id);
        let after = store.get_message(&m.id).await.unwrap().unwrap();
        assert_eq!(after.state, MessageState::Submitted);
        assert_eq!(after.attempts, 1, "claimed once");
        assert_eq!(after.message_ids, vec![format!("{}-1", m.id)]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_sender_without_a_link_claims_nothing() {
    let (store, msgs) = store_with(2).await;
    let gateway = Throttled::new(Duration::ZERO, 0);
    let stop = CancellationToken::new();
    let sender = tokio::spawn(run_sender(
        store.clone(),
        gateway.clone(),
        cfg(Duration::from_secs(60)),
        Clock::virtual_at(T0),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(120)).await;
    stop.cancel();
    sender.await.unwrap();
    assert!(gateway.sends().is_empty());
    for m in &msgs {
        let after = store.get_message(&m.id).await.unwrap().unwrap();
        assert_eq!((after.state, after.attempts), (MessageState::Queued, 0));
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_the_submits_in_flight_be_recorded() {
    let (store, msgs) = store_with(3).await;
    let gateway = Throttled::new(Duration::from_secs(2), 8);
    let stop = CancellationToken::new();
    let sender = tokio::spawn(run_sender(
        store.clone(),
        gateway.clone(),
        cfg(Duration::from_secs(60)),
        Clock::virtual_at(T0),
        stop.clone(),
    ));
    // Claimed and on the wire, then told to stop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    sender.await.unwrap();
    for m in &msgs {
        let after = store.get_message(&m.id).await.unwrap().unwrap();
        assert_eq!(after.state, MessageState::Submitted, "{}", m.id);
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_record_is_retried_until_it_succeeds_or_gives_up() {
    let calls = AtomicU32::new(0);
    let r = retry_until(Duration::from_secs(30), || async {
        if calls.fetch_add(1, Ordering::SeqCst) < 3 {
            Err(StoreError::database_failed("database is locked"))
        } else {
            Ok(())
        }
    })
    .await;
    assert!(r.is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    let calls = AtomicU32::new(0);
    let r = retry_until(Duration::from_secs(1), || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::database_failed("disk gone"))
    })
    .await;
    assert!(matches!(r, Err(StoreError::Database { context, .. }) if context == "disk gone"));
    // 50 + 100 + 200 + 400 ms fit in a second; the next 800 would not.
    assert_eq!(calls.load(Ordering::SeqCst), 5);

    // A lost lease is final: no retry.
    let calls = AtomicU32::new(0);
    let r = retry_until(Duration::from_secs(30), || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::LeaseLost("claimed again".into()))
    })
    .await;
    assert!(matches!(r, Err(StoreError::LeaseLost(_))));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

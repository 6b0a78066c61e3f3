//! The relay's subscriber directory: lines added and changed in one write;
//! a new IMSI records a SIM change (at the import's date, or now).

use super::*;

/// Every check of this domain, on `store`.
pub async fn run<S: SubscriberStore + RelayKeyStore>(store: &S) {
    directory(store).await;
    keys(store).await;
    counters(store).await;
}

/// Counters are handed out once each, in order, per initial key id.
pub async fn counters<S: SubscriberStore + RelayKeyStore>(store: &S) {
    let (a, b) = ("CONF000000000001", "CONF000000000002");
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(store.allocate_counter(a).await.unwrap().unwrap());
    }
    assert_eq!(got, [1, 2, 3, 4, 5]);
    assert_eq!(
        store.allocate_counter(b).await.unwrap(),
        Some(1),
        "per initial key id"
    );
    // Many at once: all different.
    let all: Vec<u32> = futures::future::join_all((0..50).map(|_| store.allocate_counter(a)))
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    let distinct: std::collections::HashSet<u32> = all.iter().copied().collect();
    assert_eq!(distinct.len(), 50);
    assert!(all.iter().all(|c| *c > 5));
}

fn key(kind: &str, slot: &str, state: &str, at: Millis) -> StoredKey {
    StoredKey {
        kind: kind.into(),
        slot: slot.into(),
        wrapped: format!("wrapped-{kind}-{slot}").into_bytes(),
        kcv: format!("KCV{slot}"),
        state: state.into(),
        created_at: at,
        retire_at: None,
    }
}

/// Components replace their slot and go with the activation; an active
/// zone key retires only when the rotation says until when; one initial key.
pub async fn keys<S: SubscriberStore + RelayKeyStore>(store: &S) {
    let t = T_TXRELAY + 1_000_000;
    store
        .put_component(&key("component", "A", "pending", t))
        .await
        .unwrap();
    store
        .put_component(&key("component", "A", "pending", t + 1))
        .await
        .unwrap();
    store
        .put_component(&key("component", "B", "pending", t + 1))
        .await
        .unwrap();
    let comps: Vec<StoredKey> = store
        .relay_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.kind == "component")
        .collect();
    assert_eq!(comps.len(), 2, "one per slot: {comps:?}");
    assert_eq!(
        comps.iter().find(|k| k.slot == "A").unwrap().created_at,
        t + 1,
        "replaced"
    );
    store
        .activate_zone(&key("zone", "1", "active", t + 2), None)
        .await
        .unwrap();
    let all = store.relay_keys().await.unwrap();
    assert_eq!(
        all.iter().map(|k| k.kind.as_str()).collect::<Vec<_>>(),
        ["zone"],
        "components gone"
    );
    assert!(matches!(
        store
            .activate_zone(&key("zone", "2", "active", t + 3), None)
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .activate_zone(&key("zone", "2", "active", t + 3), Some(t + 100))
        .await
        .unwrap();
    let zones: Vec<(String, String, Option<Millis>)> = store
        .relay_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.slot, k.state, k.retire_at))
        .collect();
    assert_eq!(
        zones,
        [
            ("2".into(), "active".into(), None),
            ("1".into(), "retiring".into(), Some(t + 100))
        ]
    );
    // A later rotation drops the retired key past its end.
    store
        .activate_zone(&key("zone", "3", "active", t + 200), Some(t + 300))
        .await
        .unwrap();
    let slots: Vec<String> = store
        .relay_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.slot)
        .collect();
    assert_eq!(slots, ["3", "2"]);
    store
        .put_initial_key(&key("initial", "1234567890123456", "active", t))
        .await
        .unwrap();
    store
        .put_initial_key(&key("initial", "1234567890123457", "active", t + 1))
        .await
        .unwrap();
    let initial: Vec<String> = store
        .relay_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.kind == "initial")
        .map(|k| k.slot)
        .collect();
    assert_eq!(initial, ["1234567890123457"], "one initial key");
}

fn line(msisdn: &str, imsi: &str, status: LineStatus, changed: Option<Millis>) -> Subscriber {
    Subscriber {
        msisdn: msisdn.into(),
        imsi: imsi.into(),
        status,
        sim_changed_at: changed,
        updated_at: 0,
    }
}

/// Add, change, change the SIM, leave alone.
pub async fn directory<S: SubscriberStore + RelayKeyStore>(store: &S) {
    let t = T_TXRELAY;
    let (a, b) = ("+15550011001", "+15550011002");
    let first = [
        line(a, "310150000000001", LineStatus::Active, None),
        line(b, "310150000000002", LineStatus::Active, Some(t - 1000)),
    ];
    let u = store.upsert_subscribers(&first, t).await.unwrap();
    assert_eq!(
        u,
        Upserted {
            added: 2,
            changed: 0,
            sim_changes: 0
        }
    );
    let got = store.get_subscriber(a).await.unwrap().unwrap();
    assert_eq!(
        (
            got.imsi.as_str(),
            got.status,
            got.sim_changed_at,
            got.updated_at
        ),
        ("310150000000001", LineStatus::Active, None, t)
    );
    assert_eq!(
        store
            .get_subscriber(b)
            .await
            .unwrap()
            .unwrap()
            .sim_changed_at,
        Some(t - 1000)
    );
    assert_eq!(store.get_subscriber("+15550011099").await.unwrap(), None);
    // The same file again: nothing changes.
    let u = store.upsert_subscribers(&first, t + 10).await.unwrap();
    assert_eq!(u, Upserted::default());
    assert_eq!(
        store.get_subscriber(a).await.unwrap().unwrap().updated_at,
        t
    );
    // A new SIM for a (no date given: now), a suspension for b.
    let next = [
        line(a, "310150000000009", LineStatus::Active, None),
        line(b, "310150000000002", LineStatus::Suspended, None),
    ];
    let u = store.upsert_subscribers(&next, t + 20).await.unwrap();
    assert_eq!(
        u,
        Upserted {
            added: 0,
            changed: 2,
            sim_changes: 1
        }
    );
    let got = store.get_subscriber(a).await.unwrap().unwrap();
    assert_eq!(
        (got.imsi.as_str(), got.sim_changed_at),
        ("310150000000009", Some(t + 20))
    );
    let got = store.get_subscriber(b).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.sim_changed_at),
        (LineStatus::Suspended, Some(t - 1000)),
        "a status change keeps the SIM date"
    );
}

//! The relay's subscriber directory: lines added and changed in one write;
//! a new IMSI records a SIM change (at the import's date, or now).

use super::*;

/// Every check of this domain, on `store`.
pub async fn run<S: Store>(store: &S) {
    directory(store).await;
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
pub async fn directory<S: Store>(store: &S) {
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

//! Rate limits and the pruning of old windows and idempotency keys.

use super::*;

/// Every check of this domain, on `store`.
pub async fn run<S: SmsPath>(store: &S) {
    rate_limits(store).await;
    pruning(store).await;
}

/// Fixed windows: hits counted up to the limit, refused after, reset at the
/// window end; keys independent.
pub async fn rate_limits<S: RateLimitStore>(store: &S) {
    let key = "conf:rate:number:+15550003001";
    for (i, now) in [10_500, 10_600, 10_999].into_iter().enumerate() {
        let d = store.rate_hit(key, 3, 1_000, now).await.expect("rate_hit");
        assert!(d.allowed, "hit {} of 3 is allowed", i + 1);
        assert_eq!(d.count, i as u32 + 1, "count includes the allowed hit");
        assert_eq!(
            d.reset_at, 11_000,
            "the window [10000, 11000) ends at 11000"
        );
    }
    let d = store
        .rate_hit(key, 3, 1_000, 10_999)
        .await
        .expect("rate_hit");
    assert!(!d.allowed, "the 4th hit in the window is refused");
    assert_eq!(
        (d.count, d.reset_at),
        (3, 11_000),
        "a refused hit is not counted"
    );
    let d = store
        .rate_hit(key, 3, 1_000, 11_000)
        .await
        .expect("rate_hit");
    assert!(d.allowed, "a new window starts at 11000");
    assert_eq!(
        (d.count, d.reset_at),
        (1, 12_000),
        "counting restarts in the new window"
    );

    let other = "conf:rate:ip:192.0.2.1";
    let d = store
        .rate_hit(other, 3, 1_000, 10_999)
        .await
        .expect("rate_hit");
    assert!(d.allowed && d.count == 1, "keys are independent, got {d:?}");
    let d = store
        .rate_hit("conf:rate:zero", 0, 1_000, 10_000)
        .await
        .expect("rate_hit");
    assert_eq!(
        (d.allowed, d.count, d.reset_at),
        (false, 0, 11_000),
        "limit 0 refuses everything"
    );

    let hour = 3_600_000;
    let now = 1_700_000_123_456;
    let start = now - now % hour;
    let d = store
        .rate_hit("conf:rate:hour", 1, hour, now)
        .await
        .expect("rate_hit");
    assert_eq!(
        (d.allowed, d.count, d.reset_at),
        (true, 1, start + hour),
        "an hour window"
    );
    let d = store
        .rate_hit("conf:rate:hour", 1, hour, start + hour - 1)
        .await
        .expect("rate_hit");
    assert!(!d.allowed, "limit 1: the second hit in the hour is refused");

    let hits = futures::future::join_all(
        (0..10).map(|_| store.rate_hit("conf:rate:race", 4, 1_000, 50_000)),
    )
    .await;
    let allowed = hits
        .into_iter()
        .map(|d| d.expect("racing rate_hit"))
        .filter(|d| d.allowed)
        .count();
    assert_eq!(allowed, 4, "racing hits: exactly the limit is allowed");

    // Several limits in one call: counted in order up to the first refusal.
    let hit = |key, limit| RateHit {
        key,
        limit,
        window_ms: 1_000,
    };
    let batch = [
        hit("conf:rate:batch:a", 5),
        hit("conf:rate:batch:b", 1),
        hit("conf:rate:batch:c", 5),
    ];
    let first = store.rate_hits(&batch, 70_000).await.expect("rate_hits");
    assert_eq!(
        first
            .iter()
            .map(|d| (d.allowed, d.count))
            .collect::<Vec<_>>(),
        [(true, 1), (true, 1), (true, 1)],
        "all three counted"
    );
    let second = store.rate_hits(&batch, 70_001).await.expect("rate_hits");
    assert_eq!(
        second
            .iter()
            .map(|d| (d.allowed, d.count))
            .collect::<Vec<_>>(),
        [(true, 2), (false, 1)],
        "stops at the refused limit"
    );
    let c = store
        .rate_hit("conf:rate:batch:c", 5, 1_000, 70_002)
        .await
        .expect("rate_hit");
    assert_eq!(c.count, 2, "the limit after the refusal was not counted");
    assert!(store
        .rate_hits(&[], 70_000)
        .await
        .expect("empty")
        .is_empty());
}

/// Pruning drops rate windows and idempotency keys older than the cut-offs
/// and keeps newer ones.
pub async fn pruning<S: SmsPath>(store: &S) {
    let t = T_VERIFY + 900_000;
    let svc = "conf-prune";
    create_service(store, svc, t).await;
    let hour = 3_600_000;
    let old_t = t - 2 * hour;
    for (key, at) in [("conf:prune:old", old_t), ("conf:prune:new", t)] {
        let d = store.rate_hit(key, 1, hour, at).await.expect("rate_hit");
        assert!(d.allowed);
    }
    for (tag, to, at) in [
        ("prune_old", "+15550009001", old_t),
        ("prune_new", "+15550009002", t),
    ] {
        let (v, m) = pair(tag, svc, to, at);
        let rec = IdempotencyRecord {
            service: svc.to_owned(),
            key: tag.to_owned(),
            request_hash: b"h".to_vec(),
            verification_id: v.id.clone(),
        };
        store
            .insert_verification(&v, (&m).into(), Some(&rec))
            .await
            .expect("insert");
    }
    let deleted = store.prune_windows(t - hour).await.expect("prune_windows")
        + store
            .forget_idempotency_keys(t - hour)
            .await
            .expect("forget_idempotency_keys");
    assert!(
        deleted >= 2,
        "the old window and the old key, got {deleted}"
    );
    let d = store
        .rate_hit("conf:prune:old", 1, hour, old_t)
        .await
        .expect("rate_hit");
    assert!(d.allowed && d.count == 1, "the old window is gone: {d:?}");
    let d = store
        .rate_hit("conf:prune:new", 1, hour, t)
        .await
        .expect("rate_hit");
    assert!(!d.allowed, "the new window is kept");
    assert_eq!(
        store.get_idempotency(svc, "prune_old").await.expect("get"),
        None,
        "the old key is gone"
    );
    assert!(
        store
            .get_idempotency(svc, "prune_new")
            .await
            .expect("get")
            .is_some(),
        "the new key is kept"
    );
}

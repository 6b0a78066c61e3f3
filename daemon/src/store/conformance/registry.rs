//! The number-binding registry: app platforms, idempotent binds, purges
//! that notify each bound app in the same write, recycled numbers.

use super::*;

/// Every check of this domain, on `store`.
pub async fn run<S: RegistryStore + WebhookStore + ServiceStore + RetentionStore>(store: &S) {
    registry(store).await;
    moves(store).await;
}

/// Apps, binds and unbinds, purges with their notifications, recycling.
pub async fn registry<S: RegistryStore + WebhookStore + ServiceStore + RetentionStore>(store: &S) {
    let t = T_REGISTRY;
    let app = |service: &str, url: &str| RegistryApp {
        service: service.into(),
        notify_url: url.into(),
        created_at: t,
    };
    for (code, url) in [
        ("conf-reg-a", "https://a.example/registry"),
        ("conf-reg-b", "https://b.example/registry"),
        ("conf-reg-c", ""),
    ] {
        create_service(store, code, t).await;
        store
            .add_registry_app(&app(code, url))
            .await
            .expect("add_registry_app");
    }
    assert!(matches!(
        store
            .add_registry_app(&app("conf-reg-a", "https://x"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    // Pointed elsewhere and back.
    assert!(store
        .set_registry_app_url("conf-reg-a", "https://a2.example/registry")
        .await
        .unwrap());
    assert_eq!(
        store
            .get_registry_app("conf-reg-a")
            .await
            .unwrap()
            .unwrap()
            .notify_url,
        "https://a2.example/registry"
    );
    assert!(store
        .set_registry_app_url("conf-reg-a", "https://a.example/registry")
        .await
        .unwrap());
    assert!(!store
        .set_registry_app_url("conf-reg-nope", "https://x")
        .await
        .unwrap());
    assert!(
        store
            .add_registry_app(&app("conf-reg-nope", "https://x"))
            .await
            .is_err(),
        "an app platform must be a service"
    );
    assert_eq!(
        store.get_registry_app("conf-reg-b").await.unwrap(),
        Some(app("conf-reg-b", "https://b.example/registry"))
    );
    let listed: Vec<String> = store
        .list_registry_apps()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.service)
        .filter(|s| s.starts_with("conf-reg-"))
        .collect();
    assert_eq!(listed, ["conf-reg-a", "conf-reg-b", "conf-reg-c"]);

    let n = "+15550008001";
    for s in ["conf-reg-b", "conf-reg-a", "conf-reg-c"] {
        assert!(
            store.bind(n, s, t + 1).await.unwrap(),
            "a first bind is new"
        );
    }
    assert!(
        !store.bind(n, "conf-reg-a", t + 2).await.unwrap(),
        "binding again changes nothing"
    );
    assert!(store
        .bind("+15550008002", "conf-reg-a", t + 1)
        .await
        .unwrap());
    let bound = store.bindings_of(n).await.unwrap();
    let services: Vec<&str> = bound.iter().map(|b| b.service.as_str()).collect();
    assert_eq!(services, ["conf-reg-a", "conf-reg-b", "conf-reg-c"]);
    assert_eq!(bound[0].bound_at, t + 1, "the first bind's time stands");
    // The app's own unbind, idempotent.
    assert!(store.bind(n, "conf-reg-a", t + 3).await.is_ok());
    assert!(store.unbind("+15550008002", "conf-reg-a").await.unwrap());
    assert!(!store.unbind("+15550008002", "conf-reg-a").await.unwrap());

    // The subscriber unbinds one app: only it goes, and only it is told.
    let one = Purge {
        msisdn: n,
        only: Some("conf-reg-b"),
        recycled: false,
        kind: "unbind",
        event_id: "evt_conf_reg_1",
        notify_for: 3 * 86_400_000,
        bound_before: None,
    };
    let purged = store.purge(&one, t + 10).await.unwrap();
    assert_eq!(
        (purged.services, purged.notified),
        (vec!["conf-reg-b".to_string()], 1)
    );
    // The number is recycled: every binding goes, each app with a URL is
    // told, the date is recorded.
    let all = Purge {
        msisdn: n,
        only: None,
        recycled: true,
        kind: "recycled",
        event_id: "evt_conf_reg_2",
        notify_for: 3 * 86_400_000,
        bound_before: None,
    };
    let purged = store.purge(&all, t + 20).await.unwrap();
    assert_eq!(purged.services, ["conf-reg-a", "conf-reg-c"]);
    assert_eq!(purged.notified, 1, "conf-reg-c has no notify URL");
    assert!(store.bindings_of(n).await.unwrap().is_empty());
    let claimed = store.claim_webhooks(t + 20, 1000, 60_000).await.unwrap();
    let mut told: Vec<(String, String, String, Option<Millis>)> = claimed
        .iter()
        .filter(|j| j.job.service.starts_with("conf-reg-"))
        .map(|j| {
            let v: serde_json::Value = serde_json::from_str(&j.job.body).unwrap();
            (
                j.job.url.clone(),
                v["type"].as_str().unwrap().to_string(),
                v["data"]["msisdn"].as_str().unwrap().to_string(),
                j.job.deliver_until.map(|d| d - j.job.next_attempt_at),
            )
        })
        .collect();
    told.sort();
    assert_eq!(
        told,
        [
            (
                "https://a.example/registry".to_string(),
                "recycled".to_string(),
                n.to_string(),
                Some(3 * 86_400_000),
            ),
            (
                "https://b.example/registry".to_string(),
                "unbind".to_string(),
                n.to_string(),
                Some(3 * 86_400_000),
            ),
        ]
    );
    // Waiting notifications are listed for operators, by service.
    let waiting = store
        .pending_webhooks("registry", Some("conf-reg-a"), 10)
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0].url, "https://a.example/registry");
    for j in &claimed {
        store.complete_webhook(&j.lease).await.unwrap();
    }
    assert!(store
        .pending_webhooks("registry", Some("conf-reg-a"), 10)
        .await
        .unwrap()
        .is_empty());
    // Recycled at t+20: a check from before says yes, from after says no.
    assert!(store.recycled_since(n, t + 20).await.unwrap());
    assert!(store.recycled_since(n, t).await.unwrap());
    assert!(!store.recycled_since(n, t + 21).await.unwrap());
    assert!(!store.recycled_since("+15550008002", t).await.unwrap());
    // Recycling a number bound to nothing still records the date.
    let bare = Purge {
        msisdn: "+15550008003",
        ..all.clone()
    };
    assert_eq!(store.purge(&bare, t + 30).await.unwrap().services.len(), 0);
    assert!(store.recycled_since("+15550008003", t + 30).await.unwrap());
    // Recycled on a past date: what the new owner bound since stays.
    let m = "+15550008004";
    store.bind(m, "conf-reg-a", t + 100).await.unwrap();
    store.bind(m, "conf-reg-b", t + 300).await.unwrap();
    let dated = Purge {
        msisdn: m,
        bound_before: Some(t + 200),
        ..all.clone()
    };
    let purged = store.purge(&dated, t + 200).await.unwrap();
    assert_eq!(purged.services, ["conf-reg-a"]);
    let kept: Vec<String> = store
        .bindings_of(m)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.service)
        .collect();
    assert_eq!(kept, ["conf-reg-b"]);
    let began = store.records_began().await.unwrap().expect("records exist");
    assert!(began <= t, "{began}");
}

/// A move offered by the old number and taken by the new one: the
/// bindings move (one the new number had already stays), each app is told
/// `number_updated`, the offer is used up; another number, a late take or
/// a used offer moves nothing.
pub async fn moves<S: RegistryStore + WebhookStore + ServiceStore + RetentionStore>(store: &S) {
    let t = T_REGISTRY + 1_000_000;
    let (old, new) = ("+15550009001", "+15550009002");
    store.bind(old, "conf-reg-a", t).await.unwrap();
    store.bind(old, "conf-reg-b", t).await.unwrap();
    store.bind(new, "conf-reg-b", t - 5).await.unwrap();
    let offer = MoveOffer {
        token: "CONFMOV1".into(),
        old_msisdn: old.into(),
        new_msisdn: new.into(),
        created_at: t,
        expires_at: t + 1000,
    };
    store.offer_move(&offer).await.expect("offer_move");
    assert!(matches!(
        store.offer_move(&offer).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.move_offer("CONFMOV1").await.unwrap(),
        Some(offer.clone())
    );
    assert_eq!(store.move_offer("CONFNONE").await.unwrap(), None);
    let take = |token: &'static str, n: &'static str| TakeMove {
        token,
        new_msisdn: n,
        event_id: "evt_conf_move",
        notify_for: 86_400_000,
    };
    assert_eq!(
        store
            .take_move(&take("CONFMOV1", old), t + 1)
            .await
            .unwrap(),
        Moved::NoOffer,
        "only the offer's new number takes it"
    );
    let moved = store
        .take_move(&take("CONFMOV1", new), t + 2)
        .await
        .unwrap();
    assert_eq!(
        moved,
        Moved::Moved(MoveDone {
            old_msisdn: old.into(),
            services: vec!["conf-reg-a".into(), "conf-reg-b".into()],
            notified: 2,
        })
    );
    assert!(store.bindings_of(old).await.unwrap().is_empty());
    let now_bound = store.bindings_of(new).await.unwrap();
    let services: Vec<&str> = now_bound.iter().map(|b| b.service.as_str()).collect();
    assert_eq!(services, ["conf-reg-a", "conf-reg-b"]);
    assert_eq!(
        now_bound[1].bound_at,
        t - 5,
        "the new number's own binding stands"
    );
    let told = store
        .pending_webhooks("registry", Some("conf-reg-a"), 10)
        .await
        .unwrap();
    let body: serde_json::Value = told
        .iter()
        .map(|j| serde_json::from_str::<serde_json::Value>(&j.body).unwrap())
        .find(|b| b["type"] == "number_updated")
        .expect("conf-reg-a told of the move");
    assert_eq!(body["id"], "evt_conf_move-conf-reg-a");
    assert_eq!(
        (body["data"]["old"].as_str(), body["data"]["new"].as_str()),
        (Some(old), Some(new))
    );
    assert_eq!(
        store
            .take_move(&take("CONFMOV1", new), t + 3)
            .await
            .unwrap(),
        Moved::NoOffer,
        "used up"
    );
    // Late: refused, and the offer is gone.
    store
        .offer_move(&MoveOffer {
            token: "CONFMOV2".into(),
            ..offer.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .take_move(&take("CONFMOV2", new), t + 1001)
            .await
            .unwrap(),
        Moved::Expired
    );
    assert_eq!(store.move_offer("CONFMOV2").await.unwrap(), None);
    // Offers never taken go once expired.
    for (token, expires_at) in [("CONFMOV3", t + 1000), ("CONFMOV4", t + 5000)] {
        store
            .offer_move(&MoveOffer {
                token: token.into(),
                expires_at,
                ..offer.clone()
            })
            .await
            .unwrap();
    }
    store
        .prune_batch(Retained::MoveOffers, t + 1001, 1000)
        .await
        .unwrap();
    assert_eq!(store.move_offer("CONFMOV3").await.unwrap(), None);
    assert!(store.move_offer("CONFMOV4").await.unwrap().is_some());
    // A move both of whose numbers the caller proved: no offer needed.
    let third = "+15550009003";
    let moved = store
        .move_bindings(new, third, "evt_conf_move2", 86_400_000, t + 6)
        .await
        .unwrap();
    assert_eq!((moved.services.len(), moved.notified), (2, 2), "{moved:?}");
    assert!(store.bindings_of(new).await.unwrap().is_empty());
    assert_eq!(store.bindings_of(third).await.unwrap().len(), 2);
    for j in store.claim_webhooks(t + 10, 1000, 60_000).await.unwrap() {
        if j.job.service.starts_with("conf-reg-") {
            store.complete_webhook(&j.lease).await.unwrap();
        }
    }
}

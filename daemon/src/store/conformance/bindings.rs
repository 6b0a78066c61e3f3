//! The app side's bindings: pending until confirmed, one active binding
//! per number and app, reports to the carrier queued in the write that
//! changes the binding, registry notifications applied once.

use super::*;

/// Every check of this domain, on `store`.
pub async fn run<S: BindingsStore + WebhookStore + ServiceStore + RetentionStore>(store: &S) {
    confirm_and_remove(store).await;
    registry_events(store).await;
}

fn binding(id: &str, account: &str, msisdn: &str, at: Millis) -> AppBinding {
    AppBinding {
        id: id.into(),
        service: "conf-app".into(),
        account_ref: account.into(),
        msisdn: msisdn.into(),
        state: AppBindingState::Pending,
        verification_id: format!("vf_{id}"),
        created_at: at,
        updated_at: at,
    }
}

fn report(id: &str, at: Millis) -> WebhookJob {
    WebhookJob {
        method: HttpMethod::Put,
        credential: Some("bindings:conf-app".into()),
        topic: Some("bindings".into()),
        deliver_until: Some(at + 86_400_000),
        ..WebhookJob::post(
            id.into(),
            "conf-app",
            "https://carrier.example/v1/registry/bindings/x/conf-app",
            "{}".into(),
            at,
        )
    }
}

async fn reports<S: BindingsStore + WebhookStore + ServiceStore + RetentionStore>(
    store: &S,
) -> Vec<String> {
    store
        .pending_webhooks("bindings", Some("conf-app"), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect()
}

/// Pending → active with its report; one active binding per number; a
/// removal reports only an active binding; listings by account or number.
pub async fn confirm_and_remove<S: BindingsStore + WebhookStore + ServiceStore + RetentionStore>(
    store: &S,
) {
    let t = T_BINDINGS;
    create_service(store, "conf-app", t).await;
    let n = "+15550010001";
    let a = binding("bnd_conf_a", "acct-1", n, t);
    let b = binding("bnd_conf_b", "acct-2", n, t + 1);
    store
        .create_app_binding(&a)
        .await
        .expect("create_app_binding");
    store
        .create_app_binding(&b)
        .await
        .expect("create_app_binding");
    assert!(matches!(
        store.create_app_binding(&a).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.get_app_binding("conf-app", &a.id).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        store.get_app_binding("other", &a.id).await.unwrap(),
        None,
        "by service"
    );
    let active = store
        .activate_app_binding("conf-app", &a.id, &report("wh_conf_bind_a", t + 5), t + 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (active.state, active.updated_at),
        (AppBindingState::Active, t + 5)
    );
    assert_eq!(
        reports(store).await,
        ["wh_conf_bind_a"],
        "the bind report in the same write"
    );
    // Again: as it is, nothing more queued.
    let again = store
        .activate_app_binding("conf-app", &a.id, &report("wh_conf_bind_a2", t + 6), t + 6)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, active);
    assert_eq!(reports(store).await.len(), 1);
    // The number is another account's already.
    let clash = store
        .activate_app_binding("conf-app", &b.id, &report("wh_conf_bind_b", t + 7), t + 7)
        .await;
    assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
    assert_eq!(
        reports(store).await.len(),
        1,
        "a refused write queues nothing"
    );
    assert_eq!(
        store
            .activate_app_binding("conf-app", "bnd_conf_none", &report("wh_x", t), t)
            .await
            .unwrap(),
        None
    );
    let by_number = store
        .list_app_bindings("conf-app", BindingFilter::Msisdn(n), 10)
        .await
        .unwrap();
    let ids: Vec<&str> = by_number.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, ["bnd_conf_b", "bnd_conf_a"], "newest first");
    let by_account = store
        .list_app_bindings("conf-app", BindingFilter::Account("acct-1"), 10)
        .await
        .unwrap();
    assert_eq!(by_account, vec![active.clone()]);
    // Removing a pending one reports nothing; an active one, its unbind.
    let gone = store
        .remove_app_binding("conf-app", &b.id, &report("wh_conf_unbind_b", t + 8))
        .await
        .unwrap();
    assert_eq!(gone.map(|g| g.state), Some(AppBindingState::Pending));
    assert_eq!(reports(store).await.len(), 1);
    let gone = store
        .remove_app_binding("conf-app", &a.id, &report("wh_conf_unbind_a", t + 9))
        .await
        .unwrap();
    assert_eq!(gone, Some(active));
    assert_eq!(reports(store).await, ["wh_conf_bind_a", "wh_conf_unbind_a"]);
    assert_eq!(
        store
            .remove_app_binding("conf-app", &a.id, &report("wh_conf_unbind_a3", t + 9))
            .await
            .unwrap(),
        None
    );
    for j in store.claim_webhooks(t + 100, 100, 60_000).await.unwrap() {
        if j.job.service == "conf-app" {
            store.complete_webhook(&j.lease).await.unwrap();
        }
    }
    // Retention: pending bindings asked for before the cut go; active ones stay.
    store
        .create_app_binding(&binding("bnd_conf_old", "acct-9", "+15550010009", t + 50))
        .await
        .unwrap();
    store
        .create_app_binding(&binding("bnd_conf_new", "acct-9", "+15550010009", t + 500))
        .await
        .unwrap();
    store
        .prune_batch(Retained::PendingBindings, t + 100, 1000)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_app_binding("conf-app", "bnd_conf_old")
            .await
            .unwrap(),
        None
    );
    assert!(store
        .get_app_binding("conf-app", "bnd_conf_new")
        .await
        .unwrap()
        .is_some());
}

/// Removed and moved bindings, each event once, with the account server's
/// webhooks in the same write.
pub async fn registry_events<S: BindingsStore + WebhookStore + ServiceStore + RetentionStore>(
    store: &S,
) {
    let t = T_BINDINGS + 1_000_000;
    let (n, m, k) = ("+15550010002", "+15550010003", "+15550010004");
    for (id, acct, num) in [
        ("bnd_conf_c", "acct-3", n),
        ("bnd_conf_d", "acct-4", m),
        ("bnd_conf_e", "acct-5", k),
    ] {
        store
            .create_app_binding(&binding(id, acct, num, t))
            .await
            .unwrap();
        store
            .activate_app_binding("conf-app", id, &report(&format!("wh_conf_{id}"), t), t)
            .await
            .unwrap();
    }
    let hook = "https://accounts.example/hook";
    let removed = RegistryEvent {
        service: "conf-app",
        event_id: "evt_conf_1-conf-app",
        change: RegistryChange::Removed {
            msisdn: n,
            reason: "recycled",
        },
        at: t + 10,
        account_hook: Some(hook),
    };
    let applied = store.apply_registry_event(&removed).await.unwrap();
    assert!(
        matches!(&applied, EventApplied::Applied(b) if b.len() == 1 && b[0].id == "bnd_conf_c")
    );
    assert_eq!(
        store
            .get_app_binding("conf-app", "bnd_conf_c")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.apply_registry_event(&removed).await.unwrap(),
        EventApplied::Duplicate,
        "the same event id again changes nothing"
    );
    // Moved: the binding follows; another account's binding of the new
    // number gives way.
    let moved = RegistryEvent {
        event_id: "evt_conf_2-conf-app",
        change: RegistryChange::Moved { old: m, new: k },
        at: t + 20,
        ..removed.clone()
    };
    assert!(matches!(
        store.apply_registry_event(&moved).await.unwrap(),
        EventApplied::Applied(b) if b.len() == 1
    ));
    let d = store
        .get_app_binding("conf-app", "bnd_conf_d")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.msisdn.as_str(), d.updated_at), (k, t + 20));
    assert_eq!(
        store
            .get_app_binding("conf-app", "bnd_conf_e")
            .await
            .unwrap(),
        None
    );
    // An event for a number bound to nothing is still recorded once.
    let nothing = RegistryEvent {
        event_id: "evt_conf_3-conf-app",
        change: RegistryChange::Removed {
            msisdn: "+15550010099",
            reason: "unbind",
        },
        ..removed.clone()
    };
    assert_eq!(
        store.apply_registry_event(&nothing).await.unwrap(),
        EventApplied::Applied(Vec::new())
    );
    // The account server's webhooks: one per changed binding.
    let hooks: Vec<(String, String)> = store
        .claim_webhooks(t + 100, 100, 60_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.job.url == hook)
        .map(|j| {
            let v: serde_json::Value = serde_json::from_str(&j.job.body).unwrap();
            (
                v["type"].as_str().unwrap().to_string(),
                v["data"]["account_ref"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Retention: applied event ids go after the cut; then the same id
    // would apply again (the carrier stopped retrying long before).
    store
        .prune_batch(Retained::RegistryEvents, t + 11, 1000)
        .await
        .unwrap();
    assert!(matches!(
        store.apply_registry_event(&removed).await.unwrap(),
        EventApplied::Applied(b) if b.is_empty()
    ));
    assert_eq!(
        hooks,
        [
            ("binding.removed".to_string(), "acct-3".to_string()),
            ("binding.removed".to_string(), "acct-5".to_string()),
            ("binding.moved".to_string(), "acct-4".to_string())
        ]
    );
}

//! Services and API keys.

use super::*;

/// Every check of this domain, on `store`.
pub async fn run<S: ServiceStore>(store: &S) {
    services_and_api_keys(store).await;
}

/// Services (create, conflict, get, list by code, settings) and API keys
/// (conflicts, lookup by hash, rotation).
pub async fn services_and_api_keys<S: ServiceStore>(store: &S) {
    let t = T_SERVICES;
    create_service(store, "conf-svc-b", t).await;
    create_service(store, "conf-svc-a", t + 1).await;
    let dup = store.create_service(&service("conf-svc-a", t + 2)).await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "a duplicate service code is a Conflict, got {dup:?}"
    );

    let a = store.get_service("conf-svc-a").await.expect("get_service");
    assert_eq!(
        a,
        Some(service("conf-svc-a", t + 1)),
        "get_service returns the stored service, settings included"
    );
    assert_eq!(
        store
            .get_service("conf-svc-none")
            .await
            .expect("get_service"),
        None,
        "unknown service is None"
    );

    let all = store.list_services().await.expect("list_services");
    let codes: Vec<&str> = all.iter().map(|s| s.code.as_str()).collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    assert_eq!(codes, sorted, "list_services is ordered by code");
    let pos_a = codes
        .iter()
        .position(|c| *c == "conf-svc-a")
        .expect("list_services includes conf-svc-a");
    let pos_b = codes
        .iter()
        .position(|c| *c == "conf-svc-b")
        .expect("list_services includes conf-svc-b");
    assert!(pos_a < pos_b, "conf-svc-a sorts before conf-svc-b");

    let settings =
        serde_json::json!({ "webhook": { "url": "https://example.invalid/hook" }, "n": [1, 2, 3] });
    store
        .update_service_settings("conf-svc-a", &settings)
        .await
        .expect("update_service_settings");
    let a = store
        .get_service("conf-svc-a")
        .await
        .expect("get_service")
        .expect("conf-svc-a exists");
    assert_eq!(
        a.settings, settings,
        "update_service_settings replaces the settings"
    );
    assert_eq!(
        a.name, "Service conf-svc-a",
        "update_service_settings keeps the name"
    );
    let missing = store
        .update_service_settings("conf-svc-none", &settings)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "settings of an unknown service: NotFound, got {missing:?}"
    );

    let key = |id: &str, hash: &[u8], at: Millis| ApiKeyRecord {
        key_id: id.to_owned(),
        service: "conf-svc-a".to_owned(),
        hash: hash.to_vec(),
        created_at: at,
        revoked_at: None,
    };
    let k1 = key("conf-k1", b"hash-k1", t + 10);
    let k2 = key("conf-k2", b"hash-k2", t + 11);
    let k3 = key("conf-k3", b"hash-k3", t + 12);
    for k in [&k1, &k2, &k3] {
        store.add_api_key(k).await.expect("add_api_key");
    }
    let dup_id = store
        .add_api_key(&key("conf-k1", b"hash-other", t + 13))
        .await;
    assert!(
        matches!(dup_id, Err(StoreError::Conflict(_))),
        "a duplicate key_id is a Conflict, got {dup_id:?}"
    );
    let dup_hash = store.add_api_key(&key("conf-k4", b"hash-k2", t + 13)).await;
    assert!(
        matches!(dup_hash, Err(StoreError::Conflict(_))),
        "a duplicate key hash is a Conflict, got {dup_hash:?}"
    );

    assert_eq!(
        store.find_api_key(b"hash-k2").await.expect("find_api_key"),
        Some(k2.clone()),
        "find_api_key by hash"
    );
    assert_eq!(
        store
            .find_api_key(b"hash-none")
            .await
            .expect("find_api_key"),
        None,
        "unknown hash is None"
    );
    assert_eq!(
        store
            .list_api_keys("conf-svc-a")
            .await
            .expect("list_api_keys"),
        vec![k1.clone(), k2.clone(), k3.clone()],
        "list_api_keys: the service's keys, oldest first"
    );
    assert!(
        store
            .list_api_keys("conf-svc-b")
            .await
            .expect("list_api_keys")
            .is_empty(),
        "keys are per service"
    );

    let revoked = store
        .revoke_api_keys("conf-svc-a", "conf-k3", t + 20)
        .await
        .expect("revoke_api_keys");
    assert_eq!(
        revoked, 2,
        "revoke_api_keys revokes every other unrevoked key"
    );
    assert_eq!(
        store.find_api_key(b"hash-k1").await.expect("find_api_key"),
        None,
        "a revoked key is not found"
    );
    assert_eq!(
        store.find_api_key(b"hash-k3").await.expect("find_api_key"),
        Some(k3.clone()),
        "the kept key still works"
    );
    let listed = store
        .list_api_keys("conf-svc-a")
        .await
        .expect("list_api_keys");
    let revoked_at: Vec<Option<Millis>> = listed.iter().map(|k| k.revoked_at).collect();
    assert_eq!(
        revoked_at,
        vec![Some(t + 20), Some(t + 20), None],
        "list_api_keys includes revoked keys with revoked_at"
    );
    let again = store
        .revoke_api_keys("conf-svc-a", "conf-k3", t + 30)
        .await
        .expect("revoke_api_keys");
    assert_eq!(again, 0, "revoking again changes nothing");
    let listed = store
        .list_api_keys("conf-svc-a")
        .await
        .expect("list_api_keys");
    assert_eq!(
        listed[0].revoked_at,
        Some(t + 20),
        "an earlier revocation time is kept"
    );
}

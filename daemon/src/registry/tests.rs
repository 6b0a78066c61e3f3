//! The registry service on an in-memory store.

use super::*;
use crate::store::sqlite::SqliteStore;
use crate::store::RegistryApp;

pub(crate) const T0: Millis = 1_800_000_000_000;

pub(crate) async fn setup() -> (Arc<dyn Store>, Registry, Service, Service) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let mut apps = Vec::new();
    for (code, url) in [
        ("bank", "https://bank.example/registry"),
        ("shop", "https://shop.example/r"),
    ] {
        let svc = Service {
            code: code.into(),
            name: code.to_uppercase(),
            settings: serde_json::json!({"webhook_secret": "0123456789abcdef"}),
            created_at: T0,
        };
        store.create_service(&svc).await.unwrap();
        store
            .add_registry_app(&RegistryApp {
                service: code.into(),
                notify_url: url.into(),
                created_at: T0,
            })
            .await
            .unwrap();
        apps.push(svc);
    }
    let shop = apps.pop().unwrap();
    let bank = apps.pop().unwrap();
    (
        store.clone(),
        Registry::new(store, "GB", Random::os()),
        bank,
        shop,
    )
}

#[tokio::test]
async fn an_app_binds_its_own_numbers_idempotently_and_no_other_apps() {
    let (_, r, bank, shop) = setup().await;
    let (b, created) = r.bind(&bank, "07400 100200", "bank", T0).await.unwrap();
    assert!(created);
    assert_eq!(
        b.msisdn, "+447400100200",
        "national input read in the region"
    );
    let (_, again) = r
        .bind(&bank, "+447400100200", "bank", T0 + 1)
        .await
        .unwrap();
    assert!(!again);
    // The shop cannot bind or unbind in the bank's name.
    for e in [
        r.bind(&shop, "+447400100200", "bank", T0)
            .await
            .unwrap_err(),
        r.unbind(&shop, "+447400100200", "bank").await.unwrap_err(),
    ] {
        assert!(matches!(e, RegistryError::OtherApp { .. }), "{e}");
    }
    assert!(matches!(
        r.bind(&bank, "12", "bank", T0).await,
        Err(RegistryError::BadNumber(_))
    ));
    assert!(r.unbind(&bank, "+447400100200", "bank").await.unwrap());
    assert!(!r.unbind(&bank, "+447400100200", "bank").await.unwrap());
}

#[tokio::test]
async fn a_recycled_number_loses_every_binding_and_every_app_is_told() {
    let (store, r, bank, shop) = setup().await;
    r.bind(&bank, "+447400100300", "bank", T0).await.unwrap();
    r.bind(&shop, "+447400100300", "shop", T0).await.unwrap();
    assert!(!r.recycled_since("+447400100300", T0).await.unwrap());
    let purged = r.recycle("+447400100300", T0 + 1000, false).await.unwrap();
    assert_eq!((purged.services.len(), purged.notified), (2, 2));
    assert!(r.bindings_of("+447400100300").await.unwrap().is_empty());
    let jobs = store.claim_webhooks(T0 + 1000, 10, 60_000).await.unwrap();
    let urls: Vec<&str> = jobs.iter().map(|j| j.job.url.as_str()).collect();
    assert_eq!(urls.len(), 2);
    assert!(urls.contains(&"https://bank.example/registry"));
    for j in &jobs {
        let v: serde_json::Value = serde_json::from_str(&j.job.body).unwrap();
        assert_eq!(v["type"], "recycled");
        assert_eq!(v["data"]["msisdn"], "+447400100300");
    }
    // CAMARA: recycled since a date before it, not since one after.
    assert!(r.recycled_since("07400100300", T0).await.unwrap());
    assert!(!r.recycled_since("+447400100300", T0 + 2000).await.unwrap());
    // A date long before the records began has no answer.
    assert!(matches!(
        r.recycled_since("+447400100300", T0 - 10 * DAY).await,
        Err(RegistryError::BeforeRecords { .. })
    ));
}

#[tokio::test]
async fn a_subscriber_unbinds_one_app_or_all_and_only_those_are_told() {
    let (store, r, bank, shop) = setup().await;
    r.bind(&bank, "+447400100400", "bank", T0).await.unwrap();
    r.bind(&shop, "+447400100400", "shop", T0).await.unwrap();
    let one = r
        .subscriber_unbind("+447400100400", Some("shop"), T0 + 1)
        .await
        .unwrap();
    assert_eq!(one.services, ["shop"]);
    let rest = r
        .subscriber_unbind("+447400100400", None, T0 + 2)
        .await
        .unwrap();
    assert_eq!(rest.services, ["bank"]);
    let jobs = store.claim_webhooks(T0 + 2, 10, 60_000).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.job.body.contains("\"unbind\"")));
    // Not a recycling: no date recorded.
    assert!(!r.recycled_since("+447400100400", T0).await.unwrap());
}

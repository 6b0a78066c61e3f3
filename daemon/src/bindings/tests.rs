//! The app side on an in-memory store: codes, confirmation, the reports to
//! the carrier, removal on a fresh proof, and notifications (genuine,
//! forged, replayed, stale) applied once.

use super::*;
use crate::config::{Span, VerifyConfig};
use crate::store::sqlite::SqliteStore;
use crate::verify::code::ServerSecret;
use std::time::Duration;

const T0: Millis = 1_800_000_000_000;
const SECRET: &str = "carrier-shared-secret-0123";
const HOOK: &str = "https://accounts.acme.example/hooks";

fn app() -> BindingsApp {
    BindingsApp {
        service: "acme".into(),
        registry_url: "https://registry.carrier.example/".into(),
        registry_service: "acme-app".into(),
        registry_api_key: "vg_live_acme_at_the_carrier".into(),
        registry_secret: SECRET.into(),
        tolerance: Span(Duration::from_secs(300)),
        report_for: Span(Duration::from_secs(86_400)),
        proof_ttl: Span(Duration::from_secs(600)),
    }
}

async fn setup() -> (Arc<dyn Store>, BindingsService, Service, Service) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let mut svcs = Vec::new();
    for (code, settings) in [
        (
            "acme",
            serde_json::json!({"webhook_url": HOOK, "webhook_secret": "acme-webhook-secret-01"}),
        ),
        ("shop", serde_json::json!({})),
    ] {
        let s = Service {
            code: code.into(),
            name: code.to_uppercase(),
            settings,
            created_at: T0,
        };
        store.create_service(&s).await.unwrap();
        svcs.push(s);
    }
    let verify = Arc::new(VerifyService::new(
        store.clone(),
        ServerSecret::random(&Random::os()),
        VerifyConfig::default(),
        Random::os(),
    ));
    let b = BindingsService::new(store.clone(), verify, &[app()], "GB", Random::os());
    let shop = svcs.pop().unwrap();
    (store, b, svcs.pop().unwrap(), shop)
}

async fn code_of(store: &Arc<dyn Store>, vid: &str) -> String {
    let msgs = store.messages_for_verification(vid).await.unwrap();
    msgs.last()
        .unwrap()
        .text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() >= 4)
        .unwrap()
        .to_string()
}

/// A wrong code for `code`.
fn wrong(code: &str) -> String {
    code.chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect()
}

async fn reports(store: &Arc<dyn Store>) -> Vec<WebhookJob> {
    store.pending_webhooks("bindings", None, 100).await.unwrap()
}

/// A bound number: (binding id, its verification's code was used).
async fn bound(
    store: &Arc<dyn Store>,
    b: &BindingsService,
    acme: &Service,
    to: &str,
) -> AppBinding {
    let p = b.create(acme, "acct-1", to, None, T0).await.unwrap();
    let code = code_of(store, &p.verification_id).await;
    b.confirm(acme, &p.id, &code, T0 + 1).await.unwrap().binding
}

#[tokio::test]
async fn a_number_is_bound_once_its_code_is_typed_and_reported_to_the_carrier_once() {
    let (store, b, acme, shop) = setup().await;
    let p = b
        .create(&acme, "acct-1", "07400 100800", None, T0)
        .await
        .unwrap();
    assert_eq!(
        (p.state, p.msisdn.as_str()),
        (AppBindingState::Pending, "+447400100800")
    );
    let code = code_of(&store, &p.verification_id).await;
    let c = b
        .confirm(&acme, &p.id, &wrong(&code), T0 + 1)
        .await
        .unwrap();
    assert_eq!(c.binding.state, AppBindingState::Pending);
    assert!(!c.check.unwrap().matched);
    assert!(
        reports(&store).await.is_empty(),
        "nothing reported before the code"
    );
    let c = b.confirm(&acme, &p.id, &code, T0 + 2).await.unwrap();
    assert_eq!(c.binding.state, AppBindingState::Active);
    let r = reports(&store).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].method, HttpMethod::Put);
    assert_eq!(
        r[0].url,
        "https://registry.carrier.example/v1/registry/bindings/%2B447400100800/acme-app"
    );
    assert_eq!(r[0].credential.as_deref(), Some("bindings:acme"));
    assert_eq!(r[0].deliver_until, Some(T0 + 2 + 86_400_000));
    // Confirming again changes nothing and reports nothing more.
    let again = b.confirm(&acme, &p.id, &code, T0 + 3).await.unwrap();
    assert!(again.check.is_none());
    assert_eq!(reports(&store).await.len(), 1);
    // Asking again for the same account: the binding as it is, no code.
    let same = b
        .create(&acme, "acct-1", "+447400100800", None, T0 + 4)
        .await
        .unwrap();
    assert_eq!(same.id, p.id);
    // Another account of the app cannot take the number.
    let e = b
        .create(&acme, "acct-2", "+447400100800", None, T0 + 5)
        .await
        .unwrap_err();
    assert!(matches!(e, BindingsError::Taken(_)), "{e}");
    // A service without [[bindings]] cannot use any of it.
    for e in [
        b.create(&shop, "x", "+447400100801", None, T0)
            .await
            .unwrap_err(),
        b.get(&shop, &p.id).await.unwrap_err(),
    ] {
        assert!(matches!(e, BindingsError::NotAnApp(_)), "{e}");
    }
    // Nor can it see acme's bindings through its own.
    let e = b.list(&acme, None, None).await.unwrap_err();
    assert!(matches!(e, BindingsError::BadRequest(_)), "{e}");
    let list = b.list(&acme, None, Some("07400100800")).await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(matches!(
        b.create(&acme, "", "+447400100802", None, T0)
            .await
            .unwrap_err(),
        BindingsError::BadRequest(_)
    ));
    assert!(matches!(
        b.create(&acme, "a", "12", None, T0).await.unwrap_err(),
        BindingsError::BadNumber(_)
    ));
}

#[tokio::test]
async fn a_binding_is_removed_only_on_a_fresh_code_to_its_own_number() {
    let (store, b, acme, _) = setup().await;
    let bnd = bound(&store, &b, &acme, "+447400100810").await;
    let verify = VerifyService::new(
        store.clone(),
        ServerSecret::random(&Random::os()),
        VerifyConfig::default(),
        Random::os(),
    );
    let start = |to: &'static str| {
        let verify = &verify;
        let acme = &acme;
        async move {
            let req = StartRequest {
                to: to.into(),
                channel: "sms".into(),
                ..Default::default()
            };
            verify
                .start(acme, req, T0 + 10)
                .await
                .unwrap()
                .verification
                .id
        }
    };
    // Pending: not a proof.
    let pending = start("+447400100810").await;
    let e = b
        .remove(&acme, &bnd.id, &pending, T0 + 11)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("pending, not approved"), "{e}");
    let code = code_of(&store, &pending).await;
    verify
        .check(&acme, &pending, code.as_str(), T0 + 12)
        .await
        .unwrap();
    // Another number's proof.
    let other = start("+447400100811").await;
    let code = code_of(&store, &other).await;
    verify
        .check(&acme, &other, code.as_str(), T0 + 12)
        .await
        .unwrap();
    let e = b.remove(&acme, &bnd.id, &other, T0 + 13).await.unwrap_err();
    assert!(matches!(e, BindingsError::OtherNumber { .. }), "{e}");
    // Too old.
    let e = b
        .remove(&acme, &bnd.id, &pending, T0 + 12 + 600_001)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("approved more than 600 s ago"),
        "{e}"
    );
    let gone = b.remove(&acme, &bnd.id, &pending, T0 + 14).await.unwrap();
    assert_eq!(gone.id, bnd.id);
    let r = reports(&store).await;
    assert_eq!(
        r.iter().map(|j| j.method).collect::<Vec<_>>(),
        [HttpMethod::Put, HttpMethod::Delete]
    );
    assert!(matches!(
        b.get(&acme, &bnd.id).await.unwrap_err(),
        BindingsError::NoBinding(_)
    ));
}

/// A notification as the carrier's registry sends it, signed at `t` secs.
fn notification(kind: &str, data: serde_json::Value, id: &str) -> String {
    serde_json::json!({"type": kind, "id": id, "created_at": "2027-01-15T08:00:00.000Z", "data": data})
        .to_string()
}

async fn deliver(
    b: &BindingsService,
    body: &str,
    secret: &str,
    t: i64,
    now: Millis,
) -> Result<Received, BindingsError> {
    let sig = crate::webhook::sign(secret.as_bytes(), t, body);
    b.receive(
        Notification {
            signature: Some(&sig),
            body: body.as_bytes(),
        },
        now,
    )
    .await
}

#[tokio::test]
async fn a_genuine_notification_is_applied_once_and_the_account_server_told() {
    let (store, b, acme, _) = setup().await;
    let bnd = bound(&store, &b, &acme, "+447400100820").await;
    let now = T0 + 100_000;
    let secs = now / 1000;
    let body = notification(
        "recycled",
        serde_json::json!({"msisdn": "+447400100820", "service": "acme-app", "at": "…"}),
        "evt_1-acme-app",
    );
    let r = deliver(&b, &body, SECRET, secs, now).await.unwrap();
    assert_eq!((r.applied, r.changed), (true, 1));
    assert!(matches!(
        b.get(&acme, &bnd.id).await.unwrap_err(),
        BindingsError::NoBinding(_)
    ));
    let hooks: Vec<WebhookJob> = store
        .claim_webhooks(now, 100, 60_000)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.job)
        // (The approval of the code went there too.)
        .filter(|j| j.url == HOOK && j.body.contains("\"binding."))
        .collect();
    assert_eq!(hooks.len(), 1);
    let v: serde_json::Value = serde_json::from_str(&hooks[0].body).unwrap();
    assert_eq!(v["type"], "binding.removed");
    assert_eq!(v["data"]["account_ref"], "acct-1");
    assert_eq!(v["data"]["reason"], "recycled");
    assert_eq!(
        hooks[0].credential, None,
        "signed with acme's own webhook secret"
    );
    // The carrier retried (a lost answer): re-signed, acknowledged, not applied again.
    let r = deliver(&b, &body, SECRET, secs + 60, now + 60_000)
        .await
        .unwrap();
    assert_eq!((r.applied, r.changed), (false, 0));
}

#[tokio::test]
async fn forged_replayed_and_malformed_notifications_are_refused() {
    let (store, b, acme, _) = setup().await;
    let bnd = bound(&store, &b, &acme, "+447400100830").await;
    let now = T0 + 100_000;
    let secs = now / 1000;
    let body = notification(
        "unbind",
        serde_json::json!({"msisdn": "+447400100830", "service": "acme-app"}),
        "evt_2-acme-app",
    );
    let refused = |r: Result<Received, BindingsError>, what: &str| match r {
        Err(
            e @ (BindingsError::Forged(_) | BindingsError::Stale | BindingsError::Unreadable(_)),
        ) => assert!(e.to_string().contains(what), "{e}"),
        other => panic!("expected a refusal ({what}), got {other:?}"),
    };
    refused(
        deliver(&b, &body, "someone-elses-secret-01", secs, now).await,
        "does not match",
    );
    // Captured and replayed later: its signature's time gives it away.
    refused(
        deliver(&b, &body, SECRET, secs - 301, now).await,
        "outside the tolerance",
    );
    // A signed body changed in flight.
    let sig = crate::webhook::sign(SECRET.as_bytes(), secs, &body);
    let tampered = body.replace("+447400100830", "+447400100839");
    refused(
        b.receive(
            Notification {
                signature: Some(&sig),
                body: tampered.as_bytes(),
            },
            now,
        )
        .await,
        "does not match",
    );
    refused(
        b.receive(
            Notification {
                signature: None,
                body: body.as_bytes(),
            },
            now,
        )
        .await,
        "no Verigate-Signature",
    );
    refused(
        deliver(&b, &body.replace("acme-app", "nobody"), SECRET, secs, now).await,
        "no [[bindings]] app",
    );
    refused(deliver(&b, "not json", SECRET, secs, now).await, "not JSON");
    // Nothing of that removed the binding.
    assert_eq!(
        b.get(&acme, &bnd.id).await.unwrap().state,
        AppBindingState::Active
    );
    // A type we do not act on is acknowledged, not applied.
    let later = notification(
        "welcome",
        serde_json::json!({"service": "acme-app"}),
        "evt_3",
    );
    let r = deliver(&b, &later, SECRET, secs, now).await.unwrap();
    assert!(!r.applied);
}

#[tokio::test]
async fn a_number_update_moves_the_binding() {
    let (store, b, acme, _) = setup().await;
    let bnd = bound(&store, &b, &acme, "+447400100840").await;
    let now = T0 + 100_000;
    let body = notification(
        "number_updated",
        serde_json::json!({"old": "+447400100840", "new": "+447400100841", "service": "acme-app"}),
        "evt_4-acme-app",
    );
    let r = deliver(&b, &body, SECRET, now / 1000, now).await.unwrap();
    assert_eq!((r.applied, r.changed), (true, 1));
    let moved = b.get(&acme, &bnd.id).await.unwrap();
    assert_eq!(moved.msisdn, "+447400100841");
}

//! The registry's short code against an in-memory store: each command, its
//! notifications and its reply, in English and Mandarin.

use super::*;
use crate::config::RegistryConfig;
use crate::registry::tests::{setup, T0};
use crate::store::{Moved, Service};

const SHORT_CODE: &str = "7788";

async fn short_code() -> (Arc<dyn Store>, RegistryMo, Service, Service) {
    let (store, registry, bank, shop) = setup().await;
    store
        .create_service(&Service {
            code: SYSTEM_SERVICE.into(),
            name: "Number registry replies".into(),
            settings: serde_json::json!({}),
            created_at: T0,
        })
        .await
        .unwrap();
    let cfg = RegistryConfig {
        enabled: true,
        short_code: SHORT_CODE.into(),
        ..Default::default()
    };
    let mo = RegistryMo::new(store.clone(), Arc::new(registry), cfg, Random::os());
    (store, mo, bank, shop)
}

/// An MO from `from` to the short code, handled at `now`.
async fn send(mo: &RegistryMo, from: &str, text: &str, now: Millis) -> Option<Outcome> {
    let m = crate::mologin::incoming(
        &Random::os(),
        "smsc",
        from,
        1,
        SHORT_CODE.into(),
        text.into(),
        "GB",
        now,
    );
    mo.receive(&m, &crate::mologin::redelivery_key(&m), 600_000, now)
        .await
        .unwrap()
}

/// The replies queued by `at`, each seen once: (to, text).
async fn replies(store: &dyn Store, at: Millis) -> Vec<(String, String)> {
    let claimed = store.claim_outbox(at, 1000, i64::MAX / 4).await.unwrap();
    claimed
        .into_iter()
        .map(|c| {
            assert_eq!(c.job.from, SHORT_CODE);
            assert_eq!(c.job.service, SYSTEM_SERVICE);
            (c.job.to.clone(), c.job.text.clone())
        })
        .collect()
}

/// The notifications queued by `at`: (service, type, data).
async fn notifications(store: &dyn Store, at: Millis) -> Vec<(String, String, serde_json::Value)> {
    let mut out: Vec<_> = store
        .claim_webhooks(at, 1000, i64::MAX / 4)
        .await
        .unwrap()
        .into_iter()
        .map(|j| {
            let v: serde_json::Value = serde_json::from_str(&j.job.body).unwrap();
            (
                j.job.service.clone(),
                v["type"].as_str().unwrap().to_string(),
                v["data"].clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

async fn bound(store: &dyn Store, n: &str) -> Vec<String> {
    store
        .bindings_of(n)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.service)
        .collect()
}

const NUMBER: &str = "447400100500";
const E164: &str = "+447400100500";

async fn bound_to_both() -> (Arc<dyn Store>, RegistryMo) {
    let (store, mo, bank, shop) = short_code().await;
    mo.registry.bind(&bank, E164, "bank", T0).await.unwrap();
    mo.registry.bind(&shop, E164, "shop", T0).await.unwrap();
    (store, mo)
}

#[tokio::test]
async fn unbind_all_by_sms_purges_tells_every_app_and_replies_with_their_names() {
    let (store, mo) = bound_to_both().await;
    assert_eq!(
        send(&mo, NUMBER, "unbind all", T0 + 1).await,
        Some("unbind_all")
    );
    assert!(bound(&*store, E164).await.is_empty());
    let told = notifications(&*store, T0 + 1).await;
    assert_eq!(told.len(), 2);
    for (service, kind, data) in &told {
        assert_eq!(kind, "unbind");
        assert_eq!(data["msisdn"], E164);
        assert_eq!(data["service"], service.as_str());
    }
    assert_eq!(
        replies(&*store, T0 + 1).await,
        [(
            E164.to_string(),
            "Your number is no longer bound to: BANK, SHOP. They have been told.".to_string()
        )]
    );
    // Nothing left: the next one says so and tells nobody.
    // (Sent again after the redelivery window: within it, the same text
    // from the same number is the SMSC delivering it again.)
    let later = T0 + 700_000;
    assert_eq!(
        send(&mo, NUMBER, "UNBIND ALL", later).await,
        Some("unbind_all")
    );
    assert!(notifications(&*store, later).await.is_empty());
    assert_eq!(
        replies(&*store, later).await[0].1,
        "Your number is bound to no app."
    );
}

#[tokio::test]
async fn unbind_one_by_code_or_name_and_an_unknown_one_changes_nothing() {
    let (store, mo) = bound_to_both().await;
    assert_eq!(
        send(&mo, NUMBER, "UNBIND nobody", T0 + 1).await,
        Some("not_bound")
    );
    assert_eq!(bound(&*store, E164).await, ["bank", "shop"]);
    assert!(notifications(&*store, T0 + 1).await.is_empty());
    assert!(replies(&*store, T0 + 1).await[0]
        .1
        .starts_with("Your number is not bound to NOBODY."));
    assert_eq!(
        send(&mo, NUMBER, "unbind Shop", T0 + 2).await,
        Some("unbind")
    );
    assert_eq!(bound(&*store, E164).await, ["bank"]);
    let told = notifications(&*store, T0 + 2).await;
    assert_eq!(told.len(), 1);
    assert_eq!((told[0].0.as_str(), told[0].1.as_str()), ("shop", "unbind"));
    assert_eq!(
        replies(&*store, T0 + 2).await[0].1,
        "Your number is no longer bound to SHOP. It has been told."
    );
}

#[tokio::test]
async fn mandarin_commands_are_answered_in_mandarin() {
    let (store, mo) = bound_to_both().await;
    assert_eq!(
        send(&mo, NUMBER, "查询绑定", T0 + 1).await,
        Some("bindings")
    );
    assert_eq!(
        replies(&*store, T0 + 1).await[0].1,
        "您的号码已绑定：BANK、SHOP。"
    );
    assert_eq!(
        bound(&*store, E164).await.len(),
        2,
        "a question changes nothing"
    );
    assert_eq!(
        send(&mo, NUMBER, "解绑全部", T0 + 2).await,
        Some("unbind_all")
    );
    assert!(bound(&*store, E164).await.is_empty());
    assert_eq!(
        replies(&*store, T0 + 2).await[0].1,
        "您的号码已解除与以下应用的绑定：BANK、SHOP，已通知对方。"
    );
    assert_eq!(notifications(&*store, T0 + 2).await.len(), 2);
    assert_eq!(send(&mo, NUMBER, "你好", T0 + 3).await, Some("help"));
    assert!(replies(&*store, T0 + 3).await[0].1.starts_with("发送"));
}

#[tokio::test]
async fn a_move_needs_an_mo_from_each_number_and_tells_every_app() {
    let (store, mo) = bound_to_both().await;
    let new = "+447400100501";
    assert_eq!(
        send(&mo, NUMBER, "MOVE 07400 100501", T0 + 1).await,
        Some("move_offered")
    );
    let offer = replies(&*store, T0 + 1).await.remove(0);
    assert_eq!(offer.0, E164, "the instructions go to the old number");
    let token = offer
        .1
        .split_whitespace()
        .skip_while(|w| *w != "MOVE")
        .nth(1)
        .unwrap()
        .to_string();
    assert!(
        offer.1.contains(new) && offer.1.contains("within 15 minutes"),
        "{}",
        offer.1
    );
    // Another number cannot take it.
    assert_eq!(
        send(&mo, "447400100999", &format!("MOVE {token}"), T0 + 2).await,
        Some("move_refused")
    );
    assert_eq!(bound(&*store, E164).await.len(), 2);
    assert!(replies(&*store, T0 + 2).await[0]
        .1
        .starts_with("This move code is not valid"));
    // The new number takes it: bindings move, each app hears old → new.
    assert_eq!(
        send(
            &mo,
            &new[1..],
            &format!("move {}", token.to_lowercase()),
            T0 + 3
        )
        .await,
        Some("moved")
    );
    assert!(bound(&*store, E164).await.is_empty());
    assert_eq!(bound(&*store, new).await, ["bank", "shop"]);
    let told = notifications(&*store, T0 + 3).await;
    assert_eq!(told.len(), 2);
    for (_, kind, data) in &told {
        assert_eq!(kind, "number_updated");
        assert_eq!(
            (data["old"].as_str(), data["new"].as_str()),
            (Some(E164), Some(new))
        );
    }
    assert_eq!(
        replies(&*store, T0 + 3).await,
        [(
            new.to_string(),
            format!("Your apps (BANK, SHOP) now use this number instead of {E164}.")
        )]
    );
    // Used up.
    assert_eq!(
        send(&mo, &new[1..], &format!("MOVE {token} "), T0 + 700_000).await,
        Some("move_refused")
    );
}

#[tokio::test]
async fn a_move_taken_late_or_to_ones_own_number_moves_nothing() {
    let (store, mo) = bound_to_both().await;
    assert_eq!(
        send(&mo, NUMBER, &format!("MOVE {E164}"), T0).await,
        Some("bad_number")
    );
    assert_eq!(
        send(&mo, NUMBER, "MOVE 12", T0 + 1).await,
        Some("bad_number")
    );
    assert_eq!(replies(&*store, T0 + 1).await.len(), 2);
    send(&mo, NUMBER, "MOVE +447400100502", T0 + 2).await;
    let text = replies(&*store, T0 + 2).await.remove(0).1;
    let token = text.split_whitespace().nth(8).unwrap().to_string();
    let late = T0 + 2 + 15 * 60_000 + 1;
    assert_eq!(
        send(&mo, "447400100502", &format!("MOVE {token}"), late).await,
        Some("move_expired")
    );
    assert_eq!(bound(&*store, E164).await.len(), 2);
    assert!(notifications(&*store, late).await.is_empty());
    let r = replies(&*store, late).await;
    assert!(r[0].1.contains("has expired"), "{r:?}");
    let Some(o) = store.move_offer(&token).await.unwrap() else {
        return;
    };
    panic!("an expired offer is used up: {o:?}");
}

#[tokio::test]
async fn a_redelivered_mo_acts_once_and_senders_that_are_not_numbers_act_never() {
    let (store, mo) = bound_to_both().await;
    let m = crate::mologin::incoming(
        &Random::os(),
        "smsc",
        NUMBER,
        1,
        SHORT_CODE.into(),
        "UNBIND BANK".into(),
        "GB",
        T0 + 1,
    );
    let key = crate::mologin::redelivery_key(&m);
    assert_eq!(
        mo.receive(&m, &key, 600_000, T0 + 1).await.unwrap(),
        Some("unbind")
    );
    assert_eq!(mo.receive(&m, &key, 600_000, T0 + 2).await.unwrap(), None);
    assert_eq!(replies(&*store, T0 + 2).await.len(), 1);
    assert_eq!(notifications(&*store, T0 + 2).await.len(), 1);
    // An alphanumeric sender proves no number.
    let m = crate::mologin::incoming(
        &Random::os(),
        "smsc",
        "BANK",
        5,
        SHORT_CODE.into(),
        "UNBIND ALL".into(),
        "GB",
        T0 + 3,
    );
    let key = crate::mologin::redelivery_key(&m);
    assert_eq!(
        mo.receive(&m, &key, 600_000, T0 + 3).await.unwrap(),
        Some("sender_not_a_number")
    );
    assert!(replies(&*store, T0 + 3).await.is_empty());
    assert_eq!(bound(&*store, E164).await, ["shop"]);
}

#[tokio::test]
async fn replies_stay_within_the_senders_budget() {
    let (store, mo) = bound_to_both().await;
    // Different texts: the same one again would be a redelivery.
    for i in 0..8 {
        assert_eq!(
            send(&mo, NUMBER, &format!("hello {i}"), T0 + i).await,
            Some("help")
        );
    }
    assert_eq!(
        replies(&*store, T0 + 10).await.len(),
        5,
        "5 per hour by default"
    );
    // The commands still act when their reply is held back.
    assert_eq!(
        send(&mo, NUMBER, "UNBIND ALL", T0 + 20).await,
        Some("unbind_all")
    );
    assert!(bound(&*store, E164).await.is_empty());
    assert!(replies(&*store, T0 + 20).await.is_empty());
    assert!(matches!(
        store
            .take_move(
                &TakeMove {
                    token: "ABCD2345",
                    new_msisdn: E164,
                    event_id: "evt_x",
                    notify_for: 1,
                },
                T0
            )
            .await
            .unwrap(),
        Moved::NoOffer
    ));
}

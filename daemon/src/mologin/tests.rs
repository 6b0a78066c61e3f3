//! The MO-login service against an in-memory store: the abuse paths a
//! review found (reply pumping, senders that are not numbers, redelivery
//! with the text retyped).

use super::*;
use crate::config::MoReplyLimits;
use crate::store::sqlite::SqliteStore;
use crate::store::{MoLoginState, Service};

const T0: Millis = 1_800_000_000_000;

async fn service(limits: MoReplyLimits) -> (Arc<dyn Store>, MoLoginService) {
    service_with(MoLoginConfig {
        short_code: "7799".into(),
        reply_limits: limits,
        ..Default::default()
    })
    .await
}

/// An in-memory store with services `acme` and the system one, and the
/// MO-login service of `cfg` on it (shared with the inbound tests).
pub(crate) async fn service_with(cfg: MoLoginConfig) -> (Arc<dyn Store>, MoLoginService) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    for code in ["acme", SYSTEM_SERVICE] {
        store
            .create_service(&Service {
                code: code.into(),
                name: code.into(),
                settings: serde_json::json!({}),
                created_at: 0,
            })
            .await
            .unwrap();
    }
    let svc = MoLoginService::new(
        store.clone(),
        ServerSecret::random(&Random::os()),
        cfg,
        Random::os(),
    );
    (store, svc)
}

/// An MO from `from` (TON `ton`) to `to`, handled at `now`; `None` for a redelivery.
async fn send(
    svc: &MoLoginService,
    from: &str,
    ton: u8,
    to: &str,
    text: &str,
    now: Millis,
) -> Option<Handled> {
    let mo = incoming(
        &Random::os(),
        "smsc",
        from,
        ton,
        to.into(),
        text.into(),
        "GB",
        now,
    );
    svc.receive(&mo, &redelivery_key(&mo), 600_000, now)
        .await
        .unwrap()
}

/// The replies queued and due at `at` (claimed, so each is seen once).
async fn queued_at(store: &dyn Store, at: Millis) -> Vec<OutboxMessage> {
    let claimed = store.claim_outbox(at, 100_000, 60_000).await;
    claimed.unwrap().into_iter().map(|c| c.job).collect()
}

async fn queued(store: &dyn Store) -> Vec<OutboxMessage> {
    queued_at(store, T0 + 60_000).await
}

fn limits(per_sender: &str, per_prefix: &str, global: &str) -> MoReplyLimits {
    MoReplyLimits {
        per_sender: per_sender.parse().unwrap(),
        per_prefix: per_prefix.parse().unwrap(),
        prefix_digits: 6,
        global: global.parse().unwrap(),
    }
}

#[tokio::test]
async fn a_thousand_pumping_mos_get_no_more_replies_than_the_budgets() {
    let (store, svc) = service(limits("2/1h", "20/1h", "50/1h")).await;
    // 1,000 MOs with made-up tokens: 500 from one prefix (a pumper's range),
    // 500 spread over many prefixes; each sender sends a few.
    let mut refused = 0;
    for i in 0..1000u32 {
        let from = if i < 500 {
            format!("44740010{:04}", i % 100)
        } else {
            format!("{}7400{:06}", 30 + i % 60, i)
        };
        let h = send(
            &svc,
            &from,
            1,
            "7799",
            &format!("LOGIN {}", token::generate(&Random::os())),
            T0 + i as i64,
        )
        .await
        .expect("a new MO");
        assert_eq!(h, Handled::Refused("unknown"));
        refused += 1;
    }
    assert_eq!(refused, 1000);
    let replies = queued(&*store).await;
    // The one prefix got its 20, the rest stopped at the global 50.
    assert_eq!(replies.len(), 50, "global budget");
    let one_prefix = replies
        .iter()
        .filter(|m| m.to.starts_with("+447400"))
        .count();
    assert_eq!(one_prefix, 20, "per-prefix budget");
    let mut per_sender = std::collections::HashMap::<&str, usize>::new();
    for m in &replies {
        *per_sender.entry(m.to.as_str()).or_default() += 1;
    }
    assert!(per_sender.values().all(|&n| n <= 2), "{per_sender:?}");
    // The budget is per hour: the next hour answers again.
    let text = format!("LOGIN {}", token::generate(&Random::os()));
    let h = send(&svc, "447400109999", 1, "7799", &text, T0 + 3_600_000).await;
    assert_eq!(h, Some(Handled::Refused("unknown")));
    let later = queued_at(&*store, T0 + 3_600_001).await;
    assert_eq!(later.iter().filter(|m| m.to == "+447400109999").count(), 1);
}

#[tokio::test]
async fn one_sender_gets_at_most_its_budget_of_replies_and_password_sms_count() {
    let (store, svc) = service(limits("3/1h", "100/1h", "100/1h")).await;
    let acme = store.get_service("acme").await.unwrap().unwrap();
    // A login completes with a password SMS: the first reply.
    let c = svc.create(&acme, MoIntent::Login, T0).await.unwrap();
    let h = send(&svc, "447400100200", 1, "7799", &c.sms_body, T0).await;
    assert_eq!(h, Some(Handled::Completed));
    for i in 0..10 {
        let text = format!("hello {i}");
        assert_eq!(
            send(&svc, "447400100200", 1, "7799", &text, T0 + 1 + i).await,
            Some(Handled::NoToken)
        );
    }
    let replies = queued(&*store).await;
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert!(replies[0].text.contains("Password"));
    // Over budget the login itself still works (only the reply is held back).
    let c = svc.create(&acme, MoIntent::Login, T0 + 20).await.unwrap();
    let h = send(&svc, "447400100200", 1, "7799", &c.sms_body, T0 + 20).await;
    assert_eq!(h, Some(Handled::Completed));
    let login = store.get_mo_login(&c.login.token).await.unwrap().unwrap();
    assert_eq!(login.state, MoLoginState::Completed);
}

#[tokio::test]
async fn senders_that_are_not_phone_numbers_make_no_account_and_get_no_reply() {
    let (store, svc) = service(MoReplyLimits::default()).await;
    let acme = store.get_service("acme").await.unwrap().unwrap();
    let c = svc.create(&acme, MoIntent::Login, T0).await.unwrap();
    // An alphanumeric sender (TON 5), a short code, a short national number:
    // none is a number the network proved.
    for (from, ton) in [("INFO", 5), ("8888", 3), ("1234", 2), ("0740", 1)] {
        assert_eq!(
            send(&svc, from, ton, "7799", &c.sms_body, T0).await,
            Some(Handled::SenderNotANumber),
            "{from}"
        );
    }
    let login = store.get_mo_login(&c.login.token).await.unwrap().unwrap();
    assert_eq!(login.state, MoLoginState::Pending, "no shared account");
    assert!(store
        .get_account_by_msisdn("acme", "INFO")
        .await
        .unwrap()
        .is_none());
    assert!(queued(&*store).await.is_empty(), "no reply to them");
    // A real number still logs in with the same token.
    assert_eq!(
        send(&svc, "07400100200", 2, "7799", &c.sms_body, T0 + 1).await,
        Some(Handled::Completed)
    );
}

#[tokio::test]
async fn a_redelivery_retyped_in_case_or_spacing_is_the_same_mo() {
    let (store, svc) = service(MoReplyLimits::default()).await;
    assert_eq!(
        send(&svc, "447400100200", 1, "7799", "LOGIN ZZZZ9999", T0).await,
        Some(Handled::Refused("unknown"))
    );
    for text in ["login zzzz9999", "  LOGIN   ZZZZ9999 ", "Login\tZzzz9999"] {
        assert_eq!(
            send(&svc, "447400100200", 1, "7799", text, T0 + 1).await,
            None,
            "{text:?}"
        );
    }
    assert_eq!(queued(&*store).await.len(), 1);
}

#[tokio::test]
async fn only_the_exact_short_code_is_routed() {
    let (store, svc) = service(MoReplyLimits::default()).await;
    // A number that merely ends in the short code is not it.
    for to in ["447799", "17799", "99997799"] {
        assert_eq!(
            send(&svc, "447400100200", 1, to, "LOGIN ZZZZ9999", T0).await,
            Some(Handled::Unrouted),
            "{to}"
        );
    }
    assert!(queued(&*store).await.is_empty());
}

#[tokio::test]
async fn long_polls_dropped_by_their_clients_leave_nothing_behind() {
    let (store, svc) = service(MoReplyLimits::default()).await;
    let acme = store.get_service("acme").await.unwrap().unwrap();
    let c = svc.create(&acme, MoIntent::Login, T0).await.unwrap();
    let token = c.login.token.clone();
    let poll = || svc.poll(&acme, &token, Duration::from_secs(30), T0);
    // A client that goes away mid-poll (axum drops the handler's future).
    for _ in 0..100 {
        let gone = tokio::time::timeout(Duration::from_millis(1), poll()).await;
        assert!(gone.is_err(), "the poll was still waiting");
    }
    assert_eq!(svc.waiting_tokens(), 0, "a dropped poll leaked its entry");
    // Two polls of one token: the one left keeps the entry until it ends.
    let (a, b) = tokio::join!(
        tokio::time::timeout(Duration::from_millis(20), poll()),
        async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let n = svc.waiting_tokens();
            let r = tokio::time::timeout(Duration::from_millis(50), poll()).await;
            (n, r)
        }
    );
    assert!(a.is_err());
    assert_eq!(b.0, 1);
    assert!(b.1.is_err());
    assert_eq!(svc.waiting_tokens(), 0);
    // A poll that ends normally leaves nothing either.
    let done = svc.poll(&acme, &token, Duration::ZERO, T0).await.unwrap();
    assert!(matches!(done, Polled::Pending(_)));
    assert_eq!(svc.waiting_tokens(), 0);
}

#[tokio::test]
async fn a_service_cannot_ask_for_more_logins_than_its_limit() {
    let (store, svc) = service_with(MoLoginConfig {
        short_code: "7799".into(),
        per_service: "3/1m".parse().unwrap(),
        ..Default::default()
    })
    .await;
    let acme = store.get_service("acme").await.unwrap().unwrap();
    for i in 0..3 {
        svc.create(&acme, MoIntent::Login, T0 + i).await.unwrap();
    }
    let e = svc
        .create(&acme, MoIntent::Login, T0 + 3)
        .await
        .unwrap_err();
    assert!(
        matches!(e, MoLoginError::RateLimited { retry_after_secs } if retry_after_secs > 0),
        "{e}"
    );
    // The next window allows it again.
    svc.create(&acme, MoIntent::Login, T0 + 60_000)
        .await
        .unwrap();
}

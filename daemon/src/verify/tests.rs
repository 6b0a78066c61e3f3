//! Verification service on a real SQLite store, on virtual time.

use super::code::ServerSecret;
use super::service::{CallerError, SetupError, StartRequest, VerifyError, VerifyService};
use crate::config::VerifyConfig;
use crate::random::Random;
use crate::store::sqlite::SqliteStore;
use crate::store::{MessageState, Service, Store, VerificationStatus};
use std::sync::Arc;

const T0: i64 = 1_795_000_000_000;
const TO: &str = "+447400123456";

async fn setup(cfg: VerifyConfig) -> (VerifyService, Service, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let svc = Service {
        code: "acme".into(),
        name: "ACME".into(),
        settings: serde_json::json!({}),
        created_at: T0,
    };
    store.create_service(&svc).await.unwrap();
    (
        VerifyService::new(
            store.clone(),
            ServerSecret::random(&Random::os()),
            cfg,
            Random::os(),
        ),
        svc,
        store,
    )
}

fn req(to: &str) -> StartRequest {
    StartRequest {
        to: to.into(),
        channel: "sms".into(),
        ..Default::default()
    }
}

/// Gives `svc` a status webhook (to a port nobody listens on).
async fn with_webhook(store: &Arc<dyn Store>, svc: &mut Service) {
    svc.settings = serde_json::json!({"webhook_url": "http://127.0.0.1:9/h", "webhook_secret": "0123456789abcdef"});
    store
        .update_service_settings(&svc.code, &svc.settings)
        .await
        .unwrap();
}

/// The code as the handset would read it from the queued message.
async fn code_of(store: &Arc<dyn Store>, vid: &str) -> String {
    let msgs = store.messages_for_verification(vid).await.unwrap();
    let text = &msgs.last().unwrap().text;
    text.split_whitespace()
        .find(|w| w.trim_end_matches('.').chars().all(|c| c.is_ascii_digit()) && w.len() >= 4)
        .unwrap()
        .trim_end_matches('.')
        .to_string()
}

#[tokio::test]
async fn start_then_right_code_approves_once() {
    let (s, svc, store) = setup(VerifyConfig::default()).await;
    let st = s.start(&svc, req("07400 123456"), T0).await.unwrap();
    assert!(st.created && st.sent);
    let v = st.verification;
    assert_eq!(v.to, TO);
    assert_eq!(v.status, VerificationStatus::Pending);
    assert_eq!(v.expires_at, T0 + 600_000);
    let code = code_of(&store, &v.id).await;
    assert_eq!(code.len(), 6);
    let msgs = store.messages_for_verification(&v.id).await.unwrap();
    assert!(msgs[0].text.contains("ACME"), "{}", msgs[0].text);
    assert_eq!(msgs[0].state, MessageState::Queued);
    // The stored hash is not the code.
    assert_ne!(v.code_hash, code.as_bytes());
    let c = s.check(&svc, &v.id, &code, T0 + 1000).await.unwrap();
    assert_eq!(c.verification.status, VerificationStatus::Approved);
    assert!(c.matched);
    // Single use: checking again reports approved without changing anything.
    let c = s.check(&svc, &v.id, "000000", T0 + 2000).await.unwrap();
    assert_eq!(c.verification.status, VerificationStatus::Approved);
    assert!(!c.matched);
    assert_eq!(c.verification.attempts, 0);
}

#[tokio::test]
async fn each_operation_has_a_verification_span_with_its_outcome() {
    let (log, _guard) = crate::span_log::SpanLog::install();
    let (s, svc, store) = setup(VerifyConfig::default()).await;
    let v = s.start(&svc, req(TO), T0).await.unwrap().verification;
    let code = code_of(&store, &v.id).await;
    s.check(&svc, &v.id, &code, T0 + 1000).await.unwrap();
    s.check(&svc, "vf_nope", &code, T0 + 1000)
        .await
        .unwrap_err();
    let spans = log.named("verification");
    let ops: Vec<(&str, &str, &str)> = spans
        .iter()
        .map(|f| (f["op"].as_str(), f["id"].as_str(), f["outcome"].as_str()))
        .collect();
    assert_eq!(
        ops,
        [
            ("start", v.id.as_str(), "pending"),
            ("check", v.id.as_str(), "approved"),
            ("check", "vf_nope", "refused"),
        ]
    );
    assert_eq!(spans[0]["service"], svc.code);
    assert_eq!(spans[0]["channel"], "sms");
    assert!(spans[2]["error"].contains("not found"), "{:?}", spans[2]);
}

#[tokio::test]
async fn five_wrong_codes_kill_it() {
    let (s, svc, store) = setup(VerifyConfig::default()).await;
    let v = s.start(&svc, req(TO), T0).await.unwrap().verification;
    let code = code_of(&store, &v.id).await;
    let wrong = if code == "111111" { "222222" } else { "111111" };
    for i in 1..=4 {
        let c = s.check(&svc, &v.id, wrong, T0 + i).await.unwrap();
        assert_eq!(c.verification.status, VerificationStatus::Pending);
        assert_eq!(c.verification.attempts, i as u32);
    }
    let c = s.check(&svc, &v.id, wrong, T0 + 5).await.unwrap();
    assert_eq!(
        c.verification.status,
        VerificationStatus::MaxAttemptsReached
    );
    // Even the right code is refused now.
    let c = s.check(&svc, &v.id, &code, T0 + 6).await.unwrap();
    assert_eq!(
        c.verification.status,
        VerificationStatus::MaxAttemptsReached
    );
}

#[tokio::test]
async fn codes_expire() {
    let (s, svc, store) = setup(VerifyConfig::default()).await;
    let v = s.start(&svc, req(TO), T0).await.unwrap().verification;
    let code = code_of(&store, &v.id).await;
    let c = s.check(&svc, &v.id, &code, T0 + 600_000).await.unwrap();
    assert_eq!(c.verification.status, VerificationStatus::Expired);
}

#[tokio::test]
async fn repeated_start_returns_pending_and_resends_after_cooldown() {
    let (s, svc, store) = setup(VerifyConfig::default()).await;
    let a = s.start(&svc, req(TO), T0).await.unwrap();
    let b = s.start(&svc, req(TO), T0 + 5_000).await.unwrap();
    assert_eq!(b.verification.id, a.verification.id);
    assert!(!b.created && !b.sent);
    let old = code_of(&store, &a.verification.id).await;
    let c = s.start(&svc, req(TO), T0 + 31_000).await.unwrap();
    assert_eq!(c.verification.id, a.verification.id);
    assert!(c.sent);
    assert_eq!(c.verification.sends, 2);
    // A fresh code has a fresh lifetime.
    assert_eq!(c.verification.expires_at, T0 + 31_000 + 600_000);
    let new = code_of(&store, &a.verification.id).await;
    if new != old {
        // The old code stopped working (it costs an attempt).
        let stale = s
            .check(&svc, &a.verification.id, &old, T0 + 31_500)
            .await
            .unwrap();
        assert!(!stale.matched);
        assert_eq!(stale.verification.status, VerificationStatus::Pending);
    }
    let ok = s
        .check(&svc, &a.verification.id, &new, T0 + 32_000)
        .await
        .unwrap();
    assert_eq!(ok.verification.status, VerificationStatus::Approved);
}

#[tokio::test]
async fn a_double_tap_after_the_cooldown_sends_one_code() {
    let (s, svc, store) = setup(VerifyConfig::default()).await;
    let a = s.start(&svc, req(TO), T0).await.unwrap();
    let (x, y) = tokio::join!(
        s.start(&svc, req(TO), T0 + 31_000),
        s.start(&svc, req(TO), T0 + 31_000)
    );
    let sent = [x.unwrap().sent, y.unwrap().sent];
    assert_eq!(sent.iter().filter(|s| **s).count(), 1, "{sent:?}");
    let msgs = store
        .messages_for_verification(&a.verification.id)
        .await
        .unwrap();
    assert_eq!(msgs.len(), 2, "the first code and one resend");
}

#[tokio::test]
async fn an_idempotency_key_answered_with_the_pending_one_replays_without_sending() {
    let (s, svc, store) = setup(VerifyConfig::default()).await;
    let keyed = |hash: &[u8]| StartRequest {
        idempotency: Some(("k-1".into(), hash.to_vec())),
        ..req(TO)
    };
    let a = s.start(&svc, req(TO), T0).await.unwrap();
    // After the cooldown, a keyed start resends once…
    let b = s.start(&svc, keyed(b"body"), T0 + 31_000).await.unwrap();
    assert!(b.sent);
    // …and its retry, after another cooldown, replays instead of sending.
    let c = s.start(&svc, keyed(b"body"), T0 + 62_000).await.unwrap();
    assert!(!c.sent && !c.created);
    assert_eq!(c.verification.id, a.verification.id);
    assert_eq!(c.verification.sends, 2);
    // The same key with another body is refused.
    let e = s
        .start(&svc, keyed(b"other"), T0 + 63_000)
        .await
        .unwrap_err();
    assert!(
        matches!(e, VerifyError::Caller(CallerError::IdempotencyMismatch)),
        "{e:?}"
    );
    // A key first answered with the pending one (inside the cooldown)
    // replays too.
    let d = StartRequest {
        idempotency: Some(("k-2".into(), b"b2".to_vec())),
        ..req(TO)
    };
    assert!(!s.start(&svc, d.clone(), T0 + 50_000).await.unwrap().sent);
    let again = s.start(&svc, d, T0 + 200_000).await.unwrap();
    assert!(!again.sent, "a replay never sends");
    assert_eq!(
        store
            .messages_for_verification(&a.verification.id)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn cancel_closes_it() {
    let (s, svc, _) = setup(VerifyConfig::default()).await;
    let v = s.start(&svc, req(TO), T0).await.unwrap().verification;
    let v = s.cancel(&svc, &v.id, T0 + 1).await.unwrap();
    assert_eq!(v.status, VerificationStatus::Canceled);
    // A new start after cancel makes a new verification.
    let w = s.start(&svc, req(TO), T0 + 2).await.unwrap();
    assert!(w.created);
    assert_ne!(w.verification.id, v.id);
}

#[tokio::test]
async fn bad_input_is_refused_with_reasons() {
    let (s, svc, _) = setup(VerifyConfig::default()).await;
    assert!(matches!(
        s.start(&svc, req("hello"), T0).await,
        Err(VerifyError::Caller(CallerError::BadNumber(_)))
    ));
    let mut r = req(TO);
    r.channel = "pigeon".into();
    assert!(matches!(
        s.start(&svc, r, T0).await,
        Err(VerifyError::Caller(CallerError::UnsupportedChannel(_)))
    ));
    let mut r = req(TO);
    r.locale = Some("xx".into());
    assert!(matches!(
        s.start(&svc, r, T0).await,
        Err(VerifyError::Caller(CallerError::UnsupportedLocale(..)))
    ));
    let mut r = req(TO);
    r.code_length = Some(3);
    assert!(matches!(
        s.start(&svc, r, T0).await,
        Err(VerifyError::Caller(CallerError::BadCodeLength {
            len: 3,
            min: 6
        }))
    ));
    // An attacker asking for 4-digit codes (10x easier to guess) is refused:
    // the floor is verify.min_code_length (default 6), not the format's 4.
    for short in [4, 5] {
        let mut r = req(TO);
        r.code_length = Some(short);
        let e = s.start(&svc, r, T0).await.unwrap_err();
        assert!(
            matches!(
                e,
                VerifyError::Caller(CallerError::BadCodeLength { min: 6, .. })
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            format!("code_length {short} is out of range: use 6 to 10 digits")
        );
    }
    assert!(matches!(
        s.check(&svc, "vf_nope", "123456", T0).await,
        Err(VerifyError::Caller(CallerError::NotFound))
    ));
}

#[tokio::test]
async fn country_allow_list_applies() {
    let (s, mut svc, store) = setup(VerifyConfig::default()).await;
    svc.settings = serde_json::json!({"allowed_countries": ["CN"]});
    store
        .update_service_settings("acme", &svc.settings)
        .await
        .unwrap();
    match s.start(&svc, req(TO), T0).await {
        Err(VerifyError::Caller(CallerError::CountryNotAllowed { country })) => {
            assert_eq!(country, "GB")
        }
        other => panic!("{other:?}"),
    }
    assert!(s.start(&svc, req("+8613800138000"), T0).await.is_ok());
}

#[tokio::test]
async fn per_number_limit_answers_retry_after() {
    let mut cfg = VerifyConfig::default();
    cfg.limits.per_number = "2/10m".parse().unwrap();
    cfg.resend_cooldown = "1s".parse().unwrap();
    let (s, svc, _) = setup(cfg).await;
    s.start(&svc, req(TO), T0).await.unwrap();
    s.start(&svc, req(TO), T0 + 2_000).await.unwrap();
    match s.start(&svc, req(TO), T0 + 4_000).await {
        Err(VerifyError::Caller(CallerError::RateLimited {
            scope,
            retry_after_secs,
        })) => {
            assert_eq!(scope, "per number");
            assert!(retry_after_secs > 0 && retry_after_secs <= 600);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn idempotency_key_replays_and_refuses_other_bodies() {
    let (s, svc, _) = setup(VerifyConfig::default()).await;
    let mut r = req(TO);
    r.idempotency = Some(("k1".into(), vec![1, 2, 3]));
    let a = s.start(&svc, r.clone(), T0).await.unwrap();
    let b = s.start(&svc, r.clone(), T0 + 1).await.unwrap();
    assert_eq!(a.verification.id, b.verification.id);
    let mut other = req("+8613800138000");
    other.idempotency = Some(("k1".into(), vec![9]));
    assert!(matches!(
        s.start(&svc, other, T0 + 2).await,
        Err(VerifyError::Caller(CallerError::IdempotencyMismatch))
    ));
}

#[tokio::test]
async fn idempotent_replay_never_resends_even_after_cooldown() {
    let (s, svc, store) = setup(VerifyConfig::default()).await;
    let mut r = req(TO);
    r.idempotency = Some(("retry-1".into(), vec![7]));
    let a = s.start(&svc, r.clone(), T0).await.unwrap();
    let b = s.start(&svc, r.clone(), T0 + 120_000).await.unwrap();
    assert_eq!(a.verification.id, b.verification.id);
    assert!(!b.sent);
    assert_eq!(
        store
            .messages_for_verification(&a.verification.id)
            .await
            .unwrap()
            .len(),
        1
    );
    let mut other = req(TO);
    other.idempotency = Some(("retry-1".into(), vec![8]));
    assert!(matches!(
        s.start(&svc, other, T0 + 1).await,
        Err(VerifyError::Caller(CallerError::IdempotencyMismatch))
    ));
}

#[tokio::test]
async fn every_close_queues_one_webhook_including_expiry_found_by_a_new_start() {
    let (s, mut svc, store) = setup(VerifyConfig::default()).await;
    with_webhook(&store, &mut svc).await;
    let a = s.start(&svc, req(TO), T0).await.unwrap().verification;
    // A new start after expiry closes the old one (webhook) and makes a new one.
    let b = s
        .start(&svc, req(TO), T0 + 700_000)
        .await
        .unwrap()
        .verification;
    assert_ne!(a.id, b.id);
    let c = s.cancel(&svc, &b.id, T0 + 700_001).await.unwrap();
    assert_eq!(c.status, VerificationStatus::Canceled);
    // Canceling again changes nothing and queues nothing.
    s.cancel(&svc, &b.id, T0 + 700_002).await.unwrap();
    let jobs = store
        .claim_webhooks(T0 + 800_000, 10, 60_000)
        .await
        .unwrap();
    let kinds: Vec<String> = jobs
        .iter()
        .map(|j| {
            serde_json::from_str::<serde_json::Value>(&j.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, vec!["verification.expired", "verification.canceled"]);
}

#[tokio::test]
async fn one_number_pestered_through_many_services_hits_the_cross_service_limit() {
    let mut cfg = VerifyConfig::default();
    cfg.limits.per_number_all_services = "2/1h".parse().unwrap();
    let (s, acme, store) = setup(cfg).await;
    let mut services = vec![acme];
    for code in ["beta", "gamma"] {
        let svc = Service {
            code: code.into(),
            name: code.into(),
            settings: serde_json::json!({}),
            created_at: T0,
        };
        store.create_service(&svc).await.unwrap();
        services.push(svc);
    }
    // Each service is well within its own per-number limit (5 per 10 min).
    for svc in &services[..2] {
        assert!(s.start(svc, req(TO), T0).await.unwrap().created);
    }
    let e = s.start(&services[2], req(TO), T0).await.unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::Caller(CallerError::RateLimited {
                scope: "per number across services",
                ..
            })
        ),
        "{e}"
    );
    // Another number is not affected.
    assert!(
        s.start(&services[2], req("+447400123499"), T0)
            .await
            .unwrap()
            .created
    );
}

#[tokio::test]
async fn the_expiry_sweep_sends_expired_on_time_without_anyone_reading() {
    let (s, mut svc, store) = setup(VerifyConfig::default()).await;
    with_webhook(&store, &mut svc).await;
    let a = s.start(&svc, req(TO), T0).await.unwrap().verification;
    let b = s
        .start(&svc, req("+447400123457"), T0 + 1)
        .await
        .unwrap()
        .verification;
    // Not before its expiry…
    assert_eq!(s.expire_due(T0 + 599_999).await.unwrap(), 0);
    // …and at it, with nobody reading the verification: closed, webhook queued.
    assert_eq!(s.expire_due(T0 + 600_000).await.unwrap(), 1);
    let stored = store.get_verification(&a.id).await.unwrap().unwrap();
    assert_eq!(stored.status, VerificationStatus::Expired);
    assert_eq!(stored.updated_at, T0 + 600_000);
    let jobs = store
        .claim_webhooks(T0 + 600_000, 10, 60_000)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&jobs[0].body).unwrap();
    assert_eq!(body["type"], "verification.expired");
    assert_eq!(body["data"]["id"], a.id.as_str());
    assert_eq!(body["data"]["status"], "expired");
    store.complete_webhook(&jobs[0].lease).await.unwrap();
    // The next one a millisecond later; a sweep finding nothing queues nothing.
    assert_eq!(s.expire_due(T0 + 600_001).await.unwrap(), 1);
    assert_eq!(s.expire_due(T0 + 700_000).await.unwrap(), 0);
    let jobs = store
        .claim_webhooks(T0 + 700_000, 10, 60_000)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "one webhook for b, none again for a");
    assert!(jobs[0].body.contains(&b.id));
    store.complete_webhook(&jobs[0].lease).await.unwrap();
    // Reading an expired verification later queues nothing more.
    s.get(&svc, &a.id, T0 + 800_000).await.unwrap();
    assert!(store
        .claim_webhooks(T0 + 900_000, 10, 60_000)
        .await
        .unwrap()
        .is_empty());
}

// ---- call channels

use super::channels::CallChannels;
use super::service::Submission;
use crate::flashcall::{CliPool, FlashPool, FlashSettings};
use crate::store::{CallKind, CallState};

fn call_channels() -> CallChannels {
    CallChannels {
        voice_locales: vec!["en".into(), "zh".into()],
        flash: Some(FlashSettings {
            pools: vec![FlashPool {
                countries: vec!["*".into()],
                pool: CliPool::new(&[], &["+447400900000-+447400900001".into()], 4).unwrap(),
                report_digits: 4,
            }],
            report_window: std::time::Duration::from_secs(120),
        }),
        unavailable: None,
    }
}

fn call_req(to: &str, channel: &str) -> StartRequest {
    StartRequest {
        to: to.into(),
        channel: channel.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn call_channels_without_a_trunk_say_why() {
    let (s, svc, _) = setup(VerifyConfig::default()).await;
    for ch in ["voice", "flash_call"] {
        let e = s.start(&svc, call_req(TO, ch), T0).await.unwrap_err();
        assert!(
            matches!(&e, VerifyError::Setup(SetupError::ChannelUnavailable { why, .. }) if why.contains("sip_trunk")),
            "{e}"
        );
    }
}

#[tokio::test]
async fn a_voice_start_queues_a_call_whose_code_approves_and_whose_fallback_carries_it() {
    let (s, svc, store) = setup(VerifyConfig::default()).await;
    s.set_call_channels(call_channels());
    let e = s
        .start(
            &svc,
            StartRequest {
                locale: Some("fr".into()),
                ..call_req(TO, "voice")
            },
            T0,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, VerifyError::Caller(CallerError::UnsupportedLocale(ref l, ref have)) if l == "fr" && have == "en, zh"),
        "{e}"
    );
    let st = s
        .start(
            &svc,
            StartRequest {
                locale: Some("zh".into()),
                fallback_sms: true,
                ..call_req(TO, "voice")
            },
            T0,
        )
        .await
        .unwrap();
    let v = st.verification;
    assert_eq!((v.channel.as_str(), v.locale.as_str()), ("voice", "zh"));
    assert!(
        store
            .messages_for_verification(&v.id)
            .await
            .unwrap()
            .is_empty(),
        "no SMS now"
    );
    let calls = store.calls_for_verification(&v.id).await.unwrap();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(
        (c.kind, c.state, c.caller.as_deref()),
        (CallKind::Voice, CallState::Queued, None)
    );
    let code = c.code.clone().unwrap();
    assert_eq!(code.len(), 6);
    assert!(c.fallback_text.as_deref().unwrap().contains(&code), "{c:?}");
    let r = s
        .check(&svc, &v.id, code.as_str(), T0 + 1000)
        .await
        .unwrap();
    assert_eq!(r.verification.status, VerificationStatus::Approved);
}

#[tokio::test]
async fn flash_calls_draw_a_free_pool_number_and_approve_on_the_callers_report() {
    let (s, svc, store) = setup(VerifyConfig::default()).await;
    s.set_call_channels(call_channels());
    let (hang_tx, mut hang_rx) = tokio::sync::mpsc::unbounded_channel();
    s.set_hangups(hang_tx);
    let st = s.start(&svc, call_req(TO, "flash_call"), T0).await.unwrap();
    let v = st.verification;
    assert_eq!(
        v.expires_at,
        T0 + 120_000,
        "the report window, not the code TTL"
    );
    let hint = s.flash_hint(&v).unwrap();
    assert_eq!(
        (hint.cli_prefix.as_str(), hint.report_digits),
        ("+44740090000", 4)
    );
    let cli = store.calls_for_verification(&v.id).await.unwrap()[0]
        .caller
        .clone()
        .unwrap();
    // Another service's verification of the same number gets the other number,
    // and a third finds none free.
    let mut other = svc.clone();
    for code in ["acme2", "acme3"] {
        other.code = code.into();
        store.create_service(&other).await.unwrap();
    }
    other.code = "acme2".into();
    let v2 = s
        .start(&other, call_req(TO, "flash_call"), T0)
        .await
        .unwrap()
        .verification;
    let cli2 = store.calls_for_verification(&v2.id).await.unwrap()[0]
        .caller
        .clone()
        .unwrap();
    assert_ne!(
        cli, cli2,
        "a number in use for the destination is not drawn"
    );
    other.code = "acme3".into();
    let e = s
        .start(&other, call_req(TO, "flash_call"), T0)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::Setup(SetupError::NoCallerNumber {
                retry_after_secs: 120
            })
        ),
        "{e}"
    );
    // Reports: junk only is refused; the other pool number costs an attempt.
    let e = s
        .check(&svc, &v.id, Submission::Callers(vec!["Private".into()]), T0)
        .await
        .unwrap_err();
    assert!(
        matches!(e, VerifyError::Caller(CallerError::BadReport(_))),
        "{e}"
    );
    let r = s
        .check(&svc, &v.id, Submission::Callers(vec![cli2.clone()]), T0)
        .await
        .unwrap();
    assert_eq!(
        (r.verification.status, r.verification.attempts),
        (VerificationStatus::Pending, 1)
    );
    // The call is ringing (claimed) when the report approves: it is hung up.
    let claimed = store.claim_calls(T0, 10, 60_000).await.unwrap();
    let ringing = claimed
        .iter()
        .find(|c| c.verification_id.as_deref() == Some(v.id.as_str()))
        .unwrap();
    let national = format!("0{}", &cli[3..]);
    let r = s
        .check(
            &svc,
            &v.id,
            Submission::Callers(vec!["Private".into(), national]),
            T0 + 5,
        )
        .await
        .unwrap();
    assert!(r.matched && r.verification.status == VerificationStatus::Approved);
    assert_eq!(hang_rx.try_recv().ok(), Some(ringing.id.clone()));
    // The last digits alone approve too.
    let r = s
        .check(
            &other_of(&svc, "acme2"),
            &v2.id,
            &cli2[cli2.len() - 4..],
            T0,
        )
        .await
        .unwrap();
    assert_eq!(r.verification.status, VerificationStatus::Approved);
}

#[tokio::test]
async fn listing_many_pool_numbers_costs_as_many_guesses() {
    let (s, svc, _) = setup(VerifyConfig::default()).await;
    s.set_call_channels(call_channels());
    let both = vec!["+447400900000".to_string(), "+447400900001".to_string()];
    // Naming every number of the pool at once is not a way round the attempts.
    let v = s
        .start(&svc, call_req(TO, "flash_call"), T0)
        .await
        .unwrap()
        .verification;
    for _ in 0..3 {
        let r = s
            .check(&svc, &v.id, Submission::Callers(vec!["9999".into()]), T0)
            .await
            .unwrap();
        assert!(!r.matched);
    }
    // Two attempts left, two guesses: allowed (and right).
    let r = s
        .check(&svc, &v.id, Submission::Callers(both.clone()), T0)
        .await
        .unwrap();
    assert_eq!(r.verification.status, VerificationStatus::Approved);
    // With one attempt left, the same two-guess list approves nothing and
    // uses the verification up.
    let v = s
        .start(&svc, call_req("+447400123499", "flash_call"), T0)
        .await
        .unwrap()
        .verification;
    for _ in 0..4 {
        s.check(&svc, &v.id, Submission::Callers(vec!["9999".into()]), T0)
            .await
            .unwrap();
    }
    let r = s
        .check(&svc, &v.id, Submission::Callers(both.clone()), T0)
        .await
        .unwrap();
    assert!(!r.matched);
    assert_eq!(
        (r.verification.status, r.verification.attempts),
        (VerificationStatus::MaxAttemptsReached, 5)
    );
    // Numbers that cannot be ours (a friend's call) cost nothing extra, and
    // the same number twice is one guess.
    let v = s
        .start(&svc, call_req("+447400123498", "flash_call"), T0)
        .await
        .unwrap()
        .verification;
    let r = s
        .check(
            &svc,
            &v.id,
            Submission::Callers(vec![
                "+447700900123".into(),
                "+447700900124".into(),
                "+447400900009".into(),
                "+447400900009".into(),
            ]),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(
        r.verification.attempts, 1,
        "one guess from the pool's range"
    );
}

fn other_of(svc: &Service, code: &str) -> Service {
    Service {
        code: code.into(),
        ..svc.clone()
    }
}

#[tokio::test]
async fn caller_reports_are_refused_for_a_code_verification() {
    let (s, svc, _) = setup(VerifyConfig::default()).await;
    let v = s.start(&svc, req(TO), T0).await.unwrap().verification;
    let e = s
        .check(
            &svc,
            &v.id,
            Submission::Callers(vec!["+447400900000".into()]),
            T0,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, VerifyError::Caller(CallerError::NotAFlashCall(_))),
        "{e}"
    );
}

//! The public API end to end through the router, on a real SQLite store.

use super::router;
use crate::app::{api_key_hash, AppState};
use crate::config::VerifyConfig;
use crate::random::Random;
use crate::store::sqlite::SqliteStore;
use crate::store::{ApiKeyRecord, Service, Store};
use crate::verify::code::ServerSecret;
use crate::verify::service::VerifyService;
use crate::voice_gateway::VoiceGateway;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt;

const KEY: &str = "vg_live_0123456789abcdef";
const OTHER_KEY: &str = "vg_live_other_service";
const TO: &str = "+447400123456";

struct Api {
    app: Router,
    store: Arc<dyn Store>,
    mo: Arc<crate::mologin::MoLoginService>,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

async fn setup_with(cfg: VerifyConfig, trust_forwarded_for: bool) -> Api {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let secret = ServerSecret::random(&Random::os());
    for code in ["acme", "other", crate::mologin::SYSTEM_SERVICE] {
        store
            .create_service(&Service {
                code: code.into(),
                name: code.to_uppercase(),
                settings: json!({}),
                created_at: 0,
            })
            .await
            .unwrap();
    }
    for (key_id, service, key) in [("k_acme", "acme", KEY), ("k_other", "other", OTHER_KEY)] {
        store
            .add_api_key(&ApiKeyRecord {
                key_id: key_id.into(),
                service: service.into(),
                hash: api_key_hash(&secret, key),
                created_at: 0,
                revoked_at: None,
            })
            .await
            .unwrap();
    }
    let mut mo = crate::mologin::MoLoginService::new(
        store.clone(),
        ServerSecret::random(&Random::os()),
        crate::config::MoLoginConfig {
            short_code: "7799".into(),
            ..Default::default()
        },
        Random::os(),
    );
    // Long polls here are woken by completions only (no periodic look), so
    // a test of the wake-up fails if it is broken.
    mo.set_recheck(std::time::Duration::from_secs(600));
    let mo = Arc::new(mo);
    let verify = Arc::new(VerifyService::new(
        store.clone(),
        secret.clone(),
        cfg,
        Random::os(),
    ));
    // acme is also an app reporting to a carrier registry (nobody listens).
    let bindings = Arc::new(crate::bindings::BindingsService::new(
        store.clone(),
        verify.clone(),
        &[crate::config::BindingsApp {
            service: "acme".into(),
            registry_url: "http://127.0.0.1:9".into(),
            registry_service: String::new(),
            registry_api_key: "acme-key-at-the-carrier-0".into(),
            registry_secret: REGISTRY_SECRET.into(),
            tolerance: crate::config::Span(std::time::Duration::from_secs(300)),
            report_for: crate::config::Span(std::time::Duration::from_secs(86_400)),
            proof_ttl: crate::config::Span(std::time::Duration::from_secs(600)),
        }],
        "GB",
        Random::os(),
    ));
    let state = AppState {
        clock: crate::clock::Clock::system(),
        store: store.clone(),
        verify,
        bindings: Some(bindings),
        txrelay: Some(Arc::new(crate::txrelay::TxRelay::new(
            store.clone(),
            "GB",
            120,
            &secret,
        ))),
        secret,
        trust_forwarded_for,
        // No caching: these tests change keys behind the API's back.
        callers: Arc::new(crate::app::CallerCache::new(std::time::Duration::ZERO)),
        voice_gateway: Arc::new(VoiceGateway::with_entries(
            store.clone(),
            &gateway_entries(),
            "GB",
            &["en".into(), "zh".into()],
            Random::os(),
        )),
        mo_login: mo.clone(),
        // "other" is the carrier's self-care service in these tests.
        registry: Some(Arc::new(
            crate::registry::Registry::new(store.clone(), "GB", Random::os())
                .with_self_care(vec!["other".into()], 600_000),
        )),
        auth_failures: Arc::new(crate::limits::AuthFailures::new("5/1m".parse().unwrap())),
    };
    let app = router(state).layer(MockConnectInfo(SocketAddr::from(([203, 0, 113, 7], 40000))));
    Api { app, store, mo }
}

async fn setup() -> Api {
    setup_with(VerifyConfig::default(), false).await
}

impl Api {
    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            json,
        }
    }

    async fn call(&self, method: Method, uri: &str, body: Option<&str>) -> Reply {
        self.send(request(method, uri, Some(KEY), body, &[])).await
    }

    async fn start(&self, body: Value) -> Reply {
        self.call(Method::POST, "/v1/verifications", Some(&body.to_string()))
            .await
    }

    async fn check(&self, id: &str, code: &str) -> Reply {
        self.call(
            Method::POST,
            &format!("/v1/verifications/{id}/check"),
            Some(&json!({ "code": code }).to_string()),
        )
        .await
    }

    /// The code as the handset would read it from the queued message.
    async fn code_of(&self, vid: &str) -> String {
        let msgs = self.store.messages_for_verification(vid).await.unwrap();
        let text = &msgs.last().unwrap().text;
        text.split_whitespace()
            .map(|w| w.trim_end_matches('.'))
            .find(|w| w.len() >= 4 && w.chars().all(|c| c.is_ascii_digit()))
            .unwrap()
            .to_string()
    }
}

fn request(
    method: Method,
    uri: &str,
    key: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        b = b.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    if body.is_some() {
        b = b.header(header::CONTENT_TYPE, "application/json");
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body.unwrap_or("").to_string())).unwrap()
}

fn assert_problem(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.json);
    assert_eq!(
        r.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/problem+json"
    );
    assert_eq!(r.json["code"], code, "{}", r.json);
    assert_eq!(r.json["status"], status.as_u16());
    assert_eq!(
        r.json["type"],
        format!("https://verigate.dev/problems/{code}")
    );
    assert!(r.json["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(r.json["detail"].as_str().is_some_and(|t| !t.is_empty()));
}

fn wrong_code(code: &str) -> &'static str {
    if code == "111111" {
        "222222"
    } else {
        "111111"
    }
}

#[tokio::test]
async fn start_creates_then_repeat_returns_same() {
    let api = setup().await;
    let r = api.start(json!({ "to": "07400 123456" })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let v = &r.json;
    let id = v["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("vf_"));
    assert_eq!(v["status"], "pending");
    assert_eq!(v["channel"], "sms");
    assert_eq!(v["to"], TO);
    assert_eq!(v["send_count"], 1);
    assert_eq!(v["remaining_attempts"], 5);
    assert_eq!(v["delivery"]["state"], "queued");
    assert_eq!(v["delivery"]["messages"], 1);
    assert!(v.get("resent").is_none());
    for field in ["expires_at", "created_at"] {
        let t = v[field].as_str().unwrap();
        assert!(
            t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{t}"
        );
    }
    assert!(v["expires_at"].as_str() > v["created_at"].as_str());

    let again = api.start(json!({ "to": TO, "channel": "sms" })).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.json);
    assert_eq!(again.json["id"], id.as_str());
    assert_eq!(again.json["resent"], false);
    assert_eq!(again.json["send_count"], 1);

    let got = api
        .call(Method::GET, &format!("/v1/verifications/{id}"), None)
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json["id"], id.as_str());
    assert_eq!(got.json["status"], "pending");
}

#[tokio::test]
async fn wrong_then_right_code() {
    let api = setup().await;
    let r = api.start(json!({ "to": TO })).await;
    let id = r.json["id"].as_str().unwrap().to_string();
    let code = api.code_of(&id).await;

    let c = api.check(&id, wrong_code(&code)).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.json);
    assert_eq!(
        c.json,
        json!({ "id": id, "status": "pending", "remaining_attempts": 4, "valid": false })
    );

    let c = api.check(&id, &code).await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(c.json["status"], "approved");
    assert_eq!(c.json["valid"], true);

    let got = api
        .call(Method::GET, &format!("/v1/verifications/{id}"), None)
        .await;
    assert_eq!(got.json["status"], "approved");
}

#[tokio::test]
async fn five_wrong_codes_reach_max_attempts() {
    let api = setup().await;
    let r = api.start(json!({ "to": TO, "code_length": 8 })).await;
    let id = r.json["id"].as_str().unwrap().to_string();
    let code = api.code_of(&id).await;
    assert_eq!(code.len(), 8);
    let wrong = if code == "11111111" {
        "22222222"
    } else {
        "11111111"
    };
    for left in (1..=4).rev() {
        let c = api.check(&id, wrong).await;
        assert_eq!(c.json["status"], "pending");
        assert_eq!(c.json["remaining_attempts"], left);
    }
    let c = api.check(&id, wrong).await;
    assert_eq!(c.json["status"], "max_attempts_reached");
    assert_eq!(c.json["remaining_attempts"], 0);
    assert_eq!(c.json["valid"], false);
    // The right code no longer helps.
    let c = api.check(&id, &code).await;
    assert_eq!(c.json["status"], "max_attempts_reached");
    assert_eq!(c.json["valid"], false);
}

#[tokio::test]
async fn cancel_closes_it() {
    let api = setup().await;
    let r = api.start(json!({ "to": TO })).await;
    let id = r.json["id"].as_str().unwrap().to_string();
    let code = api.code_of(&id).await;
    let c = api
        .call(
            Method::POST,
            &format!("/v1/verifications/{id}/cancel"),
            None,
        )
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.json);
    assert_eq!(c.json["id"], id.as_str());
    assert_eq!(c.json["status"], "canceled");
    assert_eq!(c.json["remaining_attempts"], 0);
    let c = api.check(&id, &code).await;
    assert_eq!(c.json["status"], "canceled");
    assert_eq!(c.json["valid"], false);
    // A new start makes a new verification.
    let r = api.start(json!({ "to": TO })).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_ne!(r.json["id"], id.as_str());
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let api = setup().await;
    let r = api
        .call(Method::GET, "/v1/verifications/vf_nope", None)
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
    let r = api.check("vf_nope", "123456").await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
    let r = api
        .call(Method::POST, "/v1/verifications/vf_nope/cancel", None)
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
    let r = api.call(Method::GET, "/v1/nothing", None).await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn other_services_verifications_are_invisible() {
    let api = setup().await;
    let r = api.start(json!({ "to": TO })).await;
    let id = r.json["id"].as_str().unwrap().to_string();
    let r = api
        .send(request(
            Method::GET,
            &format!("/v1/verifications/{id}"),
            Some(OTHER_KEY),
            None,
            &[],
        ))
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn missing_or_wrong_key_is_401() {
    let api = setup().await;
    let body = json!({ "to": TO }).to_string();
    for key in [None, Some("vg_live_wrong"), Some("")] {
        let r = api
            .send(request(
                Method::POST,
                "/v1/verifications",
                key,
                Some(&body),
                &[],
            ))
            .await;
        assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(r.headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
    }
    let r = api
        .send(
            Request::get("/v1/verifications/vf_x")
                .header(header::AUTHORIZATION, format!("Basic {KEY}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    // Auth comes before body parsing.
    let r = api
        .send(request(
            Method::POST,
            "/v1/verifications",
            None,
            Some("{nope"),
            &[],
        ))
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn body_errors_have_stable_codes() {
    let api = setup().await;
    let r = api
        .call(Method::POST, "/v1/verifications", Some("{\"to\": "))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_json");
    assert!(
        r.json["detail"].as_str().unwrap().contains("JSON"),
        "{}",
        r.json
    );

    let r = api
        .send(
            Request::post("/v1/verifications")
                .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(json!({ "to": TO }).to_string()))
                .unwrap(),
        )
        .await;
    assert_problem(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_json");
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap()
            .contains("application/json"),
        "{}",
        r.json
    );

    let r = api.start(json!({ "to": TO, "colour": "red" })).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "unknown_field");
    assert!(
        r.json["detail"].as_str().unwrap().contains("colour"),
        "{}",
        r.json
    );

    let r = api.start(json!({ "to": 447400123456u64 })).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_field");
    assert!(
        r.json["detail"].as_str().unwrap().starts_with("to:"),
        "{}",
        r.json
    );

    let r = api.start(json!({ "channel": "sms" })).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_field");
    assert!(
        r.json["detail"].as_str().unwrap().contains("`to`"),
        "{}",
        r.json
    );

    let r = api.start(json!([TO])).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_field");

    // Two values for one field: refused, not "the last one wins".
    let r = api
        .call(
            Method::POST,
            "/v1/verifications",
            Some(r#"{"to":"+447400123456","to":"+447400999999"}"#),
        )
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_field");
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap()
            .contains("duplicate field `to`"),
        "{}",
        r.json
    );

    // An empty channel is a mistake, not "the default".
    let r = api.start(json!({ "to": TO, "channel": "" })).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "unsupported_channel");

    let r = api.check("vf_x", "12").await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_code");
    let r = api
        .call(
            Method::POST,
            "/v1/verifications/vf_x/check",
            Some(r#"{"code":"123456","extra":1}"#),
        )
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "unknown_field");
    assert!(r.json["detail"].as_str().unwrap().contains("extra"));

    let big = json!({ "to": TO, "locale": "x".repeat(20 * 1024) }).to_string();
    let r = api
        .call(Method::POST, "/v1/verifications", Some(&big))
        .await;
    assert_problem(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn request_errors_map_to_codes() {
    let api = setup().await;
    let r = api.start(json!({ "to": "+44 12" })).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_phone_number");
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap()
            .contains("not a valid phone number"),
        "{}",
        r.json
    );
    let r = api.start(json!({ "to": "call me" })).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_phone_number");
    assert!(
        r.json["detail"].as_str().unwrap().contains("letters"),
        "{}",
        r.json
    );
    let r = api.start(json!({ "to": TO, "channel": "pigeon" })).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "unsupported_channel");
    let r = api.start(json!({ "to": TO, "locale": "tlh" })).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "unsupported_locale");
    for n in [3, 4, 5, 11, 300] {
        let r = api.start(json!({ "to": TO, "code_length": n })).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_code_length");
    }
    let r = api.call(Method::DELETE, "/v1/verifications", None).await;
    assert_problem(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn country_allow_list() {
    let api = setup().await;
    api.store
        .update_service_settings("acme", &json!({ "allowed_countries": ["US"] }))
        .await
        .unwrap();
    let r = api.start(json!({ "to": TO })).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "country_not_allowed");
    assert!(r.json["detail"].as_str().unwrap().contains("GB"));
}

#[tokio::test]
async fn per_ip_limit_is_429_with_retry_after() {
    let mut cfg = VerifyConfig::default();
    cfg.limits.per_ip = "2/1m".parse().unwrap();
    let api = setup_with(cfg, false).await;
    assert_eq!(
        api.start(json!({ "to": TO })).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        api.start(json!({ "to": "+447400123457" })).await.status,
        StatusCode::CREATED
    );
    let r = api.start(json!({ "to": "+447400123458" })).await;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let secs: u64 = r
        .headers
        .get(header::RETRY_AFTER)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
}

#[tokio::test]
async fn forwarded_for_is_used_only_when_trusted() {
    let mut cfg = VerifyConfig::default();
    cfg.limits.per_ip = "1/1m".parse().unwrap();
    let body = json!({ "to": TO }).to_string();
    let xff = |ip: &'static str| {
        request(
            Method::POST,
            "/v1/verifications",
            Some(KEY),
            Some(&body),
            &[("x-forwarded-for", ip)],
        )
    };
    let api = setup_with(cfg.clone(), true).await;
    assert_eq!(
        api.send(xff("198.51.100.1")).await.status,
        StatusCode::CREATED
    );
    // A client cannot pick its bucket by prepending an address: the entry
    // our proxy added (the last) counts.
    let r = api.send(xff("198.51.100.2, 198.51.100.1")).await;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(
        api.send(xff("198.51.100.1, 198.51.100.2")).await.status,
        StatusCode::OK
    );

    // Untrusted: the header is ignored and the peer address counts.
    let api = setup_with(cfg, false).await;
    assert_eq!(
        api.send(xff("198.51.100.1")).await.status,
        StatusCode::CREATED
    );
    let r = api.send(xff("198.51.100.2")).await;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

#[tokio::test]
async fn an_ipv6_client_rotating_through_its_64_stays_in_one_bucket() {
    let mut cfg = VerifyConfig::default();
    cfg.limits.per_ip = "2/1m".parse().unwrap();
    let api = setup_with(cfg, true).await;
    let start_from = |ip: &'static str, to: &str| {
        let body = json!({ "to": to }).to_string();
        request(
            Method::POST,
            "/v1/verifications",
            Some(KEY),
            Some(&body),
            &[("x-forwarded-for", ip)],
        )
    };
    for (ip, to) in [
        ("2001:db8:5:6::1", "+447400123401"),
        ("2001:db8:5:6:ffff::2", "+447400123402"),
    ] {
        assert_eq!(
            api.send(start_from(ip, to)).await.status,
            StatusCode::CREATED
        );
    }
    // A third address of the same /64: the same bucket, refused.
    let r = api
        .send(start_from(
            "2001:db8:5:6:1234:5678:9abc:def0",
            "+447400123403",
        ))
        .await;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Another /64 has its own.
    assert_eq!(
        api.send(start_from("2001:db8:5:7::1", "+447400123404"))
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn guessing_api_keys_from_one_address_is_stopped_with_429() {
    let api = setup().await;
    // The test limit is 5 wrong keys a minute per address.
    for i in 0..5 {
        let r = api
            .send(request(
                Method::GET,
                "/v1/verifications/vf_x",
                Some(&format!("vg_live_guess_{i}")),
                None,
                &[],
            ))
            .await;
        assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // The sixth guess is refused before any key is looked up…
    let r = api
        .send(request(
            Method::GET,
            "/v1/verifications/vf_x",
            Some("vg_live_guess_6"),
            None,
            &[],
        ))
        .await;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(r.headers.get(header::RETRY_AFTER).is_some());
    assert!(r.json["detail"].as_str().unwrap().contains("wrong API key"));
    // …and so is a right key not looked up recently from there (the
    // address is spent), while the blocked guesses never reached the store.
    let r = api.call(Method::GET, "/v1/verifications/vf_x", None).await;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

#[tokio::test]
async fn idempotency_key_replays_and_refuses_reuse() {
    let api = setup().await;
    let start = |body: Value, key: &'static str| {
        request(
            Method::POST,
            "/v1/verifications",
            Some(KEY),
            Some(&body.to_string()),
            &[("Idempotency-Key", key)],
        )
    };
    let a = api.send(start(json!({ "to": TO }), "order-42")).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.json);
    let id = a.json["id"].as_str().unwrap().to_string();
    // Approve it, so a replay cannot be mistaken for "pending exists".
    let code = api.code_of(&id).await;
    assert_eq!(api.check(&id, &code).await.json["status"], "approved");

    let b = api.send(start(json!({ "to": TO }), "order-42")).await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.json);
    assert_eq!(b.json["id"], id.as_str());
    assert_eq!(b.json["status"], "approved");
    assert_eq!(b.json["resent"], false);

    let c = api
        .send(start(json!({ "to": "+447400123457" }), "order-42"))
        .await;
    assert_problem(
        &c,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    );

    let long = "k".repeat(256);
    let r = api
        .send(request(
            Method::POST,
            "/v1/verifications",
            Some(KEY),
            Some(&json!({ "to": TO }).to_string()),
            &[("Idempotency-Key", long.as_str())],
        ))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_idempotency_key");
}

#[tokio::test]
async fn openapi_and_healthz() {
    let api = setup().await;
    let r = api
        .send(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let paths = r.json["paths"].as_object().unwrap();
    let mut names: Vec<&str> = paths.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "/number-recycling/v0.2/check",
            "/sim-swap/v2/check",
            "/sim-swap/v2/retrieve-date",
            "/v1/bindings",
            "/v1/bindings/{id}",
            "/v1/bindings/{id}/confirm",
            "/v1/mo-logins",
            "/v1/mo-logins/{token}",
            "/v1/registry-events",
            "/v1/registry/bindings/{msisdn}/{service_code}",
            "/v1/registry/move",
            "/v1/registry/services",
            "/v1/registry/unbind",
            "/v1/tx/sessions",
            "/v1/tx/sessions/{id}",
            "/v1/tx/sessions/{id}/transactions",
            "/v1/tx/transactions/{id}",
            "/v1/verifications",
            "/v1/verifications/{id}",
            "/v1/verifications/{id}/cancel",
            "/v1/verifications/{id}/check",
            "/v1/voice-calls",
            "/v1/voice-calls/{id}",
        ]
    );
    assert!(paths["/v1/verifications"]["post"]["responses"]["429"].is_object());
    // The gateway is proven by K2, not by an API key.
    assert_eq!(paths["/v1/voice-calls"]["post"]["security"], json!([{}]));
    assert!(paths["/v1/voice-calls"]["post"]["responses"]["403"].is_object());
    assert_eq!(
        r.json["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for s in [
        "StartBody",
        "CheckBody",
        "VerificationView",
        "CheckView",
        "VoiceCallBody",
        "VoiceCallView",
        "Problem",
    ] {
        assert!(r.json["components"]["schemas"][s].is_object(), "{s}");
    }
    assert!(
        r.json["paths"]["/v1/verifications/{id}"]["get"]["responses"]["404"]["content"]
            ["application/problem+json"]
            .is_object()
    );

    let r = api
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json, Value::String("ok".into()));
}

// ---- /v1/voice-calls

/// The seed's service number (legacy MD5, its key "123321") and one on HMAC.
const HMAC_K1: &str = "0123456789abcdef";

fn gateway_entries() -> Vec<crate::config::VoiceGatewayEntry> {
    let entry = |toml: &str| toml::from_str::<crate::config::VoiceGatewayEntry>(toml).unwrap();
    vec![
        entry(
            "sn = \"6258\"\nk1 = \"123321\"\nk2 = \"md5-legacy\"\nregion = \"CN\"\nlimit = \"5/1m\"\nper_number = \"2/1h\"\ndefault_locale = \"zh\"",
        ),
        entry(&format!(
            "sn = \"7001\"\nk1 = \"{HMAC_K1}\"\ncountries = [\"GB\", \"CN\"]\ncaller_id = \"+442071838750\""
        )),
    ]
}

fn md5_k2(tn: &str, vn: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(format!("{tn}{vn}123321")))
}

/// K2 of the HMAC form, signed now; with the `ts` it signs.
fn hmac_k2(tn: &str, vn: &str) -> (String, i64) {
    use hmac::{Hmac, Mac};
    let ts = crate::clock::unix_ms() / 1000;
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(HMAC_K1.as_bytes()).unwrap();
    m.update(format!("{ts}.{tn}{vn}").as_bytes());
    (hex::encode(m.finalize().into_bytes()), ts)
}

impl Api {
    async fn voice_call(&self, body: Value) -> Reply {
        self.send(request(
            Method::POST,
            "/v1/voice-calls",
            None,
            Some(&body.to_string()),
            &[],
        ))
        .await
    }

    /// Calls waiting to be placed (claims them, so call once per test step).
    async fn queued_calls(&self) -> Vec<crate::store::CallJob> {
        self.store
            .claim_calls(crate::clock::unix_ms() + 1, 100, 60_000)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.job)
            .collect()
    }
}

#[tokio::test]
async fn voice_gateway_places_a_call_for_the_seeds_example_once() {
    let api = setup().await;
    // The seed's worked example, K2 = MD5("13988888888" + "365882" + "123321").
    assert_eq!(
        md5_k2("13988888888", "365882"),
        "241cf04a9dd186585ff23b9e7ae76493"
    );
    let body = json!({ "tn": "13988888888", "vn": "365882", "sn": "6258",
                       "k2": "241CF04A9DD186585FF23B9E7AE76493" });
    let r = api.voice_call(body.clone()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let id = r.json["id"].as_str().unwrap().to_string();
    assert_eq!(r.json["sn"], "6258");
    assert_eq!(r.json["tn"], "+***********88");
    assert_eq!(
        r.json["locale"], "zh",
        "the service number's default locale"
    );
    assert_eq!(r.json["state"], "queued");
    assert_eq!(r.json["sip_code"], Value::Null);
    // The call is queued for the worker: the number in E.164, the code to read.
    let queued = api.queued_calls().await;
    assert_eq!(queued.len(), 1);
    let c = &queued[0];
    assert_eq!(
        (c.id.as_str(), c.to.as_str()),
        (id.as_str(), "+8613988888888")
    );
    assert_eq!(c.code.as_deref(), Some("365882"));
    assert_eq!(
        (c.verification_id.as_ref(), c.caller.as_ref()),
        (None, None)
    );
    // The same request again (a retry, or someone replaying it) answers
    // the first call and places no other.
    let again = api.voice_call(body).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.json);
    assert_eq!(again.json["id"], id.as_str());
    assert_eq!(again.json["state"], "calling");
    assert!(api.queued_calls().await.is_empty());
    // Its outcome is polled by id.
    let g = api
        .send(request(
            Method::GET,
            &format!("/v1/voice-calls/{id}"),
            None,
            None,
            &[],
        ))
        .await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(
        (g.json["id"].as_str(), g.json["attempts"].as_u64()),
        (Some(id.as_str()), Some(1))
    );
}

#[tokio::test]
async fn voice_gateway_refuses_a_bad_k2_with_403_and_places_no_call() {
    let api = setup().await;
    let k2 = md5_k2("13988888888", "365882");
    for (body, case) in [
        // Another code than the one K2 was made for.
        (
            json!({ "tn": "13988888888", "vn": "365883", "sn": "6258", "k2": k2 }),
            "another code",
        ),
        // Another number.
        (
            json!({ "tn": "13988888889", "vn": "365882", "sn": "6258", "k2": k2 }),
            "another number",
        ),
        // Made with another key.
        (
            json!({ "tn": "13988888888", "vn": "365882", "sn": "6258",
                 "k2": hex::encode(<md5::Md5 as md5::Digest>::digest("13988888888365882999999")) }),
            "another key",
        ),
        // Not hex, or the MD5 form for an HMAC service number.
        (
            json!({ "tn": "13988888888", "vn": "365882", "sn": "6258", "k2": "xyz" }),
            "not hex",
        ),
        (
            json!({ "tn": "+447400123456", "vn": "365882", "sn": "7001", "k2": md5_k2("+447400123456", "365882") }),
            "the MD5 form for an HMAC service number",
        ),
        // An unknown service number.
        (
            json!({ "tn": "13988888888", "vn": "365882", "sn": "9999", "k2": k2 }),
            "an unknown service number",
        ),
    ] {
        let r = api.voice_call(body).await;
        assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
        // Every refusal reads the same, so none tells which service
        // numbers exist or which scheme one uses.
        assert_eq!(
            r.json["detail"],
            super::voice_calls::FORBIDDEN_DETAIL,
            "{case}"
        );
    }
    assert!(api.queued_calls().await.is_empty(), "no call for a bad K2");
}

#[tokio::test]
async fn voice_gateway_input_errors_have_clear_codes() {
    let api = setup().await;
    let post = |tn: &str, vn: &str, sn: &str, locale: Option<&str>| {
        let mut b = if sn == "6258" {
            json!({ "tn": tn, "vn": vn, "sn": sn, "k2": md5_k2(tn, vn) })
        } else {
            let (k2, ts) = hmac_k2(tn, vn);
            json!({ "tn": tn, "vn": vn, "sn": sn, "k2": k2, "ts": ts })
        };
        if let Some(l) = locale {
            b["locale"] = json!(l);
        }
        b
    };
    // A code of another length than the service number's (K2 is right):
    // a shorter code would let TN‖VN be split another way.
    let r = api
        .voice_call(post("1398888888", "8365882", "6258", None))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_code");
    assert!(r.json["detail"]
        .as_str()
        .unwrap()
        .contains("exactly 6 digits"));
    let r = api.voice_call(post("139", "365882", "6258", None)).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_phone_number");
    // 6258 calls China only (its region); 7001 names GB and CN.
    let r = api
        .voice_call(post("+447400123456", "365882", "6258", None))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "country_not_allowed");
    let r = api
        .voice_call(post("+12025550143", "365882", "7001", None))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "country_not_allowed");
    let r = api
        .voice_call(post("+447400123456", "365882", "7001", Some("fr")))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "unsupported_locale");
    assert!(r.json["detail"].as_str().unwrap().contains("en, zh"));
    let r = api
        .voice_call(json!({ "tn": "1", "vn": "2", "sn": "6258", "k2": "00", "extra": 1 }))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "unknown_field");
    let r = api
        .voice_call(json!({ "tn": "1", "vn": "2", "sn": "6258" }))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_field");
    assert!(api.queued_calls().await.is_empty());
    // The HMAC form without its timestamp is refused like a wrong K2.
    let mut no_ts = post("+447400123456", "365882", "7001", Some("en"));
    no_ts.as_object_mut().unwrap().remove("ts");
    let r = api.voice_call(no_ts).await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    // The HMAC service number: E.164 input, the caller ID it names.
    let r = api
        .voice_call(post("+447400123456", "365882", "7001", Some("en")))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let queued = api.queued_calls().await;
    assert_eq!(queued[0].caller.as_deref(), Some("+442071838750"));
    assert_eq!(queued[0].locale, "en");
}

#[tokio::test]
async fn voice_gateway_limits_each_service_number() {
    let api = setup().await;
    // 6258 allows 2 calls per number per hour and 5 calls per minute.
    let post =
        |tn: &str, vn: &str| json!({ "tn": tn, "vn": vn, "sn": "6258", "k2": md5_k2(tn, vn) });
    for vn in ["100001", "100002"] {
        let r = api.voice_call(post("13988888888", vn)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    }
    let r = api.voice_call(post("13988888888", "100003")).await;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(r.json["detail"].as_str().unwrap().contains("per number"));
    assert!(r.headers.get(header::RETRY_AFTER).is_some());
    // A repeat of an accepted request is not a new call and is not counted.
    let r = api.voice_call(post("13988888888", "100001")).await;
    assert_eq!(r.status, StatusCode::OK);
    for tn in ["13988888801", "13988888802"] {
        let r = api.voice_call(post(tn, "100001")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    }
    // Five counted (the refused one included): the service number is at its limit.
    let r = api.voice_call(post("13988888803", "100001")).await;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(r.json["detail"]
        .as_str()
        .unwrap()
        .contains("per service number"));
    assert_eq!(api.queued_calls().await.len(), 4);
}

#[tokio::test]
async fn voice_gateway_shows_only_its_own_calls() {
    let api = setup().await;
    let r = api
        .send(request(
            Method::GET,
            "/v1/voice-calls/call_nope",
            None,
            None,
            &[],
        ))
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
    // Another service's call (a verification's) is not visible here.
    let c = crate::store::CallJob {
        id: "call_of_a_verification".into(),
        verification_id: None,
        service: "acme".into(),
        kind: crate::store::CallKind::Voice,
        to: TO.into(),
        caller: None,
        code: Some("123456".into()),
        fallback_text: None,
        locale: "en".into(),
        state: crate::store::CallState::Queued,
        sip_code: None,
        detail: None,
        attempts: 0,
        next_attempt_at: 0,
        expires_at: i64::MAX,
        created_at: 0,
        updated_at: 0,
    };
    api.store.enqueue_call(&c, None).await.unwrap();
    let r = api
        .send(request(
            Method::GET,
            "/v1/voice-calls/call_of_a_verification",
            None,
            None,
            &[],
        ))
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
}

// ---- /v1/mo-logins

impl Api {
    /// The phone's SMS (an international sender, as SMSCs send it): taken
    /// the way the SMPP event handler takes it, stored with its outcome.
    async fn phone_sends(&self, from: &str, text: &str) -> crate::mologin::Handled {
        let now = crate::clock::unix_ms();
        let mo = crate::mologin::incoming(
            &Random::os(),
            "test",
            from,
            1,
            "7799".into(),
            text.into(),
            "GB",
            now,
        );
        let key = crate::mologin::redelivery_key(&mo);
        self.mo
            .receive(&mo, &key, 600_000, now)
            .await
            .unwrap()
            .expect("a new MO, not a redelivery")
    }

    async fn poll(&self, token: &str, key: &str) -> Reply {
        self.send(request(
            Method::GET,
            &format!("/v1/mo-logins/{token}"),
            Some(key),
            None,
            &[],
        ))
        .await
    }
}

#[tokio::test]
async fn mo_login_completes_from_the_phones_sms_and_hands_the_session_out_once() {
    use crate::mologin::Handled;
    let api = setup().await;
    let r = api.call(Method::POST, "/v1/mo-logins", Some("{}")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let token = r.json["token"].as_str().unwrap().to_string();
    assert_eq!(r.json["short_code"], "7799");
    assert_eq!(r.json["sms_body"], format!("LOGIN {token}"));
    assert_eq!(r.json["sms_uri"], format!("sms:7799?body=LOGIN%20{token}"));
    assert_eq!(r.json["intent"], "login");
    assert_eq!(api.poll(&token, KEY).await.json["status"], "pending");
    // Typed by hand: lower case, split, after the keyword.
    let typed = format!("login {}-{}", &token[..4].to_lowercase(), &token[4..]);
    assert_eq!(
        api.phone_sends("447400123456", &typed).await,
        Handled::Completed
    );
    let r = api.poll(&token.to_lowercase(), KEY).await;
    assert_eq!(r.json["status"], "completed", "{}", r.json);
    assert!(r.json["session"].as_str().unwrap().starts_with("vgs_"));
    assert_eq!(r.json["msisdn"], "+447400123456");
    assert_eq!(r.json["created"], true);
    let account = r.json["account_id"].as_str().unwrap().to_string();
    // The session is handed out once; another service never sees the login.
    let again = api.poll(&token, KEY).await;
    assert_eq!(again.json["status"], "used");
    assert!(again.json.get("session").is_none());
    assert_eq!(api.poll(&token, OTHER_KEY).await.json["status"], "unknown");
    // The same token again from the phone: used, answered by SMS.
    assert_eq!(
        api.phone_sends("447400123456", &token).await,
        Handled::Refused("used")
    );
    // A second login from the same number reaches the same account.
    let r = api
        .call(
            Method::POST,
            "/v1/mo-logins",
            Some(r#"{"intent":"register"}"#),
        )
        .await;
    let second = r.json["token"].as_str().unwrap().to_string();
    assert_eq!(
        api.phone_sends("+447400123456", &second).await,
        Handled::Completed
    );
    let r = api.poll(&second, KEY).await;
    assert_eq!(
        (r.json["account_id"].as_str(), r.json["created"].as_bool()),
        (Some(account.as_str()), Some(false))
    );
    // Unknown tokens and texts without one.
    assert_eq!(
        api.phone_sends("447400123457", "LOGIN ZZZZ9999").await,
        Handled::Refused("unknown")
    );
    assert_eq!(
        api.phone_sends("447400123457", "hello?").await,
        Handled::NoToken
    );
    assert_eq!(api.poll("ZZZZ9999", KEY).await.json["status"], "unknown");
    // The replies went to the senders: the password, then the refusals.
    let queued = api
        .store
        .claim_outbox(crate::clock::unix_ms() + 1, 100, 60_000)
        .await
        .unwrap();
    let to_first: Vec<&str> = queued
        .iter()
        .filter(|m| m.to == "+447400123456")
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(to_first.len(), 2, "{to_first:?}");
    assert!(to_first.iter().any(|t| t.contains("Password:")));
    assert!(to_first.iter().any(|t| t.contains("already used")));
    assert!(queued
        .iter()
        .any(|m| m.to == "+447400123457" && m.text.contains("not valid")));
    // A bad wait.
    let r = api
        .send(request(
            Method::GET,
            &format!("/v1/mo-logins/{token}?wait=soon"),
            Some(KEY),
            None,
            &[],
        ))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_field");
    // Other bad queries: an unknown parameter, a negative or huge wait; an
    // encoded number is read.
    for q in ["timeout=1", "wait=-1", "wait=99999999999999999999"] {
        let r = api
            .send(request(
                Method::GET,
                &format!("/v1/mo-logins/{token}?{q}"),
                Some(KEY),
                None,
                &[],
            ))
            .await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_field");
    }
    let r = api
        .send(request(
            Method::GET,
            &format!("/v1/mo-logins/{token}?wait=%30"),
            Some(KEY),
            None,
            &[],
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
}

#[tokio::test]
async fn a_long_poll_returns_as_soon_as_the_sms_completes_the_login() {
    let api = setup().await;
    let r = api.call(Method::POST, "/v1/mo-logins", Some("{}")).await;
    let token = r.json["token"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    let poll = {
        let app = api.app.clone();
        let t = token.clone();
        tokio::spawn(async move {
            let resp = app
                .oneshot(request(
                    Method::GET,
                    &format!("/v1/mo-logins/{t}?wait=20"),
                    Some(KEY),
                    None,
                    &[],
                ))
                .await
                .unwrap();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    api.phone_sends("447400123458", &token).await;
    let v = poll.await.unwrap();
    assert_eq!(v["status"], "completed", "{v}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "woken by the completion, not the 20 s wait"
    );
}

#[tokio::test]
async fn an_mo_after_the_token_expired_is_answered_and_logs_nobody_in() {
    let api = setup().await;
    let r = api.call(Method::POST, "/v1/mo-logins", Some("{}")).await;
    let token = r.json["token"].as_str().unwrap().to_string();
    let now = crate::clock::unix_ms();
    let mo = crate::mologin::incoming(
        &Random::os(),
        "test",
        "447400123459",
        1,
        "7799".into(),
        token.clone(),
        "GB",
        now,
    );
    // Five minutes (the default token_ttl) and a second later.
    let late = now + 301_000;
    let key = crate::mologin::redelivery_key(&mo);
    assert_eq!(
        api.mo.receive(&mo, &key, 600_000, late).await.unwrap(),
        Some(crate::mologin::Handled::Refused("expired"))
    );
    let queued = api.store.claim_outbox(late, 100, 60_000).await.unwrap();
    assert!(queued
        .iter()
        .any(|m| m.to == "+447400123459" && m.text.contains("expired")));
    assert_eq!(
        api.poll(&token, KEY).await.json["status"],
        "pending",
        "still pending: nobody logged in"
    );
}

#[tokio::test]
async fn a_service_can_turn_the_password_sms_off() {
    let api = setup().await;
    api.store
        .update_service_settings("acme", &json!({ "mo_send_password": false }))
        .await
        .unwrap();
    let r = api.call(Method::POST, "/v1/mo-logins", Some("{}")).await;
    let token = r.json["token"].as_str().unwrap().to_string();
    assert_eq!(
        api.phone_sends("447400123460", &token).await,
        crate::mologin::Handled::Completed
    );
    let r = api.poll(&token, KEY).await;
    assert_eq!(
        (r.json["status"].as_str(), r.json["created"].as_bool()),
        (Some("completed"), Some(true))
    );
    let queued = api
        .store
        .claim_outbox(crate::clock::unix_ms() + 1, 100, 60_000)
        .await
        .unwrap();
    assert!(
        !queued.iter().any(|m| m.to == "+447400123460"),
        "no password SMS: {queued:?}"
    );
}

// ---- /v1/registry

#[tokio::test]
async fn an_app_platform_binds_and_unbinds_only_its_own_numbers() {
    let api = setup().await;
    let path = "/v1/registry/bindings/+447400100200/acme";
    // Not (yet) an app platform of the registry.
    let r = api.call(Method::PUT, path, None).await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    api.store
        .add_registry_app(&crate::store::RegistryApp {
            service: "acme".into(),
            notify_url: "https://acme.example/registry".into(),
            created_at: 0,
        })
        .await
        .unwrap();
    let r = api.call(Method::PUT, path, None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(
        (r.json["msisdn"].as_str(), r.json["service"].as_str()),
        (Some("+447400100200"), Some("acme"))
    );
    // Again: the same binding, not a new one; a national number is the same.
    let r = api
        .call(Method::PUT, "/v1/registry/bindings/07400100200/acme", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // Another service cannot bind or unbind in acme's name.
    for method in [Method::PUT, Method::DELETE] {
        let r = api
            .send(request(method, path, Some(OTHER_KEY), None, &[]))
            .await;
        assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    }
    let r = api
        .call(Method::PUT, "/v1/registry/bindings/12/acme", None)
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_phone_number");
    // The directory names the app platforms.
    let r = api.call(Method::GET, "/v1/registry/services", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json["services"],
        json!([{"code": "acme", "name": "ACME"}])
    );
    // Unbinding is idempotent.
    for _ in 0..2 {
        let r = api.call(Method::DELETE, path, None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    assert!(api
        .store
        .bindings_of("+447400100200")
        .await
        .unwrap()
        .is_empty());
}

impl Api {
    /// POSTs `body` with `key`.
    async fn post_as(&self, key: &str, uri: &str, body: Value) -> Reply {
        let body = body.to_string();
        self.send(request(Method::POST, uri, Some(key), Some(&body), &[]))
            .await
    }

    /// A verification of `key`'s service to `to`, approved with its code
    /// (or left pending): its id.
    async fn proof(&self, key: &str, to: &str, approve: bool) -> String {
        let r = self
            .post_as(key, "/v1/verifications", json!({ "to": to }))
            .await;
        let id = r.json["id"].as_str().unwrap().to_string();
        if approve {
            let code = self.code_of(&id).await;
            let uri = format!("/v1/verifications/{id}/check");
            let r = self.post_as(key, &uri, json!({ "code": code })).await;
            assert_eq!(r.json["status"], "approved", "{}", r.json);
        }
        id
    }
}

#[tokio::test]
async fn a_subscriber_proven_by_an_sms_code_unbinds_and_moves_through_self_care() {
    let api = setup().await;
    api.store
        .add_registry_app(&crate::store::RegistryApp {
            service: "acme".into(),
            notify_url: "https://acme.example/registry".into(),
            created_at: 0,
        })
        .await
        .unwrap();
    let (old, new) = ("+447400100300", "+447400100301");
    let r = api
        .call(
            Method::PUT,
            &format!("/v1/registry/bindings/{old}/acme"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let post = |key, uri, body| api.post_as(key, uri, body);
    // Only a self-care service acts for subscribers (acme is an app).
    let acme_proof = api.proof(KEY, old, true).await;
    let r = post(
        KEY,
        "/v1/registry/unbind",
        json!({"verification_id": acme_proof}),
    )
    .await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    assert!(r.json["detail"]
        .as_str()
        .unwrap()
        .contains("self_care_services"));
    // Another service's verification is not the caller's to use.
    let r = post(
        OTHER_KEY,
        "/v1/registry/unbind",
        json!({"verification_id": acme_proof}),
    )
    .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
    // A code sent but not typed proves nothing.
    let pending = api.proof(OTHER_KEY, old, false).await;
    let r = post(
        OTHER_KEY,
        "/v1/registry/unbind",
        json!({"verification_id": pending}),
    )
    .await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap()
            .contains("pending, not approved"),
        "{}",
        r.json
    );
    let r = post(
        OTHER_KEY,
        "/v1/registry/unbind",
        json!({"verification": pending}),
    )
    .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "unknown_field");
    // Move: both numbers proven; acme is told old → new.
    let proof_old = api.proof(OTHER_KEY, old, true).await;
    let proof_new = api.proof(OTHER_KEY, new, true).await;
    let r = post(
        OTHER_KEY,
        "/v1/registry/move",
        json!({"verification_id": proof_old, "new_verification_id": proof_old}),
    )
    .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_field");
    let r = post(
        OTHER_KEY,
        "/v1/registry/move",
        json!({"verification_id": proof_old, "new_verification_id": proof_new}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.json,
        json!({"old": old, "new": new, "moved": ["acme"], "notified": 1})
    );
    let jobs = api
        .store
        .pending_webhooks("registry", Some("acme"), 10)
        .await
        .unwrap();
    assert!(jobs[0].body.contains("number_updated"), "{}", jobs[0].body);
    // Unbind on the new number's proof.
    let r = post(
        OTHER_KEY,
        "/v1/registry/unbind",
        json!({"verification_id": proof_new, "service": "acme"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.json,
        json!({"msisdn": new, "unbound": ["acme"], "notified": 1})
    );
    assert!(api.store.bindings_of(new).await.unwrap().is_empty());
}

/// The secret acme's carrier signs its notifications with.
const REGISTRY_SECRET: &str = "acme-carrier-shared-0123";

#[tokio::test]
async fn an_account_binds_its_number_on_the_sms_code_and_the_carriers_notices_are_checked() {
    let api = setup().await;
    let r = api
        .post_as(
            KEY,
            "/v1/bindings",
            json!({"account_ref": "user-42", "to": "07400 100900"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["status"], "pending");
    let id = r.json["id"].as_str().unwrap().to_string();
    let vid = r.json["verification_id"].as_str().unwrap().to_string();
    let code = api.code_of(&vid).await;
    let uri = format!("/v1/bindings/{id}/confirm");
    let r = api
        .post_as(KEY, &uri, json!({"code": wrong_code(&code)}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        (
            r.json["valid"].as_bool(),
            r.json["remaining_attempts"].as_u64()
        ),
        (Some(false), Some(4))
    );
    let r = api.post_as(KEY, &uri, json!({"code": code})).await;
    assert_eq!(r.json["binding"]["status"], "active", "{}", r.json);
    assert_eq!(r.json["valid"], true);
    let r = api
        .call(Method::GET, "/v1/bindings?account_ref=user-42", None)
        .await;
    assert_eq!(
        r.json["bindings"][0]["msisdn"], "+447400100900",
        "{}",
        r.json
    );
    let r = api.call(Method::GET, "/v1/bindings", None).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_field");
    let r = api.call(Method::GET, "/v1/bindings?colour=red", None).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_field");
    // Another account cannot take the number; another service has no app side.
    let r = api
        .post_as(
            KEY,
            "/v1/bindings",
            json!({"account_ref": "user-43", "to": "+447400100900"}),
        )
        .await;
    assert_problem(&r, StatusCode::CONFLICT, "conflict");
    let r = api
        .post_as(
            OTHER_KEY,
            "/v1/bindings",
            json!({"account_ref": "u", "to": "+447400100901"}),
        )
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = api
        .send(request(
            Method::GET,
            &format!("/v1/bindings/{id}"),
            Some(OTHER_KEY),
            None,
            &[],
        ))
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    // The carrier's notification: forged, stale, unreadable, then genuine.
    let body = json!({"type": "unbind", "id": "evt_9-acme",
                      "data": {"msisdn": "+447400100900", "service": "acme"}})
    .to_string();
    let now = crate::clock::unix_ms() / 1000;
    let event = |sig: Option<String>, body: &str| {
        let mut req =
            Request::post("/v1/registry-events").header("content-type", "application/json");
        if let Some(sig) = sig {
            req = req.header("verigate-signature", sig);
        }
        req.body(Body::from(body.to_string())).unwrap()
    };
    let sign = |secret: &str, t: i64| Some(crate::webhook::sign(secret.as_bytes(), t, &body));
    let r = api
        .send(event(sign("not-the-carriers-secret", now), &body))
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = api.send(event(None, &body)).await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = api
        .send(event(sign(REGISTRY_SECRET, now - 3600), &body))
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN, "stale_request");
    let r = api.send(event(sign(REGISTRY_SECRET, now), "{")).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_field");
    let r = api.send(event(sign(REGISTRY_SECRET, now), &body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.json,
        json!({"id": "evt_9-acme", "type": "unbind", "applied": true, "changed": 1})
    );
    let r = api.send(event(sign(REGISTRY_SECRET, now), &body)).await;
    assert_eq!(r.json["applied"], false, "once only");
    let r = api
        .call(Method::GET, &format!("/v1/bindings/{id}"), None)
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
    // The reports to the carrier: the bind (PUT).
    let jobs = api
        .store
        .pending_webhooks("bindings", Some("acme"), 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].url,
        "http://127.0.0.1:9/v1/registry/bindings/%2B447400100900/acme"
    );
}

#[tokio::test]
async fn a_binding_is_removed_with_a_fresh_code_to_its_number() {
    let api = setup().await;
    let r = api
        .post_as(
            KEY,
            "/v1/bindings",
            json!({"account_ref": "user-7", "to": "+447400100910"}),
        )
        .await;
    let id = r.json["id"].as_str().unwrap().to_string();
    let code = api
        .code_of(r.json["verification_id"].as_str().unwrap())
        .await;
    api.post_as(
        KEY,
        &format!("/v1/bindings/{id}/confirm"),
        json!({"code": code}),
    )
    .await;
    let delete = |body: Value| {
        request(
            Method::DELETE,
            &format!("/v1/bindings/{id}"),
            Some(KEY),
            Some(&body.to_string()),
            &[],
        )
    };
    let r = api.send(delete(json!({}))).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_field");
    let r = api
        .send(delete(json!({"verification_id": "vf_nope"})))
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
    // A code sent a minute later, typed: the proof. (The first code's own
    // approval proves it too: it is fresh.)
    let other = api.proof(KEY, "+447400100911", true).await;
    let r = api.send(delete(json!({"verification_id": other}))).await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    let proof = api.proof(KEY, "+447400100910", true).await;
    let r = api.send(delete(json!({"verification_id": proof}))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
    let jobs = api
        .store
        .pending_webhooks("bindings", Some("acme"), 10)
        .await
        .unwrap();
    let methods: Vec<_> = jobs.iter().map(|j| j.method).collect();
    assert_eq!(
        methods,
        [
            crate::store::HttpMethod::Put,
            crate::store::HttpMethod::Delete
        ]
    );
}

#[tokio::test]
async fn sim_swap_answers_in_camaras_words_from_the_directory() {
    let api = setup().await;
    let now = crate::clock::unix_ms();
    api.store
        .upsert_subscribers(
            &[crate::store::Subscriber {
                msisdn: "+447400100990".into(),
                imsi: "234150999999999".into(),
                status: crate::store::LineStatus::Active,
                sim_changed_at: Some(now - 5 * 3_600_000),
                updated_at: 0,
            }],
            now,
        )
        .await
        .unwrap();
    let check = |body: Value| api.post_as(KEY, "/sim-swap/v2/check", body);
    let r = check(json!({"phoneNumber": "+447400100990", "maxAge": 6})).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (StatusCode::OK, json!({"swapped": true}))
    );
    let r = check(json!({"phoneNumber": "+447400100990", "maxAge": 4})).await;
    assert_eq!(r.json, json!({"swapped": false}));
    let r = check(json!({"phoneNumber": "+447400100990"})).await;
    assert_eq!(r.json, json!({"swapped": true}), "240 hours by default");
    for (body, status, code) in [
        (
            json!({"phoneNumber": "+447400100990", "maxAge": 2401}),
            400,
            "OUT_OF_RANGE",
        ),
        (
            json!({"phoneNumber": "07400100990"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            json!({"phoneNumber": "+447400100999"}),
            404,
            "IDENTIFIER_NOT_FOUND",
        ),
        (json!({"maxAge": 24}), 422, "MISSING_IDENTIFIER"),
        (
            json!({"phoneNumber": "+447400100990", "colour": 1}),
            400,
            "INVALID_ARGUMENT",
        ),
    ] {
        let r = check(body.clone()).await;
        assert_eq!(
            (r.status.as_u16(), r.json["code"].as_str()),
            (status, Some(code)),
            "{body} → {}",
            r.json
        );
        assert_eq!(r.json["status"], status);
    }
    let r = api
        .post_as(
            KEY,
            "/sim-swap/v2/retrieve-date",
            json!({"phoneNumber": "+447400100990"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.json["latestSimChange"],
        verigate_codecs::time::rfc3339(now - 5 * 3_600_000)
    );
    assert!(r.json.get("monitoredPeriod").is_none());
    let r = api
        .send(request(
            Method::POST,
            "/sim-swap/v2/check",
            None,
            Some(r#"{"phoneNumber":"+447400100990"}"#),
            &[],
        ))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json["code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
}

#[tokio::test]
async fn number_recycling_answers_in_camaras_words() {
    let api = setup().await;
    let check = |body: &str, key: Option<&'static str>| {
        request(
            Method::POST,
            "/number-recycling/v0.2/check",
            key,
            Some(body),
            &[],
        )
    };
    let ok = r#"{"phoneNumber":"+447400100900","specifiedDate":"2026-11-01"}"#;
    // No records yet: not recycled.
    let r = api.send(check(ok, Some(KEY))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json, json!({"phoneNumberRecycled": false}));
    api.store
        .add_registry_app(&crate::store::RegistryApp {
            service: "acme".into(),
            notify_url: "https://acme.example/r".into(),
            created_at: verigate_codecs::time::parse_date("2026-10-01").unwrap(),
        })
        .await
        .unwrap();
    let registry = crate::registry::Registry::new(api.store.clone(), "GB", Random::os());
    registry
        .recycle(
            "+447400100900",
            verigate_codecs::time::parse_date("2026-11-15").unwrap(),
            true,
        )
        .await
        .unwrap();
    let r = api.send(check(ok, Some(KEY))).await;
    assert_eq!(r.json, json!({"phoneNumberRecycled": true}));
    let after = r#"{"phoneNumber":"+447400100900","specifiedDate":"2026-11-20"}"#;
    assert_eq!(
        api.send(check(after, Some(KEY))).await.json["phoneNumberRecycled"],
        false
    );
    // Errors are CAMARA's {status, code, message}.
    for (body, key, status, code) in [
        (
            r#"{"phoneNumber":"+447400100900","specifiedDate":"2026-02-30"}"#,
            Some(KEY),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            r#"{"phoneNumber":"07400100900","specifiedDate":"2026-11-01"}"#,
            Some(KEY),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            r#"{"phoneNumber":"+12","specifiedDate":"2026-11-01"}"#,
            Some(KEY),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            r#"{"phoneNumber":"+447400100900"}"#,
            Some(KEY),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            r#"{"phoneNumber":"+447400100900","specifiedDate":"2020-01-01"}"#,
            Some(KEY),
            400,
            "OUT_OF_RANGE",
        ),
        (ok, None, 401, "UNAUTHENTICATED"),
    ] {
        let r = api.send(check(body, key)).await;
        assert_eq!(r.status.as_u16(), status, "{body}: {}", r.json);
        assert_eq!(
            (r.json["status"].as_u64(), r.json["code"].as_str()),
            (Some(status as u64), Some(code)),
            "{body}"
        );
        assert!(r.json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

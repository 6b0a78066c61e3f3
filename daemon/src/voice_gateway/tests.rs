//! Replays of captured gateway requests, on a virtual clock.

use super::*;
use crate::store::sqlite::SqliteStore;

const T0: Millis = 1_800_000_000_000;
const HMAC_K1: &str = "q8WvN3x7Lr2ZpK5tY9cB";

async fn gateway() -> VoiceGateway {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let entry = |toml: &str| toml::from_str::<VoiceGatewayEntry>(toml).unwrap();
    let entries = [
        entry("sn = \"6258\"\nk1 = \"123321\"\nk2 = \"md5-legacy\"\nregion = \"CN\""),
        entry(&format!(
            "sn = \"7001\"\nk1 = \"{HMAC_K1}\"\nregion = \"GB\""
        )),
    ];
    VoiceGateway::with_entries(store, &entries, "GB", &["en".into()], Random::os())
}

fn md5_request(tn: &str, vn: &str) -> GatewayRequest {
    let k2 = k2::compute(K2Scheme::Md5Legacy, b"123321", tn, vn, 0);
    GatewayRequest {
        tn: tn.into(),
        vn: vn.into(),
        sn: "6258".into(),
        k2: hex::encode(k2),
        ts: None,
        locale: None,
    }
}

fn hmac_request(tn: &str, vn: &str, signed_at: Millis) -> GatewayRequest {
    let ts = signed_at / 1000;
    let k2 = k2::compute(K2Scheme::HmacSha256, HMAC_K1.as_bytes(), tn, vn, ts);
    GatewayRequest {
        tn: tn.into(),
        vn: vn.into(),
        sn: "7001".into(),
        k2: hex::encode(k2),
        ts: Some(ts),
        locale: None,
    }
}

const MIN: Millis = 60_000;

#[tokio::test]
async fn a_captured_request_replayed_after_the_call_expired_places_no_new_call() {
    let g = gateway().await;
    let first = g
        .request(md5_request("13988888888", "365882"), T0)
        .await
        .unwrap();
    assert!(first.created);
    // Long after expires_after (5 min), within the replay window (24 h):
    // the captured request gets the first call back, not a new one.
    for later in [10 * MIN, 6 * 60 * MIN, 24 * 60 * MIN - 1] {
        let r = g
            .request(md5_request("13988888888", "365882"), T0 + later)
            .await
            .unwrap();
        assert!(!r.created, "replayed {later} ms later");
        assert_eq!(r.call.id, first.call.id);
    }
    // The same number written another way is the same (SN, TN, VN).
    let r = g
        .request(md5_request("+8613988888888", "365882"), T0 + 20 * MIN)
        .await
        .unwrap();
    assert_eq!((r.created, r.call.id), (false, first.call.id.clone()));
    // The legacy form has no timestamp: past the window it is a new call
    // (documented: md5-legacy is replayable once its window has passed).
    let r = g
        .request(md5_request("13988888888", "365882"), T0 + 24 * 60 * MIN + 1)
        .await
        .unwrap();
    assert!(r.created);
}

#[tokio::test]
async fn a_captured_hmac_request_dies_with_its_timestamp() {
    let g = gateway().await;
    let captured = hmac_request("+447400100200", "471147", T0);
    assert!(g.request(captured.clone(), T0).await.unwrap().created);
    // Sent again 6 minutes later: the signed ts is out of the ±5 min window.
    let e = g.request(captured.clone(), T0 + 6 * MIN).await.unwrap_err();
    assert!(
        matches!(
            e,
            GatewayError::Stale {
                off_secs: 360,
                skew_secs: 300,
                ..
            }
        ),
        "{e}"
    );
    // After the call's own expiry a fresh signature for the same number
    // and code still gets the first call: single use for 24 h.
    let again = hmac_request("+447400100200", "471147", T0 + 30 * MIN);
    let r = g.request(again, T0 + 30 * MIN).await.unwrap();
    assert!(!r.created);
    // A timestamp from the future is as stale; none at all is a bad K2.
    let future = hmac_request("+447400100201", "471147", T0 + 6 * MIN);
    assert!(matches!(
        g.request(future, T0).await,
        Err(GatewayError::Stale { .. })
    ));
    let mut unsigned = hmac_request("+447400100201", "471147", T0);
    unsigned.ts = None;
    assert!(matches!(
        g.request(unsigned, T0).await,
        Err(GatewayError::BadK2(K2Error::NoTimestamp))
    ));
    // A ts changed after signing does not verify.
    let mut moved = hmac_request("+447400100201", "471147", T0 - 6 * MIN);
    moved.ts = Some(T0 / 1000);
    assert!(matches!(
        g.request(moved, T0).await,
        Err(GatewayError::BadK2(K2Error::Mismatch))
    ));
}

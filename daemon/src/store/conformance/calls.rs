//! The call queue.

use super::*;
use std::collections::HashMap;

/// Every check of this domain, on `store`.
pub async fn run<S: SmsPath + CallStore>(store: &S) {
    call_queue(store).await;
}

/// A call fixture `call_conf_{tag}`.
fn call(tag: &str, vid: Option<&str>, kind: CallKind, to: &str, at: Millis) -> CallJob {
    CallJob {
        id: format!("call_conf_{tag}"),
        verification_id: vid.map(str::to_owned),
        service: "conf-calls".into(),
        kind,
        to: to.into(),
        caller: (kind == CallKind::FlashCall).then(|| "+447400900123".into()),
        code: (kind == CallKind::Voice).then(|| "365882".into()),
        fallback_text: (kind == CallKind::Voice).then(|| "Your code is 365882".into()),
        locale: "en".into(),
        state: CallState::Queued,
        sip_code: None,
        detail: None,
        attempts: 0,
        next_attempt_at: at,
        expires_at: at + TTL,
        created_at: at,
        updated_at: at,
    }
}

fn key(k: &[u8], since: Millis) -> RequestKey<'_> {
    RequestKey { key: k, since }
}

/// A call as stored now (what a worker holding its claim has).
async fn current<S: SmsPath + CallStore>(store: &S, id: &str) -> CallJob {
    store.get_call(id).await.unwrap().expect("call exists")
}

/// Remembers the leases of `claimed` (the latest claim of each call).
fn hold(held: &mut HashMap<String, Lease>, claimed: &[Claimed<CallJob>]) {
    for c in claimed {
        held.insert(c.id.clone(), c.lease.clone());
    }
}

/// The latest lease on call `id` (a never-claimed call's, if none).
fn lease(held: &HashMap<String, Lease>, id: &str) -> Lease {
    held.get(id)
        .cloned()
        .unwrap_or_else(|| Lease::unclaimed(id))
}

fn outcome(state: CallState, sip: Option<u16>) -> CallResult {
    CallResult {
        state,
        sip_code: sip,
        detail: Some(format!("{} in the battery", state.as_str())),
        retry_at: None,
        not_placed: false,
        fallback: None,
    }
}

/// The call queue: verification + call in one transaction, claims with
/// leases, outcomes, fallback SMS, cancel on close, expiry, CLIs in use.
pub async fn call_queue<S: SmsPath + CallStore>(store: &S) {
    let t = T_CALLS;
    let svc = "conf-calls";
    create_service(store, svc, t).await;
    let mut v = verification("vf_conf_call_voice", svc, "+447400500001", t);
    v.channel = "voice".into();
    let voice = call("voice", Some(&v.id), CallKind::Voice, &v.to, t);
    assert_eq!(
        store
            .insert_verification(&v, (&voice).into(), None)
            .await
            .unwrap(),
        InsertOutcome::Created
    );
    assert_eq!(
        store.calls_for_verification(&v.id).await.unwrap(),
        vec![voice.clone()],
        "a verification's first call is stored with it"
    );
    let gateway = call("gateway", None, CallKind::Voice, "+447400500002", t + 1);
    store.enqueue_call(&gateway, None).await.unwrap();
    let mut later = call("later", None, CallKind::Voice, "+447400500003", t);
    later.next_attempt_at = t + 60_000;
    store.enqueue_call(&later, None).await.unwrap();
    let mut stale = call(
        "stale",
        None,
        CallKind::Voice,
        "+447400500004",
        t - TTL - 10,
    );
    stale.expires_at = t - 1;
    store.enqueue_call(&stale, None).await.unwrap();

    // Claims: due ones, oldest first, counted; not again within the lease.
    let mut held = HashMap::new();
    let claimed = store.claim_calls(t + 10, 10, 5_000).await.unwrap();
    hold(&mut held, &claimed);
    let ids: Vec<&str> = claimed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["call_conf_voice", "call_conf_gateway"],
        "due calls, oldest first; not one due later, not one past its expiry"
    );
    assert!(claimed
        .iter()
        .all(|c| c.state == CallState::Calling && c.attempts == 1));
    assert!(store
        .claim_calls(t + 20, 10, 5_000)
        .await
        .unwrap()
        .is_empty());
    // A worker that died: its calls come back after the lease.
    let again = store.claim_calls(t + 5_011, 10, 5_000).await.unwrap();
    assert_eq!(again.len(), 2, "claimed again after the lease");
    hold(&mut held, &again);
    assert!(again.iter().all(|c| c.attempts == 2));

    // Expiry takes the queued call past its expiry, forgetting its code.
    let expired = store.expire_calls(t + 5_011).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (
            expired[0].id.as_str(),
            expired[0].state,
            expired[0].code.as_deref()
        ),
        ("call_conf_stale", CallState::Expired, None)
    );

    // A retry keeps the code; a final outcome forgets it and the fallback text.
    let retry = CallResult {
        retry_at: Some(t + 30_000),
        ..outcome(CallState::Queued, Some(503))
    };
    let c = store
        .finish_call(&lease(&held, &gateway.id), &retry, t + 6_000)
        .await
        .unwrap();
    assert_eq!(
        (c.state, c.next_attempt_at, c.code.as_deref()),
        (CallState::Queued, t + 30_000, Some("365882"))
    );
    let c = store
        .finish_call(
            &lease(&held, &voice.id),
            &outcome(CallState::Answered, Some(200)),
            t + 6_000,
        )
        .await
        .unwrap();
    assert_eq!(
        (c.state, c.sip_code, c.code, c.fallback_text),
        (CallState::Answered, Some(200), None, None)
    );
    // A late report from a worker whose lease ran out changes nothing,
    // and queues no fallback.
    let late = CallResult {
        fallback: Some(message("msg_conf_late_fallback", &v.id, svc, &v.to, t)),
        ..outcome(CallState::Busy, Some(486))
    };
    let c = store
        .finish_call(&lease(&held, &voice.id), &late, t + 7_000)
        .await
        .unwrap();
    assert_eq!(c.state, CallState::Answered, "the first outcome sticks");
    assert!(
        store
            .get_message("msg_conf_late_fallback")
            .await
            .unwrap()
            .is_none(),
        "no fallback for a call that did not change"
    );
    assert!(matches!(
        store
            .finish_call(
                &lease(&held, &voice.id),
                &outcome(CallState::Calling, None),
                t
            )
            .await,
        Err(StoreError::Bug(_))
    ));
    assert!(matches!(
        store
            .finish_call(
                &Lease::unclaimed("call_conf_nope"),
                &outcome(CallState::Failed, None),
                t
            )
            .await,
        Err(StoreError::NotFound(_))
    ));

    // A failed voice call's fallback SMS is queued with the outcome.
    let mut v2 = verification("vf_conf_call_fallback", svc, "+447400500005", t);
    v2.channel = "voice".into();
    let c2 = call("fallback", Some(&v2.id), CallKind::Voice, &v2.to, t);
    store
        .insert_verification(&v2, (&c2).into(), None)
        .await
        .unwrap();
    let sms = message("msg_conf_fallback", &v2.id, svc, &v2.to, t + 8_000);
    let busy = CallResult {
        fallback: Some(sms.clone()),
        ..outcome(CallState::Busy, Some(486))
    };
    let c = store
        .finish_call(&lease(&held, &c2.id), &busy, t + 8_000)
        .await
        .unwrap();
    assert_eq!((c.state, c.sip_code), (CallState::Busy, Some(486)));
    assert_eq!(
        store.messages_for_verification(&v2.id).await.unwrap(),
        vec![sms],
        "the fallback SMS is stored with the outcome"
    );

    // Flash calls: the CLI counts as in use while its verification is
    // pending and unexpired, for that destination only.
    let mut fv = verification("vf_conf_call_flash", svc, "+447400500006", t);
    fv.channel = "flash_call".into();
    let fc = call("flash", Some(&fv.id), CallKind::FlashCall, &fv.to, t);
    store
        .insert_verification(&fv, (&fc).into(), None)
        .await
        .unwrap();
    assert_eq!(
        store.flash_clis_in_use(&fv.to, t + 1).await.unwrap(),
        vec!["+447400900123".to_string()]
    );
    assert!(store
        .flash_clis_in_use("+447400500007", t + 1)
        .await
        .unwrap()
        .is_empty());
    assert!(
        store
            .flash_clis_in_use(&fv.to, fv.expires_at)
            .await
            .unwrap()
            .is_empty(),
        "not once the verification expired"
    );
    // A resend places another call (another CLI) in the same transaction.
    let mut fc2 = call(
        "flash2",
        Some(&fv.id),
        CallKind::FlashCall,
        &fv.to,
        t + 9_000,
    );
    fc2.caller = Some("+447400900124".into());
    assert!(store
        .record_resend(
            &Resend {
                verification_id: &fv.id,
                last_sent_at: fv.last_sent_at,
                code_hash: b"new-hash",
                expires_at: t + 9_000 + TTL,
                send: (&fc2).into(),
                idempotency: None,
            },
            t + 9_000,
        )
        .await
        .unwrap());
    let mut clis = store.flash_clis_in_use(&fv.to, t + 9_001).await.unwrap();
    clis.sort();
    assert_eq!(clis, vec!["+447400900123", "+447400900124"]);
    // Closing the verification: queued calls are cancelled, calling ones
    // are returned (their worker hangs up).
    let claimed = store.claim_calls(t + 9_001, 10, 60_000).await.unwrap();
    hold(&mut held, &claimed);
    assert!(claimed.iter().any(|c| c.id == fc.id) && claimed.iter().any(|c| c.id == fc2.id));
    let c = store
        .finish_call(
            &lease(&held, &fc2.id),
            &CallResult {
                retry_at: Some(t + 20_000),
                ..outcome(CallState::Queued, None)
            },
            t + 9_002,
        )
        .await
        .unwrap();
    assert_eq!(c.state, CallState::Queued);
    assert!(store
        .update_verification(
            &fv.id,
            VerificationStatus::Pending,
            0,
            VerificationStatus::Approved,
            0,
            t + 9_003
        )
        .await
        .unwrap());
    let calling = store
        .cancel_calls_for_verification(&fv.id, t + 9_003)
        .await
        .unwrap();
    assert_eq!(
        calling.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        vec!["call_conf_flash"]
    );
    assert_eq!(
        store.get_call(&fc2.id).await.unwrap().map(|c| c.state),
        Some(CallState::Canceled)
    );
    assert!(store
        .flash_clis_in_use(&fv.to, t + 9_004)
        .await
        .unwrap()
        .is_empty());
    // A worker whose lease ran out reports after the call was claimed again:
    // its report does not overwrite the new attempt's.
    let mut fenced = call("fenced", None, CallKind::Voice, "+447400500010", t + 9_500);
    fenced.service = "vg:fence".into();
    store.enqueue_call(&fenced, None).await.unwrap();
    let first_claim = store
        .claim_calls(t + 9_500, 100, 1_000)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == fenced.id)
        .expect("claimed");
    let second_claim = store
        .claim_calls(t + 10_600, 100, 60_000)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == fenced.id)
        .expect("claimed again after the lease");
    assert_eq!((first_claim.attempts, second_claim.attempts), (1, 2));
    let late = store
        .finish_call(
            &first_claim.lease,
            &outcome(CallState::Busy, Some(486)),
            t + 10_700,
        )
        .await;
    assert!(
        matches!(late, Err(StoreError::LeaseLost(_))),
        "the stale worker's report is refused, got {late:?}"
    );
    assert_eq!(
        current(store, &fenced.id).await.state,
        CallState::Calling,
        "the stale worker's report changes nothing"
    );
    let both = [first_claim.lease.clone(), second_claim.lease.clone()];
    assert_eq!(
        store.extend_calls(&both, t + 70_000).await.unwrap(),
        vec![Extension::TakenOver, Extension::Held],
        "only the latest claim extends"
    );
    let c = store
        .finish_call(
            &second_claim.lease,
            &outcome(CallState::Answered, Some(200)),
            t + 10_800,
        )
        .await
        .unwrap();
    assert_eq!(c.state, CallState::Answered);
    assert_eq!(
        store.extend_calls(&both, t + 70_000).await.unwrap(),
        vec![Extension::TakenOver, Extension::Finished],
        "a finished call no longer extends; its own outcome is no loss"
    );
    // A due call of a closed verification is cancelled, never placed.
    let mut cv = verification("vf_conf_call_closed", svc, "+447400500011", t);
    cv.channel = "voice".into();
    let cc = call("closed", Some(&cv.id), CallKind::Voice, &cv.to, t + 10_900);
    store
        .insert_verification(&cv, (&cc).into(), None)
        .await
        .unwrap();
    assert!(store
        .update_verification(
            &cv.id,
            VerificationStatus::Pending,
            0,
            VerificationStatus::Canceled,
            0,
            t + 10_900
        )
        .await
        .unwrap());
    let claimed = store.claim_calls(t + 10_901, 100, 60_000).await.unwrap();
    assert!(claimed.iter().all(|c| c.id != cc.id));
    hold(&mut held, &claimed);
    let c = current(store, &cc.id).await;
    assert_eq!((c.state, c.code), (CallState::Canceled, None));

    // Voice-gateway requests: a repeated request key returns the first
    // call and writes nothing; the key is per service.
    let mut first = call("req1", None, CallKind::Voice, "+447400500009", t + 10_000);
    first.service = "vg:6258".into();
    assert_eq!(
        store
            .enqueue_call(&first, Some(key(b"k2-digest", t)))
            .await
            .unwrap(),
        None
    );
    let mut again = call("req2", None, CallKind::Voice, "+447400500009", t + 10_001);
    again.service = "vg:6258".into();
    assert_eq!(
        store
            .enqueue_call(&again, Some(key(b"k2-digest", t)))
            .await
            .unwrap(),
        Some(first.clone()),
        "a repeated request returns the call it made"
    );
    assert_eq!(store.get_call(&again.id).await.unwrap(), None);
    assert_eq!(
        store
            .find_call_by_request("vg:6258", key(b"k2-digest", t))
            .await
            .unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store
            .find_call_by_request("vg:6258", key(b"other", t))
            .await
            .unwrap(),
        None
    );
    again.service = "vg:6259".into();
    assert_eq!(
        store
            .enqueue_call(&again, Some(key(b"k2-digest", t)))
            .await
            .unwrap(),
        None
    );
    // The key outlives the call's code: a replay after the outcome still
    // finds the call.
    let claimed = store.claim_calls(t + 10_002, 10, 60_000).await.unwrap();
    hold(&mut held, &claimed);
    store
        .finish_call(
            &lease(&held, &first.id),
            &outcome(CallState::Answered, Some(200)),
            t + 10_003,
        )
        .await
        .unwrap();
    let found = store
        .find_call_by_request("vg:6258", key(b"k2-digest", t))
        .await
        .unwrap()
        .expect("found after its outcome");
    assert_eq!((found.state, found.code), (CallState::Answered, None));
    // Past the window the same request is a new call, and takes the key.
    let mut later = call("req3", None, CallKind::Voice, "+447400500009", t + 400_000);
    later.service = "vg:6258".into();
    assert_eq!(
        store
            .find_call_by_request("vg:6258", key(b"k2-digest", t + 100_000))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .enqueue_call(&later, Some(key(b"k2-digest", t + 100_000)))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .find_call_by_request("vg:6258", key(b"k2-digest", t + 100_000))
            .await
            .unwrap()
            .map(|c| c.id),
        Some(later.id.clone())
    );
    // Leave the queue empty for other tests.
    store
        .finish_call(
            &lease(&held, &fc.id),
            &outcome(CallState::Rang, Some(487)),
            t + 9_005,
        )
        .await
        .unwrap();
    for c in store.claim_calls(t + 100_000, 100, 60_000).await.unwrap() {
        store
            .finish_call(&c.lease, &outcome(CallState::Failed, None), t + 100_000)
            .await
            .unwrap();
    }
}

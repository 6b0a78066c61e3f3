//! The outbox: claims and leases, expiry, receipts and their correlation.

use super::*;

/// Every check of this domain, on `store`.
pub async fn run<S: SmsPath>(store: &S) {
    outbox_claims_and_leases(store).await;
    outbox_expiry(store).await;
    receipt_correlation(store).await;
    receipts_before_submit(store).await;
    outbox_fencing(store).await;
}

/// Claims: due only, oldest first, up to the limit, leased (not handed out
/// twice while the lease runs, handed out again after it ran out), attempts
/// counted; failures requeue or reject; depth counts.
pub async fn outbox_claims_and_leases<S: SmsPath>(store: &S) {
    let t = T_OUTBOX;
    let svc = "conf-outbox";
    create_service(store, svc, t).await;
    let depth0 = store.outbox_depth().await.expect("outbox_depth");
    let m1 = queued(store, svc, 1, t, t + TTL).await;
    let m2 = queued(store, svc, 2, t + 1, t + TTL).await;
    let m3 = queued(store, svc, 3, t + 2, t + TTL).await;
    let m4 = queued(store, svc, 4, t + 10_000, t + TTL).await;
    let depth = store.outbox_depth().await.expect("outbox_depth");
    assert_eq!(
        depth.queued,
        depth0.queued + 4,
        "outbox_depth counts queued messages"
    );

    let c = store
        .claim_outbox(t + 5, 2, 1_000)
        .await
        .expect("claim_outbox");
    assert_eq!(
        ids(&c),
        vec![m1.id.as_str(), m2.id.as_str()],
        "claim: due messages, oldest first, up to the limit"
    );
    let held2 = lease_of(&c, &m2.id);
    assert_eq!(
        held2.until,
        t + 5 + 1_000,
        "a claim's lease runs until now + lease"
    );
    for m in &c {
        assert_eq!(
            m.state,
            MessageState::Sending,
            "a claimed message is sending"
        );
        assert_eq!(m.attempts, 1, "a claim counts the attempt");
        let original = if m.id == m1.id { &m1 } else { &m2 };
        assert_eq!(
            (&m.to, &m.from, &m.text, m.expires_at, m.created_at),
            (
                &original.to,
                &original.from,
                &original.text,
                original.expires_at,
                original.created_at
            ),
            "a claim returns the stored message"
        );
    }
    let depth = store.outbox_depth().await.expect("outbox_depth");
    assert_eq!(
        (depth.queued, depth.sending),
        (depth0.queued + 2, depth0.sending + 2),
        "depth after a claim"
    );

    let c = store
        .claim_outbox(t + 6, 10, 1_000)
        .await
        .expect("claim_outbox");
    assert_eq!(
        ids(&c),
        vec![m3.id.as_str()],
        "claim: not the leased ones, not the ones not yet due"
    );
    let held3 = lease_of(&c, &m3.id);
    let c = store
        .claim_outbox(t + 7, 10, 1_000)
        .await
        .expect("claim_outbox");
    assert!(
        c.is_empty(),
        "nothing is handed out twice while leased, got {:?}",
        ids(&c)
    );

    let sub = submit_held(store, &held2, &["C0FFEE01"], t + 8).await;
    assert_eq!(
        sub.state,
        MessageState::Submitted,
        "mark_submitted: submitted"
    );
    let failed = store
        .mark_failed(&held3, "throttled", Some(t + 500), t + 9)
        .await;
    failed.expect("mark_failed");
    let got = store
        .get_message(&m3.id)
        .await
        .expect("get_message")
        .expect("exists");
    assert_eq!(
        (
            got.state,
            got.next_attempt_at,
            got.last_error.as_deref(),
            got.attempts
        ),
        (MessageState::Queued, t + 500, Some("throttled"), 1),
        "mark_failed with a retry time: queued again at that time, with the error"
    );
    assert!(
        store
            .claim_outbox(t + 499, 10, 1_000)
            .await
            .expect("claim")
            .is_empty(),
        "a retry is not due before its time"
    );
    let c = store
        .claim_outbox(t + 500, 10, 1_000)
        .await
        .expect("claim_outbox");
    assert_eq!(
        ids(&c),
        vec![m3.id.as_str()],
        "a retry is claimed at its time"
    );
    assert_eq!(c[0].attempts, 2, "the retry counts as another attempt");
    assert!(
        c[0].lease.token > held3.token,
        "a later claim has a higher claim number"
    );

    // m1's sender died: its lease (t+5+1000) runs out.
    assert!(
        store
            .claim_outbox(t + 1_004, 10, 1_000)
            .await
            .expect("claim")
            .is_empty(),
        "lease still running"
    );
    let c = store
        .claim_outbox(t + 1_005, 10, 1_000)
        .await
        .expect("claim_outbox");
    assert_eq!(
        ids(&c),
        vec![m1.id.as_str()],
        "a message whose lease ran out is claimed again"
    );
    assert_eq!(
        (c[0].state, c[0].attempts),
        (MessageState::Sending, 2),
        "reclaim counts the attempt"
    );
    let held1 = lease_of(&c, &m1.id);

    store
        .mark_failed(&held1, "rejected: ESME_RINVDSTADR", None, t + 1_006)
        .await
        .expect("mark_failed");
    let got = store
        .get_message(&m1.id)
        .await
        .expect("get_message")
        .expect("exists");
    assert_eq!(
        (got.state, got.last_error.as_deref()),
        (MessageState::Rejected, Some("rejected: ESME_RINVDSTADR")),
        "mark_failed without a retry time: rejected"
    );
    store
        .mark_failed(
            &held2,
            "late failure of a duplicate",
            Some(t + 1_007),
            t + 1_007,
        )
        .await
        .expect("mark_failed");
    assert_eq!(
        message_state(store, &m2.id).await,
        MessageState::Submitted,
        "mark_failed does not requeue a submitted message"
    );
    let none = Lease::unclaimed("msg_conf_none");
    let missing = store.mark_failed(&none, "x", None, t).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "mark_failed of an unknown message: NotFound, got {missing:?}"
    );
    let missing = store
        .mark_submitted(&none, "smsc-a", &["1".to_owned()], t)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "mark_submitted of an unknown message: NotFound, got {missing:?}"
    );

    // Two claimers racing: disjoint.
    let (a, b) = tokio::join!(
        store.claim_outbox(t + 20_000, 10, 1_000),
        store.claim_outbox(t + 20_000, 10, 1_000)
    );
    let (a, b) = (a.expect("racing claim"), b.expect("racing claim"));
    let mut all: Vec<&str> = ids(&a).into_iter().chain(ids(&b)).collect();
    all.sort_unstable();
    assert_eq!(
        all,
        vec![m3.id.as_str(), m4.id.as_str()],
        "racing claimers share the due messages without overlap"
    );
    assert_eq!(
        store
            .get_message(&m4.id)
            .await
            .expect("get")
            .expect("exists")
            .attempts,
        1,
        "a message claimed once has one attempt"
    );

    let both: Vec<_> = a.into_iter().chain(b).collect();
    submit_held(store, &lease_of(&both, &m3.id), &["C0FFEE03"], t + 20_001).await;
    submit_held(store, &lease_of(&both, &m4.id), &["C0FFEE04"], t + 20_002).await;
    assert!(
        store
            .claim_outbox(t + 100_000, 10, 1_000)
            .await
            .expect("claim")
            .is_empty(),
        "submitted and rejected ones are never claimed"
    );
    let depth = store.outbox_depth().await.expect("outbox_depth");
    assert_eq!(
        (depth.queued, depth.sending, depth.submitted),
        (depth0.queued, depth0.sending, depth0.submitted + 3),
        "depth after the run (rejected ones are not counted)"
    );
    assert!(
        store
            .claim_outbox(t + 100_000, 0, 1_000)
            .await
            .expect("claim")
            .is_empty(),
        "limit 0 claims nothing"
    );
}

/// Expiry: messages queued or sending past their expiry are expired (once)
/// and returned; they are not claimed; others are left alone.
pub async fn outbox_expiry<S: SmsPath>(store: &S) {
    let t = T_EXPIRY;
    let svc = "conf-expiry";
    create_service(store, svc, t).await;
    let sending = queued(store, svc, 1, t, t + 100).await;
    let waiting = queued(store, svc, 2, t + 1, t + 100).await;
    let valid = queued(store, svc, 3, t + 2, t + TTL).await;

    let c = store
        .claim_outbox(t + 2, 1, 10_000)
        .await
        .expect("claim_outbox");
    assert_eq!(ids(&c), vec![sending.id.as_str()], "claim the oldest");
    let c = store
        .claim_outbox(t + 101, 10, 10_000)
        .await
        .expect("claim_outbox");
    assert_eq!(
        ids(&c),
        vec![valid.id.as_str()],
        "a message past its expiry is not claimed"
    );
    submit_held(store, &lease_of(&c, &valid.id), &["E0E0E003"], t + 102).await;

    let expired = store.expire_outbox(t + 101).await.expect("expire_outbox");
    assert_eq!(
        ids(&expired),
        vec![sending.id.as_str(), waiting.id.as_str()],
        "expire_outbox returns the queued and sending messages past expiry, oldest first"
    );
    assert!(
        expired.iter().all(|m| m.state == MessageState::Expired),
        "returned in state expired"
    );
    assert_eq!(
        message_state(store, &waiting.id).await,
        MessageState::Expired,
        "stored as expired"
    );
    assert!(
        store
            .expire_outbox(t + 200)
            .await
            .expect("expire_outbox")
            .is_empty(),
        "expired only once"
    );
    assert_eq!(
        message_state(store, &valid.id).await,
        MessageState::Submitted,
        "a submitted message does not expire"
    );
    assert!(
        store
            .claim_outbox(t + 100_000, 10, 1_000)
            .await
            .expect("claim")
            .is_empty(),
        "expired ones are never claimed"
    );
}

/// Receipts find their message by correlation key: hex vs decimal ids,
/// case and leading zeros, multipart ids, the same-format preference; the
/// first final state sticks; unknown ids park.
pub async fn receipt_correlation<S: SmsPath>(store: &S) {
    let t = T_RECEIPTS;
    let svc = "conf-dlr";
    create_service(store, svc, t).await;

    // Hex in submit_sm_resp, decimal in the receipt (0x1A2B = 6699).
    let m1 = queued(store, svc, 1, t, t + TTL).await;
    let sub = submit(store, &m1.id, &["1A2B"], t + 1).await;
    assert_eq!(
        sub.state,
        MessageState::Submitted,
        "mark_submitted: submitted"
    );
    assert_eq!(
        sub.smsc.as_deref(),
        Some("smsc-a"),
        "mark_submitted records the SMSC"
    );
    assert_eq!(
        sub.message_ids,
        vec!["1A2B".to_owned()],
        "mark_submitted records the ids as given"
    );
    assert_eq!(sub.updated_at, t + 1, "mark_submitted sets updated_at");
    let out = dlr(store, "6699", MessageState::Delivered, t + 2).await;
    assert_applied(
        &out,
        &m1.id,
        MessageState::Delivered,
        "decimal receipt for a hex id",
    );
    assert_eq!(
        message_state(store, &m1.id).await,
        MessageState::Delivered,
        "stored as delivered"
    );

    // The first final state sticks.
    let out = dlr(store, "1a2b", MessageState::Submitted, t + 3).await;
    assert_applied(
        &out,
        &m1.id,
        MessageState::Delivered,
        "a later non-final receipt",
    );
    let out = dlr(store, "00001A2B", MessageState::Undeliverable, t + 4).await;
    assert_applied(
        &out,
        &m1.id,
        MessageState::Delivered,
        "a later final receipt",
    );
    assert_eq!(
        message_state(store, &m1.id).await,
        MessageState::Delivered,
        "still delivered"
    );

    // Decimal in submit_sm_resp, hex in the receipt (4660 = 0x1234).
    let m2 = queued(store, svc, 2, t + 10, t + TTL).await;
    submit(store, &m2.id, &["4660"], t + 11).await;
    let out = dlr(store, "1234", MessageState::Undeliverable, t + 12).await;
    assert_applied(
        &out,
        &m2.id,
        MessageState::Undeliverable,
        "hex receipt for a decimal id",
    );

    // Case and leading zeros.
    let m3 = queued(store, svc, 3, t + 20, t + TTL).await;
    submit(store, &m3.id, &["000AbC9F"], t + 21).await;
    let out = dlr(store, "abc9f", MessageState::Delivered, t + 22).await;
    assert_applied(
        &out,
        &m3.id,
        MessageState::Delivered,
        "case and leading zeros do not matter",
    );

    // Multipart: a receipt for any part finds the message.
    let m4 = queued(store, svc, 4, t + 30, t + TTL).await;
    let sub = submit(store, &m4.id, &["5000000001", "5000000002"], t + 31).await;
    assert_eq!(
        sub.message_ids,
        vec!["5000000001".to_owned(), "5000000002".to_owned()],
        "every part's id is kept"
    );
    let out = dlr(store, "5000000002", MessageState::Submitted, t + 32).await;
    assert_applied(
        &out,
        &m4.id,
        MessageState::Submitted,
        "a non-final receipt of part 2",
    );
    let out = dlr(store, "5000000001", MessageState::Delivered, t + 33).await;
    assert_applied(
        &out,
        &m4.id,
        MessageState::Delivered,
        "a final receipt of part 1",
    );

    // Same-format preference: "4242" (decimal 4242 = 0x1092, or hex 0x4242)
    // and "16962" (decimal 16962 = 0x4242) share the key 4242; a receipt
    // quoting "4242" means the message whose id is "4242", although the
    // other one is newer.
    let m5 = queued(store, svc, 5, t + 40, t + TTL).await;
    let m6 = queued(store, svc, 6, t + 41, t + TTL).await;
    submit(store, &m5.id, &["4242"], t + 42).await;
    submit(store, &m6.id, &["16962"], t + 43).await;
    let out = dlr(store, "4242", MessageState::Delivered, t + 44).await;
    assert_applied(
        &out,
        &m5.id,
        MessageState::Delivered,
        "the same-format id is preferred over a newer one",
    );
    let out = dlr(store, "16962", MessageState::Undeliverable, t + 45).await;
    assert_applied(
        &out,
        &m6.id,
        MessageState::Undeliverable,
        "and the other way round",
    );

    // Reused id: the most recent message with it.
    let m7 = queued(store, svc, 7, t + 50, t + TTL).await;
    let m8 = queued(store, svc, 8, t + 51, t + TTL).await;
    submit(store, &m7.id, &["7A7A7A"], t + 52).await;
    submit(store, &m8.id, &["7A7A7A"], t + 53).await;
    let out = dlr(store, "7a7a7a", MessageState::Delivered, t + 54).await;
    assert_applied(
        &out,
        &m8.id,
        MessageState::Delivered,
        "a reused id means the most recent message",
    );
    assert_eq!(
        message_state(store, &m7.id).await,
        MessageState::Submitted,
        "the older message is untouched"
    );

    // Unknown id: parked.
    let out = dlr(store, "DEADBEEF42", MessageState::Delivered, t + 60).await;
    assert_eq!(
        out,
        DlrOutcome::Parked,
        "a receipt for an unknown id is parked"
    );
}

/// Receipts that arrive before submit_sm_resp is recorded are parked and
/// applied (oldest first, consumed) when the id is recorded.
pub async fn receipts_before_submit<S: SmsPath>(store: &S) {
    let t = T_PARKED;
    let svc = "conf-parked";
    create_service(store, svc, t).await;

    let out = dlr(store, "77FF01", MessageState::Delivered, t).await;
    assert_eq!(out, DlrOutcome::Parked, "receipt before submit: parked");
    let m1 = queued(store, svc, 1, t, t + TTL).await;
    let sub = submit(store, &m1.id, &["77FF01"], t + 5).await;
    assert_eq!(
        sub.state,
        MessageState::Delivered,
        "mark_submitted applies the parked receipt"
    );
    assert_eq!(
        sub.message_ids,
        vec!["77FF01".to_owned()],
        "and records the id"
    );
    assert_eq!(
        message_state(store, &m1.id).await,
        MessageState::Delivered,
        "stored as delivered"
    );
    let m2 = queued(store, svc, 2, t + 6, t + TTL).await;
    let sub = submit(store, &m2.id, &["77FF01"], t + 7).await;
    assert_eq!(
        sub.state,
        MessageState::Submitted,
        "a parked receipt is consumed when applied"
    );

    // Several parked receipts for one id: applied oldest first.
    dlr(store, "88AA", MessageState::Submitted, t + 10).await;
    dlr(store, "88AA", MessageState::Delivered, t + 11).await;
    let m3 = queued(store, svc, 3, t + 12, t + TTL).await;
    let sub = submit(store, &m3.id, &["88AA"], t + 13).await;
    assert_eq!(
        sub.state,
        MessageState::Delivered,
        "intermediate then final receipt: final"
    );
    dlr(store, "99BB", MessageState::Undeliverable, t + 20).await;
    dlr(store, "99BB", MessageState::Submitted, t + 21).await;
    let m4 = queued(store, svc, 4, t + 22, t + TTL).await;
    let sub = submit(store, &m4.id, &["99BB"], t + 23).await;
    assert_eq!(
        sub.state,
        MessageState::Undeliverable,
        "final then late intermediate receipt: still final"
    );

    // Parked under the decimal form, submitted in hex (0x1A2C = 6700).
    let out = dlr(store, "6700", MessageState::Delivered, t + 30).await;
    assert_eq!(out, DlrOutcome::Parked, "parked");
    let m5 = queued(store, svc, 5, t + 31, t + TTL).await;
    let sub = submit(store, &m5.id, &["1A2C"], t + 32).await;
    assert_eq!(
        sub.state,
        MessageState::Delivered,
        "a parked decimal receipt applies to a hex id"
    );

    // Multipart: the parked receipt of part 2.
    let out = dlr(store, "6000000002", MessageState::Delivered, t + 40).await;
    assert_eq!(out, DlrOutcome::Parked, "parked");
    let m6 = queued(store, svc, 6, t + 41, t + TTL).await;
    let sub = submit(store, &m6.id, &["6000000001", "6000000002"], t + 42).await;
    assert_eq!(
        sub.state,
        MessageState::Delivered,
        "a parked receipt of any part applies"
    );

    // A parked receipt of an unrelated id stays parked.
    dlr(store, "ABCDEF0123", MessageState::Delivered, t + 50).await;
    let m7 = queued(store, svc, 7, t + 51, t + TTL).await;
    let sub = submit(store, &m7.id, &["ABCDEF0124"], t + 52).await;
    assert_eq!(
        sub.state,
        MessageState::Submitted,
        "an unrelated parked receipt is not applied"
    );
    let m8 = queued(store, svc, 8, t + 53, t + TTL).await;
    let sub = submit(store, &m8.id, &["ABCDEF0123"], t + 54).await;
    assert_eq!(
        sub.state,
        MessageState::Delivered,
        "it applies to its own message later"
    );
}

/// Fencing: an extended lease holds; once a holder stalled past its lease
/// and another claim took the message, the stale holder can neither extend,
/// fail nor submit it (only the ids of its copy are kept, so a receipt of
/// that copy still finds the message).
pub async fn outbox_fencing<S: SmsPath>(store: &S) {
    let t = T_FENCE;
    let svc = "conf-fence";
    create_service(store, svc, t).await;
    let m = queued(store, svc, 1, t, t + TTL).await;
    let a = store.claim_outbox(t, 1, 1_000).await.expect("claim_outbox");
    let held_a = lease_of(&a, &m.id);
    let extended = store
        .extend_outbox(std::slice::from_ref(&held_a), t + 5_000)
        .await
        .expect("extend_outbox");
    assert_eq!(extended, vec![Extension::Held], "a held lease extends");
    assert!(
        store
            .claim_outbox(t + 2_000, 10, 1_000)
            .await
            .expect("claim")
            .is_empty(),
        "an extended lease holds past its first end"
    );

    // A stalls past its lease; B claims the message.
    let b = store
        .claim_outbox(t + 5_000, 10, 1_000)
        .await
        .expect("claim_outbox");
    let held_b = lease_of(&b, &m.id);
    assert!(
        held_b.token > held_a.token,
        "the later claim has the higher number"
    );
    assert_eq!(
        store
            .extend_outbox(&[held_a.clone(), held_b.clone()], t + 9_000)
            .await
            .expect("extend_outbox"),
        vec![Extension::TakenOver, Extension::Held],
        "only the latest claim extends"
    );
    let before = store
        .get_message(&m.id)
        .await
        .expect("get_message")
        .expect("exists");

    let late = store
        .mark_failed(&held_a, "late failure", Some(t + 5_001), t + 5_001)
        .await;
    assert!(
        matches!(late, Err(StoreError::LeaseLost(_))),
        "a stale holder cannot fail (and so requeue) the message, got {late:?}"
    );
    let late = store
        .mark_submitted(&held_a, "smsc-a", &["FE11CE01".to_owned()], t + 5_002)
        .await;
    assert!(
        matches!(late, Err(StoreError::LeaseLost(_))),
        "a stale holder cannot complete the message, got {late:?}"
    );
    let after = store
        .get_message(&m.id)
        .await
        .expect("get_message")
        .expect("exists");
    assert_eq!(
        (
            after.state,
            after.next_attempt_at,
            &after.last_error,
            &after.message_ids
        ),
        (
            before.state,
            before.next_attempt_at,
            &before.last_error,
            &before.message_ids
        ),
        "the stale holder's writes change nothing of the record"
    );

    submit_held(store, &held_b, &["FE11CE02"], t + 5_003).await;
    let o = dlr(store, "FE11CE01", MessageState::Delivered, t + 5_004).await;
    assert_applied(
        &o,
        &m.id,
        MessageState::Delivered,
        "a receipt of the stale holder's copy",
    );
    assert_eq!(
        store
            .extend_outbox(&[held_a.clone(), held_b.clone()], t + 9_000)
            .await
            .expect("extend_outbox"),
        vec![Extension::TakenOver, Extension::Finished],
        "a finished message's lease no longer extends: finished under the last claim, \
         taken over for the stale one"
    );
    let never = store
        .mark_failed(&Lease::unclaimed(&m.id), "tool", None, t + 5_005)
        .await;
    assert!(
        matches!(never, Err(StoreError::LeaseLost(_))),
        "an unclaimed lease of a claimed message is fenced out too, got {never:?}"
    );
}

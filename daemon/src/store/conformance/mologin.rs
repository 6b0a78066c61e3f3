//! MO login: accounts and sessions, MOs stored with their outcome.

use super::*;

/// Every check of this domain, on `store`.
pub async fn run<S: Store>(store: &S) {
    accounts_and_sessions(store).await;
    mo_login(store).await;
    long_mo_parts(store).await;
}

/// Parts of a long MO are stored one by one (a repeat kept as it was);
/// the last one in returns them all in order; an MO stored with them
/// takes them away, a redelivery too.
pub async fn long_mo_parts<S: Store>(store: &S) {
    let t = T_MO + 50_000_000;
    let group = |reference: u16| MoPartGroup {
        smsc: "conf".into(),
        source: "447400600009".into(),
        dest: "7799".into(),
        reference,
        total: 3,
    };
    let part = |reference: u16, seq: u8, text: &str| MoPart {
        group: group(reference),
        seq,
        source_ton: 1,
        data_coding: 0,
        payload: text.as_bytes().to_vec(),
        received_at: t + i64::from(seq),
    };
    assert_eq!(
        store.store_mo_part(&part(7, 3, "three")).await.unwrap(),
        None
    );
    assert_eq!(
        store.store_mo_part(&part(7, 1, "one ")).await.unwrap(),
        None
    );
    // The SMSC sends part 1 again (its resp was lost): kept as first stored.
    assert_eq!(
        store.store_mo_part(&part(7, 1, "ONE ")).await.unwrap(),
        None
    );
    // Another message with the same sender and reference but other parts
    // count is another message.
    let other = MoPart {
        group: MoPartGroup {
            total: 2,
            ..group(7)
        },
        ..part(7, 2, "x")
    };
    assert_eq!(store.store_mo_part(&other).await.unwrap(), None);
    assert!(store.complete_mo_parts(100).await.unwrap().is_empty());
    let all = store
        .store_mo_part(&part(7, 2, "two "))
        .await
        .unwrap()
        .expect("the last part completes the message");
    let texts: Vec<&[u8]> = all.iter().map(|p| p.payload.as_slice()).collect();
    assert_eq!(texts, [b"one ".as_slice(), b"two ", b"three"]);
    assert_eq!(all[0].received_at, t + 1);
    // Not stored as an MO yet (a stop in between): found complete.
    let complete = store.complete_mo_parts(100).await.unwrap();
    assert_eq!(complete, vec![all.clone()]);
    // Stored as an MO: its parts go in the same write.
    let m = MoMessage {
        parts: Some(group(7)),
        ..mo("mo_conf_long", "+447400600009", "one two three", t + 10)
    };
    let plan = MoPlan::Finish {
        outcome: "no_token",
        reply: None,
    };
    assert!(store
        .receive_mo(&m, b"key-long", 600_000, &plan, &[], t + 10)
        .await
        .unwrap()
        .is_some());
    assert!(store.complete_mo_parts(100).await.unwrap().is_empty());
    // Sent whole again and stored again: a redelivery, and its parts go too.
    for seq in 1..=3 {
        store.store_mo_part(&part(7, seq, "again")).await.unwrap();
    }
    let again = MoMessage {
        id: "mo_conf_long_again".into(),
        ..m.clone()
    };
    assert_eq!(
        store
            .receive_mo(&again, b"key-long", 600_000, &plan, &[], t + 20)
            .await
            .unwrap(),
        None
    );
    assert!(store.complete_mo_parts(100).await.unwrap().is_empty());
    // The lone part of the other message is left for retention.
    assert!(
        store
            .prune_batch(Retained::MoParts, t + 100, 1000)
            .await
            .unwrap()
            >= 1
    );
}

/// Accounts are unique per (service, number); sessions per token hash.
pub async fn accounts_and_sessions<S: Store>(store: &S) {
    let t = T_ACCOUNTS;
    create_service(store, "conf-acct", t).await;
    create_service(store, "conf-acct-other", t).await;
    let account = |id: &str, service: &str, msisdn: &str| Account {
        id: id.to_owned(),
        service: service.to_owned(),
        msisdn: msisdn.to_owned(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
        created_at: t,
    };
    let a1 = account("acct_conf_1", "conf-acct", "+15550004001");
    store.create_account(&a1).await.expect("create_account");
    let dup = store
        .create_account(&account("acct_conf_2", "conf-acct", "+15550004001"))
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "a second account for (service, number): Conflict, got {dup:?}"
    );
    let dup = store
        .create_account(&account("acct_conf_1", "conf-acct", "+15550004002"))
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "a duplicate account id: Conflict, got {dup:?}"
    );
    let mut a3 = account("acct_conf_3", "conf-acct-other", "+15550004001");
    a3.password_hash = None;
    store
        .create_account(&a3)
        .await
        .expect("the same number in another service is another account");
    assert_eq!(
        store
            .get_account_by_msisdn("conf-acct", "+15550004001")
            .await
            .expect("get_account_by_msisdn"),
        Some(a1.clone()),
        "account by (service, number)"
    );
    assert_eq!(
        store
            .get_account_by_msisdn("conf-acct-other", "+15550004001")
            .await
            .expect("get_account_by_msisdn"),
        Some(a3.clone()),
        "accounts are per service"
    );
    assert_eq!(
        store
            .get_account_by_msisdn("conf-acct", "+15550004999")
            .await
            .expect("get"),
        None,
        "unknown number: None"
    );

    let s1 = Session {
        id: "sess_conf_1".to_owned(),
        account_id: a1.id.clone(),
        token_hash: vec![0xAB; 32],
        created_at: t + 1,
        expires_at: t + 86_400_000,
    };
    store.create_session(&s1).await.expect("create_session");
    let dup = store
        .create_session(&Session {
            id: "sess_conf_2".to_owned(),
            ..s1.clone()
        })
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "a duplicate token hash: Conflict, got {dup:?}"
    );
    assert_eq!(
        store
            .get_session_by_token_hash(&[0xAB; 32])
            .await
            .expect("get_session_by_token_hash"),
        Some(s1.clone()),
        "session by token hash"
    );
    assert_eq!(
        store
            .get_session_by_token_hash(&[0xCD; 32])
            .await
            .expect("get_session"),
        None,
        "unknown token: None"
    );
}

fn mo(id: &str, from: &str, text: &str, at: Millis) -> MoMessage {
    MoMessage {
        id: id.into(),
        smsc: "conf".into(),
        source: from.into(),
        dest: "7799".into(),
        text: text.into(),
        received_at: at,
        parts: None,
    }
}

fn pending_login(token: &str, svc: &str, at: Millis) -> MoLogin {
    MoLogin {
        token: token.into(),
        service: svc.into(),
        intent: MoIntent::Login,
        state: MoLoginState::Pending,
        msisdn: None,
        account_id: None,
        created_account: false,
        session_token: None,
        created_at: at,
        expires_at: at + TTL,
        completed_at: None,
    }
}

/// MOs stored with their outcome in one write: a login completed (account
/// found or made with its password SMS, session, webhook), a refusal with
/// its reply, a redelivery that writes nothing; the session handed out once.
pub async fn mo_login<S: Store>(store: &S) {
    let t = T_MO;
    let svc = "conf-mo";
    create_service(store, svc, t).await;
    let account = Account {
        id: "acc_conf_mo".into(),
        service: svc.into(),
        msisdn: "+447400600001".into(),
        password_hash: Some("$hmac-sha256$v1$fixture".into()),
        created_at: t,
    };
    let session = |n: u8| Session {
        id: format!("ses_conf_mo_{n}"),
        account_id: String::new(),
        token_hash: format!("session-hash-{n}").into_bytes(),
        created_at: t,
        expires_at: t + TTL,
    };
    let sms = |id: &str, text: &str| OutboxMessage {
        verification_id: None,
        text: text.into(),
        expires_at: t + 100 * TTL,
        ..message(id, "", svc, "+447400600001", t)
    };
    let hook = |id: &str| WebhookJob {
        id: id.into(),
        service: svc.into(),
        url: "https://app.example/hook".into(),
        body: "{}".into(),
        attempts: 0,
        next_attempt_at: t,
        last_error: None,
        method: HttpMethod::Post,
        credential: None,
        deliver_until: None,
        topic: None,
    };
    let (unknown, expired, used) = (
        sms("msg_conf_mo_unknown", "unknown"),
        sms("msg_conf_mo_expired", "expired"),
        sms("msg_conf_mo_used", "used"),
    );
    let plan = |c: CompleteMoLogin<'static>| MoPlan::Login {
        complete: c,
        unknown: Box::leak(Box::new(unknown.clone())),
        expired: Box::leak(Box::new(expired.clone())),
        used: Box::leak(Box::new(used.clone())),
    };
    let complete =
        |token: &'static str, mo_id: &'static str, n: u8, pw: Option<&str>, wh: Option<&str>| {
            CompleteMoLogin {
                token,
                msisdn: "+447400600001",
                mo_id,
                new_account: Box::leak(Box::new(account.clone())),
                session: Box::leak(Box::new(session(n))),
                session_token: "st_secret",
                password_sms: pw.map(|id| &*Box::leak(Box::new(sms(id, "password")))),
                webhook: wh.map(|id| &*Box::leak(Box::new(hook(id)))),
            }
        };
    // What was queued since the last look (each is then closed).
    let queued_ids = |at: Millis| async move {
        let mut ids = Vec::new();
        for m in store.claim_outbox(at, 100, 60_000).await.unwrap() {
            store
                .mark_failed(&m.lease, "battery", None, at)
                .await
                .unwrap();
            ids.push(m.job.id);
        }
        ids
    };

    // A login completed by its MO: the account is made with it, its
    // password SMS and the webhook queued, all in the MO's write.
    store
        .create_mo_login(&pending_login("ABCD2345", svc, t))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_mo_login(&pending_login("ABCD2345", svc, t))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let m1 = mo("mo_conf_1", "+447400600001", "LOGIN ABCD2345", t);
    let out = store
        .receive_mo(
            &m1,
            b"key-1",
            600_000,
            &plan(complete(
                "ABCD2345",
                "mo_conf_1",
                1,
                Some("msg_conf_mo_pw"),
                Some("wh_conf_mo"),
            )),
            &[],
            t + 10,
        )
        .await
        .unwrap()
        .map(|r| r.outcome);
    assert_eq!(
        out,
        Some(MoLoginOutcome::Completed {
            account: account.clone(),
            created: true
        })
    );
    let got = store.get_mo_login("ABCD2345").await.unwrap().unwrap();
    assert_eq!(got.state, MoLoginState::Completed);
    assert_eq!(got.msisdn.as_deref(), Some("+447400600001"));
    assert_eq!(got.account_id.as_deref(), Some("acc_conf_mo"));
    assert!(got.created_account);
    assert_eq!(got.session_token.as_deref(), Some("st_secret"));
    let ses = store
        .get_session_by_token_hash(b"session-hash-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ses.account_id, "acc_conf_mo");
    assert_eq!(
        queued_ids(t + 20).await,
        vec!["msg_conf_mo_pw"],
        "password only, no refusal"
    );
    let hooks = store.claim_webhooks(t + 20, 100, 60_000).await.unwrap();
    assert!(hooks.iter().any(|w| w.id == "wh_conf_mo"));

    // The SMSC delivers it again: nothing is written, not even a reply.
    let again = mo("mo_conf_1b", "+447400600001", "LOGIN ABCD2345", t + 1_000);
    assert_eq!(
        store
            .receive_mo(
                &again,
                b"key-1",
                600_000,
                &plan(complete("ABCD2345", "mo_conf_1b", 9, None, None)),
                &[],
                t + 1_000
            )
            .await
            .unwrap()
            .map(|r| r.outcome),
        None
    );
    assert!(queued_ids(t + 1_001).await.is_empty());
    assert_eq!(
        store
            .get_session_by_token_hash(b"session-hash-9")
            .await
            .unwrap(),
        None
    );

    // The token in a new MO: used; only that refusal is queued, no session.
    let m2 = mo("mo_conf_2", "+447400600001", "ABCD2345", t + 2_000);
    assert_eq!(
        store
            .receive_mo(
                &m2,
                b"key-2",
                600_000,
                &plan(complete(
                    "ABCD2345",
                    "mo_conf_2",
                    2,
                    Some("msg_conf_mo_pw2"),
                    None
                )),
                &[],
                t + 2_000
            )
            .await
            .unwrap()
            .map(|r| r.outcome),
        Some(MoLoginOutcome::Used)
    );
    assert_eq!(queued_ids(t + 2_001).await, vec!["msg_conf_mo_used"]);
    assert_eq!(
        store
            .get_session_by_token_hash(b"session-hash-2")
            .await
            .unwrap(),
        None
    );
    // An unknown token.
    let m3 = mo("mo_conf_3", "+447400600001", "ZZZZ9999", t + 3_000);
    assert_eq!(
        store
            .receive_mo(
                &m3,
                b"key-3",
                600_000,
                &plan(complete("ZZZZ9999", "mo_conf_3", 3, None, None)),
                &[],
                t + 3_000
            )
            .await
            .unwrap()
            .map(|r| r.outcome),
        Some(MoLoginOutcome::Unknown)
    );
    assert_eq!(queued_ids(t + 3_001).await, vec!["msg_conf_mo_unknown"]);
    // An expired one.
    store
        .create_mo_login(&pending_login("JKMN2345", svc, t))
        .await
        .unwrap();
    let m4 = mo("mo_conf_4", "+447400600001", "JKMN2345", t + TTL + 1);
    assert_eq!(
        store
            .receive_mo(
                &m4,
                b"key-4",
                600_000,
                &plan(complete("JKMN2345", "mo_conf_4", 4, None, None)),
                &[],
                t + TTL + 1
            )
            .await
            .unwrap()
            .map(|r| r.outcome),
        Some(MoLoginOutcome::Expired)
    );
    assert_eq!(queued_ids(t + TTL + 2).await, vec!["msg_conf_mo_expired"]);
    // A second login from the number reaches the same account; no password
    // SMS (the account exists), though one was offered.
    store
        .create_mo_login(&pending_login("EFGH6789", svc, t + 50))
        .await
        .unwrap();
    let m5 = mo("mo_conf_5", "+447400600001", "EFGH6789", t + 5_000);
    let mut c5 = complete("EFGH6789", "mo_conf_5", 5, Some("msg_conf_mo_pw5"), None);
    c5.new_account = Box::leak(Box::new(Account {
        id: "acc_conf_mo_unused".into(),
        ..account.clone()
    }));
    assert_eq!(
        store
            .receive_mo(&m5, b"key-5", 600_000, &plan(c5), &[], t + 5_000)
            .await
            .unwrap()
            .map(|r| r.outcome),
        Some(MoLoginOutcome::Completed {
            account: account.clone(),
            created: false
        })
    );
    assert!(
        queued_ids(t + 5_001).await.is_empty(),
        "no password for an existing account"
    );
    // A plain Finish: recorded, its reply queued.
    let m6 = mo("mo_conf_6", "+447400600001", "hello", t + 6_000);
    let no_token = sms("msg_conf_mo_notoken", "no token");
    assert!(store
        .receive_mo(
            &m6,
            b"key-6",
            600_000,
            &MoPlan::Finish {
                outcome: "no_token",
                reply: Some(&no_token)
            },
            &[],
            t + 6_000
        )
        .await
        .unwrap()
        .map(|r| r.outcome)
        .is_some());
    assert_eq!(queued_ids(t + 6_001).await, vec!["msg_conf_mo_notoken"]);
    // A reply budget is counted in the MO's transaction: the second reply
    // over a budget of one is not queued, and which budget refused it is told.
    let budget = [
        RateHit {
            key: "conf-mo-reply:wide",
            limit: 100,
            window_ms: 3_600_000,
        },
        RateHit {
            key: "conf-mo-reply:one",
            limit: 1,
            window_ms: 3_600_000,
        },
    ];
    for (n, want) in [(1, None), (2, Some(1))] {
        let m = mo(
            &format!("mo_conf_6b{n}"),
            "+447400600001",
            "hi",
            t + 6_100 + n,
        );
        let reply = sms(&format!("msg_conf_mo_budget{n}"), "no token");
        let got = store
            .receive_mo(
                &m,
                format!("key-6b{n}").as_bytes(),
                600_000,
                &MoPlan::Finish {
                    outcome: "no_token",
                    reply: Some(&reply),
                },
                &budget,
                t + 6_100 + n,
            )
            .await
            .unwrap()
            .expect("a new MO");
        assert_eq!(got.suppressed, want, "reply {n} against a budget of one");
    }
    assert_eq!(
        queued_ids(t + 6_200).await,
        vec!["msg_conf_mo_budget1"],
        "only the reply within budget is queued"
    );
    // Outside the redelivery window the same MO is a new one.
    let m7 = mo("mo_conf_7", "+447400600001", "hello", t + 700_000);
    assert!(store
        .receive_mo(
            &m7,
            b"key-6",
            600_000,
            &MoPlan::Finish {
                outcome: "no_token",
                reply: None
            },
            &[],
            t + 700_000
        )
        .await
        .unwrap()
        .map(|r| r.outcome)
        .is_some());

    // The session is handed out once.
    let first = store.collect_mo_login("ABCD2345").await.unwrap().unwrap();
    assert_eq!(first.session_token.as_deref(), Some("st_secret"));
    let second = store.collect_mo_login("ABCD2345").await.unwrap().unwrap();
    assert_eq!(
        (second.state, second.session_token),
        (MoLoginState::Collected, None)
    );
    assert_eq!(store.collect_mo_login("NOPE2345").await.unwrap(), None);
    // Housekeeping: old MOs, logins long expired (with a session token never
    // collected), expired sessions and the texts of finished SMS go.
    let uncollected = store.get_mo_login("EFGH6789").await.unwrap().unwrap();
    assert_eq!(uncollected.session_token.as_deref(), Some("st_secret"));
    let mut forgotten = 0;
    for (what, before) in [
        (Retained::MoMessages, t + 5_500),
        (Retained::MoLogins, t + 50 + TTL + 1),
        (Retained::Sessions, t + TTL + 1),
    ] {
        forgotten += store.prune_batch(what, before, 1000).await.unwrap();
    }
    forgotten += store
        .blank_texts(
            TextCut {
                final_before: t + 100_000_000,
                expired_before: 0,
            },
            1000,
        )
        .await
        .unwrap();
    assert!(forgotten >= 5, "{forgotten}");
    assert_eq!(store.get_mo_login("EFGH6789").await.unwrap(), None);
    assert_eq!(
        store
            .get_session_by_token_hash(b"session-hash-1")
            .await
            .unwrap(),
        None
    );
    // The MOs before the cut are gone: the first one is new again.
    assert!(store
        .receive_mo(
            &mo("mo_conf_1c", "+447400600001", "LOGIN ABCD2345", t + 5_600),
            b"key-1",
            600_000,
            &MoPlan::Finish {
                outcome: "no_token",
                reply: None
            },
            &[],
            t + 5_600
        )
        .await
        .unwrap()
        .map(|r| r.outcome)
        .is_some());
    // A finished SMS keeps no text (the password is not kept).
    let pw = store.get_message("msg_conf_mo_pw").await.unwrap().unwrap();
    assert_eq!(pw.text, "");
    // Leave the queues empty for other tests.
    for m in store
        .claim_outbox(t + 100_000_000, 1000, 60_000)
        .await
        .unwrap()
    {
        store
            .mark_failed(&m.lease, "battery", None, t + 100_000_000)
            .await
            .unwrap();
    }
}

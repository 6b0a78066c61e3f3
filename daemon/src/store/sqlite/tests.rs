//! Tests of the SQLite store beyond the conformance battery.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::store::conformance;
use crate::store::*;
use verigate_codecs::dlr::message_id_keys;

/// A directory removed when dropped.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "verigate-store-{tag}-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    /// A database path in a subdirectory that does not exist yet.
    fn db(&self) -> String {
        self.0
            .join("data")
            .join("verigate.db")
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

use crate::store::conformance::{message, verification};

fn service(code: &str) -> Service {
    crate::store::conformance::service(code, 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_passes_conformance() {
    let dir = TempDir::new("conformance");
    let store = SqliteStore::open(&dir.db()).await.expect("open");
    conformance::run_all(&store).await;
    store.close().await;
}

/// Each domain's battery alone on a fresh in-memory store, so a failure
/// names its domain.
macro_rules! battery {
    ($($domain:ident),*) => {$(
        #[tokio::test]
        async fn $domain() {
            let store = SqliteStore::open_in_memory().await.expect("open_in_memory");
            conformance::$domain::run(&store).await;
        }
    )*};
}

mod in_memory_passes {
    use super::*;
    battery!(
        services,
        verifications,
        outbox,
        limits,
        webhooks,
        mologin,
        calls,
        audit,
        txqueue
    );
}

#[tokio::test]
async fn open_sets_wal_group_commit_and_foreign_keys() {
    let dir = TempDir::new("pragmas");
    let store = SqliteStore::open(&dir.db()).await.expect("open");
    let pragma = |name: &'static str| {
        let store = store.clone();
        async move {
            store
                .on_writer(move |c| {
                    let v: rusqlite::types::Value =
                        c.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?;
                    Ok(match v {
                        rusqlite::types::Value::Text(t) => t,
                        other => format!("{other:?}"),
                    })
                })
                .await
        }
    };
    assert_eq!(pragma("journal_mode").await, "wal", "journal mode");
    // NORMAL: commits do not fsync each; durable writes wait for the shared flush.
    assert_eq!(
        pragma("synchronous").await,
        "Integer(1)",
        "synchronous=NORMAL"
    );
    assert!(
        store.engine.sync_state().is_some(),
        "a file database has group commit"
    );
    assert_eq!(
        pragma("foreign_keys").await,
        "Integer(1)",
        "foreign keys on"
    );
    let orphan = Account {
        id: "acct_orphan".to_owned(),
        service: "no-such-service".to_owned(),
        msisdn: "+15550000001".to_owned(),
        password_hash: None,
        created_at: 1,
    };
    let err = store.create_account(&orphan).await;
    assert!(
        matches!(err, Err(StoreError::NotFound(_))),
        "a missing service is NotFound, got {err:?}"
    );
    store.close().await;
}

/// Every write that promises durability returns only after a WAL flush
/// that started after it committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_return_only_after_a_wal_flush() {
    let dir = TempDir::new("durable");
    let store = SqliteStore::open(&dir.db()).await.expect("open");
    let sync = store.engine.sync_state().cloned().expect("group commit");
    let mut flushes = sync.flushes();
    let mut check = |what: &str| {
        let now = sync.flushes();
        assert!(now > flushes, "{what} returned before a flush");
        flushes = now;
    };
    let svc = "svc-durable";
    let to = "+15550000042";
    store.create_service(&service(svc)).await.unwrap();
    check("create_service");
    store
        .update_service_settings(svc, &serde_json::json!({"a": 1}))
        .await
        .unwrap();
    check("update_service_settings");
    let key = ApiKeyRecord {
        key_id: "k1".into(),
        service: svc.into(),
        hash: vec![1; 32],
        created_at: 1,
        revoked_at: None,
    };
    store.add_api_key(&key).await.unwrap();
    check("add_api_key");
    store.revoke_api_keys(svc, "k2", 2).await.unwrap();
    check("revoke_api_keys");
    let v = verification("vf_durable", svc, to, 1_000);
    let m = message("msg_durable", &v.id, svc, to, 1_000);
    store
        .insert_verification(&v, (&m).into(), None)
        .await
        .unwrap();
    check("insert_verification");
    let claimed = store.claim_outbox(1_000, 10, 60_000).await.unwrap();
    assert_eq!(claimed.len(), 1);
    check("claim_outbox");
    store
        .mark_failed(&claimed[0].lease, "test", Some(1_000), 1_000)
        .await
        .unwrap();
    check("mark_failed (requeue)");
    store
        .update_verification(
            &v.id,
            VerificationStatus::Pending,
            0,
            VerificationStatus::Pending,
            1,
            1_001,
        )
        .await
        .unwrap();
    check("update_verification");
    let m2 = message("msg_durable_2", &v.id, svc, to, 1_002);
    store
        .record_resend(
            &Resend {
                verification_id: &v.id,
                last_sent_at: 1_000,
                code_hash: &[9; 32],
                expires_at: 700_000,
                send: (&m2).into(),
                idempotency: None,
            },
            1_002,
        )
        .await
        .unwrap();
    check("record_resend");
    let rec = IdempotencyRecord {
        service: svc.into(),
        key: "k".into(),
        request_hash: vec![1],
        verification_id: v.id.clone(),
    };
    store.record_idempotency(&rec, 1_002).await.unwrap();
    check("record_idempotency");
    store
        .mark_failed(&Lease::unclaimed(&m2.id), "down", Some(1_003), 1_003)
        .await
        .unwrap();
    check("mark_failed");
    store
        .mark_submitted(&claimed[0].lease, "smsc", &["77".to_string()], 1_004)
        .await
        .unwrap();
    check("mark_submitted");
    store
        .record_dlr(&message_id_keys("77"), MessageState::Delivered, 1_005)
        .await
        .unwrap();
    check("record_dlr");
    store.expire_outbox(10_000_000).await.unwrap();
    check("expire_outbox");
    store.barrier().await.unwrap();
    check("barrier");
    let job = WebhookJob {
        id: "wh1".into(),
        service: svc.into(),
        url: "http://127.0.0.1:9/".into(),
        body: "{}".into(),
        attempts: 0,
        next_attempt_at: 0,
        last_error: None,
        method: HttpMethod::Post,
        credential: None,
        deliver_until: None,
        topic: None,
    };
    store.enqueue_webhook(&job).await.unwrap();
    check("enqueue_webhook");
    store
        .retry_webhook(&Lease::unclaimed("wh1"), "refused", Some(5))
        .await
        .unwrap();
    check("retry_webhook");
    store
        .complete_webhook(&Lease::unclaimed("wh1"))
        .await
        .unwrap();
    check("complete_webhook");
    store
        .create_account(&Account {
            id: "acct_d".into(),
            service: svc.into(),
            msisdn: to.into(),
            password_hash: None,
            created_at: 1,
        })
        .await
        .unwrap();
    check("create_account");
    store
        .create_session(&Session {
            id: "ses_d".into(),
            account_id: "acct_d".into(),
            token_hash: vec![3; 32],
            created_at: 1,
            expires_at: 2,
        })
        .await
        .unwrap();
    check("create_session");
    store
        .audit(&AuditEvent {
            at: 1,
            service: None,
            kind: "test".into(),
            detail: serde_json::json!({}),
        })
        .await
        .unwrap();
    check("audit");
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = TempDir::new("reopen");
    let path = dir.db();
    let v = verification("vf_reopen", "svc-reopen", "+15550000001", 1_000);
    let m = message("msg_reopen", &v.id, "svc-reopen", "+15550000001", 1_000);
    {
        let store = SqliteStore::open(&path).await.expect("open");
        store
            .create_service(&service("svc-reopen"))
            .await
            .expect("create_service");
        let outcome = store
            .insert_verification(&v, (&m).into(), None)
            .await
            .expect("insert_verification");
        assert_eq!(outcome, InsertOutcome::Created);
        let out = store
            .record_dlr(&message_id_keys("6699"), MessageState::Delivered, 1_001)
            .await
            .expect("record_dlr");
        assert_eq!(out, DlrOutcome::Parked);
        store
            .rate_hit("k", 1, 1_000, 1_000)
            .await
            .expect("rate_hit");
        store.close().await;
    }
    let store = SqliteStore::open(&path)
        .await
        .expect("reopen (migrations already applied)");
    assert_eq!(
        store
            .get_service("svc-reopen")
            .await
            .expect("get")
            .map(|s| s.code),
        Some("svc-reopen".to_owned())
    );
    assert_eq!(
        store
            .find_pending("svc-reopen", "+15550000001")
            .await
            .expect("find_pending"),
        Some(v.clone())
    );
    assert_eq!(
        store.get_message(&m.id).await.expect("get_message"),
        Some(m.clone())
    );
    let sub = store
        .mark_submitted(
            &Lease::unclaimed(&m.id),
            "smsc-a",
            &["1A2B".to_owned()],
            1_002,
        )
        .await
        .expect("mark_submitted");
    assert_eq!(
        sub.state,
        MessageState::Delivered,
        "the receipt parked before reopening applies"
    );
    let d = store
        .rate_hit("k", 1, 1_000, 1_500)
        .await
        .expect("rate_hit");
    assert!(!d.allowed, "the rate window survived");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_starts_create_one_pending() {
    let dir = TempDir::new("race-insert");
    let path = dir.db();
    // Two instances on one database file.
    let a = Arc::new(SqliteStore::open(&path).await.expect("open a"));
    let b = Arc::new(SqliteStore::open(&path).await.expect("open b"));
    a.create_service(&service("svc-race"))
        .await
        .expect("create_service");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        tasks.push(tokio::spawn(async move {
            let v = verification(
                &format!("vf_race_{i}"),
                "svc-race",
                "+15550000001",
                1_000 + i,
            );
            let m = message(
                &format!("msg_race_{i}"),
                &v.id,
                "svc-race",
                "+15550000001",
                1_000 + i,
            );
            store.insert_verification(&v, (&m).into(), None).await
        }));
    }
    let mut created = 0;
    let mut existing = HashSet::new();
    for t in tasks {
        match t.await.expect("task").expect("insert_verification") {
            InsertOutcome::Created => created += 1,
            InsertOutcome::PendingExists(v) => {
                existing.insert(v.id);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created, 1, "exactly one insert is Created");
    assert_eq!(
        existing.len(),
        1,
        "the 19 others all see the same winner: {existing:?}"
    );
    let winner = a
        .find_pending("svc-race", "+15550000001")
        .await
        .expect("find_pending")
        .expect("pending");
    assert!(
        existing.contains(&winner.id),
        "PendingExists returns the winner"
    );
    let n: i64 = a
        .on_writer(|c| Ok(c.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?))
        .await;
    assert_eq!(n, 1, "only the winner's message was written");
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_claimers_never_share_a_message() {
    let dir = TempDir::new("race-claim");
    let path = dir.db();
    let a = Arc::new(SqliteStore::open(&path).await.expect("open a"));
    let b = Arc::new(SqliteStore::open(&path).await.expect("open b"));
    a.create_service(&service("svc-claim"))
        .await
        .expect("create_service");
    let total = 200;
    for i in 0..total {
        let to = format!("+1555{i:07}");
        let v = verification(&format!("vf_{i}"), "svc-claim", &to, 1_000 + i);
        let m = message(&format!("msg_{i}"), &v.id, "svc-claim", &to, 1_000 + i);
        a.insert_verification(&v, (&m).into(), None)
            .await
            .expect("insert_verification");
    }
    let claimer = |store: Arc<SqliteStore>| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            // Bounded: a store that hands leased messages out again
            // would otherwise never run dry.
            for _ in 0..100 {
                let batch = store
                    .claim_outbox(10_000, 7, 60_000)
                    .await
                    .expect("claim_outbox");
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|m| m.job.id));
                tokio::task::yield_now().await;
            }
            panic!("claim_outbox never ran dry: leased messages handed out again");
        })
    };
    let (ga, gb) = (claimer(Arc::clone(&a)), claimer(Arc::clone(&b)));
    let (ga, gb) = (ga.await.expect("claimer a"), gb.await.expect("claimer b"));
    let sa: HashSet<&String> = ga.iter().collect();
    let sb: HashSet<&String> = gb.iter().collect();
    assert_eq!(sa.len(), ga.len(), "claimer a never got a message twice");
    assert_eq!(sb.len(), gb.len(), "claimer b never got a message twice");
    assert!(
        sa.is_disjoint(&sb),
        "the claimers never got the same message"
    );
    assert_eq!(
        sa.len() + sb.len(),
        total as usize,
        "every message was claimed"
    );
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_rate_hits_across_instances_respect_the_limit() {
    let dir = TempDir::new("race-rate");
    let path = dir.db();
    let a = Arc::new(SqliteStore::open(&path).await.expect("open a"));
    let b = Arc::new(SqliteStore::open(&path).await.expect("open b"));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        tasks.push(tokio::spawn(async move {
            store.rate_hit("race", 10, 60_000, 120_000).await
        }));
    }
    let mut allowed = 0;
    for t in tasks {
        if t.await.expect("task").expect("rate_hit").allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10, "exactly the limit is allowed");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn unknown_enum_text_is_corrupt() {
    let store = SqliteStore::open_in_memory().await.expect("open_in_memory");
    store
        .create_service(&service("svc-corrupt"))
        .await
        .expect("create_service");
    let v = verification("vf_corrupt", "svc-corrupt", "+15550000001", 1_000);
    let m = message("msg_corrupt", &v.id, "svc-corrupt", "+15550000001", 1_000);
    store
        .insert_verification(&v, (&m).into(), None)
        .await
        .expect("insert_verification");
    store
        .on_writer(|c| {
            c.execute_batch(
                "UPDATE verifications SET status = 'bogus'; UPDATE outbox SET state = 'lost';",
            )?;
            Ok(())
        })
        .await;
    let err = store.get_verification(&v.id).await;
    assert!(
        matches!(err, Err(StoreError::Corrupt(_))),
        "unknown status: Corrupt, got {err:?}"
    );
    let err = store.get_message(&m.id).await;
    assert!(
        matches!(err, Err(StoreError::Corrupt(_))),
        "unknown state: Corrupt, got {err:?}"
    );
}

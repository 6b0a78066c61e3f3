//! Tests against a real PostgreSQL server: `scripts/pg.sh start` makes one
//! and exports `VERIGATE_TEST_PG_URL`; the test script does so. Without it
//! the tests say so and pass, except under CI=true, where a missing server
//! is a failure.

use super::*;
use crate::store::RateLimitStore;

/// A fresh, empty schema on the test server (its own per test), or None.
pub(crate) async fn fresh(tag: &str) -> Option<String> {
    let Ok(url) = std::env::var("VERIGATE_TEST_PG_URL") else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true and no VERIGATE_TEST_PG_URL: the test script must start PostgreSQL (scripts/pg.sh)"
        );
        eprintln!("no VERIGATE_TEST_PG_URL: PostgreSQL test {tag} not run (scripts/pg.sh start)");
        return None;
    };
    let schema = format!("t_{tag}_{}", std::process::id());
    let (c, conn) = tokio_postgres::connect(&url, NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(conn);
    c.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .await
    .expect("a fresh schema");
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}options=-csearch_path%3D{schema}"))
}

#[tokio::test]
async fn the_schema_is_made_once_even_by_instances_starting_together() {
    let Some(url) = fresh("migrate").await else {
        return;
    };
    let opened = futures::future::join_all((0..3).map(|_| PostgresStore::open(&url, 2))).await;
    for s in &opened {
        assert!(s.is_ok(), "{s:?}");
    }
    let s = opened.into_iter().next().unwrap().unwrap();
    assert_eq!(s.schema_version().await.unwrap(), migrate::latest());
    let c = s.conn().await.unwrap();
    let recorded: i64 = c
        .query_one("SELECT count(*) FROM verigate_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, migrate::latest(), "each migration recorded once");
    // The same tables and columns as the SQLite schema (plus `rowid`).
    let rows = c
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name <> 'verigate_migrations'
               AND column_name <> 'rowid'
             ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    let pg: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(pg, sqlite_columns(), "PostgreSQL and SQLite schemas differ");
    // Opening again changes nothing.
    PostgresStore::open(&url, 2).await.unwrap();
    // A database from a newer build is refused with a clear error.
    c.execute(
        "INSERT INTO verigate_migrations (version, name) VALUES (999, 'future')",
        &[],
    )
    .await
    .unwrap();
    let e = PostgresStore::open(&url, 2).await.unwrap_err();
    assert!(e.to_string().contains("newer than this build"), "{e}");
}

/// (table, column) of the schema the SQLite migrations build, sorted.
fn sqlite_columns() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let db = rusqlite::Connection::open_in_memory().unwrap();
    for f in files {
        db.execute_batch(&std::fs::read_to_string(f).unwrap())
            .unwrap();
    }
    let mut st = db
        .prepare(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name <> 'sqlite_sequence' ORDER BY 1, 2",
        )
        .unwrap();
    let cols = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<(String, String)>, _>>()
        .unwrap();
    assert!(cols.len() > 200, "{}", cols.len());
    cols
}

#[tokio::test]
async fn a_url_that_is_not_postgres_says_so() {
    let e = PostgresStore::open("mysql://x", 1).await.unwrap_err();
    assert!(e.to_string().contains("not a PostgreSQL URL"), "{e}");
}

/// Each implemented domain's battery on its own fresh schema.
macro_rules! battery {
    ($($domain:ident),*) => {$(
        #[tokio::test]
        async fn $domain() {
            let Some(url) = fresh(stringify!($domain)).await else {
                return;
            };
            let store = PostgresStore::open(&url, 8).await.unwrap();
            crate::store::conformance::$domain::run(&store).await;
        }
    )*};
}

mod battery_passes {
    use super::*;
    battery!(
        services,
        audit,
        txrelay,
        webhooks,
        bindings,
        registry,
        verifications,
        outbox,
        limits,
        txqueue,
        calls,
        mologin,
        retention
    );
}

#[tokio::test]
async fn a_limit_holds_across_instances_hitting_it_at_once() {
    let Some(url) = fresh("limits_many").await else {
        return;
    };
    // Three "instances" (pools), 60 hits at once on a limit of 25.
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(PostgresStore::open(&url, 8).await.unwrap());
    }
    let now = 1_800_000_000_000;
    let hits = (0..60).map(|i| {
        let s = stores[i % 3].clone();
        async move { s.rate_hit("shared:key", 25, 60_000, now).await.unwrap() }
    });
    let decisions = futures::future::join_all(hits).await;
    assert_eq!(decisions.iter().filter(|d| d.allowed).count(), 25);
}

#[tokio::test]
async fn instances_claiming_at_once_take_each_job_once() {
    use crate::store::{HttpMethod, WebhookJob, WebhookStore};
    let Some(url) = fresh("claims").await else {
        return;
    };
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(PostgresStore::open(&url, 4).await.unwrap());
    }
    let now = 1_800_000_000_000;
    for i in 0..300 {
        stores[0]
            .enqueue_webhook(&WebhookJob {
                id: format!("wh_{i:03}"),
                service: "svc".into(),
                url: "http://127.0.0.1:9/x".into(),
                body: "{}".into(),
                attempts: 0,
                next_attempt_at: now,
                last_error: None,
                method: HttpMethod::Post,
                credential: None,
                deliver_until: None,
                topic: None,
            })
            .await
            .unwrap();
    }
    // Three instances, four claimers each, batches of 7, until nothing is due.
    let claimers = (0..12).map(|i| {
        let s = stores[i % 3].clone();
        async move {
            let mut mine = Vec::new();
            loop {
                let got = s.claim_webhooks(now, 7, 60_000).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|c| c.job.id));
            }
        }
    });
    let all: Vec<String> = futures::future::join_all(claimers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let distinct: std::collections::HashSet<&String> = all.iter().collect();
    assert_eq!(
        (all.len(), distinct.len()),
        (300, 300),
        "each job claimed once"
    );
}

/// Every battery on one store, as `run_all` runs them on SQLite.
#[tokio::test]
async fn every_battery_passes_on_one_store() {
    let Some(url) = fresh("run_all").await else {
        return;
    };
    let store = PostgresStore::open(&url, 8).await.unwrap();
    crate::store::conformance::run_all(&store).await;
}

#[tokio::test]
async fn a_sqlite_database_copied_over_reads_the_same() {
    use crate::store::*;
    let Some(url) = fresh("copy").await else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("verigate-copy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lab.db").display().to_string();
    let _ = std::fs::remove_file(&path);
    {
        // A lab's data, through the SQLite store itself.
        let lite = crate::store::sqlite::SqliteStore::open(&path)
            .await
            .unwrap();
        crate::store::conformance::services::run(&lite).await;
        crate::store::conformance::audit::run(&lite).await;
        crate::store::conformance::registry::run(&lite).await;
        lite.close().await;
    }
    let pg = PostgresStore::open(&url, 4).await.unwrap();
    let copied = copy::from_sqlite(&path, &pg).await.unwrap();
    let rows = |t: &str| copied.tables.iter().find(|c| c.0 == t).unwrap().1;
    assert!(
        rows("services") >= 2 && rows("audit_events") >= 3 && rows("bindings") > 0,
        "{copied:?}"
    );
    let lite = crate::store::sqlite::SqliteStore::open(&path)
        .await
        .unwrap();
    assert_eq!(
        pg.list_services().await.unwrap(),
        lite.list_services().await.unwrap()
    );
    assert_eq!(
        pg.recent_audit(100).await.unwrap(),
        lite.recent_audit(100).await.unwrap()
    );
    assert_eq!(
        pg.list_registry_apps().await.unwrap(),
        lite.list_registry_apps().await.unwrap()
    );
    // Identities go on after the copied rows: a new audit event is newest.
    let e = AuditEvent {
        at: i64::MAX / 2,
        service: None,
        kind: "after.copy".into(),
        detail: serde_json::json!({}),
    };
    pg.audit(&e).await.unwrap();
    assert_eq!(pg.recent_audit(1).await.unwrap()[0].kind, "after.copy");
    // Into a schema with data: refused, nothing changed.
    let e = copy::from_sqlite(&path, &pg).await.unwrap_err();
    assert!(e.to_string().contains("holds data already"), "{e}");
    lite.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

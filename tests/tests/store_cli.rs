//! `verigate migrate` as an operator runs it: on an embedded SQLite file
//! and on PostgreSQL (the test script's server, VERIGATE_TEST_PG_URL; under
//! CI=true its absence is a failure).

use std::process::Command;
use verigate_e2e::bin;

fn migrate(url: &str) -> (i32, String, String) {
    let out = Command::new(bin("verigate"))
        .args(["migrate", "--url", url])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn migrate_brings_a_sqlite_file_and_a_postgres_schema_to_this_build() {
    let dir = verigate_e2e::scratch_dir();
    let db = dir.join("m.db");
    let url = format!("sqlite://{}", db.display());
    for _ in 0..2 {
        let (code, out, err) = migrate(&url);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("schema at version 14 (this build writes 14)"),
            "{out}"
        );
    }
    let (code, _, err) = migrate("mysql://x");
    assert_eq!(code, 64);
    assert!(err.contains("neither postgres://"), "{err}");

    let Ok(pg) = std::env::var("VERIGATE_TEST_PG_URL") else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true and no VERIGATE_TEST_PG_URL: the test script must start PostgreSQL"
        );
        eprintln!("no VERIGATE_TEST_PG_URL: the PostgreSQL half is not run");
        return;
    };
    let schema = format!("cli_{}", std::process::id());
    let psql = |sql: &str| {
        let st = Command::new("psql")
            .args([pg.as_str(), "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .status()
            .expect("psql (installed with postgresql)");
        assert!(st.success(), "{sql}");
    };
    psql(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ));
    let url = format!("{pg}?options=-csearch_path%3D{schema}");
    for _ in 0..2 {
        let (code, out, err) = migrate(&url);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("schema at version 1 (this build writes 1)"),
            "{out}"
        );
        assert!(
            !out.contains("verigate@"),
            "no user in what is shown: {out}"
        );
    }
    // A lab's SQLite file copied over (a row added the way any tool could).
    let lab_db = dir.join("lab.db");
    let (code, _, err) = migrate(&format!("sqlite://{}", lab_db.display()));
    assert_eq!(code, 0, "{err}");
    let st = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             c.execute(\"INSERT INTO services (code, name, settings, created_at) VALUES ('copied', 'Copied', '{}', 1)\"); c.commit()",
            &lab_db.display().to_string(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    psql(&format!(
        "DROP SCHEMA {schema} CASCADE; CREATE SCHEMA {schema}"
    ));
    let copy = |to: &str| {
        let out = Command::new(bin("verigate"))
            .args([
                "store",
                "copy",
                "--from",
                &format!("sqlite://{}", lab_db.display()),
                "--to",
                to,
            ])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = copy(&url);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("services") && out.contains("copied 1 rows"),
        "{out}"
    );
    let (code, _, err) = copy(&url);
    assert_eq!(code, 65, "into a schema with data: refused");
    assert!(err.contains("holds data already"), "{err}");
    // A schema someone half-made by hand: the server's own words come back.
    psql(&format!("DROP SCHEMA {schema} CASCADE; CREATE SCHEMA {schema}; CREATE TABLE {schema}.services (x int)"));
    let (code, _, err) = migrate(&url);
    assert_eq!(code, 71);
    assert!(
        err.contains("relation \"services\" already exists"),
        "{err}"
    );
    psql(&format!("DROP SCHEMA {schema} CASCADE"));
}

//! `verigate-bench tx`: the carrier–bank relay end to end, as processes: a
//! `verigate-sim bank` and a daemon on durable SQLite, the key ceremony run
//! through the admin API, a subscriber extract loaded.
//!
//! 1. **Sessions/s**: `--connections` keep-alive front-end clients open
//!    sessions (vouch, a DUKPT counter, the registration stored, sealed
//!    under the zone key and registered at the bank) for `--session-seconds`.
//! 2. **Relayed transactions/s**: each client then pays in its own session
//!    for `--seconds`: every payment is stored under an idempotency key,
//!    sealed under the session's working key, executed by the bank, its
//!    MACed result checked and stored before the 201 (state `executed`).
//!    Latency p50/p99; CPU of the daemon and the bank per transaction.
//!
//! Afterwards the bank's payee balance is compared with the count of
//! executed answers: each payment moved money exactly once.

use crate::http::Conn;
use crate::proc_stat;
use crate::verify::{percentile, spawn_daemon, BASE_CONFIG};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Relayed transactions/s target.
pub const TARGET_TX_PER_SEC: f64 = 5_000.0;

const FRONT_END_KEY: &str = "bench-front-end-key-0123";

/// Options.
#[derive(Debug, clap::Args)]
pub struct TxArgs {
    /// Seconds of the relayed-transactions phase.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of the sessions phase.
    #[arg(long, default_value_t = 5.0)]
    session_seconds: f64,
    /// Concurrent keep-alive front-end clients (one session each while paying).
    #[arg(long, default_value_t = 128)]
    connections: usize,
    /// The verigate binary (default: next to this one).
    #[arg(long)]
    verigate: Option<PathBuf>,
    /// The verigate-sim binary (default: next to this one).
    #[arg(long)]
    sim: Option<PathBuf>,
    /// Scratch directory (default: a new one under the system temp dir, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Daemon log filter (VERIGATE_LOG).
    #[arg(long, default_value = "warn")]
    log: String,
}

/// The bank simulator as a child process.
struct Bank {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Bank {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_bank(exe: &std::path::Path) -> Result<Bank, String> {
    let mut child = Command::new(exe)
        .args(["bank", "--listen", "127.0.0.1:0"])
        .args(["--account", "alice=1000000000000000", "--account", "shop=0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("piped")),
        &mut line,
    );
    let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    let addr = v["bank"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bank did not start (banner {line:?})"))?;
    Ok(Bank { child, addr })
}

/// A distinct subscriber per index.
fn subscriber(i: usize) -> (String, String) {
    (format!("+44740{:07}", i), format!("2341509{:08}", i))
}

async fn json_of(
    c: &mut Conn,
    method: &str,
    path: &str,
    bearer: &str,
    body: Option<&str>,
) -> Result<(u16, Value), String> {
    let a = c.request(method, path, bearer, body).await?;
    Ok((
        a.status,
        serde_json::from_slice(&a.body).unwrap_or(Value::Null),
    ))
}

/// The ceremony and the initial key through the admin API, then the
/// subscriber extract.
async fn prepare(
    admin: SocketAddr,
    token: &str,
    bank: SocketAddr,
    subscribers: usize,
) -> Result<(), String> {
    let mut b = Conn::new(bank);
    let mut a = Conn::new(admin);
    let (_, c) = json_of(&mut b, "POST", "/ceremony", "", Some("{}")).await?;
    for (i, slot) in ["A", "B"].iter().enumerate() {
        let body = json!({"slot": slot, "component": c["components"][i]["component"]}).to_string();
        let (st, v) = json_of(
            &mut a,
            "POST",
            "/admin/txrelay/keys/components",
            token,
            Some(&body),
        )
        .await?;
        if st != 200 {
            return Err(format!("component {slot}: {st} {v}"));
        }
    }
    let body = json!({"kcv": c["kcv"]}).to_string();
    let (st, v) = json_of(
        &mut a,
        "POST",
        "/admin/txrelay/keys/activate",
        token,
        Some(&body),
    )
    .await?;
    if st != 200 {
        return Err(format!("activate: {st} {v}"));
    }
    let (_, ik) = json_of(
        &mut b,
        "POST",
        "/initial-keys",
        "",
        Some(r#"{"derivation_id":"90123456"}"#),
    )
    .await?;
    let body =
        json!({"initial_key_id": ik["initial_key_id"], "wrapped": ik["wrapped"], "kcv": ik["kcv"]})
            .to_string();
    let (st, v) = json_of(
        &mut a,
        "POST",
        "/admin/txrelay/keys/initial",
        token,
        Some(&body),
    )
    .await?;
    if st != 200 {
        return Err(format!("initial key: {st} {v}"));
    }
    let mut extract = String::from("msisdn,imsi,status\n");
    for i in 0..subscribers {
        let (m, imsi) = subscriber(i);
        extract.push_str(&format!("{m},{imsi},active\n"));
    }
    let (st, v) = json_of(
        &mut a,
        "POST",
        "/admin/txrelay/subscribers/import",
        token,
        Some(&extract),
    )
    .await?;
    if st != 200 {
        return Err(format!("subscribers: {st} {v}"));
    }
    Ok(())
}

async fn open(c: &mut Conn, i: usize) -> Result<String, String> {
    let (m, imsi) = subscriber(i);
    let body = json!({"imsi": imsi, "msisdn": m, "bank": "bench-bank"}).to_string();
    let (st, v) = json_of(c, "POST", "/v1/tx/sessions", FRONT_END_KEY, Some(&body)).await?;
    if st == 201 && v["state"] == "registered" {
        Ok(v["id"].as_str().unwrap_or_default().to_string())
    } else {
        Err(format!("session: {st} {v}"))
    }
}

/// Runs the benchmark.
pub fn run(a: TxArgs) -> Result<(), String> {
    crate::block_on(run_async(a))
}

async fn run_async(a: TxArgs) -> Result<(), String> {
    let sim_exe = a
        .sim
        .clone()
        .unwrap_or_else(|| crate::sim::sibling("verigate-sim"));
    let exe = a
        .verigate
        .clone()
        .unwrap_or_else(|| crate::sim::sibling("verigate"));
    let bank = start_bank(&sim_exe)?;
    let (dir, remove_dir) = match &a.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("verigate-bench-tx-{}", std::process::id())),
            true,
        ),
    };
    let _ = std::fs::remove_dir_all(dir.join("var"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let config = format!(
        r#"# written by verigate-bench tx
{BASE_CONFIG}
[txrelay]
enabled = true
region = "GB"
[txrelay.bank]
name = "bench-bank"
url = "http://{bank}"
[[txrelay.front_ends]]
name = "bench"
api_key = "{FRONT_END_KEY}"
"#,
        bank = bank.addr
    );
    let daemon = spawn_daemon(&exe, dir.clone(), remove_dir, &config, &[], &a.log)?;
    let pid = daemon.child.id();
    let bank_pid = bank.child.id();
    let token = std::fs::read_to_string(dir.join("var/admin.token"))
        .map(|t| t.trim().to_string())
        .map_err(|e| format!("admin token: {e}"))?;
    let subscribers = a.connections * 64;
    prepare(daemon.admin, &token, bank.addr, subscribers).await?;
    println!(
        "daemon pid {pid} at {}, bank pid {bank_pid} at {} (SQLite in {})",
        daemon.api,
        bank.addr,
        dir.display()
    );

    // ---- phase 1: sessions/s
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let (cpu0, bcpu0) = (
        proc_stat::cpu_seconds(pid).unwrap_or(0.0),
        proc_stat::cpu_seconds(bank_pid).unwrap_or(0.0),
    );
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.connections {
        let (next, stop, errors) = (next.clone(), stop.clone(), errors.clone());
        let api = daemon.api;
        workers.push(tokio::spawn(async move {
            let mut c = Conn::new(api);
            let mut opened = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize % subscribers;
                match open(&mut c, i).await {
                    Ok(_) => opened += 1,
                    Err(e) => errors.lock().expect("lock").push(e),
                }
            }
            opened
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(a.session_seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sessions = 0;
    for w in workers {
        sessions += w.await.unwrap_or(0);
    }
    let s_secs = t0.elapsed().as_secs_f64();
    let s_cpu = proc_stat::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let s_bcpu = proc_stat::cpu_seconds(bank_pid).unwrap_or(0.0) - bcpu0;
    let sessions_per_sec = sessions as f64 / s_secs;
    println!(
        "sessions: {sessions} registered in {s_secs:.1} s = {sessions_per_sec:.0}/s \
         (daemon {:.0} µs CPU, bank {:.0} µs CPU per session)",
        s_cpu / sessions.max(1) as f64 * 1e6,
        s_bcpu / sessions.max(1) as f64 * 1e6
    );

    // ---- phase 2: relayed transactions/s, each client in its own session
    let mut mine = Vec::new();
    let mut c = Conn::new(daemon.api);
    for i in 0..a.connections {
        mine.push(open(&mut c, i).await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let executed = Arc::new(AtomicU64::new(0));
    let queued = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::<f64>::new()));
    let (cpu0, bcpu0) = (
        proc_stat::cpu_seconds(pid).unwrap_or(0.0),
        proc_stat::cpu_seconds(bank_pid).unwrap_or(0.0),
    );
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for (w, sid) in mine.into_iter().enumerate() {
        let (stop, executed, queued, errors, lat) = (
            stop.clone(),
            executed.clone(),
            queued.clone(),
            errors.clone(),
            lat.clone(),
        );
        let api = daemon.api;
        workers.push(tokio::spawn(async move {
            let mut c = Conn::new(api);
            let path = format!("/v1/tx/sessions/{sid}/transactions");
            let body = r#"{"from_account":"alice","to_account":"shop","amount_minor":1,"currency":"GBP","reference":"bench"}"#;
            let mut mine = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("bench-{w}-{n}");
                let t = Instant::now();
                let r = c
                    .request_with(
                        "POST",
                        &path,
                        FRONT_END_KEY,
                        Some(body),
                        &[("Idempotency-Key", &key)],
                    )
                    .await;
                match r {
                    Ok(r) if r.status == 201 && find(&r.body, b"\"state\":\"executed\"") => {
                        executed.fetch_add(1, Ordering::Relaxed);
                        mine.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    // Not answered within answer_wait: still relayed.
                    Ok(r) if r.status == 202 => {
                        queued.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => errors.lock().expect("lock").push(format!(
                        "{} {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    )),
                    Err(e) => errors.lock().expect("lock").push(e),
                }
            }
            lat.lock().expect("lock").extend(mine);
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(a.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = proc_stat::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let bcpu = proc_stat::cpu_seconds(bank_pid).unwrap_or(0.0) - bcpu0;
    let done = executed.load(Ordering::Relaxed);
    let tx_per_sec = done as f64 / secs;
    let mut lat = std::mem::take(&mut *lat.lock().expect("lock"));
    lat.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN),
    );
    // Each payment moved money once: the payee's balance is the count
    // (those answered 202 are relayed meanwhile).
    let late = queued.load(Ordering::Relaxed);
    if late > 0 {
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
    let mut b = Conn::new(bank.addr);
    let (_, shop) = json_of(&mut b, "GET", "/accounts/shop", "", None).await?;
    let balance = shop["balance_minor"].as_u64().unwrap_or(0);
    let errors = std::mem::take(&mut *errors.lock().expect("lock"));
    println!(
        "relayed: {done} executed in {secs:.1} s = {tx_per_sec:.0}/s (target ≥ {TARGET_TX_PER_SEC:.0}/s: {}), \
         latency p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.1} ms; \
         daemon {:.0} µs CPU, bank {:.0} µs CPU per transaction",
        if tx_per_sec >= TARGET_TX_PER_SEC { "met" } else { "NOT met" },
        cpu / done.max(1) as f64 * 1e6,
        bcpu / done.max(1) as f64 * 1e6
    );
    println!(
        "bank: payee balance {balance} = executed answers {done} + {late} answered 202: {}; {} refused or failed requests{}",
        if balance == done + late { "each once" } else { "MISMATCH" },
        errors.len(),
        errors
            .first()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    println!(
        "{}",
        json!({
            "bench": "tx",
            "connections": a.connections,
            "sessions_per_sec": sessions_per_sec,
            "tx_per_sec": tx_per_sec,
            "tx_p50_ms": p50,
            "tx_p99_ms": p99,
            "tx_max_ms": max,
            "daemon_cpu_us_per_tx": cpu / done.max(1) as f64 * 1e6,
            "bank_cpu_us_per_tx": bcpu / done.max(1) as f64 * 1e6,
            "executed": done,
            "answered_202": late,
            "payee_balance": balance,
            "errors": errors.len(),
        })
    );
    if balance != done + late {
        return Err(format!(
            "the bank moved {balance} but {done} executions (+{late} queued) were answered"
        ));
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

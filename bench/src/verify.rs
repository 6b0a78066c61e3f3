//! `verigate-bench verify`: the daemon end to end, as processes.
//!
//! Starts `verigate-sim smsc` and `verigate run` (durable SQLite in a
//! scratch directory, one SMSC pointing at the simulator), then:
//!
//! 1. **Throughput**: `--connections` keep-alive clients POST
//!    `/v1/verifications` for distinct numbers for `--seconds`. A
//!    verification is complete when its delivery receipt is stored
//!    (`verigate_dlrs_total` on `/metrics` counts stored receipts). Reports
//!    accepted starts/s, receipts stored/s per second of the run, and the
//!    end-to-end rate: accepted ÷ (first start → last receipt stored).
//! 2. **Check latency**: creates verifications, reads their codes from the
//!    simulator's handset inbox, then sends checks open-loop at
//!    `--check-rate` per second (first a wrong code for each, then the right
//!    one); latency runs from each check's scheduled time to its answer, so a
//!    stall is not hidden by the generator slowing down.
//! 3. **Memory**: the daemon's resident set, sampled every second.

use crate::http::Conn;
use crate::proc_stat;
use crate::sim::{self, Sim};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// End-to-end verifications/s target.
pub const TARGET_E2E_PER_SEC: f64 = 5_000.0;
/// Check rate at which latency is measured.
pub const TARGET_CHECK_RATE: f64 = 2_000.0;
/// p99 check latency target, milliseconds.
pub const TARGET_CHECK_P99_MS: f64 = 10.0;

/// The bench service's API key.
pub(crate) const API_KEY: &str = "bench-key-not-secret";

/// The `[[service]]` every bench drives.
pub(crate) const BENCH_SERVICE: &str = r#"[[service]]
code = "bench"
name = "Bench"
api_key = "bench-key-not-secret"
"#;

/// The `[[smsc]]` of a daemon bound to the simulator.
pub(crate) fn sim_smsc(sim: &Sim) -> String {
    format!(
        "[[smsc]]\nname = \"sim\"\nhost = \"{}\"\nport = {}\nsystem_id = \"{}\"\npassword = \"{}\"\nwindow = 256\n",
        sim.smpp.ip(),
        sim.smpp.port(),
        sim::SYSTEM_ID,
        sim::PASSWORD
    )
}

/// Options.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Seconds of the throughput phase.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Concurrent keep-alive HTTP clients in the throughput phase.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Checks per second in the latency phase.
    #[arg(long, default_value_t = TARGET_CHECK_RATE)]
    check_rate: f64,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 10.0)]
    check_seconds: f64,
    /// Override a daemon config value (section.key=value, repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The verigate binary (default: next to this one).
    #[arg(long)]
    verigate: Option<PathBuf>,
    /// The verigate-sim binary (default: next to this one).
    #[arg(long)]
    sim: Option<PathBuf>,
    /// Scratch directory for the database (default: a new one under the
    /// system temp dir, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Daemon log filter (VERIGATE_LOG).
    #[arg(long, default_value = "warn")]
    log: String,
}

/// `verigate run` as a child process.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) api: SocketAddr,
    /// The admin listener (`/metrics`, `/readyz`).
    pub(crate) admin: SocketAddr,
    pub(crate) dir: PathBuf,
    remove_dir: bool,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn start_daemon(a: &VerifyArgs, sim: &Sim) -> Result<Daemon, String> {
    let (dir, remove_dir) = match &a.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("verigate-bench-{}", std::process::id())),
            true,
        ),
    };
    let _ = std::fs::remove_dir_all(dir.join("var"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let config = format!(
        r#"# written by verigate-bench verify
{BASE_CONFIG}{smsc}{BENCH_SERVICE}"#,
        smsc = sim_smsc(sim),
    );
    let exe = a
        .verigate
        .clone()
        .unwrap_or_else(|| sim::sibling("verigate"));
    spawn_daemon(&exe, dir, remove_dir, &config, &a.set, &a.log)
}

/// The part of a bench daemon's config every bench shares: loopback
/// listeners on free ports, durable SQLite in `./var`, limits out of the way;
/// `lab = true` for the lab's published secrets.
pub(crate) const BASE_CONFIG: &str = r#"lab = true
[api]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[store]
kind = "sqlite"
path = "./var/verigate.db"
[secrets]
server_secret_file = "./var/server.secret"
[verify.limits]
per_number = "5/10m"
per_service = "100000000/1m"
per_prefix = "100000000/1m"
per_ip = "100000000/1m"
"#;

/// Writes `config` to `dir/bench.toml` and starts `exe run` on it in `dir`
/// (with `--set` overrides), returning once its banner names the API.
pub(crate) fn spawn_daemon(
    exe: &std::path::Path,
    dir: PathBuf,
    remove_dir: bool,
    config: &str,
    sets: &[String],
    log: &str,
) -> Result<Daemon, String> {
    let cfg_path = dir.join("bench.toml");
    std::fs::write(&cfg_path, config).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.current_dir(&dir)
        .env("VERIGATE_LOG", log)
        .arg("run")
        .arg("--config")
        .arg(&cfg_path);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let mut child = cmd
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
    let banner: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    let addr = |key: &str| -> Result<SocketAddr, String> {
        banner[key]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("daemon did not start (banner {line:?})"))
    };
    let (api, admin) = (addr("api")?, addr("admin")?);
    Ok(Daemon {
        child,
        api,
        admin,
        dir,
        remove_dir,
    })
}

/// Resident set and its peak (KiB) from /proc/<pid>/status.
pub(crate) fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Sum of a counter family on /metrics.
pub(crate) async fn metric_sum(conn: &mut Conn, name: &str) -> Result<f64, String> {
    let a = conn.request("GET", "/metrics", "", None).await?;
    let text = String::from_utf8_lossy(&a.body);
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Waits for `/readyz` on the daemon's admin listener.
pub(crate) async fn wait_ready(admin: SocketAddr) -> Result<(), String> {
    let mut c = Conn::new(admin);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(a) = c.request("GET", "/readyz", "", None).await {
            if a.status == 200 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err("daemon not ready (no SMSC bind) within 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A distinct valid UK mobile number per index (+44 740X XXXXXX).
fn number(i: u64) -> String {
    format!("+44740{:07}", i % 10_000_000)
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs the benchmark.
pub fn run(a: VerifyArgs) -> Result<(), String> {
    crate::block_on(run_async(a))
}

async fn run_async(a: VerifyArgs) -> Result<(), String> {
    let sim_path = a.sim.clone().unwrap_or_else(sim::default_path);
    let sim = Sim::start(&sim_path)?;
    let daemon = start_daemon(&a, &sim)?;
    wait_ready(daemon.admin).await?;
    let pid = daemon.child.id();
    println!(
        "daemon pid {pid} at {} (SQLite in {}), simulator pid {} at {}",
        daemon.api,
        daemon.dir.display(),
        sim.pid(),
        sim.smpp
    );

    // ---- phase 1: throughput
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let mut metrics = Conn::new(daemon.admin);
    let dlrs_before = metric_sum(&mut metrics, "verigate_dlrs_total").await?;
    let cpu0 = proc_stat::cpu_seconds(pid).unwrap_or(0.0);
    let sim_cpu0 = proc_stat::cpu_seconds(sim.pid()).unwrap_or(0.0);
    let self_cpu0 = proc_stat::self_cpu_seconds().unwrap_or(0.0);
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.connections {
        let (next, stop, accepted, refused, latencies) = (
            next.clone(),
            stop.clone(),
            accepted.clone(),
            refused.clone(),
            latencies.clone(),
        );
        let api = daemon.api;
        workers.push(tokio::spawn(async move {
            let mut c = Conn::new(api);
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let body = format!(r#"{{"to":"{}","channel":"sms"}}"#, number(n));
                let t = Instant::now();
                match c
                    .request("POST", "/v1/verifications", API_KEY, Some(&body))
                    .await
                {
                    Ok(r) if r.status == 201 => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    Ok(r) => refused.lock().expect("lock").push(format!(
                        "{} {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    )),
                    Err(e) => refused.lock().expect("lock").push(e),
                }
            }
            latencies.lock().expect("lock").extend(lat);
        }));
    }
    let mut per_second = Vec::new();
    let mut rss_samples = Vec::new();
    let mut last = (0u64, dlrs_before);
    let run_for = Duration::from_secs_f64(a.seconds);
    println!(
        "\nthroughput: {} connections for {:.0} s",
        a.connections, a.seconds
    );
    println!(
        "{:>4} {:>10} {:>14} {:>10}",
        "s", "starts/s", "receipts/s", "RSS MiB"
    );
    let mut tick = t0;
    while t0.elapsed() < run_for {
        tick += Duration::from_secs(1);
        tokio::time::sleep_until(tick.into()).await;
        let acc = accepted.load(Ordering::Relaxed);
        let dl = metric_sum(&mut metrics, "verigate_dlrs_total").await?;
        let rss = rss_kib(pid).map(|r| r.0).unwrap_or(0);
        rss_samples.push(rss);
        let row = (acc - last.0, dl - last.1);
        println!(
            "{:>4} {:>10} {:>14.0} {:>10.1}",
            per_second.len() + 1,
            row.0,
            row.1,
            rss as f64 / 1024.0
        );
        per_second.push(row);
        last = (acc, dl);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let starts_window = t0.elapsed().as_secs_f64();
    let total = accepted.load(Ordering::Relaxed);
    // Wait for every accepted start's receipt to be stored.
    let drain_deadline = Instant::now() + Duration::from_secs(120);
    let mut stored;
    loop {
        stored = (metric_sum(&mut metrics, "verigate_dlrs_total").await? - dlrs_before) as u64;
        if stored >= total || Instant::now() > drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e2e_secs = t0.elapsed().as_secs_f64();
    let cpu = proc_stat::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let sim_cpu = proc_stat::cpu_seconds(sim.pid()).unwrap_or(0.0) - sim_cpu0;
    let self_cpu = proc_stat::self_cpu_seconds().unwrap_or(0.0) - self_cpu0;
    let refused = std::mem::take(&mut *refused.lock().expect("lock"));
    let mut start_lat = std::mem::take(&mut *latencies.lock().expect("lock"));
    start_lat.sort_by(f64::total_cmp);
    let starts_per_sec = total as f64 / starts_window;
    let e2e_per_sec = stored as f64 / e2e_secs;
    // Sustained: receipts stored per second over the second half of the run.
    let half = &per_second[per_second.len() / 2..];
    let sustained = half.iter().map(|r| r.1).sum::<f64>() / half.len().max(1) as f64;
    // Accepted by the last sample minus receipts stored by then (the starts
    // still in flight when the run ended are not backlog).
    let backlog = last.0.saturating_sub((last.1 - dlrs_before) as u64);
    let mut steady: Vec<u64> = rss_samples[rss_samples.len() / 2..].to_vec();
    steady.sort_unstable();
    let steady_rss = steady.get(steady.len() / 2).copied().unwrap_or(0);
    println!(
        "\naccepted {total} starts in {starts_window:.2} s = {starts_per_sec:.0}/s (refused {}); all receipts stored after {e2e_secs:.2} s",
        refused.len()
    );
    if let Some(r) = refused.first() {
        println!("  first refusal: {r}");
    }
    if stored < total {
        println!("  only {stored} of {total} receipts stored within the 120 s drain");
    }
    println!(
        "end to end: {e2e_per_sec:.0} verifications/s (start → stored → submit_sm → receipt stored); \
         receipts stored/s in the second half of the run: {sustained:.0}; backlog at the end of the run: {backlog}"
    );
    println!(
        "start latency ms: p50 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&start_lat, 50.0),
        percentile(&start_lat, 99.0),
        percentile(&start_lat, 100.0)
    );
    println!(
        "CPU µs per verification: daemon {:.0}, simulator {:.0}, load generator {:.0}",
        cpu / total.max(1) as f64 * 1e6,
        sim_cpu / total.max(1) as f64 * 1e6,
        self_cpu / total.max(1) as f64 * 1e6
    );

    // ---- phase 2: check latency
    let checks = (a.check_rate * a.check_seconds).round() as usize;
    let k = checks.div_ceil(2);
    println!(
        "\ncheck latency: creating {k} verifications, then {checks} checks at {:.0}/s",
        a.check_rate
    );
    let base = next.load(Ordering::Relaxed) + 1;
    let made: Arc<Mutex<Vec<(u64, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let idx = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..a.connections.min(32) {
        let (made, idx) = (made.clone(), idx.clone());
        let api = daemon.api;
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::new(api);
            loop {
                let i = idx.fetch_add(1, Ordering::Relaxed);
                if i >= k as u64 {
                    return Ok::<(), String>(());
                }
                let body = format!(r#"{{"to":"{}"}}"#, number(base + i));
                let r = c
                    .request("POST", "/v1/verifications", API_KEY, Some(&body))
                    .await?;
                let v: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
                let id = v["id"]
                    .as_str()
                    .ok_or_else(|| format!("start refused: {} {v}", r.status))?;
                made.lock().expect("lock").push((base + i, id.to_string()));
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let made = std::mem::take(&mut *made.lock().expect("lock"));
    // Codes as the handsets received them.
    let mut control = Conn::new(sim.control);
    let mut targets = Vec::with_capacity(made.len());
    for (n, id) in &made {
        let path = format!("/inbox/{}", number(*n).trim_start_matches('+'));
        let deadline = Instant::now() + Duration::from_secs(30);
        let code = loop {
            let r = control.request("GET", &path, "", None).await?;
            let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            if let Some(t) = v["messages"][0]["text"].as_str() {
                break t
                    .split(|c: char| !c.is_ascii_digit())
                    .find(|w| w.len() >= 4)
                    .unwrap_or_default()
                    .to_string();
            }
            if Instant::now() > deadline {
                return Err(format!("no SMS for {} within 30 s", number(*n)));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let wrong: String = code
            .chars()
            .map(|c| char::from_digit((c.to_digit(10).unwrap_or(0) + 1) % 10, 10).unwrap_or('0'))
            .collect();
        targets.push((id.clone(), wrong, code));
    }
    // Open loop: check i is due at t0 + i / rate; the first half sends a
    // wrong code to each verification, the second half the right one.
    let jobs: Vec<(String, String, bool)> = targets
        .iter()
        .map(|(id, wrong, _)| (id.clone(), wrong.clone(), false))
        .chain(
            targets
                .iter()
                .map(|(id, _, code)| (id.clone(), code.clone(), true)),
        )
        .take(checks)
        .collect();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, String, String, bool)>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let results = Arc::new(Mutex::new(Vec::<(f64, bool)>::new()));
    let mut checkers = Vec::new();
    for _ in 0..64 {
        let (rx, results) = (rx.clone(), results.clone());
        let api = daemon.api;
        checkers.push(tokio::spawn(async move {
            let mut c = Conn::new(api);
            loop {
                let job = rx.lock().await.recv().await;
                let Some((due, id, code, right)) = job else {
                    return;
                };
                let body = format!(r#"{{"code":"{code}"}}"#);
                let r = c
                    .request(
                        "POST",
                        &format!("/v1/verifications/{id}/check"),
                        API_KEY,
                        Some(&body),
                    )
                    .await;
                let ms = due.elapsed().as_secs_f64() * 1e3;
                let ok = match r {
                    Ok(a) if a.status == 200 => {
                        let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                        v["valid"] == right
                    }
                    _ => false,
                };
                results.lock().expect("lock").push((ms, ok));
            }
        }));
    }
    let cpu1 = proc_stat::cpu_seconds(pid).unwrap_or(0.0);
    let c0 = Instant::now() + Duration::from_millis(50);
    let interval = 1.0 / a.check_rate;
    for (i, (id, code, right)) in jobs.into_iter().enumerate() {
        let due = c0 + Duration::from_secs_f64(i as f64 * interval);
        tokio::time::sleep_until(due.into()).await;
        let _ = tx.send((due, id, code, right));
    }
    drop(tx);
    for c in checkers {
        let _ = c.await;
    }
    let check_secs = c0.elapsed().as_secs_f64();
    let check_cpu = proc_stat::cpu_seconds(pid).unwrap_or(0.0) - cpu1;
    let results = std::mem::take(&mut *results.lock().expect("lock"));
    let wrong_answers = results.iter().filter(|r| !r.1).count();
    let mut lat: Vec<f64> = results.iter().map(|r| r.0).collect();
    lat.sort_by(f64::total_cmp);
    let (p50, p90, p99, max) = (
        percentile(&lat, 50.0),
        percentile(&lat, 90.0),
        percentile(&lat, 99.0),
        percentile(&lat, 100.0),
    );
    println!(
        "{} checks in {check_secs:.2} s ({:.0}/s achieved), {wrong_answers} unexpected answers",
        lat.len(),
        lat.len() as f64 / check_secs
    );
    println!("check latency ms: p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}");
    println!(
        "daemon CPU during checks: {:.0}% of one core",
        check_cpu / check_secs * 100.0
    );
    let (rss_end, hwm) = rss_kib(pid).unwrap_or((0, 0));
    println!(
        "\nmemory: steady state (median RSS, second half of the throughput run) {:.1} MiB; after the checks {:.1} MiB; peak {:.1} MiB",
        steady_rss as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "targets: end to end ≥ {TARGET_E2E_PER_SEC:.0}/s → {}; check p99 < {TARGET_CHECK_P99_MS} ms at {TARGET_CHECK_RATE:.0}/s → {}",
        if e2e_per_sec >= TARGET_E2E_PER_SEC { "met" } else { "NOT met" },
        if p99 < TARGET_CHECK_P99_MS && a.check_rate >= TARGET_CHECK_RATE {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "{}",
        json!({
            "bench": "verify",
            "connections": a.connections,
            "seconds": a.seconds,
            "accepted": total,
            "refused": refused.len(),
            "starts_per_sec": starts_per_sec,
            "e2e_per_sec": e2e_per_sec,
            "receipts_per_sec_second_half": sustained,
            "backlog_at_end": backlog,
            "start_latency_ms": {"p50": percentile(&start_lat, 50.0), "p99": percentile(&start_lat, 99.0)},
            "cpu_us_per_verification": {"daemon": cpu / total.max(1) as f64 * 1e6, "sim": sim_cpu / total.max(1) as f64 * 1e6, "bench": self_cpu / total.max(1) as f64 * 1e6},
            "check_rate": a.check_rate,
            "checks": lat.len(),
            "check_unexpected": wrong_answers,
            "check_latency_ms": {"p50": p50, "p90": p90, "p99": p99, "max": max},
            "rss_mib": {"steady": steady_rss as f64 / 1024.0, "end": rss_end as f64 / 1024.0, "peak": hwm as f64 / 1024.0},
        })
    );
    drop(daemon);
    drop(sim);
    Ok(())
}

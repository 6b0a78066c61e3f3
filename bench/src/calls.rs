//! `verigate-bench calls`: the daemon's call engine end to end against a
//! SIPp UAS, as processes.
//!
//! Each phase starts SIPp (Debian `sip-tester`) with a scenario from
//! `tests/interop/sipp/` and `verigate run` (durable SQLite in a scratch
//! directory, one SIP trunk pointing at SIPp, no SMSC), then drives the
//! public API:
//!
//! 1. **Flash calls/s**: flash-call verifications started open-loop at
//!    `--flash-rate` per second for `--flash-seconds`; SIPp
//!    (`flash_cancel.xml`) checks every caller number is in the pool, rings,
//!    answers our CANCEL with 487 and waits for our ACK. Reports calls that
//!    rang per second (the daemon's `verigate_calls_total`), calls in any
//!    other final state, and SIPp's own successful/failed call counts.
//! 2. **Concurrent voice calls**: `--voice-calls` voice verifications
//!    started at `--voice-rate` per second; SIPp
//!    (`voice_answer_quiet.xml`) answers each with PCMA and waits for our
//!    BYE. Calls are kept up by `voice.dtmf_wait = 30s` after the reading.
//!    Once `verigate_sip_dialogs` shows them all up, the RTP send-lateness
//!    histogram (`verigate_rtp_send_lateness_seconds`: due time to
//!    `sendto` returning, per packet) and the daemon's resident set are
//!    read, again after `--hold` seconds; the difference is what was sent
//!    with every call up. Memory per call = (resident set with all calls
//!    up − before the phase) ÷ calls.

use crate::http::Conn;
use crate::proc_stat;
use crate::verify::{rss_kib, spawn_daemon, Daemon, API_KEY, BASE_CONFIG, BENCH_SERVICE};
use serde_json::json;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Flash calls per second the issue asks for.
pub const TARGET_FLASH_PER_SEC: f64 = 500.0;
/// Concurrent voice calls the issue asks for.
pub const TARGET_VOICE_CALLS: usize = 1_000;
/// p99 RTP send lateness target, milliseconds.
pub const TARGET_P99_MS: f64 = 2.0;

/// Options.
#[derive(Debug, clap::Args)]
pub struct CallsArgs {
    /// Flash-call verifications started per second.
    #[arg(long, default_value_t = TARGET_FLASH_PER_SEC)]
    flash_rate: f64,
    /// Seconds of the flash-call phase (0: skip it).
    #[arg(long, default_value_t = 20.0)]
    flash_seconds: f64,
    /// Voice calls up at once (0: skip the voice phase).
    #[arg(long, default_value_t = TARGET_VOICE_CALLS)]
    voice_calls: usize,
    /// Voice verifications started per second while ramping up.
    #[arg(long, default_value_t = 200.0)]
    voice_rate: f64,
    /// Seconds measured with every voice call up.
    #[arg(long, default_value_t = 10.0)]
    hold: f64,
    /// The daemon's media worker threads (`sip.media_workers`).
    #[arg(long, default_value_t = 1)]
    media_workers: usize,
    /// Keep-alive HTTP clients starting verifications.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// SIPp scenario folder (default: tests/interop/sipp of this checkout).
    #[arg(long)]
    scenarios: Option<PathBuf>,
    /// Override a daemon config value (section.key=value, repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The verigate binary (default: next to this one).
    #[arg(long)]
    verigate: Option<PathBuf>,
    /// Daemon log filter (VERIGATE_LOG).
    #[arg(long, default_value = "warn")]
    log: String,
}

/// A UDP port free now on loopback (for media, also the one two above,
/// which SIPp takes for video).
fn free_udp_port(pair: bool) -> u16 {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
        let p = s.local_addr().expect("local addr").port();
        if !pair || (p < 65000 && UdpSocket::bind(("127.0.0.1", p + 2)).is_ok()) {
            return p;
        }
    }
}

/// SIPp as a UAS with one scenario, killed on drop; statistics every
/// second in a CSV file.
struct Sipp {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Sipp {
    fn start(scenario: &Path, dir: &Path) -> Result<Sipp, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let port = free_udp_port(false);
        let media = free_udp_port(true);
        let child = Command::new("sipp")
            .current_dir(dir)
            .arg("-sf")
            .arg(scenario)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &media.to_string()])
            .args(["-trace_stat", "-stf", "stats.csv", "-fd", "1"])
            .args(["-trace_err"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start sipp (apt-get install sip-tester): {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            if Instant::now() > deadline {
                return Err(format!("sipp did not bind port {port}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Sipp {
            child,
            port,
            dir: dir.to_path_buf(),
        })
    }

    /// The first lines of SIPp's error log (why it failed calls).
    fn errors(&self, lines: usize) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().ends_with("_errors.log") {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                for l in text.lines().take(lines) {
                    out += l;
                    out.push('\n');
                }
            }
        }
        out
    }

    /// SIPp's cumulative (successful, failed) calls from its last statistics line.
    fn calls(&self) -> Option<(u64, u64)> {
        let text = std::fs::read_to_string(self.dir.join("stats.csv")).ok()?;
        let mut lines = text.lines();
        let head: Vec<&str> = lines.next()?.split(';').collect();
        let last: Vec<&str> = text.lines().last()?.split(';').collect();
        let col = |name: &str| -> Option<u64> {
            let i = head.iter().position(|h| *h == name)?;
            last.get(i)?.trim().parse().ok()
        };
        Some((col("SuccessfulCall(C)")?, col("FailedCall(C)")?))
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One phase's daemon with its trunk pointed at `sipp`.
fn start_daemon(a: &CallsArgs, dir: &Path, sipp: &Sipp) -> Result<Daemon, String> {
    let _ = std::fs::remove_dir_all(dir.join("var"));
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let config = format!(
        r#"# written by verigate-bench calls
{BASE_CONFIG}[sip]
listen = "127.0.0.1:0"
media_workers = {workers}
[[sip_trunk]]
name = "sipp"
host = "127.0.0.1"
port = {port}
caller_id = "+442071838750"
caller_id_style = "pai"
calls_per_second = 10000
max_concurrent = 20000
options_interval = "0s"
[voice]
locales = ["en"]
dtmf_wait = "30s"
max_duration = "5m"
[flash_call]
ring_hold = "0s"
report_window = "10m"
[[flash_call.pool]]
countries = ["*"]
ranges = ["+447400900000-+447400900999"]
{BENCH_SERVICE}"#,
        workers = a.media_workers,
        port = sipp.port,
    );
    let exe = a
        .verigate
        .clone()
        .unwrap_or_else(|| crate::sim::sibling("verigate"));
    spawn_daemon(&exe, dir.to_path_buf(), false, &config, &a.set, &a.log)
}

/// `/metrics` as text.
async fn scrape(conn: &mut Conn) -> Result<String, String> {
    let a = conn.request("GET", "/metrics", "", None).await?;
    Ok(String::from_utf8_lossy(&a.body).into_owned())
}

/// Sum of the samples whose line starts with `prefix` (a name, or a name
/// and the first labels).
fn sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The RTP send-lateness histogram: (upper bound in ms, cumulative count).
fn lateness(text: &str) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("verigate_rtp_send_lateness_seconds_bucket{le=\"")?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse::<f64>().ok()? * 1e3
            };
            Some((le, count.parse().ok()?))
        })
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// Starts `n` verifications on `channel` open-loop at `rate` per second,
/// numbered from `first`; returns (accepted, refusals).
async fn start_open_loop(
    api: SocketAddr,
    connections: usize,
    channel: &'static str,
    first: u64,
    n: u64,
    rate: f64,
) -> (u64, Vec<String>) {
    let next = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (next, accepted, refused) = (next.clone(), accepted.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::new(api);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                // Open loop: each start has its time, whoever sends it.
                let due = t0 + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let body = json!({"to": format!("+44740{:07}", first + i), "channel": channel})
                    .to_string();
                match c
                    .request("POST", "/v1/verifications", API_KEY, Some(&body))
                    .await
                {
                    Ok(r) if r.status == 201 => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => refused.lock().expect("lock").push(format!(
                        "{} {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    )),
                    Err(e) => refused.lock().expect("lock").push(e),
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let refused = std::mem::take(&mut *refused.lock().expect("lock"));
    (accepted.load(Ordering::Relaxed), refused)
}

fn scenarios(a: &CallsArgs) -> PathBuf {
    a.scenarios
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/sipp"))
}

/// Runs the benchmark.
pub fn run(a: CallsArgs) -> Result<(), String> {
    crate::block_on(run_async(a))
}

async fn run_async(a: CallsArgs) -> Result<(), String> {
    let root = std::env::temp_dir().join(format!("verigate-bench-calls-{}", std::process::id()));
    let mut summary = json!({"bench": "calls"});
    if a.flash_seconds > 0.0 {
        summary["flash"] = flash_phase(&a, &root.join("flash")).await?;
    }
    if a.voice_calls > 0 {
        summary["voice"] = voice_phase(&a, &root.join("voice")).await?;
    }
    let _ = std::fs::remove_dir_all(&root);
    println!("{summary}");
    Ok(())
}

async fn flash_phase(a: &CallsArgs, dir: &Path) -> Result<serde_json::Value, String> {
    let sipp = Sipp::start(&scenarios(a).join("flash_cancel.xml"), dir)?;
    let daemon = start_daemon(a, dir, &sipp)?;
    let pid = daemon.child.id();
    let n = (a.flash_rate * a.flash_seconds).round() as u64;
    println!(
        "flash calls: {n} verifications at {:.0}/s against SIPp (flash_cancel.xml) on port {}",
        a.flash_rate, sipp.port
    );
    let mut m = Conn::new(daemon.admin);
    let cpu0 = proc_stat::cpu_seconds(pid).unwrap_or(0.0);
    let sipp_cpu0 = proc_stat::cpu_seconds(sipp.child.id()).unwrap_or(0.0);
    let t0 = Instant::now();
    let starter = tokio::spawn(start_open_loop(
        daemon.api,
        a.connections,
        "flash_call",
        1_000_000,
        n,
        a.flash_rate,
    ));
    println!("{:>4} {:>10} {:>10}", "s", "rang/s", "other/s");
    let mut per_second = Vec::new();
    let mut last = (0.0, 0.0);
    let mut tick = t0;
    // Until every accepted start has an outcome (or 60 s after the last).
    let (accepted, refused) = loop {
        tick += Duration::from_secs(1);
        tokio::time::sleep_until(tick.into()).await;
        let text = scrape(&mut m).await?;
        let rang = sum(
            &text,
            "verigate_calls_total{kind=\"flash_call\",state=\"rang\"}",
        );
        let all = sum(&text, "verigate_calls_total{kind=\"flash_call\",");
        let row = (rang - last.0, (all - rang) - last.1);
        println!(
            "{:>4} {:>10.0} {:>10.0}",
            per_second.len() + 1,
            row.0,
            row.1
        );
        per_second.push(row);
        last = (rang, all - rang);
        if starter.is_finished() {
            break starter.await.map_err(|e| e.to_string())?;
        }
    };
    let drain = Instant::now() + Duration::from_secs(60);
    while last.0 + last.1 < accepted as f64 && Instant::now() < drain {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let text = scrape(&mut m).await?;
        let rang = sum(
            &text,
            "verigate_calls_total{kind=\"flash_call\",state=\"rang\"}",
        );
        let all = sum(&text, "verigate_calls_total{kind=\"flash_call\",");
        last = (rang, all - rang);
    }
    let secs = t0.elapsed().as_secs_f64();
    // SIPp ends each call half a second after our ACK; its statistics
    // come once a second.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let cpu = proc_stat::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let sipp_cpu = proc_stat::cpu_seconds(sipp.child.id()).unwrap_or(0.0) - sipp_cpu0;
    let (sipp_ok, sipp_failed) = sipp.calls().unwrap_or((0, u64::MAX));
    // Sustained: calls that rang per second over the run's second half
    // (while starts still arrived at the full rate).
    let run_rows = (a.flash_seconds.ceil() as usize).min(per_second.len());
    let half = &per_second[run_rows / 2..run_rows];
    let sustained = half.iter().map(|r| r.0).sum::<f64>() / half.len().max(1) as f64;
    println!(
        "\naccepted {accepted} of {n} starts (refused {}); {:.0} rang, {:.0} in another state, after {secs:.1} s",
        refused.len(),
        last.0,
        last.1
    );
    if let Some(r) = refused.first() {
        println!("  first refusal: {r}");
    }
    println!(
        "sustained: {sustained:.0} flash calls/s (INVITE → 180 → CANCEL → 487 → ACK); \
         SIPp: {sipp_ok} successful, {sipp_failed} failed calls"
    );
    if sipp_failed > 0 {
        println!("SIPp's error log begins:\n{}", sipp.errors(40));
    }
    println!(
        "CPU per call: daemon {:.0} µs, SIPp {:.0} µs",
        cpu / accepted.max(1) as f64 * 1e6,
        sipp_cpu / accepted.max(1) as f64 * 1e6
    );
    // Open loop: met when the offered rate is at least the target and the
    // daemon kept up with it (1% for the per-second sampling edges).
    let met = a.flash_rate >= TARGET_FLASH_PER_SEC
        && sustained >= 0.99 * a.flash_rate
        && refused.is_empty()
        && last.1 == 0.0
        && last.0 as u64 == accepted
        && sipp_failed == 0
        && sipp_ok == accepted;
    println!(
        "target ≥ {TARGET_FLASH_PER_SEC:.0}/s sustained with zero failed calls: {}",
        if met { "met" } else { "NOT met" }
    );
    drop(daemon);
    Ok(json!({
        "rate": a.flash_rate, "started": accepted, "refused": refused.len(),
        "rang": last.0, "other_states": last.1, "sustained_per_sec": sustained,
        "sipp_successful": sipp_ok, "sipp_failed": sipp_failed,
        "daemon_cpu_us_per_call": cpu / accepted.max(1) as f64 * 1e6, "met": met,
    }))
}

async fn voice_phase(a: &CallsArgs, dir: &Path) -> Result<serde_json::Value, String> {
    let sipp = Sipp::start(&scenarios(a).join("voice_answer_quiet.xml"), dir)?;
    let daemon = start_daemon(a, dir, &sipp)?;
    let pid = daemon.child.id();
    let n = a.voice_calls as u64;
    let mut m = Conn::new(daemon.admin);
    // Let the daemon settle before the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = rss_kib(pid).map(|r| r.0).unwrap_or(0);
    println!(
        "\nvoice calls: {n} verifications at {:.0}/s against SIPp (voice_answer_quiet.xml), {} media worker(s); RSS before {:.1} MiB",
        a.voice_rate,
        a.media_workers,
        rss0 as f64 / 1024.0
    );
    let starter = tokio::spawn(start_open_loop(
        daemon.api,
        a.connections,
        "voice",
        2_000_000,
        n,
        a.voice_rate,
    ));
    let dialogs = |t: &str| sum(t, "verigate_sip_dialogs ");
    let up_by = Instant::now() + Duration::from_secs_f64(n as f64 / a.voice_rate + 30.0);
    let mut text;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        text = scrape(&mut m).await?;
        if dialogs(&text) >= n as f64 {
            break;
        }
        if Instant::now() > up_by {
            return Err(format!(
                "only {} of {n} calls up after the ramp",
                dialogs(&text)
            ));
        }
    }
    let (accepted, refused) = starter.await.map_err(|e| e.to_string())?;
    let before = lateness(&text);
    let cpu0 = proc_stat::cpu_seconds(pid).unwrap_or(0.0);
    let t0 = Instant::now();
    let mut min_up = f64::MAX;
    let mut rss_peak = 0;
    while t0.elapsed() < Duration::from_secs_f64(a.hold) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        text = scrape(&mut m).await?;
        min_up = min_up.min(dialogs(&text));
        rss_peak = rss_peak.max(rss_kib(pid).map(|r| r.0).unwrap_or(0));
    }
    let held = t0.elapsed().as_secs_f64();
    let cpu = proc_stat::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let after = lateness(&text);
    let skipped = sum(&text, "verigate_rtp_packets_skipped_total ");
    // Packets sent while every call was up, per bucket.
    let window: Vec<(f64, f64)> = after
        .iter()
        .zip(&before)
        .map(|(x, y)| (x.0, x.1 - y.1))
        .collect();
    let total = window.last().map_or(0.0, |b| b.1);
    let share_below = |ms: f64| {
        window
            .iter()
            .find(|b| (b.0 - ms).abs() < 1e-9)
            .map_or(f64::NAN, |b| b.1 / total.max(1.0))
    };
    let quantile = |q: f64| {
        window
            .iter()
            .find(|b| b.1 >= q * total)
            .map_or(f64::NAN, |b| b.0)
    };
    let p50 = quantile(0.5);
    let p99 = quantile(0.99);
    let p999 = quantile(0.999);
    let per_call_kib = (rss_peak.saturating_sub(rss0)) as f64 / n as f64;
    println!(
        "all {n} calls up (min {min_up:.0} dialogs over {held:.1} s): {total:.0} RTP packets sent = {:.0}/s ({:.0} expected at 50/s per call); skipped since start: {skipped:.0}",
        total / held,
        n as f64 * 50.0
    );
    println!(
        "send lateness (bucket bounds): p50 ≤ {p50} ms, p99 ≤ {p99} ms, p99.9 ≤ {p999} ms; \
         sent within 1 ms {:.3}%, within 2 ms {:.3}%",
        share_below(1.0) * 100.0,
        share_below(2.0) * 100.0
    );
    println!(
        "memory: RSS {:.1} MiB with all calls up (before {:.1} MiB) = {per_call_kib:.1} KiB per call; daemon CPU {:.0}% of a core",
        rss_peak as f64 / 1024.0,
        rss0 as f64 / 1024.0,
        cpu / held * 100.0
    );
    let met = min_up >= n as f64
        && share_below(TARGET_P99_MS) >= 0.99
        && skipped == 0.0
        && refused.is_empty();
    println!(
        "target ≥ {TARGET_VOICE_CALLS} calls at once with p99 send lateness < {TARGET_P99_MS} ms: {}",
        if met { "met" } else { "NOT met" }
    );
    // Every call then reads to the end and is hung up by us.
    let end_by = Instant::now() + Duration::from_secs(120);
    let mut answered;
    loop {
        text = scrape(&mut m).await?;
        answered = sum(
            &text,
            "verigate_calls_total{kind=\"voice\",state=\"answered\"}",
        );
        let all = sum(&text, "verigate_calls_total{kind=\"voice\",");
        if all >= accepted as f64 || Instant::now() > end_by {
            println!(
                "calls ended: {answered:.0} answered, {:.0} in another state",
                all - answered
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // SIPp ends each call half a second after our BYE; its statistics
    // come once a second.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (sipp_ok, sipp_failed) = sipp.calls().unwrap_or((0, u64::MAX));
    println!("SIPp: {sipp_ok} successful, {sipp_failed} failed calls");
    drop(daemon);
    Ok(json!({
        "calls": n, "started": accepted, "refused": refused.len(), "min_up": min_up,
        "packets": total, "p50_ms_le": p50, "p99_ms_le": p99, "p999_ms_le": p999,
        "within_2ms": share_below(2.0), "skipped": skipped,
        "rss_kib_before": rss0, "rss_kib_up": rss_peak, "kib_per_call": per_call_kib,
        "answered": answered, "sipp_failed": sipp_failed, "met": met,
    }))
}

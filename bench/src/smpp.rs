//! `verigate-bench smpp`: submit_sm throughput against `verigate-sim smsc`.
//!
//! For every window the same workload runs through three ESMEs, each on a
//! fresh transceiver bind:
//!
//! * `ours`: `verigate::smpp::SmscClient` with `session.window = w`; a
//!   producer keeps up to `--outstanding` submit_sm receivers in flight (the
//!   session itself holds at most `w` on the wire and queues the rest).
//! * `rusmppc`: rusmppc 0.4.0, which has no window setting: the window is
//!   emulated by keeping exactly `w` `submit_sm` futures in flight.
//! * `raw`: a minimal pipelined load generator (pre-encoded submit_sm, only
//!   response headers parsed) that probes the simulator's own ceiling.
//!
//! The simulator's PDU rate is read from its control API: `submits` before
//! and after each measured phase; every submit is one PDU in and one
//! submit_sm_resp out.

use crate::msg;
use crate::proc_stat;
use crate::sim::{self, Sim};
use bytes::{Bytes, BytesMut};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use verigate::smpp::{SmscClient, SmscConfig};
use verigate_codecs::smpp::frame::peek_header;
use verigate_codecs::smpp::{Address, Bind, Body, FrameDecoder, Pdu, SubmitSm};

/// Our submit_sm/s target at window ≥ 100.
pub const TARGET_OURS_PER_SEC: f64 = 50_000.0;
/// Window from which the ESME target applies.
pub const TARGET_MIN_WINDOW: usize = 100;
/// Simulator PDUs/s (in + out) target.
pub const TARGET_SIM_PDUS_PER_SEC: f64 = 100_000.0;

const SUBMIT_SM_RESP: u32 = 0x8000_0004;
const BIND_TRANSCEIVER_RESP: u32 = 0x8000_0009;

/// Which ESME implementation a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Impl {
    /// verigate's SmscClient.
    Ours,
    /// rusmppc 0.4.0 with an enquire_link_interval of
    /// --rusmppc-enquire-link-ms, which bounds its lost-wakeup stalls.
    RusmppcEl,
    /// rusmppc 0.4.0 with its defaults (30 s enquire_link_interval).
    Rusmppc,
    /// Minimal pipelined load generator (simulator ceiling).
    Raw,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Ours => "ours",
            Impl::RusmppcEl => "rusmppc-el",
            Impl::Rusmppc => "rusmppc",
            Impl::Raw => "raw",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct SmppArgs {
    /// verigate-sim executable (default: next to this executable).
    #[arg(long)]
    sim: Option<PathBuf>,
    /// submit_sm per measured run (default: calibrated from the warm-up so
    /// that each run lasts about --target-seconds).
    #[arg(long)]
    messages: Option<u64>,
    /// Windows to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,256")]
    windows: Vec<usize>,
    /// ESMEs to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ours,rusmppc-el,rusmppc,raw"
    )]
    clients: Vec<Impl>,
    /// enquire_link_interval of the `rusmppc-el` variant, milliseconds.
    #[arg(long, default_value_t = 1)]
    rusmppc_enquire_link_ms: u64,
    /// Longest a warm-up or measured phase may take; an ESME that stalls is
    /// cut off (its figure then covers the time until the cut-off).
    #[arg(long, default_value_t = 35.0)]
    max_seconds: f64,
    /// Intended length of a measured run when --messages is not given.
    #[arg(long, default_value_t = 3.0)]
    target_seconds: f64,
    /// submit_sm sent before each measured run (not counted).
    #[arg(long, default_value_t = 5000)]
    warmup: u64,
    /// Ours: submit_sm receivers kept outstanding by the producer
    /// (default: max(2·window, 1024)); the session sends at most `window`.
    #[arg(long)]
    outstanding: Option<usize>,
    /// Tokio worker threads of the benchmark process (default: CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Runs per (client, window); the median by throughput is reported.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
}

/// Completions further apart than this count as a stall.
const STALL: Duration = Duration::from_millis(100);

/// Figures of one measured run.
#[derive(Debug, Clone)]
struct RunResult {
    client: Impl,
    window: usize,
    messages: u64,
    out: Outcome,
    secs: f64,
    sim_submits: u64,
    bench_cpu: Option<f64>,
    sim_cpu: Option<f64>,
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.out.ok as f64 / self.secs
    }

    /// PDUs per second seen by the simulator: each submit in plus its response out.
    fn sim_pdus_per_sec(&self) -> f64 {
        2.0 * self.sim_submits as f64 / self.secs
    }

    fn us_per_msg(&self, cpu: Option<f64>) -> Option<f64> {
        cpu.map(|c| c * 1e6 / self.out.ok.max(1) as f64)
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "client": self.client.name(),
            "window": self.window,
            "messages": self.messages,
            "ok": self.out.ok,
            "errors": self.out.errors,
            "first_error": self.out.first_error,
            "cut_off": self.out.cut_off,
            "stalls_over_100ms": self.out.stalls,
            "longest_gap_seconds": self.out.longest_gap.as_secs_f64(),
            "seconds": self.secs,
            "msgs_per_sec": self.rate().round(),
            "sim_submits": self.sim_submits,
            "sim_pdus_per_sec": self.sim_pdus_per_sec().round(),
            "bench_cpu_seconds": self.bench_cpu,
            "sim_cpu_seconds": self.sim_cpu,
            "bench_cpu_us_per_msg": self.us_per_msg(self.bench_cpu),
            "sim_cpu_us_per_msg": self.us_per_msg(self.sim_cpu),
        })
    }
}

pub fn run(a: SmppArgs) -> Result<(), String> {
    if a.windows.is_empty() || a.windows.contains(&0) {
        return Err("--windows must list windows ≥ 1".into());
    }
    if a.clients.is_empty() {
        return Err("--clients must name at least one ESME".into());
    }
    if a.repeat == 0 {
        return Err("--repeat must be ≥ 1".into());
    }
    if [a.max_seconds, a.target_seconds]
        .iter()
        .any(|s| s.is_nan() || *s <= 0.0)
    {
        return Err("--max-seconds and --target-seconds must be positive".into());
    }
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let sim_path = a.sim.clone().unwrap_or_else(sim::default_path);
    let sim = Sim::start(&sim_path)?;
    println!(
        "smpp: verigate-sim {} (pid {}) on {}, control {}; bench runtime {} worker thread(s); {} CPU(s)",
        sim_path.display(),
        sim.pid(),
        sim.smpp,
        sim.control,
        threads,
        cpus()
    );
    println!(
        "  ours: SmscClient, session.window = w, producer keeps ≤ max(2w, 1024) submits outstanding"
    );
    println!(
        "  rusmppc-el: rusmppc 0.4.0, w submit_sm futures in flight, enquire_link_interval {} ms",
        a.rusmppc_enquire_link_ms
    );
    println!("  rusmppc: rusmppc 0.4.0 defaults (enquire_link_interval 30 s), w futures in flight");
    println!(
        "  raw: pre-encoded submit_sm, w in flight, responses only counted (simulator ceiling)"
    );
    // Run on a worker so every task, the producer included, is scheduled
    // the same way.
    rt.block_on(async move {
        tokio::spawn(run_all(a, sim, threads))
            .await
            .map_err(|e| format!("benchmark task failed: {e}"))?
    })
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0)
}

async fn run_all(a: SmppArgs, sim: Sim, threads: usize) -> Result<(), String> {
    let mut all: Vec<RunResult> = Vec::new();
    for &w in &a.windows {
        println!("window {w}:");
        for &c in &a.clients {
            // rusmppc with defaults stalls; give it the workload its
            // stall-bounded twin managed in the target time instead of
            // calibrating on a possibly stalled warm-up.
            let n = a.messages.or_else(|| {
                (c == Impl::Rusmppc)
                    .then(|| find(&all, Impl::RusmppcEl, w).map(|r| r.messages))
                    .flatten()
            });
            let mut reps = Vec::with_capacity(a.repeat);
            for _ in 0..a.repeat {
                let r = measure(&sim, &a, c, w, n).await?;
                print_run(&r);
                reps.push(r);
            }
            reps.sort_by(|x, y| x.rate().total_cmp(&y.rate()));
            let median = reps[reps.len() / 2].clone();
            if a.repeat > 1 {
                println!(
                    "    {:<10} median of {}: {:>10.0} msg/s",
                    c.name(),
                    a.repeat,
                    median.rate()
                );
            }
            all.push(median);
        }
        let o = find(&all, Impl::Ours, w);
        for c in [Impl::RusmppcEl, Impl::Rusmppc] {
            match (o, find(&all, c, w)) {
                (Some(_), Some(r)) if r.out.cut_off => {
                    println!("    ours/{}: n/a (stalled, cut off)", c.name())
                }
                (Some(o), Some(r)) => {
                    println!("    ours/{}: {:.2}x", c.name(), o.rate() / r.rate())
                }
                _ => {}
            }
        }
    }
    summarize(&a, &all, threads);
    Ok(())
}

fn find(all: &[RunResult], c: Impl, w: usize) -> Option<&RunResult> {
    all.iter().find(|r| r.client == c && r.window == w)
}

fn print_run(r: &RunResult) {
    let cpu = |c: Option<f64>| match (c, r.us_per_msg(c)) {
        (Some(c), Some(u)) => format!("{c:.2} s CPU ({u:.1} µs/msg)"),
        _ => "CPU n/a".into(),
    };
    println!(
        "  {:<10} {:>9.0} msg/s  ({} ok in {:.2} s, {} errors)  sim {:>8.0} PDU/s  bench {}, sim {}",
        r.client.name(),
        r.rate(),
        r.out.ok,
        r.secs,
        r.out.errors,
        r.sim_pdus_per_sec(),
        cpu(r.bench_cpu),
        cpu(r.sim_cpu),
    );
    if r.out.stalls > 0 || r.out.cut_off {
        println!(
            "             {} stall(s) > {} ms, longest {:.2} s{}",
            r.out.stalls,
            STALL.as_millis(),
            r.out.longest_gap.as_secs_f64(),
            if r.out.cut_off {
                "; cut off at --max-seconds"
            } else {
                ""
            }
        );
    }
    if let Some(e) = &r.out.first_error {
        println!("             first error: {e}");
    }
}

fn summarize(a: &SmppArgs, all: &[RunResult], threads: usize) {
    println!();
    println!("summary (msg/s = submit_sm_resp OK per second; sim PDU/s = 2 × submits/s counted by the simulator):");
    println!(
        "  {:>6} | {:>9} | {:>10} | {:>8} | {:>9} | {:>8} | {:>9} | {:>14} | {:>13}",
        "window",
        "ours",
        "rusmppc-el",
        "ratio",
        "rusmppc",
        "ratio",
        "raw",
        "sim PDU/s ours",
        "sim PDU/s max"
    );
    let cell = |r: Option<&RunResult>| {
        r.map(|r| format!("{:.0}", r.rate()))
            .unwrap_or_else(|| "-".into())
    };
    // No ratio against a run that was cut off while stalled: it would only
    // measure how long the stall lasted.
    let ratio = |o: Option<&RunResult>, r: Option<&RunResult>| match (o, r) {
        (Some(o), Some(r)) if !r.out.cut_off => Some(o.rate() / r.rate()),
        _ => None,
    };
    let fmt_ratio = |x: Option<f64>, r: Option<&RunResult>| match (x, r) {
        (Some(x), _) => format!("{x:.2}x"),
        (None, Some(r)) if r.out.cut_off => "stalled".into(),
        _ => "-".into(),
    };
    let mut windows_json = Vec::new();
    for &w in &a.windows {
        let o = find(all, Impl::Ours, w);
        let el = find(all, Impl::RusmppcEl, w);
        let rd = find(all, Impl::Rusmppc, w);
        let x = find(all, Impl::Raw, w);
        let (r_el, r_rd) = (ratio(o, el), ratio(o, rd));
        let sim_max = all
            .iter()
            .filter(|q| q.window == w)
            .map(RunResult::sim_pdus_per_sec)
            .fold(0.0, f64::max);
        println!(
            "  {:>6} | {:>9} | {:>10} | {:>8} | {:>9} | {:>8} | {:>9} | {:>14} | {:>13.0}",
            w,
            cell(o),
            cell(el),
            fmt_ratio(r_el, el),
            cell(rd),
            fmt_ratio(r_rd, rd),
            cell(x),
            o.map(|o| format!("{:.0}", o.sim_pdus_per_sec()))
                .unwrap_or_else(|| "-".into()),
            sim_max
        );
        windows_json.push(json!({
            "window": w,
            "ours_msgs_per_sec": o.map(|o| o.rate().round()),
            "rusmppc_el_msgs_per_sec": el.map(|r| r.rate().round()),
            "ratio_ours_rusmppc_el": r_el,
            "rusmppc_default_msgs_per_sec": rd.map(|r| r.rate().round()),
            "ratio_ours_rusmppc_default": r_rd,
            "rusmppc_default_stalls": rd.map(|r| r.out.stalls),
            "rusmppc_default_cut_off": rd.map(|r| r.out.cut_off),
            "raw_msgs_per_sec": x.map(|x| x.rate().round()),
            "sim_pdus_per_sec_ours": o.map(|o| o.sim_pdus_per_sec().round()),
            "sim_pdus_per_sec_max": sim_max.round(),
        }));
    }
    let ours_big: Vec<&RunResult> = all
        .iter()
        .filter(|r| r.client == Impl::Ours && r.window >= TARGET_MIN_WINDOW)
        .collect();
    let ours_met =
        (!ours_big.is_empty()).then(|| ours_big.iter().all(|r| r.rate() >= TARGET_OURS_PER_SEC));
    let sim_max = all
        .iter()
        .map(RunResult::sim_pdus_per_sec)
        .fold(0.0, f64::max);
    let sim_met = sim_max >= TARGET_SIM_PDUS_PER_SEC;
    let verdict = |m: Option<bool>| match m {
        Some(true) => "MET",
        Some(false) => "NOT MET",
        None => "not measured",
    };
    println!(
        "targets: ours ≥ {:.0} submit_sm/s at window ≥ {}: {}; simulator ≥ {:.0} PDU/s (best observed {:.0}): {}",
        TARGET_OURS_PER_SEC,
        TARGET_MIN_WINDOW,
        verdict(ours_met),
        TARGET_SIM_PDUS_PER_SEC,
        sim_max,
        verdict(Some(sim_met)),
    );
    println!(
        "{}",
        json!({
            "bench": "smpp",
            "bench_worker_threads": threads,
            "cpus": cpus(),
            "messages": a.messages,
            "target_seconds": a.target_seconds,
            "max_seconds": a.max_seconds,
            "warmup": a.warmup,
            "repeat": a.repeat,
            "rusmppc_el_enquire_link_ms": a.rusmppc_enquire_link_ms,
            "windows": windows_json,
            "runs": all.iter().map(RunResult::json).collect::<Vec<_>>(),
            "sim_pdus_per_sec_max": sim_max.round(),
            "targets": {
                "ours_msgs_per_sec_at_window_ge_100": TARGET_OURS_PER_SEC,
                "ours_met": ours_met,
                "sim_pdus_per_sec": TARGET_SIM_PDUS_PER_SEC,
                "sim_met": sim_met,
            },
        })
    );
}

/// One measured run: connect and bind, warm up, measure, unbind.
async fn measure(
    sim: &Sim,
    a: &SmppArgs,
    c: Impl,
    w: usize,
    messages: Option<u64>,
) -> Result<RunResult, String> {
    let limit = Duration::from_secs_f64(a.max_seconds);
    let mut esme = Esme::connect(c, sim.smpp, w, a).await?;
    let warm = a.warmup.max(1);
    let t = Instant::now();
    let wo = esme.blast(warm, Instant::now() + limit).await?;
    let warm_secs = t.elapsed().as_secs_f64();
    if wo.ok == 0 {
        esme.close(true).await;
        return Err(format!(
            "{} window {w}: no submit_sm accepted during warm-up ({})",
            c.name(),
            wo.first_error.unwrap_or_default()
        ));
    }
    let n = messages.unwrap_or_else(|| {
        let rate = wo.ok as f64 / warm_secs.max(1e-6);
        ((rate * a.target_seconds) as u64).clamp(10_000, 10_000_000)
    });
    let sim_pid = sim.pid();
    let s0 = sim.submits().await?;
    let (b0, c0) = (
        proc_stat::self_cpu_seconds(),
        proc_stat::cpu_seconds(sim_pid),
    );
    let t = Instant::now();
    let out = esme.blast(n, t + limit).await?;
    let secs = t.elapsed().as_secs_f64();
    let (b1, c1) = (
        proc_stat::self_cpu_seconds(),
        proc_stat::cpu_seconds(sim_pid),
    );
    let s1 = sim.submits().await?;
    esme.close(wo.cut_off || out.cut_off).await;
    let delta = |x: Option<f64>, y: Option<f64>| Some(y? - x?);
    Ok(RunResult {
        client: c,
        window: w,
        messages: n,
        out,
        secs,
        sim_submits: s1.saturating_sub(s0),
        bench_cpu: delta(b0, b1),
        sim_cpu: delta(c0, c1),
    })
}

/// One bound ESME of any implementation.
enum Esme {
    Ours(OursEsme),
    Rusmppc(RusmppcEsme),
    Raw(RawEsme),
}

impl Esme {
    async fn connect(c: Impl, addr: SocketAddr, w: usize, a: &SmppArgs) -> Result<Esme, String> {
        Ok(match c {
            Impl::Ours => Esme::Ours(OursEsme::connect(addr, w, a.outstanding).await?),
            Impl::RusmppcEl => Esme::Rusmppc(
                RusmppcEsme::connect(
                    addr,
                    w,
                    Some(Duration::from_millis(a.rusmppc_enquire_link_ms.max(1))),
                )
                .await?,
            ),
            Impl::Rusmppc => Esme::Rusmppc(RusmppcEsme::connect(addr, w, None).await?),
            Impl::Raw => Esme::Raw(RawEsme::connect(addr, w).await?),
        })
    }

    /// Submits `n` messages pipelined, giving up at `deadline`.
    async fn blast(&mut self, n: u64, deadline: Instant) -> Result<Outcome, String> {
        let deadline = tokio::time::Instant::from_std(deadline);
        match self {
            Esme::Ours(e) => Ok(e.blast(n, deadline).await),
            Esme::Rusmppc(e) => Ok(e.blast(n, deadline).await),
            Esme::Raw(e) => e.blast(n, deadline).await,
        }
    }

    /// Unbinds; `hard` tears the connection down instead (after a cut-off,
    /// so nothing left over reaches the simulator during the next run).
    async fn close(self, hard: bool) {
        let grace = Duration::from_secs(5);
        match self {
            Esme::Ours(e) => {
                let _ = tokio::time::timeout(grace, e.client.shutdown()).await;
            }
            Esme::Rusmppc(e) => {
                if !hard {
                    let _ = tokio::time::timeout(grace, async {
                        let _ = e.client.unbind().await;
                        let _ = e.client.close().await;
                        e.client.closed().await;
                    })
                    .await;
                }
                e.conn.abort();
                let _ = e.conn.await;
            }
            Esme::Raw(_) => {}
        }
    }
}

/// What a blast achieved.
#[derive(Debug, Clone)]
struct Outcome {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    /// Gaps between completions longer than [`STALL`].
    stalls: u64,
    longest_gap: Duration,
    /// The deadline passed before every response came back.
    cut_off: bool,
}

/// Tallies submit outcomes and stalls.
struct Tally {
    out: Outcome,
    last: Instant,
}

impl Tally {
    fn new() -> Self {
        Tally {
            out: Outcome {
                ok: 0,
                errors: 0,
                first_error: None,
                stalls: 0,
                longest_gap: Duration::ZERO,
                cut_off: false,
            },
            last: Instant::now(),
        }
    }

    fn gap(&mut self) {
        let now = Instant::now();
        let gap = now - self.last;
        self.last = now;
        if gap > STALL {
            self.out.stalls += 1;
        }
        self.out.longest_gap = self.out.longest_gap.max(gap);
    }

    fn add<E: std::fmt::Display>(&mut self, r: Result<(), E>) {
        self.gap();
        match r {
            Ok(()) => self.out.ok += 1,
            Err(e) => {
                self.out.errors += 1;
                if self.out.first_error.is_none() {
                    self.out.first_error = Some(e.to_string());
                }
            }
        }
    }

    fn cut_off(mut self) -> Outcome {
        // The time since the last completion is a stall too.
        self.gap();
        self.out.cut_off = true;
        self.out
    }

    fn done(self) -> Outcome {
        self.out
    }
}

struct OursEsme {
    client: SmscClient,
    sm: SubmitSm,
    outstanding: usize,
}

impl OursEsme {
    async fn connect(
        addr: SocketAddr,
        w: usize,
        outstanding: Option<usize>,
    ) -> Result<OursEsme, String> {
        let mut cfg = SmscConfig::new(
            "bench",
            &addr.ip().to_string(),
            addr.port(),
            sim::SYSTEM_ID,
            sim::PASSWORD,
        );
        cfg.session.window = w;
        cfg.session.response_timeout = Duration::from_secs(60);
        let (tx, mut rx) = mpsc::channel(1024);
        // registered_delivery is 0, so no events are expected; accept any.
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                verigate::smpp::SmppEvent::accept(ev);
            }
        });
        let client = SmscClient::start(cfg, tx, verigate::random::Random::os());
        if let Err(e) = client.wait_bound(Duration::from_secs(10)).await {
            client.shutdown().await;
            return Err(format!("ours: {e}"));
        }
        Ok(OursEsme {
            client,
            sm: msg::ours(0),
            outstanding: outstanding.unwrap_or((2 * w).max(1024)).max(1),
        })
    }

    async fn blast(&mut self, n: u64, deadline: tokio::time::Instant) -> Outcome {
        let mut inflight = FuturesUnordered::new();
        let mut sent = 0u64;
        let mut t = Tally::new();
        while sent < n || !inflight.is_empty() {
            while sent < n && inflight.len() < self.outstanding {
                inflight.push(self.client.submit_sm(self.sm.clone()).await);
                sent += 1;
            }
            match tokio::time::timeout_at(deadline, inflight.next()).await {
                Err(_) => return t.cut_off(),
                Ok(Some(Ok(r))) => t.add(r.map(|_| ())),
                Ok(Some(Err(_))) => t.add(Err("reply channel dropped")),
                Ok(None) => {}
            }
        }
        t.done()
    }
}

struct RusmppcEsme {
    client: rusmppc::Client,
    conn: tokio::task::JoinHandle<()>,
    sm: rusmpp::pdus::SubmitSm,
    window: usize,
}

impl RusmppcEsme {
    async fn connect(
        addr: SocketAddr,
        w: usize,
        enquire_link: Option<Duration>,
    ) -> Result<RusmppcEsme, String> {
        use rusmpp::pdus::BindTransceiver;
        use rusmpp::types::COctetString;
        use rusmpp::values::{Npi, Ton};
        // rusmppc's own connect() leaves Nagle on; connect ourselves with
        // TCP_NODELAY like our client so both are measured on equal terms.
        let sock = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("rusmppc: connect: {e}"))?;
        sock.set_nodelay(true)
            .map_err(|e| format!("rusmppc: nodelay: {e}"))?;
        let mut b = rusmppc::ConnectionBuilder::new().response_timeout(Duration::from_secs(60));
        if let Some(el) = enquire_link {
            b = b.enquire_link_interval(el);
        }
        // Spawned by us (not by rusmppc) so a stalled connection can be
        // aborted instead of leaking submits into the next run.
        let (client, mut events, conn) = b.no_spawn().connected(sock);
        let conn = tokio::spawn(conn);
        tokio::spawn(async move { while events.next().await.is_some() {} });
        let bind = BindTransceiver::builder()
            .system_id(COctetString::from_str(sim::SYSTEM_ID).map_err(|e| format!("rusmppc: {e}"))?)
            .password(COctetString::from_str(sim::PASSWORD).map_err(|e| format!("rusmppc: {e}"))?)
            .system_type(COctetString::empty())
            .addr_ton(Ton::Unknown)
            .addr_npi(Npi::Unknown)
            .address_range(COctetString::empty())
            .build();
        match tokio::time::timeout(Duration::from_secs(10), client.bind_transceiver(bind)).await {
            Ok(Ok(_)) => {}
            r => {
                conn.abort();
                return Err(match r {
                    Ok(Err(e)) => format!("rusmppc: bind: {e}"),
                    _ => "rusmppc: bind: no response within 10 s".into(),
                });
            }
        }
        Ok(RusmppcEsme {
            client,
            conn,
            sm: msg::rusmpp(0),
            window: w,
        })
    }

    async fn blast(&mut self, n: u64, deadline: tokio::time::Instant) -> Outcome {
        let client = &self.client;
        let mut inflight = FuturesUnordered::new();
        let mut sent = 0u64;
        let mut t = Tally::new();
        while sent < n || !inflight.is_empty() {
            while sent < n && inflight.len() < self.window {
                inflight.push(client.submit_sm(self.sm.clone()));
                sent += 1;
            }
            match tokio::time::timeout_at(deadline, inflight.next()).await {
                Err(_) => return t.cut_off(),
                Ok(Some(r)) => t.add(r.map(|_| ())),
                Ok(None) => {}
            }
        }
        t.done()
    }
}

/// A minimal ESME: pre-encoded submit_sm with patched sequence numbers,
/// written in batches as the window allows; responses are only counted.
struct RawEsme {
    rd: tokio::net::tcp::OwnedReadHalf,
    wr: tokio::net::tcp::OwnedWriteHalf,
    rbuf: BytesMut,
    template: Bytes,
    next_seq: u32,
    window: usize,
}

impl RawEsme {
    async fn connect(addr: SocketAddr, w: usize) -> Result<RawEsme, String> {
        let err = |e: std::io::Error| format!("raw: {e}");
        let mut sock = TcpStream::connect(addr).await.map_err(err)?;
        sock.set_nodelay(true).map_err(err)?;
        let bind = Pdu::new(
            1,
            Body::BindTransceiver(Bind {
                system_id: sim::SYSTEM_ID.into(),
                password: sim::PASSWORD.into(),
                system_type: "".into(),
                interface_version: 0x34,
                address_range: Address::default(),
            }),
        );
        sock.write_all(&bind.to_bytes().map_err(|e| e.to_string())?)
            .await
            .map_err(err)?;
        let framer = FrameDecoder::default();
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        let bound = async {
            loop {
                if let Some(f) = framer.decode(&mut rbuf).map_err(|e| e.to_string())? {
                    let (id, status, _) = peek_header(&f).ok_or("raw: short frame")?;
                    if id == BIND_TRANSCEIVER_RESP {
                        if status != 0 {
                            return Err(format!("raw: bind refused with status 0x{status:08X}"));
                        }
                        return Ok(());
                    }
                    continue;
                }
                if sock.read_buf(&mut rbuf).await.map_err(err)? == 0 {
                    return Err("raw: simulator closed the connection during bind".to_string());
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), bound)
            .await
            .map_err(|_| "raw: no bind response within 10 s".to_string())??;
        let template = Pdu::new(0, Body::SubmitSm(msg::ours(0)))
            .to_bytes()
            .map_err(|e| e.to_string())?;
        let (rd, wr) = sock.into_split();
        Ok(RawEsme {
            rd,
            wr,
            rbuf,
            template,
            next_seq: 2,
            window: w,
        })
    }

    async fn blast(&mut self, n: u64, deadline: tokio::time::Instant) -> Result<Outcome, String> {
        let sem = Semaphore::new(self.window);
        let RawEsme {
            rd,
            wr,
            rbuf,
            template,
            next_seq,
            window,
        } = self;
        let batch_max = (*window).min(1024) as u64;
        let writer = async {
            let mut out = Vec::with_capacity(batch_max as usize * template.len());
            let mut sent = 0u64;
            while sent < n {
                let p = sem.acquire().await.map_err(|e| e.to_string())?;
                p.forget();
                let mut k = 1u64;
                while k < n - sent && k < batch_max {
                    match sem.try_acquire() {
                        Ok(p) => {
                            p.forget();
                            k += 1;
                        }
                        Err(_) => break,
                    }
                }
                out.clear();
                for _ in 0..k {
                    let at = out.len();
                    out.extend_from_slice(template);
                    out[at + 12..at + 16].copy_from_slice(&next_seq.to_be_bytes());
                    *next_seq = if *next_seq >= 0x7FFF_FFFF {
                        1
                    } else {
                        *next_seq + 1
                    };
                }
                wr.write_all(&out).await.map_err(|e| format!("raw: {e}"))?;
                sent += k;
            }
            Ok::<(), String>(())
        };
        let reader = async {
            let framer = FrameDecoder::default();
            let mut t = Tally::new();
            while t.out.ok + t.out.errors < n {
                if rd.read_buf(rbuf).await.map_err(|e| format!("raw: {e}"))? == 0 {
                    return Err("raw: simulator closed the connection".to_string());
                }
                let mut answered = 0;
                while let Some(f) = framer.decode(rbuf).map_err(|e| e.to_string())? {
                    let (id, status, _) = peek_header(&f).ok_or("raw: short frame")?;
                    if id == SUBMIT_SM_RESP {
                        answered += 1;
                        t.add(if status == 0 {
                            Ok(())
                        } else {
                            Err(format!("submit_sm_resp status 0x{status:08X}"))
                        });
                    }
                }
                sem.add_permits(answered);
            }
            Ok(t)
        };
        let both = async {
            let (w, r) = tokio::join!(writer, reader);
            w?;
            r
        };
        match tokio::time::timeout_at(deadline, both).await {
            Ok(r) => r.map(Tally::done),
            // The connection is mid-stream: unusable for another blast.
            Err(_) => Err("raw: no progress before --max-seconds".to_string()),
        }
    }
}

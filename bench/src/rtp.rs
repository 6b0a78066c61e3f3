//! `verigate-bench rtp`: many concurrent calls' RTP from one pacer worker
//! thread (one shared tick in 1 ms phases, one UDP socket per call), each playing a code reading from the English prompts again
//! and again, to a loopback sink. Reports per-packet send lateness (from
//! the tick's due time to the packet leaving), what the sink received, CPU
//! and memory per call.

use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use verigate_codecs::media::g711::Law;
use verigate_codecs::media::pacer::{Pacer, PacerEvent};
use verigate_codecs::media::rtp::RtpSender;
use verigate_prompts::{bundled_dir, PromptSet, Reading};

/// Concurrent calls the issue asks for.
pub const TARGET_STREAMS: usize = 1_000;
/// p99 packet send lateness target.
pub const TARGET_P99_MS: f64 = 2.0;

#[derive(Debug, clap::Args)]
pub struct RtpArgs {
    /// Concurrent calls (RTP streams).
    #[arg(long, default_value_t = TARGET_STREAMS)]
    streams: usize,
    /// Seconds of streaming measured (after one second of warm-up).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub fn run(a: RtpArgs) -> Result<(), String> {
    let prompts = PromptSet::load(&bundled_dir(), "en")
        .map_err(|e| e.to_string())?
        .encode(Law::Ulaw);
    let reading: Arc<[u8]> = prompts
        .code_message("365882", &Reading::default())
        .map_err(|e| e.to_string())?
        .into();

    // The sink: counts what arrives.
    let sink = StdUdp::bind("127.0.0.1:0").map_err(|e| format!("sink: {e}"))?;
    sink.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let sink_addr: SocketAddr = sink.local_addr().map_err(|e| e.to_string())?;
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sink_thread = {
        let (received, stop) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if sink.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // The media worker is a plain thread: std's sleep is precise to tens
    // of µs, where tokio's timer rounds every deadline up to the next ms.
    let out = {
        let rss_before = rss_kib();
        let mut sockets = Vec::with_capacity(a.streams);
        for _ in 0..a.streams {
            let s = StdUdp::bind("127.0.0.1:0")
                .map_err(|e| format!("cannot open RTP socket {}: {e}", sockets.len() + 1))?;
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            sockets.push(s);
        }
        let start = Instant::now();
        let mut pacer: Pacer<usize> = Pacer::new(start);
        for (i, _) in sockets.iter().enumerate() {
            let r: u64 = rand_u64(i as u64);
            pacer.add(
                start,
                i,
                RtpSender::new(r as u32, (r >> 32) as u16, (r >> 16) as u32),
                0,
                Law::Ulaw,
            );
            pacer.play(i, reading.clone());
        }
        let rss_streams = rss_kib();
        let warm = start + Duration::from_secs(1);
        let end = warm + Duration::from_secs_f64(a.seconds);
        let mut lateness: Vec<u32> = Vec::new();
        let mut sent = 0u64;
        let mut send_errors = 0u64;
        let mut cpu0 = None;
        let mut received0 = 0;
        loop {
            let due = pacer.poll_timeout();
            if due >= end {
                break;
            }
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let measuring = due >= warm;
            if measuring && cpu0.is_none() {
                cpu0 = Some(cpu_now());
                received0 = received.load(Ordering::Relaxed);
                pacer.take_lateness();
            }
            pacer.handle_timeout(Instant::now(), |k, pkt, due| {
                match sockets[k].send_to(pkt, sink_addr) {
                    Ok(_) => {
                        if measuring {
                            sent += 1;
                            let l = Instant::now().saturating_duration_since(due);
                            lateness.push(l.as_micros().min(u128::from(u32::MAX)) as u32);
                        }
                    }
                    Err(_) => send_errors += 1,
                }
            });
            while let Some(PacerEvent::Drained(k)) = pacer.poll_event() {
                pacer.pause(k, Duration::from_millis(500));
                pacer.play(k, reading.clone());
            }
        }
        let cpu = cpu_now() - cpu0.unwrap_or_default();
        let skipped = pacer.take_lateness().skipped;
        // Let the sink catch the last packets.
        std::thread::sleep(Duration::from_millis(200));
        let got = received.load(Ordering::Relaxed) - received0;
        lateness.sort_unstable();
        json!({
            "bench": "rtp",
            "streams": a.streams,
            "seconds": a.seconds,
            "packets_sent": sent,
            "packets_per_sec": sent as f64 / a.seconds,
            "send_errors": send_errors,
            "sink_received": got,
            "ticks_skipped": skipped,
            "lateness_ms": {
                "p50": percentile(&lateness, 0.50),
                "p99": percentile(&lateness, 0.99),
                "p999": percentile(&lateness, 0.999),
                "max": percentile(&lateness, 1.0),
            },
            "cpu_percent_of_one_core": 100.0 * cpu / a.seconds,
            "rss_kib_per_stream": (rss_streams.saturating_sub(rss_before)) as f64 / a.streams as f64,
            "rss_mib": rss_kib() as f64 / 1024.0,
        })
    };
    stop.store(true, Ordering::Relaxed);
    let _ = sink_thread.join();

    let l = &out["lateness_ms"];
    println!(
        "{} streams, {:.0} s: {} packets sent ({:.0}/s), {} send errors, sink received {}, {} ticks skipped",
        out["streams"], a.seconds, out["packets_sent"], out["packets_per_sec"].as_f64().unwrap_or(0.0),
        out["send_errors"], out["sink_received"], out["ticks_skipped"]
    );
    println!(
        "packet send lateness ms: p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        l["p50"].as_f64().unwrap_or(0.0),
        l["p99"].as_f64().unwrap_or(0.0),
        l["p999"].as_f64().unwrap_or(0.0),
        l["max"].as_f64().unwrap_or(0.0)
    );
    println!(
        "CPU {:.1}% of one core; memory per stream (socket + pacer state) {:.1} KiB; RSS {:.1} MiB",
        out["cpu_percent_of_one_core"].as_f64().unwrap_or(0.0),
        out["rss_kib_per_stream"].as_f64().unwrap_or(0.0),
        out["rss_mib"].as_f64().unwrap_or(0.0)
    );
    let p99 = l["p99"].as_f64().unwrap_or(f64::MAX);
    let sent = out["packets_sent"].as_u64().unwrap_or(0);
    let got = out["sink_received"].as_u64().unwrap_or(0);
    // Lateness counts only packets that went out: a run that skipped or
    // lost packets has not met the target, however punctual the rest.
    let complete =
        out["send_errors"] == 0 && out["ticks_skipped"] == 0 && got as f64 >= 0.99 * sent as f64;
    println!(
        "targets: ≥ {TARGET_STREAMS} streams with p99 send lateness < {TARGET_P99_MS} ms, nothing skipped, ≥ 99% received → {}",
        if a.streams >= TARGET_STREAMS && p99 < TARGET_P99_MS && complete {
            "met"
        } else {
            "NOT met"
        }
    );
    println!("{out}");
    Ok(())
}

/// This process's CPU seconds.
fn cpu_now() -> f64 {
    crate::proc_stat::cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// Start values for a stream (spread, not secret: a benchmark).
fn rand_u64(i: u64) -> u64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^ (x >> 29)
}

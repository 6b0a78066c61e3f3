//! `verigate-bench`: throughput benchmarks.
//!
//! * `codec`: encode / decode / round trip of a realistic submit_sm on one
//!   thread, with our codec (and rusmpp 0.4.0 for reference).
//! * `smpp`: submit_sm throughput of our ESME (`SmscClient`) and of rusmppc
//!   0.4.0 against a `verigate-sim smsc` child process, per window, plus a
//!   raw pipelined load generator that probes the simulator's own ceiling.
//! * `verify`: the daemon and simulator as processes: end-to-end
//!   verifications/s with durable SQLite, check latency, memory.
//! * `rtp`: concurrent calls' RTP from one pacer worker: packet send
//!   lateness, CPU and memory per call.
//!
//! Every subcommand prints human-readable figures and ends with one JSON line.

mod calls;
mod codec;
mod http;
mod keys;
mod mo;
mod msg;
mod proc_stat;
mod registry;
mod rtp;
mod sim;
mod smpp;
mod tx;
mod verify;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "verigate-bench",
    version,
    about = "Throughput benchmarks for verigate"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Encode + decode of a realistic submit_sm on one thread.
    Codec(codec::CodecArgs),
    /// submit_sm throughput against verigate-sim: ours vs rusmppc, per window.
    Smpp(smpp::SmppArgs),
    /// The daemon end to end: verifications/s (HTTP start → stored →
    /// submit_sm → receipt stored), check latency at a fixed rate, memory.
    Verify(verify::VerifyArgs),
    /// Concurrent calls' RTP from one pacer worker: send lateness, CPU, memory.
    Rtp(rtp::RtpArgs),
    /// The call engine end to end against a SIPp UAS: flash calls/s, and
    /// concurrent voice calls with their RTP send lateness and memory.
    Calls(calls::CallsArgs),
    /// MO-SMS logins end to end: MOs turned into sessions per second, and
    /// MO → session latency.
    Mo(mo::MoArgs),
    /// The number registry on 10 million bindings: binds/s, NumberRecycling
    /// check latency at a fixed rate, a recycle's fan-out to 50 apps.
    Registry(registry::RegistryArgs),
    /// The relay's key work: DUKPT derivations/s (carrier and bank side),
    /// AES-GCM seal/open.
    Keys(keys::KeysArgs),
    /// The carrier–bank relay end to end against `verigate-sim bank`:
    /// sessions/s and relayed transactions/s with durable SQLite.
    Tx(tx::TxArgs),
}

/// Runs a benchmark's async body on a multi-threaded tokio runtime.
fn block_on(f: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(f)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Codec(a) => codec::run(a),
        Cmd::Smpp(a) => smpp::run(a),
        Cmd::Verify(a) => verify::run(a),
        Cmd::Rtp(a) => rtp::run(a),
        Cmd::Calls(a) => calls::run(a),
        Cmd::Mo(a) => mo::run(a),
        Cmd::Registry(a) => registry::run(a),
        Cmd::Keys(a) => keys::run(a),
        Cmd::Tx(a) => tx::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("verigate-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

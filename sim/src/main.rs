//! `verigate-sim`: simulators for labs and tests.

mod smsc;

use clap::{Parser, Subcommand};
use smsc::{DlrSettings, Faults, IdFormat, SimState};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(
    name = "verigate-sim",
    version,
    about = "Simulators for verigate labs and tests"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// A simulated SMSC with handset inboxes and fault injection.
    Smsc(SmscArgs),
}

#[derive(Debug, clap::Args)]
struct SmscArgs {
    /// SMPP listen address (port 0 picks a free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:2775")]
    listen: String,
    /// system_id ESMEs must bind with.
    #[arg(long, default_value = "verigate")]
    system_id: String,
    /// Password ESMEs must bind with.
    #[arg(long, default_value = "secret")]
    password: String,
    /// Control API listen address (loopback).
    #[arg(long, default_value = "127.0.0.1:8775")]
    control: String,
    /// Format of message ids in submit_sm_resp.
    #[arg(long, value_enum, default_value = "hex")]
    id_format: IdFormat,
    /// Format of the id quoted in receipt texts (defaults to --id-format).
    #[arg(long, value_enum)]
    dlr_id_format: Option<IdFormat>,
    /// Delay before each receipt, milliseconds.
    #[arg(long, default_value_t = 0)]
    dlr_delay_ms: u64,
    /// Fraction of receipts that report UNDELIV.
    #[arg(long, default_value_t = 0.0)]
    dlr_undeliverable_ratio: f64,
    /// Leave out receipted_message_id/message_state TLVs (text-only receipts).
    #[arg(long)]
    dlr_text_only: bool,
    /// Initial faults as JSON (see GET /faults), e.g. '{"throttle_ratio":0.1}'.
    #[arg(long)]
    faults: Option<String>,
    /// Exit when standard input closes (a parent that starts the simulator
    /// keeps a pipe open, so the simulator dies with it even on kill -9).
    #[arg(long)]
    exit_with_stdin: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VERIGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cli.cmd {
        Cmd::Smsc(a) => rt.block_on(run_smsc(a)),
    }
}

async fn run_smsc(a: SmscArgs) -> ExitCode {
    let faults: Faults = match a.faults.as_deref().map(serde_json::from_str).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => {
            eprintln!("verigate-sim smsc: --faults is not valid: {e}");
            return ExitCode::from(64);
        }
    };
    if !(0.0..=1.0).contains(&a.dlr_undeliverable_ratio) {
        eprintln!("verigate-sim smsc: --dlr-undeliverable-ratio must be between 0 and 1");
        return ExitCode::from(64);
    }
    let dlr = DlrSettings {
        delay_ms: a.dlr_delay_ms,
        undeliverable_ratio: a.dlr_undeliverable_ratio,
        text_id_format: a.dlr_id_format.unwrap_or(a.id_format),
        tlvs: !a.dlr_text_only,
    };
    let state = Arc::new(SimState::new(
        a.system_id,
        a.password,
        a.id_format,
        dlr,
        faults,
    ));
    let smpp = match TcpListener::bind(&a.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("verigate-sim smsc: cannot listen on {}: {e}", a.listen);
            return ExitCode::from(71);
        }
    };
    let control = match TcpListener::bind(&a.control).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("verigate-sim smsc: cannot listen on {}: {e}", a.control);
            return ExitCode::from(71);
        }
    };
    let smpp_addr = smpp.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let control_addr = control
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!(
        "{}",
        serde_json::json!({"smpp": smpp_addr, "control": control_addr})
    );
    tokio::spawn(smsc::serve_smpp(smpp, state.clone()));
    let stdin_closed = async {
        if a.exit_with_stdin {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 64];
            let mut stdin = tokio::io::stdin();
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        } else {
            std::future::pending::<()>().await
        }
    };
    tokio::select! {
        _ = stdin_closed => {}
        r = smsc::serve_control(control, state) => {
            if let Err(e) = r {
                eprintln!("verigate-sim smsc: control API failed: {e}");
                return ExitCode::from(70);
            }
        }
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm() => {}
    }
    ExitCode::SUCCESS
}

async fn sigterm() {
    #[cfg(unix)]
    {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await
}

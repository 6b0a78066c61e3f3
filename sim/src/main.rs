//! `verigate-sim`: simulators for labs and tests.

mod bank;
mod smsc;
mod switch;

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
    /// A simulated SIP switch routing calls to handsets that ring, answer
    /// and listen, press keys, are busy or unreachable.
    Switch(SwitchArgs),
    /// A simulated bank for the carrier–bank transaction relay: holds the
    /// BDK and accounts, runs its half of the key ceremony, executes
    /// relayed transactions (re-deriving each DUKPT key from its KSN).
    Bank(BankArgs),
}

#[derive(Debug, clap::Args)]
struct BankArgs {
    /// HTTP listen address (port 0 picks a free port; printed).
    #[arg(long, default_value = "127.0.0.1:8790")]
    listen: String,
    /// The base derivation key (hex, AES-128/192/256). The lab default is
    /// the X9.24-3 test vectors' BDK.
    #[arg(long, default_value = "FEDCBA9876543210F1F1F1F1F1F1F1F1")]
    bdk: String,
    /// The BDK's id: the first 4 bytes of every initial key id (8 hex digits).
    #[arg(long, default_value = "12345678")]
    bdk_id: String,
    /// Accounts to open, name=balance in minor units (repeatable).
    #[arg(long = "account", value_name = "NAME=MINOR")]
    accounts: Vec<String>,
    /// Exit when standard input closes.
    #[arg(long)]
    exit_with_stdin: bool,
}

#[derive(Debug, clap::Args)]
struct SwitchArgs {
    /// SIP listen address, UDP and TCP (port 0 picks a free port; printed).
    #[arg(long, default_value = "127.0.0.1:5080")]
    listen: String,
    /// Control API listen address (loopback).
    #[arg(long, default_value = "127.0.0.1:8780")]
    control: String,
    /// Challenge every INVITE (407) for this digest user name.
    #[arg(long, requires = "password")]
    username: Option<String>,
    /// Digest password.
    #[arg(long, requires = "username")]
    password: Option<String>,
    /// Digest algorithm of the challenge: MD5 or SHA-256.
    #[arg(long, default_value = "MD5")]
    algorithm: String,
    /// Behaviour of handsets without their own, as JSON (see PUT /default).
    #[arg(long)]
    default: Option<String>,
    /// Exit when standard input closes.
    #[arg(long)]
    exit_with_stdin: bool,
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
        Cmd::Switch(a) => rt.block_on(run_switch(a)),
        Cmd::Bank(a) => rt.block_on(run_bank(a)),
    }
}

async fn run_bank(a: BankArgs) -> ExitCode {
    let bdk = match verigate_keys::SecretKey::from_hex(&a.bdk) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("verigate-sim bank: --bdk: {e}");
            return ExitCode::from(64);
        }
    };
    let Some(bdk_id) = hex::decode(&a.bdk_id)
        .ok()
        .and_then(|v| <[u8; 4]>::try_from(v).ok())
    else {
        eprintln!("verigate-sim bank: --bdk-id must be 8 hex digits");
        return ExitCode::from(64);
    };
    let mut bank = bank::ledger::Bank::new(bdk, bdk_id);
    for acc in &a.accounts {
        let Some((name, bal)) = acc
            .split_once('=')
            .and_then(|(n, b)| Some((n, b.parse::<i64>().ok()?)))
        else {
            eprintln!("verigate-sim bank: --account {acc:?} must be NAME=MINOR (e.g. alice=10000)");
            return ExitCode::from(64);
        };
        bank.set_balance(name, bal);
    }
    let listener = match listen("bank", &a.listen).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!("{}", serde_json::json!({"bank": addr}));
    let app = bank::router(Arc::new(std::sync::Mutex::new(bank)));
    serve_until_stopped(
        "bank",
        a.exit_with_stdin,
        std::future::IntoFuture::into_future(axum::serve(listener, app)),
    )
    .await
}

async fn run_switch(a: SwitchArgs) -> ExitCode {
    if !matches!(a.algorithm.as_str(), "MD5" | "SHA-256") {
        eprintln!("verigate-sim switch: --algorithm must be MD5 or SHA-256");
        return ExitCode::from(64);
    }
    let sip: std::net::SocketAddr = match a.listen.parse() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("verigate-sim switch: --listen {:?}: {e}", a.listen);
            return ExitCode::from(64);
        }
    };
    let state = Arc::new(switch::state::SwitchState::new(a.username.zip(a.password)));
    if let Some(d) = &a.default {
        match serde_json::from_str::<switch::state::Behaviour>(d) {
            Ok(b) if switch::state::MODES.contains(&b.mode.as_str()) => state.set_default(b),
            Ok(b) => {
                eprintln!(
                    "verigate-sim switch: --default mode {:?} is not one of {}",
                    b.mode,
                    switch::state::MODES.join(", ")
                );
                return ExitCode::from(64);
            }
            Err(e) => {
                eprintln!("verigate-sim switch: --default is not valid: {e}");
                return ExitCode::from(64);
            }
        }
    }
    let control = match listen("switch", &a.control).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let token = tokio_util::sync::CancellationToken::new();
    let sw = match switch::start(sip, state.clone(), a.algorithm, token.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("verigate-sim switch: cannot start on {}: {e}", a.listen);
            return ExitCode::from(71);
        }
    };
    let control_addr = control
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!(
        "{}",
        serde_json::json!({"sip": sw.addr.to_string(), "control": control_addr})
    );
    let code = serve_until_stopped(
        "switch",
        a.exit_with_stdin,
        std::future::IntoFuture::into_future(axum::serve(control, switch::control::router(state))),
    )
    .await;
    token.cancel();
    code
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
    let smpp = match listen("smsc", &a.listen).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let control = match listen("smsc", &a.control).await {
        Ok(l) => l,
        Err(code) => return code,
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
    serve_until_stopped(
        "smsc",
        a.exit_with_stdin,
        smsc::serve_control(control, state),
    )
    .await
}

/// Serves the control API until SIGINT/SIGTERM, or until standard input
/// closes with `--exit-with-stdin` (a parent that starts the simulator
/// keeps a pipe open, so the simulator dies with it even on kill -9).
async fn serve_until_stopped(
    what: &str,
    exit_with_stdin: bool,
    control: impl std::future::Future<Output = std::io::Result<()>>,
) -> ExitCode {
    let stdin_closed = async {
        if exit_with_stdin {
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
        r = control => {
            if let Err(e) = r {
                eprintln!("verigate-sim {what}: control API failed: {e}");
                return ExitCode::from(70);
            }
        }
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm() => {}
    }
    ExitCode::SUCCESS
}

/// Binds a listener or says which flag's address is taken.
async fn listen(what: &str, addr: &str) -> Result<TcpListener, ExitCode> {
    TcpListener::bind(addr).await.map_err(|e| {
        eprintln!("verigate-sim {what}: cannot listen on {addr}: {e}");
        ExitCode::from(71)
    })
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

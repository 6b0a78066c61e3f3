//! The `verigate` command.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;
use verigate::probe::{self, ProbeOptions};

#[derive(Debug, Parser)]
#[command(
    name = "verigate",
    version,
    about = "Phone-number verification gateway"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the daemon (lab mode with the default config).
    Run {
        /// Configuration file.
        #[arg(long, short, default_value = "conf/verigate.toml")]
        config: std::path::PathBuf,
        /// Override a value: section.key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Validate a configuration file without starting anything (exit 64 if bad).
    CheckConfig {
        /// Configuration file.
        #[arg(default_value = "conf/verigate.toml")]
        path: std::path::PathBuf,
        /// Override a value: section.key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// SMPP tools for operators.
    Smpp {
        #[command(subcommand)]
        cmd: SmppCmd,
    },
}

#[derive(Debug, Subcommand)]
enum SmppCmd {
    /// Bind to an SMSC, submit messages, wait for receipts, report.
    Probe(ProbeArgs),
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// SMSC host.
    #[arg(long)]
    host: String,
    /// SMSC port.
    #[arg(long, default_value_t = 2775)]
    port: u16,
    /// system_id to bind with.
    #[arg(long)]
    system_id: String,
    /// Password to bind with.
    #[arg(long)]
    password: String,
    /// Destination MSISDN (E.164).
    #[arg(long)]
    to: String,
    /// Source address.
    #[arg(long, default_value = "verigate")]
    from: String,
    /// Message text.
    #[arg(long, default_value = "verigate probe")]
    text: String,
    /// How many messages to send.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Wait this many seconds for delivery receipts.
    #[arg(long, value_name = "SECS")]
    wait_dlr: Option<f64>,
    /// Submit window (requests in flight).
    #[arg(long, default_value_t = 10)]
    window: usize,
    /// Seconds to wait for the bind.
    #[arg(long, default_value_t = 10.0)]
    bind_timeout: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs at info by default; operator tools only errors.
    let default_filter = if matches!(cli.cmd, Cmd::Run { .. }) {
        "info"
    } else {
        "error"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VERIGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cli.cmd {
        Cmd::Run { config, set } => match rt.block_on(verigate::run::run(&config, &set)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("verigate: {e}");
                match e {
                    verigate::run::StartError::Config(_) => ExitCode::from(EXIT_CONFIG),
                    verigate::run::StartError::Environment(_) => ExitCode::from(71),
                }
            }
        },
        Cmd::CheckConfig { path, set } => check_config(&path, &set),
        Cmd::Smpp {
            cmd: SmppCmd::Probe(a),
        } => rt.block_on(run_probe(a)),
    }
}

/// Exit status for a configuration error (EX_USAGE from sysexits.h).
const EXIT_CONFIG: u8 = 64;

fn check_config(path: &std::path::Path, set: &[String]) -> ExitCode {
    match verigate::config::load(path, set) {
        Ok(c) => {
            println!(
                "{}: ok ({} SMSC, {} SIP trunk, {} service{})",
                path.display(),
                c.smsc.len(),
                c.sip_trunk.len(),
                c.service.len(),
                if c.lab.smsc.is_some() {
                    ", lab mode"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("verigate: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

async fn run_probe(a: ProbeArgs) -> ExitCode {
    let opts = ProbeOptions {
        host: a.host,
        port: a.port,
        system_id: a.system_id,
        password: a.password,
        to: a.to,
        from: a.from,
        text: a.text,
        count: a.count,
        wait_dlr: a.wait_dlr.map(Duration::from_secs_f64),
        window: a.window,
        bind_timeout: Duration::from_secs_f64(a.bind_timeout),
    };
    match probe::run(opts).await {
        Ok(report) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("report serialises")
                );
            } else {
                print!("{}", probe::render_table(&report));
            }
            if report.ok {
                ExitCode::SUCCESS
            } else {
                if a.json {
                    if let Some(p) = &report.problem {
                        eprintln!("verigate smpp probe: {p}");
                    }
                }
                ExitCode::from(1)
            }
        }
        Err(e) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "problem": e.to_string(), "messages": []})
                );
            }
            eprintln!("verigate smpp probe: {e}");
            ExitCode::from(2)
        }
    }
}

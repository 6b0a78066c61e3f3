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
    /// Bring a store's schema to this build's version (the daemon does this
    /// at start too): the config's store, or the one --url names
    /// (`postgres://user@host/db`, or `sqlite://path`).
    Migrate {
        /// Configuration file (its `[store]`).
        #[arg(long, short, default_value = "conf/verigate.toml")]
        config: std::path::PathBuf,
        /// Override a value: section.key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// The store instead of the config's.
        #[arg(long)]
        url: Option<String>,
    },
    /// Move a stopped lab onto a cluster: `verigate store copy --from
    /// sqlite://var/verigate.db --to postgres://…` (into an empty schema,
    /// all or nothing).
    Store {
        #[command(subcommand)]
        cmd: StoreCmd,
    },
    /// Show the running daemon's SMSC binds and queues.
    Status(AdminArgs),
    /// Manage services and their API keys on the running daemon.
    Services {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        cmd: ServicesCmd,
    },
    /// Start, check or show a verification on the running daemon.
    Verify {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        cmd: VerifyCmd,
    },
    /// The running daemon's number-binding registry: app platforms,
    /// bindings, recycled numbers.
    Registry {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        cmd: RegistryCmd,
    },
    /// The running daemon's carrier–bank relay: its subscriber directory.
    Txrelay {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        cmd: TxrelayCmd,
    },
    /// List, enable or disable the running daemon's SMSC links.
    Smsc {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        cmd: SmscCmd,
    },
    /// A narrated walk through an SMS verification in lab mode (starts a
    /// throw-away lab daemon if none answers at the config's API address).
    Demo {
        /// Configuration file (lab mode).
        #[arg(long, short, default_value = "conf/verigate.toml")]
        config: std::path::PathBuf,
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

#[derive(Debug, clap::Args)]
struct AdminArgs {
    /// Configuration file the daemon runs with (admin address and token).
    #[arg(long, short, default_value = "conf/verigate.toml", global = true)]
    config: std::path::PathBuf,
    /// Override a value: section.key=value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    set: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum RegistryCmd {
    /// App platforms of the registry.
    Apps {
        #[command(subcommand)]
        cmd: RegistryAppsCmd,
    },
    /// The apps a number is bound to.
    Show {
        /// The number (E.164, or national in the registry's region).
        msisdn: String,
    },
    /// The number changed hands: purge its bindings, notify every bound app.
    Recycle {
        /// The number (E.164, or national in the registry's region).
        msisdn: String,
        /// When it was recycled, YYYY-MM-DD (default: now).
        #[arg(long)]
        date: Option<String>,
    },
    /// Recycle every number of the carrier's deactivation file (CSV:
    /// msisdn[,date], or a header naming those columns). The whole file is
    /// checked first: one bad line and nothing is recycled.
    Import {
        /// The CSV file.
        file: std::path::PathBuf,
    },
    /// Notifications to app platforms waiting for delivery.
    Outbox {
        /// Only this app platform's.
        #[arg(long)]
        service: Option<String>,
        /// At most this many (oldest first).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
enum TxrelayCmd {
    /// The subscriber directory (number ↔ SIM, line status, SIM changes).
    Subscribers {
        #[command(subcommand)]
        cmd: SubscribersCmd,
    },
    /// The key ceremony: zone-key components (dual control), activation,
    /// rotation, the DUKPT initial key.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
    /// A custodian enters their component (read from standard input, so
    /// it stays out of the shell's history); prints its KCV to compare.
    Component {
        #[command(subcommand)]
        cmd: ComponentCmd,
    },
    /// The keys kept: components waiting, zone keys, the initial key (KCVs only).
    Status,
    /// Combine the two components into the zone key, checked against the
    /// bank's KCV, and make it active.
    Activate {
        /// The bank's check value of the combined key (10 hex digits).
        #[arg(long)]
        kcv: String,
    },
    /// Like activate, with a zone key active: it keeps working for `overlap`.
    Rotate {
        /// The bank's check value of the new key.
        #[arg(long)]
        kcv: String,
        /// How long the old key keeps working (in-flight transactions finish).
        #[arg(long, default_value = "10m")]
        overlap: String,
    },
    /// Import the bank's DUKPT initial key, wrapped under the zone key
    /// (RFC 3394 with --ikid and --wrapped, or a TR-31 key block with --tr31).
    InitialKey {
        /// The initial key id (16 hex digits; a TR-31 block carries its own).
        #[arg(long, required_unless_present = "tr31")]
        ikid: Option<String>,
        /// The wrapped key (hex, RFC 3394).
        #[arg(long, required_unless_present = "tr31", conflicts_with = "tr31")]
        wrapped: Option<String>,
        /// A TR-31 version D key block (usage B1, AES, its IK block naming the id).
        #[arg(long)]
        tr31: Option<String>,
        /// The bank's KCV of the initial key.
        #[arg(long)]
        kcv: String,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCmd {
    /// Copy every table of a SQLite database into PostgreSQL.
    Copy {
        /// `sqlite://path` (the daemon stopped).
        #[arg(long)]
        from: String,
        /// `postgres://user@host/db` (its schema made if needed, and empty).
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum ComponentCmd {
    /// Enter component A or B.
    Add {
        /// A or B.
        slot: String,
    },
}

#[derive(Debug, Subcommand)]
enum SubscribersCmd {
    /// Load the carrier's extract (CSV: msisdn,imsi,status[,sim_changed_at],
    /// or a header naming them). The whole file is checked first.
    Import {
        /// The CSV file.
        file: std::path::PathBuf,
    },
    /// A number's line.
    Show {
        /// The number (E.164, or national in the relay's region).
        msisdn: String,
    },
}

#[derive(Debug, Subcommand)]
enum RegistryAppsCmd {
    /// List the app platforms.
    List,
    /// Register a service as an app platform.
    Add {
        /// Its service code (the service must exist).
        service: String,
        /// Where its notifications (unbind, recycled) are POSTed.
        notify_url: String,
        /// Signing secret of its notifications (≥ 16 characters; default: the
        /// service's webhook secret).
        #[arg(long)]
        secret: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ServicesCmd {
    /// List services and their keys.
    List,
    /// Add a service; prints its first API key (shown once).
    Add {
        /// Service code (a-z, 0-9, '-', '_').
        code: String,
        /// Display name used in messages.
        name: String,
        /// Allowed destination countries (ISO 3166, repeatable).
        #[arg(long = "country")]
        countries: Vec<String>,
    },
    /// Issue a new API key and revoke the others; prints the key (shown once).
    RotateKey {
        /// Service code.
        code: String,
    },
}

#[derive(Debug, Subcommand)]
enum SmscCmd {
    /// SMSCs with their binds, routes and whether they are enabled.
    List,
    /// Bind again and take traffic.
    Enable {
        /// SMSC name (as in the config).
        name: String,
    },
    /// Unbind gracefully (in-flight submits finish) and route its traffic
    /// elsewhere, or hold it queued until it is enabled again.
    Disable {
        /// SMSC name (as in the config).
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum VerifyCmd {
    /// Send a code to a number for a service.
    Start {
        /// Destination number (E.164).
        to: String,
        /// Service code.
        #[arg(long, default_value = "lab")]
        service: String,
        /// Template locale.
        #[arg(long)]
        locale: Option<String>,
    },
    /// Check a code.
    Check {
        /// Verification id.
        id: String,
        /// The code.
        code: String,
    },
    /// Show a verification and its delivery state.
    Show {
        /// Verification id.
        id: String,
    },
}

fn render_verification(v: &serde_json::Value) -> String {
    let mut s = format!(
        "{}  {}  to {}  status {}  attempts {}/{}  sends {}  expires {}",
        v["id"].as_str().unwrap_or(""),
        v["service"].as_str().unwrap_or(""),
        v["to"].as_str().unwrap_or(""),
        v["status"].as_str().unwrap_or(""),
        v["attempts"],
        v["max_attempts"],
        v["sends"],
        v["expires_at"].as_str().unwrap_or("")
    );
    if let Some(d) = v["delivery"].as_str() {
        s.push_str(&format!("  delivery {d}"));
    }
    if let Some(valid) = v["valid"].as_bool() {
        s.push_str(if valid {
            "  (code accepted)"
        } else {
            "  (code not accepted)"
        });
    }
    s.push('\n');
    s
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
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    wait_dlr: Option<Duration>,
    /// Submit window (requests in flight).
    #[arg(long, default_value_t = 10)]
    window: usize,
    /// Seconds to wait for the bind.
    #[arg(long, default_value = "10", value_parser = seconds)]
    bind_timeout: Duration,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Why a seconds flag does not read.
#[derive(Debug, thiserror::Error)]
enum SecondsError {
    #[error("{0:?} is not a number of seconds")]
    NotANumber(String),
    #[error("{0:?}: give seconds above 0 and at most 86400")]
    OutOfRange(String),
}

/// A number of seconds for a flag: finite, above zero, at most a day.
fn seconds(s: &str) -> Result<Duration, SecondsError> {
    let v: f64 = s.parse().map_err(|_| SecondsError::NotANumber(s.into()))?;
    if !(v > 0.0 && v <= 86_400.0) {
        return Err(SecondsError::OutOfRange(s.into()));
    }
    Ok(Duration::from_secs_f64(v))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            // Bad arguments exit 64 (EX_USAGE) like a bad config, so they
            // cannot be mistaken for the probe's "no bind" (2).
            return if usage {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // The daemon logs as its config's [log] says; operator tools only
    // errors. VERIGATE_LOG overrides the filter either way.
    let log = match &cli.cmd {
        Cmd::Run { config, set } => match verigate::config::load(config, set) {
            Ok(c) => c.log,
            Err(e) => {
                eprintln!("verigate: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        _ => verigate::config::LogConfig {
            filter: "error".into(),
            format: "text".into(),
        },
    };
    let spec = std::env::var("VERIGATE_LOG").unwrap_or_else(|_| log.filter.clone());
    // rsipstack logs every SIP message at info (with the phone numbers in
    // them): quiet unless the filter names it.
    let spec = if spec.contains("rsipstack") {
        spec
    } else {
        format!("{spec},rsipstack=warn")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.filter));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if log.format == "json" {
        logger.json().init();
    } else {
        logger.init();
    }
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
        Cmd::Migrate { config, set, url } => rt.block_on(migrate(&config, &set, url)),
        Cmd::Store {
            cmd: StoreCmd::Copy { from, to },
        } => rt.block_on(store_copy(&from, &to)),
        Cmd::Status(a) => rt.block_on(admin(
            &a,
            reqwest::Method::GET,
            "/admin/status",
            None,
            verigate::cli::render_status,
        )),
        Cmd::Verify { admin: a, cmd } => match cmd {
            VerifyCmd::Start {
                to,
                service,
                locale,
            } => rt.block_on(admin(
                &a,
                reqwest::Method::POST,
                "/admin/verify",
                Some(serde_json::json!({"service": service, "to": to, "locale": locale})),
                render_verification,
            )),
            VerifyCmd::Check { id, code } => rt.block_on(admin(
                &a,
                reqwest::Method::POST,
                &format!("/admin/verify/{id}/check"),
                Some(serde_json::json!({"code": code})),
                render_verification,
            )),
            VerifyCmd::Show { id } => rt.block_on(admin(
                &a,
                reqwest::Method::GET,
                &format!("/admin/verify/{id}"),
                None,
                render_verification,
            )),
        },
        Cmd::Services { admin: a, cmd } => match cmd {
            ServicesCmd::List => rt.block_on(admin(
                &a,
                reqwest::Method::GET,
                "/admin/services",
                None,
                verigate::cli::render_services,
            )),
            ServicesCmd::Add {
                code,
                name,
                countries,
            } => rt.block_on(admin(
                &a,
                reqwest::Method::POST,
                "/admin/services",
                Some(
                    serde_json::json!({"code": code, "name": name, "allowed_countries": countries}),
                ),
                |v| {
                    format!(
                        "service {} added; API key (shown once): {}\n",
                        v["code"].as_str().unwrap_or(""),
                        v["api_key"].as_str().unwrap_or("")
                    )
                },
            )),
            ServicesCmd::RotateKey { code } => rt.block_on(admin(
                &a,
                reqwest::Method::POST,
                &format!("/admin/services/{code}/rotate-key"),
                None,
                |v| {
                    let mut out = format!(
                        "new API key for {} (shown once): {}\n",
                        v["code"].as_str().unwrap_or(""),
                        v["api_key"].as_str().unwrap_or("")
                    );
                    match v["warning"].as_str() {
                        Some(w) => out.push_str(&format!("WARNING: {w}\n")),
                        None => out.push_str(&format!("{} old key(s) revoked\n", v["revoked"])),
                    }
                    out
                },
            )),
        },
        Cmd::Registry { admin: a, cmd } => match cmd {
            RegistryCmd::Import { file } => rt.block_on(import_csv(&a, &file, REGISTRY_IMPORT)),
            RegistryCmd::Outbox { service, limit } => {
                let mut path = format!("/admin/registry/outbox?limit={limit}");
                if let Some(s) = service {
                    path.push_str("&service=");
                    path.extend(percent_encoding::utf8_percent_encode(
                        &s,
                        percent_encoding::NON_ALPHANUMERIC,
                    ));
                }
                rt.block_on(admin(
                    &a,
                    reqwest::Method::GET,
                    &path,
                    None,
                    verigate::cli::render_outbox,
                ))
            }
            RegistryCmd::Apps {
                cmd: RegistryAppsCmd::List,
            } => rt.block_on(admin(
                &a,
                reqwest::Method::GET,
                "/admin/registry/apps",
                None,
                |v| {
                    let mut out = String::from("SERVICE          NOTIFY URL                                SIGNED\n");
                    for app in v["apps"].as_array().into_iter().flatten() {
                        out.push_str(&format!(
                            "{:<16} {:<41} {}\n",
                            app["service"].as_str().unwrap_or(""),
                            app["notify_url"].as_str().unwrap_or(""),
                            if app["signed"].as_bool() == Some(true) { "yes" } else { "no" }
                        ));
                    }
                    out
                },
            )),
            RegistryCmd::Apps {
                cmd:
                    RegistryAppsCmd::Add {
                        service,
                        notify_url,
                        secret,
                    },
            } => rt.block_on(admin(
                &a,
                reqwest::Method::POST,
                "/admin/registry/apps",
                Some(serde_json::json!({"service": service, "notify_url": notify_url, "secret": secret})),
                |v| {
                    format!(
                        "app platform {} added; notifications go to {}\n",
                        v["service"].as_str().unwrap_or(""),
                        v["notify_url"].as_str().unwrap_or("")
                    )
                },
            )),
            RegistryCmd::Show { msisdn } => rt.block_on(admin(
                &a,
                reqwest::Method::GET,
                &format!(
                    "/admin/registry/bindings/{}",
                    percent_encoding::utf8_percent_encode(&msisdn, percent_encoding::NON_ALPHANUMERIC)
                ),
                None,
                |v| {
                    let list = v["bindings"].as_array().cloned().unwrap_or_default();
                    if list.is_empty() {
                        return "bound to no app platform\n".to_string();
                    }
                    list.iter()
                        .map(|b| {
                            format!(
                                "{:<16} bound {}\n",
                                b["service"].as_str().unwrap_or(""),
                                b["bound_at"].as_str().unwrap_or("")
                            )
                        })
                        .collect()
                },
            )),
            RegistryCmd::Recycle { msisdn, date } => rt.block_on(admin(
                &a,
                reqwest::Method::POST,
                "/admin/registry/recycle",
                Some(serde_json::json!({"msisdn": msisdn, "date": date})),
                |v| {
                    format!(
                        "{} recycled at {}: unbound from {} app platform(s), {} notified\n",
                        v["msisdn"].as_str().unwrap_or(""),
                        v["recycled_at"].as_str().unwrap_or(""),
                        v["unbound"].as_array().map_or(0, Vec::len),
                        v["notified"]
                    )
                },
            )),
        },
        Cmd::Txrelay {
            admin: a,
            cmd: TxrelayCmd::Keys { cmd },
        } => rt.block_on(txrelay_keys(&a, cmd)),
        Cmd::Txrelay {
            admin: a,
            cmd: TxrelayCmd::Subscribers { cmd },
        } => match cmd {
            SubscribersCmd::Import { file } => rt.block_on(import_csv(&a, &file, SUBSCRIBERS_IMPORT)),
            SubscribersCmd::Show { msisdn } => rt.block_on(admin(
                &a,
                reqwest::Method::GET,
                &format!(
                    "/admin/txrelay/subscribers/{}",
                    percent_encoding::utf8_percent_encode(&msisdn, percent_encoding::NON_ALPHANUMERIC)
                ),
                None,
                |v| {
                    format!(
                        "{}  IMSI {}  {}  SIM changed {}\n",
                        v["msisdn"].as_str().unwrap_or(""),
                        v["imsi"].as_str().unwrap_or(""),
                        v["status"].as_str().unwrap_or(""),
                        v["sim_changed_at"].as_str().unwrap_or("never recorded")
                    )
                },
            )),
        },
        Cmd::Smsc { admin: a, cmd } => match cmd {
            SmscCmd::List => rt.block_on(admin(
                &a,
                reqwest::Method::GET,
                "/admin/smscs",
                None,
                verigate::cli::render_smscs,
            )),
            SmscCmd::Enable { name } => rt.block_on(switch_smsc(&a, &name, "enable")),
            SmscCmd::Disable { name } => rt.block_on(switch_smsc(&a, &name, "disable")),
        },
        Cmd::Demo { config, set } => match rt.block_on(verigate::demo::run(&config, &set)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("verigate demo: {e}");
                match e {
                    verigate::demo::DemoError::Environment(_) => ExitCode::from(71),
                    verigate::demo::DemoError::Config(_)
                    | verigate::demo::DemoError::NotLab
                    | verigate::demo::DemoError::NoApiKey => ExitCode::from(EXIT_CONFIG),
                }
            }
        },
        Cmd::Smpp {
            cmd: SmppCmd::Probe(a),
        } => rt.block_on(run_probe(a)),
    }
}

/// `verigate smsc enable|disable NAME`.
async fn switch_smsc(a: &AdminArgs, name: &str, verb: &str) -> ExitCode {
    admin(
        a,
        reqwest::Method::POST,
        &format!("/admin/smscs/{name}/{verb}"),
        None,
        |v| {
            let name = v["name"].as_str().unwrap_or("");
            match (v["enabled"] == true, v["changed"] == true) {
                (true, true) => format!("{name} enabled; its binds are connecting\n"),
                (true, false) => format!("{name} was already enabled\n"),
                (false, true) => format!(
                    "{name} disabled; binds unbind after in-flight submits, its traffic goes to the next route or waits\n"
                ),
                (false, false) => format!("{name} was already disabled\n"),
            }
        },
    )
    .await
}

async fn admin(
    a: &AdminArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
    render: impl Fn(&serde_json::Value) -> String,
) -> ExitCode {
    let target = match verigate::cli::AdminTarget::from_config(&a.config, &a.set) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("verigate: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match target.call(method, path, body).await {
        Ok(v) => {
            if a.json {
                println!("{v}");
            } else {
                print!("{}", render(&v));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("verigate: {e}");
            ExitCode::from(1)
        }
    }
}

/// `verigate registry import FILE`: the file checked whole here, then sent
/// in chunks (the daemon checks each again).
/// Checks a whole file and cuts it into chunks to send (the bad lines if any).
type ChunkFile = fn(
    &str,
    &verigate::config::Config,
) -> Result<Vec<String>, Vec<verigate::registry::import::BadLine>>;

/// What a CSV import is: how the file is checked and cut (the config's
/// region given), where its chunks go, the counters the daemon answers
/// with, what a bad file did not do, and the summary line.
struct CsvImport {
    chunks: ChunkFile,
    path: &'static str,
    counters: &'static [&'static str],
    nothing: &'static str,
    summary: fn(&[u64]) -> String,
}

/// `verigate … import FILE`: the file checked whole here, then sent in
/// chunks (the daemon checks each again); importing it again is harmless.
async fn import_csv(a: &AdminArgs, file: &std::path::Path, what: CsvImport) -> ExitCode {
    let cfg = match verigate::config::load(&a.config, &a.set) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("verigate: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("verigate: cannot read {}: {e}", file.display());
            return ExitCode::from(EXIT_INPUT);
        }
    };
    let chunks = match (what.chunks)(&text, &cfg) {
        Ok(c) => c,
        Err(bad) => {
            eprintln!(
                "verigate: {}: {} bad line(s); {}",
                file.display(),
                bad.len(),
                what.nothing
            );
            for b in &bad {
                eprintln!("  {b}");
            }
            return ExitCode::from(EXIT_INPUT);
        }
    };
    let target = match verigate::cli::AdminTarget::from_config(&a.config, &a.set) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("verigate: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut totals = vec![0u64; what.counters.len()];
    for chunk in chunks {
        match target.post_csv(what.path, chunk).await {
            Ok(v) => {
                for (t, k) in totals.iter_mut().zip(what.counters) {
                    *t += v[*k].as_u64().unwrap_or(0);
                }
            }
            Err(e) => {
                // Chunks already sent stay applied; the file can be sent again.
                eprintln!(
                    "verigate: {e} (after {}; the file can be imported again)",
                    (what.summary)(&totals)
                );
                return ExitCode::from(1);
            }
        }
    }
    if a.json {
        let v: serde_json::Map<String, serde_json::Value> = what
            .counters
            .iter()
            .zip(&totals)
            .map(|(k, t)| ((*k).to_string(), serde_json::json!(t)))
            .collect();
        println!("{}", serde_json::Value::Object(v));
    } else {
        println!("{}", (what.summary)(&totals));
    }
    ExitCode::SUCCESS
}

/// The region a section reads national numbers in (its own, else verify's).
fn region_of<'a>(own: &'a str, cfg: &'a verigate::config::Config) -> &'a str {
    if own.is_empty() {
        &cfg.verify.default_region
    } else {
        own
    }
}

/// `verigate registry import FILE`.
const REGISTRY_IMPORT: CsvImport = CsvImport {
    chunks: |text, cfg| verigate::cli::import_chunks(text, region_of(&cfg.registry.region, cfg)),
    path: "/admin/registry/import",
    counters: &["recycled", "unbound", "notified"],
    nothing: "nothing was recycled",
    summary: |t| {
        format!(
            "{} number(s) recycled: {} binding(s) purged, {} app notification(s) queued",
            t[0], t[1], t[2]
        )
    },
};

/// `verigate txrelay subscribers import FILE`.
const SUBSCRIBERS_IMPORT: CsvImport = CsvImport {
    chunks: |text, cfg| verigate::cli::subscriber_chunks(text, region_of(&cfg.txrelay.region, cfg)),
    path: "/admin/txrelay/subscribers/import",
    counters: &["added", "changed", "sim_changes"],
    nothing: "nothing was changed",
    summary: |t| {
        format!(
            "{} line(s) added, {} changed ({} SIM change(s) recorded)",
            t[0], t[1], t[2]
        )
    },
};

/// `verigate txrelay keys …`.
async fn txrelay_keys(a: &AdminArgs, cmd: KeysCmd) -> ExitCode {
    let post = reqwest::Method::POST;
    match cmd {
        KeysCmd::Component {
            cmd: ComponentCmd::Add { slot },
        } => {
            eprintln!("component {slot} (hex), then Enter:");
            let mut line = zeroize::Zeroizing::new(String::new());
            if let Err(e) = std::io::stdin().read_line(&mut line) {
                eprintln!("verigate: cannot read the component: {e}");
                return ExitCode::from(EXIT_INPUT);
            }
            // (The request body holds the component for as long as the
            // call lasts; the typed line is zeroized.)
            let body = serde_json::json!({"slot": slot, "component": line.trim()});
            admin(a, post, "/admin/txrelay/keys/components", Some(body), |v| {
                format!(
                    "component {} entered; its check value is {} (compare it with yours)\n",
                    v["slot"].as_str().unwrap_or(""),
                    v["kcv"].as_str().unwrap_or("")
                )
            })
            .await
        }
        KeysCmd::Status => {
            admin(a, reqwest::Method::GET, "/admin/txrelay/keys", None, |v| {
                let mut out = format!(
                    "{:<10} {:<18} {:<10} {:<9} {}\n",
                    "KIND", "SLOT", "KCV", "STATE", "RETIRES"
                );
                for k in v["keys"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "{:<10} {:<18} {:<10} {:<9} {}\n",
                        k["kind"].as_str().unwrap_or(""),
                        k["slot"].as_str().unwrap_or(""),
                        k["kcv"].as_str().unwrap_or(""),
                        k["state"].as_str().unwrap_or(""),
                        k["retire_at"].as_str().unwrap_or("-"),
                    ));
                }
                out
            })
            .await
        }
        KeysCmd::Activate { kcv } => {
            admin(
                a,
                post,
                "/admin/txrelay/keys/activate",
                Some(serde_json::json!({"kcv": kcv})),
                |v| {
                    format!(
                        "zone key active (KCV {})\n",
                        v["kcv"].as_str().unwrap_or("")
                    )
                },
            )
            .await
        }
        KeysCmd::Rotate { kcv, overlap } => {
            let body = serde_json::json!({"kcv": kcv, "overlap": overlap});
            admin(a, post, "/admin/txrelay/keys/activate", Some(body), |v| {
                format!(
                    "new zone key active (KCV {}); the old one keeps working for its overlap\n",
                    v["kcv"].as_str().unwrap_or("")
                )
            })
            .await
        }
        KeysCmd::InitialKey {
            ikid,
            wrapped,
            tr31,
            kcv,
        } => {
            let body = match tr31 {
                Some(block) => serde_json::json!({"key_block": block, "kcv": kcv}),
                None => serde_json::json!({"initial_key_id": ikid, "wrapped": wrapped, "kcv": kcv}),
            };
            admin(a, post, "/admin/txrelay/keys/initial", Some(body), |v| {
                format!(
                    "initial key {} imported (KCV {})\n",
                    v["initial_key_id"].as_str().unwrap_or(""),
                    v["kcv"].as_str().unwrap_or("")
                )
            })
            .await
        }
    }
}

/// Exit status for unusable input data (EX_DATAERR from sysexits.h).
const EXIT_INPUT: u8 = 65;

/// Exit status for a configuration error (EX_USAGE from sysexits.h).
const EXIT_CONFIG: u8 = 64;

/// `verigate store copy`.
async fn store_copy(from: &str, to: &str) -> ExitCode {
    let Some(path) = from.strip_prefix("sqlite://") else {
        eprintln!("verigate store copy: --from {from:?} must be sqlite://path");
        return ExitCode::from(EXIT_CONFIG);
    };
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        eprintln!("verigate store copy: --to must be a postgres:// URL");
        return ExitCode::from(EXIT_CONFIG);
    }
    if !std::path::Path::new(path).exists() {
        eprintln!("verigate store copy: {path}: no such database");
        return ExitCode::from(66);
    }
    let shown = to.split('@').next_back().unwrap_or(to);
    // Bring the SQLite file to this build's schema first (as a start would).
    match verigate::store::sqlite::SqliteStore::open(path).await {
        Ok(s) => s.close().await,
        Err(e) => {
            eprintln!("verigate store copy: {path}: {e}");
            return ExitCode::from(71);
        }
    }
    let result = match verigate::store::postgres::PostgresStore::open(to, 2).await {
        Ok(pg) => verigate::store::postgres::copy::from_sqlite(path, &pg).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(c) => {
            let total: u64 = c.tables.iter().map(|t| t.1).sum();
            for (t, n) in c.tables.iter().filter(|t| t.1 > 0) {
                println!("{t:<22} {n}");
            }
            println!("copied {total} rows from {path} to {shown}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("verigate store copy: {e}");
            ExitCode::from(if matches!(e, verigate::store::StoreError::Conflict(_)) {
                65
            } else {
                71
            })
        }
    }
}

/// `verigate migrate`.
async fn migrate(config: &std::path::Path, set: &[String], url: Option<String>) -> ExitCode {
    let url = match url {
        Some(u) => u,
        None => match verigate::config::load(config, set) {
            Ok(c) => match &c.store {
                verigate::config::StoreConfig::Sqlite { path } => format!("sqlite://{path}"),
                verigate::config::StoreConfig::Postgres { url, .. } => url.clone(),
            },
            Err(e) => {
                eprintln!("verigate: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let done = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match verigate::store::postgres::PostgresStore::open(&url, 2).await {
            Ok(s) => s
                .schema_version()
                .await
                .map(|v| (v, verigate::store::postgres::schema_latest())),
            Err(e) => Err(e),
        }
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        match verigate::store::sqlite::SqliteStore::open(path).await {
            Ok(s) => {
                s.close().await;
                let v = verigate::store::sqlite::schema_latest();
                Ok((v, v))
            }
            Err(e) => Err(e),
        }
    } else {
        eprintln!("verigate migrate: --url {url:?} is neither postgres://… nor sqlite://…");
        return ExitCode::from(EXIT_CONFIG);
    };
    let shown = url.split('@').next_back().unwrap_or(&url);
    match done {
        Ok((v, latest)) => {
            println!("{shown}: schema at version {v} (this build writes {latest})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("verigate migrate: {shown}: {e}");
            ExitCode::from(71)
        }
    }
}

fn check_config(path: &std::path::Path, set: &[String]) -> ExitCode {
    match verigate::config::load(path, set) {
        Ok(c) => {
            println!(
                "{}: ok ({} SMSC, {} SIP trunk, {} flash-call pool, {} voice-gateway service number, {} service{})",
                path.display(),
                c.smsc.len(),
                c.sip_trunk.len(),
                c.flash_call.pool.len(),
                c.voice_gateway.len(),
                c.service.len(),
                if c.lab.is_lab() {
                    ", lab mode"
                } else {
                    ""
                }
            );
            // The caller ID is the code: say how guessable each pool makes it.
            for (i, pool) in c.flash_call.pool.iter().enumerate() {
                if let Ok(cli) = verigate::flashcall::CliPool::new(
                    &pool.numbers,
                    &pool.ranges,
                    pool.report_digits,
                ) {
                    let attempts = c.verify.max_attempts;
                    println!(
                        "flash_call.pool[{i}] ({}): {} numbers; guess probability {attempts}/{} = {:.3}% per verification (verify.max_attempts / pool)",
                        pool.countries.join(", "),
                        cli.size(),
                        cli.size(),
                        100.0 * f64::from(attempts) / cli.size() as f64,
                    );
                }
            }
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
        wait_dlr: a.wait_dlr,
        window: a.window,
        bind_timeout: a.bind_timeout,
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

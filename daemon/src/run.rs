//! `verigate run`: validate config, open the store, start the SMSC links,
//! the outbox workers and the HTTP API; drain on SIGTERM, reload on SIGHUP.

use crate::app::{api_key_hash, AppState};
use crate::clock::Clock;
use crate::config::{self, BindKind, Config, SmscEntry, SplitKind};
use crate::host::HostError;
use crate::outbox::{self, smpp::SmppGateway, SenderConfig};
use crate::random::Random;
use crate::smpp::{BindLayout, Router, SmscClient, SmscConfig};
use crate::store::sqlite::SqliteStore;
use crate::store::{ApiKeyRecord, Service, Store};
use crate::verify::code::ServerSecret;
use crate::verify::service::VerifyService;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Why the daemon could not start; each says who must act.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is wrong (exit 64).
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Something on this machine is in the way (exit 71): a port, a file,
    /// a missing program.
    #[error(transparent)]
    Environment(#[from] HostError),
}

/// Builds the SMPP client settings of one configured SMSC.
pub fn smsc_config(e: &SmscEntry) -> SmscConfig {
    let mut c = SmscConfig::new(&e.name, &e.host, e.port, &e.system_id, &e.password);
    c.layout = match e.bind {
        BindKind::Transceiver => BindLayout::Transceiver(e.binds),
        BindKind::TxRx => BindLayout::TxRx {
            tx: e.binds,
            rx: e.binds,
        },
    };
    c.session.window = e.window;
    c.start_disabled = e.disabled;
    if e.rate > 0.0 {
        c.session.rate_per_sec = Some(e.rate);
    }
    c.split_mode = match e.split {
        SplitKind::Udh8 => verigate_codecs::text::SplitMode::Udh8,
        SplitKind::Udh16 => verigate_codecs::text::SplitMode::Udh16,
        SplitKind::Sar => verigate_codecs::text::SplitMode::Sar,
        SplitKind::Payload => verigate_codecs::text::SplitMode::Payload,
    };
    c
}

/// Creates configured services and their bootstrap API keys if missing.
pub async fn bootstrap_services(
    store: &dyn Store,
    secret: &ServerSecret,
    cfg: &Config,
    now: crate::store::Millis,
) -> Result<(), StartError> {
    let env = |e: crate::store::StoreError| HostError::new("store", e);
    for s in &cfg.service {
        let settings = serde_json::json!({
            "allowed_countries": s.allowed_countries,
            "webhook_url": s.webhook_url,
            "webhook_secret": s.webhook_secret,
            "mo_send_password": s.mo_send_password,
        });
        match store.get_service(&s.code).await.map_err(env)? {
            None => store
                .create_service(&Service {
                    code: s.code.clone(),
                    name: s.name.clone(),
                    settings,
                    created_at: now,
                })
                .await
                .map_err(env)?,
            Some(_) => store
                .update_service_settings(&s.code, &settings)
                .await
                .map_err(env)?,
        }
        if let Some(key) = &s.api_key {
            bootstrap_key(store, secret, &s.code, key, now).await?;
        }
    }
    // MO replies that belong to no app (an unknown token, no token) are
    // sent for this service, the registry short code's for its own; they
    // have no API key.
    let systems = [
        (
            !cfg.mo_login.short_code.is_empty(),
            crate::mologin::SYSTEM_SERVICE,
            "MO login replies",
        ),
        (
            cfg.registry.enabled && !cfg.registry.short_code.is_empty(),
            crate::registry::mo::SYSTEM_SERVICE,
            "Number registry replies",
        ),
        (
            cfg.txrelay.enabled && !cfg.txrelay.short_code.is_empty(),
            crate::txrelay::mo::SYSTEM_SERVICE,
            "Payments by SMS replies",
        ),
    ];
    for (_, code, name) in systems.iter().filter(|s| s.0) {
        if store.get_service(code).await.map_err(env)?.is_none() {
            store
                .create_service(&Service {
                    code: (*code).into(),
                    name: (*name).into(),
                    settings: serde_json::json!({}),
                    created_at: now,
                })
                .await
                .map_err(env)?;
        }
    }
    // Services the registry and the app side name must exist (made here
    // from [[service]], or before with `verigate services add`).
    let named = cfg
        .bindings
        .iter()
        .map(|b| ("bindings", &b.service))
        .chain(
            cfg.registry
                .self_care_services
                .iter()
                .map(|s| ("registry.self_care_services", s)),
        )
        .chain(
            cfg.registry
                .apps
                .iter()
                .map(|a| ("registry.apps", &a.service)),
        );
    let mut missing = Vec::new();
    for (key, code) in named {
        if store.get_service(code).await.map_err(env)?.is_none() {
            missing.push(format!(
                "{key}: no service {code:?} (add it as a [[service]] or with `verigate services add`)"
            ));
        }
    }
    if !missing.is_empty() {
        return Err(StartError::Config(config::ConfigError::Invalid {
            path: "the configuration".into(),
            problems: missing,
        }));
    }
    // App platforms the config declares (a lab's, or a carrier's fixed
    // set): registered once; the CLI manages the others.
    if cfg.registry.enabled {
        for a in &cfg.registry.apps {
            match store.get_registry_app(&a.service).await.map_err(env)? {
                None => store
                    .add_registry_app(&crate::store::RegistryApp {
                        service: a.service.clone(),
                        notify_url: a.notify_url.clone(),
                        created_at: now,
                    })
                    .await
                    .map_err(env)?,
                // The config is the source of truth for the apps it declares.
                Some(have) if have.notify_url != a.notify_url => {
                    store
                        .set_registry_app_url(&a.service, &a.notify_url)
                        .await
                        .map_err(env)?;
                    tracing::info!(service = %a.service, notify_url = %a.notify_url, "registry.apps: notify URL changed");
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Makes a service's configured API key usable. A key revoked since (by
/// `verigate services rotate-key`) stays revoked: the config must not bring
/// it back. A new key in the config becomes the service's key and revokes
/// the others, as a rotation does.
async fn bootstrap_key(
    store: &dyn Store,
    secret: &ServerSecret,
    service: &str,
    key: &str,
    now: crate::store::Millis,
) -> Result<(), StartError> {
    let env = |e: crate::store::StoreError| HostError::new("store", e);
    let hash = api_key_hash(secret, key);
    let known = store.list_api_keys(service).await.map_err(env)?;
    match known.iter().find(|k| k.hash == hash) {
        Some(k) if k.revoked_at.is_some() => {
            warn!(
                service,
                key_id = %k.key_id,
                "the api_key in the config was revoked (verigate services rotate-key) and stays revoked; remove it from the config"
            );
            Ok(())
        }
        Some(_) => Ok(()),
        None => {
            if let Some(other) = store.find_api_key(&hash).await.map_err(env)? {
                return Err(StartError::Config(config::ConfigError::Invalid {
                    path: "configuration".into(),
                    problems: vec![format!(
                        "service {service}: api_key is already the API key of service {:?}; give each service its own key",
                        other.service
                    )],
                }));
            }
            let key_id = format!("cfg-{service}-{}", hex::encode(&hash[..4]));
            store
                .add_api_key(&ApiKeyRecord {
                    key_id: key_id.clone(),
                    service: service.to_string(),
                    hash,
                    created_at: now,
                    revoked_at: None,
                })
                .await
                .map_err(env)?;
            let revoked = store
                .revoke_api_keys(service, &key_id, now)
                .await
                .map_err(env)?;
            if revoked > 0 {
                info!(
                    service,
                    revoked, "a new api_key in the config replaced the service's earlier keys"
                );
            }
            Ok(())
        }
    }
}

/// A lab simulator child process and where it listens.
struct LabSim {
    child: Child,
    /// SMPP or SIP address.
    addr: SocketAddr,
    control: String,
}

impl Drop for LabSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_lab_sim(l: &config::LabSmsc, smsc: Option<&SmscEntry>) -> Result<LabSim, StartError> {
    let mut args: Vec<String> = ["smsc", "--listen", &l.listen, "--control", &l.control]
        .map(String::from)
        .to_vec();
    if let Some(s) = smsc {
        args.extend(["--system-id".into(), s.system_id.clone()]);
        args.extend(["--password".into(), s.password.clone()]);
    }
    if let Some(d) = l.dlr_delay {
        args.extend(["--dlr-delay-ms".into(), d.0.as_millis().to_string()]);
    }
    spawn_sim(&args, "smpp", &l.listen, &l.control)
}

fn start_lab_switch(l: &config::LabSwitch) -> Result<LabSim, StartError> {
    let mut args: Vec<String> = ["switch", "--listen", &l.listen, "--control", &l.control]
        .map(String::from)
        .to_vec();
    if let (Some(u), Some(p)) = (&l.username, &l.password) {
        args.extend([
            "--username".into(),
            u.clone(),
            "--password".into(),
            p.clone(),
        ]);
    }
    spawn_sim(&args, "sip", &l.listen, &l.control)
}

fn start_lab_bank(l: &config::LabBank) -> Result<LabSim, StartError> {
    let mut args: Vec<String> = vec!["bank".into(), "--listen".into(), l.listen.clone()];
    for a in &l.accounts {
        args.extend(["--account".into(), a.clone()]);
    }
    spawn_sim(&args, "bank", &l.listen, &l.listen)
}

/// Starts `verigate-sim` (beside this binary) with `args`; it prints one
/// JSON line naming its ports (`addr_key` and `control`; a simulator with
/// one port names it once, and it is both).
fn spawn_sim(
    args: &[String],
    addr_key: &str,
    listen: &str,
    control: &str,
) -> Result<LabSim, StartError> {
    let exe = std::env::current_exe()
        .map_err(|e| HostError::new("cannot find this program's path", e))?;
    let sim: PathBuf = exe.with_file_name("verigate-sim");
    if !sim.exists() {
        return Err(HostError::msg(format!(
            "lab mode needs {} (build it with `cargo build --bins`)",
            sim.display()
        ))
        .into());
    }
    let mut child = Command::new(&sim)
        .args(args)
        .arg("--exit-with-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| HostError::new(format!("cannot start {}", sim.display()), e))?;
    let mut line = String::new();
    let out = child.stdout.take().expect("piped");
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .map_err(|e| HostError::new("lab simulator", e))?;
    let banner: Option<(SocketAddr, String)> = serde_json::from_str::<serde_json::Value>(&line)
        .ok()
        .and_then(|v| {
            let addr = v[addr_key].as_str()?;
            Some((
                addr.parse().ok()?,
                v["control"].as_str().unwrap_or(addr).to_string(),
            ))
        });
    match banner {
        Some((addr, control)) => Ok(LabSim {
            child,
            addr,
            control,
        }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(HostError::msg(format!(
                "lab simulator `{}` did not start (is {listen} or {control} in use?)",
                args[0]
            ))
            .into())
        }
    }
}

/// The voice prompts, loaded (and checked) before any port is bound; None
/// when no trunk is configured.
fn load_prompts(cfg: &Config) -> Result<Option<crate::calls::Prompts>, StartError> {
    if cfg.sip_trunk.is_empty() {
        return Ok(None);
    }
    let dir = if cfg.voice.prompts_dir.is_empty() {
        verigate_prompts::bundled_dir()
    } else {
        PathBuf::from(&cfg.voice.prompts_dir)
    };
    crate::calls::Prompts::load(&dir, &cfg.voice.locales)
        .map(Some)
        .map_err(|e| HostError::new("voice.locales", e).into())
}

/// The call worker's settings in `cfg`.
pub(crate) fn call_settings(cfg: &Config) -> crate::calls::CallSettings {
    let v = &cfg.voice;
    crate::calls::CallSettings {
        voice: crate::sip::script::VoiceTiming {
            ring_timeout: v.ring_timeout.0,
            dtmf_wait: v.dtmf_wait.0,
            max_duration: v.max_duration.0,
            max_repeats: v.max_repeats,
        },
        flash: crate::flashcall::FlashTiming {
            ring_timeout: cfg.flash_call.ring_timeout.0,
            ring_hold: cfg.flash_call.ring_hold.0,
        },
        max_attempts: v.max_attempts,
        retry_delay: cfg.outbox.retry_delay.0,
        batch: 256,
        idle_poll: Duration::from_millis(50),
        reading: verigate_prompts::Reading::default(),
        sms_sender: cfg.verify.sender.clone(),
        end_grace: crate::sip::engine::end_grace(cfg.sip.t1.0),
    }
}

/// Starts the call side: SIP engine, call worker (reading `live` for each
/// call). None when no trunk is configured (the call channels then refuse
/// starts).
#[allow(clippy::too_many_arguments)] // the start's one call site, each part distinct
async fn start_calls(
    cfg: &Config,
    prompts: Option<crate::calls::Prompts>,
    lab: Option<&LabSim>,
    store: Arc<dyn Store>,
    verify: &Arc<VerifyService>,
    live: &crate::calls::LiveSettings,
    inputs: (Clock, Random),
    stage: &crate::shutdown::Stage,
) -> Result<Option<crate::sip::engine::SipEngine>, StartError> {
    let channels = crate::verify::channels::CallChannels::from_config(cfg)
        .map_err(|e| HostError::new("flash_call.pool", e))?;
    verify.set_call_channels(channels);
    let Some(prompts) = prompts else {
        return Ok(None);
    };
    let mut trunks = cfg.sip_trunk.clone();
    for t in &mut trunks {
        // In lab mode a trunk with port 0 means "the lab switch".
        if let (Some(lab), 0) = (lab, t.port) {
            t.host = lab.addr.ip().to_string();
            t.port = lab.addr.port();
        }
    }
    // The engine outlives the worker: calls ended at shutdown still need
    // their CANCEL/BYE sent. Dropping the engine's last clone does not stop
    // it; the token does, after the worker is done.
    let engine_stop = tokio_util::sync::CancellationToken::new();
    let engine = crate::sip::engine::SipEngine::start(
        &cfg.sip,
        &trunks,
        inputs.1.clone(),
        engine_stop.clone(),
    )
    .await
    .map_err(|e| HostError::new("SIP", e))?;
    let (hang_tx, hang_rx) = mpsc::unbounded_channel();
    verify.set_hangups(hang_tx);
    let worker = crate::calls::run(
        store,
        Arc::new(engine.clone()),
        Arc::new(prompts),
        live.clone(),
        hang_rx,
        inputs,
        stage.token(),
    );
    stage.spawn(async move {
        worker.await;
        engine_stop.cancel();
    });
    Ok(Some(engine))
}

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(path: &Path, sets: &[String]) -> Result<(), StartError> {
    let mut cfg = config::load(path, sets)?;
    let prompts = load_prompts(&cfg)?;
    let clock = Clock::system();
    let rng = Random::os();
    // Bind the listeners first so a busy port fails before anything else starts.
    let api_addr: SocketAddr = cfg.api.listen.parse().expect("validated");
    let listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .map_err(|e| HostError::new(format!("cannot listen on {api_addr} (api.listen)"), e))?;
    let admin_addr: SocketAddr = cfg.api.admin_listen.parse().expect("validated");
    let admin_listener = tokio::net::TcpListener::bind(admin_addr)
        .await
        .map_err(|e| {
            HostError::new(
                format!("cannot listen on {admin_addr} (api.admin_listen)"),
                e,
            )
        })?;
    let secret = ServerSecret::load_or_create(Path::new(&cfg.secrets.server_secret_file), &rng)
        .map_err(|e| HostError::new("server secret", e))?;
    let admin_token = admin_token(&cfg, &rng)?;
    let (store, sqlite): (Arc<dyn Store>, Option<SqliteStore>) = match &cfg.store {
        config::StoreConfig::Sqlite { path: db } => {
            let s = SqliteStore::open(db)
                .await
                .map_err(|e| HostError::new(format!("store {db}"), e))?;
            (Arc::new(s.clone()), Some(s))
        }
        config::StoreConfig::Postgres { url, pool } => {
            let shown = url.split('@').next_back().unwrap_or(url);
            let s = crate::store::postgres::PostgresStore::open(url, *pool)
                .await
                .map_err(|e| HostError::new(format!("store {shown}"), e))?;
            info!(store = %shown, "on PostgreSQL");
            (Arc::new(s), None)
        }
    };
    let lab = match &cfg.lab.smsc {
        Some(l) => Some(start_lab_sim(l, cfg.smsc.first())?),
        None => None,
    };
    let lab_bank = match &cfg.lab.bank {
        Some(l) => Some(start_lab_bank(l)?),
        None => None,
    };
    // URLs naming this daemon (`http://self/…`) or the lab SMSC's sink
    // (`http://lab-smsc/…`), now that their ports are known.
    // (A reload compares files: it keeps the file's form.)
    let as_written = cfg.clone();
    let own = listener.local_addr().unwrap_or(api_addr);
    let labs = config::local_urls::Labs {
        smsc: lab.as_ref().map(|l| l.control.as_str()),
        bank: lab_bank.as_ref().map(|l| l.control.as_str()),
    };
    config::local_urls::resolve_all(&mut cfg, own, labs).map_err(|problems| {
        StartError::Config(config::ConfigError::Invalid {
            path: path.display().to_string(),
            problems,
        })
    })?;
    let cfg = cfg;
    bootstrap_services(&*store, &secret, &cfg, clock.now_ms()).await?;
    let (ev_tx, ev_rx) = mpsc::channel(4096);
    let mut router = Router::new();
    for e in &cfg.smsc {
        let mut sc = smsc_config(e);
        // In lab mode an SMSC with port 0 means "the lab simulator".
        if let (Some(lab), 0) = (&lab, e.port) {
            sc.host = lab.addr.ip().to_string();
            sc.port = lab.addr.port();
        }
        router.add(
            SmscClient::start(sc, ev_tx.clone(), rng.clone()),
            &e.prefixes,
        );
    }
    drop(ev_tx);
    let router = Arc::new(router);
    let verify = Arc::new(VerifyService::new(
        store.clone(),
        secret.clone(),
        cfg.verify.clone(),
        rng.clone(),
    ));
    let lab_switch = match &cfg.lab.switch {
        Some(l) => Some(start_lab_switch(l)?),
        None => None,
    };
    // Shutdown in this order, each stage done before the next is told: the
    // API and admin servers stop taking requests; calls in progress get
    // CANCEL or BYE and their outcomes stored; the outbox records the
    // submits in flight; webhook deliveries and relay work in flight
    // finish; the expiry sweep stops; the binds unbind and the receipts and
    // MOs already taken are stored; then the store closes.
    let mut tree = crate::shutdown::Shutdown::new();
    let api_stage = tree.stage("api", Duration::from_secs(10));
    let calls_stage = tree.stage(
        "calls",
        crate::sip::engine::end_grace(cfg.sip.t1.0) + Duration::from_secs(5),
    );
    let outbox_stage = tree.stage("outbox", cfg.outbox.lease.0 / 2 + Duration::from_secs(5));
    let webhook_stage = tree.stage("webhooks", Duration::from_secs(30));
    let sweep_stage = tree.stage("housekeeping", Duration::from_secs(10));
    let smpp_stage = tree.stage("smpp", Duration::from_secs(20));
    let call_live = crate::calls::LiveSettings::new(call_settings(&cfg));
    let calls = start_calls(
        &cfg,
        prompts,
        lab_switch.as_ref(),
        store.clone(),
        &verify,
        &call_live,
        (clock.clone(), rng.clone()),
        &calls_stage,
    )
    .await?;
    for (i, p) in cfg.flash_call.pool.iter().enumerate() {
        let size = crate::flashcall::CliPool::new(&p.numbers, &p.ranges, p.report_digits)
            .map_or(0, |c| c.size());
        if size < 1_000 {
            warn!(
                pool = i,
                numbers = size,
                "flash_call.pool has fewer than 1000 numbers: guessing callers pass about {} in 1000 verifications",
                crate::flashcall::settings::guesses_passing_per_1000(cfg.verify.max_attempts, size)
            );
        }
    }
    for g in &cfg.voice_gateway {
        if g.k2 == crate::config::K2Scheme::Md5Legacy {
            warn!(sn = %g.sn, "voice_gateway uses k2 = \"md5-legacy\" (MD5 is broken); move the operator to hmac-sha256");
        }
    }
    let mut mo_cfg = cfg.mo_login.clone();
    if mo_cfg.region.is_empty() {
        mo_cfg.region = cfg.verify.default_region.clone();
    }
    let mo_login = Arc::new(crate::mologin::MoLoginService::new(
        store.clone(),
        secret.clone(),
        mo_cfg,
        rng.clone(),
    ));
    let state_secret = secret.clone();
    let callers = Arc::new(crate::app::CallerCache::new(crate::app::CALLER_CACHE_TTL));
    let auth_failures = Arc::new(crate::limits::AuthFailures::new(
        cfg.verify.limits.failed_auth_per_ip,
    ));
    let voice_gateway = Arc::new(crate::voice_gateway::VoiceGateway::new(
        store.clone(),
        &cfg,
        rng.clone(),
    ));
    let registry = cfg.registry.enabled.then(|| {
        let region = if cfg.registry.region.is_empty() {
            &cfg.verify.default_region
        } else {
            &cfg.registry.region
        };
        Arc::new(
            crate::registry::Registry::new(store.clone(), region, rng.clone())
                .with_notify_for(cfg.registry.notify_for.millis())
                .with_self_care(
                    cfg.registry.self_care_services.clone(),
                    cfg.registry.proof_ttl.millis(),
                ),
        )
    });
    let bindings = (!cfg.bindings.is_empty()).then(|| {
        Arc::new(crate::bindings::BindingsService::new(
            store.clone(),
            verify.clone(),
            &cfg.bindings,
            &cfg.verify.default_region,
            rng.clone(),
        ))
    });
    let txrelay = cfg.txrelay.enabled.then(|| {
        let region = if cfg.txrelay.region.is_empty() {
            &cfg.verify.default_region
        } else {
            &cfg.txrelay.region
        };
        Arc::new(
            crate::txrelay::TxRelay::new(
                store.clone(),
                region,
                cfg.txrelay.monitored_days,
                &secret,
            )
            .with_settings(
                crate::txrelay::RelaySettings::from_config(&cfg.txrelay),
                rng.clone(),
            ),
        )
    });
    if let Some(r) = &txrelay {
        let work = r
            .workers(clock.clone(), webhook_stage.token())
            .map_err(|e| HostError::new("the relay's bank HTTP client", e))?;
        webhook_stage.spawn(work);
    }
    let state = AppState {
        clock: clock.clone(),
        store: store.clone(),
        verify: verify.clone(),
        txrelay: txrelay.clone(),
        secret,
        trust_forwarded_for: cfg.api.trust_forwarded_for,
        callers: callers.clone(),
        auth_failures: auth_failures.clone(),
        voice_gateway: voice_gateway.clone(),
        mo_login: mo_login.clone(),
        registry: registry.clone(),
        bindings,
    };
    let sender_cfg = SenderConfig {
        batch: cfg.outbox.batch,
        lease: cfg.outbox.lease.0,
        retry_delay: cfg.outbox.retry_delay.0,
        ..SenderConfig::default()
    };
    // A message waits for a link that is down for half its lease at most.
    let gateway = Arc::new(SmppGateway::new(router.clone(), sender_cfg.lease / 2));
    outbox_stage.spawn(outbox::run_sender(
        store.clone(),
        gateway,
        sender_cfg,
        clock.clone(),
        outbox_stage.token(),
    ));
    let mo_on = !cfg.mo_login.short_code.is_empty();
    let registry_mo = registry
        .as_ref()
        .filter(|_| !cfg.registry.short_code.is_empty())
        .map(|r| {
            Arc::new(crate::registry::mo::RegistryMo::new(
                store.clone(),
                r.clone(),
                cfg.registry.clone(),
                rng.clone(),
            ))
        });
    let relay_mo = txrelay
        .as_ref()
        .filter(|_| !cfg.txrelay.short_code.is_empty())
        .map(|r| {
            Arc::new(crate::txrelay::mo::RelayMo::new(
                r.clone(),
                store.clone(),
                &cfg.txrelay,
                rng.clone(),
            ))
        });
    let events = tokio::spawn(crate::inbound::run_events(
        store.clone(),
        crate::inbound::MoHandlers {
            login: mo_on.then(|| mo_login.clone()),
            registry: registry_mo,
            relay: relay_mo,
        },
        (clock.clone(), rng.clone()),
        ev_rx,
    ));
    // The config the sweeps read, replaced on SIGHUP.
    let current = Arc::new(std::sync::RwLock::new(cfg.clone()));
    let (windows_of, retention_of) = (current.clone(), current.clone());
    sweep_stage.spawn(crate::housekeeping::run_expiry(
        store.clone(),
        verify.clone(),
        Duration::from_secs(1),
        crate::housekeeping::Prune {
            // The longest window of any limit counted in the store: pruned
            // sooner, a budget would start again.
            windows_kept: Box::new(move || {
                let c = windows_of.read().unwrap_or_else(|e| e.into_inner());
                let (l, m) = (&c.verify.limits, &c.mo_login);
                let r = &m.reply_limits;
                [
                    l.per_number,
                    l.per_number_all_services,
                    l.per_service,
                    l.per_prefix,
                    l.per_ip,
                    r.per_sender,
                    r.per_prefix,
                    r.global,
                    m.per_service,
                ]
                .into_iter()
                .chain(c.voice_gateway.iter().flat_map(|g| [g.limit, g.per_number]))
                .map(|r| r.window.0)
                .max()
                .unwrap_or_default()
            }),
            keys_kept: crate::verify::service::IDEMPOTENCY_KEY_TTL,
            retention: Box::new(move || {
                retention_of
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .retention
                    .clone()
            }),
        },
        clock.clone(),
        sweep_stage.token(),
    ));
    // Status webhooks: signed, retried with backoff, never on the API's path.
    // The app side's reports sign with the secret shared with its carrier
    // and carry its API key there.
    let wh_cfg = crate::webhook::WebhookConfig {
        credentials: cfg
            .bindings
            .iter()
            .map(|b| {
                (
                    b.credential_name(),
                    crate::webhook::Credential {
                        signing_secret: b.registry_secret.clone(),
                        bearer: Some(b.registry_api_key.clone()),
                    },
                )
            })
            .collect(),
        ..Default::default()
    };
    let wh_client = crate::webhook::http_client(&wh_cfg)
        .map_err(|e| HostError::new("webhook HTTP client", e))?;
    webhook_stage.spawn(crate::webhook::run_worker(
        store.clone(),
        wh_client,
        wh_cfg,
        (clock.clone(), rng.clone()),
        webhook_stage.token(),
    ));
    let edge = cfg.api.edge();
    let app = crate::api::router_with(state, &edge);
    // Scrapers and probes ask the admin listener (private by design): the
    // public one tells nobody how the service is doing.
    let admin_app = crate::admin::router(crate::admin::AdminState {
        clock: clock.clone(),
        rng: rng.clone(),
        store: store.clone(),
        router: router.clone(),
        secret: state_secret,
        token: admin_token.into(),
        started_at: clock.now_ms(),
        verify: verify.clone(),
        callers,
        registry,
        txrelay,
    })
    .merge(readiness(store.clone(), router.clone()))
    .merge(metrics_route(store.clone(), calls.clone()));
    let admin_addr = admin_listener.local_addr().unwrap_or(admin_addr);
    api_stage.spawn(crate::api::edge::serve(
        admin_listener,
        admin_app,
        crate::api::edge::EdgeLimits::default(),
        api_stage.token(),
    ));
    let api_addr = listener.local_addr().unwrap_or(api_addr);
    let signals = Signals::register()?;
    info!(%api_addr, "verigate API listening");
    // One JSON line on stdout so scripts and tests learn the real ports.
    println!(
        "{}",
        serde_json::json!({
            "api": api_addr.to_string(),
            "admin": admin_addr.to_string(),
            "lab_smsc": lab.as_ref().map(|l| l.addr.to_string()),
            "lab_control": lab.as_ref().map(|l| l.control.clone()),
            "sip": calls.as_ref().map(|e| e.local_addr().to_string()),
            "lab_switch": lab_switch.as_ref().map(|l| l.addr.to_string()),
            "lab_switch_control": lab_switch.as_ref().map(|l| l.control.clone()),
            "lab_bank": lab_bank.as_ref().map(|l| l.addr.to_string()),
        })
    );
    api_stage.spawn(crate::api::edge::serve(
        listener,
        app,
        edge,
        api_stage.token(),
    ));
    let stop_smpp = smpp_stage.token();
    smpp_stage.spawn(async move {
        stop_smpp.cancelled().await;
        for c in router.smscs() {
            c.shutdown().await;
        }
        // The binds are gone, so the event stream ends; let receipts and
        // MOs already taken finish storing (any not acknowledged are
        // redelivered anyway).
        if tokio::time::timeout(Duration::from_secs(5), events)
            .await
            .is_err()
        {
            warn!("receipts still being stored after 5 s; the SMSC will redeliver them");
        }
    });
    let targets = crate::reload::Targets {
        verify: verify.clone(),
        mo_login: mo_login.clone(),
        voice_gateway,
        auth_failures,
        calls: call_live,
        current,
    };
    wait_for_signals(signals, path, sets, &as_written, &targets).await;
    info!("shutting down: API stops, calls end, in-flight submits drain, binds unbind");
    tree.run().await;
    // Queued writes finish, the WAL is checkpointed into the database file.
    if let Some(s) = sqlite {
        s.close().await;
    }
    Ok(())
}

/// The admin token: from the config, else from `admin_token_file`, created
/// with a random token (mode 0600) on first start.
fn admin_token(cfg: &Config, rng: &Random) -> Result<String, StartError> {
    if !cfg.api.admin_token.is_empty() {
        return Ok(cfg.api.admin_token.clone());
    }
    let path = Path::new(&cfg.api.admin_token_file);
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().len() >= 16 => Ok(t.trim().to_string()),
        Ok(_) => Err(HostError::msg(format!(
            "{}: admin token is shorter than 16 characters",
            path.display()
        ))
        .into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let t = format!("adm_{}", rng.hex(24));
            let token_file = |e| HostError::new("admin token", e);
            crate::files::create_parent(path).map_err(token_file)?;
            crate::files::write_private(path, &t).map_err(token_file)?;
            Ok(t)
        }
        Err(e) => {
            Err(HostError::new("admin token", crate::files::FileError::new("read", path, e)).into())
        }
    }
}

/// `GET /metrics`: Prometheus text format; queue depth is read at scrape time.
fn metrics_route(
    store: Arc<dyn Store>,
    sip: Option<crate::sip::engine::SipEngine>,
) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let store = store.clone();
            let sip = sip.clone();
            async move {
                let m = crate::metrics::get();
                if let Some(e) = &sip {
                    m.sip_dialogs.set(e.dialogs() as i64);
                }
                if let Ok(d) = store.outbox_depth().await {
                    m.queue_depth
                        .with_label_values(&["queued"])
                        .set(d.queued as i64);
                    m.queue_depth
                        .with_label_values(&["sending"])
                        .set(d.sending as i64);
                    m.queue_depth
                        .with_label_values(&["submitted"])
                        .set(d.submitted as i64);
                }
                let mut body = m.render();
                if let Some(e) = &sip {
                    body += &crate::metrics::rtp_lateness_text(&e.media().lateness());
                }
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    body,
                )
            }
        }),
    )
}

/// `GET /readyz` (admin listener): 200 when the store answers and at least
/// one SMSC bind is up (so a start would be sent now), else 503 naming what
/// is missing by a code; the errors themselves go to the log, not to
/// whoever asks.
fn readiness(store: Arc<dyn Store>, router: Arc<Router>) -> axum::Router {
    use axum::http::StatusCode;
    axum::Router::new().route(
        "/readyz",
        axum::routing::get(move || {
            let store = store.clone();
            let router = router.clone();
            async move {
                let mut problems = Vec::new();
                if let Err(e) = store.outbox_depth().await {
                    warn!(error = %e, "not ready: the store does not answer");
                    problems.push("store_unavailable");
                }
                if let Some(e) = store.durability_problem() {
                    warn!(error = %e, "not ready: writes are not durable");
                    problems.push("store_not_durable");
                }
                let bound: usize = router.smscs().iter().map(|c| c.submit_bound_count()).sum();
                if bound == 0 {
                    problems.push("no_smsc_bind");
                }
                let body = serde_json::json!({"ready": problems.is_empty(), "smsc_binds_up": bound, "problems": problems});
                let code = if problems.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                (code, axum::Json(body))
            }
        }),
    )
}

/// The signals verigate acts on, registered before it says it is ready:
/// a SIGHUP or SIGTERM that arrives before its handler would otherwise
/// kill the process (the default action) instead of reloading or draining.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> Result<Self, StartError> {
        use tokio::signal::unix::{signal, SignalKind};
        let handler = |kind: SignalKind, name: &str| {
            signal(kind)
                .map_err(|e| HostError::new(format!("cannot install the {name} handler"), e))
        };
        Ok(Self {
            term: handler(SignalKind::terminate(), "SIGTERM")?,
            int: handler(SignalKind::interrupt(), "SIGINT")?,
            hup: handler(SignalKind::hangup(), "SIGHUP")?,
        })
    }
}

async fn wait_for_signals(
    mut signals: Signals,
    path: &Path,
    sets: &[String],
    started: &Config,
    targets: &crate::reload::Targets,
) {
    loop {
        tokio::select! {
            _ = signals.term.recv() => return,
            _ = signals.int.recv() => return,
            _ = signals.hup.recv() => match config::load(path, sets) {
                Ok(c) => {
                    crate::reload::apply(targets, started, c);
                }
                Err(e) => warn!(error = %e, "reload refused; keeping the running configuration"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::ServiceStore;

    fn config(key: &str) -> Config {
        let text = format!(
            "[api]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[store]\nkind = \"sqlite\"\npath = \"./var/x.db\"\n[secrets]\nserver_secret_file = \"./var/s\"\n[[service]]\ncode = \"acme\"\nname = \"ACME\"\napi_key = \"{key}\"\n"
        );
        config::load_str(&text, "t.toml", &[]).expect("config")
    }

    async fn live_keys(store: &dyn Store) -> Vec<String> {
        store
            .list_api_keys("acme")
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k.revoked_at.is_none())
            .map(|k| k.key_id)
            .collect()
    }

    #[tokio::test]
    async fn config_keys_survive_rotation_and_replacement() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let secret = ServerSecret::random(&Random::os());
        bootstrap_services(&store, &secret, &config("key-one-0123456789"), 1_000)
            .await
            .unwrap();
        let first = live_keys(&store).await;
        assert_eq!(first.len(), 1);
        // Restarting with the same config changes nothing.
        bootstrap_services(&store, &secret, &config("key-one-0123456789"), 1_000)
            .await
            .unwrap();
        assert_eq!(live_keys(&store).await, first);
        // rotate-key: a new key, the config's revoked. The next start must
        // neither fail nor bring the revoked key back.
        store
            .add_api_key(&ApiKeyRecord {
                key_id: "key_rotated".into(),
                service: "acme".into(),
                hash: vec![5; 32],
                created_at: 1,
                revoked_at: None,
            })
            .await
            .unwrap();
        store
            .revoke_api_keys("acme", "key_rotated", 2)
            .await
            .unwrap();
        bootstrap_services(&store, &secret, &config("key-one-0123456789"), 1_000)
            .await
            .unwrap();
        assert_eq!(live_keys(&store).await, vec!["key_rotated".to_string()]);
        // A new key in the config replaces the others.
        bootstrap_services(&store, &secret, &config("key-two-0123456789"), 1_000)
            .await
            .unwrap();
        let live = live_keys(&store).await;
        assert_eq!(live.len(), 1);
        assert!(live[0].starts_with("cfg-acme-"), "{live:?}");
        assert_ne!(live, first);
    }

    #[tokio::test]
    async fn a_key_shared_by_two_services_is_a_config_error() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let secret = ServerSecret::random(&Random::os());
        bootstrap_services(&store, &secret, &config("shared-key-0123456789"), 1_000)
            .await
            .unwrap();
        let text = "[api]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[store]\nkind = \"sqlite\"\npath = \"./var/x.db\"\n[secrets]\nserver_secret_file = \"./var/s\"\n[[service]]\ncode = \"other\"\nname = \"O\"\napi_key = \"shared-key-0123456789\"\n";
        let cfg = config::load_str(text, "t.toml", &[]).unwrap();
        let e = bootstrap_services(&store, &secret, &cfg, 1_000)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("already the API key of service \"acme\""),
            "{e}"
        );
    }
}

#[cfg(test)]
mod readiness_tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use tower::ServiceExt;

    #[tokio::test]
    async fn readyz_names_what_is_missing_and_tells_no_error_text() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        let app = readiness(store, Arc::new(Router::new()));
        let req = axum::http::Request::get("/readyz")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ready": false, "smsc_binds_up": 0, "problems": ["no_smsc_bind"]})
        );
    }
}

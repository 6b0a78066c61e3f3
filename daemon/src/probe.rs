//! `verigate smpp probe`: bring up a new SMSC link — bind, submit N
//! messages, wait for their receipts, report per message and overall.

use crate::smpp::{SmppEvent, SmscClient, SmscConfig, SubmitError};
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use verigate_codecs::dlr::{message_id_keys, Dlr};
use verigate_codecs::smpp::{Address, SubmitSm};

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// SMSC host.
    pub host: String,
    /// SMSC port.
    pub port: u16,
    /// system_id.
    pub system_id: String,
    /// password.
    pub password: String,
    /// Destination MSISDN.
    pub to: String,
    /// Source address (alphanumeric or digits).
    pub from: String,
    /// Text to send.
    pub text: String,
    /// How many messages.
    pub count: usize,
    /// How long to wait for receipts after the last submit (None: do not wait).
    pub wait_dlr: Option<Duration>,
    /// Window size.
    pub window: usize,
    /// Bind timeout.
    pub bind_timeout: Duration,
}

/// Result of one message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MessageReport {
    /// Index (1-based).
    pub n: usize,
    /// SMSC message id, when accepted.
    pub message_id: Option<String>,
    /// "accepted" or the error.
    pub status: String,
    /// command_status number when rejected.
    pub command_status: Option<u32>,
    /// Receipt stat (DELIVRD, UNDELIV, …) when one arrived.
    pub dlr_stat: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// Per message.
    pub messages: Vec<MessageReport>,
    /// Messages accepted.
    pub accepted: usize,
    /// Messages rejected or failed.
    pub failed: usize,
    /// Receipts correlated.
    pub dlrs: usize,
    /// Receipts that matched no message.
    pub unmatched_dlrs: usize,
    /// Seconds from first submit to last response.
    pub submit_seconds: f64,
    /// Submits per second.
    pub submits_per_second: f64,
    /// True when every message was accepted (and got a receipt if asked).
    pub ok: bool,
    /// Why not ok, for a person.
    pub problem: Option<String>,
}

/// Why the probe could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Bind failed (refused, or nothing bound in time).
    #[error(transparent)]
    Bind(#[from] crate::smpp::BindError),
}

/// Runs the probe.
pub async fn run(opts: ProbeOptions) -> Result<ProbeReport, ProbeError> {
    let mut cfg = SmscConfig::new(
        "probe",
        &opts.host,
        opts.port,
        &opts.system_id,
        &opts.password,
    );
    cfg.session.window = opts.window.max(1);
    let (ev_tx, mut ev_rx) = mpsc::channel(4096);
    let client = SmscClient::start(cfg, ev_tx, crate::random::Random::os());
    if let Err(e) = client.wait_bound(opts.bind_timeout).await {
        client.shutdown().await;
        return Err(ProbeError::Bind(e));
    }
    let template = SubmitSm {
        source: if opts.from.chars().all(|c| c.is_ascii_digit() || c == '+') {
            Address::international(&opts.from)
        } else {
            Address::new(5, 0, &opts.from)
        },
        dest: Address::international(&opts.to),
        registered_delivery: 1,
        ..Default::default()
    };
    // Every message of the run is submitted at once; the window paces them.
    let started = Instant::now();
    let mut futs = Vec::with_capacity(opts.count);
    for _ in 0..opts.count {
        let c = client.clone();
        let t = template.clone();
        let text = opts.text.clone();
        futs.push(tokio::spawn(async move { c.submit_text(&t, &text).await }));
    }
    // Receipts may arrive before the submit_sm_resp is processed: collect
    // them all and correlate at the end.
    let mut dlrs: Vec<Dlr> = Vec::new();
    let mut results = Vec::with_capacity(opts.count);
    let mut pending = futs.into_iter();
    let mut current = pending.next();
    while let Some(f) = current.take() {
        tokio::pin!(f);
        loop {
            tokio::select! {
                r = &mut f => { results.push(r.unwrap_or(Err(SubmitError::Shutdown))); break; }
                Some(ev) = ev_rx.recv() => collect(ev, &mut dlrs),
            }
        }
        current = pending.next();
    }
    let submit_seconds = started.elapsed().as_secs_f64();
    let mut messages: Vec<MessageReport> = Vec::new();
    let mut ids: Vec<(usize, String)> = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        let n = i + 1;
        match r {
            Ok(parts) => {
                // A long text is several parts; report the first part's
                // id and the worst status.
                let mut id = None;
                let mut err = None;
                for p in parts {
                    match p {
                        Ok(s) => {
                            ids.push((n, s.message_id.clone()));
                            id.get_or_insert(s.message_id);
                        }
                        Err(e) => {
                            err.get_or_insert(e);
                        }
                    }
                }
                messages.push(report(n, id, err));
            }
            Err(e) => messages.push(report(n, None, Some(e))),
        }
    }
    let accepted = messages.iter().filter(|m| m.status == "accepted").count();
    if let Some(wait) = opts.wait_dlr {
        let deadline = tokio::time::Instant::now() + wait;
        while !all_have_dlr(&ids, &dlrs) {
            match tokio::time::timeout_at(deadline, ev_rx.recv()).await {
                Ok(Some(ev)) => collect(ev, &mut dlrs),
                _ => break,
            }
        }
    }
    // Correlate receipts with ids tolerant of hex/decimal, zeros and case.
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (n, id) in &ids {
        for k in message_id_keys(id).iter() {
            by_key.entry(k.clone()).or_insert(*n);
        }
    }
    let mut matched = 0;
    let mut unmatched = 0;
    for d in &dlrs {
        let hit = message_id_keys(&d.message_id)
            .iter()
            .find_map(|k| by_key.get(k).copied());
        match hit {
            Some(n) => {
                let m = &mut messages[n - 1];
                if m.dlr_stat.is_none() {
                    matched += 1;
                }
                m.dlr_stat = Some(d.state.as_stat().to_string());
            }
            None => unmatched += 1,
        }
    }
    client.shutdown().await;
    let failed = messages.len() - accepted;
    let mut problem = None;
    if failed > 0 {
        let first = messages
            .iter()
            .find(|m| m.status != "accepted")
            .map(|m| m.status.clone());
        problem = Some(format!(
            "{failed} of {} messages not accepted (first: {})",
            messages.len(),
            first.unwrap_or_default()
        ));
    } else if opts.wait_dlr.is_some() && matched < accepted {
        problem = Some(format!(
            "{} of {accepted} accepted messages got no delivery receipt within {:?}",
            accepted - matched,
            opts.wait_dlr.unwrap_or_default()
        ));
    }
    Ok(ProbeReport {
        accepted,
        failed,
        dlrs: matched,
        unmatched_dlrs: unmatched,
        submit_seconds,
        submits_per_second: if submit_seconds > 0.0 {
            messages.len() as f64 / submit_seconds
        } else {
            0.0
        },
        ok: problem.is_none(),
        problem,
        messages,
    })
}

fn collect(ev: SmppEvent, dlrs: &mut Vec<Dlr>) {
    match ev {
        SmppEvent::Dlr { dlr, ack, .. } => {
            dlrs.push(dlr);
            ack.accept();
        }
        SmppEvent::Mo { ack, .. } | SmppEvent::MoPart { ack, .. } => ack.accept(),
    }
}

fn all_have_dlr(ids: &[(usize, String)], dlrs: &[Dlr]) -> bool {
    ids.iter().all(|(_, id)| {
        let keys = message_id_keys(id);
        dlrs.iter()
            .any(|d| message_id_keys(&d.message_id).intersects(&keys))
    })
}

fn report(n: usize, id: Option<String>, err: Option<SubmitError>) -> MessageReport {
    match err {
        None => MessageReport {
            n,
            message_id: id,
            status: "accepted".into(),
            command_status: None,
            dlr_stat: None,
        },
        Some(e) => MessageReport {
            n,
            message_id: id,
            command_status: match &e {
                SubmitError::Rejected(st) => Some(st.0),
                _ => None,
            },
            status: match &e {
                SubmitError::Rejected(st) => format!("rejected {st}"),
                other => other.to_string(),
            },
            dlr_stat: None,
        },
    }
}

/// Renders the report as a table for a person.
pub fn render_table(r: &ProbeReport) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:>5}  {:<40}  {:<28}  {}\n",
        "#", "message_id", "status", "dlr"
    ));
    for m in &r.messages {
        s.push_str(&format!(
            "{:>5}  {:<40}  {:<28}  {}\n",
            m.n,
            m.message_id.as_deref().unwrap_or("-"),
            m.status,
            m.dlr_stat.as_deref().unwrap_or("-")
        ));
    }
    s.push_str(&format!(
        "\n{} accepted, {} failed, {} receipts ({} unmatched); {:.0} submits/s over {:.3} s\n",
        r.accepted, r.failed, r.dlrs, r.unmatched_dlrs, r.submits_per_second, r.submit_seconds
    ));
    if let Some(p) = &r.problem {
        s.push_str(&format!("problem: {p}\n"));
    }
    s
}

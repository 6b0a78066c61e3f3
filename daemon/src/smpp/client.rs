//! One SMSC with several binds: spreads submits over the bound transmit
//! binds and merges their inbound events.

use super::bind::{self, BindHandle, BindStatus, Command};
use super::config::{BindLayout, SmscConfig};
use super::events::SmppEvent;
use super::{SubmitError, Submitted};
use crate::random::Random;
use rand::Rng;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use verigate_codecs::smpp::message::text_to_parts;
use verigate_codecs::smpp::session::BindType;
use verigate_codecs::smpp::SubmitSm;

/// Handle to one SMSC and its binds. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SmscClient {
    cfg: Arc<SmscConfig>,
    binds: Arc<Vec<BindHandle>>,
    /// The operator's switch, watched by every bind.
    enabled: Arc<watch::Sender<bool>>,
    rr: Arc<AtomicUsize>,
    reference: Arc<AtomicU16>,
}

/// Why binding did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// The SMSC refused the credentials or the bind.
    #[error("bind refused by the SMSC: {}", describe_bind_status(*.0))]
    Rejected(verigate_codecs::smpp::CommandStatus),
    /// Nothing bound in time.
    #[error("not bound within {timeout:?}: {last}")]
    Timeout {
        /// How long we waited.
        timeout: Duration,
        /// What the binds last reported.
        last: String,
    },
}

impl SmscClient {
    /// Starts all binds; events from every bind go to `events`; reconnect
    /// jitter and concatenation references come from `rng`.
    pub fn start(cfg: SmscConfig, events: mpsc::Sender<SmppEvent>, rng: Random) -> Self {
        let cfg = Arc::new(cfg);
        let (enabled, _) = watch::channel(!cfg.start_disabled);
        let kinds: Vec<BindType> = match cfg.layout {
            BindLayout::Transceiver(n) => vec![BindType::Transceiver; n.max(1)],
            BindLayout::TxRx { tx, rx } => std::iter::repeat_n(BindType::Transmitter, tx.max(1))
                .chain(std::iter::repeat_n(BindType::Receiver, rx))
                .collect(),
        };
        let binds = kinds
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                bind::spawn(
                    cfg.clone(),
                    i,
                    k,
                    events.clone(),
                    enabled.subscribe(),
                    rng.clone(),
                )
            })
            .collect();
        SmscClient {
            cfg,
            binds: Arc::new(binds),
            enabled: Arc::new(enabled),
            rr: Arc::new(AtomicUsize::new(0)),
            reference: Arc::new(AtomicU16::new(rng.rng().gen())),
        }
    }

    /// The SMSC's configured name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The configuration.
    pub fn config(&self) -> &SmscConfig {
        &self.cfg
    }

    /// Whether the SMSC takes traffic (false: disabled by an operator or config).
    pub fn is_enabled(&self) -> bool {
        *self.enabled.borrow()
    }

    /// Enables (binds come up) or disables (binds unbind gracefully and stay
    /// down; the router sends elsewhere). Returns whether anything changed.
    pub fn set_enabled(&self, on: bool) -> bool {
        self.enabled
            .send_if_modified(|v| std::mem::replace(v, on) != on)
    }

    /// Status of every bind.
    pub fn bind_statuses(&self) -> Vec<BindStatus> {
        self.binds
            .iter()
            .map(|b| b.status.borrow().clone())
            .collect()
    }

    /// Number of binds currently bound.
    pub fn bound_count(&self) -> usize {
        self.binds
            .iter()
            .filter(|b| b.bound.load(Ordering::Relaxed))
            .count()
    }

    /// Number of bound binds that can submit (receive-only binds cannot).
    pub fn submit_bound_count(&self) -> usize {
        self.binds
            .iter()
            .filter(|b| b.bind_type.can_submit() && b.bound.load(Ordering::Relaxed))
            .count()
    }

    /// Waits until at least one transmit-capable bind is up, or fails fast
    /// when every bind was refused.
    pub async fn wait_bound(&self, timeout: Duration) -> Result<(), BindError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut watchers: Vec<_> = self.binds.iter().map(|b| b.status.clone()).collect();
        loop {
            let statuses: Vec<BindStatus> = watchers.iter().map(|w| w.borrow().clone()).collect();
            if statuses.iter().any(|s| matches!(s, BindStatus::Bound)) {
                return Ok(());
            }
            if let Some(BindStatus::Rejected(st)) = statuses
                .iter()
                .find(|s| matches!(s, BindStatus::Rejected(_)))
            {
                return Err(BindError::Rejected(*st));
            }
            let changed =
                futures::future::select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let last = statuses
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(BindError::Timeout { timeout, last });
            }
        }
    }

    /// The transmit-capable bind to use: bound before unbound, then least
    /// loaded, ties broken round-robin. No allocation: this runs per submit.
    fn pick(&self) -> &BindHandle {
        let n = self.binds.len();
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<(&BindHandle, bool, usize)> = None;
        for i in 0..n {
            let b = &self.binds[(start + i) % n];
            if !b.bind_type.can_submit() {
                continue;
            }
            let bound = b.bound.load(Ordering::Relaxed);
            let load = b.load.load(Ordering::Relaxed);
            let better = match best {
                None => true,
                Some((_, best_bound, best_load)) => {
                    (bound && !best_bound) || (bound == best_bound && load < best_load)
                }
            };
            if better {
                best = Some((b, bound, load));
            }
        }
        best.map(|(b, _, _)| b)
            .expect("a layout always has at least one transmit bind")
    }

    /// Queues one submit_sm; the receiver resolves with its submit_sm_resp.
    pub async fn submit_sm(
        &self,
        sm: SubmitSm,
    ) -> oneshot::Receiver<Result<Submitted, SubmitError>> {
        let (reply, rx) = oneshot::channel();
        if !self.is_enabled() {
            // Disabled: say so now rather than hold it until re-enabled.
            let _ = reply.send(Err(SubmitError::Disabled));
            return rx;
        }
        let b = self.pick();
        if let Err(mpsc::error::SendError(Command::Submit { reply, .. })) =
            b.tx.send(Command::Submit { sm, reply }).await
        {
            let _ = reply.send(Err(SubmitError::Shutdown));
        }
        rx
    }

    /// Encodes and splits `text` per this SMSC's settings and submits every
    /// part; resolves with one result per part.
    pub async fn submit_text(
        &self,
        template: &SubmitSm,
        text: &str,
    ) -> Result<Vec<Result<Submitted, SubmitError>>, SubmitError> {
        let reference = self.reference.fetch_add(1, Ordering::Relaxed);
        let parts = text_to_parts(template, text, None, self.cfg.split_mode, reference)
            .map_err(SubmitError::Encode)?;
        let mut rxs = Vec::with_capacity(parts.len());
        for p in parts {
            rxs.push(self.submit_sm(p).await);
        }
        let mut out = Vec::with_capacity(rxs.len());
        for rx in rxs {
            out.push(rx.await.unwrap_or(Err(SubmitError::Shutdown)));
        }
        Ok(out)
    }

    /// Unbinds every bind (draining in-flight submits) and stops.
    pub async fn shutdown(&self) {
        let mut waits = Vec::new();
        for b in self.binds.iter() {
            let (tx, rx) = oneshot::channel();
            if b.tx.send(Command::Shutdown(tx)).await.is_ok() {
                waits.push(rx);
            }
        }
        for w in waits {
            let _ = w.await;
        }
    }
}

/// A sentence for an operator about a refused bind.
pub fn describe_bind_status(st: verigate_codecs::smpp::CommandStatus) -> String {
    let hint = match st.0 {
        0x0E => "wrong password",
        0x0F => "unknown system_id",
        0x0D => "bind failed",
        0x05 => "already bound",
        0x53 => "system_type not accepted",
        _ => st.description().unwrap_or("refused"),
    };
    format!("{hint} ({st})")
}

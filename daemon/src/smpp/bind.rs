//! One bind to an SMSC: a thin tokio driver around the sans-IO session —
//! one `select!` over socket, timer, commands and acks — plus reconnect with
//! jittered exponential backoff.

use super::config::SmscConfig;
use super::events::{AckMsg, DeliveryAck, Owed, SmppEvent};
use super::{SubmitError, Submitted};
use crate::inbound::decode::Delivery;
use crate::random::Random;
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, info_span, warn, Instrument};
use verigate_codecs::smpp::session::{
    BindCredentials, BindType, CloseReason, Event, Role, Session,
};
use verigate_codecs::smpp::{Body, CommandStatus, MessageIdResp, Pdu, SubmitSm};

/// Where a bind is.
#[derive(Debug, Clone)]
pub enum BindStatus {
    /// Connecting or binding.
    Connecting,
    /// Bound and usable.
    Bound,
    /// Down; reconnecting after a delay.
    Down(DownReason),
    /// The SMSC refused the bind (credentials or configuration at fault).
    Rejected(CommandStatus),
    /// Disabled by an operator; finishing in-flight submits, then unbinding.
    Unbinding,
    /// Disabled by an operator (or by config); not connecting.
    Disabled,
    /// Stopped for good.
    Stopped,
}

impl std::fmt::Display for BindStatus {
    /// The state in words an operator reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindStatus::Connecting => f.write_str("connecting"),
            BindStatus::Bound => f.write_str("bound"),
            BindStatus::Down(why) => write!(f, "down ({why})"),
            BindStatus::Rejected(st) => write!(f, "refused: {}", super::describe_bind_status(*st)),
            BindStatus::Unbinding => f.write_str("unbinding"),
            BindStatus::Disabled => f.write_str("disabled"),
            BindStatus::Stopped => f.write_str("stopped"),
        }
    }
}

/// Why a bind is down (the network, the SMSC, or the session's own checks).
#[derive(Debug, Clone, thiserror::Error)]
pub enum DownReason {
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// host:port.
        addr: String,
        /// What the OS said.
        source: Arc<std::io::Error>,
    },
    /// TCP connect got no answer in time.
    #[error("cannot connect to {addr}: no answer within {timeout:?}")]
    ConnectTimeout {
        /// host:port.
        addr: String,
        /// `connect_timeout`.
        timeout: Duration,
    },
    /// The session ended.
    #[error("{0}")]
    Closed(CloseReason),
}

/// A command for a bind task.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // submits dominate; boxing each would cost an allocation
pub(crate) enum Command {
    Submit {
        sm: SubmitSm,
        reply: oneshot::Sender<Result<Submitted, SubmitError>>,
    },
    Shutdown(oneshot::Sender<()>),
}

/// The caller's side of a bind task.
#[derive(Debug, Clone)]
pub(crate) struct BindHandle {
    pub(crate) bind_type: BindType,
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) bound: Arc<AtomicBool>,
    pub(crate) load: Arc<AtomicUsize>,
    pub(crate) status: watch::Receiver<BindStatus>,
}

struct Pending {
    reply: oneshot::Sender<Result<Submitted, SubmitError>>,
}

pub(crate) fn spawn(
    cfg: Arc<SmscConfig>,
    index: usize,
    bind_type: BindType,
    events: mpsc::Sender<SmppEvent>,
    enabled: watch::Receiver<bool>,
    rng: Random,
) -> BindHandle {
    let (tx, rx) = mpsc::channel(4096);
    let (status_tx, status_rx) = watch::channel(BindStatus::Connecting);
    let bound = Arc::new(AtomicBool::new(false));
    let load = Arc::new(AtomicUsize::new(0));
    let task = BindTask {
        cfg: cfg.clone(),
        bind_type,
        cmds: rx,
        events,
        enabled,
        status: status_tx,
        bound: bound.clone(),
        load: load.clone(),
        pending: HashMap::new(),
        carry: Vec::new(),
        next_id: 1,
        generation: 0,
        stopping: None,
        rng,
    };
    let span = info_span!("smpp_bind", smsc = %cfg.name, bind = index, kind = ?bind_type);
    tokio::spawn(task.run().instrument(span));
    BindHandle {
        bind_type,
        tx,
        bound,
        load,
        status: status_rx,
    }
}

struct BindTask {
    cfg: Arc<SmscConfig>,
    bind_type: BindType,
    cmds: mpsc::Receiver<Command>,
    events: mpsc::Sender<SmppEvent>,
    /// The operator's switch: false unbinds and keeps the bind idle.
    enabled: watch::Receiver<bool>,
    status: watch::Sender<BindStatus>,
    bound: Arc<AtomicBool>,
    load: Arc<AtomicUsize>,
    pending: HashMap<u64, Pending>,
    /// Submits accepted while down or handed back unsent; go out on the next session.
    carry: Vec<(u64, SubmitSm)>,
    next_id: u64,
    generation: u64,
    stopping: Option<oneshot::Sender<()>>,
    /// Reconnect jitter.
    rng: Random,
}

enum Exit {
    Reconnect { bound: bool },
    Stop,
}

/// Why an idle wait ended.
enum Wake {
    /// The deadline passed, or the operator flipped the switch.
    Go,
    /// Asked to stop.
    Stop,
}

impl BindTask {
    async fn run(mut self) {
        let mut attempt: u32 = 0;
        loop {
            if !*self.enabled.borrow() {
                info!("disabled; not binding");
                let _ = self.status.send(BindStatus::Disabled);
                // Submits handed back by the unbind: their callers route
                // them elsewhere rather than wait for re-enabling.
                for (id, _) in std::mem::take(&mut self.carry) {
                    self.finish(id, Err(SubmitError::Disabled));
                }
                if let Wake::Stop = self.idle(None).await {
                    break;
                }
                if !*self.enabled.borrow() {
                    continue;
                }
                info!("enabled");
                attempt = 0;
            }
            let _ = self.status.send(BindStatus::Connecting);
            let exit = match self.connect().await {
                // Disabled while connecting: do not bind after all.
                Ok(_) if !*self.enabled.borrow() => continue,
                Ok(sock) => self.session(sock).await,
                Err(e) => {
                    let _ = self.status.send(BindStatus::Down(e.clone()));
                    warn!(error = %e, "SMSC connection failed");
                    Exit::Reconnect { bound: false }
                }
            };
            self.bound.store(false, Ordering::Relaxed);
            match exit {
                Exit::Stop => break,
                Exit::Reconnect { .. } if !*self.enabled.borrow() => {}
                Exit::Reconnect { bound } => {
                    if bound {
                        attempt = 0;
                    }
                    let delay = backoff(
                        self.cfg.reconnect_min,
                        self.cfg.reconnect_max,
                        attempt,
                        &self.rng,
                    );
                    attempt = attempt.saturating_add(1);
                    if let Wake::Stop = self.idle(Some(Instant::now() + delay)).await {
                        break;
                    }
                }
            }
        }
        self.fail_all(SubmitError::Shutdown);
        let _ = self.status.send(BindStatus::Stopped);
        if let Some(done) = self.stopping.take() {
            let _ = done.send(());
        }
    }

    async fn connect(&self) -> Result<TcpStream, DownReason> {
        let addr = format!("{}:{}", self.cfg.host, self.cfg.port);
        match tokio::time::timeout(self.cfg.connect_timeout, TcpStream::connect(&addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Ok(Err(e)) => Err(DownReason::Connect {
                addr,
                source: Arc::new(e),
            }),
            Err(_) => Err(DownReason::ConnectTimeout {
                addr,
                timeout: self.cfg.connect_timeout,
            }),
        }
    }

    /// Waits off-line until `until` (or, with `None`, until enabled) while
    /// still taking commands; an operator's enable/disable also wakes it.
    async fn idle(&mut self, until: Option<Instant>) -> Wake {
        loop {
            tokio::select! {
                _ = sleep_opt(until) => return Wake::Go,
                r = self.enabled.changed() => {
                    if r.is_err() {
                        // The client is gone: nothing will enable us again.
                        return Wake::Stop;
                    }
                    return Wake::Go;
                }
                cmd = self.cmds.recv() => match cmd {
                    Some(Command::Submit { sm, reply }) => {
                        if !*self.enabled.borrow() {
                            let _ = reply.send(Err(SubmitError::Disabled));
                        } else if let Some(id) = self.register(reply) {
                            self.carry.push((id, sm));
                        }
                    }
                    Some(Command::Shutdown(done)) => {
                        self.stopping = Some(done);
                        return Wake::Stop;
                    }
                    None => return Wake::Stop,
                },
            }
        }
    }

    /// Registers a submit's reply; None when its submitter already gave up.
    fn register(&mut self, reply: oneshot::Sender<Result<Submitted, SubmitError>>) -> Option<u64> {
        if reply.is_closed() {
            return None;
        }
        let id = self.take_id();
        self.pending.insert(id, Pending { reply });
        Some(id)
    }

    /// A submit from the client: to the session once bound, else carried
    /// until the bind succeeds.
    fn take_submit(
        &mut self,
        session: &mut Session,
        bound: bool,
        sm: SubmitSm,
        reply: oneshot::Sender<Result<Submitted, SubmitError>>,
    ) {
        let Some(id) = self.register(reply) else {
            return;
        };
        if !bound {
            self.carry.push((id, sm));
        } else if let Err(Body::SubmitSm(sm)) =
            session.send_request(Instant::now().into_std(), id, Body::SubmitSm(sm))
        {
            self.carry.push((id, sm));
        }
    }

    /// Hands carried submits to a session that just bound. A submitter that
    /// stopped waiting (its receiver is gone) has given the message up,
    /// e.g. to retry it elsewhere: sending our copy too would duplicate it.
    fn flush_carry(&mut self, session: &mut Session) {
        let now = Instant::now().into_std();
        for (id, sm) in std::mem::take(&mut self.carry) {
            if self.pending.get(&id).is_none_or(|p| p.reply.is_closed()) {
                self.finish(id, Err(SubmitError::Shutdown));
                continue;
            }
            if let Err(Body::SubmitSm(sm)) = session.send_request(now, id, Body::SubmitSm(sm)) {
                self.carry.push((id, sm));
            }
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.load.fetch_add(1, Ordering::Relaxed);
        id
    }

    fn finish(&mut self, id: u64, result: Result<Submitted, SubmitError>) {
        if let Some(p) = self.pending.remove(&id) {
            self.load.fetch_sub(1, Ordering::Relaxed);
            let _ = p.reply.send(result);
        }
    }

    fn fail_all(&mut self, err: SubmitError) {
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            self.finish(id, Err(err.clone()));
        }
        self.carry.clear();
    }

    async fn session(&mut self, mut sock: TcpStream) -> Exit {
        self.generation += 1;
        let generation = self.generation;
        let creds = BindCredentials {
            bind_type: self.bind_type,
            ..self.cfg.credentials.clone()
        };
        let start = Instant::now();
        let mut session = Session::new(
            Role::Esme(creds),
            self.cfg.session.clone(),
            start.into_std(),
        );
        // Carried submits wait until the bind succeeds (flush_carry): one
        // whose submitter gives up meanwhile must not go out after all.
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<AckMsg>();
        let mut rbuf = vec![0u8; 64 * 1024];
        let mut was_bound = false;
        let mut shutdown_requested = false;
        let mut disabling = false;
        loop {
            // Flush what the session wants to send before waiting again.
            while let Some(bytes) = session.poll_transmit() {
                if let Err(e) = sock.write_all(&bytes).await {
                    warn!(error = %e, "write to SMSC failed");
                    session.handle_transport_closed();
                }
            }
            let mut handled = false;
            while let Some(ev) = session.poll_event() {
                handled = true;
                match ev {
                    Event::Bound { system_id, .. } => {
                        info!(smsc_system_id = %system_id, "bound");
                        was_bound = true;
                        self.bound.store(true, Ordering::Relaxed);
                        crate::metrics::get()
                            .binds_up
                            .with_label_values(&[&self.cfg.name])
                            .inc();
                        let _ = self.status.send(BindStatus::Bound);
                        self.flush_carry(&mut session);
                    }
                    Event::Response { id, status, body } => {
                        let result = if status.is_ok() {
                            let message_id = match body {
                                Body::SubmitSmResp(MessageIdResp { message_id, .. }) => {
                                    message_id.to_str_lossy().into_owned()
                                }
                                _ => String::new(),
                            };
                            Ok(Submitted {
                                message_id,
                                smsc: self.cfg.name.clone(),
                            })
                        } else {
                            Err(SubmitError::Rejected(status))
                        };
                        self.finish(id, result);
                    }
                    Event::ResponseTimeout { id } => self.finish(id, Err(SubmitError::Timeout)),
                    Event::Returned { id, body, was_sent } => {
                        if was_sent {
                            // The SMSC may have accepted it: resending could
                            // duplicate, so the caller decides.
                            self.finish(id, Err(SubmitError::ConnectionLost));
                        } else if let Body::SubmitSm(sm) = body {
                            self.carry.push((id, sm));
                        }
                    }
                    Event::Request(pdu) => {
                        self.on_request(&mut session, pdu, generation, &ack_tx)
                            .await;
                    }
                    Event::Notification(pdu) => debug!(command = %pdu.command_id(), "notification"),
                    Event::Throttled { status, .. } => {
                        debug!(%status, "throttled by SMSC; pausing")
                    }
                    Event::Malformed(e) => {
                        warn!(error = %e, "malformed PDU from SMSC; generic_nack sent")
                    }
                    Event::UnmatchedResponse(pdu) => {
                        debug!(command = %pdu.command_id(), seq = pdu.sequence, "response to no request of ours")
                    }
                    Event::BindRequest { .. } => {}
                    Event::Closed(reason) => {
                        while let Some(bytes) = session.poll_transmit() {
                            let _ = sock.write_all(&bytes).await;
                        }
                        let _ = sock.shutdown().await;
                        // Drain the remaining Returned events.
                        while let Some(ev) = session.poll_event() {
                            if let Event::Returned { id, body, was_sent } = ev {
                                if was_sent {
                                    self.finish(id, Err(SubmitError::ConnectionLost));
                                } else if let Body::SubmitSm(sm) = body {
                                    self.carry.push((id, sm));
                                }
                            }
                        }
                        return self.closed(reason, was_bound, shutdown_requested, disabling);
                    }
                }
            }
            if handled {
                // Handling events may have queued more to send (carried
                // submits on bind, responses): flush before waiting.
                continue;
            }
            let next = session.poll_timeout().map(Instant::from_std);
            tokio::select! {
                r = sock.read(&mut rbuf) => match r {
                    Ok(0) | Err(_) => session.handle_transport_closed(),
                    Ok(n) => session.handle_input(Instant::now().into_std(), &rbuf[..n]),
                },
                cmd = self.cmds.recv(), if !shutdown_requested => match cmd {
                    Some(Command::Submit { sm, reply }) => {
                        self.take_submit(&mut session, was_bound, sm, reply);
                        // Take whatever else is queued without waiting, so the
                        // window fills in one go (a Shutdown among them is
                        // kept for the next turn, not lost).
                        while let Ok(cmd) = self.cmds.try_recv() {
                            match cmd {
                                Command::Submit { sm, reply } => {
                                    self.take_submit(&mut session, was_bound, sm, reply)
                                }
                                Command::Shutdown(done) => {
                                    self.stopping = Some(done);
                                    shutdown_requested = true;
                                    session.unbind(Instant::now().into_std());
                                    break;
                                }
                            }
                        }
                    }
                    Some(Command::Shutdown(done)) => {
                        self.stopping = Some(done);
                        shutdown_requested = true;
                        session.unbind(Instant::now().into_std());
                    }
                    None => {
                        shutdown_requested = true;
                        session.unbind(Instant::now().into_std());
                    }
                },
                r = self.enabled.changed(), if !shutdown_requested => {
                    if r.is_err() || !*self.enabled.borrow() {
                        // Disabled: unbind gracefully (in-flight submits get
                        // their responses; queued ones are handed back).
                        info!("disabled by operator; unbinding");
                        let _ = self.status.send(BindStatus::Unbinding);
                        shutdown_requested = true;
                        disabling = true;
                        session.unbind(Instant::now().into_std());
                    }
                }
                Some(ack) = ack_rx.recv() => {
                    if ack.generation == generation {
                        for owed in ack.sequences {
                            session.respond(owed.sequence, ack.status, owed.response());
                        }
                    }
                }
                _ = sleep_opt(next) => {
                    let now = Instant::now().into_std();
                    session.handle_timeout(now);
                }
            }
        }
    }

    fn closed(
        &mut self,
        reason: CloseReason,
        was_bound: bool,
        unbinding: bool,
        disabling: bool,
    ) -> Exit {
        self.bound.store(false, Ordering::Relaxed);
        if was_bound {
            crate::metrics::get()
                .binds_up
                .with_label_values(&[&self.cfg.name])
                .dec();
        }
        match &reason {
            CloseReason::BindRejected(st) => {
                warn!(status = %st, "SMSC refused the bind");
                let _ = self.status.send(BindStatus::Rejected(*st));
            }
            r => {
                if unbinding {
                    info!("unbound");
                } else {
                    warn!(reason = %r, "SMPP session closed");
                }
                let _ = self
                    .status
                    .send(BindStatus::Down(DownReason::Closed(r.clone())));
            }
        }
        if self.stopping.is_some() || (unbinding && !disabling) {
            Exit::Stop
        } else {
            Exit::Reconnect { bound: was_bound }
        }
    }

    /// A deliver_sm or data_sm from the SMSC, through the inbound decoder:
    /// receipts, whole MOs and each part of a long MO become events,
    /// answered when the consumer has stored them.
    async fn on_request(
        &mut self,
        session: &mut Session,
        pdu: Pdu,
        generation: u64,
        ack_tx: &mpsc::UnboundedSender<AckMsg>,
    ) {
        let owed = Owed {
            sequence: pdu.sequence,
            data_sm: matches!(pdu.body, Body::DataSm(_)),
        };
        let ack = |owed: Owed| DeliveryAck {
            generation,
            sequences: vec![owed],
            tx: ack_tx.clone(),
            sent: false,
        };
        let smsc: Arc<str> = Arc::from(self.cfg.name.as_str());
        match crate::inbound::decode::take(pdu.body, owed) {
            Delivery::Receipt { dlr, owed } => {
                self.emit(SmppEvent::Dlr {
                    smsc,
                    dlr,
                    ack: ack(owed),
                })
                .await
            }
            Delivery::Mo(mo) => {
                self.emit(SmppEvent::Mo {
                    smsc,
                    from: mo.from,
                    from_ton: mo.from_ton,
                    to: mo.to,
                    text: mo.text,
                    data_coding: mo.data_coding,
                    ack: ack(mo.owed),
                })
                .await
            }
            Delivery::Part(p) => {
                let (part, owed) = p.split();
                self.emit(SmppEvent::MoPart {
                    smsc,
                    part,
                    ack: ack(owed),
                })
                .await
            }
            Delivery::Unusable { error, owed } => {
                // Accepted: a redelivery would not fix it.
                warn!(%error, "unusable request from SMSC; accepted and dropped");
                session.respond(owed.sequence, CommandStatus::ESME_ROK, owed.response());
            }
            Delivery::NotMessage(owed) => {
                session.respond(
                    owed.sequence,
                    CommandStatus::ESME_RINVCMDID,
                    Body::GenericNack,
                );
                debug!("unexpected request from SMSC");
            }
        }
    }

    async fn emit(&self, ev: SmppEvent) {
        // If nobody listens, dropping the event answers with a temporary error.
        let _ = self.events.send(ev).await;
    }
}

async fn sleep_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Jittered exponential backoff: min·2^attempt capped at max, times a
/// random factor in [0.5, 1] so many gateways do not reconnect in lockstep.
pub(crate) fn backoff(min: Duration, max: Duration, attempt: u32, rng: &Random) -> Duration {
    let base = min.saturating_mul(1u32 << attempt.min(16)).min(max);
    let f: f64 = rng.rng().gen_range(0.5..=1.0);
    base.mul_f64(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for attempt in 0..20 {
            let d = backoff(min, max, attempt, &Random::os());
            let base = min.saturating_mul(1 << attempt.min(16)).min(max);
            assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d:?}");
        }
    }
}

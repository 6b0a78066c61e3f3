//! Sans-IO SMPP session: one state machine serves both the ESME side and the
//! SMSC side (the simulator). Feed it bytes and time; take bytes to send,
//! events and the next deadline.
//!
//! ```text
//!   handle_input(now, bytes) ─┐                 ┌─> poll_transmit() -> bytes
//!   send_request(now, id, b) ─┼─> Session ──────┼─> poll_event()    -> Event
//!   respond(seq, status, b)  ─┤                 └─> poll_timeout()  -> Instant
//!   handle_timeout(now)      ─┘
//! ```

mod config;
mod rate;
mod window;

pub use config::{BindCredentials, BindType, SessionConfig};
pub use rate::TokenBucket;

use super::command::{CommandId, CommandStatus};
use super::frame::{FrameDecoder, FrameError};
use super::pdu::{Bind, BindResp, Body, Pdu, PduError};
use super::tlv::Tlv;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use window::{InFlight, Purpose, Window};

/// Caller's handle for a request, echoed in its outcome.
pub type RequestId = u64;

/// Which end of the link this session is.
#[derive(Debug, Clone)]
pub enum Role {
    /// We are the ESME and bind with these credentials.
    Esme(BindCredentials),
    /// We are the SMSC and wait for a bind.
    Smsc {
        /// system_id returned in bind responses.
        system_id: String,
    },
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Connected, bind not yet completed.
    Open,
    /// Bound with this bind type.
    Bound(BindType),
    /// Unbind requested: draining in-flight requests, then unbind.
    Unbinding,
    /// Finished; the connection should be closed once transmit is flushed.
    Closed,
}

/// Why the session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// We unbound cleanly.
    #[error("unbound")]
    Unbound,
    /// The peer unbound.
    #[error("the peer unbound")]
    PeerUnbound,
    /// The peer refused our bind.
    #[error("the peer refused the bind ({0})")]
    BindRejected(CommandStatus),
    /// No bind response in time.
    #[error("no bind response in time")]
    BindTimeout,
    /// No enquire_link_resp in time: the link is dead.
    #[error("no enquire_link_resp in time: the link is dead")]
    EnquireLinkTimeout,
    /// The byte stream cannot be framed (bad command_length).
    #[error("the byte stream cannot be framed: {0}")]
    Framing(FrameError),
    /// The transport closed.
    #[error("the connection closed")]
    TransportClosed,
    /// Unbind did not complete in time.
    #[error("unbind did not complete in time")]
    UnbindTimeout,
}

/// What the session tells its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// ESME: the bind succeeded.
    Bound {
        /// The SMSC's system_id.
        system_id: String,
        /// sc_interface_version TLV, if sent.
        interface_version: Option<u8>,
    },
    /// SMSC: a peer asks to bind; answer with [`Session::accept_bind`] or
    /// [`Session::reject_bind`].
    BindRequest {
        /// Sequence to answer.
        sequence: u32,
        /// Requested bind type.
        bind_type: BindType,
        /// The bind body.
        bind: Bind,
    },
    /// The response to one of our requests (any status but throttling,
    /// which is retried internally).
    Response {
        /// Caller's id.
        id: RequestId,
        /// command_status.
        status: CommandStatus,
        /// Response body (a generic_nack if the peer nacked).
        body: Body,
    },
    /// No response in time; the peer may or may not have acted on it.
    ResponseTimeout {
        /// Caller's id.
        id: RequestId,
    },
    /// A request from the peer to answer with [`Session::respond`]
    /// (deliver_sm, submit_sm, data_sm, query_sm, …).
    Request(Pdu),
    /// alert_notification or outbind (no response is due).
    Notification(Pdu),
    /// The peer throttled us; nothing is sent until `until`.
    Throttled {
        /// Status that caused the pause.
        status: CommandStatus,
        /// End of the pause.
        until: Instant,
    },
    /// The peer sent a PDU we could not parse; a generic_nack went back and
    /// the session stays up.
    Malformed(PduError),
    /// Requests handed back unsent (or sent but unanswered) because the
    /// session ended: the caller may retry them on another session.
    Returned {
        /// Caller's id.
        id: RequestId,
        /// The request.
        body: Body,
        /// True if it had been sent (the peer may have acted on it).
        was_sent: bool,
    },
    /// A response matching no request of ours (late after a timeout, or a
    /// generic_nack for a PDU we injected); the session ignores it.
    UnmatchedResponse(Pdu),
    /// The session is over; flush transmit and close the transport.
    Closed(CloseReason),
}

/// Counters a driver can export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// PDUs received.
    pub pdus_in: u64,
    /// PDUs sent.
    pub pdus_out: u64,
    /// Throttle responses seen.
    pub throttled: u64,
    /// Malformed PDUs nacked.
    pub malformed: u64,
}

/// The SMPP session state machine.
#[derive(Debug)]
pub struct Session {
    role: Role,
    cfg: SessionConfig,
    state: State,
    framer: FrameDecoder,
    rx: BytesMut,
    tx: BytesMut,
    events: VecDeque<Event>,
    queue: VecDeque<(RequestId, Body)>,
    window: Window,
    bucket: Option<TokenBucket>,
    last_rx: Instant,
    /// Latest time seen in any input; deadlines are computed from it.
    now: Instant,
    enquire_outstanding: bool,
    paused_until: Option<Instant>,
    throttle_streak: u32,
    unbind_deadline: Option<Instant>,
    unbind_sent: bool,
    stats: SessionStats,
}

impl Session {
    /// A new session on a freshly connected transport. An ESME sends its
    /// bind at once.
    pub fn new(role: Role, cfg: SessionConfig, now: Instant) -> Self {
        let bucket = cfg
            .rate_per_sec
            .map(|r| TokenBucket::new(r, cfg.rate_burst, now));
        let mut s = Session {
            framer: FrameDecoder::new(cfg.max_pdu_len),
            window: Window::new(),
            role,
            cfg,
            state: State::Open,
            rx: BytesMut::with_capacity(64 * 1024),
            tx: BytesMut::with_capacity(64 * 1024),
            events: VecDeque::new(),
            queue: VecDeque::new(),
            bucket,
            last_rx: now,
            now,
            enquire_outstanding: false,
            paused_until: None,
            throttle_streak: 0,
            unbind_deadline: None,
            unbind_sent: false,
            stats: SessionStats::default(),
        };
        if let Role::Esme(c) = &s.role {
            let bind = Bind {
                system_id: c.system_id.as_str().into(),
                password: c.password.as_str().into(),
                system_type: c.system_type.as_str().into(),
                interface_version: c.interface_version,
                address_range: c.address_range.clone(),
            };
            let body = match c.bind_type {
                BindType::Transmitter => Body::BindTransmitter(bind),
                BindType::Receiver => Body::BindReceiver(bind),
                BindType::Transceiver => Body::BindTransceiver(bind),
            };
            let timeout = s.cfg.bind_timeout;
            s.send_tracked(now, body, Purpose::Bind, timeout);
        }
        s
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// True once bound (and not yet unbinding).
    pub fn is_bound(&self) -> bool {
        matches!(self.state, State::Bound(_))
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Requests sent and awaiting a response.
    pub fn in_flight(&self) -> usize {
        self.window.user_in_flight()
    }

    /// Requests waiting for window, rate or pause.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// True while a throttle pause is in force.
    pub fn is_paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|t| now < t)
    }

    /// Queues a request (submit_sm, deliver_sm, data_sm, query_sm, …). It is
    /// sent when bound, the window has room, the rate allows and no throttle
    /// pause is in force. Refused (handed back) once unbinding or closed.
    #[allow(clippy::result_large_err)] // hands the request back without an allocation
    pub fn send_request(&mut self, now: Instant, id: RequestId, body: Body) -> Result<(), Body> {
        if matches!(self.state, State::Unbinding | State::Closed) {
            return Err(body);
        }
        self.touch(now);
        self.queue.push_back((id, body));
        self.pump(now);
        Ok(())
    }

    /// Answers a request from the peer.
    pub fn respond(&mut self, sequence: u32, status: CommandStatus, body: Body) {
        if self.state == State::Closed {
            return;
        }
        self.write(&Pdu::with_status(sequence, status, body));
    }

    /// Writes raw bytes to the peer, bypassing the codec. Only for fault
    /// injection in simulators (malformed PDUs, header-only error responses).
    pub fn inject_raw(&mut self, bytes: &[u8]) {
        self.tx.extend_from_slice(bytes);
    }

    /// SMSC: accepts a bind announced by [`Event::BindRequest`].
    pub fn accept_bind(&mut self, sequence: u32, bind_type: BindType) {
        if self.state != State::Open {
            // Closed in the same read, or bound already: nothing to accept.
            return;
        }
        let system_id = match &self.role {
            Role::Smsc { system_id } => system_id.clone(),
            Role::Esme(_) => return,
        };
        let resp = BindResp {
            system_id: system_id.into(),
            tlvs: vec![Tlv::SC_INTERFACE_VERSION(0x34)].into(),
        };
        let body = match bind_type {
            BindType::Transmitter => Body::BindTransmitterResp(resp),
            BindType::Receiver => Body::BindReceiverResp(resp),
            BindType::Transceiver => Body::BindTransceiverResp(resp),
        };
        self.write(&Pdu::new(sequence, body));
        self.state = State::Bound(bind_type);
    }

    /// SMSC: refuses a bind; the session closes after the response.
    pub fn reject_bind(&mut self, sequence: u32, bind_type: BindType, status: CommandStatus) {
        if self.state == State::Closed {
            return;
        }
        let body = match bind_type {
            BindType::Transmitter => Body::BindTransmitterResp(BindResp::default()),
            BindType::Receiver => Body::BindReceiverResp(BindResp::default()),
            BindType::Transceiver => Body::BindTransceiverResp(BindResp::default()),
        };
        self.write(&Pdu::with_status(sequence, status, body));
        self.close(CloseReason::BindRejected(status));
    }

    /// Starts a graceful unbind: nothing new is sent, queued requests are
    /// handed back, in-flight ones get their responses, then unbind goes out.
    pub fn unbind(&mut self, now: Instant) {
        match self.state {
            State::Closed | State::Unbinding => return,
            State::Open => {
                self.close(CloseReason::Unbound);
                return;
            }
            State::Bound(_) => {}
        }
        self.state = State::Unbinding;
        // In-flight requests keep their own response timeout: a slow but
        // successful submit must end as a response, not "outcome unknown".
        self.unbind_deadline = Some(now + self.cfg.response_timeout + self.cfg.unbind_timeout);
        for (id, body) in self.queue.drain(..) {
            self.events.push_back(Event::Returned {
                id,
                body,
                was_sent: false,
            });
        }
        self.maybe_send_unbind(now);
    }

    /// The transport closed under us.
    pub fn handle_transport_closed(&mut self) {
        self.close(CloseReason::TransportClosed);
    }

    /// Feeds bytes received from the peer.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        self.touch(now);
        self.rx.extend_from_slice(data);
        self.last_rx = now;
        loop {
            match self.framer.decode(&mut self.rx) {
                Ok(Some(frame)) => {
                    self.stats.pdus_in += 1;
                    match Pdu::decode(frame) {
                        Ok(pdu) => self.on_pdu(now, pdu),
                        Err(e) => self.on_malformed(now, e),
                    }
                    if self.state == State::Closed {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let seq = e.sequence().unwrap_or(0);
                    self.write(&Pdu::with_status(
                        seq,
                        CommandStatus::ESME_RINVCMDLEN,
                        Body::GenericNack,
                    ));
                    self.close(CloseReason::Framing(e));
                    return;
                }
            }
        }
        self.pump(now);
    }

    /// Bytes to send, coalesced; `None` when nothing is pending.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.tx.is_empty() {
            None
        } else {
            Some(self.tx.split().freeze())
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest instant at which [`Session::handle_timeout`] has work.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let mut t = self.window.next_deadline();
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t: Instant| t.min(x)));
            }
        };
        if self.is_bound() && !self.enquire_outstanding {
            consider(Some(self.last_rx + self.cfg.enquire_link_interval));
        }
        consider(self.unbind_deadline);
        if self.is_bound() && !self.queue.is_empty() {
            if let Some(p) = self.paused_until {
                consider(Some(p));
            } else if self.window.user_in_flight() < self.cfg.window {
                let now = self.now;
                if let Some(b) = self.bucket.as_mut() {
                    consider(Some(b.next_available(now)));
                }
            }
        }
        t
    }

    /// Runs everything due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        self.touch(now);
        // Report every expired user request before closing on an expired
        // internal one, so none vanishes without an outcome.
        let mut fatal = None;
        for (_seq, f) in self.window.expire(now) {
            match f.purpose {
                Purpose::Bind => fatal = fatal.or(Some(CloseReason::BindTimeout)),
                Purpose::EnquireLink => fatal = fatal.or(Some(CloseReason::EnquireLinkTimeout)),
                Purpose::Unbind => fatal = fatal.or(Some(CloseReason::UnbindTimeout)),
                Purpose::User(id) => self.events.push_back(Event::ResponseTimeout { id }),
            }
        }
        if let Some(reason) = fatal {
            self.close(reason);
            return;
        }
        if let Some(d) = self.unbind_deadline {
            if now >= d {
                self.close(CloseReason::UnbindTimeout);
                return;
            }
        }
        if self.is_bound()
            && !self.enquire_outstanding
            && now >= self.last_rx + self.cfg.enquire_link_interval
        {
            self.enquire_outstanding = true;
            let timeout = self.cfg.response_timeout;
            self.send_tracked(now, Body::EnquireLink, Purpose::EnquireLink, timeout);
        }
        if self.paused_until.is_some_and(|p| now >= p) {
            self.paused_until = None;
        }
        self.maybe_send_unbind(now);
        self.pump(now);
    }

    fn touch(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn write(&mut self, pdu: &Pdu) {
        // Bodies we build ourselves are valid; an encode failure here means a
        // caller passed an impossible request, handled in pump().
        if pdu.encode(&mut self.tx).is_ok() {
            self.stats.pdus_out += 1;
        }
    }

    fn send_tracked(&mut self, now: Instant, body: Body, purpose: Purpose, timeout: Duration) {
        let seq = self.window.next_sequence();
        let pdu = Pdu::new(seq, body);
        self.write(&pdu);
        self.window.insert(
            seq,
            InFlight {
                purpose,
                body: pdu.body,
                deadline: now + timeout,
            },
        );
    }

    /// Sends queued requests while window, rate and pause allow.
    fn pump(&mut self, now: Instant) {
        if !self.is_bound() {
            return;
        }
        if self.paused_until.is_some_and(|p| now < p) {
            return;
        }
        while self.window.user_in_flight() < self.cfg.window {
            if self.queue.is_empty() {
                break;
            }
            if let Some(b) = self.bucket.as_mut() {
                if !b.try_take(now) {
                    break;
                }
            }
            let Some((id, body)) = self.queue.pop_front() else {
                break;
            };
            let seq = self.window.next_sequence();
            let pdu = Pdu::new(seq, body);
            match pdu.encode(&mut self.tx) {
                Ok(()) => {
                    self.stats.pdus_out += 1;
                    self.window.insert(
                        seq,
                        InFlight {
                            purpose: Purpose::User(id),
                            body: pdu.body,
                            deadline: now + self.cfg.response_timeout,
                        },
                    );
                }
                Err(_) => self.events.push_back(Event::Response {
                    id,
                    status: CommandStatus::ESME_RSYSERR,
                    body: Body::GenericNack,
                }),
            }
        }
    }

    fn maybe_send_unbind(&mut self, now: Instant) {
        if self.state == State::Unbinding && !self.unbind_sent && self.window.user_in_flight() == 0
        {
            self.unbind_sent = true;
            let timeout = self.cfg.unbind_timeout;
            self.send_tracked(now, Body::Unbind, Purpose::Unbind, timeout);
        }
    }

    fn on_malformed(&mut self, _now: Instant, e: PduError) {
        self.stats.malformed += 1;
        // A response we cannot parse still settles its request.
        if e.command_id & super::command::RESPONSE_BIT != 0 {
            if let Some(f) = self.window.remove(e.sequence) {
                self.settle(f, CommandStatus(e.status.max(1)), Body::GenericNack);
            }
        } else {
            self.write(&Pdu::with_status(
                e.sequence,
                e.nack_status(),
                Body::GenericNack,
            ));
        }
        self.events.push_back(Event::Malformed(e));
    }

    fn on_pdu(&mut self, now: Instant, pdu: Pdu) {
        let cmd = pdu.command_id();
        if cmd.is_response() {
            self.on_response(now, pdu);
            return;
        }
        match &pdu.body {
            Body::EnquireLink => {
                // Answered regardless of window or state: it is how the peer
                // knows we are alive.
                if self.cfg.answer_enquire_link {
                    self.write(&Pdu::new(pdu.sequence, Body::EnquireLinkResp));
                }
            }
            Body::Unbind => {
                self.write(&Pdu::new(pdu.sequence, Body::UnbindResp));
                self.close(CloseReason::PeerUnbound);
            }
            Body::BindTransmitter(_) | Body::BindReceiver(_) | Body::BindTransceiver(_) => {
                let bind_type = match cmd {
                    CommandId::BindTransmitter => BindType::Transmitter,
                    CommandId::BindReceiver => BindType::Receiver,
                    _ => BindType::Transceiver,
                };
                let resp_body = |b| match bind_type {
                    BindType::Transmitter => Body::BindTransmitterResp(b),
                    BindType::Receiver => Body::BindReceiverResp(b),
                    BindType::Transceiver => Body::BindTransceiverResp(b),
                };
                match (&self.role, self.state) {
                    (Role::Smsc { .. }, State::Open) => {
                        let Pdu { sequence, body, .. } = pdu;
                        let (Body::BindTransmitter(bind)
                        | Body::BindReceiver(bind)
                        | Body::BindTransceiver(bind)) = body
                        else {
                            return;
                        };
                        self.events.push_back(Event::BindRequest {
                            sequence,
                            bind_type,
                            bind,
                        });
                    }
                    (Role::Smsc { .. }, _) => self.write(&Pdu::with_status(
                        pdu.sequence,
                        CommandStatus::ESME_RALYBND,
                        resp_body(BindResp::default()),
                    )),
                    (Role::Esme(_), _) => self.write(&Pdu::with_status(
                        pdu.sequence,
                        CommandStatus::ESME_RINVCMDID,
                        resp_body(BindResp::default()),
                    )),
                }
            }
            Body::Outbind(_) | Body::AlertNotification(_) => {
                self.events.push_back(Event::Notification(pdu));
            }
            _ => {
                if !self.is_bound() && self.state != State::Unbinding {
                    let status = CommandStatus::ESME_RINVBNDSTS;
                    self.write(&Pdu::with_status(pdu.sequence, status, Body::GenericNack));
                    return;
                }
                self.events.push_back(Event::Request(pdu));
            }
        }
    }

    fn on_response(&mut self, now: Instant, pdu: Pdu) {
        let Some(f) = self.window.remove(pdu.sequence) else {
            // A response to nothing we sent (late after a timeout, or a
            // confused peer): it must not disturb the session.
            self.events.push_back(Event::UnmatchedResponse(pdu));
            return;
        };
        match f.purpose {
            Purpose::Bind => {
                if pdu.status.is_ok() {
                    let (system_id, iv) = match &pdu.body {
                        Body::BindTransmitterResp(b)
                        | Body::BindReceiverResp(b)
                        | Body::BindTransceiverResp(b) => (
                            b.system_id.to_str_lossy().into_owned(),
                            b.tlvs.sc_interface_version(),
                        ),
                        _ => (String::new(), None),
                    };
                    let bt = match &self.role {
                        Role::Esme(c) => c.bind_type,
                        Role::Smsc { .. } => BindType::Transceiver,
                    };
                    self.state = State::Bound(bt);
                    self.events.push_back(Event::Bound {
                        system_id,
                        interface_version: iv,
                    });
                    self.pump(now);
                } else {
                    self.close(CloseReason::BindRejected(pdu.status));
                }
            }
            Purpose::EnquireLink => self.enquire_outstanding = false,
            Purpose::Unbind => self.close(CloseReason::Unbound),
            Purpose::User(_) => {
                if pdu.status.is_throttle() {
                    self.stats.throttled += 1;
                    self.throttle_streak = self.throttle_streak.saturating_add(1);
                    let factor = 1u32 << (self.throttle_streak - 1).min(8);
                    let pause = (self.cfg.throttle_pause * factor).min(self.cfg.max_throttle_pause);
                    let until = now + pause;
                    self.paused_until = Some(until);
                    if let Purpose::User(id) = f.purpose {
                        if self.state == State::Unbinding {
                            self.events.push_back(Event::Returned {
                                id,
                                body: f.body,
                                was_sent: false,
                            });
                        } else {
                            // Retry the same message first when the pause ends.
                            self.queue.push_front((id, f.body));
                        }
                    }
                    self.events.push_back(Event::Throttled {
                        status: pdu.status,
                        until,
                    });
                } else {
                    self.throttle_streak = 0;
                    self.settle(f, pdu.status, pdu.body);
                }
                self.maybe_send_unbind(now);
            }
        }
    }

    fn settle(&mut self, f: InFlight, status: CommandStatus, body: Body) {
        match f.purpose {
            Purpose::User(id) => self.events.push_back(Event::Response { id, status, body }),
            Purpose::Bind => self.close(CloseReason::BindRejected(status)),
            Purpose::EnquireLink => self.enquire_outstanding = false,
            Purpose::Unbind => self.close(CloseReason::Unbound),
        }
    }

    fn close(&mut self, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        for (id, body, was_sent) in self.window.drain_user() {
            self.events
                .push_back(Event::Returned { id, body, was_sent });
        }
        for (id, body) in self.queue.drain(..) {
            self.events.push_back(Event::Returned {
                id,
                body,
                was_sent: false,
            });
        }
        self.events.push_back(Event::Closed(reason));
    }
}

#[cfg(test)]
mod tests;

//! Placing calls over SIP with rsipstack (pinned, `=0.7.14`), behind
//! [`CallPlacer`]. rsipstack runs the transactions (Timers A/B/D, ACKs,
//! CANCEL after a provisional, the 200/CANCEL race answered with ACK+BYE);
//! we add what it lacks or gets wrong for a carrier trunk: digest answers
//! with SHA-256 ([`verigate_codecs::sip::digest`]; its own parser refuses
//! RFC 7616's `SHA-256`), per-trunk admission ([`super::gate`]), OPTIONS
//! pings, dialog removal after termination (it keeps confirmed dialogs
//! otherwise), and the media ([`super::media`]). docs/sip-rsipstack.md
//! lists what was verified about it.

use super::gate::{Gate, Refusal};
use super::media::{Media, MediaEvent, Stream};
use super::script::Ended;
use super::{CallEvent, CallPlacer, CallSpec, Command, PlaceError, PlacedCall};
use crate::config::{CallerIdStyle, SipConfig, SipTransport, SipTrunkEntry};
use crate::random::Random;
use rand::Rng;
use rsipstack::dialog::dialog::{DialogState, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode, Transport, Uri};
use rsipstack::transaction::endpoint::{EndpointInnerRef, EndpointOption};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::{udp::UdpConnection, SipAddr, TcpListenerConnection, TransportLayer};
use rsipstack::EndpointBuilder;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use verigate_codecs::sdp;
use verigate_codecs::sip::digest::Challenge;

/// One configured trunk, resolved.
#[derive(Debug)]
struct Trunk {
    cfg: SipTrunkEntry,
    target: SocketAddr,
    transport: Transport,
    domain: String,
    gate: Mutex<Gate>,
}

impl Trunk {
    fn uri(&self, user: &str, host: &str) -> String {
        match self.transport {
            Transport::Tcp => format!("sip:{user}@{host};transport=tcp;user=phone"),
            _ => format!("sip:{user}@{host};user=phone"),
        }
    }
}

struct Inner {
    ep: EndpointInnerRef,
    dl: Arc<DialogLayer>,
    trunks: Vec<Trunk>,
    routes: crate::routing::PrefixRoutes,
    /// See [`end_grace`].
    end_grace: Duration,
    media: Media,
    /// Address in SDP and Contact.
    public_ip: IpAddr,
    /// Address RTP sockets bind to: the SIP listen address (`public_ip`
    /// may be a NAT's, not on this host).
    media_ip: IpAddr,
    /// Our SIP address, for Contact.
    sip_addr: SocketAddr,
    /// Call-IDs, SDP session ids, digest cnonces.
    rng: Random,
    token: CancellationToken,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipEngine")
            .field("sip_addr", &self.sip_addr)
            .field("trunks", &self.trunks)
            .finish_non_exhaustive()
    }
}

/// The SIP engine: one endpoint (UDP and TCP on `[sip] listen`) for every trunk.
#[derive(Debug, Clone)]
pub struct SipEngine {
    inner: Arc<Inner>,
}

/// Why the engine could not start (the operator's configuration or the machine).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `sip.listen` or `sip.public_ip` is not an address.
    #[error("{key} {value:?} is not an IP address{}: {source}", if *.key == "sip.listen" { " and port" } else { "" })]
    BadAddress {
        /// The setting.
        key: &'static str,
        /// Its value.
        value: String,
        /// What the parser said.
        source: std::net::AddrParseError,
    },
    /// A socket could not be opened.
    #[error("cannot listen for SIP on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// What the SIP stack (or the OS under it) said.
        source: rsipstack::Error,
    },
    /// A trunk host does not resolve.
    #[error("sip_trunk {name}: cannot resolve {host}:{port}{}", .source.as_ref().map(|e| format!(": {e}")).unwrap_or_else(|| ": no address".into()))]
    Resolve {
        /// Trunk name.
        name: String,
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// The resolver's error (none: it answered no address).
        source: Option<std::io::Error>,
    },
    /// Media threads could not start.
    #[error("cannot start media threads: {0}")]
    Media(#[source] std::io::Error),
}

/// Why an answered call's media could not start (we hang up).
#[derive(Debug, thiserror::Error)]
enum MediaSetupError {
    /// The answer's SDP offers nothing we can send.
    #[error("unusable SDP answer: {0}")]
    Sdp(#[from] sdp::SdpError),
    /// A second 200 OK with SDP for a call whose media runs already.
    #[error("media already open")]
    AlreadyOpen,
    /// The RTP stream could not start (this machine).
    #[error("cannot start the RTP stream: {0}")]
    Stream(#[from] std::io::Error),
}

impl SipEngine {
    /// Opens the endpoint and starts serving; `trunks` are resolved now.
    /// Everything random on the wire (Call-IDs, SSRCs, cnonces) comes from `rng`.
    pub async fn start(
        cfg: &SipConfig,
        trunks: &[SipTrunkEntry],
        rng: Random,
        token: CancellationToken,
    ) -> Result<Self, StartError> {
        let listen: SocketAddr = cfg.listen.parse().map_err(|e| StartError::BadAddress {
            key: "sip.listen",
            value: cfg.listen.clone(),
            source: e,
        })?;
        let listen_err = |e: rsipstack::Error| StartError::Listen {
            addr: cfg.listen.clone(),
            source: e,
        };
        let tl = TransportLayer::new(token.child_token());
        let udp = UdpConnection::create_connection(listen, None, Some(token.child_token()))
            .await
            .map_err(listen_err)?;
        // Port 0: TCP listens on the port UDP got.
        let bound = udp.get_addr().get_socketaddr().map_err(listen_err)?;
        tl.add_transport(udp.into());
        let tcp = TcpListenerConnection::new(bound, None)
            .await
            .map_err(listen_err)?;
        tl.add_transport(tcp.into());
        let t1 = cfg.t1.0;
        let ep = EndpointBuilder::new()
            .with_user_agent(concat!("verigate/", env!("CARGO_PKG_VERSION")))
            .with_cancel_token(token.clone())
            .with_transport_layer(tl)
            .with_option(EndpointOption {
                t1,
                t1x64: 64 * t1,
                // Timer C above any ring timeout we allow (170 s), so a
                // long ring is ended by our CANCEL, not a local 408.
                timerc: Duration::from_secs(185),
                callid_suffix: Some("verigate".into()),
                ..Default::default()
            })
            .build();
        let incoming = ep.incoming_transactions().map_err(listen_err)?;
        let dl = Arc::new(DialogLayer::new(ep.inner.clone()));
        let serve = ep.inner.clone();
        tokio::spawn(async move { serve.serve().await });
        tokio::spawn(serve_incoming(dl.clone(), incoming));
        let public_ip = if cfg.public_ip.is_empty() {
            bound.ip()
        } else {
            cfg.public_ip.parse().map_err(|e| StartError::BadAddress {
                key: "sip.public_ip",
                value: cfg.public_ip.clone(),
                source: e,
            })?
        };
        let now = tokio::time::Instant::now().into_std();
        let mut resolved = Vec::new();
        for t in trunks {
            let unresolved = |source| StartError::Resolve {
                name: t.name.clone(),
                host: t.host.clone(),
                port: t.port,
                source,
            };
            let target = tokio::net::lookup_host((t.host.as_str(), t.port))
                .await
                .map_err(|e| unresolved(Some(e)))?
                .next()
                .ok_or_else(|| unresolved(None))?;
            resolved.push(Trunk {
                cfg: t.clone(),
                target,
                transport: match t.transport {
                    SipTransport::Udp => Transport::Udp,
                    SipTransport::Tcp => Transport::Tcp,
                },
                domain: if t.from_domain.is_empty() {
                    t.host.clone()
                } else {
                    t.from_domain.clone()
                },
                gate: Mutex::new(Gate::new(now, t.calls_per_second, t.max_concurrent)),
            });
        }
        let media = Media::start(cfg.media_workers, rng.clone()).map_err(StartError::Media)?;
        let mut routes = crate::routing::PrefixRoutes::default();
        for (i, t) in resolved.iter().enumerate() {
            routes.add(i, &t.cfg.prefixes);
        }
        let inner = Arc::new(Inner {
            ep: ep.inner.clone(),
            dl,
            trunks: resolved,
            routes,
            end_grace: end_grace(cfg.t1.0),
            media,
            public_ip,
            media_ip: bound.ip(),
            sip_addr: SocketAddr::new(public_ip, bound.port()),
            rng,
            token,
        });
        for i in 0..inner.trunks.len() {
            if !inner.trunks[i].cfg.options_interval.0.is_zero() {
                tokio::spawn(ping(inner.clone(), i));
            }
        }
        Ok(Self { inner })
    }

    /// Our SIP address (the port chosen when `[sip] listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.sip_addr
    }

    /// The media threads (for lateness figures).
    pub fn media(&self) -> &Media {
        &self.inner.media
    }

    /// Dialogs the stack holds (0 when no call is up: none leaks).
    pub fn dialogs(&self) -> usize {
        self.inner.dl.len()
    }
}

/// Requests that are not ours to start: in-dialog ones (a BYE from the
/// far end) go to their dialog; OPTIONS is answered; the rest get 481.
async fn serve_incoming(
    dl: Arc<DialogLayer>,
    mut incoming: rsipstack::transaction::TransactionReceiver,
) {
    while let Some(mut tx) = incoming.recv().await {
        if let Some(mut d) = dl.match_dialog(&tx) {
            tokio::spawn(async move {
                let _ = d.handle(&mut tx).await;
            });
            continue;
        }
        let reply = match tx.original.method {
            Method::Options => StatusCode::OK,
            Method::Invite => StatusCode::NotAcceptableHere,
            Method::Ack => continue,
            _ => StatusCode::CallTransactionDoesNotExist,
        };
        tokio::spawn(async move {
            let _ = tx.reply(reply).await;
        });
    }
}

/// OPTIONS every `options_interval`; any response means the trunk is up,
/// none (Timer F) means down. Ends with the engine.
async fn ping(inner: Arc<Inner>, i: usize) {
    let t = &inner.trunks[i];
    let mut every = tokio::time::interval(t.cfg.options_interval.0);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = inner.token.cancelled() => return,
            _ = every.tick() => {}
        }
        let up = options(&inner, t).await;
        let mut g = t.gate.lock().expect("gate lock");
        if g.is_up() != up {
            if up {
                tracing::info!(trunk = %t.cfg.name, "trunk answers OPTIONS again");
            } else {
                tracing::warn!(trunk = %t.cfg.name, "trunk does not answer OPTIONS; no new calls on it");
            }
        }
        g.on_health(up);
    }
}

// rsipstack's error type is large; these run once per call or ping.
#[allow(clippy::result_large_err)]
async fn options(inner: &Inner, t: &Trunk) -> bool {
    let build = || -> rsipstack::Result<Transaction> {
        let uri: Uri = t.uri("ping", &t.target.to_string()).as_str().try_into()?;
        let from = rsipstack::sip::typed::From {
            display_name: None,
            uri: format!("sip:verigate@{}", t.domain).as_str().try_into()?,
            params: vec![],
        }
        .with_tag(rsipstack::transaction::make_tag());
        let to = rsipstack::sip::typed::To {
            display_name: None,
            uri: uri.clone(),
            params: vec![],
        };
        let dest = SipAddr::new(t.transport, t.target.into());
        // Via names our own address on the trunk's transport.
        let ours = inner
            .ep
            .get_addrs()
            .into_iter()
            .find(|a| a.r#type == Some(t.transport));
        let via = inner.ep.get_via(ours, None)?;
        let req = inner
            .ep
            .make_request(Method::Options, uri, via, from, to, 1, None);
        let key = TransactionKey::from_request(&req, TransactionRole::Client)?;
        let mut tx = Transaction::new_client(key, req, inner.ep.clone(), None);
        tx.destination = Some(dest);
        Ok(tx)
    };
    let Ok(mut tx) = build() else { return false };
    if tx.send().await.is_err() {
        return false;
    }
    while let Some(msg) = tx.receive().await {
        if let rsipstack::sip::SipMessage::Response(r) = msg {
            if r.status_code.code() >= 200 {
                return from_peer(&r);
            }
        }
    }
    false
}

/// Whether a final response came from the network. rsipstack reports
/// Timer B/F expiry as a 408 it makes itself, which carries no To tag; a
/// UAS or proxy always tags its final responses (RFC 3261 §8.2.6.2).
fn from_peer(r: &rsipstack::sip::Response) -> bool {
    r.to_header()
        .ok()
        .and_then(|t| t.tag().ok().flatten())
        .is_some()
}

#[async_trait::async_trait]
impl CallPlacer for SipEngine {
    async fn place(&self, spec: CallSpec) -> Result<PlacedCall, PlaceError> {
        let inner = &self.inner;
        let now = tokio::time::Instant::now().into_std();
        let mut soonest: Option<Instant> = None;
        let mut any = false;
        let mut chosen = None;
        // Longest prefix first, then shorter ones, then default trunks.
        for i in inner.routes.candidates(&spec.to) {
            let t = &inner.trunks[i];
            any = true;
            match t.gate.lock().expect("gate lock").admit(now) {
                Ok(()) => {
                    chosen = Some(i);
                    break;
                }
                Err(Refusal::Until(at)) => soonest = Some(soonest.map_or(at, |s| s.min(at))),
                Err(Refusal::Full) | Err(Refusal::Down) => {}
            }
        }
        if !any {
            return Err(PlaceError::NoRoute(spec.to));
        }
        let Some(i) = chosen else {
            return Err(PlaceError::Busy {
                retry_in: soonest.map(|s| s - now),
            });
        };
        let t = &inner.trunks[i];
        let release = || t.gate.lock().expect("gate lock").release();
        let caller = match spec
            .caller
            .clone()
            .or_else(|| (!t.cfg.caller_id.is_empty()).then(|| t.cfg.caller_id.clone()))
        {
            Some(c) => c,
            None => {
                release();
                return Err(PlaceError::NoCallerId {
                    trunk: t.cfg.name.clone(),
                });
            }
        };
        let socket = match std::net::UdpSocket::bind((inner.media_ip, 0)) {
            Ok(s) => s,
            Err(e) => {
                release();
                return Err(PlaceError::RtpSocket(Arc::new(e)));
            }
        };
        let rtp_port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
        let offer = sdp::offer(
            inner.rng.rng().gen::<u32>().into(),
            inner.public_ip,
            rtp_port,
        );
        let call_id = format!("{:032x}@verigate", inner.rng.rng().gen::<u128>());
        let callee = t.uri(&spec.to, &t.target.to_string());
        let opt = match invite_option(inner, t, &caller, &callee, &call_id, offer) {
            Ok(o) => o,
            Err(e) => {
                release();
                return Err(PlaceError::Invite(Arc::new(e)));
            }
        };
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            inner: self.inner.clone(),
            trunk: i,
            callee,
            socket: Some(socket),
            events: ev_tx,
            owner_gone: false,
        };
        tokio::spawn(driver.run(opt, cmd_rx));
        Ok(PlacedCall {
            events: ev_rx,
            commands: cmd_tx,
            trunk: t.cfg.name.clone(),
            call_id,
        })
    }
}

#[allow(clippy::result_large_err)]
fn invite_option(
    inner: &Inner,
    t: &Trunk,
    caller: &str,
    callee: &str,
    call_id: &str,
    offer: String,
) -> rsipstack::Result<InviteOption> {
    let from = format!("sip:{caller}@{};user=phone", t.domain);
    let mut headers = Vec::new();
    if t.cfg.caller_id_style == CallerIdStyle::Pai {
        headers.push(Header::PAssertedIdentity(format!("<{from}>").into()));
    }
    Ok(InviteOption {
        caller: from.as_str().try_into()?,
        callee: callee.try_into()?,
        destination: Some(SipAddr::new(t.transport, t.target.into())),
        contact: format!("sip:{caller}@{}", inner.sip_addr)
            .as_str()
            .try_into()?,
        content_type: Some("application/sdp".into()),
        offer: Some(offer.into_bytes()),
        headers: Some(headers),
        call_id: Some(call_id.to_string()),
        ..Default::default()
    })
}

/// Runs one call: the INVITE (and one authenticated retry), the dialog's
/// states, our commands, the media.
struct Driver {
    inner: Arc<Inner>,
    trunk: usize,
    callee: String,
    socket: Option<std::net::UdpSocket>,
    events: mpsc::UnboundedSender<CallEvent>,
    /// The call's owner dropped its command sender.
    owner_gone: bool,
}

/// Longest we wait for the stack to finish a call we ended: a CANCEL or
/// BYE transaction lasts 64·T1 at most; then some.
pub fn end_grace(t1: Duration) -> Duration {
    64 * t1 + Duration::from_secs(8)
}

impl Driver {
    async fn run(mut self, mut opt: InviteOption, mut commands: mpsc::UnboundedReceiver<Command>) {
        let ended = self.attempts(&mut opt, &mut commands).await;
        let t = &self.inner.trunks[self.trunk];
        {
            let mut g = t.gate.lock().expect("gate lock");
            g.release();
            if let Ended::Refused {
                code: 503,
                retry_after,
            } = &ended
            {
                g.on_503(tokio::time::Instant::now().into_std(), *retry_after);
            }
        }
        let _ = self.events.send(CallEvent::Ended(ended));
    }

    async fn attempts(
        &mut self,
        opt: &mut InviteOption,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Ended {
        // Digest answers sent: one, and one more if the server says the
        // nonce we answered went stale (RFC 7616: same credentials, new nonce).
        let mut answers = 0u8;
        loop {
            match self.attempt(opt.clone(), commands).await {
                Attempt::Done(e) => return e,
                Attempt::Challenged(resp) => {
                    let t = &self.inner.trunks[self.trunk];
                    let code = resp.status_code.code();
                    let (name, reply) = if code == 407 {
                        ("proxy-authenticate", true)
                    } else {
                        ("www-authenticate", false)
                    };
                    let challenges: Vec<String> = resp
                        .headers
                        .iter()
                        .filter(|h| h.name().eq_ignore_ascii_case(name))
                        .map(|h| h.value().to_string())
                        .collect();
                    let refs: Vec<&str> = challenges.iter().map(String::as_str).collect();
                    let chosen = Challenge::preferred(&refs);
                    let stale = chosen.as_ref().is_ok_and(|c| c.stale);
                    let allowed = answers == 0 || (answers == 1 && stale);
                    if !allowed || t.cfg.username.is_empty() || self.owner_gone {
                        return Ended::Refused {
                            code,
                            retry_after: None,
                        };
                    }
                    answers += 1;
                    let answer = chosen.and_then(|c| {
                        c.answer(
                            &t.cfg.username,
                            &t.cfg.password,
                            "INVITE",
                            &self.callee,
                            &format!("{:016x}", self.inner.rng.rng().gen::<u64>()),
                            1,
                        )
                    });
                    let answer = match answer {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(trunk = %t.cfg.name, error = %e, "cannot answer the trunk's digest challenge");
                            return Ended::Refused {
                                code,
                                retry_after: None,
                            };
                        }
                    };
                    let h = if reply {
                        Header::ProxyAuthorization(answer.into())
                    } else {
                        Header::Authorization(answer.into())
                    };
                    // The new answer replaces the one for the stale nonce.
                    let headers = opt.headers.get_or_insert_with(Vec::new);
                    headers.retain(|h| {
                        !matches!(h, Header::Authorization(_) | Header::ProxyAuthorization(_))
                    });
                    headers.push(h);
                }
            }
        }
    }

    async fn attempt(
        &mut self,
        opt: InviteOption,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Attempt {
        let dl = self.inner.dl.clone();
        let (stx, mut states) = dl.new_dialog_state_channel();
        let (dialog, mut join) = match dl.do_invite_async(opt, stx) {
            Ok(x) => x,
            Err(e) => return Attempt::Done(Ended::NoResponse(e.to_string())),
        };
        let (media_tx, mut media_rx) = mpsc::unbounded_channel::<MediaEvent>();
        let stop = CancellationToken::new();
        let _stop_media = stop.clone().drop_guard();
        let mut stream: Option<Stream> = None;
        let mut confirmed = false;
        let mut join_done = false;
        let mut ending_since: Option<tokio::time::Instant> = None;
        let mut cancel_sent = false;
        let mut unusable_media = false;
        let mut final_code: Option<u16> = None;
        loop {
            let grace = async {
                match ending_since {
                    Some(t) => tokio::time::sleep_until(t + self.inner.end_grace).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                s = states.recv() => match s {
                    Some(DialogState::Early(_, resp)) => {
                        let code = resp.status_code.code();
                        let ev = if code == 183 && !resp.body.is_empty() {
                            CallEvent::EarlyMedia
                        } else {
                            CallEvent::Ringing
                        };
                        let _ = self.events.send(ev);
                    }
                    Some(DialogState::Confirmed(_, resp)) => {
                        if confirmed {
                            continue;
                        }
                        confirmed = true;
                        let body = String::from_utf8_lossy(&resp.body).into_owned();
                        match self.open_media(&body, media_tx.clone(), stop.clone()) {
                            Ok((s, law)) => {
                                stream = Some(s);
                                let _ = self.events.send(CallEvent::Answered(law));
                            }
                            Err(why) => {
                                tracing::warn!(error = %why, "answered with unusable SDP; hanging up");
                                let _ = dialog.bye().await;
                                ending_since.get_or_insert_with(tokio::time::Instant::now);
                                unusable_media = true;
                            }
                        }
                    }
                    Some(DialogState::Terminated(id, reason)) => {
                        dl.remove_dialog(&id);
                        if unusable_media {
                            // Reported like a refusal of the offer.
                            return Attempt::Done(Ended::Refused { code: 488, retry_after: None });
                        }
                        if confirmed {
                            return Attempt::Done(Ended::Hangup);
                        }
                        // An unanswered call ends when the INVITE does.
                        if join_done {
                            return Attempt::Done(self.unanswered(final_code, &reason));
                        }
                        if let Ok(r) = tokio::time::timeout(Duration::from_secs(2), &mut join).await {
                            return self.final_of(r, cancel_sent, &reason);
                        }
                        return Attempt::Done(self.unanswered(final_code, &reason));
                    }
                    Some(_) => {}
                    None => {
                        return Attempt::Done(if confirmed { Ended::Hangup } else {
                            Ended::NoResponse("the SIP stack stopped".into())
                        });
                    }
                },
                r = &mut join, if !join_done => {
                    join_done = true;
                    match &r {
                        Ok(Ok((_, Some(resp)))) if resp.status_code.code() < 300 => {
                            // Answered: the dialog states carry on.
                            final_code = Some(resp.status_code.code());
                        }
                        _ => return self.final_of(r, cancel_sent, &TerminatedReason::Timeout),
                    }
                }
                c = commands.recv(), if !self.owner_gone => match c {
                    Some(Command::Play(a)) => if let Some(s) = &stream { s.play(a) },
                    Some(Command::Pause(d)) => if let Some(s) = &stream { s.pause(d) },
                    Some(Command::Clear) => if let Some(s) = &stream { s.clear() },
                    Some(Command::End) | None => {
                        // The owner dropped the call: end it, and stop
                        // polling a channel that answers None at once.
                        self.owner_gone |= c.is_none();
                        if ending_since.is_some() && (confirmed || cancel_sent) {
                            continue;
                        }
                        ending_since = Some(tokio::time::Instant::now());
                        if confirmed {
                            let _ = dialog.bye().await;
                        } else {
                            cancel_sent = true;
                            // Deferred by the stack until a provisional
                            // came (RFC 3261 §9.1).
                            let _ = dialog.cancel().await;
                        }
                    }
                },
                m = media_rx.recv() => if let Some(m) = m {
                    let _ = self.events.send(CallEvent::Media(m));
                },
                _ = grace => {
                    return Attempt::Done(if confirmed { Ended::Hangup } else {
                        Ended::NoResponse("the far end did not finish the call after we ended it".into())
                    });
                }
            }
        }
    }

    fn final_of(
        &self,
        r: Result<rsipstack::dialog::invitation::InviteAsyncResult, tokio::task::JoinError>,
        cancel_sent: bool,
        reason: &TerminatedReason,
    ) -> Attempt {
        match r {
            Ok(Ok((_, Some(resp)))) => {
                let code = resp.status_code.code();
                if code == 408 && !from_peer(&resp) {
                    return Attempt::Done(Ended::NoResponse(
                        "no response to the INVITE (Timer B)".into(),
                    ));
                }
                if (code == 401 || code == 407) && !cancel_sent {
                    return Attempt::Challenged(Box::new(resp));
                }
                if code == 487 && cancel_sent {
                    return Attempt::Done(Ended::Canceled);
                }
                if code < 300 {
                    // A 200 that raced our CANCEL: the stack sent ACK and BYE.
                    return Attempt::Done(Ended::Hangup);
                }
                let retry_after = retry_after(resp.header_value("Retry-After").as_deref());
                Attempt::Done(Ended::Refused { code, retry_after })
            }
            Ok(Ok((_, None))) => Attempt::Done(self.unanswered(None, reason)),
            Ok(Err(e)) => Attempt::Done(Ended::NoResponse(e.to_string())),
            Err(e) => Attempt::Done(Ended::NoResponse(format!("call task failed: {e}"))),
        }
    }

    fn unanswered(&self, code: Option<u16>, reason: &TerminatedReason) -> Ended {
        if let Some(code) = code.filter(|c| *c >= 300) {
            return Ended::Refused {
                code,
                retry_after: None,
            };
        }
        match reason {
            TerminatedReason::UacCancel => Ended::Canceled,
            TerminatedReason::Timeout => Ended::NoResponse("no final response (Timer B)".into()),
            TerminatedReason::UasBusy | TerminatedReason::UacBusy => Ended::Refused {
                code: 486,
                retry_after: None,
            },
            TerminatedReason::UasDecline => Ended::Refused {
                code: 603,
                retry_after: None,
            },
            TerminatedReason::ProxyError(c)
            | TerminatedReason::UacOther(c)
            | TerminatedReason::UasOther(c) => Ended::Refused {
                code: c.code(),
                retry_after: None,
            },
            TerminatedReason::ProxyAuthRequired => Ended::Refused {
                code: 407,
                retry_after: None,
            },
            TerminatedReason::UacBye | TerminatedReason::UasBye => Ended::Hangup,
        }
    }

    /// Negotiates the answer and starts sending.
    fn open_media(
        &mut self,
        answer: &str,
        events: mpsc::UnboundedSender<MediaEvent>,
        stop: CancellationToken,
    ) -> Result<(Stream, verigate_codecs::media::g711::Law), MediaSetupError> {
        let n = sdp::negotiate(answer)?;
        let socket = self.socket.take().ok_or(MediaSetupError::AlreadyOpen)?;
        let remote = SocketAddr::new(n.remote.0, n.remote.1);
        let s =
            self.inner
                .media
                .open(socket, remote, n.pt, n.law, n.telephone_event, events, stop)?;
        Ok((s, n.law))
    }
}

enum Attempt {
    Done(Ended),
    Challenged(Box<rsipstack::sip::Response>),
}

/// A response's `Retry-After` (seconds, comments ignored), capped at the
/// longest pause we honour: a peer's huge or garbage value neither
/// overflows a deadline nor parks a call for years.
pub(crate) fn retry_after(value: Option<&str>) -> Option<Duration> {
    let secs = value?
        .split(['(', ';'])
        .next()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_secs(secs).min(super::gate::MAX_503_PAUSE))
}

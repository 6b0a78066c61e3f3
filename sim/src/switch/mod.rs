//! `verigate-sim switch`: a SIP UAS (rsipstack, as the daemon uses) that
//! routes each INVITE by the called number to a simulated handset. A
//! handset rings, answers and listens, presses keys, is busy or
//! unreachable, or sends early media, as its behaviour says; the switch
//! records the caller ID each handset saw and what it heard.

pub mod auth;
pub mod control;
pub mod handset;
pub mod state;

use handset::Ears;
use rand::Rng;
use rsipstack::dialog::dialog::{DialogState, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode, ToTypedHeader};
use rsipstack::transaction::endpoint::EndpointOption;
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::{udp::UdpConnection, TcpListenerConnection, TransportLayer};
use rsipstack::EndpointBuilder;
use state::{CallRecord, SwitchState};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use verigate_codecs::sdp;

const REALM: &str = "verigate-sim";

/// Why the switch could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The bundled prompts it listens with cannot be read (the install).
    #[error("cannot load the bundled prompts: {0}")]
    Prompts(#[from] verigate_prompts::PromptError),
    /// The SIP sockets could not be opened (this machine).
    #[error("cannot listen for SIP: {0}")]
    Sip(#[from] rsipstack::Error),
}

/// A running switch.
#[derive(Debug)]
pub struct Switch {
    /// Where it listens for SIP (UDP and TCP).
    pub addr: SocketAddr,
}

/// Starts the switch on `listen`.
pub async fn start(
    listen: SocketAddr,
    state: Arc<SwitchState>,
    algorithm: String,
    token: CancellationToken,
) -> Result<Switch, StartError> {
    let ears = Arc::new(Ears::load()?);
    let tl = TransportLayer::new(token.child_token());
    let udp = UdpConnection::create_connection(listen, None, Some(token.child_token())).await?;
    let bound = udp.get_addr().get_socketaddr()?;
    tl.add_transport(udp.into());
    let tcp = TcpListenerConnection::new(bound, None).await?;
    tl.add_transport(tcp.into());
    let ep = EndpointBuilder::new()
        .with_user_agent("verigate-sim-switch")
        .with_cancel_token(token.clone())
        .with_transport_layer(tl)
        .with_option(EndpointOption {
            t1: Duration::from_millis(500),
            t1x64: Duration::from_secs(32),
            timerc: Duration::from_secs(185),
            ..Default::default()
        })
        .build();
    let mut incoming = ep.incoming_transactions()?;
    let dl = Arc::new(DialogLayer::new(ep.inner.clone()));
    let serve = ep.inner.clone();
    tokio::spawn(async move { serve.serve().await });
    let ip = bound.ip();
    tokio::spawn(async move {
        while let Some(mut tx) = incoming.recv().await {
            if let Some(mut d) = dl.match_dialog(&tx) {
                tokio::spawn(async move {
                    let _ = d.handle(&mut tx).await;
                });
                continue;
            }
            match tx.original.method {
                Method::Invite => {
                    let ctx = Ctx {
                        dl: dl.clone(),
                        state: state.clone(),
                        ears: ears.clone(),
                        ip,
                        algorithm: algorithm.clone(),
                    };
                    tokio::spawn(ctx.invite(tx));
                }
                Method::Options => {
                    tokio::spawn(async move {
                        let _ = tx.reply(StatusCode::OK).await;
                    });
                }
                Method::Ack => {}
                _ => {
                    tokio::spawn(async move {
                        let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
                    });
                }
            }
        }
    });
    Ok(Switch { addr: bound })
}

struct Ctx {
    dl: Arc<DialogLayer>,
    state: Arc<SwitchState>,
    ears: Arc<Ears>,
    ip: IpAddr,
    algorithm: String,
}

fn user_of(uri: &rsipstack::sip::Uri) -> String {
    uri.auth
        .as_ref()
        .map(|a| a.user.clone())
        .unwrap_or_default()
}

impl Ctx {
    async fn invite(self, mut tx: Transaction) {
        let called = user_of(&tx.original.uri);
        let from = tx
            .original
            .from_header()
            .ok()
            .and_then(|f| f.typed().ok())
            .map(|f| user_of(&f.uri))
            .unwrap_or_default();
        let mut record = CallRecord {
            call_id: tx
                .original
                .call_id_header()
                .map(|c| c.value().to_string())
                .unwrap_or_default(),
            caller: from,
            pai: tx.original.header_value("P-Asserted-Identity"),
            at: crate::smsc::time::unix_ms(),
            ..Default::default()
        };
        if let Some((user, password)) = &self.state.credentials {
            let ok = tx
                .original
                .header_value("Proxy-Authorization")
                .is_some_and(|h| {
                    let nonces = self.state.nonces.lock().expect("lock").clone();
                    auth::verify(&h, REALM, &nonces, &self.algorithm, user, password)
                });
            if !ok {
                let nonce_bits: u128 = rand::thread_rng().gen();
                let nonce = format!("{nonce_bits:032x}");
                {
                    let mut n = self.state.nonces.lock().expect("lock");
                    n.push(nonce.clone());
                    let len = n.len();
                    if len > 10_000 {
                        n.drain(..len - 10_000);
                    }
                }
                record.outcome = "challenged".into();
                record.status = Some(407);
                self.state.add_call(&called, record);
                let ch = auth::challenge(REALM, &nonce, &self.algorithm);
                let _ = tx
                    .reply_with(
                        StatusCode::ProxyAuthenticationRequired,
                        vec![Header::ProxyAuthenticate(ch.into())],
                        None,
                    )
                    .await;
                return;
            }
            record.authenticated = true;
        }
        let b = self.state.behaviour(&called);
        let refuse = match b.mode.as_str() {
            "busy" => Some((StatusCode::BusyHere, "busy", 486)),
            "unreachable" => Some((StatusCode::TemporarilyUnavailable, "unreachable", 480)),
            "reject" => Some((StatusCode::Decline, "rejected", 603)),
            _ => None,
        };
        if b.mode == "overloaded" {
            record.outcome = "overloaded".into();
            record.status = Some(503);
            self.state.add_call(&called, record);
            let ra = vec![Header::RetryAfter(b.retry_after_s.to_string().into())];
            let _ = tx
                .reply_with(StatusCode::ServiceUnavailable, ra, None)
                .await;
            return;
        }
        if let Some((code, outcome, n)) = refuse {
            record.outcome = outcome.into();
            record.status = Some(n);
            self.state.add_call(&called, record);
            let _ = tx.reply(code).await;
            return;
        }
        let offer = String::from_utf8_lossy(&tx.original.body).into_owned();
        let socket = match tokio::net::UdpSocket::bind((self.ip, 0)).await {
            Ok(s) => s,
            Err(_) => {
                let _ = tx.reply(StatusCode::ServerInternalError).await;
                return;
            }
        };
        let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
        let mut socket = Some(socket);
        let prefer = match b.law.as_deref() {
            Some("pcma") => vec![
                verigate_codecs::media::g711::Law::Alaw,
                verigate_codecs::media::g711::Law::Ulaw,
            ],
            _ => vec![
                verigate_codecs::media::g711::Law::Ulaw,
                verigate_codecs::media::g711::Law::Alaw,
            ],
        };
        let session: u64 = rand::thread_rng().gen();
        let (answer, neg) = match sdp::answer(&offer, session, self.ip, port, &prefer) {
            Ok(x) => x,
            Err(_) => {
                record.outcome = "rejected".into();
                record.status = Some(488);
                self.state.add_call(&called, record);
                let _ = tx.reply(StatusCode::NotAcceptableHere).await;
                return;
            }
        };
        record.outcome = "ringing".into();
        record.codec = Some(neg.law.name().to_string());
        let idx = self.state.add_call(&called, record);
        let (state_tx, mut states) = self.dl.new_dialog_state_channel();
        let dialog = match self
            .dl
            .get_or_create_server_invite(&tx, state_tx, None, None)
        {
            Ok(d) => d,
            Err(_) => {
                let _ = tx.reply(StatusCode::ServerInternalError).await;
                return;
            }
        };
        let mut handler = dialog.clone();
        tokio::spawn(async move {
            let _ = handler.handle(&mut tx).await;
        });
        let sdp_ct = || vec![Header::ContentType("application/sdp".into())];
        let answer_after = match b.mode.as_str() {
            "ring" => {
                let _ = dialog.ringing(None, None);
                None
            }
            "ring_183" => {
                let _ = dialog.ringing(None, Some(vec![]));
                None
            }
            "early_media" => {
                let _ = dialog.ringing(Some(sdp_ct()), Some(answer.clone().into_bytes()));
                Some(Duration::from_millis(b.ring_ms))
            }
            _ => {
                let _ = dialog.ringing(None, None);
                Some(Duration::from_millis(b.ring_ms))
            }
        };
        let media_stop = CancellationToken::new();
        let mut media: Option<tokio::task::JoinHandle<handset::Heard>> = None;
        let answer_at = async {
            match answer_after {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(answer_at);
        let mut answered = false;
        let mut hangup_at: Option<tokio::time::Instant> = None;
        let called2 = called.clone();
        let outcome = loop {
            let hang = async {
                match hangup_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut answer_at, if !answered => {
                    answered = true;
                    if dialog.accept(Some(sdp_ct()), Some(answer.clone().into_bytes())).is_err() {
                        break ("ended", None);
                    }
                    self.state.update_call(&called2, idx, |r| {
                        r.outcome = "answered".into();
                        r.status = Some(200);
                    });
                    let remote = SocketAddr::new(neg.remote.0, neg.remote.1);
                    let ears = self.ears.clone();
                    let stop = media_stop.clone();
                    let keys = b.keys.clone();
                    let key_after = Duration::from_millis(b.key_after_ms);
                    let (law, pt, te) = (neg.law, neg.pt, neg.telephone_event);
                    if let Some(sock) = socket.take() {
                        media = Some(tokio::spawn(async move {
                            handset::run(sock, remote, law, pt, te, keys, key_after, &ears, stop).await
                        }));
                    }
                    if b.hangup_after_ms > 0 {
                        hangup_at = Some(tokio::time::Instant::now() + Duration::from_millis(b.hangup_after_ms));
                    }
                }
                _ = hang => {
                    hangup_at = None;
                    let _ = dialog.bye().await;
                    self.state.update_call(&called2, idx, |r| r.hung_up_by = Some("handset".into()));
                }
                s = states.recv() => match s {
                    Some(DialogState::Terminated(id, reason)) => {
                        self.dl.remove_dialog(&id);
                        break match reason {
                            TerminatedReason::UacCancel => ("canceled", Some(487)),
                            _ => ("ended", None),
                        };
                    }
                    Some(_) => {}
                    None => break ("ended", None),
                },
            }
        };
        media_stop.cancel();
        let heard = match media {
            Some(m) => m.await.ok(),
            None => None,
        };
        self.state.update_call(&called, idx, |r| {
            if outcome.0 == "canceled" || r.outcome != "answered" {
                r.outcome = outcome.0.into();
                if outcome.1.is_some() {
                    r.status = outcome.1;
                }
            } else {
                r.outcome = "ended".into();
                if r.hung_up_by.is_none() {
                    r.hung_up_by = Some("caller".into());
                }
            }
            if let Some(h) = heard {
                r.prompts = h.prompts;
                r.heard = h.digits;
                r.readings = h.readings;
                r.packets = h.packets;
                r.keys_sent = h.keys_sent;
            }
        });
    }
}

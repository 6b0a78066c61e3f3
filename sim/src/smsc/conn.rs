//! One ESME connection to the simulated SMSC: a thin tokio driver around the
//! SMSC-role sans-IO session, plus the simulator's behaviour and faults.

use super::state::{normalize_msisdn, InboxMessage, PartialMessage, Receiver, SimState, ToConn};
use super::time::{smpp_date, unix_ms};
use bytes::Bytes;
use rand::Rng;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info};
use verigate_codecs::smpp::message::content;
use verigate_codecs::smpp::session::{BindType, Event, Role, Session, SessionConfig};
use verigate_codecs::smpp::tlv::Tlv;
use verigate_codecs::smpp::{
    Address, Body, CommandId, CommandStatus, DataSm, MessageIdResp, Pdu, QuerySmResp, SubmitSm,
};
use verigate_codecs::text;

struct DelayedResp {
    due: Instant,
    sequence: u32,
    command: CommandId,
    message_id: String,
}

struct DueDlr {
    due: Instant,
    dlr: SubmitSm,
    to: String,
    part_id: String,
    stat: &'static str,
}

/// Serves one TCP connection until it closes.
pub async fn serve(state: Arc<SimState>, mut sock: TcpStream) {
    let _ = sock.set_nodelay(true);
    let conn = state
        .next_conn
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let faults = state.faults.lock().expect("faults lock").clone();
    let cfg = SessionConfig {
        window: 256,
        answer_enquire_link: !faults.enquire_link_silence,
        enquire_link_interval: Duration::from_secs(60),
        response_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let mut session = Session::new(
        Role::Smsc {
            system_id: "verigate-sim".into(),
        },
        cfg,
        Instant::now().into_std(),
    );
    let (tx, mut rx) = mpsc::channel::<ToConn>(16 * 1024);
    let mut delayed: VecDeque<DelayedResp> = VecDeque::new();
    let mut dlrs: VecDeque<DueDlr> = VecDeque::new();
    let mut rbuf = vec![0u8; 64 * 1024];
    let mut submits_here: u64 = 0;
    let mut next_req_id: u64 = 1;
    let mut bound_system_id = String::new();
    let mut counted_bound = false;
    let mut pending_bind: Option<(Instant, u32, BindType)> = None;
    let mut closed = false;
    while !closed {
        while let Some(ev) = session.poll_event() {
            match ev {
                Event::BindRequest {
                    sequence,
                    bind_type,
                    bind,
                } => {
                    let status = if bind.system_id != state.system_id.as_str() {
                        CommandStatus::ESME_RINVSYSID
                    } else if bind.password != state.password.as_str() {
                        CommandStatus::ESME_RINVPASWD
                    } else {
                        CommandStatus::ESME_ROK
                    };
                    let delay = state.faults.lock().expect("faults lock").bind_delay_ms;
                    if status.is_ok() && delay > 0 {
                        info!(conn, delay, "fault: answering the bind late");
                        pending_bind = Some((
                            Instant::now() + Duration::from_millis(delay),
                            sequence,
                            bind_type,
                        ));
                    } else if status.is_ok() {
                        accept_bind(&state, &mut session, conn, &tx, sequence, bind_type);
                        bound_system_id = state.system_id.to_string();
                        counted_bound = true;
                    } else {
                        state.stats.lock().expect("stats").bind_failures += 1;
                        info!(conn, %status, "bind refused");
                        session.reject_bind(sequence, bind_type, status);
                    }
                }
                Event::Request(pdu) => {
                    submits_here += handle_request(
                        &state,
                        &mut session,
                        conn,
                        &bound_system_id,
                        pdu,
                        &mut delayed,
                        &mut dlrs,
                        submits_here,
                    );
                }
                Event::Response { status, body, .. } => {
                    {
                        let mut st = state.stats.lock().expect("stats");
                        match body {
                            Body::GenericNack => st.generic_nacks_received += 1,
                            Body::DeliverSmResp(_) => st.deliver_sm_resps_received += 1,
                            Body::DataSmResp(_) => st.data_sm_resps_received += 1,
                            _ => {}
                        }
                    }
                    debug!(conn, %status, "response from ESME");
                }
                Event::UnmatchedResponse(pdu) if pdu.body == Body::GenericNack => {
                    state.stats.lock().expect("stats").generic_nacks_received += 1;
                }
                Event::Malformed(e) => {
                    state.stats.lock().expect("stats").malformed_received += 1;
                    debug!(conn, error = %e, "malformed PDU from ESME");
                }
                Event::Closed(reason) => {
                    debug!(conn, ?reason, "session closed");
                    closed = true;
                }
                _ => {}
            }
        }
        while let Some(bytes) = session.poll_transmit() {
            if sock.write_all(&bytes).await.is_err() {
                closed = true;
            }
        }
        if closed {
            break;
        }
        let drop_every = state.faults.lock().expect("faults lock").drop_every_n_pdus;
        if drop_every > 0 && session.stats().pdus_in >= drop_every {
            info!(conn, "fault: dropping connection");
            break;
        }
        let mut next = session.poll_timeout().map(Instant::from_std);
        for t in [
            delayed.front().map(|d| d.due),
            dlrs.front().map(|d| d.due),
            pending_bind.map(|b| b.0),
        ]
        .into_iter()
        .flatten()
        {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        tokio::select! {
            r = sock.read(&mut rbuf) => match r {
                Ok(0) | Err(_) => session.handle_transport_closed(),
                Ok(n) => session.handle_input(Instant::now().into_std(), &rbuf[..n]),
            },
            Some(cmd) = rx.recv() => match cmd {
                ToConn::Deliver(sm) => {
                    let id = next_req_id;
                    next_req_id += 1;
                    let _ = session.send_request(Instant::now().into_std(), id, Body::DeliverSm(sm));
                }
                ToConn::DeliverData(d) => {
                    let id = next_req_id;
                    next_req_id += 1;
                    let _ = session.send_request(Instant::now().into_std(), id, Body::DataSm(d));
                }
            },
            _ = sleep_opt(next) => {
                let now = Instant::now();
                session.handle_timeout(now.into_std());
                if let Some((due, sequence, bind_type)) = pending_bind {
                    if due <= now {
                        pending_bind = None;
                        accept_bind(&state, &mut session, conn, &tx, sequence, bind_type);
                        bound_system_id = state.system_id.to_string();
                        counted_bound = true;
                    }
                }
                while delayed.front().is_some_and(|d| d.due <= now) {
                    let d = delayed.pop_front().expect("front");
                    respond_ok(&mut session, d.sequence, d.command, d.message_id);
                }
                while dlrs.front().is_some_and(|d| d.due <= now) {
                    let d = dlrs.pop_front().expect("front");
                    send_dlr(&state, &mut session, conn, &bound_system_id, d, &mut next_req_id);
                }
            }
        }
    }
    state
        .receivers
        .lock()
        .expect("receivers")
        .retain(|r| r.conn != conn);
    if counted_bound {
        state.stats.lock().expect("stats").bound_now -= 1;
    }
    let _ = sock.shutdown().await;
}

/// Binds the session and makes it a receiver of MOs and receipts if its
/// bind type allows.
fn accept_bind(
    state: &SimState,
    session: &mut Session,
    conn: u64,
    tx: &mpsc::Sender<ToConn>,
    sequence: u32,
    bind_type: BindType,
) {
    session.accept_bind(sequence, bind_type);
    {
        let mut st = state.stats.lock().expect("stats");
        st.binds += 1;
        st.bound_now += 1;
    }
    info!(conn, ?bind_type, "bind accepted");
    if bind_type.can_receive() {
        state.receivers.lock().expect("receivers").push(Receiver {
            conn,
            system_id: state.system_id.to_string(),
            tx: tx.clone(),
        });
    }
}

async fn sleep_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn respond_ok(session: &mut Session, sequence: u32, command: CommandId, message_id: String) {
    let resp = MessageIdResp {
        message_id: message_id.into(),
        tlvs: Default::default(),
    };
    let body = match command {
        CommandId::DataSm => Body::DataSmResp(resp),
        _ => Body::SubmitSmResp(resp),
    };
    session.respond(sequence, CommandStatus::ESME_ROK, body);
}

fn respond_error(
    session: &mut Session,
    sequence: u32,
    command: CommandId,
    status: CommandStatus,
    empty: bool,
) {
    if empty {
        // A bare header, as some SMSCs send error responses.
        let mut raw = Vec::with_capacity(16);
        raw.extend_from_slice(&16u32.to_be_bytes());
        raw.extend_from_slice(&(command.as_u32() | 0x8000_0000).to_be_bytes());
        raw.extend_from_slice(&status.0.to_be_bytes());
        raw.extend_from_slice(&sequence.to_be_bytes());
        session.inject_raw(&raw);
    } else {
        let body = match command {
            CommandId::DataSm => Body::DataSmResp(MessageIdResp::default()),
            _ => Body::SubmitSmResp(MessageIdResp::default()),
        };
        session.respond(sequence, status, body);
    }
}

/// Handles one request; returns 1 if it was a submit.
#[allow(clippy::too_many_arguments)]
fn handle_request(
    state: &SimState,
    session: &mut Session,
    conn: u64,
    system_id: &str,
    pdu: Pdu,
    delayed: &mut VecDeque<DelayedResp>,
    dlrs: &mut VecDeque<DueDlr>,
    submits_before: u64,
) -> u64 {
    let command = pdu.command_id();
    let sequence = pdu.sequence;
    let sm = match pdu.body {
        Body::SubmitSm(sm) => sm,
        Body::DataSm(d) => SubmitSm::from(d),
        Body::QuerySm(q) => {
            session.respond(
                sequence,
                CommandStatus::ESME_ROK,
                Body::QuerySmResp(QuerySmResp {
                    message_id: q.message_id,
                    final_date: "".into(),
                    message_state: 2,
                    error_code: 0,
                }),
            );
            return 0;
        }
        Body::CancelSm(_) => {
            session.respond(sequence, CommandStatus::ESME_ROK, Body::CancelSmResp);
            return 0;
        }
        Body::ReplaceSm(_) => {
            session.respond(sequence, CommandStatus::ESME_ROK, Body::ReplaceSmResp);
            return 0;
        }
        _ => {
            session.respond(sequence, CommandStatus::ESME_RINVCMDID, Body::GenericNack);
            return 0;
        }
    };
    let faults = state.faults.lock().expect("faults lock").clone();
    state.stats.lock().expect("stats").submits += 1;
    let n = submits_before + 1;
    let mut rng = rand::thread_rng();
    let every = faults.throttle_every_n;
    if (every > 0 && n.is_multiple_of(every))
        || (faults.throttle_ratio > 0.0 && rng.gen_bool(faults.throttle_ratio.min(1.0)))
    {
        state.stats.lock().expect("stats").throttled += 1;
        respond_error(
            session,
            sequence,
            command,
            CommandStatus::ESME_RTHROTTLED,
            faults.empty_error_bodies,
        );
        return 1;
    }
    if faults.reject_ratio > 0.0 && rng.gen_bool(faults.reject_ratio.min(1.0)) {
        state.stats.lock().expect("stats").rejected += 1;
        respond_error(
            session,
            sequence,
            command,
            CommandStatus::ESME_RSUBMITFAIL,
            faults.empty_error_bodies,
        );
        return 1;
    }
    let num = state.new_message_id();
    let message_id = state.id_format.render(num);
    let to = sm.dest.addr.to_str_lossy().into_owned();
    record_in_inbox(state, &sm, &message_id);
    let now = Instant::now();
    let wants_dlr = sm.registered_delivery & 0x03 != 0;
    let mut dlr_now = None;
    if wants_dlr {
        let settings = state.dlr.lock().expect("dlr lock").clone();
        let undeliv = settings.undeliverable_ratio > 0.0
            && rng.gen_bool(settings.undeliverable_ratio.min(1.0));
        let stat = if undeliv { "UNDELIV" } else { "DELIVRD" };
        let text_id = settings.text_id_format.render(num);
        let dlr = build_dlr(&sm, &message_id, &text_id, stat, settings.tlvs);
        let due = DueDlr {
            due: now + Duration::from_millis(settings.delay_ms),
            dlr,
            to: to.clone(),
            part_id: message_id.clone(),
            stat,
        };
        if faults.dlr_before_response {
            dlr_now = Some(due);
        } else {
            dlrs.push_back(due);
        }
    }
    if let Some(d) = dlr_now {
        let mut id = u64::MAX / 2 + n;
        send_dlr(state, session, conn, system_id, d, &mut id);
    }
    if faults.response_delay_ms > 0 {
        delayed.push_back(DelayedResp {
            due: now + Duration::from_millis(faults.response_delay_ms),
            sequence,
            command,
            message_id,
        });
    } else {
        respond_ok(session, sequence, command, message_id);
    }
    if faults.malformed_every_n > 0 && n.is_multiple_of(faults.malformed_every_n) {
        // Alternate an unknown command_id and a truncated deliver_sm.
        let garbage: &[u8] = if (n / faults.malformed_every_n) % 2 == 1 {
            &[0, 0, 0, 16, 0, 0, 0, 0xAA, 0, 0, 0, 0, 0x7F, 0, 0, 1]
        } else {
            &[
                0, 0, 0, 20, 0, 0, 0, 5, 0, 0, 0, 0, 0x7F, 0, 0, 2, 1, 2, 3, 4,
            ]
        };
        session.inject_raw(garbage);
        state.stats.lock().expect("stats").malformed_sent += 1;
    }
    1
}

fn send_dlr(
    state: &SimState,
    session: &mut Session,
    conn: u64,
    system_id: &str,
    d: DueDlr,
    next_id: &mut u64,
) {
    state.set_dlr_state(&d.to, &d.part_id, d.stat);
    state.stats.lock().expect("stats").dlrs += 1;
    // Prefer this connection (TRX); else another receiver of the same ESME.
    if session.is_bound() {
        if let Some(r) = state.receiver_for(system_id, Some(conn)) {
            if r.conn == conn {
                let id = *next_id;
                *next_id += 1;
                let _ = session.send_request(Instant::now().into_std(), id, Body::DeliverSm(d.dlr));
                return;
            }
            let _ = r.tx.try_send(ToConn::Deliver(d.dlr));
        }
    }
}

fn build_dlr(sm: &SubmitSm, message_id: &str, text_id: &str, stat: &str, tlvs: bool) -> SubmitSm {
    let date = smpp_date(unix_ms());
    let c = content(sm);
    let preview: String = c.text().chars().take(20).collect();
    let err = if stat == "DELIVRD" { "000" } else { "001" };
    let text = format!(
        "id:{text_id} sub:001 dlvrd:{} submit date:{date} done date:{date} stat:{stat} err:{err} text:{preview}",
        if stat == "DELIVRD" { "001" } else { "000" }
    );
    let mut body = text.into_bytes();
    body.truncate(255);
    let mut dlr = SubmitSm {
        source: sm.dest.clone(),
        dest: sm.source.clone(),
        esm_class: 0x04,
        short_message: Bytes::from(body),
        ..Default::default()
    };
    if tlvs {
        dlr.tlvs.push(Tlv::RECEIPTED_MESSAGE_ID(message_id.into()));
        dlr.tlvs
            .push(Tlv::MESSAGE_STATE(if stat == "DELIVRD" { 2 } else { 5 }));
    }
    dlr
}

fn record_in_inbox(state: &SimState, sm: &SubmitSm, message_id: &str) {
    let c = content(sm);
    let to = sm.dest.addr.to_str_lossy().into_owned();
    let from = sm.source.addr.to_str_lossy().into_owned();
    let now = unix_ms();
    match c.part {
        Some(p) if p.total > 1 => {
            let key = (normalize_msisdn(&to), from.clone(), p.reference, p.total);
            let mut partial = state.partial.lock().expect("partial lock");
            let entry = partial
                .entry(key.clone())
                .or_insert_with(|| PartialMessage {
                    parts: vec![None; usize::from(p.total)],
                    data_coding: c.data_coding,
                });
            let idx = usize::from(p.seq - 1);
            if idx < entry.parts.len() {
                entry.parts[idx] = Some((message_id.to_string(), c.payload));
            }
            if entry.parts.iter().all(Option::is_some) {
                let done = partial.remove(&key).expect("present");
                drop(partial);
                let mut joined = Vec::new();
                let mut ids = Vec::new();
                for (id, payload) in done.parts.into_iter().flatten() {
                    ids.push(id);
                    joined.extend_from_slice(&payload);
                }
                state.store(
                    &to,
                    InboxMessage {
                        message_id: ids[0].clone(),
                        part_ids: ids,
                        from,
                        text: text::decode(done.data_coding, &joined),
                        data_coding: done.data_coding,
                        parts: p.total,
                        dlr_state: None,
                        received_ms: now,
                    },
                );
            }
        }
        _ => state.store(
            &to,
            InboxMessage {
                message_id: message_id.to_string(),
                part_ids: vec![message_id.to_string()],
                from,
                text: c.text(),
                data_coding: c.data_coding,
                parts: 1,
                dlr_state: None,
                received_ms: now,
            },
        ),
    }
}

/// Why an MO could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum MoError {
    /// The text cannot be encoded (the caller's text).
    #[error("cannot encode the text: {0}")]
    Encode(#[from] verigate_codecs::text::TextError),
    /// Nobody would receive it (no ESME bound to receive).
    #[error("no ESME is bound as receiver or transceiver")]
    NoReceiver,
    /// The receiver's queue is full or gone.
    #[error("receiver queue: {0}")]
    Queue(String),
}

/// Builds deliver_sm parts (or, with `as_data_sm`, one data_sm carrying
/// the text in message_payload) for an MO and hands them to a bound receiver.
/// `ton` is the sender's type of number (default 1, international).
pub fn inject_mo(
    state: &SimState,
    from: &str,
    ton: Option<u8>,
    to: &str,
    text: &str,
    as_data_sm: bool,
) -> Result<usize, MoError> {
    let template = SubmitSm {
        source: match ton {
            None | Some(1) => Address::new(1, 1, from.trim_start_matches('+')),
            Some(t) => Address::new(t, 1, from),
        },
        dest: Address::new(0, 1, to.trim_start_matches('+')),
        ..Default::default()
    };
    let reference: u16 = rand::random();
    let mode = if as_data_sm {
        text::SplitMode::Payload
    } else {
        text::SplitMode::Udh8
    };
    let parts =
        verigate_codecs::smpp::message::text_to_parts(&template, text, None, mode, reference)?;
    let receiver = state
        .receiver_for(&state.system_id, None)
        .ok_or(MoError::NoReceiver)?;
    let n = parts.len();
    for p in parts {
        let msg = if as_data_sm {
            // data_sm has no short_message: short text moves to message_payload.
            let mut tlvs = p.tlvs;
            if tlvs.message_payload().is_none() {
                tlvs.push(verigate_codecs::smpp::Tlv::MESSAGE_PAYLOAD(p.short_message));
            }
            ToConn::DeliverData(DataSm {
                service_type: p.service_type,
                source: p.source,
                dest: p.dest,
                esm_class: p.esm_class,
                registered_delivery: p.registered_delivery,
                data_coding: p.data_coding,
                tlvs,
            })
        } else {
            ToConn::Deliver(p)
        };
        receiver
            .tx
            .try_send(msg)
            .map_err(|e| MoError::Queue(e.to_string()))?;
    }
    state.stats.lock().expect("stats").mos += 1;
    Ok(n)
}

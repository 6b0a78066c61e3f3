//! Two-party harness (ESME ↔ SMSC) on virtual time: no sockets, no sleeps.

use super::*;
use crate::smpp::pdu::{Address, MessageIdResp, SubmitSm};

fn submit(text: &str) -> Body {
    Body::SubmitSm(SubmitSm {
        source: Address::new(5, 0, "Verigate"),
        dest: Address::international("447700900123"),
        registered_delivery: 1,
        short_message: Bytes::copy_from_slice(text.as_bytes()),
        ..Default::default()
    })
}

fn text_of(body: &Body) -> String {
    match body {
        Body::SubmitSm(s) => String::from_utf8_lossy(&s.short_message).into_owned(),
        _ => String::new(),
    }
}

/// What the simulated SMSC does with each submit_sm.
type Policy = Box<dyn FnMut(&Pdu) -> Option<CommandStatus>>;

struct Pair {
    now: Instant,
    esme: Session,
    smsc: Session,
    esme_events: Vec<Event>,
    smsc_requests: Vec<Pdu>,
    policy: Policy,
    password: &'static str,
    wire_to_smsc: Vec<Bytes>,
}

impl Pair {
    fn new(cfg: SessionConfig) -> Self {
        Self::with_password(cfg, "secret")
    }

    fn with_password(cfg: SessionConfig, password: &'static str) -> Self {
        let now = Instant::now();
        let esme = Session::new(
            Role::Esme(BindCredentials::transceiver("verigate", password)),
            cfg.clone(),
            now,
        );
        let smsc = Session::new(
            Role::Smsc {
                system_id: "SIM".into(),
            },
            cfg,
            now,
        );
        let mut p = Pair {
            now,
            esme,
            smsc,
            esme_events: Vec::new(),
            smsc_requests: Vec::new(),
            policy: Box::new(|_| Some(CommandStatus::ESME_ROK)),
            password: "secret",
            wire_to_smsc: Vec::new(),
        };
        p.run();
        p
    }

    /// Moves bytes and events until nothing changes.
    fn run(&mut self) {
        loop {
            let mut moved = false;
            while let Some(b) = self.esme.poll_transmit() {
                self.wire_to_smsc.push(b.clone());
                self.smsc.handle_input(self.now, &b);
                moved = true;
            }
            while let Some(ev) = self.smsc.poll_event() {
                moved = true;
                match ev {
                    Event::BindRequest {
                        sequence,
                        bind_type,
                        bind,
                    } => {
                        if bind.password == self.password {
                            self.smsc.accept_bind(sequence, bind_type)
                        } else {
                            self.smsc.reject_bind(
                                sequence,
                                bind_type,
                                CommandStatus::ESME_RINVPASWD,
                            )
                        }
                    }
                    Event::Request(pdu) => {
                        if let Some(st) = (self.policy)(&pdu) {
                            let id = if st.is_ok() {
                                format!("{:x}", pdu.sequence)
                            } else {
                                String::new()
                            };
                            self.smsc.respond(
                                pdu.sequence,
                                st,
                                Body::SubmitSmResp(MessageIdResp {
                                    message_id: id.into(),
                                    tlvs: Default::default(),
                                }),
                            );
                        }
                        self.smsc_requests.push(pdu);
                    }
                    _ => {}
                }
            }
            while let Some(b) = self.smsc.poll_transmit() {
                self.esme.handle_input(self.now, &b);
                moved = true;
            }
            while let Some(ev) = self.esme.poll_event() {
                self.esme_events.push(ev);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    /// Advances virtual time to `t`, firing timers on the way.
    fn advance_to(&mut self, t: Instant) {
        loop {
            let next = [self.esme.poll_timeout(), self.smsc.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|&d| d <= t)
                .min();
            match next {
                Some(d) => {
                    self.now = self.now.max(d);
                    self.esme.handle_timeout(self.now);
                    self.smsc.handle_timeout(self.now);
                    self.run();
                }
                None => break,
            }
        }
        self.now = t;
        self.run();
    }

    fn advance(&mut self, d: Duration) {
        let t = self.now + d;
        self.advance_to(t);
    }

    fn responses(&self) -> Vec<(RequestId, CommandStatus)> {
        self.esme_events
            .iter()
            .filter_map(|e| match e {
                Event::Response { id, status, .. } => Some((*id, *status)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn binds_and_submits() {
    let mut p = Pair::new(SessionConfig::default());
    assert!(p.esme.is_bound());
    assert!(
        matches!(&p.esme_events[0], Event::Bound { system_id, interface_version: Some(0x34) } if system_id == "SIM")
    );
    p.esme.send_request(p.now, 7, submit("hello")).unwrap();
    p.run();
    assert_eq!(p.responses(), vec![(7, CommandStatus::ESME_ROK)]);
    match p.esme_events.last().unwrap() {
        Event::Response {
            body: Body::SubmitSmResp(r),
            ..
        } => assert!(!r.message_id.is_empty()),
        e => panic!("{e:?}"),
    }
}

#[test]
fn wrong_password_closes_with_bind_rejected() {
    let mut p = Pair::with_password(SessionConfig::default(), "wrong");
    p.run();
    assert_eq!(p.esme.state(), State::Closed);
    assert!(p
        .esme_events
        .contains(&Event::Closed(CloseReason::BindRejected(
            CommandStatus::ESME_RINVPASWD
        ))));
}

#[test]
fn submits_queued_before_bind_go_out_after_it() {
    let now = Instant::now();
    let mut esme = Session::new(
        Role::Esme(BindCredentials::transceiver("a", "b")),
        SessionConfig::default(),
        now,
    );
    esme.send_request(now, 1, submit("x")).unwrap();
    let bytes = esme.poll_transmit().unwrap();
    // Only the bind went out.
    assert_eq!(&bytes[4..8], &[0, 0, 0, 9]);
    assert_eq!(
        bytes.len(),
        u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize
    );
    assert_eq!(esme.queued(), 1);
}

#[test]
fn window_is_bounded() {
    let cfg = SessionConfig {
        window: 10,
        ..Default::default()
    };
    let mut p = Pair::new(cfg);
    p.policy = Box::new(|_| None); // SMSC sits on the submits
    for i in 0..50 {
        p.esme.send_request(p.now, i, submit("m")).unwrap();
    }
    p.run();
    assert_eq!(p.esme.in_flight(), 10);
    assert_eq!(p.esme.queued(), 40);
    assert_eq!(p.smsc_requests.len(), 10);
}

#[test]
fn enquire_link_answered_even_with_full_window() {
    let cfg = SessionConfig {
        window: 2,
        enquire_link_interval: Duration::from_secs(5),
        response_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let mut p = Pair::new(cfg);
    p.policy = Box::new(|_| None);
    for i in 0..5 {
        p.esme.send_request(p.now, i, submit("m")).unwrap();
    }
    p.run();
    assert_eq!(p.esme.in_flight(), 2);
    // The SMSC's enquire_link (after 5 s idle) must be answered by the ESME.
    p.advance(Duration::from_secs(6));
    assert!(p.smsc.is_bound() && p.esme.is_bound());
    p.advance(Duration::from_secs(20));
    assert!(p.smsc.is_bound() && p.esme.is_bound(), "links stay up");
}

#[test]
fn silent_peer_fails_enquire_link() {
    let cfg = SessionConfig {
        enquire_link_interval: Duration::from_secs(5),
        response_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let now = Instant::now();
    let mut esme = Session::new(Role::Esme(BindCredentials::transceiver("a", "b")), cfg, now);
    let bind = Pdu::decode(esme.poll_transmit().unwrap()).unwrap();
    let resp = Pdu::new(
        bind.sequence,
        Body::BindTransceiverResp(BindResp::default()),
    );
    esme.handle_input(now, &resp.to_bytes().unwrap());
    assert!(esme.is_bound());
    let t1 = esme.poll_timeout().unwrap();
    assert_eq!(t1, now + Duration::from_secs(5));
    esme.handle_timeout(t1);
    let el = Pdu::decode(esme.poll_transmit().unwrap()).unwrap();
    assert_eq!(el.body, Body::EnquireLink);
    let t2 = esme.poll_timeout().unwrap();
    assert_eq!(t2, t1 + Duration::from_secs(2));
    esme.handle_timeout(t2);
    let evs: Vec<_> = std::iter::from_fn(|| esme.poll_event()).collect();
    assert!(evs.contains(&Event::Closed(CloseReason::EnquireLinkTimeout)));
}

#[test]
fn throttle_pauses_whole_session_then_retries_same_message() {
    let cfg = SessionConfig {
        throttle_pause: Duration::from_secs(1),
        ..Default::default()
    };
    let mut p = Pair::new(cfg);
    let mut first = true;
    p.policy = Box::new(move |_| {
        if first {
            first = false;
            Some(CommandStatus::ESME_RTHROTTLED)
        } else {
            Some(CommandStatus::ESME_ROK)
        }
    });
    p.esme.send_request(p.now, 1, submit("one")).unwrap();
    p.run();
    assert!(p
        .esme_events
        .iter()
        .any(|e| matches!(e, Event::Throttled { status, .. } if status.0 == 0x58)));
    assert!(p.esme.is_paused(p.now));
    // While paused nothing goes out, not even new messages.
    p.esme.send_request(p.now, 2, submit("two")).unwrap();
    p.run();
    assert_eq!(p.smsc_requests.len(), 1);
    p.advance(Duration::from_millis(999));
    assert_eq!(p.smsc_requests.len(), 1);
    p.advance(Duration::from_millis(2));
    // The throttled message is retried first, then the new one.
    let texts: Vec<_> = p.smsc_requests.iter().map(|r| text_of(&r.body)).collect();
    assert_eq!(texts, vec!["one", "one", "two"]);
    assert_eq!(
        p.responses(),
        vec![(1, CommandStatus::ESME_ROK), (2, CommandStatus::ESME_ROK)]
    );
}

#[test]
fn msgqful_also_pauses_and_backoff_grows() {
    let cfg = SessionConfig {
        throttle_pause: Duration::from_millis(100),
        ..Default::default()
    };
    let mut p = Pair::new(cfg);
    let mut n = 0;
    p.policy = Box::new(move |_| {
        n += 1;
        Some(if n <= 3 {
            CommandStatus::ESME_RMSGQFUL
        } else {
            CommandStatus::ESME_ROK
        })
    });
    p.esme.send_request(p.now, 1, submit("x")).unwrap();
    p.run();
    let t0 = p.now;
    p.advance(Duration::from_secs(5));
    let untils: Vec<_> = p
        .esme_events
        .iter()
        .filter_map(|e| match e {
            Event::Throttled { until, .. } => Some(*until),
            _ => None,
        })
        .collect();
    assert_eq!(untils.len(), 3);
    assert_eq!(untils[0] - t0, Duration::from_millis(100));
    assert_eq!(untils[1] - untils[0], Duration::from_millis(200));
    assert_eq!(untils[2] - untils[1], Duration::from_millis(400));
    assert_eq!(p.responses(), vec![(1, CommandStatus::ESME_ROK)]);
}

#[test]
fn malformed_pdu_gets_generic_nack_and_session_stays_up() {
    let mut p = Pair::new(SessionConfig::default());
    // A deliver_sm whose body is truncated.
    let bad = [
        0u8, 0, 0, 20, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 42, 1, 2, 3, 4,
    ];
    p.esme.handle_input(p.now, &bad);
    let nack = Pdu::decode(p.esme.poll_transmit().unwrap()).unwrap();
    assert_eq!(nack.body, Body::GenericNack);
    assert_eq!(nack.sequence, 42);
    assert_eq!(nack.status, CommandStatus::ESME_RINVCMDLEN);
    assert!(matches!(p.esme.poll_event(), Some(Event::Malformed(_))));
    // Unknown command id.
    let unk = [0u8, 0, 0, 16, 0, 0, 0, 0xAA, 0, 0, 0, 0, 0, 0, 0, 43];
    p.esme.handle_input(p.now, &unk);
    let nack = Pdu::decode(p.esme.poll_transmit().unwrap()).unwrap();
    assert_eq!(
        (nack.sequence, nack.status),
        (43, CommandStatus::ESME_RINVCMDID)
    );
    assert!(p.esme.is_bound());
    p.esme.send_request(p.now, 5, submit("still here")).unwrap();
    p.run();
    assert!(p.responses().contains(&(5, CommandStatus::ESME_ROK)));
}

#[test]
fn bad_command_length_nacks_and_closes() {
    let mut p = Pair::new(SessionConfig::default());
    let bad = [0u8, 0, 0, 4, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 9];
    p.esme.handle_input(p.now, &bad);
    let nack = Pdu::decode(p.esme.poll_transmit().unwrap()).unwrap();
    assert_eq!(
        (nack.sequence, nack.status),
        (9, CommandStatus::ESME_RINVCMDLEN)
    );
    let evs: Vec<_> = std::iter::from_fn(|| p.esme.poll_event()).collect();
    assert!(matches!(
        evs.last(),
        Some(Event::Closed(CloseReason::Framing(FrameError::TooShort {
            len: 4,
            ..
        })))
    ));
}

#[test]
fn generic_nack_from_peer_settles_the_request() {
    let mut p = Pair::new(SessionConfig::default());
    p.policy = Box::new(|_| None);
    p.esme.send_request(p.now, 3, submit("x")).unwrap();
    p.run();
    let seq = p.smsc_requests[0].sequence;
    p.smsc
        .respond(seq, CommandStatus::ESME_RINVCMDLEN, Body::GenericNack);
    p.run();
    assert_eq!(p.responses(), vec![(3, CommandStatus::ESME_RINVCMDLEN)]);
    assert_eq!(p.esme.in_flight(), 0);
}

#[test]
fn error_response_with_empty_body_reports_status() {
    let mut p = Pair::new(SessionConfig::default());
    p.policy = Box::new(|_| None);
    p.esme.send_request(p.now, 3, submit("x")).unwrap();
    p.run();
    let seq = p.smsc_requests[0].sequence;
    let mut raw = vec![0u8, 0, 0, 16, 0x80, 0, 0, 4, 0, 0, 0, 0x45];
    raw.extend_from_slice(&seq.to_be_bytes());
    p.esme.handle_input(p.now, &raw);
    p.run();
    assert_eq!(p.responses(), vec![(3, CommandStatus::ESME_RSUBMITFAIL)]);
}

#[test]
fn response_timeout_is_reported() {
    let cfg = SessionConfig {
        response_timeout: Duration::from_secs(3),
        enquire_link_interval: Duration::from_secs(600),
        ..Default::default()
    };
    let mut p = Pair::new(cfg);
    p.policy = Box::new(|_| None);
    p.esme.send_request(p.now, 9, submit("x")).unwrap();
    p.run();
    p.advance(Duration::from_secs(4));
    assert!(p.esme_events.contains(&Event::ResponseTimeout { id: 9 }));
    assert_eq!(p.esme.in_flight(), 0);
}

#[test]
fn unbind_drains_in_flight_and_returns_queued() {
    let cfg = SessionConfig {
        window: 3,
        ..Default::default()
    };
    let mut p = Pair::new(cfg);
    p.policy = Box::new(|_| None);
    for i in 0..6 {
        p.esme.send_request(p.now, i, submit("m")).unwrap();
    }
    p.run();
    p.esme.unbind(p.now);
    p.run();
    assert_eq!(p.esme.state(), State::Unbinding);
    let returned: Vec<_> = p
        .esme_events
        .iter()
        .filter_map(|e| match e {
            Event::Returned { id, was_sent, .. } => Some((*id, *was_sent)),
            _ => None,
        })
        .collect();
    assert_eq!(returned, vec![(3, false), (4, false), (5, false)]);
    assert!(p.esme.send_request(p.now, 99, submit("late")).is_err());
    // No unbind while three are in flight.
    assert!(!p.smsc_requests.iter().any(|r| r.body == Body::Unbind));
    let seqs: Vec<u32> = p.smsc_requests.iter().map(|r| r.sequence).collect();
    for s in seqs {
        p.smsc.respond(
            s,
            CommandStatus::ESME_ROK,
            Body::SubmitSmResp(MessageIdResp::default()),
        );
    }
    p.run();
    assert_eq!(p.responses().len(), 3);
    assert!(p.esme_events.contains(&Event::Closed(CloseReason::Unbound)));
    assert_eq!(p.smsc.state(), State::Closed);
}

#[test]
fn unbind_waits_for_a_slow_in_flight_response_longer_than_the_unbind_timeout() {
    // The SMSC answers after 7 s: longer than the 5 s unbind timeout, within
    // the 10 s response timeout. The submit must end with its response.
    let mut p = Pair::new(SessionConfig::default());
    p.policy = Box::new(|_| None);
    p.esme.send_request(p.now, 1, submit("slow")).unwrap();
    p.run();
    p.esme.unbind(p.now);
    p.run();
    let t = p.now + Duration::from_secs(7);
    p.advance_to(t);
    assert_eq!(p.esme.state(), State::Unbinding, "{:?}", p.esme_events);
    let seq = p.smsc_requests[0].sequence;
    p.smsc.respond(
        seq,
        CommandStatus::ESME_ROK,
        Body::SubmitSmResp(MessageIdResp::default()),
    );
    p.run();
    assert_eq!(p.responses().len(), 1, "{:?}", p.esme_events);
    assert!(!p
        .esme_events
        .iter()
        .any(|e| matches!(e, Event::Returned { .. } | Event::ResponseTimeout { .. })));
    assert!(p.esme_events.contains(&Event::Closed(CloseReason::Unbound)));
}

#[test]
fn sequence_numbers_wrap_and_skip_in_flight() {
    let mut p = Pair::new(SessionConfig::default());
    p.esme.window.set_next_sequence(MAX_SEQ - 1);
    p.policy = Box::new(|_| None);
    for i in 0..3 {
        p.esme.send_request(p.now, i, submit("m")).unwrap();
    }
    p.run();
    let seqs: Vec<u32> = p.smsc_requests.iter().map(|r| r.sequence).collect();
    assert_eq!(seqs, vec![MAX_SEQ - 1, MAX_SEQ, 1]);
}

const MAX_SEQ: u32 = window::MAX_SEQUENCE;

#[test]
fn rate_limit_spaces_submits_on_virtual_time() {
    let cfg = SessionConfig {
        rate_per_sec: Some(10.0),
        rate_burst: 1,
        enquire_link_interval: Duration::from_secs(600),
        ..Default::default()
    };
    let mut p = Pair::new(cfg);
    for i in 0..10 {
        p.esme.send_request(p.now, i, submit("m")).unwrap();
    }
    p.run();
    assert_eq!(p.smsc_requests.len(), 1);
    p.advance(Duration::from_millis(450));
    assert_eq!(p.smsc_requests.len(), 5);
    p.advance(Duration::from_millis(500));
    assert_eq!(p.smsc_requests.len(), 10);
}

#[test]
fn transport_close_returns_everything() {
    let mut p = Pair::new(SessionConfig {
        window: 1,
        ..Default::default()
    });
    p.policy = Box::new(|_| None);
    p.esme.send_request(p.now, 1, submit("a")).unwrap();
    p.esme.send_request(p.now, 2, submit("b")).unwrap();
    p.run();
    p.esme.handle_transport_closed();
    p.run();
    let returned: Vec<_> = p
        .esme_events
        .iter()
        .filter_map(|e| match e {
            Event::Returned { id, was_sent, .. } => Some((*id, *was_sent)),
            _ => None,
        })
        .collect();
    assert_eq!(returned, vec![(1, true), (2, false)]);
}

#[test]
fn smsc_refuses_requests_before_bind() {
    let now = Instant::now();
    let mut smsc = Session::new(
        Role::Smsc {
            system_id: "S".into(),
        },
        SessionConfig::default(),
        now,
    );
    let pdu = Pdu::new(5, submit("x")).to_bytes().unwrap();
    smsc.handle_input(now, &pdu);
    let r = Pdu::decode(smsc.poll_transmit().unwrap()).unwrap();
    assert_eq!((r.sequence, r.status), (5, CommandStatus::ESME_RINVBNDSTS));
    assert!(smsc.poll_event().is_none());
}

#[test]
fn bind_timeout_closes() {
    let now = Instant::now();
    let mut esme = Session::new(
        Role::Esme(BindCredentials::transceiver("a", "b")),
        SessionConfig::default(),
        now,
    );
    let _ = esme.poll_transmit();
    let t = esme.poll_timeout().unwrap();
    assert_eq!(t, now + Duration::from_secs(10));
    esme.handle_timeout(t);
    let evs: Vec<_> = std::iter::from_fn(|| esme.poll_event()).collect();
    assert!(evs.contains(&Event::Closed(CloseReason::BindTimeout)));
}

#[test]
fn link_death_still_reports_every_expired_request() {
    // Submits and the enquire_link share a deadline; when the link dies,
    // each submit must still get an outcome.
    let cfg = SessionConfig {
        enquire_link_interval: Duration::from_secs(5),
        response_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let now = Instant::now();
    let mut esme = Session::new(Role::Esme(BindCredentials::transceiver("a", "b")), cfg, now);
    let bind = Pdu::decode(esme.poll_transmit().unwrap()).unwrap();
    let resp = Pdu::new(
        bind.sequence,
        Body::BindTransceiverResp(BindResp::default()),
    );
    esme.handle_input(now, &resp.to_bytes().unwrap());
    let t1 = now + Duration::from_secs(5);
    esme.send_request(t1, 1, submit("a")).unwrap();
    esme.handle_timeout(t1); // enquire_link goes out now
    esme.send_request(t1, 2, submit("b")).unwrap();
    let _ = esme.poll_transmit();
    esme.handle_timeout(t1 + Duration::from_secs(2));
    let evs: Vec<_> = std::iter::from_fn(|| esme.poll_event()).collect();
    let outcomes = evs
        .iter()
        .filter(|e| matches!(e, Event::ResponseTimeout { .. } | Event::Returned { .. }))
        .count();
    assert_eq!(outcomes, 2, "{evs:?}");
    assert_eq!(
        evs.last(),
        Some(&Event::Closed(CloseReason::EnquireLinkTimeout)),
        "{evs:?}"
    );
}

#[test]
fn rate_deadline_is_never_in_the_past() {
    let cfg = SessionConfig {
        rate_per_sec: Some(1.0),
        rate_burst: 1,
        enquire_link_interval: Duration::from_secs(600),
        ..Default::default()
    };
    let mut p = Pair::new(cfg);
    p.policy = Box::new(|_| None);
    let later = p.now + Duration::from_secs(30);
    p.esme.send_request(later, 1, submit("a")).unwrap();
    p.esme.send_request(later, 2, submit("b")).unwrap();
    p.esme.handle_timeout(later);
    let t = p.esme.poll_timeout().unwrap();
    assert!(t > later, "deadline {t:?} not after {later:?}");
}

#[test]
fn accept_bind_after_close_is_ignored() {
    let now = Instant::now();
    let mut smsc = Session::new(
        Role::Smsc {
            system_id: "S".into(),
        },
        SessionConfig::default(),
        now,
    );
    let bind = Pdu::new(
        1,
        Body::BindTransceiver(Bind {
            system_id: "a".into(),
            interface_version: 0x34,
            ..Default::default()
        }),
    );
    let mut bytes = bind.to_bytes().unwrap().to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 2]);
    smsc.handle_input(now, &bytes);
    let evs: Vec<_> = std::iter::from_fn(|| smsc.poll_event()).collect();
    assert!(matches!(evs[0], Event::BindRequest { .. }));
    assert!(matches!(evs[1], Event::Closed(_)));
    let before = smsc.poll_transmit();
    smsc.accept_bind(1, BindType::Transceiver);
    assert_eq!(smsc.state(), State::Closed);
    assert!(smsc.poll_transmit().is_none());
    assert!(before.is_some());
}

//! The engine against an in-process rsipstack UAS on loopback: owner
//! drops, 503 with Retry-After pausing the trunk, dialogs removed after
//! every kind of end, OPTIONS marking a silent trunk down.

use super::engine::SipEngine;
use super::script::Ended;
use super::{CallEvent, CallPlacer, CallSpec, Command, PlaceError, PlacedCall};
use crate::config::{CallerIdStyle, SipConfig, SipTransport, SipTrunkEntry, Span};
use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transport::{udp::UdpConnection, TransportLayer};
use rsipstack::EndpointBuilder;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use verigate_codecs::media::g711::Law;
use verigate_codecs::sdp;

/// A UAS whose behaviour is the called user: …180 rings and waits, …503
/// is overloaded (Retry-After: 30), …488 answers with G.729 only, …401
/// challenges (nonce n1), says n1 went stale (nonce n2), then rings for an
/// INVITE with one answer for n2; anything else answers with PCMA.
async fn uas(token: &CancellationToken) -> SocketAddr {
    let tl = TransportLayer::new(token.child_token());
    let udp = UdpConnection::create_connection(
        "127.0.0.1:0".parse().unwrap(),
        None,
        Some(token.child_token()),
    )
    .await
    .unwrap();
    let addr = udp.get_addr().get_socketaddr().unwrap();
    tl.add_transport(udp.into());
    let ep = EndpointBuilder::new()
        .with_cancel_token(token.clone())
        .with_transport_layer(tl)
        .build();
    let mut incoming = ep.incoming_transactions().unwrap();
    let dl = Arc::new(DialogLayer::new(ep.inner.clone()));
    let serve = ep.inner.clone();
    tokio::spawn(async move { serve.serve().await });
    tokio::spawn(async move {
        while let Some(mut tx) = incoming.recv().await {
            if let Some(mut d) = dl.match_dialog(&tx) {
                tokio::spawn(async move { d.handle(&mut tx).await });
                continue;
            }
            if tx.original.method != Method::Invite {
                tokio::spawn(async move { tx.reply(StatusCode::OK).await });
                continue;
            }
            let user = tx.original.uri.auth.as_ref().map(|a| a.user.clone());
            let dl = dl.clone();
            tokio::spawn(async move {
                if user.as_deref() == Some("+447400000401") {
                    let answers: Vec<String> = tx
                        .original
                        .headers
                        .iter()
                        .filter(|h| matches!(h, Header::Authorization(_)))
                        .map(|h| h.value().to_string())
                        .collect();
                    let nonce = answers.first().and_then(|a| {
                        a.split("nonce=\"")
                            .nth(1)?
                            .split('"')
                            .next()
                            .map(str::to_string)
                    });
                    let challenge = |nonce: &str, stale: bool| {
                        vec![Header::WwwAuthenticate(
                            format!(
                                "Digest realm=\"test\", nonce=\"{nonce}\", algorithm=MD5{}",
                                if stale { ", stale=true" } else { "" }
                            )
                            .into(),
                        )]
                    };
                    match (nonce.as_deref(), answers.len()) {
                        (None, _) => {
                            let _ = tx
                                .reply_with(StatusCode::Unauthorized, challenge("n1", false), None)
                                .await;
                            return;
                        }
                        (Some("n1"), 1) => {
                            let _ = tx
                                .reply_with(StatusCode::Unauthorized, challenge("n2", true), None)
                                .await;
                            return;
                        }
                        (Some("n2"), 1) => {}
                        _ => {
                            let _ = tx.reply(StatusCode::Forbidden).await;
                            return;
                        }
                    }
                }
                if user.as_deref() == Some("+447400000503") {
                    let ra = vec![Header::RetryAfter("30".into())];
                    let _ = tx
                        .reply_with(StatusCode::ServiceUnavailable, ra, None)
                        .await;
                    return;
                }
                let (stx, mut states) = dl.new_dialog_state_channel();
                let d = dl
                    .get_or_create_server_invite(&tx, stx, None, None)
                    .unwrap();
                let mut h = d.clone();
                tokio::spawn(async move { h.handle(&mut tx).await });
                let _ = d.ringing(None, None);
                if !matches!(user.as_deref(), Some("+447400000180" | "+447400000401")) {
                    let offer = String::from_utf8_lossy(&d.initial_request().body).into_owned();
                    let (mut answer, _) = sdp::answer(
                        &offer,
                        1,
                        "127.0.0.1".parse().unwrap(),
                        40_000,
                        &[Law::Alaw],
                    )
                    .unwrap();
                    if user.as_deref() == Some("+447400000488") {
                        // G.729 only: nothing we can send.
                        answer = sdp::write_audio(
                            1,
                            1,
                            "127.0.0.1".parse().unwrap(),
                            40_000,
                            &[(18, "G729")],
                            sdp::Direction::SendRecv,
                        );
                    }
                    let ct = vec![Header::ContentType("application/sdp".into())];
                    let _ = d.accept(Some(ct), Some(answer.into_bytes()));
                }
                while let Some(s) = states.recv().await {
                    if let DialogState::Terminated(id, _) = s {
                        dl.remove_dialog(&id);
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn trunk(addr: SocketAddr, options: Duration) -> SipTrunkEntry {
    SipTrunkEntry {
        name: "t".into(),
        host: addr.ip().to_string(),
        port: addr.port(),
        transport: SipTransport::Udp,
        username: String::new(),
        password: String::new(),
        from_domain: String::new(),
        caller_id: "+442071838750".into(),
        caller_id_style: CallerIdStyle::From,
        calls_per_second: 100.0,
        max_concurrent: 10,
        options_interval: Span(options),
        prefixes: Vec::new(),
    }
}

async fn engine(t: SipTrunkEntry, token: &CancellationToken) -> SipEngine {
    engine_with(t, "", token).await
}

async fn engine_with(t: SipTrunkEntry, public_ip: &str, token: &CancellationToken) -> SipEngine {
    let cfg = SipConfig {
        listen: "127.0.0.1:0".into(),
        public_ip: public_ip.into(),
        t1: Span(Duration::from_millis(50)),
        ..SipConfig::default()
    };
    SipEngine::start(&cfg, &[t], crate::random::Random::os(), token.child_token())
        .await
        .unwrap()
}

async fn next(call: &mut PlacedCall) -> CallEvent {
    tokio::time::timeout(Duration::from_secs(10), call.events.recv())
        .await
        .expect("an event in time")
        .expect("events until Ended")
}

fn spec(to: &str) -> CallSpec {
    CallSpec {
        to: to.into(),
        caller: None,
    }
}

#[tokio::test]
async fn a_call_whose_owner_goes_away_is_cancelled_and_its_dialog_removed() {
    let token = CancellationToken::new();
    let e = engine(trunk(uas(&token).await, Duration::ZERO), &token).await;
    let mut call = e.place(spec("+447400000180")).await.unwrap();
    assert_eq!(next(&mut call).await, CallEvent::Ringing);
    let PlacedCall {
        mut events,
        commands,
        ..
    } = call;
    drop(commands);
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(CallEvent::Ended(e))) => break e,
            Ok(Some(_)) => continue,
            other => panic!("no end: {other:?}"),
        }
    };
    assert_eq!(ended, Ended::Canceled);
    assert_eq!(e.dialogs(), 0);
    token.cancel();
}

#[tokio::test]
async fn an_answered_call_plays_and_ends_with_bye_leaving_no_dialog() {
    let token = CancellationToken::new();
    let e = engine(trunk(uas(&token).await, Duration::ZERO), &token).await;
    let mut call = e.place(spec("+447400000200")).await.unwrap();
    assert_eq!(next(&mut call).await, CallEvent::Ringing);
    // The handset prefers A-law: the answer's payload type is used.
    assert_eq!(next(&mut call).await, CallEvent::Answered(Law::Alaw));
    assert_eq!(e.dialogs(), 1);
    call.commands
        .send(Command::Play(vec![verigate_prompts::Part::Clip(
            Arc::from(vec![0xd5u8; 160]),
        )]))
        .unwrap();
    assert_eq!(
        next(&mut call).await,
        CallEvent::Media(super::media::MediaEvent::Drained)
    );
    call.commands.send(Command::End).unwrap();
    assert_eq!(next(&mut call).await, CallEvent::Ended(Ended::Hangup));
    assert_eq!(e.dialogs(), 0);
    token.cancel();
}

#[tokio::test]
async fn a_public_ip_that_is_not_on_this_host_is_only_advertised() {
    // Behind a 1:1 NAT the public address is not a local one: RTP sockets
    // bind to the listen address, and the call goes out.
    let token = CancellationToken::new();
    let e = engine_with(
        trunk(uas(&token).await, Duration::ZERO),
        "192.0.2.44",
        &token,
    )
    .await;
    let mut call = e.place(spec("+447400000180")).await.unwrap();
    assert_eq!(next(&mut call).await, CallEvent::Ringing);
    call.commands.send(Command::End).unwrap();
    token.cancel();
}

#[tokio::test]
async fn a_trunk_for_the_numbers_prefix_is_chosen_before_a_default_listed_first() {
    let token = CancellationToken::new();
    // The default trunk goes nowhere; the +44 trunk has the handset.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let default = SipTrunkEntry {
        name: "default".into(),
        ..trunk(silent.local_addr().unwrap(), Duration::ZERO)
    };
    let uk = SipTrunkEntry {
        name: "uk".into(),
        prefixes: vec!["+44".into()],
        ..trunk(uas(&token).await, Duration::ZERO)
    };
    let cfg = SipConfig {
        listen: "127.0.0.1:0".into(),
        t1: Span(Duration::from_millis(50)),
        ..SipConfig::default()
    };
    let e = SipEngine::start(
        &cfg,
        &[default, uk],
        crate::random::Random::os(),
        token.child_token(),
    )
    .await
    .unwrap();
    let mut call = e.place(spec("+447400000180")).await.unwrap();
    assert_eq!(call.trunk, "uk");
    assert_eq!(next(&mut call).await, CallEvent::Ringing);
    call.commands.send(Command::End).unwrap();
    token.cancel();
}

#[tokio::test]
async fn a_stale_nonce_is_answered_once_more_with_one_authorization() {
    let token = CancellationToken::new();
    let t = SipTrunkEntry {
        username: "lab".into(),
        password: "secret".into(),
        ..trunk(uas(&token).await, Duration::ZERO)
    };
    let e = engine(t, &token).await;
    let mut call = e.place(spec("+447400000401")).await.unwrap();
    // 401 (n1) → answer → 401 stale (n2) → answer replacing the first → 180.
    assert_eq!(next(&mut call).await, CallEvent::Ringing);
    call.commands.send(Command::End).unwrap();
    token.cancel();
}

#[tokio::test]
async fn a_503_pauses_the_trunk_for_its_retry_after() {
    let token = CancellationToken::new();
    let e = engine(trunk(uas(&token).await, Duration::ZERO), &token).await;
    let mut call = e.place(spec("+447400000503")).await.unwrap();
    assert_eq!(
        next(&mut call).await,
        CallEvent::Ended(Ended::Refused {
            code: 503,
            retry_after: Some(Duration::from_secs(30))
        })
    );
    // A refused call leaves no dialog behind either.
    assert_eq!(e.dialogs(), 0);
    match e.place(spec("+447400000200")).await {
        Err(PlaceError::Busy { retry_in: Some(d) }) => {
            assert!(
                d > Duration::from_secs(25) && d <= Duration::from_secs(30),
                "{d:?}"
            )
        }
        other => panic!("the trunk should be paused: {other:?}"),
    }
    token.cancel();
}

#[tokio::test]
async fn a_trunk_that_does_not_answer_options_is_marked_down() {
    let token = CancellationToken::new();
    // Nobody listens here: the OPTIONS times out (Timer F = 64 x 50 ms).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let e = engine(
        trunk(silent.local_addr().unwrap(), Duration::from_secs(1)),
        &token,
    )
    .await;
    let start = std::time::Instant::now();
    loop {
        match e.place(spec("+447400000200")).await {
            Err(PlaceError::Busy { retry_in: None }) => break,
            Ok(mut call) => {
                // Still considered up: let this call fail, then ask again.
                drop(call.commands);
                while let Some(ev) = call.events.recv().await {
                    if matches!(ev, CallEvent::Ended(_)) {
                        break;
                    }
                }
            }
            Err(other) => panic!("{other:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the trunk was never marked down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(silent);
    token.cancel();
}

#[tokio::test]
async fn a_number_no_trunk_routes_is_refused() {
    let token = CancellationToken::new();
    let mut t = trunk(uas(&token).await, Duration::ZERO);
    t.prefixes = vec!["+33".into()];
    let e = engine(t, &token).await;
    assert!(matches!(
        e.place(spec("+447400000200")).await.err(),
        Some(PlaceError::NoRoute(n)) if n == "+447400000200"
    ));
    token.cancel();
}

#[tokio::test]
async fn an_invite_nobody_answers_ends_as_no_response_not_as_a_408() {
    let token = CancellationToken::new();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let e = engine(trunk(silent.local_addr().unwrap(), Duration::ZERO), &token).await;
    let mut call = e.place(spec("+447400000200")).await.unwrap();
    // Timer B = 64 x T1 (50 ms here): retryable, unlike a trunk's own 408.
    match next(&mut call).await {
        CallEvent::Ended(Ended::NoResponse(why)) => assert!(why.contains("Timer B"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.dialogs(), 0);
    drop(silent);
    token.cancel();
}

#[tokio::test]
async fn an_answer_without_g711_is_hung_up_and_reported_as_488() {
    let token = CancellationToken::new();
    let e = engine(trunk(uas(&token).await, Duration::ZERO), &token).await;
    let mut call = e.place(spec("+447400000488")).await.unwrap();
    assert_eq!(next(&mut call).await, CallEvent::Ringing);
    assert_eq!(
        next(&mut call).await,
        CallEvent::Ended(Ended::Refused {
            code: 488,
            retry_after: None
        })
    );
    assert_eq!(e.dialogs(), 0);
    token.cancel();
}

#[test]
fn retry_after_is_read_and_capped() {
    use super::engine::retry_after;
    assert_eq!(retry_after(Some("30")), Some(Duration::from_secs(30)));
    assert_eq!(
        retry_after(Some("120 (maintenance);duration=60")),
        Some(Duration::from_secs(120))
    );
    // A peer's huge value is capped, not overflowed or wrapped.
    assert_eq!(
        retry_after(Some("9223372036854775")),
        Some(super::gate::MAX_503_PAUSE)
    );
    assert_eq!(
        retry_after(Some("18446744073709551615")),
        Some(super::gate::MAX_503_PAUSE)
    );
    assert_eq!(retry_after(Some("soon")), None);
    assert_eq!(retry_after(Some("-5")), None);
    assert_eq!(retry_after(None), None);
}

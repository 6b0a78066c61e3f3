use rsipstack::dialog::authenticate::{verify_digest, Credential};
use rsipstack::dialog::dialog::{Dialog, DialogState, DialogStateReceiver};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode, Uri};
use rsipstack::transaction::endpoint::EndpointOption;
use rsipstack::transaction::{Endpoint, TransactionReceiver};
use rsipstack::transport::{udp::UdpConnection, TcpListenerConnection, TransportLayer};
use rsipstack::EndpointBuilder;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

async fn build_endpoint(
    udp: &str,
    tcp: &str,
    token: &CancellationToken,
) -> rsipstack::Result<Endpoint> {
    let tl = TransportLayer::new(token.child_token());
    let udp = UdpConnection::create_connection(udp.parse()?, None, Some(token.child_token())).await?;
    tl.add_transport(udp.into());
    let tcp = TcpListenerConnection::new(tcp.parse()?, None).await?;
    tl.add_transport(tcp.into());
    let opt = EndpointOption {
        t1: Duration::from_millis(500),
        ..Default::default()
    };
    Ok(EndpointBuilder::new()
        .with_user_agent("probe/0.1")
        .with_cancel_token(token.clone())
        .with_transport_layer(tl)
        .with_option(opt)
        .build())
}

async fn uas_loop(dl: Arc<DialogLayer>, mut incoming: TransactionReceiver) {
    let (state_tx, mut state_rx) = dl.new_dialog_state_channel();
    let dl2 = dl.clone();
    tokio::spawn(async move {
        while let Some(s) = state_rx.recv().await {
            println!("  [UAS state] {}", s);
            if let DialogState::Terminated(id, _) = &s {
                dl2.remove_dialog(id);
            }
        }
    });
    while let Some(mut tx) = incoming.recv().await {
        if let Some(mut d) = dl.match_dialog(&tx) {
            println!("  [UAS] in-dialog {}", tx.original.method);
            tokio::spawn(async move {
                if let Err(e) = d.handle(&mut tx).await {
                    println!("  [UAS] handle err {e}");
                }
            });
            continue;
        }
        if tx.original.method != Method::Invite {
            println!("  [UAS] out-of-dialog {}", tx.original.method);
            tx.reply(StatusCode::OK).await.ok();
            continue;
        }
        let user = tx
            .original
            .uri
            .auth
            .as_ref()
            .map(|a| a.user.clone())
            .unwrap_or_default();
        println!(
            "  [UAS] INVITE {} Via: {:?} From: {} PAI: {:?} Contact: {:?}",
            tx.original.uri,
            tx.original.header_value("Via"),
            tx.original.from_header().unwrap().value(),
            tx.original.header_value("P-Asserted-Identity"),
            tx.original.header_value("Contact"),
        );
        match user.as_str() {
            "busy" => {
                tx.reply(StatusCode::BusyHere).await.ok();
                continue;
            }
            "unavail" => {
                tx.reply_with(
                    StatusCode::ServiceUnavailable,
                    vec![Header::RetryAfter("120".into())],
                    None,
                )
                .await
                .ok();
                continue;
            }
            "auth" | "authsha" => {
                match tx.original.header_value("Proxy-Authorization") {
                    None => {
                        let alg = if user == "authsha" { "SHA-256" } else { "MD5" };
                        let ch = format!(
                            "Digest realm=\"sim\", nonce=\"abc123\", algorithm={alg}, qop=\"auth\""
                        );
                        tx.reply_with(
                            StatusCode::ProxyAuthenticationRequired,
                            vec![Header::ProxyAuthenticate(ch.into())],
                            None,
                        )
                        .await
                        .ok();
                        continue;
                    }
                    Some(raw) => {
                        let auth = rsipstack::sip::typed::Authorization::parse(&raw).unwrap();
                        let ok = verify_digest(&auth, "secret", &Method::Invite, &raw);
                        println!("  [UAS] Proxy-Authorization: {raw}\n  [UAS] verify_digest = {ok}");
                    }
                }
            }
            _ => {}
        }
        let dialog = dl
            .get_or_create_server_invite(&tx, state_tx.clone(), None, None)
            .unwrap();
        let d2 = dialog.clone();
        let mut d3 = dialog.clone();
        tokio::spawn(async move {
            if let Err(e) = d3.handle(&mut tx).await {
                println!("  [UAS] invite handle err {e}");
            }
        });
        tokio::spawn(async move {
            sleep(Duration::from_millis(100)).await;
            if user == "e183" { d2.ringing(None, Some(vec![])).unwrap(); } else { d2.ringing(None, None).unwrap(); } // 180
            if user == "ring" {
                return; // wait for CANCEL
            }
            sleep(Duration::from_millis(100)).await;
            d2.ringing(None, Some(SDP.as_bytes().to_vec())).unwrap(); // 183 + SDP
            sleep(Duration::from_millis(100)).await;
            if user == "rejectdlg" {
                d2.reject(Some(StatusCode::NotFound), None).unwrap();
                return;
            }
            d2.accept(
                Some(vec![Header::ContentType("application/sdp".into())]),
                Some(SDP.as_bytes().to_vec()),
            )
            .unwrap();
            if user == "uasbye" {
                sleep(Duration::from_millis(300)).await;
                println!("  [UAS] bye -> {:?}", d2.bye().await);
            }
        });
    }
}

async fn uac_incoming(dl: Arc<DialogLayer>, mut incoming: TransactionReceiver) {
    while let Some(mut tx) = incoming.recv().await {
        if let Some(mut d) = dl.match_dialog(&tx) {
            tokio::spawn(async move { d.handle(&mut tx).await.ok() });
        } else {
            tx.reply(StatusCode::CallTransactionDoesNotExist).await.ok();
        }
    }
}

fn spawn_state_printer(
    tag: &'static str,
    dl: Arc<DialogLayer>,
    mut rx: DialogStateReceiver,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(s) = rx.recv().await {
            let extra = match &s {
                DialogState::Early(_, r) => format!(" status={} body_len={} ctype={:?}", r.status_code, r.body.len(), r.header_value("Content-Type")),
                DialogState::Confirmed(_, r) => format!(" status={}", r.status_code),
                DialogState::Terminated(_, reason) => format!(" reason={:?}", reason),
                _ => String::new(),
            };
            println!("  [UAC {tag} state] {}{}", s, extra);
            if let DialogState::Terminated(id, _) = &s {
                dl.remove_dialog(id);
                break;
            }
        }
    })
}

fn opt(user: &str, tcp: bool, cred: Option<Credential>) -> InviteOption {
    let callee = if tcp {
        format!("sip:{user}@127.0.0.1:25070;transport=tcp")
    } else {
        format!("sip:{user}@127.0.0.1:25070")
    };
    InviteOption {
        caller: Uri::try_from("sip:+447400123456@example.com;user=phone").unwrap(),
        callee: Uri::try_from(callee.as_str()).unwrap(),
        contact: Uri::try_from("sip:+447400123456@127.0.0.1:25060").unwrap(),
        content_type: Some("application/sdp".into()),
        offer: Some(SDP.as_bytes().to_vec()),
        credential: cred,
        headers: Some(vec![Header::PAssertedIdentity(
            "<sip:+447400123456@example.com;user=phone>".into(),
        )]),
        ..Default::default()
    }
}

#[tokio::main]
async fn main() -> rsipstack::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .init();

    // parse checks
    for ch in [
        "Digest realm=\"x\", nonce=\"n\", algorithm=SHA-256",
        "Digest realm=\"x\", nonce=\"n\", algorithm=SHA256",
        "Digest realm=\"x\", nonce=\"n\", qop=\"auth,auth-int\"",
    ] {
        println!(
            "parse {ch:?} -> {:?}",
            rsipstack::sip::typed::WwwAuthenticate::parse(ch).map(|w| (w.algorithm, w.qop))
        );
    }

    let token = CancellationToken::new();
    let uas = build_endpoint("127.0.0.1:25070", "127.0.0.1:25070", &token).await?;
    let uac = build_endpoint("127.0.0.1:25060", "127.0.0.1:25060", &token).await?;
    let uas_dl = Arc::new(DialogLayer::new(uas.inner.clone()));
    let uac_dl = Arc::new(DialogLayer::new(uac.inner.clone()));
    let uas_in = uas.incoming_transactions()?;
    let uac_in = uac.incoming_transactions()?;
    let uas_inner = uas.inner.clone();
    let uac_inner = uac.inner.clone();
    let h1 = tokio::spawn(async move { uas_inner.serve().await });
    let h2 = tokio::spawn(async move { uac_inner.serve().await });
    tokio::spawn(uas_loop(uas_dl.clone(), uas_in));
    tokio::spawn(uac_incoming(uac_dl.clone(), uac_in));
    sleep(Duration::from_millis(200)).await;

    // 1. success over UDP then BYE
    for (name, tcp) in [("ok-udp", false), ("ok-tcp", true), ("e183", false)] {
        println!("== {name}");
        let (stx, srx) = uac_dl.new_dialog_state_channel();
        let p = spawn_state_printer("ok", uac_dl.clone(), srx);
        let (dlg, resp) = uac_dl.do_invite(opt(if name == "e183" { "e183" } else { "ok" }, tcp, None), stx).await?;
        let resp = resp.unwrap();
        println!("  do_invite -> {} body_len={} dialog_layer.len={}", resp.status_code, resp.body.len(), uac_dl.len());
        sleep(Duration::from_millis(300)).await;
        dlg.bye().await?;
        p.await.ok();
        sleep(Duration::from_millis(100)).await;
        println!("  after BYE: uac len={} uas len={}", uac_dl.len(), uas_dl.len());
    }

    // 2. failures
    for user in ["busy", "unavail", "rejectdlg"] {
        println!("== {user}");
        let (stx, srx) = uac_dl.new_dialog_state_channel();
        let p = spawn_state_printer("fail", uac_dl.clone(), srx);
        let r = uac_dl.do_invite(opt(user, false, None), stx).await;
        match r {
            Ok((_d, Some(resp))) => println!(
                "  do_invite Ok -> {} (code {}) Retry-After={:?}",
                resp.status_code,
                resp.status_code.code(),
                resp.header_value("Retry-After")
            ),
            Ok((_d, None)) => println!("  do_invite Ok(None)"),
            Err(e) => println!("  do_invite Err {e}"),
        }
        p.await.ok();
        println!("  uac len={}", uac_dl.len());
    }

    // 3. cancel while ringing
    println!("== cancel");
    let (stx, mut srx) = uac_dl.new_dialog_state_channel();
    let (dlg, handle) = uac_dl.do_invite_async(opt("ring", false, None), stx)?;
    while let Some(s) = srx.recv().await {
        println!("  [UAC cancel state] {s}");
        if matches!(s, DialogState::Early(_, _)) {
            println!("  cancel() -> {:?}", dlg.cancel().await);
        }
        if let DialogState::Terminated(id, r) = &s {
            println!("  terminated reason {r:?}");
            uac_dl.remove_dialog(id);
            break;
        }
    }
    match handle.await {
        Ok(Ok((id, resp))) => println!("  invite task -> {id} {:?}", resp.map(|r| r.status_code)),
        other => println!("  invite task -> {:?}", other.map(|r| r.map(|_| ()))),
    }
    sleep(Duration::from_millis(200)).await;
    println!("  uac len={} uas len={}", uac_dl.len(), uas_dl.len());

    // 4. digest auth
    for user in ["auth", "authsha"] {
        println!("== {user}");
        let cred = Credential {
            username: "alice".into(),
            password: "secret".into(),
            realm: None,
            auth_username: None,
        };
        let (stx, srx) = uac_dl.new_dialog_state_channel();
        let p = spawn_state_printer("auth", uac_dl.clone(), srx);
        match uac_dl.do_invite(opt(user, false, Some(cred)), stx).await {
            Ok((dlg, Some(resp))) => {
                println!("  do_invite -> {}", resp.status_code);
                if resp.status_code == StatusCode::OK {
                    dlg.bye().await.ok();
                }
            }
            Ok((_, None)) => println!("  None"),
            Err(e) => println!("  Err {e}"),
        }
        tokio::time::timeout(Duration::from_secs(2), p).await.ok();
    }

    // 5. UAS-initiated BYE
    println!("== uasbye");
    let (stx, srx) = uac_dl.new_dialog_state_channel();
    let p = spawn_state_printer("uasbye", uac_dl.clone(), srx);
    let (_dlg, resp) = uac_dl.do_invite(opt("uasbye", false, None), stx).await?;
    println!("  do_invite -> {:?}", resp.map(|r| r.status_code));
    tokio::time::timeout(Duration::from_secs(3), p).await.ok();
    println!("  uac len={}", uac_dl.len());

    // 6. cancel immediately (Calling state)
    println!("== cancel-calling");
    let (stx, srx) = uac_dl.new_dialog_state_channel();
    let p = spawn_state_printer("cc", uac_dl.clone(), srx);
    let (dlg, handle) = uac_dl.do_invite_async(opt("ring", false, None), stx)?;
    println!("  cancel() -> {:?}", dlg.cancel().await);
    println!("  task -> {:?}", handle.await.map(|r| r.map(|(_, x)| x.map(|r| r.status_code))));
    tokio::time::timeout(Duration::from_secs(3), p).await.ok();

    // 6b. drop do_invite future while ringing (ring timeout)
    println!("== drop-future");
    let (stx, srx) = uac_dl.new_dialog_state_channel();
    let p = spawn_state_printer("drop", uac_dl.clone(), srx);
    let r = tokio::time::timeout(Duration::from_millis(600), uac_dl.do_invite(opt("ring", false, None), stx)).await;
    println!("  timeout result is_err={}", r.is_err());
    tokio::time::timeout(Duration::from_secs(3), p).await.ok();
    sleep(Duration::from_millis(300)).await;
    println!("  uac len={} uas len={}", uac_dl.len(), uas_dl.len());

    // 7. timeout: nobody at 25999 (uses separate endpoint with short timers)
    println!("== timeout");
    let t2 = CancellationToken::new();
    let tl = TransportLayer::new(t2.child_token());
    tl.add_transport(UdpConnection::create_connection("127.0.0.1:25080".parse()?, None, Some(t2.child_token())).await?.into());
    let ep = EndpointBuilder::new().with_cancel_token(t2.clone()).with_transport_layer(tl)
        .with_option(EndpointOption { t1: Duration::from_millis(100), t1x64: Duration::from_millis(6400), ..Default::default() }).build();
    let epi = ep.inner.clone();
    tokio::spawn(async move { epi.serve().await });
    let dl3 = Arc::new(DialogLayer::new(ep.inner.clone()));
    let (stx, srx) = dl3.new_dialog_state_channel();
    let p = spawn_state_printer("to", dl3.clone(), srx);
    let mut o = opt("x", false, None);
    o.callee = Uri::try_from(std::env::var("TO_URI").unwrap_or("sip:x@127.0.0.1:25999".into()).as_str()).unwrap();
    let t0 = std::time::Instant::now();
    let r = dl3.do_invite(o, stx).await;
    println!("  after {:?}: {:?}", t0.elapsed(), r.map(|(_, x)| x.map(|r| r.status_code)));
    tokio::time::timeout(Duration::from_secs(1), p).await.ok();
    t2.cancel();

    // 5. timeout (nobody listening) with small T1 is not tested here.
    let _ = Dialog::Invite; // silence
    println!("== shutdown");
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), async { (h1.await, h2.await) }).await;
    println!("done");
    Ok(())
}

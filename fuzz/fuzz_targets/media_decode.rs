//! RTP packets, RFC 4733 telephone-events and G.711.
//!
//! Input: the first byte picks the check, the rest is the datagram.
//!
//! Properties:
//! * `RtpPacket::parse` never panics; on success the payload lies inside
//!   the input, and writing the header fields with `write_packet` (no
//!   CSRCs, extension or padding) parses back to the same fields and payload;
//! * a packet without CSRCs, extension or padding is written back byte for
//!   byte;
//! * `TelephoneEvent::parse` then `encode` gives the first four bytes back,
//!   except the reserved bit, which is written as zero;
//! * the DTMF receiver reports nothing for a packet repeated at once (ends
//!   are sent three times), and `flush` reports an open event once;
//! * G.711: decoding a byte, encoding the sample and decoding again gives
//!   the same sample, for both laws;
//! * SDP (lossy UTF-8): `negotiate` never panics; what it agrees on, written
//!   back with `write_audio`, negotiates to the same address, law, payload
//!   types and direction;
//! * digest challenges (lossy UTF-8): `parse` and `preferred` never panic,
//!   and an answer to a parsed challenge is one line (no CR/LF can reach a
//!   header).

#![no_main]

use libfuzzer_sys::fuzz_target;
use verigate_codecs::media::dtmf::{DtmfReceiver, TelephoneEvent};
use verigate_codecs::media::g711::Law;
use verigate_codecs::media::rtp::{write_packet, RtpPacket};
use verigate_codecs::sdp;
use verigate_codecs::sip::digest::Challenge;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 5 {
        0 => rtp(rest),
        1 => dtmf(rest),
        2 => g711(rest),
        3 => sdp(rest),
        _ => digest(rest),
    }
});

fn rtp(buf: &[u8]) {
    let Ok(p) = RtpPacket::parse(buf) else {
        return;
    };
    let base = buf.as_ptr() as usize;
    let at = p.payload.as_ptr() as usize;
    assert!(at >= base && at + p.payload.len() <= base + buf.len());
    let mut out = Vec::new();
    write_packet(
        &mut out,
        p.marker,
        p.payload_type,
        p.sequence,
        p.timestamp,
        p.ssrc,
        p.payload,
    );
    let q = RtpPacket::parse(&out).expect("a written packet parses");
    assert_eq!(
        (q.marker, q.payload_type, q.sequence, q.timestamp, q.ssrc, q.payload),
        (p.marker, p.payload_type, p.sequence, p.timestamp, p.ssrc, p.payload)
    );
    if buf[0] & 0x3F == 0 {
        assert_eq!(out, buf, "a plain packet is written back as it was");
    }
}

fn dtmf(buf: &[u8]) {
    let mut rx = DtmfReceiver::new();
    for chunk in buf.chunks_exact(6) {
        let ts = u32::from(u16::from_be_bytes([chunk[0], chunk[1]]));
        let Ok(ev) = TelephoneEvent::parse(&chunk[2..]) else {
            continue;
        };
        // The reserved bit is written as zero.
        assert_eq!(ev.encode(), [chunk[2], chunk[3] & 0xBF, chunk[4], chunk[5]]);
        rx.on_packet(ts, ev);
        // The same packet again (ends are sent three times) reports nothing.
        assert!(rx.on_packet(ts, ev).is_empty(), "a repeated packet counted twice");
    }
    if rx.flush().is_some() {
        assert_eq!(rx.flush(), None, "flush reports an open event once");
    }
}

fn g711(buf: &[u8]) {
    for &b in buf {
        for law in [Law::Ulaw, Law::Alaw] {
            let s = law.decode(b);
            assert_eq!(law.decode(law.encode(s)), s, "{law:?} {b:#04x}");
        }
    }
}

fn sdp(buf: &[u8]) {
    let text = String::from_utf8_lossy(buf);
    let Ok(n) = sdp::negotiate(&text) else {
        return;
    };
    let mut formats = vec![(n.pt, n.law.name())];
    if let Some(te) = n.telephone_event.filter(|te| *te != n.pt) {
        formats.push((te, "telephone-event"));
    }
    let again = sdp::write_audio(1, 1, n.remote.0, n.remote.1, &formats, n.direction);
    let m = sdp::negotiate(&again).expect("what we write negotiates");
    assert_eq!(
        (m.remote, m.law, m.pt, m.telephone_event.filter(|te| *te != n.pt), m.direction),
        (n.remote, n.law, n.pt, n.telephone_event.filter(|te| *te != n.pt), n.direction)
    );
}

fn digest(buf: &[u8]) {
    let text = String::from_utf8_lossy(buf);
    let _ = Challenge::parse(&text);
    if let Ok(c) = Challenge::preferred(&[&text]) {
        if let Ok(a) = c.answer("user", "pw", "INVITE", "sip:+15550001@example.com", "cn", 1) {
            assert!(!a.contains(['\r', '\n']), "{a:?}");
        }
    }
}

//! SMPP framing + PDU codec.
//!
//! The input is a raw byte stream as it would arrive on a socket. It is cut
//! into frames with `FrameDecoder` (64 KiB limit, like a session), and every
//! frame `Pdu::decode` accepts must survive a semantic round trip:
//!
//! 1. `decode(frame) = p1` ⇒ `p1.to_bytes()` succeeds. No `EncodeError` can
//!    legitimately happen for a decoded PDU: `ShortMessageTooLong` is
//!    impossible because `sm_length` is one octet (≤ 255); `InteriorNul` is
//!    impossible because every decoded C-Octet String (fields and the
//!    receipted_message_id / additional_status_info_text TLVs) stops at the
//!    first NUL; `TlvTooLong` is impossible because a decoded TLV length is a
//!    u16. So any encode error here is a bug.
//! 2. `decode(encode(p1)) = p2` succeeds and `p2 == p1` (semantic round trip;
//!    the first encoding may differ from the frame: stray trailing bytes are
//!    dropped, an unterminated last C-string gains its NUL, a malformed error
//!    response becomes an empty body).
//! 3. `encode(p2)` is byte-identical to `encode(p1)` (encoding is canonical).
//!
//! Also checked: framing does not depend on how the stream is chunked,
//! every frame has the declared length, `encode` appends correctly after
//! existing bytes, and a failed `encode` leaves the buffer untouched.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use verigate_codecs::smpp::frame::{peek_header, HEADER_LEN};
use verigate_codecs::smpp::wire::COctets;
use verigate_codecs::smpp::{Body, EncodeError, FrameDecoder, FrameError, Pdu, PduErrorKind};

const MAX_PDU: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let framer = FrameDecoder::new(MAX_PDU);

    // Whole stream at once.
    let mut buf = BytesMut::from(data);
    let (frames, end) = cut_all(&framer, &mut buf);

    // The same stream fed in two pieces must frame identically (a socket
    // read can end anywhere). The split point comes from the data itself.
    if let Some(&first) = data.first() {
        let at = usize::from(first) % (data.len() + 1);
        let mut buf2 = BytesMut::from(&data[..at]);
        let (mut frames2, end2) = cut_all(&framer, &mut buf2);
        if end2.is_none() {
            buf2.extend_from_slice(&data[at..]);
            let (more, end3) = cut_all(&framer, &mut buf2);
            frames2.extend(more);
            assert_eq!(end3, end, "framing error depends on chunking");
            assert_eq!(buf2, buf, "left-over bytes depend on chunking");
        } else {
            // An error on a prefix is an error on the whole stream, at the
            // same frame (only the sequence may be missing on the prefix:
            // it is reported only when the header was complete).
            assert_eq!(
                end2.map(|e| e.0),
                end.map(|e| e.0),
                "framing error depends on chunking"
            );
        }
        assert_eq!(frames2, frames, "frames depend on chunking");
    }

    for frame in frames {
        check_frame(frame);
    }

    // Pdu::decode outside the framer: short frames are rejected, never panic.
    if let Err(e) = Pdu::decode(Bytes::copy_from_slice(data)) {
        if data.len() < HEADER_LEN {
            assert_eq!(e.kind, PduErrorKind::ShortFrame(data.len()));
        }
    }
});

/// A framing error as (too_long, declared length, sequence).
type FrameEnd = ((bool, u32), Option<u32>);

/// Cuts every complete frame; returns them and the framing error, if any.
fn cut_all(framer: &FrameDecoder, buf: &mut BytesMut) -> (Vec<Bytes>, Option<FrameEnd>) {
    let mut frames = Vec::new();
    loop {
        match framer.decode(buf) {
            Ok(Some(frame)) => {
                let declared = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                assert_eq!(
                    declared as usize,
                    frame.len(),
                    "frame length != command_length"
                );
                assert!(frame.len() >= HEADER_LEN && frame.len() <= MAX_PDU);
                frames.push(frame);
            }
            Ok(None) => return (frames, None),
            // The stream cannot be framed further; a session closes here.
            Err(e) => {
                let declared = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                let key = match e {
                    FrameError::TooShort { len, sequence } => {
                        assert!((len as usize) < HEADER_LEN);
                        ((false, len), sequence)
                    }
                    FrameError::TooLong { len, max, sequence } => {
                        assert!(len as usize > max && max == MAX_PDU);
                        ((true, len), sequence)
                    }
                };
                assert_eq!(key.0 .1, declared);
                assert_eq!(
                    key.1,
                    (buf.len() >= HEADER_LEN).then(|| peek_header(buf).unwrap().2)
                );
                return (frames, Some(key));
            }
        }
    }
}

fn check_frame(frame: Bytes) {
    let (command_id, status, sequence) = peek_header(&frame).expect("frame has a header");
    let p1 = match Pdu::decode(frame.clone()) {
        Ok(p) => p,
        Err(e) => {
            // The error keeps the header so the session can nack it.
            assert_eq!(
                (e.command_id, e.status, e.sequence),
                (command_id, status, sequence)
            );
            return;
        }
    };
    assert_eq!(p1.command_id().as_u32(), command_id);
    assert_eq!(p1.status.0, status);
    assert_eq!(p1.sequence, sequence);

    let e1 = match p1.to_bytes() {
        Ok(b) => b,
        Err(e) => panic!("decoded PDU cannot be re-encoded: {e:?}\nPDU: {p1:?}"),
    };
    let declared = u32::from_be_bytes([e1[0], e1[1], e1[2], e1[3]]);
    assert_eq!(
        declared as usize,
        e1.len(),
        "encoded command_length is wrong"
    );
    assert_eq!(peek_header(&e1), Some((command_id, status, sequence)));

    let p2 = match Pdu::decode(e1.clone()) {
        Ok(p) => p,
        Err(e) => panic!("re-encoded PDU does not decode: {e}\nPDU: {p1:?}\nbytes: {e1:02x?}"),
    };
    assert_eq!(
        p2, p1,
        "semantic round trip failed; re-encoded bytes: {e1:02x?}"
    );

    let e2 = p2.to_bytes().expect("second encode");
    assert_eq!(e2, e1, "encoding is not canonical");

    // encode() appends after existing content and patches its own length.
    let mut out = BytesMut::from(&b"prefix"[..]);
    p1.encode(&mut out).expect("encode after prefix");
    assert_eq!(&out[..6], b"prefix");
    assert_eq!(&out[6..], &e1[..]);

    check_encode_errors(&p1);
}

/// Makes the decoded PDU impossible to encode and checks the error and that
/// the output buffer is left exactly as it was.
fn check_encode_errors(p: &Pdu) {
    let mut bad = p.clone();
    let expected = match &mut bad.body {
        Body::SubmitSm(s) | Body::DeliverSm(s) => {
            s.short_message = Bytes::from(vec![b'x'; 256]);
            EncodeError::ShortMessageTooLong(256)
        }
        Body::BindTransmitter(b) | Body::BindReceiver(b) | Body::BindTransceiver(b) => {
            b.password = COctets::from(&b"pa\0ss"[..]);
            EncodeError::InteriorNul("password")
        }
        Body::SubmitSmResp(r) | Body::DeliverSmResp(r) | Body::DataSmResp(r) => {
            r.message_id = COctets::from(&b"\0"[..]);
            EncodeError::InteriorNul("message_id")
        }
        _ => return,
    };
    let mut out = BytesMut::from(&b"keep"[..]);
    assert_eq!(bad.encode(&mut out), Err(expected));
    assert_eq!(&out[..], b"keep", "failed encode left bytes behind");
}

//! SMS text encodings, splitting, UDH parsing and reassembly.
//!
//! Input: first byte = data_coding, second = knobs (split reference, fill
//! bits, part order), the rest = message bytes. From the message bytes we
//! derive strings of three flavours so every encoder gets text it accepts:
//! lossy UTF-8 (anything), the GSM 7-bit decoding (always GSM-encodable) and
//! the UCS-2 decoding (BMP and surrogate pairs).
//!
//! Properties:
//! * `text::decode`, `parse_udh`, `gsm7::decode_unpacked`, `ucs2::decode`,
//!   `latin1::decode` never panic, for any data_coding;
//! * GSM 7-bit: `encodable(s)` ⇔ `encode_unpacked(s)` is Ok, then
//!   `decode_unpacked(encode_unpacked(s)) == s` and `septet_count` is the
//!   encoded length; `unpack(pack(septets, fill)) == septets` (7-bit masked);
//! * UCS-2: `decode(encode(s)) == s`, 2 octets per UTF-16 unit;
//! * Latin-1: bytes → text → bytes is the identity, and text round trips
//!   when encodable;
//! * `split` in every `SplitMode`, for every encoding the text fits: when
//!   it succeeds, the parts are within capacity, each decodes on its own,
//!   concatenating the payloads and decoding gives back `s`, the UDH /
//!   SAR info numbers the parts 1..=total, and pushing the parts into a
//!   `Reassembler` in a fuzzer-chosen order (with duplicates) gives back `s`;
//! * `smpp::message::text_to_parts` + `content` give the text back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};
use verigate_codecs::smpp::message::{content, text_to_parts};
use verigate_codecs::smpp::SubmitSm;
use verigate_codecs::text::{
    self, build_udh_concat, gsm7, latin1, parse_udh, split, ucs2, Encoding, PartKey, Reassembler,
    SplitMode, TextError,
};

const MODES: [SplitMode; 4] = [
    SplitMode::Udh8,
    SplitMode::Udh16,
    SplitMode::Sar,
    SplitMode::Payload,
];

fuzz_target!(|data: &[u8]| {
    let (dc, knobs, body) = match data {
        [dc, knobs, body @ ..] => (*dc, *knobs, body),
        [dc] => (*dc, 0, &[][..]),
        [] => (0, 0, &[][..]),
    };

    // Decoding arbitrary bytes never panics, whatever the data_coding.
    let _ = text::charset(dc);
    let decoded = text::decode(dc, body);
    check_parse_udh(body);
    check_parse_udh(data);

    // Lenient decoders and their size bounds.
    let g = gsm7::decode_unpacked(body);
    assert!(g.chars().count() <= body.len());
    let u = ucs2::decode(body);
    assert!(u.chars().count() <= body.len() / 2);
    let l = latin1::decode(body);
    assert_eq!(l.chars().count(), body.len());
    assert!(latin1::encodable(&l));
    assert_eq!(latin1::encode(&l).expect("latin1 text encodes"), body);

    // Septet packing, with fill bits 0..=6.
    let fill = usize::from(knobs % 7);
    let packed = gsm7::pack(body, fill);
    assert_eq!(packed.len(), (fill + 7 * body.len()).div_ceil(8));
    let masked: Vec<u8> = body.iter().map(|b| b & 0x7F).collect();
    assert_eq!(gsm7::unpack(&packed, body.len(), fill), masked);
    // unpack never reads past its input and never returns more than asked.
    let short = gsm7::unpack(body, body.len() + 3, fill);
    assert!(short.len() <= body.len() + 3);

    // Everything GSM decoding produces can be encoded again, and decoding
    // is idempotent through it.
    assert!(
        gsm7::encodable(&g),
        "decode_unpacked produced unencodable text {g:?}"
    );

    let lossy = String::from_utf8_lossy(body);
    let reference = u16::from_be_bytes([knobs, dc]);
    for s in [lossy.as_ref(), g.as_str(), u.as_str(), decoded.as_str()] {
        check_string(s, reference, knobs);
    }
});

fn check_parse_udh(bytes: &[u8]) {
    let Some((udh, len)) = parse_udh(bytes) else {
        // Only for empty input or a UDHL pointing past the end.
        assert!(bytes.is_empty() || usize::from(bytes[0]) + 1 > bytes.len());
        return;
    };
    assert_eq!(len, usize::from(bytes[0]) + 1);
    assert!(len <= bytes.len());
    if let Some(c) = udh.concat {
        assert!(c.total != 0 && c.seq != 0 && c.seq <= c.total, "{c:?}");
        if !c.sixteen_bit {
            assert!(c.reference <= 0xFF);
        }
    }
}

fn check_string(s: &str, reference: u16, knobs: u8) {
    // GSM 7-bit.
    let gsm_ok = gsm7::encodable(s);
    match gsm7::encode_unpacked(s) {
        Ok(septets) => {
            assert!(gsm_ok, "encode_unpacked accepted unencodable {s:?}");
            assert_eq!(gsm7::decode_unpacked(&septets), s, "GSM round trip");
            assert_eq!(gsm7::septet_count(s), Some(septets.len()));
            assert!(septets.iter().all(|&b| b < 0x80));
        }
        Err(TextError::Unencodable { ch, position, .. }) => {
            assert!(!gsm_ok, "encodable but encode_unpacked failed on {s:?}");
            assert_eq!(s.chars().nth(position), Some(ch));
            assert_eq!(gsm7::septet_count(s), None);
        }
        Err(e) => panic!("unexpected GSM encode error {e:?}"),
    }

    // UCS-2 (UTF-16BE).
    let units = ucs2::encode(s);
    assert_eq!(units.len(), 2 * ucs2::unit_count(s));
    assert_eq!(ucs2::decode(&units), s, "UCS-2 round trip");

    // Latin-1.
    if latin1::encodable(s) {
        let b = latin1::encode(s).expect("encodable Latin-1");
        assert_eq!(latin1::decode(&b), s, "Latin-1 round trip");
    } else {
        assert!(latin1::encode(s).is_err());
    }

    // Automatic choice is consistent with encodability.
    assert_eq!(
        text::choose_encoding(s),
        if gsm_ok {
            Encoding::Gsm7
        } else {
            Encoding::Ucs2
        }
    );

    for enc in [Encoding::Gsm7, Encoding::Latin1, Encoding::Ucs2] {
        let fits = match enc {
            Encoding::Gsm7 => gsm_ok,
            Encoding::Latin1 => latin1::encodable(s),
            Encoding::Ucs2 => true,
        };
        for mode in MODES {
            check_split(s, enc, mode, reference, knobs, fits);
        }
    }

    // SMPP glue: parts built from the text give the text back.
    let mode = MODES[usize::from(knobs >> 4) % 4];
    if let Ok(parts) = text_to_parts(&SubmitSm::default(), s, None, mode, reference) {
        let mut joined = Vec::new();
        let mut dc = None;
        for (i, p) in parts.iter().enumerate() {
            assert!(p.short_message.len() <= 255);
            let c = content(p);
            if parts.len() > 1 {
                let info = c.part.expect("multipart part has concat info");
                assert_eq!(usize::from(info.seq), i + 1);
                assert_eq!(usize::from(info.total), parts.len());
            }
            assert_eq!(*dc.get_or_insert(c.data_coding), c.data_coding);
            joined.extend_from_slice(&c.payload);
        }
        assert_eq!(
            text::decode(dc.unwrap_or(0), &joined),
            s,
            "text_to_parts round trip"
        );
    }
}

fn check_split(s: &str, enc: Encoding, mode: SplitMode, reference: u16, knobs: u8, fits: bool) {
    let segs = match split(s, enc, mode, reference) {
        Ok(segs) => segs,
        Err(TextError::Unencodable { .. }) => {
            assert!(!fits, "split says {s:?} does not fit {enc:?}");
            return;
        }
        Err(TextError::TooManyParts { parts }) => {
            assert!(parts > 255 && mode != SplitMode::Payload);
            return;
        }
        Err(TextError::PayloadTooLong { len }) => {
            assert!(len > 0xFFFF && mode == SplitMode::Payload);
            return;
        }
    };
    assert!(fits, "split accepted {s:?} in {enc:?}");
    assert!(!segs.is_empty() && segs.len() <= 255);
    let dc = enc.data_coding();
    let cap = if segs.len() == 1 {
        if mode == SplitMode::Payload {
            0xFFFF
        } else {
            enc.single_part_capacity()
        }
    } else {
        mode.part_capacity(enc)
    };
    let mut joined = Vec::new();
    let mut per_part = String::new();
    for (i, seg) in segs.iter().enumerate() {
        assert!(
            seg.payload.len() <= cap,
            "{enc:?} {mode:?}: part over capacity"
        );
        // Nothing straddles a part boundary.
        per_part.push_str(&text::decode(dc, &seg.payload));
        joined.extend_from_slice(&seg.payload);
        if segs.len() == 1 {
            assert!(seg.udh.is_none() && seg.sar.is_none());
            continue;
        }
        let seq = i + 1;
        match mode {
            SplitMode::Udh8 | SplitMode::Udh16 => {
                let udh = seg.udh.as_deref().expect("multipart UDH");
                assert_eq!(udh.len(), mode.udh_len());
                let sm = seg.short_message();
                let (parsed, len) = parse_udh(&sm).expect("own UDH parses");
                assert_eq!(len, udh.len());
                assert_eq!(&sm[len..], &seg.payload[..]);
                let c = parsed.concat.expect("own UDH has concat");
                assert_eq!(
                    (usize::from(c.total), usize::from(c.seq)),
                    (segs.len(), seq)
                );
                assert_eq!(c.sixteen_bit, mode == SplitMode::Udh16);
                let r = if c.sixteen_bit {
                    reference
                } else {
                    reference & 0xFF
                };
                assert_eq!(c.reference, r);
                assert_eq!(
                    udh,
                    &build_udh_concat(reference, c.total, c.seq, c.sixteen_bit)[..]
                );
            }
            SplitMode::Sar => {
                let sar = seg.sar.expect("multipart SAR info");
                assert_eq!(
                    (usize::from(sar.total), usize::from(sar.seq)),
                    (segs.len(), seq)
                );
                assert_eq!(sar.ref_num, reference);
            }
            SplitMode::Payload => unreachable!("payload mode gives one segment"),
        }
    }
    assert_eq!(
        text::decode(dc, &joined),
        s,
        "{enc:?} {mode:?}: joined parts"
    );
    assert_eq!(per_part, s, "{enc:?} {mode:?}: parts decoded one by one");

    if segs.len() > 1 {
        check_reassembly(&segs, dc, s, knobs);
    }
}

/// Pushes the parts in an order derived from `knobs`, repeating one, and
/// expects the text back exactly once.
fn check_reassembly(segs: &[text::Segment], dc: u8, s: &str, knobs: u8) {
    let n = segs.len();
    let t0 = Instant::now();
    let mut r = Reassembler::new(Duration::from_secs(60), 4);
    let key = PartKey {
        source: "447700900123".into(),
        dest: "Verigate".into(),
        reference: 7,
        total: n as u8,
    };
    // A rotation, reversed when the knob's high bit is set.
    let start = usize::from(knobs) % n;
    let mut order: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
    if knobs & 0x80 != 0 {
        order.reverse();
    }
    // A duplicate of the first part just before the last one.
    order.insert(n - 1, order[0]);
    let mut done = None;
    for (k, &i) in order.iter().enumerate() {
        let out = r.push(
            t0 + Duration::from_millis(k as u64),
            key.clone(),
            (i + 1) as u8,
            dc,
            segs[i].payload.clone(),
        );
        if let Some(m) = out {
            assert!(done.is_none(), "reassembled twice");
            assert_eq!(k, order.len() - 1, "reassembled before the last part");
            done = Some(m);
        }
    }
    let m = done.expect("all parts pushed but nothing reassembled");
    assert_eq!(m.text, s, "reassembled text");
    assert_eq!(m.parts.len(), n);
    assert_eq!(r.pending(), 0);
}

//! Splitting long text into concatenated short messages, and the UDH
//! (TS 23.040 §9.2.3.24) elements that stitch them back together.
//!
//! Splitting works on the *encoded* bytes so the per-part budgets are exact,
//! and only ever cuts between characters: a GSM escape pair or a UTF-16
//! surrogate pair split across parts would decode as garbage on handsets
//! that display parts before reassembly (and on some that do not).

use super::{gsm7, ucs2, Encoding, TextError};

/// Most parts a concatenated message can have: the counters are one octet.
pub const MAX_PARTS: usize = 255;

/// Most octets a `message_payload` TLV can carry (its length field is 16-bit).
pub const MAX_PAYLOAD: usize = 0xFFFF;

/// IEI: concatenated short messages, 8-bit reference.
const IEI_CONCAT_8: u8 = 0x00;
/// IEI: application port addressing, 8-bit ports.
const IEI_PORTS_8: u8 = 0x04;
/// IEI: application port addressing, 16-bit ports.
const IEI_PORTS_16: u8 = 0x05;
/// IEI: concatenated short messages, 16-bit reference.
const IEI_CONCAT_16: u8 = 0x08;

/// How a text that does not fit one short message is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SplitMode {
    /// Concatenation UDH with an 8-bit reference (6-octet UDH); the usual choice.
    Udh8,
    /// Concatenation UDH with a 16-bit reference (7-octet UDH).
    Udh16,
    /// SMPP `sar_*` TLVs; parts carry no UDH, so each may use the full 140 octets.
    Sar,
    /// One `message_payload` TLV holding the whole text; the SMSC splits it.
    Payload,
}

impl SplitMode {
    /// Octets of UDH (including the UDHL octet) every part carries in this mode.
    pub fn udh_len(self) -> usize {
        match self {
            SplitMode::Udh8 => 6,
            SplitMode::Udh16 => 7,
            SplitMode::Sar | SplitMode::Payload => 0,
        }
    }

    /// Septets (GSM 7-bit) or octets of text each part of a multipart message may carry.
    pub fn part_capacity(self, enc: Encoding) -> usize {
        if self == SplitMode::Payload {
            return MAX_PAYLOAD;
        }
        let udh = self.udh_len();
        match enc {
            // The UDH eats whole septets: it is padded with fill bits up to the
            // next septet boundary, so 6 octets (48 bits) cost 7 septets and
            // 7 octets (56 bits) cost 8. That holds even though SMPP carries
            // the septets unpacked, because the SMSC packs them behind the UDH.
            Encoding::Gsm7 => 160 - (udh * 8).div_ceil(7),
            Encoding::Latin1 => 140 - udh,
            // Whole UTF-16 code units only.
            Encoding::Ucs2 => (140 - udh) & !1,
        }
    }
}

/// SMPP `sar_msg_ref_num`, `sar_total_segments` and `sar_segment_seqnum` for one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SarInfo {
    /// `sar_msg_ref_num`: the same for every part of one message.
    pub ref_num: u16,
    /// `sar_total_segments`.
    pub total: u8,
    /// `sar_segment_seqnum`, 1-based.
    pub seq: u8,
}

/// One short message produced by [`split`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Full UDH including the UDHL octet, when the mode uses one (set UDHI in `esm_class`).
    pub udh: Option<Vec<u8>>,
    /// SAR TLV values, in [`SplitMode::Sar`].
    pub sar: Option<SarInfo>,
    /// This part's encoded text; for GSM 7-bit, unpacked septets (one per octet).
    pub payload: Vec<u8>,
}

impl Segment {
    fn single(payload: Vec<u8>) -> Self {
        Segment {
            udh: None,
            sar: None,
            payload,
        }
    }

    /// UDH followed by payload: the `short_message` body for this part.
    pub fn short_message(&self) -> Vec<u8> {
        let udh = self.udh.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(udh.len() + self.payload.len());
        out.extend_from_slice(udh);
        out.extend_from_slice(&self.payload);
        out
    }
}

/// Encodes `text` with `enc` and splits it into short messages per `mode`.
///
/// Text that fits one short message yields one segment with neither UDH nor
/// SAR info; [`SplitMode::Payload`] always yields exactly one such segment.
/// In [`SplitMode::Udh8`] only the low 8 bits of `reference` are used.
///
/// # Errors
///
/// * [`TextError::Unencodable`] if `text` does not fit `enc`;
/// * [`TextError::TooManyParts`] if more than [`MAX_PARTS`] parts are needed;
/// * [`TextError::PayloadTooLong`] in [`SplitMode::Payload`] above [`MAX_PAYLOAD`] octets.
pub fn split(
    text: &str,
    enc: Encoding,
    mode: SplitMode,
    reference: u16,
) -> Result<Vec<Segment>, TextError> {
    let bytes = enc.encode(text)?;

    if mode == SplitMode::Payload {
        if bytes.len() > MAX_PAYLOAD {
            return Err(TextError::PayloadTooLong { len: bytes.len() });
        }
        return Ok(vec![Segment::single(bytes)]);
    }
    if bytes.len() <= enc.single_part_capacity() {
        return Ok(vec![Segment::single(bytes)]);
    }

    let cap = mode.part_capacity(enc);
    // Cheap lower bound first, so absurdly long input fails before we build
    // thousands of part vectors.
    let at_least = bytes.len().div_ceil(cap);
    if at_least > MAX_PARTS {
        return Err(TextError::TooManyParts { parts: at_least });
    }
    let ranges = cut(&bytes, enc, cap);
    let total = u8::try_from(ranges.len()).map_err(|_| TextError::TooManyParts {
        parts: ranges.len(),
    })?;

    Ok(ranges
        .into_iter()
        .zip(1..=total)
        .map(|(range, seq)| Segment {
            udh: match mode {
                SplitMode::Udh8 => Some(build_udh_concat(reference, total, seq, false)),
                SplitMode::Udh16 => Some(build_udh_concat(reference, total, seq, true)),
                SplitMode::Sar | SplitMode::Payload => None,
            },
            sar: (mode == SplitMode::Sar).then_some(SarInfo {
                ref_num: reference,
                total,
                seq,
            }),
            payload: bytes[range].to_vec(),
        })
        .collect())
}

/// Cuts `bytes` into ranges of at most `cap`, never inside a character.
fn cut(bytes: &[u8], enc: Encoding, cap: usize) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::with_capacity(bytes.len().div_ceil(cap));
    let mut start = 0;
    while start < bytes.len() {
        let mut end = (start + cap).min(bytes.len());
        if end < bytes.len() {
            match enc {
                // Our encoder only emits ESC as a prefix (no extension septet
                // is 0x1B), so an ESC right before the cut means we are
                // inside a pair: move it to the next part.
                Encoding::Gsm7 if bytes[end - 1] == gsm7::ESC => end -= 1,
                // `start` and `cap` are even, so `end` is on a unit boundary;
                // only a high surrogate right before it is a problem.
                Encoding::Ucs2 if ucs2::ends_in_high_surrogate(bytes, end) => end -= 2,
                _ => {}
            }
        }
        ranges.push(start..end);
        start = end;
    }
    ranges
}

/// Builds a concatenation UDH (UDHL included) for part `seq` of `total`.
///
/// With `sixteen_bit` false, only the low 8 bits of `reference` are sent.
pub fn build_udh_concat(reference: u16, total: u8, seq: u8, sixteen_bit: bool) -> Vec<u8> {
    let [hi, lo] = reference.to_be_bytes();
    if sixteen_bit {
        vec![0x06, IEI_CONCAT_16, 0x04, hi, lo, total, seq]
    } else {
        vec![0x05, IEI_CONCAT_8, 0x03, lo, total, seq]
    }
}

/// Concatenation information from a UDH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concat {
    /// Reference shared by all parts (8-bit references are zero-extended).
    pub reference: u16,
    /// Number of parts.
    pub total: u8,
    /// This part's 1-based sequence number.
    pub seq: u8,
    /// Whether the 16-bit reference IEI (0x08) was used.
    pub sixteen_bit: bool,
}

/// Application port addressing from a UDH (IEI 0x04 or 0x05).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ports {
    /// Destination port.
    pub dest: u16,
    /// Originator port.
    pub src: u16,
}

/// The information elements of a UDH that matter to an SMS gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Udh {
    /// Concatenation element, if present and valid.
    pub concat: Option<Concat>,
    /// Port addressing element, if present.
    pub ports: Option<Ports>,
}

/// Parses the UDH at the start of `bytes` (UDHL first); returns it and its length including UDHL.
///
/// Returns `None` only when `bytes` is empty or UDHL points past the end.
/// Unknown IEIs are skipped; a malformed element ends parsing but keeps what
/// was found so far, since the UDHL still tells the caller where text
/// starts. Per TS 23.040, a repeated element's last occurrence wins, and a
/// concatenation element with a zero total, zero sequence or sequence above
/// total is ignored.
pub fn parse_udh(bytes: &[u8]) -> Option<(Udh, usize)> {
    let udhl = usize::from(*bytes.first()?);
    let header = bytes.get(1..1 + udhl)?;
    let mut udh = Udh::default();
    let mut rest = header;
    while let [iei, len, tail @ ..] = rest {
        let Some(data) = tail.get(..usize::from(*len)) else {
            break;
        };
        rest = &tail[data.len()..];
        match (*iei, data) {
            (IEI_CONCAT_8, &[r, total, seq]) => {
                udh.concat = valid_concat(u16::from(r), total, seq, false).or(udh.concat);
            }
            (IEI_CONCAT_16, &[hi, lo, total, seq]) => {
                let r = u16::from_be_bytes([hi, lo]);
                udh.concat = valid_concat(r, total, seq, true).or(udh.concat);
            }
            (IEI_PORTS_8, &[dest, src]) => {
                udh.ports = Some(Ports {
                    dest: u16::from(dest),
                    src: u16::from(src),
                });
            }
            (IEI_PORTS_16, &[d1, d2, s1, s2]) => {
                udh.ports = Some(Ports {
                    dest: u16::from_be_bytes([d1, d2]),
                    src: u16::from_be_bytes([s1, s2]),
                });
            }
            // Unknown IEI, or a known one with the wrong length: skip it.
            _ => {}
        }
    }
    Some((udh, 1 + udhl))
}

fn valid_concat(reference: u16, total: u8, seq: u8, sixteen_bit: bool) -> Option<Concat> {
    (total != 0 && seq != 0 && seq <= total).then_some(Concat {
        reference,
        total,
        seq,
        sixteen_bit,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{choose_encoding, decode, latin1};
    use super::*;
    use proptest::prelude::*;

    fn gsm(n: usize) -> String {
        "a".repeat(n)
    }

    #[test]
    fn capacities() {
        use Encoding::*;
        let table = [
            (SplitMode::Udh8, [153, 134, 134]),
            (SplitMode::Udh16, [152, 133, 132]),
            (SplitMode::Sar, [160, 140, 140]),
        ];
        for (mode, caps) in table {
            for (enc, cap) in [Gsm7, Latin1, Ucs2].into_iter().zip(caps) {
                assert_eq!(mode.part_capacity(enc), cap, "{mode:?} {enc:?}");
            }
        }
    }

    #[test]
    fn fits_in_one_part() {
        for mode in [SplitMode::Udh8, SplitMode::Udh16, SplitMode::Sar] {
            let segs = split(&gsm(160), Encoding::Gsm7, mode, 7).unwrap();
            assert_eq!(segs.len(), 1);
            assert_eq!(segs[0].udh, None);
            assert_eq!(segs[0].sar, None);
            assert_eq!(segs[0].payload.len(), 160);
        }
        // 80 escapes = 160 septets: still one part.
        assert_eq!(
            split(&"€".repeat(80), Encoding::Gsm7, SplitMode::Udh8, 1)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            split(&"日".repeat(70), Encoding::Ucs2, SplitMode::Udh8, 1)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            split(&"é".repeat(140), Encoding::Latin1, SplitMode::Udh8, 1)
                .unwrap()
                .len(),
            1
        );
        let empty = split("", Encoding::Gsm7, SplitMode::Udh8, 1).unwrap();
        assert_eq!(empty, vec![Segment::single(vec![])]);
    }

    #[test]
    fn gsm_161_makes_two_parts() {
        let segs = split(&gsm(161), Encoding::Gsm7, SplitMode::Udh8, 0x1234).unwrap();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].payload.len(), 153);
        assert_eq!(segs[1].payload.len(), 8);
        assert_eq!(
            segs[0].udh.as_deref(),
            Some(&[0x05, 0x00, 0x03, 0x34, 2, 1][..])
        );
        assert_eq!(
            segs[1].udh.as_deref(),
            Some(&[0x05, 0x00, 0x03, 0x34, 2, 2][..])
        );
        assert!(segs
            .iter()
            .all(|s| s.payload.len() <= 153 && s.sar.is_none()));
        assert_eq!(
            segs[1].short_message(),
            [&[0x05, 0x00, 0x03, 0x34, 2, 2][..], &[b'a'; 8]].concat()
        );

        let segs = split(&gsm(161), Encoding::Gsm7, SplitMode::Udh16, 0x1234).unwrap();
        assert_eq!(segs[0].payload.len(), 152);
        assert_eq!(
            segs[0].udh.as_deref(),
            Some(&[0x06, 0x08, 0x04, 0x12, 0x34, 2, 1][..])
        );
    }

    #[test]
    fn sar_parts_use_full_capacity() {
        let segs = split(&gsm(321), Encoding::Gsm7, SplitMode::Sar, 0xBEEF).unwrap();
        assert_eq!(segs.len(), 3);
        assert_eq!(segs[0].payload.len(), 160);
        assert_eq!(segs[2].payload.len(), 1);
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(s.udh, None);
            assert_eq!(
                s.sar,
                Some(SarInfo {
                    ref_num: 0xBEEF,
                    total: 3,
                    seq: i as u8 + 1
                })
            );
        }
    }

    #[test]
    fn escape_at_boundary_is_kept_whole() {
        // 152 + ESC lands the ESC at index 152, the last slot of a 153 part.
        let text = format!("{}€{}", gsm(152), gsm(20));
        let segs = split(&text, Encoding::Gsm7, SplitMode::Udh8, 1).unwrap();
        assert_eq!(segs[0].payload.len(), 152);
        assert_eq!(&segs[1].payload[..2], &[0x1B, 0x65]);
        assert_eq!(gsm7::decode_unpacked(&segs[0].payload), gsm(152));

        // Same for UDH16 (152) and SAR (160).
        let text = format!("{}{{{}", gsm(151), gsm(20));
        let segs = split(&text, Encoding::Gsm7, SplitMode::Udh16, 1).unwrap();
        assert_eq!(segs[0].payload.len(), 151);
        let text = format!("{}]{}", gsm(159), gsm(20));
        let segs = split(&text, Encoding::Gsm7, SplitMode::Sar, 1).unwrap();
        assert_eq!(segs[0].payload.len(), 159);
        // One char earlier, the pair fits exactly.
        let text = format!("{}€{}", gsm(151), gsm(20));
        let segs = split(&text, Encoding::Gsm7, SplitMode::Udh8, 1).unwrap();
        assert_eq!(segs[0].payload.len(), 153);
    }

    #[test]
    fn emoji_at_ucs2_boundary_is_kept_whole() {
        // 66 units then a pair occupying units 66-67; the part holds 67.
        let text = format!("{}😀{}", "日".repeat(66), "b".repeat(10));
        let segs = split(&text, Encoding::Ucs2, SplitMode::Udh8, 1).unwrap();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].payload.len(), 132);
        assert_eq!(&segs[1].payload[..4], &[0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(ucs2::decode(&segs[0].payload), "日".repeat(66));
        assert_eq!(
            ucs2::decode(&segs[1].payload),
            format!("😀{}", "b".repeat(10))
        );
        // Odd cap for UDH16 (133 octets) is rounded down to 66 units.
        let segs = split(&"x".repeat(71), Encoding::Ucs2, SplitMode::Udh16, 1).unwrap();
        assert_eq!(segs[0].payload.len(), 132);
    }

    #[test]
    fn too_many_parts() {
        let ok = split(&gsm(255 * 153), Encoding::Gsm7, SplitMode::Udh8, 1).unwrap();
        assert_eq!(ok.len(), 255);
        assert_eq!(ok[254].udh.as_deref().unwrap()[4..], [255, 255]);
        let err = split(&gsm(255 * 153 + 1), Encoding::Gsm7, SplitMode::Udh8, 1).unwrap_err();
        assert_eq!(err, TextError::TooManyParts { parts: 256 });
        // Backing off before escapes can push the count over even when the
        // lower bound fits: 255 parts of exactly-full capacity plus escapes.
        let text = format!("{}{}", gsm(152), "€".repeat(254 * 76 + 1));
        assert!(matches!(
            split(&text, Encoding::Gsm7, SplitMode::Udh8, 1),
            Err(TextError::TooManyParts { .. })
        ));
    }

    #[test]
    fn payload_mode() {
        let segs = split(&gsm(1000), Encoding::Gsm7, SplitMode::Payload, 1).unwrap();
        assert_eq!(segs, vec![Segment::single(vec![b'a'; 1000])]);
        assert!(split(&gsm(MAX_PAYLOAD), Encoding::Gsm7, SplitMode::Payload, 1).is_ok());
        assert_eq!(
            split(&gsm(MAX_PAYLOAD + 1), Encoding::Gsm7, SplitMode::Payload, 1),
            Err(TextError::PayloadTooLong {
                len: MAX_PAYLOAD + 1
            })
        );
    }

    #[test]
    fn unencodable_text_is_an_error() {
        let err = split("hi 日", Encoding::Gsm7, SplitMode::Udh8, 1).unwrap_err();
        assert!(matches!(
            err,
            TextError::Unencodable {
                ch: '日',
                position: 3,
                ..
            }
        ));
    }

    #[test]
    fn udh_build_parse_round_trip() {
        for sixteen in [false, true] {
            let udh = build_udh_concat(0xABCD, 3, 2, sixteen);
            let mut msg = udh.clone();
            msg.extend_from_slice(b"text");
            let (parsed, len) = parse_udh(&msg).unwrap();
            assert_eq!(len, udh.len());
            let reference = if sixteen { 0xABCD } else { 0xCD };
            assert_eq!(
                parsed.concat,
                Some(Concat {
                    reference,
                    total: 3,
                    seq: 2,
                    sixteen_bit: sixteen
                })
            );
            assert_eq!(parsed.ports, None);
        }
    }

    #[test]
    fn parse_udh_ports_and_unknown_ieis() {
        // Unknown IEI 0x24 (len 1), 16-bit ports, 8-bit concat.
        let msg = [
            0x0F, 0x24, 0x01, 0x99, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x00, 0x03, 0x42, 0x02,
            0x01, 0x00, b'x',
        ];
        let (udh, len) = parse_udh(&msg).unwrap();
        assert_eq!(len, 16);
        assert_eq!(
            udh.ports,
            Some(Ports {
                dest: 0x0B84,
                src: 0x23F0
            })
        );
        assert_eq!(
            udh.concat,
            Some(Concat {
                reference: 0x42,
                total: 2,
                seq: 1,
                sixteen_bit: false
            })
        );
        // 8-bit ports.
        let (udh, _) = parse_udh(&[0x04, 0x04, 0x02, 0x10, 0x20]).unwrap();
        assert_eq!(
            udh.ports,
            Some(Ports {
                dest: 0x10,
                src: 0x20
            })
        );
    }

    #[test]
    fn parse_udh_lenient_and_malformed() {
        assert_eq!(parse_udh(&[]), None);
        assert_eq!(parse_udh(&[0x05, 0x00, 0x03]), None); // UDHL past the end
        assert_eq!(parse_udh(&[0x00]), Some((Udh::default(), 1)));
        // Invalid seq (0, > total) ignored.
        assert_eq!(
            parse_udh(&[0x05, 0x00, 0x03, 1, 2, 0]).unwrap().0.concat,
            None
        );
        assert_eq!(
            parse_udh(&[0x05, 0x00, 0x03, 1, 2, 3]).unwrap().0.concat,
            None
        );
        // Wrong IE length skipped, later element still parsed.
        let (udh, len) = parse_udh(&[0x09, 0x00, 0x02, 1, 2, 0x00, 0x03, 7, 2, 2, 0xAA]).unwrap();
        assert_eq!(len, 10);
        assert_eq!(udh.concat.map(|c| (c.reference, c.seq)), Some((7, 2)));
        // IE length overruns the header: keep what we have.
        let (udh, len) = parse_udh(&[0x07, 0x00, 0x03, 9, 1, 1, 0x05, 0x09]).unwrap();
        assert_eq!(len, 8);
        assert_eq!(udh.concat.map(|c| c.reference), Some(9));
        // Last occurrence wins.
        let (udh, _) = parse_udh(&[0x0A, 0x00, 0x03, 1, 2, 1, 0x00, 0x03, 5, 3, 3]).unwrap();
        assert_eq!(udh.concat.map(|c| c.reference), Some(5));
    }

    /// Text mixing ASCII, GSM extension characters, GSM-only letters, Latin-1, CJK and emoji.
    fn mixed_text(allow_non_gsm: bool) -> BoxedStrategy<String> {
        let gsm_pieces = prop_oneof![
            "[ -_a-~]{0,30}", // printable ASCII minus the backtick, which GSM lacks
            proptest::sample::select(vec!["^", "{", "}", "\\", "[", "~", "]", "|", "€", "\u{0C}"])
                .prop_map(String::from),
            proptest::sample::select(vec!["Δ", "Ω", "ü", "ß", "\n", "\r", "@"])
                .prop_map(String::from),
        ];
        let piece = if allow_non_gsm {
            prop_oneof![
                4 => gsm_pieces,
                1 => "[\u{4E00}-\u{4FFF}]{1,8}",
                1 => "[\u{1F300}-\u{1F6FF}]{1,4}",
                1 => "[ç\u{00A0}-\u{00FF}]{1,3}",
            ]
            .boxed()
        } else {
            gsm_pieces.boxed()
        };
        proptest::collection::vec(piece, 0..80)
            .prop_map(|v| v.concat())
            .boxed()
    }

    fn check_round_trip(text: &str, enc: Encoding) -> Result<(), TestCaseError> {
        for mode in [
            SplitMode::Udh8,
            SplitMode::Udh16,
            SplitMode::Sar,
            SplitMode::Payload,
        ] {
            let segs = split(text, enc, mode, 0x55AA).unwrap();
            prop_assert!(!segs.is_empty() && segs.len() <= MAX_PARTS);
            let cap = if segs.len() == 1 {
                if mode == SplitMode::Payload {
                    MAX_PAYLOAD
                } else {
                    enc.single_part_capacity()
                }
            } else {
                mode.part_capacity(enc)
            };
            let mut joined = Vec::new();
            let mut per_part = String::new();
            for (i, seg) in segs.iter().enumerate() {
                prop_assert!(seg.payload.len() <= cap);
                // Each part decodes on its own: nothing straddles a boundary.
                per_part.push_str(&decode(enc.data_coding(), &seg.payload));
                joined.extend_from_slice(&seg.payload);
                if segs.len() > 1 && mode != SplitMode::Sar {
                    let (udh, len) = parse_udh(seg.udh.as_deref().unwrap()).unwrap();
                    prop_assert_eq!(len, mode.udh_len());
                    let c = udh.concat.unwrap();
                    prop_assert_eq!((c.total as usize, c.seq as usize), (segs.len(), i + 1));
                }
            }
            prop_assert_eq!(&decode(enc.data_coding(), &joined), text);
            prop_assert_eq!(&per_part, text);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn split_join_round_trip(text in mixed_text(true)) {
            check_round_trip(&text, choose_encoding(&text))?;
            check_round_trip(&text, Encoding::Ucs2)?;
            if latin1::encodable(&text) {
                check_round_trip(&text, Encoding::Latin1)?;
            }
        }

        #[test]
        fn split_join_round_trip_gsm(text in mixed_text(false)) {
            prop_assert_eq!(choose_encoding(&text), Encoding::Gsm7);
            check_round_trip(&text, Encoding::Gsm7)?;
        }

        #[test]
        fn parse_udh_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Some((_, len)) = parse_udh(&bytes) {
                prop_assert!(len <= bytes.len());
            }
        }
    }
}

//! GSM 03.38 (3GPP TS 23.038) default alphabet and its extension table.
//!
//! SMPP `data_coding` 0 carries GSM text *unpacked*: one septet per octet,
//! the SMSC packs it for the air interface. [`encode_unpacked`] and
//! [`decode_unpacked`] work in that form; [`pack`] and [`unpack`] provide the
//! 7-bit packing for callers that need the over-the-air representation
//! (e.g. building a TPDU or `message_payload` for a packed-GSM SMSC).
//!
//! Mapping is strict on encode (a character either has exactly one GSM
//! representation or it is rejected, so `decode(encode(s)) == s` always
//! holds) and lenient on decode (any byte sequence produces *some* text, as
//! a handset would display it).

use super::{Encoding, TextError};

/// The escape septet announcing that the next septet is from the extension table.
pub const ESC: u8 = 0x1B;

/// Default alphabet, indexed by septet.
///
/// Index 0x1B is the escape code and is never decoded through this table;
/// it holds a space because TS 23.038 says an escape that cannot be
/// interpreted is displayed as a space.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// Extension table: (septet following ESC, character).
///
/// 0x0D (CR2) and 0x1B (escape to a further table) are deliberately absent:
/// they have no Unicode character, and decoding handles them as the spec's
/// fallbacks.
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed (page break)
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Marks an entry of [`LATIN1_TO_GSM`] as an extension septet.
const EXT_FLAG: u8 = 0x80;
/// Marks a code point of [`LATIN1_TO_GSM`] that GSM cannot represent.
/// Distinct from every `EXT_FLAG | septet` because no extension septet is 0x7F.
const NONE: u8 = 0xFF;

/// Reverse map for U+0000..=U+00FF, which covers almost all GSM text.
///
/// Built at compile time from the forward tables so the two directions can
/// never disagree.
const LATIN1_TO_GSM: [u8; 256] = build_reverse();

const fn build_reverse() -> [u8; 256] {
    let mut table = [NONE; 256];
    let mut i = 0;
    while i < BASIC.len() {
        let c = BASIC[i] as u32;
        // Skip the escape slot: its placeholder space must map to 0x20.
        if i != ESC as usize && c < 256 {
            table[c as usize] = i as u8;
        }
        i += 1;
    }
    let mut j = 0;
    while j < EXTENSION.len() {
        let (septet, c) = EXTENSION[j];
        if (c as u32) < 256 {
            table[c as usize] = septet | EXT_FLAG;
        }
        j += 1;
    }
    table
}

/// A character's GSM representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Septet {
    /// A single default-alphabet septet.
    Basic(u8),
    /// ESC followed by this extension septet.
    Extended(u8),
}

/// Looks up the GSM representation of `c`.
fn lookup(c: char) -> Option<Septet> {
    let cp = c as u32;
    if cp < 256 {
        return match LATIN1_TO_GSM[cp as usize] {
            NONE => None,
            v if v & EXT_FLAG != 0 => Some(Septet::Extended(v & !EXT_FLAG)),
            v => Some(Septet::Basic(v)),
        };
    }
    // Above Latin-1 only the Greek capitals (0x10..=0x1A) and € exist.
    if let Some(i) = BASIC[0x10..=0x1A].iter().position(|&b| b == c) {
        return Some(Septet::Basic(0x10 + i as u8));
    }
    EXTENSION
        .iter()
        .find(|&&(_, e)| e == c)
        .map(|&(s, _)| Septet::Extended(s))
}

/// Returns the extension-table character for `septet`, if it has one.
fn extension_char(septet: u8) -> Option<char> {
    EXTENSION
        .iter()
        .find(|&&(s, _)| s == septet)
        .map(|&(_, c)| c)
}

/// Reports whether every character of `s` is in the GSM default alphabet or its extension table.
pub fn encodable(s: &str) -> bool {
    s.chars().all(|c| lookup(c).is_some())
}

/// Number of septets `s` occupies in GSM 7-bit (extension characters count 2), or `None` if not encodable.
pub fn septet_count(s: &str) -> Option<usize> {
    s.chars().try_fold(0usize, |n, c| match lookup(c)? {
        Septet::Basic(_) => Some(n + 1),
        Septet::Extended(_) => Some(n + 2),
    })
}

/// Encodes `s` as unpacked septets, one per octet, as SMPP `data_coding` 0 carries them.
///
/// # Errors
///
/// [`TextError::Unencodable`] for the first character outside the default
/// alphabet and its extension table.
pub fn encode_unpacked(s: &str) -> Result<Vec<u8>, TextError> {
    // Most text is all single septets; reserving the char count avoids regrowth.
    let mut out = Vec::with_capacity(s.len());
    for (position, c) in s.chars().enumerate() {
        match lookup(c) {
            Some(Septet::Basic(b)) => out.push(b),
            Some(Septet::Extended(b)) => out.extend_from_slice(&[ESC, b]),
            None => {
                return Err(TextError::Unencodable {
                    ch: c,
                    position,
                    encoding: Encoding::Gsm7,
                })
            }
        }
    }
    Ok(out)
}

/// Decodes unpacked septets leniently: high bits are masked, unknown escapes fall back per TS 23.038.
///
/// * `ESC x` with `x` not in the extension table decodes as the default
///   alphabet's `x` (TS 23.038 §6.2.1.1 display rule).
/// * `ESC ESC` (escape to a not-yet-defined further table) and a trailing
///   lone `ESC` decode as a space.
pub fn decode_unpacked(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    let mut iter = b.iter().map(|&x| x & 0x7F);
    while let Some(septet) = iter.next() {
        if septet != ESC {
            out.push(BASIC[usize::from(septet)]);
            continue;
        }
        match iter.next() {
            None | Some(ESC) => out.push(' '),
            Some(next) => out.push(extension_char(next).unwrap_or(BASIC[usize::from(next)])),
        }
    }
    out
}

/// Packs septets into GSM 7-bit form, starting after `fill_bits` zero bits.
///
/// `fill_bits` aligns the text to a septet boundary when it follows a UDH of
/// `n` octets: `fill_bits = (7 - (n * 8) % 7) % 7`. The returned octets do
/// not include the UDH itself. Septet values above 0x7F are masked.
///
/// When the last octet has 7 spare bits a receiver cannot tell padding from an
/// `@`; callers that do not transmit an explicit septet count should append a
/// CR in that case (TS 23.038 §6.1.2.3.1).
pub fn pack(septets: &[u8], fill_bits: usize) -> Vec<u8> {
    let total_bits = fill_bits + 7 * septets.len();
    let mut out = vec![0u8; total_bits.div_ceil(8)];
    for (i, &s) in septets.iter().enumerate() {
        let bit = fill_bits + 7 * i;
        let (byte, shift) = (bit / 8, bit % 8);
        let v = u16::from(s & 0x7F) << shift;
        out[byte] |= v as u8;
        // A septet at bit offset >= 2 overflows into the next octet; that
        // octet exists because `total_bits` counted it.
        if shift > 1 {
            out[byte + 1] |= (v >> 8) as u8;
        }
    }
    out
}

/// Unpacks `septet_count` septets from GSM 7-bit data whose first `fill_bits` bits are padding.
///
/// The count is explicit because trailing zero bits are otherwise
/// indistinguishable from `@`. Stops early (returning fewer septets) if
/// `packed` is too short.
pub fn unpack(packed: &[u8], septet_count: usize, fill_bits: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(septet_count);
    for i in 0..septet_count {
        let bit = fill_bits + 7 * i;
        let (byte, shift) = (bit / 8, bit % 8);
        let Some(&lo) = packed.get(byte) else { break };
        let hi = if shift > 1 {
            match packed.get(byte + 1) {
                Some(&h) => h,
                None => break,
            }
        } else {
            0
        };
        let v = (u16::from(lo) | u16::from(hi) << 8) >> shift;
        out.push((v & 0x7F) as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXT_CHARS: [char; 10] = ['^', '{', '}', '\\', '[', '~', ']', '|', '€', '\u{0C}'];

    #[test]
    fn every_basic_septet_round_trips() {
        for septet in 0u8..128 {
            if septet == ESC {
                continue;
            }
            let c = BASIC[usize::from(septet)];
            let s = c.to_string();
            assert_eq!(encode_unpacked(&s).unwrap(), vec![septet], "{c:?}");
            assert_eq!(decode_unpacked(&[septet]), s);
        }
    }

    #[test]
    fn every_extension_char_round_trips() {
        for c in EXT_CHARS {
            let s = c.to_string();
            let enc = encode_unpacked(&s).unwrap();
            assert_eq!(enc.len(), 2, "{c:?}");
            assert_eq!(enc[0], ESC);
            assert_eq!(decode_unpacked(&enc), s);
            assert_eq!(septet_count(&s), Some(2));
        }
        assert_eq!(encode_unpacked("€").unwrap(), vec![0x1B, 0x65]);
        assert_eq!(encode_unpacked("\u{0C}").unwrap(), vec![0x1B, 0x0A]);
    }

    #[test]
    fn septet_counts() {
        assert_eq!(septet_count(""), Some(0));
        assert_eq!(septet_count("hello"), Some(5));
        assert_eq!(septet_count("a{b}€"), Some(8));
        assert_eq!(septet_count("ΔΩΣ@£"), Some(5));
        assert_eq!(septet_count("hé ü"), Some(4));
        assert_eq!(septet_count("naïve"), None); // ï is not GSM
        assert_eq!(septet_count("日本"), None);
    }

    #[test]
    fn encodable_rejects_lookalikes() {
        assert!(encodable("Hello, World! @£$¥"));
        assert!(!encodable("`")); // backtick is not in GSM
        assert!(!encodable("\u{00A0}")); // NBSP must not alias the escape slot
        assert!(!encodable("\t"));
        assert!(!encodable("ç")); // only capital Ç exists
    }

    #[test]
    fn encode_error_reports_char_and_position() {
        let err = encode_unpacked("ab€c😀").unwrap_err();
        match err {
            TextError::Unencodable { ch, position, .. } => {
                assert_eq!(ch, '😀');
                assert_eq!(position, 4);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn lenient_decode() {
        // Unknown escape: base table character.
        assert_eq!(decode_unpacked(&[ESC, b'A']), "A");
        assert_eq!(decode_unpacked(&[ESC, 0x00]), "@");
        // ESC ESC and trailing ESC: space.
        assert_eq!(decode_unpacked(&[ESC, ESC, b'x']), " x");
        assert_eq!(decode_unpacked(&[b'a', ESC]), "a ");
        // High bit masked.
        assert_eq!(decode_unpacked(&[0x80 | b'a', 0x80]), "a@");
        assert_eq!(decode_unpacked(&[ESC | 0x80, 0x65 | 0x80]), "€");
    }

    #[test]
    fn hellohello_known_vector() {
        let septets = encode_unpacked("hellohello").unwrap();
        let packed = pack(&septets, 0);
        assert_eq!(
            packed,
            [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]
        );
        assert_eq!(unpack(&packed, 10, 0), septets);
    }

    /// Independent bit-by-bit reference packer.
    fn reference_pack(septets: &[u8], fill: usize) -> Vec<u8> {
        let mut bits = vec![false; fill];
        for &s in septets {
            bits.extend((0..7).map(|i| s >> i & 1 == 1));
        }
        bits.chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |a, (i, &b)| a | u8::from(b) << i)
            })
            .collect()
    }

    #[test]
    fn pack_with_fill_bits() {
        // After a 6-octet UDH one fill bit aligns to a septet boundary.
        let septets = encode_unpacked("hellohello").unwrap();
        let packed = pack(&septets, 1);
        assert_eq!(packed, reference_pack(&septets, 1));
        assert_eq!(packed[0] & 1, 0, "fill bit must be zero");
        // Known vector: "hellohello" shifted left by one bit.
        assert_eq!(
            packed,
            [0xD0, 0x65, 0x36, 0xFB, 0x8D, 0x2E, 0xB3, 0xD9, 0x6F]
        );
        assert_eq!(unpack(&packed, 10, 1), septets);
        for fill in 0..7 {
            let p = pack(&septets, fill);
            assert_eq!(p, reference_pack(&septets, fill), "fill {fill}");
            assert_eq!(unpack(&p, septets.len(), fill), septets, "fill {fill}");
        }
    }

    #[test]
    fn unpack_stops_on_short_input() {
        assert_eq!(unpack(&[0xE8], 5, 0), vec![0x68]);
        assert!(unpack(&[], 3, 0).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn pack_unpack_round_trip(septets in proptest::collection::vec(0u8..128, 0..200), fill in 0usize..7) {
            let packed = pack(&septets, fill);
            proptest::prop_assert_eq!(packed.len(), (fill + 7 * septets.len()).div_ceil(8));
            proptest::prop_assert_eq!(&packed, &reference_pack(&septets, fill));
            proptest::prop_assert_eq!(unpack(&packed, septets.len(), fill), septets);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = decode_unpacked(&bytes);
        }
    }
}

//! UCS-2 as actually used on SMPP links: UTF-16 big-endian.
//!
//! Strictly, `data_coding` 0x08 is UCS-2, which cannot represent code points
//! above U+FFFF. Every current handset and SMSC treats it as UTF-16BE, so
//! emoji travel as surrogate pairs; we do the same.

/// Encodes `s` as UTF-16BE (supplementary characters become surrogate pairs).
pub fn encode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 2);
    for unit in s.encode_utf16() {
        out.extend_from_slice(&unit.to_be_bytes());
    }
    out
}

/// Number of UTF-16 code units in `s` (what the 70/67/66 per-part limits count).
pub fn unit_count(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Decodes UTF-16BE leniently: lone surrogates become U+FFFD, an odd trailing byte is ignored.
pub fn decode(b: &[u8]) -> String {
    let units = b
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Reports whether the UTF-16BE unit ending at `bytes[..end]` is a high surrogate, i.e. `end` would cut a pair.
pub(crate) fn ends_in_high_surrogate(bytes: &[u8], end: usize) -> bool {
    end >= 2 && matches!(bytes[end - 2], 0xD8..=0xDB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bmp_round_trip() {
        let s = "Hello Привет 日本語 Ω€";
        let b = encode(s);
        assert_eq!(&b[..4], &[0x00, b'H', 0x00, b'e']);
        assert_eq!(decode(&b), s);
        assert_eq!(unit_count(s), s.chars().count());
    }

    #[test]
    fn emoji_surrogate_pair() {
        let b = encode("😀");
        assert_eq!(b, [0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(decode(&b), "😀");
        assert_eq!(unit_count("😀"), 2);
        assert!(ends_in_high_surrogate(&b, 2));
        assert!(!ends_in_high_surrogate(&b, 4));
    }

    #[test]
    fn lenient_decode() {
        // Lone high surrogate followed by a BMP char.
        assert_eq!(decode(&[0xD8, 0x3D, 0x00, b'a']), "\u{FFFD}a");
        // Lone low surrogate.
        assert_eq!(decode(&[0xDE, 0x00]), "\u{FFFD}");
        // High surrogate at the very end.
        assert_eq!(decode(&[0x00, b'a', 0xD8, 0x3D]), "a\u{FFFD}");
        // Odd trailing byte ignored.
        assert_eq!(decode(&[0x00, b'a', 0x00]), "a");
        assert_eq!(decode(&[]), "");
    }
}

//! SMS text encodings: GSM 7-bit, Latin-1 and UCS-2, long-message splitting
//! and reassembly.
//!
//! Everything here is pure: bytes and strings in, bytes and strings out, with
//! time passed in explicitly where it matters ([`reassembly`]).

use std::fmt;

pub mod gsm7;
pub mod latin1;
pub mod reassembly;
pub mod split;
pub mod ucs2;

pub use reassembly::{assemble, ExpireReason, Expired, PartKey, Reassembled, Reassembler};
pub use split::{
    build_udh_concat, parse_udh, split, Concat, Ports, SarInfo, Segment, SplitMode, Udh,
};

/// A text encoding we can produce for `submit_sm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GSM 03.38 default alphabet, sent unpacked (one septet per octet).
    Gsm7,
    /// ISO-8859-1.
    Latin1,
    /// UCS-2, in practice UTF-16BE.
    Ucs2,
}

impl Encoding {
    /// The SMPP 3.4 `data_coding` value announcing this encoding.
    pub fn data_coding(self) -> u8 {
        match self {
            Encoding::Gsm7 => 0x00,
            Encoding::Latin1 => 0x03,
            Encoding::Ucs2 => 0x08,
        }
    }

    /// Encodes `s` in this encoding (GSM 7-bit unpacked).
    ///
    /// # Errors
    ///
    /// [`TextError::Unencodable`] if a character does not fit (never for UCS-2).
    pub fn encode(self, s: &str) -> Result<Vec<u8>, TextError> {
        match self {
            Encoding::Gsm7 => gsm7::encode_unpacked(s),
            Encoding::Latin1 => latin1::encode(s),
            Encoding::Ucs2 => Ok(ucs2::encode(s)),
        }
    }

    /// Decodes bytes produced by [`Encoding::encode`] (leniently).
    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Gsm7 => gsm7::decode_unpacked(bytes),
            Encoding::Latin1 => latin1::decode(bytes),
            Encoding::Ucs2 => ucs2::decode(bytes),
        }
    }

    /// Septets (GSM 7-bit) or octets a single, unsplit short message may carry.
    pub fn single_part_capacity(self) -> usize {
        match self {
            Encoding::Gsm7 => 160,
            Encoding::Latin1 | Encoding::Ucs2 => 140,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Gsm7 => "GSM 7-bit",
            Encoding::Latin1 => "Latin-1",
            Encoding::Ucs2 => "UCS-2",
        })
    }
}

/// Errors from encoding or splitting text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// A character has no representation in the requested encoding.
    #[error("character {ch:?} (U+{code:04X}) at position {position} cannot be encoded in {encoding}", code = u32::from(*.ch))]
    Unencodable {
        /// The offending character.
        ch: char,
        /// Its index in the text, counted in characters (not bytes).
        position: usize,
        /// The encoding that was asked for.
        encoding: Encoding,
    },
    /// Splitting would need more than 255 parts (the concatenation counters are one octet).
    #[error("text needs {parts} parts, more than the maximum of 255")]
    TooManyParts {
        /// Parts that would have been needed (at least).
        parts: usize,
    },
    /// The encoded text exceeds what a `message_payload` TLV can carry.
    #[error("encoded text is {len} octets, more than the message_payload maximum of 65535")]
    PayloadTooLong {
        /// Encoded length in octets.
        len: usize,
    },
}

/// Picks GSM 7-bit when every character fits, else UCS-2.
///
/// Latin-1 is never chosen automatically: handset support for
/// `data_coding` 3 is patchy, so it must be asked for explicitly (see
/// [`choose_encoding_with_latin1`]).
pub fn choose_encoding(s: &str) -> Encoding {
    if gsm7::encodable(s) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// Like [`choose_encoding`] but prefers Latin-1 over UCS-2 when the text fits it.
pub fn choose_encoding_with_latin1(s: &str) -> Encoding {
    if gsm7::encodable(s) {
        Encoding::Gsm7
    } else if latin1::encodable(s) {
        Encoding::Latin1
    } else {
        Encoding::Ucs2
    }
}

/// How the bytes of a message with a given `data_coding` are to be interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Charset {
    /// GSM 7-bit default alphabet, unpacked.
    Gsm7,
    /// IA5 / ASCII (SMPP `data_coding` 0x01).
    Ascii,
    /// ISO-8859-1.
    Latin1,
    /// UCS-2 / UTF-16BE.
    Ucs2,
    /// 8-bit data, compressed data or a national charset we do not implement.
    Binary,
}

/// Classifies an SMPP 3.4 `data_coding` octet.
///
/// 0x00..=0x0F use the SMPP 3.4 table (§5.2.19). Higher values are GSM
/// TS 23.038 data coding schemes, of which only the alphabet bits matter here.
/// Reserved codings are treated as the GSM default alphabet, as TS 23.038 §4
/// instructs receivers to do.
pub fn charset(data_coding: u8) -> Charset {
    match data_coding {
        0x00 => Charset::Gsm7,
        0x01 => Charset::Ascii,
        0x03 => Charset::Latin1,
        0x08 => Charset::Ucs2,
        // 0x02/0x04 octet-unspecified binary, and national charsets
        // (JIS, Cyrillic, Hebrew, pictogram, ISO-2022-JP, Kanji, KS C 5601)
        // we have no tables for.
        0x02 | 0x04..=0x07 | 0x09..=0x0F => Charset::Binary,
        // General data coding (00xx) and automatic deletion (01xx) groups:
        // bit 5 = compressed, bits 3-2 = alphabet.
        0x10..=0x7F => {
            if data_coding & 0x20 != 0 {
                // TS 23.042 compression is not implemented.
                return Charset::Binary;
            }
            match (data_coding >> 2) & 0x03 {
                0b01 => Charset::Binary,
                0b10 => Charset::Ucs2,
                _ => Charset::Gsm7, // 0b00 default alphabet, 0b11 reserved
            }
        }
        // 1000..1011 reserved groups.
        0x80..=0xBF => Charset::Gsm7,
        // Message waiting indication: discard / store (GSM 7-bit), store (UCS-2).
        0xC0..=0xDF => Charset::Gsm7,
        0xE0..=0xEF => Charset::Ucs2,
        // Data coding / message class: bit 2 selects 8-bit data.
        0xF0..=0xFF => {
            if data_coding & 0x04 != 0 {
                Charset::Binary
            } else {
                Charset::Gsm7
            }
        }
    }
}

/// Decodes message bytes according to `data_coding`, never failing (undecodable data is replaced lossily).
///
/// GSM 7-bit is expected unpacked, as SMPP carries it. Binary and
/// unsupported charsets are decoded as lossy UTF-8, which is right for the
/// common case of a peer sending UTF-8 under "octet unspecified".
pub fn decode(data_coding: u8, bytes: &[u8]) -> String {
    match charset(data_coding) {
        Charset::Gsm7 => gsm7::decode_unpacked(bytes),
        Charset::Ascii => bytes
            .iter()
            .map(|&b| {
                if b.is_ascii() {
                    char::from(b)
                } else {
                    char::REPLACEMENT_CHARACTER
                }
            })
            .collect(),
        Charset::Latin1 => latin1::decode(bytes),
        Charset::Ucs2 => ucs2::decode(bytes),
        Charset::Binary => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_coding_values() {
        assert_eq!(Encoding::Gsm7.data_coding(), 0x00);
        assert_eq!(Encoding::Latin1.data_coding(), 0x03);
        assert_eq!(Encoding::Ucs2.data_coding(), 0x08);
    }

    #[test]
    fn choose() {
        assert_eq!(choose_encoding("Hello {world} €5"), Encoding::Gsm7);
        assert_eq!(choose_encoding("naïve"), Encoding::Ucs2);
        assert_eq!(choose_encoding("日本"), Encoding::Ucs2);
        assert_eq!(choose_encoding(""), Encoding::Gsm7);
        assert_eq!(choose_encoding_with_latin1("naïve"), Encoding::Latin1);
        assert_eq!(choose_encoding_with_latin1("naïve €"), Encoding::Ucs2);
        assert_eq!(choose_encoding_with_latin1("plain"), Encoding::Gsm7);
    }

    #[test]
    fn charset_classification() {
        assert_eq!(charset(0x00), Charset::Gsm7);
        assert_eq!(charset(0x01), Charset::Ascii);
        assert_eq!(charset(0x02), Charset::Binary);
        assert_eq!(charset(0x03), Charset::Latin1);
        assert_eq!(charset(0x04), Charset::Binary);
        assert_eq!(charset(0x08), Charset::Ucs2);
        // General data coding with message class.
        assert_eq!(charset(0x10), Charset::Gsm7);
        assert_eq!(charset(0x14), Charset::Binary);
        assert_eq!(charset(0x18), Charset::Ucs2);
        assert_eq!(charset(0x19), Charset::Ucs2);
        assert_eq!(charset(0x1C), Charset::Gsm7); // reserved alphabet
        assert_eq!(charset(0x28), Charset::Binary); // compressed
                                                    // Automatic deletion group.
        assert_eq!(charset(0x48), Charset::Ucs2);
        // Message waiting groups.
        assert_eq!(charset(0xC8), Charset::Gsm7);
        assert_eq!(charset(0xD0), Charset::Gsm7);
        assert_eq!(charset(0xE8), Charset::Ucs2);
        // Data coding / message class group.
        assert_eq!(charset(0xF0), Charset::Gsm7);
        assert_eq!(charset(0xF1), Charset::Gsm7);
        assert_eq!(charset(0xF4), Charset::Binary);
        assert_eq!(charset(0xF6), Charset::Binary);
    }

    #[test]
    fn decode_by_data_coding() {
        assert_eq!(decode(0x00, &[0x1B, 0x65, b'5']), "€5");
        assert_eq!(decode(0xF0, b"hi"), "hi");
        assert_eq!(decode(0x01, &[b'h', b'i', 0xE9]), "hi\u{FFFD}");
        assert_eq!(decode(0x03, &[b'h', 0xE9]), "hé");
        assert_eq!(decode(0x08, &[0x00, b'h', 0xD8, 0x3D, 0xDE, 0x00]), "h😀");
        assert_eq!(decode(0x18, &[0x00, b'h']), "h");
        assert_eq!(decode(0x04, "hé".as_bytes()), "hé");
        assert_eq!(decode(0x02, &[0xFF, b'a']), "\u{FFFD}a");
    }

    #[test]
    fn error_messages_name_char_and_position() {
        let err = Encoding::Gsm7.encode("abc日").unwrap_err();
        assert_eq!(
            err.to_string(),
            "character '日' (U+65E5) at position 3 cannot be encoded in GSM 7-bit"
        );
    }
}

//! G.711 μ-law (PCMU, payload type 0) and A-law (PCMA, payload type 8),
//! our own tables after ITU-T G.711 (the segment/quantisation layout of
//! the public-domain Sun reference code). Encoding truncates toward zero
//! within a segment, as the reference does, so our bytes equal every other
//! implementation's (the tests compare all 65 536 inputs).

/// One 20 ms frame at 8 kHz: 160 samples, one byte each.
pub const FRAME_SAMPLES: usize = 160;

/// The two G.711 laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// μ-law (North America, Japan): RTP payload type 0, "PCMU".
    Ulaw,
    /// A-law (Europe, China, most of the world): RTP payload type 8, "PCMA".
    Alaw,
}

impl Law {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Ulaw => 0,
            Law::Alaw => 8,
        }
    }

    /// The SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Law::Ulaw => "PCMU",
            Law::Alaw => "PCMA",
        }
    }

    /// The byte of a zero sample (what silence is sent as).
    pub fn silence(self) -> u8 {
        match self {
            Law::Ulaw => 0xFF,
            Law::Alaw => 0xD5,
        }
    }

    /// Encodes one 16-bit linear sample.
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Law::Ulaw => ulaw_encode(sample),
            Law::Alaw => alaw_encode(sample),
        }
    }

    /// Decodes one byte to a 16-bit linear sample.
    pub fn decode(self, byte: u8) -> i16 {
        match self {
            Law::Ulaw => ULAW_DECODE[byte as usize],
            Law::Alaw => ALAW_DECODE[byte as usize],
        }
    }

    /// Encodes samples into `out` (one byte per sample).
    pub fn encode_into(self, samples: &[i16], out: &mut Vec<u8>) {
        out.extend(samples.iter().map(|&s| self.encode(s)));
    }
}

/// μ-law segment ends (of the 14-bit magnitude plus bias).
const ULAW_SEG_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
/// A-law segment ends (of the 13-bit magnitude).
const ALAW_SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 8159;

fn segment(value: i32, ends: &[i32; 8]) -> usize {
    ends.iter().position(|&end| value <= end).unwrap_or(8)
}

fn ulaw_encode(sample: i16) -> u8 {
    let mut v = i32::from(sample) >> 2;
    let mask: i32 = if v < 0 {
        v = -v;
        0x7F
    } else {
        0xFF
    };
    v = v.min(ULAW_CLIP) + (ULAW_BIAS >> 2);
    let seg = segment(v, &ULAW_SEG_END);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let u = ((seg as i32) << 4) | ((v >> (seg + 1)) & 0x0F);
    (u ^ mask) as u8
}

fn alaw_encode(sample: i16) -> u8 {
    let mut v = i32::from(sample) >> 3;
    let mask: i32 = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = segment(v, &ALAW_SEG_END);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let mut a = (seg as i32) << 4;
    a |= if seg < 2 {
        (v >> 1) & 0x0F
    } else {
        (v >> seg) & 0x0F
    };
    (a ^ mask) as u8
}

const fn ulaw_decode(byte: u8) -> i16 {
    let u = !byte as i32;
    let mut t = ((u & 0x0F) << 3) + ULAW_BIAS;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

const fn alaw_decode(byte: u8) -> i16 {
    let a = (byte ^ 0x55) as i32;
    let mut t = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_decode(i as u8)
        } else {
            ulaw_decode(i as u8)
        };
        i += 1;
    }
    t
}

static ULAW_DECODE: [i16; 256] = table(false);
static ALAW_DECODE: [i16; 256] = table(true);

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// Every 16-bit input, encoded, hashed: the digests are those of
    /// CPython's `audioop.lin2ulaw` / `lin2alaw` (an independent
    /// implementation) over the same 65 536 samples, -32768 first.
    #[test]
    fn encoding_matches_an_independent_implementation_for_every_sample() {
        for (law, want) in [
            (
                Law::Ulaw,
                "81d633c9e6972a18c74a58720b96cb8ca0bdd096d4060b646dd708c3b846019a",
            ),
            (
                Law::Alaw,
                "38488f6fd710f4686360edc4d38639f96c491595ef93f8eb8d62d5e07ca6ce7b",
            ),
        ] {
            let bytes: Vec<u8> = (i16::MIN..=i16::MAX).map(|s| law.encode(s)).collect();
            let got: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(got, want, "{law:?}");
        }
    }

    #[test]
    fn decoding_matches_an_independent_implementation() {
        // From audioop.ulaw2lin / alaw2lin, spot checks across segments.
        let ulaw = [
            (0x00, -32124),
            (0x0F, -16764),
            (0x10, -15996),
            (0x7E, -8),
            (0x7F, 0),
            (0x80, 32124),
            (0xF0, 120),
            (0xFF, 0),
        ];
        for (b, v) in ulaw {
            assert_eq!(Law::Ulaw.decode(b), v, "μ-law {b:#04x}");
        }
        let alaw = [
            (0x00, -5504),
            (0x2A, -32256),
            (0x55, -8),
            (0x80, 5504),
            (0xAA, 32256),
            (0xD5, 8),
            (0xFF, 848),
        ];
        for (b, v) in alaw {
            assert_eq!(Law::Alaw.decode(b), v, "A-law {b:#04x}");
        }
    }

    #[test]
    fn decoding_what_was_encoded_stays_within_one_quantisation_step() {
        for law in [Law::Ulaw, Law::Alaw] {
            for s in (i16::MIN..=i16::MAX).step_by(7) {
                let back = i32::from(law.decode(law.encode(s)));
                let s = i32::from(s);
                // The step doubles per segment; the largest is 1024 (μ) / 1024 (A).
                let step = (s.abs() / 16).max(16);
                assert!((back - s).abs() <= step, "{law:?}: {s} -> {back}");
            }
            // Encoding a decoded byte gives the byte back (the tables agree).
            for b in 0..=255u8 {
                let again = law.encode(law.decode(b));
                assert_eq!(
                    law.decode(again),
                    law.decode(b),
                    "{law:?} {b:#04x} -> {again:#04x}"
                );
            }
        }
    }

    #[test]
    fn silence_is_the_zero_sample() {
        for law in [Law::Ulaw, Law::Alaw] {
            assert_eq!(law.encode(0), law.silence());
            assert!(law.decode(law.silence()).abs() <= 8);
        }
        assert_eq!((Law::Ulaw.payload_type(), Law::Alaw.payload_type()), (0, 8));
    }
}

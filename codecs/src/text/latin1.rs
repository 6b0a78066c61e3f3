//! ISO-8859-1 (SMPP `data_coding` 0x03).

use super::{Encoding, TextError};

/// Reports whether every character of `s` is at or below U+00FF.
pub fn encodable(s: &str) -> bool {
    s.chars().all(|c| u32::from(c) <= 0xFF)
}

/// Encodes `s` as ISO-8859-1, failing on the first character above U+00FF.
///
/// # Errors
///
/// [`TextError::Unencodable`] for the first character above U+00FF.
pub fn encode(s: &str) -> Result<Vec<u8>, TextError> {
    s.chars()
        .enumerate()
        .map(|(position, c)| {
            u8::try_from(c).map_err(|_| TextError::Unencodable {
                ch: c,
                position,
                encoding: Encoding::Latin1,
            })
        })
        .collect()
}

/// Decodes ISO-8859-1; every byte maps to the code point of the same value, so this never fails.
pub fn decode(b: &[u8]) -> String {
    b.iter().map(|&x| char::from(x)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_bytes_round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        let s = decode(&bytes);
        assert!(encodable(&s));
        assert_eq!(encode(&s).unwrap(), bytes);
    }

    #[test]
    fn rejects_above_ff() {
        assert!(!encodable("a€"));
        let err = encode("ÿa€").unwrap_err();
        assert!(matches!(
            err,
            TextError::Unencodable {
                ch: '€',
                position: 2,
                encoding: Encoding::Latin1
            }
        ));
        assert_eq!(
            err.to_string(),
            "character '€' (U+20AC) at position 2 cannot be encoded in Latin-1"
        );
    }
}

//! A symmetric key: AES-128, -192 or -256 key bytes, zeroized on drop and
//! never shown (its `Debug` prints its length and check value only).

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Why key material was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 16, 24 or 32 bytes.
    #[error("a key is 16, 24 or 32 bytes (AES-128/192/256), not {0}")]
    Length(usize),
    /// Not hexadecimal.
    #[error("key material must be hexadecimal: {0}")]
    Hex(String),
    /// Two keys that must be the same size are not.
    #[error("key sizes differ ({0} and {1} bytes)")]
    SizeMismatch(usize, usize),
}

/// A symmetric AES key.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    /// From key bytes (16, 24 or 32).
    pub fn new(bytes: &[u8]) -> Result<Self, KeyError> {
        match bytes.len() {
            16 | 24 | 32 => Ok(SecretKey(bytes.to_vec())),
            n => Err(KeyError::Length(n)),
        }
    }

    /// From hex (case and spaces aside), as a custodian types it.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let mut clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = hex::decode(&clean).map_err(|e| KeyError::Hex(e.to_string()));
        clean.zeroize();
        let mut bytes = bytes?;
        let key = SecretKey::new(&bytes);
        bytes.zeroize();
        key
    }

    /// The key bytes (for a cipher; never log them).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true (a key has 16, 24 or 32 bytes); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Upper-case hex of the key (for tests and wrapping checks; never log it).
    pub fn to_hex(&self) -> String {
        hex::encode_upper(&self.0)
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SecretKey(AES-{}, KCV {})",
            self.0.len() * 8,
            crate::kcv::kcv_hex(self)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_aes_sized_and_never_printed() {
        let k = SecretKey::from_hex("2b7e1516 28aed2a6 abf71588 09cf4f3c").unwrap();
        assert_eq!(k.len(), 16);
        let shown = format!("{k:?}");
        assert!(!shown.to_lowercase().contains("2b7e"), "{shown}");
        assert!(shown.starts_with("SecretKey(AES-128, KCV "), "{shown}");
        assert_eq!(SecretKey::new(&[0; 15]), Err(KeyError::Length(15)));
        assert!(matches!(SecretKey::from_hex("zz"), Err(KeyError::Hex(_))));
    }
}

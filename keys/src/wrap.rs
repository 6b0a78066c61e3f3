//! AES key wrap (RFC 3394): how a key travels under another (the initial
//! key under the zone key). Unwrapping checks the RFC's integrity value,
//! so a wrapped key that was changed, or wrapped under another KEK, is
//! refused rather than turned into a wrong key.

use crate::{KeyError, SecretKey};
use aes_kw::{KekAes128, KekAes192, KekAes256};

/// Why unwrapping failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WrapError {
    /// The integrity check failed: the wrong KEK, or the data was altered.
    #[error(
        "the wrapped key does not unwrap under this key (wrong key-encryption key, or altered)"
    )]
    Integrity,
    /// Not a wrapped AES key (24, 32 or 40 bytes).
    #[error("a wrapped AES key is 24, 32 or 40 bytes, not {0}")]
    Length(usize),
    /// Key material.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// `key` wrapped under `kek` (8 bytes longer than the key).
pub fn wrap(kek: &SecretKey, key: &SecretKey) -> Vec<u8> {
    let mut out = vec![0u8; key.len() + 8];
    let r = match kek.len() {
        16 => KekAes128::try_from(kek.expose())
            .expect("16 bytes")
            .wrap(key.expose(), &mut out),
        24 => KekAes192::try_from(kek.expose())
            .expect("24 bytes")
            .wrap(key.expose(), &mut out),
        _ => KekAes256::try_from(kek.expose())
            .expect("32 bytes")
            .wrap(key.expose(), &mut out),
    };
    r.expect("an AES key is a whole number of 64-bit blocks");
    out
}

/// The key `wrapped` holds under `kek`.
pub fn unwrap(kek: &SecretKey, wrapped: &[u8]) -> Result<SecretKey, WrapError> {
    if !matches!(wrapped.len(), 24 | 32 | 40) {
        return Err(WrapError::Length(wrapped.len()));
    }
    let mut out = zeroize::Zeroizing::new(vec![0u8; wrapped.len() - 8]);
    let r = match kek.len() {
        16 => KekAes128::try_from(kek.expose())
            .expect("16 bytes")
            .unwrap(wrapped, &mut out),
        24 => KekAes192::try_from(kek.expose())
            .expect("24 bytes")
            .unwrap(wrapped, &mut out),
        _ => KekAes256::try_from(kek.expose())
            .expect("32 bytes")
            .unwrap(wrapped, &mut out),
    };
    r.map_err(|_| WrapError::Integrity)?;
    Ok(SecretKey::new(&out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(h: &str) -> SecretKey {
        SecretKey::from_hex(h).unwrap()
    }

    /// RFC 3394 §4.1, 4.2, 4.3, 4.4, 4.5 and 4.6.
    #[test]
    fn wrap_and_unwrap_match_rfc_3394() {
        let kek128 = key("000102030405060708090A0B0C0D0E0F");
        let kek192 = key("000102030405060708090A0B0C0D0E0F1011121314151617");
        let kek256 = key("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
        let k128 = key("00112233445566778899AABBCCDDEEFF");
        let k192 = key("00112233445566778899AABBCCDDEEFF0001020304050607");
        let k256 = key("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F");
        for (kek, k, want) in [
            (
                &kek128,
                &k128,
                "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5",
            ),
            (
                &kek192,
                &k128,
                "96778B25AE6CA435F92B5B97C050AED2468AB8A17AD84E5D",
            ),
            (
                &kek256,
                &k128,
                "64E8C3F9CE0F5BA263E9777905818A2A93C8191E7D6E8AE7",
            ),
            (
                &kek192,
                &k192,
                "031D33264E15D33268F24EC260743EDCE1C6C7DDEE725A936BA814915C6762D2",
            ),
            (
                &kek256,
                &k192,
                "A8F9BC1612C68B3FF6E6F4FBE30E71E4769C8B80A32CB8958CD5D17D6B254DA1",
            ),
            (
                &kek256,
                &k256,
                "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21",
            ),
        ] {
            let w = wrap(kek, k);
            assert_eq!(hex::encode_upper(&w), want);
            assert_eq!(&unwrap(kek, &w).unwrap(), k);
        }
    }

    #[test]
    fn an_altered_or_misdirected_wrap_is_refused() {
        let kek = key("000102030405060708090A0B0C0D0E0F");
        let mut w = wrap(&kek, &key("00112233445566778899AABBCCDDEEFF"));
        let other = key("0F0E0D0C0B0A09080706050403020100");
        assert_eq!(unwrap(&other, &w), Err(WrapError::Integrity));
        w[10] ^= 1;
        assert_eq!(unwrap(&kek, &w), Err(WrapError::Integrity));
        assert_eq!(unwrap(&kek, &w[..20]), Err(WrapError::Length(20)));
    }
}

//! AES-GCM envelopes: a message sealed under a key with associated data
//! that binds it to its place (a registration to its id, a transaction
//! message to its KSN, registration and sequence number). The nonce is
//! random per envelope and travels in front: `nonce (12) ‖ ciphertext ‖ tag (16)`.

use crate::SecretKey;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use rand::RngCore;

/// Bytes of the nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of the tag.
pub const TAG_LEN: usize = 16;

/// Why an envelope did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Shorter than a nonce and a tag.
    #[error("an envelope is at least 28 bytes (nonce and tag), not {0}")]
    Short(usize),
    /// The tag does not verify: another key, other associated data, or
    /// altered bytes.
    #[error(
        "the envelope does not open: altered, or sealed under another key or for another place"
    )]
    Forged,
    /// The key is AES-192, which GCM here does not take.
    #[error("AES-GCM envelopes take AES-128 or AES-256 keys")]
    KeySize,
}

/// Seals `plain` under `key` with associated data `aad`, with a fresh
/// random nonce from `rng`.
pub fn seal(
    key: &SecretKey,
    aad: &[u8],
    plain: &[u8],
    rng: &mut impl RngCore,
) -> Result<Vec<u8>, EnvelopeError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    seal_with_nonce(key, aad, plain, &nonce)
}

/// [`seal`] with a given nonce (for test vectors; a nonce must never be
/// used twice under one key).
pub fn seal_with_nonce(
    key: &SecretKey,
    aad: &[u8],
    plain: &[u8],
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>, EnvelopeError> {
    let payload = Payload { msg: plain, aad };
    let n = Nonce::from_slice(nonce);
    let ct = match key.len() {
        16 => Aes128Gcm::new_from_slice(key.expose())
            .expect("16 bytes")
            .encrypt(n, payload),
        32 => Aes256Gcm::new_from_slice(key.expose())
            .expect("32 bytes")
            .encrypt(n, payload),
        _ => return Err(EnvelopeError::KeySize),
    }
    .map_err(|_| EnvelopeError::Forged)?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens an envelope sealed by [`seal`] under `key` for `aad`.
pub fn open(key: &SecretKey, aad: &[u8], envelope: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    if envelope.len() < NONCE_LEN + TAG_LEN {
        return Err(EnvelopeError::Short(envelope.len()));
    }
    let (nonce, ct) = envelope.split_at(NONCE_LEN);
    let payload = Payload { msg: ct, aad };
    let n = Nonce::from_slice(nonce);
    match key.len() {
        16 => Aes128Gcm::new_from_slice(key.expose())
            .expect("16 bytes")
            .decrypt(n, payload),
        32 => Aes256Gcm::new_from_slice(key.expose())
            .expect("32 bytes")
            .decrypt(n, payload),
        _ => return Err(EnvelopeError::KeySize),
    }
    .map_err(|_| EnvelopeError::Forged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(h: &str) -> SecretKey {
        SecretKey::from_hex(h).unwrap()
    }

    /// The GCM spec's (McGrew–Viega) test cases 4 (AES-128) and 16 (AES-256):
    /// 60-byte plaintext with 20 bytes of associated data.
    #[test]
    fn seals_match_the_gcm_test_vectors() {
        let p = hex::decode(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        )
        .unwrap();
        let a = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let iv: [u8; 12] = hex::decode("cafebabefacedbaddecaf888")
            .unwrap()
            .try_into()
            .unwrap();
        let k128 = key("feffe9928665731c6d6a8f9467308308");
        let c = seal_with_nonce(&k128, &a, &p, &iv).unwrap();
        assert_eq!(
            hex::encode(&c[12..]),
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091\
             5bc94fbc3221a5db94fae95ae7121a47"
        );
        assert_eq!(open(&k128, &a, &c).unwrap(), p);
        let k256 = key("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
        let c = seal_with_nonce(&k256, &a, &p, &iv).unwrap();
        assert_eq!(
            hex::encode(&c[12..]),
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
             76fc6ece0f4e1768cddf8853bb2d551b"
        );
        assert_eq!(open(&k256, &a, &c).unwrap(), p);
    }

    #[test]
    fn an_envelope_opens_only_with_its_key_and_its_place() {
        let k = key("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
        let mut rng = rand::thread_rng();
        let e = seal(&k, b"reg_1", b"transfer 100", &mut rng).unwrap();
        assert_eq!(open(&k, b"reg_1", &e).unwrap(), b"transfer 100");
        assert_eq!(
            open(&k, b"reg_2", &e),
            Err(EnvelopeError::Forged),
            "another place"
        );
        let other = key("1F1E1D1C1B1A191817161514131211100F0E0D0C0B0A09080706050403020100");
        assert_eq!(open(&other, b"reg_1", &e), Err(EnvelopeError::Forged));
        let mut t = e.clone();
        t[15] ^= 0x80;
        assert_eq!(
            open(&k, b"reg_1", &t),
            Err(EnvelopeError::Forged),
            "altered"
        );
        assert_eq!(open(&k, b"reg_1", &e[..20]), Err(EnvelopeError::Short(20)));
        // Fresh nonces: the same message sealed twice differs.
        assert_ne!(seal(&k, b"reg_1", b"transfer 100", &mut rng).unwrap(), e);
    }
}

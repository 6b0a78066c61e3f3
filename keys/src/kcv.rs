//! Key check values: the leftmost 5 bytes of AES-CMAC over a block of 16
//! zero bytes (the AES KCV of ANSI X9.24-1-2017 and TR-31). A custodian
//! reads it back to confirm what they typed without showing the key.

use crate::SecretKey;
use cmac::{Cmac, Mac};

/// Bytes of a KCV.
pub const KCV_LEN: usize = 5;

/// AES-CMAC of `msg` under `key` (RFC 4493; AES-192/256 alike).
pub fn cmac(key: &SecretKey, msg: &[u8]) -> [u8; 16] {
    fn run<M: Mac + cmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> [u8; 16] {
        let mut m = <M as cmac::digest::KeyInit>::new_from_slice(key)
            .expect("SecretKey holds an AES key size");
        m.update(msg);
        let tag = m.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag);
        out
    }
    match key.len() {
        16 => run::<Cmac<aes::Aes128>>(key.expose(), msg),
        24 => run::<Cmac<aes::Aes192>>(key.expose(), msg),
        _ => run::<Cmac<aes::Aes256>>(key.expose(), msg),
    }
}

/// The key's check value.
pub fn kcv(key: &SecretKey) -> [u8; KCV_LEN] {
    let tag = cmac(key, &[0u8; 16]);
    let mut out = [0u8; KCV_LEN];
    out.copy_from_slice(&tag[..KCV_LEN]);
    out
}

/// The check value as custodians read it (upper-case hex, 10 digits).
pub fn kcv_hex(key: &SecretKey) -> String {
    hex::encode_upper(kcv(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(h: &str) -> SecretKey {
        SecretKey::from_hex(h).unwrap()
    }

    /// RFC 4493 §4 (AES-128) and NIST SP 800-38B D.2/D.3 (AES-192/256),
    /// examples 1 and 2.
    #[test]
    fn cmac_matches_the_published_vectors() {
        let k128 = key("2b7e151628aed2a6abf7158809cf4f3c");
        let m16 = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        assert_eq!(
            hex::encode(cmac(&k128, b"")),
            "bb1d6929e95937287fa37d129b756746"
        );
        assert_eq!(
            hex::encode(cmac(&k128, &m16)),
            "070a16b46b4d4144f79bdd9dd04a287c"
        );
        let k192 = key("8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b");
        assert_eq!(
            hex::encode(cmac(&k192, b"")),
            "d17ddf46adaacde531cac483de7a9367"
        );
        assert_eq!(
            hex::encode(cmac(&k192, &m16)),
            "9e99a7bf31e710900662f65e617c5184"
        );
        let k256 = key("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
        assert_eq!(
            hex::encode(cmac(&k256, b"")),
            "028962f61b7bf89efc6b551f4667d983"
        );
        assert_eq!(
            hex::encode(cmac(&k256, &m16)),
            "28a7023f452e8f82bd4bf28d8c37c35c"
        );
    }

    /// KCV = the first 5 bytes of CMAC(key, 0^16); cross-checked with
    /// `openssl mac -cipher AES-128-CBC -macopt hexkey:… -in <16 zero bytes> CMAC`.
    #[test]
    fn the_kcv_is_the_cmac_of_a_zero_block_cut_to_five_bytes() {
        let k = key("2b7e151628aed2a6abf7158809cf4f3c");
        assert_eq!(kcv(&k), cmac(&k, &[0; 16])[..5]);
        // openssl printed 7AD386C3760FB3498361A1CB5563BD70.
        assert_eq!(kcv_hex(&k), "7AD386C376");
    }
}

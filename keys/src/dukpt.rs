//! AES DUKPT, ANSI X9.24-3-2017: a unique key per transaction.
//!
//! The bank's base derivation key (BDK) never leaves the bank. Each
//! terminal (here: a relay session, identified by its 8-byte initial key
//! ID) gets an **initial key** derived from the BDK; the terminal holds
//! only that. Transaction `n` uses a working key derived from the initial
//! key along the one bits of the 32-bit counter `n` (at most 16 of them:
//! a counter with more is skipped), and the bank re-derives the same key
//! from the BDK and the key serial number (KSN = initial key ID ‖ counter)
//! the message carries.
//!
//! Every derivation is AES-ECB of a 16-byte derivation data block under the
//! derivation key, one block per 128 bits of the derived key (§6.3).

use crate::{KeyError, SecretKey};
use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};

/// Bytes of an initial key ID (BDK ID ‖ derivation ID).
pub const INITIAL_KEY_ID_LEN: usize = 8;
/// Bytes of an AES DUKPT key serial number.
pub const KSN_LEN: usize = 12;
/// Most one bits a transaction counter may have (§6.1).
pub const MAX_ONE_BITS: u32 = 16;

/// The type (algorithm and length) of a derived key (Table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// AES-128.
    Aes128,
    /// AES-192.
    Aes192,
    /// AES-256.
    Aes256,
}

impl KeyType {
    fn algorithm(self) -> u16 {
        match self {
            KeyType::Aes128 => 0x0002,
            KeyType::Aes192 => 0x0003,
            KeyType::Aes256 => 0x0004,
        }
    }

    /// Key length in bits.
    pub fn bits(self) -> u16 {
        match self {
            KeyType::Aes128 => 128,
            KeyType::Aes192 => 192,
            KeyType::Aes256 => 256,
        }
    }

    /// The type of a key of `len` bytes.
    pub fn of_len(len: usize) -> Result<Self, KeyError> {
        match len {
            16 => Ok(KeyType::Aes128),
            24 => Ok(KeyType::Aes192),
            32 => Ok(KeyType::Aes256),
            n => Err(KeyError::Length(n)),
        }
    }
}

/// What a derived key is for (Table 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsage {
    /// A key-encryption key.
    KeyEncryptionKey,
    /// PIN encryption.
    PinEncryption,
    /// MAC generation.
    MacGeneration,
    /// MAC verification.
    MacVerification,
    /// MAC generation and verification.
    MacBoth,
    /// Data encryption, encrypt.
    DataEncrypt,
    /// Data encryption, decrypt.
    DataDecrypt,
    /// Data encryption, both.
    DataBoth,
    /// An intermediate derivation key.
    KeyDerivation,
    /// The initial key.
    KeyDerivationInitialKey,
}

impl KeyUsage {
    fn code(self) -> u16 {
        match self {
            KeyUsage::KeyEncryptionKey => 0x0002,
            KeyUsage::PinEncryption => 0x1000,
            KeyUsage::MacGeneration => 0x2000,
            KeyUsage::MacVerification => 0x2001,
            KeyUsage::MacBoth => 0x2002,
            KeyUsage::DataEncrypt => 0x3000,
            KeyUsage::DataDecrypt => 0x3001,
            KeyUsage::DataBoth => 0x3002,
            KeyUsage::KeyDerivation => 0x8000,
            KeyUsage::KeyDerivationInitialKey => 0x8001,
        }
    }
}

/// Why a KSN or counter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DukptError {
    /// Not 12 bytes (24 hex digits).
    #[error("a KSN is 12 bytes (24 hex digits): {0}")]
    BadKsn(String),
    /// Counter 0, or one with more than 16 one bits: no terminal uses it.
    #[error("transaction counter {0:#010x} is not a DUKPT counter (0, or more than 16 one bits)")]
    BadCounter(u32),
    /// Every counter is used: the terminal needs a new initial key.
    #[error("the transaction counters are exhausted; a new initial key is needed")]
    Exhausted,
    /// Key material.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// A key serial number: the initial key ID and the transaction counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ksn {
    /// BDK ID (4 bytes) ‖ derivation ID (4 bytes).
    pub initial_key_id: [u8; INITIAL_KEY_ID_LEN],
    /// The transaction counter.
    pub counter: u32,
}

impl Ksn {
    /// From its 12 bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, DukptError> {
        if b.len() != KSN_LEN {
            return Err(DukptError::BadKsn(format!("{} bytes", b.len())));
        }
        let mut initial_key_id = [0u8; INITIAL_KEY_ID_LEN];
        initial_key_id.copy_from_slice(&b[..8]);
        let counter = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        Ok(Ksn {
            initial_key_id,
            counter,
        })
    }

    /// From 24 hex digits.
    pub fn from_hex(h: &str) -> Result<Self, DukptError> {
        let b = hex::decode(h.trim()).map_err(|e| DukptError::BadKsn(e.to_string()))?;
        Ksn::from_bytes(&b)
    }

    /// Its 12 bytes.
    pub fn to_bytes(&self) -> [u8; KSN_LEN] {
        let mut out = [0u8; KSN_LEN];
        out[..8].copy_from_slice(&self.initial_key_id);
        out[8..].copy_from_slice(&self.counter.to_be_bytes());
        out
    }

    /// 24 upper-case hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode_upper(self.to_bytes())
    }
}

/// Whether a terminal may use `counter` (not 0, at most 16 one bits).
pub fn is_valid_counter(counter: u32) -> bool {
    counter != 0 && counter.count_ones() <= MAX_ONE_BITS
}

/// The counter a terminal uses after `counter`: the next with at most 16
/// one bits (one with more is skipped by adding its lowest one bit, which
/// clears a run of ones, §6.1); `Exhausted` past the last.
pub fn next_counter(counter: u32) -> Result<u32, DukptError> {
    let mut c = counter.checked_add(1).ok_or(DukptError::Exhausted)?;
    while c.count_ones() > MAX_ONE_BITS {
        c = c
            .checked_add(c & c.wrapping_neg())
            .ok_or(DukptError::Exhausted)?;
    }
    Ok(c)
}

/// The 16-byte derivation data (§6.3.2, Table 1).
fn derivation_data(
    usage: KeyUsage,
    derived: KeyType,
    initial_key_id: &[u8; INITIAL_KEY_ID_LEN],
    counter: Option<u32>,
) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0] = 0x01; // version
    d[1] = 0x01; // key block counter (set per block)
    d[2..4].copy_from_slice(&usage.code().to_be_bytes());
    d[4..6].copy_from_slice(&derived.algorithm().to_be_bytes());
    d[6..8].copy_from_slice(&derived.bits().to_be_bytes());
    match counter {
        // The initial key: the whole initial key ID.
        None => d[8..16].copy_from_slice(initial_key_id),
        // Other keys: the derivation ID and the counter.
        Some(c) => {
            d[8..12].copy_from_slice(&initial_key_id[4..8]);
            d[12..16].copy_from_slice(&c.to_be_bytes());
        }
    }
    d
}

/// AES-ECB of one block under `key`.
fn encrypt_block(key: &SecretKey, block: &mut [u8; 16]) {
    let b = GenericArray::from_mut_slice(block);
    match key.len() {
        16 => aes::Aes128::new_from_slice(key.expose())
            .expect("16-byte key")
            .encrypt_block(b),
        24 => aes::Aes192::new_from_slice(key.expose())
            .expect("24-byte key")
            .encrypt_block(b),
        _ => aes::Aes256::new_from_slice(key.expose())
            .expect("32-byte key")
            .encrypt_block(b),
    }
}

/// Derives a key of type `derived` from `key` and derivation data `d`
/// (§6.3.1): one AES block per 128 bits, the block counter counting them.
fn derive(key: &SecretKey, derived: KeyType, mut d: [u8; 16]) -> SecretKey {
    let len = usize::from(derived.bits() / 8);
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(32));
    let mut i = 1u8;
    while out.len() < len {
        d[1] = i;
        let mut block = d;
        encrypt_block(key, &mut block);
        out.extend_from_slice(&block);
        zeroize::Zeroize::zeroize(&mut block);
        i += 1;
    }
    SecretKey::new(&out[..len]).expect("an AES key length")
}

/// The initial key of `initial_key_id` from the BDK (the bank does this;
/// the terminal is loaded with the result). The initial key has the BDK's
/// type.
pub fn initial_key(
    bdk: &SecretKey,
    initial_key_id: &[u8; INITIAL_KEY_ID_LEN],
) -> Result<SecretKey, DukptError> {
    let t = KeyType::of_len(bdk.len())?;
    let d = derivation_data(KeyUsage::KeyDerivationInitialKey, t, initial_key_id, None);
    Ok(derive(bdk, t, d))
}

/// The intermediate derivation key of `counter` (what X9.24-3's test
/// vectors call the transaction or derivation key): the initial key taken
/// through one derivation per one bit of the counter, highest first.
pub fn derivation_key(
    initial: &SecretKey,
    initial_key_id: &[u8; INITIAL_KEY_ID_LEN],
    counter: u32,
) -> Result<SecretKey, DukptError> {
    if !is_valid_counter(counter) {
        return Err(DukptError::BadCounter(counter));
    }
    let t = KeyType::of_len(initial.len())?;
    let mut key = initial.clone();
    let mut working = 0u32;
    let mut mask = 0x8000_0000u32;
    while mask != 0 {
        if counter & mask != 0 {
            working |= mask;
            let d = derivation_data(KeyUsage::KeyDerivation, t, initial_key_id, Some(working));
            key = derive(&key, t, d);
        }
        mask >>= 1;
    }
    Ok(key)
}

/// The working key of transaction `ksn` for `usage`, of type `derived`,
/// from the initial key (the terminal's side).
pub fn working_key_from_initial(
    initial: &SecretKey,
    ksn: &Ksn,
    usage: KeyUsage,
    derived: KeyType,
) -> Result<SecretKey, DukptError> {
    let dk = derivation_key(initial, &ksn.initial_key_id, ksn.counter)?;
    let d = derivation_data(usage, derived, &ksn.initial_key_id, Some(ksn.counter));
    Ok(derive(&dk, derived, d))
}

/// The working key of transaction `ksn` for `usage` from the BDK (the
/// bank's side: it re-derives the terminal's initial key first).
pub fn working_key(
    bdk: &SecretKey,
    ksn: &Ksn,
    usage: KeyUsage,
    derived: KeyType,
) -> Result<SecretKey, DukptError> {
    let ik = initial_key(bdk, &ksn.initial_key_id)?;
    working_key_from_initial(&ik, ksn, usage, derived)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ANSI X9.24-3-2017 Annex B (AES-128 BDK) test vectors.
    const BDK: &str = "FEDCBA9876543210F1F1F1F1F1F1F1F1";
    const IKID: [u8; 8] = [0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56];

    fn bdk() -> SecretKey {
        SecretKey::from_hex(BDK).unwrap()
    }

    fn ksn(counter: u32) -> Ksn {
        Ksn {
            initial_key_id: IKID,
            counter,
        }
    }

    #[test]
    fn the_initial_key_matches_the_standard() {
        let ik = initial_key(&bdk(), &IKID).unwrap();
        assert_eq!(ik.to_hex(), "1273671EA26AC29AFA4D1084127652A1");
    }

    #[test]
    fn derivation_keys_match_the_standard() {
        let ik = initial_key(&bdk(), &IKID).unwrap();
        // Counters 1, 2, 4, 8: one bit each (the keys a terminal keeps
        // after loading).
        for (counter, want) in [
            (1, "4F21B565BAD9835E112B6465635EAE44"),
            (2, "2F34D68DE10F68D38091A73B9E7C437C"),
            (4, "0EEFC7ADA628BA68878DA9165A8A1887"),
            (8, "718EE6CF0B27E53D5F7AF99C4D8146A2"),
        ] {
            assert_eq!(
                derivation_key(&ik, &IKID, counter).unwrap().to_hex(),
                want,
                "counter {counter}"
            );
        }
    }

    #[test]
    fn working_keys_of_counter_1_match_the_standard_for_every_usage() {
        let t = KeyType::Aes128;
        for (usage, want) in [
            (KeyUsage::PinEncryption, "AF8CB133A78F8DC2D1359F18527593FB"),
            (KeyUsage::MacGeneration, "A2DC23DE6FDE0824A2BC321E08E4B8B7"),
            (
                KeyUsage::MacVerification,
                "DBB463945B286C07CD3AD82EE96FD9C9",
            ),
            (KeyUsage::MacBoth, "85675439D18D7F1158BD8E3EAA3D502B"),
            (KeyUsage::DataEncrypt, "A35C412EFD41FDB98B69797C02DCD08F"),
            (KeyUsage::DataDecrypt, "16292C6EA8F64C5420A0584BFBC577BE"),
            (KeyUsage::DataBoth, "A308E080DD15A1B741F1721BF67DE11C"),
            (
                KeyUsage::KeyEncryptionKey,
                "36A724B7BEFA5A25F5E7B5782A4554A2",
            ),
        ] {
            assert_eq!(
                working_key(&bdk(), &ksn(1), usage, t).unwrap().to_hex(),
                want,
                "{usage:?}"
            );
        }
    }

    #[test]
    fn working_keys_of_later_counters_match_the_standard() {
        let t = KeyType::Aes128;
        let w = |c, u| working_key(&bdk(), &ksn(c), u, t).unwrap().to_hex();
        assert_eq!(
            w(2, KeyUsage::PinEncryption),
            "D30BDC73EC9714B000BEC66BDB7B6D09"
        );
        assert_eq!(
            w(8, KeyUsage::PinEncryption),
            "4D9DF3FBEE3448FC3E676D04320A90F5"
        );
        assert_eq!(
            w(8, KeyUsage::MacGeneration),
            "6FD572E5D59E618875F193484F9178FB"
        );
        assert_eq!(
            w(8, KeyUsage::DataEncrypt),
            "650F34204ABD4E57764D61AC3D266FB1"
        );
    }

    #[test]
    fn the_terminal_from_its_initial_key_and_the_bank_from_the_bdk_agree() {
        let ik = initial_key(&bdk(), &IKID).unwrap();
        let mut c = 0;
        for _ in 0..50 {
            c = next_counter(c).unwrap();
            for t in [KeyType::Aes128, KeyType::Aes256] {
                assert_eq!(
                    working_key_from_initial(&ik, &ksn(c), KeyUsage::DataBoth, t).unwrap(),
                    working_key(&bdk(), &ksn(c), KeyUsage::DataBoth, t).unwrap()
                );
            }
        }
        // A 256-bit working key is two blocks, each its own derivation.
        let k = working_key(&bdk(), &ksn(1), KeyUsage::DataBoth, KeyType::Aes256).unwrap();
        assert_eq!(k.len(), 32);
        assert_ne!(k.expose()[..16], k.expose()[16..]);
    }

    #[test]
    fn counters_keep_to_sixteen_one_bits_and_run_out() {
        assert_eq!(next_counter(0), Ok(1));
        assert_eq!(next_counter(1), Ok(2));
        // 0x0000FFFF has 16 one bits: allowed; its successor 0x00010000 too.
        assert!(is_valid_counter(0x0000_FFFF));
        assert_eq!(next_counter(0x0000_FFFF), Ok(0x0001_0000));
        // 0x0001FFFF would have 17: skipped by adding its lowest one bit.
        assert_eq!(next_counter(0x0001_FFFE), Ok(0x0002_0000));
        assert!(!is_valid_counter(0x0001_FFFF));
        assert!(!is_valid_counter(0));
        assert!(matches!(
            derivation_key(&bdk(), &IKID, 0x0001_FFFF),
            Err(DukptError::BadCounter(0x0001_FFFF))
        ));
        // The last counter: 16 one bits at the top.
        let last = 0xFFFF_0000;
        assert!(is_valid_counter(last));
        assert_eq!(next_counter(last), Err(DukptError::Exhausted));
        assert_eq!(next_counter(0xFFFE_8000), Ok(0xFFFF_0000));
        // Every counter a terminal walks through is valid and increasing.
        let mut c = 0xFFF0_0000 - 5;
        let mut seen = 0;
        while let Ok(n) = next_counter(c) {
            assert!(n > c && is_valid_counter(n), "{c:#x} → {n:#x}");
            c = n;
            seen += 1;
        }
        assert!(seen > 0);
    }

    #[test]
    fn ksns_read_and_write_their_twelve_bytes() {
        let k = Ksn::from_hex("123456789012345600000001").unwrap();
        assert_eq!(k, ksn(1));
        assert_eq!(k.to_hex(), "123456789012345600000001");
        assert!(matches!(Ksn::from_hex("1234"), Err(DukptError::BadKsn(_))));
    }
}

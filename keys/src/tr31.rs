//! TR-31 key blocks, version D (ANSI X9.143: the AES key derivation
//! binding method), the form an HSM exports a key in: a readable header
//! (usage, algorithm, mode of use, exportability, optional blocks such as
//! `IK`, the AES DUKPT initial key id), the key encrypted (AES-CBC) under a
//! key derived from the key block protection key, and a CMAC over header
//! and clear payload under another derived key, which is also the CBC IV.
//! A block whose MAC does not verify is refused before anything is used.

use crate::kcv::cmac;
use crate::SecretKey;
use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use rand::RngCore;
use zeroize::Zeroizing;

/// Bytes of the fixed header.
const HEADER_LEN: usize = 16;
/// Bytes of a version D MAC.
const MAC_LEN: usize = 16;

/// Why a key block was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tr31Error {
    /// Not a key block as TR-31 lays it out: what is wrong.
    #[error("not a TR-31 key block: {0}")]
    Malformed(String),
    /// Another version than D.
    #[error("TR-31 version {0:?} is not supported (only D, AES key derivation)")]
    Version(char),
    /// The key block protection key is not an AES key.
    #[error("the key block protection key must be AES-128, -192 or -256")]
    Kbpk,
    /// The MAC does not verify: altered, or protected under another key.
    #[error("the key block's MAC does not verify: altered, or protected under another key")]
    Mac,
}

/// A key block's header: what the key is and may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Key usage, e.g. `B1` (initial DUKPT key), `K0` (key encryption).
    pub usage: String,
    /// Algorithm of the key, `A` for AES.
    pub algorithm: char,
    /// Mode of use, e.g. `X` (key derivation), `N` (no restriction).
    pub mode: char,
    /// Key version number.
    pub version: String,
    /// Exportability: `E`, `N` or `S`.
    pub exportability: char,
    /// Optional blocks: id and data (e.g. `IK`, the initial key id).
    pub optional: Vec<(String, String)>,
}

impl Header {
    /// An optional block's data.
    pub fn optional(&self, id: &str) -> Option<&str> {
        self.optional
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, d)| d.as_str())
    }

    /// The header as it is written, for a block of `total` characters.
    fn render(&self, total: usize) -> String {
        let mut s = format!(
            "D{total:04}{}{}{}{}{}{:02}00",
            self.usage,
            self.algorithm,
            self.mode,
            self.version,
            self.exportability,
            self.optional.len()
        );
        for (id, data) in &self.optional {
            s.push_str(&format!("{id}{:02X}{data}", data.len() + 4));
        }
        s
    }
}

/// The encryption and MAC keys derived from the KBPK (X9.143 §7.2.1: CMAC
/// in counter mode over counter ‖ usage ‖ 00 ‖ algorithm ‖ length).
fn derive(kbpk: &SecretKey) -> Result<(SecretKey, SecretKey), Tr31Error> {
    let (alg, bits): (u16, u16) = match kbpk.len() {
        16 => (2, 128),
        24 => (3, 192),
        32 => (4, 256),
        _ => return Err(Tr31Error::Kbpk),
    };
    let one = |usage: u16| {
        let mut out = Zeroizing::new(Vec::with_capacity(32));
        let mut counter = 1u8;
        while out.len() < kbpk.len() {
            let mut d = [0u8; 8];
            d[0] = counter;
            d[1..3].copy_from_slice(&usage.to_be_bytes());
            d[4..6].copy_from_slice(&alg.to_be_bytes());
            d[6..8].copy_from_slice(&bits.to_be_bytes());
            out.extend_from_slice(&cmac(kbpk, &d));
            counter += 1;
        }
        out.truncate(kbpk.len());
        SecretKey::new(&out).expect("an AES key size")
    };
    Ok((one(0x0000), one(0x0001)))
}

fn crypt_block(key: &SecretKey, block: &mut [u8], decrypt: bool) {
    let b = GenericArray::from_mut_slice(block);
    macro_rules! run {
        ($c:ty) => {{
            let c = <$c>::new_from_slice(key.expose()).expect("key size");
            if decrypt {
                c.decrypt_block(b)
            } else {
                c.encrypt_block(b)
            }
        }};
    }
    match key.len() {
        16 => run!(aes::Aes128),
        24 => run!(aes::Aes192),
        _ => run!(aes::Aes256),
    }
}

/// AES-CBC over whole blocks, in place.
fn cbc(key: &SecretKey, iv: &[u8; 16], data: &mut [u8], decrypt: bool) {
    let mut chain = *iv;
    for block in data.chunks_exact_mut(16) {
        if decrypt {
            let cipher: [u8; 16] = block.try_into().expect("16 bytes");
            crypt_block(key, block, true);
            block.iter_mut().zip(chain).for_each(|(b, c)| *b ^= c);
            chain = cipher;
        } else {
            block.iter_mut().zip(chain).for_each(|(b, c)| *b ^= c);
            crypt_block(key, block, false);
            chain = block.try_into().expect("16 bytes");
        }
    }
}

fn parse_header(block: &str) -> Result<(Header, usize), Tr31Error> {
    let bad = |m: &str| Tr31Error::Malformed(m.to_string());
    if !block.is_ascii() || block.len() < HEADER_LEN {
        return Err(bad("shorter than its 16-character header"));
    }
    let version = block.as_bytes()[0] as char;
    if version != 'D' {
        return Err(Tr31Error::Version(version));
    }
    let total: usize = block[1..5]
        .parse()
        .map_err(|_| bad("the length is not 4 digits"))?;
    if total != block.len() {
        return Err(Tr31Error::Malformed(format!(
            "it says {total} characters but has {}",
            block.len()
        )));
    }
    let count: usize = block[12..14]
        .parse()
        .map_err(|_| bad("the optional block count is not 2 digits"))?;
    let mut at = HEADER_LEN;
    let mut optional = Vec::with_capacity(count);
    for _ in 0..count {
        let head = block
            .get(at..at + 4)
            .ok_or_else(|| bad("an optional block runs past the end"))?;
        let len = usize::from_str_radix(&head[2..4], 16)
            .map_err(|_| bad("an optional block's length is not hex"))?;
        let data = block
            .get(at + 4..at + len)
            .filter(|_| len >= 4)
            .ok_or_else(|| bad("an optional block runs past the end"))?;
        // The padding block is layout, not meaning.
        if &head[..2] != "PB" {
            optional.push((head[..2].to_string(), data.to_string()));
        }
        at += len;
    }
    if !at.is_multiple_of(16) {
        return Err(bad(
            "the header is not whole AES blocks (a PB block is missing)",
        ));
    }
    let h = Header {
        usage: block[5..7].to_string(),
        algorithm: block.as_bytes()[7] as char,
        mode: block.as_bytes()[8] as char,
        version: block[9..11].to_string(),
        exportability: block.as_bytes()[11] as char,
        optional,
    };
    Ok((h, at))
}

/// Opens a version D key block under `kbpk`: its header and the key.
pub fn unwrap(kbpk: &SecretKey, block: &str) -> Result<(Header, SecretKey), Tr31Error> {
    let block = block.trim();
    let (header, header_len) = parse_header(block)?;
    let rest = &block[header_len..];
    if rest.len() < 2 * (MAC_LEN + 16) || !rest.len().is_multiple_of(32) {
        return Err(Tr31Error::Malformed(
            "the encrypted key and MAC are not whole AES blocks".into(),
        ));
    }
    let (enc_hex, mac_hex) = rest.split_at(rest.len() - 2 * MAC_LEN);
    let hexed = |h: &str| hex::decode(h).map_err(|_| Tr31Error::Malformed("not hex".into()));
    let mut payload = Zeroizing::new(hexed(enc_hex)?);
    let mac: [u8; MAC_LEN] = hexed(mac_hex)?.try_into().expect("16 bytes");
    let (kbek, kbak) = derive(kbpk)?;
    cbc(&kbek, &mac, &mut payload, true);
    let mut signed = Zeroizing::new(block.as_bytes()[..header_len].to_vec());
    signed.extend_from_slice(&payload);
    use subtle::ConstantTimeEq;
    if !bool::from(cmac(&kbak, &signed).ct_eq(&mac)) {
        return Err(Tr31Error::Mac);
    }
    let bits = usize::from(u16::from_be_bytes([payload[0], payload[1]]));
    let len = bits / 8;
    if bits % 8 != 0 || payload.len() < 2 + len {
        return Err(Tr31Error::Malformed("the key length field is wrong".into()));
    }
    let key = SecretKey::new(&payload[2..2 + len])
        .map_err(|e| Tr31Error::Malformed(format!("the key inside: {e}")))?;
    Ok((header, key))
}

/// Wraps `key` under `kbpk` as a version D key block with `header`, the
/// padding from `rng`.
pub fn wrap(
    kbpk: &SecretKey,
    header: &Header,
    key: &SecretKey,
    rng: &mut impl RngCore,
) -> Result<String, Tr31Error> {
    let mut pad = Zeroizing::new(vec![0u8; 32]);
    rng.fill_bytes(&mut pad);
    wrap_with_padding(kbpk, header, key, &pad)
}

/// [`wrap`] with given padding bytes (for test vectors).
pub fn wrap_with_padding(
    kbpk: &SecretKey,
    header: &Header,
    key: &SecretKey,
    pad: &[u8],
) -> Result<String, Tr31Error> {
    let (kbek, kbak) = derive(kbpk)?;
    let mut payload = Zeroizing::new(((key.len() * 8) as u16).to_be_bytes().to_vec());
    payload.extend_from_slice(key.expose());
    let need = (16 - payload.len() % 16) % 16;
    if pad.len() < need {
        return Err(Tr31Error::Malformed("not enough padding".into()));
    }
    payload.extend_from_slice(&pad[..need]);
    // The header is padded to whole AES blocks with a `PB` block.
    let mut header = header.clone();
    header.optional.retain(|(id, _)| id != "PB");
    let mut opt_len: usize = header.optional.iter().map(|(_, d)| d.len() + 4).sum();
    let rem = (HEADER_LEN + opt_len) % 16;
    if rem != 0 {
        let mut need = 16 - rem;
        if need < 4 {
            need += 16;
        }
        header.optional.push(("PB".into(), "0".repeat(need - 4)));
        opt_len += need;
    }
    let total = HEADER_LEN + opt_len + payload.len() * 2 + MAC_LEN * 2;
    let head = header.render(total);
    let mut signed = Zeroizing::new(head.as_bytes().to_vec());
    signed.extend_from_slice(&payload);
    let mac = cmac(&kbak, &signed);
    let mut enc = payload.clone();
    cbc(&kbek, &mac, &mut enc, false);
    Ok(format!(
        "{head}{}{}",
        hex::encode_upper(&*enc),
        hex::encode_upper(mac)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TR-31:2018 A.7.4 (ANSI X9.143), example 3: an AES-256 KBPK.
    const KBPK: &str = "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6";
    const BLOCK: &str = "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34";
    const KEY: &str = "3F419E1CB7079442AA37474C2EFBF8B8";
    const PADDING: &str = "1C2965473CE206BB855B01533782";

    fn kbpk() -> SecretKey {
        SecretKey::from_hex(KBPK).unwrap()
    }

    #[test]
    fn the_published_version_d_block_opens_to_its_key() {
        let (h, key) = unwrap(&kbpk(), BLOCK).unwrap();
        assert_eq!(key.to_hex(), KEY);
        assert_eq!(
            (
                h.usage.as_str(),
                h.algorithm,
                h.mode,
                h.version.as_str(),
                h.exportability
            ),
            ("P0", 'A', 'E', "00", 'E')
        );
        assert!(h.optional.is_empty());
    }

    #[test]
    fn wrapping_with_the_published_padding_makes_the_published_block() {
        let (h, _) = unwrap(&kbpk(), BLOCK).unwrap();
        let key = SecretKey::from_hex(KEY).unwrap();
        let pad = hex::decode(PADDING).unwrap();
        assert_eq!(wrap_with_padding(&kbpk(), &h, &key, &pad).unwrap(), BLOCK);
    }

    #[test]
    fn an_initial_key_block_with_its_key_id_round_trips() {
        let header = Header {
            usage: "B1".into(),
            algorithm: 'A',
            mode: 'X',
            version: "00".into(),
            exportability: 'N',
            optional: vec![("IK".into(), "1234567890123456".into())],
        };
        let ik = SecretKey::from_hex("1273671EA26AC29AFA4D1084127652A1").unwrap();
        let block = wrap(&kbpk(), &header, &ik, &mut rand::thread_rng()).unwrap();
        assert!(block.starts_with("D0"), "{block}");
        assert!(
            block[5..].starts_with("B1AX00N0200IK141234567890123456PB0C00000000"),
            "{block}"
        );
        let (h, key) = unwrap(&kbpk(), &block).unwrap();
        assert_eq!(h, header);
        assert_eq!(h.optional("IK"), Some("1234567890123456"));
        assert_eq!(key.to_hex(), ik.to_hex());
    }

    #[test]
    fn altered_or_foreign_blocks_are_refused() {
        // One bit of the header changed (exportability E → N): the MAC says so.
        let altered = BLOCK.replacen("E00E", "E00N", 1);
        assert_eq!(unwrap(&kbpk(), &altered).unwrap_err(), Tr31Error::Mac);
        let mut flipped = BLOCK.to_string();
        flipped.replace_range(20..21, "0");
        assert_eq!(unwrap(&kbpk(), &flipped).unwrap_err(), Tr31Error::Mac);
        let other = SecretKey::from_hex(&KBPK.replace('8', "9")).unwrap();
        assert_eq!(unwrap(&other, BLOCK).unwrap_err(), Tr31Error::Mac);
        assert!(matches!(
            unwrap(&kbpk(), &BLOCK[..100]),
            Err(Tr31Error::Malformed(_))
        ));
        assert_eq!(
            unwrap(&kbpk(), &BLOCK.replacen('D', "B", 1)).unwrap_err(),
            Tr31Error::Version('B')
        );
        assert!(matches!(
            unwrap(&kbpk(), "D01"),
            Err(Tr31Error::Malformed(_))
        ));
    }
}

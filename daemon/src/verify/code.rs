//! One-time codes: drawn from the OS CSPRNG, stored only as a keyed hash,
//! compared in constant time.

use crate::files::{create_parent, write_private, FileError};
use crate::random::Random;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// The server secret: keys every hash of codes, API keys and tokens.
#[derive(Clone)]
pub struct ServerSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(..)")
    }
}

/// Why the server secret cannot be used (the operator's file).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Fewer than 32 bytes.
    #[error("server secret has {0} bytes; at least 32 are needed")]
    TooShort(usize),
    /// The secret file is not hex.
    #[error("{}: not hex: {source}", .path.display())]
    NotHex {
        /// The file.
        path: std::path::PathBuf,
        /// What the decoder said.
        source: hex::FromHexError,
    },
    /// The secret file holds too few bytes.
    #[error("{}: server secret has {len} bytes; at least 32 are needed", .path.display())]
    ShortFile {
        /// The file.
        path: std::path::PathBuf,
        /// Bytes it holds.
        len: usize,
    },
    /// The file cannot be read or created.
    #[error(transparent)]
    File(#[from] FileError),
}

impl ServerSecret {
    /// Wraps secret bytes (at least 32).
    pub fn new(bytes: Vec<u8>) -> Result<Self, SecretError> {
        if bytes.len() < 32 {
            return Err(SecretError::TooShort(bytes.len()));
        }
        Ok(ServerSecret(Zeroizing::new(bytes)))
    }

    /// A fresh random secret.
    pub fn random(rng: &Random) -> Self {
        let mut b = Zeroizing::new(vec![0u8; 32]);
        rng.fill(&mut b[..]);
        ServerSecret(b)
    }

    /// Hex form for the secret file.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0[..])
    }

    /// HMAC-SHA256 over the parts, each length-prefixed so that
    /// ("ab","c") and ("a","bc") differ.
    pub fn mac(&self, domain: &str, parts: &[&[u8]]) -> Vec<u8> {
        let mut m = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(&(domain.len() as u32).to_be_bytes());
        m.update(domain.as_bytes());
        for p in parts {
            m.update(&(p.len() as u32).to_be_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }

    /// Loads the secret from a hex file, creating the file with a random
    /// secret (mode 0600) when it does not exist.
    pub fn load_or_create(path: &std::path::Path, rng: &Random) -> Result<Self, SecretError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).map_err(|source| SecretError::NotHex {
                    path: path.into(),
                    source,
                })?;
                if bytes.len() < 32 {
                    return Err(SecretError::ShortFile {
                        path: path.into(),
                        len: bytes.len(),
                    });
                }
                ServerSecret::new(bytes)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let s = ServerSecret::random(rng);
                create_parent(path)?;
                write_private(path, &s.to_hex())?;
                Ok(s)
            }
            Err(e) => Err(FileError::new("read", path, e).into()),
        }
    }
}

/// A fresh numeric code of `len` digits from the CSPRNG (uniform: each
/// digit drawn with `gen_range`, which rejects biased draws).
pub fn generate(rng: &Random, len: u8) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(usize::from(len)));
    let mut rng = rng.rng();
    for _ in 0..len {
        let d: u8 = rng.gen_range(0..10);
        s.push(char::from(b'0' + d));
    }
    s
}

/// The stored form of a code: bound to its verification id, so a hash
/// copied to another verification is useless.
pub fn hash(secret: &ServerSecret, verification_id: &str, code: &str) -> Vec<u8> {
    secret.mac(
        "verigate/code/v1",
        &[verification_id.as_bytes(), code.as_bytes()],
    )
}

/// Compares a submitted code with the stored hash in constant time.
pub fn matches(
    secret: &ServerSecret,
    verification_id: &str,
    submitted: &str,
    stored: &[u8],
) -> bool {
    let h = hash(secret, verification_id, submitted.trim());
    bool::from(h.ct_eq(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_asked_length_and_vary() {
        let rng = Random::os();
        let a = generate(&rng, 6);
        assert_eq!(a.len(), 6);
        assert!(a.chars().all(|c| c.is_ascii_digit()));
        let distinct: std::collections::HashSet<String> =
            (0..200).map(|_| generate(&rng, 10).to_string()).collect();
        assert!(distinct.len() > 195);
    }

    #[test]
    fn hashes_bind_code_to_verification_and_compare() {
        let rng = Random::os();
        let s = ServerSecret::random(&rng);
        let h = hash(&s, "vf_1", "123456");
        assert!(matches(&s, "vf_1", "123456", &h));
        assert!(matches(&s, "vf_1", " 123456 ", &h));
        assert!(!matches(&s, "vf_1", "123457", &h));
        assert!(!matches(&s, "vf_2", "123456", &h));
        assert!(!matches(&ServerSecret::random(&rng), "vf_1", "123456", &h));
        assert_ne!(s.mac("d", &[b"ab", b"c"]), s.mac("d", &[b"a", b"bc"]));
    }

    #[test]
    fn secret_file_is_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("vg-secret-{}", std::process::id()));
        let p = dir.join("server.secret");
        let _ = std::fs::remove_file(&p);
        let rng = Random::os();
        let a = ServerSecret::load_or_create(&p, &rng).unwrap();
        let b = ServerSecret::load_or_create(&p, &rng).unwrap();
        assert_eq!(a.to_hex(), b.to_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::write(&p, "zz").unwrap();
        let e = ServerSecret::load_or_create(&p, &rng).unwrap_err();
        assert!(matches!(e, SecretError::NotHex { .. }), "{e}");
        assert!(e.to_string().contains("not hex"), "{e}");
        std::fs::write(&p, "00ff").unwrap();
        let e = ServerSecret::load_or_create(&p, &rng).unwrap_err();
        assert!(matches!(e, SecretError::ShortFile { len: 2, .. }), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

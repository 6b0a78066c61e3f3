//! One-time codes: drawn from the OS CSPRNG, stored only as a keyed hash,
//! compared in constant time.

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

impl ServerSecret {
    /// Wraps secret bytes (at least 32).
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < 32 {
            return Err(format!(
                "server secret has {} bytes; at least 32 are needed",
                bytes.len()
            ));
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
    pub fn load_or_create(path: &std::path::Path, rng: &Random) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim())
                    .map_err(|e| format!("{}: not hex: {e}", path.display()))?;
                ServerSecret::new(bytes).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let s = ServerSecret::random(rng);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                write_private(path, &s.to_hex())?;
                Ok(s)
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }
}

/// Writes a file readable only by its owner.
pub fn write_private(path: &std::path::Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
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
        assert!(ServerSecret::load_or_create(&p, &rng)
            .unwrap_err()
            .contains("not hex"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

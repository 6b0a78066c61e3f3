//! The session key K2 an operator sends with each request, proving it holds
//! the service key K1 and binding the request to one number and one code.

use crate::config::K2Scheme;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why a K2 was refused (the requester is at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum K2Error {
    /// Not hex of the scheme's length.
    #[error("k2 must be {digits} hex digits ({scheme} of the number and the code)")]
    Malformed {
        /// Hex digits expected.
        digits: usize,
        /// The service number's scheme.
        scheme: &'static str,
    },
    /// Well formed, but not made with this service number's K1 over this
    /// number and code.
    #[error("k2 does not match the number, the code and the service number's key")]
    Mismatch,
    /// The HMAC form came without its timestamp.
    #[error("ts is missing: the hmac-sha256 form signs a timestamp")]
    NoTimestamp,
}

/// K2 for `tn` and `vn` exactly as the requester sent them; the HMAC form
/// also signs `ts` (Unix seconds): HMAC-SHA256(K1, ts "." TN VN). The
/// legacy MD5 form (the seed's) has no timestamp and ignores it.
pub fn compute(scheme: K2Scheme, k1: &[u8], tn: &str, vn: &str, ts: i64) -> Vec<u8> {
    match scheme {
        K2Scheme::HmacSha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(k1).expect("HMAC takes any key length");
            // The timestamp's digits end at the dot, and VN has a fixed
            // length: the signed text splits one way only.
            mac.update(ts.to_string().as_bytes());
            mac.update(b".");
            mac.update(tn.as_bytes());
            mac.update(vn.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        K2Scheme::Md5Legacy => {
            let mut h = Md5::new();
            h.update(tn.as_bytes());
            h.update(vn.as_bytes());
            h.update(k1);
            h.finalize().to_vec()
        }
    }
}

/// Checks `k2_hex` (either case) in constant time; returns its bytes.
/// `ts` is required by the HMAC form (whether it is recent is the caller's
/// check, once K2 proves who sent it).
pub fn verify(
    scheme: K2Scheme,
    k1: &[u8],
    tn: &str,
    vn: &str,
    ts: Option<i64>,
    k2_hex: &str,
) -> Result<Vec<u8>, K2Error> {
    let ts = match (scheme, ts) {
        (K2Scheme::HmacSha256, None) => return Err(K2Error::NoTimestamp),
        (_, ts) => ts.unwrap_or(0),
    };
    let want = compute(scheme, k1, tn, vn, ts);
    let got = hex::decode(k2_hex.trim())
        .ok()
        .filter(|b| b.len() == want.len())
        .ok_or(K2Error::Malformed {
            digits: want.len() * 2,
            scheme: scheme.as_str(),
        })?;
    if bool::from(got.ct_eq(&want)) {
        Ok(got)
    } else {
        Err(K2Error::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `printf %s 1800000000.13988888888365882 | openssl dgst -sha256 -hmac 0123456789abcdef`
    const OPENSSL_HMAC: &str = "39d70e1a5b4a5e28d4a37ffb6b3d88ef061fafffac4281dcb7e52d00550313aa";

    #[test]
    fn the_seeds_legacy_example() {
        // The seed's worked example: MD5("13988888888" + "365882" + "123321").
        // (The seed prints E588AD90…, which is the MD5 of neither the string
        // it names nor its typo "13888888888…"; this is the real digest.)
        let k2 = compute(K2Scheme::Md5Legacy, b"123321", "13988888888", "365882", 0);
        assert_eq!(hex::encode(&k2), "241cf04a9dd186585ff23b9e7ae76493");
        for sent in [
            "241cf04a9dd186585ff23b9e7ae76493",
            "241CF04A9DD186585FF23B9E7AE76493",
        ] {
            assert_eq!(
                verify(
                    K2Scheme::Md5Legacy,
                    b"123321",
                    "13988888888",
                    "365882",
                    None,
                    sent
                ),
                Ok(k2.clone())
            );
        }
    }

    #[test]
    fn hmac_sha256_matches_an_independent_computation() {
        // printf %s 1800000000.13988888888365882 | openssl dgst -sha256 -hmac 0123456789abcdef
        let k2 = compute(
            K2Scheme::HmacSha256,
            b"0123456789abcdef",
            "13988888888",
            "365882",
            1_800_000_000,
        );
        assert_eq!(hex::encode(k2), OPENSSL_HMAC);
    }

    #[test]
    fn wrong_or_malformed_keys_are_refused_with_the_reason() {
        let k1 = b"0123456789abcdef";
        let good = hex::encode(compute(
            K2Scheme::HmacSha256,
            k1,
            "13988888888",
            "365882",
            1_800_000_000,
        ));
        let v =
            |tn, vn, k2: &str| verify(K2Scheme::HmacSha256, k1, tn, vn, Some(1_800_000_000), k2);
        assert!(v("13988888888", "365882", &good).is_ok());
        // The same K2 with another timestamp, or none: refused.
        assert_eq!(
            verify(
                K2Scheme::HmacSha256,
                k1,
                "13988888888",
                "365882",
                Some(1_800_000_001),
                &good
            ),
            Err(K2Error::Mismatch)
        );
        assert_eq!(
            verify(
                K2Scheme::HmacSha256,
                k1,
                "13988888888",
                "365882",
                None,
                &good
            ),
            Err(K2Error::NoTimestamp)
        );
        // Another code, another number, another key: refused.
        assert_eq!(v("13988888888", "365883", &good), Err(K2Error::Mismatch));
        assert_eq!(v("13988888889", "365882", &good), Err(K2Error::Mismatch));
        assert_eq!(
            verify(
                K2Scheme::HmacSha256,
                b"fedcba9876543210",
                "13988888888",
                "365882",
                Some(1_800_000_000),
                &good
            ),
            Err(K2Error::Mismatch)
        );
        // The MD5 form of the right key is not accepted for HMAC.
        let md5 = hex::encode(compute(K2Scheme::Md5Legacy, k1, "13988888888", "365882", 0));
        let e = v("13988888888", "365882", &md5).unwrap_err();
        assert_eq!(
            e.to_string(),
            "k2 must be 64 hex digits (hmac-sha256 of the number and the code)"
        );
        assert!(matches!(
            v("13988888888", "365882", "zz"),
            Err(K2Error::Malformed { .. })
        ));
    }
}

//! Dual control: a key no one person knows, built from two components that
//! two custodians enter separately (XOR of the two). Each component is
//! shown back with its KCV so its custodian can confirm it; the combined
//! key must match the KCV the key's owner published, or it is refused.

use crate::kcv::{kcv, KCV_LEN};
use crate::{KeyError, SecretKey};
use subtle::ConstantTimeEq;

/// Why components were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComponentError {
    /// The combined key's check value is not the expected one: a component
    /// was mistyped (each custodian compares theirs).
    #[error(
        "the combined key's check value is {got}, not the expected {want}: a component is wrong"
    )]
    KcvMismatch {
        /// What the combination gave.
        got: String,
        /// What was expected.
        want: String,
    },
    /// Two components that are the same would cancel out.
    #[error("the two components are the same; their combination would be all zeros")]
    Identical,
    /// Key material.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// A component of a key, as one custodian entered it.
#[derive(Debug, Clone)]
pub struct Component {
    key: SecretKey,
}

impl Component {
    /// From hex as typed.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        Ok(Component {
            key: SecretKey::from_hex(text)?,
        })
    }

    /// From key bytes.
    pub fn new(key: SecretKey) -> Self {
        Component { key }
    }

    /// Its check value, for its custodian.
    pub fn kcv(&self) -> [u8; KCV_LEN] {
        kcv(&self.key)
    }
}

/// The key of two components, checked against `expected_kcv` (if given).
pub fn combine(
    a: &Component,
    b: &Component,
    expected_kcv: Option<&[u8; KCV_LEN]>,
) -> Result<SecretKey, ComponentError> {
    if a.key.len() != b.key.len() {
        return Err(KeyError::SizeMismatch(a.key.len(), b.key.len()).into());
    }
    if bool::from(a.key.expose().ct_eq(b.key.expose())) {
        return Err(ComponentError::Identical);
    }
    let mut x: zeroize::Zeroizing<Vec<u8>> = zeroize::Zeroizing::new(
        a.key
            .expose()
            .iter()
            .zip(b.key.expose())
            .map(|(p, q)| p ^ q)
            .collect(),
    );
    let key = SecretKey::new(&x)?;
    zeroize::Zeroize::zeroize(&mut *x);
    if let Some(want) = expected_kcv {
        let got = kcv(&key);
        if !bool::from(got.ct_eq(want)) {
            return Err(ComponentError::KcvMismatch {
                got: hex::encode_upper(got),
                want: hex::encode_upper(want),
            });
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_components_make_the_key_and_its_kcv_is_checked() {
        let a = Component::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let b = Component::from_hex("FEDCBA9876543210F1F1F1F1F1F1F1F1").unwrap();
        let whole = SecretKey::from_hex("FFFFFFFFFFFFFFFF0F2D4B6987A5C3E1").unwrap();
        let want = kcv(&whole);
        assert_eq!(combine(&a, &b, Some(&want)).unwrap(), whole);
        assert_eq!(
            combine(&b, &a, None).unwrap(),
            whole,
            "order does not matter"
        );
        // A mistyped component: refused by the check value.
        let typo = Component::from_hex("0123456789ABCDEFFEDCBA9876543211").unwrap();
        assert!(matches!(
            combine(&typo, &b, Some(&want)),
            Err(ComponentError::KcvMismatch { .. })
        ));
        assert_eq!(combine(&a, &a, None), Err(ComponentError::Identical));
        let short =
            Component::from_hex("00112233445566778899AABBCCDDEEFF0011223344556677").unwrap();
        assert!(matches!(
            combine(&a, &short, None),
            Err(ComponentError::Key(_))
        ));
        // Each custodian sees only their own component's check value.
        assert_ne!(a.kcv(), b.kcv());
    }
}

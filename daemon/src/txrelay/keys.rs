//! The relay's key management, carrier side: the zone key built under dual
//! control from two custodians' components (each shown back by its KCV;
//! the combination checked against the bank's published KCV), rotated with
//! an overlap so work under the old key finishes, and the DUKPT initial key
//! the bank sends wrapped under the zone key. Every key is stored wrapped
//! (RFC 3394) under a local key-encryption key derived from the server
//! secret, and zeroized in memory after use; no key is ever logged.

use crate::clock::Millis;
use crate::store::{Store, StoreError, StoredKey};
use crate::verify::code::ServerSecret;
use std::sync::Arc;
use verigate_keys::components::{combine, Component, ComponentError};
use verigate_keys::dukpt::INITIAL_KEY_ID_LEN;
use verigate_keys::kcv::{kcv_hex, KCV_LEN};
use verigate_keys::wrap::{self, WrapError};
use verigate_keys::{KeyError, SecretKey};

/// Why a key operation was refused; each says who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// A custodian's slot is `A` or `B`.
    #[error("a component slot is A or B, not {0:?}")]
    Slot(String),
    /// Key material as typed.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// The components do not make the expected key.
    #[error("{0}")]
    Components(#[from] ComponentError),
    /// Activation needs both components.
    #[error("component {0} has not been entered")]
    MissingComponent(&'static str),
    /// A KCV as typed is not 10 hex digits.
    #[error("a KCV is 10 hex digits, not {0:?}")]
    Kcv(String),
    /// The TR-31 key block did not open under the active zone key.
    #[error("the initial key's block: {0}")]
    KeyBlock(verigate_keys::tr31::Tr31Error),
    /// The wrapped initial key did not unwrap under the active zone key.
    #[error("the initial key does not unwrap under the active zone key: {0}")]
    Unwrap(WrapError),
    /// The unwrapped initial key's KCV is not the bank's.
    #[error("the initial key's check value is {got}, not the bank's {want}")]
    InitialKcv {
        /// What it is.
        got: String,
        /// What the bank said.
        want: String,
    },
    /// No zone key is active.
    #[error("no zone key is active: enter both components and activate first")]
    NoZoneKey,
    /// No initial key has been imported.
    #[error("no DUKPT initial key: import the bank's with `verigate txrelay keys initial-key`")]
    NoInitialKey,
    /// A rotation needs the old key's overlap; an activation needs no key active.
    #[error("{0}")]
    Conflict(String),
    /// A stored key does not unwrap under the local key (the server secret changed).
    #[error(
        "a stored key does not unwrap under this server's secret (was var/server.secret replaced?)"
    )]
    LocalKek,
    /// The store failed (our side).
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
}

/// A key's public face: what it is and its check value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyView {
    /// `component`, `zone`, `initial`.
    pub kind: String,
    /// Slot, version or initial key id.
    pub slot: String,
    /// Check value.
    pub kcv: String,
    /// `pending`, `active`, `retiring`.
    pub state: String,
    /// When stored.
    pub created_at: Millis,
    /// A retiring key's end.
    pub retire_at: Option<Millis>,
}

/// The keys the relay works with, unwrapped: the zone keys that may seal
/// a registration now (the active one first, then those still in their
/// overlap) and the DUKPT initial key.
#[derive(Debug)]
pub struct WorkingKeys {
    /// Zone keys with their KCVs, the active one first.
    pub zone: Vec<(SecretKey, String)>,
    /// The initial key id and the initial key.
    pub initial: Option<([u8; INITIAL_KEY_ID_LEN], SecretKey)>,
}

/// How long the working keys are kept unwrapped before they are read again
/// (a rotation made by another instance is seen within this).
const WORKING_KEYS_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// The relay's keys.
#[derive(Debug)]
pub struct RelayKeys {
    store: Arc<dyn Store>,
    kek: SecretKey,
    /// The working keys and when they were read.
    working: std::sync::Mutex<Option<(std::time::Instant, Arc<WorkingKeys>)>>,
}

impl RelayKeys {
    /// The keys on `store`, wrapped under a key derived from `secret`.
    pub fn new(store: Arc<dyn Store>, secret: &ServerSecret) -> Self {
        let mut bytes = secret.mac("verigate/txrelay/local-kek/v1", &[]);
        let kek = SecretKey::new(&bytes).expect("HMAC-SHA256 gives 32 bytes");
        zeroize::Zeroize::zeroize(&mut bytes);
        RelayKeys {
            store,
            kek,
            working: std::sync::Mutex::new(None),
        }
    }

    /// Forgets the working keys (a key changed here).
    fn changed(&self) {
        *self.working.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The keys to seal with at `now`, read again at most every second.
    pub async fn working(&self, now: Millis) -> Result<Arc<WorkingKeys>, KeysError> {
        if let Some((at, w)) = &*self.working.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < WORKING_KEYS_TTL {
                return Ok(w.clone());
            }
        }
        let keys = self.store.relay_keys().await?;
        let mut zone = Vec::new();
        // Active first (the store lists it first), then retiring ones
        // still inside their overlap.
        for k in keys.iter().filter(|k| k.kind == "zone") {
            let live = k.state == "active"
                || (k.state == "retiring" && k.retire_at.is_some_and(|t| t > now));
            if live {
                zone.push((self.unwrap(k)?, k.kcv.clone()));
            }
        }
        let initial = match keys.iter().find(|k| k.kind == "initial") {
            Some(k) => {
                let id: [u8; INITIAL_KEY_ID_LEN] = hex::decode(&k.slot)
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| {
                        KeysError::Conflict(format!(
                            "stored initial key id {:?} is not 16 hex digits",
                            k.slot
                        ))
                    })?;
                Some((id, self.unwrap(k)?))
            }
            None => None,
        };
        let w = Arc::new(WorkingKeys { zone, initial });
        *self.working.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), w.clone()));
        Ok(w)
    }

    fn stored(
        &self,
        kind: &str,
        slot: &str,
        key: &SecretKey,
        state: &str,
        at: Millis,
    ) -> StoredKey {
        StoredKey {
            kind: kind.into(),
            slot: slot.into(),
            wrapped: wrap::wrap(&self.kek, key),
            kcv: kcv_hex(key),
            state: state.into(),
            created_at: at,
            retire_at: None,
        }
    }

    fn unwrap(&self, k: &StoredKey) -> Result<SecretKey, KeysError> {
        wrap::unwrap(&self.kek, &k.wrapped).map_err(|_| KeysError::LocalKek)
    }

    /// A custodian enters their component (hex): its KCV to read back.
    pub async fn add_component(
        &self,
        slot: &str,
        hex: &str,
        at: Millis,
    ) -> Result<String, KeysError> {
        let slot = match slot {
            "A" | "a" => "A",
            "B" | "b" => "B",
            other => return Err(KeysError::Slot(other.to_string())),
        };
        let key = SecretKey::from_hex(hex)?;
        let k = self.stored("component", slot, &key, "pending", at);
        self.store.put_component(&k).await?;
        self.changed();
        Ok(k.kcv)
    }

    /// Combines the two entered components into the zone key, checked
    /// against `expected_kcv` (the bank's), and makes it active. With a key
    /// active, `overlap` must say how long it keeps working (a rotation).
    pub async fn activate(
        &self,
        expected_kcv: &str,
        overlap: Option<Millis>,
        at: Millis,
    ) -> Result<String, KeysError> {
        let want: [u8; KCV_LEN] = hex::decode(expected_kcv.trim())
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| KeysError::Kcv(expected_kcv.to_string()))?;
        let keys = self.store.relay_keys().await?;
        let part = |slot: &'static str| -> Result<Component, KeysError> {
            let k = keys
                .iter()
                .find(|k| k.kind == "component" && k.slot == slot)
                .ok_or(KeysError::MissingComponent(slot))?;
            Ok(Component::new(self.unwrap(k)?))
        };
        let zone = combine(&part("A")?, &part("B")?, Some(&want))?;
        let version = keys
            .iter()
            .filter(|k| k.kind == "zone")
            .filter_map(|k| k.slot.parse::<u32>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let k = self.stored("zone", &version.to_string(), &zone, "active", at);
        self.store
            .activate_zone(&k, overlap.map(|o| at.saturating_add(o)))
            .await
            .map_err(|e| match e {
                StoreError::Conflict(m) => KeysError::Conflict(m),
                other => other.into(),
            })?;
        self.changed();
        Ok(k.kcv)
    }

    /// The active zone key (for sealing registrations).
    pub async fn zone_key(&self) -> Result<SecretKey, KeysError> {
        let keys = self.store.relay_keys().await?;
        let k = keys
            .iter()
            .find(|k| k.kind == "zone" && k.state == "active")
            .ok_or(KeysError::NoZoneKey)?;
        self.unwrap(k)
    }

    /// The bank's initial key for `initial_key_id`, wrapped under the active
    /// zone key: unwrapped, checked against the bank's KCV, stored.
    pub async fn import_initial_key(
        &self,
        initial_key_id: &str,
        wrapped_hex: &str,
        expected_kcv: &str,
        at: Millis,
    ) -> Result<String, KeysError> {
        let ikid = hex::decode(initial_key_id.trim())
            .ok()
            .filter(|v| v.len() == 8)
            .ok_or_else(|| {
                KeysError::Conflict(format!(
                    "an initial key id is 16 hex digits, not {initial_key_id:?}"
                ))
            })?;
        let zone = self.zone_key().await?;
        let wrapped = hex::decode(wrapped_hex.trim())
            .map_err(|e| KeysError::Key(KeyError::Hex(e.to_string())))?;
        let ik = wrap::unwrap(&zone, &wrapped).map_err(KeysError::Unwrap)?;
        let got = kcv_hex(&ik);
        if !got.eq_ignore_ascii_case(expected_kcv.trim()) {
            return Err(KeysError::InitialKcv {
                got,
                want: expected_kcv.trim().to_uppercase(),
            });
        }
        let k = self.stored("initial", &hex::encode_upper(&ikid), &ik, "active", at);
        self.store.put_initial_key(&k).await?;
        self.changed();
        Ok(got)
    }

    /// The bank's initial key as a TR-31 version D key block protected by
    /// the active zone key (usage B1, AES; its `IK` block names the initial
    /// key id): opened, checked against the bank's KCV, stored. The id and KCV.
    pub async fn import_initial_key_block(
        &self,
        block: &str,
        expected_kcv: &str,
        at: Millis,
    ) -> Result<(String, String), KeysError> {
        let zone = self.zone_key().await?;
        let (h, ik) = verigate_keys::tr31::unwrap(&zone, block).map_err(KeysError::KeyBlock)?;
        if h.usage != "B1" || h.algorithm != 'A' {
            return Err(KeysError::Conflict(format!(
                "the key block holds a {} key of algorithm {}, not an AES DUKPT initial key (B1, A)",
                h.usage, h.algorithm
            )));
        }
        let ikid = h
            .optional("IK")
            .filter(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                KeysError::Conflict(
                    "the key block has no IK block naming the initial key id".into(),
                )
            })?
            .to_uppercase();
        let got = kcv_hex(&ik);
        if !got.eq_ignore_ascii_case(expected_kcv.trim()) {
            return Err(KeysError::InitialKcv {
                got,
                want: expected_kcv.trim().to_uppercase(),
            });
        }
        let k = self.stored("initial", &ikid, &ik, "active", at);
        self.store.put_initial_key(&k).await?;
        self.changed();
        Ok((ikid, got))
    }

    /// Every key's public face (never the key).
    pub async fn status(&self) -> Result<Vec<KeyView>, KeysError> {
        Ok(self
            .store
            .relay_keys()
            .await?
            .into_iter()
            .map(|k| KeyView {
                kind: k.kind,
                slot: k.slot,
                kcv: k.kcv,
                state: k.state,
                created_at: k.created_at,
                retire_at: k.retire_at,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Random;
    use crate::store::sqlite::SqliteStore;

    const T0: Millis = 1_800_000_000_000;
    const A: &str = "0123456789ABCDEFFEDCBA98765432100123456789ABCDEFFEDCBA9876543210";
    const B: &str = "F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1F1";

    async fn keys() -> (Arc<dyn Store>, RelayKeys, ServerSecret) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        let secret = ServerSecret::random(&Random::os());
        (store.clone(), RelayKeys::new(store, &secret), secret)
    }

    fn zone_kcv() -> String {
        let whole = combine(
            &Component::from_hex(A).unwrap(),
            &Component::from_hex(B).unwrap(),
            None,
        )
        .unwrap();
        kcv_hex(&whole)
    }

    #[tokio::test]
    async fn two_custodians_make_the_zone_key_and_the_initial_key_arrives_under_it() {
        let (store, k, _) = keys().await;
        let kcv_a = k.add_component("A", A, T0).await.unwrap();
        assert_eq!(
            kcv_a,
            hex::encode_upper(Component::from_hex(A).unwrap().kcv())
        );
        assert!(matches!(
            k.activate(&zone_kcv(), None, T0).await,
            Err(KeysError::MissingComponent("B"))
        ));
        k.add_component("b", B, T0 + 1).await.unwrap();
        // A mistyped expectation (or component): refused by the KCV.
        assert!(matches!(
            k.activate("0000000000", None, T0).await,
            Err(KeysError::Components(ComponentError::KcvMismatch { .. }))
        ));
        assert_eq!(
            k.activate(&zone_kcv(), None, T0 + 2).await.unwrap(),
            zone_kcv()
        );
        // Nothing is stored in clear: not the components, not the key.
        for row in store.relay_keys().await.unwrap() {
            let h = hex::encode_upper(&row.wrapped);
            assert!(!h.contains(&A[..16]) && !h.contains(&B[..16]), "{row:?}");
        }
        let status = k.status().await.unwrap();
        assert_eq!(
            status.len(),
            1,
            "the components went with the activation: {status:?}"
        );
        assert_eq!(
            (status[0].kind.as_str(), status[0].state.as_str()),
            ("zone", "active")
        );
        // The bank wraps an initial key under the zone key.
        let zone = k.zone_key().await.unwrap();
        let ik = SecretKey::from_hex("1273671EA26AC29AFA4D1084127652A1").unwrap();
        let wrapped = hex::encode(wrap::wrap(&zone, &ik));
        assert!(matches!(
            k.import_initial_key("1234567890123456", &wrapped, "0000000000", T0)
                .await,
            Err(KeysError::InitialKcv { .. })
        ));
        let other = SecretKey::from_hex(B).unwrap();
        let misdirected = hex::encode(wrap::wrap(&other, &ik));
        assert!(matches!(
            k.import_initial_key("1234567890123456", &misdirected, &kcv_hex(&ik), T0)
                .await,
            Err(KeysError::Unwrap(_))
        ));
        k.import_initial_key("1234567890123456", &wrapped, &kcv_hex(&ik), T0)
            .await
            .unwrap();
        assert!(k
            .status()
            .await
            .unwrap()
            .iter()
            .any(|v| v.kind == "initial" && v.slot == "1234567890123456"));
    }

    #[tokio::test]
    async fn a_rotation_keeps_the_old_key_for_its_overlap_and_needs_one() {
        let (_, k, secret) = keys().await;
        k.add_component("A", A, T0).await.unwrap();
        k.add_component("B", B, T0).await.unwrap();
        k.activate(&zone_kcv(), None, T0).await.unwrap();
        // New components for the next zone key.
        let (a2, b2) = (
            B,
            "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF",
        );
        k.add_component("A", a2, T0 + 10).await.unwrap();
        k.add_component("B", b2, T0 + 10).await.unwrap();
        let kcv2 = kcv_hex(
            &combine(
                &Component::from_hex(a2).unwrap(),
                &Component::from_hex(b2).unwrap(),
                None,
            )
            .unwrap(),
        );
        assert!(matches!(
            k.activate(&kcv2, None, T0 + 20).await,
            Err(KeysError::Conflict(_))
        ));
        k.activate(&kcv2, Some(600_000), T0 + 20).await.unwrap();
        let status = k.status().await.unwrap();
        let zones: Vec<(&str, &str, Option<Millis>)> = status
            .iter()
            .filter(|v| v.kind == "zone")
            .map(|v| (v.slot.as_str(), v.state.as_str(), v.retire_at))
            .collect();
        assert_eq!(
            zones,
            [
                ("2", "active", None),
                ("1", "retiring", Some(T0 + 20 + 600_000))
            ]
        );
        assert_eq!(kcv_hex(&k.zone_key().await.unwrap()), kcv2);
        // Another server secret cannot read the stored keys.
        let stranger = RelayKeys::new(k.store.clone(), &ServerSecret::random(&Random::os()));
        assert!(matches!(
            stranger.zone_key().await,
            Err(KeysError::LocalKek)
        ));
        drop(secret);
        assert!(matches!(
            k.add_component("C", A, T0).await,
            Err(KeysError::Slot(_))
        ));
    }
}

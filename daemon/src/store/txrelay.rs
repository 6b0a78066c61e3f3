//! The carrier–bank relay's subscriber directory: which SIM (IMSI) each
//! number is on, whether the line is active, and when its SIM last
//! changed (the SIM-swap fraud check, and CAMARA SIM Swap).

use super::*;
use async_trait::async_trait;

/// A line of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// E.164 with `+`.
    pub msisdn: String,
    /// The SIM's IMSI.
    pub imsi: String,
    /// Whether the line may transact.
    pub status: LineStatus,
    /// When the number last moved to another SIM (None: never recorded).
    pub sim_changed_at: Option<Millis>,
    /// When this record last changed.
    pub updated_at: Millis,
}

/// A line's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineStatus {
    /// In service.
    Active,
    /// Barred for now (lost phone, unpaid).
    Suspended,
    /// Out of service for good.
    Ceased,
}

impl LineStatus {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            LineStatus::Active => "active",
            LineStatus::Suspended => "suspended",
            LineStatus::Ceased => "ceased",
        }
    }

    /// From its stored (or imported) form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(LineStatus::Active),
            "suspended" => Some(LineStatus::Suspended),
            "ceased" => Some(LineStatus::Ceased),
            _ => None,
        }
    }
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Upserted {
    /// New lines.
    pub added: usize,
    /// Lines that changed (status, IMSI).
    pub changed: usize,
    /// Lines whose IMSI changed: a SIM change recorded.
    pub sim_changes: usize,
}

/// The subscriber directory.
#[async_trait]
pub trait SubscriberStore: Send + Sync {
    /// Adds or updates lines in one write. A line whose IMSI differs from
    /// the stored one records a SIM change at its `sim_changed_at`, or at
    /// `at` when the import gave none; an unchanged line is left as it is.
    async fn upsert_subscribers(&self, lines: &[Subscriber], at: Millis) -> StoreResult<Upserted>;
    /// The line of a number.
    async fn get_subscriber(&self, msisdn: &str) -> StoreResult<Option<Subscriber>>;
}

/// A key the relay keeps, wrapped (RFC 3394) under the daemon's local
/// key-encryption key; never in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// What it is: `component` (A or B, waiting for activation), `zone`
    /// (the zone key, by version), `initial` (the DUKPT initial key).
    pub kind: String,
    /// `A`/`B` for a component; the version for a zone key; the initial
    /// key id (hex) for an initial key.
    pub slot: String,
    /// The key, wrapped.
    pub wrapped: Vec<u8>,
    /// Its check value (hex).
    pub kcv: String,
    /// `pending` (a component), `active`, `retiring` (an old zone key
    /// finishing in-flight work until `retire_at`).
    pub state: String,
    /// When stored.
    pub created_at: Millis,
    /// A retiring key's end.
    pub retire_at: Option<Millis>,
}

/// The relay's keys.
#[async_trait]
pub trait RelayKeyStore: Send + Sync {
    /// Stores a custodian's component (replacing that slot's pending one).
    async fn put_component(&self, k: &StoredKey) -> StoreResult<()>;
    /// Makes `zone` the active zone key in one write: the pending
    /// components go, the active key (if any) retires at `retire_at`.
    /// `Conflict` if a key is active and `retire_at` is None (a rotation
    /// must say how long the old key overlaps).
    async fn activate_zone(&self, zone: &StoredKey, retire_at: Option<Millis>) -> StoreResult<()>;
    /// Stores the initial key (replacing any).
    async fn put_initial_key(&self, k: &StoredKey) -> StoreResult<()>;
    /// Every key kept: components, zone keys (active first), the initial key.
    async fn relay_keys(&self) -> StoreResult<Vec<StoredKey>>;
    /// The next DUKPT transaction counter of `initial_key_id` (hex), taken
    /// durably in one write: each counter is handed out once, in order,
    /// keeping to the 16-one-bits rule; None once they are exhausted (a new
    /// initial key is needed).
    async fn allocate_counter(&self, initial_key_id: &str) -> StoreResult<Option<u32>>;
}

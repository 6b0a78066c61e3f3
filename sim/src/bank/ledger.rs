//! The bank's side of the relay, sans-IO: it holds the BDK and the
//! accounts, runs its half of the key ceremony (two zone-key components for
//! the carrier's custodians, the initial key wrapped under the zone key),
//! keeps the carrier's registrations, and executes transactions after
//! re-deriving their key from the KSN, opening them, and checking that the
//! IMSI and MSISDN are the registered ones. Replayed counters (and those
//! older than the replay window), sequence numbers below the last answered,
//! and altered messages are refused; a repeated registration or message
//! gets its first answer again (executed once).

use rand::RngCore;
use std::collections::HashMap;
use verigate_keys::components::Component;
use verigate_keys::dukpt::{self, Ksn, INITIAL_KEY_ID_LEN};
use verigate_keys::envelope;
use verigate_keys::kcv::kcv_hex;
use verigate_keys::relay::{
    self, AuthInfo, BankResult, Outcome, RegistrationRequest, SignedResult, TransactionPlain,
    TransactionRequest,
};
use verigate_keys::{wrap, SecretKey};

/// How far a registration's time may be from the bank's.
pub const SKEW_MS: i64 = 5 * 60 * 1000;

/// How many of an initial key id's latest counters the bank remembers.
/// Registrations sent side by side arrive out of order, so a counter below
/// the highest is taken if the window holds it as unused; below the window
/// it cannot be told from a replay and is refused.
pub const REPLAY_WINDOW: usize = 1024;

/// The counters registered lately for one initial key id.
#[derive(Debug, Default)]
struct CounterWindow {
    seen: std::collections::BTreeSet<u32>,
}

impl CounterWindow {
    /// Takes `counter` once.
    fn take(&mut self, counter: u32) -> Result<(), BankError> {
        if self.seen.contains(&counter) {
            return Err(BankError::CounterReplayed(counter));
        }
        if self.seen.len() >= REPLAY_WINDOW {
            let oldest = *self.seen.first().expect("full");
            if counter < oldest {
                return Err(BankError::CounterTooOld { counter, oldest });
            }
            self.seen.pop_first();
        }
        self.seen.insert(counter);
        Ok(())
    }
}

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A new registration.
    New,
    /// The same registration again (the carrier lost the first answer).
    Repeat,
}

/// Why the bank refused a request (each a stable code for the carrier).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    /// No key ceremony has given the bank a zone key yet.
    #[error("no zone key: run the key ceremony first")]
    NoZoneKey,
    /// The carrier holds another zone key (its KCV differs).
    #[error("the carrier's zone key (KCV {0}) is not the bank's")]
    WrongZoneKey(String),
    /// The envelope does not open: altered, or not sealed by the holder of the key.
    #[error(
        "the message does not open: altered, or sealed under another key or for another place"
    )]
    Forged,
    /// The JSON inside is not what it should be.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A registration id used already, for another terminal or counter.
    #[error("registration {0} exists with other contents")]
    DuplicateRegistration(String),
    /// A KSN counter registered before: a replay.
    #[error("KSN counter {0:#x} was registered before: a replay")]
    CounterReplayed(u32),
    /// A KSN counter older than every one in the replay window: too far
    /// out of order to tell from a replay.
    #[error("KSN counter {counter:#x} is older than the replay window (oldest kept {oldest:#x})")]
    CounterTooOld {
        /// This one.
        counter: u32,
        /// The oldest counter the window holds.
        oldest: u32,
    },
    /// Not a KSN of a key id the bank issued.
    #[error("unknown key id {0}")]
    UnknownKeyId(String),
    /// The registration's time is too far from the bank's.
    #[error("the registration was issued {0} ms away from now")]
    Stale(i64),
    /// No such registration.
    #[error("no registration {0}")]
    UnknownRegistration(String),
    /// The message's KSN is not its registration's.
    #[error("the message's KSN is not its registration's")]
    KsnMismatch,
    /// The IMSI or MSISDN in the message is not the registered one.
    #[error("the message's IMSI/MSISDN is not the registered terminal's")]
    AuthMismatch,
    /// A sequence number below the registration's last: replayed or out of order.
    #[error("message {seq} comes after {last}: replayed or out of order")]
    SeqNotAbove {
        /// This one.
        seq: u32,
        /// The last one.
        last: u32,
    },
    /// Key material or a KSN was unusable.
    #[error("{0}")]
    Key(String),
}

impl BankError {
    /// A stable code for the carrier.
    pub fn code(&self) -> &'static str {
        match self {
            BankError::NoZoneKey => "no_zone_key",
            BankError::WrongZoneKey(_) => "wrong_zone_key",
            BankError::Forged => "forged",
            BankError::Malformed(_) => "malformed",
            BankError::DuplicateRegistration(_) => "duplicate_registration",
            BankError::CounterReplayed(_) => "counter_replayed",
            BankError::CounterTooOld { .. } => "counter_too_old",
            BankError::UnknownKeyId(_) => "unknown_key_id",
            BankError::Stale(_) => "stale",
            BankError::UnknownRegistration(_) => "unknown_registration",
            BankError::KsnMismatch => "ksn_mismatch",
            BankError::AuthMismatch => "auth_mismatch",
            BankError::SeqNotAbove { .. } => "seq_replayed",
            BankError::Key(_) => "bad_key",
        }
    }
}

/// A registration the bank keeps.
#[derive(Debug, Clone)]
pub struct Registration {
    /// What the carrier vouched for.
    pub auth: AuthInfo,
    /// When it arrived.
    pub at: i64,
    /// The highest message number answered.
    pub last_seq: u32,
    /// Answers by message number (a repeat gets the same).
    pub answers: HashMap<u32, SignedResult>,
}

/// An executed payment, for the control API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Executed {
    /// The bank's reference.
    pub bank_ref: String,
    /// The registration.
    pub registration_id: String,
    /// Who paid, as the carrier vouched.
    pub msisdn: String,
    /// The IMSI.
    pub imsi: String,
    /// From, to, how much.
    pub from_account: String,
    /// To.
    pub to_account: String,
    /// Minor units.
    pub amount_minor: u64,
    /// ISO 4217.
    pub currency: String,
    /// When.
    pub at: i64,
}

/// What the ceremony hands the carrier's custodians.
#[derive(Debug, Clone)]
pub struct Ceremony {
    /// Custodian A's component (hex) and its KCV.
    pub a: (String, String),
    /// Custodian B's.
    pub b: (String, String),
    /// The combined zone key's KCV.
    pub kcv: String,
}

/// The bank.
#[derive(Debug)]
pub struct Bank {
    bdk: SecretKey,
    /// Its id (the first 4 bytes of every initial key id it issues).
    bdk_id: [u8; 4],
    /// The zone key, and the one before it (registrations sealed under it
    /// while the carrier rotates are still taken).
    zones: Vec<SecretKey>,
    accounts: HashMap<String, i64>,
    registrations: HashMap<String, Registration>,
    /// The counters registered lately, per initial key id.
    counters: HashMap<[u8; INITIAL_KEY_ID_LEN], CounterWindow>,
    executed: Vec<Executed>,
    next_ref: u64,
}

impl Bank {
    /// A bank with `bdk`, whose initial key ids start with `bdk_id`.
    pub fn new(bdk: SecretKey, bdk_id: [u8; 4]) -> Self {
        Bank {
            bdk,
            bdk_id,
            zones: Vec::new(),
            accounts: HashMap::new(),
            registrations: HashMap::new(),
            counters: HashMap::new(),
            executed: Vec::new(),
            next_ref: 1,
        }
    }

    /// Opens (or tops up) an account.
    pub fn set_balance(&mut self, account: &str, minor: i64) {
        self.accounts.insert(account.to_string(), minor);
    }

    /// An account's balance.
    pub fn balance(&self, account: &str) -> Option<i64> {
        self.accounts.get(account).copied()
    }

    /// Every account, by name.
    pub fn accounts(&self) -> Vec<(String, i64)> {
        let mut v: Vec<_> = self.accounts.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort();
        v
    }

    /// The registrations (id, auth, time), oldest first.
    pub fn registrations(&self) -> Vec<(String, AuthInfo, i64)> {
        let mut v: Vec<_> = self
            .registrations
            .iter()
            .map(|(id, r)| (id.clone(), r.auth.clone(), r.at))
            .collect();
        v.sort_by_key(|r| r.2);
        v
    }

    /// The executed payments, in order.
    pub fn executed(&self) -> &[Executed] {
        &self.executed
    }

    /// The bank's half of the ceremony: a new zone key as two components
    /// (for two custodians) with their KCVs and the whole one's. The bank
    /// keeps the zone key, and the previous one for registrations still
    /// sealed under it while the carrier rotates.
    pub fn ceremony(&mut self, rng: &mut impl RngCore) -> Ceremony {
        let mut bytes = [0u8; 32];
        let mut part = |rng: &mut dyn RngCore| {
            rng.fill_bytes(&mut bytes);
            SecretKey::new(&bytes).expect("32 bytes")
        };
        let a = part(rng);
        let b = part(rng);
        zeroize::Zeroize::zeroize(&mut bytes);
        let zone = verigate_keys::components::combine(
            &Component::new(a.clone()),
            &Component::new(b.clone()),
            None,
        )
        .expect("two random components differ");
        let c = Ceremony {
            a: (a.to_hex(), kcv_hex(&a)),
            b: (b.to_hex(), kcv_hex(&b)),
            kcv: kcv_hex(&zone),
        };
        self.zones.insert(0, zone);
        self.zones.truncate(2);
        c
    }

    /// The KCV of the zone key, if the ceremony ran.
    pub fn zone_kcv(&self) -> Option<String> {
        self.zones.first().map(kcv_hex)
    }

    /// Issues an initial key for the carrier's key id `derivation_id`: the
    /// initial key id, the initial key wrapped under the zone key (hex), and
    /// the initial key's KCV.
    pub fn issue_initial_key(
        &self,
        derivation_id: [u8; 4],
    ) -> Result<(String, String, String), BankError> {
        let zone = self.zones.first().ok_or(BankError::NoZoneKey)?;
        let mut ikid = [0u8; INITIAL_KEY_ID_LEN];
        ikid[..4].copy_from_slice(&self.bdk_id);
        ikid[4..].copy_from_slice(&derivation_id);
        let ik = dukpt::initial_key(&self.bdk, &ikid).map_err(|e| BankError::Key(e.to_string()))?;
        Ok((
            hex::encode_upper(ikid),
            hex::encode_upper(wrap::wrap(zone, &ik)),
            kcv_hex(&ik),
        ))
    }

    /// [`Bank::issue_initial_key`] as a TR-31 version D key block under the
    /// zone key (usage B1, AES, mode X; the id in its `IK` block), and the
    /// initial key's KCV.
    pub fn issue_initial_key_block(
        &self,
        derivation_id: [u8; 4],
        rng: &mut impl RngCore,
    ) -> Result<(String, String, String), BankError> {
        let zone = self.zones.first().ok_or(BankError::NoZoneKey)?;
        let mut ikid = [0u8; INITIAL_KEY_ID_LEN];
        ikid[..4].copy_from_slice(&self.bdk_id);
        ikid[4..].copy_from_slice(&derivation_id);
        let ik = dukpt::initial_key(&self.bdk, &ikid).map_err(|e| BankError::Key(e.to_string()))?;
        let header = verigate_keys::tr31::Header {
            usage: "B1".into(),
            algorithm: 'A',
            mode: 'X',
            version: "00".into(),
            exportability: 'N',
            optional: vec![("IK".into(), hex::encode_upper(ikid))],
        };
        let block = verigate_keys::tr31::wrap(zone, &header, &ik, rng)
            .map_err(|e| BankError::Key(e.to_string()))?;
        Ok((hex::encode_upper(ikid), block, kcv_hex(&ik)))
    }

    /// A registration from the carrier; the same one again is a repeat.
    pub fn register(
        &mut self,
        req: &RegistrationRequest,
        now: i64,
    ) -> Result<Registered, BankError> {
        if self.zones.is_empty() {
            return Err(BankError::NoZoneKey);
        }
        let zone = self
            .zones
            .iter()
            .find(|z| req.zone_kcv.eq_ignore_ascii_case(&kcv_hex(z)))
            .ok_or_else(|| BankError::WrongZoneKey(req.zone_kcv.clone()))?;
        let sealed = hex::decode(&req.sealed).map_err(|e| BankError::Malformed(e.to_string()))?;
        let plain = envelope::open(
            zone,
            &relay::registration_aad(&req.registration_id),
            &sealed,
        )
        .map_err(|_| BankError::Forged)?;
        let auth: AuthInfo =
            serde_json::from_slice(&plain).map_err(|e| BankError::Malformed(e.to_string()))?;
        let ksn = Ksn::from_hex(&auth.ksn).map_err(|e| BankError::Key(e.to_string()))?;
        if ksn.initial_key_id[..4] != self.bdk_id {
            return Err(BankError::UnknownKeyId(hex::encode_upper(
                ksn.initial_key_id,
            )));
        }
        if !dukpt::is_valid_counter(ksn.counter) {
            return Err(BankError::Key(format!(
                "counter {:#x} is not a DUKPT counter",
                ksn.counter
            )));
        }
        if let Some(had) = self.registrations.get(&req.registration_id) {
            return if had.auth == auth {
                Ok(Registered::Repeat)
            } else {
                Err(BankError::DuplicateRegistration(
                    req.registration_id.clone(),
                ))
            };
        }
        if (now - auth.issued_at).abs() > SKEW_MS {
            return Err(BankError::Stale(now - auth.issued_at));
        }
        self.counters
            .entry(ksn.initial_key_id)
            .or_default()
            .take(ksn.counter)?;
        self.registrations.insert(
            req.registration_id.clone(),
            Registration {
                auth,
                at: now,
                last_seq: 0,
                answers: HashMap::new(),
            },
        );
        Ok(Registered::New)
    }

    /// A transaction message: opened with the key re-derived from its KSN,
    /// its auth info compared with the registration's, executed once, and
    /// the result MACed.
    pub fn transact(
        &mut self,
        req: &TransactionRequest,
        now: i64,
    ) -> Result<SignedResult, BankError> {
        let reg = self
            .registrations
            .get(&req.registration_id)
            .ok_or_else(|| BankError::UnknownRegistration(req.registration_id.clone()))?;
        if !req.ksn.eq_ignore_ascii_case(&reg.auth.ksn) {
            return Err(BankError::KsnMismatch);
        }
        let ksn = Ksn::from_hex(&req.ksn).map_err(|e| BankError::Key(e.to_string()))?;
        let key = dukpt::working_key(&self.bdk, &ksn, relay::DATA_KEY.0, relay::DATA_KEY.1)
            .map_err(|e| BankError::Key(e.to_string()))?;
        let sealed = hex::decode(&req.sealed).map_err(|e| BankError::Malformed(e.to_string()))?;
        let plain = envelope::open(
            &key,
            &relay::transaction_aad(&req.registration_id, &ksn, req.seq),
            &sealed,
        )
        .map_err(|_| BankError::Forged)?;
        let msg: TransactionPlain =
            serde_json::from_slice(&plain).map_err(|e| BankError::Malformed(e.to_string()))?;
        if msg.auth.imsi != reg.auth.imsi
            || msg.auth.msisdn != reg.auth.msisdn
            || msg.auth.ksn != reg.auth.ksn
        {
            return Err(BankError::AuthMismatch);
        }
        // A repeat (the carrier lost our answer): the first answer again.
        if let Some(a) = reg.answers.get(&req.seq) {
            return Ok(a.clone());
        }
        if req.seq <= reg.last_seq {
            return Err(BankError::SeqNotAbove {
                seq: req.seq,
                last: reg.last_seq,
            });
        }
        let t = &msg.transfer;
        let decline = |why: &str| (Outcome::Declined, Some(why.to_string()), None);
        let (outcome, reason, bank_ref) = match (
            self.accounts.get(&t.from_account),
            self.accounts.get(&t.to_account),
        ) {
            (None, _) => decline("unknown payer account"),
            (_, None) => decline("unknown payee account"),
            _ if t.from_account == t.to_account => decline("payer and payee are the same account"),
            (Some(&bal), _) if i64::try_from(t.amount_minor).map_or(true, |a| a > bal) => {
                decline("insufficient funds")
            }
            _ if t.amount_minor == 0 => decline("amount must be positive"),
            _ => {
                let amount = i64::try_from(t.amount_minor).expect("checked against the balance");
                *self.accounts.get_mut(&t.from_account).expect("exists") -= amount;
                *self.accounts.get_mut(&t.to_account).expect("exists") += amount;
                let bank_ref = format!("bank_{:08}", self.next_ref);
                self.next_ref += 1;
                self.executed.push(Executed {
                    bank_ref: bank_ref.clone(),
                    registration_id: req.registration_id.clone(),
                    msisdn: msg.auth.msisdn.clone(),
                    imsi: msg.auth.imsi.clone(),
                    from_account: t.from_account.clone(),
                    to_account: t.to_account.clone(),
                    amount_minor: t.amount_minor,
                    currency: t.currency.clone(),
                    at: now,
                });
                (Outcome::Executed, None, Some(bank_ref))
            }
        };
        let result = BankResult {
            registration_id: req.registration_id.clone(),
            ksn: ksn.to_hex(),
            seq: req.seq,
            outcome,
            reason,
            bank_ref,
        };
        let mac_key = dukpt::working_key(&self.bdk, &ksn, relay::MAC_KEY.0, relay::MAC_KEY.1)
            .map_err(|e| BankError::Key(e.to_string()))?;
        let signed = SignedResult {
            mac: relay::result_mac(&mac_key, &result),
            result,
        };
        let reg = self
            .registrations
            .get_mut(&req.registration_id)
            .expect("looked up above");
        reg.last_seq = req.seq;
        reg.answers.insert(req.seq, signed.clone());
        Ok(signed)
    }
}

#[cfg(test)]
mod tests;

//! Sessions and transactions as the front ends see them: a session is
//! opened on the carrier's word for the terminal (its DUKPT counter taken,
//! its registration stored and queued for the bank); a transaction is
//! stored under an idempotency key and queued for relay. Both answer when
//! the bank has, or after `answer_wait` with the work still going on.

use super::{TxRelay, TxRelayError};
use crate::store::{
    Millis, NewTransaction, SessionState, TxAdded, TxSession, TxState, TxTransaction,
};
use crate::verify::phone;
use verigate_keys::dukpt::Ksn;
use verigate_keys::relay::Transfer;

/// Longest account name or reference the relay takes.
const MAX_ACCOUNT_LEN: usize = 34;
const MAX_REFERENCE_LEN: usize = 140;

/// How often a waiting request looks at the store again (another instance
/// may have done the work).
const RECHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// A payment as asked for, checked: what was wrong names its field.
pub fn check_transfer(t: &Transfer) -> Result<(), TxRelayError> {
    let bad = |m: String| Err(TxRelayError::BadTransfer(m));
    for (field, v) in [
        ("from_account", &t.from_account),
        ("to_account", &t.to_account),
    ] {
        if v.trim().is_empty()
            || v.chars().count() > MAX_ACCOUNT_LEN
            || v.chars().any(char::is_control)
        {
            return bad(format!(
                "{field} must be 1 to {MAX_ACCOUNT_LEN} printable characters"
            ));
        }
    }
    if t.from_account == t.to_account {
        return bad("from_account and to_account must differ".into());
    }
    if t.amount_minor == 0 || t.amount_minor > i64::MAX as u64 {
        return bad("amount_minor must be a positive whole number of minor units".into());
    }
    if t.currency.len() != 3 || !t.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return bad(format!(
            "currency must be an ISO 4217 code such as \"GBP\", not {:?}",
            t.currency
        ));
    }
    if t.reference.chars().count() > MAX_REFERENCE_LEN || t.reference.chars().any(char::is_control)
    {
        return bad(format!(
            "reference must be at most {MAX_REFERENCE_LEN} printable characters"
        ));
    }
    Ok(())
}

/// The request hash an idempotency key is held to.
fn request_hash(session_id: &str, t: &Transfer) -> String {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(&(session_id, t)).expect("a transfer serializes");
    hex::encode(Sha256::digest(json))
}

/// What adding a transaction gave.
#[derive(Debug, Clone)]
pub struct Paid {
    /// The transaction now (final, or queued when the bank has not answered yet).
    pub tx: TxTransaction,
    /// False when an idempotency key found it.
    pub new: bool,
}

impl TxRelay {
    /// Opens a session for `front_end`: the carrier vouches for the
    /// terminal, takes the next DUKPT counter and stores the registration;
    /// answers once the bank took it (or refused), or after `wait` with it
    /// still registering.
    pub async fn open_session(
        &self,
        front_end: &str,
        (imsi, msisdn): (&str, &str),
        bank: &str,
        wait: std::time::Duration,
        now: Millis,
    ) -> Result<TxSession, TxRelayError> {
        let s = &self.settings;
        let ours = s.bank.as_ref().ok_or(TxRelayError::NoBank)?;
        if bank != ours.name {
            return Err(TxRelayError::UnknownBank(bank.to_string()));
        }
        let sub = match self.vouch(imsi, msisdn, s.max_sim_age, now).await {
            Ok(sub) => sub,
            Err(e) => {
                if !matches!(e, TxRelayError::Store(_)) {
                    crate::metrics::relay("vouch", e.code());
                }
                return Err(e);
            }
        };
        let keys = self.keys.working(now).await.map_err(TxRelayError::Keys)?;
        if keys.zone.is_empty() {
            return Err(TxRelayError::Keys(super::keys::KeysError::NoZoneKey));
        }
        let (ikid, _) = keys
            .initial
            .as_ref()
            .ok_or(TxRelayError::Keys(super::keys::KeysError::NoInitialKey))?;
        let ikid_hex = hex::encode_upper(ikid);
        let counter = self
            .store
            .allocate_counter(&ikid_hex)
            .await?
            .ok_or(TxRelayError::CountersExhausted(ikid_hex))?;
        let ksn = Ksn {
            initial_key_id: *ikid,
            counter,
        };
        let session = TxSession {
            id: self.rng.id("txs", now),
            front_end: front_end.to_string(),
            bank: ours.name.clone(),
            msisdn: sub.msisdn,
            imsi: sub.imsi,
            ksn: ksn.to_hex(),
            issued_at: now,
            expires_at: now + s.session_ttl,
            state: SessionState::Registering,
            error_code: None,
            error: None,
            attempts: 0,
            next_attempt_at: now,
        };
        self.store.create_tx_session(&session).await?;
        self.queues.registrations.notify_one();
        tracing::info!(
            session = %session.id,
            front_end,
            msisdn = %phone::mask(&session.msisdn),
            "relay session opened"
        );
        if wait.is_zero() {
            return Ok(session);
        }
        self.session(front_end, &session.id, wait).await
    }

    /// A payment by SMS from `msisdn` (the network's word): the SIM from
    /// the directory, a session opened and the payment queued under
    /// `idempotency_key`, without waiting for the bank.
    pub async fn pay_by_sms(
        &self,
        msisdn: &str,
        transfer: &Transfer,
        idempotency_key: &str,
        now: Millis,
    ) -> Result<Paid, TxRelayError> {
        check_transfer(transfer)?;
        let bank = self
            .settings
            .bank
            .as_ref()
            .ok_or(TxRelayError::NoBank)?
            .name
            .clone();
        let n = self.number(msisdn)?;
        let sub = self
            .store
            .get_subscriber(&n)
            .await?
            .ok_or_else(|| TxRelayError::UnknownSubscriber(phone::mask(&n)))?;
        let zero = std::time::Duration::ZERO;
        let session = self
            .open_session(super::MO_FRONT_END, (&sub.imsi, &n), &bank, zero, now)
            .await?;
        self.pay(
            super::MO_FRONT_END,
            &session.id,
            Some(idempotency_key),
            transfer,
            zero,
            now,
        )
        .await
    }

    /// A session of `front_end`, waiting up to `wait` while it registers.
    pub async fn session(
        &self,
        front_end: &str,
        id: &str,
        wait: std::time::Duration,
    ) -> Result<TxSession, TxRelayError> {
        self.waiters
            .poll(
                id,
                wait,
                RECHECK,
                |_| async {
                    self.store
                        .get_tx_session(id)
                        .await?
                        .filter(|s| s.front_end == front_end)
                        .ok_or_else(|| TxRelayError::NoSession(id.to_string()))
                },
                |s| s.state != SessionState::Registering,
            )
            .await
    }

    /// Adds a payment to a session of `front_end` (once per idempotency
    /// key); answers once the bank has, or after `wait` with it still
    /// queued.
    pub async fn pay(
        &self,
        front_end: &str,
        session_id: &str,
        idempotency_key: Option<&str>,
        transfer: &Transfer,
        wait: std::time::Duration,
        now: Millis,
    ) -> Result<Paid, TxRelayError> {
        check_transfer(transfer)?;
        let hash = request_hash(session_id, transfer);
        let added = self
            .store
            .add_tx_transaction(&NewTransaction {
                id: self.rng.id("txt", now),
                session_id: session_id.to_string(),
                front_end: front_end.to_string(),
                idempotency_key: idempotency_key.map(str::to_string),
                request_hash: hash.clone(),
                transfer: serde_json::to_string(transfer).expect("a transfer serializes"),
                at: now,
            })
            .await?;
        let (tx, new) = match added {
            TxAdded::Added(t) => {
                self.queues.relays.notify_one();
                (t, true)
            }
            TxAdded::Existing(t) if t.request_hash == hash => (t, false),
            TxAdded::Existing(_) => return Err(TxRelayError::IdempotencyKeyReused),
            TxAdded::NoSession => return Err(TxRelayError::NoSession(session_id.to_string())),
            TxAdded::SessionClosed(s) => {
                return Err(TxRelayError::SessionClosed {
                    id: s.id,
                    why: if s.state == SessionState::Refused {
                        format!(
                            "it was refused ({})",
                            s.error_code.as_deref().unwrap_or("refused")
                        )
                    } else {
                        "it has expired".into()
                    },
                })
            }
        };
        let tx = if tx.state == TxState::Queued && !wait.is_zero() {
            self.transaction(front_end, &tx.id, wait).await?
        } else {
            tx
        };
        Ok(Paid { tx, new })
    }

    /// A transaction of `front_end`, waiting up to `wait` while it is queued.
    pub async fn transaction(
        &self,
        front_end: &str,
        id: &str,
        wait: std::time::Duration,
    ) -> Result<TxTransaction, TxRelayError> {
        self.waiters
            .poll(
                id,
                wait,
                RECHECK,
                |_| async {
                    self.store
                        .get_tx_transaction(id)
                        .await?
                        .filter(|t| t.front_end == front_end)
                        .ok_or_else(|| TxRelayError::NoTransaction(id.to_string()))
                },
                |t| t.state != TxState::Queued,
            )
            .await
    }

    /// A session's transactions, in order (the front end's own only).
    pub async fn transactions_of(
        &self,
        front_end: &str,
        session_id: &str,
    ) -> Result<Vec<TxTransaction>, TxRelayError> {
        self.session(front_end, session_id, std::time::Duration::ZERO)
            .await?;
        Ok(self.store.tx_transactions_of(session_id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Transfer {
        Transfer {
            from_account: "alice".into(),
            to_account: "shop".into(),
            amount_minor: 1250,
            currency: "GBP".into(),
            reference: "order 7".into(),
        }
    }

    #[test]
    fn a_payment_is_checked_field_by_field() {
        assert!(check_transfer(&t()).is_ok());
        type Spoil = fn(&mut Transfer);
        let cases: [(Spoil, &str); 6] = [
            (|t| t.from_account.clear(), "from_account"),
            (|t| t.to_account = "x".repeat(35), "to_account"),
            (|t| t.to_account = "alice".into(), "must differ"),
            (|t| t.amount_minor = 0, "amount_minor"),
            (|t| t.currency = "gbp".into(), "currency"),
            (|t| t.reference = "a\nb".into(), "reference"),
        ];
        for (spoil, field) in cases {
            let mut bad = t();
            spoil(&mut bad);
            let e = check_transfer(&bad).unwrap_err();
            assert!(e.to_string().contains(field), "{e}");
            assert_eq!(e.code(), "invalid_field");
        }
    }

    #[test]
    fn the_request_hash_binds_the_session_and_every_field() {
        let h = request_hash("txs_1", &t());
        assert_eq!(h, request_hash("txs_1", &t()));
        assert_ne!(h, request_hash("txs_2", &t()));
        let mut other = t();
        other.amount_minor += 1;
        assert_ne!(h, request_hash("txs_1", &other));
    }
}

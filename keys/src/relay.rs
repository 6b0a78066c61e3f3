//! The carrier–bank relay's messages (CN102457842A), shared by the
//! carrier (`verigate`) and the bank (its simulator, or a bank's own
//! implementation of this contract):
//!
//! 1. **Registration** (`POST /v1/registrations` at the bank): the carrier
//!    vouches for the terminal: [`AuthInfo`] {IMSI, MSISDN, KSN, time},
//!    sealed under the zone key with associated data naming the
//!    registration.
//! 2. **Transaction** (`POST /v1/transactions`): the terminal's message and
//!    the same auth info, sealed under the transaction's DUKPT working key
//!    (AES-256, data both ways) with associated data binding the KSN, the
//!    registration and the message's sequence number.
//! 3. **Result**: the bank's answer, MACed (AES-CMAC) under the
//!    transaction's DUKPT MAC key, so the carrier knows it came from the
//!    bank that holds the BDK.

use crate::dukpt::{KeyType, KeyUsage, Ksn};
use serde::{Deserialize, Serialize};

/// What a transaction's messages are sealed with.
pub const DATA_KEY: (KeyUsage, KeyType) = (KeyUsage::DataBoth, KeyType::Aes256);
/// What the bank's results are MACed with.
pub const MAC_KEY: (KeyUsage, KeyType) = (KeyUsage::MacBoth, KeyType::Aes128);

/// The carrier's word on the terminal: who it is and which key serial
/// number its transaction uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthInfo {
    /// The SIM's IMSI (15 digits).
    pub imsi: String,
    /// The subscriber's number, E.164.
    pub msisdn: String,
    /// The transaction's KSN (24 hex digits).
    pub ksn: String,
    /// When the carrier checked the subscriber (Unix ms).
    pub issued_at: i64,
}

/// The registration request (the auth info sealed under the zone key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRequest {
    /// The carrier's id for it.
    pub registration_id: String,
    /// The zone key's check value (hex), so a bank holding another zone
    /// key says so instead of "forged".
    pub zone_kcv: String,
    /// [`AuthInfo`] as JSON, sealed (hex).
    pub sealed: String,
}

/// A payment the terminal asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// The payer's account at the bank.
    pub from_account: String,
    /// The payee's account.
    pub to_account: String,
    /// Amount in minor units (pence, fen).
    pub amount_minor: u64,
    /// ISO 4217.
    pub currency: String,
    /// The payer's reference.
    #[serde(default)]
    pub reference: String,
}

/// What a transaction message holds once opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionPlain {
    /// The auth info the registration carried (the bank compares them).
    pub auth: AuthInfo,
    /// The payment.
    pub transfer: Transfer,
}

/// The transaction request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionRequest {
    /// The registration it belongs to.
    pub registration_id: String,
    /// Its KSN (24 hex digits): the bank derives the key from it.
    pub ksn: String,
    /// The message's number within the registration (from 1): a repeat
    /// gets the first answer again, an older one is refused.
    pub seq: u32,
    /// [`TransactionPlain`] as JSON, sealed (hex).
    pub sealed: String,
}

/// Whether the bank executed the payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done: the money moved.
    Executed,
    /// Refused by the bank (funds, accounts): nothing moved.
    Declined,
}

/// The bank's answer to one transaction message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankResult {
    /// The registration.
    pub registration_id: String,
    /// The KSN.
    pub ksn: String,
    /// The message.
    pub seq: u32,
    /// Executed or declined.
    pub outcome: Outcome,
    /// Why declined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The bank's reference of an executed payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_ref: Option<String>,
}

/// A MACed result, as the bank answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedResult {
    /// The result.
    pub result: BankResult,
    /// AES-CMAC of `result`'s JSON under the KSN's MAC key (hex).
    pub mac: String,
}

/// Associated data of a registration.
pub fn registration_aad(registration_id: &str) -> Vec<u8> {
    format!("verigate-relay/registration/v1\0{registration_id}").into_bytes()
}

/// Associated data of a transaction message.
pub fn transaction_aad(registration_id: &str, ksn: &Ksn, seq: u32) -> Vec<u8> {
    format!(
        "verigate-relay/transaction/v1\0{registration_id}\0{}\0{seq}",
        ksn.to_hex()
    )
    .into_bytes()
}

/// The bytes a result's MAC covers: its JSON as serialized (field order
/// is the struct's, so both sides make the same bytes).
pub fn result_bytes(r: &BankResult) -> Vec<u8> {
    serde_json::to_vec(r).expect("a result serializes")
}

/// The MAC of a result under `mac_key` (hex).
pub fn result_mac(mac_key: &crate::SecretKey, r: &BankResult) -> String {
    hex::encode_upper(crate::kcv::cmac(mac_key, &result_bytes(r)))
}

/// Whether `signed` carries a genuine MAC under `mac_key` (constant time).
pub fn verify_result(mac_key: &crate::SecretKey, signed: &SignedResult) -> bool {
    use subtle::ConstantTimeEq;
    let want = crate::kcv::cmac(mac_key, &result_bytes(&signed.result));
    match hex::decode(&signed.mac) {
        Ok(got) => bool::from(want.as_slice().ct_eq(&got)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dukpt::working_key;
    use crate::SecretKey;

    #[test]
    fn a_result_macs_under_the_ksns_key_and_any_change_breaks_it() {
        let bdk = SecretKey::from_hex("FEDCBA9876543210F1F1F1F1F1F1F1F1").unwrap();
        let ksn = Ksn::from_hex("123456789012345600000001").unwrap();
        let key = working_key(&bdk, &ksn, MAC_KEY.0, MAC_KEY.1).unwrap();
        let result = BankResult {
            registration_id: "reg_1".into(),
            ksn: ksn.to_hex(),
            seq: 1,
            outcome: Outcome::Executed,
            reason: None,
            bank_ref: Some("bank_42".into()),
        };
        let mut signed = SignedResult {
            mac: result_mac(&key, &result),
            result,
        };
        assert!(verify_result(&key, &signed));
        let other = working_key(&bdk, &Ksn { counter: 2, ..ksn }, MAC_KEY.0, MAC_KEY.1).unwrap();
        assert!(!verify_result(&other, &signed), "another transaction's key");
        signed.result.outcome = Outcome::Declined;
        assert!(!verify_result(&key, &signed), "an altered result");
        signed.mac = "zz".into();
        assert!(!verify_result(&key, &signed));
    }

    #[test]
    fn associated_data_names_each_place_apart() {
        let k = Ksn::from_hex("123456789012345600000001").unwrap();
        assert_ne!(
            transaction_aad("reg_1", &k, 1),
            transaction_aad("reg_1", &k, 2)
        );
        assert_ne!(
            transaction_aad("reg_1", &k, 1),
            transaction_aad("reg_2", &k, 1)
        );
        assert_ne!(registration_aad("reg_1"), transaction_aad("reg_1", &k, 1));
    }
}

//! The bank against a carrier built from the keys crate alone: what the
//! ceremony gives the custodians combines into the bank's zone key, the
//! initial key unwraps under it, and transactions sealed with keys derived
//! from the initial key open at the bank, once.

use super::*;
use verigate_keys::components::{combine, Component};
use verigate_keys::dukpt::KeyType;
use verigate_keys::relay::Transfer;

const T0: i64 = 1_800_000_000_000;

/// The carrier's side: the zone key from the two components, the initial
/// key unwrapped, the initial key id.
struct Carrier {
    zone: SecretKey,
    ik: SecretKey,
    ikid: [u8; 8],
}

fn setup() -> (Bank, Carrier) {
    let bdk = SecretKey::from_hex("FEDCBA9876543210F1F1F1F1F1F1F1F1").unwrap();
    let mut bank = Bank::new(bdk, [0x12, 0x34, 0x56, 0x78]);
    bank.set_balance("alice", 10_000);
    bank.set_balance("shop", 0);
    let c = bank.ceremony(&mut rand::thread_rng());
    // Each custodian types their own component; the combined KCV is checked.
    let a = Component::from_hex(&c.a.0).unwrap();
    assert_eq!(hex::encode_upper(a.kcv()), c.a.1);
    let b = Component::from_hex(&c.b.0).unwrap();
    let want: [u8; 5] = hex::decode(&c.kcv).unwrap().try_into().unwrap();
    let zone = combine(&a, &b, Some(&want)).unwrap();
    assert_eq!(bank.zone_kcv().unwrap(), c.kcv);
    let (ikid, wrapped, ik_kcv) = bank.issue_initial_key([0x90, 0x12, 0x34, 0x56]).unwrap();
    let ik = wrap::unwrap(&zone, &hex::decode(wrapped).unwrap()).unwrap();
    assert_eq!(kcv_hex(&ik), ik_kcv);
    // The X9.24-3 vector's initial key: the bank derived it from its BDK.
    assert_eq!(ik.to_hex(), "1273671EA26AC29AFA4D1084127652A1");
    let ikid: [u8; 8] = hex::decode(ikid).unwrap().try_into().unwrap();
    (bank, Carrier { zone, ik, ikid })
}

impl Carrier {
    fn ksn(&self, counter: u32) -> Ksn {
        Ksn {
            initial_key_id: self.ikid,
            counter,
        }
    }

    fn auth(&self, counter: u32, at: i64) -> AuthInfo {
        AuthInfo {
            imsi: "234150999999999".into(),
            msisdn: "+447400100990".into(),
            ksn: self.ksn(counter).to_hex(),
            issued_at: at,
        }
    }

    fn register(&self, id: &str, auth: &AuthInfo) -> RegistrationRequest {
        let sealed = envelope::seal(
            &self.zone,
            &relay::registration_aad(id),
            &serde_json::to_vec(auth).unwrap(),
            &mut rand::thread_rng(),
        )
        .unwrap();
        RegistrationRequest {
            registration_id: id.into(),
            zone_kcv: kcv_hex(&self.zone),
            sealed: hex::encode(sealed),
        }
    }

    fn message(&self, id: &str, auth: &AuthInfo, seq: u32, amount: u64) -> TransactionRequest {
        let ksn = Ksn::from_hex(&auth.ksn).unwrap();
        let key =
            dukpt::working_key_from_initial(&self.ik, &ksn, relay::DATA_KEY.0, relay::DATA_KEY.1)
                .unwrap();
        let plain = TransactionPlain {
            auth: auth.clone(),
            transfer: Transfer {
                from_account: "alice".into(),
                to_account: "shop".into(),
                amount_minor: amount,
                currency: "GBP".into(),
                reference: "order 7".into(),
            },
        };
        let sealed = envelope::seal(
            &key,
            &relay::transaction_aad(id, &ksn, seq),
            &serde_json::to_vec(&plain).unwrap(),
            &mut rand::thread_rng(),
        )
        .unwrap();
        TransactionRequest {
            registration_id: id.into(),
            ksn: ksn.to_hex(),
            seq,
            sealed: hex::encode(sealed),
        }
    }

    fn mac_key(&self, counter: u32) -> SecretKey {
        dukpt::working_key_from_initial(
            &self.ik,
            &self.ksn(counter),
            relay::MAC_KEY.0,
            relay::MAC_KEY.1,
        )
        .unwrap()
    }
}

#[test]
fn a_registered_terminal_pays_once_and_the_carrier_can_check_the_answer() {
    let (mut bank, carrier) = setup();
    let auth = carrier.auth(1, T0);
    bank.register(&carrier.register("reg_1", &auth), T0 + 5)
        .unwrap();
    let msg = carrier.message("reg_1", &auth, 1, 2_500);
    let answer = bank.transact(&msg, T0 + 10).unwrap();
    assert_eq!(answer.result.outcome, Outcome::Executed);
    assert!(
        relay::verify_result(&carrier.mac_key(1), &answer),
        "MACed under the KSN's key"
    );
    assert!(!relay::verify_result(&carrier.mac_key(2), &answer));
    assert_eq!(
        (bank.balance("alice"), bank.balance("shop")),
        (Some(7_500), Some(2_500))
    );
    // The carrier lost the answer and sends the message again: the same
    // answer, nothing moves twice.
    assert_eq!(bank.transact(&msg, T0 + 20).unwrap(), answer);
    assert_eq!(bank.executed().len(), 1);
    assert_eq!(bank.executed()[0].msisdn, "+447400100990");
    // Declined: nothing moves, and the answer says why.
    let big = carrier.message("reg_1", &auth, 2, 1_000_000);
    let d = bank.transact(&big, T0 + 30).unwrap();
    assert_eq!(
        (d.result.outcome, d.result.reason.as_deref()),
        (Outcome::Declined, Some("insufficient funds"))
    );
    assert_eq!(bank.balance("alice"), Some(7_500));
    // An older message number after a newer one: refused.
    let late = carrier.message("reg_1", &auth, 1, 10);
    let fresh_seq_one = bank.transact(&late, T0 + 40);
    assert_eq!(
        fresh_seq_one.unwrap(),
        answer,
        "seq 1 was answered: its answer"
    );
    let mut gap = carrier.message("reg_1", &auth, 5, 10);
    bank.transact(&gap, T0 + 50).unwrap();
    gap = carrier.message("reg_1", &auth, 4, 10);
    assert!(matches!(
        bank.transact(&gap, T0 + 60),
        Err(BankError::SeqNotAbove { seq: 4, last: 5 })
    ));
}

#[test]
fn replayed_registrations_and_out_of_order_counters_are_refused() {
    let (mut bank, carrier) = setup();
    let first = carrier.register("reg_1", &carrier.auth(2, T0));
    assert_eq!(bank.register(&first, T0).unwrap(), Registered::New);
    assert_eq!(
        bank.register(&first, T0 + SKEW_MS * 2).unwrap(),
        Registered::Repeat,
        "the same registration again (its answer was lost): taken as the same, even late"
    );
    // Another terminal's auth under a used id: refused.
    let mut other = carrier.auth(3, T0);
    other.imsi = "234150111111111".into();
    assert!(matches!(
        bank.register(&carrier.register("reg_1", &other), T0),
        Err(BankError::DuplicateRegistration(_))
    ));
    // The same KSN under a new id: a replay.
    let again = carrier.register("reg_2", &carrier.auth(2, T0));
    assert!(matches!(
        bank.register(&again, T0),
        Err(BankError::CounterReplayed(2))
    ));
    // Registrations sent side by side arrive out of order: a lower unused
    // counter within the window is taken, once.
    let older = carrier.register("reg_3", &carrier.auth(1, T0));
    assert_eq!(bank.register(&older, T0).unwrap(), Registered::New);
    let older_again = carrier.register("reg_3b", &carrier.auth(1, T0));
    assert_eq!(
        bank.register(&older_again, T0).unwrap_err().code(),
        "counter_replayed"
    );
    // Captured long ago: stale.
    let stale = carrier.register("reg_4", &carrier.auth(4, T0 - SKEW_MS - 1));
    assert!(matches!(
        bank.register(&stale, T0),
        Err(BankError::Stale(_))
    ));
    // A counter with more than 16 one bits is no DUKPT counter.
    let bad = carrier.register("reg_5", &carrier.auth(0x0001_FFFF, T0));
    assert!(matches!(bank.register(&bad, T0), Err(BankError::Key(_))));
    bank.register(&carrier.register("reg_6", &carrier.auth(8, T0)), T0)
        .unwrap();
}

#[test]
fn altered_misdirected_and_impersonating_messages_are_refused() {
    let (mut bank, carrier) = setup();
    let auth = carrier.auth(1, T0);
    bank.register(&carrier.register("reg_1", &auth), T0)
        .unwrap();
    // A byte flipped in flight.
    let mut m = carrier.message("reg_1", &auth, 1, 100);
    let mut bytes = hex::decode(&m.sealed).unwrap();
    bytes[20] ^= 1;
    m.sealed = hex::encode(bytes);
    assert_eq!(bank.transact(&m, T0), Err(BankError::Forged));
    // Sealed for message 1 but sent as message 2 (its associated data).
    let mut m = carrier.message("reg_1", &auth, 1, 100);
    m.seq = 2;
    assert_eq!(bank.transact(&m, T0), Err(BankError::Forged));
    // Sealed under another transaction's key.
    let other = carrier.auth(2, T0);
    let mut m = carrier.message("reg_1", &other, 1, 100);
    m.ksn = auth.ksn.clone();
    assert_eq!(bank.transact(&m, T0), Err(BankError::Forged));
    // A genuine key but another SIM's identity inside.
    let swapped = AuthInfo {
        imsi: "234150888888888".into(),
        ..auth.clone()
    };
    let m = carrier.message("reg_1", &swapped, 1, 100);
    assert_eq!(bank.transact(&m, T0), Err(BankError::AuthMismatch));
    assert_eq!(
        bank.transact(&carrier.message("reg_9", &auth, 1, 1), T0)
            .unwrap_err()
            .code(),
        "unknown_registration"
    );
    assert!(bank.executed().is_empty(), "nothing of that moved money");
    // A registration sealed under another zone key.
    let mut foreign = carrier.register("reg_2", &carrier.auth(2, T0));
    foreign.zone_kcv = "0000000000".into();
    assert!(matches!(
        bank.register(&foreign, T0),
        Err(BankError::WrongZoneKey(_))
    ));
    let _ = KeyType::Aes128;
}

#[test]
fn a_counter_older_than_the_replay_window_is_refused() {
    let (mut bank, carrier) = setup();
    // Counters 11.. fill the window (all have few one bits).
    let base = 11u32;
    for i in 0..REPLAY_WINDOW as u32 {
        let c = base + i;
        bank.register(
            &carrier.register(&format!("w_{c}"), &carrier.auth(c, T0)),
            T0,
        )
        .unwrap();
    }
    let e = bank
        .register(&carrier.register("w_old", &carrier.auth(10, T0)), T0)
        .unwrap_err();
    assert_eq!(
        e,
        BankError::CounterTooOld {
            counter: 10,
            oldest: base
        }
    );
    assert_eq!(e.code(), "counter_too_old");
    // A new one pushes the oldest out; that one is then too old too.
    let top = base + REPLAY_WINDOW as u32;
    bank.register(&carrier.register("w_top", &carrier.auth(top, T0)), T0)
        .unwrap();
    assert!(matches!(
        bank.register(&carrier.register("w_base", &carrier.auth(base, T0)), T0),
        Err(BankError::CounterTooOld { .. })
    ));
}

#[test]
fn after_a_new_ceremony_the_previous_zone_key_still_registers_and_the_one_before_not() {
    let (mut bank, carrier) = setup();
    let old_kcv = kcv_hex(&carrier.zone);
    bank.ceremony(&mut rand::thread_rng());
    assert_ne!(bank.zone_kcv().unwrap(), old_kcv);
    // The carrier has not rotated yet: its registrations still go through.
    let r = carrier.register("rot_1", &carrier.auth(1, T0));
    assert_eq!(bank.register(&r, T0).unwrap(), Registered::New);
    bank.ceremony(&mut rand::thread_rng());
    let r = carrier.register("rot_2", &carrier.auth(2, T0));
    assert_eq!(
        bank.register(&r, T0).unwrap_err(),
        BankError::WrongZoneKey(old_kcv)
    );
}

#[test]
fn the_initial_key_as_a_tr31_block_opens_under_the_carriers_zone_key() {
    let (bank, carrier) = setup();
    let (ikid, block, kcv) = bank
        .issue_initial_key_block([0x90, 0x12, 0x34, 0x56], &mut rand::thread_rng())
        .unwrap();
    let (h, ik) = verigate_keys::tr31::unwrap(&carrier.zone, &block).unwrap();
    assert_eq!((h.usage.as_str(), h.algorithm), ("B1", 'A'));
    assert_eq!(h.optional("IK"), Some(ikid.as_str()));
    assert_eq!(ik.to_hex(), "1273671EA26AC29AFA4D1084127652A1");
    assert_eq!(kcv_hex(&ik), kcv);
}

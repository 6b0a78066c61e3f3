//! `verigate-sim bank` as a process, driven over HTTP by a carrier made of
//! the keys crate alone: the key ceremony (two components, KCVs), the
//! initial key wrapped under the zone key, a registration and a payment,
//! and the refusals (a replayed registration, an altered message, another
//! SIM's identity).

use verigate_e2e::{http, BankSim};
use verigate_keys::components::{combine, Component};
use verigate_keys::dukpt::{self, Ksn};
use verigate_keys::relay::{self, AuthInfo, SignedResult, TransactionPlain, Transfer};
use verigate_keys::{envelope, kcv::kcv_hex, wrap, SecretKey};

#[test]
fn a_carrier_runs_the_ceremony_registers_and_pays_through_the_bank_simulator() {
    let bank = BankSim::start(&["alice=10000", "shop=0"]);
    // The bank's half of the ceremony; each custodian enters their component.
    let (st, c) = bank.post("/ceremony", &serde_json::json!({}));
    assert_eq!(st, 200, "{c}");
    let part =
        |i: usize| Component::from_hex(c["components"][i]["component"].as_str().unwrap()).unwrap();
    let (a, b) = (part(0), part(1));
    assert_eq!(hex::encode_upper(a.kcv()), c["components"][0]["kcv"]);
    let want: [u8; 5] = hex::decode(c["kcv"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let zone = combine(&a, &b, Some(&want)).unwrap();
    // The initial key for the carrier's key id, wrapped under the zone key.
    let (st, ik) = bank.post(
        "/initial-keys",
        &serde_json::json!({"derivation_id": "90123456"}),
    );
    assert_eq!(st, 200, "{ik}");
    let initial = wrap::unwrap(
        &zone,
        &hex::decode(ik["wrapped"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(kcv_hex(&initial), ik["kcv"]);
    let ikid: [u8; 8] = hex::decode(ik["initial_key_id"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();

    // Register transaction counter 1 for a subscriber.
    let ksn = Ksn {
        initial_key_id: ikid,
        counter: 1,
    };
    let now = verigate::clock::unix_ms();
    let auth = AuthInfo {
        imsi: "234150999999999".into(),
        msisdn: "+447400100990".into(),
        ksn: ksn.to_hex(),
        issued_at: now,
    };
    let mut rng = rand::thread_rng();
    let sealed = envelope::seal(
        &zone,
        &relay::registration_aad("reg_1"),
        &serde_json::to_vec(&auth).unwrap(),
        &mut rng,
    )
    .unwrap();
    let reg = serde_json::json!({"registration_id": "reg_1", "zone_kcv": kcv_hex(&zone), "sealed": hex::encode(&sealed)});
    assert_eq!(bank.post("/v1/registrations", &reg).0, 201);
    // The same registration again: a repeat (200); the same counter under a new id: a replay.
    assert_eq!(bank.post("/v1/registrations", &reg).0, 200);
    let sealed2 = envelope::seal(
        &zone,
        &relay::registration_aad("reg_2"),
        &serde_json::to_vec(&auth).unwrap(),
        &mut rng,
    )
    .unwrap();
    let replay = serde_json::json!({"registration_id": "reg_2", "zone_kcv": kcv_hex(&zone), "sealed": hex::encode(&sealed2)});
    let (st, v) = bank.post("/v1/registrations", &replay);
    assert_eq!(
        (st, v["code"].as_str()),
        (403, Some("counter_replayed")),
        "{v}"
    );

    // Pay: sealed under the counter's working key.
    let key = dukpt::working_key_from_initial(&initial, &ksn, relay::DATA_KEY.0, relay::DATA_KEY.1)
        .unwrap();
    let message = |auth: &AuthInfo| {
        let plain = TransactionPlain {
            auth: auth.clone(),
            transfer: Transfer {
                from_account: "alice".into(),
                to_account: "shop".into(),
                amount_minor: 1_250,
                currency: "GBP".into(),
                reference: "order 7".into(),
            },
        };
        let sealed = envelope::seal(
            &key,
            &relay::transaction_aad("reg_1", &ksn, 1),
            &serde_json::to_vec(&plain).unwrap(),
            &mut rand::thread_rng(),
        )
        .unwrap();
        serde_json::json!({"registration_id": "reg_1", "ksn": ksn.to_hex(), "seq": 1, "sealed": hex::encode(sealed)})
    };
    // Another SIM's identity inside a genuine envelope: refused.
    let other = AuthInfo {
        imsi: "234150888888888".into(),
        ..auth.clone()
    };
    let (st, v) = bank.post("/v1/transactions", &message(&other));
    assert_eq!(
        (st, v["code"].as_str()),
        (403, Some("auth_mismatch")),
        "{v}"
    );
    // Altered in flight: refused.
    let mut altered = message(&auth);
    let mut bytes = hex::decode(altered["sealed"].as_str().unwrap()).unwrap();
    bytes[30] ^= 4;
    altered["sealed"] = serde_json::json!(hex::encode(bytes));
    assert_eq!(bank.post("/v1/transactions", &altered).1["code"], "forged");
    // Genuine: executed, the answer MACed under the counter's MAC key.
    let (st, v) = bank.post("/v1/transactions", &message(&auth));
    assert_eq!(st, 200, "{v}");
    let signed: SignedResult = serde_json::from_value(v).unwrap();
    let mac_key: SecretKey =
        dukpt::working_key_from_initial(&initial, &ksn, relay::MAC_KEY.0, relay::MAC_KEY.1)
            .unwrap();
    assert!(relay::verify_result(&mac_key, &signed));
    assert_eq!(signed.result.outcome, relay::Outcome::Executed);
    // The bank's ledger and balances.
    let (_, text) = http(&bank.addr, "GET", "/ledger", None);
    let ledger: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ledger["executed"].as_array().unwrap().len(), 1);
    assert_eq!(ledger["executed"][0]["msisdn"], "+447400100990");
    let (_, text) = http(&bank.addr, "GET", "/accounts/shop", None);
    assert!(text.contains("\"balance_minor\":1250"), "{text}");
    // Bad input: named.
    let (st, v) = bank.post(
        "/initial-keys",
        &serde_json::json!({"derivation_id": "xyz"}),
    );
    assert_eq!((st, v["code"].as_str()), (400, Some("malformed")));
}

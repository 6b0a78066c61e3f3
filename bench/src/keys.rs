//! `verigate-bench keys`: the relay's key work on one thread — DUKPT
//! working keys from the initial key (the carrier, per transaction) and
//! from the BDK (the bank, per transaction), and AES-256-GCM sealing and
//! opening of a transaction-sized message.

use crate::codec::measure;
use serde_json::json;
use std::hint::black_box;
use verigate_keys::dukpt::{self, KeyType, KeyUsage, Ksn};
use verigate_keys::{envelope, SecretKey};

/// Options.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    /// Seconds spent on each measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

/// A spread of valid counters (the derivation's cost grows with the one bits).
fn counters() -> Vec<u32> {
    let mut c = Vec::with_capacity(4096);
    let mut x = 0u32;
    while c.len() < 4096 {
        x = dukpt::next_counter(x.wrapping_mul(7).wrapping_add(0x1_0001) & 0x7FFF_FFFF)
            .unwrap_or(1);
        c.push(x);
    }
    c
}

/// Runs the benchmark.
pub fn run(a: KeysArgs) -> Result<(), String> {
    if a.seconds.is_nan() || a.seconds <= 0.0 {
        return Err("--seconds must be positive".into());
    }
    let bdk = SecretKey::from_hex("FEDCBA9876543210F1F1F1F1F1F1F1F1").map_err(|e| e.to_string())?;
    let ikid = [0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56];
    let ik = dukpt::initial_key(&bdk, &ikid).map_err(|e| e.to_string())?;
    let cs = counters();
    let mean_bits = cs.iter().map(|c| f64::from(c.count_ones())).sum::<f64>() / cs.len() as f64;
    let ksn = |i: u64| Ksn {
        initial_key_id: ikid,
        counter: cs[(i % cs.len() as u64) as usize],
    };
    println!(
        "keys: one thread, {} s per figure; counters with {mean_bits:.1} one bits on average",
        a.seconds
    );
    let carrier = measure(a.seconds, |i| {
        black_box(
            dukpt::working_key_from_initial(&ik, &ksn(i), KeyUsage::DataBoth, KeyType::Aes256)
                .unwrap(),
        );
    });
    let bank = measure(a.seconds, |i| {
        black_box(dukpt::working_key(&bdk, &ksn(i), KeyUsage::DataBoth, KeyType::Aes256).unwrap());
    });
    let key = dukpt::working_key(&bdk, &ksn(0), KeyUsage::DataBoth, KeyType::Aes256)
        .map_err(|e| e.to_string())?;
    let msg = vec![0x5Au8; 400];
    let mut rng = rand::thread_rng();
    let sealed = envelope::seal(&key, b"aad", &msg, &mut rng).map_err(|e| e.to_string())?;
    let seal = measure(a.seconds, |_| {
        black_box(envelope::seal(&key, b"aad", &msg, &mut rng).unwrap());
    });
    let open = measure(a.seconds, |_| {
        black_box(envelope::open(&key, b"aad", &sealed).unwrap());
    });
    for (name, ops) in [
        ("working key from the initial key", carrier),
        ("working key from the BDK", bank),
        ("AES-256-GCM seal, 400 bytes", seal),
        ("AES-256-GCM open, 400 bytes", open),
    ] {
        println!(
            "  {name:<34} {:>10.0} /s  ({:>7.2} µs each)",
            ops,
            1e6 / ops
        );
    }
    println!(
        "{}",
        json!({"bench": "keys", "derive_from_initial_per_sec": carrier, "derive_from_bdk_per_sec": bank,
               "gcm_seal_per_sec": seal, "gcm_open_per_sec": open, "mean_counter_one_bits": mean_bits})
    );
    Ok(())
}

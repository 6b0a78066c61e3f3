//! The relay's carrier side as processes: the key ceremony between a lab
//! daemon and `verigate-sim bank` — the bank's two components entered by
//! two custodians through the CLI (from standard input), the combined key
//! checked against the bank's KCV, the initial key imported under it, a
//! rotation with its overlap — and KCVs, never keys, in what is shown.

use std::io::Write;
use std::process::{Command, Stdio};
use verigate_e2e::{bin, workspace, BankSim, Daemon};

/// `verigate txrelay keys component add SLOT`, the component on stdin.
fn enter(d: &Daemon, slot: &str, component: &str) -> (i32, String, String) {
    let lab = workspace().join("conf/verigate.toml");
    let mut child = Command::new(bin("verigate"))
        .current_dir(&d.dir)
        .args(["txrelay", "keys", "component", "add", slot, "--config"])
        .arg(&lab)
        .args(["--set", &format!("api.admin_listen={}", d.admin)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{component}").unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn two_custodians_build_the_zone_key_from_the_banks_components_and_the_initial_key_follows() {
    let bank = BankSim::start(&[]);
    let lab = workspace().join("conf/verigate.toml");
    let d = Daemon::start_logged(verigate_e2e::scratch_dir(), &lab, verigate_e2e::LAB_PORTS);
    let (st, c) = bank.post("/ceremony", &serde_json::json!({}));
    assert_eq!(st, 200);
    let comp = |i: usize| {
        c["components"][i]["component"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let kcv = |i: usize| c["components"][i]["kcv"].as_str().unwrap().to_string();
    let (code, out, err) = enter(&d, "A", &comp(0));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("its check value is {}", kcv(0))),
        "{out}"
    );
    // Custodian B mistypes; the activation refuses the combination.
    let mut typo = comp(1);
    typo.replace_range(0..1, if typo.starts_with('0') { "1" } else { "0" });
    enter(&d, "B", &typo);
    let zone_kcv = c["kcv"].as_str().unwrap();
    let (code, _, err) = d.cli(&lab, &["txrelay", "keys", "activate", "--kcv", zone_kcv]);
    assert_eq!(code, 1);
    assert!(err.contains("a component is wrong"), "{err}");
    // B enters it again, right.
    let (_, out, _) = enter(&d, "B", &comp(1));
    assert!(out.contains(&kcv(1)), "{out}");
    let (code, out, err) = d.cli(&lab, &["txrelay", "keys", "activate", "--kcv", zone_kcv]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("zone key active (KCV {zone_kcv})\n"));
    // The bank's initial key, wrapped under the zone key.
    let (_, ik) = bank.post(
        "/initial-keys",
        &serde_json::json!({"derivation_id": "90123456"}),
    );
    let (code, out, err) = d.cli(
        &lab,
        &[
            "txrelay",
            "keys",
            "initial-key",
            "--ikid",
            ik["initial_key_id"].as_str().unwrap(),
            "--wrapped",
            ik["wrapped"].as_str().unwrap(),
            "--kcv",
            ik["kcv"].as_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("initial key 1234567890123456 imported"),
        "{out}"
    );
    // The same key as a TR-31 version D key block (the form HSMs export):
    // its IK block names the id; an altered block is refused by its MAC.
    let (_, kb) = bank.post(
        "/initial-keys",
        &serde_json::json!({"derivation_id": "90123456", "format": "tr31"}),
    );
    let block = kb["key_block"].as_str().unwrap();
    assert!(
        block.starts_with('D') && block[5..].starts_with("B1AX"),
        "{kb}"
    );
    let mut altered = block.to_string();
    let last = altered.pop().unwrap();
    altered.push(if last == '0' { '1' } else { '0' });
    let kcv_ik = kb["kcv"].as_str().unwrap();
    let (code, _, err) = d.cli(
        &lab,
        &[
            "txrelay",
            "keys",
            "initial-key",
            "--tr31",
            &altered,
            "--kcv",
            kcv_ik,
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("MAC does not verify"), "{err}");
    let (code, out, err) = d.cli(
        &lab,
        &[
            "txrelay",
            "keys",
            "initial-key",
            "--tr31",
            block,
            "--kcv",
            kcv_ik,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("initial key 1234567890123456 imported"),
        "{out}"
    );
    // A rotation: new components, the old key retiring after its overlap.
    let (_, c2) = bank.post("/ceremony", &serde_json::json!({}));
    for (i, slot) in ["A", "B"].iter().enumerate() {
        enter(&d, slot, c2["components"][i]["component"].as_str().unwrap());
    }
    let (code, _, err) = d.cli(
        &lab,
        &[
            "txrelay",
            "keys",
            "activate",
            "--kcv",
            c2["kcv"].as_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "a key is active: a rotation is needed");
    assert!(
        err.contains("a rotation says how long it overlaps"),
        "{err}"
    );
    let (code, _, err) = d.cli(
        &lab,
        &[
            "txrelay",
            "keys",
            "rotate",
            "--kcv",
            c2["kcv"].as_str().unwrap(),
            "--overlap",
            "10m",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = d.cli(&lab, &["txrelay", "keys", "status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(c2["kcv"].as_str().unwrap()) && out.contains("active"),
        "{out}"
    );
    assert!(out.contains(zone_kcv) && out.contains("retiring"), "{out}");
    // Only check values are ever shown: no component, no key.
    for secret in [comp(0), comp(1)] {
        assert!(!out.contains(&secret[..16]), "{out}");
    }
    let log = std::fs::read_to_string(d.dir.join("daemon.log")).unwrap();
    assert!(log.contains("zone key component entered"), "{log}");
    for secret in [
        comp(0),
        comp(1),
        c2["components"][0]["component"]
            .as_str()
            .unwrap()
            .to_string(),
    ] {
        assert!(!log.contains(&secret[..16]), "a component in the log");
    }
}

//! Every file shipped in conf/ parses and validates.

use verigate::config;

/// The secrets conf/example.toml reads from the environment.
fn example_env(name: &str) -> Option<String> {
    match name {
        "VERIGATE_SMSC_PASSWORD" => Some("Zt8q2Wxk".into()),
        "VERIGATE_GATEWAY_6258_K1" => Some("k1-q8WvN3x7Lr2ZpK5tY9cB".into()),
        "VERIGATE_EXAMPLE_API_KEY" => Some("vg_live_q8WvN3x7Lr2ZpK5t".into()),
        _ => None,
    }
}

#[test]
fn every_shipped_config_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            config::load_with_env(&p, &[], &example_env)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 2, "verigate.toml and example.toml at least");
}

#[test]
fn the_lab_config_on_ephemeral_ports_is_valid() {
    // What the e2e tests and `verigate run --set sip.listen=127.0.0.1:0` do:
    // every listener on port 0, the lab trunk (port 0) naming the lab switch.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    let sets: Vec<String> = [
        "api.listen=127.0.0.1:0",
        "api.admin_listen=127.0.0.1:0",
        "lab.smsc.listen=127.0.0.1:0",
        "lab.switch.listen=127.0.0.1:0",
        "sip.listen=127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    config::load(&dir.join("verigate.toml"), &sets).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn example_has_the_documented_deployment() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    let c = config::load_with_env(&dir.join("example.toml"), &[], &example_env).unwrap();
    assert_eq!(c.smsc[0].host, "127.0.0.1");
    assert_eq!(c.smsc[0].port, 2775);
    assert_eq!(c.smsc[0].system_id, "verigate");
    // Read from the environment, not written in the file.
    assert_eq!(c.smsc[0].password, "Zt8q2Wxk");
    assert!(!c.lab.is_lab());
    assert_eq!(c.sip_trunk[0].port, 5060);
    assert_eq!(c.api.listen, "127.0.0.1:8080");
    assert_eq!(
        c.service[0].api_key.as_deref(),
        Some("vg_live_q8WvN3x7Lr2ZpK5t")
    );
    assert_eq!(c.voice_gateway[0].k1, "k1-q8WvN3x7Lr2ZpK5tY9cB");
    assert!(
        matches!(&c.store, config::StoreConfig::Sqlite { path } if path == "./var/verigate.db"),
        "{:?}",
        c.store
    );
}

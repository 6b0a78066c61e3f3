//! URLs that name this deployment's own listeners: host `self` is this
//! daemon's API, host `lab-smsc` the lab SMSC simulator's control API (its
//! webhook sink), host `lab-bank` the lab bank simulator. A lab, where both roles of the number registry run in one
//! daemon on ports chosen at start, can then say where its notifications
//! go without knowing the ports.

use super::Config;
use std::net::SocketAddr;

/// Host of this daemon's API.
pub const SELF_HOST: &str = "self";
/// Host of the lab SMSC simulator's control API.
pub const LAB_SMSC_HOST: &str = "lab-smsc";
/// Host of the lab bank simulator.
pub const LAB_BANK_HOST: &str = "lab-bank";

/// Where the lab simulators listen (those started).
#[derive(Debug, Clone, Copy, Default)]
pub struct Labs<'a> {
    /// The SMSC simulator's control API.
    pub smsc: Option<&'a str>,
    /// The bank simulator.
    pub bank: Option<&'a str>,
}

/// `url` with a local host replaced by its address; an error names what is
/// missing.
fn resolve(url: &str, api: SocketAddr, labs: Labs<'_>) -> Result<String, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(url.to_string());
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr = match host {
        SELF_HOST => api.to_string(),
        LAB_SMSC_HOST => labs
            .smsc
            .ok_or_else(|| format!("{url:?} names the lab SMSC, but no [lab.smsc] runs"))?
            .to_string(),
        LAB_BANK_HOST => labs
            .bank
            .ok_or_else(|| format!("{url:?} names the lab bank, but no [lab.bank] runs"))?
            .to_string(),
        _ => return Ok(url.to_string()),
    };
    Ok(format!("{scheme}://{addr}{path}"))
}

/// Replaces the local hosts in every URL the config holds: the services'
/// webhook URLs, the registry's app platforms' notify URLs, the app
/// side's registry URLs and the relay's bank.
pub fn resolve_all(cfg: &mut Config, api: SocketAddr, labs: Labs<'_>) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let mut fix = |key: String, url: &mut String| match resolve(url, api, labs) {
        Ok(u) => *url = u,
        Err(e) => problems.push(format!("{key}: {e}")),
    };
    for (i, s) in cfg.service.iter_mut().enumerate() {
        if let Some(u) = s.webhook_url.as_mut() {
            fix(format!("service[{i}].webhook_url"), u);
        }
    }
    for (i, a) in cfg.registry.apps.iter_mut().enumerate() {
        fix(format!("registry.apps[{i}].notify_url"), &mut a.notify_url);
    }
    for (i, b) in cfg.bindings.iter_mut().enumerate() {
        fix(format!("bindings[{i}].registry_url"), &mut b.registry_url);
    }
    if let Some(b) = cfg.txrelay.bank.as_mut() {
        fix("txrelay.bank.url".into(), &mut b.url);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts_become_addresses_and_others_stay() {
        let api: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        let labs = Labs {
            smsc: Some("127.0.0.1:8775"),
            bank: Some("127.0.0.1:8790"),
        };
        let r = |u: &str| resolve(u, api, labs);
        assert_eq!(
            r("http://self/v1/registry-events").unwrap(),
            "http://127.0.0.1:41234/v1/registry-events"
        );
        assert_eq!(r("http://self").unwrap(), "http://127.0.0.1:41234");
        assert_eq!(
            r("http://lab-smsc/hooks/lab").unwrap(),
            "http://127.0.0.1:8775/hooks/lab"
        );
        assert_eq!(
            r("https://selfish.example/x").unwrap(),
            "https://selfish.example/x"
        );
        assert_eq!(r("http://lab-bank").unwrap(), "http://127.0.0.1:8790");
        let e = resolve("http://lab-smsc/hooks/lab", api, Labs::default()).unwrap_err();
        assert!(e.contains("no [lab.smsc]"), "{e}");
        let e = resolve("http://lab-bank", api, Labs::default()).unwrap_err();
        assert!(e.contains("no [lab.bank]"), "{e}");
    }
}

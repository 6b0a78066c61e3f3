//! URLs that name this deployment's own listeners: host `self` is this
//! daemon's API, host `lab-smsc` the lab SMSC simulator's control API (its
//! webhook sink). A lab, where both roles of the number registry run in one
//! daemon on ports chosen at start, can then say where its notifications
//! go without knowing the ports.

use super::Config;
use std::net::SocketAddr;

/// Host of this daemon's API.
pub const SELF_HOST: &str = "self";
/// Host of the lab SMSC simulator's control API.
pub const LAB_SMSC_HOST: &str = "lab-smsc";

/// `url` with a local host replaced by its address; an error names what is
/// missing.
fn resolve(url: &str, api: SocketAddr, lab_smsc: Option<&str>) -> Result<String, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(url.to_string());
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr = match host {
        SELF_HOST => api.to_string(),
        LAB_SMSC_HOST => lab_smsc
            .ok_or_else(|| format!("{url:?} names the lab SMSC, but no [lab.smsc] runs"))?
            .to_string(),
        _ => return Ok(url.to_string()),
    };
    Ok(format!("{scheme}://{addr}{path}"))
}

/// Replaces the local hosts in every URL the config holds: the services'
/// webhook URLs, the registry's app platforms' notify URLs and the app
/// side's registry URLs.
pub fn resolve_all(
    cfg: &mut Config,
    api: SocketAddr,
    lab_smsc: Option<&str>,
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let mut fix = |key: String, url: &mut String| match resolve(url, api, lab_smsc) {
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
        let r = |u: &str| resolve(u, api, Some("127.0.0.1:8775"));
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
        let e = resolve("http://lab-smsc/hooks/lab", api, None).unwrap_err();
        assert!(e.contains("no [lab.smsc]"), "{e}");
    }
}

//! Operator commands that talk to a running daemon's admin endpoint.

use crate::config;
use serde_json::Value;
use std::path::Path;

/// Where the admin endpoint is and its token, read from the config file
/// (the same file the daemon runs with).
#[derive(Debug, Clone)]
pub struct AdminTarget {
    /// `host:port`.
    pub addr: String,
    /// Bearer token.
    pub token: String,
}

/// Why an operator command failed, by who must act.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The config file is unusable (the operator's file).
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The admin token file cannot be read (the daemon writes it at start).
    #[error("cannot read the admin token from {path} ({source}); is the daemon running from this directory?")]
    TokenFile {
        /// `api.admin_token_file`.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The daemon does not answer (not running, or another address).
    #[error("cannot reach the daemon's admin endpoint at {addr}: {source}")]
    Unreachable {
        /// `api.admin_listen`.
        addr: String,
        /// What the HTTP client said.
        source: reqwest::Error,
    },
    /// The daemon refused the request; `detail` says why.
    #[error("{status}: {detail}")]
    Refused {
        /// HTTP status.
        status: reqwest::StatusCode,
        /// The problem's detail.
        detail: String,
    },
}

impl AdminTarget {
    /// From a config file (and `--set` overrides); the token comes from
    /// `api.admin_token` or the file `api.admin_token_file` names.
    pub fn from_config(path: &Path, sets: &[String]) -> Result<Self, AdminError> {
        let cfg = config::load(path, sets)?;
        let token = if cfg.api.admin_token.is_empty() {
            std::fs::read_to_string(&cfg.api.admin_token_file)
                .map_err(|source| AdminError::TokenFile {
                    path: cfg.api.admin_token_file.clone(),
                    source,
                })?
                .trim()
                .to_string()
        } else {
            cfg.api.admin_token.clone()
        };
        Ok(AdminTarget {
            addr: cfg.api.admin_listen,
            token,
        })
    }

    /// Calls the admin endpoint; a non-2xx answer becomes its detail.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AdminError> {
        let client = reqwest::Client::new();
        let url = format!("http://{}{path}", self.addr);
        let mut req = client.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.answer(req).await
    }

    /// POSTs CSV text to the admin endpoint; answered like [`Self::call`].
    pub async fn post_csv(&self, path: &str, text: String) -> Result<Value, AdminError> {
        let url = format!("http://{}{path}", self.addr);
        let req = reqwest::Client::new()
            .post(&url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "text/csv")
            .body(text);
        self.answer(req).await
    }

    async fn answer(&self, req: reqwest::RequestBuilder) -> Result<Value, AdminError> {
        let resp = req.send().await.map_err(|source| AdminError::Unreachable {
            addr: self.addr.clone(),
            source,
        })?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(v)
        } else {
            Err(AdminError::Refused {
                status,
                detail: v["detail"].as_str().unwrap_or("request refused").into(),
            })
        }
    }
}

/// Numbers per request of `verigate registry import` (each request is well
/// under the admin listener's body limit).
pub const IMPORT_CHUNK: usize = 5_000;

/// A deactivation file checked whole, then cut into canonical `msisdn,date`
/// CSV chunks to send; every bad line if any (then nothing is sent).
pub fn import_chunks(
    text: &str,
    region: &str,
) -> Result<Vec<String>, Vec<crate::registry::import::BadLine>> {
    let list = crate::registry::import::parse(text, region)?;
    Ok(list
        .chunks(IMPORT_CHUNK)
        .map(|chunk| {
            chunk
                .iter()
                .map(|d| {
                    let date =
                        d.at.map(|at| verigate_codecs::time::rfc3339(at)[..10].to_string())
                            .unwrap_or_default();
                    format!("{},{date}\n", d.msisdn)
                })
                .collect()
        })
        .collect())
}

/// A subscriber extract checked whole, then cut into canonical
/// `msisdn,imsi,status,sim_changed_at` CSV chunks; every bad line if any.
pub fn subscriber_chunks(
    text: &str,
    region: &str,
) -> Result<Vec<String>, Vec<crate::registry::import::BadLine>> {
    let list = crate::txrelay::directory::parse(text, region)?;
    Ok(list
        .chunks(IMPORT_CHUNK)
        .map(|chunk| {
            chunk
                .iter()
                .map(|s| {
                    let when = s
                        .sim_changed_at
                        .map(verigate_codecs::time::rfc3339)
                        .unwrap_or_default();
                    format!("{},{},{},{when}\n", s.msisdn, s.imsi, s.status.as_str())
                })
                .collect()
        })
        .collect())
}

/// The registry's waiting notifications (`verigate registry outbox`).
pub fn render_outbox(v: &Value) -> String {
    let list = v["notifications"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no notification waiting\n".to_string();
    }
    let mut out = format!(
        "{:<10} {:<14} {:<16} {:>8}  {:<24} {:<24} last error\n",
        "TYPE", "NUMBER", "SERVICE", "ATTEMPTS", "NEXT ATTEMPT", "GIVEN UP AT"
    );
    for n in &list {
        out.push_str(&format!(
            "{:<10} {:<14} {:<16} {:>8}  {:<24} {:<24} {}\n",
            n["type"].as_str().unwrap_or(""),
            n["msisdn"].as_str().unwrap_or(""),
            n["service"].as_str().unwrap_or(""),
            n["attempts"],
            n["next_attempt_at"].as_str().unwrap_or(""),
            n["deliver_until"].as_str().unwrap_or(""),
            n["last_error"].as_str().unwrap_or("-"),
        ));
    }
    out
}

/// The SMSC table shared by `verigate status` and `verigate smsc list`.
fn smsc_table(smscs: &Value) -> String {
    let mut s = format!(
        "{:<16} {:<22} {:<9} {:>5} {:>6}  {:<14} binds\n",
        "SMSC", "address", "state", "bound", "window", "routes"
    );
    for c in smscs.as_array().into_iter().flatten() {
        let routes: Vec<&str> = c["prefixes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
            .collect();
        s.push_str(&format!(
            "{:<16} {:<22} {:<9} {:>5} {:>6}  {:<14} {}\n",
            c["name"].as_str().unwrap_or(""),
            c["host"].as_str().unwrap_or(""),
            if c["enabled"] == false {
                "disabled"
            } else {
                "enabled"
            },
            c["bound"].to_string(),
            c["window"].to_string(),
            if routes.is_empty() {
                "default".to_string()
            } else {
                routes.join(",")
            },
            c["binds"]
                .as_array()
                .map(|b| b
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ));
    }
    s
}

/// `verigate smsc list` as a table.
pub fn render_smscs(v: &Value) -> String {
    smsc_table(&v["smscs"])
}

/// `verigate status` as a table.
pub fn render_status(v: &Value) -> String {
    let mut s = format!(
        "uptime {} s, {} service(s)\n\n",
        v["uptime_seconds"], v["services"]
    );
    s.push_str(&smsc_table(&v["smscs"]));
    let o = &v["outbox"];
    s.push_str(&format!(
        "\noutbox: {} queued, {} sending, {} awaiting receipt\n",
        o["queued"], o["sending"], o["submitted"]
    ));
    s
}

/// `verigate services list` as a table.
pub fn render_services(v: &Value) -> String {
    let mut s = format!(
        "{:<20} {:<28} {:<10} {}\n",
        "code", "name", "webhook", "keys"
    );
    for svc in v["services"].as_array().into_iter().flatten() {
        let keys: Vec<String> = svc["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| {
                format!(
                    "{}{}",
                    k["key_id"].as_str().unwrap_or(""),
                    if k["revoked"] == true {
                        " (revoked)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        s.push_str(&format!(
            "{:<20} {:<28} {:<10} {}\n",
            svc["code"].as_str().unwrap_or(""),
            svc["name"].as_str().unwrap_or(""),
            if svc["webhook"] == true { "yes" } else { "no" },
            keys.join(", ")
        ));
    }
    s
}

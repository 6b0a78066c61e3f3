//! `verigate demo`: a guided walk through an SMS verification against lab
//! mode, using only the public API and the simulator's handset inbox — what
//! an app developer would do with curl, narrated.

use crate::config::{self, Config};
use crate::host::HostError;
use rand::Rng;
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the demo could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The configuration is unusable (the operator's to fix).
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The configuration has no lab SMSC to read the code from.
    #[error("verigate demo needs lab mode (a [lab.smsc] section): it reads the code from the simulated handset")]
    NotLab,
    /// No configured service has a bootstrap key to call the API with.
    #[error("verigate demo needs a [[service]] with an api_key in the config")]
    NoApiKey,
    /// The lab daemon could not be started or reached (this machine).
    #[error(transparent)]
    Environment(#[from] HostError),
}

/// Where the demo talks to.
struct Lab {
    api: String,
    control: String,
    key: String,
    service: String,
    /// A daemon the demo started itself (stopped at the end).
    own: Option<OwnDaemon>,
}

struct OwnDaemon {
    child: Child,
    dir: PathBuf,
}

impl Drop for OwnDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the demo; `Ok(true)` when every step behaved as described.
pub async fn run(config_path: &Path, sets: &[String]) -> Result<bool, DemoError> {
    let cfg = config::load(config_path, sets)?;
    let lab = connect(config_path, sets, &cfg).await?;
    let mut d = Demo {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| HostError::new("HTTP client", e))?,
        lab,
        max_attempts: cfg.verify.max_attempts,
        failures: 0,
    };
    d.walk().await;
    let ok = d.failures == 0;
    if ok {
        println!(
            "\nEvery step behaved as described. Next: README.md shows the same flow with curl."
        );
    } else {
        println!(
            "\n{} step(s) did not behave as described (marked ✘ above).",
            d.failures
        );
    }
    drop(d.lab.own.take());
    Ok(ok)
}

/// Uses the daemon the config points at if it answers, else starts a
/// throw-away lab daemon on free ports in a temporary directory.
async fn connect(config_path: &Path, sets: &[String], cfg: &Config) -> Result<Lab, DemoError> {
    let lab_smsc = cfg.lab.smsc.as_ref().ok_or(DemoError::NotLab)?;
    let svc = cfg
        .service
        .iter()
        .find(|s| s.api_key.is_some())
        .ok_or(DemoError::NoApiKey)?;
    let key = svc.api_key.clone().unwrap_or_default();
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| HostError::new("HTTP client", e))?;
    if probe
        .get(format!("http://{}/healthz", cfg.api.listen))
        .send()
        .await
        .is_ok()
    {
        println!(
            "verigate demo — using the daemon at {} (simulated SMSC and handsets at {})",
            cfg.api.listen, lab_smsc.control
        );
        return Ok(Lab {
            api: cfg.api.listen.clone(),
            control: lab_smsc.control.clone(),
            key,
            service: svc.code.clone(),
            own: None,
        });
    }
    println!(
        "verigate demo — no daemon answers at {}; starting a lab daemon for the demo …",
        cfg.api.listen
    );
    let mut sets = sets.to_vec();
    if cfg.lab.bank.is_some() {
        sets.push("lab.bank.listen=127.0.0.1:0".into());
    }
    if cfg.lab.switch.is_some() {
        // The lab switch and our SIP side on free ports too.
        sets.extend(
            [
                "lab.switch.listen=127.0.0.1:0",
                "lab.switch.control=127.0.0.1:0",
                "sip.listen=127.0.0.1:0",
            ]
            .map(String::from),
        );
    }
    let (api, admin, control, own) = start_own(config_path, &sets)?;
    wait_ready(&probe, &admin).await?;
    println!("  started: API {api}, simulated SMSC and handsets at {control}");
    Ok(Lab {
        api,
        control,
        key,
        service: svc.code.clone(),
        own: Some(own),
    })
}

/// `verigate run` with this config on free ports in a temporary directory:
/// its API, admin and simulator control addresses.
fn start_own(
    config_path: &Path,
    sets: &[String],
) -> Result<(String, String, String, OwnDaemon), DemoError> {
    let exe = std::env::current_exe()
        .map_err(|e| HostError::new("cannot find this program's path", e))?;
    let config_path = std::fs::canonicalize(config_path)
        .map_err(|e| HostError::new(config_path.display().to_string(), e))?;
    let dir = std::env::temp_dir().join(format!(
        "verigate-demo-{}-{}",
        std::process::id(),
        rand::thread_rng().gen::<u32>()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| HostError::new(dir.display().to_string(), e))?;
    let mut cmd = Command::new(exe);
    cmd.current_dir(&dir)
        .arg("run")
        .arg("--config")
        .arg(&config_path);
    for s in sets.iter().map(String::as_str).chain([
        "api.listen=127.0.0.1:0",
        "api.admin_listen=127.0.0.1:0",
        "lab.smsc.listen=127.0.0.1:0",
        "lab.smsc.control=127.0.0.1:0",
    ]) {
        cmd.args(["--set", s]);
    }
    let log_path = dir.join("daemon.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| HostError::new(log_path.display().to_string(), e))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| HostError::new("cannot start the lab daemon", e))?;
    let mut line = String::new();
    let _ = std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line);
    let own = OwnDaemon { child, dir };
    let banner: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    match (
        banner["api"].as_str(),
        banner["admin"].as_str(),
        banner["lab_control"].as_str(),
    ) {
        (Some(api), Some(admin), Some(control)) => {
            Ok((api.to_string(), admin.to_string(), control.to_string(), own))
        }
        _ => {
            let log = std::fs::read_to_string(own.dir.join("daemon.log")).unwrap_or_default();
            Err(HostError::msg(format!(
                "the lab daemon did not start; its log:\n{}",
                log.trim_end()
            ))
            .into())
        }
    }
}

/// Waits for `/readyz` on the daemon's admin listener.
async fn wait_ready(http: &reqwest::Client, admin: &str) -> Result<(), DemoError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = http.get(format!("http://{admin}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(HostError::msg(
                "the lab daemon did not bind to its simulated SMSC within 15 s",
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One HTTP answer: status and JSON body.
struct Answer {
    status: u16,
    body: Value,
}

struct Demo {
    http: reqwest::Client,
    lab: Lab,
    /// Wrong checks allowed (from the config).
    max_attempts: u32,
    failures: u32,
}

impl Demo {
    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        key: &str,
    ) -> Answer {
        let mut req = self
            .http
            .request(method, format!("http://{}{path}", self.lab.api))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        match req.send().await {
            Ok(r) => Answer {
                status: r.status().as_u16(),
                body: r.json().await.unwrap_or(Value::Null),
            },
            Err(e) => Answer {
                status: 0,
                body: json!({"detail": format!("request failed: {e}")}),
            },
        }
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        println!("   POST {path} {body}");
        self.api(reqwest::Method::POST, path, Some(body), &self.lab.key)
            .await
    }

    async fn get(&self, path: &str) -> Answer {
        self.api(reqwest::Method::GET, path, None, &self.lab.key)
            .await
    }

    /// Reports whether a step did what the narration says.
    fn expect(&mut self, ok: bool, what: &str, got: &Answer) {
        if ok {
            println!("   ✔ {what}");
        } else {
            self.failures += 1;
            println!("   ✘ expected {what}; got {} {}", got.status, got.body);
        }
    }

    /// The `n`-th SMS the simulated handset got, waiting for it to arrive.
    async fn handset(&self, to: &str, n: usize) -> Option<String> {
        let url = format!(
            "http://{}/inbox/{}",
            self.lab.control,
            to.trim_start_matches('+')
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(r) = self.http.get(&url).send().await {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if let Some(t) = v["messages"][n]["text"].as_str() {
                    return Some(t.to_string());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    async fn start(&self, to: &str) -> Answer {
        self.post("/v1/verifications", json!({"to": to, "channel": "sms"}))
            .await
    }

    async fn check(&self, id: &str, code: &str) -> Answer {
        let a = self
            .post(
                &format!("/v1/verifications/{id}/check"),
                json!({"code": code}),
            )
            .await;
        println!(
            "   ← {} status {}, valid {}, {} attempt(s) left",
            a.status,
            txt(&a.body["status"]),
            a.body["valid"],
            a.body["remaining_attempts"]
        );
        a
    }

    async fn walk(&mut self) {
        let to = random_number();
        println!("\nThe happy path");
        println!(
            "\n1. Your app asks verigate to verify {to} (service \"{}\").",
            self.lab.service
        );
        let a = self.start(&to).await;
        let id = a.body["id"].as_str().unwrap_or_default().to_string();
        println!(
            "   ← {} id {}, status {}, the code expires at {}",
            a.status,
            id,
            txt(&a.body["status"]),
            txt(&a.body["expires_at"])
        );
        println!(
            "   verigate stored the request before answering, then submitted the SMS over SMPP."
        );
        let ok = a.status == 201 && a.body["status"] == "pending";
        self.expect(ok, "201 and status pending", &a);
        if !ok {
            return;
        }

        println!("\n2. The phone receives the SMS (read from the simulated handset's inbox):");
        let Some(sms) = self.handset(&to, 0).await else {
            self.failures += 1;
            println!("   ✘ no SMS reached the handset within 10 s");
            return;
        };
        println!("   ┃ {sms}");
        let code = code_in(&sms);
        let delivered = self.wait_delivered(&id).await;
        println!(
            "   The SMSC's delivery receipt is stored too: GET /v1/verifications/{id} shows delivery \"{}\".",
            delivered.body["delivery"]["state"].as_str().unwrap_or("?")
        );
        self.expect(
            delivered.body["delivery"]["state"] == "delivered",
            "delivery state delivered",
            &delivered,
        );

        println!("\n3. The user mistypes the code.");
        let a = self.check(&id, &wrong(&code, 1)).await;
        let left = self.max_attempts.saturating_sub(1);
        self.expect(
            a.body["status"] == "pending"
                && a.body["valid"] == false
                && a.body["remaining_attempts"] == left,
            &format!("still pending with {left} attempt(s) left"),
            &a,
        );

        println!("\n4. The user types the code from the SMS.");
        let a = self.check(&id, &code).await;
        self.expect(
            a.body["status"] == "approved" && a.body["valid"] == true,
            "approved: the user holds the number",
            &a,
        );

        println!("\n5. The code works once: the same check again approves nothing new.");
        let a = self.check(&id, &code).await;
        self.expect(
            a.body["status"] == "approved" && a.body["valid"] == false,
            "valid false (status stays approved)",
            &a,
        );

        println!("\nWhen things go wrong");
        println!("\n6. A number that cannot exist is refused before anything is sent.");
        let a = self.start("+44 12").await;
        println!(
            "   ← {} {}: {}",
            a.status,
            a.body["code"].as_str().unwrap_or(""),
            a.body["detail"].as_str().unwrap_or("")
        );
        self.expect(
            a.status == 400 && a.body["code"] == "invalid_phone_number",
            "400 invalid_phone_number",
            &a,
        );

        let to2 = random_number();
        println!("\n7. A user taps \"send code\" twice: the second start returns the same verification and sends no second SMS (resend cooldown).");
        let first = self.start(&to2).await;
        let a = self.start(&to2).await;
        println!(
            "   ← {} id {} (first was {}), resent {}",
            a.status,
            txt(&a.body["id"]),
            txt(&first.body["id"]),
            a.body["resent"]
        );
        self.expect(
            first.status == 201
                && a.status == 200
                && a.body["id"] == first.body["id"]
                && a.body["resent"] == false,
            "200 with the same id and resent false",
            &a,
        );
        let id2 = a.body["id"].as_str().unwrap_or_default().to_string();

        println!(
            "\n8. Someone guesses codes: after {} wrong ones the verification is dead, even for the right code.",
            self.max_attempts
        );
        let real = self
            .handset(&to2, 0)
            .await
            .map(|t| code_in(&t))
            .unwrap_or_default();
        let mut last = None;
        for i in 0..self.max_attempts {
            last = Some(self.check(&id2, &wrong(&real, i % 9 + 1)).await);
        }
        if let Some(a) = last {
            self.expect(
                a.body["status"] == "max_attempts_reached",
                "max_attempts_reached after the last wrong one",
                &a,
            );
        }
        let a = self.check(&id2, &real).await;
        self.expect(
            a.body["status"] == "max_attempts_reached" && a.body["valid"] == false,
            "the right code no longer approves",
            &a,
        );

        let to3 = random_number();
        println!("\n9. The app cancels a verification the user abandoned.");
        let a = self.start(&to3).await;
        let id3 = a.body["id"].as_str().unwrap_or_default().to_string();
        let a = self
            .post(&format!("/v1/verifications/{id3}/cancel"), json!({}))
            .await;
        println!("   ← {} status {}", a.status, txt(&a.body["status"]));
        self.expect(a.body["status"] == "canceled", "status canceled", &a);

        println!("\n10. A caller without the service's API key gets nothing.");
        println!("   GET /v1/verifications/{id} with a wrong key");
        let a = self
            .api(
                reqwest::Method::GET,
                &format!("/v1/verifications/{id}"),
                None,
                "not-the-key",
            )
            .await;
        println!(
            "   ← {} {}: {}",
            a.status,
            a.body["code"].as_str().unwrap_or(""),
            a.body["detail"].as_str().unwrap_or("")
        );
        self.expect(a.status == 401, "401 unauthorized", &a);
    }

    async fn wait_delivered(&self, id: &str) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let a = self.get(&format!("/v1/verifications/{id}")).await;
            if a.body["delivery"]["state"] == "delivered" || Instant::now() > deadline {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A JSON value as plain text (strings without quotes).
fn txt(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// A random UK mobile number, so repeated demos do not meet their own
/// pending verifications or per-number limits.
fn random_number() -> String {
    format!("+4474009{:05}", rand::thread_rng().gen_range(0..100_000))
}

/// The code in an SMS text: the first run of 4 to 10 digits.
fn code_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| (4..=10).contains(&w.len()))
        .unwrap_or_default()
        .to_string()
}

/// A code that differs from `code` (its last digit shifted by `by`, 1–9).
fn wrong(code: &str, by: u32) -> String {
    let mut s: Vec<char> = if code.is_empty() {
        "000000".chars().collect()
    } else {
        code.chars().collect()
    };
    let last = s.last_mut().expect("non-empty");
    let d = last.to_digit(10).unwrap_or(0);
    *last = char::from_digit((d + by) % 10, 10).expect("digit");
    s.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_codes_differ_from_the_real_one() {
        for by in 1..=9 {
            assert_ne!(wrong("123456", by), "123456");
        }
        assert_eq!(wrong("123459", 1), "123450");
    }

    #[test]
    fn code_is_found_in_templates() {
        assert_eq!(
            code_in("Your Verigate Lab code is 482913. It expires in 10 minutes."),
            "482913"
        );
        assert_eq!(
            code_in("【Verigate Lab】验证码 0042，10 分钟内有效。"),
            "0042"
        );
    }
}

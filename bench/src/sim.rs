//! The `verigate-sim smsc` child process and its control API.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// system_id the simulator is started with.
pub const SYSTEM_ID: &str = "verigate";
/// Password the simulator is started with.
pub const PASSWORD: &str = "secret";

/// A running simulator; killed when dropped.
#[derive(Debug)]
pub struct Sim {
    child: Child,
    /// SMPP address.
    pub smpp: SocketAddr,
    /// Control API address.
    pub control: SocketAddr,
}

/// A binary next to the running executable (same target directory).
pub fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// `verigate-sim` next to the running executable.
pub fn default_path() -> PathBuf {
    sibling("verigate-sim")
}

impl Sim {
    /// Starts `path smsc` on loopback ephemeral ports and waits for its
    /// address line.
    pub fn start(path: &Path) -> Result<Sim, String> {
        let mut child = Command::new(path)
            .args([
                "smsc",
                "--listen",
                "127.0.0.1:0",
                "--control",
                "127.0.0.1:0",
                "--system-id",
                SYSTEM_ID,
                "--password",
                PASSWORD,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout from simulator")?;
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let parsed = read
            .map_err(|e| e.to_string())
            .and_then(|_| serde_json::from_str::<Value>(&line).map_err(|e| e.to_string()))
            .and_then(|v| {
                let get = |k: &str| -> Result<SocketAddr, String> {
                    v.get(k)
                        .and_then(Value::as_str)
                        .ok_or(format!("no `{k}` in {line:?}"))?
                        .parse()
                        .map_err(|e| format!("bad `{k}` address: {e}"))
                };
                Ok((get("smpp")?, get("control")?))
            });
        match parsed {
            Ok((smpp, control)) => Ok(Sim {
                child,
                smpp,
                control,
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "simulator {} did not announce its addresses: {e}",
                    path.display()
                ))
            }
        }
    }

    /// The simulator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /stats` on the control API.
    pub async fn stats(&self) -> Result<Value, String> {
        let mut s = TcpStream::connect(self.control)
            .await
            .map_err(|e| format!("control API: {e}"))?;
        let req = format!(
            "GET /stats HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.control
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&resp);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .ok_or("control API: malformed HTTP response")?;
        let start = body.find('{').ok_or("control API: no JSON body")?;
        let end = body.rfind('}').ok_or("control API: no JSON body")?;
        serde_json::from_str(&body[start..=end]).map_err(|e| format!("control API: {e}"))
    }

    /// The simulator's `submits` counter.
    pub async fn submits(&self) -> Result<u64, String> {
        self.stats()
            .await?
            .get("submits")
            .and_then(Value::as_u64)
            .ok_or_else(|| "control API: no `submits` counter".to_string())
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

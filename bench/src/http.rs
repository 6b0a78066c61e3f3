//! A minimal keep-alive HTTP/1.1 client for load generation: one request at
//! a time per connection, only the status line and Content-Length parsed,
//! so the generator costs little of the CPU it shares with the daemon.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One persistent connection.
pub struct Conn {
    addr: SocketAddr,
    sock: Option<TcpStream>,
    buf: Vec<u8>,
}

/// An answer: status code and body.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Conn {
    /// A connection to `addr` (opened on first use, reopened after errors).
    pub fn new(addr: SocketAddr) -> Self {
        Conn {
            addr,
            sock: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends one request and reads its answer.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        bearer: &str,
        body: Option<&str>,
    ) -> Result<Answer, String> {
        self.request_with(method, path, bearer, body, &[]).await
    }

    /// [`Conn::request`] with extra headers.
    pub async fn request_with(
        &mut self,
        method: &str,
        path: &str,
        bearer: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {bearer}\r\n",
            self.addr
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        } else {
            req.push_str("\r\n");
        }
        let r = self.exchange(req.as_bytes()).await;
        if r.is_err() {
            self.sock = None;
        }
        r
    }

    async fn exchange(&mut self, req: &[u8]) -> Result<Answer, String> {
        if self.sock.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect {}: {e}", self.addr))?;
            let _ = s.set_nodelay(true);
            self.sock = Some(s);
            self.buf.clear();
        }
        let sock = self.sock.as_mut().expect("connected");
        sock.write_all(req).await.map_err(|e| e.to_string())?;
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).map_err(|e| e.to_string())?;
                let status: u16 = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or("malformed status line")?;
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let total = end + 4 + len;
                while self.buf.len() < total {
                    self.fill().await?;
                }
                let body = self.buf[end + 4..total].to_vec();
                self.buf.drain(..total);
                return Ok(Answer { status, body });
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<(), String> {
        let sock = self.sock.as_mut().expect("connected");
        let mut chunk = [0u8; 8192];
        let n = sock.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed by the server".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

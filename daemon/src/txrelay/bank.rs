//! The bank's relay API as the carrier calls it (the contract of
//! `verigate_keys::relay`): a registration, a transaction message. A bank
//! that answers 4xx refused for good (with its stable code); one that
//! cannot be reached, times out, or answers 5xx/408/429 is tried again.

use std::time::Duration;
use verigate_keys::relay::{RegistrationRequest, SignedResult, TransactionRequest};

/// Why a call to the bank did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankCallError {
    /// The bank refused the request (final): its code and words.
    #[error("the bank refused it ({code}): {detail}")]
    Refused {
        /// The bank's stable code.
        code: String,
        /// Its explanation.
        detail: String,
    },
    /// No usable answer (tried again): what happened.
    #[error("the bank could not be reached: {0}")]
    Unreachable(String),
}

/// A bank's relay API.
#[derive(Debug, Clone)]
pub struct BankClient {
    http: reqwest::Client,
    base: String,
}

impl BankClient {
    /// The bank at `url` (its base), each request given `timeout`.
    pub fn new(url: &str, timeout: Duration) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .user_agent(format!("verigate/{}", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(BankClient {
            http,
            base: url.trim_end_matches('/').to_string(),
        })
    }

    /// Registers a session (a repeat of a registration the bank took is
    /// answered as a success).
    pub async fn register(&self, req: &RegistrationRequest) -> Result<(), BankCallError> {
        self.post("/v1/registrations", req).await.map(drop)
    }

    /// Relays a transaction message; the bank's signed result (not yet
    /// checked).
    pub async fn transact(&self, req: &TransactionRequest) -> Result<SignedResult, BankCallError> {
        let body = self.post("/v1/transactions", req).await?;
        serde_json::from_slice(&body).map_err(|e| {
            // A 2xx we cannot read: the bank may have executed it; asking
            // again gets its first answer.
            BankCallError::Unreachable(format!("the bank's answer is not a signed result: {e}"))
        })
    }

    async fn post<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<bytes::Bytes, BankCallError> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| BankCallError::Unreachable(describe(&e)))?;
        let status = r.status();
        let body = r
            .bytes()
            .await
            .map_err(|e| BankCallError::Unreachable(describe(&e)))?;
        if status.is_success() {
            return Ok(body);
        }
        let retry = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
        let said: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let detail = said["detail"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        if retry {
            return Err(BankCallError::Unreachable(format!(
                "HTTP {status}: {detail}"
            )));
        }
        Err(BankCallError::Refused {
            code: said["code"].as_str().unwrap_or("bank_error").to_string(),
            detail: format!("HTTP {}: {detail}", status.as_u16()),
        })
    }
}

/// A transport error in a line (its chain of causes).
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

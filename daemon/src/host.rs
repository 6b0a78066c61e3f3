//! What this machine did not let verigate do (a port, a file, a program,
//! a thread): start-up and the demo report it, and exit 71 (EX_OSERR).

/// Something on this machine is in the way; `source` is what the OS or a
/// library said, when something did.
#[derive(Debug, thiserror::Error)]
#[error("{what}{}", .source.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
pub struct HostError {
    /// What could not be done.
    pub what: String,
    /// Why.
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl HostError {
    /// `what` failed because of `source`.
    pub fn new(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        HostError {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// `what` is in the way; nothing more to quote.
    pub fn msg(what: impl Into<String>) -> Self {
        HostError {
            what: what.into(),
            source: None,
        }
    }
}

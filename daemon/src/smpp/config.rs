//! Settings of one SMSC link.

use std::time::Duration;
use verigate_codecs::smpp::session::{BindCredentials, SessionConfig};
use verigate_codecs::text::SplitMode;

/// How many binds of which kind to open to one SMSC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindLayout {
    /// N transceiver binds.
    Transceiver(usize),
    /// Separate transmitter and receiver binds.
    TxRx {
        /// Transmitter binds.
        tx: usize,
        /// Receiver binds.
        rx: usize,
    },
}

/// One SMSC: where it is, how to bind, and how to talk to it.
#[derive(Debug, Clone)]
pub struct SmscConfig {
    /// Name used in logs, metrics and routes.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Credentials (bind_type is overridden per bind by `layout`).
    pub credentials: BindCredentials,
    /// Binds to open.
    pub layout: BindLayout,
    /// Window, rate, timers.
    pub session: SessionConfig,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// How long text is split for this SMSC.
    pub split_mode: SplitMode,
    /// Start disabled: no binds and no traffic until an operator enables it.
    pub start_disabled: bool,
}

impl SmscConfig {
    /// A config with sensible defaults for a single transceiver bind.
    pub fn new(name: &str, host: &str, port: u16, system_id: &str, password: &str) -> Self {
        SmscConfig {
            name: name.into(),
            host: host.into(),
            port,
            credentials: BindCredentials::transceiver(system_id, password),
            layout: BindLayout::Transceiver(1),
            session: SessionConfig::default(),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            split_mode: SplitMode::Udh8,
            start_disabled: false,
        }
    }
}

//! Session settings.

use crate::smpp::pdu::{Address, INTERFACE_VERSION_34};
use std::time::Duration;

/// Which bind an ESME asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindType {
    /// bind_transmitter: submit only.
    Transmitter,
    /// bind_receiver: deliver only.
    Receiver,
    /// bind_transceiver: both.
    Transceiver,
}

impl BindType {
    /// True when this bind may submit.
    pub fn can_submit(self) -> bool {
        !matches!(self, BindType::Receiver)
    }

    /// True when this bind may receive deliver_sm.
    pub fn can_receive(self) -> bool {
        !matches!(self, BindType::Transmitter)
    }
}

/// Credentials and identity an ESME binds with.
#[derive(Debug, Clone)]
pub struct BindCredentials {
    /// Bind type.
    pub bind_type: BindType,
    /// system_id.
    pub system_id: String,
    /// password.
    pub password: String,
    /// system_type.
    pub system_type: String,
    /// interface_version (0x34).
    pub interface_version: u8,
    /// address_range.
    pub address_range: Address,
}

impl BindCredentials {
    /// A transceiver bind with SMPP 3.4.
    pub fn transceiver(system_id: &str, password: &str) -> Self {
        BindCredentials {
            bind_type: BindType::Transceiver,
            system_id: system_id.into(),
            password: password.into(),
            system_type: String::new(),
            interface_version: INTERFACE_VERSION_34,
            address_range: Address::default(),
        }
    }
}

/// Timers, window and rate of one session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Most requests of ours awaiting a response at once.
    pub window: usize,
    /// Requests per second we send (None: unlimited).
    pub rate_per_sec: Option<f64>,
    /// Token-bucket burst.
    pub rate_burst: u32,
    /// Send enquire_link after this long without traffic from the peer.
    pub enquire_link_interval: Duration,
    /// How long any request of ours may wait for its response.
    pub response_timeout: Duration,
    /// How long the bind may take.
    pub bind_timeout: Duration,
    /// Whole-session pause after 0x58 THROTTLED or 0x14 MSGQFUL (doubles
    /// on consecutive throttles up to `max_throttle_pause`).
    pub throttle_pause: Duration,
    /// Longest throttle pause.
    pub max_throttle_pause: Duration,
    /// How long unbind waits for the unbind_resp (in-flight requests are
    /// first given up to `response_timeout` to be answered).
    pub unbind_timeout: Duration,
    /// Largest PDU accepted from the peer.
    pub max_pdu_len: usize,
    /// Answer the peer's enquire_link (false only to simulate a silent peer).
    pub answer_enquire_link: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            window: 100,
            rate_per_sec: None,
            rate_burst: 100,
            enquire_link_interval: Duration::from_secs(30),
            response_timeout: Duration::from_secs(10),
            bind_timeout: Duration::from_secs(10),
            throttle_pause: Duration::from_millis(500),
            max_throttle_pause: Duration::from_secs(10),
            unbind_timeout: Duration::from_secs(5),
            max_pdu_len: crate::smpp::frame::DEFAULT_MAX_PDU,
            answer_enquire_link: true,
        }
    }
}

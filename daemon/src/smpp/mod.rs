//! SMPP client side of the daemon: binds to SMSCs, submits, and streams
//! delivery receipts and MO messages.

mod bind;
mod client;
mod config;
pub(crate) mod events;
mod router;

pub use bind::BindStatus;
pub use client::{describe_bind_status, BindError, SmscClient};
pub use config::{BindLayout, SmscConfig};
pub use events::{DeliveryAck, SmppEvent};
pub use router::{NoRoute, Router};

use verigate_codecs::smpp::CommandStatus;

/// A submit the SMSC accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The SMSC's message id from submit_sm_resp.
    pub message_id: String,
    /// Which SMSC took it.
    pub smsc: String,
}

/// Why a submit did not get a message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The SMSC answered with an error status (the SMSC or the message is at fault).
    #[error("SMSC rejected the message with {0}")]
    Rejected(CommandStatus),
    /// No submit_sm_resp in time; the SMSC may or may not have taken it.
    #[error("no submit_sm_resp within the response timeout (outcome unknown)")]
    Timeout,
    /// The connection dropped after sending; the SMSC may or may not have taken it.
    #[error("connection to the SMSC lost after sending (outcome unknown)")]
    ConnectionLost,
    /// The client is shutting down.
    #[error("SMPP client is shutting down")]
    Shutdown,
    /// The text could not be turned into short messages.
    #[error("cannot encode message: {0}")]
    Encode(#[source] verigate_codecs::text::TextError),
    /// The SMSC is disabled by an operator (try another route, or later).
    #[error("SMSC disabled by the operator")]
    Disabled,
    /// No SMSC is configured for this destination.
    #[error("no SMSC route for destination {0}")]
    NoRoute(String),
}

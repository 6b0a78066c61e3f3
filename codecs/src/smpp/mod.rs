//! SMPP 3.4 (with 5.0 TLVs accepted): PDU codec and sans-IO sessions.

pub mod command;
pub mod frame;
pub mod message;
pub mod pdu;
pub mod session;
pub mod tlv;
pub mod wire;

pub use command::{CommandId, CommandStatus};
pub use frame::{FrameDecoder, FrameError};
pub use pdu::*;
pub use tlv::{Tlv, Tlvs};
pub use wire::{COctets, FieldError};

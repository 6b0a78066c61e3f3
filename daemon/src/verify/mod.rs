//! The verification service (channels `sms`, `voice`, `flash_call`):
//! start, check, cancel, status — on top of the store, the durable outbox
//! and the durable call queue.

pub mod channels;
pub mod code;
pub mod error;
pub mod phone;
pub mod proof;
pub mod service;
pub mod span;

#[cfg(test)]
mod tests;

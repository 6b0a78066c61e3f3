//! The verification service (channel `sms` first): start, check, cancel,
//! status — on top of the store and the durable outbox.

pub mod cli_pool;
pub mod code;
pub mod phone;
pub mod service;

#[cfg(test)]
mod tests;

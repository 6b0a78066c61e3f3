//! verigate: the daemon and operator CLI as a library, so end-to-end tests
//! and benchmarks can drive the same code the binary runs.

pub mod admin;
pub mod api;
pub mod app;
pub mod bindings;
pub mod calls;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod files;
pub mod flashcall;
pub mod host;
pub mod housekeeping;
pub mod inbound;
pub mod limits;
pub mod metrics;
pub mod mologin;
pub mod outbox;
pub mod probe;
pub mod queue;
pub mod random;
pub mod registry;
pub mod reload;
pub mod routing;
pub mod run;
pub mod shutdown;
pub mod sip;
pub mod smpp;
#[cfg(test)]
pub mod span_log;
pub mod store;
pub mod txrelay;
pub mod verify;
pub mod voice_gateway;
pub mod waiters;
pub mod webhook;

//! verigate: the daemon and operator CLI as a library, so end-to-end tests
//! and benchmarks can drive the same code the binary runs.

pub mod config;
pub mod probe;
pub mod smpp;
pub mod store;
pub mod verify;

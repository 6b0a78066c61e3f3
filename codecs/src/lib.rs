//! IO-free building blocks of verigate.
//!
//! Nothing in this crate touches a socket, reads a clock or draws from a
//! global RNG: time and randomness are inputs, so every state machine can be
//! driven on virtual time in tests.

pub mod dlr;
pub mod media;
pub mod sdp;
pub mod sip;
pub mod smpp;
pub mod text;
pub mod time;

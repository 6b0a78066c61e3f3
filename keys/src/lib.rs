//! Key management for the carrier–bank transaction relay (CN102457842A),
//! IO-free and shared by the carrier (`verigate`) and the bank simulator:
//!
//! - [`dukpt`]: AES DUKPT per ANSI X9.24-3-2017: the initial key of a
//!   terminal (here: a subscriber's relay session) from the bank's base
//!   derivation key, and a working key per transaction counter, with the
//!   standard's rule that a counter has at most 16 one bits.
//! - [`kcv`]: key check values, AES-CMAC over a zero block (5 bytes).
//! - [`components`]: a key built from two custodians' components (dual
//!   control), each and the whole checked by KCV.
//! - [`wrap`]: AES key wrap (RFC 3394), how the initial key travels under
//!   the zone key; [`tr31`]: or as a TR-31 version D key block (X9.143),
//!   as HSMs export it.
//! - [`envelope`]: AES-GCM sealing with associated data that binds a
//!   message to its place (registration, KSN, sequence).
//! - [`relay`]: the carrier–bank messages (registration, transaction,
//!   MACed result), the contract both sides build to.
//!
//! Every key is a [`SecretKey`]: zeroized on drop, never printed.

pub mod components;
pub mod dukpt;
pub mod envelope;
pub mod kcv;
pub mod relay;
pub mod secret;
pub mod tr31;
pub mod wrap;

pub use secret::{KeyError, SecretKey};

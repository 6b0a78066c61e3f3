//! Flash call: we ring the number from one of our pool's numbers and hang
//! up; the app reads the caller number from its call log, and that number
//! is the proof of possession.
//!
//! - [`pool`]: the numbers we call from, and drawing one not in use.
//! - [`settings`]: which pool calls which country, the report window and
//!   what guessing a pool's numbers would pass.
//! - [`script`]: the call, sans-IO (ring → CANCEL).
//! - [`report`]: what the app saw, compared with the number we called from.
//!
//! Starting and checking live in `verify::service`, the placing of the
//! call in `calls` (the worker shared with voice calls).

pub mod pool;
pub mod report;
pub mod script;
pub mod settings;

pub use pool::{CliPool, PoolError};
pub use report::{FlashHint, Judged, Report, ReportError, MAX_REPORTED};
pub use script::{FlashScript, FlashTiming};
pub use settings::{FlashPool, FlashSettings};

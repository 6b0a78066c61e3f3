//! Wall-clock helpers for receipt dates (the simulator is an IO shell, so it
//! may read the clock; formatting lives in the codecs).

use std::time::{SystemTime, UNIX_EPOCH};

pub use verigate_codecs::time::smpp_date;

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

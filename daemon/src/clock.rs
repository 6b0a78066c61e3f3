//! The wall clock as an input. Services take `now` as an argument; the
//! drivers that need the time (API handlers, queue workers, the sweep) read
//! it from a [`Clock`] handed to them, so tests run them on virtual time.

/// Unix time in milliseconds (UTC).
pub type Millis = i64;

/// Where the time comes from. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Clock(Kind);

#[derive(Debug, Clone)]
enum Kind {
    /// The system's wall clock.
    System,
    /// Starts at `base` and moves with tokio's clock: on paused tokio time
    /// (`start_paused`, `tokio::time::advance`) it moves only when the test
    /// moves it, and never on its own.
    Virtual {
        base: Millis,
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// The system clock (production).
    pub fn system() -> Self {
        Clock(Kind::System)
    }

    /// A clock that reads `base` now and then follows tokio's clock (tests).
    pub fn virtual_at(base: Millis) -> Self {
        Clock(Kind::Virtual {
            base,
            start: tokio::time::Instant::now(),
        })
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> Millis {
        match &self.0 {
            Kind::System => unix_ms(),
            Kind::Virtual { base, start } => {
                base.saturating_add(i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX))
            }
        }
    }
}

/// Unix milliseconds by the system clock: the one place the daemon reads it
/// (0 before 1970, which no sane host reports).
pub fn unix_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_virtual_clock_moves_only_with_tokio_time() {
        let c = Clock::virtual_at(1_000);
        assert_eq!(c.now_ms(), 1_000);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(c.now_ms(), 91_000);
        assert_eq!(c.clone().now_ms(), 91_000, "clones share the start");
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(Clock::system().now_ms() > 1_577_836_800_000);
    }
}

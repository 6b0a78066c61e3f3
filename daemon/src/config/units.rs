//! Human units in config files: durations (`30s`, `10m`, `2h`, `500ms`) and
//! rates (`5/10m`: five per ten minutes).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Longest duration a config accepts (ten years; more is surely a typo,
/// and every span must fit the store's millisecond timestamps).
const MAX_SPAN_MS: u64 = 3650 * 86_400_000;

/// Why a duration or a rate does not read (the config's author is at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Digits only.
    #[error("duration {0:?} has no unit (use ms, s, m, h or d, e.g. \"30s\")")]
    NoUnit(String),
    /// No leading whole number.
    #[error("duration {0:?} must start with a whole number, e.g. \"10m\"")]
    NotANumber(String),
    /// A unit we do not know.
    #[error("duration {input:?} has unknown unit {unit:?} (use ms, s, m, h or d)")]
    UnknownUnit {
        /// The duration.
        input: String,
        /// Its unit.
        unit: String,
    },
    /// Over [`MAX_SPAN_MS`].
    #[error("duration {0:?} is too long (at most 3650d)")]
    TooLong(String),
    /// Not `count/window`.
    #[error("rate {0:?} must look like \"5/10m\" (count/window)")]
    NotARate(String),
    /// The count is not a whole number.
    #[error("rate {rate:?}: count {count:?} is not a whole number")]
    BadCount {
        /// The rate.
        rate: String,
        /// Its count.
        count: String,
    },
    /// A count of zero allows nothing.
    #[error("rate {0:?}: count must be at least 1")]
    ZeroCount(String),
    /// The window does not read.
    #[error("rate {rate:?}: {source}")]
    BadWindow {
        /// The rate.
        rate: String,
        /// Why its window does not read.
        source: Box<UnitError>,
    },
    /// A zero window.
    #[error("rate {0:?}: window must be longer than zero")]
    ZeroWindow(String),
}

/// A duration written as `<number><unit>` with unit ms, s, m, h or d.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub Duration);

impl Span {
    /// As milliseconds (saturating).
    pub fn millis(&self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl FromStr for Span {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| UnitError::NoUnit(s.into()))?;
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| UnitError::NotANumber(s.into()))?;
        let per = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(UnitError::UnknownUnit {
                    input: s.into(),
                    unit: unit.into(),
                })
            }
        };
        match n.checked_mul(per) {
            Some(ms) if ms <= MAX_SPAN_MS => Ok(Span(Duration::from_millis(ms))),
            _ => Err(UnitError::TooLong(s.into())),
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis() as u64;
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A rate limit written as `<count>/<span>`, e.g. `5/10m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Hits allowed per window.
    pub count: u32,
    /// Window length.
    pub window: Span,
}

impl FromStr for RateLimit {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        let (c, w) = s
            .split_once('/')
            .ok_or_else(|| UnitError::NotARate(s.into()))?;
        let count: u32 = c.trim().parse().map_err(|_| UnitError::BadCount {
            rate: s.into(),
            count: c.into(),
        })?;
        if count == 0 {
            return Err(UnitError::ZeroCount(s.into()));
        }
        let window: Span = w.parse().map_err(|e| UnitError::BadWindow {
            rate: s.into(),
            source: Box::new(e),
        })?;
        if window.0.is_zero() {
            return Err(UnitError::ZeroWindow(s.into()));
        }
        Ok(RateLimit { count, window })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.window)
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for RateLimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_and_print() {
        assert_eq!("10m".parse::<Span>().unwrap().0, Duration::from_secs(600));
        assert_eq!(
            "250ms".parse::<Span>().unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!("90s".parse::<Span>().unwrap().to_string(), "90s");
        assert!("10"
            .parse::<Span>()
            .unwrap_err()
            .to_string()
            .contains("no unit"));
        assert!("10y"
            .parse::<Span>()
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
        // Overflowing or absurd values are refused, not wrapped.
        assert!("300000000000000d"
            .parse::<Span>()
            .unwrap_err()
            .to_string()
            .contains("too long"));
        assert!("213503982336d"
            .parse::<Span>()
            .unwrap_err()
            .to_string()
            .contains("too long"));
        assert!("3650d".parse::<Span>().is_ok());
    }

    #[test]
    fn rates_parse() {
        let r: RateLimit = "5/10m".parse().unwrap();
        assert_eq!((r.count, r.window.0), (5, Duration::from_secs(600)));
        assert!("5".parse::<RateLimit>().is_err());
        assert!("0/1m"
            .parse::<RateLimit>()
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
    }
}

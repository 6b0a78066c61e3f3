//! The carrier–bank transaction relay (CN102457842A), carrier side. So far:
//! the subscriber directory (number ↔ SIM, line status, last SIM change),
//! imported from the carrier's extract, and the SIM-swap answers built on
//! it (CAMARA SIM Swap; the relay refuses a recently swapped SIM).

pub mod directory;
pub mod keys;

use crate::registry::import::BadLine;
use crate::store::{Millis, Store, StoreError, Upserted};
use crate::verify::phone::{self, PhoneError};
use std::sync::Arc;

/// Why a relay request was refused; each says who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum TxRelayError {
    /// The number is not a usable phone number.
    #[error(transparent)]
    BadNumber(#[from] PhoneError),
    /// The number is not in the subscriber directory.
    #[error("{0} is not a subscriber of this carrier")]
    UnknownSubscriber(String),
    /// `maxAge` outside 1–2400 hours.
    #[error("maxAge must be 1 to 2400 hours, not {0}")]
    MaxAge(i64),
    /// The IMSI is not the SIM the number is on.
    #[error("the IMSI is not the SIM {0} is on")]
    ImsiMismatch(String),
    /// The line is suspended or ceased.
    #[error("{msisdn}'s line is {status}: it cannot transact")]
    LineInactive {
        /// The number (masked).
        msisdn: String,
        /// Its status.
        status: &'static str,
    },
    /// The number moved to this SIM too recently (the SIM-swap fraud case).
    #[error("{msisdn} moved to this SIM {hours} h ago; transactions need {min_hours} h")]
    RecentSimSwap {
        /// The number (masked).
        msisdn: String,
        /// Hours since the change.
        hours: i64,
        /// Hours required.
        min_hours: i64,
    },
    /// An import file with bad lines (nothing was changed).
    #[error("{} bad line(s); nothing was changed: {}", .0.len(), .0.iter().take(20).map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    BadFile(Vec<BadLine>),
    /// The store failed (our side).
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
}

impl TxRelayError {
    /// A stable code for the front end.
    pub fn code(&self) -> &'static str {
        match self {
            TxRelayError::BadNumber(_) => "invalid_phone_number",
            TxRelayError::UnknownSubscriber(_) => "unknown_subscriber",
            TxRelayError::MaxAge(_) => "invalid_field",
            TxRelayError::ImsiMismatch(_) => "imsi_mismatch",
            TxRelayError::LineInactive { .. } => "line_inactive",
            TxRelayError::RecentSimSwap { .. } => "recent_sim_swap",
            TxRelayError::BadFile(_) => "invalid_file",
            TxRelayError::Store(_) => "internal",
        }
    }
}

/// Lines per write of an import.
const IMPORT_BATCH: usize = 5_000;

/// The carrier side of the relay.
#[derive(Debug)]
pub struct TxRelay {
    store: Arc<dyn Store>,
    region: String,
    /// How far back SIM changes are known (CAMARA `monitoredPeriod`, days).
    monitored_days: u32,
    /// The zone and initial keys.
    pub keys: keys::RelayKeys,
}

/// What the directory says of a number's latest SIM change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatestChange {
    /// When, if within the monitored period.
    pub at: Option<Millis>,
    /// The monitored period (days), given when `at` is None.
    pub monitored_days: Option<u32>,
}

impl TxRelay {
    /// The relay on `store`; national numbers read in `region`; keys
    /// stored wrapped under a key derived from `secret`.
    pub fn new(
        store: Arc<dyn Store>,
        region: &str,
        monitored_days: u32,
        secret: &crate::verify::code::ServerSecret,
    ) -> Self {
        TxRelay {
            keys: keys::RelayKeys::new(store.clone(), secret),
            store,
            region: region.to_string(),
            monitored_days,
        }
    }

    /// The region national numbers are read in.
    pub fn region(&self) -> &str {
        &self.region
    }

    fn number(&self, raw: &str) -> Result<String, TxRelayError> {
        Ok(phone::normalize(raw, &self.region)?.as_str().to_string())
    }

    /// Imports the carrier's extract (checked whole first).
    pub async fn import(&self, text: &str, now: Millis) -> Result<Upserted, TxRelayError> {
        let lines = directory::parse(text, &self.region).map_err(TxRelayError::BadFile)?;
        let mut total = Upserted::default();
        for chunk in lines.chunks(IMPORT_BATCH) {
            let u = self.store.upsert_subscribers(chunk, now).await?;
            total.added += u.added;
            total.changed += u.changed;
            total.sim_changes += u.sim_changes;
        }
        Ok(total)
    }

    /// The carrier's word on a terminal starting a transaction: the number
    /// is ours, on this SIM, active, and has not moved to it within
    /// `max_sim_age` ms. Each refusal names why (stable codes in
    /// [`TxRelayError::code`]).
    pub async fn vouch(
        &self,
        imsi: &str,
        msisdn: &str,
        max_sim_age: Millis,
        now: Millis,
    ) -> Result<crate::store::Subscriber, TxRelayError> {
        let n = self.number(msisdn)?;
        let s = self
            .store
            .get_subscriber(&n)
            .await?
            .ok_or_else(|| TxRelayError::UnknownSubscriber(phone::mask(&n)))?;
        // Compared in constant time: the answer must not tell how much of
        // a guessed IMSI was right.
        use subtle::ConstantTimeEq;
        if !bool::from(s.imsi.as_bytes().ct_eq(imsi.trim().as_bytes())) {
            return Err(TxRelayError::ImsiMismatch(phone::mask(&n)));
        }
        if s.status != crate::store::LineStatus::Active {
            return Err(TxRelayError::LineInactive {
                msisdn: phone::mask(&n),
                status: s.status.as_str(),
            });
        }
        if let Some(t) = s.sim_changed_at.filter(|t| now - t < max_sim_age) {
            return Err(TxRelayError::RecentSimSwap {
                msisdn: phone::mask(&n),
                hours: (now - t) / 3_600_000,
                min_hours: max_sim_age / 3_600_000,
            });
        }
        Ok(s)
    }

    /// Whether the number's SIM changed within the last `max_age_hours`
    /// (CAMARA SIM Swap check: 1–2400, default 240).
    pub async fn swapped(
        &self,
        msisdn: &str,
        max_age_hours: i64,
        now: Millis,
    ) -> Result<bool, TxRelayError> {
        if !(1..=2400).contains(&max_age_hours) {
            return Err(TxRelayError::MaxAge(max_age_hours));
        }
        let n = self.number(msisdn)?;
        let s = self
            .store
            .get_subscriber(&n)
            .await?
            .ok_or_else(|| TxRelayError::UnknownSubscriber(phone::mask(&n)))?;
        Ok(s.sim_changed_at
            .is_some_and(|t| t >= now - max_age_hours * 3_600_000))
    }

    /// The number's latest SIM change within the monitored period (CAMARA
    /// SIM Swap retrieve-date): older ones, and none, answer null with the
    /// period.
    pub async fn latest_change(
        &self,
        msisdn: &str,
        now: Millis,
    ) -> Result<LatestChange, TxRelayError> {
        let n = self.number(msisdn)?;
        let s = self
            .store
            .get_subscriber(&n)
            .await?
            .ok_or_else(|| TxRelayError::UnknownSubscriber(phone::mask(&n)))?;
        let since = now - i64::from(self.monitored_days) * 86_400_000;
        Ok(match s.sim_changed_at {
            Some(t) if t >= since => LatestChange {
                at: Some(t),
                monitored_days: None,
            },
            _ => LatestChange {
                at: None,
                monitored_days: Some(self.monitored_days),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    const NOW: Millis = 1_800_000_000_000;
    const HOUR: Millis = 3_600_000;

    async fn relay() -> TxRelay {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        let secret = crate::verify::code::ServerSecret::random(&crate::random::Random::os());
        let r = TxRelay::new(store, "GB", 120, &secret);
        let file = "msisdn,imsi,status,sim_changed_at\n\
                    +447400100990,234150999999999,active,\n\
                    +447400100991,234150999999998,active,\n";
        r.import(file, NOW - 1000 * HOUR).await.unwrap();
        r
    }

    #[tokio::test]
    async fn the_carrier_vouches_only_for_an_active_line_on_its_own_sim_not_swapped_lately() {
        let r = relay().await;
        let day = 24 * HOUR;
        let s = r
            .vouch("234150999999999", "+447400100990", 7 * day, NOW)
            .await
            .unwrap();
        assert_eq!(s.msisdn, "+447400100990");
        let e = r
            .vouch("234150999999998", "+447400100990", 7 * day, NOW)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "imsi_mismatch", "{e}");
        assert!(
            !e.to_string().contains("100990"),
            "the number is masked: {e}"
        );
        // The SIM changed three days ago: refused under a 7-day rule.
        r.import("+447400100990,234150777777777,active\n", NOW - 3 * day)
            .await
            .unwrap();
        let e = r
            .vouch("234150777777777", "+447400100990", 7 * day, NOW)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "recent_sim_swap", "{e}");
        assert!(
            e.to_string().contains("72 h ago; transactions need 168 h"),
            "{e}"
        );
        assert!(r
            .vouch("234150777777777", "+447400100990", 2 * day, NOW)
            .await
            .is_ok());
        r.import("+447400100991,234150999999998,suspended\n", NOW)
            .await
            .unwrap();
        let e = r
            .vouch("234150999999998", "+447400100991", day, NOW)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "line_inactive", "{e}");
        let e = r.vouch("1", "+447400100999", day, NOW).await.unwrap_err();
        assert_eq!(e.code(), "unknown_subscriber");
    }

    #[tokio::test]
    async fn a_sim_change_in_the_extract_answers_the_swap_check_and_its_date() {
        let r = relay().await;
        assert!(
            !r.swapped("+447400100990", 240, NOW).await.unwrap(),
            "never changed"
        );
        // The next night's extract: a new SIM for ...990, no date: now.
        let next = "+447400100990,234150777777777,active\n+447400100991,234150999999998,active\n";
        let u = r.import(next, NOW - 2 * HOUR).await.unwrap();
        assert_eq!((u.changed, u.sim_changes), (1, 1));
        assert!(r.swapped("07400100990", 3, NOW).await.unwrap());
        assert!(
            !r.swapped("+447400100990", 1, NOW).await.unwrap(),
            "not within the last hour"
        );
        assert!(!r.swapped("+447400100991", 2400, NOW).await.unwrap());
        assert_eq!(
            r.latest_change("+447400100990", NOW).await.unwrap(),
            LatestChange {
                at: Some(NOW - 2 * HOUR),
                monitored_days: None
            }
        );
        assert_eq!(
            r.latest_change("+447400100991", NOW).await.unwrap(),
            LatestChange {
                at: None,
                monitored_days: Some(120)
            }
        );
        // Past the monitored period: null with the period.
        let later = NOW + 121 * 24 * HOUR;
        assert_eq!(
            r.latest_change("+447400100990", later).await.unwrap().at,
            None
        );
        assert!(matches!(
            r.swapped("+447400100990", 0, NOW).await,
            Err(TxRelayError::MaxAge(0))
        ));
        assert!(matches!(
            r.swapped("+447400100999", 24, NOW).await,
            Err(TxRelayError::UnknownSubscriber(_))
        ));
        assert!(matches!(
            r.swapped("12", 24, NOW).await,
            Err(TxRelayError::BadNumber(_))
        ));
        assert!(matches!(
            r.import("msisdn,imsi\n", NOW).await,
            Err(TxRelayError::BadFile(_))
        ));
    }
}

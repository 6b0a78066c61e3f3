//! The carrier–bank transaction relay (CN102457842A), carrier side: the
//! subscriber directory (number ↔ SIM, line status, last SIM change)
//! imported from the carrier's extract, the SIM-swap answers built on it
//! (CAMARA SIM Swap), the carrier's word for a terminal ([`TxRelay::vouch`]),
//! the keys ([`keys`]), sessions and transactions ([`sessions`]) and the
//! durable queues that take them to the bank ([`workers`], [`bank`]).

pub mod bank;
pub mod directory;
pub mod keys;
pub mod mo;
pub mod sessions;
mod workers;

use crate::clock::Clock;
use crate::random::Random;
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
    /// No `[txrelay.bank]` is configured (the operator's to fix).
    #[error("no bank is configured ([txrelay.bank])")]
    NoBank,
    /// The session names a bank this relay does not talk to.
    #[error("this relay does not talk to bank {0:?}")]
    UnknownBank(String),
    /// The keys are not ready (the key ceremony is not complete).
    #[error("the relay's keys are not ready: {0}")]
    Keys(keys::KeysError),
    /// The initial key has no transaction counters left.
    #[error("initial key {0} has used all its transaction counters: the bank must issue a new initial key")]
    CountersExhausted(String),
    /// No such session (of this front end).
    #[error("no session {0}")]
    NoSession(String),
    /// No such transaction (of this front end).
    #[error("no transaction {0}")]
    NoTransaction(String),
    /// The session takes no more transactions.
    #[error("session {id} takes no more transactions: {why}; open a new session")]
    SessionClosed {
        /// The session.
        id: String,
        /// Expired, or refused (and its code).
        why: String,
    },
    /// The payment as asked is not usable.
    #[error("{0}")]
    BadTransfer(String),
    /// The idempotency key was used for another payment.
    #[error("the Idempotency-Key was used before for another payment")]
    IdempotencyKeyReused,
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
            TxRelayError::NoBank | TxRelayError::Keys(_) | TxRelayError::CountersExhausted(_) => {
                "service_unavailable"
            }
            TxRelayError::UnknownBank(_) | TxRelayError::BadTransfer(_) => "invalid_field",
            TxRelayError::NoSession(_) | TxRelayError::NoTransaction(_) => "not_found",
            TxRelayError::SessionClosed { .. } => "session_closed",
            TxRelayError::IdempotencyKeyReused => "idempotency_key_reused",
            TxRelayError::Store(_) => "internal",
        }
    }
}

/// Lines per write of an import.
const IMPORT_BATCH: usize = 5_000;

/// The front end of the MO-SMS channel (`PAY …` to the relay's short code).
pub const MO_FRONT_END: &str = "sms";

/// How the relay works with its bank and front ends.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// The bank (None: sessions are refused).
    pub bank: Option<crate::config::TxBankConfig>,
    /// A number that moved to its SIM more recently than this cannot transact (ms).
    pub max_sim_age: Millis,
    /// How long a session takes transactions (ms).
    pub session_ttl: Millis,
    /// How long a request waits for the bank.
    pub answer_wait: std::time::Duration,
    /// First retry delay after the bank could not be reached.
    pub retry_delay: std::time::Duration,
    /// Front ends: name and the SHA-256 of its API key.
    pub front_ends: Vec<(String, [u8; 32])>,
    /// The workers' claims.
    pub queue: crate::config::TxQueueConfig,
    /// The SMS channel's short code (empty: none).
    pub short_code: String,
}

impl RelaySettings {
    /// From `[txrelay]`.
    pub fn from_config(c: &crate::config::TxRelayConfig) -> Self {
        use sha2::{Digest, Sha256};
        RelaySettings {
            bank: c.bank.clone(),
            max_sim_age: c.max_sim_age.millis(),
            session_ttl: c.session_ttl.millis(),
            answer_wait: c.answer_wait.0,
            retry_delay: c.queue.retry_delay.0,
            front_ends: c
                .front_ends
                .iter()
                .map(|f| (f.name.clone(), Sha256::digest(f.api_key.as_bytes()).into()))
                .collect(),
            queue: c.queue.clone(),
            short_code: c.short_code.clone(),
        }
    }
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self::from_config(&crate::config::TxRelayConfig::default())
    }
}

/// Rung when work is stored, so the workers claim it at once.
#[derive(Debug, Default)]
pub(crate) struct Wakeups {
    pub registrations: Arc<tokio::sync::Notify>,
    pub relays: Arc<tokio::sync::Notify>,
}

/// The carrier side of the relay.
#[derive(Debug)]
pub struct TxRelay {
    store: Arc<dyn Store>,
    region: String,
    /// How far back SIM changes are known (CAMARA `monitoredPeriod`, days).
    monitored_days: u32,
    /// The zone and initial keys.
    pub keys: keys::RelayKeys,
    settings: RelaySettings,
    rng: Random,
    /// Requests waiting for the bank's answer, by session or transaction id.
    waiters: crate::waiters::Waiters,
    queues: Wakeups,
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
            settings: RelaySettings::default(),
            rng: Random::os(),
            waiters: crate::waiters::Waiters::default(),
            queues: Wakeups::default(),
        }
    }

    /// The relay working with `settings`' bank and front ends, drawing
    /// ids and nonces from `rng`.
    pub fn with_settings(mut self, settings: RelaySettings, rng: Random) -> Self {
        self.settings = settings;
        self.rng = rng;
        self
    }

    /// How long a front end's request waits for the bank.
    pub fn answer_wait(&self) -> std::time::Duration {
        self.settings.answer_wait
    }

    /// The front end whose API key this is (compared in constant time).
    pub fn front_end(&self, api_key: &str) -> Option<&str> {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        let h: [u8; 32] = Sha256::digest(api_key.as_bytes()).into();
        let mut found = None;
        for (name, want) in &self.settings.front_ends {
            if bool::from(want.ct_eq(&h)) {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// Runs the registration and relay workers until `stop` (then lets
    /// what is in flight finish); without a bank there is nothing to run.
    /// Fails at once if the HTTP client cannot be made.
    pub fn workers(
        self: &Arc<Self>,
        clock: Clock,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<impl std::future::Future<Output = ()> + Send + 'static, reqwest::Error> {
        let ctx = match &self.settings.bank {
            Some(b) => Some(Arc::new(workers::Ctx {
                relay: self.clone(),
                bank: bank::BankClient::new(&b.url, b.timeout.0)?,
                clock: clock.clone(),
            })),
            None => None,
        };
        let q = &self.settings.queue;
        let cfg = crate::queue::WorkerConfig {
            batch: q.batch,
            lease: q.lease.0,
            idle_poll: std::time::Duration::from_millis(200),
            max_in_flight: q.max_in_flight,
            drain: std::time::Duration::from_secs(10),
        };
        Ok(async move {
            let Some(ctx) = ctx else { return };
            tokio::join!(
                crate::queue::run(
                    Arc::new(workers::Registrations(ctx.clone())),
                    cfg.clone(),
                    clock.clone(),
                    stop.clone(),
                ),
                crate::queue::run(Arc::new(workers::Relays(ctx)), cfg, clock, stop),
            );
        })
    }

    /// The region national numbers are read in.
    pub fn region(&self) -> &str {
        &self.region
    }

    pub(crate) fn number(&self, raw: &str) -> Result<String, TxRelayError> {
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

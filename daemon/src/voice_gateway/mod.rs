//! The voice gateway (the seed's telephone gateway interface): an operator
//! holding a service number SN and a key K1 asks verigate to call a number
//! TN and read its code VN, proving the request with K2. Only a request
//! whose K2 checks out becomes a call; a repeated (or replayed) request
//! returns the call it made instead of placing another.

pub mod k2;

use crate::config::{Config, K2Scheme, VoiceGatewayEntry};
use crate::random::Random;
use crate::store::{CallJob, CallKind, CallState, Millis, RequestKey, Store, StoreError};
use crate::verify::phone::{self, PhoneError};
use k2::K2Error;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// Prefix of the store's `service` of gateway calls (then the SN).
pub const SERVICE_PREFIX: &str = "vg:";

/// What an operator asks for.
#[derive(Debug, Clone)]
pub struct GatewayRequest {
    /// Number to call, as the operator sent it (K2 covers it as sent).
    pub tn: String,
    /// Code to read.
    pub vn: String,
    /// Service number.
    pub sn: String,
    /// Session key, hex.
    pub k2: String,
    /// When the request was signed (Unix seconds; the HMAC form signs it).
    pub ts: Option<i64>,
    /// Prompt locale (default: the service number's).
    pub locale: Option<String>,
}

/// Why a request was refused; each says who is at fault (all the requester).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No `[[voice_gateway]]` has this SN.
    #[error("service number {0:?} is not set up on this gateway")]
    UnknownServiceNumber(String),
    /// K2 is malformed or wrong.
    #[error(transparent)]
    BadK2(#[from] K2Error),
    /// VN is not the service number's count of digits.
    #[error("vn must be exactly {digits} digits for service number {sn}")]
    BadCode {
        /// Digits the service number's codes have.
        digits: usize,
        /// The service number.
        sn: String,
    },
    /// TN is not a usable number.
    #[error(transparent)]
    BadNumber(#[from] PhoneError),
    /// TN is in a country the service number may not call.
    #[error("numbers in {country} are not allowed for service number {sn}")]
    CountryNotAllowed {
        /// ISO 3166 region of TN (or "unknown").
        country: String,
        /// The service number.
        sn: String,
    },
    /// No prompts in that locale.
    #[error("locale {0:?} has no voice prompts (available: {1})")]
    UnsupportedLocale(String, String),
    /// The signed timestamp is too far from our clock: a captured request
    /// sent again later, or a requester's clock off.
    #[error("ts {ts} is {off_secs} s from this server's clock; at most {skew_secs} s is accepted (sign each request when it is sent)")]
    Stale {
        /// What was sent.
        ts: i64,
        /// How far off it is.
        off_secs: i64,
        /// The service number's window.
        skew_secs: u64,
    },
    /// A per-SN limit was hit.
    #[error("too many calls ({scope}); retry after {retry_after_secs} s")]
    RateLimited {
        /// Which limit.
        scope: &'static str,
        /// Seconds until the window resets.
        retry_after_secs: u64,
    },
    /// No gateway call has this id.
    #[error("voice call not found")]
    NotFound,
    /// The store failed (our side).
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
}

impl GatewayError {
    /// The outcome label of the request metric.
    pub fn outcome(&self) -> &'static str {
        match self {
            GatewayError::UnknownServiceNumber(_) | GatewayError::BadK2(_) => "forbidden",
            GatewayError::Stale { .. } => "stale",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::Store(_) => "error",
            _ => "rejected_input",
        }
    }
}

/// A request's call.
#[derive(Debug, Clone)]
pub struct Requested {
    /// The call (queued, or further along for a repeated request).
    pub call: CallJob,
    /// False when an earlier identical request made it.
    pub created: bool,
}

/// The gateway: the service numbers it serves and the call queue.
#[derive(Debug)]
pub struct VoiceGateway {
    store: Arc<dyn Store>,
    /// The service numbers and the region of national TNs, replaced on SIGHUP.
    live: std::sync::RwLock<Arc<(HashMap<String, VoiceGatewayEntry>, String)>>,
    locales: Vec<String>,
    rng: Random,
}

impl VoiceGateway {
    /// The gateway of `cfg`'s `[[voice_gateway]]` entries.
    pub fn new(store: Arc<dyn Store>, cfg: &Config, rng: Random) -> Self {
        Self::with_entries(
            store,
            &cfg.voice_gateway,
            &cfg.verify.default_region,
            &cfg.voice.locales,
            rng,
        )
    }

    /// A gateway serving `entries`; national TNs are read in
    /// `default_region` unless an entry names its own; `locales` have
    /// prompts; call ids are drawn from `rng`.
    pub fn with_entries(
        store: Arc<dyn Store>,
        entries: &[VoiceGatewayEntry],
        default_region: &str,
        locales: &[String],
        rng: Random,
    ) -> Self {
        VoiceGateway {
            store,
            live: std::sync::RwLock::new(Arc::new(Self::live_of(entries, default_region))),
            locales: locales.to_vec(),
            rng,
        }
    }

    fn live_of(
        entries: &[VoiceGatewayEntry],
        default_region: &str,
    ) -> (HashMap<String, VoiceGatewayEntry>, String) {
        (
            entries.iter().map(|g| (g.sn.clone(), g.clone())).collect(),
            default_region.to_string(),
        )
    }

    /// Replaces the service numbers (SIGHUP): keys, limits, windows and
    /// countries apply to the next request.
    pub fn reload(&self, entries: &[VoiceGatewayEntry], default_region: &str) {
        *self.live.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Self::live_of(entries, default_region));
    }

    /// Checks the request and queues its call (or returns the call an
    /// identical earlier request made).
    pub async fn request(
        &self,
        req: GatewayRequest,
        now: Millis,
    ) -> Result<Requested, GatewayError> {
        let live = self.live.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (entries, default_region) = (&live.0, live.1.as_str());
        let g = entries
            .get(&req.sn)
            .ok_or_else(|| GatewayError::UnknownServiceNumber(req.sn.clone()))?;
        // K2 first: whoever cannot prove K1 learns nothing about the number.
        k2::verify(g.k2, g.k1.as_bytes(), &req.tn, &req.vn, req.ts, &req.k2)?;
        // A signed timestamp dates the request: a captured one dies with its window.
        if g.k2 == K2Scheme::HmacSha256 {
            let ts = req.ts.unwrap_or_default();
            let off_secs = (now / 1000).saturating_sub(ts).saturating_abs();
            if off_secs as u64 > g.ts_skew.0.as_secs() {
                return Err(GatewayError::Stale {
                    ts,
                    off_secs,
                    skew_secs: g.ts_skew.0.as_secs(),
                });
            }
        }
        // A fixed length makes TN‖VN split one way only, so a K2 for one
        // number cannot be reused for a number with a digit more.
        if req.vn.len() != g.code_digits || !req.vn.bytes().all(|b| b.is_ascii_digit()) {
            return Err(GatewayError::BadCode {
                digits: g.code_digits,
                sn: g.sn.clone(),
            });
        }
        let locale = req
            .locale
            .clone()
            .unwrap_or_else(|| g.locale(&self.locales).to_string());
        if !self.locales.contains(&locale) {
            return Err(GatewayError::UnsupportedLocale(
                locale,
                self.locales.join(", "),
            ));
        }
        let to = phone::normalize(&req.tn, g.region(default_region))?;
        let countries = g.countries(default_region);
        let country = to.region().unwrap_or("unknown");
        if !countries.iter().any(|c| c == "*" || c == country) {
            return Err(GatewayError::CountryNotAllowed {
                country: country.to_string(),
                sn: g.sn.clone(),
            });
        }
        let service = format!("{SERVICE_PREFIX}{}", g.sn);
        // One call per (SN, TN, VN) in the replay window, whatever the K2
        // or ts: a repeat answers what the first request did, before the
        // limits, so a retry or a replay never places a second call.
        let key =
            Sha256::digest([g.sn.as_bytes(), to.digits().as_bytes(), req.vn.as_bytes()].join(&0u8));
        let request = RequestKey {
            key: &key,
            since: now - g.replay_window.0.as_millis() as i64,
        };
        if let Some(first) = self.store.find_call_by_request(&service, request).await? {
            self.store.barrier().await?;
            return Ok(Requested {
                call: first,
                created: false,
            });
        }
        let limits = [
            ("per service number", service.clone(), g.limit),
            (
                "per number for the service number",
                format!("vgn:{}:{}", g.sn, to.digits()),
                g.per_number,
            ),
        ];
        if let Err(r) = crate::limits::hit(&*self.store, &limits, now).await? {
            return Err(GatewayError::RateLimited {
                scope: r.scope,
                retry_after_secs: r.retry_after_secs,
            });
        }
        let call = CallJob {
            id: self.rng.id("call", now),
            verification_id: None,
            service,
            kind: CallKind::Voice,
            to: to.as_str().to_string(),
            caller: Some(g.caller_id.clone()).filter(|c| !c.is_empty()),
            code: Some(req.vn),
            fallback_text: None,
            locale,
            state: CallState::Queued,
            sip_code: None,
            detail: None,
            attempts: 0,
            next_attempt_at: now,
            expires_at: now + g.expires_after.0.as_millis() as i64,
            created_at: now,
            updated_at: now,
        };
        match self.store.enqueue_call(&call, Some(request)).await? {
            // An identical request won the race.
            Some(first) => Ok(Requested {
                call: first,
                created: false,
            }),
            None => Ok(Requested {
                call,
                created: true,
            }),
        }
    }

    /// A gateway call by id (calls of verifications are not shown here).
    pub async fn get(&self, id: &str) -> Result<CallJob, GatewayError> {
        self.store
            .get_call(id)
            .await?
            .filter(|c| c.verification_id.is_none() && c.service.starts_with(SERVICE_PREFIX))
            .ok_or(GatewayError::NotFound)
    }

    /// The service number of a gateway call.
    pub fn service_number(call: &CallJob) -> &str {
        call.service
            .strip_prefix(SERVICE_PREFIX)
            .unwrap_or(&call.service)
    }
}

#[cfg(test)]
mod tests;

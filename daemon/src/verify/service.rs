//! The verification service: start, check, cancel, show. Pure domain logic
//! over the [`Store`]; time is an input (`now`), so tests need no clock.

use super::code::{self, ServerSecret};
use super::phone::{self, PhoneError};
use crate::config::VerifyConfig;
use crate::store::{
    IdempotencyRecord, InsertOutcome, MessageState, Millis, OutboxMessage, RateHit, Resend,
    Service, Store, StoreError, Verification, VerificationStatus,
};
use rand::rngs::OsRng;
use rand::Rng;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// Channels this service sends codes over.
pub const CHANNELS: &[&str] = &["sms"];

/// A start request, as the API received it.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    /// Destination number (E.164, or national in the default region).
    pub to: String,
    /// Channel; `sms`.
    pub channel: String,
    /// Template locale.
    pub locale: Option<String>,
    /// Digits (4–10).
    pub code_length: Option<u8>,
    /// Caller's IP, for the per-IP limit.
    pub client_ip: Option<IpAddr>,
    /// Idempotency-Key header and a hash of the body it came with.
    pub idempotency: Option<(String, Vec<u8>)>,
}

/// What a start did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The verification (new or the pending one).
    pub verification: Verification,
    /// True when a new verification was created.
    pub created: bool,
    /// True when a message was queued by this call.
    pub sent: bool,
}

impl Started {
    /// An existing verification answered again (`sent`: a fresh code went out).
    fn existing(verification: Verification, sent: bool) -> Self {
        Started {
            verification,
            created: false,
            sent,
        }
    }
}

/// The record of this request's Idempotency-Key for verification `vid`.
fn idempotency_record(svc: &Service, req: &StartRequest, vid: &str) -> Option<IdempotencyRecord> {
    req.idempotency
        .as_ref()
        .map(|(key, hash)| IdempotencyRecord {
            service: svc.code.clone(),
            key: key.clone(),
            request_hash: hash.clone(),
            verification_id: vid.to_string(),
        })
}

/// How long an `Idempotency-Key` is honoured (then the sweep forgets it).
pub const IDEMPOTENCY_KEY_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Why a request was refused; each variant says who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The caller's number is unusable.
    #[error(transparent)]
    BadNumber(#[from] PhoneError),
    /// The service does not allow this destination country.
    #[error("numbers in {country} are not allowed for this service")]
    CountryNotAllowed {
        /// ISO 3166 region of the number (or "unknown").
        country: String,
    },
    /// Unknown channel.
    #[error("channel {0:?} is not supported (use one of: sms)")]
    UnsupportedChannel(String),
    /// Locale without a template.
    #[error("locale {0:?} has no message template (available: {1})")]
    UnsupportedLocale(String, String),
    /// code_length outside 4–10.
    #[error("code_length {0} is out of range: use 4 to 10 digits")]
    BadCodeLength(u8),
    /// A rate limit was hit.
    #[error("too many requests ({scope}); retry after {retry_after_secs} s")]
    RateLimited {
        /// Which limit.
        scope: &'static str,
        /// Seconds until the window resets.
        retry_after_secs: u64,
    },
    /// No such verification for this service.
    #[error("verification not found")]
    NotFound,
    /// The Idempotency-Key was used with a different request body.
    #[error("Idempotency-Key was already used with a different request body")]
    IdempotencyMismatch,
    /// The code is empty or not digits.
    #[error("code must be 4 to 10 digits")]
    BadCode,
    /// The store failed (our side).
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
}

/// Outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The verification after the check.
    pub verification: Verification,
    /// True only when this check's code was right and approved it; a check
    /// on an already closed verification compares nothing and is false.
    pub matched: bool,
    /// False when the verification was already closed: this check changed
    /// nothing (so it is not counted as a new outcome).
    pub counted: bool,
}

/// Summary of a verification's delivery for status views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// State of the latest message.
    pub state: MessageState,
    /// Messages sent for it.
    pub messages: usize,
}

/// The service.
#[derive(Debug)]
pub struct VerifyService {
    store: Arc<dyn Store>,
    secret: ServerSecret,
    cfg: RwLock<Arc<VerifyConfig>>,
}

impl VerifyService {
    /// A service over `store`.
    pub fn new(store: Arc<dyn Store>, secret: ServerSecret, cfg: VerifyConfig) -> Self {
        VerifyService {
            store,
            secret,
            cfg: RwLock::new(Arc::new(cfg)),
        }
    }

    /// Current settings.
    pub fn config(&self) -> Arc<VerifyConfig> {
        self.cfg.read().expect("config lock").clone()
    }

    /// Replaces templates and limits (SIGHUP).
    pub fn reload(&self, cfg: VerifyConfig) {
        *self.cfg.write().expect("config lock") = Arc::new(cfg);
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Counts a hit on each limit in order (one store call); the first
    /// refused one is the error, and the limits after it are not counted.
    async fn limits(
        &self,
        limits: &[(&'static str, String, crate::config::RateLimit)],
        now: Millis,
    ) -> Result<(), VerifyError> {
        let hits: Vec<RateHit<'_>> = limits
            .iter()
            .map(|(_, key, l)| RateHit {
                key,
                limit: l.count,
                window_ms: l.window.0.as_millis() as i64,
            })
            .collect();
        let decisions = self.store.rate_hits(&hits, now).await?;
        for ((scope, _, _), d) in limits.iter().zip(decisions) {
            if !d.allowed {
                return Err(VerifyError::RateLimited {
                    scope,
                    retry_after_secs: ((d.reset_at - now).max(0) as u64).div_ceil(1000).max(1),
                });
            }
        }
        Ok(())
    }

    /// Starts (or returns the pending) verification of `req.to` for `svc`.
    pub async fn start(
        &self,
        svc: &Service,
        req: StartRequest,
        now: Millis,
    ) -> Result<Started, VerifyError> {
        let cfg = self.config();
        // A replayed Idempotency-Key answers what the first request did,
        // before any limit or resend: a retry must not send another code.
        if let Some((key, hash)) = &req.idempotency {
            if let Some(rec) = self.store.get_idempotency(&svc.code, key).await? {
                return self.replay(&rec, hash).await;
            }
        }
        if let Some(ip) = req.client_ip {
            let per_ip = [("per client IP", format!("ip:{ip}"), cfg.limits.per_ip)];
            self.limits(&per_ip, now).await?;
        }
        let channel = req.channel.clone();
        if !CHANNELS.contains(&channel.as_str()) {
            return Err(VerifyError::UnsupportedChannel(channel));
        }
        let to = phone::normalize(&req.to, &cfg.default_region)?;
        let allowed = allowed_countries(svc);
        if !allowed.is_empty() {
            let country = to.region().unwrap_or("unknown");
            if !allowed.iter().any(|c| c == country) {
                return Err(VerifyError::CountryNotAllowed {
                    country: country.to_string(),
                });
            }
        }
        let locale = req
            .locale
            .clone()
            .unwrap_or_else(|| cfg.default_locale.clone());
        if !cfg.templates.contains_key(&locale) {
            let have: Vec<&str> = cfg.templates.keys().map(String::as_str).collect();
            return Err(VerifyError::UnsupportedLocale(locale, have.join(", ")));
        }
        let len = req.code_length.unwrap_or(cfg.code_length);
        if !(4..=10).contains(&len) {
            return Err(VerifyError::BadCodeLength(len));
        }
        // A repeated start returns the pending verification; it resends
        // (with a fresh code) only after the cooldown.
        if let Some(v) = self.store.find_pending(&svc.code, to.as_str()).await? {
            if now < v.expires_at {
                let idem = idempotency_record(svc, &req, &v.id);
                if now - v.last_sent_at < cfg.resend_cooldown.0.as_millis() as i64 {
                    // A replay of this request must answer the same. Either
                    // write is durable, so it also covers the start that
                    // created `v`, which may still be waiting for its flush.
                    match &idem {
                        Some(rec) => self.store.record_idempotency(rec, now).await?,
                        None => self.store.barrier().await?,
                    }
                    return Ok(Started::existing(v, false));
                }
                self.limits(&send_limits(&cfg, svc, to.digits(), None), now)
                    .await?;
                // A fresh code gets a fresh lifetime, so the SMS never
                // promises more time than the code has.
                let expires_at = now + cfg.ttl.0.as_millis() as i64;
                let code = code::generate(len);
                let hash = code::hash(&self.secret, &v.id, &code);
                let msg = self.message(
                    &cfg,
                    svc,
                    &v.id,
                    to.as_str(),
                    &locale,
                    &code,
                    expires_at,
                    now,
                );
                // Applies only if no other resend, check or cancel came
                // first; otherwise nothing is sent and the current state
                // is answered.
                let sent = self
                    .store
                    .record_resend(
                        &Resend {
                            verification_id: &v.id,
                            last_sent_at: v.last_sent_at,
                            code_hash: &hash,
                            expires_at,
                            message: &msg,
                            idempotency: idem.as_ref(),
                        },
                        now,
                    )
                    .await?;
                return Ok(Started::existing(self.load(&v.id).await?, sent));
            }
            // Past its expiry but never closed: close it, then start anew.
            self.close_pending(svc, &v, VerificationStatus::Expired, now)
                .await?;
        }
        let per_service = (
            "per service",
            format!("svc:{}", svc.code),
            cfg.limits.per_service,
        );
        self.limits(&send_limits(&cfg, svc, to.digits(), Some(per_service)), now)
            .await?;
        let id = new_id("vf");
        let code = code::generate(len);
        let expires_at = now + cfg.ttl.0.as_millis() as i64;
        let v = Verification {
            id: id.clone(),
            service: svc.code.clone(),
            to: to.as_str().to_string(),
            channel,
            locale: locale.clone(),
            status: VerificationStatus::Pending,
            code_hash: code::hash(&self.secret, &id, &code),
            attempts: 0,
            max_attempts: cfg.max_attempts,
            sends: 1,
            created_at: now,
            expires_at,
            last_sent_at: now,
            updated_at: now,
        };
        let msg = self.message(&cfg, svc, &id, to.as_str(), &locale, &code, expires_at, now);
        let idem = idempotency_record(svc, &req, &id);
        match self
            .store
            .insert_verification(&v, &msg, idem.as_ref())
            .await?
        {
            InsertOutcome::Created => Ok(Started {
                verification: v,
                created: true,
                sent: true,
            }),
            InsertOutcome::PendingExists(existing) => Ok(Started::existing(existing, false)),
            // Another request with the same key won the race.
            InsertOutcome::IdempotentReplay(rec) => {
                let hash = req.idempotency.as_ref().map(|(_, h)| h.as_slice());
                self.replay(&rec, hash.unwrap_or_default()).await
            }
        }
    }

    /// What a replayed Idempotency-Key answers: the first request's
    /// verification, if this request is the same one.
    async fn replay(&self, rec: &IdempotencyRecord, hash: &[u8]) -> Result<Started, VerifyError> {
        if rec.request_hash != hash {
            return Err(VerifyError::IdempotencyMismatch);
        }
        let v = self.load(&rec.verification_id).await?;
        // The first request may still be waiting for its flush.
        self.store.barrier().await?;
        Ok(Started::existing(v, false))
    }

    /// A verification by id (any service).
    async fn load(&self, id: &str) -> Result<Verification, VerifyError> {
        self.store
            .get_verification(id)
            .await?
            .ok_or(VerifyError::NotFound)
    }

    #[allow(clippy::too_many_arguments)]
    fn message(
        &self,
        cfg: &VerifyConfig,
        svc: &Service,
        vid: &str,
        to: &str,
        locale: &str,
        code: &str,
        expires_at: Millis,
        now: Millis,
    ) -> OutboxMessage {
        let template = cfg.templates.get(locale).cloned().unwrap_or_default();
        let minutes = ((expires_at - now).max(0) / 60_000).max(1);
        let text = template
            .replace("{service}", &svc.name)
            .replace("{minutes}", &minutes.to_string())
            .replace("{code}", code);
        OutboxMessage {
            id: new_id("msg"),
            verification_id: Some(vid.to_string()),
            service: svc.code.clone(),
            to: to.to_string(),
            from: cfg.sender.clone(),
            text,
            state: MessageState::Queued,
            attempts: 0,
            next_attempt_at: now,
            expires_at,
            smsc: None,
            message_ids: Vec::new(),
            last_error: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// The verification `id` of service `svc`, closing it if it expired.
    pub async fn get(
        &self,
        svc: &Service,
        id: &str,
        now: Millis,
    ) -> Result<Verification, VerifyError> {
        // Another service's verification is not found, not forbidden.
        let v = Some(self.load(id).await?)
            .filter(|v| v.service == svc.code)
            .ok_or(VerifyError::NotFound)?;
        if v.status == VerificationStatus::Pending && now >= v.expires_at {
            return self
                .close_pending(svc, &v, VerificationStatus::Expired, now)
                .await;
        }
        Ok(v)
    }

    /// Moves a pending verification to a closed `status` (compare and set:
    /// a concurrent change wins), queues its webhook when this call changed
    /// it, and returns the stored record.
    async fn close_pending(
        &self,
        svc: &Service,
        v: &Verification,
        status: VerificationStatus,
        now: Millis,
    ) -> Result<Verification, VerifyError> {
        let changed = self
            .store
            .update_verification(
                &v.id,
                VerificationStatus::Pending,
                v.attempts,
                status,
                v.attempts,
                now,
            )
            .await?;
        let after = self.load(&v.id).await?;
        if changed {
            crate::metrics::verification(&after.channel, after.status.as_str());
            notify(&*self.store, svc, &after, now).await;
        }
        Ok(after)
    }

    /// Delivery state of the latest message of a verification.
    pub async fn delivery(&self, id: &str) -> Result<Option<Delivery>, VerifyError> {
        let msgs = self.store.messages_for_verification(id).await?;
        Ok(msgs.last().map(|m| Delivery {
            state: m.state,
            messages: msgs.len(),
        }))
    }

    /// Checks a code. A closed verification answers its status without
    /// consuming an attempt; the fifth wrong code kills it.
    pub async fn check(
        &self,
        svc: &Service,
        id: &str,
        submitted: &str,
        now: Millis,
    ) -> Result<Checked, VerifyError> {
        let submitted = submitted.trim();
        if !(4..=10).contains(&submitted.len()) || !submitted.chars().all(|c| c.is_ascii_digit()) {
            return Err(VerifyError::BadCode);
        }
        // Compare-and-set: concurrent checks cannot share an attempt.
        for _ in 0..8 {
            let v = self.get(svc, id, now).await?;
            if v.status != VerificationStatus::Pending {
                return Ok(Checked {
                    verification: v,
                    matched: false,
                    counted: false,
                });
            }
            let (status, attempts) = if code::matches(&self.secret, &v.id, submitted, &v.code_hash)
            {
                (VerificationStatus::Approved, v.attempts)
            } else if v.attempts + 1 >= v.max_attempts {
                (VerificationStatus::MaxAttemptsReached, v.attempts + 1)
            } else {
                (VerificationStatus::Pending, v.attempts + 1)
            };
            if self
                .store
                .update_verification(
                    &v.id,
                    VerificationStatus::Pending,
                    v.attempts,
                    status,
                    attempts,
                    now,
                )
                .await?
            {
                let v = self.load(id).await?;
                let matched = status == VerificationStatus::Approved;
                if status != VerificationStatus::Pending {
                    crate::metrics::verification(&v.channel, status.as_str());
                    notify(&*self.store, svc, &v, now).await;
                }
                return Ok(Checked {
                    verification: v,
                    matched,
                    counted: true,
                });
            }
        }
        Err(VerifyError::Store(StoreError::Database(
            "verification changed concurrently too often".into(),
        )))
    }

    /// Cancels a pending verification (a closed one is returned as it is).
    pub async fn cancel(
        &self,
        svc: &Service,
        id: &str,
        now: Millis,
    ) -> Result<Verification, VerifyError> {
        let v = self.get(svc, id, now).await?;
        if v.status != VerificationStatus::Pending {
            return Ok(v);
        }
        self.close_pending(svc, &v, VerificationStatus::Canceled, now)
            .await
    }
}

/// Queues the status webhook of a verification that just changed status.
/// A store failure here is logged, not returned: the change itself is stored.
async fn notify(store: &dyn Store, svc: &Service, v: &Verification, now: Millis) {
    let kind = format!("verification.{}", v.status.as_str());
    let body = crate::webhook::event_body(&kind, v, now);
    if let Err(e) = crate::webhook::enqueue(store, svc, &body, now).await {
        tracing::error!(error = %e, service = %svc.code, "cannot queue status webhook");
    }
}

fn allowed_countries(svc: &Service) -> Vec<String> {
    svc.settings
        .get("allowed_countries")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// An opaque id with a type prefix, e.g. `vf_019a…`: the creation time in
/// milliseconds (48 bits), then 96 random bits. Time first, so new rows go
/// to the end of the primary-key index instead of dirtying a random page of
/// it per insert (the store's write cost stays flat as tables grow); the
/// random part keeps ids unguessable.
pub fn new_id(prefix: &str) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let rand: [u8; 12] = OsRng.gen();
    format!(
        "{prefix}_{:012x}{}",
        ms & 0xffff_ffff_ffff,
        hex::encode(rand)
    )
}

/// The limits a send passes, in order: `first` (if any), per number, per
/// destination prefix.
fn send_limits(
    cfg: &VerifyConfig,
    svc: &Service,
    digits: &str,
    first: Option<(&'static str, String, crate::config::RateLimit)>,
) -> Vec<(&'static str, String, crate::config::RateLimit)> {
    let n = usize::from(cfg.limits.prefix_digits).min(digits.len());
    first
        .into_iter()
        .chain([
            (
                "per number",
                format!("num:{}:{digits}", svc.code),
                cfg.limits.per_number,
            ),
            (
                "per destination prefix",
                format!("pre:{}", &digits[..n]),
                cfg.limits.per_prefix,
            ),
        ])
        .collect()
}

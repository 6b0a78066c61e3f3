//! The verification service: start, check, cancel, show. Pure domain logic
//! over the [`Store`]; time is an input (`now`), so tests need no clock.

use super::channels::CallChannels;
use super::code::{self, ServerSecret};
pub use super::error::{CallerError, SetupError, VerifyError};
use super::phone::{self, E164};
use super::span;
use crate::config::VerifyConfig;
use crate::flashcall::{FlashHint, Report};
use crate::limits::Limit;
use crate::random::Random;
use crate::store::{
    CallJob, CallKind, CallState, IdempotencyRecord, InsertOutcome, MessageState, Millis,
    OutboxMessage, OwnedDispatch, Resend, Service, StatusChange, Store, StoreError, Verification,
    VerificationStatus, WebhookJob,
};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// Channels this service sends codes over.
pub const CHANNELS: &[&str] = &["sms", "voice", "flash_call"];

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
    /// Voice only: send the code by SMS if the call fails.
    pub fallback_sms: bool,
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

/// A verification's first or repeated send, ready to store.
struct Prepared {
    code_hash: Vec<u8>,
    expires_at: Millis,
    send: OwnedDispatch,
}

impl OwnedDispatch {
    fn borrow(&self) -> crate::store::Dispatch<'_> {
        match self {
            OwnedDispatch::Sms(m) => m.into(),
            OwnedDispatch::Call(c) => c.into(),
        }
    }
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

/// What a check submits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// The code the user typed; for a flash call, the caller number or its
    /// last digits.
    Code(String),
    /// Flash calls: the caller numbers the app observed.
    Callers(Vec<String>),
}

impl From<&str> for Submission {
    fn from(code: &str) -> Self {
        Submission::Code(code.to_string())
    }
}

impl From<&String> for Submission {
    fn from(code: &String) -> Self {
        Submission::Code(code.clone())
    }
}

enum Expected {
    Code(String),
    /// Whether a reported caller is the call's CLI, and how many attempts
    /// the report costs: one per distinct number that could be a pool
    /// number, so listing many guesses costs as many guesses.
    Caller {
        matched: bool,
        cost: u32,
    },
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
    rng: Random,
    cfg: RwLock<Arc<VerifyConfig>>,
    calls: RwLock<Arc<CallChannels>>,
    /// Where to tell the call workers to hang up a call whose verification closed.
    hangups: RwLock<Option<tokio::sync::mpsc::UnboundedSender<String>>>,
}

impl VerifyService {
    /// A service over `store`, drawing codes and ids from `rng`.
    pub fn new(
        store: Arc<dyn Store>,
        secret: ServerSecret,
        cfg: VerifyConfig,
        rng: Random,
    ) -> Self {
        VerifyService {
            store,
            secret,
            rng,
            cfg: RwLock::new(Arc::new(cfg)),
            calls: RwLock::new(Arc::new(CallChannels {
                unavailable: Some("no SIP trunk is configured ([[sip_trunk]])".into()),
                ..Default::default()
            })),
            hangups: RwLock::new(None),
        }
    }

    /// Sets the call channels (at start and on reload).
    pub fn set_call_channels(&self, c: CallChannels) {
        *self.calls.write().expect("calls lock") = Arc::new(c);
    }

    /// Call channel settings.
    pub fn call_channels(&self) -> Arc<CallChannels> {
        self.calls.read().expect("calls lock").clone()
    }

    /// Where call ids to hang up are sent (the call workers).
    pub fn set_hangups(&self, tx: tokio::sync::mpsc::UnboundedSender<String>) {
        *self.hangups.write().expect("hangups lock") = Some(tx);
    }

    /// The server secret (the call workers hash fallback codes with it).
    pub fn secret(&self) -> &ServerSecret {
        &self.secret
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

    /// Counts a hit on each limit in order; the first refused one is the
    /// error.
    async fn limits(&self, limits: &[Limit], now: Millis) -> Result<(), VerifyError> {
        crate::limits::hit(&*self.store, limits, now)
            .await?
            .map_err(|r| {
                VerifyError::Caller(CallerError::RateLimited {
                    scope: r.scope,
                    retry_after_secs: r.retry_after_secs,
                })
            })
    }

    /// Starts (or returns the pending) verification of `req.to` for `svc`.
    pub async fn start(
        &self,
        svc: &Service,
        req: StartRequest,
        now: Millis,
    ) -> Result<Started, VerifyError> {
        let span = span::verification("start", &svc.code, None);
        span::traced(span, self.start_in_span(svc, req, now), |s| &s.verification).await
    }

    async fn start_in_span(
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
            let per_ip = [(
                "per client IP",
                format!("ip:{}", crate::limits::ip_bucket(ip)),
                cfg.limits.per_ip,
            )];
            self.limits(&per_ip, now).await?;
        }
        let channel = req.channel.clone();
        if !CHANNELS.contains(&channel.as_str()) {
            return Err(VerifyError::Caller(CallerError::UnsupportedChannel(
                channel,
            )));
        }
        let to = phone::normalize(&req.to, &cfg.default_region)?;
        let allowed = allowed_countries(svc);
        if !allowed.is_empty() {
            let country = to.region().unwrap_or("unknown");
            if !allowed.iter().any(|c| c == country) {
                return Err(VerifyError::Caller(CallerError::CountryNotAllowed {
                    country: country.to_string(),
                }));
            }
        }
        let locale = req
            .locale
            .clone()
            .unwrap_or_else(|| cfg.default_locale.clone());
        let calls = self.call_channels();
        self.check_channel(&cfg, &calls, &channel, &locale, req.fallback_sms)?;
        let len = req.code_length.unwrap_or(cfg.code_length);
        // A short code is a guessable one: the floor holds for every request.
        if !(cfg.min_code_length..=10).contains(&len) {
            return Err(VerifyError::Caller(CallerError::BadCodeLength {
                len,
                min: cfg.min_code_length,
            }));
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
                // promises more time than the code has. The resend keeps
                // the verification's channel and locale.
                let p = self
                    .prepare(&cfg, svc, &v.channel, &v.id, &to, &v.locale, len, &req, now)
                    .await?;
                // Applies only if no other resend, check or cancel came
                // first; otherwise nothing is sent and the current state
                // is answered.
                let sent = self
                    .store
                    .record_resend(
                        &Resend {
                            verification_id: &v.id,
                            last_sent_at: v.last_sent_at,
                            code_hash: &p.code_hash,
                            expires_at: p.expires_at,
                            send: p.send.borrow(),
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
        let id = self.rng.id("vf", now);
        let p = self
            .prepare(&cfg, svc, &channel, &id, &to, &locale, len, &req, now)
            .await?;
        let expires_at = p.expires_at;
        let v = Verification {
            id: id.clone(),
            service: svc.code.clone(),
            to: to.as_str().to_string(),
            channel,
            locale: locale.clone(),
            status: VerificationStatus::Pending,
            code_hash: p.code_hash.clone(),
            attempts: 0,
            max_attempts: cfg.max_attempts,
            sends: 1,
            created_at: now,
            expires_at,
            last_sent_at: now,
            updated_at: now,
        };
        let idem = idempotency_record(svc, &req, &id);
        match self
            .store
            .insert_verification(&v, p.send.borrow(), idem.as_ref())
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
            return Err(VerifyError::Caller(CallerError::IdempotencyMismatch));
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
            .ok_or(VerifyError::Caller(CallerError::NotFound))
    }

    /// Refuses a channel this server cannot use, or a locale it has no
    /// template or prompts for.
    fn check_channel(
        &self,
        cfg: &VerifyConfig,
        calls: &CallChannels,
        channel: &str,
        locale: &str,
        fallback_sms: bool,
    ) -> Result<(), VerifyError> {
        let unavailable = |why: &str| {
            VerifyError::Setup(SetupError::ChannelUnavailable {
                channel: channel.to_string(),
                why: why.to_string(),
            })
        };
        let no_template = || {
            let have: Vec<&str> = cfg.templates.keys().map(String::as_str).collect();
            VerifyError::Caller(CallerError::UnsupportedLocale(
                locale.to_string(),
                have.join(", "),
            ))
        };
        match channel {
            "sms" => {
                if !cfg.templates.contains_key(locale) {
                    return Err(no_template());
                }
            }
            "voice" => {
                if let Some(why) = &calls.unavailable {
                    return Err(unavailable(why));
                }
                if !calls.voice_locales.iter().any(|l| l == locale) {
                    return Err(VerifyError::Caller(CallerError::UnsupportedLocale(
                        locale.to_string(),
                        calls.voice_locales.join(", "),
                    )));
                }
                if fallback_sms && !cfg.templates.contains_key(locale) {
                    return Err(no_template());
                }
            }
            "flash_call" => {
                if let Some(why) = &calls.unavailable {
                    return Err(unavailable(why));
                }
                if calls.flash.is_none() {
                    return Err(unavailable(
                        "no caller-number pool is configured ([[flash_call.pool]])",
                    ));
                }
            }
            other => {
                return Err(VerifyError::Caller(CallerError::UnsupportedChannel(
                    other.to_string(),
                )))
            }
        }
        Ok(())
    }

    /// A fresh code (or, for a flash call, caller number) and what carries it.
    #[allow(clippy::too_many_arguments)]
    async fn prepare(
        &self,
        cfg: &VerifyConfig,
        svc: &Service,
        channel: &str,
        vid: &str,
        to: &E164,
        locale: &str,
        len: u8,
        req: &StartRequest,
        now: Millis,
    ) -> Result<Prepared, VerifyError> {
        let ttl = cfg.ttl.0.as_millis() as i64;
        let call =
            |kind, caller: Option<String>, code: Option<String>, fallback_text, expires_at| {
                OwnedDispatch::Call(CallJob {
                    id: self.rng.id("call", now),
                    verification_id: Some(vid.to_string()),
                    service: svc.code.clone(),
                    kind,
                    to: to.as_str().to_string(),
                    caller,
                    code,
                    fallback_text,
                    locale: locale.to_string(),
                    state: CallState::Queued,
                    sip_code: None,
                    detail: None,
                    attempts: 0,
                    next_attempt_at: now,
                    expires_at,
                    created_at: now,
                    updated_at: now,
                })
            };
        match channel {
            "voice" => {
                let expires_at = now + ttl;
                let code = code::generate(&self.rng, len);
                // The SMS text of a fallback is written now (template and
                // service name as they are at start) and kept with the call.
                let fallback = req.fallback_sms.then(|| {
                    self.message(cfg, svc, vid, to.as_str(), locale, &code, expires_at, now)
                        .text
                });
                Ok(Prepared {
                    code_hash: code::hash(&self.secret, vid, &code),
                    expires_at,
                    send: call(
                        CallKind::Voice,
                        None,
                        Some(code.to_string()),
                        fallback,
                        expires_at,
                    ),
                })
            }
            "flash_call" => {
                let calls = self.call_channels();
                let flash = calls.flash.as_ref().ok_or_else(|| {
                    VerifyError::Setup(SetupError::ChannelUnavailable {
                        channel: channel.into(),
                        why: "no caller-number pool is configured".into(),
                    })
                })?;
                let pool = flash.pool_for(to.region()).ok_or_else(|| {
                    VerifyError::Caller(CallerError::CountryNotAllowed {
                        country: format!(
                            "{} (no flash-call pool calls it)",
                            to.region().unwrap_or("unknown")
                        ),
                    })
                })?;
                let in_use: HashSet<String> = self
                    .store
                    .flash_clis_in_use(to.as_str(), now)
                    .await?
                    .into_iter()
                    .collect();
                let window = flash.report_window.as_millis() as i64;
                let cli =
                    pool.pool
                        .draw(&mut self.rng.rng(), &in_use)
                        .ok_or(VerifyError::Setup(SetupError::NoCallerNumber {
                            retry_after_secs: (window as u64).div_ceil(1000),
                        }))?;
                let tail = &cli[cli.len() - pool.report_digits..];
                let expires_at = now + window;
                Ok(Prepared {
                    code_hash: code::hash(&self.secret, vid, tail),
                    expires_at,
                    send: call(CallKind::FlashCall, Some(cli), None, None, expires_at),
                })
            }
            _ => {
                let expires_at = now + ttl;
                let code = code::generate(&self.rng, len);
                Ok(Prepared {
                    code_hash: code::hash(&self.secret, vid, &code),
                    expires_at,
                    send: OwnedDispatch::Sms(self.message(
                        cfg,
                        svc,
                        vid,
                        to.as_str(),
                        locale,
                        &code,
                        expires_at,
                        now,
                    )),
                })
            }
        }
    }

    /// What the app of a flash-call verification watches for.
    pub fn flash_hint(&self, v: &Verification) -> Option<FlashHint> {
        if v.channel != CallKind::FlashCall.as_str() {
            return None;
        }
        let calls = self.call_channels();
        let region = phone::normalize(&v.to, "ZZ").ok()?;
        let pool = calls.flash.as_ref()?.pool_for(region.region())?;
        Some(FlashHint {
            cli_prefix: pool.pool.prefix(),
            report_digits: pool.report_digits,
        })
    }

    /// The calls of a verification, oldest first.
    pub async fn calls(&self, id: &str) -> Result<Vec<CallJob>, VerifyError> {
        Ok(self.store.calls_for_verification(id).await?)
    }

    /// Ends the calls of a verification that just closed: queued ones are
    /// never placed, ringing or answered ones are hung up by their worker.
    async fn end_calls(&self, v: &Verification, now: Millis) {
        if v.channel == "sms" {
            return;
        }
        match self.store.cancel_calls_for_verification(&v.id, now).await {
            Ok(calling) => {
                let tx = self.hangups.read().expect("hangups lock").clone();
                if let Some(tx) = tx {
                    for c in calling {
                        let _ = tx.send(c.id);
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, verification = %v.id, "cannot cancel the calls of a closed verification")
            }
        }
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
            id: self.rng.id("msg", now),
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
            .ok_or(VerifyError::Caller(CallerError::NotFound))?;
        if v.status == VerificationStatus::Pending && now >= v.expires_at {
            return self
                .close_pending(svc, &v, VerificationStatus::Expired, now)
                .await
                .map(|(v, _)| v);
        }
        Ok(v)
    }

    /// Moves a pending verification to a closed `status` (compare and set:
    /// a concurrent change wins), queues its webhook when this call changed
    /// it, and returns the stored record and whether this call changed it.
    async fn close_pending(
        &self,
        svc: &Service,
        v: &Verification,
        status: VerificationStatus,
        now: Millis,
    ) -> Result<(Verification, bool), VerifyError> {
        let webhook = status_webhook(&self.rng, svc, v, status, v.attempts, now);
        let change = StatusChange {
            id: &v.id,
            expect_status: VerificationStatus::Pending,
            expect_attempts: v.attempts,
            status,
            attempts: v.attempts,
            webhook: webhook.as_ref(),
        };
        let changed = self.store.change_status(&change, now).await?;
        let after = self.load(&v.id).await?;
        if changed {
            crate::metrics::verification(&after.channel, after.status.as_str());
            self.end_calls(&after, now).await;
        }
        Ok((after, changed))
    }

    /// Delivery state of the latest message of a verification.
    pub async fn delivery(&self, id: &str) -> Result<Option<Delivery>, VerifyError> {
        let msgs = self.store.messages_for_verification(id).await?;
        Ok(msgs.last().map(|m| Delivery {
            state: m.state,
            messages: msgs.len(),
        }))
    }

    /// Checks a code, or for a flash call the caller numbers the app saw.
    /// A closed verification answers its status without consuming an
    /// attempt; the last allowed wrong check kills it. One submission is
    /// one attempt, however many numbers it lists.
    pub async fn check(
        &self,
        svc: &Service,
        id: &str,
        submitted: impl Into<Submission>,
        now: Millis,
    ) -> Result<Checked, VerifyError> {
        let span = span::verification("check", &svc.code, Some(id));
        let op = self.check_in_span(svc, id, submitted.into(), now);
        span::traced(span, op, |c| &c.verification).await
    }

    async fn check_in_span(
        &self,
        svc: &Service,
        id: &str,
        submitted: Submission,
        now: Millis,
    ) -> Result<Checked, VerifyError> {
        // A code that cannot be one is refused before any lookup: 4 to 15
        // digits (a flash call's may be a whole number, `+` and separators).
        if let Submission::Code(c) = &submitted {
            let digits = c.chars().filter(char::is_ascii_digit).count();
            let shaped = c
                .trim()
                .trim_start_matches('+')
                .chars()
                .all(|ch| ch.is_ascii_digit() || matches!(ch, ' ' | '-' | '.' | '(' | ')'));
            if !(4..=15).contains(&digits) || !shaped {
                return Err(VerifyError::Caller(CallerError::BadCode));
            }
        }
        let first = self.get(svc, id, now).await?;
        let flash = first.channel == CallKind::FlashCall.as_str();
        // What to compare, fixed before the compare-and-set loop.
        let expected: Expected = if flash {
            let raw = match submitted {
                Submission::Code(c) => vec![c],
                Submission::Callers(list) => list,
            };
            let hint = self.flash_hint(&first);
            let region = phone::normalize(&first.to, "ZZ")
                .ok()
                .and_then(|n| n.region().map(str::to_string))
                .unwrap_or_else(|| self.config().default_region.clone());
            let report = Report::parse(&raw, hint.as_ref(), &region)?;
            let cli = self
                .store
                .calls_for_verification(&first.id)
                .await?
                .into_iter()
                .rev()
                .find_map(|c| c.caller);
            let judged = report.judge(cli.as_deref());
            Expected::Caller {
                matched: judged.matched,
                cost: judged.cost,
            }
        } else {
            let Submission::Code(code) = submitted else {
                return Err(VerifyError::Caller(CallerError::NotAFlashCall(first.id)));
            };
            let code = code.trim().to_string();
            if !(4..=10).contains(&code.len()) || !code.chars().all(|c| c.is_ascii_digit()) {
                return Err(VerifyError::Caller(CallerError::BadCode));
            }
            Expected::Code(code)
        };
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
            let left = v.max_attempts.saturating_sub(v.attempts);
            let (right, cost) = match &expected {
                Expected::Code(c) => (code::matches(&self.secret, &v.id, c, &v.code_hash), 1),
                // More guesses than attempts left approve nothing.
                Expected::Caller { matched, cost } => (*matched && *cost <= left, *cost),
            };
            let (status, attempts) = if right {
                (VerificationStatus::Approved, v.attempts)
            } else if cost >= left {
                (VerificationStatus::MaxAttemptsReached, v.max_attempts)
            } else {
                (VerificationStatus::Pending, v.attempts + cost)
            };
            // A closing change carries its webhook into the same write.
            let webhook = (status != VerificationStatus::Pending)
                .then(|| status_webhook(&self.rng, svc, &v, status, attempts, now))
                .flatten();
            let change = StatusChange {
                id: &v.id,
                expect_status: VerificationStatus::Pending,
                expect_attempts: v.attempts,
                status,
                attempts,
                webhook: webhook.as_ref(),
            };
            if self.store.change_status(&change, now).await? {
                let v = self.load(id).await?;
                let matched = status == VerificationStatus::Approved;
                if status != VerificationStatus::Pending {
                    crate::metrics::verification(&v.channel, status.as_str());
                    self.end_calls(&v, now).await;
                }
                return Ok(Checked {
                    verification: v,
                    matched,
                    counted: true,
                });
            }
        }
        Err(VerifyError::Store(StoreError::Unavailable(
            "verification changed concurrently too often".into(),
        )))
    }

    /// Closes the verifications still pending past their expiry, each with
    /// its `verification.expired` webhook in the same write, so an app
    /// waiting for the webhook hears on time rather than when someone next
    /// reads the verification. Returns how many it closed.
    pub async fn expire_due(&self, now: Millis) -> Result<usize, VerifyError> {
        const BATCH: u32 = 200;
        let mut services: HashMap<String, Option<Service>> = HashMap::new();
        let mut closed = 0;
        // Bounded per sweep: the next sweep goes on where this one stopped.
        for _ in 0..10 {
            let due = self.store.pending_expired(now, BATCH).await?;
            let full = due.len() == BATCH as usize;
            for v in due {
                let svc = match services.get(&v.service) {
                    Some(s) => s.clone(),
                    None => {
                        let s = self.store.get_service(&v.service).await?;
                        services.insert(v.service.clone(), s.clone());
                        s
                    }
                };
                let Some(svc) = svc else {
                    tracing::warn!(verification = %v.id, service = %v.service, "pending verification of an unknown service");
                    continue;
                };
                let (_, changed) = self
                    .close_pending(&svc, &v, VerificationStatus::Expired, now)
                    .await?;
                closed += usize::from(changed);
            }
            if !full {
                break;
            }
        }
        Ok(closed)
    }

    /// Cancels a pending verification (a closed one is returned as it is).
    pub async fn cancel(
        &self,
        svc: &Service,
        id: &str,
        now: Millis,
    ) -> Result<Verification, VerifyError> {
        let span = span::verification("cancel", &svc.code, Some(id));
        let op = async {
            let v = self.get(svc, id, now).await?;
            if v.status != VerificationStatus::Pending {
                return Ok(v);
            }
            self.close_pending(svc, &v, VerificationStatus::Canceled, now)
                .await
                .map(|(v, _)| v)
        };
        span::traced(span, op, |v| v).await
    }
}

/// The status webhook of `v` moving to `status` with `attempts` (none if
/// the service has no webhook URL), written with the change itself.
fn status_webhook(
    rng: &Random,
    svc: &Service,
    v: &Verification,
    status: VerificationStatus,
    attempts: u32,
    now: Millis,
) -> Option<WebhookJob> {
    let after = Verification {
        status,
        attempts,
        updated_at: now,
        ..v.clone()
    };
    let kind = format!("verification.{}", status.as_str());
    let body = crate::webhook::event_body(rng, &kind, &after, now);
    crate::webhook::job(rng, svc, &body, now)
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

/// The limits a send passes, in order: `first` (if any), per number (of
/// this service, then of all), per destination prefix.
fn send_limits(
    cfg: &VerifyConfig,
    svc: &Service,
    digits: &str,
    first: Option<Limit>,
) -> Vec<Limit> {
    let n = usize::from(cfg.limits.prefix_digits).min(digits.len());
    first
        .into_iter()
        .chain([
            (
                "per number",
                format!("num:{}:{digits}", svc.code),
                cfg.limits.per_number,
            ),
            // One number pestered through many services is still one victim.
            (
                "per number across services",
                format!("numall:{digits}"),
                cfg.limits.per_number_all_services,
            ),
            (
                "per destination prefix",
                format!("pre:{}", &digits[..n]),
                cfg.limits.per_prefix,
            ),
        ])
        .collect()
}

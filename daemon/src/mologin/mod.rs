//! MO-SMS login and registration (CN103152331A): the app asks for a login
//! and gets a token; the phone texts it to our short code; the network
//! stamps the sender's number on the MO, so the SMS itself proves the
//! number. The MO completes the login (account found or made, session
//! created) and the app collects the session by polling with the token.

pub mod route;
pub mod token;

use crate::config::{MoLoginConfig, NoTokenAction};
use crate::random::Random;
use crate::store::{
    Account, CompleteMoLogin, MessageState, Millis, MoIntent, MoLogin, MoLoginOutcome,
    MoLoginState, MoMessage, MoPart, MoPlan, OutboxMessage, RateHit, Service, Session, Store,
    StoreError, WebhookJob,
};
use crate::verify::code::ServerSecret;
use route::{Handler, MoRouter};
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// The service that MO replies without a login (an unknown token, no token)
/// are sent for; made at start when MO login is on.
pub const SYSTEM_SERVICE: &str = "mo-login";

/// What the app gets when it asks for a login.
#[derive(Debug, Clone)]
pub struct Created {
    /// The login (pending).
    pub login: MoLogin,
    /// Where the phone sends the SMS.
    pub short_code: String,
    /// What the SMS says.
    pub sms_body: String,
}

/// What a poll finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled {
    /// Waiting for the SMS.
    Pending(MoLogin),
    /// Logged in: the session token, handed out this once.
    Completed {
        /// The login (its number and account).
        login: MoLogin,
        /// The session token.
        session_token: String,
    },
    /// The token's time ran out before the SMS came.
    Expired(MoLogin),
    /// The session was collected already.
    Used(MoLogin),
    /// No login of this service has the token.
    Unknown,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum MoLoginError {
    /// `[mo_login]` has no short code.
    #[error("MO login is not available on this server: mo_login.short_code is not set")]
    Unavailable,
    /// The service asked for more logins than `mo_login.per_service` allows.
    #[error("too many MO logins for this service; retry after {retry_after_secs} s")]
    RateLimited {
        /// Seconds until the window resets.
        retry_after_secs: u64,
    },
    /// The store failed (our side).
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
}

/// What became of one MO, for logs and the MO's stored outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// A login completed.
    Completed,
    /// The token is unknown, expired or used (answered by SMS).
    Refused(&'static str),
    /// No token in the text.
    NoToken,
    /// No route takes it.
    Unrouted,
    /// The sender is not a phone number (an alphanumeric sender, a short
    /// code): nothing is created and nothing answered.
    SenderNotANumber,
}

impl Handled {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Handled::Completed => "login_completed",
            Handled::Refused(why) => why,
            Handled::NoToken => "no_token",
            Handled::Unrouted => "unrouted",
            Handled::SenderNotANumber => "sender_not_a_number",
        }
    }
}

/// A login attempt made ready to write.
struct LoginPlan {
    token: String,
    msisdn: String,
    account: Account,
    session: Session,
    session_token: String,
    password_sms: Option<OutboxMessage>,
    webhook: Option<WebhookJob>,
    unknown: OutboxMessage,
    expired: OutboxMessage,
    used: OutboxMessage,
}

impl LoginPlan {
    fn completion<'a>(&'a self, mo: &'a MoMessage) -> CompleteMoLogin<'a> {
        CompleteMoLogin {
            token: &self.token,
            msisdn: &self.msisdn,
            mo_id: &mo.id,
            new_account: &self.account,
            session: &self.session,
            session_token: &self.session_token,
            password_sms: self.password_sms.as_ref(),
            webhook: self.webhook.as_ref(),
        }
    }
}

/// What handling an MO will write.
#[allow(clippy::large_enum_variant)] // one per MO, not stored anywhere
enum Prepared {
    /// No login to attempt: record the outcome and send the reply.
    Finish {
        outcome: &'static str,
        reply: Option<OutboxMessage>,
        handled: Handled,
    },
    /// A login attempt.
    Login(LoginPlan),
}

/// The MO-login service.
#[derive(Debug)]
pub struct MoLoginService {
    store: Arc<dyn Store>,
    secret: ServerSecret,
    rng: Random,
    /// Settings and the routes made from them, replaced on SIGHUP.
    live: std::sync::RwLock<Arc<Live>>,
    /// Long polls waiting in this process, by token: a completion wakes
    /// only the polls of its own token.
    waiting: crate::waiters::Waiters,
    /// How often a long poll looks again (another instance may complete it).
    recheck: Duration,
}

impl MoLoginService {
    /// The service of `cfg` (off when it has no short code), drawing
    /// tokens, passwords and ids from `rng`.
    pub fn new(
        store: Arc<dyn Store>,
        secret: ServerSecret,
        cfg: MoLoginConfig,
        rng: Random,
    ) -> Self {
        MoLoginService {
            store,
            secret,
            rng,
            live: std::sync::RwLock::new(Arc::new(Live::new(cfg))),
            waiting: crate::waiters::Waiters::default(),
            recheck: Duration::from_secs(1),
        }
    }

    /// The region national senders are read in.
    pub fn region(&self) -> String {
        self.live().cfg.region.clone()
    }

    /// The longest long poll.
    pub fn max_wait(&self) -> Duration {
        self.live().cfg.max_wait.0
    }

    /// The settings now.
    fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the settings (SIGHUP): texts, keywords, times, budgets and
    /// the short code apply to the next request and MO.
    pub fn reload(&self, cfg: MoLoginConfig) {
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Live::new(cfg));
    }

    /// Issues a login token for `svc`.
    pub async fn create(
        &self,
        svc: &Service,
        intent: MoIntent,
        now: Millis,
    ) -> Result<Created, MoLoginError> {
        let live = self.live();
        let cfg = &live.cfg;
        if cfg.short_code.is_empty() {
            return Err(MoLoginError::Unavailable);
        }
        // Each token is a row and a long poll: a runaway client of one
        // service must not fill the store.
        let limit = [("per service", format!("mol:{}", svc.code), cfg.per_service)];
        if let Err(r) = crate::limits::hit(&*self.store, &limit, now).await? {
            return Err(MoLoginError::RateLimited {
                retry_after_secs: r.retry_after_secs,
            });
        }
        // 40 random bits: a clash is rare; try again on one.
        let mut tries = 0;
        loop {
            let login = MoLogin {
                token: token::generate(&self.rng),
                service: svc.code.clone(),
                intent,
                state: MoLoginState::Pending,
                msisdn: None,
                account_id: None,
                created_account: false,
                session_token: None,
                created_at: now,
                expires_at: now + cfg.token_ttl.0.as_millis() as i64,
                completed_at: None,
            };
            match self.store.create_mo_login(&login).await {
                Ok(()) => {
                    let keyword = cfg.keywords.first().cloned().unwrap_or_default();
                    let sms_body = format!("{keyword} {}", login.token).trim().to_string();
                    return Ok(Created {
                        login,
                        short_code: cfg.short_code.clone(),
                        sms_body,
                    });
                }
                Err(StoreError::Conflict(_)) if tries < 5 => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The login `token` of `svc` now, waiting up to `wait` while it is
    /// pending. A completed login hands its session out once.
    pub async fn poll(
        &self,
        svc: &Service,
        token: &str,
        wait: Duration,
        now: Millis,
    ) -> Result<Polled, MoLoginError> {
        let token = token.trim().to_ascii_uppercase();
        self.waiting
            .poll(
                &token,
                wait.min(self.max_wait()),
                self.recheck,
                |passed| self.look(svc, &token, now + passed.as_millis() as i64),
                |polled| !matches!(polled, Polled::Pending(_)),
            )
            .await
    }

    /// Long polls waiting now (test hook: the map must not leak).
    #[cfg(test)]
    pub(crate) fn waiting_tokens(&self) -> usize {
        self.waiting.len()
    }

    /// Test hook: how often a long poll looks again.
    #[cfg(test)]
    pub(crate) fn set_recheck(&mut self, d: Duration) {
        self.recheck = d;
    }

    async fn look(&self, svc: &Service, token: &str, now: Millis) -> Result<Polled, MoLoginError> {
        if !token::is_token(token) {
            return Ok(Polled::Unknown);
        }
        let Some(login) = self.store.get_mo_login(token).await? else {
            return Ok(Polled::Unknown);
        };
        if login.service != svc.code {
            return Ok(Polled::Unknown);
        }
        Ok(match login.state {
            MoLoginState::Pending if now > login.expires_at => Polled::Expired(login),
            MoLoginState::Pending => Polled::Pending(login),
            MoLoginState::Collected => Polled::Used(login),
            MoLoginState::Completed => match self.store.collect_mo_login(token).await? {
                Some(l) if l.state == MoLoginState::Completed => Polled::Completed {
                    session_token: l.session_token.clone().unwrap_or_default(),
                    login: MoLogin {
                        state: MoLoginState::Collected,
                        session_token: None,
                        ..l
                    },
                },
                // Another poll collected it first.
                Some(l) => Polled::Used(l),
                None => Polled::Unknown,
            },
        })
    }

    /// Stores a new MO and handles it in the same transaction (the path of
    /// every MO as it arrives: one durable write before its deliver_sm_resp).
    /// `None` for a redelivery, which writes nothing.
    pub async fn receive(
        &self,
        mo: &MoMessage,
        dedup_key: &[u8],
        window_ms: i64,
        now: Millis,
    ) -> Result<Option<Handled>, MoLoginError> {
        let budget = reply_budget(&self.live().cfg.reply_limits, "mo-reply", &mo.source);
        let hits = budget_hits(&budget);
        let (received, handled) = match self.prepare(mo, now).await? {
            Prepared::Finish {
                outcome,
                reply,
                handled,
            } => {
                let plan = MoPlan::Finish {
                    outcome,
                    reply: reply.as_ref(),
                };
                let stored = self
                    .store
                    .receive_mo(mo, dedup_key, window_ms, &plan, &hits, now)
                    .await?;
                let Some(r) = stored else { return Ok(None) };
                (r.suppressed, handled)
            }
            Prepared::Login(p) => {
                let plan = MoPlan::Login {
                    complete: p.completion(mo),
                    unknown: &p.unknown,
                    expired: &p.expired,
                    used: &p.used,
                };
                let stored = self
                    .store
                    .receive_mo(mo, dedup_key, window_ms, &plan, &hits, now)
                    .await?;
                let Some(r) = stored else { return Ok(None) };
                (r.suppressed, self.done(&p, r.outcome))
            }
        };
        if let Some(scope) = received.and_then(|i| budget.get(i)).map(|b| b.0) {
            crate::metrics::mo_reply_suppressed(scope);
            info!(
                from = %crate::verify::phone::mask(&mo.source),
                budget = scope,
                "MO reply not sent: reply budget spent"
            );
        }
        Ok(Some(handled))
    }

    /// Logs and wakes long polls after a login attempt.
    fn done(&self, p: &LoginPlan, out: MoLoginOutcome) -> Handled {
        match out {
            MoLoginOutcome::Completed { account, created } => {
                info!(
                    account = %account.id,
                    created,
                    from = %crate::verify::phone::mask(&p.msisdn),
                    "MO login completed"
                );
                self.waiting.wake(&p.token);
                Handled::Completed
            }
            MoLoginOutcome::Unknown => Handled::Refused("unknown"),
            MoLoginOutcome::Expired => Handled::Refused("expired"),
            MoLoginOutcome::Used => Handled::Refused("used"),
        }
    }

    /// Everything an MO's handling writes, made before the write.
    async fn prepare(&self, mo: &MoMessage, now: Millis) -> Result<Prepared, MoLoginError> {
        let live = self.live();
        let cfg = &live.cfg;
        if live.router.route(&mo.dest, &mo.text) != Some(Handler::MoLogin) {
            return Ok(Prepared::Finish {
                outcome: "unrouted",
                reply: None,
                handled: Handled::Unrouted,
            });
        }
        // The SMS proves a number only if the network stamped one: an
        // alphanumeric or short-code sender would become an account anyone
        // can share, and a reply to it goes nowhere useful.
        if !is_phone_number(&mo.source) {
            return Ok(Prepared::Finish {
                outcome: "sender_not_a_number",
                reply: None,
                handled: Handled::SenderNotANumber,
            });
        }
        let texts = cfg.texts();
        let Some(tok) = token::extract(&mo.text, &cfg.keywords) else {
            let reply = (cfg.no_token == NoTokenAction::Reply)
                .then(|| self.reply(&mo.source, SYSTEM_SERVICE, &texts.no_token, now));
            return Ok(Prepared::Finish {
                outcome: "no_token",
                reply,
                handled: Handled::NoToken,
            });
        };
        // Read by the SMPP driver's type of number when the MO was stored.
        let msisdn = mo.source.clone();
        let password = token::generate(&self.rng) + &token::generate(&self.rng)[..4];
        let account = Account {
            id: self.rng.id("acc", now),
            service: String::new(),
            msisdn: msisdn.clone(),
            password_hash: Some(self.password_hash(&password)),
            created_at: now,
        };
        let session_token = format!("vgs_{}", self.rng.hex(32));
        let session = Session {
            id: self.rng.id("ses", now),
            account_id: String::new(),
            token_hash: self.session_hash(&session_token),
            created_at: now,
            expires_at: now + cfg.session_ttl.0.as_millis() as i64,
        };
        // Read before the write, for the texts and the webhook: the MOs of
        // one sender are handled in order (one lane), so the account seen
        // here is the one the write finds.
        let login = self.store.get_mo_login(&tok).await?;
        let service = login
            .as_ref()
            .map_or(SYSTEM_SERVICE.to_string(), |l| l.service.clone());
        let svc = match &login {
            Some(l) => self.store.get_service(&l.service).await?,
            None => None,
        };
        // The service may turn the password SMS on or off for itself.
        let send_password = svc
            .as_ref()
            .and_then(|s| s.settings.get("mo_send_password"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(cfg.send_password);
        let password_sms = send_password.then(|| {
            let text = texts
                .password
                .replace("{password}", &password)
                .replace("{msisdn}", &msisdn);
            self.reply(&msisdn, &service, &text, now)
        });
        let mut webhook = None;
        // Only a service with a webhook needs the account read first.
        if let (Some(l), Some(svc)) = (&login, svc.filter(crate::webhook::has_url)) {
            let existing = self
                .store
                .get_account_by_msisdn(&l.service, &msisdn)
                .await?;
            let (account_id, created) = match &existing {
                Some(a) => (a.id.as_str(), false),
                None => (account.id.as_str(), true),
            };
            let event = completed_event(&self.rng, l, &msisdn, account_id, created, now);
            webhook = crate::webhook::job(&self.rng, &svc, &event, now);
        }
        Ok(Prepared::Login(LoginPlan {
            unknown: self.reply(&msisdn, &service, &texts.unknown, now),
            expired: self.reply(&msisdn, &service, &texts.expired, now),
            used: self.reply(&msisdn, &service, &texts.used, now),
            token: tok,
            msisdn,
            account,
            session,
            session_token,
            password_sms,
            webhook,
        }))
    }

    /// An SMS back to the MO's sender, from the short code.
    /// (`to` is the sender as [`sender_number`] read it: parsing a number
    /// costs, so it is read once per MO.)
    fn reply(&self, to: &str, service: &str, text: &str, now: Millis) -> OutboxMessage {
        reply_sms(
            &self.rng,
            &self.live().cfg.short_code,
            to,
            service,
            text,
            now,
        )
    }

    /// The stored form of a machine-made password (60 random bits, so a
    /// keyed hash is enough: there is nothing to guess from a dictionary).
    fn password_hash(&self, password: &str) -> String {
        let mac = self
            .secret
            .mac("verigate/account-password/v1", &[password.as_bytes()]);
        format!("$hmac-sha256$v1${}", hex::encode(mac))
    }

    /// The stored form of a session token.
    pub fn session_hash(&self, session_token: &str) -> Vec<u8> {
        self.secret
            .mac("verigate/session/v1", &[session_token.as_bytes()])
    }
}

/// The budgets an SMS back to an MO's `sender` passes: its own, its
/// prefix's and the short code's in all; keys start with `scope`.
pub fn reply_budget(
    l: &crate::config::MoReplyLimits,
    scope: &str,
    sender: &str,
) -> Vec<crate::limits::Limit> {
    let digits = sender.trim_start_matches('+');
    let prefix: String = digits.chars().take(l.prefix_digits as usize).collect();
    vec![
        ("sender", format!("{scope}:num:{digits}"), l.per_sender),
        ("prefix", format!("{scope}:pfx:{prefix}"), l.per_prefix),
        ("global", format!("{scope}:all"), l.global),
    ]
}

/// The budgets as the MO's transaction counts them.
pub fn budget_hits(budget: &[crate::limits::Limit]) -> Vec<RateHit<'_>> {
    budget
        .iter()
        .map(|(_, key, l)| RateHit {
            key,
            limit: l.count,
            window_ms: l.window.0.as_millis() as i64,
        })
        .collect()
}

/// An SMS back to an MO's sender `to`, from the short code `from`, good
/// for an hour.
pub fn reply_sms(
    rng: &Random,
    from: &str,
    to: &str,
    service: &str,
    text: &str,
    now: Millis,
) -> OutboxMessage {
    OutboxMessage {
        id: rng.id("msg", now),
        verification_id: None,
        service: service.to_string(),
        to: to.to_string(),
        from: from.to_string(),
        text: text.to_string(),
        state: MessageState::Queued,
        attempts: 0,
        next_attempt_at: now,
        expires_at: now + 3_600_000,
        smsc: None,
        message_ids: Vec::new(),
        last_error: None,
        created_at: now,
        updated_at: now,
    }
}

/// An MO as the SMPP driver hands it over, ready to store: the sender read
/// as a number by its type (national ones in `region`).
#[allow(clippy::too_many_arguments)]
pub fn incoming(
    rng: &Random,
    smsc: &str,
    from: &str,
    from_ton: u8,
    to: String,
    text: String,
    region: &str,
    now: Millis,
) -> MoMessage {
    MoMessage {
        id: rng.id("mo", now),
        smsc: smsc.to_string(),
        source: sender_number(from, from_ton, region),
        dest: to,
        text,
        received_at: now,
        parts: None,
    }
}

/// A long MO put together from its stored `parts` (all of them, in order).
pub fn incoming_long(rng: &Random, parts: &[MoPart], region: &str, now: Millis) -> MoMessage {
    let first = &parts[0];
    let g = &first.group;
    let joined = verigate_codecs::text::assemble(
        parts
            .iter()
            .map(|p| (p.data_coding, p.payload.clone()))
            .collect(),
    );
    MoMessage {
        parts: Some(g.clone()),
        ..incoming(
            rng,
            &g.smsc,
            &g.source,
            first.source_ton,
            g.dest.clone(),
            joined.text,
            region,
            now,
        )
    }
}

/// MO-login settings and the routes made from them.
#[derive(Debug)]
struct Live {
    cfg: MoLoginConfig,
    router: MoRouter,
}

impl Live {
    fn new(cfg: MoLoginConfig) -> Self {
        let mut router = MoRouter::default();
        if !cfg.short_code.is_empty() {
            router.add(&cfg.short_code, None, Handler::MoLogin);
        }
        Live { cfg, router }
    }
}

/// What recognises an SMSC delivering the same MO again (it got no
/// deliver_sm_resp in time): the same SMSC, sender, destination and text,
/// the text compared as a token is read (case and spacing aside), so
/// "login abcd2345 " sent again is not a second MO with a second reply.
pub fn redelivery_key(m: &MoMessage) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let text = normalised_text(&m.text);
    Sha256::digest(
        [
            m.smsc.as_bytes(),
            m.source.as_bytes(),
            m.dest.as_bytes(),
            text.as_bytes(),
        ]
        .join(&0u8),
    )
    .to_vec()
}

/// `text` upper-cased with its runs of white space made one space and trimmed.
fn normalised_text(text: &str) -> String {
    text.split_whitespace()
        .map(str::to_uppercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether an MO sender (as [`sender_number`] read it) is a phone number:
/// E.164 with `+`, 8 to 15 digits.
pub fn is_phone_number(sender: &str) -> bool {
    sender.strip_prefix('+').is_some_and(|d| {
        (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// SMPP type of number: international.
const TON_INTERNATIONAL: u8 = 1;
/// SMPP type of number: national.
const TON_NATIONAL: u8 = 2;

/// The sender of an MO as E.164 with `+`, read by its type of number: an
/// international one is `+` and its digits (the network set it, so it is
/// not checked against numbering plans); a national one is read in
/// `region`; one of unknown type is read as international, else national.
/// Anything else (an alphanumeric sender, a short code) is kept as sent.
pub fn sender_number(source: &str, ton: u8, region: &str) -> String {
    let s = source.trim();
    let digits = s.strip_prefix('+').unwrap_or(s);
    let all_digits = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    let international = || {
        ((8..=15).contains(&digits.len()) && all_digits && !digits.starts_with('0'))
            .then(|| format!("+{digits}"))
    };
    let national = || {
        all_digits
            .then(|| crate::verify::phone::normalize(digits, region).ok())
            .flatten()
            .map(|n| n.as_str().to_string())
    };
    let read = if s.starts_with('+') || ton == TON_INTERNATIONAL {
        international()
    } else if ton == TON_NATIONAL {
        national()
    } else {
        crate::verify::phone::normalize(&format!("+{digits}"), "ZZ")
            .ok()
            .filter(|_| all_digits)
            .map(|n| n.as_str().to_string())
            .or_else(national)
    };
    read.unwrap_or_else(|| source.to_string())
}

/// The webhook event of a completed login (no session token in it).
fn completed_event(
    rng: &Random,
    l: &MoLogin,
    msisdn: &str,
    account_id: &str,
    created: bool,
    now: Millis,
) -> serde_json::Value {
    serde_json::json!({
        "type": "mo_login.completed",
        "id": rng.id("evt", now),
        "created_at": verigate_codecs::time::rfc3339(now),
        "data": {
            "token": l.token,
            "service": l.service,
            "intent": l.intent.as_str(),
            "msisdn": msisdn,
            "account_id": account_id,
            "created": created,
        },
    })
}

#[cfg(test)]
mod sender_tests {
    use super::sender_number;

    #[test]
    fn senders_are_read_by_their_type_of_number() {
        // International (TON 1), with or without `+`.
        assert_eq!(sender_number("447400100200", 1, "GB"), "+447400100200");
        assert_eq!(sender_number("+8613988888888", 0, "CN"), "+8613988888888");
        // National (TON 2) in the region: a Chinese SMSC's 139… is not +1 39….
        assert_eq!(sender_number("13988888888", 2, "CN"), "+8613988888888");
        assert_eq!(sender_number("07400100200", 2, "GB"), "+447400100200");
        // Unknown type (TON 0): a valid international number, else national.
        assert_eq!(sender_number("447400100200", 0, "GB"), "+447400100200");
        assert_eq!(sender_number("07400100200", 0, "GB"), "+447400100200");
        // Not a number we can read: kept as sent.
        assert_eq!(sender_number("VODAFONE", 5, "GB"), "VODAFONE");
        assert_eq!(sender_number("1234", 2, "GB"), "1234");
        assert_eq!(sender_number("0740", 1, "GB"), "0740");
    }
}

#[cfg(test)]
pub(crate) mod tests;

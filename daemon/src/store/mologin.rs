//! MO-SMS login: the logins apps asked for, the MOs that complete them, and
//! the accounts and sessions they make.

use super::*;
use async_trait::async_trait;

/// What an MO login is for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MoIntent {
    /// Log into the number's account (made if missing).
    Login,
    /// Register: the same, said by an app that expects a new account.
    Register,
}

impl MoIntent {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MoIntent::Login => "login",
            MoIntent::Register => "register",
        }
    }

    /// From the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "login" => Some(MoIntent::Login),
            "register" => Some(MoIntent::Register),
            _ => None,
        }
    }
}

/// Where an MO login stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoLoginState {
    /// Waiting for the phone's SMS.
    Pending,
    /// The SMS came: a session waits to be collected.
    Completed,
    /// The app collected the session (the token is used up).
    Collected,
}

impl MoLoginState {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MoLoginState::Pending => "pending",
            MoLoginState::Completed => "completed",
            MoLoginState::Collected => "collected",
        }
    }

    /// From the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(MoLoginState::Pending),
            "completed" => Some(MoLoginState::Completed),
            "collected" => Some(MoLoginState::Collected),
            _ => None,
        }
    }
}

/// A login an app asked for: the phone proves its number by texting the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoLogin {
    /// The token the phone sends (canonical: upper case, no separators).
    pub token: String,
    /// Service code.
    pub service: String,
    /// Login or register.
    pub intent: MoIntent,
    /// State.
    pub state: MoLoginState,
    /// The sender's number, once the SMS came.
    pub msisdn: Option<String>,
    /// The account logged into.
    pub account_id: Option<String>,
    /// Whether the SMS created the account.
    pub created_account: bool,
    /// The session token, until collected.
    pub session_token: Option<String>,
    /// When asked for.
    pub created_at: Millis,
    /// The token stops working after this.
    pub expires_at: Millis,
    /// When the SMS completed it.
    pub completed_at: Option<Millis>,
}

/// A mobile-originated SMS as stored (before its deliver_sm_resp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoMessage {
    /// Opaque id.
    pub id: String,
    /// SMSC it came from.
    pub smsc: String,
    /// Sender (E.164 with `+` when it could be read so; else as sent).
    pub source: String,
    /// Our short code it was sent to.
    pub dest: String,
    /// Text (long MOs reassembled).
    pub text: String,
    /// When stored.
    pub received_at: Millis,
    /// A long MO's stored parts, deleted in the transaction that stores it.
    pub parts: Option<MoPartGroup>,
}

/// Which long MO a part belongs to: its SMSC, sender, destination,
/// reference and part count.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MoPartGroup {
    /// SMSC it came from.
    pub smsc: String,
    /// Sender as sent.
    pub source: String,
    /// Destination.
    pub dest: String,
    /// Concatenation reference.
    pub reference: u16,
    /// Parts the message announces.
    pub total: u8,
}

/// One part of a long MO, stored until all its parts are in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoPart {
    /// The message it belongs to.
    pub group: MoPartGroup,
    /// Its number, 1 to `group.total`.
    pub seq: u8,
    /// The sender's SMPP type of number.
    pub source_ton: u8,
    /// data_coding of the part.
    pub data_coding: u8,
    /// Payload without the concatenation header.
    pub payload: Vec<u8>,
    /// When stored.
    pub received_at: Millis,
}

/// What became of an MO login attempt (see [`MoLoginStore::receive_mo`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoLoginOutcome {
    /// Logged in: the account (made now if `created`).
    Completed {
        /// The account.
        account: Account,
        /// Whether this SMS created it.
        created: bool,
    },
    /// No login has this token.
    Unknown,
    /// The token's time ran out.
    Expired,
    /// The token was already used.
    Used,
}

/// What [`MoLoginStore::receive_mo`] did with a new MO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoReceived {
    /// The login's outcome (`Unknown` for a `Finish` plan).
    pub outcome: MoLoginOutcome,
    /// The reply (refusal, password SMS or `Finish` reply) the MO called for
    /// was not queued: the reply budget at this index refused it.
    pub suppressed: Option<usize>,
    /// What a `Registry` plan did (None for the others).
    pub registry: Option<RegistryActed>,
}

/// An MO that carries a pending login's token (see [`MoLoginStore::receive_mo`]).
#[derive(Debug, Clone)]
pub struct CompleteMoLogin<'a> {
    /// The token the MO carried.
    pub token: &'a str,
    /// The sender's number (E.164 with `+`).
    pub msisdn: &'a str,
    /// The MO, marked processed in the same transaction.
    pub mo_id: &'a str,
    /// The account to create if the service has none for the number.
    pub new_account: &'a Account,
    /// The session to create (its `account_id` is set to the account used).
    pub session: &'a Session,
    /// The session token in clear, kept until the app collects it.
    pub session_token: &'a str,
    /// SMS with the new account's password, queued only if the account is created.
    pub password_sms: Option<&'a OutboxMessage>,
    /// Webhook to the service, queued on completion.
    pub webhook: Option<&'a WebhookJob>,
}

/// What to do with an MO in the transaction that stores it (see
/// [`MoLoginStore::receive_mo`]).
#[derive(Debug, Clone)]
pub enum MoPlan<'a> {
    /// Complete the login its token names; if that cannot be done, queue
    /// the matching refusal instead.
    Login {
        /// The completion.
        complete: CompleteMoLogin<'a>,
        /// Reply when no login has the token.
        unknown: &'a OutboxMessage,
        /// Reply when the token expired.
        expired: &'a OutboxMessage,
        /// Reply when the token was used.
        used: &'a OutboxMessage,
    },
    /// Record `outcome` and queue `reply`, if any.
    Finish {
        /// The MO's outcome.
        outcome: &'a str,
        /// The SMS back.
        reply: Option<&'a OutboxMessage>,
    },
    /// A subscriber's command to the number registry: `act` applied,
    /// `outcome` recorded and `reply` queued; a move refused (no offer,
    /// expired) records `move_refused` / `move_expired` and queues
    /// `refusal` instead.
    Registry {
        /// What changes.
        act: RegistryAct<'a>,
        /// The MO's outcome when it applies.
        outcome: &'a str,
        /// The SMS back.
        reply: Option<&'a OutboxMessage>,
        /// The SMS back when a move is refused.
        refusal: Option<&'a OutboxMessage>,
    },
}

/// A subscriber account (created by MO-SMS login).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Opaque id.
    pub id: String,
    /// Service code.
    pub service: String,
    /// E.164 number with `+` (the login id).
    pub msisdn: String,
    /// Password hash (PHC string), if a password was issued.
    pub password_hash: Option<String>,
    /// When created.
    pub created_at: Millis,
}

/// A login session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Opaque id.
    pub id: String,
    /// Account.
    pub account_id: String,
    /// Keyed hash of the session token.
    pub token_hash: Vec<u8>,
    /// When created.
    pub created_at: Millis,
    /// When it stops being valid.
    pub expires_at: Millis,
}

/// MO logins, MOs, accounts and sessions.
#[async_trait]
pub trait MoLoginStore: Send + Sync {
    /// Stores a new MO login; `Conflict` if its token exists.
    async fn create_mo_login(&self, l: &MoLogin) -> StoreResult<()>;
    /// An MO login by token.
    async fn get_mo_login(&self, token: &str) -> StoreResult<Option<MoLogin>>;
    /// Stores an MO and carries out `plan` on it in one transaction, so an
    /// MO is never stored without its outcome (one durable write; the
    /// deliver_sm_resp goes out after it). An MO with the same `dedup_key`
    /// as one stored within `window_ms` before `m.received_at` is the SMSC
    /// delivering it again: nothing is written and `None` returned.
    /// Otherwise the login's outcome (`Unknown` for a `Finish` plan). A
    /// login plan checks the token is pending and unexpired at `at`; finds
    /// the service's account for the sender or creates `new_account`
    /// (queueing `password_sms`); creates the session; completes the login;
    /// queues the webhook. When the token is unknown, expired or used it
    /// queues the matching refusal instead. Every reply first passes
    /// `reply_budget` (counted as [`RateLimitStore::rate_hits`] in the same
    /// transaction); a refused one is not queued and is reported in
    /// [`MoReceived::suppressed`].
    async fn receive_mo(
        &self,
        m: &MoMessage,
        dedup_key: &[u8],
        window_ms: i64,
        plan: &MoPlan<'_>,
        reply_budget: &[RateHit<'_>],
        at: Millis,
    ) -> StoreResult<Option<MoReceived>>;
    /// Stores one part of a long MO durably (a part stored already is
    /// kept as it was: the SMSC sent it again). Returns all the parts, in
    /// order, once every one of them is in.
    async fn store_mo_part(&self, p: &MoPart) -> StoreResult<Option<Vec<MoPart>>>;
    /// Up to `limit` long MOs whose parts are all stored but that no MO was
    /// stored for (the daemon stopped in between): each one's parts in order.
    async fn complete_mo_parts(&self, limit: u32) -> StoreResult<Vec<Vec<MoPart>>>;
    /// Hands a completed login's session token out once: returns the login
    /// as it was (with the token) and marks it collected, forgetting the
    /// token. Other states are returned unchanged.
    async fn collect_mo_login(&self, token: &str) -> StoreResult<Option<MoLogin>>;

    // accounts and sessions
    /// Adds an account; `Conflict` if (service, msisdn) exists.
    async fn create_account(&self, a: &Account) -> StoreResult<()>;
    /// The account of (service, msisdn).
    async fn get_account_by_msisdn(
        &self,
        service: &str,
        msisdn: &str,
    ) -> StoreResult<Option<Account>>;
    /// Adds a session.
    async fn create_session(&self, s: &Session) -> StoreResult<()>;
    /// The session with this token hash.
    async fn get_session_by_token_hash(&self, token_hash: &[u8]) -> StoreResult<Option<Session>>;
}

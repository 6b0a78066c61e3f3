//! The relay's durable work: sessions (a terminal's registration with its
//! bank, under one DUKPT counter) and the transactions in them, each a
//! fenced queue row. A session is registered once; its transactions are
//! relayed one at a time in their order (the bank refuses a sequence number
//! below the last it answered), each exactly once across crashes (the bank
//! answers a repeated message with its first answer; the store answers a
//! repeated idempotency key with the transaction it made).

use super::*;
use async_trait::async_trait;

/// Where a session's registration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Stored; its registration is (being) sent to the bank.
    Registering,
    /// The bank took the registration.
    Registered,
    /// The bank refused it, or it could not be delivered in time: its
    /// transactions are refused too.
    Refused,
}

impl SessionState {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Registering => "registering",
            SessionState::Registered => "registered",
            SessionState::Refused => "refused",
        }
    }

    /// From its stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "registering" => SessionState::Registering,
            "registered" => SessionState::Registered,
            "refused" => SessionState::Refused,
            _ => return None,
        })
    }
}

/// A terminal's relay session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxSession {
    /// Its id, also the registration id at the bank.
    pub id: String,
    /// The front end (or `mo` for the SMS channel) that opened it.
    pub front_end: String,
    /// The bank it is with.
    pub bank: String,
    /// The vouched-for number, E.164.
    pub msisdn: String,
    /// The vouched-for SIM.
    pub imsi: String,
    /// Its KSN (24 hex digits): the initial key id and the counter.
    pub ksn: String,
    /// When the carrier vouched (the auth info's time).
    pub issued_at: Millis,
    /// No transactions are taken after this.
    pub expires_at: Millis,
    /// Where its registration is.
    pub state: SessionState,
    /// A refusal's stable code.
    pub error_code: Option<String>,
    /// A refusal's (or the last failed attempt's) explanation.
    pub error: Option<String>,
    /// Registration attempts made.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt_at: Millis,
}

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    /// Stored; (being) relayed to the bank.
    Queued,
    /// The bank executed it (its MAC checked).
    Executed,
    /// The bank declined it (funds, accounts; its MAC checked).
    Declined,
    /// Not relayed or refused by the bank (a code says why): nothing moved.
    Refused,
}

impl TxState {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            TxState::Queued => "queued",
            TxState::Executed => "executed",
            TxState::Declined => "declined",
            TxState::Refused => "refused",
        }
    }

    /// From its stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => TxState::Queued,
            "executed" => TxState::Executed,
            "declined" => TxState::Declined,
            "refused" => TxState::Refused,
            _ => return None,
        })
    }
}

/// One transaction message of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxTransaction {
    /// Its id.
    pub id: String,
    /// The session.
    pub session_id: String,
    /// Its number in the session (from 1).
    pub seq: u32,
    /// Who asked (the session's front end).
    pub front_end: String,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// A hash of what was asked (a reused key with another request is refused).
    pub request_hash: String,
    /// The payment as JSON (`verigate_keys::relay::Transfer`).
    pub transfer: String,
    /// Where it is.
    pub state: TxState,
    /// The bank's reason for a decline, or a refusal's explanation.
    pub reason: Option<String>,
    /// A refusal's stable code.
    pub error_code: Option<String>,
    /// The bank's reference of an executed payment.
    pub bank_ref: Option<String>,
    /// The bank's MAC over its result (hex), kept as proof.
    pub result_mac: Option<String>,
    /// Relay attempts made.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt_at: Millis,
    /// When stored.
    pub created_at: Millis,
    /// When it got its final state.
    pub finished_at: Option<Millis>,
}

/// A transaction to add: the store gives it its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTransaction {
    /// Its id.
    pub id: String,
    /// The session.
    pub session_id: String,
    /// Who asks: must be the session's front end.
    pub front_end: String,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// A hash of the request.
    pub request_hash: String,
    /// The payment as JSON.
    pub transfer: String,
    /// Now.
    pub at: Millis,
}

/// What adding a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxAdded {
    /// Stored and queued.
    Added(TxTransaction),
    /// The idempotency key was used before: that transaction (compare its
    /// `request_hash`).
    Existing(TxTransaction),
    /// No such session for this front end.
    NoSession,
    /// The session takes no more transactions: expired, or refused.
    SessionClosed(TxSession),
}

/// A transaction to relay with the session it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayJob {
    /// The transaction.
    pub tx: TxTransaction,
    /// Its (registered) session.
    pub session: TxSession,
}

/// How a registration or relay attempt ended for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOutcome {
    /// The bank answered (a session: registered; a transaction: its result).
    Answered {
        /// Executed or declined (transactions); ignored for sessions.
        state: TxState,
        /// The bank's reason for a decline.
        reason: Option<String>,
        /// The bank's reference.
        bank_ref: Option<String>,
        /// The result's MAC.
        mac: Option<String>,
    },
    /// Refused (by the bank, or undeliverable in time): a code and why.
    Refused {
        /// Stable code.
        code: String,
        /// Explanation.
        detail: String,
    },
}

/// The relay's sessions and transactions.
#[async_trait]
pub trait TxQueueStore: Send + Sync {
    /// Stores a new session (state registering, due now).
    async fn create_tx_session(&self, s: &TxSession) -> StoreResult<()>;
    /// A session.
    async fn get_tx_session(&self, id: &str) -> StoreResult<Option<TxSession>>;
    /// Claims sessions whose registration is due.
    async fn claim_tx_sessions(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<Claimed<TxSession>>>;
    /// Extends the leases of sessions still registering.
    async fn extend_tx_sessions(
        &self,
        leases: &[Lease],
        until: Millis,
    ) -> StoreResult<Vec<Extension>>;
    /// Records a registration's end (fenced). A refusal refuses the
    /// session's queued transactions in the same write, with its code.
    async fn finish_tx_session(
        &self,
        lease: &Lease,
        outcome: &TxOutcome,
        at: Millis,
    ) -> StoreResult<()>;
    /// A failed attempt: tried again at `retry_at` (fenced).
    async fn retry_tx_session(
        &self,
        lease: &Lease,
        error: &str,
        retry_at: Millis,
    ) -> StoreResult<()>;

    /// Adds a transaction to a session in one write: its idempotency key
    /// answered first, then the session checked (the front end's, open at
    /// `at`), then the next sequence number given.
    async fn add_tx_transaction(&self, t: &NewTransaction) -> StoreResult<TxAdded>;
    /// A transaction.
    async fn get_tx_transaction(&self, id: &str) -> StoreResult<Option<TxTransaction>>;
    /// The transaction `front_end` made under `idempotency_key`.
    async fn find_tx_transaction(
        &self,
        front_end: &str,
        idempotency_key: &str,
    ) -> StoreResult<Option<TxTransaction>>;
    /// A session's transactions, in order.
    async fn tx_transactions_of(&self, session_id: &str) -> StoreResult<Vec<TxTransaction>>;
    /// Claims due transactions of registered sessions, at most one per
    /// session and only its lowest queued one (a session's messages reach
    /// the bank in order).
    async fn claim_tx_transactions(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<Claimed<RelayJob>>>;
    /// Extends the leases of transactions still queued.
    async fn extend_tx_transactions(
        &self,
        leases: &[Lease],
        until: Millis,
    ) -> StoreResult<Vec<Extension>>;
    /// Records a transaction's final state (fenced), queueing `reply` (the
    /// result by SMS, for the MO channel) in the same write.
    async fn finish_tx_transaction(
        &self,
        lease: &Lease,
        outcome: &TxOutcome,
        reply: Option<&OutboxMessage>,
        at: Millis,
    ) -> StoreResult<()>;
    /// A failed attempt: tried again at `retry_at` (fenced).
    async fn retry_tx_transaction(
        &self,
        lease: &Lease,
        error: &str,
        retry_at: Millis,
    ) -> StoreResult<()>;
}

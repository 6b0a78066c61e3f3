//! The relay's two durable queues, run by the shared queue worker:
//! registrations (the auth info sealed under the zone key, sent to the
//! bank) and transactions (the message sealed under the session's DUKPT
//! working key, sent to the bank, its result's MAC checked). A claim lost
//! with a crash is sent again: the bank answers a repeat as the first.

use super::bank::{BankCallError, BankClient};
use super::TxRelay;
use crate::clock::Clock;
use crate::queue::{Held, Queue};
use crate::store::{
    Claimed, Extension, Lease, Millis, RelayJob, StoreError, StoreResult, TxOutcome, TxSession,
    TxState,
};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};
use verigate_keys::dukpt::{self, Ksn};
use verigate_keys::envelope;
use verigate_keys::relay::{
    self, AuthInfo, Outcome, RegistrationRequest, TransactionPlain, TransactionRequest, Transfer,
};

/// A registration not delivered this long after the carrier vouched is
/// refused here: the bank refuses auth info older than its skew (5 min).
const REGISTRATION_DEADLINE: Millis = 4 * 60 * 1000;

/// A transaction gets no answer for this long: given up, its outcome
/// unknown (the bank may have executed it; reconcile with the bank).
const RELAY_DEADLINE: Millis = 24 * 3600 * 1000;

/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

fn backoff(first: Duration, attempts: u32) -> Millis {
    let d = first
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What both queues need.
pub(super) struct Ctx {
    pub relay: Arc<TxRelay>,
    pub bank: BankClient,
    pub clock: Clock,
}

impl Ctx {
    /// Records an outcome, retrying a store hiccup; a lost lease means
    /// another worker has the job.
    async fn record<F, Fut>(&self, what: &str, mut op: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = StoreResult<()>>,
    {
        for attempt in 0..5u32 {
            match op().await {
                Ok(()) => return,
                Err(StoreError::LeaseLost(m)) => {
                    warn!(job = what, "lease lost; another worker has it: {m}");
                    return;
                }
                Err(e) => {
                    warn!(job = what, error = %e, attempt, "cannot record the outcome; trying again");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
        // The lease runs out and the job is done again (the bank answers
        // a repeat as the first).
        warn!(
            job = what,
            "outcome not recorded; the job is retried after its lease"
        );
    }
}

fn auth_of(s: &TxSession) -> AuthInfo {
    AuthInfo {
        imsi: s.imsi.clone(),
        msisdn: s.msisdn.clone(),
        ksn: s.ksn.clone(),
        issued_at: s.issued_at,
    }
}

fn refused(code: &str, detail: impl Into<String>) -> TxOutcome {
    TxOutcome::Refused {
        code: code.into(),
        detail: detail.into(),
    }
}

/// The registrations queue.
pub(super) struct Registrations(pub Arc<Ctx>);

impl Registrations {
    /// One attempt: Ok(outcome) is final, Err(why) is tried again.
    async fn attempt(&self, s: &TxSession, now: Millis) -> Result<TxOutcome, String> {
        let ctx = &self.0;
        let keys = match ctx.relay.keys.working(now).await {
            Ok(k) => k,
            Err(e) => return Err(e.to_string()),
        };
        if keys.zone.is_empty() {
            return Err("no zone key is active".into());
        }
        let plain = serde_json::to_vec(&auth_of(s)).expect("auth info serializes");
        let aad = relay::registration_aad(&s.id);
        let mut last = None;
        // The active key first; a bank still on the previous key (inside
        // the rotation's overlap) says so, and the retiring one is tried.
        for (zone, kcv) in &keys.zone {
            let sealed = envelope::seal(zone, &aad, &plain, &mut ctx.relay.rng.rng())
                .map_err(|e| format!("cannot seal: {e}"))?;
            let req = RegistrationRequest {
                registration_id: s.id.clone(),
                zone_kcv: kcv.clone(),
                sealed: hex::encode(sealed),
            };
            match ctx.bank.register(&req).await {
                Ok(()) => {
                    return Ok(TxOutcome::Answered {
                        state: TxState::Executed,
                        reason: None,
                        bank_ref: None,
                        mac: None,
                    })
                }
                Err(BankCallError::Refused { code, detail }) if code == "wrong_zone_key" => {
                    last = Some(refused(&code, detail));
                }
                Err(BankCallError::Refused { code, detail }) => return Ok(refused(&code, detail)),
                Err(BankCallError::Unreachable(why)) => return Err(why),
            }
        }
        Ok(last.expect("at least one zone key was tried"))
    }
}

#[async_trait]
impl Queue for Registrations {
    type Job = TxSession;
    const NAME: &'static str = "tx_registrations";

    fn wakeup(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.0.relay.queues.registrations.clone())
    }

    async fn claim(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<Claimed<TxSession>>> {
        self.0
            .relay
            .store
            .claim_tx_sessions(now, limit, lease_ms)
            .await
    }

    async fn extend(&self, leases: &[Lease], until: Millis) -> StoreResult<Vec<Extension>> {
        self.0.relay.store.extend_tx_sessions(leases, until).await
    }

    async fn work(&self, job: Claimed<TxSession>, held: Held) {
        let ctx = &self.0;
        let s = &job.job;
        let now = ctx.clock.now_ms();
        let attempt = tokio::select! {
            a = self.attempt(s, now) => a,
            _ = held.lost.cancelled() => return,
        };
        let store = &ctx.relay.store;
        let at = ctx.clock.now_ms();
        match attempt {
            Ok(outcome) => {
                match &outcome {
                    TxOutcome::Refused { code, detail } => {
                        warn!(session = %s.id, code = %code, "the bank refused the registration: {detail}");
                        crate::metrics::relay("session", code);
                    }
                    TxOutcome::Answered { .. } => crate::metrics::relay("session", "registered"),
                }
                ctx.record(&s.id, || store.finish_tx_session(&held.lease, &outcome, at))
                    .await;
                // Its transactions may be waiting.
                ctx.relay.queues.relays.notify_one();
            }
            Err(why) if at - s.issued_at >= REGISTRATION_DEADLINE => {
                let outcome = refused(
                    "bank_unreachable",
                    format!("the registration could not be delivered in time: {why}"),
                );
                crate::metrics::relay("session", "bank_unreachable");
                ctx.record(&s.id, || store.finish_tx_session(&held.lease, &outcome, at))
                    .await;
            }
            Err(why) => {
                warn!(session = %s.id, attempt = s.attempts, "registration not delivered: {why}");
                let retry = at + backoff(ctx.relay.settings.retry_delay, s.attempts);
                ctx.record(&s.id, || store.retry_tx_session(&held.lease, &why, retry))
                    .await;
            }
        }
        ctx.relay.waiters.wake(&s.id);
    }
}

/// The transactions queue.
pub(super) struct Relays(pub Arc<Ctx>);

impl Relays {
    /// One attempt: Ok(outcome) is final, Err(why) is tried again.
    async fn attempt(&self, j: &RelayJob, now: Millis) -> Result<TxOutcome, String> {
        let ctx = &self.0;
        let (s, t) = (&j.session, &j.tx);
        let ksn = match Ksn::from_hex(&s.ksn) {
            Ok(k) => k,
            Err(e) => return Ok(refused("bad_ksn", format!("the session's KSN: {e}"))),
        };
        let keys = ctx
            .relay
            .keys
            .working(now)
            .await
            .map_err(|e| e.to_string())?;
        let initial = match &keys.initial {
            Some((id, k)) if *id == ksn.initial_key_id => k,
            _ => {
                return Ok(refused(
                    "initial_key_replaced",
                    "the session's initial key is no longer held: open a new session",
                ))
            }
        };
        let derive = |(usage, kind)| {
            dukpt::working_key_from_initial(initial, &ksn, usage, kind)
                .map_err(|e| format!("cannot derive the working key: {e}"))
        };
        let (data_key, mac_key) = (derive(relay::DATA_KEY)?, derive(relay::MAC_KEY)?);
        let transfer: Transfer = serde_json::from_str(&t.transfer)
            .map_err(|e| format!("stored transfer unreadable: {e}"))?;
        let plain = serde_json::to_vec(&TransactionPlain {
            auth: auth_of(s),
            transfer,
        })
        .expect("a message serializes");
        let sealed = envelope::seal(
            &data_key,
            &relay::transaction_aad(&s.id, &ksn, t.seq),
            &plain,
            &mut ctx.relay.rng.rng(),
        )
        .map_err(|e| format!("cannot seal: {e}"))?;
        let req = TransactionRequest {
            registration_id: s.id.clone(),
            ksn: s.ksn.clone(),
            seq: t.seq,
            sealed: hex::encode(sealed),
        };
        let signed = match ctx.bank.transact(&req).await {
            Ok(r) => r,
            Err(BankCallError::Refused { code, detail }) => return Ok(refused(&code, detail)),
            Err(BankCallError::Unreachable(why)) => return Err(why),
        };
        let r = &signed.result;
        if !relay::verify_result(&mac_key, &signed)
            || r.registration_id != s.id
            || !r.ksn.eq_ignore_ascii_case(&s.ksn)
            || r.seq != t.seq
        {
            return Ok(refused(
                "result_not_authentic",
                "the bank's answer failed its MAC check or names another message: \
                 its outcome is unknown; reconcile with the bank",
            ));
        }
        Ok(TxOutcome::Answered {
            state: match r.outcome {
                Outcome::Executed => TxState::Executed,
                Outcome::Declined => TxState::Declined,
            },
            reason: r.reason.clone(),
            bank_ref: r.bank_ref.clone(),
            mac: Some(signed.mac.clone()),
        })
    }
}

impl Relays {
    /// The result by SMS, for a payment made by SMS.
    fn reply(
        &self,
        j: &RelayJob,
        outcome: &TxOutcome,
        at: Millis,
    ) -> Option<crate::store::OutboxMessage> {
        let relay = &self.0.relay;
        let short_code = &relay.settings.short_code;
        if j.tx.front_end != super::MO_FRONT_END || short_code.is_empty() {
            return None;
        }
        let transfer: Transfer = serde_json::from_str(&j.tx.transfer).ok()?;
        let mut tx = j.tx.clone();
        let (state, detail) = match outcome {
            TxOutcome::Answered {
                state,
                reason,
                bank_ref,
                ..
            } => {
                tx.bank_ref = bank_ref.clone();
                (*state, reason.clone().unwrap_or_default())
            }
            TxOutcome::Refused { code, .. } => (TxState::Refused, code.clone()),
        };
        let text = super::mo::result_text(&tx, state, &transfer, &detail);
        Some(crate::mologin::reply_sms(
            &relay.rng,
            short_code,
            &j.session.msisdn,
            super::mo::SYSTEM_SERVICE,
            &text,
            at,
        ))
    }
}

#[async_trait]
impl Queue for Relays {
    type Job = RelayJob;
    const NAME: &'static str = "tx_relays";

    fn wakeup(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.0.relay.queues.relays.clone())
    }

    async fn claim(
        &self,
        now: Millis,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<Claimed<RelayJob>>> {
        self.0
            .relay
            .store
            .claim_tx_transactions(now, limit, lease_ms)
            .await
    }

    async fn extend(&self, leases: &[Lease], until: Millis) -> StoreResult<Vec<Extension>> {
        self.0
            .relay
            .store
            .extend_tx_transactions(leases, until)
            .await
    }

    async fn work(&self, job: Claimed<RelayJob>, held: Held) {
        let ctx = &self.0;
        let t = &job.job.tx;
        let now = ctx.clock.now_ms();
        let attempt = tokio::select! {
            a = self.attempt(&job.job, now) => a,
            _ = held.lost.cancelled() => return,
        };
        let store = &ctx.relay.store;
        let at = ctx.clock.now_ms();
        let outcome = match attempt {
            Ok(o) => Some(o),
            Err(why) if at - t.created_at >= RELAY_DEADLINE => Some(refused(
                "outcome_unknown",
                format!("no answer from the bank in 24 h ({why}); it may have executed: reconcile with the bank"),
            )),
            Err(why) => {
                warn!(transaction = %t.id, attempt = t.attempts, "not relayed: {why}");
                let retry = at + backoff(ctx.relay.settings.retry_delay, t.attempts);
                ctx.record(&t.id, || store.retry_tx_transaction(&held.lease, &why, retry))
                    .await;
                None
            }
        };
        if let Some(outcome) = outcome {
            match &outcome {
                TxOutcome::Answered { state, .. } => {
                    crate::metrics::relay("transaction", state.as_str())
                }
                TxOutcome::Refused { code, .. } => crate::metrics::relay("transaction", code),
            }
            match &outcome {
                TxOutcome::Answered {
                    state, bank_ref, ..
                } => debug!(
                    transaction = %t.id,
                    session = %t.session_id,
                    seq = t.seq,
                    state = state.as_str(),
                    bank_ref = bank_ref.as_deref().unwrap_or("-"),
                    "relayed"
                ),
                TxOutcome::Refused { code, detail } => {
                    warn!(transaction = %t.id, code = %code, "not relayed: {detail}")
                }
            }
            let reply = self.reply(&job.job, &outcome, at);
            ctx.record(&t.id, || {
                store.finish_tx_transaction(&held.lease, &outcome, reply.as_ref(), at)
            })
            .await;
            // The session's next message may go now.
            ctx.relay.queues.relays.notify_one();
        }
        ctx.relay.waiters.wake(&t.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_doubling_to_a_minute() {
        let first = Duration::from_millis(500);
        assert_eq!(backoff(first, 1), 500);
        assert_eq!(backoff(first, 2), 1_000);
        assert_eq!(backoff(first, 4), 4_000);
        assert_eq!(backoff(first, 30), 60_000);
    }
}

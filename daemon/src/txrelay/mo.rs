//! The relay's SMS channel: a subscriber texts `PAY <account> <payee>
//! <amount> [reference]` to the relay's short code. The network stamped the
//! sender's number on the MO and the directory gives its SIM, so the carrier
//! vouches as for a front end: a session is opened and the payment queued
//! under an idempotency key made from the MO (a redelivered MO pays once),
//! before the MO is stored and acknowledged; the bank's answer comes back
//! by SMS, queued in the write that records it.

use super::{TxRelay, TxRelayError, MO_FRONT_END};
use crate::mologin::{budget_hits, is_phone_number, reply_budget, reply_sms};
use crate::random::Random;
use crate::store::{Millis, MoMessage, MoPlan, Store, StoreError, TxState, TxTransaction};
use std::sync::Arc;
use verigate_keys::relay::Transfer;

/// The service the short code's replies are sent for (made at start when
/// the short code is set; it has no API key).
pub const SYSTEM_SERVICE: &str = "txrelay";

/// What became of one MO (for metrics and the MO's stored outcome).
pub type Outcome = &'static str;

/// What an MO to the short code asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayCommand {
    /// A payment.
    Pay(Transfer),
    /// Anything else: the usage is sent back (with what was wrong).
    Usage(Option<String>),
}

/// Reads `PAY <from> <to> <amount> [reference…]` (keyword in any case, or
/// `付款`); amounts in `currency` with at most two decimals.
pub fn parse(text: &str, currency: &str) -> PayCommand {
    let mut words = text.split_whitespace();
    let Some(keyword) = words.next() else {
        return PayCommand::Usage(None);
    };
    if !keyword.eq_ignore_ascii_case("PAY") && keyword != "付款" {
        return PayCommand::Usage(None);
    }
    let (Some(from), Some(to), Some(amount)) = (words.next(), words.next(), words.next()) else {
        return PayCommand::Usage(Some("say who pays, who is paid and how much".into()));
    };
    let Some(amount_minor) = minor_units(amount) else {
        return PayCommand::Usage(Some(format!("{amount:?} is not an amount (like 12.50)")));
    };
    PayCommand::Pay(Transfer {
        from_account: from.to_string(),
        to_account: to.to_string(),
        amount_minor,
        currency: currency.to_string(),
        reference: words.collect::<Vec<_>>().join(" "),
    })
}

/// "12", "12.5", "12.50" → 1200, 1250, 1250; None for anything else or 0.
fn minor_units(s: &str) -> Option<u64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 12 || !digits(whole) || frac.len() > 2 || !digits(frac) {
        return None;
    }
    let frac: u64 = format!("{frac:0<2}").parse().ok()?;
    let minor = whole.parse::<u64>().ok()? * 100 + frac;
    (minor > 0).then_some(minor)
}

/// `1250` → "12.50".
pub fn major(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

/// The SMS a payment's final state sends back.
pub fn result_text(tx: &TxTransaction, state: TxState, t: &Transfer, detail: &str) -> String {
    let amount = format!("{} {}", major(t.amount_minor), t.currency);
    match state {
        TxState::Executed => format!(
            "Paid {amount} from {} to {}. Bank ref {}.",
            t.from_account,
            t.to_account,
            tx.bank_ref.as_deref().unwrap_or(detail)
        ),
        TxState::Declined => format!(
            "Payment of {amount} to {} was declined by the bank: {detail}.",
            t.to_account
        ),
        _ => format!(
            "Payment of {amount} to {} could not be made ({detail}). Nothing was paid.",
            t.to_account
        ),
    }
}

/// The relay's short code.
#[derive(Debug)]
pub struct RelayMo {
    relay: Arc<TxRelay>,
    store: Arc<dyn Store>,
    rng: Random,
    short_code: String,
    currency: String,
    limits: crate::config::MoReplyLimits,
}

impl RelayMo {
    /// The short code of `cfg` on `relay`.
    pub fn new(
        relay: Arc<TxRelay>,
        store: Arc<dyn Store>,
        cfg: &crate::config::TxRelayConfig,
        rng: Random,
    ) -> Self {
        RelayMo {
            relay,
            store,
            rng,
            short_code: cfg.short_code.clone(),
            currency: cfg.mo_currency.clone(),
            limits: cfg.reply_limits.clone(),
        }
    }

    /// Whether an MO to `dest` is the relay's (the short code exactly, a
    /// leading "+" aside).
    pub fn takes(&self, dest: &str) -> bool {
        !self.short_code.is_empty() && dest.trim_start_matches('+') == self.short_code
    }

    /// The region national senders are read in.
    pub fn region(&self) -> &str {
        self.relay.region()
    }

    fn usage(&self, why: Option<&str>) -> String {
        let how = format!(
            "To pay, text PAY <your account> <payee> <amount> [reference] to {}, e.g. PAY alice shop 12.50 order 7.",
            self.short_code
        );
        match why {
            Some(w) => format!("Not sent: {w}. {how}"),
            None => how,
        }
    }

    /// Acts on a new MO, then stores it with its outcome (and any refusal
    /// SMS). `None` for a redelivery. A failure to store anything is an
    /// error (the SMSC delivers the MO again; the payment's idempotency key
    /// keeps it to one).
    pub async fn receive(
        &self,
        mo: &MoMessage,
        dedup_key: &[u8],
        window_ms: i64,
        now: Millis,
    ) -> Result<Option<Outcome>, StoreError> {
        let (outcome, text) = self.act(mo, dedup_key, now).await?;
        let reply = text.map(|t| {
            reply_sms(
                &self.rng,
                &self.short_code,
                &mo.source,
                SYSTEM_SERVICE,
                &t,
                now,
            )
        });
        let budget = reply_budget(&self.limits, "pay-reply", &mo.source);
        let stored = self
            .store
            .receive_mo(
                mo,
                dedup_key,
                window_ms,
                &MoPlan::Finish {
                    outcome,
                    reply: reply.as_ref(),
                },
                &budget_hits(&budget),
                now,
            )
            .await?;
        let Some(received) = stored else {
            return Ok(None);
        };
        if let Some(scope) = received.suppressed.and_then(|i| budget.get(i)).map(|b| b.0) {
            crate::metrics::mo_reply_suppressed(scope);
        }
        Ok(Some(outcome))
    }

    /// The MO's outcome and the SMS to send back now, if any.
    async fn act(
        &self,
        mo: &MoMessage,
        dedup_key: &[u8],
        now: Millis,
    ) -> Result<(Outcome, Option<String>), StoreError> {
        // Only a number the network stamped proves anything.
        if !is_phone_number(&mo.source) {
            return Ok(("sender_not_a_number", None));
        }
        let transfer = match parse(&mo.text, &self.currency) {
            PayCommand::Pay(t) => t,
            PayCommand::Usage(why) => return Ok(("usage", Some(self.usage(why.as_deref())))),
        };
        let key = format!("mo:{}", hex::encode(dedup_key));
        if self
            .store
            .find_tx_transaction(MO_FRONT_END, &key)
            .await?
            .is_some()
        {
            // Queued by this MO before a crash kept it from being stored.
            return Ok(("pay_accepted", None));
        }
        match self
            .relay
            .pay_by_sms(&mo.source, &transfer, &key, now)
            .await
        {
            Ok(_) => Ok(("pay_accepted", None)),
            Err(TxRelayError::Store(e)) => Err(e),
            Err(e) => {
                let text = match &e {
                    TxRelayError::BadTransfer(why) => self.usage(Some(why)),
                    TxRelayError::RecentSimSwap { .. } => {
                        "For your safety, payments by SMS are blocked for a while after a SIM change. Nothing was paid.".to_string()
                    }
                    TxRelayError::LineInactive { .. }
                    | TxRelayError::UnknownSubscriber(_)
                    | TxRelayError::ImsiMismatch(_) => {
                        "This number cannot make payments by SMS. Nothing was paid.".to_string()
                    }
                    _ => "Payments by SMS are not available now; please try later. Nothing was paid."
                        .to_string(),
                };
                tracing::info!(from = %crate::verify::phone::mask(&mo.source), code = e.code(), "payment by SMS refused: {e}");
                Ok((e.code(), Some(text)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pay_command_reads_accounts_amount_and_reference() {
        assert_eq!(
            parse("pay alice shop 12.5 order 7", "GBP"),
            PayCommand::Pay(Transfer {
                from_account: "alice".into(),
                to_account: "shop".into(),
                amount_minor: 1250,
                currency: "GBP".into(),
                reference: "order 7".into(),
            })
        );
        assert!(
            matches!(parse("付款 a b 3", "CNY"), PayCommand::Pay(t) if t.amount_minor == 300 && t.currency == "CNY")
        );
        assert_eq!(parse("HELLO", "GBP"), PayCommand::Usage(None));
        assert_eq!(parse("", "GBP"), PayCommand::Usage(None));
        for bad in [
            "PAY alice shop",
            "PAY alice shop 1.234",
            "PAY alice shop 0",
            "PAY alice shop -1",
            "PAY a b 1e3",
            "PAY a b .5",
        ] {
            assert!(
                matches!(parse(bad, "GBP"), PayCommand::Usage(Some(_))),
                "{bad}"
            );
        }
        assert_eq!(major(1250), "12.50");
        assert_eq!(major(7), "0.07");
    }
}

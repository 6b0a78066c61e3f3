//! Subscribers' commands by SMS to the registry's short code. The network
//! stamps the sender's number on an MO, so the SMS proves possession: a
//! `UNBIND ALL` from a number unbinds that number. Each MO is stored and
//! acted on in one transaction (its unbinds, their notifications and the
//! reply), and replies pass budgets like MO login's.

use super::command::{self, Command, Lang};
use super::Registry;
use crate::config::{RegistryConfig, RegistryTemplates};
use crate::mologin::{budget_hits, is_phone_number, reply_budget, reply_sms, token};
use crate::random::Random;
use crate::store::{
    Binding, Millis, MoMessage, MoPlan, MoveOffer, OutboxMessage, Purge, RegistryAct,
    RegistryActed, Store, StoreError, TakeMove,
};
use crate::verify::phone;
use std::sync::Arc;
use tracing::info;

/// The service the registry's replies are sent for (made at start when
/// the short code is set; it has no API key).
pub const SYSTEM_SERVICE: &str = "registry";

/// What became of one MO (for metrics and the MO's stored outcome).
pub type Outcome = &'static str;

/// The registry's short code.
#[derive(Debug)]
pub struct RegistryMo {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    rng: Random,
    cfg: RegistryConfig,
}

/// What an MO will write, made before the write.
struct Plan {
    act: PlanAct,
    outcome: Outcome,
    reply: Option<OutboxMessage>,
    refusal: Option<OutboxMessage>,
}

enum PlanAct {
    Purge { only: Option<String> },
    Offer(MoveOffer),
    Take { token: String },
    Read,
}

impl RegistryMo {
    /// The short code of `cfg` on `registry`.
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        cfg: RegistryConfig,
        rng: Random,
    ) -> Self {
        RegistryMo {
            store,
            registry,
            rng,
            cfg,
        }
    }

    /// Whether an MO to `dest` is for the registry (the short code exactly,
    /// a leading "+" aside).
    pub fn takes(&self, dest: &str) -> bool {
        !self.cfg.short_code.is_empty() && dest.trim_start_matches('+') == self.cfg.short_code
    }

    /// The region national senders are read in.
    pub fn region(&self) -> &str {
        self.registry.region()
    }

    /// Stores a new MO and acts on it in the same transaction. `None` for
    /// a redelivery, which writes nothing.
    pub async fn receive(
        &self,
        mo: &MoMessage,
        dedup_key: &[u8],
        window_ms: i64,
        now: Millis,
    ) -> Result<Option<Outcome>, StoreError> {
        let plan = self.prepare(mo, now).await?;
        let event_id = self.rng.id("evt", now);
        let notify_for = self.registry.notify_for;
        let act = match &plan.act {
            PlanAct::Purge { only } => RegistryAct::Purge(Purge {
                msisdn: &mo.source,
                only: only.as_deref(),
                recycled: false,
                kind: "unbind",
                event_id: &event_id,
                notify_for,
                bound_before: None,
            }),
            PlanAct::Offer(o) => RegistryAct::Offer(o),
            PlanAct::Take { token } => RegistryAct::Take(TakeMove {
                token,
                new_msisdn: &mo.source,
                event_id: &event_id,
                notify_for,
            }),
            PlanAct::Read => RegistryAct::Read,
        };
        let budget = reply_budget(&self.cfg.reply_limits, "reg-reply", &mo.source);
        let hits = budget_hits(&budget);
        let stored = self
            .store
            .receive_mo(
                mo,
                dedup_key,
                window_ms,
                &MoPlan::Registry {
                    act,
                    outcome: plan.outcome,
                    reply: plan.reply.as_ref(),
                    refusal: plan.refusal.as_ref(),
                },
                &hits,
                now,
            )
            .await?;
        let Some(received) = stored else {
            return Ok(None);
        };
        if let Some(scope) = received.suppressed.and_then(|i| budget.get(i)).map(|b| b.0) {
            crate::metrics::mo_reply_suppressed(scope);
        }
        let outcome = match &received.registry {
            Some(RegistryActed::Moved(crate::store::Moved::NoOffer)) => "move_refused",
            Some(RegistryActed::Moved(crate::store::Moved::Expired)) => "move_expired",
            _ => plan.outcome,
        };
        match &received.registry {
            Some(RegistryActed::Purged(p)) if !p.services.is_empty() => info!(
                from = %phone::mask(&mo.source),
                unbound = p.services.len(),
                notified = p.notified,
                "subscriber unbound by SMS"
            ),
            Some(RegistryActed::Moved(crate::store::Moved::Moved(done))) => info!(
                to = %phone::mask(&mo.source),
                moved = done.services.len(),
                "subscriber moved bindings to a new number by SMS"
            ),
            _ => {}
        }
        Ok(Some(outcome))
    }

    /// Reads the command and what the reply needs.
    async fn prepare(&self, mo: &MoMessage, now: Millis) -> Result<Plan, StoreError> {
        // Only a number the network stamped proves anything.
        if !is_phone_number(&mo.source) {
            return Ok(Plan {
                act: PlanAct::Read,
                outcome: "sender_not_a_number",
                reply: None,
                refusal: None,
            });
        }
        let (cmd, lang) = command::parse(&mo.text);
        let lang = command::reply_lang(&cmd, lang, &mo.source);
        let t = self.cfg.texts(lang.locale());
        let reply = |text: String| Some(self.reply(&mo.source, &text, now));
        let read = |outcome: Outcome, text: String| Plan {
            act: PlanAct::Read,
            outcome,
            reply: reply(text),
            refusal: None,
        };
        Ok(match cmd {
            Command::Help => read("help", t.help.clone()),
            Command::Bindings => {
                let bound = self.store.bindings_of(&mo.source).await?;
                if bound.is_empty() {
                    read("bindings", t.no_bindings.clone())
                } else {
                    let names = self.names(&bound, lang).await?;
                    read("bindings", t.bindings.replace("{services}", &names))
                }
            }
            Command::UnbindAll => {
                let bound = self.store.bindings_of(&mo.source).await?;
                let text = if bound.is_empty() {
                    t.no_bindings.clone()
                } else {
                    let names = self.names(&bound, lang).await?;
                    t.unbound_all.replace("{services}", &names)
                };
                Plan {
                    act: PlanAct::Purge { only: None },
                    outcome: "unbind_all",
                    reply: reply(text),
                    refusal: None,
                }
            }
            Command::Unbind(code) => {
                let bound = self.store.bindings_of(&mo.source).await?;
                match self.find(&bound, &code).await? {
                    Some((service, name)) => Plan {
                        act: PlanAct::Purge {
                            only: Some(service),
                        },
                        outcome: "unbind",
                        reply: reply(t.unbound_one.replace("{service}", &name)),
                        refusal: None,
                    },
                    None => read("not_bound", t.not_bound.replace("{code}", &code)),
                }
            }
            Command::MoveTo(number) => match phone::normalize(&number, self.region()) {
                Ok(new) if new.as_str() != mo.source => {
                    let offer = MoveOffer {
                        token: token::generate(&self.rng),
                        old_msisdn: mo.source.clone(),
                        new_msisdn: new.as_str().to_string(),
                        created_at: now,
                        expires_at: now + self.cfg.move_ttl.millis(),
                    };
                    let text = self.move_offer_text(t, &offer);
                    Plan {
                        act: PlanAct::Offer(offer),
                        outcome: "move_offered",
                        reply: reply(text),
                        refusal: None,
                    }
                }
                _ => read("bad_number", t.bad_number.replace("{code}", &number)),
            },
            Command::MoveConfirm(tok) => {
                // Read for the reply's text; the write takes the offer only
                // if it is still this number's and in time.
                let (services, old) = match self.store.move_offer(&tok).await? {
                    Some(o) if o.new_msisdn == mo.source => {
                        let bound = self.store.bindings_of(&o.old_msisdn).await?;
                        (self.names(&bound, lang).await?, o.old_msisdn)
                    }
                    _ => (String::new(), String::new()),
                };
                let refusal = |text: &str| Some(self.reply(&mo.source, text, now));
                Plan {
                    act: PlanAct::Take { token: tok },
                    outcome: "moved",
                    reply: reply(
                        t.moved
                            .replace("{services}", &services)
                            .replace("{old}", &old),
                    ),
                    // Which refusal is decided in the write; the expired
                    // one is the likelier of the two once an offer was read.
                    refusal: if old.is_empty() {
                        refusal(&t.move_refused)
                    } else {
                        refusal(&t.move_expired)
                    },
                }
            }
        })
    }

    fn move_offer_text(&self, t: &RegistryTemplates, o: &MoveOffer) -> String {
        t.move_offer
            .replace("{new}", &o.new_msisdn)
            .replace("{token}", &o.token)
            .replace("{short_code}", &self.cfg.short_code)
            .replace(
                "{minutes}",
                &(self.cfg.move_ttl.millis() / 60_000).to_string(),
            )
    }

    /// The bound apps by name, in the reply's language's list form.
    async fn names(&self, bound: &[Binding], lang: Lang) -> Result<String, StoreError> {
        let mut names = Vec::with_capacity(bound.len());
        for b in bound {
            names.push(self.name_of(&b.service).await?);
        }
        Ok(names.join(match lang {
            Lang::En => ", ",
            Lang::Zh => "、",
        }))
    }

    async fn name_of(&self, service: &str) -> Result<String, StoreError> {
        Ok(self
            .store
            .get_service(service)
            .await?
            .map(|s| s.name)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| service.to_string()))
    }

    /// The bound app a subscriber named, by code or by name (case-blind).
    async fn find(
        &self,
        bound: &[Binding],
        typed: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        for b in bound {
            let name = self.name_of(&b.service).await?;
            if b.service.eq_ignore_ascii_case(typed) || name.to_uppercase() == typed.to_uppercase()
            {
                return Ok(Some((b.service.clone(), name)));
            }
        }
        Ok(None)
    }

    fn reply(&self, to: &str, text: &str, now: Millis) -> OutboxMessage {
        reply_sms(
            &self.rng,
            &self.cfg.short_code,
            to,
            SYSTEM_SERVICE,
            text,
            now,
        )
    }
}

#[cfg(test)]
mod tests;

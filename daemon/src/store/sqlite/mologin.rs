//! MO logins, MOs, accounts and sessions.

use super::limits::{count_hits, own_hits, OwnedHit};
use super::outbox::insert_message;
use super::rows::{self, all, col, corrupt, exec, one, write_err};
use super::webhooks::insert_webhook;
use super::SqliteStore;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{params, Connection};

/// Whether an MO with `key` was stored at or after `since`.
fn seen_mo(c: &Connection, key: &[u8], since: Millis) -> StoreResult<bool> {
    Ok(one(
        c,
        "SELECT 1 FROM mo_messages WHERE dedup_key = ?1 AND received_at >= ?2",
        params![key, since],
        |_| Ok(()),
    )?
    .is_some())
}

fn insert_mo(c: &Connection, m: &MoMessage, key: &[u8]) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO mo_messages (id, smsc, source, dest, text, dedup_key, state, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'received', ?7)",
    )?
    .execute(params![
        m.id,
        m.smsc,
        m.source,
        m.dest,
        m.text,
        key,
        m.received_at
    ])
    .map_err(|e| write_err(e, &format!("MO {}", m.id)))?;
    Ok(())
}

fn part_row(r: &rusqlite::Row<'_>) -> StoreResult<MoPart> {
    let small = |name: &str| -> StoreResult<u8> {
        let v: i64 = col(r, "mo_parts", name)?;
        u8::try_from(v).map_err(|_| corrupt("mo_parts", name, v))
    };
    let reference: i64 = col(r, "mo_parts", "reference")?;
    Ok(MoPart {
        group: MoPartGroup {
            smsc: col(r, "mo_parts", "smsc")?,
            source: col(r, "mo_parts", "source")?,
            dest: col(r, "mo_parts", "dest")?,
            reference: u16::try_from(reference)
                .map_err(|_| corrupt("mo_parts", "reference", reference))?,
            total: small("total")?,
        },
        seq: small("seq")?,
        source_ton: small("source_ton")?,
        data_coding: small("data_coding")?,
        payload: col(r, "mo_parts", "payload")?,
        received_at: col(r, "mo_parts", "received_at")?,
    })
}

const PART_COLS: &str =
    "smsc, source, dest, reference, total, seq, source_ton, data_coding, payload, received_at";

/// The stored parts of `g`, in order.
fn parts_of(c: &Connection, g: &MoPartGroup) -> StoreResult<Vec<MoPart>> {
    all(
        c,
        &format!(
            "SELECT {PART_COLS} FROM mo_parts
             WHERE smsc = ?1 AND source = ?2 AND dest = ?3 AND reference = ?4 AND total = ?5
             ORDER BY seq"
        ),
        params![g.smsc, g.source, g.dest, g.reference, g.total],
        part_row,
    )
}

/// [`CompleteMoLogin`] owned, to move onto the writer thread.
struct OwnedCompletion {
    token: String,
    msisdn: String,
    mo_id: String,
    new_account: Account,
    session: Session,
    session_token: String,
    password_sms: Option<OutboxMessage>,
    webhook: Option<WebhookJob>,
}

impl From<&CompleteMoLogin<'_>> for OwnedCompletion {
    fn from(x: &CompleteMoLogin<'_>) -> Self {
        OwnedCompletion {
            token: x.token.to_owned(),
            msisdn: x.msisdn.to_owned(),
            mo_id: x.mo_id.to_owned(),
            new_account: x.new_account.clone(),
            session: x.session.clone(),
            session_token: x.session_token.to_owned(),
            password_sms: x.password_sms.cloned(),
            webhook: x.webhook.cloned(),
        }
    }
}

/// [`MoPlan`] owned.
#[allow(clippy::large_enum_variant)] // one per MO, moved once onto the writer
enum OwnedPlan {
    /// The completion and the replies for unknown, expired, used.
    Login(OwnedCompletion, [OutboxMessage; 3]),
    Finish(String, Option<OutboxMessage>),
    /// A subscriber's registry command.
    Registry {
        act: super::registry::OwnedAct,
        outcome: String,
        reply: Option<OutboxMessage>,
        refusal: Option<OutboxMessage>,
    },
}

fn insert_account(c: &Connection, a: &Account) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO accounts (id, service, msisdn, password_hash, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        a.id,
        a.service,
        a.msisdn,
        a.password_hash,
        a.created_at
    ])
    .map_err(|e| {
        write_err(
            e,
            &format!("account {} ({} of service {})", a.id, a.msisdn, a.service),
        )
    })?;
    Ok(())
}

fn insert_session(c: &Connection, s: &Session) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO sessions (id, account_id, token_hash, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        s.id,
        s.account_id,
        s.token_hash,
        s.created_at,
        s.expires_at
    ])
    .map_err(|e| write_err(e, &format!("session {} of account {}", s.id, s.account_id)))?;
    Ok(())
}

fn account_by_msisdn(c: &Connection, service: &str, msisdn: &str) -> StoreResult<Option<Account>> {
    one(
        c,
        "SELECT id, service, msisdn, password_hash, created_at FROM accounts
         WHERE service = ?1 AND msisdn = ?2",
        params![service, msisdn],
        rows::account,
    )
}

/// Queues `reply` if `budget` allows it; else the index of the budget
/// that refused it.
fn budgeted_reply(
    c: &Connection,
    reply: &OutboxMessage,
    budget: &[OwnedHit],
) -> StoreResult<Option<usize>> {
    let decisions = count_hits(c, budget)?;
    if let Some(refused) = decisions.iter().position(|d| !d.allowed) {
        return Ok(Some(refused));
    }
    insert_message(c, reply)?;
    Ok(None)
}

/// A login completed by its MO, inside [`Store::receive_mo`]'s transaction;
/// with the budget that suppressed its password SMS, if one did.
fn complete_login(
    c: &Connection,
    x: &OwnedCompletion,
    budget: &[OwnedHit],
    at: Millis,
) -> StoreResult<(MoLoginOutcome, Option<usize>)> {
    let Some(login) = get_mo_login(c, &x.token)? else {
        return Ok((MoLoginOutcome::Unknown, None));
    };
    if login.state != MoLoginState::Pending {
        return Ok((MoLoginOutcome::Used, None));
    }
    if at > login.expires_at {
        return Ok((MoLoginOutcome::Expired, None));
    }
    let mut suppressed = None;
    let existing = account_by_msisdn(c, &login.service, &x.msisdn)?;
    let (account, created) = match existing {
        Some(a) => (a, false),
        None => {
            let a = Account {
                service: login.service.clone(),
                msisdn: x.msisdn.clone(),
                ..x.new_account.clone()
            };
            insert_account(c, &a)?;
            if let Some(m) = &x.password_sms {
                suppressed = budgeted_reply(c, m, budget)?;
            }
            (a, true)
        }
    };
    insert_session(
        c,
        &Session {
            account_id: account.id.clone(),
            ..x.session.clone()
        },
    )?;
    exec(
        c,
        "UPDATE mo_logins SET state = 'completed', msisdn = ?2, account_id = ?3,
             created_account = ?4, session_token = ?5, completed_at = ?6
         WHERE token = ?1 AND state = 'pending'",
        params![x.token, x.msisdn, account.id, created, x.session_token, at],
    )?;
    if let Some(w) = &x.webhook {
        insert_webhook(c, w)?;
    }
    finish_mo(c, &x.mo_id, "login_completed", at)?;
    Ok((MoLoginOutcome::Completed { account, created }, suppressed))
}

pub(super) fn get_mo_login(c: &Connection, token: &str) -> StoreResult<Option<MoLogin>> {
    one(
        c,
        "SELECT token, service, intent, state, msisdn, account_id, created_account, session_token,
                created_at, expires_at, completed_at
         FROM mo_logins WHERE token = ?1",
        [token],
        rows::mo_login,
    )
}

/// Marks an MO processed; false if it already was (a second processor).
fn finish_mo(c: &Connection, id: &str, outcome: &str, at: Millis) -> StoreResult<bool> {
    Ok(exec(
        c,
        "UPDATE mo_messages SET state = 'processed', outcome = ?2, processed_at = ?3
         WHERE id = ?1 AND state = 'received'",
        params![id, outcome, at],
    )? > 0)
}

#[async_trait]
impl MoLoginStore for SqliteStore {
    async fn create_mo_login(&self, l: &MoLogin) -> StoreResult<()> {
        let l = l.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO mo_logins (token, service, intent, state, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                l.token,
                l.service,
                l.intent.as_str(),
                l.state.as_str(),
                l.created_at,
                l.expires_at
            ])
            .map_err(|e| write_err(e, &format!("MO login of service {}", l.service)))?;
            Ok(())
        })
        .await
    }

    async fn get_mo_login(&self, token: &str) -> StoreResult<Option<MoLogin>> {
        let token = token.to_owned();
        self.read(move |c| get_mo_login(c, &token)).await
    }

    async fn receive_mo(
        &self,
        m: &MoMessage,
        dedup_key: &[u8],
        window_ms: i64,
        plan: &MoPlan<'_>,
        reply_budget: &[RateHit<'_>],
        at: Millis,
    ) -> StoreResult<Option<MoReceived>> {
        let (m, key) = (m.clone(), dedup_key.to_vec());
        let budget = own_hits(reply_budget, at);
        let plan = match plan {
            MoPlan::Login {
                complete,
                unknown,
                expired,
                used,
            } => OwnedPlan::Login(
                OwnedCompletion::from(complete),
                [(*unknown).clone(), (*expired).clone(), (*used).clone()],
            ),
            MoPlan::Finish { outcome, reply } => {
                OwnedPlan::Finish((*outcome).to_owned(), reply.cloned())
            }
            MoPlan::Registry {
                act,
                outcome,
                reply,
                refusal,
            } => OwnedPlan::Registry {
                act: super::registry::OwnedAct::from(act),
                outcome: (*outcome).to_owned(),
                reply: reply.cloned(),
                refusal: refusal.cloned(),
            },
        };
        self.write(move |c| {
            // A long MO's parts go whatever becomes of it (a redelivery too),
            // so they are put together once.
            if let Some(g) = &m.parts {
                exec(
                    c,
                    "DELETE FROM mo_parts
                     WHERE smsc = ?1 AND source = ?2 AND dest = ?3 AND reference = ?4 AND total = ?5",
                    params![g.smsc, g.source, g.dest, g.reference, g.total],
                )?;
            }
            if seen_mo(c, &key, m.received_at.saturating_sub(window_ms))? {
                return Ok(None);
            }
            insert_mo(c, &m, &key)?;
            match plan {
                OwnedPlan::Login(x, replies) => {
                    let (outcome, mut suppressed) = complete_login(c, &x, &budget, at)?;
                    let refusal = match outcome {
                        MoLoginOutcome::Completed { .. } => None,
                        MoLoginOutcome::Unknown => Some(("unknown", &replies[0])),
                        MoLoginOutcome::Expired => Some(("expired", &replies[1])),
                        MoLoginOutcome::Used => Some(("used", &replies[2])),
                    };
                    if let Some((why, reply)) = refusal {
                        finish_mo(c, &m.id, why, at)?;
                        suppressed = budgeted_reply(c, reply, &budget)?;
                    }
                    Ok(Some(MoReceived {
                        outcome,
                        suppressed,
                        registry: None,
                    }))
                }
                OwnedPlan::Finish(outcome, reply) => {
                    finish_mo(c, &m.id, &outcome, at)?;
                    let suppressed = match &reply {
                        Some(r) => budgeted_reply(c, r, &budget)?,
                        None => None,
                    };
                    Ok(Some(MoReceived {
                        outcome: MoLoginOutcome::Unknown,
                        suppressed,
                        registry: None,
                    }))
                }
                OwnedPlan::Registry {
                    act,
                    outcome,
                    reply,
                    refusal,
                } => {
                    let acted = super::registry::act(c, &act, at)?;
                    let (outcome, reply) = match &acted {
                        RegistryActed::Moved(Moved::NoOffer) => ("move_refused", refusal),
                        RegistryActed::Moved(Moved::Expired) => ("move_expired", refusal),
                        _ => (outcome.as_str(), reply),
                    };
                    finish_mo(c, &m.id, outcome, at)?;
                    let suppressed = match &reply {
                        Some(r) => budgeted_reply(c, r, &budget)?,
                        None => None,
                    };
                    Ok(Some(MoReceived {
                        outcome: MoLoginOutcome::Unknown,
                        suppressed,
                        registry: Some(acted),
                    }))
                }
            }
        })
        .await
    }

    async fn store_mo_part(&self, p: &MoPart) -> StoreResult<Option<Vec<MoPart>>> {
        let p = p.clone();
        self.write(move |c| {
            let g = &p.group;
            exec(
                c,
                &format!(
                    "INSERT INTO mo_parts ({PART_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT DO NOTHING"
                ),
                params![
                    g.smsc,
                    g.source,
                    g.dest,
                    g.reference,
                    g.total,
                    p.seq,
                    p.source_ton,
                    p.data_coding,
                    p.payload,
                    p.received_at
                ],
            )?;
            let parts = parts_of(c, g)?;
            Ok((parts.len() == usize::from(g.total)).then_some(parts))
        })
        .await
    }

    async fn complete_mo_parts(&self, limit: u32) -> StoreResult<Vec<Vec<MoPart>>> {
        self.read(move |c| {
            let groups = all(
                c,
                "SELECT smsc, source, dest, reference, total FROM mo_parts
                 GROUP BY smsc, source, dest, reference, total
                 HAVING COUNT(*) = total LIMIT ?1",
                [limit],
                |r| {
                    let reference: i64 = col(r, "mo_parts", "reference")?;
                    let total: i64 = col(r, "mo_parts", "total")?;
                    Ok(MoPartGroup {
                        smsc: col(r, "mo_parts", "smsc")?,
                        source: col(r, "mo_parts", "source")?,
                        dest: col(r, "mo_parts", "dest")?,
                        reference: u16::try_from(reference)
                            .map_err(|_| corrupt("mo_parts", "reference", reference))?,
                        total: u8::try_from(total)
                            .map_err(|_| corrupt("mo_parts", "total", total))?,
                    })
                },
            )?;
            groups.iter().map(|g| parts_of(c, g)).collect()
        })
        .await
    }

    async fn collect_mo_login(&self, token: &str) -> StoreResult<Option<MoLogin>> {
        let token = token.to_owned();
        self.write(move |c| {
            let login = get_mo_login(c, &token)?;
            if login
                .as_ref()
                .is_some_and(|l| l.state == MoLoginState::Completed)
            {
                exec(
                    c,
                    "UPDATE mo_logins SET state = 'collected', session_token = NULL
                     WHERE token = ?1 AND state = 'completed'",
                    [&token],
                )?;
            }
            Ok(login)
        })
        .await
    }

    async fn create_account(&self, a: &Account) -> StoreResult<()> {
        let a = a.clone();
        self.write(move |c| insert_account(c, &a)).await
    }

    async fn get_account_by_msisdn(
        &self,
        service: &str,
        msisdn: &str,
    ) -> StoreResult<Option<Account>> {
        let (service, msisdn) = (service.to_owned(), msisdn.to_owned());
        self.read(move |c| account_by_msisdn(c, &service, &msisdn))
            .await
    }

    async fn create_session(&self, s: &Session) -> StoreResult<()> {
        let s = s.clone();
        self.write(move |c| insert_session(c, &s)).await
    }

    async fn get_session_by_token_hash(&self, token_hash: &[u8]) -> StoreResult<Option<Session>> {
        let hash = token_hash.to_vec();
        self.read(move |c| {
            one(
                c,
                "SELECT id, account_id, token_hash, created_at, expires_at FROM sessions
                 WHERE token_hash = ?1",
                [hash],
                rows::session,
            )
        })
        .await
    }
}

//! MO logins, MOs, accounts and sessions. Each MO is stored and acted on
//! in one transaction; the same MO delivered to two instances at once is
//! serialized on its redelivery key (an advisory lock), and a login is
//! completed under its row's lock, so it completes once.

use super::limits::count_hits;
use super::outbox::insert_message;
use super::registry::{offer_move, purge, take_move};
use super::rows::{col, write_err};
use super::webhooks::insert_webhook;
use super::{pg_err, PostgresStore};
use crate::store::*;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

const PART_COLS: &str =
    "smsc, source, dest, reference, total, seq, source_ton, data_coding, payload, received_at";
const LOGIN_COLS: &str = "token, service, intent, state, msisdn, account_id, created_account,
    session_token, created_at, expires_at, completed_at";

fn bad(t: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{t}.{what}"))
}

fn login(r: &Row) -> StoreResult<MoLogin> {
    const T: &str = "mo_logins";
    let intent: String = col(r, T, "intent")?;
    let state: String = col(r, T, "state")?;
    let created: i64 = col(r, T, "created_account")?;
    Ok(MoLogin {
        token: col(r, T, "token")?,
        service: col(r, T, "service")?,
        intent: MoIntent::parse(&intent)
            .ok_or_else(|| bad(T, format!("intent: unknown {intent:?}")))?,
        state: MoLoginState::parse(&state)
            .ok_or_else(|| bad(T, format!("state: unknown {state:?}")))?,
        msisdn: col(r, T, "msisdn")?,
        account_id: col(r, T, "account_id")?,
        created_account: created != 0,
        session_token: col(r, T, "session_token")?,
        created_at: col(r, T, "created_at")?,
        expires_at: col(r, T, "expires_at")?,
        completed_at: col(r, T, "completed_at")?,
    })
}

fn account(r: &Row) -> StoreResult<Account> {
    const T: &str = "accounts";
    Ok(Account {
        id: col(r, T, "id")?,
        service: col(r, T, "service")?,
        msisdn: col(r, T, "msisdn")?,
        password_hash: col(r, T, "password_hash")?,
        created_at: col(r, T, "created_at")?,
    })
}

fn part(r: &Row) -> StoreResult<MoPart> {
    const T: &str = "mo_parts";
    let small = |name: &str| -> StoreResult<u8> {
        let v: i64 = col(r, T, name)?;
        u8::try_from(v).map_err(|_| bad(T, format!("{name}: {v}")))
    };
    let reference: i64 = col(r, T, "reference")?;
    Ok(MoPart {
        group: MoPartGroup {
            smsc: col(r, T, "smsc")?,
            source: col(r, T, "source")?,
            dest: col(r, T, "dest")?,
            reference: u16::try_from(reference)
                .map_err(|_| bad(T, format!("reference: {reference}")))?,
            total: small("total")?,
        },
        seq: small("seq")?,
        source_ton: small("source_ton")?,
        data_coding: small("data_coding")?,
        payload: col(r, T, "payload")?,
        received_at: col(r, T, "received_at")?,
    })
}

async fn parts_of(c: &impl GenericClient, g: &MoPartGroup) -> StoreResult<Vec<MoPart>> {
    c.query(
        &format!(
            "SELECT {PART_COLS} FROM mo_parts
             WHERE smsc = $1 AND source = $2 AND dest = $3 AND reference = $4 AND total = $5
             ORDER BY seq"
        ),
        &[
            &g.smsc,
            &g.source,
            &g.dest,
            &i64::from(g.reference),
            &i64::from(g.total),
        ],
    )
    .await
    .map_err(pg_err("reading MO parts"))?
    .iter()
    .map(part)
    .collect()
}

async fn get_login(
    c: &impl GenericClient,
    token: &str,
    lock: bool,
) -> StoreResult<Option<MoLogin>> {
    let sql = format!(
        "SELECT {LOGIN_COLS} FROM mo_logins WHERE token = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    c.query_opt(&sql, &[&token])
        .await
        .map_err(pg_err("reading an MO login"))?
        .as_ref()
        .map(login)
        .transpose()
}

async fn insert_account(c: &impl GenericClient, a: &Account) -> StoreResult<()> {
    c.execute(
        "INSERT INTO accounts (id, service, msisdn, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        &[&a.id, &a.service, &a.msisdn, &a.password_hash, &a.created_at],
    )
    .await
    .map_err(write_err(&format!("account {} ({} of service {})", a.id, a.msisdn, a.service)))?;
    Ok(())
}

async fn insert_session(c: &impl GenericClient, s: &Session) -> StoreResult<()> {
    c.execute(
        "INSERT INTO sessions (id, account_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        &[&s.id, &s.account_id, &s.token_hash, &s.created_at, &s.expires_at],
    )
    .await
    .map_err(write_err(&format!("session {} of account {}", s.id, s.account_id)))?;
    Ok(())
}

async fn account_by_msisdn(
    c: &impl GenericClient,
    service: &str,
    msisdn: &str,
) -> StoreResult<Option<Account>> {
    c.query_opt(
        "SELECT id, service, msisdn, password_hash, created_at FROM accounts WHERE service = $1 AND msisdn = $2",
        &[&service, &msisdn],
    )
    .await
    .map_err(pg_err("reading an account"))?
    .as_ref()
    .map(account)
    .transpose()
}

/// Queues `reply` if `budget` allows it; else the index of the budget that refused it.
async fn budgeted_reply(
    c: &impl GenericClient,
    reply: &OutboxMessage,
    budget: &[RateHit<'_>],
    at: Millis,
) -> StoreResult<Option<usize>> {
    let decisions = count_hits(c, budget, at).await?;
    if let Some(refused) = decisions.iter().position(|d| !d.allowed) {
        return Ok(Some(refused));
    }
    insert_message(c, reply).await?;
    Ok(None)
}

/// Marks an MO processed.
async fn finish_mo(c: &impl GenericClient, id: &str, outcome: &str, at: Millis) -> StoreResult<()> {
    c.execute(
        "UPDATE mo_messages SET state = 'processed', outcome = $2, processed_at = $3
         WHERE id = $1 AND state = 'received'",
        &[&id, &outcome, &at],
    )
    .await
    .map_err(pg_err("finishing an MO"))?;
    Ok(())
}

async fn complete_login(
    c: &impl GenericClient,
    x: &CompleteMoLogin<'_>,
    budget: &[RateHit<'_>],
    at: Millis,
) -> StoreResult<(MoLoginOutcome, Option<usize>)> {
    let Some(l) = get_login(c, x.token, true).await? else {
        return Ok((MoLoginOutcome::Unknown, None));
    };
    if l.state != MoLoginState::Pending {
        return Ok((MoLoginOutcome::Used, None));
    }
    if at > l.expires_at {
        return Ok((MoLoginOutcome::Expired, None));
    }
    let mut suppressed = None;
    let (account, created) = match account_by_msisdn(c, &l.service, x.msisdn).await? {
        Some(a) => (a, false),
        None => {
            let a = Account {
                service: l.service.clone(),
                msisdn: x.msisdn.to_string(),
                ..x.new_account.clone()
            };
            insert_account(c, &a).await?;
            if let Some(m) = x.password_sms {
                suppressed = budgeted_reply(c, m, budget, at).await?;
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
    )
    .await?;
    c.execute(
        "UPDATE mo_logins SET state = 'completed', msisdn = $2, account_id = $3,
             created_account = $4, session_token = $5, completed_at = $6
         WHERE token = $1 AND state = 'pending'",
        &[
            &x.token,
            &x.msisdn,
            &account.id,
            &i64::from(created),
            &x.session_token,
            &at,
        ],
    )
    .await
    .map_err(pg_err("completing an MO login"))?;
    if let Some(w) = x.webhook {
        insert_webhook(c, w).await?;
    }
    finish_mo(c, x.mo_id, "login_completed", at).await?;
    Ok((MoLoginOutcome::Completed { account, created }, suppressed))
}

async fn act(
    c: &impl GenericClient,
    a: &RegistryAct<'_>,
    at: Millis,
) -> StoreResult<RegistryActed> {
    Ok(match a {
        RegistryAct::Purge(p) => RegistryActed::Purged(purge(c, p, at).await?),
        RegistryAct::Offer(o) => {
            offer_move(c, o).await?;
            RegistryActed::Offered
        }
        RegistryAct::Take(t) => RegistryActed::Moved(take_move(c, t, at).await?),
        RegistryAct::Read => RegistryActed::Read,
    })
}

#[async_trait]
impl MoLoginStore for PostgresStore {
    async fn create_mo_login(&self, l: &MoLogin) -> StoreResult<()> {
        let c = self.conn().await?;
        c.execute(
            "INSERT INTO mo_logins (token, service, intent, state, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &l.token,
                &l.service,
                &l.intent.as_str(),
                &l.state.as_str(),
                &l.created_at,
                &l.expires_at,
            ],
        )
        .await
        .map_err(write_err(&format!("MO login of service {}", l.service)))?;
        Ok(())
    }

    async fn get_mo_login(&self, token: &str) -> StoreResult<Option<MoLogin>> {
        let c = self.conn().await?;
        get_login(&c, token, false).await
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
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting an MO"))?;
        // The same MO on two instances at once: one stores it, the other
        // then sees it as a redelivery.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(encode($1, 'hex'), 4))",
            &[&dedup_key],
        )
        .await
        .map_err(pg_err("locking an MO"))?;
        // A long MO's parts go whatever becomes of it (a redelivery too).
        if let Some(g) = &m.parts {
            tx.execute(
                "DELETE FROM mo_parts
                 WHERE smsc = $1 AND source = $2 AND dest = $3 AND reference = $4 AND total = $5",
                &[
                    &g.smsc,
                    &g.source,
                    &g.dest,
                    &i64::from(g.reference),
                    &i64::from(g.total),
                ],
            )
            .await
            .map_err(pg_err("dropping MO parts"))?;
        }
        let seen = tx
            .query_opt(
                "SELECT 1 FROM mo_messages WHERE dedup_key = $1 AND received_at >= $2",
                &[&dedup_key, &m.received_at.saturating_sub(window_ms)],
            )
            .await
            .map_err(pg_err("looking for a redelivery"))?
            .is_some();
        if seen {
            tx.commit().await.map_err(pg_err("committing"))?;
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO mo_messages (id, smsc, source, dest, text, dedup_key, state, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'received', $7)",
            &[
                &m.id,
                &m.smsc,
                &m.source,
                &m.dest,
                &m.text,
                &dedup_key,
                &m.received_at,
            ],
        )
        .await
        .map_err(write_err(&format!("MO {}", m.id)))?;
        let received = match plan {
            MoPlan::Login {
                complete,
                unknown,
                expired,
                used,
            } => {
                let (outcome, mut suppressed) =
                    complete_login(&tx, complete, reply_budget, at).await?;
                let refusal = match outcome {
                    MoLoginOutcome::Completed { .. } => None,
                    MoLoginOutcome::Unknown => Some(("unknown", *unknown)),
                    MoLoginOutcome::Expired => Some(("expired", *expired)),
                    MoLoginOutcome::Used => Some(("used", *used)),
                };
                if let Some((why, reply)) = refusal {
                    finish_mo(&tx, &m.id, why, at).await?;
                    suppressed = budgeted_reply(&tx, reply, reply_budget, at).await?;
                }
                MoReceived {
                    outcome,
                    suppressed,
                    registry: None,
                }
            }
            MoPlan::Finish { outcome, reply } => {
                finish_mo(&tx, &m.id, outcome, at).await?;
                let suppressed = match reply {
                    Some(r) => budgeted_reply(&tx, r, reply_budget, at).await?,
                    None => None,
                };
                MoReceived {
                    outcome: MoLoginOutcome::Unknown,
                    suppressed,
                    registry: None,
                }
            }
            MoPlan::Registry {
                act: a,
                outcome,
                reply,
                refusal,
            } => {
                let acted = act(&tx, a, at).await?;
                let (outcome, reply) = match &acted {
                    RegistryActed::Moved(Moved::NoOffer) => ("move_refused", refusal),
                    RegistryActed::Moved(Moved::Expired) => ("move_expired", refusal),
                    _ => (*outcome, reply),
                };
                finish_mo(&tx, &m.id, outcome, at).await?;
                let suppressed = match reply {
                    Some(r) => budgeted_reply(&tx, r, reply_budget, at).await?,
                    None => None,
                };
                MoReceived {
                    outcome: MoLoginOutcome::Unknown,
                    suppressed,
                    registry: Some(acted),
                }
            }
        };
        tx.commit().await.map_err(pg_err("committing an MO"))?;
        Ok(Some(received))
    }

    async fn store_mo_part(&self, p: &MoPart) -> StoreResult<Option<Vec<MoPart>>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting"))?;
        let g = &p.group;
        // The parts of one message from any instance, one at a time: the
        // last one stored sees them all.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2 || ':' || $3 || ':' || $4, 5))",
            &[&g.smsc, &g.source, &g.dest, &i64::from(g.reference).to_string()],
        )
        .await
        .map_err(pg_err("locking MO parts"))?;
        tx.execute(
            &format!(
                "INSERT INTO mo_parts ({PART_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT DO NOTHING"
            ),
            &[
                &g.smsc,
                &g.source,
                &g.dest,
                &i64::from(g.reference),
                &i64::from(g.total),
                &i64::from(p.seq),
                &i64::from(p.source_ton),
                &i64::from(p.data_coding),
                &p.payload,
                &p.received_at,
            ],
        )
        .await
        .map_err(pg_err("storing an MO part"))?;
        let parts = parts_of(&tx, g).await?;
        tx.commit().await.map_err(pg_err("committing"))?;
        Ok((parts.len() == usize::from(g.total)).then_some(parts))
    }

    async fn complete_mo_parts(&self, limit: u32) -> StoreResult<Vec<Vec<MoPart>>> {
        let c = self.conn().await?;
        let groups = c
            .query(
                "SELECT smsc, source, dest, reference, total FROM mo_parts
                 GROUP BY smsc, source, dest, reference, total
                 HAVING COUNT(*) = total LIMIT $1",
                &[&i64::from(limit)],
            )
            .await
            .map_err(pg_err("looking for complete long MOs"))?;
        let mut out = Vec::with_capacity(groups.len());
        for r in &groups {
            const T: &str = "mo_parts";
            let reference: i64 = col(r, T, "reference")?;
            let total: i64 = col(r, T, "total")?;
            let g = MoPartGroup {
                smsc: col(r, T, "smsc")?,
                source: col(r, T, "source")?,
                dest: col(r, T, "dest")?,
                reference: u16::try_from(reference)
                    .map_err(|_| bad(T, format!("reference: {reference}")))?,
                total: u8::try_from(total).map_err(|_| bad(T, format!("total: {total}")))?,
            };
            out.push(parts_of(&c, &g).await?);
        }
        Ok(out)
    }

    async fn collect_mo_login(&self, token: &str) -> StoreResult<Option<MoLogin>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting"))?;
        let l = get_login(&tx, token, true).await?;
        if l.as_ref()
            .is_some_and(|l| l.state == MoLoginState::Completed)
        {
            tx.execute(
                "UPDATE mo_logins SET state = 'collected', session_token = NULL
                 WHERE token = $1 AND state = 'completed'",
                &[&token],
            )
            .await
            .map_err(pg_err("collecting an MO login"))?;
        }
        tx.commit().await.map_err(pg_err("committing"))?;
        Ok(l)
    }

    async fn create_account(&self, a: &Account) -> StoreResult<()> {
        let c = self.conn().await?;
        insert_account(&c, a).await
    }

    async fn get_account_by_msisdn(
        &self,
        service: &str,
        msisdn: &str,
    ) -> StoreResult<Option<Account>> {
        let c = self.conn().await?;
        account_by_msisdn(&c, service, msisdn).await
    }

    async fn create_session(&self, s: &Session) -> StoreResult<()> {
        let c = self.conn().await?;
        insert_session(&c, s).await
    }

    async fn get_session_by_token_hash(&self, token_hash: &[u8]) -> StoreResult<Option<Session>> {
        const T: &str = "sessions";
        let c = self.conn().await?;
        c.query_opt(
            "SELECT id, account_id, token_hash, created_at, expires_at FROM sessions WHERE token_hash = $1",
            &[&token_hash],
        )
        .await
        .map_err(pg_err("reading a session"))?
        .map(|r| {
            Ok(Session {
                id: col(&r, T, "id")?,
                account_id: col(&r, T, "account_id")?,
                token_hash: col(&r, T, "token_hash")?,
                created_at: col(&r, T, "created_at")?,
                expires_at: col(&r, T, "expires_at")?,
            })
        })
        .transpose()
    }
}

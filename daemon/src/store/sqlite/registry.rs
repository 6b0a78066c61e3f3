//! The number-binding registry.

use super::rows::{all, col, exec, one, write_err};
use super::webhooks::insert_webhook;
use super::SqliteStore;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{params, Connection};

fn app_row(r: &rusqlite::Row<'_>) -> StoreResult<RegistryApp> {
    Ok(RegistryApp {
        service: col(r, "registry_apps", "service")?,
        notify_url: col(r, "registry_apps", "notify_url")?,
        created_at: col(r, "registry_apps", "created_at")?,
    })
}

fn binding_row(r: &rusqlite::Row<'_>) -> StoreResult<Binding> {
    Ok(Binding {
        msisdn: col(r, "bindings", "msisdn")?,
        service: col(r, "bindings", "service")?,
        bound_at: col(r, "bindings", "bound_at")?,
    })
}

/// The purge of [`RegistryStore::purge`], inside its transaction.
fn purge(c: &Connection, p: &OwnedPurge, at: Millis) -> StoreResult<Purged> {
    // The bound apps with where to tell them, read in the transaction that
    // removes them: a binding made meanwhile is either purged and told, or
    // made after the purge.
    let bound: Vec<(String, Option<String>)> = c
        .prepare_cached(
            "SELECT b.service, a.notify_url FROM bindings b
             LEFT JOIN registry_apps a ON a.service = b.service
             WHERE b.msisdn = ?1 AND (?2 IS NULL OR b.service = ?2)
               AND (?3 IS NULL OR b.bound_at < ?3)
             ORDER BY b.service",
        )?
        .query_map(params![p.msisdn, p.only, p.bound_before], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    exec(
        c,
        "DELETE FROM bindings WHERE msisdn = ?1 AND (?2 IS NULL OR service = ?2)
           AND (?3 IS NULL OR bound_at < ?3)",
        params![p.msisdn, p.only, p.bound_before],
    )?;
    let mut notified = 0;
    for (service, url) in &bound {
        let data = serde_json::json!({
            "msisdn": p.msisdn,
            "service": service,
            "at": verigate_codecs::time::rfc3339(at),
        });
        notified += usize::from(notify(
            c,
            &p.kind,
            &p.event_id,
            service,
            url.as_deref(),
            data,
            at,
            p.notify_for,
        )?);
    }
    if p.recycled {
        exec(
            c,
            "INSERT INTO number_recycles (msisdn, recycled_at) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING",
            params![p.msisdn, at],
        )?;
    }
    Ok(Purged {
        services: bound.into_iter().map(|(s, _)| s).collect(),
        notified,
    })
}

/// Queues the signed notification `kind` of event `event_id` to one app
/// platform (its id is the event's with the service code), retried for
/// `notify_for`; false when the app has no notify URL.
#[allow(clippy::too_many_arguments)]
fn notify(
    c: &Connection,
    kind: &str,
    event_id: &str,
    service: &str,
    url: Option<&str>,
    data: serde_json::Value,
    at: Millis,
    notify_for: Millis,
) -> StoreResult<bool> {
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        return Ok(false);
    };
    let id = format!("{event_id}-{service}");
    let body = serde_json::json!({
        "type": kind,
        "id": id,
        "created_at": verigate_codecs::time::rfc3339(at),
        "data": data,
    });
    let job = WebhookJob {
        deliver_until: Some(at.saturating_add(notify_for)),
        topic: Some("registry".into()),
        ..WebhookJob::post(format!("wh_{id}"), service, url, body.to_string(), at)
    };
    insert_webhook(c, &job)?;
    Ok(true)
}

/// Takes a move offer inside a transaction (see [`RegistryStore::take_move`]).
pub(super) fn take_move(c: &Connection, t: &OwnedTake, at: Millis) -> StoreResult<Moved> {
    let offer = one(
        c,
        "SELECT old_msisdn, expires_at FROM registry_moves WHERE token = ?1 AND new_msisdn = ?2",
        params![t.token, t.new_msisdn],
        |r| {
            Ok((
                col::<String>(r, "registry_moves", "old_msisdn")?,
                col::<Millis>(r, "registry_moves", "expires_at")?,
            ))
        },
    )?;
    let Some((old, expires_at)) = offer else {
        return Ok(Moved::NoOffer);
    };
    exec(c, "DELETE FROM registry_moves WHERE token = ?1", [&t.token])?;
    if at > expires_at {
        return Ok(Moved::Expired);
    }
    Ok(Moved::Moved(move_all(
        c,
        &old,
        &t.new_msisdn,
        &t.event_id,
        t.notify_for,
        at,
    )?))
}

/// Moves every binding of `old` to `new` and tells each app
/// (`number_updated`), inside a transaction.
fn move_all(
    c: &Connection,
    old: &str,
    new: &str,
    event_id: &str,
    notify_for: Millis,
    at: Millis,
) -> StoreResult<MoveDone> {
    let bound: Vec<(String, Option<String>)> = c
        .prepare_cached(
            "SELECT b.service, a.notify_url FROM bindings b
             LEFT JOIN registry_apps a ON a.service = b.service
             WHERE b.msisdn = ?1 ORDER BY b.service",
        )?
        .query_map([old], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    // Bound to the new number already: that binding stands, the old goes.
    exec(
        c,
        "INSERT INTO bindings (msisdn, service, bound_at)
         SELECT ?2, service, ?3 FROM bindings WHERE msisdn = ?1
         ON CONFLICT DO NOTHING",
        params![old, new, at],
    )?;
    exec(c, "DELETE FROM bindings WHERE msisdn = ?1", [old])?;
    let mut notified = 0;
    for (service, url) in &bound {
        let data = serde_json::json!({
            "old": old,
            "new": new,
            "service": service,
            "at": verigate_codecs::time::rfc3339(at),
        });
        notified += usize::from(notify(
            c,
            "number_updated",
            event_id,
            service,
            url.as_deref(),
            data,
            at,
            notify_for,
        )?);
    }
    Ok(MoveDone {
        old_msisdn: old.to_string(),
        services: bound.into_iter().map(|(s, _)| s).collect(),
        notified,
    })
}

/// Stores a move offer inside a transaction.
pub(super) fn offer_move(c: &Connection, o: &MoveOffer) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO registry_moves (token, old_msisdn, new_msisdn, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        o.token,
        o.old_msisdn,
        o.new_msisdn,
        o.created_at,
        o.expires_at
    ])
    .map_err(|e| write_err(e, &format!("move offer {}", o.token)))?;
    Ok(())
}

/// [`TakeMove`] owned, to move onto the writer thread.
pub(super) struct OwnedTake {
    token: String,
    new_msisdn: String,
    event_id: String,
    notify_for: Millis,
}

impl From<&TakeMove<'_>> for OwnedTake {
    fn from(t: &TakeMove<'_>) -> Self {
        OwnedTake {
            token: t.token.to_owned(),
            new_msisdn: t.new_msisdn.to_owned(),
            event_id: t.event_id.to_owned(),
            notify_for: t.notify_for,
        }
    }
}

/// What a subscriber's MO does, owned for the writer thread.
pub(super) enum OwnedAct {
    Purge(OwnedPurge),
    Offer(MoveOffer),
    Take(OwnedTake),
    Read,
}

impl From<&RegistryAct<'_>> for OwnedAct {
    fn from(a: &RegistryAct<'_>) -> Self {
        match a {
            RegistryAct::Purge(p) => OwnedAct::Purge(OwnedPurge::from(p)),
            RegistryAct::Offer(o) => OwnedAct::Offer((*o).clone()),
            RegistryAct::Take(t) => OwnedAct::Take(OwnedTake::from(t)),
            RegistryAct::Read => OwnedAct::Read,
        }
    }
}

/// Applies a subscriber's act inside the MO's transaction.
pub(super) fn act(c: &Connection, a: &OwnedAct, at: Millis) -> StoreResult<RegistryActed> {
    Ok(match a {
        OwnedAct::Purge(p) => RegistryActed::Purged(purge(c, p, at)?),
        OwnedAct::Offer(o) => {
            offer_move(c, o)?;
            RegistryActed::Offered
        }
        OwnedAct::Take(t) => RegistryActed::Moved(take_move(c, t, at)?),
        OwnedAct::Read => RegistryActed::Read,
    })
}

/// [`Purge`] owned, to move onto the writer thread.
pub(super) struct OwnedPurge {
    msisdn: String,
    only: Option<String>,
    recycled: bool,
    kind: String,
    event_id: String,
    notify_for: Millis,
    bound_before: Option<Millis>,
}

impl From<&Purge<'_>> for OwnedPurge {
    fn from(p: &Purge<'_>) -> Self {
        OwnedPurge {
            msisdn: p.msisdn.to_owned(),
            only: p.only.map(str::to_owned),
            recycled: p.recycled,
            kind: p.kind.to_owned(),
            event_id: p.event_id.to_owned(),
            notify_for: p.notify_for,
            bound_before: p.bound_before,
        }
    }
}

#[async_trait]
impl RegistryStore for SqliteStore {
    async fn add_registry_app(&self, app: &RegistryApp) -> StoreResult<()> {
        let app = app.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO registry_apps (service, notify_url, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![app.service, app.notify_url, app.created_at])
            .map_err(|e| write_err(e, &format!("registry app {}", app.service)))?;
            Ok(())
        })
        .await
    }

    async fn set_registry_app_url(&self, service: &str, notify_url: &str) -> StoreResult<bool> {
        let (service, url) = (service.to_owned(), notify_url.to_owned());
        self.write(move |c| {
            Ok(exec(
                c,
                "UPDATE registry_apps SET notify_url = ?2 WHERE service = ?1",
                params![service, url],
            )? == 1)
        })
        .await
    }

    async fn get_registry_app(&self, service: &str) -> StoreResult<Option<RegistryApp>> {
        let service = service.to_owned();
        self.read(move |c| {
            one(
                c,
                "SELECT service, notify_url, created_at FROM registry_apps WHERE service = ?1",
                [service],
                app_row,
            )
        })
        .await
    }

    async fn list_registry_apps(&self) -> StoreResult<Vec<RegistryApp>> {
        self.read(move |c| {
            all(
                c,
                "SELECT service, notify_url, created_at FROM registry_apps ORDER BY service",
                [],
                app_row,
            )
        })
        .await
    }

    async fn bind(&self, msisdn: &str, service: &str, at: Millis) -> StoreResult<bool> {
        let (msisdn, service) = (msisdn.to_owned(), service.to_owned());
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "INSERT INTO bindings (msisdn, service, bound_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![msisdn, service, at])
                .map_err(|e| write_err(e, &format!("binding of {msisdn} to {service}")))?;
            Ok(n == 1)
        })
        .await
    }

    async fn unbind(&self, msisdn: &str, service: &str) -> StoreResult<bool> {
        let (msisdn, service) = (msisdn.to_owned(), service.to_owned());
        self.write(move |c| {
            Ok(exec(
                c,
                "DELETE FROM bindings WHERE msisdn = ?1 AND service = ?2",
                params![msisdn, service],
            )? == 1)
        })
        .await
    }

    async fn bindings_of(&self, msisdn: &str) -> StoreResult<Vec<Binding>> {
        let msisdn = msisdn.to_owned();
        self.read(move |c| {
            all(
                c,
                "SELECT msisdn, service, bound_at FROM bindings WHERE msisdn = ?1 ORDER BY service",
                [msisdn],
                binding_row,
            )
        })
        .await
    }

    async fn purge(&self, p: &Purge<'_>, at: Millis) -> StoreResult<Purged> {
        let p = OwnedPurge::from(p);
        self.write(move |c| purge(c, &p, at)).await
    }

    async fn recycled_since(&self, msisdn: &str, since: Millis) -> StoreResult<bool> {
        let msisdn = msisdn.to_owned();
        self.read(move |c| {
            Ok(one(
                c,
                "SELECT 1 FROM number_recycles WHERE msisdn = ?1 AND recycled_at >= ?2 LIMIT 1",
                params![msisdn, since],
                |_| Ok(()),
            )?
            .is_some())
        })
        .await
    }

    async fn records_began(&self) -> StoreResult<Option<Millis>> {
        self.read(move |c| {
            let first = one(
                c,
                "SELECT MIN(t) AS began FROM (
                     SELECT MIN(recycled_at) AS t FROM number_recycles
                     UNION ALL SELECT MIN(created_at) FROM registry_apps)",
                [],
                |r| col::<Option<Millis>>(r, "number_recycles", "began"),
            )?;
            Ok(first.flatten())
        })
        .await
    }

    async fn move_offer(&self, token: &str) -> StoreResult<Option<MoveOffer>> {
        let token = token.to_owned();
        self.read(move |c| {
            one(
                c,
                "SELECT token, old_msisdn, new_msisdn, created_at, expires_at
                 FROM registry_moves WHERE token = ?1",
                [token],
                |r| {
                    const T: &str = "registry_moves";
                    Ok(MoveOffer {
                        token: col(r, T, "token")?,
                        old_msisdn: col(r, T, "old_msisdn")?,
                        new_msisdn: col(r, T, "new_msisdn")?,
                        created_at: col(r, T, "created_at")?,
                        expires_at: col(r, T, "expires_at")?,
                    })
                },
            )
        })
        .await
    }

    async fn offer_move(&self, offer: &MoveOffer) -> StoreResult<()> {
        let offer = offer.clone();
        self.write(move |c| offer_move(c, &offer)).await
    }

    async fn move_bindings(
        &self,
        old: &str,
        new: &str,
        event_id: &str,
        notify_for: Millis,
        at: Millis,
    ) -> StoreResult<MoveDone> {
        let (old, new, event_id) = (old.to_owned(), new.to_owned(), event_id.to_owned());
        self.write(move |c| move_all(c, &old, &new, &event_id, notify_for, at))
            .await
    }

    async fn take_move(&self, take: &TakeMove<'_>, at: Millis) -> StoreResult<Moved> {
        let t = OwnedTake::from(take);
        self.write(move |c| take_move(c, &t, at)).await
    }
}

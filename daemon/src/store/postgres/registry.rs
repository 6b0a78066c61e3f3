//! The number-binding registry. A purge or move deletes with `RETURNING`,
//! so the apps told are exactly the bindings removed, even with binds
//! arriving on other instances meanwhile; a move offer is taken by deleting
//! it, so it is taken once.

use super::rows::{col, write_err};
use super::webhooks::insert_webhook;
use super::{pg_err, PostgresStore};
use crate::store::*;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

fn app(r: &Row) -> StoreResult<RegistryApp> {
    Ok(RegistryApp {
        service: col(r, "registry_apps", "service")?,
        notify_url: col(r, "registry_apps", "notify_url")?,
        created_at: col(r, "registry_apps", "created_at")?,
    })
}

/// The notify URL of each of `services` (sorted), None where not registered.
async fn with_urls(
    c: &impl GenericClient,
    mut services: Vec<String>,
) -> StoreResult<Vec<(String, Option<String>)>> {
    services.sort();
    let mut out = Vec::with_capacity(services.len());
    for s in services {
        let url: Option<String> = c
            .query_opt(
                "SELECT notify_url FROM registry_apps WHERE service = $1",
                &[&s],
            )
            .await
            .map_err(pg_err("reading an app's notify URL"))?
            .map(|r| r.get(0));
        out.push((s, url));
    }
    Ok(out)
}

/// Queues the signed notification `kind` of event `event_id` to one app
/// platform, retried for `notify_for`; false when it has no notify URL.
#[allow(clippy::too_many_arguments)]
async fn notify(
    c: &impl GenericClient,
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
    insert_webhook(c, &job).await?;
    Ok(true)
}

/// [`RegistryStore::purge`] inside the caller's transaction.
pub(super) async fn purge(
    c: &impl GenericClient,
    p: &Purge<'_>,
    at: Millis,
) -> StoreResult<Purged> {
    let gone: Vec<String> = c
        .query(
            "DELETE FROM bindings WHERE msisdn = $1 AND ($2::TEXT IS NULL OR service = $2)
               AND ($3::BIGINT IS NULL OR bound_at < $3)
             RETURNING service",
            &[&p.msisdn, &p.only, &p.bound_before],
        )
        .await
        .map_err(pg_err("purging bindings"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let bound = with_urls(c, gone).await?;
    let mut notified = 0;
    for (service, url) in &bound {
        let data = serde_json::json!({
            "msisdn": p.msisdn,
            "service": service,
            "at": verigate_codecs::time::rfc3339(at),
        });
        notified += usize::from(
            notify(
                c,
                p.kind,
                p.event_id,
                service,
                url.as_deref(),
                data,
                at,
                p.notify_for,
            )
            .await?,
        );
    }
    if p.recycled {
        c.execute(
            "INSERT INTO number_recycles (msisdn, recycled_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&p.msisdn, &at],
        )
        .await
        .map_err(pg_err("recording a recycle"))?;
    }
    Ok(Purged {
        services: bound.into_iter().map(|(s, _)| s).collect(),
        notified,
    })
}

/// Moves every binding of `old` to `new` and tells each app
/// (`number_updated`), inside the caller's transaction.
async fn move_all(
    c: &impl GenericClient,
    old: &str,
    new: &str,
    event_id: &str,
    notify_for: Millis,
    at: Millis,
) -> StoreResult<MoveDone> {
    let gone: Vec<String> = c
        .query(
            "DELETE FROM bindings WHERE msisdn = $1 RETURNING service",
            &[&old],
        )
        .await
        .map_err(pg_err("moving bindings"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Bound to the new number already: that binding stands.
    for s in &gone {
        c.execute(
            "INSERT INTO bindings (msisdn, service, bound_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&new, s, &at],
        )
        .await
        .map_err(write_err("a moved binding"))?;
    }
    let bound = with_urls(c, gone).await?;
    let mut notified = 0;
    for (service, url) in &bound {
        let data = serde_json::json!({
            "old": old,
            "new": new,
            "service": service,
            "at": verigate_codecs::time::rfc3339(at),
        });
        notified += usize::from(
            notify(
                c,
                "number_updated",
                event_id,
                service,
                url.as_deref(),
                data,
                at,
                notify_for,
            )
            .await?,
        );
    }
    Ok(MoveDone {
        old_msisdn: old.to_string(),
        services: bound.into_iter().map(|(s, _)| s).collect(),
        notified,
    })
}

/// [`RegistryStore::take_move`] inside the caller's transaction.
pub(super) async fn take_move(
    c: &impl GenericClient,
    t: &TakeMove<'_>,
    at: Millis,
) -> StoreResult<Moved> {
    let offer = c
        .query_opt(
            "DELETE FROM registry_moves WHERE token = $1 AND new_msisdn = $2
             RETURNING old_msisdn, expires_at",
            &[&t.token, &t.new_msisdn],
        )
        .await
        .map_err(pg_err("taking a move offer"))?;
    let Some(row) = offer else {
        return Ok(Moved::NoOffer);
    };
    let old: String = col(&row, "registry_moves", "old_msisdn")?;
    let expires_at: Millis = col(&row, "registry_moves", "expires_at")?;
    if at > expires_at {
        return Ok(Moved::Expired);
    }
    Ok(Moved::Moved(
        move_all(c, &old, t.new_msisdn, t.event_id, t.notify_for, at).await?,
    ))
}

/// Stores a move offer (also inside another write's transaction).
pub(super) async fn offer_move(c: &impl GenericClient, o: &MoveOffer) -> StoreResult<()> {
    c.execute(
        "INSERT INTO registry_moves (token, old_msisdn, new_msisdn, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &o.token,
            &o.old_msisdn,
            &o.new_msisdn,
            &o.created_at,
            &o.expires_at,
        ],
    )
    .await
    .map_err(write_err(&format!("move offer {}", o.token)))?;
    Ok(())
}

#[async_trait]
impl RegistryStore for PostgresStore {
    async fn add_registry_app(&self, a: &RegistryApp) -> StoreResult<()> {
        let c = self.conn().await?;
        c.execute(
            "INSERT INTO registry_apps (service, notify_url, created_at) VALUES ($1, $2, $3)",
            &[&a.service, &a.notify_url, &a.created_at],
        )
        .await
        .map_err(write_err(&format!("registry app {}", a.service)))?;
        Ok(())
    }

    async fn set_registry_app_url(&self, service: &str, notify_url: &str) -> StoreResult<bool> {
        let c = self.conn().await?;
        Ok(c.execute(
            "UPDATE registry_apps SET notify_url = $2 WHERE service = $1",
            &[&service, &notify_url],
        )
        .await
        .map_err(pg_err("changing a notify URL"))?
            == 1)
    }

    async fn get_registry_app(&self, service: &str) -> StoreResult<Option<RegistryApp>> {
        let c = self.conn().await?;
        c.query_opt(
            "SELECT service, notify_url, created_at FROM registry_apps WHERE service = $1",
            &[&service],
        )
        .await
        .map_err(pg_err("reading a registry app"))?
        .as_ref()
        .map(app)
        .transpose()
    }

    async fn list_registry_apps(&self) -> StoreResult<Vec<RegistryApp>> {
        let c = self.conn().await?;
        c.query(
            "SELECT service, notify_url, created_at FROM registry_apps ORDER BY service COLLATE \"C\"",
            &[],
        )
        .await
        .map_err(pg_err("listing registry apps"))?
        .iter()
        .map(app)
        .collect()
    }

    async fn bind(&self, msisdn: &str, service: &str, at: Millis) -> StoreResult<bool> {
        let c = self.conn().await?;
        let n = c
            .execute(
                "INSERT INTO bindings (msisdn, service, bound_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&msisdn, &service, &at],
            )
            .await
            .map_err(write_err(&format!("binding of {msisdn} to {service}")))?;
        Ok(n == 1)
    }

    async fn unbind(&self, msisdn: &str, service: &str) -> StoreResult<bool> {
        let c = self.conn().await?;
        Ok(c.execute(
            "DELETE FROM bindings WHERE msisdn = $1 AND service = $2",
            &[&msisdn, &service],
        )
        .await
        .map_err(pg_err("unbinding"))?
            == 1)
    }

    async fn bindings_of(&self, msisdn: &str) -> StoreResult<Vec<Binding>> {
        let c = self.conn().await?;
        c.query(
            "SELECT msisdn, service, bound_at FROM bindings WHERE msisdn = $1 ORDER BY service COLLATE \"C\"",
            &[&msisdn],
        )
        .await
        .map_err(pg_err("reading bindings"))?
        .iter()
        .map(|r| {
            Ok(Binding {
                msisdn: col(r, "bindings", "msisdn")?,
                service: col(r, "bindings", "service")?,
                bound_at: col(r, "bindings", "bound_at")?,
            })
        })
        .collect()
    }

    async fn purge(&self, p: &Purge<'_>, at: Millis) -> StoreResult<Purged> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting a purge"))?;
        let done = purge(&tx, p, at).await?;
        tx.commit().await.map_err(pg_err("committing a purge"))?;
        Ok(done)
    }

    async fn recycled_since(&self, msisdn: &str, since: Millis) -> StoreResult<bool> {
        let c = self.conn().await?;
        Ok(c.query_opt(
            "SELECT 1 FROM number_recycles WHERE msisdn = $1 AND recycled_at >= $2 LIMIT 1",
            &[&msisdn, &since],
        )
        .await
        .map_err(pg_err("reading recycles"))?
        .is_some())
    }

    async fn records_began(&self) -> StoreResult<Option<Millis>> {
        let c = self.conn().await?;
        Ok(c.query_one(
            "SELECT MIN(t) FROM (
                     SELECT MIN(recycled_at) AS t FROM number_recycles
                     UNION ALL SELECT MIN(created_at) FROM registry_apps) x",
            &[],
        )
        .await
        .map_err(pg_err("reading when records began"))?
        .get(0))
    }

    async fn move_offer(&self, token: &str) -> StoreResult<Option<MoveOffer>> {
        const T: &str = "registry_moves";
        let c = self.conn().await?;
        c.query_opt(
            "SELECT token, old_msisdn, new_msisdn, created_at, expires_at FROM registry_moves WHERE token = $1",
            &[&token],
        )
        .await
        .map_err(pg_err("reading a move offer"))?
        .map(|r| {
            Ok(MoveOffer {
                token: col(&r, T, "token")?,
                old_msisdn: col(&r, T, "old_msisdn")?,
                new_msisdn: col(&r, T, "new_msisdn")?,
                created_at: col(&r, T, "created_at")?,
                expires_at: col(&r, T, "expires_at")?,
            })
        })
        .transpose()
    }

    async fn offer_move(&self, offer: &MoveOffer) -> StoreResult<()> {
        let c = self.conn().await?;
        offer_move(&c, offer).await
    }

    async fn move_bindings(
        &self,
        old: &str,
        new: &str,
        event_id: &str,
        notify_for: Millis,
        at: Millis,
    ) -> StoreResult<MoveDone> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting a move"))?;
        let done = move_all(&tx, old, new, event_id, notify_for, at).await?;
        tx.commit().await.map_err(pg_err("committing a move"))?;
        Ok(done)
    }

    async fn take_move(&self, take: &TakeMove<'_>, at: Millis) -> StoreResult<Moved> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting a move"))?;
        let done = take_move(&tx, take, at).await?;
        tx.commit().await.map_err(pg_err("committing a move"))?;
        Ok(done)
    }
}

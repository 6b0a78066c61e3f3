//! The app side's bindings.

use super::rows::{col, write_err};
use super::webhooks::insert_webhook;
use super::{pg_err, PostgresStore};
use crate::store::*;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

const COLUMNS: &str =
    "id, service, account_ref, msisdn, state, verification_id, created_at, updated_at";

fn binding(r: &Row) -> StoreResult<AppBinding> {
    const T: &str = "app_bindings";
    let state: String = col(r, T, "state")?;
    Ok(AppBinding {
        id: col(r, T, "id")?,
        service: col(r, T, "service")?,
        account_ref: col(r, T, "account_ref")?,
        msisdn: col(r, T, "msisdn")?,
        state: AppBindingState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("{T}.state: unknown {state:?}")))?,
        verification_id: col(r, T, "verification_id")?,
        created_at: col(r, T, "created_at")?,
        updated_at: col(r, T, "updated_at")?,
    })
}

async fn get(
    c: &impl GenericClient,
    service: &str,
    id: &str,
    lock: bool,
) -> StoreResult<Option<AppBinding>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM app_bindings WHERE service = $1 AND id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    c.query_opt(&sql, &[&service, &id])
        .await
        .map_err(pg_err("reading a binding"))?
        .as_ref()
        .map(binding)
        .transpose()
}

async fn active_of(
    c: &impl GenericClient,
    service: &str,
    msisdn: &str,
) -> StoreResult<Vec<AppBinding>> {
    c.query(
        &format!(
            "SELECT {COLUMNS} FROM app_bindings
             WHERE service = $1 AND msisdn = $2 AND state = 'active' ORDER BY rowid FOR UPDATE"
        ),
        &[&service, &msisdn],
    )
    .await
    .map_err(pg_err("reading bindings"))?
    .iter()
    .map(binding)
    .collect()
}

async fn delete(c: &impl GenericClient, id: &str) -> StoreResult<()> {
    c.execute("DELETE FROM app_bindings WHERE id = $1", &[&id])
        .await
        .map_err(pg_err("removing a binding"))?;
    Ok(())
}

/// The account server's webhook of one changed binding.
async fn account_hook(
    c: &impl GenericClient,
    e: &RegistryEvent<'_>,
    url: &str,
    kind: &str,
    b: &AppBinding,
    data: serde_json::Value,
) -> StoreResult<()> {
    let id = format!("{}-{}", e.event_id, b.id);
    let body = serde_json::json!({
        "type": kind,
        "id": id,
        "created_at": verigate_codecs::time::rfc3339(e.at),
        "data": data,
    });
    insert_webhook(
        c,
        &WebhookJob::post(format!("wh_{id}"), e.service, url, body.to_string(), e.at),
    )
    .await
}

async fn apply(c: &impl GenericClient, e: &RegistryEvent<'_>) -> StoreResult<EventApplied> {
    let new = c
        .execute(
            "INSERT INTO registry_events_seen (service, event_id, received_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&e.service, &e.event_id, &e.at],
        )
        .await
        .map_err(pg_err("recording a registry event"))?;
    if new == 0 {
        return Ok(EventApplied::Duplicate);
    }
    let number = match e.change {
        RegistryChange::Removed { msisdn, .. } => msisdn,
        RegistryChange::Moved { old, .. } => old,
    };
    let changed = active_of(c, e.service, number).await?;
    let rfc = verigate_codecs::time::rfc3339;
    for b in &changed {
        match e.change {
            RegistryChange::Removed { reason, .. } => {
                delete(c, &b.id).await?;
                if let Some(url) = e.account_hook {
                    let data = serde_json::json!({
                        "id": b.id, "account_ref": b.account_ref, "msisdn": b.msisdn,
                        "reason": reason, "at": rfc(e.at),
                    });
                    account_hook(c, e, url, "binding.removed", b, data).await?;
                }
            }
            RegistryChange::Moved { old, new } => {
                // An active binding of the new number (another account's)
                // gives way: its holder proved the number for this account.
                for r in active_of(c, e.service, new)
                    .await?
                    .iter()
                    .filter(|r| r.id != b.id)
                {
                    delete(c, &r.id).await?;
                    if let Some(url) = e.account_hook {
                        let data = serde_json::json!({
                            "id": r.id, "account_ref": r.account_ref, "msisdn": r.msisdn,
                            "reason": "replaced", "at": rfc(e.at),
                        });
                        account_hook(c, e, url, "binding.removed", r, data).await?;
                    }
                }
                c.execute(
                    "UPDATE app_bindings SET msisdn = $2, updated_at = $3 WHERE id = $1",
                    &[&b.id, &new, &e.at],
                )
                .await
                .map_err(write_err("a moved binding"))?;
                if let Some(url) = e.account_hook {
                    let data = serde_json::json!({
                        "id": b.id, "account_ref": b.account_ref, "old": old, "new": new,
                        "at": rfc(e.at),
                    });
                    account_hook(c, e, url, "binding.moved", b, data).await?;
                }
            }
        }
    }
    Ok(EventApplied::Applied(changed))
}

#[async_trait]
impl BindingsStore for PostgresStore {
    async fn create_app_binding(&self, b: &AppBinding) -> StoreResult<()> {
        let c = self.conn().await?;
        c.execute(
            &format!(
                "INSERT INTO app_bindings ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                &b.id,
                &b.service,
                &b.account_ref,
                &b.msisdn,
                &b.state.as_str(),
                &b.verification_id,
                &b.created_at,
                &b.updated_at,
            ],
        )
        .await
        .map_err(write_err(&format!("binding {}", b.id)))?;
        Ok(())
    }

    async fn get_app_binding(&self, service: &str, id: &str) -> StoreResult<Option<AppBinding>> {
        let c = self.conn().await?;
        get(&c, service, id, false).await
    }

    async fn list_app_bindings(
        &self,
        service: &str,
        filter: BindingFilter<'_>,
        limit: u32,
    ) -> StoreResult<Vec<AppBinding>> {
        let (column, value) = match filter {
            BindingFilter::Account(a) => ("account_ref", a),
            BindingFilter::Msisdn(m) => ("msisdn", m),
        };
        let c = self.conn().await?;
        c.query(
            &format!(
                "SELECT {COLUMNS} FROM app_bindings WHERE service = $1 AND {column} = $2
                 ORDER BY created_at DESC, rowid DESC LIMIT $3"
            ),
            &[&service, &value, &i64::from(limit)],
        )
        .await
        .map_err(pg_err("listing bindings"))?
        .iter()
        .map(binding)
        .collect()
    }

    async fn activate_app_binding(
        &self,
        service: &str,
        id: &str,
        report: &WebhookJob,
        at: Millis,
    ) -> StoreResult<Option<AppBinding>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting"))?;
        let Some(b) = get(&tx, service, id, true).await? else {
            return Ok(None);
        };
        if b.state == AppBindingState::Active {
            return Ok(Some(b));
        }
        let what = format!(
            "{} is bound to another account of this service already; binding",
            crate::verify::phone::mask(&b.msisdn)
        );
        tx.execute(
            "UPDATE app_bindings SET state = 'active', updated_at = $2 WHERE id = $1",
            &[&id, &at],
        )
        .await
        .map_err(write_err(&what))?;
        insert_webhook(&tx, report).await?;
        let b = get(&tx, service, id, false).await?;
        tx.commit().await.map_err(pg_err("committing"))?;
        Ok(b)
    }

    async fn remove_app_binding(
        &self,
        service: &str,
        id: &str,
        report: &WebhookJob,
    ) -> StoreResult<Option<AppBinding>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting"))?;
        let Some(b) = get(&tx, service, id, true).await? else {
            return Ok(None);
        };
        delete(&tx, id).await?;
        if b.state == AppBindingState::Active {
            insert_webhook(&tx, report).await?;
        }
        tx.commit().await.map_err(pg_err("committing"))?;
        Ok(Some(b))
    }

    async fn apply_registry_event(&self, e: &RegistryEvent<'_>) -> StoreResult<EventApplied> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err("starting"))?;
        let applied = apply(&tx, e).await?;
        tx.commit().await.map_err(pg_err("committing"))?;
        Ok(applied)
    }
}

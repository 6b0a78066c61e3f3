//! The app side's bindings.

use super::rows::{all, col, exec, one, write_err};
use super::webhooks::insert_webhook;
use super::SqliteStore;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{params, Connection};

const COLUMNS: &str =
    "id, service, account_ref, msisdn, state, verification_id, created_at, updated_at";

fn binding_row(r: &rusqlite::Row<'_>) -> StoreResult<AppBinding> {
    const T: &str = "app_bindings";
    let state: String = col(r, T, "state")?;
    Ok(AppBinding {
        id: col(r, T, "id")?,
        service: col(r, T, "service")?,
        account_ref: col(r, T, "account_ref")?,
        msisdn: col(r, T, "msisdn")?,
        state: AppBindingState::parse(&state)
            .ok_or_else(|| super::rows::corrupt(T, "state", format!("unknown {state:?}")))?,
        verification_id: col(r, T, "verification_id")?,
        created_at: col(r, T, "created_at")?,
        updated_at: col(r, T, "updated_at")?,
    })
}

fn get(c: &Connection, service: &str, id: &str) -> StoreResult<Option<AppBinding>> {
    one(
        c,
        &format!("SELECT {COLUMNS} FROM app_bindings WHERE service = ?1 AND id = ?2"),
        params![service, id],
        binding_row,
    )
}

/// The account server's webhook of one changed binding.
fn account_hook(
    c: &Connection,
    e: &OwnedEvent,
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
        &WebhookJob::post(format!("wh_{id}"), &e.service, url, body.to_string(), e.at),
    )
}

/// [`RegistryEvent`] owned, for the writer thread.
struct OwnedEvent {
    service: String,
    event_id: String,
    change: OwnedChange,
    at: Millis,
    account_hook: Option<String>,
}

enum OwnedChange {
    Removed { msisdn: String, reason: String },
    Moved { old: String, new: String },
}

fn apply(c: &Connection, e: &OwnedEvent) -> StoreResult<EventApplied> {
    let new = c
        .prepare_cached(
            "INSERT INTO registry_events_seen (service, event_id, received_at) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![e.service, e.event_id, e.at])?;
    if new == 0 {
        return Ok(EventApplied::Duplicate);
    }
    let number = match &e.change {
        OwnedChange::Removed { msisdn, .. } => msisdn,
        OwnedChange::Moved { old, .. } => old,
    };
    let changed = all(
        c,
        &format!(
            "SELECT {COLUMNS} FROM app_bindings
             WHERE service = ?1 AND msisdn = ?2 AND state = 'active'"
        ),
        params![e.service, number],
        binding_row,
    )?;
    let rfc = verigate_codecs::time::rfc3339;
    for b in &changed {
        match &e.change {
            OwnedChange::Removed { reason, .. } => {
                exec(c, "DELETE FROM app_bindings WHERE id = ?1", [&b.id])?;
                if let Some(url) = &e.account_hook {
                    let data = serde_json::json!({
                        "id": b.id, "account_ref": b.account_ref, "msisdn": b.msisdn,
                        "reason": reason, "at": rfc(e.at),
                    });
                    account_hook(c, e, url, "binding.removed", b, data)?;
                }
            }
            OwnedChange::Moved { old, new } => {
                // An active binding of the new number (another account's)
                // gives way: its holder proved the number for this account.
                let replaced = all(
                    c,
                    &format!(
                        "SELECT {COLUMNS} FROM app_bindings
                         WHERE service = ?1 AND msisdn = ?2 AND state = 'active' AND id <> ?3"
                    ),
                    params![e.service, new, b.id],
                    binding_row,
                )?;
                for r in &replaced {
                    exec(c, "DELETE FROM app_bindings WHERE id = ?1", [&r.id])?;
                    if let Some(url) = &e.account_hook {
                        let data = serde_json::json!({
                            "id": r.id, "account_ref": r.account_ref, "msisdn": r.msisdn,
                            "reason": "replaced", "at": rfc(e.at),
                        });
                        account_hook(c, e, url, "binding.removed", r, data)?;
                    }
                }
                exec(
                    c,
                    "UPDATE app_bindings SET msisdn = ?2, updated_at = ?3 WHERE id = ?1",
                    params![b.id, new, e.at],
                )?;
                if let Some(url) = &e.account_hook {
                    let data = serde_json::json!({
                        "id": b.id, "account_ref": b.account_ref, "old": old, "new": new,
                        "at": rfc(e.at),
                    });
                    account_hook(c, e, url, "binding.moved", b, data)?;
                }
            }
        }
    }
    Ok(EventApplied::Applied(changed))
}

#[async_trait]
impl BindingsStore for SqliteStore {
    async fn create_app_binding(&self, b: &AppBinding) -> StoreResult<()> {
        let b = b.clone();
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO app_bindings ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                b.id,
                b.service,
                b.account_ref,
                b.msisdn,
                b.state.as_str(),
                b.verification_id,
                b.created_at,
                b.updated_at
            ])
            .map_err(|e| write_err(e, &format!("binding {}", b.id)))?;
            Ok(())
        })
        .await
    }

    async fn get_app_binding(&self, service: &str, id: &str) -> StoreResult<Option<AppBinding>> {
        let (service, id) = (service.to_owned(), id.to_owned());
        self.read(move |c| get(c, &service, &id)).await
    }

    async fn list_app_bindings(
        &self,
        service: &str,
        filter: BindingFilter<'_>,
        limit: u32,
    ) -> StoreResult<Vec<AppBinding>> {
        let (column, value) = match filter {
            BindingFilter::Account(a) => ("account_ref", a.to_owned()),
            BindingFilter::Msisdn(m) => ("msisdn", m.to_owned()),
        };
        let service = service.to_owned();
        self.read(move |c| {
            all(
                c,
                &format!(
                    "SELECT {COLUMNS} FROM app_bindings WHERE service = ?1 AND {column} = ?2
                     ORDER BY created_at DESC, rowid DESC LIMIT ?3"
                ),
                params![service, value, limit],
                binding_row,
            )
        })
        .await
    }

    async fn activate_app_binding(
        &self,
        service: &str,
        id: &str,
        report: &WebhookJob,
        at: Millis,
    ) -> StoreResult<Option<AppBinding>> {
        let (service, id, report) = (service.to_owned(), id.to_owned(), report.clone());
        self.write(move |c| {
            let Some(b) = get(c, &service, &id)? else {
                return Ok(None);
            };
            if b.state == AppBindingState::Active {
                return Ok(Some(b));
            }
            let what = format!(
                "{} is bound to another account of this service already; binding",
                crate::verify::phone::mask(&b.msisdn)
            );
            c.prepare_cached(
                "UPDATE app_bindings SET state = 'active', updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![id, at])
            .map_err(|e| write_err(e, &what))?;
            insert_webhook(c, &report)?;
            get(c, &service, &id)
        })
        .await
    }

    async fn remove_app_binding(
        &self,
        service: &str,
        id: &str,
        report: &WebhookJob,
    ) -> StoreResult<Option<AppBinding>> {
        let (service, id, report) = (service.to_owned(), id.to_owned(), report.clone());
        self.write(move |c| {
            let Some(b) = get(c, &service, &id)? else {
                return Ok(None);
            };
            exec(c, "DELETE FROM app_bindings WHERE id = ?1", [&id])?;
            if b.state == AppBindingState::Active {
                insert_webhook(c, &report)?;
            }
            Ok(Some(b))
        })
        .await
    }

    async fn apply_registry_event(&self, e: &RegistryEvent<'_>) -> StoreResult<EventApplied> {
        let e = OwnedEvent {
            service: e.service.to_owned(),
            event_id: e.event_id.to_owned(),
            change: match e.change {
                RegistryChange::Removed { msisdn, reason } => OwnedChange::Removed {
                    msisdn: msisdn.to_owned(),
                    reason: reason.to_owned(),
                },
                RegistryChange::Moved { old, new } => OwnedChange::Moved {
                    old: old.to_owned(),
                    new: new.to_owned(),
                },
            },
            at: e.at,
            account_hook: e.account_hook.map(str::to_owned),
        };
        self.write(move |c| apply(c, &e)).await
    }
}

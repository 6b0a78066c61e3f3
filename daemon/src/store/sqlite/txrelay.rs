//! The relay's subscriber directory.

use super::rows::{all, col, corrupt, exec, one};
use super::SqliteStore;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{params, Connection};

fn subscriber_row(r: &rusqlite::Row<'_>) -> StoreResult<Subscriber> {
    const T: &str = "subscribers";
    let status: String = col(r, T, "status")?;
    Ok(Subscriber {
        msisdn: col(r, T, "msisdn")?,
        imsi: col(r, T, "imsi")?,
        status: LineStatus::parse(&status)
            .ok_or_else(|| corrupt(T, "status", format!("unknown {status:?}")))?,
        sim_changed_at: col(r, T, "sim_changed_at")?,
        updated_at: col(r, T, "updated_at")?,
    })
}

fn get(c: &Connection, msisdn: &str) -> StoreResult<Option<Subscriber>> {
    one(
        c,
        "SELECT msisdn, imsi, status, sim_changed_at, updated_at FROM subscribers WHERE msisdn = ?1",
        [msisdn],
        subscriber_row,
    )
}

fn upsert(c: &Connection, lines: &[Subscriber], at: Millis) -> StoreResult<Upserted> {
    let mut done = Upserted::default();
    for l in lines {
        match get(c, &l.msisdn)? {
            None => {
                c.prepare_cached(
                    "INSERT INTO subscribers (msisdn, imsi, status, sim_changed_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    l.msisdn,
                    l.imsi,
                    l.status.as_str(),
                    l.sim_changed_at,
                    at
                ])?;
                done.added += 1;
            }
            Some(have) => {
                let sim_changed = have.imsi != l.imsi;
                // A given date wins (the import knows when); else a new
                // SIM changed now; else the stored date stands.
                let changed_at = match (l.sim_changed_at, sim_changed) {
                    (Some(t), _) => Some(t),
                    (None, true) => Some(at),
                    (None, false) => have.sim_changed_at,
                };
                if have.imsi == l.imsi
                    && have.status == l.status
                    && have.sim_changed_at == changed_at
                {
                    continue;
                }
                c.prepare_cached(
                    "UPDATE subscribers SET imsi = ?2, status = ?3, sim_changed_at = ?4, updated_at = ?5
                     WHERE msisdn = ?1",
                )?
                .execute(params![l.msisdn, l.imsi, l.status.as_str(), changed_at, at])?;
                done.changed += 1;
                done.sim_changes += usize::from(sim_changed);
            }
        }
    }
    Ok(done)
}

#[async_trait]
impl SubscriberStore for SqliteStore {
    async fn upsert_subscribers(&self, lines: &[Subscriber], at: Millis) -> StoreResult<Upserted> {
        let lines = lines.to_vec();
        self.write(move |c| upsert(c, &lines, at)).await
    }

    async fn get_subscriber(&self, msisdn: &str) -> StoreResult<Option<Subscriber>> {
        let msisdn = msisdn.to_owned();
        self.read(move |c| get(c, &msisdn)).await
    }
}

fn key_row(r: &rusqlite::Row<'_>) -> StoreResult<StoredKey> {
    const T: &str = "relay_keys";
    Ok(StoredKey {
        kind: col(r, T, "kind")?,
        slot: col(r, T, "slot")?,
        wrapped: col(r, T, "wrapped")?,
        kcv: col(r, T, "kcv")?,
        state: col(r, T, "state")?,
        created_at: col(r, T, "created_at")?,
        retire_at: col(r, T, "retire_at")?,
    })
}

fn put_key(c: &Connection, k: &StoredKey) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO relay_keys (kind, slot, wrapped, kcv, state, created_at, retire_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        k.kind,
        k.slot,
        k.wrapped,
        k.kcv,
        k.state,
        k.created_at,
        k.retire_at
    ])?;
    Ok(())
}

#[async_trait]
impl RelayKeyStore for SqliteStore {
    async fn put_component(&self, k: &StoredKey) -> StoreResult<()> {
        let k = k.clone();
        self.write(move |c| put_key(c, &k)).await
    }

    async fn activate_zone(&self, zone: &StoredKey, retire_at: Option<Millis>) -> StoreResult<()> {
        let zone = zone.clone();
        self.write(move |c| {
            let active = one(
                c,
                "SELECT slot FROM relay_keys WHERE kind = 'zone' AND state = 'active'",
                [],
                |r| col::<String>(r, "relay_keys", "slot"),
            )?;
            if let Some(slot) = active {
                let Some(until) = retire_at else {
                    return Err(StoreError::Conflict(format!(
                        "zone key version {slot} is active; a rotation says how long it overlaps"
                    )));
                };
                exec(
                    c,
                    "UPDATE relay_keys SET state = 'retiring', retire_at = ?2 WHERE kind = 'zone' AND slot = ?1",
                    params![slot, until],
                )?;
            }
            // Retired keys past their end go with this write.
            exec(
                c,
                "DELETE FROM relay_keys WHERE kind = 'zone' AND state = 'retiring' AND retire_at < ?1",
                [zone.created_at],
            )?;
            exec(c, "DELETE FROM relay_keys WHERE kind = 'component'", [])?;
            put_key(c, &zone)
        })
        .await
    }

    async fn put_initial_key(&self, k: &StoredKey) -> StoreResult<()> {
        let k = k.clone();
        self.write(move |c| {
            exec(c, "DELETE FROM relay_keys WHERE kind = 'initial'", [])?;
            put_key(c, &k)
        })
        .await
    }

    async fn allocate_counter(&self, initial_key_id: &str) -> StoreResult<Option<u32>> {
        let ikid = initial_key_id.to_owned();
        self.write(move |c| {
            let last = one(
                c,
                "SELECT counter FROM relay_counters WHERE initial_key_id = ?1",
                [&ikid],
                |r| col::<i64>(r, "relay_counters", "counter"),
            )?
            .unwrap_or(0);
            let last = u32::try_from(last).map_err(|_| {
                corrupt(
                    "relay_counters",
                    "counter",
                    format!("{last} is not a counter"),
                )
            })?;
            let Ok(next) = verigate_keys::dukpt::next_counter(last) else {
                return Ok(None);
            };
            exec(
                c,
                "INSERT INTO relay_counters (initial_key_id, counter) VALUES (?1, ?2)
                 ON CONFLICT (initial_key_id) DO UPDATE SET counter = excluded.counter",
                params![ikid, i64::from(next)],
            )?;
            Ok(Some(next))
        })
        .await
    }

    async fn relay_keys(&self) -> StoreResult<Vec<StoredKey>> {
        self.read(move |c| {
            all(
                c,
                "SELECT kind, slot, wrapped, kcv, state, created_at, retire_at FROM relay_keys
                 ORDER BY kind, state, created_at DESC",
                [],
                key_row,
            )
        })
        .await
    }
}

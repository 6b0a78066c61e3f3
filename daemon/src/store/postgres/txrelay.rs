//! The relay's subscriber directory, keys and DUKPT counters. Each write
//! is one transaction; rows read to decide are locked (`FOR UPDATE`), so
//! instances sharing the database hand out each counter once.

use super::rows::{col, write_err};
use super::{pg_err, PostgresStore};
use crate::store::*;
use async_trait::async_trait;
use tokio_postgres::Row;

fn subscriber(r: &Row) -> StoreResult<Subscriber> {
    const T: &str = "subscribers";
    let status: String = col(r, T, "status")?;
    Ok(Subscriber {
        msisdn: col(r, T, "msisdn")?,
        imsi: col(r, T, "imsi")?,
        status: LineStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("{T}.status: unknown {status:?}")))?,
        sim_changed_at: col(r, T, "sim_changed_at")?,
        updated_at: col(r, T, "updated_at")?,
    })
}

fn key(r: &Row) -> StoreResult<StoredKey> {
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

const SUB_COLS: &str = "msisdn, imsi, status, sim_changed_at, updated_at";

/// Key changes of all instances one at a time (advisory lock key).
const KEYS_LOCK: i64 = 0x7667_7478_6b65_7973;

async fn put_key(c: &impl deadpool_postgres::GenericClient, k: &StoredKey) -> StoreResult<()> {
    c.execute(
        "INSERT INTO relay_keys (kind, slot, wrapped, kcv, state, created_at, retire_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (kind, slot) DO UPDATE SET wrapped = excluded.wrapped, kcv = excluded.kcv,
             state = excluded.state, created_at = excluded.created_at, retire_at = excluded.retire_at",
        &[&k.kind, &k.slot, &k.wrapped, &k.kcv, &k.state, &k.created_at, &k.retire_at],
    )
    .await
    .map_err(write_err(&format!("relay key {} {}", k.kind, k.slot)))?;
    Ok(())
}

#[async_trait]
impl SubscriberStore for PostgresStore {
    async fn upsert_subscribers(&self, lines: &[Subscriber], at: Millis) -> StoreResult<Upserted> {
        let mut c = self.conn().await?;
        let tx = c
            .transaction()
            .await
            .map_err(pg_err("starting an import"))?;
        let get = tx
            .prepare_cached(&format!(
                "SELECT {SUB_COLS} FROM subscribers WHERE msisdn = $1 FOR UPDATE"
            ))
            .await
            .map_err(pg_err("preparing"))?;
        let mut done = Upserted::default();
        for l in lines {
            match tx
                .query_opt(&get, &[&l.msisdn])
                .await
                .map_err(pg_err("reading a line"))?
            {
                None => {
                    tx.execute(
                        &format!(
                            "INSERT INTO subscribers ({SUB_COLS}) VALUES ($1, $2, $3, $4, $5)"
                        ),
                        &[
                            &l.msisdn,
                            &l.imsi,
                            &l.status.as_str(),
                            &l.sim_changed_at,
                            &at,
                        ],
                    )
                    .await
                    .map_err(write_err(&format!("subscriber {}", l.msisdn)))?;
                    done.added += 1;
                }
                Some(row) => {
                    let have = subscriber(&row)?;
                    let sim_changed = have.imsi != l.imsi;
                    // A given date wins; else a new SIM changed now; else the stored date stands.
                    let changed_at = match (l.sim_changed_at, sim_changed) {
                        (Some(t), _) => Some(t),
                        (None, true) => Some(at),
                        (None, false) => have.sim_changed_at,
                    };
                    if !sim_changed && have.status == l.status && have.sim_changed_at == changed_at
                    {
                        continue;
                    }
                    tx.execute(
                        "UPDATE subscribers SET imsi = $2, status = $3, sim_changed_at = $4, updated_at = $5
                         WHERE msisdn = $1",
                        &[&l.msisdn, &l.imsi, &l.status.as_str(), &changed_at, &at],
                    )
                    .await
                    .map_err(write_err(&format!("subscriber {}", l.msisdn)))?;
                    done.changed += 1;
                    done.sim_changes += usize::from(sim_changed);
                }
            }
        }
        tx.commit().await.map_err(pg_err("committing an import"))?;
        Ok(done)
    }

    async fn get_subscriber(&self, msisdn: &str) -> StoreResult<Option<Subscriber>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {SUB_COLS} FROM subscribers WHERE msisdn = $1"
            ))
            .await
            .map_err(pg_err("preparing"))?;
        c.query_opt(&st, &[&msisdn])
            .await
            .map_err(pg_err("reading a subscriber"))?
            .as_ref()
            .map(subscriber)
            .transpose()
    }
}

#[async_trait]
impl RelayKeyStore for PostgresStore {
    async fn put_component(&self, k: &StoredKey) -> StoreResult<()> {
        let c = self.conn().await?;
        put_key(&c, k).await
    }

    async fn activate_zone(&self, zone: &StoredKey, retire_at: Option<Millis>) -> StoreResult<()> {
        let mut c = self.conn().await?;
        let tx = c
            .transaction()
            .await
            .map_err(pg_err("starting an activation"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&KEYS_LOCK])
            .await
            .map_err(pg_err("locking the relay keys"))?;
        let active = tx
            .query_opt(
                "SELECT slot FROM relay_keys WHERE kind = 'zone' AND state = 'active'",
                &[],
            )
            .await
            .map_err(pg_err("reading the active zone key"))?;
        if let Some(row) = active {
            let slot: String = col(&row, "relay_keys", "slot")?;
            let Some(until) = retire_at else {
                return Err(StoreError::Conflict(format!(
                    "zone key version {slot} is active; a rotation says how long it overlaps"
                )));
            };
            tx.execute(
                "UPDATE relay_keys SET state = 'retiring', retire_at = $2 WHERE kind = 'zone' AND slot = $1",
                &[&slot, &until],
            )
            .await
            .map_err(pg_err("retiring the zone key"))?;
        }
        // Retired keys past their end go with this write.
        tx.execute(
            "DELETE FROM relay_keys WHERE kind = 'zone' AND state = 'retiring' AND retire_at < $1",
            &[&zone.created_at],
        )
        .await
        .map_err(pg_err("dropping retired zone keys"))?;
        tx.execute("DELETE FROM relay_keys WHERE kind = 'component'", &[])
            .await
            .map_err(pg_err("dropping the components"))?;
        put_key(&tx, zone).await?;
        tx.commit()
            .await
            .map_err(pg_err("committing an activation"))
    }

    async fn put_initial_key(&self, k: &StoredKey) -> StoreResult<()> {
        let mut c = self.conn().await?;
        let tx = c
            .transaction()
            .await
            .map_err(pg_err("starting an import"))?;
        tx.execute("DELETE FROM relay_keys WHERE kind = 'initial'", &[])
            .await
            .map_err(pg_err("replacing the initial key"))?;
        put_key(&tx, k).await?;
        tx.commit()
            .await
            .map_err(pg_err("committing the initial key"))
    }

    async fn relay_keys(&self) -> StoreResult<Vec<StoredKey>> {
        let c = self.conn().await?;
        // COLLATE "C": ordered as SQLite orders text (bytes), whatever the database's locale.
        c.query(
            "SELECT kind, slot, wrapped, kcv, state, created_at, retire_at FROM relay_keys
             ORDER BY kind COLLATE \"C\", state COLLATE \"C\", created_at DESC",
            &[],
        )
        .await
        .map_err(pg_err("reading the relay keys"))?
        .iter()
        .map(key)
        .collect()
    }

    async fn allocate_counter(&self, initial_key_id: &str) -> StoreResult<Option<u32>> {
        let mut c = self.conn().await?;
        let tx = c
            .transaction()
            .await
            .map_err(pg_err("starting a counter"))?;
        tx.execute(
            "INSERT INTO relay_counters (initial_key_id, counter) VALUES ($1, 0)
             ON CONFLICT (initial_key_id) DO NOTHING",
            &[&initial_key_id],
        )
        .await
        .map_err(pg_err("making a counter"))?;
        let last: i64 = tx
            .query_one(
                "SELECT counter FROM relay_counters WHERE initial_key_id = $1 FOR UPDATE",
                &[&initial_key_id],
            )
            .await
            .map_err(pg_err("reading a counter"))?
            .get(0);
        let last = u32::try_from(last).map_err(|_| {
            StoreError::Corrupt(format!("relay_counters.counter: {last} is not a counter"))
        })?;
        let Ok(next) = verigate_keys::dukpt::next_counter(last) else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE relay_counters SET counter = $2 WHERE initial_key_id = $1",
            &[&initial_key_id, &i64::from(next)],
        )
        .await
        .map_err(pg_err("taking a counter"))?;
        tx.commit().await.map_err(pg_err("committing a counter"))?;
        Ok(Some(next))
    }
}

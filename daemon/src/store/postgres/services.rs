//! Services and API keys.

use super::rows::{col, col_json, write_err};
use super::{pg_err, PostgresStore};
use crate::store::*;
use async_trait::async_trait;
use tokio_postgres::Row;

fn service(r: &Row) -> StoreResult<Service> {
    const T: &str = "services";
    Ok(Service {
        code: col(r, T, "code")?,
        name: col(r, T, "name")?,
        settings: col_json(r, T, "settings")?,
        created_at: col(r, T, "created_at")?,
    })
}

fn api_key(r: &Row) -> StoreResult<ApiKeyRecord> {
    const T: &str = "api_keys";
    Ok(ApiKeyRecord {
        key_id: col(r, T, "key_id")?,
        service: col(r, T, "service")?,
        hash: col(r, T, "hash")?,
        created_at: col(r, T, "created_at")?,
        revoked_at: col(r, T, "revoked_at")?,
    })
}

const KEY_COLS: &str = "key_id, service, hash, created_at, revoked_at";

fn json(v: &serde_json::Value) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Bug(format!("cannot encode JSON: {e}")))
}

#[async_trait]
impl ServiceStore for PostgresStore {
    async fn create_service(&self, s: &Service) -> StoreResult<()> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO services (code, name, settings, created_at) VALUES ($1, $2, $3, $4)",
            )
            .await
            .map_err(pg_err("preparing"))?;
        c.execute(&st, &[&s.code, &s.name, &json(&s.settings)?, &s.created_at])
            .await
            .map_err(write_err(&format!("service {}", s.code)))?;
        Ok(())
    }

    async fn get_service(&self, code: &str) -> StoreResult<Option<Service>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached("SELECT code, name, settings, created_at FROM services WHERE code = $1")
            .await
            .map_err(pg_err("preparing"))?;
        c.query_opt(&st, &[&code])
            .await
            .map_err(pg_err("reading a service"))?
            .as_ref()
            .map(service)
            .transpose()
    }

    async fn list_services(&self) -> StoreResult<Vec<Service>> {
        let c = self.conn().await?;
        c.query(
            "SELECT code, name, settings, created_at FROM services ORDER BY code",
            &[],
        )
        .await
        .map_err(pg_err("listing services"))?
        .iter()
        .map(service)
        .collect()
    }

    async fn update_service_settings(
        &self,
        code: &str,
        settings: &serde_json::Value,
    ) -> StoreResult<()> {
        let c = self.conn().await?;
        let n = c
            .execute(
                "UPDATE services SET settings = $2 WHERE code = $1",
                &[&code, &json(settings)?],
            )
            .await
            .map_err(write_err(&format!("service {code}")))?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("service {code}")));
        }
        Ok(())
    }

    async fn add_api_key(&self, k: &ApiKeyRecord) -> StoreResult<()> {
        let c = self.conn().await?;
        c.execute(
            &format!("INSERT INTO api_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5)"),
            &[&k.key_id, &k.service, &k.hash, &k.created_at, &k.revoked_at],
        )
        .await
        .map_err(write_err(&format!(
            "API key {} of service {}",
            k.key_id, k.service
        )))?;
        Ok(())
    }

    async fn find_api_key(&self, hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE hash = $1 AND revoked_at IS NULL"
            ))
            .await
            .map_err(pg_err("preparing"))?;
        c.query_opt(&st, &[&hash])
            .await
            .map_err(pg_err("reading an API key"))?
            .as_ref()
            .map(api_key)
            .transpose()
    }

    async fn list_api_keys(&self, service: &str) -> StoreResult<Vec<ApiKeyRecord>> {
        let c = self.conn().await?;
        c.query(
            &format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE service = $1 ORDER BY created_at, rowid"
            ),
            &[&service],
        )
        .await
        .map_err(pg_err("listing API keys"))?
        .iter()
        .map(api_key)
        .collect()
    }

    async fn revoke_api_keys(
        &self,
        service: &str,
        keep_key_id: &str,
        at: Millis,
    ) -> StoreResult<u64> {
        let c = self.conn().await?;
        c.execute(
            "UPDATE api_keys SET revoked_at = $3
             WHERE service = $1 AND key_id <> $2 AND revoked_at IS NULL",
            &[&service, &keep_key_id, &at],
        )
        .await
        .map_err(write_err(&format!("API keys of service {service}")))
    }
}

//! Services and API keys.

use super::rows::{self, all, exec, one, to_json, write_err};
use super::SqliteStore;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::params;

#[async_trait]
impl ServiceStore for SqliteStore {
    async fn create_service(&self, s: &Service) -> StoreResult<()> {
        let s = s.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO services (code, name, settings, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![s.code, s.name, to_json(&s.settings)?, s.created_at])
            .map_err(|e| write_err(e, &format!("service {}", s.code)))?;
            Ok(())
        })
        .await
    }

    async fn get_service(&self, code: &str) -> StoreResult<Option<Service>> {
        let code = code.to_owned();
        self.read(move |c| {
            one(
                c,
                "SELECT code, name, settings, created_at FROM services WHERE code = ?1",
                [code],
                rows::service,
            )
        })
        .await
    }

    async fn list_services(&self) -> StoreResult<Vec<Service>> {
        self.read(|c| {
            all(
                c,
                "SELECT code, name, settings, created_at FROM services ORDER BY code",
                [],
                rows::service,
            )
        })
        .await
    }

    async fn update_service_settings(
        &self,
        code: &str,
        settings: &serde_json::Value,
    ) -> StoreResult<()> {
        let code = code.to_owned();
        let settings = to_json(settings)?;
        self.write(move |c| {
            let n = exec(
                c,
                "UPDATE services SET settings = ?2 WHERE code = ?1",
                params![code, settings],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("service {code}")));
            }
            Ok(())
        })
        .await
    }

    async fn add_api_key(&self, k: &ApiKeyRecord) -> StoreResult<()> {
        let k = k.clone();
        self.write(move |c| {
            c.prepare_cached(concat!(
                "INSERT INTO api_keys (",
                api_key_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5)"
            ))?
            .execute(params![
                k.key_id,
                k.service,
                k.hash,
                k.created_at,
                k.revoked_at
            ])
            .map_err(|e| write_err(e, &format!("API key {} of service {}", k.key_id, k.service)))?;
            Ok(())
        })
        .await
    }

    async fn find_api_key(&self, hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>> {
        let hash = hash.to_vec();
        self.read(move |c| {
            one(
                c,
                concat!(
                    "SELECT ",
                    api_key_cols!(),
                    " FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL"
                ),
                [hash],
                rows::api_key,
            )
        })
        .await
    }

    async fn list_api_keys(&self, service: &str) -> StoreResult<Vec<ApiKeyRecord>> {
        let service = service.to_owned();
        self.read(move |c| {
            all(
                c,
                concat!(
                    "SELECT ",
                    api_key_cols!(),
                    " FROM api_keys WHERE service = ?1 ORDER BY created_at, rowid"
                ),
                [service],
                rows::api_key,
            )
        })
        .await
    }

    async fn revoke_api_keys(
        &self,
        service: &str,
        keep_key_id: &str,
        at: Millis,
    ) -> StoreResult<u64> {
        let (service, keep) = (service.to_owned(), keep_key_id.to_owned());
        self.write(move |c| {
            let n = exec(
                c,
                "UPDATE api_keys SET revoked_at = ?3
                 WHERE service = ?1 AND key_id <> ?2 AND revoked_at IS NULL",
                params![service, keep, at],
            )?;
            Ok(n as u64)
        })
        .await
    }
}

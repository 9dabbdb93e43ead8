//! API keys: stored by hash, listed without secrets, revoked, rotated with a grace period.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::auth::{NewKey, Permission};

/// A key as stored: everything but the key itself, which is never kept.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub name: String,
    pub environment: String,
    pub permission: String,
    pub allow_ips: Vec<String>,
    pub key_hint: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub superseded_at: Option<DateTime<Utc>>,
}

impl ApiKeyRecord {
    /// Neither revoked nor past its expiry (a rotated-out key stays usable until its grace ends).
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(Debug)]
pub struct NewApiKey<'a> {
    pub name: &'a str,
    pub environment: &'a str,
    pub permission: Permission,
    pub allow_ips: &'a [String],
    pub expires_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Fails with `Conflict` when a current key already has this name.
    pub async fn create_api_key(
        &self,
        new: &NewApiKey<'_>,
        key: &NewKey,
    ) -> Result<Uuid, StoreError> {
        let id = Uuid::now_v7();
        sqlx::query!(
            "INSERT INTO api_keys (id, name, environment, permission, allow_ips, key_hash, key_hint, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            id,
            new.name,
            new.environment,
            new.permission.as_str(),
            new.allow_ips,
            &key.hash[..],
            key.hint,
            new.expires_at
        )
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::conflict_on_unique(e, format!("a current key named {:?} exists", new.name)))?;
        Ok(id)
    }

    pub async fn api_key_by_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(sqlx::query_as!(
            ApiKeyRecord,
            "SELECT id, name, environment, permission, allow_ips, key_hint, created_at, last_used_at, \
                    expires_at, revoked_at, superseded_at \
             FROM api_keys WHERE key_hash = $1",
            &hash[..]
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        Ok(sqlx::query_as!(
            ApiKeyRecord,
            "SELECT id, name, environment, permission, allow_ips, key_hint, created_at, last_used_at, \
                    expires_at, revoked_at, superseded_at \
             FROM api_keys ORDER BY name, created_at"
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes every key of that name, current and in grace; returns how many.
    pub async fn revoke_api_key(&self, name: &str) -> Result<u64, StoreError> {
        let done = sqlx::query!(
            "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
            name
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Replaces the current key of that name with `key` (same environment, permission and
    /// allow-list); the old one stays valid for `grace`. `None` when no current key has the name.
    pub async fn rotate_api_key(
        &self,
        name: &str,
        grace: std::time::Duration,
        key: &NewKey,
    ) -> Result<Option<Uuid>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let old = sqlx::query_scalar!(
            "UPDATE api_keys SET superseded_at = now(), \
                 expires_at = LEAST(COALESCE(expires_at, 'infinity'), now() + make_interval(secs => $2)) \
             WHERE name = $1 AND superseded_at IS NULL AND revoked_at IS NULL RETURNING id",
            name,
            grace.as_secs_f64()
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(old) = old else {
            return Ok(None);
        };
        let id = Uuid::now_v7();
        sqlx::query!(
            "INSERT INTO api_keys (id, name, environment, permission, allow_ips, key_hash, key_hint) \
             SELECT $1, name, environment, permission, allow_ips, $2, $3 FROM api_keys WHERE id = $4",
            id,
            &key.hash[..],
            key.hint,
            old
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Records use at most once a minute per key, so reads do not turn into a write each.
    pub async fn touch_api_key(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE api_keys SET last_used_at = now() \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
            id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

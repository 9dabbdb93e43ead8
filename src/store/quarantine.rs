//! Verified bodies that are not Voltage events, kept for operators.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::events::secret_index;
use super::{Store, StoreError};
use crate::verify::Verified;

/// An authentic body that could not be read as an event, and why.
#[derive(Debug)]
pub struct Quarantined<'a> {
    pub environment: &'a str,
    pub raw_body: &'a [u8],
    pub reason: &'a str,
    pub verified: &'a Verified,
}

impl Store {
    /// Keeps the body once per environment; a retry of it bumps `arrival_count`.
    pub async fn quarantine(&self, item: &Quarantined<'_>) -> Result<Uuid, StoreError> {
        let digest: [u8; 32] = Sha256::digest(item.raw_body).into();
        Ok(sqlx::query_scalar!(
            "INSERT INTO quarantine (id, environment, body_sha256, raw_body, reason, webhook_id, \
                 secret_index, signed_timestamp) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT ON CONSTRAINT quarantine_once DO UPDATE \
                 SET arrival_count = quarantine.arrival_count + 1, last_received_at = now() \
             RETURNING id",
            Uuid::now_v7(),
            item.environment,
            &digest[..],
            item.raw_body,
            item.reason,
            item.verified.webhook_id,
            secret_index(item.verified),
            item.verified.timestamp
        )
        .fetch_one(&self.pool)
        .await?)
    }
}

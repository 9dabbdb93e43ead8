//! The outbox: claiming due deliveries under a lease, and recording each attempt's outcome.
//!
//! Claims use `FOR UPDATE SKIP LOCKED`, so any number of dispatchers share the table without
//! taking the same row; a row whose lease expired (its worker died) is due again. Every completion
//! is fenced on the claim's token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError};

/// The channel dispatchers LISTEN on. A notification carries nothing: it is only a wake-up call.
pub const WAKE_CHANNEL: &str = "voltage_deliveries";

/// A delivery claimed by a worker, with the event it carries.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub delivery_id: i64,
    pub handler: String,
    /// This attempt's number, starting at 1.
    pub attempts: i32,
    pub event_id: Uuid,
    pub environment: String,
    pub event_type: String,
    pub event: String,
    pub payment_id: Option<String>,
    /// `webhook`, or `reconciliation` for an event built from the payments API.
    pub source: String,
    pub raw_body: Vec<u8>,
    pub received_at: DateTime<Utc>,
}

/// What the caller asks of a claim.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    /// Only rows of these handlers are taken: a dispatcher never claims work it cannot do.
    pub handlers: &'a [String],
    pub limit: i64,
    pub lease: Duration,
    pub token: Uuid,
}

/// A delivery's state as operators and tests see it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct DeliveryState {
    pub id: i64,
    pub event_id: Uuid,
    pub handler: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Takes up to `limit` due deliveries (pending and due, or leased with an expired lease).
    pub async fn claim(&self, request: &ClaimRequest<'_>) -> Result<Vec<Claimed>, StoreError> {
        Ok(sqlx::query_as(
            "WITH due AS ( \
                 SELECT id FROM deliveries \
                 WHERE handler = ANY($1) \
                   AND ((status = 'pending' AND next_attempt_at <= now()) \
                     OR (status = 'in_flight' AND lease_expires_at <= now())) \
                 ORDER BY next_attempt_at \
                 LIMIT $2 \
                 FOR UPDATE SKIP LOCKED \
             ), claimed AS ( \
                 UPDATE deliveries d \
                 SET status = 'in_flight', attempts = d.attempts + 1, lease_token = $3, \
                     lease_expires_at = now() + make_interval(secs => $4), updated_at = now() \
                 FROM due WHERE d.id = due.id \
                 RETURNING d.id, d.event_id, d.handler, d.attempts \
             ) \
             SELECT c.id AS delivery_id, c.handler, c.attempts, e.id AS event_id, e.environment, \
                    e.event_type, e.event, e.payment_id, e.source, e.raw_body, e.received_at \
             FROM claimed c JOIN events e ON e.id = c.event_id",
        )
        .bind(request.handlers)
        .bind(request.limit)
        .bind(request.token)
        .bind(request.lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records success. Returns false when the lease was lost (another worker owns the row now).
    pub async fn succeed(&self, delivery_id: i64, token: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'succeeded', completed_at = now(), updated_at = now(), \
                 lease_token = NULL, lease_expires_at = NULL, last_error = NULL \
             WHERE id = $1 AND lease_token = $2",
        )
        .bind(delivery_id)
        .bind(token)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Schedules another attempt after `delay`, keeping the error for operators.
    pub async fn retry_later(
        &self,
        delivery_id: i64,
        token: Uuid,
        delay: Duration,
        error: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'pending', \
                 next_attempt_at = now() + make_interval(secs => $3), updated_at = now(), \
                 lease_token = NULL, lease_expires_at = NULL, last_error = $4 \
             WHERE id = $1 AND lease_token = $2",
        )
        .bind(delivery_id)
        .bind(token)
        .bind(delay.as_secs_f64())
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Dead-letters the delivery with its last error: it is never retried automatically again.
    pub async fn dead_letter(
        &self,
        delivery_id: i64,
        token: Uuid,
        error: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'dead', completed_at = now(), updated_at = now(), \
                 lease_token = NULL, lease_expires_at = NULL, last_error = $3 \
             WHERE id = $1 AND lease_token = $2",
        )
        .bind(delivery_id)
        .bind(token)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Hands back a claimed delivery whose attempt never started (shutdown): due now, the attempt
    /// not counted, so another worker takes it at once instead of after the lease.
    pub async fn release(&self, delivery_id: i64, token: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts = attempts - 1, next_attempt_at = now(), \
                 updated_at = now(), lease_token = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND lease_token = $2",
        )
        .bind(delivery_id)
        .bind(token)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every handler's delivery state for one event.
    pub async fn deliveries_of(&self, event_id: Uuid) -> Result<Vec<DeliveryState>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, event_id, handler, status, attempts, next_attempt_at, last_error, created_at, \
                    completed_at \
             FROM deliveries WHERE event_id = $1 ORDER BY handler",
        )
        .bind(event_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// The outbox at a glance, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxStats {
    pub pending: i64,
    /// Age of the oldest pending delivery; 0 when none is pending.
    pub oldest_pending_secs: f64,
    pub dead: i64,
}

impl Store {
    pub async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let (pending, oldest_pending_secs): (i64, f64) = sqlx::query_as(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 \
             FROM deliveries WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'dead'")
            .fetch_one(&self.pool)
            .await?;
        Ok(OutboxStats {
            pending,
            oldest_pending_secs,
            dead,
        })
    }
}

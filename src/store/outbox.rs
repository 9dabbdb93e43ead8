//! The outbox: claiming one handler's due deliveries under a lease, and sweeping expired leases.
//!
//! Claims use `FOR UPDATE SKIP LOCKED`, so any number of dispatchers share the table without
//! taking the same row. A row whose lease expired (its worker died) is made due again by the
//! sweep. Outcomes are recorded in `attempts.rs`, fenced on the claim's token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError};

/// The channel dispatchers LISTEN on. A notification carries nothing: it is only a wake-up call.
pub const WAKE_CHANNEL: &str = "voltage_deliveries";

/// A delivery claimed by a worker, with the event it carries.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: i64,
    pub handler: String,
    /// This attempt's number, starting at 1.
    pub attempts: i32,
    /// When it was due: the claimer's next scan starts here (see [`ClaimRequest::from`]).
    pub next_attempt_at: DateTime<Utc>,
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

/// What the caller asks of a claim: one handler's due deliveries, no more than it can start now.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    pub handler: &'a str,
    /// Only rows due at or after this. Rows the claimer already took leave dead index entries
    /// behind until VACUUM; a scan from the last claimed due time skips them, so a claim costs
    /// the same at the end of a drained backlog as at its start. `None`: from the oldest.
    pub from: Option<DateTime<Utc>>,
    pub limit: i64,
    pub lease: Duration,
    pub token: Uuid,
    /// Who runs the attempts, for the attempt history (`host:pid:dispatcher`).
    pub worker: &'a str,
}

/// A delivery's state as operators and tests see it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
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
    /// Takes up to `limit` of one handler's due deliveries, oldest due first, and leases them.
    ///
    /// An ordered scan of `deliveries_due_by_handler` that stops after `limit` rows: its cost does
    /// not grow with the backlog. Expired leases are not taken here; [`Store::sweep_expired`] turns
    /// them back into due deliveries.
    pub async fn claim(&self, request: &ClaimRequest<'_>) -> Result<Vec<Claimed>, StoreError> {
        // The columns of the `claimed` CTE and of the join are not null (their table columns are
        // not), which PostgreSQL's plan does not tell sqlx: hence the `!` overrides.
        Ok(sqlx::query_as!(
            Claimed,
            r#"WITH due AS (
                 SELECT id FROM deliveries
                 WHERE handler = $1 AND status = 'pending' AND next_attempt_at <= now()
                   AND next_attempt_at >= coalesce($6::timestamptz, '-infinity')
                 ORDER BY next_attempt_at
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED
             ), claimed AS (
                 UPDATE deliveries d
                 SET status = 'in_flight', attempts = d.attempts + 1, lease_token = $3,
                     lease_expires_at = now() + make_interval(secs => $4),
                     attempt_started_at = now(), leased_by = $5, updated_at = now()
                 FROM due WHERE d.id = due.id
                 RETURNING d.id, d.event_id, d.handler, d.attempts, d.next_attempt_at
             )
             SELECT c.id AS "delivery_id!", c.handler AS "handler!", c.attempts AS "attempts!",
                    c.next_attempt_at AS "next_attempt_at!", e.id AS event_id, e.environment,
                    e.event_type, e.event, e.payment_id, e.source, e.raw_body, e.received_at
             FROM claimed c JOIN events e ON e.id = c.event_id"#,
            request.handler,
            request.limit,
            request.token,
            request.lease.as_secs_f64(),
            request.worker,
            request.from
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Seconds until the handler's next pending delivery due at or after `from` is due (negative:
    /// due now); `None` when there is none. The first such entry of `deliveries_due_by_handler`.
    pub async fn next_due_in(
        &self,
        handler: &str,
        from: Option<DateTime<Utc>>,
    ) -> Result<Option<f64>, StoreError> {
        Ok(sqlx::query_scalar!(
            "SELECT EXTRACT(EPOCH FROM min(next_attempt_at) - now())::float8 AS due_in FROM deliveries \
             WHERE handler = $1 AND status = 'pending' AND next_attempt_at >= coalesce($2::timestamptz, '-infinity')",
            handler,
            from
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Makes up to `limit` deliveries whose lease expired (their worker vanished) due again, and
    /// writes their unfinished attempt into the history as `lease_expired`. `running` are the
    /// deliveries this process is still running or recording: never taken back from itself.
    /// Returns how many were made due.
    pub async fn sweep_expired(&self, running: &[i64], limit: i64) -> Result<u64, StoreError> {
        let swept = sqlx::query_scalar!(
            r#"WITH expired AS (
                 SELECT id, lease_token, attempts, attempt_started_at, leased_by FROM deliveries
                 WHERE status = 'in_flight' AND lease_expires_at <= now() AND NOT (id = ANY($1))
                 ORDER BY lease_expires_at LIMIT $2
                 FOR UPDATE SKIP LOCKED
             ), reset AS (
                 UPDATE deliveries d
                 SET status = 'pending', next_attempt_at = now(), lease_token = NULL,
                     lease_expires_at = NULL, attempt_started_at = NULL, leased_by = NULL,
                     last_error = 'the lease of attempt ' || x.attempts || ' expired before its outcome was recorded',
                     updated_at = now()
                 FROM expired x WHERE d.id = x.id
                 RETURNING d.id
             ), history AS (
                 INSERT INTO delivery_attempts
                     (delivery_id, lease_token, attempt, started_at, outcome, error, worker)
                 SELECT id, lease_token, attempts, coalesce(attempt_started_at, now()), 'lease_expired',
                        'the worker''s lease expired before it recorded an outcome',
                        coalesce(leased_by, 'unknown')
                 FROM expired
                 ON CONFLICT ON CONSTRAINT delivery_attempts_once DO NOTHING
             )
             SELECT count(*) AS "swept!" FROM reset"#,
            running,
            limit
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(swept).unwrap_or(0))
    }

    /// Every handler's delivery state for one event.
    pub async fn deliveries_of(&self, event_id: Uuid) -> Result<Vec<DeliveryState>, StoreError> {
        Ok(sqlx::query_as!(
            DeliveryState,
            "SELECT id, event_id, handler, status, attempts, next_attempt_at, last_error, created_at, \
                    completed_at \
             FROM deliveries WHERE event_id = $1 ORDER BY handler",
            event_id
        )
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
        let pending = sqlx::query!(
            r#"SELECT count(*) AS "count!",
                 COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS "oldest_secs!"
             FROM deliveries WHERE status = 'pending'"#
        )
        .fetch_one(&self.pool)
        .await?;
        let dead = sqlx::query_scalar!(
            r#"SELECT count(*) AS "dead!" FROM deliveries WHERE status = 'dead'"#
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxStats {
            pending: pending.count,
            oldest_pending_secs: pending.oldest_secs,
            dead,
        })
    }
}

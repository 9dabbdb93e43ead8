//! Recording attempts: the outcome of many calls written in one statement (the delivery's new
//! state, fenced on the claim's token, and a row of attempt history each), and reading a
//! delivery's history back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError};

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Succeeded,
    /// Due again after the delay; the text is kept as the delivery's `last_error`.
    RetryAfter(Duration, String),
    /// Dead-lettered with this reason.
    Dead(String),
}

/// One finished attempt, as the worker that made it saw it.
#[derive(Debug, Clone)]
pub struct Completion {
    pub delivery_id: i64,
    /// The claim's token: the outcome is written only while the claim still holds the row.
    pub token: Uuid,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    /// `succeeded`, `failed` (retryable) or `rejected` (permanent).
    pub outcome: &'static str,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub worker: String,
    pub next: Next,
}

/// One attempt of a delivery, as the API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    pub id: i64,
    pub delivery_id: i64,
    /// The attempt's number as the handler saw it; it starts again at 1 after a replay or retry.
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    /// Absent when the worker vanished before recording an outcome.
    pub duration_ms: Option<i32>,
    /// `succeeded`, `failed` (retryable), `rejected` (permanent) or `lease_expired` (the worker
    /// vanished; the call may or may not have reached the handler).
    pub outcome: String,
    pub http_status: Option<i16>,
    pub error: Option<String>,
    /// The process that made the attempt: `host:pid:dispatcher`.
    pub worker: String,
}

impl Store {
    /// Writes the outcomes of `done` in one statement. Returns the ids whose claim still held
    /// the row; the others were taken over after their lease expired, and only their history
    /// row is written (or completed, when the sweep already wrote it as `lease_expired`).
    ///
    /// A claim that still held its row has no history row yet (the sweep writes one only in
    /// the statement that takes the lease away), so its attempt is a plain insert (`held`); only
    /// the late outcomes go through `ON CONFLICT` (`late`) and the existence check. (Speculative
    /// insertion writes one more WAL record per row: 8.35 against 7.33 per completed delivery in
    /// `benches/fanout/statements.sh`.)
    // Long: one statement (the deliveries' new state and their attempts' history, together) and
    // its twelve column binds; it reads best whole.
    pub async fn complete(&self, done: &[Completion]) -> Result<Vec<i64>, StoreError> {
        let mut columns = Columns::default();
        for c in done {
            columns.push(c);
        }
        // Arrays of nullable values, and of `&str`, are passed with a cast (`as &[Option<_>]`,
        // `as &[&str]`): the macro's type check knows arrays of plain owned values only (`Vec<String>`
        // for `text[]`). A cast opts out of that check; the Rust type is still checked by the cast.
        Ok(sqlx::query_scalar!(
            r#"WITH input AS (
                 SELECT id, token, attempt, started_at, duration_ms, outcome, http_status, error,
                     worker, status, delay_secs, last_error
                 FROM unnest($1::int8[], $2::uuid[], $3::int4[], $4::timestamptz[],
                     $5::int4[], $6::text[], $7::int2[], $8::text[], $9::text[], $10::text[],
                     $11::float8[], $12::text[])
                 AS i(id, token, attempt, started_at, duration_ms, outcome, http_status, error,
                      worker, status, delay_secs, last_error)
             ), done AS (
                 UPDATE deliveries d
                 SET status = i.status,
                     next_attempt_at = CASE WHEN i.status = 'pending'
                         THEN now() + make_interval(secs => i.delay_secs) ELSE d.next_attempt_at END,
                     completed_at = CASE WHEN i.status = 'pending' THEN NULL ELSE now() END,
                     lease_token = NULL, lease_expires_at = NULL, attempt_started_at = NULL,
                     leased_by = NULL, last_error = i.last_error, updated_at = now()
                 FROM input i WHERE d.id = i.id AND d.lease_token = i.token
                 RETURNING d.id
             ), held AS (
                 INSERT INTO delivery_attempts (delivery_id, lease_token, attempt, started_at,
                     duration_ms, outcome, http_status, error, worker)
                 SELECT i.id, i.token, i.attempt, i.started_at, i.duration_ms, i.outcome,
                        i.http_status, i.error, i.worker
                 FROM input i JOIN done USING (id)
             ), late AS (
                 INSERT INTO delivery_attempts (delivery_id, lease_token, attempt, started_at,
                     duration_ms, outcome, http_status, error, worker)
                 SELECT i.id, i.token, i.attempt, i.started_at, i.duration_ms, i.outcome,
                        i.http_status, i.error, i.worker
                 FROM input i
                 WHERE i.id NOT IN (SELECT id FROM done)
                   AND EXISTS (SELECT 1 FROM deliveries d WHERE d.id = i.id)
                 ON CONFLICT ON CONSTRAINT delivery_attempts_once DO UPDATE
                     SET duration_ms = excluded.duration_ms, outcome = excluded.outcome,
                         http_status = excluded.http_status, error = excluded.error
             )
             SELECT id AS "id!" FROM done"#,
            &columns.id,
            &columns.token,
            &columns.attempt,
            &columns.started_at,
            &columns.duration_ms,
            &columns.outcome as &[&str],
            &columns.http_status as &[Option<i16>],
            &columns.error as &[Option<String>],
            &columns.worker,
            &columns.status as &[&str],
            &columns.delay_secs,
            &columns.last_error as &[Option<String>]
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// A page of one delivery's attempts, oldest first, after attempt id `after`; `None` when the
    /// environment has no such delivery.
    pub async fn attempts_of(
        &self,
        environment: &str,
        delivery_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Option<Vec<AttemptRecord>>, StoreError> {
        let exists = sqlx::query_scalar!(
            "SELECT 1 AS one FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.id = $1 AND e.environment = $2",
            delivery_id,
            environment
        )
        .fetch_optional(&self.pool)
        .await?;
        if exists.is_none() {
            return Ok(None);
        }
        Ok(Some(
            sqlx::query_as!(
                AttemptRecord,
                "SELECT id, delivery_id, attempt, started_at, duration_ms, outcome, http_status, \
                        error, worker \
                 FROM delivery_attempts WHERE delivery_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                delivery_id,
                after,
                limit
            )
            .fetch_all(&self.pool)
            .await?,
        ))
    }
}

/// The completions as one array per column, for `unnest`.
#[derive(Default)]
struct Columns {
    id: Vec<i64>,
    token: Vec<Uuid>,
    attempt: Vec<i32>,
    started_at: Vec<DateTime<Utc>>,
    duration_ms: Vec<i32>,
    outcome: Vec<&'static str>,
    http_status: Vec<Option<i16>>,
    error: Vec<Option<String>>,
    worker: Vec<String>,
    status: Vec<&'static str>,
    delay_secs: Vec<f64>,
    last_error: Vec<Option<String>>,
}

impl Columns {
    fn push(&mut self, c: &Completion) {
        let (status, delay, last_error) = match &c.next {
            Next::Succeeded => ("succeeded", 0.0, None),
            Next::RetryAfter(delay, error) => ("pending", delay.as_secs_f64(), Some(error.clone())),
            Next::Dead(reason) => ("dead", 0.0, Some(reason.clone())),
        };
        self.id.push(c.delivery_id);
        self.token.push(c.token);
        self.attempt.push(c.attempt);
        self.started_at.push(c.started_at);
        self.duration_ms
            .push(i32::try_from(c.duration.as_millis()).unwrap_or(i32::MAX));
        self.outcome.push(c.outcome);
        self.http_status
            .push(c.http_status.and_then(|s| i16::try_from(s).ok()));
        self.error.push(c.error.clone());
        self.worker.push(c.worker.clone());
        self.status.push(status);
        self.delay_secs.push(delay);
        self.last_error.push(last_error);
    }
}

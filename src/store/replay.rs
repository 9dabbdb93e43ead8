//! Operator actions on deliveries: replaying an event to handlers, retrying a dead delivery.

use uuid::Uuid;

use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Deliveries reset to pending (or created) for these handlers; in-flight ones were left alone.
    Replayed {
        handlers: Vec<String>,
    },
    /// The idempotency key was used before: nothing was done again.
    AlreadyDone {
        handlers: Vec<String>,
    },
    /// The idempotency key was used before for another event.
    KeyReused,
    NotFound,
}

/// What decides whether a delivery may be retried: its handler and its event's route key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRoute {
    pub handler: String,
    pub environment: String,
    pub event_type: String,
    pub event: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    Retried,
    NotDead(String),
    NotFound,
}

impl Store {
    /// Enqueues `event_id` again for `handlers`, in one transaction with the idempotency record.
    pub async fn replay(
        &self,
        environment: &str,
        event_id: Uuid,
        handlers: &[String],
        idempotency_key: Option<&str>,
    ) -> Result<ReplayOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query_scalar!(
            "SELECT 1 AS one FROM events WHERE id = $1 AND environment = $2",
            event_id,
            environment
        )
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Ok(ReplayOutcome::NotFound);
        }
        if let Some(key) = idempotency_key {
            if let Some(earlier) = claim_key(&mut tx, environment, key, event_id, handlers).await? {
                return Ok(earlier);
            }
        }
        let replayed = sqlx::query_scalar!(
            "INSERT INTO deliveries (event_id, handler) SELECT $1, unnest($2::text[]) \
             ON CONFLICT ON CONSTRAINT deliveries_once DO UPDATE \
                 SET status = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL, \
                     completed_at = NULL, updated_at = now() \
                 WHERE deliveries.status <> 'in_flight' \
             RETURNING handler",
            event_id,
            handlers
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        self.waker.wake(&self.pool);
        Ok(ReplayOutcome::Replayed { handlers: replayed })
    }

    /// The handler of a delivery of `environment` and its event's route key, to check the route.
    pub async fn delivery_route(
        &self,
        environment: &str,
        delivery_id: i64,
    ) -> Result<Option<DeliveryRoute>, StoreError> {
        Ok(sqlx::query_as!(
            DeliveryRoute,
            "SELECT d.handler, e.environment, e.event_type, e.event FROM deliveries d \
             JOIN events e ON e.id = d.event_id WHERE d.id = $2 AND e.environment = $1",
            environment,
            delivery_id
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Gives a dead delivery a fresh set of attempts, due now.
    pub async fn retry_delivery(
        &self,
        environment: &str,
        delivery_id: i64,
    ) -> Result<RetryOutcome, StoreError> {
        let retried = sqlx::query_scalar!(
            "UPDATE deliveries d SET status = 'pending', attempts = 0, next_attempt_at = now(), \
                 last_error = NULL, completed_at = NULL, updated_at = now() \
             FROM events e \
             WHERE d.id = $2 AND e.id = d.event_id AND e.environment = $1 AND d.status = 'dead' \
             RETURNING d.id",
            environment,
            delivery_id
        )
        .fetch_optional(&self.pool)
        .await?;
        if retried.is_some() {
            self.waker.wake(&self.pool);
            return Ok(RetryOutcome::Retried);
        }
        let status = sqlx::query_scalar!(
            "SELECT d.status FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = $2 AND e.environment = $1",
            environment,
            delivery_id
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(status.map_or(RetryOutcome::NotFound, RetryOutcome::NotDead))
    }
}

/// Records the idempotency key for this replay. `None`: the key is new, go on; otherwise what the
/// earlier call with the same key means for this one.
async fn claim_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    environment: &str,
    key: &str,
    event_id: Uuid,
    handlers: &[String],
) -> Result<Option<ReplayOutcome>, StoreError> {
    let fresh = sqlx::query_scalar!(
        "INSERT INTO replays (environment, idempotency_key, event_id, handlers) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING RETURNING 1 AS one",
        environment,
        key,
        event_id,
        handlers
    )
    .fetch_optional(&mut **tx)
    .await?;
    if fresh.is_some() {
        return Ok(None);
    }
    let previous = sqlx::query!(
        "SELECT event_id, handlers FROM replays WHERE environment = $1 AND idempotency_key = $2",
        environment,
        key
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(Some(if previous.event_id == event_id {
        ReplayOutcome::AlreadyDone {
            handlers: previous.handlers,
        }
    } else {
        ReplayOutcome::KeyReused
    }))
}

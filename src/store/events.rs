//! The events table: insert once, count re-arrivals, read back.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::event::{DedupKey, Payload};
use crate::verify::Verified;

/// A verified, parsed event ready to be written.
#[derive(Debug)]
pub struct NewEvent<'a> {
    pub environment: &'a str,
    pub dedup_key: DedupKey,
    pub payload: &'a Payload,
    pub raw_body: &'a [u8],
    pub verified: &'a Verified,
    /// The handlers whose route matches: one outbox row each, in the event's own transaction.
    pub handlers: &'a [String],
}

/// The outcome of an insert, known only after the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New(Uuid),
    /// The event was already stored (a retry, or another registration of the same environment).
    Duplicate(Uuid),
}

impl Stored {
    pub fn event_id(self) -> Uuid {
        match self {
            Self::New(id) | Self::Duplicate(id) => id,
        }
    }
}

/// An event as stored, with its provenance and arrival counters.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredEvent {
    pub id: Uuid,
    pub environment: String,
    pub event_type: String,
    pub event: String,
    pub payment_id: Option<String>,
    pub payment_status: Option<String>,
    pub payment_updated_at: Option<DateTime<Utc>>,
    /// The exact signed bytes; the parsed payload is [`StoredEvent::payload`].
    pub raw_body: Vec<u8>,
    pub source: String,
    pub webhook_id: Option<Uuid>,
    pub secret_index: Option<i16>,
    pub signed_timestamp: Option<i64>,
    pub received_at: DateTime<Utc>,
    pub last_received_at: DateTime<Utc>,
    pub arrival_count: i32,
}

impl StoredEvent {
    /// The payload, parsed from the signed bytes (only bodies that parsed are ever stored).
    pub fn payload(&self) -> Value {
        serde_json::from_slice(&self.raw_body).unwrap_or(Value::Null)
    }
}

impl Store {
    /// Inserts the event and one outbox row per matching handler in one transaction, or counts
    /// one more arrival of an event already stored (no new outbox rows then). Only an insert keeps
    /// the id we proposed, which is how the two are told apart. Dispatchers are woken after the
    /// commit, outside the transaction (see `wake.rs`).
    pub async fn insert_event(&self, new: &NewEvent<'_>) -> Result<Stored, StoreError> {
        let proposed = Uuid::now_v7();
        let mut tx = self.pool.begin().await?;
        let id = insert_or_count(&mut tx, proposed, new).await?;
        let stored = if id == proposed {
            Stored::New(id)
        } else {
            Stored::Duplicate(id)
        };
        let enqueued = matches!(stored, Stored::New(_)) && !new.handlers.is_empty();
        if enqueued {
            enqueue(&mut tx, id, new.handlers).await?;
        }
        tx.commit().await?;
        if enqueued {
            self.waker.wake(&self.pool);
        }
        Ok(stored)
    }

    pub async fn event(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM events WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }
}

async fn insert_or_count(
    tx: &mut Transaction<'_, Postgres>,
    proposed: Uuid,
    new: &NewEvent<'_>,
) -> Result<Uuid, sqlx::Error> {
    let payment = new.payload.payment.as_ref();
    sqlx::query_scalar(
        "INSERT INTO events (id, environment, dedup_key, event_type, event, payment_id, \
             payment_status, payment_updated_at, raw_body, webhook_id, secret_index, signed_timestamp) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT ON CONSTRAINT events_dedup DO UPDATE \
             SET arrival_count = events.arrival_count + 1, last_received_at = now() \
         RETURNING id",
    )
    .bind(proposed)
    .bind(new.environment)
    .bind(&new.dedup_key.0[..])
    .bind(&new.payload.event_type)
    .bind(&new.payload.event)
    .bind(payment.map(|p| &p.id))
    .bind(payment.and_then(|p| p.status.as_ref()))
    .bind(payment.and_then(|p| p.updated_at))
    .bind(new.raw_body)
    .bind(new.verified.webhook_id)
    .bind(secret_index(new.verified))
    .bind(new.verified.timestamp)
    .fetch_one(&mut **tx)
    .await
}

/// One pending delivery per handler, due now.
pub(super) async fn enqueue(
    tx: &mut Transaction<'_, Postgres>,
    event_id: Uuid,
    handlers: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO deliveries (event_id, handler) SELECT $1, unnest($2::text[])")
        .bind(event_id)
        .bind(handlers)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) fn secret_index(verified: &Verified) -> i16 {
    i16::try_from(verified.secret_index).unwrap_or(i16::MAX)
}

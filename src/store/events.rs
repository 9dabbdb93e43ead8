//! The events table: insert once, count re-arrivals, read back.

use chrono::{DateTime, Utc};
use serde_json::Value;
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
#[derive(Debug, Clone)]
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
    /// one more arrival of an event already stored (no new outbox rows then): a batch of one,
    /// through the same statement as group commit (see `batch.rs`).
    pub async fn insert_event(&self, new: &NewEvent<'_>) -> Result<Stored, StoreError> {
        let mut outcomes = self
            .insert_batch(&[super::OwnedEvent::from_new(new)])
            .await?;
        Ok(outcomes.remove(0))
    }

    pub async fn event(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        Ok(sqlx::query_as!(
            StoredEvent,
            "SELECT id, environment, event_type, event, payment_id, payment_status, \
                    payment_updated_at, raw_body, source, webhook_id, secret_index, signed_timestamp, \
                    received_at, last_received_at, arrival_count \
             FROM events WHERE id = $1",
            id
        )
        .fetch_optional(&self.pool)
        .await?)
    }
}

pub(super) fn secret_index(verified: &Verified) -> i16 {
    i16::try_from(verified.secret_index).unwrap_or(i16::MAX)
}

//! Many events in one transaction: one statement inserts the distinct events and, in the same WITH,
//! the outbox rows of those it inserted, and commits by itself. Each caller's outcome (stored or
//! duplicate) is read back per event.

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::events::secret_index;
use super::{NewEvent, Store, StoreError, Stored};
use crate::event::{DedupKey, Payload};

/// A [`NewEvent`] that owns its data, so it can wait in a queue for its batch.
#[derive(Debug, Clone)]
pub struct OwnedEvent {
    pub environment: String,
    pub dedup_key: [u8; 32],
    pub event_type: String,
    pub event: String,
    pub payment_id: Option<String>,
    pub payment_status: Option<String>,
    pub payment_updated_at: Option<DateTime<Utc>>,
    pub raw_body: Bytes,
    pub origin: Origin,
    pub handlers: Vec<String>,
}

/// Where an event came from: `events.source`, with the webhook's provenance when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A verified delivery: which registration, which secret position, which signed timestamp.
    Webhook {
        webhook_id: Uuid,
        secret_index: i16,
        signed_timestamp: i64,
    },
    /// Built by the reconciler from Voltage's payments API.
    Reconciliation,
}

impl OwnedEvent {
    pub fn from_new(new: &NewEvent<'_>) -> Self {
        let origin = Origin::Webhook {
            webhook_id: new.verified.webhook_id,
            secret_index: secret_index(new.verified),
            signed_timestamp: new.verified.timestamp,
        };
        Self::of(
            new.environment,
            new.dedup_key,
            new.payload,
            Bytes::copy_from_slice(new.raw_body),
            origin,
            new.handlers.to_vec(),
        )
    }

    /// A synthetic event the reconciler built from the payments API: same key, same table, same
    /// outbox as a webhook event, so a webhook for the same state is a duplicate of it.
    pub fn reconciled(
        environment: &str,
        payload: &Payload,
        raw_body: Bytes,
        handlers: Vec<String>,
    ) -> Self {
        let key = DedupKey::new(environment, payload, &raw_body);
        Self::of(
            environment,
            key,
            payload,
            raw_body,
            Origin::Reconciliation,
            handlers,
        )
    }

    fn of(
        environment: &str,
        dedup_key: DedupKey,
        payload: &Payload,
        raw_body: Bytes,
        origin: Origin,
        handlers: Vec<String>,
    ) -> Self {
        let payment = payload.payment.as_ref();
        Self {
            environment: environment.to_owned(),
            dedup_key: dedup_key.0,
            event_type: payload.event_type.clone(),
            event: payload.event.clone(),
            payment_id: payment.map(|p| p.id.clone()),
            payment_status: payment.and_then(|p| p.status.clone()),
            payment_updated_at: payment.and_then(|p| p.updated_at),
            raw_body,
            origin,
            handlers,
        }
    }
}

/// Column arrays for `unnest`, one entry per distinct event of the batch.
#[derive(Default)]
struct Columns {
    id: Vec<Uuid>,
    environment: Vec<String>,
    dedup_key: Vec<Vec<u8>>,
    event_type: Vec<String>,
    event: Vec<String>,
    payment_id: Vec<Option<String>>,
    payment_status: Vec<Option<String>>,
    payment_updated_at: Vec<Option<DateTime<Utc>>>,
    raw_body: Vec<Vec<u8>>,
    source: Vec<&'static str>,
    webhook_id: Vec<Option<Uuid>>,
    secret_index: Vec<Option<i16>>,
    signed_timestamp: Vec<Option<i64>>,
    arrivals: Vec<i32>,
}

impl Store {
    /// Writes `events` in one transaction. The result has one outcome per input, in order; events
    /// with the same key within the batch are one event (the first is stored, the rest duplicate).
    pub async fn insert_batch(&self, events: &[OwnedEvent]) -> Result<Vec<Stored>, StoreError> {
        // The distinct events, each with the positions of the inputs that carry it.
        let mut slots: HashMap<(&str, [u8; 32]), usize> = HashMap::new();
        let mut owners: Vec<Vec<usize>> = Vec::new();
        let mut columns = Columns::default();
        for (position, e) in events.iter().enumerate() {
            let slot = *slots
                .entry((e.environment.as_str(), e.dedup_key))
                .or_insert_with(|| {
                    push(&mut columns, e);
                    owners.push(Vec::new());
                    owners.len() - 1
                });
            owners[slot].push(position);
            columns.arrivals[slot] += i32::from(owners[slot].len() > 1);
        }
        // Outbox rows are proposed for every distinct event under the id it would get; the
        // statement keeps only those whose event it inserted (a conflict returns the existing id).
        let (mut outbox_events, mut outbox_handlers) = (Vec::new(), Vec::new());
        for (slot, owners) in owners.iter().enumerate() {
            for handler in &events[owners[0]].handlers {
                outbox_events.push(columns.id[slot]);
                outbox_handlers.push(handler.as_str());
            }
        }
        // One statement, so one round trip that commits (no BEGIN/COMMIT of its own): a round trip
        // fewer is a wake-up fewer of this task and of a PostgreSQL backend under load.
        let ids = insert_distinct(&self.pool, &columns, &outbox_events, &outbox_handlers).await?;
        let mut outcomes = vec![Stored::Duplicate(Uuid::nil()); events.len()];
        let mut routed = false;
        for (slot, id) in ids.iter().enumerate() {
            let new = *id == columns.id[slot];
            routed |= new && !events[owners[slot][0]].handlers.is_empty();
            for (nth, &position) in owners[slot].iter().enumerate() {
                outcomes[position] = if new && nth == 0 {
                    Stored::New(*id)
                } else {
                    Stored::Duplicate(*id)
                };
            }
        }
        if routed {
            self.waker.wake(&self.pool);
        }
        Ok(outcomes)
    }
}

fn push(c: &mut Columns, e: &OwnedEvent) {
    c.id.push(Uuid::now_v7());
    c.environment.push(e.environment.clone());
    c.dedup_key.push(e.dedup_key.to_vec());
    c.event_type.push(e.event_type.clone());
    c.event.push(e.event.clone());
    c.payment_id.push(e.payment_id.clone());
    c.payment_status.push(e.payment_status.clone());
    c.payment_updated_at.push(e.payment_updated_at);
    c.raw_body.push(e.raw_body.to_vec());
    match e.origin {
        Origin::Webhook {
            webhook_id,
            secret_index,
            signed_timestamp,
        } => {
            c.source.push("webhook");
            c.webhook_id.push(Some(webhook_id));
            c.secret_index.push(Some(secret_index));
            c.signed_timestamp.push(Some(signed_timestamp));
        }
        Origin::Reconciliation => {
            c.source.push("reconciliation");
            c.webhook_id.push(None);
            c.secret_index.push(None);
            c.signed_timestamp.push(None);
        }
    }
    c.arrivals.push(1);
}

/// One row per distinct event, inserted in key order so that concurrent batches sharing keys take
/// their row locks in the same order (no deadlock), and the outbox rows of the events it inserted,
/// in one statement and so one transaction. Returns, in input order, the id each event has in the
/// table (the proposed id if it was inserted, the existing one if it was already there).
// Long: one statement (events, their dedup and their outbox rows in one round trip) and its
// sixteen column binds; it reads best whole.
async fn insert_distinct(
    pool: &sqlx::PgPool,
    c: &Columns,
    outbox_events: &[Uuid],
    outbox_handlers: &[&str],
) -> Result<Vec<Uuid>, sqlx::Error> {
    // Arrays of nullable values, and of `&str`, are passed with a cast (`as &[Option<_>]`,
    // `as &[&str]`): the macro's type check knows arrays of plain owned values only (`Vec<String>`
    // for `text[]`). A cast opts out of that check; the Rust type is still checked by the cast.
    let rows = sqlx::query!(
        r#"WITH input AS (
             SELECT id, environment, dedup_key, event_type, event, payment_id, payment_status,
                 payment_updated_at, raw_body, webhook_id, secret_index, signed_timestamp, arrivals,
                 source, position
             FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::text[],
                 $7::text[], $8::timestamptz[], $9::bytea[], $10::uuid[], $11::int2[], $12::int8[],
                 $13::int4[], $14::text[]) WITH ORDINALITY
             AS t(id, environment, dedup_key, event_type, event, payment_id, payment_status,
                  payment_updated_at, raw_body, webhook_id, secret_index, signed_timestamp,
                  arrivals, source, position)
         ), written AS (
             INSERT INTO events (id, environment, dedup_key, event_type, event, payment_id, payment_status,
                 payment_updated_at, raw_body, webhook_id, secret_index, signed_timestamp, arrival_count,
                 source)
             SELECT id, environment, dedup_key, event_type, event, payment_id, payment_status,
                 payment_updated_at, raw_body, webhook_id, secret_index, signed_timestamp, arrivals,
                 source
             FROM input ORDER BY environment, dedup_key
             ON CONFLICT ON CONSTRAINT events_dedup DO UPDATE
                 SET arrival_count = events.arrival_count + EXCLUDED.arrival_count, last_received_at = now(),
                     webhook_id = coalesce(events.webhook_id, EXCLUDED.webhook_id),
                     secret_index = coalesce(events.secret_index, EXCLUDED.secret_index),
                     signed_timestamp = coalesce(events.signed_timestamp, EXCLUDED.signed_timestamp)
             RETURNING id, environment, dedup_key
         ), routed AS (
             INSERT INTO deliveries (event_id, handler)
             SELECT o.event_id, o.handler FROM unnest($15::uuid[], $16::text[]) AS o(event_id, handler)
             JOIN written ON written.id = o.event_id
         )
         SELECT input.position AS "position!", written.id AS "id!" FROM input
         JOIN written ON written.environment = input.environment AND written.dedup_key = input.dedup_key"#,
        &c.id,
        &c.environment,
        &c.dedup_key,
        &c.event_type,
        &c.event,
        &c.payment_id as &[Option<String>],
        &c.payment_status as &[Option<String>],
        &c.payment_updated_at as &[Option<DateTime<Utc>>],
        &c.raw_body,
        &c.webhook_id as &[Option<Uuid>],
        &c.secret_index as &[Option<i16>],
        &c.signed_timestamp as &[Option<i64>],
        &c.arrivals,
        &c.source as &[&str],
        outbox_events,
        outbox_handlers as &[&str]
    )
    .fetch_all(pool)
    .await?;
    let mut ids = vec![Uuid::nil(); c.id.len()];
    for row in rows {
        ids[usize::try_from(row.position - 1).unwrap_or(0)] = row.id;
    }
    Ok(ids)
}

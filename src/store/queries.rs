//! What downstream services read: events by filter with keyset pages, a payment's events, delivery
//! states, and the commit-ordered feed behind the event stream.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::{DeliveryState, Store, StoreError, StoredEvent};

/// An event without its bodies, for listings.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EventSummary {
    pub id: Uuid,
    pub environment: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub event: String,
    pub payment_id: Option<String>,
    pub payment_status: Option<String>,
    pub payment_updated_at: Option<DateTime<Utc>>,
    pub source: String,
    pub received_at: DateTime<Utc>,
    pub last_received_at: DateTime<Utc>,
    pub arrival_count: i32,
}

/// Filters of `GET /events`; `after` is the keyset position of the previous page's last row.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub environment: String,
    /// Any of these types; empty: every type.
    pub event_types: Vec<String>,
    /// Any of these events; empty: every event.
    pub events: Vec<String>,
    /// `webhook` or `reconciliation`.
    pub source: Option<String>,
    pub payment_id: Option<String>,
    pub received_after: Option<DateTime<Utc>>,
    pub received_before: Option<DateTime<Utc>>,
    pub ascending: bool,
    pub limit: i64,
    pub after: Option<(DateTime<Utc>, Uuid)>,
}

/// One row of the event feed, with its position `(txid, id)`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FeedRow {
    pub txid: String,
    #[sqlx(flatten)]
    pub event: EventSummary,
}

const SUMMARY: &str =
    "id, environment, event_type, event, payment_id, payment_status, payment_updated_at, \
                       source, received_at, last_received_at, arrival_count";

impl Store {
    pub async fn list_events(&self, q: &EventQuery) -> Result<Vec<EventSummary>, StoreError> {
        let mut sql: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("SELECT {SUMMARY} FROM events WHERE environment = "));
        sql.push_bind(&q.environment);
        let optional = [("source", &q.source), ("payment_id", &q.payment_id)];
        for (column, value) in optional {
            if let Some(value) = value {
                sql.push(format!(" AND {column} = ")).push_bind(value);
            }
        }
        let any_of = [("event_type", &q.event_types), ("event", &q.events)];
        for (column, values) in any_of {
            if !values.is_empty() {
                sql.push(format!(" AND {column} = ANY("))
                    .push_bind(values)
                    .push(")");
            }
        }
        if let Some(t) = q.received_after {
            sql.push(" AND received_at > ").push_bind(t);
        }
        if let Some(t) = q.received_before {
            sql.push(" AND received_at < ").push_bind(t);
        }
        let (comparison, order) = if q.ascending {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        if let Some((at, id)) = q.after {
            sql.push(format!(" AND (received_at, id) {comparison} ("))
                .push_bind(at)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        sql.push(format!(" ORDER BY received_at {order}, id {order} LIMIT "))
            .push_bind(q.limit);
        Ok(sql.build_query_as().fetch_all(&self.pool).await?)
    }

    /// An event, only if it belongs to `environment`.
    pub async fn event_in(
        &self,
        environment: &str,
        id: Uuid,
    ) -> Result<Option<StoredEvent>, StoreError> {
        Ok(self
            .event(id)
            .await?
            .filter(|e| e.environment == environment))
    }

    /// Every event of a payment, oldest first.
    pub async fn payment_events(
        &self,
        environment: &str,
        payment_id: &str,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM events WHERE environment = $1 AND payment_id = $2 ORDER BY received_at, id",
        )
        .bind(environment)
        .bind(payment_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deliveries of an environment, by id, optionally of one status.
    pub async fn list_deliveries(
        &self,
        environment: &str,
        status: Option<&str>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryState>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT d.id, d.event_id, d.handler, d.status, d.attempts, d.next_attempt_at, d.last_error, \
                    d.created_at, d.completed_at \
             FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE e.environment = $1 AND ($2::text IS NULL OR d.status = $2) AND d.id > $3 \
             ORDER BY d.id LIMIT $4",
        )
        .bind(environment)
        .bind(status)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The oldest position a new stream starts after: everything older is history.
    pub async fn feed_start(&self) -> Result<String, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Events after `(txid, id)`, in commit-safe order: only rows below the oldest transaction still
    /// running, so no row can later appear before a position already handed out.
    pub async fn feed_after(
        &self,
        environment: &str,
        txid: &str,
        id: Uuid,
        limit: i64,
    ) -> Result<Vec<FeedRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT txid::text AS txid, {SUMMARY} FROM events \
             WHERE environment = $1 AND (txid, id) > ($2::xid8, $3) \
               AND txid < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY txid, id LIMIT $4"
        ))
        .bind(environment)
        .bind(txid)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}

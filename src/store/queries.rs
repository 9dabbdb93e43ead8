//! What downstream services read: events by filter with keyset pages, a payment's events, delivery
//! states, and the commit-ordered feed behind the event stream.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as JsonValue;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::{DeliveryState, Store, StoreError, StoredEvent};

/// An event without its bodies, for listings.
// (Not a doc comment: utoipa would put it in the OpenAPI document.) `FromRow` is for
// `Store::list_events`, the one query built at run time; the others fill it through a checked macro.
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
#[derive(Debug, Clone)]
pub struct FeedRow {
    pub txid: String,
    pub event: EventSummary,
}

/// The columns of [`EventSummary`], for the one query assembled at run time ([`Store::list_events`]).
/// The checked queries spell them out, as a macro needs a literal.
const SUMMARY: &str =
    "id, environment, event_type, event, payment_id, payment_status, payment_updated_at, \
                       source, received_at, last_received_at, arrival_count";

impl Store {
    /// Built per request, and so checked by the tests rather than by the compiler: the one query
    /// that is. A fixed statement would have to write every filter as `($n IS NULL OR col = $n)`,
    /// and sort through the keyset as `($n IS NULL OR (received_at, id) > ($n, $m))` in both
    /// directions, and once PostgreSQL switches the prepared statement to its cached generic plan
    /// (after five executions) such a plan cannot know which filters are present: it neither
    /// bounds the `events_by_received` scan at the keyset position (every page would re-read the
    /// pages before it) nor uses `events_by_payment` for a payment's events. Here each present
    /// filter is a plain condition, each combination of filters a statement of its own.
    pub async fn list_events(&self, q: &EventQuery) -> Result<Vec<EventSummary>, StoreError> {
        Ok(list_events_sql(q, "")
            .build_query_as()
            .fetch_all(&self.pool)
            .await?)
    }

    /// How PostgreSQL runs [`Store::list_events`] for `q`: `EXPLAIN (ANALYZE, FORMAT JSON)` of the
    /// very statement, with its actual row counts (for the plan test and for operators).
    pub async fn explain_list_events(&self, q: &EventQuery) -> Result<JsonValue, StoreError> {
        let (plan,): (JsonValue,) = list_events_sql(q, "EXPLAIN (ANALYZE, FORMAT JSON) ")
            .build_query_as()
            .fetch_one(&self.pool)
            .await?;
        Ok(plan)
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
        Ok(sqlx::query_as!(
            StoredEvent,
            "SELECT id, environment, event_type, event, payment_id, payment_status, \
                    payment_updated_at, raw_body, source, webhook_id, secret_index, signed_timestamp, \
                    received_at, last_received_at, arrival_count \
             FROM events WHERE environment = $1 AND payment_id = $2 ORDER BY received_at, id",
            environment,
            payment_id
        )
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
        // `$2 IS NULL OR`: no index serves the status filter, so a generic plan loses nothing.
        Ok(sqlx::query_as!(
            DeliveryState,
            "SELECT d.id, d.event_id, d.handler, d.status, d.attempts, d.next_attempt_at, d.last_error, \
                    d.created_at, d.completed_at \
             FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE e.environment = $1 AND ($2::text IS NULL OR d.status = $2) AND d.id > $3 \
             ORDER BY d.id LIMIT $4",
            environment,
            status,
            after_id,
            limit
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The oldest position a new stream starts after: everything older is history.
    pub async fn feed_start(&self) -> Result<String, StoreError> {
        let mut tx = self.pool.begin().await?;
        let horizon = feed_horizon(&mut tx).await?;
        tx.commit().await?;
        Ok(horizon)
    }

    /// Events after `(txid, id)`, in commit-safe order: only rows below the horizon (see
    /// [`feed_horizon`]), so no row can later appear before a position already handed out.
    pub async fn feed_after(
        &self,
        environment: &str,
        txid: &str,
        id: Uuid,
        limit: i64,
    ) -> Result<Vec<FeedRow>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let horizon = feed_horizon(&mut tx).await?;
        // Read with the snapshot the horizon was computed against (repeatable read).
        // Positions travel as text (`::text::xid8`): sqlx has no Rust type for xid8.
        let rows = sqlx::query!(
            r#"SELECT txid::text AS "txid!", id, environment, event_type, event, payment_id,
                    payment_status, payment_updated_at, source, received_at, last_received_at,
                    arrival_count
             FROM events
             WHERE environment = $1 AND (txid, id) > ($2::text::xid8, $3)
               AND txid < $5::text::xid8
             ORDER BY txid, id LIMIT $4"#,
            environment,
            txid,
            id,
            limit,
            horizon
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| FeedRow {
                txid: r.txid,
                event: EventSummary {
                    id: r.id,
                    environment: r.environment,
                    event_type: r.event_type,
                    event: r.event,
                    payment_id: r.payment_id,
                    payment_status: r.payment_status,
                    payment_updated_at: r.payment_updated_at,
                    source: r.source,
                    received_at: r.received_at,
                    last_received_at: r.last_received_at,
                    arrival_count: r.arrival_count,
                },
            })
            .collect())
    }
}

/// The statement behind [`Store::list_events`], after `prefix`.
///
/// Every filter is served by an index whose trailing columns are the page order
/// `(received_at, id)`, so a page reads about `limit` rows whatever the table's size:
/// - no filter, a time range, `source=webhook` (most events): `events_by_received`;
/// - `payment_id`: `events_by_payment` (a payment has a handful of events);
/// - `source=reconciliation`: the partial index `events_reconciled`;
/// - `type` and/or `event`: `events_by_kind (environment, event_type, event, received_at, id)`.
///   PostgreSQL cannot read that index in page order for `type = ANY(...)` alone (the event column
///   sits between), so the statement first walks the environment's distinct (type, event) pairs
///   through the index (a recursive skip scan: one descent per pair, a few dozen at most), keeps
///   the pairs the filter asks for, reads at most `limit` rows of each pair in page order, and
///   merges them.
fn list_events_sql<'q>(q: &'q EventQuery, prefix: &str) -> QueryBuilder<'q, Postgres> {
    let by_kind = q.payment_id.is_none()
        && q.source.as_deref() != Some("reconciliation")
        && (!q.event_types.is_empty() || !q.events.is_empty());
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(prefix);
    if by_kind {
        push_kinds_walk(&mut sql, q);
    }
    sql.push(format!("SELECT {SUMMARY} FROM events WHERE environment = "))
        .push_bind(&q.environment);
    if by_kind {
        sql.push(" AND event_type = kinds.event_type AND event = kinds.event");
    } else {
        any_of(&mut sql, "event_type", &q.event_types);
        any_of(&mut sql, "event", &q.events);
    }
    push_filters(&mut sql, q);
    push_page(&mut sql, q, "");
    if by_kind {
        sql.push(") AS page WHERE true");
        for (column, values) in [("event_type", &q.event_types), ("event", &q.events)] {
            if !values.is_empty() {
                sql.push(format!(" AND kinds.{column} = ANY("))
                    .push_bind(values)
                    .push(")");
            }
        }
        push_page(&mut sql, q, "page.");
    }
    sql
}

/// The recursive skip scan over the environment's distinct (type, event) pairs, up to the
/// lateral page read per pair.
fn push_kinds_walk<'q>(sql: &mut QueryBuilder<'q, Postgres>, q: &'q EventQuery) {
    sql.push(
        "WITH RECURSIVE kinds AS ( \
             (SELECT event_type, event FROM events WHERE environment = ",
    )
    .push_bind(&q.environment)
    .push(
        " ORDER BY event_type, event LIMIT 1) \
         UNION ALL \
         SELECT next.event_type, next.event FROM kinds CROSS JOIN LATERAL ( \
             SELECT event_type, event FROM events WHERE environment = ",
    )
    .push_bind(&q.environment)
    .push(
        " AND (event_type, event) > (kinds.event_type, kinds.event) \
             ORDER BY event_type, event LIMIT 1) AS next \
         ) SELECT page.* FROM kinds CROSS JOIN LATERAL (",
    );
}

/// The payment, source and time-range conditions.
fn push_filters<'q>(sql: &mut QueryBuilder<'q, Postgres>, q: &'q EventQuery) {
    if let Some(payment_id) = &q.payment_id {
        sql.push(" AND payment_id = ").push_bind(payment_id);
    }
    // Literal when it is one of the two values, so the partial index can be proven to apply.
    match q.source.as_deref() {
        None => {}
        Some("webhook") => {
            sql.push(" AND source = 'webhook'");
        }
        Some("reconciliation") => {
            sql.push(" AND source = 'reconciliation'");
        }
        Some(other) => {
            sql.push(" AND source = ").push_bind(other);
        }
    }
    if let Some(t) = q.received_after {
        sql.push(" AND received_at > ").push_bind(t);
    }
    if let Some(t) = q.received_before {
        sql.push(" AND received_at < ").push_bind(t);
    }
}

/// The page: after the keyset position (only on the inner read, `table` empty), in page order,
/// at most `limit` rows. `table` prefixes the columns (`page.` for the merge of the pairs).
fn push_page<'q>(sql: &mut QueryBuilder<'q, Postgres>, q: &'q EventQuery, table: &str) {
    let (comparison, order) = if q.ascending {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    if let (Some((at, id)), "") = (q.after, table) {
        sql.push(format!(" AND (received_at, id) {comparison} ("))
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    sql.push(format!(
        " ORDER BY {table}received_at {order}, {table}id {order} LIMIT "
    ))
    .push_bind(q.limit);
}

/// `column` is one of `values` (none: no condition). One value is an equality, which an index
/// can read in page order; `= ANY(...)` on a column after the first of an index cannot be.
fn any_of<'q>(sql: &mut QueryBuilder<'q, Postgres>, column: &str, values: &'q [String]) {
    match values {
        [] => {}
        [one] => {
            sql.push(format!(" AND {column} = ")).push_bind(one);
        }
        many => {
            sql.push(format!(" AND {column} = ANY("))
                .push_bind(many)
                .push(")");
        }
    }
}

/// The stream's visibility horizon: the oldest transaction that may still add an event, or, if
/// none, the next transaction id. Rows below it are final. Runs at the start of `tx`, which it
/// makes repeatable read, so later statements of `tx` see exactly the snapshot it judged.
///
/// `pg_snapshot_xmin` alone is the oldest transaction running anywhere in the cluster: any open
/// write transaction (in another database, on another table) held every stream back for as long
/// as it stayed open. Here a transaction running at the snapshot counts only if it
/// - holds a write lock on `events` in this database when `pg_locks` is read just after, or
/// - is no longer running when its status is read after that (it ended in between: it may have
///   written an event the snapshot does not see, so the horizon waits one poll for it).
///
/// A transaction still running without that lock can never insert an event, because every
/// statement that inserts events (the group-commit batch: one statement, its own transaction) takes
/// the lock when it is planned, before its transaction id is assigned. Keep it so: a transaction
/// that writes elsewhere first and inserts events later would break the feed.
///
/// `pg_locks` names transactions by their 32-bit id; they are matched to the snapshot's 64-bit
/// ids by the low 32 bits (a false match only lowers the horizon, which is safe).
async fn feed_horizon(tx: &mut sqlx::PgConnection) -> Result<String, StoreError> {
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    // The snapshot is taken as this statement starts, and pg_locks is read while it runs: after.
    let row = sqlx::query!(
        r#"SELECT pg_current_snapshot()::text AS "snapshot!", coalesce(array(
             SELECT x.transactionid::text FROM pg_locks r
             JOIN pg_locks x ON x.virtualtransaction = r.virtualtransaction
                 AND x.locktype = 'transactionid' AND x.granted
             WHERE r.locktype = 'relation' AND r.granted
               AND r.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND r.relation = 'events'::regclass
               AND r.mode IN ('RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                              'AccessExclusiveLock')), '{}') AS "writers!""#,
    )
    .fetch_one(&mut *tx)
    .await?;
    // Statuses are read after pg_locks, in a statement of their own. The snapshot travels as text
    // (`::text::pg_snapshot`): sqlx has no Rust type for pg_snapshot.
    Ok(sqlx::query_scalar!(
        r#"SELECT least(pg_snapshot_xmax($1::text::pg_snapshot), (
             SELECT min(x) FROM pg_snapshot_xip($1::text::pg_snapshot) AS x
             WHERE (x::text::numeric % 4294967296)::text = ANY($2)
                OR pg_xact_status(x) IS DISTINCT FROM 'in progress')::xid8)::text AS "horizon!""#,
        row.snapshot,
        &row.writers
    )
    .fetch_one(&mut *tx)
    .await?)
}

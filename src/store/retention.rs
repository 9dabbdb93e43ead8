//! Retention statements: each deletes one small batch in its own short transaction, so no lock is
//! held for long and ingest keeps running beside a purge. The loop that repeats them, and the
//! policy that computes the cutoffs, live in `crate::retention`.
//!
//! What expires (the same predicates serve the dry run's counts, so a dry run is exact):
//! - an event received before `events_before` whose last arrival is before `dedup_before` (a
//!   redelivery inside the dedup horizon must still find it), and which no delivery still needs:
//!   none pending or in flight, and no dead one that has not expired itself. Its succeeded
//!   deliveries and replay records go with it (ON DELETE CASCADE);
//! - a dead delivery completed before `dead_before`;
//! - a quarantined body, and a replay's idempotency record, under the events' cutoffs (a record
//!   younger than that goes with its event, uncounted).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::StoreError;

/// The moments before which data has expired. `None`: that kind is kept forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    pub events_before: Option<DateTime<Utc>>,
    /// The dedup horizon: nothing that arrived after this is removed.
    pub dedup_before: DateTime<Utc>,
    pub dead_before: Option<DateTime<Utc>>,
}

/// What one retention pass removed, or (dry run) would remove.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PurgeCounts {
    pub events: u64,
    pub dead_deliveries: u64,
    pub quarantined: u64,
    pub replays: u64,
}

/// `sqlx::$macro!(head + NEEDED_BY_A_DELIVERY + tail, args...)`, where NEEDED_BY_A_DELIVERY is
/// the condition that a delivery keeps its event `e`: it is not finished, or it is dead and not yet
/// expired (an operator may still retry it, and a retry needs the event); `$3` is the dead
/// deliveries' cutoff. The checked macros take literals only, not a `format!`ed string, so the
/// predicate that the purge and the dry run's count share is spliced in here, as one literal.
macro_rules! with_needed_by_a_delivery {
    ($macro:ident!($head:tt, $tail:tt $(, $arg:expr)* $(,)?)) => {
        sqlx::$macro!(
            $head
                + "EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id \
                     AND (d.status IN ('pending', 'in_flight') \
                          OR (d.status = 'dead' AND NOT coalesce(d.completed_at < $3, false))))"
                + $tail
            $(, $arg)*
        )
    };
}

/// The environments that have events, by a loose index scan (one probe per environment).
pub async fn environments_with_events(
    connection: &mut PgConnection,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"WITH RECURSIVE envs AS (
             (SELECT environment FROM events ORDER BY environment LIMIT 1)
             UNION ALL
             SELECT (SELECT e.environment FROM events e WHERE e.environment > envs.environment
                     ORDER BY e.environment LIMIT 1)
             FROM envs WHERE envs.environment IS NOT NULL)
         SELECT environment AS "environment!" FROM envs WHERE environment IS NOT NULL"#
    )
    .fetch_all(connection)
    .await?)
}

/// Deletes up to `limit` expired events of one environment, oldest first; returns how many.
pub async fn purge_events(
    connection: &mut PgConnection,
    cutoffs: &Cutoffs,
    environment: &str,
    limit: i64,
) -> Result<u64, StoreError> {
    let Some(events_before) = cutoffs.events_before else {
        return Ok(0);
    };
    let done = with_needed_by_a_delivery!(query!(
        "DELETE FROM events WHERE id IN ( \
             SELECT e.id FROM events e \
             WHERE e.environment = $4 AND e.received_at < $1 AND e.last_received_at < $2 \
               AND NOT ",
        " ORDER BY e.received_at LIMIT $5 FOR UPDATE SKIP LOCKED)",
        events_before,
        cutoffs.dedup_before,
        cutoffs.dead_before,
        environment,
        limit,
    ))
    .execute(connection)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes up to `limit` dead deliveries that expired; returns how many.
pub async fn purge_dead_deliveries(
    connection: &mut PgConnection,
    cutoffs: &Cutoffs,
    limit: i64,
) -> Result<u64, StoreError> {
    let Some(dead_before) = cutoffs.dead_before else {
        return Ok(0);
    };
    let done = sqlx::query!(
        "DELETE FROM deliveries WHERE id IN ( \
             SELECT id FROM deliveries WHERE status = 'dead' AND completed_at < $1 \
             ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        dead_before,
        limit
    )
    .execute(connection)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes up to `limit` expired quarantined bodies; returns how many.
pub async fn purge_quarantine(
    connection: &mut PgConnection,
    cutoffs: &Cutoffs,
    limit: i64,
) -> Result<u64, StoreError> {
    let Some(events_before) = cutoffs.events_before else {
        return Ok(0);
    };
    let done = sqlx::query!(
        "DELETE FROM quarantine WHERE id IN ( \
             SELECT id FROM quarantine WHERE received_at < $1 AND last_received_at < $2 \
             LIMIT $3 FOR UPDATE SKIP LOCKED)",
        events_before,
        cutoffs.dedup_before,
        limit
    )
    .execute(connection)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes up to `limit` expired replay idempotency records; returns how many.
pub async fn purge_replays(
    connection: &mut PgConnection,
    cutoffs: &Cutoffs,
    limit: i64,
) -> Result<u64, StoreError> {
    let Some(events_before) = cutoffs.events_before else {
        return Ok(0);
    };
    let done = sqlx::query!(
        "DELETE FROM replays WHERE (environment, idempotency_key) IN ( \
             SELECT environment, idempotency_key FROM replays WHERE created_at < $1 \
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
        events_before,
        limit
    )
    .execute(connection)
    .await?;
    Ok(done.rows_affected())
}

/// What a pass would remove now, by the same predicates, without removing anything. Dead
/// deliveries are counted first, as a pass removes them first; events they alone held count too.
pub async fn count_expired(
    connection: &mut PgConnection,
    cutoffs: &Cutoffs,
) -> Result<PurgeCounts, StoreError> {
    let counts = with_needed_by_a_delivery!(query!(
        "SELECT \
           (SELECT count(*) FROM events e WHERE $1::timestamptz IS NOT NULL \
              AND e.received_at < $1 AND e.last_received_at < $2 AND NOT ",
        r#") AS "events!",
           (SELECT count(*) FROM deliveries WHERE status = 'dead' AND completed_at < $3) AS "dead!",
           (SELECT count(*) FROM quarantine WHERE received_at < $1 AND last_received_at < $2)
               AS "quarantined!",
           (SELECT count(*) FROM replays WHERE created_at < $1) AS "replays!""#,
        cutoffs.events_before,
        cutoffs.dedup_before,
        cutoffs.dead_before,
    ))
    .fetch_one(connection)
    .await?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(PurgeCounts {
        events: count(counts.events),
        dead_deliveries: count(counts.dead),
        quarantined: count(counts.quarantined),
        replays: count(counts.replays),
    })
}

//! Retention: removes what has expired, in small batches, in one replica at a time.
//!
//! A pass takes a session advisory lock (a replica that finds it taken skips its turn), then
//! deletes expired dead deliveries, replay records, quarantined bodies and events, each kind in
//! batches of `retention.batch_size` until none is left. Nothing inside the dedup horizon goes, and
//! no event goes while a delivery still needs it. `serve` runs passes every
//! `retention.interval_secs`; `voltage-webhooks purge` runs one, or with `--dry-run` counts.

use std::time::Duration;

use crate::store::Connection as PgConnection;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::store::retention::{self as sql, Cutoffs, PurgeCounts};
use crate::store::{Store, StoreError};
use crate::telemetry::metrics::{RETENTION_LAST_PASS, RETENTION_REMOVED};

/// The advisory lock every replica's pass takes.
pub const LOCK_NAME: &str = "voltage-webhooks/retention";

pub use crate::config::RetentionPolicy;

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Removed (or, dry run, would remove) these.
    Done(PurgeCounts),
    /// Another replica holds the lock: it is running a pass now.
    Busy,
}

impl RetentionPolicy {
    /// The cutoffs at `now`. Events never expire inside the dedup horizon, whatever `events_days`.
    pub fn cutoffs(&self, now: DateTime<Utc>) -> Cutoffs {
        let days_ago = |days: u32| now - chrono::Duration::days(i64::from(days));
        Cutoffs {
            events_before: self
                .events_days
                .map(|days| days_ago(days.max(self.dedup_days))),
            dedup_before: days_ago(self.dedup_days),
            dead_before: self.dead_days.map(days_ago),
        }
    }
}

/// One pass at `now`. With `dry_run`, counts instead of deleting. Stops between batches when `stop`
/// is cancelled (what was deleted stays deleted; the next pass goes on).
pub async fn pass(
    store: &Store,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
    dry_run: bool,
    stop: &CancellationToken,
) -> Result<Pass, StoreError> {
    let Some(mut lock) = store.try_session_lock(LOCK_NAME).await? else {
        return Ok(Pass::Busy);
    };
    let cutoffs = policy.cutoffs(now);
    let limit = policy.batch_size;
    let connection = lock.connection();
    let counts = if dry_run {
        sql::count_expired(connection, &cutoffs).await?
    } else {
        let mut counts = PurgeCounts {
            dead_deliveries: drain(connection, Kind::DeadDeliveries, &cutoffs, limit, stop).await?,
            replays: drain(connection, Kind::Replays, &cutoffs, limit, stop).await?,
            quarantined: drain(connection, Kind::Quarantine, &cutoffs, limit, stop).await?,
            events: 0,
        };
        if cutoffs.events_before.is_some() {
            for environment in sql::environments_with_events(connection).await? {
                let kind = Kind::Events(&environment);
                counts.events += drain(connection, kind, &cutoffs, limit, stop).await?;
            }
        }
        record(&counts);
        counts
    };
    lock.release().await;
    Ok(Pass::Done(counts))
}

#[derive(Debug, Clone, Copy)]
enum Kind<'a> {
    DeadDeliveries,
    Replays,
    Quarantine,
    Events(&'a str),
}

/// Deletes batches of one kind until a batch comes back short (nothing left) or `stop` is cancelled.
async fn drain(
    connection: &mut PgConnection,
    kind: Kind<'_>,
    cutoffs: &Cutoffs,
    limit: i64,
    stop: &CancellationToken,
) -> Result<u64, StoreError> {
    let mut total = 0;
    while !stop.is_cancelled() {
        let removed = match kind {
            Kind::DeadDeliveries => sql::purge_dead_deliveries(connection, cutoffs, limit).await?,
            Kind::Replays => sql::purge_replays(connection, cutoffs, limit).await?,
            Kind::Quarantine => sql::purge_quarantine(connection, cutoffs, limit).await?,
            Kind::Events(environment) => {
                sql::purge_events(connection, cutoffs, environment, limit).await?
            }
        };
        total += removed;
        if removed < limit.unsigned_abs() {
            break;
        }
    }
    Ok(total)
}

fn record(counts: &PurgeCounts) {
    for (kind, n) in [
        ("events", counts.events),
        ("dead_deliveries", counts.dead_deliveries),
        ("quarantined", counts.quarantined),
        ("replays", counts.replays),
    ] {
        metrics::counter!(RETENTION_REMOVED, "kind" => kind).increment(n);
    }
    metrics::gauge!(RETENTION_LAST_PASS).set(Utc::now().timestamp() as f64);
}

/// Runs a pass every `policy.interval` until `stop`; the first after a random delay of up to a
/// minute, so replicas started together do not all try at once. Does nothing when no period is set.
pub async fn run(store: Store, policy: RetentionPolicy, stop: CancellationToken) {
    if !policy.is_active() {
        tracing::info!("retention: no period configured; events and dead deliveries are kept");
        return;
    }
    let first = policy.interval.min(Duration::from_secs(60));
    let mut delay = first.mul_f64(rand::random::<f64>());
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = policy.interval;
        match pass(&store, &policy, Utc::now(), false, &stop).await {
            Ok(Pass::Done(counts)) => tracing::info!(?counts, "retention pass done"),
            Ok(Pass::Busy) => tracing::debug!("retention: another replica is running a pass"),
            Err(e) => {
                tracing::warn!(error = %e, cause = ?std::error::Error::source(&e), "retention pass failed; retrying next interval")
            }
        }
    }
}

//! Retention removes exactly what has expired: nothing a delivery still needs, nothing inside the
//! dedup horizon, in batches, in one replica at a time; a dry run counts the same rows.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use voltage_webhooks::retention::{self, Pass, RetentionPolicy, LOCK_NAME};
use voltage_webhooks::store::retention::PurgeCounts;
use voltage_webhooks::store::{lock_key, Store};

fn policy(events_days: Option<u32>, dead_days: Option<u32>, dedup_days: u32) -> RetentionPolicy {
    RetentionPolicy {
        events_days,
        dead_days,
        dedup_days,
        // Small, so every kind takes several batches.
        batch_size: 2,
        interval: Duration::from_secs(3600),
    }
}

fn days_ago(now: DateTime<Utc>, days: i64) -> DateTime<Utc> {
    now - chrono::Duration::days(days)
}

/// An event first received `received` days before `now` and last received `last` days before.
async fn event(
    pool: &PgPool,
    now: DateTime<Utc>,
    environment: &str,
    received: i64,
    last: i64,
) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO events (id, environment, dedup_key, event_type, event, raw_body, webhook_id, \
                             secret_index, signed_timestamp, received_at, last_received_at) \
         VALUES ($1, $2, sha256($3::bytea), 'receive', 'completed', '{}'::bytea, $4, 0, 0, $5, $6)",
    )
    .bind(id)
    .bind(environment)
    .bind(id.as_bytes().to_vec())
    .bind(Uuid::new_v4())
    .bind(days_ago(now, received))
    .bind(days_ago(now, last))
    .execute(pool)
    .await
    .unwrap();
    id
}

/// A delivery of `event` in `status`, completed `completed` days before `now` (if given).
async fn delivery(
    pool: &PgPool,
    now: DateTime<Utc>,
    event: Uuid,
    status: &str,
    completed: Option<i64>,
) -> i64 {
    let leased = status == "in_flight";
    sqlx::query_scalar(
        "INSERT INTO deliveries (event_id, handler, status, lease_token, lease_expires_at, completed_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(event)
    .bind(format!("handler-{}", Uuid::new_v4()))
    .bind(status)
    .bind(leased.then(Uuid::new_v4))
    .bind(leased.then(|| now + chrono::Duration::minutes(1)))
    .bind(completed.map(|days| days_ago(now, days)))
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn quarantined(pool: &PgPool, now: DateTime<Utc>, received: i64, last: i64) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO quarantine (id, environment, body_sha256, raw_body, reason, webhook_id, \
                                 secret_index, signed_timestamp, received_at, last_received_at) \
         VALUES ($1, 'production', sha256($2::bytea), 'x', 'test', $1, 0, 0, $3, $4)",
    )
    .bind(id)
    .bind(id.as_bytes().to_vec())
    .bind(days_ago(now, received))
    .bind(days_ago(now, last))
    .execute(pool)
    .await
    .unwrap();
    id
}

async fn replay(pool: &PgPool, now: DateTime<Utc>, event: Uuid, created: i64) -> String {
    let key = Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO replays (environment, idempotency_key, event_id, handlers, created_at) \
         VALUES ('production', $1, $2, '{}', $3)",
    )
    .bind(&key)
    .bind(event)
    .bind(days_ago(now, created))
    .execute(pool)
    .await
    .unwrap();
    key
}

async fn ids(pool: &PgPool, sql: &str) -> BTreeSet<String> {
    sqlx::query_scalar::<_, String>(sql)
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn pass(pool: &PgPool, policy: &RetentionPolicy, now: DateTime<Utc>, dry_run: bool) -> Pass {
    let store = Store::new(pool.clone());
    retention::pass(&store, policy, now, dry_run, &CancellationToken::new())
        .await
        .unwrap()
}

#[sqlx::test]
async fn retention_removes_exactly_what_has_expired(pool: PgPool) {
    let now = Utc::now();
    let policy = policy(Some(90), Some(30), 30);
    let s = |id: Uuid| id.to_string();

    // Expired, nothing holds them: five in production and two in staging (several batches each).
    let mut expired = Vec::new();
    for _ in 0..5 {
        expired.push(event(&pool, now, "production", 91, 91).await);
    }
    for _ in 0..2 {
        expired.push(event(&pool, now, "staging", 200, 120).await);
    }
    let done = event(&pool, now, "production", 100, 100).await;
    let done_delivery = delivery(&pool, now, done, "succeeded", Some(99)).await;
    expired.push(done);
    // A dead delivery that expired no longer holds its event: both go.
    let long_dead = event(&pool, now, "production", 100, 100).await;
    let long_dead_delivery = delivery(&pool, now, long_dead, "dead", Some(40)).await;
    expired.push(long_dead);

    // Kept: inside the period; redelivered inside the dedup horizon; still being fanned out;
    // held by a dead delivery an operator may still retry.
    let young = event(&pool, now, "production", 89, 89).await;
    let redelivered = event(&pool, now, "production", 100, 10).await;
    let pending = event(&pool, now, "production", 100, 100).await;
    delivery(&pool, now, pending, "pending", None).await;
    let in_flight = event(&pool, now, "staging", 100, 100).await;
    delivery(&pool, now, in_flight, "in_flight", None).await;
    let recently_dead = event(&pool, now, "production", 100, 100).await;
    let recent_dead_delivery = delivery(&pool, now, recently_dead, "dead", Some(10)).await;
    // A young event whose dead delivery expired: the delivery goes, the event stays.
    let young_with_dead = event(&pool, now, "production", 40, 40).await;
    let young_dead_delivery = delivery(&pool, now, young_with_dead, "dead", Some(35)).await;

    let old_quarantine = quarantined(&pool, now, 100, 95).await;
    let requarantined = quarantined(&pool, now, 100, 5).await;
    let young_quarantine = quarantined(&pool, now, 10, 10).await;
    let old_replay = replay(&pool, now, redelivered, 100).await;
    let young_replay = replay(&pool, now, redelivered, 1).await;

    let expected = PurgeCounts {
        events: 9,
        dead_deliveries: 2,
        quarantined: 1,
        replays: 1,
    };

    // The dry run counts exactly that and removes nothing.
    assert_eq!(pass(&pool, &policy, now, true).await, Pass::Done(expected));
    assert_eq!(crate::common::count(&pool, "events").await, 15);
    assert_eq!(crate::common::count(&pool, "deliveries").await, 6);

    assert_eq!(pass(&pool, &policy, now, false).await, Pass::Done(expected));

    let kept: BTreeSet<String> = [
        young,
        redelivered,
        pending,
        in_flight,
        recently_dead,
        young_with_dead,
    ]
    .map(s)
    .into();
    assert_eq!(ids(&pool, "SELECT id::text FROM events").await, kept);
    for gone in &expired {
        assert!(!kept.contains(&s(*gone)));
    }
    let deliveries = ids(&pool, "SELECT id::text FROM deliveries").await;
    assert!(deliveries.contains(&recent_dead_delivery.to_string()));
    for gone in [done_delivery, long_dead_delivery, young_dead_delivery] {
        assert!(
            !deliveries.contains(&gone.to_string()),
            "delivery {gone} should be gone"
        );
    }
    assert_eq!(deliveries.len(), 3, "pending, in flight, recently dead");
    assert_eq!(
        ids(&pool, "SELECT id::text FROM quarantine").await,
        [requarantined, young_quarantine].map(s).into()
    );
    let replays = ids(&pool, "SELECT idempotency_key FROM replays").await;
    assert!(!replays.contains(&old_replay));
    assert_eq!(replays, [young_replay].into());
    let _ = old_quarantine;

    // A second pass finds nothing more.
    assert_eq!(
        pass(&pool, &policy, now, false).await,
        Pass::Done(PurgeCounts::default())
    );
}

#[sqlx::test]
async fn events_inside_the_dedup_horizon_stay_whatever_events_days_says(pool: PgPool) {
    let now = Utc::now();
    let inside = event(&pool, now, "production", 20, 20).await;
    let outside = event(&pool, now, "production", 31, 31).await;
    let Pass::Done(counts) = pass(&pool, &policy(Some(10), None, 30), now, false).await else {
        panic!("the lock is free");
    };
    assert_eq!(counts.events, 1);
    assert_eq!(
        ids(&pool, "SELECT id::text FROM events").await,
        [inside.to_string()].into()
    );
    let _ = outside;
}

#[sqlx::test]
async fn with_no_period_set_nothing_expires(pool: PgPool) {
    let now = Utc::now();
    let old = event(&pool, now, "production", 1000, 1000).await;
    delivery(&pool, now, old, "dead", Some(1000)).await;
    let keep_all = policy(None, None, 30);
    assert!(!keep_all.is_active());
    assert_eq!(
        pass(&pool, &keep_all, now, false).await,
        Pass::Done(PurgeCounts::default())
    );
    assert_eq!(crate::common::count(&pool, "events").await, 1);
    assert_eq!(crate::common::count(&pool, "deliveries").await, 1);
}

#[sqlx::test]
async fn one_replica_at_a_time_runs_a_pass(pool: PgPool) {
    let now = Utc::now();
    event(&pool, now, "production", 100, 100).await;
    let policy = policy(Some(90), None, 30);

    // Another replica holds the lock: this one skips its turn and removes nothing.
    let mut other = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(lock_key(LOCK_NAME))
        .execute(&mut *other)
        .await
        .unwrap();
    assert_eq!(pass(&pool, &policy, now, false).await, Pass::Busy);
    assert_eq!(crate::common::count(&pool, "events").await, 1);

    // Once it lets go, the pass runs, and releases the lock in turn.
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(lock_key(LOCK_NAME))
        .execute(&mut *other)
        .await
        .unwrap();
    let Pass::Done(counts) = pass(&pool, &policy, now, false).await else {
        panic!("the lock was released");
    };
    assert_eq!(counts.events, 1);
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(lock_key(LOCK_NAME))
        .fetch_one(&mut *other)
        .await
        .unwrap();
    assert!(free, "a finished pass releases the lock");
}

/// `voltage-webhooks purge [--dry-run]`, as an operator runs it against this test's database.
#[sqlx::test]
async fn purge_command_reports_then_removes(pool: PgPool) {
    let now = Utc::now();
    event(&pool, now, "production", 100, 100).await;
    event(&pool, now, "production", 5, 5).await;
    let database_url = crate::common::url_of(&pool).await;
    let purge = |args: &[&str], events_days: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_voltage-webhooks"));
        command
            .env_remove("VOLTAGE_WEBHOOKS_CONFIG")
            .env("DATABASE_URL", &database_url)
            .arg("purge")
            .args(args);
        if let Some(days) = events_days {
            command.env("VOLTAGE_WEBHOOKS_RETENTION__EVENTS_DAYS", days);
        }
        let output = command.output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (ok, _, stderr) = purge(&[], None);
    assert!(!ok);
    assert!(stderr.contains("retention.events_days"), "{stderr}");

    let (ok, stdout, stderr) = purge(&["--dry-run"], Some("90"));
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("would remove: 1 events, 0 dead deliveries"),
        "{stdout}"
    );
    assert_eq!(crate::common::count(&pool, "events").await, 2);

    let (ok, stdout, stderr) = purge(&[], Some("90"));
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("removed: 1 events"), "{stdout}");
    assert_eq!(crate::common::count(&pool, "events").await, 1);
}

//! What the dispatcher promises beyond "delivered eventually": one handler never holds up another,
//! a delivery is never in two calls at once (tiny leases, two replicas, a worker killed mid-call),
//! a lost lease never dead-letters a delivery, and a retry starts at its due time, not at the next
//! poll.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::fanout::*;
use crate::common::process::*;
use crate::common::*;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;
use voltage_webhooks::event::Route;
use voltage_webhooks::handlers::{
    stack, HandlerError, HandlerRequest, RegisteredHandler, StackSettings,
};

/// Per event: calls running now, the most ever running at once, and calls in all.
type Flight = Arc<Mutex<HashMap<Uuid, (usize, usize, usize)>>>;

/// A handler taking `pause` per call (or until `release` fires, when given), with `concurrency`
/// slots, that counts how many calls of each event run at once.
fn watched(
    name: &str,
    concurrency: usize,
    timeout: Duration,
    pause: Duration,
    release: Option<Arc<Notify>>,
) -> (RegisteredHandler, Flight) {
    let flight: Flight = Arc::default();
    let seen = flight.clone();
    let service = tower::service_fn(move |request: HandlerRequest| {
        let (seen, release) = (seen.clone(), release.clone());
        async move {
            {
                let mut map = seen.lock().unwrap();
                let entry = map.entry(request.event_id).or_default();
                entry.0 += 1;
                entry.1 = entry.1.max(entry.0);
                entry.2 += 1;
            }
            match release {
                Some(release) => release.notified().await,
                None => tokio::time::sleep(pause).await,
            }
            seen.lock().unwrap().get_mut(&request.event_id).unwrap().0 -= 1;
            Ok::<(), HandlerError>(())
        }
    });
    let settings = StackSettings {
        timeout,
        concurrency,
    };
    let handler = RegisteredHandler {
        name: name.into(),
        route: Route::all(),
        retry: quick_retries(3),
        service: stack(name, settings, service),
    };
    (handler, flight)
}

async fn ingest_events(pool: &PgPool, set: &voltage_webhooks::handlers::HandlerSet, n: usize) {
    let app = app_routing(pool.clone(), set);
    for i in 0..n {
        let body = format!(r#"{{"type":"test","detail":{{"event":"created","data":"g-{i}"}}}}"#);
        let (status, body) = send(&app, production(body.as_bytes())).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[sqlx::test]
async fn a_hanging_handler_does_not_hold_up_a_healthy_one(pool: PgPool) {
    // `stuck` takes one call at a time and never finishes one until the test releases it.
    let release = Arc::new(Notify::new());
    let (stuck, stuck_flight) = watched(
        "stuck",
        1,
        Duration::from_secs(25),
        Duration::ZERO,
        Some(release.clone()),
    );
    let (healthy, healthy_flight) = watched(
        "healthy",
        8,
        Duration::from_secs(5),
        Duration::from_millis(1),
        None,
    );
    let set = set_of(vec![stuck, healthy]);
    ingest_events(&pool, &set, 60).await;

    let mut settings = fast_dispatch();
    settings.max_in_flight = 16;
    settings.lease = Duration::from_secs(30);
    let (stop, task) = start_dispatcher(pool.clone(), set, settings);
    wait_for(
        &pool,
        "SELECT count(*) = 60 FROM deliveries WHERE handler = 'healthy' AND status = 'succeeded'",
        Duration::from_secs(20),
    )
    .await;
    // The stuck handler was called once, and nothing else of it was claimed meanwhile.
    let claimed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE handler = 'stuck' AND status = 'in_flight'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(claimed, 1, "only the running call holds a lease");
    assert_eq!(stuck_flight.lock().unwrap().len(), 1);
    stop.cancel();
    release.notify_waiters();
    release.notify_one();
    task.await.unwrap();
    assert_eq!(healthy_flight.lock().unwrap().len(), 60);
}

#[sqlx::test]
async fn a_lease_barely_longer_than_the_timeout_never_lets_two_replicas_call_one_delivery_twice(
    pool: PgPool,
) {
    // The issue's case: lease 2 s, timeout 1 s, concurrency 1, 0.2 s a call, 3 attempts, and
    // every call succeeds: nothing may be called twice, and nothing may end dead.
    let flight: Flight = Arc::default();
    let mut running = Vec::new();
    let mut sets = Vec::new();
    for _ in 0..2 {
        let (handler, mine) = watched(
            "slow",
            1,
            Duration::from_secs(1),
            Duration::from_millis(200),
            None,
        );
        sets.push((set_of(vec![handler]), mine));
    }
    ingest_events(&pool, &sets[0].0, 24).await;
    for (set, _) in &sets {
        let mut settings = fast_dispatch();
        settings.lease = Duration::from_secs(2);
        running.push(start_replica_dispatcher(&pool, set.clone(), settings).await);
    }
    wait_for(
        &pool,
        "SELECT count(*) = 24 FROM deliveries WHERE status IN ('succeeded', 'dead')",
        Duration::from_secs(30),
    )
    .await;
    for (stop, task) in running {
        stop.cancel();
        task.await.unwrap();
    }
    for (_, mine) in &sets {
        let mut all = flight.lock().unwrap();
        for (id, (_, max, calls)) in mine.lock().unwrap().iter() {
            let entry = all.entry(*id).or_default();
            entry.1 = entry.1.max(*max);
            entry.2 += calls;
        }
    }
    let twice = flight
        .lock()
        .unwrap()
        .values()
        .filter(|&&(_, max, calls)| max > 1 || calls > 1)
        .count();
    assert_eq!(twice, 0, "events called more than once");
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'dead'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(dead, 0, "a delivery the sink accepted ended dead");
}

#[sqlx::test]
async fn a_worker_killed_mid_call_leaves_the_delivery_to_be_called_again_not_dead(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = options.connect_with(connect.clone()).await.unwrap();
    // The sink holds its first call open (the worker is killed meanwhile) and accepts the rest.
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let first_call = Arc::new(Notify::new());
    let (counted, arrived) = (calls.clone(), first_call.clone());
    let sink = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (counted, arrived) = (counted.clone(), arrived.clone());
            async move {
                if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    arrived.notify_one();
                    std::future::pending::<()>().await;
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let downstream = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, sink).await.unwrap() });
    // One attempt allowed: the killed call must not use it up into a dead letter.
    let toml = format!(
        "[dispatch]\npoll_interval_ms = 50\nlease_secs = 2\n\
         [[handlers]]\nname = \"ledger\"\nkind = \"http\"\nurl = \"{downstream}\"\n\
         secret = {{ value = \"{HANDLER_SECRET}\" }}\ntimeout_ms = 1000\nmax_attempts = 1\n"
    );
    let database = database_url(&connect);
    let mut first = Service::start_toml(free_port(), &database, &toml).await;
    let client = reqwest::Client::new();
    let body = br#"{"type":"test","detail":{"event":"created","data":"killed"}}"#;
    let request = signed_request(&client, &first.url(), body);
    assert_eq!(request.send().await.unwrap().status(), 200);
    first_call.notified().await;
    first.kill();

    let second = Service::start_toml(free_port(), &database, &toml).await;
    wait_for(
        &pool,
        "SELECT bool_and(status IN ('succeeded', 'dead')) FROM deliveries",
        Duration::from_secs(20),
    )
    .await;
    drop(second);
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, last_error FROM deliveries")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "succeeded", "{error:?}");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

fn signed_request(client: &reqwest::Client, base: &str, body: &[u8]) -> reqwest::RequestBuilder {
    let timestamp = now().to_string();
    let signature = voltage_webhooks::verify::sign(NEW_SECRET, body, &timestamp);
    client
        .post(format!("{base}/webhooks/production"))
        .header("content-type", "application/json")
        .header("x-voltage-webhook-id", PRODUCTION_WEBHOOK)
        .header("user-agent", "Voltage-Webhook-Client/1.0")
        .header("x-voltage-timestamp", timestamp)
        .header("x-voltage-signature", signature)
        .body(body.to_vec())
}

#[sqlx::test]
async fn a_retry_starts_at_its_due_time_not_at_the_next_poll(pool: PgPool) {
    // Four failures, each asking for 300 ms, then success; the poll interval is 2 s.
    let ended: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let times = ended.clone();
    let service = tower::service_fn(move |request: HandlerRequest| {
        let times = times.clone();
        async move {
            let started = Instant::now();
            let outcome = if request.attempt < 5 {
                Err(HandlerError::Retryable {
                    message: "busy".into(),
                    retry_after: Some(Duration::from_millis(300)),
                })
            } else {
                Ok(())
            };
            times.lock().unwrap().push((started, Instant::now()));
            outcome
        }
    });
    let settings = StackSettings {
        timeout: Duration::from_secs(5),
        concurrency: 4,
    };
    let handler = RegisteredHandler {
        name: "busy".into(),
        route: Route::all(),
        retry: quick_retries(5),
        service: stack("busy", settings, service),
    };
    let set = set_of(vec![handler]);
    ingest_events(&pool, &set, 1).await;
    let mut dispatch = fast_dispatch();
    dispatch.poll_interval = Duration::from_secs(2);
    let (stop, task) = start_dispatcher(pool.clone(), set, dispatch);
    wait_for(
        &pool,
        "SELECT bool_and(status = 'succeeded') FROM deliveries",
        Duration::from_secs(20),
    )
    .await;
    stop.cancel();
    task.await.unwrap();
    let times = ended.lock().unwrap();
    assert_eq!(times.len(), 5);
    // From the end of one call to the start of the next: the 300 ms asked for, plus the time to
    // write the outcome and claim again, never a poll interval.
    let late: Vec<u128> = times
        .windows(2)
        .map(|w| {
            (w[1].0 - w[0].1)
                .saturating_sub(Duration::from_millis(300))
                .as_millis()
        })
        .collect();
    assert!(late.iter().all(|&ms| ms < 100), "late by {late:?} ms");
}

/// A dispatcher with `dispatch` over one scripted `ledger` handler, a transaction opened on its
/// own connection, then (after `head_start`) one event ingested and delivered: rows the open
/// transaction inserts later are due before the one the lane took, as a group-commit batch that
/// started before another and committed after it.
async fn claimed_after_an_open_transaction(
    pool: &PgPool,
    dispatch: voltage_webhooks::outbox::DispatchSettings,
    head_start: Duration,
) -> (
    Calls,
    sqlx::Transaction<'static, sqlx::Postgres>,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let (handler, calls) = scripted("ledger", Route::all(), quick_retries(3), |_, _| Ok(()));
    let set = set_of(vec![handler]);
    let (stop, task) = start_dispatcher(pool.clone(), set.clone(), dispatch);
    let mut early = pool.begin().await.unwrap();
    sqlx::query("SELECT now()")
        .execute(&mut *early)
        .await
        .unwrap();
    tokio::time::sleep(head_start).await;
    ingest_events(pool, &set, 1).await;
    wait_for(
        pool,
        "SELECT bool_and(status = 'succeeded') FROM deliveries",
        Duration::from_secs(10),
    )
    .await;
    (calls, early, stop, task)
}

/// Inserts `n` events routed to `handler`, with their pending deliveries, in `early`, commits it
/// and wakes the dispatchers, as a batch of ingest does.
async fn commit_late(
    pool: &PgPool,
    mut early: sqlx::Transaction<'static, sqlx::Postgres>,
    handler: &str,
    n: i32,
) {
    sqlx::query(
        "WITH e AS (INSERT INTO events (id, environment, dedup_key, event_type, event, raw_body, source) \
             SELECT gen_random_uuid(), 'production', sha256(('late' || i)::bytea), 'test', 'created', \
                 '{}'::bytea, 'reconciliation' FROM generate_series(1, $1) AS i RETURNING id) \
         INSERT INTO deliveries (event_id, handler) SELECT id, $2 FROM e",
    )
    .bind(n)
    .bind(handler)
    .execute(&mut *early)
    .await
    .unwrap();
    early.commit().await.unwrap();
    sqlx::query("SELECT pg_notify('voltage_deliveries', '')")
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test]
async fn a_delivery_committed_after_a_younger_one_was_claimed_is_claimed_at_once(pool: PgPool) {
    // The poll interval is 30 s: only the NOTIFY of the late commit can bring its row in time.
    let mut dispatch = fast_dispatch();
    dispatch.poll_interval = Duration::from_secs(30);
    let (calls, early, stop, task) =
        claimed_after_an_open_transaction(&pool, dispatch, Duration::from_millis(50)).await;

    commit_late(&pool, early, "ledger", 1).await;
    wait_for(
        &pool,
        "SELECT count(*) = 2 AND bool_and(status = 'succeeded') FROM deliveries",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(calls.len(), 2);
    stop.cancel();
    task.await.unwrap();
}

#[sqlx::test]
async fn old_deliveries_found_by_the_scan_from_the_oldest_drain_at_once_not_a_batch_per_poll(
    pool: PgPool,
) {
    // Claims of 4 rows; 24 rows older than anything the claim resumes from, so only the scan from
    // the oldest (each 1 s poll) finds them: six polls' worth if it took a batch per poll.
    let mut dispatch = fast_dispatch();
    dispatch.poll_interval = Duration::from_secs(1);
    dispatch.batch_size = 4;
    let (calls, early, stop, task) =
        claimed_after_an_open_transaction(&pool, dispatch, Duration::from_millis(1500)).await;

    commit_late(&pool, early, "ledger", 24).await;
    let committed = Instant::now();
    wait_for(
        &pool,
        "SELECT count(*) = 25 AND bool_and(status = 'succeeded') FROM deliveries",
        Duration::from_secs(20),
    )
    .await;
    let took = committed.elapsed();
    assert!(
        took < Duration::from_millis(3_000),
        "24 old rows took {took:?}: the scan from the oldest took a batch per poll interval"
    );
    assert_eq!(calls.len(), 25);
    stop.cancel();
    task.await.unwrap();
}

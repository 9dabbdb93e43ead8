//! Durable fan-out: routing into the outbox, retries, dead letters, Retry-After, leases, and two
//! dispatchers sharing one database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::fanout::*;
use crate::common::*;
use sqlx::PgPool;
use uuid::Uuid;
use voltage_webhooks::event::{EventFilter, Route};
use voltage_webhooks::handlers::HandlerError;
use voltage_webhooks::store::{ClaimRequest, Completion, Next, Store};

fn route(environments: Option<&[&str]>, filters: &[&str]) -> Route {
    Route {
        environments: environments.map(|e| e.iter().map(|s| s.to_string()).collect()),
        filters: filters
            .iter()
            .map(|f| EventFilter::parse(f).unwrap())
            .collect(),
    }
}

fn ok(_: usize, _: &voltage_webhooks::handlers::HandlerRequest) -> Result<(), HandlerError> {
    Ok(())
}

async fn ingest(app: &axum::Router, request: axum::http::Request<axum::body::Body>) -> Uuid {
    let (status, body) = send(app, request).await;
    assert_eq!(status, 200, "{body}");
    body["event_id"].as_str().unwrap().parse().unwrap()
}

#[sqlx::test]
async fn each_new_event_is_enqueued_for_exactly_the_handlers_whose_route_matches(pool: PgPool) {
    let (ledger, _) = scripted(
        "ledger",
        route(Some(&["production"]), &["receive.completed"]),
        quick_retries(3),
        ok,
    );
    let (audit, _) = scripted("audit", route(None, &["*"]), quick_retries(3), ok);
    let (alerts, _) = scripted("alerts", route(None, &["*.failed"]), quick_retries(3), ok);
    let set = set_of(vec![ledger, audit, alerts]);
    let app = app_routing(pool.clone(), &set);

    let completed = ingest(&app, production(&fixture("receive-completed-bolt11.json"))).await;
    let failed = ingest(&app, staging(&fixture("send-failed-onchain.json"))).await;
    let generated = ingest(&app, staging(&fixture("receive-generated-bolt11.json"))).await;

    let handlers_of = |id: Uuid| {
        let pool = pool.clone();
        async move {
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT handler FROM deliveries WHERE event_id = $1 ORDER BY handler",
            )
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap();
            names
        }
    };
    assert_eq!(handlers_of(completed).await, ["audit", "ledger"]);
    assert_eq!(handlers_of(failed).await, ["alerts", "audit"]);
    assert_eq!(handlers_of(generated).await, ["audit"]);
}

#[sqlx::test]
async fn a_duplicate_webhook_creates_no_new_deliveries(pool: PgPool) {
    let (audit, _) = scripted("audit", Route::all(), quick_retries(3), ok);
    let set = set_of(vec![audit]);
    let app = app_routing(pool.clone(), &set);
    let body = fixture("receive-completed-bolt11.json");
    ingest(&app, production(&body)).await;
    ingest(
        &app,
        delivery(
            "production",
            PRODUCTION_SECOND_WEBHOOK,
            SECOND_SECRET,
            &body,
            now(),
        ),
    )
    .await;
    assert_eq!(count(&pool, "deliveries").await, 1);
}

#[sqlx::test]
async fn a_failing_handler_is_retried_until_it_succeeds(pool: PgPool) {
    let (flaky, calls) = scripted("flaky", Route::all(), quick_retries(5), |n, _| {
        if n < 3 {
            Err(HandlerError::retryable(format!("down #{n}")))
        } else {
            Ok(())
        }
    });
    let set = set_of(vec![flaky]);
    let id = ingest(
        &app_routing(pool.clone(), &set),
        production(&fixture("test-created.json")),
    )
    .await;
    dispatch_until(
        &pool,
        set,
        "SELECT bool_and(status = 'succeeded') FROM deliveries",
    )
    .await;

    assert_eq!(calls.attempts_of(id), [1, 2, 3]);
    let (status, attempts, error) = states(&pool).await.remove("flaky").unwrap();
    assert_eq!((status.as_str(), attempts, error), ("succeeded", 3, None));
}

#[sqlx::test]
async fn a_delivery_is_dead_after_max_attempts_with_its_last_error(pool: PgPool) {
    let (down, calls) = scripted("down", Route::all(), quick_retries(3), |n, _| {
        Err(HandlerError::retryable(format!("still down #{n}")))
    });
    let set = set_of(vec![down]);
    ingest(
        &app_routing(pool.clone(), &set),
        production(&fixture("test-created.json")),
    )
    .await;
    let (stop, task) = start_dispatcher(pool.clone(), set, fast_dispatch());
    wait_for(
        &pool,
        "SELECT bool_and(status = 'dead') FROM deliveries",
        Duration::from_secs(20),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await; // a dead delivery must stay untouched
    stop.cancel();
    task.await.unwrap();

    assert_eq!(calls.len(), 3);
    let (_, attempts, error) = states(&pool).await.remove("down").unwrap();
    assert_eq!(attempts, 3);
    let error = error.unwrap();
    assert!(
        error.contains("gave up after 3 attempts") && error.contains("still down #3"),
        "{error}"
    );
}

#[sqlx::test]
async fn a_permanent_failure_is_dead_at_once(pool: PgPool) {
    let (strict, calls) = scripted("strict", Route::all(), quick_retries(10), |_, _| {
        Err(HandlerError::permanent("unknown account"))
    });
    let set = set_of(vec![strict]);
    ingest(
        &app_routing(pool.clone(), &set),
        production(&fixture("test-created.json")),
    )
    .await;
    dispatch_until(
        &pool,
        set,
        "SELECT bool_and(status = 'dead') FROM deliveries",
    )
    .await;
    assert_eq!(calls.len(), 1);
    let (_, attempts, error) = states(&pool).await.remove("strict").unwrap();
    assert_eq!(attempts, 1);
    assert!(error.unwrap().contains("unknown account"));
}

#[sqlx::test]
async fn retry_after_from_the_handler_replaces_the_backoff(pool: PgPool) {
    // The backoff alone would retry within 5 ms; the handler asks for 3 s.
    let (busy, _) = scripted("busy", Route::all(), quick_retries(5), |_, _| {
        Err(HandlerError::Retryable {
            message: "429".into(),
            retry_after: Some(Duration::from_secs(3)),
        })
    });
    let set = set_of(vec![busy]);
    ingest(
        &app_routing(pool.clone(), &set),
        production(&fixture("test-created.json")),
    )
    .await;
    dispatch_until(
        &pool,
        set,
        "SELECT bool_and(attempts = 1 AND status = 'pending') FROM deliveries",
    )
    .await;
    let wait: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM next_attempt_at - updated_at)::float8 FROM deliveries",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        (wait - 3.0).abs() < 0.01,
        "scheduled {wait} s after the failure"
    );
}

#[sqlx::test]
async fn a_delivery_held_by_a_dead_worker_is_taken_again_after_its_lease(pool: PgPool) {
    let (audit, calls) = scripted("audit", Route::all(), quick_retries(5), ok);
    let set = set_of(vec![audit]);
    let id = ingest(
        &app_routing(pool.clone(), &set),
        production(&fixture("test-created.json")),
    )
    .await;

    // A worker claims the delivery with a 2 s lease, then dies without a word.
    let store = Store::new(pool.clone());
    let dead_token = Uuid::new_v4();
    let claim = ClaimRequest {
        handler: "audit",
        from: None,
        limit: 10,
        lease: Duration::from_secs(2),
        token: dead_token,
        worker: "dead-worker",
    };
    let claimed = store.claim(&claim).await.unwrap();
    assert_eq!(claimed.len(), 1);

    let (stop, task) = start_dispatcher(pool.clone(), set, fast_dispatch());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(calls.len(), 0, "taken while the lease was still held");
    wait_for(
        &pool,
        "SELECT bool_and(status = 'succeeded') FROM deliveries",
        Duration::from_secs(20),
    )
    .await;
    stop.cancel();
    task.await.unwrap();

    assert_eq!(
        calls.attempts_of(id),
        [2],
        "the dead worker's attempt counts"
    );
    // The dead worker waking up cannot overwrite the outcome: completions are fenced on the lease.
    let late = store
        .complete(&[Completion {
            delivery_id: claimed[0].delivery_id,
            token: dead_token,
            attempt: 1,
            started_at: chrono::Utc::now(),
            duration: Duration::ZERO,
            outcome: "failed",
            http_status: None,
            error: Some("late".into()),
            worker: "dead-worker".into(),
            next: Next::RetryAfter(Duration::ZERO, "late".into()),
        }])
        .await
        .unwrap()
        .contains(&claimed[0].delivery_id);
    assert!(!late);
    assert_eq!(states(&pool).await["audit"].0, "succeeded");
    // Its late outcome completes the history row the sweep wrote for its lease, and adds none.
    let history: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT outcome, error FROM delivery_attempts WHERE lease_token = $1")
            .bind(dead_token)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(history, [("failed".to_owned(), Some("late".to_owned()))]);
}

/// Per event: calls running now, the most ever running at once, and calls in all.
type InFlight = Arc<Mutex<HashMap<Uuid, (usize, usize, usize)>>>;

#[sqlx::test]
async fn two_dispatchers_deliver_a_thousand_events_exactly_once_and_never_concurrently(
    pool: PgPool,
) {
    let in_flight: InFlight = Arc::default();
    let mut worker_calls = Vec::new();
    let mut sets = Vec::new();
    for _ in 0..2 {
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (flight, mine) = (in_flight.clone(), counter.clone());
        let service =
            tower::service_fn(move |request: voltage_webhooks::handlers::HandlerRequest| {
                let flight = flight.clone();
                mine.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    {
                        let mut map = flight.lock().unwrap();
                        let entry = map.entry(request.event_id).or_default();
                        entry.0 += 1;
                        entry.1 = entry.1.max(entry.0);
                        entry.2 += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    flight.lock().unwrap().get_mut(&request.event_id).unwrap().0 -= 1;
                    Ok::<(), HandlerError>(())
                }
            });
        let settings = voltage_webhooks::handlers::StackSettings {
            timeout: Duration::from_secs(5),
            concurrency: 64,
        };
        let handler = voltage_webhooks::handlers::RegisteredHandler {
            name: "audit".into(),
            route: Route::all(),
            retry: quick_retries(3),
            service: voltage_webhooks::handlers::stack("audit", settings, service),
        };
        sets.push(set_of(vec![handler]));
        worker_calls.push(counter);
    }

    let app = app_routing(pool.clone(), &sets[0]);
    for i in 0..1000 {
        let body = format!(r#"{{"type":"test","detail":{{"event":"created","data":"load-{i}"}}}}"#);
        ingest(&app, production(body.as_bytes())).await;
    }
    let mut running = Vec::new();
    for set in &sets {
        running.push(start_replica_dispatcher(&pool, set.clone(), fast_dispatch()).await);
    }
    wait_for(
        &pool,
        "SELECT count(*) = 1000 FROM deliveries WHERE status = 'succeeded'",
        Duration::from_secs(120),
    )
    .await;
    for (stop, task) in running {
        stop.cancel();
        task.await.unwrap();
    }

    let map = in_flight.lock().unwrap();
    assert_eq!(map.len(), 1000);
    assert!(
        map.values().all(|&(_, max, calls)| max == 1 && calls == 1),
        "an event was called twice or concurrently"
    );
    let per_worker: Vec<usize> = worker_calls
        .iter()
        .map(|c| c.load(std::sync::atomic::Ordering::SeqCst))
        .collect();
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "both dispatchers took work: {per_worker:?}"
    );
    assert_eq!(per_worker.iter().sum::<usize>(), 1000);
}

#[sqlx::test]
async fn a_new_event_wakes_an_idle_dispatcher_without_waiting_for_the_poll(pool: PgPool) {
    let (audit, calls) = scripted("audit", Route::all(), quick_retries(3), ok);
    let set = set_of(vec![audit]);
    let mut settings = fast_dispatch();
    settings.poll_interval = Duration::from_secs(60); // only a NOTIFY can wake it within the test
    let (stop, task) = start_dispatcher(pool.clone(), set.clone(), settings);
    wait_for(
        &pool,
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await; // past the first, empty claim
    let id = ingest(
        &app_routing(pool.clone(), &set),
        production(&fixture("test-created.json")),
    )
    .await;
    wait_for(
        &pool,
        "SELECT bool_and(status = 'succeeded') FROM deliveries",
        Duration::from_secs(10),
    )
    .await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(calls.attempts_of(id), [1]);
}

#[sqlx::test]
async fn a_delivery_whose_notification_was_lost_is_found_by_polling(pool: PgPool) {
    let (audit, calls) = scripted("audit", Route::all(), quick_retries(3), ok);
    let set = set_of(vec![audit]);
    // The event is stored for no handler, then its outbox row appears with no NOTIFY at all.
    let id = ingest(
        &app(pool.clone()),
        production(&fixture("test-created.json")),
    )
    .await;
    sqlx::query("INSERT INTO deliveries (event_id, handler) VALUES ($1, 'audit')")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    dispatch_until(
        &pool,
        set,
        "SELECT bool_and(status = 'succeeded') FROM deliveries",
    )
    .await;
    assert_eq!(calls.attempts_of(id), [1]);
}

#[sqlx::test]
async fn a_delivery_due_before_the_last_one_claimed_is_still_found(pool: PgPool) {
    // The lane's claims start at the last due time it took; a row that commits behind it (a long
    // transaction) is found by the scan from the oldest, once per poll interval.
    let (audit, calls) = scripted("audit", Route::all(), quick_retries(3), ok);
    let set = set_of(vec![audit]);
    let first = ingest(
        &app_routing(pool.clone(), &set),
        production(&fixture("test-created.json")),
    )
    .await;
    let late = ingest(
        &app(pool.clone()),
        production(&fixture("receive-completed-bolt11.json")),
    )
    .await;
    let (stop, task) = start_dispatcher(pool.clone(), set, fast_dispatch());
    wait_for(
        &pool,
        "SELECT bool_and(status = 'succeeded') FROM deliveries",
        Duration::from_secs(10),
    )
    .await;
    sqlx::query(
        "INSERT INTO deliveries (event_id, handler, next_attempt_at) VALUES ($1, 'audit', now() - interval '1 hour')",
    )
    .bind(late)
    .execute(&pool)
    .await
    .unwrap();
    wait_for(
        &pool,
        "SELECT count(*) = 2 FROM deliveries WHERE status = 'succeeded'",
        Duration::from_secs(10),
    )
    .await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(calls.attempts_of(first), [1]);
    assert_eq!(calls.attempts_of(late), [1]);
}

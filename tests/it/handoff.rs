//! The hand-off: a new event's delivery goes into the outbox already claimed by the process that
//! received it, when its handler can start a call now, and is called without a claim statement;
//! a handler without a free slot gets its delivery pending, claimed later as before. Either way a
//! delivery is called once and never twice at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::fanout::*;
use crate::common::*;
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use voltage_webhooks::app::app_state_handing_off;
use voltage_webhooks::event::Route;
use voltage_webhooks::handlers::{
    stack, HandlerError, HandlerRequest, HandlerSet, RegisteredHandler, StackSettings,
};
use voltage_webhooks::http::router;
use voltage_webhooks::outbox::Dispatcher;
use voltage_webhooks::store::Store;

/// Calls started, calls running now, and the most ever running at once.
#[derive(Clone, Default)]
struct Seen {
    started: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

/// A handler with `concurrency` slots whose calls each wait for a permit of `gate`.
fn gated(concurrency: usize, gate: Arc<Semaphore>) -> (RegisteredHandler, Seen) {
    let seen = Seen::default();
    let counted = seen.clone();
    let service = tower::service_fn(move |_request: HandlerRequest| {
        let (seen, gate) = (counted.clone(), gate.clone());
        async move {
            seen.started.fetch_add(1, Ordering::SeqCst);
            let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
            seen.most.fetch_max(now, Ordering::SeqCst);
            gate.acquire().await.unwrap().forget();
            seen.running.fetch_sub(1, Ordering::SeqCst);
            Ok::<(), HandlerError>(())
        }
    });
    let settings = StackSettings {
        timeout: Duration::from_secs(10),
        concurrency,
    };
    let handler = RegisteredHandler {
        name: "ledger".into(),
        route: Route::all(),
        retry: quick_retries(3),
        service: stack("ledger", settings, service),
    };
    (handler, seen)
}

/// The ingest app and a dispatcher in one process, as `serve` runs them, the dispatcher polling
/// rarely: what it does between polls comes from the hand-off or a NOTIFY.
async fn serve_in_process(
    pool: &PgPool,
    set: Arc<HandlerSet>,
) -> (axum::Router, CancellationToken, tokio::task::JoinHandle<()>) {
    let mut settings = fast_dispatch();
    settings.poll_interval = Duration::from_secs(30);
    let dispatcher = Dispatcher::new(Store::new(pool.clone()), set.clone(), settings);
    let handoff = dispatcher.handoff();
    let stop = CancellationToken::new();
    let task = tokio::spawn(dispatcher.run(stop.clone()));
    while !handoff.is_running() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The lane's first claim (of nothing) is over; it sleeps until a NOTIFY or the poll.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let config = config();
    let (registry, _) = config.resolve().unwrap();
    let state = app_state_handing_off(&config, registry, set.routing(), pool.clone(), handoff);
    (router(state), stop, task)
}

async fn ingest(app: &axum::Router, data: &str) -> Uuid {
    let body = format!(r#"{{"type":"test","detail":{{"event":"created","data":"{data}"}}}}"#);
    let (status, answer) = send(app, production(body.as_bytes())).await;
    assert_eq!(status, 200, "{answer}");
    answer["event_id"].as_str().unwrap().parse().unwrap()
}

/// `(status, attempts, written by the event's own transaction and never since, leased_by)`.
async fn delivery_of(pool: &PgPool, event: Uuid) -> (String, i32, bool, Option<String>) {
    sqlx::query_as(
        "SELECT d.status, d.attempts, d.xmin::text = e.xmin::text, d.leased_by \
         FROM deliveries d JOIN events e ON e.id = d.event_id WHERE e.id = $1",
    )
    .bind(event)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn wait_until(what: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !what() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[sqlx::test]
async fn a_new_events_delivery_goes_in_claimed_and_is_called_without_a_claim(pool: PgPool) {
    let gate = Arc::new(Semaphore::new(0));
    let (handler, seen) = gated(4, gate.clone());
    let (app, stop, task) = serve_in_process(&pool, set_of(vec![handler])).await;

    let event = ingest(&app, "handed-off").await;
    wait_until(|| seen.started.load(Ordering::SeqCst) == 1).await;
    let (status, attempts, same_transaction, leased_by) = delivery_of(&pool, event).await;
    assert_eq!((status.as_str(), attempts), ("in_flight", 1));
    assert!(
        same_transaction,
        "the running delivery's row was written by a claim, not by the event's insert"
    );

    gate.add_permits(1);
    wait_for(
        &pool,
        "SELECT bool_and(status = 'succeeded') FROM deliveries",
        Duration::from_secs(10),
    )
    .await;
    let history: Vec<(i32, String, String)> =
        sqlx::query_as("SELECT attempt, outcome, worker FROM delivery_attempts")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        history,
        vec![(1, "succeeded".to_owned(), leased_by.unwrap())],
        "one attempt, recorded as any other, by the worker that took the delivery"
    );
    assert_eq!(seen.started.load(Ordering::SeqCst), 1);
    stop.cancel();
    task.await.unwrap();
}

#[sqlx::test]
async fn a_handler_without_a_free_slot_gets_its_delivery_pending_and_called_once_later(
    pool: PgPool,
) {
    let gate = Arc::new(Semaphore::new(0));
    let (handler, seen) = gated(1, gate.clone());
    let (app, stop, task) = serve_in_process(&pool, set_of(vec![handler])).await;

    let first = ingest(&app, "first").await;
    wait_until(|| seen.started.load(Ordering::SeqCst) == 1).await;
    let second = ingest(&app, "second").await;
    let (status, attempts, same_transaction, _) = delivery_of(&pool, second).await;
    assert_eq!(
        (status.as_str(), attempts, same_transaction),
        ("pending", 0, true),
        "the handler's only slot is busy: its delivery waits, unclaimed, and no lease runs"
    );
    assert_eq!(delivery_of(&pool, first).await.0, "in_flight");

    gate.add_permits(2);
    wait_for(
        &pool,
        "SELECT count(*) = 2 AND bool_and(status = 'succeeded') FROM deliveries",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(seen.started.load(Ordering::SeqCst), 2, "each called once");
    assert_eq!(
        seen.most.load(Ordering::SeqCst),
        1,
        "never beyond its one slot"
    );
    stop.cancel();
    task.await.unwrap();
}

#[sqlx::test]
async fn a_duplicate_gives_back_the_slot_reserved_for_it(pool: PgPool) {
    // One slot: were it kept by the duplicates' reservations, the next event would wait forever.
    let gate = Arc::new(Semaphore::new(1));
    let (handler, seen) = gated(1, gate.clone());
    let (app, stop, task) = serve_in_process(&pool, set_of(vec![handler])).await;

    let body = br#"{"type":"test","detail":{"event":"created","data":"again"}}"#;
    for _ in 0..4 {
        let (status, answer) = send(&app, production(body)).await;
        assert_eq!(status, 200, "{answer}");
    }
    wait_for(
        &pool,
        "SELECT bool_and(status = 'succeeded') FROM deliveries",
        Duration::from_secs(10),
    )
    .await;
    let next = ingest(&app, "next").await;
    wait_until(|| seen.started.load(Ordering::SeqCst) == 2).await;
    let (status, _, same_transaction, _) = delivery_of(&pool, next).await;
    assert_eq!((status.as_str(), same_transaction), ("in_flight", true));

    gate.add_permits(1);
    wait_for(
        &pool,
        "SELECT count(*) = 2 AND bool_and(status = 'succeeded') FROM deliveries",
        Duration::from_secs(10),
    )
    .await;
    stop.cancel();
    task.await.unwrap();
}

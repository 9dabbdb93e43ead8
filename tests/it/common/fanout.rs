//! Support for fan-out tests: scripted handlers, a dispatcher running in the test, and waiting
//! for delivery states.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use voltage_webhooks::event::Route;
use voltage_webhooks::handlers::{
    stack, HandlerError, HandlerRequest, HandlerSet, RegisteredHandler, StackSettings,
};
use voltage_webhooks::http::router;
use voltage_webhooks::outbox::{DispatchSettings, Dispatcher};
use voltage_webhooks::retry::RetryPolicy;
use voltage_webhooks::store::Store;

/// Every call a scripted handler received, in order.
#[derive(Clone, Default)]
pub struct Calls(pub Arc<Mutex<Vec<HandlerRequest>>>);

impl Calls {
    pub fn attempts_of(&self, event_id: Uuid) -> Vec<u32> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.event_id == event_id)
            .map(|r| r.attempt)
            .collect()
    }
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A handler whose outcome for the n-th call (from 1) is decided by `script`.
pub fn scripted<F>(
    name: &str,
    route: Route,
    retry: RetryPolicy,
    script: F,
) -> (RegisteredHandler, Calls)
where
    F: Fn(usize, &HandlerRequest) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    let calls = Calls::default();
    let recorded = calls.clone();
    let script = Arc::new(script);
    let service = tower::service_fn(move |request: HandlerRequest| {
        let n = {
            let mut all = recorded.0.lock().unwrap();
            all.push(request.clone());
            all.len()
        };
        let outcome = script(n, &request);
        async move { outcome }
    });
    let settings = StackSettings {
        timeout: Duration::from_secs(5),
        concurrency: 64,
    };
    let handler = RegisteredHandler {
        name: name.into(),
        route,
        retry,
        service: stack(name, settings, service),
    };
    (handler, calls)
}

pub fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
    }
}

pub fn set_of(handlers: Vec<RegisteredHandler>) -> Arc<HandlerSet> {
    let mut set = HandlerSet::default();
    for handler in handlers {
        set.register(handler).unwrap();
    }
    Arc::new(set)
}

/// The ingest app, routing to `handlers`.
pub fn app_routing(pool: PgPool, handlers: &HandlerSet) -> Router {
    let mut state = super::state(pool);
    state.intake.routing = Arc::new(handlers.routing());
    router(state)
}

pub fn fast_dispatch() -> DispatchSettings {
    DispatchSettings {
        batch_size: 32,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(25),
        max_in_flight: 32,
        shutdown_deadline: Duration::from_secs(5),
    }
}

/// A dispatcher running until the returned token is cancelled.
pub fn start_dispatcher(
    pool: PgPool,
    handlers: Arc<HandlerSet>,
    settings: DispatchSettings,
) -> (CancellationToken, JoinHandle<()>) {
    let stop = CancellationToken::new();
    let task =
        tokio::spawn(Dispatcher::new(Store::new(pool), handlers, settings).run(stop.clone()));
    (stop, task)
}

/// A dispatcher with a pool of its own, as a dispatcher in a separate replica would have.
pub async fn start_replica_dispatcher(
    pool: &PgPool,
    handlers: Arc<HandlerSet>,
    settings: DispatchSettings,
) -> (CancellationToken, JoinHandle<()>) {
    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    start_dispatcher(own, handlers, settings)
}

/// Polls until `sql` (a query returning one boolean) is true, or panics after `limit`.
pub async fn wait_for(pool: &PgPool, sql: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let done: bool = sqlx::query_scalar(sql).fetch_one(pool).await.unwrap();
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `(status, attempts, last_error)` of every delivery, keyed by handler.
pub async fn states(pool: &PgPool) -> HashMap<String, (String, i32, Option<String>)> {
    let rows: Vec<(String, String, i32, Option<String>)> =
        sqlx::query_as("SELECT handler, status, attempts, last_error FROM deliveries")
            .fetch_all(pool)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(h, s, a, e)| (h, (s, a, e)))
        .collect()
}

/// Runs a dispatcher over `handlers` until `sql` (one boolean) holds, then stops it cleanly.
pub async fn dispatch_until(pool: &PgPool, handlers: Arc<HandlerSet>, sql: &str) {
    let (stop, task) = start_dispatcher(pool.clone(), handlers, fast_dispatch());
    wait_for(pool, sql, Duration::from_secs(20)).await;
    stop.cancel();
    task.await.unwrap();
}

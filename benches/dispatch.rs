//! Dispatcher benchmark: events per second through the dispatcher to a no-op handler, and
//! commit-to-handler latency (from `insert_event` returning, i.e. after the commit, to the
//! handler's call) at a steady ingest rate.
//!
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench dispatch`
//! Creates and drops its own database. Options (env): BENCH_EVENTS (20000), BENCH_RATE (200/s),
//! BENCH_LATENCY_EVENTS (2000).

mod common;

use common::env_or;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;
use voltage_webhooks::event::Route;
use voltage_webhooks::event::{DedupKey, Payload};
use voltage_webhooks::handlers::{
    stack, HandlerError, HandlerRequest, HandlerSet, RegisteredHandler, StackSettings,
};
use voltage_webhooks::outbox::{DispatchSettings, Dispatcher};
use voltage_webhooks::retry::RetryPolicy;
use voltage_webhooks::store::{NewEvent, Store};
use voltage_webhooks::verify::Verified;

type Committed = Arc<Mutex<HashMap<Uuid, Instant>>>;

async fn insert(store: &Store, i: usize) -> Uuid {
    let body = format!(
        r#"{{"type":"test","detail":{{"event":"created","data":"bench-{i}-{}"}}}}"#,
        Uuid::new_v4()
    );
    let payload = Payload::parse(body.as_bytes()).expect("valid body");
    let verified = Verified {
        webhook_id: Uuid::nil(),
        secret_index: 0,
        timestamp: 0,
    };
    let handlers = ["noop".to_owned()];
    let new = NewEvent {
        environment: "production",
        dedup_key: DedupKey::new("production", &payload, body.as_bytes()),
        payload: &payload,
        raw_body: body.as_bytes(),
        verified: &verified,
        handlers: &handlers,
    };
    store.insert_event(&new).await.expect("insert").event_id()
}

fn handlers(committed: Committed, latencies: Arc<Mutex<Vec<Duration>>>) -> Arc<HandlerSet> {
    let service = tower::service_fn(move |request: HandlerRequest| {
        if let Some(at) = committed.lock().expect("lock").get(&request.event_id) {
            latencies.lock().expect("lock").push(at.elapsed());
        }
        async { Ok::<(), HandlerError>(()) }
    });
    let mut set = HandlerSet::default();
    let settings = StackSettings {
        timeout: Duration::from_secs(5),
        concurrency: 1024,
    };
    set.register(RegisteredHandler {
        name: "noop".into(),
        route: Route::all(),
        retry: RetryPolicy::default(),
        service: stack("noop", settings, service),
    })
    .expect("register");
    Arc::new(set)
}

async fn pending(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status <> 'succeeded'")
        .fetch_one(pool)
        .await
        .expect("count")
}

async fn throughput(
    store: &Store,
    set: Arc<HandlerSet>,
    settings: DispatchSettings,
    events: usize,
) {
    let producers: Vec<_> = (0..16)
        .map(|p| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (p..events).step_by(16) {
                    insert(&store, i).await;
                }
            })
        })
        .collect();
    for p in producers {
        p.await.expect("producer");
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(Dispatcher::new(store.clone(), set, settings).run(stop.clone()));
    while pending(store.pool()).await > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    task.await.expect("dispatcher");
    println!(
        "throughput: {events} deliveries in {:.2} s = {:.0} events/s (batch {}, max_in_flight {})",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        settings.batch_size,
        settings.max_in_flight
    );
}

async fn latency(
    store: &Store,
    committed: Committed,
    latencies: Arc<Mutex<Vec<Duration>>>,
    settings: DispatchSettings,
) {
    let (events, rate) = (
        env_or("BENCH_LATENCY_EVENTS", 2000),
        env_or("BENCH_RATE", 200),
    );
    let set = handlers(committed.clone(), latencies.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(Dispatcher::new(store.clone(), set, settings).run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await; // LISTEN established
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    for i in 0..events {
        tick.tick().await;
        let store = store.clone();
        let committed = committed.clone();
        tokio::spawn(async move {
            let id = insert(&store, i).await;
            committed.lock().expect("lock").insert(id, Instant::now());
        });
    }
    while pending(store.pool()).await > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    task.await.expect("dispatcher");
    let mut all = latencies.lock().expect("lock").clone();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    println!(
        "commit-to-handler latency at {rate} events/s over {} events: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        all[all.len() - 1].as_secs_f64() * 1e3
    );
}

fn main() -> anyhow::Result<()> {
    if !common::under_cargo_bench("dispatch") {
        return Ok(());
    }
    common::with_scratch_database(24, |pool| async move {
        let store = Store::new(pool);
        let settings = DispatchSettings {
            batch_size: 128,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            max_in_flight: 256,
            shutdown_deadline: Duration::from_secs(5),
        };
        let committed: Committed = Arc::default();
        let latencies = Arc::new(Mutex::new(Vec::new()));
        throughput(
            &store,
            handlers(committed.clone(), Arc::new(Mutex::new(Vec::new()))),
            settings,
            env_or("BENCH_EVENTS", 20_000),
        )
        .await;
        latency(&store, committed, latencies, settings).await;
        Ok(())
    })
}

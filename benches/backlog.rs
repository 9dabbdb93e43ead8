//! Backlog drain: a handler was down while a million deliveries piled up; it comes back while
//! ingest goes on. Prints the drain rate per hundred thousand deliveries, first to last, so a claim
//! whose cost grows with the backlog shows as a rate that starts low and climbs.
//!
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench backlog`
//! Creates and drops its own database. Options (env): BENCH_BACKLOG (1000000), BENCH_INGEST_RATE
//! (200 events/s during the drain), BENCH_LIMIT_SECS (1200: stop even if not drained).

mod common;

use common::env_or;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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

const CHUNK: u64 = 100_000;

/// `count` events and their pending deliveries for `sink`, received (and due) over the last hour,
/// written by SQL in chunks: what a handler that was down for an hour leaves behind.
async fn build_backlog(pool: &PgPool, count: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut from = 0;
    while from < count {
        let to = (from + CHUNK).min(count);
        sqlx::query(
            "WITH e AS ( \
                 INSERT INTO events (id, environment, dedup_key, event_type, event, raw_body, source, \
                                     received_at, last_received_at) \
                 SELECT gen_random_uuid(), 'production', sha256(convert_to('backlog-' || g, 'UTF8')), \
                        'test', 'created', \
                        convert_to('{\"type\":\"test\",\"detail\":{\"event\":\"created\",\"data\":\"backlog-' || g || '\"}}', 'UTF8'), \
                        'reconciliation', now() - interval '1 hour' + g * interval '3 ms', \
                        now() - interval '1 hour' + g * interval '3 ms' \
                 FROM generate_series($1::bigint, $2::bigint - 1) g \
                 RETURNING id, received_at) \
             INSERT INTO deliveries (event_id, handler, next_attempt_at, created_at) \
             SELECT id, 'sink', received_at, received_at FROM e",
        )
        .bind(i64::try_from(from)?)
        .bind(i64::try_from(to)?)
        .execute(pool)
        .await?;
        from = to;
    }
    sqlx::query("VACUUM ANALYZE deliveries")
        .execute(pool)
        .await?;
    sqlx::query("VACUUM ANALYZE events").execute(pool).await?;
    println!(
        "backlog: {count} pending deliveries built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn sink(delivered: Arc<AtomicU64>) -> Arc<HandlerSet> {
    let service = tower::service_fn(move |_: HandlerRequest| {
        delivered.fetch_add(1, Ordering::Relaxed);
        async { Ok::<(), HandlerError>(()) }
    });
    let mut set = HandlerSet::default();
    set.register(RegisteredHandler {
        name: "sink".into(),
        route: Route::all(),
        retry: RetryPolicy::default(),
        service: stack(
            "sink",
            StackSettings {
                timeout: Duration::from_secs(5),
                concurrency: 64,
            },
            service,
        ),
    })
    .expect("register");
    Arc::new(set)
}

/// Ingest at `rate` events/s through the store's own insert, each with a delivery for `sink`.
async fn ingest(
    store: Store,
    rate: u64,
    ingested: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let handlers = ["sink".to_owned()];
    while !stop.is_cancelled() {
        tick.tick().await;
        let body = format!(
            r#"{{"type":"test","detail":{{"event":"created","data":"live-{}"}}}}"#,
            Uuid::new_v4()
        );
        let payload = Payload::parse(body.as_bytes()).expect("valid body");
        let verified = Verified {
            webhook_id: Uuid::nil(),
            secret_index: 0,
            timestamp: 0,
        };
        let new = NewEvent {
            environment: "production",
            dedup_key: DedupKey::new("production", &payload, body.as_bytes()),
            payload: &payload,
            raw_body: body.as_bytes(),
            verified: &verified,
            handlers: &handlers,
        };
        if store.insert_event(&new).await.is_ok() {
            ingested.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn drain(store: &Store, backlog: u64) {
    let (rate, limit) = (
        env_or("BENCH_INGEST_RATE", 200),
        env_or("BENCH_LIMIT_SECS", 1200),
    );
    let (delivered, ingested) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = tokio_util::sync::CancellationToken::new();
    let producer = tokio::spawn(ingest(store.clone(), rate, ingested.clone(), stop.clone()));
    let settings = DispatchSettings::default();
    let task = tokio::spawn(
        Dispatcher::new(store.clone(), sink(delivered.clone()), settings).run(stop.clone()),
    );
    println!(
        "drain: handler back, ingest at {rate} events/s, default [dispatch] (batch {}, max_in_flight {}), concurrency 64",
        settings.batch_size, settings.max_in_flight
    );
    let started = Instant::now();
    let (mut chunk_start, mut next_mark) = (started, CHUNK);
    let mut rates = Vec::new();
    let (mut progress_at, mut progress_done) = (started, 0);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let done = delivered.load(Ordering::Relaxed);
        if progress_at.elapsed() >= Duration::from_secs(30) {
            println!(
                "  at {:>6.1} s: {done} delivered, {:.0}/s over the last 30 s",
                started.elapsed().as_secs_f64(),
                (done - progress_done) as f64 / progress_at.elapsed().as_secs_f64()
            );
            (progress_at, progress_done) = (Instant::now(), done);
        }
        if done >= next_mark {
            let secs = chunk_start.elapsed().as_secs_f64();
            let chunk_rate = CHUNK as f64 / secs;
            println!(
                "  deliveries {:>7}-{:>7}: {:>6.0}/s  (at {:>6.1} s; ingested meanwhile {})",
                next_mark - CHUNK,
                next_mark,
                chunk_rate,
                started.elapsed().as_secs_f64(),
                ingested.load(Ordering::Relaxed)
            );
            rates.push(chunk_rate);
            chunk_start = Instant::now();
            next_mark += CHUNK;
        }
        let live = ingested.load(Ordering::Relaxed);
        if done >= backlog + live && done > 0 {
            println!(
                "drained: {done} deliveries ({backlog} backlog + {live} ingested meanwhile) in {:.1} s, {:.0}/s overall",
                started.elapsed().as_secs_f64(),
                done as f64 / started.elapsed().as_secs_f64()
            );
            break;
        }
        if started.elapsed() > Duration::from_secs(limit) {
            println!(
                "stopped after {limit} s: {done} of {} delivered, {:.0}/s overall",
                backlog + live,
                done as f64 / started.elapsed().as_secs_f64()
            );
            break;
        }
    }
    if let (Some(first), Some(last)) = (rates.first(), rates.last()) {
        println!(
            "first hundred thousand {first:.0}/s, last {last:.0}/s, slowest {:.0}/s",
            rates.iter().copied().fold(f64::INFINITY, f64::min)
        );
    }
    stop.cancel();
    let _ = producer.await;
    let _ = task.await;
}

fn main() -> anyhow::Result<()> {
    if !common::under_cargo_bench("backlog") {
        return Ok(());
    }
    let backlog = env_or("BENCH_BACKLOG", 1_000_000);
    common::with_scratch_database(16, |pool| async move {
        build_backlog(&pool, backlog).await?;
        drain(&Store::new(pool), backlog).await;
        Ok(())
    })
}

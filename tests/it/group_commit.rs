//! Group commit: concurrent events share one transaction, each caller gets its own outcome
//! (duplicates within a batch included), and a failed batch fails every request in it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::proxy::Proxy;
use crate::common::*;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use uuid::Uuid;
use voltage_webhooks::event::{DedupKey, Payload};
use voltage_webhooks::ingest::{GroupCommit, GroupCommitSettings};
use voltage_webhooks::store::{NewEvent, OwnedEvent, Store, Stored};
use voltage_webhooks::verify::Verified;

fn event(tag: &str) -> OwnedEvent {
    let body = format!(r#"{{"type":"test","detail":{{"event":"created","data":"{tag}"}}}}"#);
    let payload = Payload::parse(body.as_bytes()).unwrap();
    let verified = Verified {
        webhook_id: Uuid::nil(),
        secret_index: 0,
        timestamp: 1,
    };
    let handlers = ["audit".to_owned(), "bus".to_owned()];
    OwnedEvent::from_new(&NewEvent {
        environment: "production",
        dedup_key: DedupKey::new("production", &payload, body.as_bytes()),
        payload: &payload,
        raw_body: body.as_bytes(),
        verified: &verified,
        handlers: &handlers,
    })
}

fn settings(max_events: usize, max_wait_ms: u64) -> GroupCommitSettings {
    GroupCommitSettings {
        max_events,
        max_wait: Duration::from_millis(max_wait_ms),
        writers: 1,
    }
}

async fn submit_all(
    writer: &GroupCommit,
    events: Vec<OwnedEvent>,
) -> Vec<Result<Stored, voltage_webhooks::ingest::BatchFailed>> {
    let tasks: Vec<_> = events
        .into_iter()
        .map(|e| {
            let writer = writer.clone();
            tokio::spawn(async move { writer.submit(e).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

#[sqlx::test]
async fn concurrent_events_share_one_transaction_and_duplicates_in_a_batch_get_their_own_answer(
    pool: PgPool,
) {
    let writer = GroupCommit::start(Store::new(pool.clone()), settings(64, 200));
    // Ten distinct events, each submitted twice, all at once.
    let events: Vec<_> = (0..20).map(|i| event(&format!("e{}", i % 10))).collect();
    let outcomes = submit_all(&writer, events).await;

    let mut by_id = std::collections::HashMap::<Uuid, (usize, usize)>::new();
    for outcome in outcomes {
        match outcome.unwrap() {
            Stored::New(id) => by_id.entry(id).or_default().0 += 1,
            Stored::Duplicate(id) => by_id.entry(id).or_default().1 += 1,
        }
    }
    assert_eq!(by_id.len(), 10);
    assert!(by_id.values().all(|&counts| counts == (1, 1)), "{by_id:?}");

    let transactions: i64 = sqlx::query_scalar("SELECT count(DISTINCT txid) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(transactions, 1, "the batch was not one transaction");
    let arrivals: Vec<i32> = sqlx::query_scalar("SELECT arrival_count FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(arrivals, vec![2; 10]);
    assert_eq!(
        count(&pool, "deliveries").await,
        20,
        "one outbox row per new event and handler"
    );

    // Later arrivals of stored events are duplicates and add to their counts.
    let again = submit_all(&writer, (0..3).map(|_| event("e0")).collect()).await;
    assert!(again.iter().all(|o| matches!(o, Ok(Stored::Duplicate(_)))));
    let count_e0: i32 = sqlx::query_scalar("SELECT max(arrival_count) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count_e0, 5);
    assert_eq!(count(&pool, "deliveries").await, 20);
}

#[sqlx::test]
async fn with_batches_of_one_every_event_commits_alone(pool: PgPool) {
    let writer = GroupCommit::start(Store::new(pool.clone()), settings(1, 200));
    let outcomes = submit_all(
        &writer,
        (0..5).map(|i| event(&format!("solo{i}"))).collect(),
    )
    .await;
    assert!(outcomes.iter().all(|o| matches!(o, Ok(Stored::New(_)))));
    let transactions: i64 = sqlx::query_scalar("SELECT count(DISTINCT txid) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(transactions, 5);
}

#[sqlx::test]
async fn a_failed_batch_fails_every_request_in_it_and_the_next_one_commits(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let target: SocketAddr = format!("127.0.0.1:{}", connect.get_port()).parse().unwrap();
    let proxy = Proxy::start(target).await;
    let pool = crate::common::pool(options, connect.host("127.0.0.1").port(proxy.port)).await;
    let writer = GroupCommit::start(Store::new(pool.clone()), settings(64, 100));

    proxy.cut();
    let failed = submit_all(&writer, (0..8).map(|i| event(&format!("f{i}"))).collect()).await;
    assert!(
        failed.iter().all(Result::is_err),
        "a request was answered as if committed"
    );
    proxy.restore();
    let committed = submit_all(&writer, (0..8).map(|i| event(&format!("f{i}"))).collect()).await;
    assert!(
        committed.iter().all(|o| matches!(o, Ok(Stored::New(_)))),
        "{committed:?}"
    );
    assert_eq!(count(&pool, "events").await, 8);
}

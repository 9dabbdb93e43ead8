//! Storage at the HTTP edge: byte-exact bodies, exactly-once under retries and concurrency,
//! quarantine, scope, and "2xx means committed" across a real database outage.

use std::net::SocketAddr;

use crate::common::proxy::Proxy;
use crate::common::*;
use axum::http::StatusCode;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use uuid::Uuid;
use voltage_webhooks::store::Store;

fn event_id(response: &serde_json::Value) -> Uuid {
    response["event_id"].as_str().unwrap().parse().unwrap()
}

#[sqlx::test]
async fn every_fixture_is_stored_and_read_back_byte_identical(pool: PgPool) {
    let app = app(pool.clone());
    let store = Store::new(pool.clone());
    let fixtures = [
        ("production", "receive-completed-bolt11.json"),
        ("production", "send-succeeded-bolt11.json"),
        ("production", "test-created.json"),
        ("staging", "receive-generated-bolt11.json"),
        ("staging", "receive-succeeded-onchain-partial.json"),
        ("staging", "send-failed-onchain.json"),
    ];
    for (environment, name) in fixtures {
        let body = fixture(name);
        let request = match environment {
            "production" => production(&body),
            _ => staging(&body),
        };
        let (status, response) = send(&app, request).await;
        assert_eq!(
            (status, response["status"].as_str()),
            (StatusCode::OK, Some("stored")),
            "{name}"
        );
        let stored = store.event(event_id(&response)).await.unwrap().unwrap();
        assert_eq!(stored.raw_body, body, "{name} bytes differ");
        assert_eq!(
            stored.payload(),
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        );
        assert_eq!(stored.environment, environment);
        assert_eq!(stored.arrival_count, 1);
    }
    let partial = store
        .event(find(&pool, "succeeded", "receive").await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        partial.payment_id.as_deref(),
        Some("5d2f1b8e-3c1a-4e7b-9f0a-2b6c8d4e1f30")
    );
    assert_eq!(partial.payment_status.as_deref(), Some("receiving"));
    assert!(partial.payment_updated_at.is_some());
}

async fn find(pool: &PgPool, event: &str, event_type: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM events WHERE event = $1 AND event_type = $2")
        .bind(event)
        .bind(event_type)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_retried_delivery_is_one_event_counted_twice(pool: PgPool) {
    let app = app(pool.clone());
    let body = fixture("receive-completed-bolt11.json");
    let (_, first) = send(&app, production(&body)).await;
    // Voltage's retry: same payload, signed again with a later timestamp.
    let retry = delivery(
        "production",
        PRODUCTION_WEBHOOK,
        NEW_SECRET,
        &body,
        now() + 5,
    );
    let (status, second) = send(&app, retry).await;
    assert_eq!(
        (status, second["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    assert_eq!(event_id(&first), event_id(&second));
    let stored = Store::new(pool.clone())
        .event(event_id(&first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.arrival_count, 2);
    assert!(stored.last_received_at >= stored.received_at);
    assert_eq!(count(&pool, "events").await, 1);
}

#[sqlx::test]
async fn the_same_event_through_two_registrations_of_one_environment_is_one_event(pool: PgPool) {
    let app = app(pool.clone());
    let body = fixture("send-succeeded-bolt11.json");
    let (_, a) = send(&app, production(&body)).await;
    let other = delivery(
        "production",
        PRODUCTION_SECOND_WEBHOOK,
        SECOND_SECRET,
        &body,
        now(),
    );
    let (status, b) = send(&app, other).await;
    assert_eq!(
        (status, b["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    assert_eq!(event_id(&a), event_id(&b));
    assert_eq!(count(&pool, "events").await, 1);
}

#[sqlx::test]
async fn fifty_concurrent_identical_deliveries_give_one_row_and_fifty_200s(pool: PgPool) {
    let app = app(pool.clone());
    let body = fixture("receive-completed-bolt11.json");
    let ts = now();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let app = app.clone();
            let request = delivery("production", PRODUCTION_WEBHOOK, NEW_SECRET, &body, ts);
            tokio::spawn(async move { send(&app, request).await })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    let mut stored = 0;
    for task in tasks {
        let (status, response) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{response}");
        stored += usize::from(response["status"] == "stored");
        ids.insert(event_id(&response));
    }
    assert_eq!((stored, ids.len()), (1, 1), "exactly one insert, one id");
    assert_eq!(count(&pool, "events").await, 1);
    let arrivals: i32 = sqlx::query_scalar("SELECT arrival_count FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(arrivals, 50);
}

#[sqlx::test]
async fn two_partial_receipts_of_one_payment_are_two_events(pool: PgPool) {
    let app = app(pool.clone());
    let first = fixture("receive-succeeded-onchain-partial.json");
    let second = String::from_utf8(first.clone())
        .unwrap()
        .replace("2025-02-12T21:40:02.512000Z", "2025-02-12T21:52:40.100000Z")
        .replace(
            "\"amount_sats\":150000,\"is_pending\"",
            "\"amount_sats\":100000,\"is_pending\"",
        );
    for body in [first, second.into_bytes()] {
        let (status, response) = send(&app, staging(&body)).await;
        assert_eq!(
            (status, response["status"].as_str()),
            (StatusCode::OK, Some("stored"))
        );
    }
    let payments: Vec<String> = sqlx::query_scalar("SELECT payment_id FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(payments.len(), 2);
    assert_eq!(payments[0], payments[1]);
}

#[sqlx::test]
async fn unknown_types_and_events_are_stored_and_acknowledged(pool: PgPool) {
    let app = app(pool.clone());
    let body =
        br#"{"type":"refund","detail":{"event":"queued","data":{"id":"r1","note":"new enum"}}}"#;
    let (status, response) = send(&app, production(body)).await;
    assert_eq!(
        (status, response["status"].as_str()),
        (StatusCode::OK, Some("stored"))
    );
    let stored = Store::new(pool)
        .event(event_id(&response))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.event_type.as_str(), stored.event.as_str()),
        ("refund", "queued")
    );
}

#[sqlx::test]
async fn an_event_header_that_disagrees_with_the_body_gets_400(pool: PgPool) {
    let app = app(pool.clone());
    let mut request = production(&fixture("receive-completed-bolt11.json"));
    request
        .headers_mut()
        .insert("x-voltage-event", "receive.completed".parse().unwrap());
    let (status, response) = send(&app, request).await;
    assert_eq!(
        (status, code(&response)),
        (StatusCode::BAD_REQUEST, "event_mismatch")
    );
    assert_nothing_written(&pool).await;

    let mut request = production(&fixture("receive-completed-bolt11.json"));
    request
        .headers_mut()
        .insert("x-voltage-event", "completed".parse().unwrap());
    assert_eq!(send(&app, request).await.0, StatusCode::OK);
}

#[sqlx::test]
async fn a_payment_of_another_organization_gets_422_and_nothing_is_stored(pool: PgPool) {
    let app = app(pool.clone());
    // Correctly signed for staging, but the payment belongs to the production organization.
    let (status, response) = send(&app, staging(&fixture("receive-completed-bolt11.json"))).await;
    assert_eq!(
        (status, code(&response)),
        (StatusCode::UNPROCESSABLE_ENTITY, "scope_mismatch")
    );
    assert_nothing_written(&pool).await;
}

#[sqlx::test]
async fn a_verified_body_that_is_not_an_event_is_quarantined_once_and_refused(pool: PgPool) {
    let app = app(pool.clone());
    for body in [&b"this is not json"[..], br#"{"detail":{"event":"x"}}"#] {
        for _ in 0..2 {
            let (status, response) = send(&app, production(body)).await;
            assert_eq!(
                (status, code(&response)),
                (StatusCode::BAD_REQUEST, "malformed_payload")
            );
        }
    }
    let kept: Vec<(Vec<u8>, i32, i16)> = sqlx::query_as(
        "SELECT raw_body, arrival_count, secret_index FROM quarantine ORDER BY raw_body",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(kept.len(), 2);
    assert!(kept
        .iter()
        .all(|(_, arrivals, index)| *arrivals == 2 && *index == 0));
    assert_eq!(count(&pool, "events").await, 0);

    // An unverified malformed body is not kept: anyone could send it.
    let mut forged = production(b"garbage");
    forged
        .headers_mut()
        .insert("x-voltage-signature", "AAAA".parse().unwrap());
    assert_eq!(send(&app, forged).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(count(&pool, "quarantine").await, 2);
}

#[sqlx::test]
async fn with_the_database_down_a_delivery_gets_503_and_succeeds_once_it_is_back(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let target: SocketAddr = format!("127.0.0.1:{}", connect.get_port()).parse().unwrap();
    let proxy = Proxy::start(target).await;
    let pool = crate::common::pool(options, connect.host("127.0.0.1").port(proxy.port)).await;
    let app = app(pool.clone());
    let body = fixture("receive-completed-bolt11.json");

    assert_eq!(send(&app, get("/readyz")).await.0, StatusCode::OK);
    proxy.cut();
    let (status, response) = send(&app, production(&body)).await;
    assert_eq!(
        (status, code(&response)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    // /readyz reads the database at most once a second: it turns within that.
    assert_eq!(
        readyz_once_settled(&app, StatusCode::SERVICE_UNAVAILABLE).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(send(&app, get("/healthz")).await.0, StatusCode::OK);

    proxy.restore();
    // Voltage's retry of the same delivery, with no restart of the app.
    let (status, response) = send(&app, production(&body)).await;
    assert_eq!(
        (status, response["status"].as_str()),
        (StatusCode::OK, Some("stored")),
        "{response}"
    );
    assert_eq!(count(&pool, "events").await, 1);
    assert_eq!(
        readyz_once_settled(&app, StatusCode::OK).await,
        StatusCode::OK
    );
}

/// `/readyz` until it answers `expected` (its database answer may be a second old), at most 5 s.
async fn readyz_once_settled(app: &axum::Router, expected: StatusCode) -> StatusCode {
    let mut status = send(app, get("/readyz")).await.0;
    for _ in 0..50 {
        if status == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        status = send(app, get("/readyz")).await.0;
    }
    status
}

fn get(path: &str) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::get(path)
        .body(axum::body::Body::empty())
        .unwrap()
}

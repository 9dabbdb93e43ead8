//! The move of the constraint `events_dedup` from `(environment, dedup_key)` to
//! `(environment, payment_updated_at, dedup_key)` (migrations 20261130000004-5): a database
//! written by the previous schema keeps every event, and a redelivery of any of them is still a
//! duplicate of the stored one.

use std::borrow::Cow;

use axum::http::StatusCode;
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use uuid::Uuid;
use voltage_webhooks::event::{DedupKey, Payload};
use voltage_webhooks::store::MIGRATOR;

use crate::common::*;

const FIRST_NEW_MIGRATION: i64 = 20261130000004;

/// Writes an event as the previous release did: its own statement, arbitrated by `events_dedup`.
async fn insert_as_before(pool: &PgPool, body: &[u8]) -> Uuid {
    let payload = Payload::parse(body).unwrap();
    let payment = payload.payment.as_ref();
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO events (id, environment, dedup_key, event_type, event, payment_id, \
             payment_status, payment_updated_at, raw_body, webhook_id, secret_index, signed_timestamp) \
         VALUES ($1, 'production', $2, $3, $4, $5, $6, $7, $8, $9, 0, 1) \
         ON CONFLICT ON CONSTRAINT events_dedup DO NOTHING",
    )
    .bind(id)
    .bind(DedupKey::new("production", &payload, body).0.to_vec())
    .bind(&payload.event_type)
    .bind(&payload.event)
    .bind(payment.map(|p| p.id.clone()))
    .bind(payment.and_then(|p| p.status.clone()))
    .bind(payment.and_then(|p| p.updated_at))
    .bind(body)
    .bind(Uuid::parse_str(PRODUCTION_WEBHOOK).unwrap())
    .execute(pool)
    .await
    .unwrap();
    id
}

#[sqlx::test(migrations = false)]
async fn events_stored_under_the_old_dedup_index_are_kept_and_still_deduplicate(pool: PgPool) {
    let previous = Migrator {
        migrations: Cow::Owned(
            MIGRATOR
                .iter()
                .filter(|m| m.version < FIRST_NEW_MIGRATION)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    };
    previous.run(&pool).await.unwrap();
    // Keyed by the payment's state, and (the test event) by the exact body: NULL updated_at.
    let bodies = [
        fixture("receive-completed-bolt11.json"),
        fixture("send-succeeded-bolt11.json"),
        fixture("test-created.json"),
    ];
    let mut ids = Vec::new();
    for body in &bodies {
        ids.push(insert_as_before(&pool, body).await);
    }

    MIGRATOR.run(&pool).await.unwrap();
    assert_eq!(count(&pool, "events").await, 3, "every event is kept");
    // The constraint every release names in its insert stands on the new columns.
    let (definition,): (String,) = sqlx::query_as(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'events_dedup'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        definition,
        "UNIQUE NULLS NOT DISTINCT (environment, payment_updated_at, dedup_key)"
    );

    let app = app(pool.clone());
    for (body, id) in bodies.iter().zip(&ids) {
        let (status, answer) = send(&app, production(body)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["status"], "duplicate", "{answer}");
        assert_eq!(answer["event_id"], id.to_string());
    }
    // A new event after the change is stored once; its redelivery is a duplicate of it.
    let next_state = br#"{"type":"test","detail":{"event":"created","data":"after"}}"#;
    let (_, first) = send(&app, production(next_state)).await;
    let (_, again) = send(&app, production(next_state)).await;
    assert_eq!(
        (first["status"].as_str(), again["status"].as_str()),
        (Some("stored"), Some("duplicate"))
    );
    assert_eq!(first["event_id"], again["event_id"]);
    assert_eq!(count(&pool, "events").await, 4);
    let (arrivals,): (i64,) = sqlx::query_as("SELECT sum(arrival_count) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        arrivals,
        3 + 3 + 2,
        "every redelivery is counted on its event"
    );
}

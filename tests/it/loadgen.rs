//! The load generator against a real listener: every request answered, duplicates acknowledged as
//! the same events, and the database check passes, and fails when an acknowledged event is missing.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
use sqlx::PgPool;
use voltage_webhooks::loadgen::{self, LoadSpec};

#[sqlx::test]
async fn a_short_run_is_acknowledged_and_the_database_holds_exactly_those_events(pool: PgPool) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let service = voltage_webhooks::http::router(state(pool.clone()))
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });

    let config = config();
    let (registry, _) = config.resolve().unwrap();
    let environment = registry.environment("production").unwrap();
    let registration = registry.registrations_of("production").next().unwrap();
    let spec = LoadSpec {
        base_url,
        environment: "production".into(),
        organization_id: environment.organization_id,
        environment_id: environment.environment_id,
        webhook_id: registration.id,
        secret: registration.secrets[0].clone(),
        concurrency: 8,
        duration: Duration::from_millis(1500),
        rate: None,
        duplicates: 0.2,
    };
    let outcome = loadgen::run(spec).await.unwrap();
    let ok = outcome.report.statuses.get(&200).copied().unwrap_or(0);
    assert_eq!(
        ok as usize,
        outcome.report.requests(),
        "{}",
        outcome.report.summary()
    );
    assert!(
        outcome.report.requests() > 50,
        "{}",
        outcome.report.summary()
    );
    assert!(
        outcome.acknowledged.len() < ok as usize,
        "duplicates were acknowledged as new events"
    );
    assert_eq!(outcome.acknowledged.len(), outcome.payment_ids.len());
    let body_size = loadgen::receive_completed(
        environment.organization_id,
        environment.environment_id,
        uuid::Uuid::new_v4(),
        chrono::Utc::now(),
    )
    .len();
    assert!(
        (1300..2000).contains(&body_size),
        "bodies are about 1.5 KB: {body_size}"
    );

    let verdict = loadgen::check_database(&pool, "production", &outcome)
        .await
        .unwrap();
    assert!(
        verdict.contains(&outcome.acknowledged.len().to_string()),
        "{verdict}"
    );

    // The check can fail: lose one acknowledged event.
    sqlx::query("DELETE FROM events WHERE id = (SELECT id FROM events LIMIT 1)")
        .execute(&pool)
        .await
        .unwrap();
    let err = loadgen::check_database(&pool, "production", &outcome)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("1 acknowledged events missing"),
        "{err}"
    );
}

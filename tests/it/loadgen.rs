//! The load generator against a real listener: every request answered, duplicates acknowledged as
//! the same events, and the database check passes, and fails when an acknowledged event is missing.
//! The generator is the `voltage-loadgen` crate (crates/loadgen), a dev-dependency driven in-process.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
use sqlx::PgPool;
use voltage_loadgen::{self as loadgen, LoadSpec};

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

/// The generator's bodies are what the service takes for a Voltage payment event: the generator
/// cannot check that itself (it does not depend on the service).
#[test]
fn the_generated_body_parses_as_a_receive_completed_payment() {
    let payment = uuid::Uuid::new_v4();
    let body = loadgen::receive_completed(
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        payment,
        chrono::Utc::now(),
    );
    let payload = voltage_webhooks::event::Payload::parse(&body).expect("a Voltage event");
    assert_eq!(payload.payment.expect("payment").id, payment.to_string());
}

/// The generator reads the service's configuration itself (it does not depend on the service): it
/// must find the ids the service loads, and sign as the environment's first registration listed, with
/// that registration's first secret.
#[test]
fn the_generator_reads_the_same_ids_and_secret_as_the_service() {
    use secrecy::ExposeSecret as _;
    let config = config();
    let (registry, _) = config.resolve().unwrap();
    let settings = voltage_loadgen::settings::Settings::from_toml(&config_toml()).unwrap();
    for (name, first) in [
        ("production", PRODUCTION_WEBHOOK),
        ("staging", STAGING_WEBHOOK),
    ] {
        let environment = registry.environment(name).unwrap();
        let target = settings.target(name).unwrap();
        assert_eq!(target.organization_id, environment.organization_id);
        assert_eq!(target.environment_id, environment.environment_id);
        assert_eq!(target.webhook_id.to_string(), first);
        let registration = registry.registration(first).unwrap();
        assert_eq!(registration.environment, name);
        assert_eq!(
            target.secret.expose_secret(),
            registration.secrets[0].expose_secret()
        );
    }
}

/// The load generator repeats the service's per-stage metric names (it does not depend on the
/// service); a rename on one side only would make its stage summary silently empty.
#[test]
fn the_load_generator_reads_the_metrics_the_service_writes() {
    use voltage_webhooks::telemetry::metrics as service;
    assert_eq!(
        voltage_loadgen::stages::WEBHOOK_STAGE_SECONDS,
        service::WEBHOOK_STAGE_SECONDS
    );
    assert_eq!(
        voltage_loadgen::stages::WEBHOOK_REQUEST_SECONDS,
        service::WEBHOOK_REQUEST_SECONDS
    );
    assert_eq!(
        voltage_loadgen::stages::WEBHOOK_STAGES,
        service::WEBHOOK_STAGES
    );
}

//! Faults under load, each bounded in time: two replicas receiving the same deliveries, a receiver
//! killed with SIGKILL and restarted, and the database cut away during a load.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::fanout::wait_for;
use crate::common::process::*;
use crate::common::proxy::Proxy;
use crate::common::*;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;
use voltage_loadgen::{self as loadgen, LoadSpec};
use voltage_webhooks::verify::sign;

fn load(base_url: String, concurrency: usize, duration: Duration) -> LoadSpec {
    let config = config();
    let (registry, _) = config.resolve().unwrap();
    let env = registry.environment("production").unwrap();
    LoadSpec {
        base_url,
        environment: "production".into(),
        organization_id: env.organization_id,
        environment_id: env.environment_id,
        webhook_id: PRODUCTION_WEBHOOK.parse().unwrap(),
        secret: NEW_SECRET.into(),
        concurrency,
        duration,
        rate: None,
        duplicates: 0.1,
    }
}

#[sqlx::test]
async fn two_replicas_receiving_the_same_deliveries_store_one_row_and_call_the_handler_once(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = options.connect_with(connect.clone()).await.unwrap();
    let (downstream, received) = counting_downstream().await;
    let url = database_url(&connect);
    let replicas = [
        Service::start(free_port(), &url, &downstream).await,
        Service::start(free_port(), &url, &downstream).await,
    ];
    let client = reqwest::Client::new();
    let spec = load(String::new(), 1, Duration::ZERO);

    let mut pairs = Vec::new();
    for _ in 0..100 {
        let body = loadgen::receive_completed(
            spec.organization_id,
            spec.environment_id,
            Uuid::new_v4(),
            chrono::Utc::now(),
        );
        let ts = now().to_string();
        let signature = sign(NEW_SECRET, &body, &ts);
        let sends = replicas.iter().map(|replica| {
            client
                .post(format!("{}/webhooks/production", replica.url()))
                .header("content-type", "application/json")
                .header("x-voltage-webhook-id", PRODUCTION_WEBHOOK)
                .header("x-voltage-timestamp", &ts)
                .header("x-voltage-signature", &signature)
                .body(body.clone())
                .send()
        });
        pairs.push(tokio::spawn(futures_util::future::join_all(sends)));
    }
    for pair in pairs {
        let mut ids = Vec::new();
        for response in pair.await.unwrap() {
            let response = response.unwrap();
            assert_eq!(response.status(), 200);
            ids.push(response.json::<serde_json::Value>().await.unwrap()["event_id"].clone());
        }
        assert_eq!(
            ids[0], ids[1],
            "the two replicas answered with different events"
        );
    }
    wait_for(
        &pool,
        "SELECT count(*) = 100 FROM deliveries WHERE status = 'succeeded'",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(count(&pool, "events").await, 100);
    let arrivals: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT arrival_count FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(arrivals, [2]);
    let received = received.lock().unwrap();
    assert_eq!(received.len(), 100);
    assert!(
        received.values().all(|&n| n == 1),
        "a handler was called twice for one event"
    );
}

#[sqlx::test]
async fn a_receiver_killed_during_load_loses_no_acknowledged_event_and_delivers_every_stored_one(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = options.connect_with(connect.clone()).await.unwrap();
    let (downstream, received) = counting_downstream().await;
    let url = database_url(&connect);
    let port = free_port();
    let mut service = Service::start(port, &url, &downstream).await;
    let running = tokio::spawn(loadgen::run(load(
        service.url(),
        16,
        Duration::from_secs(4),
    )));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    service.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _restarted = Service::start(port, &url, &downstream).await;
    let outcome = running.await.unwrap().unwrap();

    let statuses = &outcome.report.statuses;
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 0,
        "{}",
        outcome.report.summary()
    );
    let comparison = loadgen::compare(&pool, "production", &outcome)
        .await
        .unwrap();
    assert_eq!(
        comparison.missing, 0,
        "acknowledged events lost: {comparison:?}"
    );

    // Every stored event reaches the handler, including those whose delivery the dead process held.
    wait_for(
        &pool,
        "SELECT count(*) FILTER (WHERE d.status <> 'succeeded') = 0 AND count(d.id) = (SELECT count(*) FROM events) \
         FROM deliveries d",
        Duration::from_secs(60),
    )
    .await;
    let stored: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    let received = received.lock().unwrap();
    let undelivered = stored
        .iter()
        .filter(|id| !received.contains_key(&id.to_string()))
        .count();
    assert_eq!(undelivered, 0, "stored events never delivered");
}

#[sqlx::test]
async fn a_database_outage_during_load_gets_503_never_an_unstored_2xx_and_recovers(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let target: SocketAddr = format!("127.0.0.1:{}", connect.get_port()).parse().unwrap();
    let proxy = Proxy::start(target).await;
    let pool =
        crate::common::pool(options, connect.clone().host("127.0.0.1").port(proxy.port)).await;
    let direct = sqlx::PgPool::connect_with(connect).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let service = voltage_webhooks::http::router(state(pool))
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });

    let running = tokio::spawn(loadgen::run(load(
        base_url.clone(),
        16,
        Duration::from_secs(3),
    )));
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    proxy.restore();
    let outcome = running.await.unwrap().unwrap();

    let statuses = &outcome.report.statuses;
    assert!(
        statuses.get(&503).copied().unwrap_or(0) > 0,
        "no request met the outage: {}",
        outcome.report.summary()
    );
    assert!(
        statuses.keys().all(|s| *s == 200 || *s == 503),
        "{}",
        outcome.report.summary()
    );
    let comparison = loadgen::compare(&direct, "production", &outcome)
        .await
        .unwrap();
    assert_eq!(
        comparison.missing, 0,
        "a 200 for an event that is not stored: {comparison:?}"
    );
    // No restart: the same process serves again.
    let after = loadgen::run(load(base_url, 2, Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(
        after.report.statuses.keys().copied().collect::<Vec<_>>(),
        [200],
        "{}",
        after.report.summary()
    );
}

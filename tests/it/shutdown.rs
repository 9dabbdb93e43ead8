//! SIGTERM under load: `/readyz` turns 503 first, no acknowledged delivery is lost, and the process
//! exits within the drain delay plus the deadline.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::process::*;
use crate::common::*;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use voltage_loadgen::{self as loadgen, LoadSpec};

#[sqlx::test]
async fn sigterm_under_load_drains_loses_no_acknowledged_delivery_and_exits_in_time(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = options.connect_with(connect.clone()).await.unwrap();
    let (downstream, _) = counting_downstream().await;
    let (drain, deadline) = (Duration::from_millis(800), Duration::from_secs(5));
    let extra = format!(
        "[shutdown]\ndrain_delay_ms = {}\ndeadline_ms = {}\n",
        drain.as_millis(),
        deadline.as_millis()
    );
    let mut service =
        Service::start_with(free_port(), &database_url(&connect), &downstream, &extra).await;
    let url = service.url();

    let config = config();
    let (registry, _) = config.resolve().unwrap();
    let env = registry.environment("production").unwrap();
    let spec = LoadSpec {
        base_url: url.clone(),
        environment: "production".into(),
        organization_id: env.organization_id,
        environment_id: env.environment_id,
        webhook_id: PRODUCTION_WEBHOOK.parse().unwrap(),
        secret: NEW_SECRET.into(),
        concurrency: 16,
        duration: Duration::from_secs(3),
        rate: None,
        duplicates: 0.0,
    };
    let running = tokio::spawn(loadgen::run(spec));
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let terminated = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &service.pid().to_string()])
        .status()
        .unwrap()
        .success());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = reqwest::get(format!("{url}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503, "readiness must fail while draining");

    let status = service
        .exit_within(drain + deadline + Duration::from_secs(2))
        .await;
    let status = status.expect("the process did not exit within drain delay + deadline");
    assert!(status.success(), "{status:?}");
    assert!(
        terminated.elapsed() >= drain,
        "the listener closed before the drain delay"
    );

    let outcome = running.await.unwrap().unwrap();
    assert!(outcome.report.statuses.get(&200).copied().unwrap_or(0) > 0);
    let comparison = loadgen::compare(&pool, "production", &outcome)
        .await
        .unwrap();
    assert_eq!(
        comparison.missing, 0,
        "acknowledged deliveries lost at shutdown: {comparison:?}"
    );
}

//! `/metrics` reflects a known sequence of requests exactly. Each test runs in a process of its own
//! (`common::own_process`): the metrics recorder is process-wide.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::common::own_process;
use crate::common::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use sqlx::PgPool;
use tower::ServiceExt as _;
use voltage_webhooks::event::{Route, Routing};

type Sample = (String, BTreeMap<String, String>, f64);

fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap();
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value.parse().unwrap())
        })
        .collect()
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map_or(0.0, |(_, _, v)| *v)
}

#[test]
fn the_metrics_reflect_a_known_sequence_of_requests() {
    own_process::run(
        "metrics::the_metrics_reflect_a_known_sequence_of_requests",
        the_metrics_reflect_a_known_sequence_of_requests_alone,
    );
}

async fn the_metrics_reflect_a_known_sequence_of_requests_alone(pool: PgPool) {
    let mut state = state(pool.clone());
    state.intake.routing = Arc::new(Routing::new(vec![("audit".into(), Route::all())]));
    let app = voltage_webhooks::http::router(state);
    let body = |tag: &str| {
        format!(r#"{{"type":"test","detail":{{"event":"created","data":"{tag}"}}}}"#).into_bytes()
    };

    assert_eq!(send(&app, production(&body("a"))).await.0, StatusCode::OK);
    assert_eq!(send(&app, production(&body("b"))).await.0, StatusCode::OK);
    assert_eq!(send(&app, production(&body("a"))).await.0, StatusCode::OK); // duplicate
    assert_eq!(
        send(
            &app,
            delivery(
                "production",
                PRODUCTION_WEBHOOK,
                OLD_SECRET,
                &body("c"),
                now()
            )
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        send(
            &app,
            delivery(
                "production",
                PRODUCTION_WEBHOOK,
                STAGING_SECRET,
                &body("d"),
                now()
            )
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(
            &app,
            delivery(
                "production",
                STAGING_WEBHOOK,
                STAGING_SECRET,
                &body("e"),
                now()
            )
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(
            &app,
            delivery(
                "no-such-env",
                PRODUCTION_WEBHOOK,
                NEW_SECRET,
                &body("f"),
                now()
            )
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    let response = app
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let samples = parse(&text);

    let requests = |env: &str, outcome: &str| {
        value(
            &samples,
            "voltage_webhook_requests_total",
            &[("environment", env), ("outcome", outcome)],
        )
    };
    assert_eq!(requests("production", "stored"), 3.0, "{text}");
    assert_eq!(requests("production", "duplicate"), 1.0);
    assert_eq!(requests("production", "invalid_signature"), 1.0);
    assert_eq!(requests("production", "wrong_environment"), 1.0);
    assert_eq!(
        requests("unknown", "unknown_environment"),
        1.0,
        "an unknown path is not a label"
    );
    assert!(!text.contains("no-such-env"));

    let verified = |index: &str| {
        value(
            &samples,
            "voltage_webhook_verified_total",
            &[("webhook_id", PRODUCTION_WEBHOOK), ("secret_index", index)],
        )
    };
    assert_eq!(
        (verified("0"), verified("1")),
        (3.0, 1.0),
        "which secret of the rotation is in use"
    );
    // Signature checks only: the wrong-environment delivery was refused from its headers alone.
    assert_eq!(
        value(
            &samples,
            "voltage_webhook_verify_seconds_count",
            &[("environment", "production")]
        ),
        5.0
    );
    assert_eq!(
        value(
            &samples,
            "voltage_webhook_write_seconds_count",
            &[("environment", "production")]
        ),
        4.0
    );
    // Histograms with buckets (they add up across replicas), not per-process summaries.
    assert_eq!(
        value(
            &samples,
            "voltage_webhook_write_seconds_bucket",
            &[("environment", "production"), ("le", "+Inf")]
        ),
        4.0
    );
    // Each stage counts the deliveries that reached it: 5 had their body read and checked (the
    // wrong-environment one was refused from its headers, the unknown environment from its path),
    // 4 passed the signature and went through parsing, group commit and the answer.
    let stages = [
        ("read_body", 5.0),
        ("verify", 5.0),
        ("parse", 4.0),
        ("batch_wait", 4.0),
        ("write", 4.0),
        ("answer", 4.0),
    ];
    assert_eq!(
        stages.map(|(s, _)| s),
        voltage_webhooks::telemetry::metrics::WEBHOOK_STAGES,
        "the documented stages, in order"
    );
    for (stage, expected) in stages {
        let series = |suffix: &str, extra: &[(&str, &str)]| {
            let mut labels = vec![("stage", stage)];
            labels.extend_from_slice(extra);
            value(
                &samples,
                &format!("voltage_webhook_stage_seconds_{suffix}"),
                &labels,
            )
        };
        assert_eq!(series("count", &[]), expected, "stage {stage}\n{text}");
        assert_eq!(
            series("bucket", &[("le", "+Inf")]),
            expected,
            "stage {stage}"
        );
        assert!(series("sum", &[]) > 0.0, "stage {stage} took no time");
    }
    assert_eq!(
        value(&samples, "voltage_webhook_request_seconds_count", &[]),
        7.0,
        "every delivery, whatever its outcome"
    );

    assert_eq!(
        value(&samples, "voltage_outbox_pending", &[]),
        3.0,
        "one delivery per new event"
    );
    assert!(value(&samples, "voltage_outbox_oldest_pending_seconds", &[]) >= 0.0);
    assert_eq!(value(&samples, "voltage_deliveries_dead", &[]), 0.0);
}

#[test]
fn refusals_by_the_request_limits_are_counted() {
    own_process::run(
        "metrics::refusals_by_the_request_limits_are_counted",
        refusals_by_the_request_limits_are_counted_alone,
    );
}

async fn refusals_by_the_request_limits_are_counted_alone(pool: PgPool) {
    let config = voltage_webhooks::config::Config::from_toml(&format!(
        "[server]\nmax_concurrent_requests = 1\nrequest_timeout_ms = 1000\n{}",
        config_toml()
    ))
    .unwrap();
    let (registry, _) = config.resolve().unwrap();
    let state = voltage_webhooks::app::app_state(&config, registry, Routing::default(), pool);
    let app =
        voltage_webhooks::http::router(state).layer(axum::extract::connect_info::MockConnectInfo(
            std::net::SocketAddr::from(([127, 0, 0, 1], 5000)),
        ));
    // A delivery whose body never arrives holds the only slot until the timeout cuts it off.
    let stuck = || {
        let mut request = production(b"");
        request.headers_mut().remove("content-length");
        *request.body_mut() = Body::from_stream(futures_util::stream::pending::<
            Result<Vec<u8>, std::io::Error>,
        >());
        request
    };
    let holder = tokio::spawn(app.clone().oneshot(stuck()));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let shed = send(&app, production(&fixture("test-created.json"))).await;
    assert_eq!(shed.0, StatusCode::SERVICE_UNAVAILABLE);
    let api = send(
        &app,
        Request::get("/v1/environments/production/events")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(api.0, StatusCode::SERVICE_UNAVAILABLE);
    let timed_out = holder.await.unwrap().unwrap();
    assert_eq!(timed_out.status(), StatusCode::SERVICE_UNAVAILABLE);

    let samples = scrape(&app).await;
    let requests = "voltage_webhook_requests_total";
    for outcome in ["overloaded", "timeout"] {
        assert_eq!(
            value(
                &samples,
                requests,
                &[("environment", "production"), ("outcome", outcome)]
            ),
            1.0,
            "{outcome}"
        );
    }
    assert_eq!(
        value(
            &samples,
            "voltage_api_requests_refused_total",
            &[("outcome", "overloaded")]
        ),
        1.0
    );
}

async fn scrape(app: &axum::Router) -> Vec<Sample> {
    let response = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    parse(std::str::from_utf8(&bytes).unwrap())
}

/// Reconciliation and retention report what they did: gaps per environment, sweep durations, the
/// time of the last complete sweep, rows removed by kind.
#[test]
fn reconciliation_and_retention_metrics_reflect_what_they_did() {
    own_process::run(
        "metrics::reconciliation_and_retention_metrics_reflect_what_they_did",
        reconciliation_and_retention_metrics_reflect_what_they_did_alone,
    );
}

async fn reconciliation_and_retention_metrics_reflect_what_they_did_alone(pool: PgPool) {
    use crate::common::voltage_api::*;
    use voltage_webhooks::reconcile::{ReconcileSettings, Reconciler, Sweep};
    let app = voltage_webhooks::http::router(state(pool.clone()));
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    fake.set_payments(vec![
        receive("completed", 30),
        receive("failed", 60),
        receive("expired", 90),
    ]);
    let reconciler = Reconciler {
        store: voltage_webhooks::store::Store::new(pool.clone()),
        api: client(&base, 2),
        routing: Arc::new(Routing::default()),
        settings: ReconcileSettings {
            interval: std::time::Duration::from_secs(300),
            page_size: 2,
            lookback: None,
            max_pages: 1000,
        },
    };
    let before = chrono::Utc::now().timestamp() as f64;
    for _ in 0..2 {
        assert!(matches!(
            reconciler.sweep(&target(API_KEY)).await.unwrap(),
            Sweep::Done(_)
        ));
    }
    let samples = scrape(&app).await;
    let production = [("environment", "production")];
    assert_eq!(
        value(&samples, "voltage_reconcile_gaps_total", &production),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            "voltage_reconcile_sweep_seconds_count",
            &production
        ),
        2.0
    );
    let last_complete = value(
        &samples,
        "voltage_reconcile_last_complete_sweep_timestamp_seconds",
        &production,
    );
    assert!(last_complete >= before);

    // A sweep cut short (here by the page cap) is a failure, and not a complete sweep.
    let mut capped = reconciler.clone();
    capped.settings.max_pages = 1;
    assert!(capped.sweep(&target(API_KEY)).await.is_err());
    let samples = scrape(&app).await;
    assert_eq!(
        value(
            &samples,
            "voltage_reconcile_sweep_failures_total",
            &production
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "voltage_reconcile_last_complete_sweep_timestamp_seconds",
            &production
        ),
        last_complete,
        "a cut-short sweep does not advance the last complete sweep"
    );

    // Retention: the three reconciled events, aged past the period, are removed and counted.
    sqlx::query("UPDATE events SET received_at = now() - interval '100 days', last_received_at = now() - interval '100 days'")
        .execute(&pool)
        .await
        .unwrap();
    let policy = voltage_webhooks::retention::RetentionPolicy {
        events_days: Some(90),
        dead_days: None,
        dedup_days: 30,
        batch_size: 100,
        interval: std::time::Duration::from_secs(3600),
    };
    let store = voltage_webhooks::store::Store::new(pool.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    voltage_webhooks::retention::pass(&store, &policy, chrono::Utc::now(), false, &stop)
        .await
        .unwrap();
    let samples = scrape(&app).await;
    assert_eq!(
        value(
            &samples,
            "voltage_retention_removed_total",
            &[("kind", "events")]
        ),
        3.0
    );
    assert!(
        value(
            &samples,
            "voltage_retention_last_pass_timestamp_seconds",
            &[]
        ) >= before
    );
}

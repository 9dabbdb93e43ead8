//! `/metrics` reflects a known sequence of requests exactly. Alone in its test binary: the metrics
//! recorder is process-wide.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use http_body_util::BodyExt as _;
use sqlx::PgPool;
use tower::ServiceExt as _;
use voltage_webhooks::handlers::{Route, Routing};

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

#[sqlx::test]
async fn the_metrics_reflect_a_known_sequence_of_requests(pool: PgPool) {
    let mut state = state(pool.clone());
    state.routing = Arc::new(Routing::new(vec![("audit".into(), Route::all())]));
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
    assert_eq!(
        value(
            &samples,
            "voltage_webhook_verify_seconds_count",
            &[("environment", "production")]
        ),
        6.0
    );
    assert_eq!(
        value(
            &samples,
            "voltage_webhook_write_seconds_count",
            &[("environment", "production")]
        ),
        4.0
    );

    assert_eq!(
        value(&samples, "voltage_outbox_pending", &[]),
        3.0,
        "one delivery per new event"
    );
    assert!(value(&samples, "voltage_outbox_oldest_pending_seconds", &[]) >= 0.0);
    assert_eq!(value(&samples, "voltage_deliveries_dead", &[]), 0.0);
}

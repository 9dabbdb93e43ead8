//! Confirmation before a handler runs: the payment is fetched from the (fake) payments API and the
//! call proceeds only if the API agrees; the API key never reaches a log line.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::capture::Capture;
use crate::common::fanout::*;
use crate::common::voltage_api::*;
use crate::common::*;
use sqlx::PgPool;
use voltage_webhooks::event::{EventFilter, Route};
use voltage_webhooks::handlers::ConfirmLayer;
use voltage_webhooks::handlers::{stack_with, HandlerRequest, RegisteredHandler, StackSettings};
use voltage_webhooks::reconcile::{ReconcileSettings, Reconciler};
use voltage_webhooks::store::Store;

/// A `ledger` handler for successful payments, behind confirmation; returns the events it saw.
fn confirmed_ledger(base_url: &str) -> (RegisteredHandler, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let service = tower::service_fn(move |request: HandlerRequest| {
        recorded
            .lock()
            .unwrap()
            .push(request.payment_id.clone().unwrap_or_default());
        async { Ok::<(), voltage_webhooks::handlers::HandlerError>(()) }
    });
    let confirm = ConfirmLayer::new(client(base_url, 2), [target(API_KEY)]);
    let settings = StackSettings {
        timeout: Duration::from_secs(5),
        concurrency: 8,
    };
    let route = Route {
        environments: None,
        filters: ["receive.completed", "send.succeeded"]
            .iter()
            .map(|f| EventFilter::parse(f).unwrap())
            .collect(),
    };
    let handler = RegisteredHandler {
        name: "ledger".into(),
        route,
        retry: quick_retries(3),
        service: stack_with("ledger", settings, Some(confirm), service),
    };
    (handler, seen)
}

#[sqlx::test]
async fn confirmation_blocks_a_delivery_the_api_contradicts(pool: PgPool) {
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    let received = fixture("receive-completed-bolt11.json");
    let sent = fixture("send-succeeded-bolt11.json");
    // The API agrees about the send; about the receive it says money has not arrived.
    let mut not_yet = payment_of(&received);
    not_yet["status"] = "receiving".into();
    fake.set_payments(vec![not_yet, payment_of(&sent)]);
    let (ledger, seen) = confirmed_ledger(&base);
    let handlers = set_of(vec![ledger]);
    let app = app_routing(pool.clone(), &handlers);
    for body in [&received, &sent] {
        let (status, _) = send(&app, production(body)).await;
        assert_eq!(status, 200);
    }

    dispatch_until(
        &pool,
        handlers,
        "SELECT count(*) = 2 FROM deliveries WHERE status IN ('succeeded', 'dead')",
    )
    .await;
    let sent_id = payment_of(&sent)["id"].as_str().unwrap().to_owned();
    assert_eq!(
        *seen.lock().unwrap(),
        [sent_id],
        "only the confirmed event reached the handler"
    );
    let dead: (i32, String) = sqlx::query_as(
        "SELECT d.attempts, d.last_error FROM deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.status = 'dead' AND e.event = 'completed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(dead.0, 1, "a contradiction is permanent: no retries");
    assert!(
        dead.1.contains("confirmation") && dead.1.contains("receiving"),
        "{}",
        dead.1
    );
}

#[sqlx::test]
async fn a_payment_the_api_does_not_know_is_refused_and_an_unreachable_api_is_retried(
    pool: PgPool,
) {
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    let (ledger, seen) = confirmed_ledger(&base);
    let handlers = set_of(vec![ledger]);
    let app = app_routing(pool.clone(), &handlers);
    // A validly signed delivery of a payment Voltage has never seen (a leaked secret, or the test
    // endpoint): dead at once.
    let (status, _) = send(&app, production(&fixture("receive-completed-bolt11.json"))).await;
    assert_eq!(status, 200);
    dispatch_until(
        &pool,
        handlers.clone(),
        "SELECT bool_and(status = 'dead') FROM deliveries",
    )
    .await;
    assert!(seen.lock().unwrap().is_empty());

    // The API down: retried (attempts grow), never called, never dead while attempts remain.
    let sent = fixture("send-succeeded-bolt11.json");
    fake.set_payments(vec![payment_of(&sent)]);
    fake.fail_next(&[Failure::Unavailable; 2]);
    let (status, _) = send(&app, production(&sent)).await;
    assert_eq!(status, 200);
    dispatch_until(
        &pool,
        handlers,
        "SELECT count(*) = 1 FROM deliveries WHERE status = 'succeeded' AND attempts = 2",
    )
    .await;
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "called once the API answered"
    );
}

#[sqlx::test]
async fn the_api_key_never_reaches_the_logs(pool: PgPool) {
    let capture = Capture::default();
    let _guard = capture.install();

    let fake = FakeVoltage::default();
    let base = fake.start().await;
    let received = fixture("receive-completed-bolt11.json");
    let mut contradicting = payment_of(&received);
    contradicting["status"] = "expired".into();
    fake.set_payments(vec![contradicting, receive("completed", 5)]);
    fake.fail_next(&[
        Failure::TooManyRequests {
            retry_after_secs: 0,
        },
        Failure::Unavailable,
    ]);

    // A sweep with throttling and an outage, a refused key, and a refused confirmation.
    let reconciler = Reconciler {
        store: Store::new(pool.clone()),
        api: client(&base, 3),
        routing: Arc::new(voltage_webhooks::event::Routing::default()),
        settings: ReconcileSettings {
            interval: Duration::from_secs(300),
            page_size: 1,
            lookback: None,
            max_pages: 1000,
        },
    };
    reconciler.sweep(&target(API_KEY)).await.unwrap();
    reconciler
        .sweep(&target(&format!("{API_KEY}x")))
        .await
        .unwrap_err();
    let (ledger, _) = confirmed_ledger(&base);
    let handlers = set_of(vec![ledger]);
    let app = app_routing(pool.clone(), &handlers);
    send(&app, production(&received)).await;
    dispatch_until(
        &pool,
        handlers,
        "SELECT bool_and(status = 'dead') FROM deliveries",
    )
    .await;

    // The configuration and the targets, printed with Debug as a careless log line would.
    let toml = config_toml().replacen(
        "[[environments.production.webhooks]]",
        &format!(
            "voltage_api_key = {{ value = \"{API_KEY}\" }}\n\n[[environments.production.webhooks]]"
        ),
        1,
    );
    let config = voltage_webhooks::config::Config::from_toml(&toml).unwrap();
    let targets = config.reconcile_targets().unwrap();
    assert_eq!(targets.len(), 1);
    tracing::debug!(?config, ?targets, "configuration");

    let logs = capture.text();
    assert!(
        logs.contains("Voltage API busy"),
        "the capture saw the sweep's retries"
    );
    assert!(
        logs.contains("confirmation refused"),
        "the capture saw the confirmation"
    );
    assert!(
        logs.contains("voltage_api_key"),
        "the capture saw the configuration"
    );
    assert!(!logs.contains(API_KEY), "the API key leaked into the logs");
}

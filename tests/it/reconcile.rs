//! Reconciliation against a fake Voltage payments API served by the test: a missed webhook is
//! recovered, a webhook arriving after the sweep is a duplicate, pagination, 429/5xx handling,
//! one replica per environment, and the binary's `reconcile --once`.

use std::sync::Arc;
use std::time::Duration;

use crate::common::fanout::*;
use crate::common::voltage_api::*;
use crate::common::*;
use serde_json::Value;
use sqlx::PgPool;
use voltage_webhooks::event::{EventFilter, Route, Routing};
use voltage_webhooks::reconcile::{
    lock_name, ApiError, CutShort, ReconcileError, ReconcileSettings, Reconciler, Sweep,
    SweepReport,
};
use voltage_webhooks::store::{lock_key, Store};

fn ledger_route() -> Route {
    Route {
        environments: None,
        filters: vec![EventFilter::parse("receive.completed").unwrap()],
    }
}

fn reconciler(pool: &PgPool, base_url: &str, page_size: u32, max_attempts: u32) -> Reconciler {
    Reconciler {
        store: Store::new(pool.clone()),
        api: client(base_url, max_attempts),
        routing: Arc::new(Routing::new(vec![("ledger".into(), ledger_route())])),
        settings: ReconcileSettings {
            interval: Duration::from_secs(300),
            page_size,
            lookback: None,
            max_pages: 1000,
        },
    }
}

async fn sweep(reconciler: &Reconciler) -> SweepReport {
    match reconciler.sweep(&target(API_KEY)).await.unwrap() {
        Sweep::Done(report) => report,
        Sweep::Busy => panic!("nothing else holds the lock"),
    }
}

#[sqlx::test]
async fn a_missed_webhook_is_recovered_and_the_late_webhook_is_a_duplicate(pool: PgPool) {
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    let body = fixture("receive-completed-bolt11.json");
    fake.set_payments(vec![payment_of(&body)]);
    let reconciler = reconciler(&pool, &base, 100, 3);

    let report = sweep(&reconciler).await;
    assert_eq!(
        (report.pages, report.payments, report.gaps, report.stored),
        (1, 1, 1, 1)
    );
    let (id, source, event, status, webhook_id): (
        uuid::Uuid,
        String,
        String,
        String,
        Option<uuid::Uuid>,
    ) = sqlx::query_as("SELECT id, source, event, payment_status, webhook_id FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        (source.as_str(), event.as_str(), status.as_str()),
        ("reconciliation", "completed", "completed")
    );
    assert_eq!(webhook_id, None);
    // Same fan-out as a webhook event: the handler routed to receive.completed has its delivery.
    let handlers: Vec<String> =
        sqlx::query_scalar("SELECT handler FROM deliveries WHERE event_id = $1")
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(handlers, ["ledger"]);

    // A second sweep finds nothing new.
    assert_eq!(sweep(&reconciler).await.gaps, 0);

    // The handler is told where the event came from.
    let (ledger, calls) = scripted("ledger", ledger_route(), quick_retries(3), |_, _| Ok(()));
    dispatch_until(
        &pool,
        set_of(vec![ledger]),
        "SELECT bool_and(status = 'succeeded') FROM deliveries",
    )
    .await;
    let call = calls.0.lock().unwrap()[0].clone();
    assert_eq!(call.source, "reconciliation");
    let document: Value = serde_json::from_slice(&call.to_json()).unwrap();
    assert_eq!(document["source"], "reconciliation");
    assert_eq!(
        document["payload"]["detail"]["data"]["id"],
        payment_of(&body)["id"]
    );

    // The webhook for the same state arrives late: a duplicate of the synthetic event, whose
    // provenance now records the registration that delivered it.
    let app = app(pool.clone());
    let (status, answer) = send(&app, production(&body)).await;
    assert_eq!(status, 200);
    assert_eq!(answer["status"], "duplicate");
    assert_eq!(answer["event_id"], id.to_string());
    assert_eq!(count(&pool, "events").await, 1);
    assert_eq!(count(&pool, "deliveries").await, 1);
    let webhook_id: Option<uuid::Uuid> = sqlx::query_scalar("SELECT webhook_id FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        webhook_id.map(|w| w.to_string()).as_deref(),
        Some(PRODUCTION_WEBHOOK)
    );
}

#[sqlx::test]
async fn a_delivered_state_is_no_gap_and_a_newer_one_is(pool: PgPool) {
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    let app = app(pool.clone());
    let completed = fixture("receive-completed-bolt11.json");
    let (status, _) = send(&app, production(&completed)).await;
    assert_eq!(status, 200);
    let mut payment = payment_of(&completed);
    fake.set_payments(vec![payment.clone()]);
    let reconciler = reconciler(&pool, &base, 100, 3);
    assert_eq!(
        sweep(&reconciler).await.gaps,
        0,
        "the webhook delivered this state"
    );

    // An unseen final state of a known payment (here: it later failed) is a gap.
    payment["status"] = "failed".into();
    payment["updated_at"] = "2026-08-31T19:00:00Z".into();
    fake.set_payments(vec![payment]);
    let report = sweep(&reconciler).await;
    assert_eq!((report.gaps, report.stored), (1, 1));
    let events: Vec<(String, String)> =
        sqlx::query_as("SELECT event, source FROM events ORDER BY payment_updated_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        events,
        [
            ("completed".into(), "webhook".into()),
            ("failed".into(), "reconciliation".into())
        ]
    );
}

#[sqlx::test]
async fn a_newer_in_progress_state_is_counted_not_invented(pool: PgPool) {
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    let mut payment = receive("receiving", 60);
    fake.set_payments(vec![payment.clone()]);
    let reconciler = reconciler(&pool, &base, 100, 3);
    let report = sweep(&reconciler).await;
    assert_eq!(
        (report.gaps, report.stored),
        (1, 1),
        "an unseen receive is its `generated`"
    );
    // It moved on (a partial receipt, say): newer, still receiving, no certain webhook event.
    payment["updated_at"] = (chrono::Utc::now()).to_rfc3339().into();
    fake.set_payments(vec![payment]);
    let report = sweep(&reconciler).await;
    assert_eq!((report.gaps, report.unnamed, report.stored), (1, 1, 0));
    assert_eq!(count(&pool, "events").await, 1);
}

#[sqlx::test]
async fn every_page_is_followed_by_its_cursor(pool: PgPool) {
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    let payments: Vec<Value> = (0..7).map(|i| receive("completed", 10 + i)).collect();
    // An eighth that names another environment (a misconfigured key) is counted, never stored.
    let mut foreign = receive("completed", 100);
    foreign["environment_id"] = uuid::Uuid::new_v4().to_string().into();
    // A ninth names no environment: a webhook body like it would be refused (422), so it is too.
    let mut unscoped = receive("completed", 110);
    unscoped.as_object_mut().unwrap().remove("environment_id");
    let mut listed = payments.clone();
    listed.extend([foreign, unscoped]);
    fake.set_payments(listed);
    let report = sweep(&reconciler(&pool, &base, 3, 3)).await;
    assert_eq!((report.pages, report.payments, report.stored), (3, 9, 7));
    assert_eq!(report.foreign, 2);
    let cursors: Vec<String> = fake.requests().into_iter().map(|(what, _)| what).collect();
    assert_eq!(cursors, ["list:", "list:at-3", "list:at-6"]);
    let stored: std::collections::BTreeSet<String> =
        sqlx::query_scalar("SELECT payment_id FROM events")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let expected = payments
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored, expected);
}

/// The sweep's error, for a sweep that must fail.
async fn failed_sweep(reconciler: &Reconciler) -> ReconcileError {
    reconciler
        .sweep(&target(API_KEY))
        .await
        .expect_err("the sweep must fail")
}

#[sqlx::test]
async fn a_cursor_that_does_not_move_cuts_the_sweep_short_and_fails_it(pool: PgPool) {
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    fake.set_payments((0..5).map(|i| receive("completed", 10 + i)).collect());
    fake.0.lock().unwrap().stuck_cursor = true;
    // Was reported as a complete sweep: the end of the list was never reached.
    let error = failed_sweep(&reconciler(&pool, &base, 2, 3)).await;
    assert!(
        matches!(
            error,
            ReconcileError::CutShort {
                pages: 2,
                reason: CutShort::CursorCycle
            }
        ),
        "{error}"
    );
    assert_eq!(count(&pool, "events").await, 4, "what it stored is kept");
    let cursors: Vec<String> = fake.requests().into_iter().map(|(what, _)| what).collect();
    assert_eq!(cursors, ["list:", "list:at-2"]);
}

#[sqlx::test]
async fn cursors_that_cycle_back_to_an_earlier_page_end_the_sweep_as_a_failure(pool: PgPool) {
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    fake.set_payments((0..10).map(|i| receive("completed", 10 + i)).collect());
    // Page 3 (offset 4) points back to page 2: before the fix the sweep paged forever.
    fake.0.lock().unwrap().cycle_from = Some(4);
    let reconciler = reconciler(&pool, &base, 2, 3);
    let sweeping = failed_sweep(&reconciler);
    let error = tokio::time::timeout(Duration::from_secs(30), sweeping)
        .await
        .expect("a sweep that ends, not one that pages forever");
    assert!(
        matches!(
            error,
            ReconcileError::CutShort {
                pages: 3,
                reason: CutShort::CursorCycle
            }
        ),
        "{error}"
    );
    let cursors: Vec<String> = fake.requests().into_iter().map(|(what, _)| what).collect();
    assert_eq!(cursors, ["list:", "list:at-2", "list:at-4"]);
}

#[sqlx::test]
async fn a_sweep_needing_more_pages_than_allowed_is_cut_short_and_fails(pool: PgPool) {
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    fake.set_payments((0..10).map(|i| receive("completed", 10 + i)).collect());
    let mut reconciler = reconciler(&pool, &base, 2, 3);
    reconciler.settings.max_pages = 3;
    let error = failed_sweep(&reconciler).await;
    assert!(
        matches!(
            error,
            ReconcileError::CutShort {
                pages: 3,
                reason: CutShort::TooManyPages
            }
        ),
        "{error}"
    );
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(count(&pool, "events").await, 6);
}

#[sqlx::test]
async fn paging_stops_at_the_lookback_horizon(pool: PgPool) {
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    // Newest first: two recent, then four created two days ago.
    let mut payments = vec![receive("completed", 60), receive("completed", 120)];
    payments.extend((0..4).map(|_| receive("completed", 2 * 86_400)));
    fake.set_payments(payments);
    let mut reconciler = reconciler(&pool, &base, 2, 3);
    reconciler.settings.lookback = Some(Duration::from_secs(86_400));
    let report = sweep(&reconciler).await;
    assert_eq!(
        (report.pages, report.stored),
        (2, 2),
        "the page holding old payments is the last"
    );
}

#[sqlx::test]
async fn throttling_and_outages_are_retried_with_backoff_and_retry_after_is_honoured(pool: PgPool) {
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    fake.set_payments(vec![receive("completed", 10)]);
    fake.fail_next(&[
        Failure::TooManyRequests {
            retry_after_secs: 1,
        },
        Failure::Unavailable,
    ]);
    let report = sweep(&reconciler(&pool, &base, 100, 3)).await;
    assert_eq!(report.stored, 1);
    let requests = fake.requests();
    assert_eq!(requests.len(), 3, "429, 503, then the page");
    let waited = requests[1].1 - requests[0].1;
    assert!(
        waited >= Duration::from_millis(900),
        "Retry-After: 1 was honoured ({waited:?})"
    );

    // An outage longer than the attempts: the sweep fails, nothing is written, and the next
    // sweep, once the API is back, recovers everything.
    fake.set_payments(vec![receive("completed", 5)]);
    fake.fail_next(&[Failure::Unavailable; 3]);
    let reconciler = reconciler(&pool, &base, 100, 3);
    let failed = reconciler.sweep(&target(API_KEY)).await.unwrap_err();
    assert!(
        matches!(
            failed,
            ReconcileError::Api(ApiError::GaveUp { attempts: 3, .. })
        ),
        "{failed}"
    );
    assert_eq!(count(&pool, "events").await, 1);
    assert_eq!(sweep(&reconciler).await.stored, 1);
    assert_eq!(count(&pool, "events").await, 2);
}

#[sqlx::test]
async fn a_refused_key_fails_at_once_without_retries(pool: PgPool) {
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    let reconciler = reconciler(&pool, &base, 100, 5);
    let failed = reconciler
        .sweep(&target("vltg_api_wrong"))
        .await
        .unwrap_err();
    assert!(
        matches!(failed, ReconcileError::Api(ApiError::Refused { .. })),
        "{failed}"
    );
    assert_eq!(fake.requests().len(), 1);
    assert!(!failed.to_string().contains("vltg_api_wrong"));
}

#[sqlx::test]
async fn one_replica_sweeps_an_environment_at_a_time(pool: PgPool) {
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    fake.set_payments(vec![receive("completed", 10)]);
    let mut other = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(lock_key(&lock_name("production")))
        .execute(&mut *other)
        .await
        .unwrap();
    let reconciler = reconciler(&pool, &base, 100, 3);
    assert!(matches!(
        reconciler.sweep(&target(API_KEY)).await.unwrap(),
        Sweep::Busy
    ));
    assert!(
        fake.requests().is_empty(),
        "a replica that skips its turn calls nothing"
    );
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut *other)
        .await
        .unwrap();
    assert_eq!(sweep(&reconciler).await.stored, 1);
}

/// `voltage-webhooks reconcile --environment production --once`, as an operator runs it.
#[sqlx::test]
async fn the_reconcile_command_sweeps_once_and_reports(pool: PgPool) {
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    fake.set_payments(vec![receive("completed", 10), receive("expired", 20)]);
    let database_url = url_of(&pool).await;
    let config = config_file(&format!(
            "[reconcile]\nbase_url = \"{base}\"\nallow_plain_http = true\nbackoff_base_ms = 5\n\
             [environments.production]\norganization_id = \"{ORGANIZATION}\"\n\
             environment_id = \"{ENVIRONMENT}\"\nvoltage_api_key = {{ env = \"VW_TEST_VOLTAGE_KEY\" }}\n\
             [environments.staging]\norganization_id = \"{ORGANIZATION}\"\nenvironment_id = \"{ORGANIZATION}\"\n"
    ));
    let run = |environment: &'static str| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_voltage-webhooks"));
        command
            .env_remove("VOLTAGE_WEBHOOKS_CONFIG")
            .env("DATABASE_URL", &database_url)
            .env("VW_TEST_VOLTAGE_KEY", API_KEY)
            .env("RUST_LOG", "debug")
            .arg("--config")
            .arg(config.path())
            .args(["reconcile", "--environment", environment, "--once"]);
        // Off the runtime's thread: the fake API answers on it.
        tokio::task::spawn_blocking(move || {
            let output = command.output().unwrap();
            let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
            (
                output.status.success(),
                text(output.stdout),
                text(output.stderr),
            )
        })
    };

    let (ok, stdout, stderr) = run("production").await.unwrap();
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2 payments, 2 gaps (2 stored"), "{stdout}");
    assert!(!stdout.contains(API_KEY) && !stderr.contains(API_KEY));
    assert_eq!(count(&pool, "events").await, 2);

    let (ok, stdout, _) = run("production").await.unwrap();
    assert!(ok);
    assert!(stdout.contains("0 gaps"), "{stdout}");

    // A sweep cut short by a cursor that does not move is a failure: exit code and message.
    fake.set_payments((0..250).map(|i| receive("completed", 100 + i)).collect());
    fake.0.lock().unwrap().stuck_cursor = true;
    let (ok, _, stderr) = run("production").await.unwrap();
    assert!(!ok, "a cut-short sweep exited 0");
    assert!(stderr.contains("cut short"), "{stderr}");
    fake.0.lock().unwrap().stuck_cursor = false;

    let (ok, _, stderr) = run("staging").await.unwrap();
    assert!(!ok);
    assert!(
        stderr.contains("environments.staging.voltage_api_key"),
        "{stderr}"
    );
}

/// `serve` sweeps by itself every environment that has a key.
#[sqlx::test]
async fn serve_sweeps_every_environment_with_a_key(pool: PgPool) {
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    fake.set_payments(vec![receive("completed", 10)]);
    let database_url = url_of(&pool).await;
    let port = crate::common::process::free_port();
    let config = config_file(&format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[dispatch]\nenabled = false\n\
             [reconcile]\nbase_url = \"{base}\"\nallow_plain_http = true\ninterval_secs = 1\n\
             [environments.production]\norganization_id = \"{ORGANIZATION}\"\n\
             environment_id = \"{ENVIRONMENT}\"\nvoltage_api_key = {{ env = \"VW_TEST_VOLTAGE_KEY\" }}\n"
    ));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_voltage-webhooks"))
        .env_remove("VOLTAGE_WEBHOOKS_CONFIG")
        .env("DATABASE_URL", &database_url)
        .env("VW_TEST_VOLTAGE_KEY", API_KEY)
        .env("RUST_LOG", "warn")
        .arg("--config")
        .arg(config.path())
        .args(["serve", "--no-migrate"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut stored = 0;
    while stored == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stored = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events WHERE source = 'reconciliation'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(stored, 1, "serve's reconciler stored the missed payment");
}

/// A rotated Voltage API key is picked up on SIGHUP, like the webhook secrets, without a restart.
#[sqlx::test]
async fn sighup_replaces_the_api_key_without_a_restart(pool: PgPool) {
    let fake = FakeVoltage::default();
    let base = fake.start().await;
    fake.set_payments(vec![receive("completed", 10)]);
    let database_url = url_of(&pool).await;
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), "vltg_api_revoked_key\n").unwrap();
    let port = crate::common::process::free_port();
    let config = config_file(&format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[dispatch]\nenabled = false\n\
         [reconcile]\nbase_url = \"{base}\"\nallow_plain_http = true\ninterval_secs = 1\n\
         [environments.production]\norganization_id = \"{ORGANIZATION}\"\n\
         environment_id = \"{ENVIRONMENT}\"\nvoltage_api_key = {{ file = \"{}\" }}\n",
        key_file.path().display()
    ));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_voltage-webhooks"))
        .env_remove("VOLTAGE_WEBHOOKS_CONFIG")
        .env("DATABASE_URL", &database_url)
        .env("RUST_LOG", "warn")
        .arg("--config")
        .arg(config.path())
        .args(["serve", "--no-migrate"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let reconciled = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events WHERE source = 'reconciliation'")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    // The old key is refused, sweep after sweep.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fake.requests().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        fake.requests().len() >= 2,
        "the service swept with the old key"
    );
    assert_eq!(reconciled().await, 0);

    std::fs::write(key_file.path(), format!("{API_KEY}\n")).unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut stored = 0;
    while stored == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stored = reconciled().await;
    }
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(still_running, "the same process, not a restart");
    assert_eq!(stored, 1, "the new key was used after SIGHUP");
}

#[tokio::test]
async fn the_payments_api_client_never_follows_a_redirect_with_the_api_key() {
    use axum::http::{HeaderMap, StatusCode};
    // Another host (port) that records the x-api-key of whoever calls it.
    let received: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let seen = received.clone();
    let elsewhere = axum::Router::new().fallback(move |headers: HeaderMap| {
        let seen = seen.clone();
        async move {
            let key = headers
                .get("x-api-key")
                .map(|v| v.to_str().unwrap().to_owned());
            seen.lock().unwrap().push(key.unwrap_or_default());
            "{}"
        }
    });
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_url = format!("http://{}", other.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(other, elsewhere).await.unwrap() });
    let redirecting = axum::Router::new().fallback(move || {
        let location = format!("{other_url}/steal");
        async move { (StatusCode::TEMPORARY_REDIRECT, [("location", location)]) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, redirecting).await.unwrap() });

    let outcome = client(&base, 1)
        .list_payments(&target(API_KEY), None, 10)
        .await;
    assert!(outcome.is_err(), "a redirect is not a payments page");
    assert!(
        received.lock().unwrap().is_empty(),
        "the key went to another host: {:?}",
        received.lock().unwrap()
    );
}

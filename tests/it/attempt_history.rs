//! Attempt history: every attempt recorded with its start, duration, outcome, HTTP status or error
//! and worker; listed by the API, paged; retries and replays add attempts; a vanished worker's
//! attempt shows as `lease_expired`; retention removes attempts with their delivery.

use std::time::Duration;

use crate::common::api::*;
use crate::common::fanout::*;
use crate::common::*;
use axum::http::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;
use voltage_webhooks::app::handler_set;
use voltage_webhooks::auth::Permission;
use voltage_webhooks::config::Config;
use voltage_webhooks::event::Route;
use voltage_webhooks::handlers::HandlerError;
use voltage_webhooks::store::{ClaimRequest, Store};

const ENV: &str = "/v1/environments/production";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A downstream answering the given statuses in turn (the last one repeats).
async fn downstream(statuses: Vec<u16>) -> String {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let status = statuses[n.min(statuses.len() - 1)];
            async move { StatusCode::from_u16(status).unwrap() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn audit_http(
    url: &str,
    max_attempts: u32,
) -> std::sync::Arc<voltage_webhooks::handlers::HandlerSet> {
    let toml = format!(
        "[[handlers]]\nname = \"audit\"\nkind = \"http\"\nurl = \"{url}\"\nsecret = {{ value = \"{WHSEC}\" }}\n\
         backoff_base_ms = 1\nbackoff_cap_ms = 5\nmax_attempts = {max_attempts}\ntimeout_ms = 2000\n"
    );
    let config = Config::from_toml(&format!("{}\n{toml}", config_toml())).unwrap();
    std::sync::Arc::new(handler_set(&config, Vec::new()).await.unwrap())
}

async fn the_delivery(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT id FROM deliveries")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn attempts(app: &axum::Router, key: &str, delivery: i64, query: &str) -> Value {
    let (status, page) = send(
        app,
        get(&format!("{ENV}/deliveries/{delivery}/attempts{query}"), key),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

fn outcomes(page: &Value) -> Vec<(String, Option<i64>)> {
    page["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["outcome"].as_str().unwrap().to_owned(),
                a["http_status"].as_i64(),
            )
        })
        .collect()
}

#[sqlx::test]
async fn every_attempt_is_listed_with_its_status_duration_and_worker_and_retries_add_to_them(
    pool: PgPool,
) {
    let k = key(&pool, "w", "production", Permission::Write, &[]).await;
    // 503 twice: dead after two attempts; after the operator's retry, 503 once more, then 204.
    let url = downstream(vec![503, 503, 503, 204]).await;
    let set = audit_http(&url, 2).await;
    let app = api(pool.clone());
    send(&app, production(&fixture("test-created.json"))).await;
    dispatch_until(
        &pool,
        set.clone(),
        "SELECT bool_and(status = 'dead') FROM deliveries",
    )
    .await;
    let delivery = the_delivery(&pool).await;
    let retry = format!("{ENV}/deliveries/{delivery}/retry");
    assert_eq!(
        send(&app, post(&retry, &k, "")).await.0,
        StatusCode::ACCEPTED
    );
    dispatch_until(
        &pool,
        set,
        "SELECT bool_and(status = 'succeeded') FROM deliveries",
    )
    .await;

    let page = attempts(&app, &k, delivery, "").await;
    let failed = ("failed".to_owned(), Some(503));
    assert_eq!(
        outcomes(&page),
        [
            failed.clone(),
            failed.clone(),
            failed,
            ("succeeded".into(), Some(204))
        ]
    );
    let all = page["attempts"].as_array().unwrap();
    let numbers: Vec<i64> = all.iter().map(|a| a["attempt"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 1, 2], "the retry started a new round");
    for a in all {
        assert!(a["duration_ms"].as_i64().unwrap() >= 0);
        assert!(a["started_at"].is_string());
        assert!(a["worker"]
            .as_str()
            .unwrap()
            .contains(&std::process::id().to_string()));
    }
    assert!(all[0]["error"].as_str().unwrap().contains("503"));
    assert_eq!(all[3]["error"], Value::Null);

    // Paged: two at a time, every attempt once.
    let first = attempts(&app, &k, delivery, "?limit=2").await;
    let after = first["next_after"].as_i64().unwrap();
    let second = attempts(&app, &k, delivery, &format!("?limit=2&after={after}")).await;
    assert_eq!(second["next_after"], Value::Null);
    let ids: Vec<&Value> = first["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["attempts"].as_array().unwrap())
        .map(|a| &a["id"])
        .collect();
    let expected: Vec<&Value> = all.iter().map(|a| &a["id"]).collect();
    assert_eq!(ids, expected);

    let (status, _) = send(&app, get(&format!("{ENV}/deliveries/999999/attempts"), &k)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[sqlx::test]
async fn a_vanished_worker_s_attempt_is_kept_as_lease_expired_and_a_replay_adds_attempts(
    pool: PgPool,
) {
    let k = key(&pool, "w", "production", Permission::Write, &[]).await;
    let (audit, _) = scripted("audit", Route::all(), quick_retries(3), |_, _| {
        Ok::<(), HandlerError>(())
    });
    let set = set_of(vec![audit]);
    let app = api(pool.clone());
    let (_, stored) = send(&app, production(&fixture("test-created.json"))).await;
    let event_id: Uuid = stored["event_id"].as_str().unwrap().parse().unwrap();

    // A worker claims the delivery with a 1 s lease and dies without a word.
    let store = Store::new(pool.clone());
    let claim = ClaimRequest {
        handler: "audit",
        from: None,
        limit: 1,
        lease: Duration::from_secs(1),
        token: Uuid::new_v4(),
        worker: "vanished:1:dead",
    };
    assert_eq!(store.claim(&claim).await.unwrap().len(), 1);
    dispatch_until(
        &pool,
        set.clone(),
        "SELECT bool_and(status = 'succeeded') FROM deliveries",
    )
    .await;
    let replay = format!("{ENV}/events/{event_id}/replay");
    assert_eq!(
        send(&app, post(&replay, &k, "")).await.0,
        StatusCode::ACCEPTED
    );
    dispatch_until(
        &pool,
        set,
        "SELECT bool_and(status = 'succeeded') AND (SELECT count(*) = 3 FROM delivery_attempts) FROM deliveries",
    )
    .await;

    let page = attempts(&app, &k, the_delivery(&pool).await, "").await;
    let all = page["attempts"].as_array().unwrap();
    let seen: Vec<(&str, &str)> = all
        .iter()
        .map(|a| {
            (
                a["outcome"].as_str().unwrap(),
                a["worker"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen[0], ("lease_expired", "vanished:1:dead"));
    assert_eq!(all[0]["duration_ms"], Value::Null);
    assert_eq!((seen[1].0, seen[2].0), ("succeeded", "succeeded"));
    assert_eq!(all[1]["attempt"], 2, "the vanished attempt counts");
    assert_eq!(all[2]["attempt"], 1, "the replay started a new round");
}

#[sqlx::test]
async fn retention_removes_a_delivery_s_attempts_with_it(pool: PgPool) {
    let (down, _) = scripted("audit", Route::all(), quick_retries(2), |n, _| {
        Err(HandlerError::retryable(format!("down #{n}")))
    });
    let set = set_of(vec![down]);
    send(
        &app_routing(pool.clone(), &set),
        production(&fixture("test-created.json")),
    )
    .await;
    dispatch_until(
        &pool,
        set,
        "SELECT bool_and(status = 'dead') FROM deliveries",
    )
    .await;
    assert_eq!(count(&pool, "delivery_attempts").await, 2);

    let mut connection = pool.acquire().await.unwrap();
    let cutoffs = voltage_webhooks::store::retention::Cutoffs {
        events_before: None,
        dedup_before: chrono::Utc::now(),
        dead_before: Some(chrono::Utc::now() + chrono::Duration::seconds(1)),
    };
    let purged =
        voltage_webhooks::store::retention::purge_dead_deliveries(&mut connection, &cutoffs, 100)
            .await
            .unwrap();
    assert_eq!(purged, 1);
    assert_eq!(count(&pool, "delivery_attempts").await, 0);
}

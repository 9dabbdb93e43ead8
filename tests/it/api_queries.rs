//! The query API: events, raw bytes, paging while events arrive, payment state under reordering,
//! replay with an Idempotency-Key, retry of dead deliveries, and the OpenAPI document.

use std::collections::HashSet;

use crate::common::api::*;
use crate::common::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use sqlx::PgPool;
use tower::ServiceExt as _;
use voltage_webhooks::auth::Permission;

pub(crate) const ENV: &str = "/v1/environments/production";

pub(crate) async fn stored(app: &axum::Router, request: Request<Body>) -> String {
    let (status, body) = send(app, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().unwrap().to_owned()
}

pub(crate) fn test_event(tag: &str) -> Vec<u8> {
    format!(r#"{{"type":"test","detail":{{"event":"created","data":"{tag}"}}}}"#).into_bytes()
}

#[sqlx::test]
async fn an_event_is_served_with_its_payload_its_exact_bytes_and_its_deliveries(pool: PgPool) {
    let k = key(&pool, "r", "production", Permission::Read, &[]).await;
    let app = api(pool.clone());
    let body = fixture("receive-completed-bolt11.json");
    let id = stored(&app, production(&body)).await;

    let (status, event) = send(&app, get(&format!("{ENV}/events/{id}"), &k)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (event["type"].as_str(), event["event"].as_str()),
        (Some("receive"), Some("completed"))
    );
    assert_eq!(
        event["payload"],
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    );
    assert_eq!(event["secret_index"], 0);

    let raw = app
        .clone()
        .oneshot(get(&format!("{ENV}/events/{id}/raw"), &k))
        .await
        .unwrap();
    assert_eq!(raw.headers()["content-type"], "application/json");
    assert_eq!(
        raw.into_body().collect().await.unwrap().to_bytes().to_vec(),
        body,
        "raw bytes differ"
    );

    let (_, deliveries) = send(&app, get(&format!("{ENV}/events/{id}/deliveries"), &k)).await;
    assert_eq!(deliveries[0]["handler"], "audit");
    assert_eq!(deliveries[0]["status"], "pending");

    // Another environment's key never sees it, even through its own path.
    let staging = key(&pool, "s", "staging", Permission::Read, &[]).await;
    let (status, body) = send(
        &app,
        get(&format!("/v1/environments/staging/events/{id}"), &staging),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "event_not_found")
    );
}

#[sqlx::test]
async fn filters_select_by_type_event_and_payment(pool: PgPool) {
    let k = key(&pool, "r", "production", Permission::Read, &[]).await;
    let app = api(pool.clone());
    stored(&app, production(&fixture("receive-completed-bolt11.json"))).await;
    stored(&app, production(&fixture("send-succeeded-bolt11.json"))).await;
    stored(&app, production(&test_event("x"))).await;
    let count_of = |query: &str| {
        let app = app.clone();
        let path = format!("{ENV}/events?{query}");
        let k = k.clone();
        async move {
            send(&app, get(&path, &k)).await.1["events"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(count_of("").await, 3);
    assert_eq!(count_of("type=send").await, 1);
    assert_eq!(count_of("type=receive&event=completed").await, 1);
    assert_eq!(
        count_of("payment_id=123e4567-e89b-12d3-a456-426614174003").await,
        1
    );
    assert_eq!(count_of("received_before=2000-01-01T00:00:00Z").await, 0);
    let (status, body) = send(&app, get(&format!("{ENV}/events?limit=501"), &k)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );
    let (status, body) = send(&app, get(&format!("{ENV}/events?cursor=bogus"), &k)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_cursor")
    );
}

#[sqlx::test]
async fn paging_returns_every_event_exactly_once_while_events_keep_arriving(pool: PgPool) {
    let k = key(&pool, "r", "production", Permission::Read, &[]).await;
    let app = api(pool.clone());
    let mut before = HashSet::new();
    for i in 0..120 {
        before.insert(stored(&app, production(&test_event(&format!("old-{i}")))).await);
    }
    for order in ["desc", "asc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut arrivals = 0;
        loop {
            let mut path = format!("{ENV}/events?limit=25&order={order}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = send(&app, get(&path, &k)).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            seen.extend(
                page["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_str().unwrap().to_owned()),
            );
            // New events keep arriving between pages.
            for _ in 0..3 {
                arrivals += 1;
                stored(
                    &app,
                    production(&test_event(&format!("{order}-new-{arrivals}"))),
                )
                .await;
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        let unique: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "{order}: an event was returned twice"
        );
        assert!(before.is_subset(&unique), "{order}: an event was skipped");
    }
}

#[sqlx::test]
async fn payment_state_does_not_regress_when_an_older_event_arrives_late(pool: PgPool) {
    let k = key(&pool, "r", "production", Permission::Read, &[]).await;
    let app = api(pool.clone());
    let completed = fixture("receive-completed-bolt11.json");
    // The same payment's earlier state, delivered after the completion.
    let earlier = String::from_utf8(completed.clone())
        .unwrap()
        .replace("\"event\":\"completed\"", "\"event\":\"generated\"")
        .replace("\"status\":\"completed\"", "\"status\":\"receiving\"")
        .replace("2026-08-31T18:26:41.641532Z", "2026-08-31T18:26:36.900000Z");
    let completed_id = stored(&app, production(&completed)).await;
    stored(&app, production(earlier.as_bytes())).await;

    let (status, payment) = send(
        &app,
        get(
            &format!("{ENV}/payments/123e4567-e89b-12d3-a456-426614174003"),
            &k,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{payment}");
    assert_eq!(payment["status"], "completed");
    assert_eq!(payment["last_event"]["event_id"], completed_id.as_str());
    assert_eq!(payment["direction"], "receive");
    assert_eq!(payment["amount"]["amount"], 1000);
    assert_eq!(
        payment["history"].as_array().unwrap().len(),
        2,
        "the late event is in the history"
    );
    let (status, body) = send(&app, get(&format!("{ENV}/payments/unknown"), &k)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "payment_not_found")
    );
}

#[sqlx::test]
async fn a_replay_with_an_idempotency_key_happens_once(pool: PgPool) {
    let w = key(&pool, "w", "production", Permission::Write, &[]).await;
    let app = api(pool.clone());
    let id = stored(&app, production(&test_event("replay"))).await;
    sqlx::query("UPDATE deliveries SET status = 'succeeded', attempts = 1, completed_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    let replay = |key: &str| {
        let mut request = post(
            &format!("{ENV}/events/{id}/replay"),
            &w,
            r#"{"handlers":["audit"]}"#,
        );
        request
            .headers_mut()
            .insert("idempotency-key", key.parse().unwrap());
        request
    };
    let (status, body) = send(&app, replay("k-1")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("replayed"))
    );
    assert_eq!(states_of(&pool).await, [("pending".to_owned(), 0)]);

    // Delivered again; the repeated request must not enqueue a third time.
    sqlx::query("UPDATE deliveries SET status = 'succeeded', attempts = 1, completed_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    let (status, body) = send(&app, replay("k-1")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("already_replayed"))
    );
    assert_eq!(states_of(&pool).await, [("succeeded".to_owned(), 1)]);

    let (status, body) = send(
        &app,
        post(
            &format!("{ENV}/events/{id}/replay"),
            &w,
            r#"{"handlers":["nope"]}"#,
        ),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_handler")
    );
}

async fn states_of(pool: &PgPool) -> Vec<(String, i32)> {
    sqlx::query_as("SELECT status, attempts FROM deliveries")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn dead_deliveries_are_listed_and_retried_once(pool: PgPool) {
    let w = key(&pool, "w", "production", Permission::Write, &[]).await;
    let app = api(pool.clone());
    stored(&app, production(&test_event("dead"))).await;
    stored(&app, production(&test_event("alive"))).await;
    sqlx::query("UPDATE deliveries SET status = 'dead', attempts = 12, last_error = 'gave up', completed_at = now() WHERE id = (SELECT min(id) FROM deliveries)")
        .execute(&pool)
        .await
        .unwrap();
    let (_, page) = send(&app, get(&format!("{ENV}/deliveries?status=dead"), &w)).await;
    let dead = page["deliveries"].as_array().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["last_error"], "gave up");
    let retry = format!("{ENV}/deliveries/{}/retry", dead[0]["id"]);
    assert_eq!(
        send(&app, post(&retry, &w, "")).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        states_of(&pool)
            .await
            .iter()
            .filter(|(s, a)| s == "pending" && *a == 0)
            .count(),
        2
    );
    let (status, body) = send(&app, post(&retry, &w, "")).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "not_dead"));
    let (status, _) = send(
        &app,
        post(&format!("{ENV}/deliveries/999999/retry"), &w, ""),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[sqlx::test]
async fn the_openapi_document_describes_every_route(pool: PgPool) {
    let app = api(pool);
    let response = app
        .oneshot(
            Request::get("/v1/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let doc: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let env = "/v1/environments/{environment}";
    for (path, method) in [
        ("/events", "get"),
        ("/events/{event_id}", "get"),
        ("/events/{event_id}/raw", "get"),
        ("/events/{event_id}/deliveries", "get"),
        ("/events/{event_id}/replay", "post"),
        ("/events/stream", "get"),
        ("/payments/{payment_id}", "get"),
        ("/deliveries", "get"),
        ("/deliveries/{delivery_id}/retry", "post"),
    ] {
        let full = format!("{env}{path}");
        assert!(
            doc["paths"][&full][method].is_object(),
            "{method} {full} missing from the OpenAPI document"
        );
    }
}

/// `audit` takes everything; `prod-ledger` production only; `sends` only `send.*` events.
fn routed_app(pool: PgPool) -> axum::Router {
    use voltage_webhooks::event::{EventFilter, Route};
    let route = |environments: Option<&[&str]>, filter: &str| Route {
        environments: environments.map(|e| e.iter().map(|s| s.to_string()).collect()),
        filters: vec![EventFilter::parse(filter).unwrap()],
    };
    api_routed(
        pool,
        vec![
            ("audit".into(), Route::all()),
            ("prod-ledger".into(), route(Some(&["production"]), "*")),
            ("sends".into(), route(None, "send.*")),
        ],
    )
}

#[sqlx::test]
async fn a_replay_goes_only_to_handlers_whose_route_matches_the_event(pool: PgPool) {
    let w = key(&pool, "staging-w", "staging", Permission::Write, &[]).await;
    let app = routed_app(pool.clone());
    let id = stored(&app, staging(&test_event("staging"))).await;
    let replay = format!("/v1/environments/staging/events/{id}/replay");
    for other in ["prod-ledger", "sends"] {
        let (status, body) = send(
            &app,
            post(&replay, &w, &format!(r#"{{"handlers":["{other}"]}}"#)),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "handler_not_subscribed"),
            "{other}"
        );
    }
    let handlers: Vec<String> = sqlx::query_scalar("SELECT handler FROM deliveries")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        handlers,
        ["audit"],
        "nothing enqueued for the refused handlers"
    );
    let (status, body) = send(&app, post(&replay, &w, r#"{"handlers":["audit"]}"#)).await;
    assert_eq!(
        (status, body["handlers"].clone()),
        (StatusCode::ACCEPTED, serde_json::json!(["audit"]))
    );
}

#[sqlx::test]
async fn a_dead_delivery_to_a_handler_the_event_is_not_routed_to_is_not_retried(pool: PgPool) {
    let w = key(&pool, "staging-w", "staging", Permission::Write, &[]).await;
    let app = routed_app(pool.clone());
    let id = stored(&app, staging(&test_event("staging"))).await;
    // A row the event's route does not cover (written before routing was checked, or before a
    // reload changed the route).
    let stray: i64 = sqlx::query_scalar(
        "INSERT INTO deliveries (event_id, handler, status, attempts, completed_at) \
         VALUES ($1::uuid, 'prod-ledger', 'dead', 12, now()) RETURNING id",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    let retry = format!("/v1/environments/staging/deliveries/{stray}/retry");
    let (status, body) = send(&app, post(&retry, &w, "")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "handler_not_subscribed")
    );
    let status: String = sqlx::query_scalar("SELECT status FROM deliveries WHERE id = $1")
        .bind(stray)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "dead");
}

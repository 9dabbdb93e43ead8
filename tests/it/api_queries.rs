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

const ENV: &str = "/v1/environments/production";

async fn stored(app: &axum::Router, request: Request<Body>) -> String {
    let (status, body) = send(app, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().unwrap().to_owned()
}

fn test_event(tag: &str) -> Vec<u8> {
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
    use voltage_webhooks::handlers::{EventFilter, Route};
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

#[sqlx::test]
async fn a_nul_byte_in_a_path_or_query_value_is_a_400_not_a_503(pool: PgPool) {
    let k = key(&pool, "r", "production", Permission::Read, &[]).await;
    let app = api(pool.clone());
    for path in [
        "/payments/%00",
        "/payments/abc%00def",
        "/events?payment_id=%00",
        "/events?type=%00",
        "/events?event=x%00",
        "/events/%00",
        "/deliveries?handler=%00",
    ] {
        let response = app
            .clone()
            .oneshot(get(&format!("{ENV}{path}"), &k))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        assert!(response.headers().get("retry-after").is_none(), "{path}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(code(&body), "invalid_parameter", "{path}");
    }
}

#[sqlx::test]
async fn a_wrong_method_gets_405_with_the_error_body_and_an_allow_header(pool: PgPool) {
    let k = key(&pool, "w", "production", Permission::Write, &[]).await;
    let app = api(pool.clone());
    for (method, path, allowed) in [
        ("DELETE", format!("{ENV}/events"), "GET,HEAD"),
        ("POST", format!("{ENV}/payments/p-1"), "GET,HEAD"),
        ("GET", format!("{ENV}/deliveries/1/retry"), "POST"),
        ("PUT", "/webhooks/production".to_owned(), "POST"),
        ("POST", "/healthz".to_owned(), "GET,HEAD"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(&path)
            .header("x-api-key", &k)
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let allow = response.headers()["allow"]
            .to_str()
            .unwrap()
            .replace(' ', "");
        assert_eq!(allow, allowed, "{method} {path}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(code(&body), "method_not_allowed", "{method} {path}");
        assert!(body["error"]["detail"].is_string());
    }
}

#[sqlx::test]
async fn unknown_query_parameters_are_refused_on_every_route(pool: PgPool) {
    let k = key(&pool, "r", "production", Permission::Read, &[]).await;
    let app = api(pool.clone());
    let id = stored(&app, production(&test_event("x"))).await;
    for path in [
        format!("{ENV}/events?sorce=reconciliation"),
        format!("{ENV}/events?type=test&limt=5"),
        format!("{ENV}/events/{id}?expand=payload"),
        format!("{ENV}/events/{id}/raw?x=1"),
        format!("{ENV}/events/{id}/deliveries?status=dead"),
        format!("{ENV}/payments/p-1?x=1"),
        format!("{ENV}/deliveries?state=dead"),
        format!("{ENV}/events/stream?cursor=abc"),
    ] {
        let (status, body) = send(&app, get(&path, &k)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_parameter"),
            "{path}"
        );
    }
}

#[sqlx::test]
async fn events_filter_by_source_and_by_several_types_or_events(pool: PgPool) {
    let k = key(&pool, "r", "production", Permission::Read, &[]).await;
    let app = api(pool.clone());
    stored(&app, production(&fixture("receive-completed-bolt11.json"))).await;
    stored(&app, production(&fixture("send-succeeded-bolt11.json"))).await;
    let recovered = stored(&app, production(&test_event("x"))).await;
    sqlx::query(
        "UPDATE events SET source = 'reconciliation', webhook_id = NULL, secret_index = NULL, \
         signed_timestamp = NULL WHERE id = $1::uuid",
    )
    .bind(&recovered)
    .execute(&pool)
    .await
    .unwrap();
    let ids_of = |query: &str| {
        let app = app.clone();
        let path = format!("{ENV}/events?{query}");
        let k = k.clone();
        async move {
            let (status, body) = send(&app, get(&path, &k)).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            body["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["type"].as_str().unwrap().to_owned(),
                        e["source"].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ids_of("source=reconciliation").await,
        [("test".to_owned(), "reconciliation".to_owned())]
    );
    assert_eq!(ids_of("source=webhook").await.len(), 2);
    assert_eq!(ids_of("type=send,receive").await.len(), 2);
    assert_eq!(ids_of("type=send,test").await.len(), 2);
    assert_eq!(ids_of("event=completed,succeeded").await.len(), 2);
    let (status, body) = send(
        &app,
        get(&format!("{ENV}/events?source=carrier-pigeon"), &k),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );
}

#[sqlx::test]
async fn the_last_page_carries_a_cursor_to_resume_from_the_end(pool: PgPool) {
    let k = key(&pool, "r", "production", Permission::Read, &[]).await;
    let app = api(pool.clone());
    stored(&app, production(&test_event("1"))).await;
    stored(&app, production(&test_event("2"))).await;
    let (_, page) = send(&app, get(&format!("{ENV}/events?order=asc&limit=10"), &k)).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert!(page["next_cursor"].is_null(), "no further page now");
    let resume = page["resume_cursor"]
        .as_str()
        .expect("a cursor on the last page")
        .to_owned();
    // Nothing new yet: an empty page that hands the same position back.
    let (_, empty) = send(
        &app,
        get(&format!("{ENV}/events?order=asc&cursor={resume}"), &k),
    )
    .await;
    assert_eq!(empty["events"].as_array().unwrap().len(), 0);
    assert_eq!(empty["resume_cursor"].as_str(), Some(resume.as_str()));
    let third = stored(&app, production(&test_event("3"))).await;
    let (_, later) = send(
        &app,
        get(&format!("{ENV}/events?order=asc&cursor={resume}"), &k),
    )
    .await;
    let ids: Vec<&str> = later["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [third.as_str()]);
}

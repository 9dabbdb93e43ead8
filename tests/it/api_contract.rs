//! The query API's contract at its edges: unknown query parameters, NUL bytes, wrong methods are
//! input errors with the documented error body, never a 5xx; filters by source and by several
//! types or events; a cursor on the last page to resume from the end.

use crate::api_queries::{stored, test_event, ENV};
use crate::common::api::*;
use crate::common::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use sqlx::PgPool;
use tower::ServiceExt as _;
use voltage_webhooks::auth::Permission;

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

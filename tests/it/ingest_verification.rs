//! Verification at the HTTP edge: known-answer vectors, rotation, and every refusal, each of which
//! must write nothing.

use crate::common::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use sqlx::PgPool;

const TEST_BODY: &[u8] = br#"{"type":"test","detail":{"event":"created","data":"testing"}}"#;

/// The `voltage-signature` crate tests itself with a copy of the vectors (a crate's tests may not read
/// outside its directory): the copy must stay the same as the fixtures the service is tested with.
#[test]
fn the_signature_crate_tests_the_same_known_answer_vectors() {
    let copies = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/voltage-signature/tests/vectors"
    );
    for name in [
        "known-answers.json",
        "receive-completed-bolt11.json",
        "send-succeeded-bolt11.json",
    ] {
        let copy = std::fs::read(format!("{copies}/{name}")).unwrap();
        assert!(
            copy == fixture(name),
            "crates/voltage-signature/tests/vectors/{name} differs from tests/fixtures/voltage/{name}"
        );
    }
}

#[sqlx::test]
async fn every_known_answer_vector_is_accepted_or_refused_as_recorded(pool: PgPool) {
    let vectors: Vec<Value> = serde_json::from_slice(&fixture("known-answers.json")).unwrap();
    assert!(vectors.len() >= 8);
    for vector in vectors {
        let what = vector["what"].as_str().unwrap();
        let body = match vector["body_file"].as_str() {
            Some(file) => fixture(file),
            None => vector["body"].as_str().unwrap().as_bytes().to_vec(),
        };
        let ts = vector["timestamp"].as_str().unwrap();
        let secret = vector["secret"].as_str().unwrap();
        let (environment, webhook) = if secret == STAGING_SECRET {
            ("staging", STAGING_WEBHOOK)
        } else {
            ("production", PRODUCTION_WEBHOOK)
        };
        let request = Request::post(format!("/webhooks/{environment}"))
            .header("content-type", "application/json")
            .header("x-voltage-webhook-id", webhook)
            .header("x-voltage-timestamp", ts)
            .header("x-voltage-signature", vector["signature"].as_str().unwrap())
            .body(Body::from(body.clone()))
            .unwrap();
        let app = app_at(pool.clone(), ts.parse().unwrap());
        let (status, response) = send(&app, request).await;
        if vector["valid"].as_bool().unwrap() {
            assert_eq!(status, StatusCode::OK, "{what}: {response}");
            assert!(
                ["stored", "duplicate"].contains(&response["status"].as_str().unwrap()),
                "{what}"
            );
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
            assert_eq!(code(&response), "invalid_signature", "{what}");
        }
    }
    // Three distinct events: the real and the synthetic test delivery carry the same body, so they
    // are one event, first verified by the old secret (position 1) and counted twice.
    let rows: Vec<(String, i16, i32)> = sqlx::query_as(
        "SELECT event_type || '.' || event, secret_index, arrival_count FROM events ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("receive.completed".into(), 0, 1),
            ("send.succeeded".into(), 0, 1),
            ("test.created".into(), 1, 2),
        ]
    );
}

#[sqlx::test]
async fn during_a_rotation_old_and_new_secrets_are_accepted_and_any_other_refused(pool: PgPool) {
    let app = app(pool.clone());
    for (secret, index) in [(NEW_SECRET, 0), (OLD_SECRET, 1)] {
        let body =
            format!(r#"{{"type":"test","detail":{{"event":"created","data":"{secret}-probe"}}}}"#);
        let (status, response) = send(
            &app,
            delivery(
                "production",
                PRODUCTION_WEBHOOK,
                secret,
                body.as_bytes(),
                now(),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{response}");
        let id: uuid::Uuid = response["event_id"].as_str().unwrap().parse().unwrap();
        let stored: i16 = sqlx::query_scalar("SELECT secret_index FROM events WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(stored, index);
    }
    let before = count(&pool, "events").await;
    for other in [
        STAGING_SECRET,
        SECOND_SECRET,
        "vltg_TESTONLYsomethingElse000000000",
    ] {
        let (status, response) = send(
            &app,
            delivery("production", PRODUCTION_WEBHOOK, other, TEST_BODY, now()),
        )
        .await;
        assert_eq!(
            (status, code(&response)),
            (StatusCode::UNAUTHORIZED, "invalid_signature")
        );
    }
    assert_eq!(count(&pool, "events").await, before);
}

#[sqlx::test]
async fn stale_and_future_timestamps_are_refused(pool: PgPool) {
    let app = app(pool.clone());
    for ts in [now() - 301, now() + 301, 0, 1] {
        let (status, response) = send(
            &app,
            delivery("production", PRODUCTION_WEBHOOK, NEW_SECRET, TEST_BODY, ts),
        )
        .await;
        assert_eq!(
            (status, code(&response)),
            (StatusCode::UNAUTHORIZED, "stale_timestamp"),
            "{ts}"
        );
    }
    // Just inside the window, both ways.
    for ts in [now() - 290, now() + 290] {
        let body = format!(r#"{{"type":"test","detail":{{"event":"created","data":"{ts}"}}}}"#);
        let (status, _) = send(
            &app,
            delivery(
                "production",
                PRODUCTION_WEBHOOK,
                NEW_SECRET,
                body.as_bytes(),
                ts,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[sqlx::test]
async fn a_tampered_body_is_refused_and_nothing_is_written(pool: PgPool) {
    let app = app(pool.clone());
    let body = fixture("receive-completed-bolt11.json");
    let mut request = production(&body);
    let tampered = String::from_utf8(body)
        .unwrap()
        .replace("\"amount\":1000", "\"amount\":9000");
    *request.body_mut() = Body::from(tampered);
    let (status, response) = send(&app, request).await;
    assert_eq!(
        (status, code(&response)),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
    assert_nothing_written(&pool).await;
}

#[sqlx::test]
async fn unknown_and_malformed_webhook_ids_are_refused(pool: PgPool) {
    let app = app(pool.clone());
    for id in ["00000000-0000-4000-8000-000000000000", "not-a-uuid", ""] {
        let (status, response) = send(
            &app,
            delivery("production", id, NEW_SECRET, TEST_BODY, now()),
        )
        .await;
        assert_eq!(
            (status, code(&response)),
            (StatusCode::UNAUTHORIZED, "unknown_webhook"),
            "{id:?}"
        );
    }
    assert_nothing_written(&pool).await;
}

#[sqlx::test]
async fn a_staging_registration_pointed_at_the_production_url_is_diagnosed(pool: PgPool) {
    let app = app(pool.clone());
    // Correctly signed with the staging secret, but sent to the production URL.
    let request = delivery(
        "production",
        STAGING_WEBHOOK,
        STAGING_SECRET,
        TEST_BODY,
        now(),
    );
    let (status, response) = send(&app, request).await;
    assert_eq!(
        (status, code(&response)),
        (StatusCode::UNAUTHORIZED, "wrong_environment")
    );
    assert!(response["error"]["detail"]
        .as_str()
        .unwrap()
        .contains("staging"));
    assert_nothing_written(&pool).await;
}

#[sqlx::test]
async fn each_missing_signature_header_is_named(pool: PgPool) {
    let app = app(pool.clone());
    for missing in [
        "x-voltage-webhook-id",
        "x-voltage-timestamp",
        "x-voltage-signature",
    ] {
        let mut request = production(TEST_BODY);
        request.headers_mut().remove(missing);
        let (status, response) = send(&app, request).await;
        assert_eq!(
            (status, code(&response)),
            (StatusCode::UNAUTHORIZED, "missing_header")
        );
        assert!(response["error"]["detail"]
            .as_str()
            .unwrap()
            .contains(missing));
    }
    assert_nothing_written(&pool).await;
}

#[sqlx::test]
async fn a_timestamp_that_is_not_decimal_digits_is_refused(pool: PgPool) {
    let app = app(pool.clone());
    let mut request = production(TEST_BODY);
    let ts = format!("{}.0", now());
    request
        .headers_mut()
        .insert("x-voltage-timestamp", ts.parse().unwrap());
    let (status, response) = send(&app, request).await;
    assert_eq!(
        (status, code(&response)),
        (StatusCode::UNAUTHORIZED, "missing_header")
    );
    assert_nothing_written(&pool).await;
}

#[sqlx::test]
async fn an_oversized_body_gets_413_whether_declared_or_streamed(pool: PgPool) {
    let app = app(pool.clone());
    let big = vec![b' '; 262_145];
    let (status, response) = send(&app, production(&big)).await;
    assert_eq!(
        (status, code(&response)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );

    // No content-length: a streamed body is cut at the limit too.
    let chunks = futures_chunks(big);
    let mut request = production(b"");
    *request.body_mut() = Body::from_stream(chunks);
    request.headers_mut().remove("content-length");
    let (status, _) = send(&app, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_nothing_written(&pool).await;
}

fn futures_chunks(
    bytes: Vec<u8>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(8192).map(|c| Ok(c.to_vec())).collect();
    futures_util::stream::iter(chunks)
}

#[sqlx::test]
async fn a_content_type_other_than_json_gets_415(pool: PgPool) {
    let app = app(pool.clone());
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = production(TEST_BODY);
        match content_type {
            Some(t) => request
                .headers_mut()
                .insert("content-type", t.parse().unwrap()),
            None => request.headers_mut().remove("content-type"),
        };
        let (status, response) = send(&app, request).await;
        assert_eq!(
            (status, code(&response)),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        );
    }
    let mut request = production(TEST_BODY);
    request.headers_mut().insert(
        "content-type",
        "application/json; charset=utf-8".parse().unwrap(),
    );
    assert_eq!(send(&app, request).await.0, StatusCode::OK);
}

#[sqlx::test]
async fn an_unknown_environment_gets_404(pool: PgPool) {
    let app = app(pool.clone());
    let request = delivery("sandbox", PRODUCTION_WEBHOOK, NEW_SECRET, TEST_BODY, now());
    let (status, response) = send(&app, request).await;
    assert_eq!(
        (status, code(&response)),
        (StatusCode::NOT_FOUND, "unknown_environment")
    );
    assert_nothing_written(&pool).await;
}

//! The built-in handlers against real peers: `http` against a local fake downstream service, its
//! signature checked by the off-the-shelf `standardwebhooks` crate; `nats` against the real
//! JetStream server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::fanout::*;
use crate::common::*;
use axum::http::{HeaderMap, StatusCode};
use futures_util::StreamExt as _;
use sqlx::PgPool;
use voltage_webhooks::app::handler_set;
use voltage_webhooks::config::Config;
use voltage_webhooks::handlers::HandlerSet;

/// Every request the fake downstream received: headers and body.
type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A downstream service that answers with the given statuses in turn (the last one repeats) and
/// records every request.
async fn downstream(statuses: Vec<u16>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let recorded = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: bytes::Bytes| {
            let recorded = recorded.clone();
            let statuses = statuses.clone();
            async move {
                let mut all = recorded.lock().unwrap();
                all.push((headers, body.to_vec()));
                let status = statuses[(all.len() - 1).min(statuses.len() - 1)];
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

async fn handlers_from(toml: &str) -> Arc<HandlerSet> {
    let config = Config::from_toml(&format!("{}\n{toml}", config_toml())).unwrap();
    Arc::new(handler_set(&config, Vec::new()).await.unwrap())
}

fn http_handler(url: &str) -> String {
    format!(
        "[[handlers]]\nname = \"ledger\"\nkind = \"http\"\nurl = \"{url}\"\nsecret = {{ value = \"{WHSEC}\" }}\n\
         events = [\"receive.completed\"]\nbackoff_base_ms = 1\nbackoff_cap_ms = 5\nmax_attempts = 4\ntimeout_ms = 2000\n"
    )
}

#[sqlx::test]
async fn the_http_handler_posts_a_standard_webhook_that_an_off_the_shelf_library_verifies(
    pool: PgPool,
) {
    let (url, seen) = downstream(vec![503, 204]).await;
    let set = handlers_from(&http_handler(&url)).await;
    let body = fixture("receive-completed-bolt11.json");
    let (_, accepted) = send(&app_routing(pool.clone(), &set), production(&body)).await;
    dispatch_until(
        &pool,
        set,
        "SELECT bool_and(status = 'succeeded') FROM deliveries",
    )
    .await;

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "a 503 is retried, then 204 is success");
    let verifier = standardwebhooks::Webhook::new(WHSEC).unwrap();
    for (headers, sent) in seen.iter() {
        verifier
            .verify(sent, headers)
            .expect("signature verifies with standardwebhooks");
        assert_eq!(
            headers["webhook-id"],
            accepted["event_id"].as_str().unwrap()
        );
        let document: serde_json::Value = serde_json::from_slice(sent).unwrap();
        assert_eq!(document["event_id"], accepted["event_id"]);
        assert_eq!(
            (document["type"].as_str(), document["event"].as_str()),
            (Some("receive"), Some("completed"))
        );
        assert_eq!(
            document["payload"],
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        );
    }
    // And the check can fail: a changed body does not verify.
    let (headers, sent) = &seen[0];
    let mut forged = sent.clone();
    forged[5] ^= 1;
    assert!(verifier.verify(&forged, headers).is_err());
}

#[sqlx::test]
async fn the_http_handler_dead_letters_a_4xx_at_once(pool: PgPool) {
    let (url, seen) = downstream(vec![404]).await;
    let set = handlers_from(&http_handler(&url)).await;
    send(
        &app_routing(pool.clone(), &set),
        production(&fixture("receive-completed-bolt11.json")),
    )
    .await;
    dispatch_until(
        &pool,
        set,
        "SELECT bool_and(status = 'dead') FROM deliveries",
    )
    .await;
    assert_eq!(seen.lock().unwrap().len(), 1);
    let (_, attempts, error) = states(&pool).await.remove("ledger").unwrap();
    assert_eq!(attempts, 1);
    assert!(error.unwrap().contains("404"));
}

#[sqlx::test]
async fn jetstream_receives_each_event_once_with_its_subject_and_msg_id(pool: PgPool) {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (prefix, stream) = (format!("vwtest{tag}"), format!("VWTEST_{tag}"));
    let set = handlers_from(&format!(
        "[[handlers]]\nname = \"bus\"\nkind = \"nats\"\nsubject_prefix = \"{prefix}\"\nstream = \"{stream}\"\ncreate_stream = true\n"
    ))
    .await;
    let app = app_routing(pool.clone(), &set);
    let mut expected = Vec::new();
    for (request, subject) in [
        (
            production(&fixture("receive-completed-bolt11.json")),
            "production.receive.completed",
        ),
        (
            production(&fixture("send-succeeded-bolt11.json")),
            "production.send.succeeded",
        ),
        (
            staging(&fixture("send-failed-onchain.json")),
            "staging.send.failed",
        ),
    ] {
        let (_, accepted) = send(&app, request).await;
        expected.push((
            format!("{prefix}.{subject}"),
            accepted["event_id"].as_str().unwrap().to_owned(),
        ));
    }
    let (stop, task) = start_dispatcher(pool.clone(), set, fast_dispatch());
    wait_for(
        &pool,
        "SELECT bool_and(status = 'succeeded') FROM deliveries",
        Duration::from_secs(20),
    )
    .await;

    // A redelivery of one event (as after a crash between publish and commit): JetStream drops it.
    sqlx::query("UPDATE deliveries SET status = 'pending', next_attempt_at = now() WHERE id = (SELECT min(id) FROM deliveries)")
        .execute(&pool)
        .await
        .unwrap();
    wait_for(
        &pool,
        "SELECT bool_and(status = 'succeeded') AND max(attempts) = 2 FROM deliveries",
        Duration::from_secs(20),
    )
    .await;
    stop.cancel();
    task.await.unwrap();

    let jetstream =
        async_nats::jetstream::new(async_nats::connect("127.0.0.1:4222").await.unwrap());
    let mut js_stream = jetstream.get_stream(&stream).await.unwrap();
    assert_eq!(
        js_stream.info().await.unwrap().state.messages,
        3,
        "the redelivery was not deduplicated"
    );
    let consumer = js_stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut batch = consumer.fetch().max_messages(10).messages().await.unwrap();
    while let Some(message) = batch.next().await {
        let message = message.unwrap();
        let id = message
            .headers
            .as_ref()
            .unwrap()
            .get("Nats-Msg-Id")
            .unwrap()
            .to_string();
        let document: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(document["event_id"].as_str().unwrap(), id);
        received.push((message.subject.to_string(), id));
    }
    jetstream.delete_stream(&stream).await.unwrap();
    received.sort();
    expected.sort();
    assert_eq!(received, expected);
}

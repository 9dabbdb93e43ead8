//! The event stream is driven by the database: an event stored by another replica (its own pool,
//! its own app) reaches a client streaming from this one, and `Last-Event-ID` resumes after it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::api::*;
use crate::common::*;
use sqlx::PgPool;
use voltage_webhooks::auth::Permission;

const STREAM: &str = "/v1/environments/production/events/stream";

/// Reads until one complete `event: voltage` block; returns its id and data.
async fn next_event(
    response: &mut reqwest::Response,
    buffer: &mut String,
) -> (String, serde_json::Value) {
    let read = async {
        loop {
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                if !block.lines().any(|l| l == "event: voltage") {
                    continue; // a keep-alive comment
                }
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
                        .unwrap()
                };
                return (field("id"), serde_json::from_str(&field("data")).unwrap());
            }
            let chunk = response.chunk().await.unwrap().expect("stream ended");
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read)
        .await
        .expect("no event within 15 s")
}

async fn open(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    resume: Option<&str>,
) -> reqwest::Response {
    let mut request = client.get(url).header("x-api-key", key);
    if let Some(id) = resume {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    response
}

#[sqlx::test]
async fn the_stream_delivers_events_stored_by_another_replica_and_resumes_after_the_last_seen(
    pool: PgPool,
) {
    let k = key(&pool, "stream", "production", Permission::Read, &[]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{STREAM}", listener.local_addr().unwrap());
    let service = voltage_webhooks::http::router(state(pool.clone()))
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });

    // The other replica: its own pool and app, sharing only the database.
    let other_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    let other = app(other_pool);
    let client = reqwest::Client::new();

    let mut live = open(&client, &url, &k, None).await;
    let mut buffer = String::new();
    let (_, first) = send(
        &other,
        production(br#"{"type":"test","detail":{"event":"created","data":"s1"}}"#),
    )
    .await;
    let (first_cursor, data) = next_event(&mut live, &mut buffer).await;
    assert_eq!(data["id"], first["event_id"]);
    assert_eq!(
        (data["type"].as_str(), data["event"].as_str()),
        (Some("test"), Some("created"))
    );

    // Disconnected; meanwhile two more events are stored. Resuming yields them, and not the first.
    drop(live);
    let (_, second) = send(
        &other,
        production(br#"{"type":"test","detail":{"event":"created","data":"s2"}}"#),
    )
    .await;
    let (_, third) = send(
        &other,
        production(&fixture("receive-completed-bolt11.json")),
    )
    .await;
    let mut resumed = open(&client, &url, &k, Some(&first_cursor)).await;
    let mut buffer = String::new();
    assert_eq!(
        next_event(&mut resumed, &mut buffer).await.1["id"],
        second["event_id"]
    );
    assert_eq!(
        next_event(&mut resumed, &mut buffer).await.1["id"],
        third["event_id"]
    );
}

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

/// A connection that opens a transaction, takes a transaction id and keeps it open, in `database`.
async fn open_transaction(pool: &PgPool, database: Option<&str>) -> sqlx::PgConnection {
    use sqlx::Connection as _;
    let mut options = pool.connect_options().as_ref().clone();
    if let Some(name) = database {
        options = options.database(name);
    }
    let mut connection = sqlx::PgConnection::connect_with(&options).await.unwrap();
    sqlx::query("BEGIN").execute(&mut connection).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut connection)
        .await
        .unwrap();
    connection
}

/// The feed after `start`, polled as a stream polls it: the first read that returns rows, within
/// 50 polls 20 ms apart (empty if none does).
///
/// One read is not enough: a transaction anywhere in the cluster (another test's) that ends between
/// the horizon's snapshot and its status check holds that read back, by design, for one poll (see
/// `feed_horizon`). Reading once made these tests fail about once in four full runs.
async fn first_poll_with_rows(
    store: &voltage_webhooks::store::Store,
    start: &str,
) -> Vec<voltage_webhooks::store::FeedRow> {
    for _ in 0..50 {
        let rows = store
            .feed_after("production", start, uuid::Uuid::nil(), 10)
            .await
            .unwrap();
        if !rows.is_empty() {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Vec::new()
}

#[sqlx::test]
async fn transactions_that_do_not_write_events_do_not_hold_the_stream_back(pool: PgPool) {
    let store = voltage_webhooks::store::Store::new(pool.clone());
    let start = store.feed_start().await.unwrap();
    // Open write transactions elsewhere in the cluster and in this very database.
    let _other_database = open_transaction(&pool, Some("postgres")).await;
    let _same_database = open_transaction(&pool, None).await;
    let app = app(pool.clone());
    let (_, stored) = send(&app, production(&fixture("test-created.json"))).await;
    // Both transactions stay open for the whole test: if they held the stream back, no poll would
    // ever see the event.
    let rows = first_poll_with_rows(&store, &start).await;
    let ids: Vec<String> = rows.iter().map(|r| r.event.id.to_string()).collect();
    assert_eq!(ids, [stored["event_id"].as_str().unwrap()]);
}

#[sqlx::test]
async fn a_transaction_that_may_still_write_an_event_holds_later_events_back(pool: PgPool) {
    use sqlx::Connection as _;
    let store = voltage_webhooks::store::Store::new(pool.clone());
    let start = store.feed_start().await.unwrap();
    // A writer of events in progress: it could still insert an event with an older txid.
    let mut writer = sqlx::PgConnection::connect_with(pool.connect_options().as_ref())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut writer).await.unwrap();
    sqlx::query("LOCK TABLE events IN ROW EXCLUSIVE MODE")
        .execute(&mut writer)
        .await
        .unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut writer)
        .await
        .unwrap();
    let app = app(pool.clone());
    send(&app, production(&fixture("test-created.json"))).await;
    let held = store
        .feed_after("production", &start, uuid::Uuid::nil(), 10)
        .await
        .unwrap();
    assert!(held.is_empty(), "an event overtook a writer still open");
    sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
    let released = first_poll_with_rows(&store, &start).await;
    assert_eq!(released.len(), 1);
}

#[sqlx::test]
async fn a_stream_position_beyond_the_range_of_xid8_is_an_invalid_cursor(pool: PgPool) {
    use base64::Engine as _;
    let k = key(&pool, "stream", "production", Permission::Read, &[]).await;
    let app = api(pool.clone());
    for txid in ["18446744073709551616", "99999999999999999999999"] {
        let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("f1:{txid}:{}", uuid::Uuid::nil()));
        // Before the fix this was 200 and a stream that never ends: bound the wait to fail instead.
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            send(&app, get(&format!("{STREAM}?after={cursor}"), &k)),
        )
        .await;
        let (status, body) = answer.expect("an answer, not a stream that never delivers");
        assert_eq!(
            (status, code(&body)),
            (axum::http::StatusCode::BAD_REQUEST, "invalid_cursor"),
            "{txid}"
        );
    }
}

#[sqlx::test]
async fn concurrent_streams_per_api_key_are_capped(pool: PgPool) {
    let k = key(&pool, "stream", "production", Permission::Read, &[]).await;
    let other = key(&pool, "other", "production", Permission::Read, &[]).await;
    let toml = format!("[server]\nmax_streams_per_api_key = 2\n{}", config_toml());
    let config = voltage_webhooks::config::Config::from_toml(&toml).unwrap();
    let (registry, _) = config.resolve().unwrap();
    let state = voltage_webhooks::app::app_state(
        &config,
        registry,
        voltage_webhooks::event::Routing::default(),
        pool.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{STREAM}", listener.local_addr().unwrap());
    let service =
        voltage_webhooks::http::router(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    let client = reqwest::Client::new();

    let first = open(&client, &url, &k, None).await;
    let _second = open(&client, &url, &k, None).await;
    let refused = client
        .get(&url)
        .header("x-api-key", &k)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(code(&body), "too_many_streams");
    // Another key has slots of its own; a closed stream frees its slot.
    let _third = open(&client, &url, &other, None).await;
    drop(first);
    let mut reopened = None;
    for _ in 0..100 {
        let response = client
            .get(&url)
            .header("x-api-key", &k)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            reopened = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reopened.is_some(),
        "the closed stream's slot was never freed"
    );
}

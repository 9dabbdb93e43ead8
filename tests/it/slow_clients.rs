//! Slow clients (headers or body trickled byte by byte) are cut off by read timeouts, while normal
//! deliveries keep being served; many clients connecting at once are all queued by the listener.

use std::time::{Duration, Instant};

use crate::common::*;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use voltage_webhooks::app::app_state;
use voltage_webhooks::config::Config;
use voltage_webhooks::event::Routing;
use voltage_webhooks::http::{router, serve, ServerLimits};

/// Writes `prefix` whole, then `trickle` one byte every 100 ms; returns how long until the server
/// closed the connection (or answered), or `None` if it was still open after 8 s.
async fn trickle(
    addr: std::net::SocketAddr,
    prefix: Vec<u8>,
    trickle: Vec<u8>,
) -> Option<(Duration, String)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&prefix).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        for byte in trickle {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(8), read.read_to_end(&mut answer)).await;
    writer.abort();
    closed.ok().map(|_| {
        (
            started.elapsed(),
            String::from_utf8_lossy(&answer).into_owned(),
        )
    })
}

#[sqlx::test]
async fn trickling_clients_are_cut_off_while_normal_deliveries_are_served(pool: PgPool) {
    let config = Config::from_toml(&format!(
        "[server]\nheader_read_timeout_ms = 500\nbody_read_timeout_ms = 500\n{}",
        config_toml()
    ))
    .unwrap();
    let (registry, _) = config.resolve().unwrap();
    let app = router(app_state(&config, registry, Routing::default(), pool));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(500),
        shutdown_grace: Duration::from_secs(1),
    };
    tokio::spawn(serve(listener, app, limits, std::future::pending()));

    let headers =
        b"POST /webhooks/production HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            .to_vec();
    let mut slow = Vec::new();
    for _ in 0..40 {
        slow.push(tokio::spawn(trickle(addr, Vec::new(), headers.clone())));
        let body = fixture("test-created.json");
        let mut full = headers.clone();
        // A body is read only after the headers passed (registration, fresh timestamp), so the
        // body trickler sends Voltage's headers; without them it is refused before any byte.
        let ts = now().to_string();
        full.extend_from_slice(
            format!(
                "x-voltage-webhook-id: {PRODUCTION_WEBHOOK}\r\nx-voltage-timestamp: {ts}\r\n\
                 x-voltage-signature: {}\r\n",
                voltage_webhooks::verify::sign(NEW_SECRET, &body, &ts)
            )
            .as_bytes(),
        );
        full.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        slow.push(tokio::spawn(trickle(addr, full, body)));
    }

    // While 80 connections trickle, normal deliveries are answered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = reqwest::Client::new();
    for i in 0..20 {
        let body =
            format!(r#"{{"type":"test","detail":{{"event":"created","data":"normal-{i}"}}}}"#);
        let ts = now().to_string();
        let response = client
            .post(format!("http://{addr}/webhooks/production"))
            .header("content-type", "application/json")
            .header("x-voltage-webhook-id", PRODUCTION_WEBHOOK)
            .header("x-voltage-timestamp", &ts)
            .header(
                "x-voltage-signature",
                voltage_webhooks::verify::sign(NEW_SECRET, body.as_bytes(), &ts),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    for (i, task) in slow.into_iter().enumerate() {
        let (after, answer) = task
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("slow client {i} was never cut off"));
        // A full trickle would take 3 to 8 s; the timeouts end it well before.
        assert!(
            after < Duration::from_secs(3),
            "slow client {i} held on for {after:?}"
        );
        if i % 2 == 1 {
            assert!(
                answer.starts_with("HTTP/1.1 408"),
                "a trickled body gets 408: {answer:?}"
            );
        }
    }
}

/// A few hundred clients connecting at once (a load balancer's pool after a deploy) are all queued by
/// the kernel, even before the server accepts any: a connection dropped from a full queue costs the
/// client a 1 s SYN retransmission. Nothing accepts here, so only the listen backlog can hold them.
#[tokio::test]
async fn the_listener_queues_hundreds_of_simultaneous_connections() {
    let listener = voltage_webhooks::http::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let attempts = (0..400).map(|_| {
        tokio::time::timeout(Duration::from_millis(700), async move {
            TcpStream::connect(addr).await
        })
    });
    let results = futures_util::future::join_all(attempts).await;
    let connected: Vec<TcpStream> = results.into_iter().filter_map(|r| r.ok()?.ok()).collect();
    assert_eq!(
        connected.len(),
        400,
        "connections completed before any accept"
    );
}

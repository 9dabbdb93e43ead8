//! Protection of the request routes: an environment's IP allow-list, load shedding when every slot
//! is taken (503 with Retry-After, health still answering), and the request timeout.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use sqlx::PgPool;
use tower::ServiceExt as _;
use voltage_webhooks::app::app_state;
use voltage_webhooks::config::Config;
use voltage_webhooks::event::Routing;
use voltage_webhooks::http::router;

fn app_with(pool: PgPool, server: &str, allow_ips: &str, peer: &str) -> Router {
    let toml = config_toml().replacen(
        "[[environments.production.webhooks]]",
        &format!("allow_ips = [{allow_ips}]\n\n[[environments.production.webhooks]]"),
        1,
    );
    let config = Config::from_toml(&format!("[server]\n{server}\n{toml}")).unwrap();
    let (registry, _) = config.resolve().unwrap();
    let peer: SocketAddr = format!("{peer}:5000").parse().unwrap();
    router(app_state(&config, registry, Routing::default(), pool)).layer(MockConnectInfo(peer))
}

/// A delivery whose body never arrives: it holds its slot until a timeout or the client gives up.
fn stuck() -> Request<Body> {
    let mut request = production(b"");
    request.headers_mut().remove("content-length");
    *request.body_mut() = Body::from_stream(futures_util::stream::pending::<
        Result<Vec<u8>, std::io::Error>,
    >());
    request
}

#[sqlx::test]
async fn an_environment_allow_list_refuses_deliveries_from_elsewhere(pool: PgPool) {
    let body = fixture("test-created.json");
    let inside = app_with(pool.clone(), "", r#""203.0.113.0/24""#, "203.0.113.7");
    assert_eq!(send(&inside, production(&body)).await.0, StatusCode::OK);

    let outside = app_with(pool.clone(), "", r#""203.0.113.0/24""#, "198.51.100.1");
    let mut forged = production(&fixture("send-succeeded-bolt11.json"));
    forged
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
    let (status, response) = send(&outside, forged).await;
    assert_eq!(
        (status, code(&response)),
        (StatusCode::FORBIDDEN, "ip_not_allowed")
    );
    assert_eq!(
        count(&pool, "events").await,
        1,
        "nothing written for a refused address"
    );

    // Behind a trusted load balancer, the forwarded client address is the one checked.
    let via_proxy = app_with(
        pool.clone(),
        r#"trusted_proxies = ["10.0.0.0/8"]"#,
        r#""203.0.113.0/24""#,
        "10.1.2.3",
    );
    let mut forwarded = production(&fixture("send-succeeded-bolt11.json"));
    forwarded
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
    assert_eq!(send(&via_proxy, forwarded).await.0, StatusCode::OK);
}

#[sqlx::test]
async fn a_forwarded_for_hop_that_is_not_text_is_refused_by_an_environment_allow_list(
    pool: PgPool,
) {
    // Deliveries only from loopback, behind a proxy on loopback: the proxy itself is "allowed".
    let app = app_with(
        pool.clone(),
        r#"trusted_proxies = ["127.0.0.0/8"]"#,
        r#""127.0.0.0/8""#,
        "127.0.0.1",
    );
    for xff in [&b"\xff, 203.0.113.7"[..], b"\xff", b"junk"] {
        let mut request = production(&fixture("test-created.json"));
        request.headers_mut().insert(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(xff).unwrap(),
        );
        let (status, body) = send(&app, request).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "ip_not_allowed"),
            "{xff:?}"
        );
    }
    assert_nothing_written(&pool).await;
}

/// `request` with a body that never arrives: only checks that need no body can answer it.
fn without_body(mut request: Request<Body>) -> Request<Body> {
    request.headers_mut().remove("content-length");
    *request.body_mut() = Body::from_stream(futures_util::stream::pending::<
        Result<Vec<u8>, std::io::Error>,
    >());
    request
}

#[sqlx::test]
async fn headers_registration_and_timestamp_are_checked_before_the_body_is_read(pool: PgPool) {
    let app = app_with(
        pool.clone(),
        "body_read_timeout_ms = 60000",
        "",
        "127.0.0.1",
    );
    let body = fixture("test-created.json");
    let mut unsigned = production(&body);
    unsigned.headers_mut().remove("x-voltage-signature");
    let unknown = delivery(
        "production",
        &uuid::Uuid::new_v4().to_string(),
        NEW_SECRET,
        &body,
        now(),
    );
    let foreign = delivery("production", STAGING_WEBHOOK, STAGING_SECRET, &body, now());
    let stale = delivery(
        "production",
        PRODUCTION_WEBHOOK,
        NEW_SECRET,
        &body,
        now() - 3600,
    );
    for (request, expected) in [
        (unsigned, "missing_header"),
        (unknown, "unknown_webhook"),
        (foreign, "wrong_environment"),
        (stale, "stale_timestamp"),
    ] {
        // Before the fix each of these waited for the body (and got 408 after a minute).
        let (status, response) = send(&app, without_body(request)).await;
        assert_eq!(
            (status, code(&response)),
            (StatusCode::UNAUTHORIZED, expected)
        );
    }
    assert_nothing_written(&pool).await;
}

#[sqlx::test]
async fn the_default_body_limit_is_64_kib(pool: PgPool) {
    let app = app_with(pool.clone(), "", "", "127.0.0.1");
    let padding = "x".repeat(64 * 1024);
    let body = format!(r#"{{"type":"test","detail":{{"event":"created","data":"{padding}"}}}}"#);
    let (status, response) = send(&app, production(body.as_bytes())).await;
    assert_eq!(
        (status, code(&response)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    assert_nothing_written(&pool).await;
}

#[sqlx::test]
async fn when_every_slot_is_taken_requests_are_shed_with_retry_after_and_health_still_answers(
    pool: PgPool,
) {
    let app = app_with(pool.clone(), "max_concurrent_requests = 1", "", "127.0.0.1");
    let holder = tokio::spawn(app.clone().oneshot(stuck()));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let response = app
        .clone()
        .oneshot(production(&fixture("test-created.json")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let health = app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        StatusCode::OK,
        "health must answer under overload"
    );

    holder.abort();
    let _ = holder.await;
    assert_eq!(
        send(&app, production(&fixture("test-created.json")))
            .await
            .0,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn one_limit_counts_deliveries_and_api_requests_together(pool: PgPool) {
    let k = crate::common::api::key(
        &pool,
        "reader",
        "production",
        voltage_webhooks::auth::Permission::Read,
        &[],
    )
    .await;
    let app = app_with(pool.clone(), "max_concurrent_requests = 2", "", "127.0.0.1");
    let api_query = || crate::common::api::get("/v1/environments/production/events", &k);
    assert_eq!(send(&app, api_query()).await.0, StatusCode::OK);
    // Two deliveries whose bodies never arrive take both slots.
    let holders = [
        tokio::spawn(app.clone().oneshot(stuck())),
        tokio::spawn(app.clone().oneshot(stuck())),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = send(&app, api_query()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        "an API request must wait for the same slots as deliveries"
    );
    for holder in holders {
        holder.abort();
        let _ = holder.await;
    }
    assert_eq!(send(&app, api_query()).await.0, StatusCode::OK);
}

#[sqlx::test]
async fn a_request_running_past_the_timeout_gets_503_and_nothing_is_stored(pool: PgPool) {
    let app = app_with(pool.clone(), "request_timeout_ms = 300", "", "127.0.0.1");
    let (status, body) = send(&app, stuck()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "timeout")
    );
    assert_nothing_written(&pool).await;
}

/// With `server.admin_listen`, metrics leave the public listener: a caller that can reach the
/// webhook port cannot read operational data, and the admin port serves nothing else.
#[sqlx::test]
async fn admin_listen_moves_metrics_off_the_public_listener(pool: PgPool) {
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{}",
        config_toml()
    );
    let config = Config::from_toml(&toml).unwrap();
    let (registry, _) = config.resolve().unwrap();
    let state = app_state(&config, registry, Routing::default(), pool);
    let app = voltage_webhooks::app::Application::build(&config, state)
        .await
        .unwrap();
    let public = format!("http://{}", app.local_addr().unwrap());
    let admin = format!("http://{}", app.admin_addr().expect("admin listener bound"));
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone().cancelled_owned()));

    let client = reqwest::Client::new();
    let status = |url: String| {
        let client = client.clone();
        async move { client.get(url).send().await.unwrap().status() }
    };
    assert_eq!(status(format!("{admin}/metrics")).await, StatusCode::OK);
    assert_eq!(
        status(format!("{public}/metrics")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(status(format!("{public}/healthz")).await, StatusCode::OK);
    assert_eq!(status(format!("{admin}/healthz")).await, StatusCode::OK);
    assert_eq!(
        status(format!("{admin}/v1/events")).await,
        StatusCode::NOT_FOUND
    );
    let delivery = client
        .post(format!("{admin}/webhooks/production"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(delivery.status(), StatusCode::NOT_FOUND);

    // Both listeners stop with the one shutdown signal.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("both listeners stopped")
        .unwrap()
        .unwrap();
}

#[sqlx::test]
async fn a_flood_of_readyz_and_metrics_reads_the_database_at_most_once_a_second(
    options: sqlx::postgres::PgPoolOptions,
    connect: sqlx::postgres::PgConnectOptions,
) {
    let target: SocketAddr = format!("127.0.0.1:{}", connect.get_port()).parse().unwrap();
    let proxy = crate::common::proxy::Proxy::start(target).await;
    let pool = crate::common::pool(options, connect.host("127.0.0.1").port(proxy.port)).await;
    let app = app_with(pool, "", "", "127.0.0.1");
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    assert_eq!(send(&app, get("/readyz")).await.0, StatusCode::OK);
    assert_eq!(send(&app, get("/metrics")).await.0, StatusCode::OK);
    let warmed = std::time::Instant::now();
    let before = proxy.client_reads();

    let calls = (0..200).map(|i| {
        let path = if i % 2 == 0 { "/readyz" } else { "/metrics" };
        app.clone().oneshot(get(path))
    });
    for response in futures_util::future::join_all(calls).await {
        assert_eq!(response.unwrap().status(), StatusCode::OK);
    }
    let reads = proxy.client_reads() - before;
    // A refresh is three queries (readiness; pending and dead deliveries); one per second at most.
    let seconds = warmed.elapsed().as_secs() as usize + 1;
    assert!(
        reads <= 3 * seconds,
        "{reads} database round trips for 200 probe calls in {seconds} s"
    );
}

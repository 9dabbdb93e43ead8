//! Support for query-API tests: keys, a client address, authenticated requests.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::Request;
use axum::Router;
use secrecy::ExposeSecret as _;
use sqlx::PgPool;
use voltage_webhooks::auth::{generate_key, Permission};
use voltage_webhooks::event::{Route, Routing};
use voltage_webhooks::http::router;
use voltage_webhooks::store::{NewApiKey, Store};

/// Creates a key and returns it in clear, as the CLI prints it once.
pub async fn key(
    pool: &PgPool,
    name: &str,
    environment: &str,
    permission: Permission,
    allow_ips: &[&str],
) -> String {
    let key = generate_key();
    let allow: Vec<String> = allow_ips.iter().map(|s| s.to_string()).collect();
    let new = NewApiKey {
        name,
        environment,
        permission,
        allow_ips: &allow,
        expires_at: None,
    };
    Store::new(pool.clone())
        .create_api_key(&new, &key)
        .await
        .unwrap();
    key.plaintext.expose_secret().to_owned()
}

/// The app as seen from `peer`, behind `trusted_proxies`, with one handler `audit` for all events.
pub fn api_from(pool: PgPool, peer: &str, trusted_proxies: &[&str]) -> Router {
    let mut state = super::state(pool);
    state.intake.routing = Arc::new(Routing::new(vec![("audit".into(), Route::all())]));
    let proxies: Vec<String> = trusted_proxies.iter().map(|s| s.to_string()).collect();
    state.trusted_proxies = Arc::new(voltage_webhooks::auth::parse_cidrs(&proxies).unwrap());
    let peer: SocketAddr = format!("{peer}:40000").parse().unwrap();
    router(state).layer(MockConnectInfo(peer))
}

/// The app from loopback with these handlers' routes.
pub fn api_routed(pool: PgPool, routes: Vec<(String, Route)>) -> Router {
    let mut state = super::state(pool);
    state.intake.routing = Arc::new(Routing::new(routes));
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    router(state).layer(MockConnectInfo(peer))
}

pub fn api(pool: PgPool) -> Router {
    api_from(pool, "127.0.0.1", &[])
}

pub fn get(path: &str, key: &str) -> Request<Body> {
    Request::get(path)
        .header("x-api-key", key)
        .body(Body::empty())
        .unwrap()
}

pub fn post(path: &str, key: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

//! Real `voltage-webhooks serve` processes for fault tests, and a fake downstream service that
//! counts what the `http` handler delivers.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

pub const HANDLER_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Deliveries the downstream received, by `webhook-id` (the event id).
pub type Received = Arc<Mutex<HashMap<String, usize>>>;

/// A downstream that answers 204 and counts each event it receives.
pub async fn counting_downstream() -> (String, Received) {
    let received: Received = Arc::default();
    let counts = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let counts = counts.clone();
            async move {
                let id = headers["webhook-id"].to_str().unwrap().to_owned();
                *counts.lock().unwrap().entry(id).or_default() += 1;
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `serve`; killed when dropped.
pub struct Service {
    child: Child,
    pub port: u16,
    _config: tempfile::NamedTempFile,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// Starts `serve` on `port` over `database_url`, with the tests' production registration and an
    /// `http` handler posting to `downstream`, and waits until it is ready.
    pub async fn start(port: u16, database_url: &str, downstream: &str) -> Self {
        Self::start_with(port, database_url, downstream, "").await
    }

    /// Like [`Service::start`], with `extra` TOML tables (e.g. `[shutdown]`) in front.
    pub async fn start_with(port: u16, database_url: &str, downstream: &str, extra: &str) -> Self {
        let toml = format!(
            "{extra}\n[dispatch]\npoll_interval_ms = 100\nlease_secs = 10\n\
             [[handlers]]\nname = \"ledger\"\nkind = \"http\"\nurl = \"{downstream}\"\nsecret = {{ value = \"{HANDLER_SECRET}\" }}\n\
             timeout_ms = 2000\nbackoff_base_ms = 50\nbackoff_cap_ms = 500\n"
        );
        Self::start_toml(port, database_url, &toml).await
    }

    /// `serve` with `toml` (its `[dispatch]` and `[[handlers]]`, say) and the tests' environments.
    pub async fn start_toml(port: u16, database_url: &str, toml: &str) -> Self {
        let mut config = tempfile::NamedTempFile::new().unwrap();
        write!(
            config,
            "[server]\nlisten = \"127.0.0.1:{port}\"\n{toml}\n{}",
            super::config_toml()
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_voltage-webhooks"))
            .arg("--config")
            .arg(config.path())
            .args(["serve", "--no-migrate"])
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "warn")
            .env_remove("VOLTAGE_WEBHOOKS_CONFIG")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let service = Self {
            child,
            port,
            _config: config,
        };
        service.wait_ready().await;
        service
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.url())).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "serve on port {} did not become ready",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls for the process's exit for at most `limit`.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// SIGKILL: no shutdown, no drain, nothing flushed.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// The URL of the test's own database, for child processes.
pub fn database_url(connect: &sqlx::postgres::PgConnectOptions) -> String {
    format!(
        "postgres://{}@127.0.0.1:{}/{}",
        connect.get_username(),
        connect.get_port(),
        connect.get_database().unwrap()
    )
}

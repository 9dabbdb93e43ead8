//! Assembling and running the service: `Application::build` binds the listener, `port()` tells
//! which port it got (tests bind port 0), `run_until_stopped` serves until the shutdown future ends.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{self, AppState, IngestSettings};
use crate::store::{self, Store};
use crate::verify::Registry;

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    /// Binds `server.listen` and builds the router over `pool`.
    pub async fn build(config: &Config, registry: Registry, pool: PgPool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding server.listen = {}", config.server.listen))?;
        let state = app_state(config, registry, pool);
        Ok(Self {
            listener,
            router: http::router(state),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn port(&self) -> u16 {
        self.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub async fn run_until_stopped<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// The handlers' state for a resolved config; also what tests use to drive the router in process.
pub fn app_state(config: &Config, registry: Registry, pool: PgPool) -> AppState {
    AppState {
        registry: Arc::new(registry),
        store: Store::new(pool),
        ingest: IngestSettings {
            max_body_bytes: config.server.max_body_bytes,
            tolerance_secs: config.server.timestamp_tolerance_secs,
        },
        clock: http::system_clock(),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Create the database if missing and apply pending migrations before serving.
    pub migrate: bool,
}

/// `voltage-webhooks serve`.
pub async fn serve(config: Config, options: ServeOptions) -> anyhow::Result<()> {
    let (registry, warnings) = config.resolve()?;
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    if options.migrate {
        store::create_database_if_missing(&config.database)
            .await
            .context("creating the database")?;
    }
    let pool = store::connect_lazy(&config.database).context("database.url")?;
    if options.migrate {
        store::migrate(&pool).await.context("applying migrations")?;
    }
    let app = Application::build(&config, registry, pool).await?;
    tracing::info!(listen = %app.local_addr()?, "serving");
    app.run_until_stopped(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// `voltage-webhooks migrate`.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    store::create_database_if_missing(&config.database)
        .await
        .context("creating the database")?;
    let pool = store::connect_lazy(&config.database).context("database.url")?;
    store::migrate(&pool).await.context("applying migrations")?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

//! PostgreSQL: the pool, migrations, and every SQL statement the service runs.
//!
//! This module owns durability. It knows nothing about HTTP; callers hand it plain values and get
//! typed outcomes back. Constraints in the schema (see `migrations/`) guard correctness: a duplicate
//! is whatever the unique index says it is.

mod api_keys;
mod attempts;
mod batch;
mod events;
mod lock;
mod outbox;
mod payments;
mod quarantine;
mod queries;
mod replay;
pub mod retention;
mod wake;

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

/// The pool and a connection of it, named here so that no module above the store names the driver.
pub type Pool = PgPool;
pub type Connection = sqlx::PgConnection;

pub use api_keys::{ApiKeyRecord, NewApiKey};
pub use attempts::{AttemptRecord, Completion, Next};
pub use batch::{Origin, OwnedEvent};
pub use events::{NewEvent, Stored, StoredEvent};
pub use lock::{lock_key, SessionLock};
pub use outbox::{ClaimRequest, Claimed, DeliveryState, OutboxStats, WAKE_CHANNEL};
pub use payments::KnownState;
pub use quarantine::Quarantined;
pub use queries::{EventQuery, EventSummary, FeedRow};
pub use replay::{DeliveryRoute, ReplayOutcome, RetryOutcome};

use crate::config::DatabaseConfig;

/// The schema, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!();

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the statement failed: the caller answers 503 so that
    /// Voltage retries. The source is kept for logs, never shown to clients.
    #[error("database unavailable or write failed")]
    Unavailable(#[from] sqlx::Error),
    /// A uniqueness rule refused the write; the text says which, in terms a caller can show.
    #[error("{0}")]
    Conflict(String),
}

impl StoreError {
    /// `Conflict(message)` for a unique violation, `Unavailable` for anything else.
    pub(crate) fn conflict_on_unique(error: sqlx::Error, message: String) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(message),
            _ => Self::Unavailable(error),
        }
    }
}

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    /// Shared by clones, so a process has one NOTIFY task however many handles it makes.
    waker: wake::Waker,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            waker: wake::Waker::default(),
        }
    }

    /// LISTENs for new outbox rows until `shutdown`, waking every lane on each notification.
    pub fn listen_for_work(
        &self,
        wake: Vec<std::sync::Arc<tokio::sync::Notify>>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        wake::listen(self.pool.clone(), wake, shutdown)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Database reachable and every embedded migration applied.
    pub async fn is_ready(&self) -> Result<bool, StoreError> {
        let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let applied = sqlx::query_scalar!(
            "SELECT max(version) AS applied FROM _sqlx_migrations WHERE success"
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(applied.unwrap_or(0) >= latest)
    }
}

/// Pool options from config. Connections are made on demand, so the process starts (and answers
/// 503) while the database is down, and recovers by itself when it returns.
pub fn pool_options(config: &DatabaseConfig) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
}

pub fn connect_options(config: &DatabaseConfig) -> Result<PgConnectOptions, sqlx::Error> {
    config.url.expose_secret().parse()
}

/// A pool that connects lazily: the first query, not start-up, finds out whether PostgreSQL is up.
pub fn connect_lazy(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    Ok(pool_options(config).connect_lazy_with(connect_options(config)?))
}

/// Creates the database named in the URL when it does not exist yet.
pub async fn create_database_if_missing(config: &DatabaseConfig) -> Result<(), sqlx::Error> {
    let url = config.url.expose_secret();
    if Postgres::database_exists(url).await? {
        return Ok(());
    }
    match Postgres::create_database(url).await {
        Ok(()) => {
            tracing::info!("created the database");
            Ok(())
        }
        // Another replica created it between our check and our CREATE: that is what we wanted.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Applies pending migrations. Safe to run from several replicas at once: sqlx takes an advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

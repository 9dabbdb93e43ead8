//! What the database benchmarks share: they measure only under `cargo bench`, read their options
//! from the environment, and work in a scratch database created, migrated and dropped around them.

use std::future::Future;
use std::str::FromStr;

use sqlx::migrate::MigrateDatabase;
use sqlx::{PgPool, Postgres};
use uuid::Uuid;

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs a bench binary without it, and a
/// debug-build measurement would only slow the test run down. Says so when it skips.
pub fn under_cargo_bench(name: &str) -> bool {
    let measuring = std::env::args().any(|a| a == "--bench");
    if !measuring {
        println!("{name} benchmark: skipped outside `cargo bench --bench {name}`");
    }
    measuring
}

/// The option `name` from the environment, or `default` when it is unset or not a number.
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `body` on a pool of `connections` to a fresh, migrated database on `DATABASE_URL`'s
/// server, then drops that database.
pub fn with_scratch_database<F, Fut>(connections: u32, body: F) -> anyhow::Result<()>
where
    F: FnOnce(PgPool) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (server, _) = base.rsplit_once('/').expect("DATABASE_URL has a database");
    let url = format!("{server}/vw_bench_{}", Uuid::new_v4().simple());
    tokio::runtime::Runtime::new()?.block_on(async {
        Postgres::create_database(&url).await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(connections)
            .connect(&url)
            .await?;
        voltage_webhooks::store::migrate(&pool).await?;
        let measured = body(pool.clone()).await;
        pool.close().await;
        Postgres::force_drop_database(&url).await?;
        measured
    })
}

//! Runs one test in a process of its own, for the few tests that read process-wide state (the
//! metrics recorder is global): in this one test binary, other tests running at the same time
//! would change the counts under them.
//!
//! [`run`] is called by a plain `#[test]`. In the binary's normal run it starts the same binary
//! again with only that test selected, waits, and fails if the child failed. In the child it makes
//! a fresh database with the migrations applied (as `#[sqlx::test]` would), runs the body alone in
//! its process, and drops the database.

use std::future::Future;
use std::process::Command;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

const CHILD: &str = "VOLTAGE_IT_OWN_PROCESS";

/// `name` is the test's path as the harness lists it, e.g. `metrics::the_metrics_reflect_...`.
pub fn run<F, Fut>(name: &str, body: F)
where
    F: FnOnce(PgPool) -> Fut,
    Fut: Future<Output = ()>,
{
    if std::env::var(CHILD).as_deref() == Ok(name) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(in_fresh_database(body));
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, name)
        .output()
        .expect("the test binary starts again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} failed in its own process:\n{stdout}\n{stderr}"
    );
}

async fn in_fresh_database<F, Fut>(body: F)
where
    F: FnOnce(PgPool) -> Fut,
    Fut: Future<Output = ()>,
{
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let name = format!("voltage_it_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options.database(&name))
        .await
        .unwrap();
    sqlx::migrate!().run(&pool).await.unwrap();
    body(pool.clone()).await;
    pool.close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

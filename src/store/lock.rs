//! Session-level advisory locks: "one replica at a time" for periodic jobs (retention, and the
//! reconciler's sweep of one environment).
//!
//! The lock lives on one pooled connection, held for as long as the job runs, and the job's
//! statements run on that same connection. If the process dies, PostgreSQL closes the connection
//! and the lock goes with it, so a crashed replica never blocks the others.

use sha2::{Digest, Sha256};
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, Postgres};

use super::{Store, StoreError};

/// A held advisory lock and the connection that holds it.
#[derive(Debug)]
pub struct SessionLock {
    /// `None` only after `release`.
    connection: Option<PoolConnection<Postgres>>,
    key: i64,
}

/// The 64-bit lock key for a job name: the first 8 bytes of its SHA-256, so names do not collide
/// with each other in practice and need no registry of numbers.
pub fn lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

impl Store {
    /// Takes the lock named `name` if no other session holds it; `None` when one does.
    pub async fn try_session_lock(&self, name: &str) -> Result<Option<SessionLock>, StoreError> {
        let key = lock_key(name);
        let mut connection = self.pool.acquire().await?;
        let locked = sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock($1) AS "locked!""#, key)
            .fetch_one(&mut *connection)
            .await?;
        Ok(locked.then_some(SessionLock {
            connection: Some(connection),
            key,
        }))
    }
}

impl SessionLock {
    /// The connection holding the lock: run the job's statements here.
    pub fn connection(&mut self) -> &mut PgConnection {
        self.connection
            .as_deref_mut()
            .expect("a SessionLock keeps its connection until released")
    }

    /// Unlocks and returns the connection to the pool.
    pub async fn release(mut self) {
        if let Some(mut connection) = self.connection.take() {
            // Whether it was held is not the question (it is, by this session); whether the
            // statement ran is.
            let unlocked =
                sqlx::query_scalar!("SELECT pg_advisory_unlock($1) AS unlocked", self.key)
                    .fetch_one(&mut *connection)
                    .await;
            if unlocked.is_err() {
                // The lock is bound to the session: closing the connection ends both.
                connection.close_on_drop();
            }
        }
    }
}

impl Drop for SessionLock {
    /// Dropped without `release` (an error or a cancelled task): the connection is closed rather
    /// than returned to the pool, so the lock cannot outlive the job on a reused connection.
    fn drop(&mut self) {
        if let Some(connection) = self.connection.as_mut() {
            connection.close_on_drop();
        }
    }
}

//! Liveness and readiness for the load balancer and the orchestrator.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::probe_cache::Readiness;
use super::AppState;

/// The process is up and serving HTTP; says nothing about the database.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when not draining, PostgreSQL answers and every migration this binary embeds is applied.
/// The database's answer is at most a second old (see `probe_cache`); draining is seen at once.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return not_ready("shutting down");
    }
    let readiness = state
        .probes
        .readiness
        .get(|| async {
            match state.store.is_ready().await {
                Ok(true) => Readiness::Ready,
                Ok(false) => Readiness::MigrationsPending,
                Err(e) => {
                    tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "readiness check failed");
                    Readiness::DatabaseUnavailable
                }
            }
        })
        .await;
    match readiness {
        Readiness::Ready => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Readiness::MigrationsPending => not_ready("migrations pending"),
        Readiness::DatabaseUnavailable => not_ready("database unavailable"),
    }
}

fn not_ready(reason: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "not_ready", "reason": reason})),
    )
}

//! `GET /metrics`: the Prometheus text format. The outbox backlog and the dead letters are read
//! from the database at most once a second however often it is scraped (`probe_cache`), through
//! partial indexes, so the cost does not grow with the table of succeeded deliveries; everything
//! else is counted as it happens.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::telemetry::metrics as names;

pub async fn render(State(state): State<AppState>) -> Response {
    state
        .probes
        .outbox_gauges
        .get(|| async {
            match state.store.outbox_stats().await {
                Ok(stats) => {
                    metrics::gauge!(names::OUTBOX_PENDING).set(stats.pending as f64);
                    metrics::gauge!(names::OUTBOX_OLDEST_PENDING_SECONDS)
                        .set(stats.oldest_pending_secs);
                    metrics::gauge!(names::DELIVERIES_DEAD).set(stats.dead as f64);
                }
                // The counters are still worth serving; the gauges keep their last values.
                Err(e) => tracing::warn!(error = %e, "outbox statistics unavailable for /metrics"),
            }
        })
        .await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

//! `GET /v1/environments/{environment}/events/stream`: Server-Sent Events of events as they are
//! stored, by any replica. Driven by the database (the feed is read in commit-safe order), so it
//! needs no in-process channel; resumable with `?after=` or `Last-Event-ID`.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::access::Reader;
use super::cursor;
use super::events::query_error;
use crate::error_code::ErrorCode;
use crate::http::{ApiError, AppState};
use crate::store::{FeedRow, Store};

const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Resume after this event's `id:` (also accepted as the `Last-Event-ID` header).
    pub after: Option<String>,
}

/// Open streams by API key id. A stream holds its [`StreamSlot`] for as long as the client
/// stays connected: the slot is released when the response body is dropped.
#[derive(Debug, Default)]
pub struct StreamSlots {
    open: std::sync::Mutex<HashMap<Uuid, usize>>,
}

impl StreamSlots {
    fn take(self: &Arc<Self>, key: Uuid, max: usize) -> Option<StreamSlot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            slots: self.clone(),
            key,
        })
    }
}

struct StreamSlot {
    slots: Arc<StreamSlots>,
    key: Uuid,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

struct Feed {
    /// Held while the stream lives.
    _slot: StreamSlot,
    store: Store,
    environment: String,
    position: (String, Uuid),
    ready: VecDeque<FeedRow>,
}

/// Each SSE event: `id` is the resume cursor, `event: voltage`, `data` the event summary as JSON.
#[utoipa::path(get, path = "/v1/environments/{environment}/events/stream", operation_id = "stream_events", tag = "events",
    params(("environment" = String, Path), StreamParams,
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this id")),
    responses((status = 200, content_type = "text/event-stream", description = "events as they are stored"),
        (status = 400), (status = 429)))]
pub async fn stream(
    Reader(access): Reader,
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<StreamParams>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(params) = query.map_err(query_error)?;
    let slot = state
        .streams
        .take(access.key_id, state.limits.max_streams_per_key)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::TooManyStreams,
                format!(
                    "this API key already has {} event streams open; close one first",
                    state.limits.max_streams_per_key
                ),
            )
        })?;
    let resume = params.after.or_else(|| {
        headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let position = start_position(&state, resume).await?;
    let feed = Feed {
        _slot: slot,
        store: state.store.clone(),
        environment: access.environment,
        position,
        ready: VecDeque::new(),
    };
    let events = futures_util::stream::unfold(feed, Feed::next);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Where a stream starts: after the cursor it resumes from, or at the feed's present end.
async fn start_position(
    state: &AppState,
    resume: Option<String>,
) -> Result<(String, Uuid), ApiError> {
    match resume {
        Some(c) => cursor::decode_feed(&c),
        None => Ok((
            state
                .store
                .feed_start()
                .await
                .map_err(|e| ApiError::unavailable_because(&e))?,
            Uuid::nil(),
        )),
    }
}

impl Feed {
    /// The next SSE event, waiting (polling) until one is stored; a stream never ends by itself.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(row) = self.ready.pop_front() {
                self.position = (row.txid.clone(), row.event.id);
                let id = cursor::encode_feed(&row.txid, row.event.id);
                let data = serde_json::to_string(&row.event).unwrap_or_default();
                return Some((
                    Ok(Event::default().id(id).event("voltage").data(data)),
                    self,
                ));
            }
            let (txid, id) = &self.position;
            match self
                .store
                .feed_after(&self.environment, txid, *id, 100)
                .await
            {
                Ok(rows) if !rows.is_empty() => self.ready.extend(rows),
                Ok(_) => tokio::time::sleep(POLL).await,
                Err(e) => {
                    tracing::warn!(error = %e, "event stream read failed; retrying");
                    tokio::time::sleep(POLL * 4).await;
                }
            }
        }
    }
}

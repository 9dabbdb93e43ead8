//! The `nats` handler: publishes each event to NATS JetStream on
//! `<prefix>.<environment>.<type>.<event>` with `Nats-Msg-Id` set to the event id, so JetStream
//! drops a redelivery within its duplicate window. Success is the stream's publish acknowledgement.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use futures_util::future::BoxFuture;
use tower::Service;

use super::{HandlerError, HandlerRequest};

/// The stream to create when it does not exist.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub name: String,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop duplicates.
    pub duplicate_window: Duration,
}

#[derive(Debug, Clone)]
pub struct NatsHandler {
    jetstream: jetstream::Context,
    prefix: Arc<str>,
}

impl NatsHandler {
    /// Uses an existing connection; creates the stream (capturing `<prefix>.>`) when asked.
    pub async fn new(
        client: async_nats::Client,
        prefix: &str,
        create: Option<StreamSettings>,
    ) -> Result<Self, anyhow::Error> {
        let jetstream = jetstream::new(client);
        if let Some(settings) = create {
            jetstream
                .get_or_create_stream(stream::Config {
                    name: settings.name.clone(),
                    subjects: vec![format!("{prefix}.>")],
                    duplicate_window: settings.duplicate_window,
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("creating JetStream stream {}: {e}", settings.name))?;
        }
        Ok(Self {
            jetstream,
            prefix: prefix.into(),
        })
    }
}

/// `<prefix>.<environment>.<type>.<event>`, each part reduced to characters a subject token may
/// hold (Voltage's enums grow, so a value is never trusted to be subject-safe).
pub fn nats_subject(prefix: &str, environment: &str, event_type: &str, event: &str) -> String {
    let token = |s: &str| -> String {
        let cleaned: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if cleaned.is_empty() {
            "_".into()
        } else {
            cleaned
        }
    };
    format!(
        "{prefix}.{}.{}.{}",
        token(environment),
        token(event_type),
        token(event)
    )
}

impl Service<HandlerRequest> for NatsHandler {
    type Response = ();
    type Error = HandlerError;
    type Future = BoxFuture<'static, Result<(), HandlerError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HandlerRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let subject = nats_subject(
                &this.prefix,
                &request.environment,
                &request.event_type,
                &request.event,
            );
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", request.event_id.to_string().as_str());
            let ack = this
                .jetstream
                .publish_with_headers(subject, headers, request.to_json().into())
                .await
                .map_err(|e| HandlerError::retryable(format!("publish failed: {e}")))?;
            ack.await
                .map_err(|e| HandlerError::retryable(format!("no publish acknowledgement: {e}")))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_built_from_safe_tokens() {
        assert_eq!(
            nats_subject("voltage", "production", "receive", "completed"),
            "voltage.production.receive.completed"
        );
        assert_eq!(nats_subject("v", "prod", "a.b", "*>"), "v.prod.a_b.__");
        assert_eq!(nats_subject("v", "prod", "", "x y"), "v.prod._.x_y");
    }
}

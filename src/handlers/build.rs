//! Turning validated handler specs into running services, each in its stack.

use anyhow::Context as _;

use super::{
    stack_with, HandlerSet, HttpHandler, LogHandler, NatsHandler, RegisteredHandler, StackSettings,
};
use super::{StandardWebhookSigner, StreamSettings};
use crate::event::Route;
use crate::handlers::ConfirmLayer;
use crate::retry::RetryPolicy;

/// A validated `[[handlers]]` entry.
#[derive(Debug)]
pub struct HandlerSpec {
    pub name: String,
    pub route: Route,
    pub retry: RetryPolicy,
    pub stack: StackSettings,
    /// Confirm each event with the payments API before calling the handler.
    pub confirm: bool,
    pub kind: KindSpec,
}

#[derive(Debug)]
pub enum KindSpec {
    Http {
        url: reqwest::Url,
        signer: StandardWebhookSigner,
    },
    Nats {
        prefix: String,
        create: Option<StreamSettings>,
    },
    Log,
}

/// Builds every handler. NATS is connected once, and only when a `nats` handler exists. Handlers
/// with `confirm` get `confirm`'s layer (required then).
pub async fn build(
    specs: Vec<HandlerSpec>,
    nats_url: &str,
    confirm: Option<ConfirmLayer>,
) -> anyhow::Result<HandlerSet> {
    let mut nats = None;
    let mut set = HandlerSet::default();
    for spec in specs {
        let confirm = if spec.confirm {
            Some(confirm.clone().with_context(|| {
                format!(
                    "handler {} wants confirmation but no payments API client was given",
                    spec.name
                )
            })?)
        } else {
            None
        };
        let service = match spec.kind {
            KindSpec::Log => stack_with(&spec.name, spec.stack, confirm, LogHandler),
            KindSpec::Http { url, signer } => {
                let handler = HttpHandler::new(url, signer).context("building the HTTP client")?;
                stack_with(&spec.name, spec.stack, confirm, handler)
            }
            KindSpec::Nats { prefix, create } => {
                let client = match &nats {
                    Some(client) => client,
                    None => {
                        nats.insert(async_nats::connect(nats_url).await.with_context(|| {
                            format!("connecting to NATS at nats.url = {nats_url}")
                        })?)
                    }
                };
                let handler = NatsHandler::new(client.clone(), &prefix, create).await?;
                stack_with(&spec.name, spec.stack, confirm, handler)
            }
        };
        set.register(RegisteredHandler {
            name: spec.name,
            route: spec.route,
            retry: spec.retry,
            service,
        })?;
    }
    Ok(set)
}

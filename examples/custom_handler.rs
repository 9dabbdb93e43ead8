//! Embedding voltage-webhooks with a handler of your own.
//!
//! Any `tower::Service<HandlerRequest, Response = ()>` can be a handler. Wrap it with
//! `handlers::stack` (timeout, concurrency limit, tracing, metrics, outcome classification), give
//! it a route and a retry policy, and pass it to `app::serve`: it is enqueued in the same
//! transaction as each matching event and retried durably like the built-in ones.
//!
//! Run it like the binary's `serve`:
//! `VOLTAGE_STAGING_WEBHOOK_SECRET=... VOLTAGE_PRODUCTION_WEBHOOK_SECRET=... DATABASE_URL=... \
//!  cargo run --example custom_handler -- config/example.toml`

use std::path::PathBuf;
use std::time::Duration;

use voltage_webhooks::app::{self, ServeOptions};
use voltage_webhooks::config::Config;
use voltage_webhooks::event::{EventFilter, InvalidFilter, Route};
use voltage_webhooks::handlers::{
    self, HandlerError, HandlerRequest, RegisteredHandler, StackSettings,
};
use voltage_webhooks::retry::RetryPolicy;

/// Credits an order when its invoice is fully paid. A real one would confirm the payment with
/// Voltage's API first (a valid signature proves who sent it, not that money moved).
async fn credit_order(request: HandlerRequest) -> Result<(), HandlerError> {
    let order = request
        .payload
        .pointer("/detail/data/metadata/external_id")
        .and_then(|v| v.as_str())
        .ok_or_else(|| HandlerError::permanent("payment has no metadata.external_id"))?;
    tracing::info!(order, payment_id = ?request.payment_id, attempt = request.attempt, "order paid");
    Ok(())
}

fn credit_orders_handler() -> Result<RegisteredHandler, InvalidFilter> {
    let name = "credit-orders";
    Ok(RegisteredHandler {
        name: name.into(),
        route: Route {
            environments: Some(vec!["production".into()]),
            filters: vec![EventFilter::parse("receive.completed")?],
        },
        retry: RetryPolicy {
            max_attempts: 20,
            base: Duration::from_secs(2),
            cap: Duration::from_secs(600),
        },
        service: handlers::stack(
            name,
            StackSettings {
                timeout: Duration::from_secs(5),
                concurrency: 4,
            },
            tower::service_fn(credit_order),
        ),
    })
}

fn main() -> anyhow::Result<()> {
    voltage_webhooks::telemetry::init();
    let path = std::env::args().nth(1).map(PathBuf::from);
    let config = Config::load(path.as_deref())?;
    let handler = credit_orders_handler()?;
    tokio::runtime::Runtime::new()?.block_on(app::serve(
        config,
        ServeOptions {
            migrate: true,
            config_path: path.clone(),
        },
        vec![handler],
    ))
}

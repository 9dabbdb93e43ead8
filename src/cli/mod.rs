//! Operator tools behind the CLI: `sign` (headers for a test delivery with curl), `check-config`,
//! and API key management.

pub mod api_keys;

use std::path::Path;

use anyhow::Context as _;
use chrono::Utc;

use voltage_webhooks::config::{Config, SecretRef};
use voltage_webhooks::event::Payload;
use voltage_webhooks::verify::{headers, sign};

/// The headers Voltage would send for `body`, signed with the secret in environment variable
/// `secret_env`, one `name: value` per line (ready for `curl -H`).
pub fn signed_headers(
    secret_env: &str,
    body_file: &Path,
    timestamp: Option<i64>,
    webhook_id: Option<&str>,
) -> anyhow::Result<String> {
    let secret = SecretRef::from_env(secret_env).resolve("--secret-env")?;
    let body =
        std::fs::read(body_file).with_context(|| format!("reading {}", body_file.display()))?;
    let timestamp = timestamp
        .unwrap_or_else(|| Utc::now().timestamp())
        .to_string();
    let signature = sign(
        secrecy::ExposeSecret::expose_secret(&secret),
        &body,
        &timestamp,
    );
    let mut lines = vec![
        "content-type: application/json".to_owned(),
        format!("{}: {timestamp}", headers::TIMESTAMP),
        format!("{}: {signature}", headers::SIGNATURE),
    ];
    if let Ok(payload) = Payload::parse(&body) {
        lines.push(format!("{}: {}", headers::EVENT, payload.event));
    }
    if let Some(id) = webhook_id {
        lines.push(format!("{}: {id}", headers::WEBHOOK_ID));
    }
    Ok(lines.join("\n"))
}

/// Validates the configuration; returns the warnings to print.
pub fn check_config(config: &Config) -> anyhow::Result<Vec<String>> {
    let (registry, warnings) = config.resolve()?;
    config.handler_specs()?;
    config.dispatch_settings()?;
    config.reconcile_settings()?;
    config.voltage_api()?;
    config.reconcile_targets()?;
    if registry.environments().next().is_none() {
        anyhow::bail!("configuration key `environments`: no environment is configured");
    }
    Ok(warnings)
}

/// `voltage-webhooks purge`: one retention pass now, or with `dry_run` what it would remove.
pub async fn purge(config: &Config, dry_run: bool) -> anyhow::Result<String> {
    use voltage_webhooks::retention::{self, Pass};
    let (policy, warnings) = config.retention_policy()?;
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    anyhow::ensure!(
        policy.is_active(),
        "configuration keys `retention.events_days` and `retention.dead_days` are unset: nothing expires"
    );
    let store = voltage_webhooks::store::Store::new(
        voltage_webhooks::app::open_database(config, false).await?,
    );
    let now = chrono::Utc::now();
    let cutoffs = policy.cutoffs(now);
    let stop = tokio_util::sync::CancellationToken::new();
    let counts = match retention::pass(&store, &policy, now, dry_run, &stop).await? {
        Pass::Done(counts) => counts,
        Pass::Busy => anyhow::bail!("another replica is running a retention pass; try again later"),
    };
    let verb = if dry_run { "would remove" } else { "removed" };
    let when = |cutoff: Option<chrono::DateTime<chrono::Utc>>| {
        cutoff.map_or_else(
            || "kept (no period set)".to_owned(),
            |c| format!("before {}", c.to_rfc3339()),
        )
    };
    Ok(format!(
        "{verb}: {} events, {} dead deliveries, {} quarantined bodies, {} replay records\n\
         events received {}, last received before {}\n\
         dead deliveries completed {}",
        counts.events,
        counts.dead_deliveries,
        counts.quarantined,
        counts.replays,
        when(cutoffs.events_before),
        cutoffs.dedup_before.to_rfc3339(),
        when(cutoffs.dead_before),
    ))
}

/// `voltage-webhooks reconcile --environment NAME [--once]`: one sweep and its report, or sweeps
/// every `reconcile.interval_secs` until SIGTERM. New events are routed to the configured
/// handlers (handlers an embedding program registers in code are not known here).
pub async fn reconcile(config: &Config, environment: &str, once: bool) -> anyhow::Result<String> {
    use voltage_webhooks::reconcile::{self, Sweep};
    config.resolve()?;
    let target = config
        .reconcile_targets()?
        .into_iter()
        .find(|t| t.environment == environment)
        .with_context(|| {
            if config.environments.contains_key(environment) {
                format!("configuration key `environments.{environment}.voltage_api_key` is not set")
            } else {
                format!("configuration key `environments.{environment}`: no such environment")
            }
        })?;
    let routes = config
        .handler_specs()?
        .into_iter()
        .map(|s| (s.name, s.route))
        .collect();
    let pool = voltage_webhooks::app::open_database(config, false).await?;
    let reconciler = voltage_webhooks::app::reconciler(
        config,
        &pool,
        voltage_webhooks::event::Routing::new(routes),
    )?;
    if !once {
        let stop = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn(reconcile::run(reconciler, vec![target], stop.clone()));
        voltage_webhooks::app::shutdown_signal().await;
        stop.cancel();
        running.await?;
        return Ok("stopped".to_owned());
    }
    match reconciler.sweep(&target).await? {
        Sweep::Done(r) => Ok(format!(
            "environment {environment}: {} pages, {} payments, {} gaps ({} stored, {} already stored by a webhook, {} in-progress states not synthesized), {} unreadable payments, {} of another environment",
            r.pages, r.payments, r.gaps, r.stored, r.duplicates, r.unnamed, r.unreadable, r.foreign
        )),
        Sweep::Busy => anyhow::bail!("another replica is sweeping environment {environment}; try again later"),
    }
}

/// `voltage-webhooks healthcheck`: 200 within 3 s, or an error.
pub async fn healthcheck(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?;
    let status = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .status();
    anyhow::ensure!(status.is_success(), "GET {url} answered {status}");
    Ok(())
}

//! Operator tools behind the CLI: `sign` (headers for a test delivery with curl), `check-config`,
//! and API key management.

pub mod api_keys;
pub mod loadgen;

use std::path::Path;

use anyhow::Context as _;
use chrono::Utc;

use crate::config::{Config, SecretRef};
use crate::event::Payload;
use crate::verify::{headers, sign};

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
    if registry.environments().next().is_none() {
        anyhow::bail!("configuration key `environments`: no environment is configured");
    }
    Ok(warnings)
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

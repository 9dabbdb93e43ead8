//! Configuration: built-in defaults, then a TOML file, then environment variables; validated at
//! start-up so that a mistake fails the process with a message naming the offending key.
//!
//! This module owns loading and checking. It resolves secret references into a
//! [`crate::verify::Registry`] and never prints a secret: the values live in `SecretString`s.

mod handlers;
mod reconcile;
mod retention;
mod secrets;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::Deserialize;
use uuid::Uuid;

pub use handlers::{DispatchConfig, HandlerConfig, HandlerKind, NatsConfig};
pub use reconcile::ReconcileConfig;
pub use retention::{RetentionConfig, RetentionPolicy};
pub use secrets::SecretRef;

use crate::verify::{Environment, Registration, Registry};

const DEFAULTS: &str = include_str!("../../config/default.toml");
/// Variables named `VOLTAGE_WEBHOOKS_<SECTION>__<KEY>` override `<section>.<key>`.
const ENV_PREFIX: &str = "VOLTAGE_WEBHOOKS_";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub ingest: IngestConfig,
    pub shutdown: ShutdownConfig,
    pub database: DatabaseConfig,
    pub dispatch: DispatchConfig,
    pub nats: NatsConfig,
    pub retention: RetentionConfig,
    pub reconcile: ReconcileConfig,
    #[serde(default)]
    pub environments: BTreeMap<String, EnvironmentConfig>,
    #[serde(default)]
    pub handlers: Vec<HandlerConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// When set, `/metrics` (with the probes) is served here and not on `listen`, so the public
    /// listener exposes no operational data.
    pub admin_listen: Option<SocketAddr>,
    /// Larger bodies get 413 before they are buffered: Voltage's bodies are a few KB.
    pub max_body_bytes: usize,
    /// Applies both ways: a timestamp this far in the future is as suspect as one this old.
    pub timestamp_tolerance_secs: u64,
    /// CIDRs of load balancers whose `X-Forwarded-For` is believed (for API-key allow-lists).
    pub trusted_proxies: Vec<String>,
    /// A client must send a request's headers within this, or its connection is closed.
    pub header_read_timeout_ms: u64,
    /// A client must send a delivery's body within this, or it gets 408.
    pub body_read_timeout_ms: u64,
    /// Requests (deliveries and API) in progress at once; more get 503 with Retry-After.
    pub max_concurrent_requests: usize,
    /// A request taking longer gets 503 (a delivery cut off here was not acknowledged).
    pub request_timeout_ms: u64,
    /// Event streams one API key may hold open at once; more get 429. A stream outlives its
    /// request (the concurrency limit counts it only until its headers are sent), so this is what
    /// bounds the polling one key can cause.
    pub max_streams_per_api_key: usize,
}

/// SIGTERM/SIGINT: `/readyz` turns 503, the process waits `drain_delay_ms` for the load balancer to
/// notice, stops accepting, and gives open requests and handler calls `deadline_ms` to finish.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    pub drain_delay_ms: u64,
    pub deadline_ms: u64,
}

/// Group commit: concurrent deliveries share one transaction.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Events per transaction at most; 1 turns group commit off.
    pub batch_max_events: usize,
    /// How long a batch waits for more events once it has one, in microseconds.
    pub batch_max_wait_us: u64,
    /// Batches being written at once (each holds a database connection while it writes).
    pub writers: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// A secret because it may carry a password.
    pub url: SecretString,
    pub max_connections: u32,
    /// Bounds how long a request waits for a connection, so an exhausted pool answers 503 quickly
    /// instead of holding Voltage past its deadline (sqlx's default is 30 s).
    pub acquire_timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    pub organization_id: Uuid,
    pub environment_id: Uuid,
    /// Optional CIDRs deliveries for this environment must come from (Voltage publishes none).
    #[serde(default)]
    pub allow_ips: Vec<String>,
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// A Voltage API key with read permission on this environment only: enables reconciliation
    /// and handler confirmation here. A secret like the webhook secrets.
    pub voltage_api_key: Option<SecretRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The registration's UUID, sent by Voltage as `x-voltage-webhook-id`.
    pub id: Uuid,
    pub secrets: Vec<SecretRef>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or variable that does not fit the configuration's types. Displayed as one line that
    /// names the key as written in the file (`environments.production.webhooks[1].id`) and what
    /// is wrong; figment's own rendering (`default.environments.production.webhooks.1.id`, its
    /// `Debug` of tags and profiles) is not shown to operators, so it is not the error's source.
    #[error("{}", readable(.0))]
    Load(Box<figment::Error>),
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// One line: `configuration key `a.b[1].c` (in FILE): what is wrong`, and how many more errors.
fn readable(error: &figment::Error) -> String {
    let mut key = key_as_written(&error.path);
    let reason = match &error.kind {
        figment::error::Kind::MissingField(field) => {
            key = if key.is_empty() {
                field.to_string()
            } else {
                format!("{key}.{field}")
            };
            "missing".to_owned()
        }
        kind => kind.to_string(),
    };
    let mut line = if key.is_empty() {
        format!("configuration: {reason}")
    } else {
        format!("configuration key `{key}`: {reason}")
    };
    if let Some(source) = error.metadata.as_ref().and_then(|m| m.source.as_ref()) {
        line.push_str(&format!(" (in {source})"));
    }
    let more = error.clone().into_iter().count().saturating_sub(1);
    if more > 0 {
        line.push_str(&format!(" (and {more} more)"));
    }
    line
}

/// figment's path (`environments`, `production`, `webhooks`, `1`, `id`) as TOML writes it:
/// `environments.production.webhooks[1].id`.
fn key_as_written(path: &[String]) -> String {
    let mut key = String::new();
    for segment in path {
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) && !key.is_empty() {
            key.push_str(&format!("[{segment}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment);
        }
    }
    key
}

/// What validation found that is allowed but worth an operator's attention.
pub type Warnings = Vec<String>;

impl Config {
    /// Defaults, then `path` if given, then the environment (`DATABASE_URL`, `VOLTAGE_WEBHOOKS_*`).
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = path {
            if !path.is_file() {
                return Err(ConfigError::invalid(
                    "--config",
                    format!("{} is not a readable file", path.display()),
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        Self::extract(figment.merge(environment_overrides()))
    }

    /// Defaults overlaid with a TOML document, without the process environment (tests, tools).
    pub fn from_toml(toml: &str) -> Result<Self, ConfigError> {
        Self::extract(Figment::from(Toml::string(DEFAULTS)).merge(Toml::string(toml)))
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        figment
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))
    }

    /// Checks everything that serde cannot and resolves every secret reference.
    pub fn resolve(&self) -> Result<(Registry, Warnings), ConfigError> {
        self.check_limits()?;
        let (_, mut warnings) = self.retention_policy()?;
        let concurrency: usize = self.handlers.iter().map(|h| h.concurrency).sum();
        if concurrency > self.dispatch.max_in_flight {
            warnings.push(format!(
                "dispatch.max_in_flight ({}) is below the handlers' total concurrency ({concurrency}): \
                 handlers whose slots are all busy can take the permits another handler needs",
                self.dispatch.max_in_flight
            ));
        }
        let registry = self.resolve_environments(&mut warnings)?;
        Ok((registry, warnings))
    }

    /// Counts and sizes that must be positive or fit each other.
    fn check_limits(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("ingest.batch_max_events", self.ingest.batch_max_events),
            ("ingest.writers", self.ingest.writers),
            (
                "server.max_concurrent_requests",
                self.server.max_concurrent_requests,
            ),
            (
                "server.max_streams_per_api_key",
                self.server.max_streams_per_api_key,
            ),
        ] {
            positive(key, value as u64)?;
        }
        if self.ingest.writers as u64 >= u64::from(self.database.max_connections) {
            return Err(ConfigError::invalid(
                "ingest.writers",
                "must be less than database.max_connections, or writers would starve every other query",
            ));
        }
        crate::auth::parse_cidrs(&self.server.trusted_proxies)
            .map_err(|e| ConfigError::invalid("server.trusted_proxies", e))?;
        Ok(())
    }

    /// Every environment and registration, with their secrets resolved; ids and secrets must be
    /// unique across the whole configuration.
    fn resolve_environments(&self, warnings: &mut Warnings) -> Result<Registry, ConfigError> {
        let mut environments = Vec::new();
        let mut registrations = Vec::new();
        let mut owner_of_webhook: HashMap<Uuid, String> = HashMap::new();
        let mut owner_of_secret: HashMap<[u8; 32], String> = HashMap::new();

        for (name, env) in &self.environments {
            check_name(&format!("environments.{name}"), name)?;
            if env.webhooks.is_empty() {
                warnings.push(format!("environments.{name} has no webhook registrations"));
            }
            for (w, webhook) in env.webhooks.iter().enumerate() {
                let key = format!("environments.{name}.webhooks[{w}]");
                if let Some(other) = owner_of_webhook.insert(webhook.id, key.clone()) {
                    return Err(ConfigError::invalid(
                        format!("{key}.id"),
                        format!("webhook id {} is already registered at {other}", webhook.id),
                    ));
                }
                let secrets = secrets::resolve_all(&key, webhook, &mut owner_of_secret, warnings)?;
                registrations.push(Registration {
                    id: webhook.id,
                    environment: name.clone(),
                    secrets,
                });
            }
            let allow_ips = crate::auth::parse_cidrs(&env.allow_ips)
                .map_err(|e| ConfigError::invalid(format!("environments.{name}.allow_ips"), e))?;
            environments.push(Environment {
                name: name.clone(),
                organization_id: env.organization_id,
                environment_id: env.environment_id,
                allow_ips,
            });
        }
        Ok(Registry::new(environments, registrations))
    }
}

fn environment_overrides() -> Figment {
    Figment::new()
        .merge(Env::prefixed(ENV_PREFIX).ignore(&["CONFIG"]).split("__"))
        .merge(
            Env::raw()
                .only(&["DATABASE_URL"])
                .map(|_| "database.url".into()),
        )
}

/// A count, size or duration that must not be 0.
pub(crate) fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be greater than 0"));
    }
    Ok(())
}

/// Names appear in URLs, NATS subjects and the outbox, so they are kept to a safe alphabet.
pub(crate) fn check_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{name:?}: names use only a-z, 0-9, '-' and '_' (at most 64)"),
        ))
    }
}

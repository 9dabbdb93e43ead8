//! What the generator needs from the service's configuration file: an environment's organization and
//! environment ids, its first webhook registration's id and secret, and the database URL for the
//! check. Read the way the service reads them (the TOML file, then `VOLTAGE_WEBHOOKS_<SECTION>__<KEY>`
//! and `DATABASE_URL` from the environment); every other key is ignored, and the service's own
//! validation (`voltage-webhooks check-config`) is not repeated here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use uuid::Uuid;

/// The service's default `database.url` (its `config/default.toml`).
const DEFAULT_DATABASE_URL: &str = "postgres://localhost/voltage_webhooks";
/// Variables named `VOLTAGE_WEBHOOKS_<SECTION>__<KEY>` override `<section>.<key>`, as in the service.
const ENV_PREFIX: &str = "VOLTAGE_WEBHOOKS_";

/// The part of the service's configuration the generator reads.
#[derive(Debug, Default, Deserialize)]
pub struct Settings {
    #[serde(default)]
    environments: BTreeMap<String, EnvironmentSettings>,
    #[serde(default)]
    database: DatabaseSettings,
}

#[derive(Debug, Deserialize)]
struct EnvironmentSettings {
    organization_id: Uuid,
    environment_id: Uuid,
    #[serde(default)]
    webhooks: Vec<WebhookSettings>,
}

#[derive(Debug, Deserialize)]
struct WebhookSettings {
    id: Uuid,
    secrets: Vec<SecretRef>,
}

#[derive(Debug, Default, Deserialize)]
struct DatabaseSettings {
    url: Option<SecretString>,
}

/// `{ env = "NAME" }`, `{ file = "/path" }` or `{ value = "..." }`, as in the service.
#[derive(Debug, Deserialize)]
struct SecretRef {
    env: Option<String>,
    file: Option<PathBuf>,
    value: Option<SecretString>,
}

impl SecretRef {
    fn resolve(&self, key: &str) -> anyhow::Result<SecretString> {
        let raw = match (&self.env, &self.file, &self.value) {
            (Some(name), None, None) => std::env::var(name)
                .with_context(|| format!("{key}: environment variable {name} is not set"))?,
            (None, Some(path), None) => std::fs::read_to_string(path)
                .with_context(|| format!("{key}: cannot read {}", path.display()))?,
            (None, None, Some(value)) => value.expose_secret().to_owned(),
            _ => anyhow::bail!(
                "{key}: a secret is exactly one of {{ env = NAME }}, {{ file = PATH }} or {{ value = \"...\" }}"
            ),
        };
        let trimmed = raw.trim();
        anyhow::ensure!(!trimmed.is_empty(), "{key}: the secret is empty");
        Ok(SecretString::from(trimmed.to_owned()))
    }
}

/// One environment's ids and the registration the generator signs as.
#[derive(Debug, Clone)]
pub struct Target {
    /// The Voltage organization the environment belongs to.
    pub organization_id: Uuid,
    /// The Voltage environment's id.
    pub environment_id: Uuid,
    /// The first webhook registration of the environment.
    pub webhook_id: Uuid,
    /// That registration's first secret.
    pub secret: SecretString,
}

impl Settings {
    /// `path` if given, then the environment (`DATABASE_URL`, `VOLTAGE_WEBHOOKS_*`).
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            anyhow::ensure!(
                path.is_file(),
                "--config: {} is not a readable file",
                path.display()
            );
            figment = figment.merge(Toml::file(path));
        }
        let figment = figment
            .merge(Env::prefixed(ENV_PREFIX).ignore(&["CONFIG"]).split("__"))
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database.url".into()),
            );
        figment.extract().context("reading the configuration")
    }

    /// A TOML document alone, without the process environment (tests).
    pub fn from_toml(toml: &str) -> anyhow::Result<Self> {
        Figment::from(Toml::string(toml))
            .extract()
            .context("reading the configuration")
    }

    /// The ids of `environment` and its first registration's first secret.
    pub fn target(&self, environment: &str) -> anyhow::Result<Target> {
        let env = self
            .environments
            .get(environment)
            .with_context(|| format!("--environment: no environment named {environment:?}"))?;
        let webhook = env.webhooks.first().with_context(|| {
            format!("environment {environment:?} has no webhook registration to sign with")
        })?;
        let key = format!("environments.{environment}.webhooks[0].secrets[0]");
        let secret = webhook
            .secrets
            .first()
            .with_context(|| format!("{key}: the registration has no secret"))?
            .resolve(&key)?;
        Ok(Target {
            organization_id: env.organization_id,
            environment_id: env.environment_id,
            webhook_id: webhook.id,
            secret,
        })
    }

    /// `database.url`, or the service's default.
    pub fn database_url(&self) -> SecretString {
        self.database
            .url
            .clone()
            .unwrap_or_else(|| SecretString::from(DEFAULT_DATABASE_URL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
        [server]
        listen = "127.0.0.1:8080"

        [database]
        url = "postgres://db.example/vw"

        [environments.production]
        organization_id = "11111111-1111-4111-8111-111111111111"
        environment_id = "22222222-2222-4222-8222-222222222222"
        webhooks = [
          { id = "33333333-3333-4333-8333-333333333333", secrets = [{ value = " vltg_first\n" }, { value = "vltg_second" }] },
          { id = "44444444-4444-4444-8444-444444444444", secrets = [{ value = "vltg_other" }] },
        ]

        [environments.staging]
        organization_id = "11111111-1111-4111-8111-111111111111"
        environment_id = "55555555-5555-4555-8555-555555555555"
    "#;

    #[test]
    fn the_first_registration_and_secret_of_the_environment_are_used() {
        let settings = Settings::from_toml(TOML).expect("parses, other keys ignored");
        let target = settings.target("production").expect("target");
        assert_eq!(
            target.webhook_id.to_string(),
            "33333333-3333-4333-8333-333333333333"
        );
        assert_eq!(target.secret.expose_secret(), "vltg_first");
        assert_eq!(
            target.environment_id.to_string(),
            "22222222-2222-4222-8222-222222222222"
        );
        assert_eq!(
            settings.database_url().expose_secret(),
            "postgres://db.example/vw"
        );
    }

    #[test]
    fn a_missing_environment_or_registration_is_named() {
        let settings = Settings::from_toml(TOML).expect("parses");
        let err = settings
            .target("test")
            .expect_err("no such environment")
            .to_string();
        assert!(err.contains("no environment named \"test\""), "{err}");
        let err = settings
            .target("staging")
            .expect_err("no registration")
            .to_string();
        assert!(err.contains("no webhook registration"), "{err}");
    }

    #[test]
    fn secrets_come_from_files_too_and_the_database_url_has_the_service_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "vltg_fromfile\n").expect("write");
        let toml = format!(
            r#"[environments.production]
            organization_id = "11111111-1111-4111-8111-111111111111"
            environment_id = "22222222-2222-4222-8222-222222222222"
            webhooks = [{{ id = "33333333-3333-4333-8333-333333333333", secrets = [{{ file = {path:?} }}] }}]"#
        );
        let settings = Settings::from_toml(&toml).expect("parses");
        let target = settings.target("production").expect("target");
        assert_eq!(target.secret.expose_secret(), "vltg_fromfile");
        assert_eq!(
            settings.database_url().expose_secret(),
            DEFAULT_DATABASE_URL
        );
    }
}

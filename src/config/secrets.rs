//! Where a secret comes from: an environment variable, a file (e.g. a mounted Kubernetes Secret), or
//! an inline value for local use.

use std::collections::HashMap;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use sha2::{Digest, Sha256};

use super::{ConfigError, Warnings, WebhookConfig};

/// `{ env = "NAME" }`, `{ file = "/path" }` or `{ value = "..." }`: exactly one of them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    env: Option<String>,
    file: Option<PathBuf>,
    value: Option<SecretString>,
}

impl SecretRef {
    pub fn from_env(name: impl Into<String>) -> Self {
        Self {
            env: Some(name.into()),
            file: None,
            value: None,
        }
    }

    pub fn is_inline(&self) -> bool {
        self.value.is_some()
    }

    /// Reads the secret. Surrounding whitespace (a file's final newline) is trimmed; an empty
    /// result is an error, since an empty HMAC key would accept forgeries by anyone who guesses it.
    pub fn resolve(&self, key: &str) -> Result<SecretString, ConfigError> {
        let raw = match (&self.env, &self.file, &self.value) {
            (Some(name), None, None) => std::env::var(name).map_err(|_| {
                ConfigError::invalid(key, format!("environment variable {name} is not set"))
            })?,
            (None, Some(path), None) => std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid(key, format!("cannot read {}: {}", path.display(), e.kind()))
            })?,
            (None, None, Some(value)) => value.expose_secret().to_owned(),
            _ => return Err(ConfigError::invalid(
                key,
                "a secret is exactly one of { env = NAME }, { file = PATH } or { value = \"...\" }",
            )),
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ConfigError::invalid(key, "the secret is empty"));
        }
        Ok(SecretString::from(trimmed.to_owned()))
    }
}

/// Resolves a registration's secrets: at least one, warned about past two or when inline, and
/// refused when the same secret is configured anywhere else (compared by SHA-256 fingerprint).
pub(super) fn resolve_all(
    key: &str,
    webhook: &WebhookConfig,
    owner_of_secret: &mut HashMap<[u8; 32], String>,
    warnings: &mut Warnings,
) -> Result<Vec<SecretString>, ConfigError> {
    if webhook.secrets.is_empty() {
        return Err(ConfigError::invalid(
            format!("{key}.secrets"),
            "at least one secret is required",
        ));
    }
    if webhook.secrets.len() > 2 {
        warnings.push(format!(
            "{key}.secrets has {} secrets: retire old ones once a rotation is over",
            webhook.secrets.len()
        ));
    }
    let mut resolved = Vec::with_capacity(webhook.secrets.len());
    for (s, reference) in webhook.secrets.iter().enumerate() {
        let secret_key = format!("{key}.secrets[{s}]");
        if reference.is_inline() {
            warnings.push(format!(
                "{secret_key} is an inline value: use {{ env = ... }} or {{ file = ... }} outside local use"
            ));
        }
        let secret = reference.resolve(&secret_key)?;
        let fingerprint: [u8; 32] =
            Sha256::digest(secrecy::ExposeSecret::expose_secret(&secret)).into();
        if let Some(other) = owner_of_secret.insert(fingerprint, secret_key.clone()) {
            return Err(ConfigError::invalid(
                secret_key,
                format!("the same secret is already configured at {other}"),
            ));
        }
        resolved.push(secret);
    }
    Ok(resolved)
}

//! `voltage-webhooks api-key ...`: keys are printed once at creation or rotation and never again.

use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use secrecy::ExposeSecret as _;

use voltage_webhooks::auth::{generate_key, parse_cidrs, Permission};
use voltage_webhooks::config::Config;
use voltage_webhooks::store::{NewApiKey, Store};

#[derive(Debug)]
pub struct CreateKey {
    pub name: String,
    pub environment: String,
    pub permission: String,
    pub allow_ips: Vec<String>,
    pub expires_in: Option<Duration>,
}

/// Key commands may be the first thing run against a new database, so they migrate it too.
async fn open(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::new(
        voltage_webhooks::app::open_database(config, true).await?,
    ))
}

/// Returns the text to print: the key, once, with what it is for.
pub async fn create(config: &Config, request: CreateKey) -> anyhow::Result<String> {
    if !config.environments.contains_key(&request.environment) {
        anyhow::bail!(
            "--environment: no environment named {:?} is configured",
            request.environment
        );
    }
    let permission =
        Permission::parse(&request.permission).context("--permission must be read or write")?;
    parse_cidrs(&request.allow_ips).map_err(|e| anyhow::anyhow!("--allow-ip: {e}"))?;
    let expires_at = match request.expires_in {
        Some(d) => {
            Some(Utc::now() + chrono::Duration::from_std(d).context("--expires-in is too long")?)
        }
        None => None,
    };
    let key = generate_key();
    let new = NewApiKey {
        name: &request.name,
        environment: &request.environment,
        permission,
        allow_ips: &request.allow_ips,
        expires_at,
    };
    open(config).await?.create_api_key(&new, &key).await?;
    Ok(format!(
        "{}\n\nThis is the only time the key is shown: store it in your secrets manager.\n\
         name={} environment={} permission={} allow_ips={:?} expires_at={}",
        key.plaintext.expose_secret(),
        request.name,
        request.environment,
        permission.as_str(),
        request.allow_ips,
        expires_at.map_or("never".into(), |t| t.to_rfc3339()),
    ))
}

pub async fn list(config: &Config) -> anyhow::Result<String> {
    let keys = open(config).await?.list_api_keys().await?;
    let now = Utc::now();
    let fmt = |t: Option<chrono::DateTime<Utc>>| {
        t.map_or("-".to_owned(), |t| {
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        })
    };
    let mut out = String::from("NAME\tENVIRONMENT\tPERMISSION\tALLOW_IPS\tKEY\tCREATED\tLAST_USED\tEXPIRES\tREVOKED\tSTATE\n");
    for k in keys {
        let state = match (k.is_usable(now), k.superseded_at.is_some()) {
            (false, _) if k.revoked_at.is_some() => "revoked",
            (false, _) => "expired",
            (true, true) => "in-grace",
            (true, false) => "active",
        };
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}…\t{}\t{}\t{}\t{}\t{state}\n",
            k.name,
            k.environment,
            k.permission,
            if k.allow_ips.is_empty() {
                "any".into()
            } else {
                k.allow_ips.join(",")
            },
            k.key_hint,
            fmt(Some(k.created_at)),
            fmt(k.last_used_at),
            fmt(k.expires_at),
            fmt(k.revoked_at),
        ));
    }
    Ok(out)
}

pub async fn revoke(config: &Config, name: &str) -> anyhow::Result<String> {
    match open(config).await?.revoke_api_key(name).await? {
        0 => anyhow::bail!("no unrevoked key named {name:?}"),
        n => Ok(format!("revoked {n} key(s) named {name:?}")),
    }
}

pub async fn rotate(config: &Config, name: &str, grace: Duration) -> anyhow::Result<String> {
    let key = generate_key();
    match open(config)
        .await?
        .rotate_api_key(name, grace, &key)
        .await?
    {
        None => anyhow::bail!("no current key named {name:?}"),
        Some(_) => Ok(format!(
            "{}\n\nThe new key for {name:?}; shown only now. The previous key stays valid for {}.",
            key.plaintext.expose_secret(),
            humantime::format_duration(grace)
        )),
    }
}

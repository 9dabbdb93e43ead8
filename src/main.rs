//! The `voltage-webhooks` command line: parses arguments, loads configuration, calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use voltage_webhooks::app::{self, ServeOptions};
use voltage_webhooks::config::Config;
use voltage_webhooks::telemetry;

mod cli;

/// mimalloc instead of glibc's allocator: a request allocates and frees many small buffers across
/// threads, where glibc spent about a fifth of the service's CPU (perf, under load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Receives Voltage Payments webhooks, verifies them, and stores each event exactly once.
#[derive(Debug, Parser)]
#[command(name = "voltage-webhooks", version)]
struct Cli {
    /// TOML configuration file; built-in defaults apply when absent. Environment variables
    /// (DATABASE_URL, VOLTAGE_WEBHOOKS_<SECTION>__<KEY>) override it.
    #[arg(long, global = true, env = "VOLTAGE_WEBHOOKS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve webhooks, and dispatch stored events to handlers unless `dispatch.enabled = false`.
    /// Creates the database if missing and applies pending migrations first.
    Serve {
        /// Do not create the database or apply migrations (run `migrate` separately).
        #[arg(long)]
        no_migrate: bool,
    },
    /// Run a dispatcher only (fan-out of stored events to handlers), apart from ingest.
    Dispatch,
    /// Create the database if missing and apply pending migrations, then exit.
    Migrate,
    /// Run one retention pass now (see `[retention]`): remove expired events, dead deliveries,
    /// quarantined bodies and replay records, in small batches.
    Purge {
        /// Only count what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Sweep Voltage's payments API for one environment and store what the webhooks missed.
    Reconcile {
        /// The environment (its `voltage_api_key` must be set).
        #[arg(long)]
        environment: String,
        /// One sweep, then exit (otherwise: every reconcile.interval_secs until SIGTERM).
        #[arg(long)]
        once: bool,
    },
    /// Validate the configuration and resolve every secret; print warnings.
    CheckConfig,
    /// Manage API keys for the query API (scoped to one environment, read or write).
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Exit 0 if the service at URL answers 200 (for container HEALTHCHECKs: no curl needed).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
    /// Print the headers of a signed delivery of a body, for testing a deployment with curl.
    Sign {
        /// Environment variable holding the webhook secret (never pass a secret as an argument).
        #[arg(long)]
        secret_env: String,
        /// File with the exact body bytes to sign.
        #[arg(long)]
        body: PathBuf,
        /// Unix seconds to sign with (default: now).
        #[arg(long)]
        timestamp: Option<i64>,
        /// Also print an x-voltage-webhook-id header with this registration id.
        #[arg(long)]
        webhook_id: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Create a key and print it once.
    Create {
        /// Descriptive, e.g. "billing-service-production-read".
        #[arg(long)]
        name: String,
        #[arg(long)]
        environment: String,
        /// read (every GET) or write (also replay and retry).
        #[arg(long)]
        permission: String,
        /// Allowed client address or CIDR range; repeat for several (none: any address).
        #[arg(long = "allow-ip")]
        allow_ips: Vec<String>,
        /// Lifetime, e.g. 90d or 12h (default: no expiry).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// List keys: name, environment, permission, allow-list, dates and state; never a key.
    List,
    /// Revoke every key with this name.
    Revoke { name: String },
    /// Issue a new key for this name; the old one stays valid for the grace period.
    Rotate {
        name: String,
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Healthcheck { url } = &cli.command {
        return tokio::runtime::Runtime::new()?.block_on(cli::healthcheck(url));
    }
    if let Command::Sign {
        secret_env,
        body,
        timestamp,
        webhook_id,
    } = &cli.command
    {
        let headers = cli::signed_headers(secret_env, body, *timestamp, webhook_id.as_deref())?;
        println!("{headers}");
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref())?;
    with_config(cli.command, cli.config, config)
}

/// The commands that read the configuration.
fn with_config(
    command: Command,
    config_path: Option<std::path::PathBuf>,
    config: Config,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    match command {
        Command::Serve { no_migrate } => runtime.block_on(app::serve(
            config,
            ServeOptions {
                migrate: !no_migrate,
                config_path,
            },
            Vec::new(),
        )),
        Command::Dispatch => runtime.block_on(app::dispatch(config, Vec::new())),
        Command::Migrate => runtime.block_on(app::migrate(&config)),
        Command::Purge { dry_run } => {
            println!("{}", runtime.block_on(cli::purge(&config, dry_run))?);
            Ok(())
        }
        Command::Reconcile { environment, once } => {
            println!(
                "{}",
                runtime.block_on(cli::reconcile(&config, &environment, once))?
            );
            Ok(())
        }
        Command::CheckConfig => {
            let warnings = cli::check_config(&config)?;
            for warning in &warnings {
                println!("warning: {warning}");
            }
            println!("configuration is valid ({} warnings)", warnings.len());
            Ok(())
        }
        Command::ApiKey(command) => {
            let output = runtime.block_on(api_key(&config, command))?;
            println!("{output}");
            Ok(())
        }
        Command::Sign { .. } | Command::Healthcheck { .. } => unreachable!("handled above"),
    }
}

async fn api_key(config: &Config, command: ApiKeyCommand) -> anyhow::Result<String> {
    use cli::api_keys;
    match command {
        ApiKeyCommand::Create {
            name,
            environment,
            permission,
            allow_ips,
            expires_in,
        } => {
            let request = api_keys::CreateKey {
                name,
                environment,
                permission,
                allow_ips,
                expires_in,
            };
            api_keys::create(config, request).await
        }
        ApiKeyCommand::List => api_keys::list(config).await,
        ApiKeyCommand::Revoke { name } => api_keys::revoke(config, &name).await,
        ApiKeyCommand::Rotate { name, grace } => api_keys::rotate(config, &name, grace).await,
    }
}

//! The `voltage-webhooks` command line: parses arguments, loads configuration, calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use voltage_webhooks::app::{self, ServeOptions};
use voltage_webhooks::config::Config;
use voltage_webhooks::{telemetry, tools};

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
    /// Validate the configuration and resolve every secret; print warnings.
    CheckConfig,
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
    if let Command::Sign {
        secret_env,
        body,
        timestamp,
        webhook_id,
    } = &cli.command
    {
        let headers = tools::signed_headers(secret_env, body, *timestamp, webhook_id.as_deref())?;
        println!("{headers}");
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref())?;
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Serve { no_migrate } => runtime.block_on(app::serve(
            config,
            ServeOptions {
                migrate: !no_migrate,
            },
            Vec::new(),
        )),
        Command::Dispatch => runtime.block_on(app::dispatch(config, Vec::new())),
        Command::Migrate => runtime.block_on(app::migrate(&config)),
        Command::CheckConfig => {
            let warnings = tools::check_config(&config)?;
            for warning in &warnings {
                println!("warning: {warning}");
            }
            println!("configuration is valid ({} warnings)", warnings.len());
            Ok(())
        }
        Command::Sign { .. } => unreachable!("handled above"),
    }
}

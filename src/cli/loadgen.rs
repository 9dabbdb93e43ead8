//! `voltage-webhooks loadgen`: the load generator driven from the config file, which supplies the
//! environment's ids and a registration's secret.

use std::time::Duration;

use anyhow::Context as _;

use voltage_webhooks::config::Config;
use voltage_webhooks::loadgen::{self, LoadSpec};

/// The `loadgen` command line.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Environment to send to; its ids and first registration's secret come from the config.
    #[arg(long)]
    pub environment: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Fixed rate in requests per second (default: as fast as the concurrency allows).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Share (0 to 1) of requests that re-send an earlier body, as Voltage's retries do.
    #[arg(long, default_value_t = 0.0)]
    pub duplicates: f64,
    /// Afterwards, check that the database holds exactly the acknowledged events.
    #[arg(long)]
    pub check_database: bool,
    /// Also print latency per window of this length (e.g. `500ms`), to tell stalls from a spread tail.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeline: Option<Duration>,
}

pub async fn run(config: &Config, args: LoadArgs) -> anyhow::Result<String> {
    let (registry, _) = config.resolve()?;
    let environment = registry
        .environment(&args.environment)
        .with_context(|| format!("--environment: no environment named {:?}", args.environment))?;
    let registration = registry
        .registrations_of(&args.environment)
        .next()
        .with_context(|| {
            format!(
                "environment {:?} has no webhook registration to sign with",
                args.environment
            )
        })?;
    if !(0.0..=1.0).contains(&args.duplicates) {
        anyhow::bail!("--duplicates is a share from 0 to 1");
    }
    let spec = LoadSpec {
        base_url: args.url,
        environment: args.environment.clone(),
        organization_id: environment.organization_id,
        environment_id: environment.environment_id,
        webhook_id: registration.id,
        secret: registration.secrets[0].clone(),
        concurrency: args.concurrency,
        duration: args.duration,
        rate: args.rate,
        duplicates: args.duplicates,
    };
    let outcome = loadgen::run(spec).await?;
    let mut lines = vec![outcome.report.summary()];
    if let Some(window) = args.timeline {
        lines.extend(outcome.report.timeline(window));
    }
    if args.check_database {
        // The figures first: a failed check must not hide what the load saw.
        println!("{}", lines.join("\n"));
        lines.clear();
        let pool = voltage_webhooks::app::open_database(config, false).await?;
        lines.push(loadgen::check_database(&pool, &args.environment, &outcome).await?);
    }
    Ok(lines.join("\n"))
}

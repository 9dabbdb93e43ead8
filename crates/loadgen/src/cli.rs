//! The `voltage-loadgen` command line: the load generator driven from the service's configuration
//! file, which supplies the environment's ids, a registration's secret and the database URL.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::ExposeSecret as _;

use crate::settings::Settings;
use crate::LoadSpec;

/// Sends signed, realistic Voltage deliveries to a running voltage-webhooks and reports throughput
/// and latency.
#[derive(Debug, clap::Parser)]
#[command(name = "voltage-loadgen", version)]
pub struct LoadArgs {
    /// The service's TOML configuration file (for the environment's ids, its first registration's
    /// secret and database.url). Environment variables (DATABASE_URL,
    /// VOLTAGE_WEBHOOKS_<SECTION>__<KEY>) override it, as in the service.
    #[arg(long, env = "VOLTAGE_WEBHOOKS_CONFIG")]
    pub config: Option<PathBuf>,
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
    /// Where the service's `/metrics` is (default: `{url}/metrics`; give the admin listener's
    /// when `server.admin_listen` is set). Scraped before and after the run to print the
    /// server-side time of each stage of a delivery; the run goes on without it if unreachable.
    #[arg(long)]
    pub metrics_url: Option<String>,
}

/// Runs the load described by `args`; returns the report to print.
pub async fn run(args: LoadArgs) -> anyhow::Result<String> {
    let settings = Settings::load(args.config.as_deref())?;
    let target = settings.target(&args.environment)?;
    if !(0.0..=1.0).contains(&args.duplicates) {
        anyhow::bail!("--duplicates is a share from 0 to 1");
    }
    let spec = LoadSpec {
        base_url: args.url,
        environment: args.environment.clone(),
        organization_id: target.organization_id,
        environment_id: target.environment_id,
        webhook_id: target.webhook_id,
        secret: target.secret,
        concurrency: args.concurrency,
        duration: args.duration,
        rate: args.rate,
        duplicates: args.duplicates,
    };
    let metrics_url = args
        .metrics_url
        .clone()
        .unwrap_or_else(|| format!("{}/metrics", spec.base_url.trim_end_matches('/')));
    let before = crate::stages::scrape(&metrics_url).await;
    let outcome = crate::run(spec).await?;
    let mut lines = vec![outcome.report.summary()];
    if let Some(window) = args.timeline {
        lines.extend(outcome.report.timeline(window));
    }
    match (before, crate::stages::scrape(&metrics_url).await) {
        (Ok(before), Ok(after)) => lines.extend(crate::stages::summary(&before, &after)),
        (Err(e), _) | (_, Err(e)) => {
            lines.push(format!("server stages: {metrics_url} not scraped ({e:#})"));
        }
    }
    if args.check_database {
        // The figures first: a failed check must not hide what the load saw.
        print(&lines.join("\n"))?;
        lines.clear();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(settings.database_url().expose_secret())
            .await
            .map_err(|e| anyhow::anyhow!("database.url: {e}"))?;
        lines.push(crate::check_database(&pool, &args.environment, &outcome).await?);
    }
    Ok(lines.join("\n"))
}

/// Writes `text` and a newline to standard output. A reader that went away (`| head`) is not an
/// error: there is nobody left to tell. (`println!` panics there.)
pub fn print(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

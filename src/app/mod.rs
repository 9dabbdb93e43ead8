//! Assembling and running the service: `Application::build` binds the listener, `port()` tells
//! which port it got (tests bind port 0), `run_until_stopped` serves until the shutdown future ends.
//! `serve` runs ingest and (unless disabled) a dispatcher; `dispatch` runs a dispatcher alone.

use std::sync::Arc;

use crate::store::Pool as PgPool;
use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::event::Routing;
use crate::handlers::ConfirmLayer;
use crate::handlers::{self, HandlerSet, RegisteredHandler};
pub use crate::http::Application;
use crate::http::{self, AppState};
use crate::ingest::{system_clock, GroupCommit, GroupCommitSettings, IngestSettings, Intake};
use crate::outbox::Dispatcher;
use crate::reconcile::Reconciler;
use crate::store::{self, Store};
use crate::verify::Registry;

mod settings;
mod signals;

use signals::reload_on_sighup;
pub use signals::shutdown_signal;

/// The handlers' state; also what tests use to drive the router in process.
/// Starts the group-commit writers, so it must run inside the runtime.
pub fn app_state(config: &Config, registry: Registry, routing: Routing, pool: PgPool) -> AppState {
    let store = Store::new(pool);
    let group_commit = GroupCommitSettings {
        max_events: config.ingest.batch_max_events,
        max_wait: std::time::Duration::from_micros(config.ingest.batch_max_wait_us),
        writers: config.ingest.writers,
    };
    let intake = Intake {
        registry: Arc::new(arc_swap::ArcSwap::from_pointee(registry)),
        routing: Arc::new(routing),
        writer: GroupCommit::start(store.clone(), group_commit),
        store: store.clone(),
        settings: IngestSettings {
            max_body_bytes: config.server.max_body_bytes,
            tolerance_secs: config.server.timestamp_tolerance_secs,
            body_read_timeout: std::time::Duration::from_millis(config.server.body_read_timeout_ms),
        },
        clock: system_clock(),
    };
    AppState {
        intake,
        store,
        metrics: crate::telemetry::metrics::install(),
        draining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        limits: http::RequestLimits {
            max_concurrent: config.server.max_concurrent_requests,
            request_timeout: std::time::Duration::from_millis(config.server.request_timeout_ms),
            max_streams_per_key: config.server.max_streams_per_api_key,
        },
        // Validated by `Config::resolve`, which every command runs first.
        trusted_proxies: Arc::new(
            crate::auth::parse_cidrs(&config.server.trusted_proxies).unwrap_or_default(),
        ),
        probes: Arc::new(http::ProbeCache::default()),
        streams: Arc::new(http::StreamSlots::default()),
    }
}

/// The configured handlers plus those an embedding program registers.
pub async fn handler_set(
    config: &Config,
    custom: Vec<RegisteredHandler>,
) -> anyhow::Result<HandlerSet> {
    handler_set_with_keys(config, custom, config.reconcile_targets()?).await
}

/// [`handler_set`], confirming with `targets`' API keys (shared with the reconciler and SIGHUP).
async fn handler_set_with_keys(
    config: &Config,
    custom: Vec<RegisteredHandler>,
    targets: Vec<crate::reconcile::Target>,
) -> anyhow::Result<HandlerSet> {
    let specs = config.handler_specs()?;
    let confirm = if specs.iter().any(|spec| spec.confirm) {
        Some(ConfirmLayer::new(config.voltage_api()?, targets))
    } else {
        None
    };
    let mut set = handlers::build(specs, &config.nats.url, confirm).await?;
    for handler in custom {
        set.register(handler)?;
    }
    Ok(set)
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Create the database if missing and apply pending migrations before serving.
    pub migrate: bool,
    /// The file SIGHUP reloads (the environment is read again too).
    pub config_path: Option<std::path::PathBuf>,
}

/// `voltage-webhooks serve`: ingest, and a dispatcher unless `dispatch.enabled = false`.
pub async fn serve(
    config: Config,
    options: ServeOptions,
    custom: Vec<RegisteredHandler>,
) -> anyhow::Result<()> {
    let (registry, warnings) = config.resolve()?;
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    let pool = open_database(&config, options.migrate).await?;
    // One set of API-key cells for the reconciler and confirmation, replaced in place on SIGHUP.
    let targets = config.reconcile_targets()?;
    let handlers = Arc::new(handler_set_with_keys(&config, custom, targets.clone()).await?);
    let state = app_state(&config, registry, handlers.routing(), pool.clone());
    let draining = state.draining.clone();
    reload_on_sighup(
        options.config_path.clone(),
        state.intake.registry.clone(),
        targets.clone(),
    );
    let app = Application::build(&config, state).await?;
    tracing::info!(listen = %app.local_addr()?, admin_listen = ?app.admin_addr(), handlers = ?handlers.names(), "serving");

    let stop = CancellationToken::new();
    let background = Background::start(&config, &pool, handlers, targets, &stop)?;
    let drain_delay = std::time::Duration::from_millis(config.shutdown.drain_delay_ms);
    let http_stop = stop.clone();
    app.run_until_stopped(async move {
        shutdown_signal().await;
        // Readiness fails first; the listener stays open while the load balancer notices.
        draining.store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(
            drain_ms = drain_delay.as_millis() as u64,
            "draining: /readyz answers 503"
        );
        tokio::time::sleep(drain_delay).await;
        http_stop.cancel();
    })
    .await?;
    stop.cancel();
    background.join().await?;
    tracing::info!("stopped");
    Ok(())
}

/// What `serve` runs beside the listeners: retention, and the reconciler and the dispatcher when
/// configured. They stop when the token given to [`Background::start`] is cancelled.
struct Background {
    retention: tokio::task::JoinHandle<()>,
    reconciling: Option<tokio::task::JoinHandle<()>>,
    dispatcher: Option<tokio::task::JoinHandle<()>>,
}

impl Background {
    fn start(
        config: &Config,
        pool: &PgPool,
        handlers: Arc<HandlerSet>,
        targets: Vec<crate::reconcile::Target>,
        stop: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let dispatch = config.dispatch_settings()?;
        let (retention, _) = config.retention_policy()?;
        let reconciling = if config.reconcile.enabled && !targets.is_empty() {
            let reconciler = reconciler(config, pool, handlers.routing())?;
            let run = crate::reconcile::run(reconciler, targets, stop.clone());
            Some(tokio::spawn(run))
        } else {
            None
        };
        let store = Store::new(pool.clone());
        let retention = tokio::spawn(crate::retention::run(
            store.clone(),
            retention,
            stop.clone(),
        ));
        let dispatcher = config
            .dispatch
            .enabled
            .then(|| tokio::spawn(Dispatcher::new(store, handlers, dispatch).run(stop.clone())));
        Ok(Self {
            retention,
            reconciling,
            dispatcher,
        })
    }

    /// Waits for every task to finish its current work and stop.
    async fn join(self) -> anyhow::Result<()> {
        self.retention.await.context("retention task")?;
        if let Some(reconciling) = self.reconciling {
            reconciling.await.context("reconciliation task")?;
        }
        if let Some(dispatcher) = self.dispatcher {
            dispatcher.await.context("dispatcher task")?;
        }
        Ok(())
    }
}

/// The reconciler `[reconcile]` describes, enqueuing new events for `routing`'s handlers.
pub fn reconciler(config: &Config, pool: &PgPool, routing: Routing) -> anyhow::Result<Reconciler> {
    Ok(Reconciler {
        store: Store::new(pool.clone()),
        api: config.voltage_api()?,
        routing: Arc::new(routing),
        settings: config.reconcile_settings()?,
    })
}

/// `voltage-webhooks dispatch`: a dispatcher alone, to scale fan-out apart from ingest.
pub async fn dispatch(config: Config, custom: Vec<RegisteredHandler>) -> anyhow::Result<()> {
    let settings = config.dispatch_settings()?;
    let pool = open_database(&config, false).await?;
    let handlers = Arc::new(handler_set(&config, custom).await?);
    tracing::info!(handlers = ?handlers.names(), "dispatching");
    let stop = CancellationToken::new();
    let dispatcher =
        tokio::spawn(Dispatcher::new(Store::new(pool), handlers, settings).run(stop.clone()));
    shutdown_signal().await;
    stop.cancel();
    dispatcher.await.context("dispatcher task")?;
    Ok(())
}

/// `voltage-webhooks migrate`.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    open_database(config, true).await.map(|_| ())
}

/// A pool for `database.url`; with `migrate`, the database is created if missing and migrated.
pub async fn open_database(config: &Config, migrate: bool) -> anyhow::Result<PgPool> {
    if migrate {
        store::create_database_if_missing(&config.database)
            .await
            .context("creating the database")?;
    }
    let pool = store::connect_lazy(&config.database).context("database.url")?;
    if migrate {
        store::migrate(&pool).await.context("applying migrations")?;
    }
    Ok(pool)
}

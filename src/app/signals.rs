//! Signals: SIGHUP reloads registrations and secrets; SIGINT and SIGTERM start a shutdown.

use std::sync::Arc;

use crate::config::Config;
use crate::reconcile::Target;
use crate::verify::Registry;

/// Reloads the configuration on every SIGHUP and swaps in its registrations and secrets, and the
/// Voltage API keys of `targets`, so a rotation needs no restart. A configuration that fails to
/// load is logged and changes nothing. (An environment given a key only now needs a restart.)
pub(super) fn reload_on_sighup(
    path: Option<std::path::PathBuf>,
    registry: Arc<arc_swap::ArcSwap<Registry>>,
    targets: Vec<Target>,
) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; secrets reload only on restart");
            return;
        };
        while hangups.recv().await.is_some() {
            let reloaded = Config::load(path.as_deref()).and_then(|config| {
                let (fresh, warnings) = config.resolve()?;
                Ok((fresh, warnings, config.reconcile_targets()?))
            });
            match reloaded {
                Ok((fresh, warnings, keys)) => {
                    for warning in &warnings {
                        tracing::warn!("{warning}");
                    }
                    registry.store(Arc::new(fresh));
                    for target in &targets {
                        match keys.iter().find(|k| k.environment == target.environment) {
                            Some(new) => target.api_key.replace((*new.api_key.current()).clone()),
                            None => {
                                tracing::warn!(environment = %target.environment, "SIGHUP: voltage_api_key removed; the current key stays until a restart")
                            }
                        }
                    }
                    tracing::info!("SIGHUP: registrations, secrets and API keys reloaded");
                }
                Err(e) => {
                    // One readable line naming the key; no Debug of figment's internals.
                    tracing::error!(error = %e, "SIGHUP: reload failed; keeping the current secrets")
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (path, registry, targets);
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

//! The service's listeners: `server.listen` with the deliveries, the query API and (unless an admin
//! listener is configured) the probes and `/metrics`; `server.admin_listen` with the probes and
//! `/metrics` only.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{AppState, ServerLimits};
use crate::config::Config;
use crate::http;

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// `server.admin_listen`: metrics and probes on their own listener.
    admin: Option<(TcpListener, Router)>,
    limits: ServerLimits,
}

impl Application {
    /// Binds `server.listen` and builds the router over `state`.
    pub async fn build(config: &Config, state: AppState) -> anyhow::Result<Self> {
        let listen = config.server.listen;
        let listener =
            http::bind(listen).with_context(|| format!("binding server.listen = {listen}"))?;
        let (router, admin) = match config.server.admin_listen {
            None => (http::router(state), None),
            Some(admin_listen) => {
                let admin = http::bind(admin_listen)
                    .with_context(|| format!("binding server.admin_listen = {admin_listen}"))?;
                (
                    http::router_without_metrics(state.clone()),
                    Some((admin, http::admin_router(state))),
                )
            }
        };
        Ok(Self {
            listener,
            router,
            admin,
            limits: ServerLimits {
                header_read_timeout: std::time::Duration::from_millis(
                    config.server.header_read_timeout_ms,
                ),
                shutdown_grace: std::time::Duration::from_millis(config.shutdown.deadline_ms),
            },
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn port(&self) -> u16 {
        self.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The admin listener's address, when `server.admin_listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// Serves until `shutdown` resolves; the admin listener (if any) stops with the main one.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some((admin_listener, admin_router)) = self.admin else {
            return http::serve(self.listener, self.router, self.limits, shutdown).await;
        };
        let stopped = CancellationToken::new();
        let admin = tokio::spawn(http::serve(
            admin_listener,
            admin_router,
            self.limits,
            stopped.clone().cancelled_owned(),
        ));
        let main_stopped = stopped.clone();
        let served = http::serve(self.listener, self.router, self.limits, async move {
            shutdown.await;
            main_stopped.cancel();
        })
        .await;
        stopped.cancel();
        admin.await.map_err(std::io::Error::other)??;
        served
    }
}

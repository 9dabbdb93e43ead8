//! Serving connections with hyper directly (axum's `serve` cannot set read timeouts): a client that
//! trickles its headers is cut off after `header_read_timeout`, and the ingest route cuts off a
//! trickled body after `body_read_timeout`, so slow clients cannot hold the server's connections
//! while normal deliveries wait. Shutdown stops accepting, then lets open requests finish.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A request's headers must arrive within this.
    pub header_read_timeout: Duration,
    /// After the shutdown signal, how long open requests may take before connections are dropped.
    pub shutdown_grace: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves; requests see the peer as `ConnectInfo`.
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Answers are small and written once: without Nagle's algorithm they leave at once
                // instead of waiting for the client's delayed ACK (a 40 ms stall on Linux).
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, %peer, "TCP_NODELAY not set");
                }
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_read_timeout)
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service(router.clone(), peer)));
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, %peer, "connection closed with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => tracing::warn!("connections still open after the shutdown grace; dropping them"),
    }
    Ok(())
}

/// The router for one connection, with the peer address every request of it carries.
fn service(
    router: Router,
    peer: SocketAddr,
) -> impl tower::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request.map(Body::new))
    })
}

/// Connections the kernel queues before they are accepted. The default of 128 dropped SYNs when a
/// few hundred clients (a load balancer's pool, the load generator) connected at once, and each
/// dropped SYN costs the client a 1 s retransmission.
const LISTEN_BACKLOG: u32 = 1024;

/// Binds a listening socket with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, so a restart rebinds at once).
pub fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

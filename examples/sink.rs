//! A downstream for the fan-out benchmark (`benches/fanout/run.sh`): answers every request 204
//! as soon as its body is read, over HTTP/1.1 keep-alive, on one thread, so it costs the shared
//! machine as little as possible.
//!
//! `cargo run --release --example sink -- 127.0.0.1:18090`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

async fn answer(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    // Read the body, so the connection stays usable for the next request.
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Empty::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".into());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(answer);
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

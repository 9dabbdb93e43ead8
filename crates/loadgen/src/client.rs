//! One HTTP/1.1 connection per worker, driven by hyper directly: no pool, no URL parsing per
//! request, nothing shared between workers. The generator shares the machine with the service it
//! measures, so every microsecond it spends is one the service does not get; with `reqwest` it
//! cost more per request than the service itself.
//!
//! Plain `http` only: the generator is for loopback and a test network, not for the internet.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use voltage_signature::headers;

/// Where deliveries go: the authority to connect to and the webhook path of the environment.
#[derive(Debug, Clone)]
pub struct Target {
    authority: String,
    host: HeaderValue,
    path: String,
}

impl Target {
    /// `base_url` such as `http://127.0.0.1:8080`; deliveries go to `{base}/webhooks/{environment}`.
    pub fn new(base_url: &str, environment: &str) -> anyhow::Result<Self> {
        let uri: http::Uri = base_url
            .parse()
            .with_context(|| format!("--url {base_url:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            anyhow::bail!("--url must be plain http:// (the load generator is for loopback)");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("--url {base_url:?} names no host"))?
            .to_string();
        Ok(Self {
            host: HeaderValue::from_str(&authority)?,
            path: format!(
                "{}/webhooks/{environment}",
                uri.path().trim_end_matches('/')
            ),
            authority,
        })
    }
}

/// The headers of one delivery besides the body.
pub struct Signed {
    pub webhook_id: HeaderValue,
    pub timestamp: String,
    pub signature: String,
}

/// A worker's connection, opened on first use and again after any failure.
pub struct Connection {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// Pause after a transport error, so that workers facing a stopped server do not spin.
const AFTER_ERROR: Duration = Duration::from_millis(5);

impl Connection {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            sender: None,
        }
    }

    /// Sends one delivery; the status and body, or `None` for a transport error (no response).
    pub async fn post(&mut self, body: Bytes, signed: &Signed) -> Option<(u16, Bytes)> {
        let result = self.try_post(body, signed).await;
        if let Err(e) = &result {
            tracing::debug!(error = format!("{e:#}"), "transport error");
            self.sender = None;
            tokio::time::sleep(AFTER_ERROR).await;
        }
        result.ok()
    }

    async fn try_post(&mut self, body: Bytes, signed: &Signed) -> anyhow::Result<(u16, Bytes)> {
        let request = Request::post(&self.target.path)
            .header(HOST, self.target.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                USER_AGENT,
                HeaderValue::from_static("Voltage-Webhook-Client/1.0"),
            )
            .header(headers::WEBHOOK_ID, signed.webhook_id.clone())
            .header(headers::TIMESTAMP, &signed.timestamp)
            .header(headers::SIGNATURE, &signed.signature)
            .header(headers::EVENT, HeaderValue::from_static("completed"))
            .body(Full::new(body))?;
        let sender = self.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// The open connection, or a new one when there is none or the server closed it.
    async fn ready(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if let Some(sender) = &mut self.sender {
            if sender.ready().await.is_err() {
                self.sender = None;
            }
        }
        if self.sender.is_none() {
            let stream = TcpStream::connect(&self.target.authority).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        self.sender.as_mut().context("no connection")
    }
}

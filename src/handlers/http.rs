//! The `http` handler: POSTs the event as JSON to an internal URL, signed with the Standard Webhooks
//! scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` over
//! `id.timestamp.body`), so internal services verify it with an off-the-shelf library.
//!
//! 2xx is success; 408, 429, 5xx, connection errors and timeouts are retryable (with the response's
//! `Retry-After`); any other status is permanent, 3xx included: redirects are not followed (a
//! signed payload is not re-sent to wherever a redirect points), so a 3xx is a misconfigured URL.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;
use tower::Service;

use super::{HandlerError, HandlerRequest};

/// The Standard Webhooks key: `whsec_` followed by standard Base64 of the key bytes.
pub struct StandardWebhookSigner {
    key: SecretBox<Vec<u8>>,
}

impl std::fmt::Debug for StandardWebhookSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StandardWebhookSigner([REDACTED])")
    }
}

/// Why a secret is not a Standard Webhooks signing key (the secret itself is never in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSigningKey {
    #[error("expected `whsec_` followed by standard Base64")]
    NotBase64,
    #[error("the key must be at least 24 bytes (192 bits) once decoded")]
    TooShort,
}

impl StandardWebhookSigner {
    pub fn from_secret(secret: &SecretString) -> Result<Self, InvalidSigningKey> {
        let encoded = secret.expose_secret();
        let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| InvalidSigningKey::NotBase64)?;
        if key.len() < 24 {
            return Err(InvalidSigningKey::TooShort);
        }
        Ok(Self {
            key: SecretBox::new(Box::new(key)),
        })
    }

    /// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret())
            .unwrap_or_else(|_| unreachable!());
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[derive(Debug, Clone)]
pub struct HttpHandler {
    client: reqwest::Client,
    url: Arc<reqwest::Url>,
    signer: Arc<StandardWebhookSigner>,
}

impl HttpHandler {
    pub fn new(url: reqwest::Url, signer: StandardWebhookSigner) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            // A redirect is a misconfigured URL, not something to follow with a signed payload.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            client,
            url: Arc::new(url),
            signer: Arc::new(signer),
        })
    }
}

impl Service<HandlerRequest> for HttpHandler {
    type Response = ();
    type Error = HandlerError;
    type Future = BoxFuture<'static, Result<(), HandlerError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HandlerRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let body = request.to_json();
            let id = request.event_id.to_string();
            let timestamp = chrono::Utc::now().timestamp();
            let response = this
                .client
                .post((*this.url).clone())
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", this.signer.sign(&id, timestamp, &body))
                .header("x-voltage-webhooks-attempt", request.attempt.to_string())
                .body(body)
                .send()
                .await
                .map_err(|e| HandlerError::retryable(format!("request failed: {e}")))?;
            request.report.set_http_status(response.status().as_u16());
            outcome(response.status(), response.headers())
        })
    }
}

fn outcome(status: StatusCode, headers: &HeaderMap) -> Result<(), HandlerError> {
    if status.is_success() {
        return Ok(());
    }
    let message = format!("downstream answered {status}");
    let retryable = status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error();
    if retryable {
        Err(HandlerError::Retryable {
            message,
            retry_after: crate::retry::retry_after(headers),
        })
    } else {
        Err(HandlerError::permanent(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_the_contract_says() {
        let none = HeaderMap::new();
        assert!(outcome(StatusCode::NO_CONTENT, &none).is_ok());
        for retry in [408, 429, 500, 502, 503] {
            let status = StatusCode::from_u16(retry).expect("status");
            assert!(
                matches!(outcome(status, &none), Err(HandlerError::Retryable { .. })),
                "{retry}"
            );
        }
        for permanent in [301, 400, 401, 404, 410, 422] {
            let status = StatusCode::from_u16(permanent).expect("status");
            assert!(
                matches!(outcome(status, &none), Err(HandlerError::Permanent { .. })),
                "{permanent}"
            );
        }
    }

    #[test]
    fn keys_that_are_not_standard_webhooks_secrets_are_refused() {
        for bad in ["whsec_not base64!", "whsec_c2hvcnQ="] {
            assert!(
                StandardWebhookSigner::from_secret(&SecretString::from(bad)).is_err(),
                "{bad}"
            );
        }
    }
}

//! A small client for the two Voltage Payments API calls the reconciler needs: the payments list
//! (cursor pagination) and one payment. 429 (with `Retry-After`), 5xx and transport errors are
//! retried with full-jitter backoff; other answers are final. The API key goes out in `x-api-key`,
//! marked sensitive, and never into a URL, a log line or an error.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use reqwest::header::{HeaderValue, ACCEPT};
use reqwest::StatusCode;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;
use uuid::Uuid;

use crate::retry::RetryPolicy;

/// Where one environment's payments are read, and with which key.
#[derive(Debug, Clone)]
pub struct Target {
    /// Our name for the environment (`environments.<name>`).
    pub environment: String,
    pub organization_id: Uuid,
    pub environment_id: Uuid,
    /// A read key of this environment only: the reconciler needs nothing more.
    pub api_key: ApiKey,
}

/// An API key that a SIGHUP can replace: every clone sees the current value.
#[derive(Clone)]
pub struct ApiKey(Arc<ArcSwap<SecretString>>);

impl ApiKey {
    pub fn new(key: SecretString) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(key)))
    }

    pub fn current(&self) -> Arc<SecretString> {
        self.0.load_full()
    }

    /// Every clone sends `key` from now on.
    pub fn replace(&self, key: SecretString) {
        self.0.store(Arc::new(key));
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

/// One page of the payments list.
#[derive(Debug)]
pub struct Page {
    pub payments: Vec<Value>,
    /// Set while there are more pages.
    pub next_cursor: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the Voltage API refused the key of environment {environment} ({status}): check its permission and environment")]
    Refused {
        environment: String,
        status: StatusCode,
    },
    #[error("the Voltage API answered {status}")]
    Status { status: StatusCode },
    #[error("the Voltage API was unavailable after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
    #[error("the Voltage API answered something that is not a payments page: {0}")]
    Malformed(String),
}

#[derive(Debug, Clone)]
pub struct VoltageApi {
    http: reqwest::Client,
    base_url: String,
    retry: RetryPolicy,
}

/// Where the API key may be sent: `https://` only, unless plain HTTP is allowed for a local fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    HttpsOnly,
    /// `reconcile.allow_plain_http`: tests and local development against a fake API.
    AllowPlainHttp,
}

impl VoltageApi {
    /// Redirects are never followed: reqwest strips `Authorization` on a cross-host redirect but
    /// not `x-api-key`, so following one could hand the key to another host. A 3xx is a final
    /// answer like any other status.
    pub fn new(
        base_url: &str,
        timeout: Duration,
        retry: RetryPolicy,
        transport: Transport,
    ) -> reqwest::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .user_agent(concat!("voltage-webhooks/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::none())
                .https_only(transport == Transport::HttpsOnly)
                .build()?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            retry,
        })
    }

    fn payments_url(&self, target: &Target) -> String {
        format!(
            "{}/organizations/{}/environments/{}/payments",
            self.base_url, target.organization_id, target.environment_id
        )
    }

    /// One page, newest first, as Voltage recommends for a sweep.
    pub async fn list_payments(
        &self,
        target: &Target,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page, ApiError> {
        let limit = limit.to_string();
        let mut query = vec![
            ("pagination", "cursor"),
            ("limit", limit.as_str()),
            ("sort_key", "created_at"),
            ("sort_order", "DESC"),
        ];
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor));
        }
        let body = self
            .get(target, &self.payments_url(target), &query)
            .await?
            .ok_or(ApiError::Status {
                status: StatusCode::NOT_FOUND,
            })?;
        parse_page(&body)
    }

    /// The payment as the API knows it now; `None` if the API does not know it.
    pub async fn payment(&self, target: &Target, id: &str) -> Result<Option<Value>, ApiError> {
        let url = format!("{}/{}", self.payments_url(target), urlencode(id));
        match self.get(target, &url, &[]).await? {
            None => Ok(None),
            Some(body) => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| ApiError::Malformed(e.to_string())),
        }
    }

    /// GET with retries; `None` on 404.
    async fn get(
        &self,
        target: &Target,
        url: &str,
        query: &[(&str, &str)],
    ) -> Result<Option<Vec<u8>>, ApiError> {
        let mut key =
            HeaderValue::from_str(target.api_key.current().expose_secret()).map_err(|_| {
                ApiError::Refused {
                    environment: target.environment.clone(),
                    status: StatusCode::UNAUTHORIZED,
                }
            })?;
        key.set_sensitive(true);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .http
                .get(url)
                .query(query)
                .header("x-api-key", key.clone())
                .header(ACCEPT, "application/json")
                .send()
                .await;
            let (last, wait) = match sent {
                Ok(response) => match answer(target, response).await {
                    Answer::Final(result) => return result,
                    Answer::Busy { status, wanted } => (status.to_string(), wanted),
                },
                Err(e) => (e.without_url().to_string(), None),
            };
            if attempt >= self.retry.max_attempts {
                return Err(ApiError::GaveUp {
                    attempts: attempt,
                    last,
                });
            }
            let wait = wait
                .map(|w| w.min(self.retry.cap))
                .unwrap_or_else(|| self.retry.jittered(attempt));
            tracing::debug!(environment = %target.environment, attempt, %last, wait_ms = wait.as_millis() as u64, "Voltage API busy; backing off");
            tokio::time::sleep(wait).await;
        }
    }
}

/// What one response means for [`VoltageApi::get`].
enum Answer {
    /// The body, `None` for 404, or a refusal that retrying cannot change.
    Final(Result<Option<Vec<u8>>, ApiError>),
    /// 429 or 5xx: retry, after `Retry-After` when given.
    Busy {
        status: StatusCode,
        wanted: Option<Duration>,
    },
}

async fn answer(target: &Target, response: reqwest::Response) -> Answer {
    let status = response.status();
    match status {
        s if s.is_success() => Answer::Final(match response.bytes().await {
            Ok(body) => Ok(Some(body.to_vec())),
            Err(e) => Err(ApiError::Malformed(e.without_url().to_string())),
        }),
        StatusCode::NOT_FOUND => Answer::Final(Ok(None)),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Answer::Final(Err(ApiError::Refused {
            environment: target.environment.clone(),
            status,
        })),
        s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => Answer::Busy {
            status,
            wanted: crate::retry::retry_after(response.headers()),
        },
        status => Answer::Final(Err(ApiError::Status { status })),
    }
}

/// The list's page: payments under `items` (or `payments` / `data`), `has_more` and `next_cursor`.
fn parse_page(body: &[u8]) -> Result<Page, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::Malformed(e.to_string()))?;
    let payments = ["items", "payments", "data"]
        .iter()
        .find_map(|key| value.get(*key).and_then(Value::as_array))
        .ok_or_else(|| ApiError::Malformed("no list of payments".to_owned()))?
        .clone();
    let has_more = value
        .get("has_more")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let next_cursor = value
        .get("next_cursor")
        .and_then(Value::as_str)
        .filter(|cursor| has_more && !cursor.is_empty())
        .map(str::to_owned);
    Ok(Page {
        payments,
        next_cursor,
    })
}

/// Payment ids are UUIDs chosen by clients; anything else is percent-encoded, not trusted.
fn urlencode(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_read_with_its_cursor_only_while_there_is_more() {
        let page = parse_page(br#"{"items":[{"id":"a"}],"has_more":true,"next_cursor":"c2"}"#)
            .expect("page");
        assert_eq!(page.payments.len(), 1);
        assert_eq!(page.next_cursor.as_deref(), Some("c2"));
        let last =
            parse_page(br#"{"items":[],"has_more":false,"next_cursor":"c3"}"#).expect("page");
        assert_eq!(last.next_cursor, None);
        assert!(parse_page(br#"{"has_more":false}"#).is_err());
    }

    #[test]
    fn ids_cannot_escape_the_path() {
        assert_eq!(urlencode("../x?y"), "%2E%2E%2Fx%3Fy");
        assert_eq!(urlencode("5c0e-AB_9"), "5c0e-AB_9");
    }
}

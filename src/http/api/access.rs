//! Who may call the query API: the `x-api-key` header, checked in this order: a key that exists,
//! is not revoked and not expired (401); belongs to the path's environment (403); has the
//! permission (403); and, when it has an allow-list, is used from an allowed address (403).

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use chrono::Utc;

use crate::auth::{hash_key, parse_cidrs, within, Permission};
use crate::error_code::ErrorCode;
use crate::http::{ApiError, AppState};
use crate::store::ApiKeyRecord;

/// A caller allowed into one environment.
#[derive(Debug, Clone)]
pub struct Access {
    pub environment: String,
    /// The key's id (stable across requests; never the key): what per-key limits count by.
    pub key_id: uuid::Uuid,
}

/// Any valid key of the environment (every GET).
#[derive(Debug, Clone)]
pub struct Reader(pub Access);

/// A write key of the environment (replay, retry).
#[derive(Debug, Clone)]
pub struct Writer(pub Access);

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authorize(parts, state, Permission::Read).await.map(Self)
    }
}

impl FromRequestParts<AppState> for Writer {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authorize(parts, state, Permission::Write).await.map(Self)
    }
}

async fn authorize(
    parts: &mut Parts,
    state: &AppState,
    needed: Permission,
) -> Result<Access, ApiError> {
    let record = usable_key(parts, state).await?;
    let environment = path_environment(parts, state).await?;
    if record.environment != environment {
        return Err(ApiError::new(
            ErrorCode::KeyForOtherEnvironment,
            format!("this key belongs to environment {:?}", record.environment),
        ));
    }
    let permission = Permission::parse(&record.permission).unwrap_or(Permission::Read);
    if !permission.allows(needed) {
        return Err(ApiError::new(
            ErrorCode::InsufficientPermission,
            format!("this needs a {} key", needed.as_str()),
        ));
    }
    check_allow_list(parts, state, &record.allow_ips).await?;
    if let Err(e) = state.store.touch_api_key(record.id).await {
        tracing::debug!(error = %e, "recording the key's last use failed");
    }
    // Which key did what: the request span (and so every line logged under it) names it.
    tracing::Span::current().record("api_key_id", tracing::field::display(record.id));
    Ok(Access {
        environment,
        key_id: record.id,
    })
}

/// The `x-api-key` header's key, if it is known, unrevoked and unexpired.
async fn usable_key(parts: &Parts, state: &AppState) -> Result<ApiKeyRecord, ApiError> {
    let key = parts
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::MissingApiKey,
                "send an API key in the x-api-key header",
            )
        })?;
    state
        .store
        .api_key_by_hash(&hash_key(key))
        .await
        .map_err(|e| ApiError::unavailable_because(&e))?
        .filter(|k| k.is_usable(Utc::now()))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidApiKey,
                "the API key is unknown, revoked or expired",
            )
        })
}

/// A key with an allow-list is refused from outside it.
async fn check_allow_list(
    parts: &mut Parts,
    state: &AppState,
    allow_ips: &[String],
) -> Result<(), ApiError> {
    if allow_ips.is_empty() {
        return Ok(());
    }
    let allowed = parse_cidrs(allow_ips).unwrap_or_default();
    let client = crate::http::caller_address(parts, state).await;
    if within(&allowed, client) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::IpNotAllowed,
        "this key may not be used from this address",
    ))
}

async fn path_environment(parts: &mut Parts, state: &AppState) -> Result<String, ApiError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::new(ErrorCode::NotFound, "no such route"))?;
    params
        .iter()
        .find(|(name, _)| *name == "environment")
        .map(|(_, value)| value.to_owned())
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such route"))
}

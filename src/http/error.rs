//! The one HTTP error type: it decides the status code and the stable JSON body
//! `{"error": {"code": "...", "detail": "..."}}`. Internal text (SQL, driver errors) never reaches
//! a client; it is logged where the error is made.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::event::PayloadError;
use crate::verify::VerifyError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    /// The write did not commit. Voltage retries non-2xx deliveries, so nothing is lost.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the event could not be stored; retry later",
        )
    }
}

impl ApiError {
    /// A read or write that failed in the database: logged with its cause, answered 503.
    pub fn unavailable_because(error: &crate::store::StoreError) -> Self {
        tracing::error!(error = %error, cause = ?std::error::Error::source(error), "database call failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the database is unavailable; retry later",
        )
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }
}

impl From<VerifyError> for ApiError {
    fn from(e: VerifyError) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string())
    }
}

impl From<PayloadError> for ApiError {
    fn from(e: PayloadError) -> Self {
        let status = match e {
            PayloadError::Malformed(_) | PayloadError::EventMismatch { .. } => {
                StatusCode::BAD_REQUEST
            }
            PayloadError::ScopeMismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

/// `{"error": {"code": "...", "detail": "..."}}`, the body of every error answer; the OpenAPI
/// document's schema of it is derived from this type.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: branch on this.
    pub code: &'static str,
    /// For people; may change.
    pub detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                detail: self.detail,
            },
        });
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

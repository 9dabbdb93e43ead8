//! The one HTTP error type: it decides the status code and the stable JSON body
//! `{"error": {"code": "...", "detail": "..."}}`. Internal text (SQL, driver errors) never reaches
//! a client; it is logged where the error is made.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error_code::ErrorCode;

/// The refusal every route answers with; see [`crate::error_code`].
pub use crate::error_code::Refusal as ApiError;

fn status(refusal: &ApiError) -> StatusCode {
    StatusCode::from_u16(refusal.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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
    pub code: ErrorCode,
    /// For people; may change.
    pub detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status(&self);
        let body = Json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                detail: self.detail,
            },
        });
        let mut response = (status, body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

//! The one place where agent failures become HTTP responses: every error
//! answer carries the API's JSON envelope (`burstflare_api::ErrorEnvelope`).
//! Messages are public; internal detail is logged where the error is handled.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use burstflare_api::{ErrorBody, ErrorCode, ErrorEnvelope};

/// An error answer: status, machine-readable code and a public message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            message,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: self.code,
                message: self.message,
                details: serde_json::Value::Null,
                request_id: None,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

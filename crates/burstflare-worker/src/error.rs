//! The service-layer error type and its single mapping to HTTP.
//!
//! An [`ApiError`] carries a public code and message (shown to the caller in
//! the JSON envelope) and optional internal context (logged once, where the
//! response is built, and never sent to the caller).

use burstflare_api::{ErrorBody, ErrorCode, ErrorEnvelope};
use burstflare_domain::account::FieldError;
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: ErrorCode,
    pub message: String,
    pub details: Value,
    /// Context for the logs only.
    pub internal: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Value::Null,
            internal: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// A 500 whose `context` goes to the log, not to the caller.
    pub fn internal(context: impl Into<String>) -> Self {
        Self {
            internal: Some(context.into()),
            ..Self::new(
                500,
                ErrorCode::Internal,
                "internal error; quote the request id when reporting it",
            )
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, ErrorCode::Unavailable, message)
    }

    pub fn not_found(code: ErrorCode, what: &str, id: &str) -> Self {
        Self::new(404, code, format!("{what} {id:?} was not found"))
            .with_details(json!({ "id": id }))
    }

    /// The envelope sent to the caller.
    pub fn envelope(&self, request_id: &str) -> ErrorEnvelope {
        ErrorEnvelope {
            error: ErrorBody {
                code: self.code,
                message: self.message.clone(),
                details: self.details.clone(),
                request_id: Some(request_id.to_owned()),
            },
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::new(400, ErrorCode::InvalidField, e.to_string())
            .with_details(json!({ "field": e.field, "reason": e.message }))
    }
}

impl From<worker::Error> for ApiError {
    fn from(e: worker::Error) -> Self {
        ApiError::internal(format!("runtime: {e}"))
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        ApiError::internal(format!("json: {e}"))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

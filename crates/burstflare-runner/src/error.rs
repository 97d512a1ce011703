//! The runner's one error type and its mapping to HTTP.
//!
//! Every failing response is a [`burstflare_api::ErrorEnvelope`]; this module is
//! the only place that chooses status codes and codes. Messages are written for
//! the caller (the Worker shows them to the session's owner) and quote the
//! offending value; internal context is logged once, here, when the error
//! becomes a response.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use burstflare_api::{ErrorBody, ErrorCode, ErrorEnvelope};
use serde_json::{Value, json};

/// Everything that can go wrong while serving a runner request.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("this request needs `Authorization: Bearer <runner secret>`")]
    Unauthenticated,
    #[error("the runner secret in `Authorization` is wrong")]
    InvalidToken,
    #[error("the request body is not valid JSON for this route: {0}")]
    MalformedJson(String),
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    #[error("{0}")]
    InvalidQuery(String),
    #[error("the request body must be `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("the request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("no route matches {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("no container named {0:?} is managed by this runner")]
    ContainerNotFound(String),
    #[error(
        "image {0:?} does not exist on the Docker host (the runner never pulls images; build or load it first)"
    )]
    ImageNotFound(String),
    /// A container with the requested name exists but carries another runner's labels.
    #[error("container {name:?} exists but is not managed by this runner ({owner})")]
    NameTaken { name: String, owner: String },
    #[error("container {name} does not publish port {port} (published: {published})")]
    PortNotPublished {
        name: String,
        port: u16,
        published: String,
    },
    #[error("container {name} is {status}, not running; start it before sending it traffic")]
    NotRunning { name: String, status: String },
    #[error("Docker Engine is not reachable at {host}: {cause}")]
    DockerUnreachable { host: String, cause: String },
    /// Docker answered with an error the runner has no better mapping for.
    #[error("Docker Engine could not {action}: {message}")]
    Docker { action: String, message: String },
    /// The proxied service inside the container failed (connect refused, reset, …).
    #[error("{0}")]
    Upstream(String),
    #[error("the runner failed unexpectedly; see its log")]
    Internal(String),
}

pub type RunnerResult<T> = Result<T, RunnerError>;

impl RunnerError {
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status and the machine-readable code of this error.
    pub fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated),
            Self::InvalidToken => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidToken),
            Self::MalformedJson(_) => (StatusCode::BAD_REQUEST, ErrorCode::MalformedJson),
            Self::InvalidField { .. } => (StatusCode::BAD_REQUEST, ErrorCode::InvalidField),
            Self::InvalidQuery(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidQuery),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
            ),
            Self::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge)
            }
            Self::RouteNotFound { .. } => (StatusCode::NOT_FOUND, ErrorCode::RouteNotFound),
            Self::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed)
            }
            Self::ContainerNotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::ContainerNotFound),
            Self::ImageNotFound(_) => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::ImageNotFound),
            Self::NameTaken { .. } => (StatusCode::CONFLICT, ErrorCode::RuntimeUnavailable),
            Self::PortNotPublished { .. } => (StatusCode::NOT_FOUND, ErrorCode::RouteNotFound),
            Self::NotRunning { .. } => (StatusCode::CONFLICT, ErrorCode::RuntimeUnavailable),
            Self::DockerUnreachable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::RuntimeUnavailable,
            ),
            Self::Docker { .. } | Self::Upstream(_) => {
                (StatusCode::BAD_GATEWAY, ErrorCode::RuntimeUnavailable)
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        }
    }

    fn details(&self) -> Value {
        match self {
            Self::InvalidField { field, .. } => json!({ "field": field }),
            Self::PayloadTooLarge { limit } => json!({ "limit": limit }),
            Self::ContainerNotFound(name) => json!({ "name": name }),
            Self::ImageNotFound(image) => json!({ "image": image }),
            Self::PortNotPublished { name, port, .. } => json!({ "name": name, "port": port }),
            Self::NotRunning { name, status } => json!({ "name": name, "status": status }),
            _ => Value::Null,
        }
    }

    /// The envelope a client receives for this error.
    pub fn envelope(&self) -> ErrorEnvelope {
        let (_, code) = self.status_and_code();
        ErrorEnvelope {
            error: ErrorBody {
                code,
                message: self.to_string(),
                details: self.details(),
                request_id: None,
            },
        }
    }
}

impl IntoResponse for RunnerError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            Self::Internal(context) => tracing::error!(%context, "internal error"),
            _ if status.is_server_error() => tracing::warn!(?code, "{self}"),
            _ => tracing::debug!(?code, "{self}"),
        }
        (status, Json(self.envelope())).into_response()
    }
}

/// Renders an error with its `source()` chain: `outer: inner: root cause`.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_names_the_field() {
        let env = RunnerError::invalid_field("limits.pids", "must be at least 1").envelope();
        let json = serde_json::to_value(&env).unwrap();
        assert_eq!(json["error"]["code"], "invalid_field");
        assert_eq!(json["error"]["message"], "limits.pids: must be at least 1");
        assert_eq!(json["error"]["details"]["field"], "limits.pids");
    }

    #[test]
    fn unreachable_docker_is_503() {
        let err = RunnerError::DockerUnreachable {
            host: "unix:///nonexistent.sock".into(),
            cause: "Socket not found: /nonexistent.sock".into(),
        };
        assert_eq!(
            err.status_and_code(),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::RuntimeUnavailable
            )
        );
        assert_eq!(
            err.to_string(),
            "Docker Engine is not reachable at unix:///nonexistent.sock: Socket not found: /nonexistent.sock"
        );
    }
}

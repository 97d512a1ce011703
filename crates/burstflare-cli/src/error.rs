//! CLI errors: an `error:` line, a `Caused by:` chain and `hint:` lines, and
//! an exit code that tells user errors from unexpected ones.
//!
//! Exit codes: 0 success, 1 user error (bad input, rejected request, not
//! signed in, server unreachable), 2 usage error (from clap), 3 the platform
//! is unhealthy (`burstflare status`), 70 unexpected (server fault, bug).

use std::fmt;

use burstflare_api::ErrorCode;

use crate::client::ClientError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    User,
    Unhealthy,
    Unexpected,
}

impl ExitKind {
    pub fn code(self) -> u8 {
        match self {
            ExitKind::User => 1,
            ExitKind::Unhealthy => 3,
            ExitKind::Unexpected => 70,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CliError {
    pub kind: ExitKind,
    pub message: String,
    pub causes: Vec<String>,
    pub hints: Vec<String>,
}

impl CliError {
    pub fn user(message: impl Into<String>) -> Self {
        Self {
            kind: ExitKind::User,
            message: message.into(),
            causes: vec![],
            hints: vec![],
        }
    }

    pub fn unexpected(message: impl Into<String>) -> Self {
        Self {
            kind: ExitKind::Unexpected,
            ..Self::user(message)
        }
    }

    pub fn unhealthy(message: impl Into<String>) -> Self {
        Self {
            kind: ExitKind::Unhealthy,
            ..Self::user(message)
        }
    }

    pub fn cause(mut self, cause: impl Into<String>) -> Self {
        self.causes.push(cause.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// Wraps a failed API call under `context` ("could not create the token").
    pub fn from_client(context: impl Into<String>, err: ClientError) -> Self {
        let mut out = match &err {
            ClientError::Api { body, .. } if body.code == ErrorCode::RuntimeUnavailable => {
                Self::user(context).hint(
                    "the session runtime is unavailable; locally, check that Docker and burstflare-runner are running (`cargo xtask dev` starts both)",
                )
            }
            ClientError::Api { status, .. } if *status >= 500 => Self::unexpected(context),
            ClientError::Api { body, .. } => {
                let base = Self::user(context);
                match body.code {
                    ErrorCode::Unauthenticated
                    | ErrorCode::InvalidToken
                    | ErrorCode::RefreshTokenReused => base.hint(
                        "sign in again: `burstflare login` (or set BURSTFLARE_TOKEN to a valid token)",
                    ),
                    ErrorCode::RateLimited => base.hint(format!(
                        "wait {} s and try again",
                        body.details
                            .get("retry_after_secs")
                            .and_then(|s| s.as_u64())
                            .unwrap_or(60)
                    )),
                    ErrorCode::Forbidden => {
                        base.hint("ask an admin or owner of the workspace (`burstflare workspace members`)")
                    }
                    ErrorCode::LastOwner => base.hint(
                        "make another member owner first (`burstflare workspace role <user> owner`)",
                    ),
                    ErrorCode::EmailTaken => base.hint("that email is registered already; use its token"),
                    ErrorCode::SessionNameTaken => {
                        base.hint("pick another name, or delete the other session first")
                    }
                    ErrorCode::InvalidSessionState => {
                        base.hint("see the session's state with `burstflare session get <name>`")
                    }
                    _ => base,
                }
            }
            ClientError::Transport { .. } => Self::user(context).hint(
                "check --api-url (or BURSTFLARE_API_URL) and that the server is running; locally, start it with `cargo xtask dev`",
            ),
            ClientError::Decode { .. } => Self::unexpected(context),
            ClientError::BadUrl { .. } => Self::user(context).hint("use a URL like https://app.burstflare.dev"),
        };
        out.causes.push(err.to_string());
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            out.causes.push(s.to_string());
            source = s.source();
        }
        if let Some(request_id) = err.api_error().and_then(|b| b.request_id.clone())
            && out.kind == ExitKind::Unexpected
        {
            out.hints
                .push(format!("quote request id {request_id} when reporting this"));
        }
        out
    }

    /// The rendered error for stderr.
    pub fn render(&self) -> String {
        let mut s = format!("error: {}\n", self.message);
        for cause in &self.causes {
            s.push_str(&format!("  Caused by: {cause}\n"));
        }
        for hint in &self.hints {
            s.push_str(&format!("hint: {hint}\n"));
        }
        s
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

#[cfg(test)]
mod tests {
    use super::*;
    use burstflare_api::ErrorBody;

    #[test]
    fn renders_chain_and_hints() {
        let err = CliError::from_client(
            "could not register ada@example.com",
            ClientError::Api {
                status: 409,
                body: ErrorBody {
                    code: ErrorCode::EmailTaken,
                    message: "an account for ada@example.com already exists".into(),
                    details: serde_json::Value::Null,
                    request_id: Some("req_1".into()),
                },
            },
        );
        assert_eq!(err.kind.code(), 1);
        assert_eq!(
            err.render(),
            "error: could not register ada@example.com\n  Caused by: an account for ada@example.com already exists (email_taken, HTTP 409)\nhint: that email is registered already; use its token\n"
        );
    }

    #[test]
    fn server_faults_are_unexpected() {
        let err = CliError::from_client(
            "x",
            ClientError::Api {
                status: 500,
                body: ErrorBody {
                    code: ErrorCode::Internal,
                    message: "internal error".into(),
                    details: serde_json::Value::Null,
                    request_id: Some("req_9".into()),
                },
            },
        );
        assert_eq!(err.kind.code(), 70);
        assert!(err.render().contains("hint: quote request id req_9"));
    }
}

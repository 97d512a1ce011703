//! Request authentication: every request carries the per-session secret in
//! [`AGENT_TOKEN_HEADER`]. The comparison runs in constant time over SHA-256
//! digests, so neither the content nor the length of the secret leaks through
//! timing.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use burstflare_api::ErrorCode;
use burstflare_api::runtime::AGENT_TOKEN_HEADER;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The expected secret, kept only as its digest.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl Secret {
    pub fn new(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Constant-time check of a presented token.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest
            .iter()
            .zip(self.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// Middleware: rejects requests without the right token with 401 and the
/// error envelope (`unauthenticated` when absent, `invalid_token` when wrong).
pub async fn require_token(State(secret): State<Secret>, req: Request, next: Next) -> Response {
    match req.headers().get(AGENT_TOKEN_HEADER) {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            format!("the {AGENT_TOKEN_HEADER} header is required"),
        )
        .into_response(),
        Some(v) if !secret.matches(v.as_bytes()) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidToken,
            format!("the {AGENT_TOKEN_HEADER} header does not match this agent's secret"),
        )
        .into_response(),
        Some(_) => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_secret() {
        let s = Secret::new("abc123");
        assert!(s.matches(b"abc123"));
        assert!(!s.matches(b"abc124"));
        assert!(!s.matches(b"abc12"));
        assert!(!s.matches(b""));
    }
}

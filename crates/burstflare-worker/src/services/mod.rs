//! Services: domain decisions plus orchestration of storage and bindings.
//! Each public function is what one route (or consumer) calls.

pub mod accounts;
pub mod audit;
pub mod builds;
pub mod device;
pub mod diagnostics;
pub mod health;
pub mod paging;
pub mod passkeys;
pub mod preview;
pub mod ratelimit;
pub mod reconcile;
pub mod recovery;
pub mod releases;
pub mod sessions;
pub mod signin;
pub mod snapshots;
pub mod ssh_keys;
pub mod templates;
pub mod tokens;
pub mod turnstile;
pub mod uploads;
pub mod workspaces;

use burstflare_api::ErrorCode;
use burstflare_domain::ids::InvalidId;
use burstflare_domain::{TokenKind, TokenSecret};
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::platform::random;

/// A fresh typed id from secure randomness.
pub fn new_id<T>(make: fn([u8; 16]) -> T) -> ApiResult<T> {
    Ok(make(random::<16>()?))
}

/// A fresh token secret of `kind`.
pub fn new_secret(kind: TokenKind) -> ApiResult<TokenSecret> {
    Ok(TokenSecret::generate(kind, random::<32>()?))
}

/// Parses a typed id from a path parameter; a malformed one is a 400 naming `field`.
pub fn parse_id<T: std::str::FromStr<Err = InvalidId>>(raw: &str, field: &str) -> ApiResult<T> {
    raw.parse().map_err(|e: InvalidId| {
        ApiError::new(400, ErrorCode::InvalidField, e.to_string())
            .with_details(json!({ "field": field }))
    })
}

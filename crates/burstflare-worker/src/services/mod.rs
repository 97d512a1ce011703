//! Services: domain decisions plus orchestration of storage and bindings.
//! Each public function is what one route (or consumer) calls.

pub mod accounts;
pub mod diagnostics;
pub mod health;
pub mod reconcile;
pub mod tokens;

use burstflare_domain::{TokenKind, TokenSecret};

use crate::error::ApiResult;
use crate::platform::random;

/// A fresh typed id from secure randomness.
pub fn new_id<T>(make: fn([u8; 16]) -> T) -> ApiResult<T> {
    Ok(make(random::<16>()?))
}

/// A fresh token secret of `kind`.
pub fn new_secret(kind: TokenKind) -> ApiResult<TokenSecret> {
    Ok(TokenSecret::generate(kind, random::<32>()?))
}

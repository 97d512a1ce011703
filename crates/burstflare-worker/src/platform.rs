//! Thin access to the runtime: the clock, randomness, binding names and the
//! deployment's variables. Everything else receives these values as arguments.

use burstflare_domain::UnixMillis;
use worker::Env;

use crate::error::ApiError;

/// Binding names, as in `deploy/wrangler.template.toml`.
pub const DB: &str = "DB";
pub const BUCKET: &str = "BUCKET";
pub const SESSIONS: &str = "SESSIONS";
pub const BUILD_QUEUE: &str = "BUILD_QUEUE";
pub const RECONCILE_QUEUE: &str = "RECONCILE_QUEUE";
pub const BUILD_WORKFLOW: &str = "BUILD_WORKFLOW";
pub const ASSETS: &str = "ASSETS";

/// The current time in Unix milliseconds.
pub fn now() -> UnixMillis {
    i64::try_from(worker::Date::now().as_millis()).unwrap_or(i64::MAX)
}

/// Cryptographically secure random bytes.
pub fn random<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| ApiError::internal(format!("getrandom: {e}")))?;
    Ok(buf)
}

/// A plain-text variable from `[vars]`, or `default` when unset.
pub fn var(env: &Env, name: &str, default: &str) -> String {
    env.var(name)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| default.to_owned())
}

/// The deployment environment name (`dev`, `staging`, `production`).
pub fn environment(env: &Env) -> String {
    var(env, "BURSTFLARE_ENV", "dev")
}

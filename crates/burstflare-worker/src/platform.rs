//! Thin access to the runtime: the clock, randomness, binding names and the
//! deployment's variables. Everything else receives these values as arguments.

use burstflare_domain::UnixMillis;
use worker::Env;

use crate::error::ApiError;

/// Binding names, as in `deploy/wrangler.template.toml`.
pub const DB: &str = "DB";
pub const BUCKET: &str = "BUCKET";
pub const SESSIONS: &str = "SESSIONS";
pub const RATE_LIMITER: &str = "RATE_LIMITER";
pub const BUILDERS: &str = "BUILDERS";
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

/// A duration variable in seconds (`ACCESS_TOKEN_TTL_SECONDS`), as milliseconds;
/// unset or malformed means `default_secs`.
pub fn secs_var(env: &Env, name: &str, default_secs: i64) -> i64 {
    env.var(name)
        .ok()
        .and_then(|v| v.to_string().trim().parse::<i64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(default_secs)
        * 1000
}

/// The origins the web app is served from (`WEBAUTHN_ORIGINS`, comma-separated):
/// passkey ceremonies must come from one, and cookie-authenticated requests
/// that name an `Origin` must name one.
pub fn web_origins(env: &Env) -> Vec<String> {
    var(env, "WEBAUTHN_ORIGINS", "http://localhost:8787")
        .split(',')
        .map(|o| o.trim().trim_end_matches('/').to_owned())
        .filter(|o| !o.is_empty())
        .collect()
}

/// The deployment environment name (`dev`, `staging`, `production`).
pub fn environment(env: &Env) -> String {
    var(env, "BURSTFLARE_ENV", "dev")
}

//! Rate limits on the unauthenticated and credential-bearing auth endpoints:
//! registration, passkey ceremonies, recovery-code sign-in, device codes and
//! their polling, and token refresh. Over the limit answers 429
//! `rate_limited` with `Retry-After`.
//!
//! The limits below are production values; `RATE_LIMIT_MULTIPLIER` scales
//! every burst and refill rate (local development and the shared test stack
//! raise it; the rate-limit tests run at 1).

use burstflare_api::ErrorCode;
use burstflare_domain::ratelimit::Limit;
use serde_json::json;

use crate::durable::rate_limiter::take_token;
use crate::error::{ApiError, ApiResult};
use crate::routes::Ctx;

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Registrations per client IP.
    Register,
    /// Passkey sign-in ceremonies (options and assertions) per client IP.
    Login,
    /// Recovery-code sign-ins per client IP.
    RecoveryIp,
    /// Recovery-code sign-ins per account email.
    RecoveryEmail,
    /// Device codes issued per client IP.
    DeviceCode,
    /// Polls per device code (on top of the RFC 8628 interval).
    DevicePoll,
    /// Token refreshes per client IP.
    Refresh,
}

impl Bucket {
    fn name(self) -> &'static str {
        match self {
            Bucket::Register => "register",
            Bucket::Login => "login",
            Bucket::RecoveryIp => "recovery-ip",
            Bucket::RecoveryEmail => "recovery-email",
            Bucket::DeviceCode => "device-code",
            Bucket::DevicePoll => "device-poll",
            Bucket::Refresh => "refresh",
        }
    }

    /// (burst, refill per hour) in production.
    fn base(self) -> (u32, u32) {
        match self {
            Bucket::Register => (10, 20),
            Bucket::Login => (30, 600),
            Bucket::RecoveryIp => (10, 30),
            Bucket::RecoveryEmail => (5, 10),
            Bucket::DeviceCode => (10, 120),
            Bucket::DevicePoll => (30, 1_200),
            Bucket::Refresh => (60, 1_200),
        }
    }
}

fn multiplier(ctx: &Ctx) -> f64 {
    ctx.env
        .var("RATE_LIMIT_MULTIPLIER")
        .ok()
        .and_then(|v| v.to_string().trim().parse::<f64>().ok())
        .filter(|m| m.is_finite() && *m > 0.0)
        .unwrap_or(1.0)
}

/// Takes one request from `bucket` for `key`, or answers 429.
pub async fn check(ctx: &Ctx, bucket: Bucket, key: &str) -> ApiResult<()> {
    let (burst, refill) = bucket.base();
    let m = multiplier(ctx);
    let limit = Limit {
        capacity: ((f64::from(burst) * m).round() as u32).max(1),
        refill_per_hour: ((f64::from(refill) * m).round() as u32).max(1),
    };
    let taken = take_token(&ctx.env, &format!("{}:{key}", bucket.name()), limit).await?;
    if taken.allowed {
        return Ok(());
    }
    Err(ApiError::new(
        429,
        ErrorCode::RateLimited,
        format!(
            "too many requests; try again in {} s",
            taken.retry_after_secs
        ),
    )
    .with_details(json!({
        "limit": bucket.name(),
        "retry_after_secs": taken.retry_after_secs,
    })))
}

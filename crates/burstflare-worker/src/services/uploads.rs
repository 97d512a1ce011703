//! Signed upload grants (`burstflare_domain::grant`): a short-lived URL that
//! lets its holder `PUT` one object of at most `max_bytes` for one target,
//! without a credential (template bundles, snapshot uploads). The key is
//! `UPLOAD_GRANT_SECRET` (a secret in deployments, a variable locally).

use burstflare_api::templates::UploadGrant;
use burstflare_api::{ErrorCode, timestamp};
use burstflare_domain::grant::{self, Grant};
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::platform::var;
use crate::routes::Ctx;

fn key(ctx: &Ctx) -> ApiResult<Vec<u8>> {
    let key = ctx
        .env
        .secret("UPLOAD_GRANT_SECRET")
        .map(|s| s.to_string())
        .or_else(|_| ctx.env.var("UPLOAD_GRANT_SECRET").map(|v| v.to_string()))
        .map_err(|_| {
            ApiError::unavailable("uploads are not configured: UPLOAD_GRANT_SECRET is not set")
        })?;
    if key.len() < 32 {
        return Err(ApiError::unavailable(
            "uploads are not configured: UPLOAD_GRANT_SECRET must be at least 32 characters",
        ));
    }
    Ok(key.into_bytes())
}

/// A grant for `purpose` on `target`, valid `ttl_secs`, uploaded to
/// `/api/v1/uploads/{path}`.
pub fn issue(
    ctx: &Ctx,
    purpose: &str,
    target: &str,
    max_bytes: u64,
    ttl_secs: i64,
    path: &str,
) -> ApiResult<UploadGrant> {
    let expires_at = ctx.now + ttl_secs * 1000;
    let token = grant::sign(
        &Grant {
            purpose: purpose.into(),
            target: target.into(),
            max_bytes,
            expires_at,
        },
        &key(ctx)?,
    );
    let base = var(&ctx.env, "PUBLIC_URL", "http://localhost:8787");
    Ok(UploadGrant {
        upload_url: format!(
            "{}{}/uploads/{path}?grant={token}",
            base.trim_end_matches('/'),
            burstflare_api::API_PREFIX
        ),
        max_bytes,
        expires_at: timestamp(expires_at),
    })
}

pub fn invalid(message: &str) -> ApiError {
    ApiError::new(403, ErrorCode::GrantInvalid, message)
}

/// The grant in `raw` (the `?grant=` value), checked: signature, expiry,
/// purpose (403 `grant_invalid` otherwise).
pub fn verify(ctx: &Ctx, raw: Option<&str>, purpose: &str, what: &str) -> ApiResult<Grant> {
    let raw = raw.ok_or_else(|| invalid("the upload grant is missing (`?grant=`)"))?;
    let g = grant::verify(raw, &key(ctx)?, ctx.now).map_err(|e| invalid(&e.to_string()))?;
    if g.purpose != purpose {
        return Err(invalid(&format!("this grant is not for {what}")));
    }
    Ok(g)
}

/// 413 for an upload over `max` bytes.
pub fn too_large(what: &str, max: u64) -> ApiError {
    ApiError::new(
        413,
        ErrorCode::PayloadTooLarge,
        format!("the {what} exceeds {max} bytes"),
    )
    .with_details(json!({ "limit_bytes": max }))
}

//! Recovery codes: ten one-time codes, hashed at rest and shown once;
//! regenerating replaces the whole set. A code signs its user in (and is
//! spent) when passkeys are lost.

use burstflare_api::identity::{RecoveryCodes, RecoveryLoginRequest, RecoveryStatus};
use burstflare_api::{ErrorCode, timestamp};
use burstflare_domain::Email;
use burstflare_domain::recovery::{self, CODES_PER_SET, RANDOM_BYTES_PER_CODE};

use super::ratelimit::{self, Bucket};
use super::signin::{self, Issued};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::platform::random;
use crate::routes::Ctx;
use crate::store::{d1, recovery as store, users};

/// `POST /auth/recovery-codes`: a new set; the old one stops working.
pub async fn generate(ctx: &Ctx, caller: &Caller) -> ApiResult<RecoveryCodes> {
    ctx.note_target("user", &caller.user.id);
    let mut seeds = [[0u8; RANDOM_BYTES_PER_CODE]; CODES_PER_SET];
    for s in &mut seeds {
        *s = random::<RANDOM_BYTES_PER_CODE>()?;
    }
    let codes = recovery::generate_set(seeds);
    let hashes = codes
        .iter()
        .map(|c| {
            recovery::hash(c).ok_or_else(|| ApiError::internal("generated code does not parse"))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let stmts = store::replace_set(&ctx.env, &caller.user.id, &hashes, ctx.now)?;
    d1::db(&ctx.env)?
        .batch(stmts)
        .await
        .map_err(|e| d1::failed("recovery codes batch", e))?;
    Ok(RecoveryCodes {
        codes,
        generated_at: timestamp(ctx.now),
    })
}

pub async fn status(ctx: &Ctx, caller: &Caller) -> ApiResult<RecoveryStatus> {
    let s = store::status(&ctx.env, &caller.user.id).await?;
    Ok(RecoveryStatus {
        remaining: u32::try_from(s.remaining).unwrap_or(0),
        total: u32::try_from(s.total).unwrap_or(0),
        generated_at: s.generated_at.map(timestamp),
    })
}

/// Whether the user has an unused recovery code.
pub async fn has_remaining(ctx: &Ctx, user_id: &str) -> ApiResult<bool> {
    Ok(store::status(&ctx.env, user_id).await?.remaining > 0)
}

/// `POST /auth/login/recovery`: signs in with email + one unused code.
/// Unknown emails and wrong or used codes get the same answer.
pub async fn login(ctx: &Ctx, req: RecoveryLoginRequest) -> ApiResult<Issued> {
    ratelimit::check(ctx, Bucket::RecoveryIp, ctx.ip_key()).await?;
    let rejected = || {
        ApiError::new(
            401,
            ErrorCode::InvalidRecoveryCode,
            "that email and recovery code do not match an unused code",
        )
    };
    let email = Email::parse(&req.email)?;
    ratelimit::check(ctx, Bucket::RecoveryEmail, email.as_str()).await?;
    let hash = recovery::hash(&req.code).ok_or_else(rejected)?;
    let user = users::find_by_email(&ctx.env, email.as_str())
        .await?
        .ok_or_else(rejected)?;
    ctx.note_actor(&user.id, user.personal_workspace_id.as_deref());
    if store::spend(&ctx.env, &user.id, &hash, ctx.now).await? == 0 {
        return Err(rejected());
    }
    signin::sign_in(ctx, &user, req.client, "recovery_code").await
}

//! Bearer-token authentication.
//!
//! `Authorization: Bearer bf_…` is parsed by the domain token format, looked
//! up by its SHA-256 hash, and checked for revocation and expiry. Every
//! failure is a 401 with the envelope and a `WWW-Authenticate` header.

use burstflare_api::ErrorCode;
use burstflare_domain::{TokenSecret, TokenUseError, check_token_use};
use worker::Request;

use crate::error::{ApiError, ApiResult};
use crate::routes::Ctx;
use crate::store::tokens::{self, TokenRow};
use crate::store::users::{self, UserRow};

/// `last_used_at` is refreshed at most this often, to keep reads cheap.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// The authenticated caller of a request.
pub struct Caller {
    pub user: UserRow,
    pub token: TokenRow,
}

pub async fn authenticate(ctx: &Ctx, req: &Request) -> ApiResult<Caller> {
    let header = req.headers().get("authorization").ok().flatten();
    let Some(header) = header else {
        return Err(ApiError::new(
            401,
            ErrorCode::Unauthenticated,
            "authentication required: send `Authorization: Bearer <token>`",
        ));
    };
    let raw = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| invalid(TokenUseError::Malformed))?;
    let secret = TokenSecret::parse(raw).map_err(invalid)?;
    let token = tokens::find_by_hash(&ctx.env, &secret.hash())
        .await?
        .ok_or_else(|| invalid(TokenUseError::Unknown))?;
    check_token_use(token.revoked_at, token.expires_at, ctx.now).map_err(invalid)?;
    let user = users::find(&ctx.env, &token.user_id)
        .await?
        .ok_or_else(|| invalid(TokenUseError::Unknown))?;
    if token
        .last_used_at
        .is_none_or(|t| ctx.now - t >= LAST_USED_GRANULARITY_MS)
    {
        tokens::touch(&ctx.env, &token.id, ctx.now).await?;
    }
    Ok(Caller { user, token })
}

fn invalid(e: TokenUseError) -> ApiError {
    ApiError::new(
        401,
        ErrorCode::InvalidToken,
        format!("invalid credentials: {e}"),
    )
}

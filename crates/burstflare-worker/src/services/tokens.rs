//! Personal access tokens: create, list (cursor-paginated), revoke.

use burstflare_api::{CreateTokenRequest, ErrorCode, IssuedToken, Page, TokenInfo};
use burstflare_domain::token::token_expiry;
use burstflare_domain::{TokenId, TokenKind, TokenName};

use super::paging::{cut_page, decode_keyset, encode_keyset, parse_limit};
use super::{new_id, new_secret, parse_id};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::Ctx;
use crate::store::d1;
use crate::store::tokens::{self, NewToken};

pub async fn create(ctx: &Ctx, caller: &Caller, req: CreateTokenRequest) -> ApiResult<IssuedToken> {
    let name = TokenName::parse(&req.name)?;
    let expires_at = token_expiry(ctx.now, req.expires_in_days)?;
    let secret = new_secret(TokenKind::Personal)?;
    let id = new_id(TokenId::from_random)?;
    let token = NewToken {
        id: id.as_str(),
        user_id: &caller.user.id,
        kind: TokenKind::Personal,
        name: name.as_str(),
        hash: &secret.hash(),
        prefix: &secret.display_prefix(),
        now: ctx.now,
        expires_at,
        session_id: None,
    };
    let stmt = tokens::insert(&ctx.env, &token)?;
    stmt.run()
        .await
        .map_err(|e| d1::failed("insert token", e))?;
    Ok(IssuedToken {
        token: secret.expose().to_owned(),
        info: token.row().to_api()?,
    })
}

pub async fn list(
    ctx: &Ctx,
    caller: &Caller,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> ApiResult<Page<TokenInfo>> {
    let limit = parse_limit(limit)?;
    let after = cursor.map(decode_keyset::<TokenId>).transpose()?;
    // One extra row tells whether another page exists.
    let mut rows = tokens::list(
        &ctx.env,
        &caller.user.id,
        TokenKind::Personal,
        after.as_ref(),
        limit + 1,
    )
    .await?;
    let next_cursor = cut_page(&mut rows, limit, |r| encode_keyset(r.created_at, &r.id));
    let items = rows
        .iter()
        .map(|r| r.to_api())
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Page { items, next_cursor })
}

/// Revokes one of the caller's personal tokens. Revoking a revoked token
/// returns it unchanged; another user's token is indistinguishable from a
/// missing one.
pub async fn revoke(ctx: &Ctx, caller: &Caller, id: &str) -> ApiResult<TokenInfo> {
    let id: TokenId = parse_id(id, "token_id")?;
    ctx.note_target("token", id.as_str());
    let not_found = || ApiError::not_found(ErrorCode::TokenNotFound, "token", id.as_str());
    let row = tokens::find_for_user(&ctx.env, &caller.user.id, id.as_str())
        .await?
        .ok_or_else(not_found)?;
    if row.kind != TokenKind::Personal.as_str() {
        return Err(not_found());
    }
    tokens::revoke(&ctx.env, &caller.user.id, id.as_str(), ctx.now).await?;
    let row = tokens::find_for_user(&ctx.env, &caller.user.id, id.as_str())
        .await?
        .ok_or_else(not_found)?;
    row.to_api()
}

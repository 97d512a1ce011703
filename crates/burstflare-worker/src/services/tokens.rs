//! Personal access tokens: create, list (cursor-paginated), revoke.

use burstflare_api::{
    CreateTokenRequest, DEFAULT_PAGE_SIZE, ErrorCode, IssuedToken, MAX_PAGE_SIZE, Page, TokenInfo,
};
use burstflare_domain::token::token_expiry;
use burstflare_domain::{TokenId, TokenKind, TokenName};
use serde_json::json;

use super::{new_id, new_secret, parse_id};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::Ctx;
use crate::store::d1;
use crate::store::tokens::{self, After, NewToken};

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

fn bad_query(param: &str, message: String) -> ApiError {
    ApiError::new(400, ErrorCode::InvalidQuery, message).with_details(json!({ "param": param }))
}

/// Parses `?limit=`.
pub fn parse_limit(raw: Option<&str>) -> ApiResult<u32> {
    match raw {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            _ => Err(bad_query(
                "limit",
                format!("limit {s:?} must be an integer from 1 to {MAX_PAGE_SIZE}"),
            )),
        },
    }
}

fn encode_cursor(row: &tokens::TokenRow) -> String {
    hex::encode(format!("{}:{}", row.created_at, row.id))
}

fn decode_cursor(raw: &str) -> ApiResult<After> {
    let bad = || {
        bad_query(
            "cursor",
            format!("cursor {raw:?} is not one this server issued"),
        )
    };
    let text = hex::decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (at, id) = text.split_once(':').ok_or_else(bad)?;
    let created_at = at.parse().map_err(|_| bad())?;
    id.parse::<TokenId>().map_err(|_| bad())?;
    Ok(After {
        created_at,
        id: id.to_owned(),
    })
}

pub async fn list(
    ctx: &Ctx,
    caller: &Caller,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> ApiResult<Page<TokenInfo>> {
    let limit = parse_limit(limit)?;
    let after = cursor.map(decode_cursor).transpose()?;
    // One extra row tells whether another page exists.
    let mut rows = tokens::list(
        &ctx.env,
        &caller.user.id,
        TokenKind::Personal,
        after.as_ref(),
        limit + 1,
    )
    .await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(encode_cursor)
    } else {
        None
    };
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

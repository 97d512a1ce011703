//! Signed-in sessions: issuing them (every sign-in method ends here), token
//! refresh with rotation and reuse detection, logout, logout everywhere,
//! listing and revoking sessions.
//!
//! API and CLI clients get a 15-minute access token and a 30-day refresh
//! token. Each refresh exchanges the refresh token for a new pair; presenting
//! an exchanged refresh token again means two parties hold it, so the whole
//! session (every token issued under it) is revoked. Browsers get an HttpOnly
//! session cookie and a CSRF token instead (see [`crate::auth`]).

use burstflare_api::identity::{
    AuthSession, ClientKind, Credentials, LogoutAll, RefreshRequest, SignedIn,
};
use burstflare_api::{ErrorCode, IssuedToken, Page, timestamp};
use burstflare_domain::{AuthSessionId, TokenId, TokenKind, TokenSecret, TokenUseError};
use worker::D1PreparedStatement;

use super::paging::{cut_page, decode_keyset, encode_keyset, parse_limit};
use super::ratelimit::{self, Bucket};
use super::{new_id, new_secret, parse_id};
use crate::auth::{Caller, invalid, sha256_hex};
use crate::error::{ApiError, ApiResult};
use crate::platform::secs_var;
use crate::routes::Ctx;
use crate::store::auth_sessions::{self as store, AuthSessionRow, NewAuthSession};
use crate::store::d1;
use crate::store::tokens::{self, NewToken};
use crate::store::users::UserRow;

/// Access tokens live this long unless `ACCESS_TOKEN_TTL_SECONDS` says otherwise.
const ACCESS_TTL_SECS: i64 = 15 * 60;
/// Refresh tokens and browser sessions: `REFRESH_TOKEN_TTL_SECONDS`.
const REFRESH_TTL_SECS: i64 = 30 * 24 * 3600;

fn access_ttl(ctx: &Ctx) -> i64 {
    secs_var(&ctx.env, "ACCESS_TOKEN_TTL_SECONDS", ACCESS_TTL_SECS)
}

fn refresh_ttl(ctx: &Ctx) -> i64 {
    secs_var(&ctx.env, "REFRESH_TOKEN_TTL_SECONDS", REFRESH_TTL_SECS)
}

/// The cookies a browser sign-in sets.
pub struct SessionCookie {
    /// The `bf_session` value (HttpOnly).
    pub value: String,
    /// The CSRF token, also set as the readable `bf_csrf` cookie.
    pub csrf: String,
    pub max_age_secs: i64,
}

/// A sign-in ready to answer: the body, and the cookies to set for browsers.
pub struct Issued {
    pub body: SignedIn,
    pub cookie: Option<SessionCookie>,
}

impl Issued {
    pub fn cookie(&self) -> Option<&SessionCookie> {
        self.cookie.as_ref()
    }
}

/// A new session whose statements have not run yet.
pub struct Pending {
    row: AuthSessionRow,
    access: Option<(TokenSecret, crate::store::tokens::TokenRow)>,
    refresh: Option<TokenSecret>,
    cookie: Option<TokenSecret>,
    csrf: Option<String>,
    max_age_secs: i64,
}

impl Pending {
    pub fn session_id(&self) -> &str {
        &self.row.id
    }

    /// The response once the statements have run.
    pub fn finish(self, user: &UserRow) -> ApiResult<Issued> {
        let session = self.row.to_api(Some(&self.row.id))?;
        let credentials = match (self.access, self.refresh) {
            (Some((secret, row)), Some(refresh)) => Some(Credentials {
                session_id: session.id.clone(),
                access_token: IssuedToken {
                    token: secret.expose().to_owned(),
                    info: row.to_api()?,
                },
                refresh_token: refresh.expose().to_owned(),
                refresh_expires_at: timestamp(self.row.expires_at),
            }),
            _ => None,
        };
        let cookie = match (self.cookie, &self.csrf) {
            (Some(c), Some(csrf)) => Some(SessionCookie {
                value: c.expose().to_owned(),
                csrf: csrf.clone(),
                max_age_secs: self.max_age_secs,
            }),
            _ => None,
        };
        Ok(Issued {
            body: SignedIn {
                user: user.to_api()?,
                session,
                credentials,
                csrf_token: self.csrf,
            },
            cookie,
        })
    }
}

/// An access token for `session_id`, expiring after the access TTL.
fn access_token(
    ctx: &Ctx,
    user_id: &str,
    session_id: &str,
    name: &str,
) -> ApiResult<(
    TokenSecret,
    crate::store::tokens::TokenRow,
    D1PreparedStatement,
)> {
    let secret = new_secret(TokenKind::Access)?;
    let id = new_id(TokenId::from_random)?;
    let token = NewToken {
        id: id.as_str(),
        user_id,
        kind: TokenKind::Access,
        name,
        hash: &secret.hash(),
        prefix: &secret.display_prefix(),
        now: ctx.now,
        expires_at: Some(ctx.now + access_ttl(ctx)),
        session_id: Some(session_id),
    };
    let stmt = tokens::insert(&ctx.env, &token)?;
    let row = token.row();
    Ok((secret, row, stmt))
}

/// Statements creating a signed-in session for `user_id`, to run in one
/// batch (registration adds its account statements first).
pub fn prepare(
    ctx: &Ctx,
    user_id: &str,
    client: ClientKind,
    method: &str,
) -> ApiResult<(Vec<D1PreparedStatement>, Pending)> {
    let id = new_id(AuthSessionId::from_random)?;
    let ttl = refresh_ttl(ctx);
    let mut row = AuthSessionRow {
        id: id.to_string(),
        user_id: user_id.to_owned(),
        client: client.as_str().to_owned(),
        method: method.to_owned(),
        user_agent: ctx.user_agent.clone(),
        ip: ctx.ip.clone(),
        created_at: ctx.now,
        last_used_at: ctx.now,
        expires_at: ctx.now + ttl,
        revoked_at: None,
        csrf_hash: None,
    };
    let mut stmts = Vec::new();
    let mut pending = Pending {
        row: row.clone(),
        access: None,
        refresh: None,
        cookie: None,
        csrf: None,
        max_age_secs: ttl / 1000,
    };
    if client == ClientKind::Browser {
        let cookie = new_secret(TokenKind::BrowserSession)?;
        let csrf = hex::encode(crate::platform::random::<32>()?);
        row.csrf_hash = Some(sha256_hex(&csrf));
        stmts.push(store::insert(
            &ctx.env,
            &NewAuthSession {
                row: &row,
                cookie_hash: Some(&cookie.hash()),
            },
        )?);
        pending.cookie = Some(cookie);
        pending.csrf = Some(csrf);
    } else {
        stmts.push(store::insert(
            &ctx.env,
            &NewAuthSession {
                row: &row,
                cookie_hash: None,
            },
        )?);
        let (secret, token_row, stmt) = access_token(ctx, user_id, &row.id, method)?;
        stmts.push(stmt);
        let refresh = new_secret(TokenKind::Refresh)?;
        stmts.push(store::insert_refresh(
            &ctx.env,
            &refresh.hash(),
            &row.id,
            ctx.now,
        )?);
        pending.access = Some((secret, token_row));
        pending.refresh = Some(refresh);
    }
    pending.row = row;
    Ok((stmts, pending))
}

/// Signs `user` in with a new session.
pub async fn sign_in(
    ctx: &Ctx,
    user: &UserRow,
    client: ClientKind,
    method: &str,
) -> ApiResult<Issued> {
    let (stmts, pending) = prepare(ctx, &user.id, client, method)?;
    d1::db(&ctx.env)?
        .batch(stmts)
        .await
        .map_err(|e| d1::failed("sign-in batch", e))?;
    ctx.note_actor(&user.id, user.personal_workspace_id.as_deref());
    ctx.note_target("auth_session", pending.session_id());
    pending.finish(user)
}

/// `POST /auth/token/refresh`: exchanges a refresh token for a new pair.
pub async fn refresh(ctx: &Ctx, req: RefreshRequest) -> ApiResult<Credentials> {
    ratelimit::check(ctx, Bucket::Refresh, ctx.ip_key()).await?;
    let secret = TokenSecret::parse(req.refresh_token.trim()).map_err(invalid)?;
    if secret.kind() != TokenKind::Refresh {
        return Err(invalid(TokenUseError::WrongKind));
    }
    let hash = secret.hash();
    let row = store::find_refresh(&ctx.env, &hash)
        .await?
        .ok_or_else(|| invalid(TokenUseError::Unknown))?;
    let session = store::find(&ctx.env, &row.session_id)
        .await?
        .ok_or_else(|| invalid(TokenUseError::Unknown))?;
    ctx.note_actor(&session.user_id, None);
    ctx.note_target("auth_session", &session.id);
    burstflare_domain::check_token_use(session.revoked_at, Some(session.expires_at), ctx.now)
        .map_err(invalid)?;
    let reused =
        row.rotated_at.is_some() || store::rotate_refresh(&ctx.env, &hash, ctx.now).await? == 0;
    if reused {
        store::revoke(&ctx.env, &session.id, ctx.now, "refresh_token_reused").await?;
        return Err(ApiError::new(
            401,
            ErrorCode::RefreshTokenReused,
            "this refresh token was used already; the session has been signed out everywhere \
             it was used. Sign in again",
        ));
    }
    let ttl = refresh_ttl(ctx);
    let (access, access_row, access_stmt) =
        access_token(ctx, &session.user_id, &session.id, "refresh")?;
    let next = new_secret(TokenKind::Refresh)?;
    d1::db(&ctx.env)?
        .batch(vec![
            access_stmt,
            store::insert_refresh(&ctx.env, &next.hash(), &session.id, ctx.now)?,
            store::extend(&ctx.env, &session.id, ctx.now, ctx.now + ttl)?,
        ])
        .await
        .map_err(|e| d1::failed("refresh batch", e))?;
    Ok(Credentials {
        session_id: parse_id(&session.id, "session_id")?,
        access_token: IssuedToken {
            token: access.expose().to_owned(),
            info: access_row.to_api()?,
        },
        refresh_token: next.expose().to_owned(),
        refresh_expires_at: timestamp(ctx.now + ttl),
    })
}

/// `POST /auth/logout`: ends the caller's session (a personal access token
/// has none; revoke the token itself instead).
pub async fn logout(ctx: &Ctx, caller: &Caller) -> ApiResult<()> {
    if let Some(id) = &caller.session_id {
        ctx.note_target("auth_session", id);
        store::revoke(&ctx.env, id, ctx.now, "logout").await?;
    }
    Ok(())
}

/// `POST /auth/logout-all`: every session and every token of the caller.
pub async fn logout_all(ctx: &Ctx, caller: &Caller) -> ApiResult<LogoutAll> {
    ctx.note_target("user", &caller.user.id);
    let sessions = store::revoke_all(&ctx.env, &caller.user.id, ctx.now, "logout_all").await?;
    let tokens = tokens::revoke_all(&ctx.env, &caller.user.id, ctx.now).await?;
    Ok(LogoutAll {
        sessions_revoked: u32::try_from(sessions).unwrap_or(u32::MAX),
        tokens_revoked: u32::try_from(tokens).unwrap_or(u32::MAX),
    })
}

pub async fn list(
    ctx: &Ctx,
    caller: &Caller,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> ApiResult<Page<AuthSession>> {
    let limit = parse_limit(limit)?;
    let after = cursor.map(decode_keyset::<AuthSessionId>).transpose()?;
    let mut rows = store::list_active(
        &ctx.env,
        &caller.user.id,
        ctx.now,
        after.as_ref(),
        limit + 1,
    )
    .await?;
    let next_cursor = cut_page(&mut rows, limit, |r| encode_keyset(r.created_at, &r.id));
    let current = caller.session_id.as_deref();
    let items = rows
        .iter()
        .map(|r| r.to_api(current))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Page { items, next_cursor })
}

/// `DELETE /auth/sessions/{id}`: revokes one of the caller's sessions.
pub async fn revoke(ctx: &Ctx, caller: &Caller, raw_id: &str) -> ApiResult<AuthSession> {
    let id: AuthSessionId = parse_id(raw_id, "auth_session_id")?;
    ctx.note_target("auth_session", id.as_str());
    let not_found =
        || ApiError::not_found(ErrorCode::AuthSessionNotFound, "auth session", id.as_str());
    let row = store::find(&ctx.env, id.as_str())
        .await?
        .filter(|r| r.user_id == caller.user.id)
        .ok_or_else(not_found)?;
    store::revoke(&ctx.env, &row.id, ctx.now, "revoked").await?;
    let row = store::find(&ctx.env, &row.id)
        .await?
        .ok_or_else(not_found)?;
    row.to_api(caller.session_id.as_deref())
}

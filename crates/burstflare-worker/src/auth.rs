//! Request authentication: bearer tokens for API clients and the CLI, the
//! session cookie (plus CSRF token) for browsers.
//!
//! * `Authorization: Bearer bf_at_…|bf_pat_…` is parsed by the domain token
//!   format, looked up by its SHA-256 hash and checked for revocation and
//!   expiry, together with the auth session an access token belongs to.
//!   Refresh tokens, cookies and other secrets are refused as bearer tokens.
//! * Without an `Authorization` header, the `bf_session` cookie is looked up
//!   the same way. Cookies ride along on cross-site requests, so every
//!   mutating request authenticated by cookie must also carry the session's
//!   CSRF token in `X-CSRF-Token` (403 `csrf_failed` otherwise), and a
//!   cookie-authenticated request that names an `Origin` (every WebSocket
//!   handshake does) must name one of the web app's origins.
//!
//! Failures are 401s with the envelope and a `WWW-Authenticate` header.

use burstflare_api::ErrorCode;
use burstflare_api::identity::{CSRF_HEADER, SESSION_COOKIE};
use burstflare_domain::{TokenKind, TokenSecret, TokenUseError, check_token_use};
use sha2::{Digest, Sha256};
use worker::Request;

use crate::error::{ApiError, ApiResult};
use crate::platform::web_origins;
use crate::routes::Ctx;
use crate::store::auth_sessions;
use crate::store::tokens::{self, TokenRow};
use crate::store::users::{self, UserRow};

/// `last_used_at` is refreshed at most this often, to keep reads cheap.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// The authenticated caller of a request.
pub struct Caller {
    pub user: UserRow,
    /// The bearer token used (none for a browser cookie).
    pub token: Option<TokenRow>,
    /// The signed-in session (none for personal access tokens).
    pub session_id: Option<String>,
}

impl Caller {
    pub fn personal_workspace(&self) -> ApiResult<&str> {
        self.user
            .personal_workspace_id
            .as_deref()
            .ok_or_else(|| ApiError::internal("caller has no personal workspace"))
    }
}

/// Authenticates a request; `mutating` requests by cookie need the CSRF token.
pub async fn authenticate(ctx: &Ctx, req: &Request, mutating: bool) -> ApiResult<Caller> {
    let caller = match req.headers().get("authorization").ok().flatten() {
        Some(header) => bearer(ctx, &header).await?,
        None => match cookie(req, SESSION_COOKIE) {
            Some(value) => browser(ctx, req, &value, mutating).await?,
            None => {
                return Err(ApiError::new(
                    401,
                    ErrorCode::Unauthenticated,
                    "authentication required: send `Authorization: Bearer <token>` or sign in",
                ));
            }
        },
    };
    ctx.note_actor(
        &caller.user.id,
        caller.user.personal_workspace_id.as_deref(),
    );
    Ok(caller)
}

async fn bearer(ctx: &Ctx, header: &str) -> ApiResult<Caller> {
    let raw = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| invalid(TokenUseError::Malformed))?;
    let secret = TokenSecret::parse(raw).map_err(invalid)?;
    if !secret.kind().is_bearer() {
        let mut err = invalid(TokenUseError::WrongKind);
        if secret.kind() == TokenKind::Refresh {
            err.message
                .push_str("; exchange a refresh token at POST /api/v1/auth/token/refresh");
        }
        return Err(err);
    }
    let token = tokens::find_by_hash(&ctx.env, &secret.hash())
        .await?
        .ok_or_else(|| invalid(TokenUseError::Unknown))?;
    // A known token names its user even when it is revoked or expired: the
    // refused attempt is audited against them.
    ctx.note_actor(&token.user_id, None);
    check_token_use(token.revoked_at, token.expires_at, ctx.now).map_err(invalid)?;
    if let Some(session_id) = &token.session_id {
        let session = auth_sessions::find(&ctx.env, session_id)
            .await?
            .ok_or_else(|| invalid(TokenUseError::Unknown))?;
        check_token_use(session.revoked_at, Some(session.expires_at), ctx.now).map_err(invalid)?;
    }
    let user = users::find(&ctx.env, &token.user_id)
        .await?
        .ok_or_else(|| invalid(TokenUseError::Unknown))?;
    if stale(token.last_used_at, ctx.now) {
        tokens::touch(&ctx.env, &token.id, ctx.now).await?;
        if let Some(session_id) = &token.session_id {
            auth_sessions::touch(&ctx.env, session_id, ctx.now).await?;
        }
    }
    Ok(Caller {
        user,
        session_id: token.session_id.clone(),
        token: Some(token),
    })
}

async fn browser(ctx: &Ctx, req: &Request, value: &str, mutating: bool) -> ApiResult<Caller> {
    let secret = TokenSecret::parse(value).map_err(invalid)?;
    if secret.kind() != TokenKind::BrowserSession {
        return Err(invalid(TokenUseError::WrongKind));
    }
    let session = auth_sessions::find_by_cookie(&ctx.env, &secret.hash())
        .await?
        .ok_or_else(|| invalid(TokenUseError::Unknown))?;
    ctx.note_actor(&session.user_id, None);
    check_token_use(session.revoked_at, Some(session.expires_at), ctx.now).map_err(invalid)?;
    if let Some(origin) = req.headers().get("origin").ok().flatten()
        && !web_origins(&ctx.env).contains(&origin.trim_end_matches('/').to_owned())
    {
        return Err(ApiError::new(
            403,
            ErrorCode::CsrfFailed,
            format!("requests from {origin} cannot use the session cookie"),
        ));
    }
    if mutating {
        let presented = req.headers().get(CSRF_HEADER).ok().flatten();
        let expected = session.csrf_hash.as_deref().unwrap_or_default();
        let ok =
            presented.is_some_and(|t| !expected.is_empty() && sha256_hex(t.trim()) == expected);
        if !ok {
            return Err(ApiError::new(
                403,
                ErrorCode::CsrfFailed,
                format!(
                    "this request is authenticated by the session cookie and must carry the \
                     CSRF token in `{CSRF_HEADER}`"
                ),
            ));
        }
    }
    let user = users::find(&ctx.env, &session.user_id)
        .await?
        .ok_or_else(|| invalid(TokenUseError::Unknown))?;
    if stale(Some(session.last_used_at), ctx.now) {
        auth_sessions::touch(&ctx.env, &session.id, ctx.now).await?;
    }
    Ok(Caller {
        user,
        token: None,
        session_id: Some(session.id),
    })
}

fn stale(last: Option<i64>, now: i64) -> bool {
    last.is_none_or(|t| now - t >= LAST_USED_GRANULARITY_MS)
}

/// Lowercase hex SHA-256 (how CSRF tokens are stored).
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The value of cookie `name` in the request's `Cookie` header.
pub fn cookie(req: &Request, name: &str) -> Option<String> {
    let header = req.headers().get("cookie").ok().flatten()?;
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"').to_owned())
    })
}

pub fn invalid(e: TokenUseError) -> ApiError {
    ApiError::new(
        401,
        ErrorCode::InvalidToken,
        format!("invalid credentials: {e}"),
    )
}

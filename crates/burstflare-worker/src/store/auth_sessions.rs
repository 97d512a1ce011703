//! `auth_sessions` and `refresh_tokens`: signed-in sessions and the rotating
//! refresh tokens of API and CLI clients.

use burstflare_api::identity::{AuthSession, ClientKind};
use burstflare_api::timestamp;
use serde::Deserialize;
use worker::{D1PreparedStatement, Env};

use super::After;
use super::d1::{self, int, opt_text, text};
use crate::error::{ApiError, ApiResult};

const COLUMNS: &str = "id, user_id, client, method, user_agent, ip, created_at, last_used_at, \
                       expires_at, revoked_at, csrf_hash";

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSessionRow {
    pub id: String,
    pub user_id: String,
    pub client: String,
    pub method: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    #[serde(default)]
    pub csrf_hash: Option<String>,
}

impl AuthSessionRow {
    pub fn to_api(&self, current: Option<&str>) -> ApiResult<AuthSession> {
        Ok(AuthSession {
            id: self
                .id
                .parse()
                .map_err(|e| ApiError::internal(format!("stored auth session id: {e}")))?,
            client: ClientKind::parse(&self.client).ok_or_else(|| {
                ApiError::internal(format!("stored auth session client {:?}", self.client))
            })?,
            method: self.method.clone(),
            user_agent: self.user_agent.clone(),
            ip: self.ip.clone(),
            created_at: timestamp(self.created_at),
            last_used_at: timestamp(self.last_used_at),
            expires_at: timestamp(self.expires_at),
            revoked_at: self.revoked_at.map(timestamp),
            current: current == Some(self.id.as_str()),
        })
    }
}

/// A session to insert. Browser sessions carry the cookie and CSRF hashes.
pub struct NewAuthSession<'a> {
    pub row: &'a AuthSessionRow,
    pub cookie_hash: Option<&'a str>,
}

pub fn insert(env: &Env, s: &NewAuthSession<'_>) -> ApiResult<D1PreparedStatement> {
    let db = d1::db(env)?;
    let r = s.row;
    d1::stmt(
        &db,
        "INSERT INTO auth_sessions (id, user_id, client, method, user_agent, ip, cookie_hash, csrf_hash, \
         created_at, last_used_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)",
        &[
            text(&r.id),
            text(&r.user_id),
            text(&r.client),
            text(&r.method),
            opt_text(r.user_agent.as_deref()),
            opt_text(r.ip.as_deref()),
            opt_text(s.cookie_hash),
            opt_text(r.csrf_hash.as_deref()),
            int(r.created_at),
            int(r.expires_at),
        ],
    )
}

pub async fn find(env: &Env, id: &str) -> ApiResult<Option<AuthSessionRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!("SELECT {COLUMNS} FROM auth_sessions WHERE id = ?1"),
        &[text(id)],
    )
    .await
}

pub async fn find_by_cookie(env: &Env, cookie_hash: &str) -> ApiResult<Option<AuthSessionRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!("SELECT {COLUMNS} FROM auth_sessions WHERE cookie_hash = ?1"),
        &[text(cookie_hash)],
    )
    .await
}

/// The user's sessions that are still usable, newest first.
pub async fn list_active(
    env: &Env,
    user_id: &str,
    now: i64,
    after: Option<&After>,
    limit: u32,
) -> ApiResult<Vec<AuthSessionRow>> {
    let db = d1::db(env)?;
    let mut args = vec![text(user_id), int(now), int(i64::from(limit))];
    let keyset = super::and_after(after, &mut args);
    let sql = format!(
        "SELECT {COLUMNS} FROM auth_sessions WHERE user_id = ?1 AND revoked_at IS NULL \
         AND expires_at > ?2 {keyset} ORDER BY created_at DESC, id DESC LIMIT ?3"
    );
    d1::all(&db, &sql, &args).await
}

pub async fn touch(env: &Env, id: &str, now: i64) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE auth_sessions SET last_used_at = ?2 WHERE id = ?1",
        &[text(id), int(now)],
    )
    .await?;
    Ok(())
}

/// Revokes one session (no-op when revoked already); yields rows changed.
pub async fn revoke(env: &Env, id: &str, now: i64, reason: &str) -> ApiResult<usize> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE auth_sessions SET revoked_at = ?2, revoked_reason = ?3 WHERE id = ?1 AND revoked_at IS NULL",
        &[text(id), int(now), text(reason)],
    )
    .await
}

/// Revokes every session of the user; yields how many were active.
pub async fn revoke_all(env: &Env, user_id: &str, now: i64, reason: &str) -> ApiResult<usize> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE auth_sessions SET revoked_at = ?2, revoked_reason = ?3 \
         WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2",
        &[text(user_id), int(now), text(reason)],
    )
    .await
}

/// Extends a session after a refresh.
pub fn extend(env: &Env, id: &str, now: i64, expires_at: i64) -> ApiResult<D1PreparedStatement> {
    let db = d1::db(env)?;
    d1::stmt(
        &db,
        "UPDATE auth_sessions SET last_used_at = ?2, expires_at = ?3 WHERE id = ?1",
        &[text(id), int(now), int(expires_at)],
    )
}

#[derive(Debug, Clone, Deserialize)]
pub struct RefreshRow {
    pub session_id: String,
    pub rotated_at: Option<i64>,
}

pub fn insert_refresh(
    env: &Env,
    hash: &str,
    session_id: &str,
    now: i64,
) -> ApiResult<D1PreparedStatement> {
    let db = d1::db(env)?;
    d1::stmt(
        &db,
        "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES (?1, ?2, ?3)",
        &[text(hash), text(session_id), int(now)],
    )
}

pub async fn find_refresh(env: &Env, hash: &str) -> ApiResult<Option<RefreshRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        "SELECT session_id, rotated_at FROM refresh_tokens WHERE token_hash = ?1",
        &[text(hash)],
    )
    .await
}

/// Marks a refresh token exchanged; 0 rows changed means someone else did first.
pub async fn rotate_refresh(env: &Env, hash: &str, now: i64) -> ApiResult<usize> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE refresh_tokens SET rotated_at = ?2 WHERE token_hash = ?1 AND rotated_at IS NULL",
        &[text(hash), int(now)],
    )
    .await
}

//! `api_tokens`: bearer tokens stored as SHA-256 hashes.

use burstflare_api::{TokenInfo, timestamp};
use burstflare_domain::TokenKind;
use serde::Deserialize;
use worker::{D1PreparedStatement, Env};

use super::d1::{self, int, opt_int, opt_text, text};
use crate::error::{ApiError, ApiResult};

const COLUMNS: &str = "id, user_id, kind, name, token_prefix, created_at, expires_at, \
                       last_used_at, revoked_at, session_id";

#[derive(Debug, Clone, Deserialize)]
pub struct TokenRow {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub name: String,
    pub token_prefix: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    #[serde(default)]
    pub session_id: Option<String>,
}

impl TokenRow {
    pub fn to_api(&self) -> ApiResult<TokenInfo> {
        Ok(TokenInfo {
            id: self
                .id
                .parse()
                .map_err(|e| ApiError::internal(format!("stored token id: {e}")))?,
            kind: TokenKind::parse(&self.kind)
                .ok_or_else(|| ApiError::internal(format!("stored token kind {:?}", self.kind)))?,
            name: self.name.clone(),
            prefix: self.token_prefix.clone(),
            created_at: timestamp(self.created_at),
            expires_at: self.expires_at.map(timestamp),
            last_used_at: self.last_used_at.map(timestamp),
            revoked_at: self.revoked_at.map(timestamp),
        })
    }
}

/// A token to insert; `hash` is the SHA-256 of the plaintext.
pub struct NewToken<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub kind: TokenKind,
    pub name: &'a str,
    pub hash: &'a str,
    pub prefix: &'a str,
    pub now: i64,
    pub expires_at: Option<i64>,
    /// The auth session an access token belongs to.
    pub session_id: Option<&'a str>,
}

impl NewToken<'_> {
    pub fn row(&self) -> TokenRow {
        TokenRow {
            id: self.id.to_owned(),
            user_id: self.user_id.to_owned(),
            kind: self.kind.as_str().to_owned(),
            name: self.name.to_owned(),
            token_prefix: self.prefix.to_owned(),
            created_at: self.now,
            expires_at: self.expires_at,
            last_used_at: None,
            revoked_at: None,
            session_id: self.session_id.map(str::to_owned),
        }
    }
}

pub fn insert(env: &Env, t: &NewToken<'_>) -> ApiResult<D1PreparedStatement> {
    let db = d1::db(env)?;
    d1::stmt(
        &db,
        "INSERT INTO api_tokens (id, user_id, kind, name, token_hash, token_prefix, created_at, expires_at, session_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &[
            text(t.id),
            text(t.user_id),
            text(t.kind.as_str()),
            text(t.name),
            text(t.hash),
            text(t.prefix),
            int(t.now),
            opt_int(t.expires_at),
            opt_text(t.session_id),
        ],
    )
}

pub async fn find_by_hash(env: &Env, hash: &str) -> ApiResult<Option<TokenRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!("SELECT {COLUMNS} FROM api_tokens WHERE token_hash = ?1"),
        &[text(hash)],
    )
    .await
}

pub async fn find_for_user(env: &Env, user_id: &str, id: &str) -> ApiResult<Option<TokenRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!("SELECT {COLUMNS} FROM api_tokens WHERE id = ?1 AND user_id = ?2"),
        &[text(id), text(user_id)],
    )
    .await
}

pub async fn touch(env: &Env, id: &str, now: i64) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",
        &[text(id), int(now)],
    )
    .await?;
    Ok(())
}

pub use super::After;

/// A user's tokens of `kind`, newest first, `limit` rows after `after`.
pub async fn list(
    env: &Env,
    user_id: &str,
    kind: TokenKind,
    after: Option<&After>,
    limit: u32,
) -> ApiResult<Vec<TokenRow>> {
    let db = d1::db(env)?;
    let mut args = vec![text(user_id), text(kind.as_str()), int(i64::from(limit))];
    let keyset = super::and_after(after, &mut args);
    let sql = format!(
        "SELECT {COLUMNS} FROM api_tokens WHERE user_id = ?1 AND kind = ?2 {keyset} \
         ORDER BY created_at DESC, id DESC LIMIT ?3"
    );
    d1::all(&db, &sql, &args).await
}

/// Revokes every token of the user (access and personal); yields how many.
pub async fn revoke_all(env: &Env, user_id: &str, now: i64) -> ApiResult<usize> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE api_tokens SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > ?2)",
        &[text(user_id), int(now)],
    )
    .await
}

/// Marks a token revoked unless it is already.
pub async fn revoke(env: &Env, user_id: &str, id: &str, now: i64) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE api_tokens SET revoked_at = ?3 WHERE id = ?1 AND user_id = ?2 AND revoked_at IS NULL",
        &[text(id), text(user_id), int(now)],
    )
    .await?;
    Ok(())
}

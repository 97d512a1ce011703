//! `passkeys` and `webauthn_challenges`.

use serde::Deserialize;
use worker::Env;

use super::d1::{self, int, opt_text, text};
use crate::error::ApiResult;

#[derive(Debug, Clone, Deserialize)]
pub struct PasskeyRow {
    pub id: String,
    pub user_id: String,
    pub credential_id: String,
    pub public_key: String,
    pub algorithm: i64,
    pub sign_count: i64,
    pub aaguid: String,
    pub name: String,
    pub backup_eligible: i64,
    pub backed_up: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

const COLUMNS: &str = "id, user_id, credential_id, public_key, algorithm, sign_count, aaguid, name, \
                       backup_eligible, backed_up, created_at, last_used_at";

pub async fn insert(env: &Env, r: &PasskeyRow) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "INSERT INTO passkeys (id, user_id, credential_id, public_key, algorithm, sign_count, aaguid, name, \
         backup_eligible, backed_up, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        &[
            text(&r.id),
            text(&r.user_id),
            text(&r.credential_id),
            text(&r.public_key),
            int(r.algorithm),
            int(r.sign_count),
            text(&r.aaguid),
            text(&r.name),
            int(r.backup_eligible),
            int(r.backed_up),
            int(r.created_at),
        ],
    )
    .await?;
    Ok(())
}

pub async fn list(env: &Env, user_id: &str) -> ApiResult<Vec<PasskeyRow>> {
    let db = d1::db(env)?;
    d1::all(
        &db,
        &format!("SELECT {COLUMNS} FROM passkeys WHERE user_id = ?1 ORDER BY created_at, id"),
        &[text(user_id)],
    )
    .await
}

pub async fn find_by_credential(env: &Env, credential_id: &str) -> ApiResult<Option<PasskeyRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!("SELECT {COLUMNS} FROM passkeys WHERE credential_id = ?1"),
        &[text(credential_id)],
    )
    .await
}

pub async fn record_use(
    env: &Env,
    id: &str,
    sign_count: i64,
    backed_up: bool,
    now: i64,
) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE passkeys SET sign_count = ?2, backed_up = ?3, last_used_at = ?4 WHERE id = ?1",
        &[
            text(id),
            int(sign_count),
            int(i64::from(backed_up)),
            int(now),
        ],
    )
    .await?;
    Ok(())
}

pub async fn delete(env: &Env, user_id: &str, id: &str) -> ApiResult<usize> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "DELETE FROM passkeys WHERE id = ?1 AND user_id = ?2",
        &[text(id), text(user_id)],
    )
    .await
}

pub async fn insert_challenge(
    env: &Env,
    id: &str,
    purpose: &str,
    user_id: Option<&str>,
    challenge: &str,
    now: i64,
    expires_at: i64,
) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "INSERT INTO webauthn_challenges (id, purpose, user_id, challenge, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[
            text(id),
            text(purpose),
            opt_text(user_id),
            text(challenge),
            int(now),
            int(expires_at),
        ],
    )
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChallengeRow {
    pub user_id: Option<String>,
    pub challenge: String,
}

/// Spends an unused, unexpired challenge of `purpose` in one statement; a
/// second attempt with the same id finds nothing.
pub async fn consume_challenge(
    env: &Env,
    id: &str,
    purpose: &str,
    now: i64,
) -> ApiResult<Option<ChallengeRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        "UPDATE webauthn_challenges SET used_at = ?3 WHERE id = ?1 AND purpose = ?2 \
         AND used_at IS NULL AND expires_at > ?3 RETURNING user_id, challenge",
        &[text(id), text(purpose), int(now)],
    )
    .await
}

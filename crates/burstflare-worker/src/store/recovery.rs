//! `recovery_codes`: one-time account recovery codes, by hash.

use serde::Deserialize;
use worker::{D1PreparedStatement, Env};

use super::d1::{self, int, text};
use crate::error::ApiResult;

/// Statements replacing the user's whole set with `hashes`.
pub fn replace_set(
    env: &Env,
    user_id: &str,
    hashes: &[String],
    now: i64,
) -> ApiResult<Vec<D1PreparedStatement>> {
    let db = d1::db(env)?;
    let mut stmts = vec![d1::stmt(
        &db,
        "DELETE FROM recovery_codes WHERE user_id = ?1",
        &[text(user_id)],
    )?];
    for h in hashes {
        stmts.push(d1::stmt(
            &db,
            "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES (?1, ?2, ?3)",
            &[text(user_id), text(h), int(now)],
        )?);
    }
    Ok(stmts)
}

#[derive(Debug, Clone, Deserialize)]
pub struct SetStatus {
    pub total: i64,
    pub remaining: i64,
    pub generated_at: Option<i64>,
}

pub async fn status(env: &Env, user_id: &str) -> ApiResult<SetStatus> {
    let db = d1::db(env)?;
    let row: Option<SetStatus> = d1::first(
        &db,
        "SELECT COUNT(*) AS total, COALESCE(SUM(used_at IS NULL), 0) AS remaining, \
         MAX(created_at) AS generated_at FROM recovery_codes WHERE user_id = ?1",
        &[text(user_id)],
    )
    .await?;
    Ok(row.unwrap_or(SetStatus {
        total: 0,
        remaining: 0,
        generated_at: None,
    }))
}

/// Spends a code; 1 when it was unused, 0 otherwise (unknown or used).
pub async fn spend(env: &Env, user_id: &str, hash: &str, now: i64) -> ApiResult<usize> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE recovery_codes SET used_at = ?3 WHERE user_id = ?1 AND code_hash = ?2 AND used_at IS NULL",
        &[text(user_id), text(hash), int(now)],
    )
    .await
}

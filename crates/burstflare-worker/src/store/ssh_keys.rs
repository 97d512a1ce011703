//! `ssh_keys`: users' OpenSSH public keys, injected as `authorized_keys` at start.

use burstflare_api::sessions::SshKey;
use burstflare_api::timestamp;
use serde::Deserialize;
use worker::Env;

use super::d1::{self, int, text};
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Deserialize)]
pub struct SshKeyRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub algorithm: String,
    pub public_key: String,
    pub fingerprint: String,
    pub created_at: i64,
}

impl SshKeyRow {
    pub fn to_api(&self) -> ApiResult<SshKey> {
        Ok(SshKey {
            id: self
                .id
                .parse()
                .map_err(|e| ApiError::internal(format!("stored ssh key id: {e}")))?,
            name: self.name.clone(),
            algorithm: self.algorithm.clone(),
            fingerprint: self.fingerprint.clone(),
            public_key: self.public_key.clone(),
            created_at: timestamp(self.created_at),
        })
    }
}

const COLUMNS: &str = "id, user_id, name, algorithm, public_key, fingerprint, created_at";

pub async fn insert(env: &Env, k: &SshKeyRow) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        &format!("INSERT INTO ssh_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        &[
            text(&k.id),
            text(&k.user_id),
            text(&k.name),
            text(&k.algorithm),
            text(&k.public_key),
            text(&k.fingerprint),
            int(k.created_at),
        ],
    )
    .await?;
    Ok(())
}

/// Every key of the user, oldest first (a user has few keys; no pagination).
pub async fn list(env: &Env, user_id: &str) -> ApiResult<Vec<SshKeyRow>> {
    let db = d1::db(env)?;
    d1::all(
        &db,
        &format!("SELECT {COLUMNS} FROM ssh_keys WHERE user_id = ?1 ORDER BY created_at, id"),
        &[text(user_id)],
    )
    .await
}

/// Deletes the user's key; yields whether it existed.
pub async fn delete(env: &Env, user_id: &str, id: &str) -> ApiResult<bool> {
    let db = d1::db(env)?;
    let n = d1::execute(
        &db,
        "DELETE FROM ssh_keys WHERE id = ?1 AND user_id = ?2",
        &[text(id), text(user_id)],
    )
    .await?;
    Ok(n > 0)
}

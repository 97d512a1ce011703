//! Expired identity rows the reconcile sweep deletes: spent or expired
//! WebAuthn challenges, device authorizations an hour past expiry, access
//! tokens of signed-in sessions an hour past expiry, and sessions (with their
//! refresh tokens and access tokens) 30 days after they ended. Personal
//! access tokens, passkeys, recovery codes and the audit log are kept.

use worker::Env;

use super::d1::{self, int};
use crate::error::ApiResult;

const HOUR_MS: i64 = 3_600_000;
/// Ended sessions stay listed (and their ids resolvable in the audit log) this long.
pub const ENDED_SESSION_RETENTION_MS: i64 = 30 * 24 * HOUR_MS;

#[derive(Debug, Clone, Copy, Default)]
pub struct Purged {
    pub challenges: usize,
    pub device_authorizations: usize,
    pub access_tokens: usize,
    pub auth_sessions: usize,
}

pub async fn purge(env: &Env, now: i64) -> ApiResult<Purged> {
    let db = d1::db(env)?;
    let ended = now - ENDED_SESSION_RETENTION_MS;
    let challenges = d1::execute(
        &db,
        "DELETE FROM webauthn_challenges WHERE expires_at <= ?1 OR used_at IS NOT NULL",
        &[int(now)],
    )
    .await?;
    let device_authorizations = d1::execute(
        &db,
        "DELETE FROM device_authorizations WHERE expires_at <= ?1",
        &[int(now - HOUR_MS)],
    )
    .await?;
    let access_tokens = d1::execute(
        &db,
        "DELETE FROM api_tokens WHERE session_id IS NOT NULL AND expires_at <= ?1",
        &[int(now - HOUR_MS)],
    )
    .await?;
    // Children first, so nothing depends on foreign-key enforcement.
    let ended_sessions = "SELECT id FROM auth_sessions WHERE expires_at <= ?1 OR revoked_at <= ?1";
    d1::execute(
        &db,
        &format!("DELETE FROM refresh_tokens WHERE session_id IN ({ended_sessions})"),
        &[int(ended)],
    )
    .await?;
    d1::execute(
        &db,
        &format!("DELETE FROM api_tokens WHERE session_id IN ({ended_sessions})"),
        &[int(ended)],
    )
    .await?;
    let auth_sessions = d1::execute(
        &db,
        "DELETE FROM auth_sessions WHERE expires_at <= ?1 OR revoked_at <= ?1",
        &[int(ended)],
    )
    .await?;
    Ok(Purged {
        challenges,
        device_authorizations,
        access_tokens,
        auth_sessions,
    })
}

//! `device_authorizations`: RFC 8628 device codes for `burstflare login`.

use serde::Deserialize;
use worker::Env;

use super::d1::{self, int, opt_text, text};
use crate::error::ApiResult;

const COLUMNS: &str = "id, user_code, client_name, user_agent, ip, status, user_id, interval_ms, \
                       last_polled_at, created_at, expires_at";

#[derive(Debug, Clone, Deserialize)]
pub struct DeviceRow {
    pub id: String,
    pub user_code: String,
    pub client_name: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub status: String,
    pub user_id: Option<String>,
    pub interval_ms: i64,
    pub last_polled_at: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
}

pub async fn insert(env: &Env, r: &DeviceRow, device_code_hash: &str) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "INSERT INTO device_authorizations (id, device_code_hash, user_code, client_name, user_agent, ip, \
         status, interval_ms, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9)",
        &[
            text(&r.id),
            text(device_code_hash),
            text(&r.user_code),
            text(&r.client_name),
            opt_text(r.user_agent.as_deref()),
            opt_text(r.ip.as_deref()),
            int(r.interval_ms),
            int(r.created_at),
            int(r.expires_at),
        ],
    )
    .await?;
    Ok(())
}

pub async fn find_by_device_code(env: &Env, hash: &str) -> ApiResult<Option<DeviceRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!("SELECT {COLUMNS} FROM device_authorizations WHERE device_code_hash = ?1"),
        &[text(hash)],
    )
    .await
}

pub async fn find_by_user_code(env: &Env, user_code: &str) -> ApiResult<Option<DeviceRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!("SELECT {COLUMNS} FROM device_authorizations WHERE user_code = ?1"),
        &[text(user_code)],
    )
    .await
}

pub async fn record_poll(env: &Env, id: &str, now: i64, interval_ms: i64) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE device_authorizations SET last_polled_at = ?2, interval_ms = ?3 WHERE id = ?1",
        &[text(id), int(now), int(interval_ms)],
    )
    .await?;
    Ok(())
}

/// Approves or denies a pending, unexpired request; yields rows changed.
pub async fn decide(
    env: &Env,
    id: &str,
    status: &str,
    user_id: &str,
    now: i64,
) -> ApiResult<usize> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE device_authorizations SET status = ?2, user_id = ?3, decided_at = ?4 \
         WHERE id = ?1 AND status = 'pending' AND expires_at > ?4",
        &[text(id), text(status), text(user_id), int(now)],
    )
    .await
}

/// Marks an approved request consumed; 0 when another poll got there first.
pub async fn consume(env: &Env, id: &str) -> ApiResult<usize> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE device_authorizations SET status = 'consumed' WHERE id = ?1 AND status = 'approved'",
        &[text(id)],
    )
    .await
}

//! `builds` and `build_attempts`; logs and layers in R2 under the template's
//! prefix (see [`log_key`], [`layer_key`]).

use burstflare_domain::build::{BuildState, Progress};
use serde::Deserialize;
use worker::Env;

use super::d1::{self, int, opt_int, opt_text, text};
use super::templates::r2_prefix;
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Deserialize)]
pub struct BuildRow {
    pub id: String,
    pub template_id: String,
    pub version_id: String,
    pub workspace_id: String,
    pub state: String,
    pub attempts: i64,
    pub allowance_from: i64,
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    pub artifact_json: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl BuildRow {
    pub fn progress(&self) -> ApiResult<Progress> {
        Ok(Progress {
            state: BuildState::parse(&self.state).ok_or_else(|| {
                ApiError::internal(format!("stored build state {:?}", self.state))
            })?,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            allowance_from: u32::try_from(self.allowance_from).unwrap_or(0),
        })
    }
}

const COLUMNS: &str = "id, template_id, version_id, workspace_id, state, attempts, allowance_from, \
    next_attempt_at, last_error, artifact_json, created_by, created_at, updated_at";

/// An attempt's log.
pub fn log_key(template_id: &str, build_id: &str, attempt: u32) -> String {
    format!(
        "{}builds/{build_id}/attempt-{attempt}.log",
        r2_prefix(template_id)
    )
}

/// A successful build's layer.
pub fn layer_key(template_id: &str, build_id: &str) -> String {
    format!("{}layers/{build_id}.tar.zst", r2_prefix(template_id))
}

pub async fn insert(env: &Env, r: &BuildRow) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        &format!(
            "INSERT INTO builds ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        &[
            text(&r.id),
            text(&r.template_id),
            text(&r.version_id),
            text(&r.workspace_id),
            text(&r.state),
            int(r.attempts),
            int(r.allowance_from),
            opt_int(r.next_attempt_at),
            opt_text(r.last_error.as_deref()),
            opt_text(r.artifact_json.as_deref()),
            text(&r.created_by),
            int(r.created_at),
            int(r.updated_at),
        ],
    )
    .await?;
    Ok(())
}

pub async fn find(env: &Env, id: &str) -> ApiResult<Option<BuildRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!("SELECT {COLUMNS} FROM builds WHERE id = ?1"),
        &[text(id)],
    )
    .await
}

pub async fn list(env: &Env, template_id: &str) -> ApiResult<Vec<BuildRow>> {
    let db = d1::db(env)?;
    d1::all(
        &db,
        &format!(
            "SELECT {COLUMNS} FROM builds WHERE template_id = ?1 ORDER BY created_at DESC, id DESC LIMIT 200"
        ),
        &[text(template_id)],
    )
    .await
}

pub async fn in_state(env: &Env, template_id: &str, state: BuildState) -> ApiResult<Vec<BuildRow>> {
    let db = d1::db(env)?;
    d1::all(
        &db,
        &format!("SELECT {COLUMNS} FROM builds WHERE template_id = ?1 AND state = ?2"),
        &[text(template_id), text(state.as_str())],
    )
    .await
}

/// Builds in `states` not updated since `before` (stuck, for the reconcile sweep).
pub async fn stale(
    env: &Env,
    states: &[BuildState],
    before: i64,
    limit: u32,
) -> ApiResult<Vec<BuildRow>> {
    let db = d1::db(env)?;
    let list = states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    d1::all(
        &db,
        &format!(
            "SELECT {COLUMNS} FROM builds WHERE state IN ({list}) AND updated_at < ?1 \
             ORDER BY updated_at LIMIT ?2"
        ),
        &[int(before), int(i64::from(limit))],
    )
    .await
}

/// Moves a build from `from` to `to` (compare-and-set on state and attempts);
/// 0 rows when someone else moved it first.
pub async fn transition(
    env: &Env,
    id: &str,
    from: &Progress,
    to: &Progress,
    next_attempt_at: Option<i64>,
    last_error: Option<&str>,
    now: i64,
) -> ApiResult<usize> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE builds SET state = ?4, attempts = ?5, allowance_from = ?6, next_attempt_at = ?7, \
         last_error = COALESCE(?8, last_error), updated_at = ?9 \
         WHERE id = ?1 AND state = ?2 AND attempts = ?3",
        &[
            text(id),
            text(from.state.as_str()),
            int(i64::from(from.attempts)),
            text(to.state.as_str()),
            int(i64::from(to.attempts)),
            int(i64::from(to.allowance_from)),
            opt_int(next_attempt_at),
            opt_text(last_error),
            int(now),
        ],
    )
    .await
}

/// Moves a building build to succeeded with its artifact (compare-and-set
/// like [`transition`]); 0 rows when the build moved meanwhile.
pub async fn succeed(
    env: &Env,
    id: &str,
    from: &Progress,
    to: &Progress,
    artifact_json: &str,
    now: i64,
) -> ApiResult<usize> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE builds SET state = ?4, artifact_json = ?5, next_attempt_at = NULL, updated_at = ?6 \
         WHERE id = ?1 AND state = ?2 AND attempts = ?3",
        &[
            text(id),
            text(from.state.as_str()),
            int(i64::from(from.attempts)),
            text(to.state.as_str()),
            text(artifact_json),
            int(now),
        ],
    )
    .await
}

#[derive(Debug, Clone, Deserialize)]
pub struct AttemptRow {
    pub attempt: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub outcome: Option<String>,
    pub error: Option<String>,
}

pub async fn start_attempt(env: &Env, build_id: &str, attempt: u32, now: i64) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "INSERT OR IGNORE INTO build_attempts (build_id, attempt, started_at) VALUES (?1, ?2, ?3)",
        &[text(build_id), int(i64::from(attempt)), int(now)],
    )
    .await?;
    Ok(())
}

pub async fn finish_attempt(
    env: &Env,
    build_id: &str,
    attempt: u32,
    outcome: &str,
    error: Option<&str>,
    now: i64,
) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE build_attempts SET finished_at = ?4, outcome = ?3, error = ?5 \
         WHERE build_id = ?1 AND attempt = ?2 AND finished_at IS NULL",
        &[
            text(build_id),
            int(i64::from(attempt)),
            text(outcome),
            int(now),
            opt_text(error),
        ],
    )
    .await?;
    Ok(())
}

pub async fn attempts(env: &Env, build_id: &str) -> ApiResult<Vec<AttemptRow>> {
    let db = d1::db(env)?;
    d1::all(
        &db,
        "SELECT attempt, started_at, finished_at, outcome, error FROM build_attempts \
         WHERE build_id = ?1 ORDER BY attempt",
        &[text(build_id)],
    )
    .await
}

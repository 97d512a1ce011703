//! `sessions` and `session_events`: the D1 projection of each session's
//! `SessionCoordinator` state, written only by that Durable Object.
//!
//! The projection upsert carries `state_version`; D1 keeps a row's newer
//! version (`WHERE excluded.state_version > sessions.state_version`), so a
//! delayed or repeated write can never roll a session back. Events are keyed by
//! `(session_id, seq)` and inserted with `OR IGNORE`, so re-projecting is
//! idempotent.

use burstflare_api::sessions::{RuntimeSpec, Session, SessionEvent};
use burstflare_api::timestamp;
use burstflare_domain::{DesiredState, SessionState};
use serde::{Deserialize, Serialize};
use worker::{D1PreparedStatement, Env};

use super::d1::{self, int, opt_text, text};
use crate::error::{ApiError, ApiResult};

/// A session's full lifecycle record: the DO's own copy and the D1 row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub workspace_id: String,
    pub owner_id: String,
    pub name: String,
    pub state: SessionState,
    pub desired_state: DesiredState,
    pub runtime_status: Option<String>,
    pub runtime_state: Option<String>,
    pub runtime_updated_at: Option<i64>,
    pub state_version: i64,
    pub generation: i64,
    pub failure_reason: Option<String>,
    pub spec: RuntimeSpec,
    pub host_keys: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

impl SessionRecord {
    pub fn to_api(&self) -> ApiResult<Session> {
        let corrupt = |what: &str| ApiError::internal(format!("session {}: bad {what}", self.id));
        Ok(Session {
            id: self.id.parse().map_err(|_| corrupt("id"))?,
            name: self.name.clone(),
            workspace_id: self
                .workspace_id
                .parse()
                .map_err(|_| corrupt("workspace id"))?,
            owner_id: self.owner_id.parse().map_err(|_| corrupt("owner id"))?,
            state: self.state,
            desired_state: self.desired_state,
            runtime_status: self.runtime_status.clone(),
            runtime_state: self.runtime_state.clone(),
            runtime_updated_at: self.runtime_updated_at.map(timestamp),
            state_version: self.state_version,
            generation: self.generation,
            failure_reason: self.failure_reason.clone(),
            spec: self.spec.clone(),
            ssh_host_keys: self.host_keys.clone(),
            created_at: timestamp(self.created_at),
            updated_at: timestamp(self.updated_at),
        })
    }
}

/// One event as stored (D1 and the DO's log).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRecord {
    pub seq: i64,
    pub from_state: SessionState,
    pub to_state: SessionState,
    pub command: Option<String>,
    pub actor: String,
    pub reason: String,
    pub at: i64,
}

impl EventRecord {
    pub fn to_api(&self) -> SessionEvent {
        SessionEvent {
            seq: self.seq,
            from_state: self.from_state,
            to_state: self.to_state,
            command: self.command.clone(),
            actor: self.actor.clone(),
            reason: self.reason.clone(),
            at: timestamp(self.at),
        }
    }
}

/// The D1 row shape.
#[derive(Debug, Deserialize)]
struct SessionRow {
    id: String,
    workspace_id: String,
    owner_id: String,
    name: String,
    state: String,
    desired_state: String,
    runtime_status: Option<String>,
    runtime_state: Option<String>,
    runtime_updated_at: Option<i64>,
    state_version: i64,
    generation: i64,
    failure_reason: Option<String>,
    spec_json: String,
    host_keys_json: String,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
}

const COLUMNS: &str = "id, workspace_id, owner_id, name, state, desired_state, runtime_status, \
     runtime_state, runtime_updated_at, state_version, generation, failure_reason, spec_json, \
     host_keys_json, created_at, updated_at, deleted_at";

impl SessionRow {
    fn into_record(self) -> ApiResult<SessionRecord> {
        let corrupt =
            |what: &str| ApiError::internal(format!("session row {}: bad {what}", self.id));
        Ok(SessionRecord {
            state: self.state.parse().map_err(|_| corrupt("state"))?,
            desired_state: self
                .desired_state
                .parse()
                .map_err(|_| corrupt("desired_state"))?,
            spec: serde_json::from_str(&self.spec_json).map_err(|_| corrupt("spec_json"))?,
            host_keys: serde_json::from_str(&self.host_keys_json)
                .map_err(|_| corrupt("host_keys_json"))?,
            id: self.id,
            workspace_id: self.workspace_id,
            owner_id: self.owner_id,
            name: self.name,
            runtime_status: self.runtime_status,
            runtime_state: self.runtime_state,
            runtime_updated_at: self.runtime_updated_at,
            state_version: self.state_version,
            generation: self.generation,
            failure_reason: self.failure_reason,
            created_at: self.created_at,
            updated_at: self.updated_at,
            deleted_at: self.deleted_at,
        })
    }
}

/// The projection upsert for `r` (a no-op if D1 holds a newer version).
pub fn upsert(env: &Env, r: &SessionRecord) -> ApiResult<D1PreparedStatement> {
    let db = d1::db(env)?;
    let spec = serde_json::to_string(&r.spec)?;
    let keys = serde_json::to_string(&r.host_keys)?;
    d1::stmt(
        &db,
        &format!(
            "INSERT INTO sessions ({COLUMNS}, template_id, release_id) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
             desired_state = excluded.desired_state, runtime_status = excluded.runtime_status, \
             runtime_state = excluded.runtime_state, runtime_updated_at = excluded.runtime_updated_at, \
             state_version = excluded.state_version, generation = excluded.generation, \
             failure_reason = excluded.failure_reason, host_keys_json = excluded.host_keys_json, \
             updated_at = excluded.updated_at, deleted_at = excluded.deleted_at \
             WHERE excluded.state_version > sessions.state_version"
        ),
        &[
            text(&r.id),
            text(&r.workspace_id),
            text(&r.owner_id),
            text(&r.name),
            text(r.state.as_str()),
            text(r.desired_state.as_str()),
            opt_text(r.runtime_status.as_deref()),
            opt_text(r.runtime_state.as_deref()),
            d1::opt_int(r.runtime_updated_at),
            int(r.state_version),
            int(r.generation),
            opt_text(r.failure_reason.as_deref()),
            text(&spec),
            text(&keys),
            int(r.created_at),
            int(r.updated_at),
            d1::opt_int(r.deleted_at),
            opt_text(r.spec.release.as_ref().map(|b| b.template_id.as_str())),
            opt_text(r.spec.release.as_ref().map(|b| b.release_id.as_str())),
        ],
    )
}

/// Inserts one event unless it is there already.
pub fn insert_event(
    env: &Env,
    session_id: &str,
    e: &EventRecord,
) -> ApiResult<D1PreparedStatement> {
    let db = d1::db(env)?;
    d1::stmt(
        &db,
        "INSERT OR IGNORE INTO session_events (session_id, seq, from_state, to_state, command, actor, reason, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        &[
            text(session_id),
            int(e.seq),
            text(e.from_state.as_str()),
            text(e.to_state.as_str()),
            opt_text(e.command.as_deref()),
            text(&e.actor),
            text(&e.reason),
            int(e.at),
        ],
    )
}

/// A live (not deleted) session; who may see it is the caller's business.
pub async fn find_live(env: &Env, id: &str) -> ApiResult<Option<SessionRecord>> {
    let db = d1::db(env)?;
    let row: Option<SessionRow> = d1::first(
        &db,
        &format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1 AND deleted_at IS NULL"),
        &[text(id)],
    )
    .await?;
    row.map(SessionRow::into_record).transpose()
}

/// The owner of a session, deleted or not.
pub async fn owner_of(env: &Env, id: &str) -> ApiResult<Option<String>> {
    #[derive(Deserialize)]
    struct Row {
        owner_id: String,
    }
    let db = d1::db(env)?;
    let row: Option<Row> = d1::first(
        &db,
        "SELECT owner_id FROM sessions WHERE id = ?1",
        &[text(id)],
    )
    .await?;
    Ok(row.map(|r| r.owner_id))
}

/// Live sessions that are `sleeping`, longest asleep first (at most `limit`).
pub async fn sleeping(env: &Env, limit: u32) -> ApiResult<Vec<SessionRecord>> {
    let db = d1::db(env)?;
    let rows: Vec<SessionRow> = d1::all(
        &db,
        &format!(
            "SELECT {COLUMNS} FROM sessions WHERE state = 'sleeping' AND deleted_at IS NULL \
             ORDER BY updated_at LIMIT ?1"
        ),
        &[int(i64::from(limit))],
    )
    .await?;
    rows.into_iter().map(SessionRow::into_record).collect()
}

pub use super::After;

/// Filters of a session list: `owner_id` (one owner's sessions) or, with a
/// workspace and no owner, every session of the workspace.
pub struct ListFilter<'a> {
    pub owner_id: Option<&'a str>,
    pub workspace_id: Option<&'a str>,
    pub name: Option<&'a str>,
    pub after: Option<After>,
    pub limit: u32,
}

/// Live sessions matching the filter, oldest first.
pub async fn list(env: &Env, f: &ListFilter<'_>) -> ApiResult<Vec<SessionRecord>> {
    let db = d1::db(env)?;
    let (after_at, after_id) = f
        .after
        .as_ref()
        .map_or((-1, String::new()), |a| (a.created_at, a.id.clone()));
    let rows: Vec<SessionRow> = d1::all(
        &db,
        &format!(
            "SELECT {COLUMNS} FROM sessions WHERE (?1 IS NULL OR owner_id = ?1) AND deleted_at IS NULL \
             AND (?2 IS NULL OR workspace_id = ?2) AND (?3 IS NULL OR name = ?3) \
             AND (created_at > ?4 OR (created_at = ?4 AND id > ?5)) \
             ORDER BY created_at, id LIMIT ?6"
        ),
        &[
            opt_text(f.owner_id),
            opt_text(f.workspace_id),
            opt_text(f.name),
            int(after_at),
            text(&after_id),
            int(i64::from(f.limit)),
        ],
    )
    .await?;
    rows.into_iter().map(SessionRow::into_record).collect()
}

/// The session's events in order, after `after_seq`.
pub async fn events(
    env: &Env,
    id: &str,
    after_seq: i64,
    limit: u32,
) -> ApiResult<Vec<EventRecord>> {
    let db = d1::db(env)?;
    #[derive(Deserialize)]
    struct Row {
        seq: i64,
        from_state: String,
        to_state: String,
        command: Option<String>,
        actor: String,
        reason: String,
        at: i64,
    }
    let rows: Vec<Row> = d1::all(
        &db,
        "SELECT seq, from_state, to_state, command, actor, reason, at FROM session_events \
         WHERE session_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        &[text(id), int(after_seq), int(i64::from(limit))],
    )
    .await?;
    rows.into_iter()
        .map(|r| {
            let bad = |_| ApiError::internal(format!("session {id} event {}: bad state", r.seq));
            Ok(EventRecord {
                seq: r.seq,
                from_state: r.from_state.parse().map_err(bad)?,
                to_state: r.to_state.parse().map_err(bad)?,
                command: r.command.clone(),
                actor: r.actor.clone(),
                reason: r.reason.clone(),
                at: r.at,
            })
        })
        .collect()
}

//! `workspaces`, `workspace_members` and `workspace_invites`.
//!
//! Membership changes that could remove the last owner are single guarded
//! statements (`… AND (SELECT COUNT(*) … role = 'owner') > 1`), so two
//! concurrent demotions cannot both succeed.

use serde::Deserialize;
use worker::{D1PreparedStatement, Env};

use super::After;
use super::d1::{self, int, text};
use crate::error::ApiResult;

/// A workspace as seen by one member.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkspaceRow {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub kind: String,
    pub settings_json: String,
    pub created_at: i64,
    pub role: String,
    pub member_count: i64,
    pub owners: i64,
}

const WS_COLUMNS: &str = "w.id, w.slug, w.name, w.kind, w.settings_json, w.created_at, m.role, \
    (SELECT COUNT(*) FROM workspace_members c WHERE c.workspace_id = w.id) AS member_count, \
    (SELECT COUNT(*) FROM workspace_members o WHERE o.workspace_id = w.id AND o.role = 'owner') AS owners";

/// The workspace `id` if `user_id` is a member of it.
pub async fn find_for_member(
    env: &Env,
    id: &str,
    user_id: &str,
) -> ApiResult<Option<WorkspaceRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!(
            "SELECT {WS_COLUMNS} FROM workspaces w JOIN workspace_members m \
             ON m.workspace_id = w.id AND m.user_id = ?2 WHERE w.id = ?1"
        ),
        &[text(id), text(user_id)],
    )
    .await
}

/// Every workspace of the user, personal first, then by name.
pub async fn list_for_member(env: &Env, user_id: &str) -> ApiResult<Vec<WorkspaceRow>> {
    let db = d1::db(env)?;
    d1::all(
        &db,
        &format!(
            "SELECT {WS_COLUMNS} FROM workspaces w JOIN workspace_members m \
             ON m.workspace_id = w.id AND m.user_id = ?1 \
             ORDER BY w.kind = 'personal' DESC, w.name, w.id"
        ),
        &[text(user_id)],
    )
    .await
}

/// Statements creating a team workspace owned by `owner_id`.
pub fn insert_team(
    env: &Env,
    id: &str,
    slug: &str,
    name: &str,
    owner_id: &str,
    now: i64,
) -> ApiResult<Vec<D1PreparedStatement>> {
    let db = d1::db(env)?;
    Ok(vec![
        d1::stmt(
            &db,
            "INSERT INTO workspaces (id, slug, name, kind, created_at, updated_at) \
             VALUES (?1, ?2, ?3, 'team', ?4, ?4)",
            &[text(id), text(slug), text(name), int(now)],
        )?,
        d1::stmt(
            &db,
            "INSERT INTO workspace_members (workspace_id, user_id, role, created_at) VALUES (?1, ?2, 'owner', ?3)",
            &[text(id), text(owner_id), int(now)],
        )?,
    ])
}

pub async fn rename(env: &Env, id: &str, name: &str, now: i64) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE workspaces SET name = ?2, updated_at = ?3 WHERE id = ?1",
        &[text(id), text(name), int(now)],
    )
    .await?;
    Ok(())
}

/// A workspace's settings (defaults when it has none or they do not parse).
pub async fn settings(
    env: &Env,
    id: &str,
) -> ApiResult<burstflare_api::identity::WorkspaceSettings> {
    #[derive(Deserialize)]
    struct Row {
        settings_json: String,
    }
    let db = d1::db(env)?;
    let row: Option<Row> = d1::first(
        &db,
        "SELECT settings_json FROM workspaces WHERE id = ?1",
        &[text(id)],
    )
    .await?;
    Ok(row
        .and_then(|r| serde_json::from_str(&r.settings_json).ok())
        .unwrap_or_default())
}

pub async fn save_settings(env: &Env, id: &str, json: &str, now: i64) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE workspaces SET settings_json = ?2, updated_at = ?3 WHERE id = ?1",
        &[text(id), text(json), int(now)],
    )
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
pub struct MemberRow {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub created_at: i64,
}

const MEMBER_COLUMNS: &str = "m.user_id, u.email, u.display_name, m.role, m.created_at";

pub async fn members(env: &Env, workspace_id: &str) -> ApiResult<Vec<MemberRow>> {
    let db = d1::db(env)?;
    d1::all(
        &db,
        &format!(
            "SELECT {MEMBER_COLUMNS} FROM workspace_members m JOIN users u ON u.id = m.user_id \
             WHERE m.workspace_id = ?1 ORDER BY m.created_at, m.user_id"
        ),
        &[text(workspace_id)],
    )
    .await
}

pub async fn member(env: &Env, workspace_id: &str, user_id: &str) -> ApiResult<Option<MemberRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!(
            "SELECT {MEMBER_COLUMNS} FROM workspace_members m JOIN users u ON u.id = m.user_id \
             WHERE m.workspace_id = ?1 AND m.user_id = ?2"
        ),
        &[text(workspace_id), text(user_id)],
    )
    .await
}

pub async fn is_member_by_email(env: &Env, workspace_id: &str, email: &str) -> ApiResult<bool> {
    let db = d1::db(env)?;
    let row: Option<serde_json::Value> = d1::first(
        &db,
        "SELECT 1 AS found FROM workspace_members m JOIN users u ON u.id = m.user_id \
         WHERE m.workspace_id = ?1 AND u.email = ?2",
        &[text(workspace_id), text(email)],
    )
    .await?;
    Ok(row.is_some())
}

/// Guard appended to statements that may take away an owner.
const KEEPS_AN_OWNER: &str = "(m_role_is_owner = 0 OR (SELECT COUNT(*) FROM workspace_members o \
     WHERE o.workspace_id = ?1 AND o.role = 'owner') > 1)";

/// Changes a member's role; 0 rows when it would remove the last owner.
pub async fn set_role(
    env: &Env,
    workspace_id: &str,
    user_id: &str,
    role: &str,
    demotes_owner: bool,
) -> ApiResult<usize> {
    let db = d1::db(env)?;
    let guard = KEEPS_AN_OWNER.replace("m_role_is_owner", "?4");
    d1::execute(
        &db,
        &format!(
            "UPDATE workspace_members SET role = ?3 WHERE workspace_id = ?1 AND user_id = ?2 AND {guard}"
        ),
        &[
            text(workspace_id),
            text(user_id),
            text(role),
            int(i64::from(demotes_owner)),
        ],
    )
    .await
}

/// Removes a member; 0 rows when it would remove the last owner.
pub async fn remove(
    env: &Env,
    workspace_id: &str,
    user_id: &str,
    is_owner: bool,
) -> ApiResult<usize> {
    let db = d1::db(env)?;
    let guard = KEEPS_AN_OWNER.replace("m_role_is_owner", "?3");
    d1::execute(
        &db,
        &format!(
            "DELETE FROM workspace_members WHERE workspace_id = ?1 AND user_id = ?2 AND {guard}"
        ),
        &[text(workspace_id), text(user_id), int(i64::from(is_owner))],
    )
    .await
}

pub async fn add_member(
    env: &Env,
    workspace_id: &str,
    user_id: &str,
    role: &str,
    now: i64,
) -> ApiResult<usize> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "INSERT OR IGNORE INTO workspace_members (workspace_id, user_id, role, created_at) VALUES (?1, ?2, ?3, ?4)",
        &[text(workspace_id), text(user_id), text(role), int(now)],
    )
    .await
}

#[derive(Debug, Clone, Deserialize)]
pub struct InviteRow {
    pub id: String,
    pub workspace_id: String,
    pub email: String,
    pub role: String,
    pub invited_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const INVITE_COLUMNS: &str =
    "id, workspace_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at";

pub async fn insert_invite(env: &Env, r: &InviteRow, code_hash: &str) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "INSERT INTO workspace_invites (id, workspace_id, email, role, code_hash, invited_by, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        &[
            text(&r.id),
            text(&r.workspace_id),
            text(&r.email),
            text(&r.role),
            text(code_hash),
            text(&r.invited_by),
            int(r.created_at),
            int(r.expires_at),
        ],
    )
    .await?;
    Ok(())
}

pub async fn invites(
    env: &Env,
    workspace_id: &str,
    after: Option<&After>,
    limit: u32,
) -> ApiResult<Vec<InviteRow>> {
    let db = d1::db(env)?;
    let mut args = vec![text(workspace_id), int(i64::from(limit))];
    let keyset = super::and_after(after, &mut args);
    d1::all(
        &db,
        &format!(
            "SELECT {INVITE_COLUMNS} FROM workspace_invites WHERE workspace_id = ?1 {keyset} \
             ORDER BY created_at DESC, id DESC LIMIT ?2"
        ),
        &args,
    )
    .await
}

pub async fn invite(env: &Env, workspace_id: &str, id: &str) -> ApiResult<Option<InviteRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!(
            "SELECT {INVITE_COLUMNS} FROM workspace_invites WHERE id = ?1 AND workspace_id = ?2"
        ),
        &[text(id), text(workspace_id)],
    )
    .await
}

pub async fn invite_by_code(env: &Env, code_hash: &str) -> ApiResult<Option<InviteRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!("SELECT {INVITE_COLUMNS} FROM workspace_invites WHERE code_hash = ?1"),
        &[text(code_hash)],
    )
    .await
}

pub async fn revoke_invite(env: &Env, id: &str, now: i64) -> ApiResult<usize> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE workspace_invites SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL AND accepted_at IS NULL",
        &[text(id), int(now)],
    )
    .await
}

/// Marks a pending, unexpired invite accepted; 0 rows when it is not.
pub async fn accept_invite(env: &Env, id: &str, user_id: &str, now: i64) -> ApiResult<usize> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE workspace_invites SET accepted_at = ?3, accepted_by = ?2 \
         WHERE id = ?1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?3",
        &[text(id), text(user_id), int(now)],
    )
    .await
}

//! `users`, `workspaces` and `workspace_members`.

use burstflare_api::{User, WorkspaceKind, WorkspaceMembership, timestamp};
use serde::Deserialize;
use worker::{D1PreparedStatement, Env};

use super::d1::{self, int, text};
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Deserialize)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub created_at: i64,
    /// The user's personal workspace (where account-level actions are audited).
    #[serde(default)]
    pub personal_workspace_id: Option<String>,
}

impl UserRow {
    pub fn to_api(&self) -> ApiResult<User> {
        Ok(User {
            id: self
                .id
                .parse()
                .map_err(|e| ApiError::internal(format!("stored user id: {e}")))?,
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            created_at: timestamp(self.created_at),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct MembershipRow {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub kind: String,
    pub role: String,
}

impl MembershipRow {
    pub fn to_api(&self) -> ApiResult<WorkspaceMembership> {
        let corrupt =
            |what: &str| ApiError::internal(format!("stored workspace {}: bad {what}", self.id));
        Ok(WorkspaceMembership {
            id: self.id.parse().map_err(|_| corrupt("id"))?,
            slug: self.slug.clone(),
            name: self.name.clone(),
            kind: match self.kind.as_str() {
                "personal" => WorkspaceKind::Personal,
                "team" => WorkspaceKind::Team,
                _ => return Err(corrupt("kind")),
            },
            role: self.role.parse().map_err(|_| corrupt("role"))?,
        })
    }
}

const USER_COLUMNS: &str = "u.id, u.email, u.display_name, u.created_at, \
    (SELECT w.id FROM workspaces w WHERE w.personal_owner_id = u.id) AS personal_workspace_id";

pub async fn find(env: &Env, id: &str) -> ApiResult<Option<UserRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?1"),
        &[text(id)],
    )
    .await
}

pub async fn find_by_email(env: &Env, email: &str) -> ApiResult<Option<UserRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.email = ?1"),
        &[text(email)],
    )
    .await
}

pub async fn email_exists(env: &Env, email: &str) -> ApiResult<bool> {
    let db = d1::db(env)?;
    let row: Option<serde_json::Value> = d1::first(
        &db,
        "SELECT 1 AS found FROM users WHERE email = ?1",
        &[text(email)],
    )
    .await?;
    Ok(row.is_some())
}

/// The new user, their personal workspace and its owner membership.
pub struct NewAccount<'a> {
    pub user_id: &'a str,
    pub email: &'a str,
    pub display_name: &'a str,
    pub workspace_id: &'a str,
    pub workspace_slug: &'a str,
    pub workspace_name: &'a str,
    pub now: i64,
}

/// Statements creating an account; run them in one batch with the first token.
pub fn insert_account(env: &Env, a: &NewAccount<'_>) -> ApiResult<Vec<D1PreparedStatement>> {
    let db = d1::db(env)?;
    Ok(vec![
        d1::stmt(
            &db,
            "INSERT INTO users (id, email, display_name, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            &[
                text(a.user_id),
                text(a.email),
                text(a.display_name),
                int(a.now),
            ],
        )?,
        d1::stmt(
            &db,
            "INSERT INTO workspaces (id, slug, name, kind, personal_owner_id, created_at, updated_at) \
             VALUES (?1, ?2, ?3, 'personal', ?4, ?5, ?5)",
            &[
                text(a.workspace_id),
                text(a.workspace_slug),
                text(a.workspace_name),
                text(a.user_id),
                int(a.now),
            ],
        )?,
        d1::stmt(
            &db,
            "INSERT INTO workspace_members (workspace_id, user_id, role, created_at) VALUES (?1, ?2, 'owner', ?3)",
            &[text(a.workspace_id), text(a.user_id), int(a.now)],
        )?,
    ])
}

/// The user's workspaces with their role, personal first, then by name.
pub async fn memberships(env: &Env, user_id: &str) -> ApiResult<Vec<MembershipRow>> {
    let db = d1::db(env)?;
    d1::all(
        &db,
        "SELECT w.id, w.slug, w.name, w.kind, m.role FROM workspace_members m \
         JOIN workspaces w ON w.id = m.workspace_id WHERE m.user_id = ?1 \
         ORDER BY w.kind = 'personal' DESC, w.name, w.id",
        &[text(user_id)],
    )
    .await
}

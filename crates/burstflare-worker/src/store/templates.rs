//! `templates` and `template_versions`; bundle objects in R2 under
//! `templates/{template_id}/` (see [`bundle_key`]).

use serde::Deserialize;
use worker::Env;

use super::d1::{self, int, opt_int, opt_text, text};
use crate::error::ApiResult;

#[derive(Debug, Clone, Deserialize)]
pub struct TemplateRow {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub description: String,
    pub active_release_id: Option<String>,
    pub archived_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default)]
    pub latest_version: Option<i64>,
}

const COLUMNS: &str = "t.id, t.workspace_id, t.name, t.description, t.active_release_id, t.archived_at, \
    t.created_by, t.created_at, t.updated_at, \
    (SELECT MAX(v.number) FROM template_versions v WHERE v.template_id = t.id) AS latest_version";

/// Every R2 object of a template lives under this prefix.
pub fn r2_prefix(template_id: &str) -> String {
    format!("templates/{template_id}/")
}

/// The R2 key of a version's bundle.
pub fn bundle_key(template_id: &str, version_id: &str) -> String {
    format!("{}bundles/{version_id}.tar.gz", r2_prefix(template_id))
}

pub async fn insert(env: &Env, r: &TemplateRow) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "INSERT INTO templates (id, workspace_id, name, description, created_by, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        &[
            text(&r.id),
            text(&r.workspace_id),
            text(&r.name),
            text(&r.description),
            text(&r.created_by),
            int(r.created_at),
        ],
    )
    .await?;
    Ok(())
}

pub async fn find(env: &Env, id: &str) -> ApiResult<Option<TemplateRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!("SELECT {COLUMNS} FROM templates t WHERE t.id = ?1"),
        &[text(id)],
    )
    .await
}

pub async fn find_by_name(
    env: &Env,
    workspace_id: &str,
    name: &str,
) -> ApiResult<Option<TemplateRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!("SELECT {COLUMNS} FROM templates t WHERE t.workspace_id = ?1 AND t.name = ?2"),
        &[text(workspace_id), text(name)],
    )
    .await
}

/// Templates of the caller's workspaces (or of one), by name.
pub async fn list(
    env: &Env,
    user_id: &str,
    workspace_id: Option<&str>,
) -> ApiResult<Vec<TemplateRow>> {
    let db = d1::db(env)?;
    d1::all(
        &db,
        &format!(
            "SELECT {COLUMNS} FROM templates t JOIN workspace_members m \
             ON m.workspace_id = t.workspace_id AND m.user_id = ?1 \
             WHERE (?2 IS NULL OR t.workspace_id = ?2) ORDER BY t.name, t.id"
        ),
        &[text(user_id), opt_text(workspace_id)],
    )
    .await
}

pub async fn update(env: &Env, id: &str, name: &str, description: &str, now: i64) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE templates SET name = ?2, description = ?3, updated_at = ?4 WHERE id = ?1",
        &[text(id), text(name), text(description), int(now)],
    )
    .await?;
    Ok(())
}

pub async fn set_archived(
    env: &Env,
    id: &str,
    archived_at: Option<i64>,
    now: i64,
) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE templates SET archived_at = ?2, updated_at = ?3 WHERE id = ?1",
        &[text(id), opt_int(archived_at), int(now)],
    )
    .await?;
    Ok(())
}

/// Deletes the template's rows (versions, builds, releases cascade).
pub async fn delete(env: &Env, id: &str) -> ApiResult<()> {
    let db = d1::db(env)?;
    let stmts = [
        "DELETE FROM release_activations WHERE template_id = ?1",
        "DELETE FROM releases WHERE template_id = ?1",
        "DELETE FROM build_attempts WHERE build_id IN (SELECT id FROM builds WHERE template_id = ?1)",
        "DELETE FROM builds WHERE template_id = ?1",
        "DELETE FROM template_versions WHERE template_id = ?1",
        "DELETE FROM templates WHERE id = ?1",
    ]
    .iter()
    .map(|sql| d1::stmt(&db, sql, &[text(id)]))
    .collect::<ApiResult<Vec<_>>>()?;
    db.batch(stmts)
        .await
        .map_err(|e| d1::failed("delete template", e))?;
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
pub struct VersionRow {
    pub id: String,
    pub template_id: String,
    pub number: i64,
    pub source: String,
    pub manifest_json: String,
    pub manifest_hash: String,
    pub warnings_json: String,
    pub bundle_digest: Option<String>,
    pub bundle_size: Option<i64>,
    pub bundle_uploaded_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
}

const VERSION_COLUMNS: &str = "id, template_id, number, source, manifest_json, manifest_hash, warnings_json, \
    bundle_digest, bundle_size, bundle_uploaded_at, created_by, created_at";

/// Inserts the next version number atomically; yields the number.
pub async fn insert_version(env: &Env, r: &VersionRow) -> ApiResult<Option<VersionRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!(
            "INSERT INTO template_versions (id, template_id, number, source, manifest_json, manifest_hash, \
             warnings_json, created_by, created_at) \
             SELECT ?1, ?2, COALESCE(MAX(number), 0) + 1, ?3, ?4, ?5, ?6, ?7, ?8 \
             FROM template_versions WHERE template_id = ?2 RETURNING {VERSION_COLUMNS}"
        ),
        &[
            text(&r.id),
            text(&r.template_id),
            text(&r.source),
            text(&r.manifest_json),
            text(&r.manifest_hash),
            text(&r.warnings_json),
            text(&r.created_by),
            int(r.created_at),
        ],
    )
    .await
}

pub async fn versions(env: &Env, template_id: &str) -> ApiResult<Vec<VersionRow>> {
    let db = d1::db(env)?;
    d1::all(
        &db,
        &format!(
            "SELECT {VERSION_COLUMNS} FROM template_versions WHERE template_id = ?1 ORDER BY number DESC"
        ),
        &[text(template_id)],
    )
    .await
}

pub async fn version(env: &Env, template_id: &str, id: &str) -> ApiResult<Option<VersionRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!(
            "SELECT {VERSION_COLUMNS} FROM template_versions WHERE id = ?1 AND template_id = ?2"
        ),
        &[text(id), text(template_id)],
    )
    .await
}

/// Finds a version by id alone (upload grants name only the version).
pub async fn version_by_id(env: &Env, id: &str) -> ApiResult<Option<VersionRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!("SELECT {VERSION_COLUMNS} FROM template_versions WHERE id = ?1"),
        &[text(id)],
    )
    .await
}

pub async fn set_bundle(env: &Env, id: &str, digest: &str, size: i64, now: i64) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE template_versions SET bundle_digest = ?2, bundle_size = ?3, bundle_uploaded_at = ?4 WHERE id = ?1",
        &[text(id), text(digest), int(size), int(now)],
    )
    .await?;
    Ok(())
}

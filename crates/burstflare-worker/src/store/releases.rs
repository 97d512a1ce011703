//! `releases` and `release_activations`; the template's `active_release_id`.

use serde::Deserialize;
use worker::Env;

use super::d1::{self, int, opt_text, text};
use crate::error::ApiResult;

#[derive(Debug, Clone, Deserialize)]
pub struct ReleaseRow {
    pub id: String,
    pub template_id: String,
    pub build_id: String,
    pub number: i64,
    pub spec_json: String,
    pub created_by: String,
    pub created_at: i64,
}

const COLUMNS: &str = "id, template_id, build_id, number, spec_json, created_by, created_at";

/// Inserts a release (next number) and activates it, with its activation
/// record, in one batch.
pub async fn create_and_activate(
    env: &Env,
    r: &ReleaseRow,
    activation_id: &str,
    previous: Option<&str>,
) -> ApiResult<()> {
    let db = d1::db(env)?;
    let stmts = vec![
        d1::stmt(
            &db,
            "INSERT INTO releases (id, template_id, build_id, number, spec_json, created_by, created_at) \
             SELECT ?1, ?2, ?3, COALESCE(MAX(number), 0) + 1, ?4, ?5, ?6 FROM releases WHERE template_id = ?2",
            &[
                text(&r.id),
                text(&r.template_id),
                text(&r.build_id),
                text(&r.spec_json),
                text(&r.created_by),
                int(r.created_at),
            ],
        )?,
        activate_stmt(&db, &r.template_id, &r.id, r.created_at)?,
        d1::stmt(
            &db,
            "INSERT INTO release_activations (id, template_id, release_id, previous_release_id, kind, actor_id, created_at) \
             VALUES (?1, ?2, ?3, ?4, 'promote', ?5, ?6)",
            &[
                text(activation_id),
                text(&r.template_id),
                text(&r.id),
                opt_text(previous),
                text(&r.created_by),
                int(r.created_at),
            ],
        )?,
    ];
    db.batch(stmts)
        .await
        .map_err(|e| d1::failed("promote release", e))?;
    Ok(())
}

fn activate_stmt(
    db: &worker::D1Database,
    template_id: &str,
    release_id: &str,
    now: i64,
) -> ApiResult<worker::D1PreparedStatement> {
    d1::stmt(
        db,
        "UPDATE templates SET active_release_id = ?2, updated_at = ?3 WHERE id = ?1",
        &[text(template_id), text(release_id), int(now)],
    )
}

/// Makes an earlier release active again and records the rollback.
pub async fn rollback(
    env: &Env,
    template_id: &str,
    release_id: &str,
    previous: Option<&str>,
    activation_id: &str,
    actor: &str,
    now: i64,
) -> ApiResult<()> {
    let db = d1::db(env)?;
    let stmts = vec![
        activate_stmt(&db, template_id, release_id, now)?,
        d1::stmt(
            &db,
            "INSERT INTO release_activations (id, template_id, release_id, previous_release_id, kind, actor_id, created_at) \
             VALUES (?1, ?2, ?3, ?4, 'rollback', ?5, ?6)",
            &[
                text(activation_id),
                text(template_id),
                text(release_id),
                opt_text(previous),
                text(actor),
                int(now),
            ],
        )?,
    ];
    db.batch(stmts)
        .await
        .map_err(|e| d1::failed("rollback release", e))?;
    Ok(())
}

pub async fn find(env: &Env, template_id: &str, id: &str) -> ApiResult<Option<ReleaseRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!("SELECT {COLUMNS} FROM releases WHERE id = ?1 AND template_id = ?2"),
        &[text(id), text(template_id)],
    )
    .await
}

pub async fn list(env: &Env, template_id: &str) -> ApiResult<Vec<ReleaseRow>> {
    let db = d1::db(env)?;
    d1::all(
        &db,
        &format!("SELECT {COLUMNS} FROM releases WHERE template_id = ?1 ORDER BY number DESC"),
        &[text(template_id)],
    )
    .await
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActivationRow {
    pub release_id: String,
    pub previous_release_id: Option<String>,
    pub kind: String,
    pub actor_id: String,
    pub created_at: i64,
}

pub async fn activations(env: &Env, template_id: &str) -> ApiResult<Vec<ActivationRow>> {
    let db = d1::db(env)?;
    d1::all(
        &db,
        "SELECT release_id, previous_release_id, kind, actor_id, created_at FROM release_activations \
         WHERE template_id = ?1 ORDER BY created_at DESC, id DESC",
        &[text(template_id)],
    )
    .await
}

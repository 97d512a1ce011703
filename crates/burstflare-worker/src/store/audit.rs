//! `audit_events`: one row per mutating API request.

use serde::Deserialize;
use worker::Env;

use super::After;
use super::d1::{self, int, opt_text, text};
use crate::error::ApiResult;

#[derive(Debug, Clone, Deserialize)]
pub struct AuditRow {
    pub id: String,
    pub workspace_id: Option<String>,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    pub status: i64,
    pub error_code: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: String,
    pub created_at: i64,
}

const COLUMNS: &str = "id, workspace_id, actor_id, action, target_type, target_id, outcome, status, \
                       error_code, ip, user_agent, request_id, created_at";

pub async fn insert(env: &Env, r: &AuditRow) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        &format!(
            "INSERT INTO audit_events ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        &[
            text(&r.id),
            opt_text(r.workspace_id.as_deref()),
            opt_text(r.actor_id.as_deref()),
            text(&r.action),
            opt_text(r.target_type.as_deref()),
            opt_text(r.target_id.as_deref()),
            text(&r.outcome),
            int(r.status),
            opt_text(r.error_code.as_deref()),
            opt_text(r.ip.as_deref()),
            opt_text(r.user_agent.as_deref()),
            text(&r.request_id),
            int(r.created_at),
        ],
    )
    .await?;
    Ok(())
}

/// Filters of an audit listing.
pub struct Filter<'a> {
    pub workspace_id: &'a str,
    pub action: Option<&'a str>,
    pub actor_id: Option<&'a str>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub after: Option<After>,
    pub limit: u32,
}

/// A workspace's records, newest first.
pub async fn list(env: &Env, f: &Filter<'_>) -> ApiResult<Vec<AuditRow>> {
    let db = d1::db(env)?;
    let mut args = vec![text(f.workspace_id), int(i64::from(f.limit))];
    let mut clauses = vec!["workspace_id = ?1".to_owned()];
    let mut bind =
        |clause: &str, v: wasm_bindgen::JsValue, args: &mut Vec<wasm_bindgen::JsValue>| {
            args.push(v);
            clauses.push(clause.replace('?', &format!("?{}", args.len())));
        };
    if let Some(a) = f.action {
        // `session.*` selects every session action.
        match a.strip_suffix('*') {
            Some(prefix) => bind("substr(action, 1, length(?)) = ?", text(prefix), &mut args),
            None => bind("action = ?", text(a), &mut args),
        }
    }
    if let Some(a) = f.actor_id {
        bind("actor_id = ?", text(a), &mut args);
    }
    if let Some(t) = f.since {
        bind("created_at >= ?", int(t), &mut args);
    }
    if let Some(t) = f.until {
        bind("created_at < ?", int(t), &mut args);
    }
    if let Some(a) = &f.after {
        let clause = a.newest_first_clause(&mut args);
        clauses.push(clause);
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_events WHERE {} ORDER BY created_at DESC, id DESC LIMIT ?2",
        clauses.join(" AND ")
    );
    d1::all(&db, &sql, &args).await
}

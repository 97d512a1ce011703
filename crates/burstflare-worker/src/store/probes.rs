//! `diagnostic_probes` and the probe's R2 objects (`diagnostics/probes/{id}`).

use serde::Deserialize;
use worker::Env;

use super::d1::{self, int, text};
use crate::error::ApiResult;

/// R2 key of a probe's object.
pub fn r2_key(probe_id: &str) -> String {
    format!("diagnostics/probes/{probe_id}")
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProbeRow {
    pub dead_letter: i64,
    pub created_at: i64,
    pub r2_at: Option<i64>,
    pub r2_detail: Option<String>,
    pub durable_object_at: Option<i64>,
    pub durable_object_detail: Option<String>,
    pub build_queue_at: Option<i64>,
    pub build_queue_attempts: i64,
    pub reconcile_queue_at: Option<i64>,
    pub dead_letter_at: Option<i64>,
    pub workflow_at: Option<i64>,
    pub workflow_detail: Option<String>,
}

pub async fn insert(
    env: &Env,
    id: &str,
    user_id: &str,
    dead_letter: bool,
    now: i64,
) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "INSERT INTO diagnostic_probes (id, user_id, dead_letter, created_at) VALUES (?1, ?2, ?3, ?4)",
        &[text(id), text(user_id), int(i64::from(dead_letter)), int(now)],
    )
    .await?;
    Ok(())
}

pub async fn find_for_user(env: &Env, user_id: &str, id: &str) -> ApiResult<Option<ProbeRow>> {
    let db = d1::db(env)?;
    d1::first(&db, "SELECT dead_letter, created_at, r2_at, r2_detail, durable_object_at, durable_object_detail, \
         build_queue_at, build_queue_attempts, reconcile_queue_at, dead_letter_at, workflow_at, workflow_detail \
         FROM diagnostic_probes WHERE id = ?1 AND user_id = ?2", &[text(id), text(user_id)])
        .await
}

/// A stage a probe can reach; each maps to a `*_at` column (and maybe a detail).
#[derive(Debug, Clone, Copy)]
pub enum Mark {
    R2,
    DurableObject,
    BuildQueue,
    ReconcileQueue,
    DeadLetter,
    Workflow,
}

/// Records that a stage was reached. Only the first time counts, so a replayed
/// message or workflow step leaves the row as it was.
pub async fn mark(
    env: &Env,
    id: &str,
    stage: Mark,
    at: i64,
    detail: Option<&str>,
) -> ApiResult<()> {
    let (at_col, detail_col) = match stage {
        Mark::R2 => ("r2_at", Some("r2_detail")),
        Mark::DurableObject => ("durable_object_at", Some("durable_object_detail")),
        Mark::BuildQueue => ("build_queue_at", None),
        Mark::ReconcileQueue => ("reconcile_queue_at", None),
        Mark::DeadLetter => ("dead_letter_at", None),
        Mark::Workflow => ("workflow_at", Some("workflow_detail")),
    };
    let db = d1::db(env)?;
    match detail_col {
        Some(col) => {
            let sql = format!(
                "UPDATE diagnostic_probes SET {at_col} = ?2, {col} = ?3 WHERE id = ?1 AND {at_col} IS NULL"
            );
            d1::execute(
                &db,
                &sql,
                &[text(id), int(at), text(detail.unwrap_or_default())],
            )
            .await?;
        }
        None => {
            let sql = format!(
                "UPDATE diagnostic_probes SET {at_col} = ?2 WHERE id = ?1 AND {at_col} IS NULL"
            );
            d1::execute(&db, &sql, &[text(id), int(at)]).await?;
        }
    }
    Ok(())
}

/// Counts one delivery of the probe's build-queue message; returns the new count.
pub async fn count_build_attempt(env: &Env, id: &str) -> ApiResult<i64> {
    let db = d1::db(env)?;
    #[derive(Deserialize)]
    struct Attempts {
        build_queue_attempts: i64,
    }
    let row: Option<Attempts> = d1::first(
        &db,
        "UPDATE diagnostic_probes SET build_queue_attempts = build_queue_attempts + 1 WHERE id = ?1 \
         RETURNING build_queue_attempts",
        &[text(id)],
    )
    .await?;
    Ok(row.map_or(0, |r| r.build_queue_attempts))
}

/// Ids of probes created before `cutoff`, oldest first, at most `limit`.
pub async fn older_than(env: &Env, cutoff: i64, limit: u32) -> ApiResult<Vec<String>> {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let db = d1::db(env)?;
    let rows: Vec<Id> = d1::all(
        &db,
        "SELECT id FROM diagnostic_probes WHERE created_at < ?1 ORDER BY created_at LIMIT ?2",
        &[int(cutoff), int(i64::from(limit))],
    )
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

pub async fn delete(env: &Env, id: &str) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "DELETE FROM diagnostic_probes WHERE id = ?1",
        &[text(id)],
    )
    .await?;
    Ok(())
}

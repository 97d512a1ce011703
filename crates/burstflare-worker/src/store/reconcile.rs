//! `reconcile_runs`: one row per finished reconcile sweep.

use burstflare_api::ops::ReconcileRun;
use burstflare_api::timestamp;
use serde::Deserialize;
use worker::Env;

use super::d1::{self, int, text};
use crate::error::ApiResult;

#[derive(Debug, Clone, Deserialize)]
struct RunRow {
    id: String,
    trigger: String,
    started_at: i64,
    finished_at: i64,
    probes_purged: i64,
}

pub async fn record(env: &Env, run: &ReconcileRunInsert<'_>) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "INSERT INTO reconcile_runs (id, trigger, started_at, finished_at, probes_purged) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
        &[
            text(run.id),
            text(run.trigger),
            int(run.started_at),
            int(run.finished_at),
            int(run.probes_purged),
        ],
    )
    .await?;
    Ok(())
}

pub struct ReconcileRunInsert<'a> {
    pub id: &'a str,
    pub trigger: &'a str,
    pub started_at: i64,
    pub finished_at: i64,
    pub probes_purged: i64,
}

pub async fn latest(env: &Env) -> ApiResult<Option<ReconcileRun>> {
    let db = d1::db(env)?;
    let row: Option<RunRow> = d1::first(
        &db,
        "SELECT id, trigger, started_at, finished_at, probes_purged FROM reconcile_runs \
         ORDER BY finished_at DESC LIMIT 1",
        &[],
    )
    .await?;
    Ok(row.map(|r| ReconcileRun {
        id: r.id,
        trigger: r.trigger,
        started_at: timestamp(r.started_at),
        finished_at: timestamp(r.finished_at),
        probes_purged: u32::try_from(r.probes_purged).unwrap_or(u32::MAX),
    }))
}

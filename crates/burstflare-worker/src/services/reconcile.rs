//! The reconcile sweep, run by the reconcile-queue consumer.
//!
//! The cron trigger only enqueues a sweep; the consumer does the work, so a
//! sweep that fails is retried by the queue. Every step is idempotent: the
//! run is recorded under the id the trigger chose, and purging an already
//! purged probe is a no-op. The sweep also deletes expired identity rows
//! ([`identity_cleanup`]). Later issues add session and build reconciliation.

use crate::error::ApiResult;
use crate::platform::{self, BUCKET};
use crate::store::{identity_cleanup, probes, reconcile};
use worker::Env;

/// Diagnostics probes are kept this long.
pub const PROBE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
/// At most this many probes are purged per sweep; the rest wait for the next one.
const PURGE_BATCH: u32 = 100;

pub async fn sweep(env: &Env, run_id: &str, trigger: &str) -> ApiResult<()> {
    let started_at = platform::now();
    let ids = probes::older_than(env, started_at - PROBE_RETENTION_MS, PURGE_BATCH).await?;
    let bucket = env.bucket(BUCKET)?;
    for id in &ids {
        // Object first: a crash in between leaves a row that the next sweep retries.
        bucket.delete(probes::r2_key(id)).await?;
        probes::delete(env, id).await?;
    }
    let purged = identity_cleanup::purge(env, started_at).await?;
    let redispatched = super::builds::redispatch_stuck(env, started_at).await?;
    let expired = super::sessions::expire_sleeping(env, started_at).await?;
    if expired > 0 {
        worker::console_log!(
            "reconcile {run_id}: deleted {expired} sessions asleep past their retention"
        );
    }
    if redispatched > 0 {
        worker::console_log!("reconcile {run_id}: redispatched {redispatched} stuck builds");
    }
    worker::console_log!(
        "reconcile {run_id}: purged {} challenges, {} device authorizations, {} access tokens, {} auth sessions",
        purged.challenges,
        purged.device_authorizations,
        purged.access_tokens,
        purged.auth_sessions
    );
    reconcile::record(
        env,
        &reconcile::ReconcileRunInsert {
            id: run_id,
            trigger,
            started_at,
            finished_at: platform::now(),
            probes_purged: ids.len() as i64,
        },
    )
    .await
}

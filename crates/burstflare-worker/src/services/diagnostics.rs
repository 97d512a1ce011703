//! Diagnostics probes: one request that exercises every platform binding.
//!
//! Creating a probe writes D1, round-trips an object through R2, pings a
//! `SessionCoordinator` Durable Object, enqueues a message on each queue and
//! starts a `BuildWorkflow` instance. The asynchronous stages (queue
//! consumers, the workflow step, the dead-letter consumer) record themselves
//! on the probe's D1 row; `GET` shows how far it has got. Operators use it to
//! check a deployment end to end; the test suite uses it to prove every binding.

use burstflare_api::ops::{
    CreateProbeRequest, Probe, ProbeStage, ProbeStageName, ProbeStageStatus,
};
use burstflare_api::{ErrorCode, timestamp};
use burstflare_domain::ProbeId;

use super::{new_id, parse_id};
use crate::auth::Caller;
use crate::durable;
use crate::error::{ApiError, ApiResult};
use crate::queues::{self, BuildMessage, ReconcileMessage};
use crate::routes::Ctx;
use crate::store::probes::{self, Mark, ProbeRow};
use crate::workflow;

pub async fn create(ctx: &Ctx, caller: &Caller, req: CreateProbeRequest) -> ApiResult<Probe> {
    let id = new_id(ProbeId::from_random)?;
    let env = &ctx.env;
    probes::insert(env, id.as_str(), &caller.user.id, req.dead_letter, ctx.now).await?;

    let payload = format!("burstflare probe {id} at {}", ctx.now);
    let bucket = env.bucket(crate::platform::BUCKET)?;
    let key = probes::r2_key(id.as_str());
    bucket
        .put(&key, payload.clone().into_bytes())
        .execute()
        .await?;
    let object = bucket.get(&key).execute().await?;
    let read = match object.as_ref().and_then(|o| o.body()) {
        Some(body) => body.bytes().await?,
        None => Vec::new(),
    };
    if read != payload.as_bytes() {
        return Err(ApiError::internal(format!(
            "R2 round trip of {key} returned {} bytes",
            read.len()
        )));
    }
    probes::mark(
        env,
        id.as_str(),
        Mark::R2,
        crate::platform::now(),
        Some(&format!("wrote and read back {} bytes", read.len())),
    )
    .await?;

    let ping = durable::ping(env, &format!("diagnostics:{}", caller.user.id), true).await?;
    probes::mark(
        env,
        id.as_str(),
        Mark::DurableObject,
        crate::platform::now(),
        Some(&format!(
            "ping #{} answered by SessionCoordinator {}",
            ping.count, ping.object_id
        )),
    )
    .await?;

    queues::send_build(
        env,
        &BuildMessage::Probe {
            probe_id: id.to_string(),
            dead_letter: req.dead_letter,
        },
        None,
    )
    .await?;
    queues::send_reconcile(
        env,
        &ReconcileMessage::Probe {
            probe_id: id.to_string(),
        },
    )
    .await?;
    workflow::start(
        env,
        id.as_str(),
        &workflow::Params::Probe {
            probe_id: id.to_string(),
        },
    )
    .await?;

    get(ctx, caller, id.as_str()).await
}

pub async fn get(ctx: &Ctx, caller: &Caller, id: &str) -> ApiResult<Probe> {
    let id: ProbeId = parse_id(id, "probe_id")?;
    let row = probes::find_for_user(&ctx.env, &caller.user.id, id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(ErrorCode::ProbeNotFound, "probe", id.as_str()))?;
    // The workflow stage is done when the step has run and the instance reports completion.
    let instance = workflow::status(&ctx.env, id.as_str())
        .await
        .unwrap_or_else(|e| format!("unknown ({})", e.message));
    Ok(render(row, id, &instance))
}

fn stage(name: ProbeStageName, at: Option<i64>, detail: Option<String>) -> ProbeStage {
    ProbeStage {
        name,
        status: if at.is_some() {
            ProbeStageStatus::Done
        } else {
            ProbeStageStatus::Pending
        },
        at: at.map(timestamp),
        detail,
    }
}

fn render(row: ProbeRow, id: ProbeId, workflow_status: &str) -> Probe {
    let dead_letter = row.dead_letter != 0;
    let attempts = row.build_queue_attempts;
    let build = if dead_letter {
        // Done once the queue gave up on the message, so the count is final.
        stage(
            ProbeStageName::BuildQueue,
            row.dead_letter_at,
            Some(format!(
                "delivered {attempts} time(s), rejected each time as requested"
            )),
        )
    } else {
        stage(
            ProbeStageName::BuildQueue,
            row.build_queue_at,
            Some(format!("consumed after {attempts} delivery(ies)")),
        )
    };
    let dlq = if dead_letter {
        stage(
            ProbeStageName::DeadLetterQueue,
            row.dead_letter_at,
            Some(format!("{attempts} delivery(ies) before dead-lettering")),
        )
    } else {
        ProbeStage {
            name: ProbeStageName::DeadLetterQueue,
            status: ProbeStageStatus::Skipped,
            at: None,
            detail: None,
        }
    };
    let workflow_done = row.workflow_at.filter(|_| workflow_status == "complete");
    let workflow_detail = Some(format!(
        "instance {}; {}",
        workflow_status,
        row.workflow_detail.as_deref().unwrap_or("step not run yet")
    ));
    let stages = vec![
        stage(
            ProbeStageName::D1,
            Some(row.created_at),
            Some("row written and read back".into()),
        ),
        stage(ProbeStageName::R2, row.r2_at, row.r2_detail),
        stage(
            ProbeStageName::DurableObject,
            row.durable_object_at,
            row.durable_object_detail,
        ),
        build,
        stage(ProbeStageName::ReconcileQueue, row.reconcile_queue_at, None),
        dlq,
        stage(ProbeStageName::Workflow, workflow_done, workflow_detail),
    ];
    let complete = stages.iter().all(|s| s.status != ProbeStageStatus::Pending);
    Probe {
        id,
        dead_letter,
        created_at: timestamp(row.created_at),
        stages,
        complete,
    }
}

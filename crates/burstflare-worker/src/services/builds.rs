//! Builds: create (queued), list, get with attempt history, logs, cancel,
//! retry, bulk retry of dead-lettered builds; and the pipeline that runs
//! them.
//!
//! Pipeline: `POST …/builds` inserts a queued build and sends
//! `BuildMessage::Run` to `BUILD_QUEUE`. The consumer ([`dispatch`]) applies
//! `start` (a new attempt, compare-and-set on the row) and starts a
//! `BUILD_WORKFLOW` instance `<build id>-a<attempt>`, whose steps
//! ([`step`]) drive the build's `BuildRunner`: prepare (builder container,
//! bundle), setup (packages and commands; log to R2), capture (layer to R2),
//! finish (artifact, succeeded). A failing step runs [`fail`]: the state
//! machine says retrying (re-queued with backoff), dead-lettered or failed.
//! Every transition is a compare-and-set on (state, attempts), so a replayed
//! or stale step changes nothing.

use burstflare_api::builds::{
    Build, BuildArtifact, BuildAttempt, BulkRetry, CreateBuildRequest, StepTiming,
};
use burstflare_api::runtime::ResourceLimits;
use burstflare_api::{ErrorCode, timestamp};
use burstflare_domain::build::{self, BuildEvent, BuildState};
use burstflare_domain::policy::Action;
use burstflare_domain::template::Manifest;
use burstflare_domain::{BuildId, TemplateVersionId};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::Env;

use super::templates;
use super::workspaces::Membership;
use super::{new_id, parse_id};
use crate::auth::Caller;
use crate::durable::build_runner::{
    self, CaptureLayer, PushBundle, RunSetup, SetupOutcome, StartBuilder, Stored,
};
use crate::error::{ApiError, ApiResult};
use crate::platform::{BUCKET, now, secs_var, var};
use crate::queues::{self, BuildMessage};
use crate::routes::Ctx;
use crate::store::builds::{self as store, BuildRow, layer_key, log_key};
use crate::store::templates::{self as tstore, TemplateRow};
use crate::workflow;

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(ErrorCode::BuildNotFound, "build", id)
}

fn to_api(r: &BuildRow, history: Vec<BuildAttempt>) -> ApiResult<Build> {
    let p = r.progress()?;
    Ok(Build {
        id: parse_id(&r.id, "build_id")?,
        template_id: parse_id(&r.template_id, "template_id")?,
        version_id: parse_id(&r.version_id, "version_id")?,
        state: p.state,
        attempts: p.attempts,
        last_error: r.last_error.clone(),
        artifact: r
            .artifact_json
            .as_deref()
            .map(serde_json::from_str)
            .transpose()?,
        history,
        created_at: timestamp(r.created_at),
        updated_at: timestamp(r.updated_at),
    })
}

async fn history(env: &Env, id: &str) -> ApiResult<Vec<BuildAttempt>> {
    Ok(store::attempts(env, id)
        .await?
        .into_iter()
        .map(|a| BuildAttempt {
            attempt: u32::try_from(a.attempt).unwrap_or(0),
            started_at: timestamp(a.started_at),
            finished_at: a.finished_at.map(timestamp),
            outcome: a.outcome,
            error: a.error,
        })
        .collect())
}

/// The build `raw_id` and the caller's membership of its workspace; 404 for others.
pub async fn build_of(
    ctx: &Ctx,
    caller: &Caller,
    raw_id: &str,
) -> ApiResult<(BuildRow, Membership)> {
    let id: BuildId = parse_id(raw_id, "build_id")?;
    ctx.note_target("build", id.as_str());
    let row = store::find(&ctx.env, id.as_str())
        .await?
        .ok_or_else(|| not_found(id.as_str()))?;
    let (_, m) = templates::template_of(ctx, caller, &row.template_id)
        .await
        .map_err(|e| {
            if e.status == 404 {
                not_found(id.as_str())
            } else {
                e
            }
        })?;
    ctx.note_target("build", id.as_str());
    Ok((row, m))
}

/// `POST /templates/{id}/builds`.
pub async fn create(
    ctx: &Ctx,
    caller: &Caller,
    t: &TemplateRow,
    m: &Membership,
    req: CreateBuildRequest,
) -> ApiResult<Build> {
    m.allow(Action::ManageTemplates)?;
    let version: TemplateVersionId = req.version_id;
    tstore::version(&ctx.env, &t.id, version.as_str())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(ErrorCode::VersionNotFound, "version", version.as_str())
        })?;
    let id = new_id(BuildId::from_random)?;
    ctx.note_target("build", id.as_str());
    let row = BuildRow {
        id: id.to_string(),
        template_id: t.id.clone(),
        version_id: version.to_string(),
        workspace_id: t.workspace_id.clone(),
        state: BuildState::Queued.as_str().to_owned(),
        attempts: 0,
        allowance_from: 0,
        next_attempt_at: None,
        last_error: None,
        artifact_json: None,
        created_by: caller.user.id.clone(),
        created_at: ctx.now,
        updated_at: ctx.now,
    };
    store::insert(&ctx.env, &row).await?;
    queues::send_build(
        &ctx.env,
        &BuildMessage::Run {
            build_id: row.id.clone(),
        },
        None,
    )
    .await?;
    to_api(&row, Vec::new())
}

pub async fn list(ctx: &Ctx, t: &TemplateRow, m: &Membership) -> ApiResult<Vec<Build>> {
    m.allow(Action::UseTemplates)?;
    store::list(&ctx.env, &t.id)
        .await?
        .iter()
        .map(|r| to_api(r, Vec::new()))
        .collect()
}

pub async fn get(ctx: &Ctx, row: &BuildRow, m: &Membership) -> ApiResult<Build> {
    m.allow(Action::UseTemplates)?;
    to_api(row, history(&ctx.env, &row.id).await?)
}

/// `GET /builds/{id}/logs`: every attempt's log, in order, as text.
pub async fn logs(ctx: &Ctx, row: &BuildRow, m: &Membership) -> ApiResult<String> {
    m.allow(Action::UseTemplates)?;
    let bucket = ctx.env.bucket(BUCKET)?;
    let mut out = String::new();
    let attempts = u32::try_from(row.attempts).unwrap_or(0);
    for a in 1..=attempts {
        out.push_str(&format!("=== attempt {a} ===\n"));
        match bucket
            .get(log_key(&row.template_id, &row.id, a))
            .execute()
            .await?
        {
            Some(o) => {
                if let Some(body) = o.body() {
                    out.push_str(&body.text().await?);
                }
            }
            // The attempt running now: its log so far, kept by its runner.
            None if a == attempts && row.state == BuildState::Building.as_str() => {
                match build_runner::call::<_, String>(&ctx.env, &row.id, "/log", &json!({})).await {
                    Ok(live) => out.push_str(&live),
                    Err(e) => worker::console_error!(
                        "live log of {}: {}",
                        row.id,
                        e.internal.as_deref().unwrap_or(&e.message)
                    ),
                }
            }
            None => {}
        }
        out.push('\n');
    }
    Ok(out)
}

fn invalid_state(row: &BuildRow, e: build::InvalidBuildEvent) -> ApiError {
    ApiError::new(409, ErrorCode::InvalidBuildState, e.to_string())
        .with_details(json!({ "state": row.state }))
}

/// Applies an operator event (cancel, retry) to a build.
pub async fn command(
    ctx: &Ctx,
    row: &BuildRow,
    m: &Membership,
    event: BuildEvent,
) -> ApiResult<Build> {
    m.allow(Action::ManageTemplates)?;
    let from = row.progress()?;
    let t = build::apply(from, event).map_err(|e| invalid_state(row, e))?;
    if store::transition(&ctx.env, &row.id, &from, &t.next, None, None, ctx.now).await? == 0 {
        return Err(ApiError::new(
            409,
            ErrorCode::InvalidBuildState,
            "the build changed meanwhile; look again",
        ));
    }
    if t.enqueue {
        queues::send_build(
            &ctx.env,
            &BuildMessage::Run {
                build_id: row.id.clone(),
            },
            None,
        )
        .await?;
    }
    if event == BuildEvent::Cancel {
        let _ =
            build_runner::call::<_, serde_json::Value>(&ctx.env, &row.id, "/destroy", &json!({}))
                .await;
    }
    let row = store::find(&ctx.env, &row.id)
        .await?
        .ok_or_else(|| not_found(&row.id))?;
    to_api(&row, history(&ctx.env, &row.id).await?)
}

/// `POST /templates/{id}/builds/retry-dead-lettered`.
pub async fn retry_dead_lettered(
    ctx: &Ctx,
    t: &TemplateRow,
    m: &Membership,
) -> ApiResult<BulkRetry> {
    m.allow(Action::ManageTemplates)?;
    let mut requeued = Vec::new();
    for row in store::in_state(&ctx.env, &t.id, BuildState::DeadLettered).await? {
        let from = row.progress()?;
        let Ok(next) = build::apply(from, BuildEvent::Retry) else {
            continue;
        };
        if store::transition(&ctx.env, &row.id, &from, &next.next, None, None, ctx.now).await? == 1
        {
            queues::send_build(
                &ctx.env,
                &BuildMessage::Run {
                    build_id: row.id.clone(),
                },
                None,
            )
            .await?;
            requeued.push(parse_id(&row.id, "build_id")?);
        }
    }
    Ok(BulkRetry { requeued })
}

/// What the queue consumer should do with a message.
pub enum Dispatch {
    Done,
    /// Deliver again after this many seconds (a retry not due yet).
    Later(u32),
}

/// Queue consumer: starts the next attempt of a queued or retrying build.
pub async fn dispatch(env: &Env, build_id: &str) -> ApiResult<Dispatch> {
    let Some(row) = store::find(env, build_id).await? else {
        return Ok(Dispatch::Done);
    };
    let from = row.progress()?;
    if !matches!(from.state, BuildState::Queued | BuildState::Retrying) {
        return Ok(Dispatch::Done);
    }
    let at = now();
    if let Some(due) = row.next_attempt_at.filter(|d| *d > at) {
        return Ok(Dispatch::Later(
            u32::try_from((due - at) / 1000 + 1).unwrap_or(1),
        ));
    }
    let Ok(t) = build::apply(from, BuildEvent::Start) else {
        return Ok(Dispatch::Done);
    };
    if store::transition(env, build_id, &from, &t.next, None, None, at).await? == 0 {
        return Ok(Dispatch::Done);
    }
    let attempt = t.next.attempts;
    store::start_attempt(env, build_id, attempt, at).await?;
    workflow::start(
        env,
        &format!("{build_id}-a{attempt}"),
        &workflow::Params::Build {
            build_id: build_id.to_owned(),
            attempt,
            error: None,
            results: BTreeMap::new(),
        },
    )
    .await?;
    Ok(Dispatch::Done)
}

/// Per-attempt facts the steps share.
struct Job {
    row: BuildRow,
    template_id: String,
    manifest: Manifest,
    manifest_hash: String,
    bundle_digest: Option<String>,
    version_id: String,
}

/// The build, if it is still `building` in `attempt` (a cancelled or
/// superseded attempt's steps do nothing).
async fn current(env: &Env, build_id: &str, attempt: u32) -> ApiResult<Option<Job>> {
    let Some(row) = store::find(env, build_id).await? else {
        return Ok(None);
    };
    let p = row.progress()?;
    if p.state != BuildState::Building || p.attempts != attempt {
        return Ok(None);
    }
    let v = tstore::version(env, &row.template_id, &row.version_id)
        .await?
        .ok_or_else(|| ApiError::internal("the build's version is gone"))?;
    Ok(Some(Job {
        template_id: row.template_id.clone(),
        manifest: serde_json::from_str(&v.manifest_json)?,
        manifest_hash: v.manifest_hash.clone(),
        bundle_digest: v.bundle_digest.clone(),
        version_id: v.id.clone(),
        row,
    }))
}

/// The steps of an attempt, in order.
pub const STEPS: [&str; 5] = ["validate", "prepare", "setup", "capture", "finish"];

/// Prefix of errors that retrying cannot fix (the build fails at once).
const UNUSABLE: &str = "unusable input: ";

/// What a step leaves for later steps (the workflow passes every earlier
/// step's result to the next).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepResult {
    pub millis: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<Stored>,
    /// `prepare`: the builder's base (see `BuildArtifact::base_image_digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_digest: Option<String>,
    #[serde(default)]
    pub skipped: bool,
}

/// The image a manifest builds on: the runtime image, or its editor variant
/// (with code-server) for manifests with `editor = true`.
fn image_of(env: &Env, m: &Manifest) -> String {
    if m.editor {
        var(env, "EDITOR_IMAGE", super::sessions::DEFAULT_EDITOR_IMAGE)
    } else {
        var(env, "RUNTIME_IMAGE", super::sessions::DEFAULT_IMAGE)
    }
}

/// Runs one workflow step of `attempt`.
pub async fn step(
    env: &Env,
    name: &str,
    build_id: &str,
    attempt: u32,
    earlier: &BTreeMap<String, StepResult>,
) -> ApiResult<StepResult> {
    let started = now();
    let Some(job) = current(env, build_id, attempt).await? else {
        if name == "finish" {
            finish_replayed(env, build_id, attempt).await?;
        }
        return Ok(StepResult {
            skipped: true,
            ..Default::default()
        });
    };
    let mut result = StepResult::default();
    match name {
        "validate" => {
            // The manifest is re-checked against the bases this deployment
            // knows, and the bundle the version names must be in R2.
            let image = image_of(env, &job.manifest);
            let bases = [burstflare_domain::template::BaseImage {
                name: "runtime",
                image: &image,
            }];
            job.manifest.clone().validate(&bases).map_err(|e| {
                ApiError::internal(format!("{UNUSABLE}the manifest is invalid: {e}"))
            })?;
            if job.bundle_digest.is_some() {
                let key = tstore::bundle_key(&job.template_id, &job.version_id);
                if env.bucket(BUCKET)?.head(&key).await?.is_none() {
                    return Err(ApiError::internal(format!(
                        "{UNUSABLE}the version's bundle is missing from storage"
                    )));
                }
            }
        }
        "prepare" => {
            let limits = job.manifest.instance_type.limits();
            let started: build_runner::Started = build_runner::call(
                env,
                build_id,
                "/start",
                &StartBuilder {
                    build_id: build_id.to_owned(),
                    attempt,
                    image: image_of(env, &job.manifest),
                    limits: ResourceLimits {
                        cpu_millis: limits.cpu_millis,
                        memory_mib: limits.memory_mib,
                        pids: limits.pids,
                    },
                },
            )
            .await?;
            result.base_digest = started.base_digest;
            if job.bundle_digest.is_some() {
                build_runner::call::<_, serde_json::Value>(
                    env,
                    build_id,
                    "/bundle",
                    &PushBundle {
                        attempt,
                        key: tstore::bundle_key(&job.template_id, &job.version_id),
                    },
                )
                .await?;
            }
        }
        "setup" => {
            let out: SetupOutcome = build_runner::call(
                env,
                build_id,
                "/run",
                &RunSetup {
                    attempt,
                    packages: job.manifest.packages.clone(),
                    commands: job.manifest.setup.clone(),
                    timeout_secs: var(env, "BUILD_COMMAND_TIMEOUT_SECONDS", "1800")
                        .parse()
                        .ok(),
                    log_key: log_key(&job.template_id, build_id, attempt),
                },
            )
            .await?;
            if out.exit_code != 0 {
                return Err(ApiError::unavailable(format!(
                    "setup command `{}` exited with {}:\n{}",
                    out.failed_command.unwrap_or_default(),
                    out.exit_code,
                    out.log_tail
                )));
            }
        }
        "capture" => {
            let stored: Stored = build_runner::call(
                env,
                build_id,
                "/capture",
                &CaptureLayer {
                    attempt,
                    key: layer_key(&job.template_id, build_id),
                },
            )
            .await?;
            result.layer = Some(stored);
        }
        "finish" => {
            let layer = earlier
                .get("capture")
                .and_then(|r| r.layer.clone())
                .ok_or_else(|| ApiError::internal("finish without a captured layer"))?;
            let steps = STEPS
                .iter()
                .filter_map(|s| {
                    earlier.get(*s).map(|r| StepTiming {
                        step: (*s).to_owned(),
                        millis: r.millis,
                    })
                })
                .collect();
            let artifact = BuildArtifact {
                layer_digest: layer.digest,
                layer_size: layer.size,
                base_image: image_of(env, &job.manifest),
                base_image_digest: earlier.get("prepare").and_then(|r| r.base_digest.clone()),
                manifest_hash: job.manifest_hash.clone(),
                bundle_digest: job.bundle_digest.clone(),
                steps,
            };
            let from = job.row.progress()?;
            let t = build::apply(from, BuildEvent::Succeed)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            // State and artifact in one compare-and-set: a build cancelled or
            // redispatched meanwhile gets neither.
            let json = serde_json::to_string(&artifact)?;
            if store::succeed(env, build_id, &from, &t.next, &json, now()).await? == 0 {
                return Ok(StepResult {
                    skipped: true,
                    ..Default::default()
                });
            }
            store::finish_attempt(env, build_id, attempt, "succeeded", None, now()).await?;
            let _ =
                build_runner::call::<_, serde_json::Value>(env, build_id, "/destroy", &json!({}))
                    .await;
        }
        other => return Err(ApiError::internal(format!("unknown build step {other}"))),
    }
    result.millis = u64::try_from(now() - started).unwrap_or(0);
    Ok(result)
}

/// A replay of `finish` after the build was marked succeeded: the rest of
/// what `finish` does (attempt history, builder removal) is done again.
async fn finish_replayed(env: &Env, build_id: &str, attempt: u32) -> ApiResult<()> {
    let Some(row) = store::find(env, build_id).await? else {
        return Ok(());
    };
    let p = row.progress()?;
    if p.state == BuildState::Succeeded && p.attempts == attempt {
        store::finish_attempt(env, build_id, attempt, "succeeded", None, now()).await?;
        let _ =
            build_runner::call::<_, serde_json::Value>(env, build_id, "/destroy", &json!({})).await;
    }
    Ok(())
}

/// A failed step of `attempt`: the state machine decides what comes next.
pub async fn fail(env: &Env, build_id: &str, attempt: u32, error: &str) -> ApiResult<()> {
    let Some(job) = current(env, build_id, attempt).await? else {
        return Ok(());
    };
    let _ = build_runner::call::<_, serde_json::Value>(env, build_id, "/destroy", &json!({})).await;
    let from = job.row.progress()?;
    // Only the validate step reports unusable input; setup output cannot
    // make a failure look permanent.
    let retryable = !(error.starts_with("workflow step validate:") && error.contains(UNUSABLE));
    let t = build::apply(from, BuildEvent::Fail { retryable })
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let at = now();
    let next_at = t
        .retry_after_secs
        .map(|s| at + i64::try_from(s).unwrap_or(0) * 1000);
    let message: String = error.chars().take(4000).collect();
    if store::transition(env, build_id, &from, &t.next, next_at, Some(&message), at).await? == 0 {
        return Ok(());
    }
    store::finish_attempt(env, build_id, attempt, "failed", Some(&message), at).await?;
    if let Some(secs) = t.retry_after_secs {
        queues::send_build(
            env,
            &BuildMessage::Run {
                build_id: build_id.to_owned(),
            },
            Some(u32::try_from(secs).unwrap_or(1)),
        )
        .await?;
    }
    Ok(())
}

/// Builds queued this long without being picked up are redispatched
/// (`BUILD_STUCK_QUEUED_SECONDS`).
pub const STUCK_QUEUED_SECS: i64 = 10 * 60;
/// Attempts building this long are considered lost and redispatched
/// (`BUILD_STUCK_BUILDING_SECONDS`).
pub const STUCK_BUILDING_SECS: i64 = 60 * 60;

/// Reconcile: re-queues builds stuck in `queued` or `building` (same build,
/// new attempt; a lost attempt counts, so a build cannot loop forever).
pub async fn redispatch_stuck(env: &Env, now_ms: i64) -> ApiResult<usize> {
    let mut n = 0;
    for (state, age) in [
        (
            BuildState::Queued,
            secs_var(env, "BUILD_STUCK_QUEUED_SECONDS", STUCK_QUEUED_SECS),
        ),
        (
            BuildState::Building,
            secs_var(env, "BUILD_STUCK_BUILDING_SECONDS", STUCK_BUILDING_SECS),
        ),
        // A retry whose delayed message was lost.
        (
            BuildState::Retrying,
            secs_var(env, "BUILD_STUCK_QUEUED_SECONDS", STUCK_QUEUED_SECS)
                + build::BACKOFF_CAP_SECS as i64,
        ),
    ] {
        for row in store::stale(env, &[state], now_ms - age, 50).await? {
            let from = row.progress()?;
            let Ok(t) = build::apply(from, BuildEvent::Redispatch) else {
                continue;
            };
            if store::transition(
                env,
                &row.id,
                &from,
                &t.next,
                None,
                Some("redispatched by reconcile"),
                now_ms,
            )
            .await?
                == 0
            {
                continue;
            }
            if state == BuildState::Building {
                store::finish_attempt(
                    env,
                    &row.id,
                    from.attempts,
                    "lost",
                    Some("no progress; redispatched"),
                    now_ms,
                )
                .await?;
                let _ = build_runner::call::<_, serde_json::Value>(
                    env,
                    &row.id,
                    "/destroy",
                    &json!({}),
                )
                .await;
            }
            if t.enqueue {
                queues::send_build(
                    env,
                    &BuildMessage::Run {
                        build_id: row.id.clone(),
                    },
                    None,
                )
                .await?;
            }
            n += 1;
        }
    }
    Ok(n)
}

/// Cancels every build of a template that has not ended (its template is
/// being deleted) and removes their builder containers.
pub async fn cancel_all(env: &Env, template_id: &str, now_ms: i64) -> ApiResult<()> {
    for row in store::list(env, template_id).await? {
        let from = row.progress()?;
        if from.state.is_terminal() {
            continue;
        }
        if let Ok(t) = build::apply(from, BuildEvent::Cancel)
            && store::transition(
                env,
                &row.id,
                &from,
                &t.next,
                None,
                Some("template deleted"),
                now_ms,
            )
            .await?
                == 1
        {
            if from.state == BuildState::Building {
                store::finish_attempt(env, &row.id, from.attempts, "cancelled", None, now_ms)
                    .await?;
            }
            let _ =
                build_runner::call::<_, serde_json::Value>(env, &row.id, "/destroy", &json!({}))
                    .await;
        }
    }
    Ok(())
}

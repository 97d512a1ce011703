//! Sessions: create, list, get, lifecycle commands, events and the SSH bridge.
//!
//! Access: a session belongs to a workspace. Non-members of that workspace,
//! and members the policy does not let see it (another member's session
//! unless the workspace shares sessions; admins and owners see all), get the
//! same 404 as for a session that does not exist. Seeing is not operating:
//! members operate only their own sessions (403 otherwise), admins and
//! owners every session. Lifecycle state is only ever written by the
//! session's `SessionCoordinator`; this module reads the D1 projection and
//! forwards commands.
//!
//! A session boots a template's release (its image, layer, start commands,
//! environment and persisted paths) or, without a template, the built-in
//! default environment: the platform's runtime image (`RUNTIME_IMAGE`), the
//! workspace's default instance type, persisted `/home/dev`.

use burstflare_api::sessions::{
    CommandResult, CreateSessionRequest, RuntimeSpec, Session, SessionEvent,
};
use burstflare_api::{ErrorCode, Page};
use burstflare_domain::session::{validate_env_name, validate_persisted_paths};
use burstflare_domain::{
    DesiredState, SessionCommand, SessionId, SessionName, SessionState, account::FieldError, policy,
};
use worker::{Method, Request, Response};

use super::paging::{bad_query, cut_page, decode_keyset, encode_keyset, parse_limit};
use super::workspaces::{self, Membership};
use super::{new_id, parse_id};
use crate::auth::Caller;
use crate::durable::session_coordinator::{self as coordinator, CommandRequest, CreateRequest};
use crate::error::{ApiError, ApiResult};
use crate::platform::var;
use crate::routes::Ctx;
use crate::store::sessions::{self as store, ListFilter, SessionRecord};

/// The image sessions boot until templates supply one.
pub const DEFAULT_IMAGE: &str = "burstflare/runtime:latest";
/// The editor variant of the runtime image (code-server), for `editor = true`.
pub const DEFAULT_EDITOR_IMAGE: &str = "burstflare/runtime-editor:latest";
const MAX_ENV_VARS: usize = 64;
const MAX_ENV_VALUE: usize = 4096;

pub async fn create(ctx: &Ctx, caller: &Caller, req: CreateSessionRequest) -> ApiResult<Session> {
    let name = SessionName::parse(&req.name)?;
    let workspace = writable_workspace(ctx, caller, req.workspace_id.as_ref()).await?;
    let release = match &req.template {
        Some(t) => {
            let row = super::templates::bootable(ctx, workspace.id(), t, req.release_id.is_some())
                .await?;
            Some(super::releases::boot(ctx, &row, req.release_id.as_deref()).await?)
        }
        None if req.release_id.is_some() => {
            return Err(FieldError::new("release_id", "a release needs its `template`").into());
        }
        None => None,
    };
    if req.env.len() > MAX_ENV_VARS {
        return Err(FieldError::new("env", format!("at most {MAX_ENV_VARS} variables")).into());
    }
    for (k, v) in &req.env {
        if !validate_env_name(k) {
            return Err(FieldError::new(
                "env",
                format!(
                    "{k:?} is not a valid variable name (letters, digits, `_`; not BURSTFLARE_*)"
                ),
            )
            .into());
        }
        if v.len() > MAX_ENV_VALUE || v.contains('\0') {
            return Err(FieldError::new(
                "env",
                format!("the value of {k} must be at most 4 KiB without NUL bytes"),
            )
            .into());
        }
    }
    let persisted = validate_persisted_paths(&req.persisted_paths.unwrap_or_else(|| {
        release.as_ref().map_or_else(
            || vec!["/home/dev".into()],
            |(spec, _)| spec.persist.clone(),
        )
    }))?;
    // A release's environment, under the caller's own variables.
    let mut env = release
        .as_ref()
        .map(|(spec, _)| spec.env.clone())
        .unwrap_or_default();
    env.extend(req.env);
    let id = new_id(SessionId::from_random)?;
    ctx.note_target("session", id.as_str());
    let rec = SessionRecord {
        id: id.to_string(),
        workspace_id: workspace.id().to_owned(),
        owner_id: caller.user.id.clone(),
        name: name.to_string(),
        state: SessionState::Created,
        desired_state: DesiredState::Stopped,
        runtime_status: Some("absent".into()),
        runtime_state: None,
        runtime_updated_at: None,
        state_version: 1,
        generation: 0,
        failure_reason: None,
        spec: RuntimeSpec {
            image: release.as_ref().map_or_else(
                || var(&ctx.env, "RUNTIME_IMAGE", DEFAULT_IMAGE),
                |(spec, _)| spec.base_image.clone(),
            ),
            instance_type: req.instance_type.unwrap_or_else(|| {
                release
                    .as_ref()
                    .map_or(workspace.settings().default_instance_type, |(spec, _)| {
                        spec.instance_type
                    })
            }),
            env,
            persisted_paths: persisted,
            sleep_ttl_secs: release.as_ref().map(|(spec, _)| spec.sleep_ttl_secs),
            retention_secs: release.as_ref().and_then(|(spec, _)| spec.retention_secs),
            release: release.map(|(_, boot)| boot),
        },
        host_keys: Vec::new(),
        created_at: ctx.now,
        updated_at: ctx.now,
        deleted_at: None,
    };
    let create = CreateRequest {
        record: rec,
        start: req.start,
    };
    // With `start`, the result is the started session (`Session` either way).
    let session: Session = coordinator::call(
        &ctx.env,
        id.as_str(),
        Method::Post,
        "/create",
        Some(&create),
    )
    .await?;
    Ok(session)
}

/// The workspace a new session goes to: the requested one (404 for
/// non-members) or the caller's personal workspace, if the caller may create
/// sessions there.
async fn writable_workspace(
    ctx: &Ctx,
    caller: &Caller,
    requested: Option<&burstflare_domain::WorkspaceId>,
) -> ApiResult<Membership> {
    let id = match requested {
        Some(ws) => ws.to_string(),
        None => caller.personal_workspace()?.to_owned(),
    };
    let m = workspaces::member_of(ctx, caller, &id).await?;
    m.allow(policy::Action::CreateSession)?;
    Ok(m)
}

/// The live session `raw_id` if the caller may see it (404 otherwise) and,
/// with `operate`, act on it (403 otherwise).
pub async fn accessible(
    ctx: &Ctx,
    caller: &Caller,
    raw_id: &str,
    operate: bool,
) -> ApiResult<SessionRecord> {
    let id: SessionId = parse_id(raw_id, "session_id")?;
    ctx.note_target("session", id.as_str());
    let not_found = || ApiError::not_found(ErrorCode::SessionNotFound, "session", id.as_str());
    let rec = store::find_live(&ctx.env, id.as_str())
        .await?
        .ok_or_else(not_found)?;
    let m = workspaces::member_of(ctx, caller, &rec.workspace_id)
        .await
        .map_err(|e| if e.status == 404 { not_found() } else { e })?;
    let own = rec.owner_id == caller.user.id;
    m.allow(policy::Action::ViewSession { own })
        .map_err(|_| not_found())?;
    if operate {
        m.allow(policy::Action::OperateSession { own })?;
    }
    Ok(rec)
}

pub async fn get(ctx: &Ctx, caller: &Caller, id: &str) -> ApiResult<Session> {
    accessible(ctx, caller, id, false).await?.to_api()
}

/// Query of `GET /sessions`.
pub struct ListQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
    pub name: Option<String>,
    pub workspace_id: Option<String>,
}

pub async fn list(ctx: &Ctx, caller: &Caller, q: ListQuery) -> ApiResult<Page<Session>> {
    let limit = parse_limit(q.limit.as_deref())?;
    let after = q
        .cursor
        .as_deref()
        .map(decode_keyset::<SessionId>)
        .transpose()?;
    if let Some(n) = &q.name {
        SessionName::parse(n).map_err(|e| bad_query("name", e.message))?;
    }
    // Within a workspace: every session the caller may see there; without
    // one, the caller's own sessions everywhere.
    let mut owner = Some(caller.user.id.as_str());
    if let Some(w) = &q.workspace_id {
        w.parse::<burstflare_domain::WorkspaceId>()
            .map_err(|e| bad_query("workspace_id", e.to_string()))?;
        let m = workspaces::member_of(ctx, caller, w).await?;
        if m.allow(policy::Action::ViewSession { own: false }).is_ok() {
            owner = None;
        }
    }
    let mut rows = store::list(
        &ctx.env,
        &ListFilter {
            owner_id: owner,
            workspace_id: q.workspace_id.as_deref(),
            name: q.name.as_deref(),
            after,
            limit: limit + 1,
        },
    )
    .await?;
    let next_cursor = cut_page(&mut rows, limit, |r| encode_keyset(r.created_at, &r.id));
    let items = rows
        .iter()
        .map(SessionRecord::to_api)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Page { items, next_cursor })
}

pub async fn command(
    ctx: &Ctx,
    caller: &Caller,
    id: &str,
    command: SessionCommand,
) -> ApiResult<CommandResult> {
    let rec = accessible(ctx, caller, id, true).await?;
    run_command(&ctx.env, &rec, command, &caller.user.id).await
}

/// Runs `command` on `rec` as `actor`; a delete also applies the
/// workspace's policy for the session's snapshots.
async fn run_command(
    env: &worker::Env,
    rec: &SessionRecord,
    command: SessionCommand,
    actor: &str,
) -> ApiResult<CommandResult> {
    let req = CommandRequest {
        command,
        actor: actor.to_owned(),
        snapshot_kind: None,
    };
    let done: CommandResult =
        coordinator::call(env, &rec.id, Method::Post, "/command", Some(&req)).await?;
    if command == SessionCommand::Delete && !done.already_done {
        let policy = crate::store::workspaces::settings(env, &rec.workspace_id)
            .await?
            .deleted_session_snapshots;
        if policy == burstflare_api::identity::SnapshotPolicy::Delete {
            super::snapshots::purge_session(env, &rec.id).await?;
        }
    }
    Ok(done)
}

/// Deletes sessions that have slept longer than their retention (the
/// release's `retention`, else `SESSION_RETENTION_SECONDS`, 30 days); their
/// snapshots follow the workspace's policy. The count deleted.
pub async fn expire_sleeping(env: &worker::Env, now_ms: i64) -> ApiResult<usize> {
    let default = var(env, "SESSION_RETENTION_SECONDS", "2592000")
        .parse::<i64>()
        .unwrap_or(2_592_000);
    let mut deleted = 0;
    for rec in store::sleeping(env, 200).await? {
        let retention = rec.spec.retention_secs.map_or(default, i64::from);
        if rec.updated_at + retention * 1000 > now_ms {
            continue;
        }
        match run_command(env, &rec, SessionCommand::Delete, coordinator::SYSTEM_ACTOR).await {
            Ok(_) => deleted += 1,
            Err(e) => worker::console_error!(
                "retention: deleting session {}: {}",
                rec.id,
                e.internal.as_deref().unwrap_or(&e.message)
            ),
        }
    }
    Ok(deleted)
}

pub async fn events(
    ctx: &Ctx,
    caller: &Caller,
    id: &str,
    after: Option<&str>,
    limit: Option<&str>,
) -> ApiResult<Page<SessionEvent>> {
    let rec = accessible(ctx, caller, id, false).await?;
    let limit = parse_limit(limit)?;
    let after_seq = match after {
        None => 0,
        Some(raw) => raw.parse::<i64>().map_err(|_| {
            bad_query(
                "after",
                format!("after {raw:?} must be an event seq (integer)"),
            )
        })?,
    };
    let mut rows = store::events(&ctx.env, &rec.id, after_seq, limit + 1).await?;
    let next_cursor = cut_page(&mut rows, limit, |e| e.seq.to_string());
    Ok(Page {
        items: rows.iter().map(|e| e.to_api()).collect(),
        next_cursor,
    })
}

/// `GET /sessions/{id}/activity`: why the session stayed awake or slept.
pub async fn activity(
    ctx: &Ctx,
    caller: &Caller,
    id: &str,
) -> ApiResult<Vec<burstflare_api::sessions::ActivityEntry>> {
    let rec = accessible(ctx, caller, id, false).await?;
    coordinator::call::<(), _>(&ctx.env, &rec.id, Method::Get, "/activity", None).await
}

/// `GET /sessions/{id}/ssh`: a WebSocket carrying the SSH byte stream.
pub async fn ssh(ctx: &Ctx, caller: &Caller, id: &str, req: &Request) -> ApiResult<Response> {
    let hint = "use `burstflare ssh`";
    bridge(ctx, caller, id, req, coordinator::Target::Ssh, hint).await
}

/// `GET /sessions/{id}/terminal?cols=&rows=&terminal_id=`: a WebSocket to a
/// login shell in the session (the agent's terminal protocol; see
/// [`burstflare_api::runtime::TerminalControl`]).
pub async fn terminal(ctx: &Ctx, caller: &Caller, id: &str, req: &Request) -> ApiResult<Response> {
    let url = req.url()?;
    let path = match url.query() {
        Some(q) => format!("/terminal?{q}"),
        None => "/terminal".to_owned(),
    };
    let hint = "open the terminal from the web app";
    bridge(
        ctx,
        caller,
        id,
        req,
        coordinator::Target::Terminal(path),
        hint,
    )
    .await
}

/// Checks access and the upgrade, then bridges `target`.
async fn bridge(
    ctx: &Ctx,
    caller: &Caller,
    id: &str,
    req: &Request,
    target: coordinator::Target,
    hint: &str,
) -> ApiResult<Response> {
    let rec = accessible(ctx, caller, id, true).await?;
    if !is_websocket(req) {
        return Err(ApiError::new(
            426,
            ErrorCode::UpgradeRequired,
            format!("this endpoint speaks WebSocket only; send `Upgrade: websocket` ({hint})"),
        ));
    }
    // Access wakes a sleeping session; a stopped one only for its owner.
    let own = rec.owner_id == caller.user.id;
    let link = coordinator::Link {
        actor: &caller.user.id,
        wake_stopped: own,
        app_cookie: None,
        forwarded: Vec::new(),
    };
    coordinator::connect(&ctx.env, &rec.id, req, &target, &link).await
}

/// Whether `req` asks for a WebSocket.
pub fn is_websocket(req: &Request) -> bool {
    let upgrade = req.headers().get("upgrade").ok().flatten();
    upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

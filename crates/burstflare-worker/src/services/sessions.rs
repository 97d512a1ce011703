//! Sessions: create, list, get, lifecycle commands, events and the SSH bridge.
//!
//! Visibility: a session is its owner's. Anyone else — including members of
//! the same workspace until sharing exists — gets the same 404 as for a
//! session that does not exist. Lifecycle state is only ever written by the
//! session's `SessionCoordinator`; this module reads the D1 projection and
//! forwards commands.
//!
//! Until templates exist, sessions boot the built-in default template: the
//! platform's runtime image (`RUNTIME_IMAGE`), `small`, persisted `/home/dev`.

use burstflare_api::sessions::{
    CommandResult, CreateSessionRequest, RuntimeSpec, Session, SessionEvent,
};
use burstflare_api::{ErrorCode, Page, WorkspaceKind};
use burstflare_domain::session::{validate_env_name, validate_persisted_paths};
use burstflare_domain::{
    DesiredState, InstanceType, Role, SessionCommand, SessionId, SessionName, SessionState,
    account::FieldError, policy,
};
use serde_json::json;
use worker::{Method, Request, Response};

use super::paging::{bad_query, cut_page, decode_keyset, encode_keyset, parse_limit};
use super::{new_id, parse_id};
use crate::auth::Caller;
use crate::durable::session_coordinator::{self as coordinator, CommandRequest, CreateRequest};
use crate::error::{ApiError, ApiResult};
use crate::platform::var;
use crate::routes::Ctx;
use crate::store::sessions::{self as store, ListFilter, SessionRecord};
use crate::store::users;

/// The image sessions boot until templates supply one.
pub const DEFAULT_IMAGE: &str = "burstflare/runtime:latest";
const MAX_ENV_VARS: usize = 64;
const MAX_ENV_VALUE: usize = 4096;

pub async fn create(ctx: &Ctx, caller: &Caller, req: CreateSessionRequest) -> ApiResult<Session> {
    let name = SessionName::parse(&req.name)?;
    let workspace_id = writable_workspace(ctx, caller, req.workspace_id.as_ref()).await?;
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
    let persisted = validate_persisted_paths(
        &req.persisted_paths
            .unwrap_or_else(|| vec!["/home/dev".into()]),
    )?;
    let id = new_id(SessionId::from_random)?;
    let rec = SessionRecord {
        id: id.to_string(),
        workspace_id,
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
            image: var(&ctx.env, "RUNTIME_IMAGE", DEFAULT_IMAGE),
            instance_type: req.instance_type.unwrap_or(InstanceType::Small),
            env: req.env,
            persisted_paths: persisted,
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

/// The workspace a new session goes to: the requested one if the caller may
/// create sessions there, else the caller's personal workspace.
async fn writable_workspace(
    ctx: &Ctx,
    caller: &Caller,
    requested: Option<&burstflare_domain::WorkspaceId>,
) -> ApiResult<String> {
    let memberships = users::memberships(&ctx.env, &caller.user.id).await?;
    let chosen = match requested {
        Some(ws) => memberships
            .iter()
            .find(|m| m.id == ws.as_str())
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    ErrorCode::WorkspaceNotFound,
                    format!("workspace {:?} was not found", ws.as_str()),
                )
                .with_details(json!({ "id": ws.as_str() }))
            })?,
        None => memberships
            .iter()
            .find(|m| m.to_api().is_ok_and(|w| w.kind == WorkspaceKind::Personal))
            .ok_or_else(|| ApiError::internal("caller has no personal workspace"))?,
    };
    let role: Role = chosen
        .role
        .parse()
        .map_err(|_| ApiError::internal(format!("stored role {:?}", chosen.role)))?;
    let ctx = policy::Context {
        // Only the membership kind matters for creating sessions.
        owners: 1,
        personal: chosen.kind == "personal",
    };
    policy::authorize(role, policy::Action::CreateSession, ctx).map_err(|denied| {
        ApiError::new(
            403,
            ErrorCode::Forbidden,
            format!("cannot create a session here: {denied}"),
        )
    })?;
    Ok(chosen.id.clone())
}

/// The caller's live session `raw_id`, or 404.
async fn owned(ctx: &Ctx, caller: &Caller, raw_id: &str) -> ApiResult<SessionRecord> {
    let id: SessionId = parse_id(raw_id, "session_id")?;
    store::find_owned(&ctx.env, id.as_str(), &caller.user.id)
        .await?
        .ok_or_else(|| ApiError::not_found(ErrorCode::SessionNotFound, "session", id.as_str()))
}

pub async fn get(ctx: &Ctx, caller: &Caller, id: &str) -> ApiResult<Session> {
    owned(ctx, caller, id).await?.to_api()
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
    if let Some(w) = &q.workspace_id {
        w.parse::<burstflare_domain::WorkspaceId>()
            .map_err(|e| bad_query("workspace_id", e.to_string()))?;
    }
    let mut rows = store::list(
        &ctx.env,
        &ListFilter {
            owner_id: &caller.user.id,
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
    let rec = owned(ctx, caller, id).await?;
    let req = CommandRequest {
        command,
        actor: caller.user.id.clone(),
    };
    coordinator::call(&ctx.env, &rec.id, Method::Post, "/command", Some(&req)).await
}

pub async fn events(
    ctx: &Ctx,
    caller: &Caller,
    id: &str,
    after: Option<&str>,
    limit: Option<&str>,
) -> ApiResult<Page<SessionEvent>> {
    let rec = owned(ctx, caller, id).await?;
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

/// `GET /sessions/{id}/ssh`: a WebSocket carrying the SSH byte stream.
pub async fn ssh(ctx: &Ctx, caller: &Caller, id: &str, req: &Request) -> ApiResult<Response> {
    let rec = owned(ctx, caller, id).await?;
    let upgrade = req.headers().get("upgrade").ok().flatten();
    if !upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return Err(ApiError::new(
            426,
            ErrorCode::UpgradeRequired,
            "this endpoint speaks WebSocket only; send `Upgrade: websocket` (use `burstflare ssh`)",
        ));
    }
    coordinator::ssh(&ctx.env, &rec.id, req).await
}

//! HTTP routes under `/api/v1`: match against the route catalogue
//! ([`burstflare_api::routes::ROUTES`]), authenticate, call one service
//! function, shape the response, and audit every mutating request. Every
//! failure leaves through [`crate::http::error_response`] as the JSON envelope.
//!
//! Order of checks for a request: route → authentication (and CSRF for
//! cookie-authenticated mutations) → workspace membership for
//! workspace-scoped routes (404 for non-members, before any body is read) →
//! body → the service.

mod context;

use burstflare_api::builds::{CreateBuildRequest, PromoteRequest};
use burstflare_api::identity::{
    AcceptInviteRequest, ChangeRoleRequest, CreateInviteRequest, CreateWorkspaceRequest,
    DeviceCodeRequest, DeviceTokenRequest, Empty, PasskeyLoginOptionsRequest, PasskeyLoginRequest,
    RecoveryLoginRequest, RefreshRequest, RegisterPasskeyRequest, RenameWorkspaceRequest,
    UpdateSettingsRequest,
};
use burstflare_api::ops::CreateProbeRequest;
use burstflare_api::routes::{Matched, RouteSpec, Scope, match_route};
use burstflare_api::sessions::{AddSshKeyRequest, CreateSessionRequest};
use burstflare_api::snapshots::RestoreRequest;
use burstflare_api::templates::{
    CreateTemplateRequest, CreateVersionRequest, UpdateTemplateRequest,
};
use burstflare_api::{CreateTokenRequest, ErrorCode, MAX_JSON_BODY_BYTES, RegisterRequest};
use burstflare_domain::SessionCommand;
use burstflare_domain::build::BuildEvent;
use serde::de::DeserializeOwned;
use serde_json::json;
use worker::{Env, Request, Response};

pub use context::Ctx;

use crate::auth::{Caller, authenticate};
use crate::error::{ApiError, ApiResult};
use crate::http::{
    clear_session_cookies, error_response, json_response, new_request_id, query_param, read_json,
    signed_in_response, with_request_id,
};
use crate::services::workspaces::{self, Membership};
use crate::services::{
    accounts, audit, builds, device, diagnostics, health, passkeys, preview, recovery, releases,
    sessions, signin, snapshots, ssh_keys, templates, tokens, turnstile,
};
use crate::store::templates::TemplateRow;

/// Serves one request; never fails (errors become envelopes).
pub async fn handle(req: Request, env: Env) -> worker::Result<Response> {
    let request_id = new_request_id();
    let method = req.method().to_string();
    let path = req.path();
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let ctx = Ctx::new(
        env,
        crate::platform::now(),
        header("cf-connecting-ip"),
        header("user-agent"),
    );
    if let Some(p) = preview::parse(&path) {
        let resp = match preview::serve(&ctx, &req, &p).await {
            Ok(resp) => resp,
            Err(err) => error_response(&err, &request_id, &method, &path)?,
        };
        return Ok(with_request_id(resp, &request_id));
    }
    let matched = match_route(&method, &path);
    let (result, spec) = match matched {
        Matched::Found { spec, params } => {
            let params: Vec<(&'static str, String)> =
                params.into_iter().map(|(k, v)| (k, v.to_owned())).collect();
            (dispatch(req, &ctx, spec, &params).await, Some(spec))
        }
        Matched::MethodNotAllowed(allowed) => (
            Err(ApiError::new(
                405,
                ErrorCode::MethodNotAllowed,
                format!(
                    "{method} is not allowed on {path}; use {}",
                    allowed.join(" or ")
                ),
            )
            .with_details(json!({ "allowed": allowed }))),
            None,
        ),
        Matched::NotFound => (
            Err(ApiError::new(
                404,
                ErrorCode::RouteNotFound,
                format!("no route for {path}"),
            )
            .with_details(json!({ "path": path }))),
            None,
        ),
    };
    let (resp, status, code) = match result {
        Ok(resp) => {
            let status = resp.status_code();
            (resp, status, None)
        }
        Err(err) => {
            let code = serde_json::to_value(err.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned));
            (
                error_response(&err, &request_id, &method, &path)?,
                err.status,
                code,
            )
        }
    };
    // Every mutation is audited; an anonymous request to a signed-in route
    // (no actor, no workspace) concerns nobody and is only counted in logs.
    if let Some(spec) = spec.filter(|s| s.mutating())
        && (spec.scope == Scope::Public || ctx.audit_note().actor_id.is_some())
    {
        audit::record(&ctx, spec.action, &request_id, status, code).await;
    }
    Ok(with_request_id(resp, &request_id))
}

/// Path parameters of the matched route.
struct Params<'a>(&'a [(&'static str, String)]);

impl Params<'_> {
    fn get(&self, name: &str) -> ApiResult<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| ApiError::internal(format!("route has no parameter {name}")))
    }
}

async fn body<T: DeserializeOwned>(req: &mut Request) -> ApiResult<T> {
    read_json(req, MAX_JSON_BODY_BYTES).await
}

fn ok<T: serde::Serialize>(value: &T) -> ApiResult<Response> {
    json_response(200, value)
}

fn created<T: serde::Serialize>(value: &T) -> ApiResult<Response> {
    json_response(201, value)
}

fn no_content() -> ApiResult<Response> {
    Ok(Response::empty()?.with_status(204))
}

async fn dispatch(
    mut req: Request,
    ctx: &Ctx,
    spec: &'static RouteSpec,
    params: &[(&'static str, String)],
) -> ApiResult<Response> {
    let p = Params(params);
    if spec.scope == Scope::Public {
        return public(req, ctx, spec).await;
    }
    let caller = authenticate(ctx, &req, spec.mutating()).await?;
    if spec.scope == Scope::Workspace {
        let m = workspaces::member_of(ctx, &caller, p.get("workspace_id")?).await?;
        return workspace(req, ctx, spec, &p, &caller, m).await;
    }
    if spec.scope == Scope::Build {
        let (row, m) = builds::build_of(ctx, &caller, p.get("build_id")?).await?;
        return match spec.action {
            "build.get" => ok(&builds::get(ctx, &row, &m).await?),
            "build.logs" => {
                let text = builds::logs(ctx, &row, &m).await?;
                let headers = worker::Headers::new();
                headers.set("content-type", "text/plain; charset=utf-8")?;
                headers.set("cache-control", "no-store")?;
                Ok(Response::ok(text)?.with_headers(headers))
            }
            "build.cancel" => ok(&builds::command(ctx, &row, &m, BuildEvent::Cancel).await?),
            "build.retry" => ok(&builds::command(ctx, &row, &m, BuildEvent::Retry).await?),
            other => Err(unhandled(other)),
        };
    }
    if spec.scope == Scope::Template {
        let (row, m) = templates::template_of(ctx, &caller, p.get("template_id")?).await?;
        return template(req, ctx, spec, &p, &caller, row, m).await;
    }
    let q = |name: &str| query_param(&req, name);
    match spec.action {
        "me.get" => ok(&accounts::me(ctx, &caller).await?),
        "auth.logout" => {
            signin::logout(ctx, &caller).await?;
            clear_session_cookies(no_content()?)
        }
        "auth.logout_all" => {
            let result = signin::logout_all(ctx, &caller).await?;
            clear_session_cookies(ok(&result)?)
        }
        "auth.sessions_list" => {
            let (limit, cursor) = (q("limit")?, q("cursor")?);
            ok(&signin::list(ctx, &caller, limit.as_deref(), cursor.as_deref()).await?)
        }
        "auth.session_revoke" => {
            ok(&signin::revoke(ctx, &caller, p.get("auth_session_id")?).await?)
        }
        "auth.device_get" => ok(&device::get(ctx, &caller, p.get("user_code")?).await?),
        "auth.device_approve" => {
            ok(&device::decide(ctx, &caller, p.get("user_code")?, true).await?)
        }
        "auth.device_deny" => ok(&device::decide(ctx, &caller, p.get("user_code")?, false).await?),
        "token.list" => {
            let (limit, cursor) = (q("limit")?, q("cursor")?);
            ok(&tokens::list(ctx, &caller, limit.as_deref(), cursor.as_deref()).await?)
        }
        "token.create" => {
            let b: CreateTokenRequest = body(&mut req).await?;
            created(&tokens::create(ctx, &caller, b).await?)
        }
        "token.revoke" => ok(&tokens::revoke(ctx, &caller, p.get("token_id")?).await?),
        "passkey.list" => ok(&passkeys::list(ctx, &caller).await?),
        "passkey.register_options" => {
            let _: Empty = body(&mut req).await?;
            ok(&passkeys::register_options(ctx, &caller).await?)
        }
        "passkey.register" => {
            let b: RegisterPasskeyRequest = body(&mut req).await?;
            created(&passkeys::register(ctx, &caller, b).await?)
        }
        "passkey.delete" => {
            passkeys::delete(ctx, &caller, p.get("passkey_id")?).await?;
            no_content()
        }
        "recovery_codes.status" => ok(&recovery::status(ctx, &caller).await?),
        "recovery_codes.generate" => {
            let _: Empty = body(&mut req).await?;
            created(&recovery::generate(ctx, &caller).await?)
        }
        "ssh_key.list" => ok(&ssh_keys::list(ctx, &caller).await?),
        "ssh_key.add" => {
            let b: AddSshKeyRequest = body(&mut req).await?;
            created(&ssh_keys::add(ctx, &caller, b).await?)
        }
        "ssh_key.remove" => {
            ssh_keys::remove(ctx, &caller, p.get("key_id")?).await?;
            no_content()
        }
        "probe.create" => {
            let b: CreateProbeRequest = body(&mut req).await?;
            created(&diagnostics::create(ctx, &caller, b).await?)
        }
        "probe.get" => ok(&diagnostics::get(ctx, &caller, p.get("probe_id")?).await?),
        "workspace.list" => ok(&workspaces::list(ctx, &caller).await?),
        "workspace.create" => {
            let b: CreateWorkspaceRequest = body(&mut req).await?;
            created(&workspaces::create(ctx, &caller, b).await?)
        }
        "template.list" => {
            let ws = q("workspace_id")?;
            ok(&templates::list(ctx, &caller, ws.as_deref()).await?)
        }
        "template.create" => {
            let b: CreateTemplateRequest = body(&mut req).await?;
            created(&templates::create(ctx, &caller, b).await?)
        }
        "workspace.invite_accept" => {
            let b: AcceptInviteRequest = body(&mut req).await?;
            ok(&workspaces::accept(ctx, &caller, b).await?)
        }
        "session.list" => {
            let query = sessions::ListQuery {
                limit: q("limit")?,
                cursor: q("cursor")?,
                name: q("name")?,
                workspace_id: q("workspace_id")?,
            };
            ok(&sessions::list(ctx, &caller, query).await?)
        }
        "session.create" => {
            let b: CreateSessionRequest = body(&mut req).await?;
            created(&sessions::create(ctx, &caller, b).await?)
        }
        "session.get" => ok(&sessions::get(ctx, &caller, p.get("session_id")?).await?),
        "session.activity" => ok(&sessions::activity(ctx, &caller, p.get("session_id")?).await?),
        "snapshot.list" => ok(&snapshots::list(ctx, &caller, p.get("session_id")?).await?),
        "snapshot.create" => created(&snapshots::create(ctx, &caller, p.get("session_id")?).await?),
        "snapshot.get" => {
            ok(&snapshots::get(ctx, &caller, p.get("session_id")?, p.get("snapshot_id")?).await?)
        }
        "snapshot.delete" => {
            ok(
                &snapshots::delete(ctx, &caller, p.get("session_id")?, p.get("snapshot_id")?)
                    .await?,
            )
        }
        "snapshot.download" => {
            Ok(
                snapshots::download(ctx, &caller, p.get("session_id")?, p.get("snapshot_id")?)
                    .await?,
            )
        }
        "snapshot.upload_grant" => {
            created(&snapshots::upload_grant(ctx, &caller, p.get("session_id")?).await?)
        }
        "snapshot.restore" => {
            // Access first: a non-member learns nothing from the body's errors.
            let rec = sessions::accessible(ctx, &caller, p.get("session_id")?, true).await?;
            let b: RestoreRequest = body(&mut req).await?;
            ok(&snapshots::restore(ctx, &caller, &rec, b).await?)
        }
        "session.delete" => {
            let id = p.get("session_id")?;
            ok(&sessions::command(ctx, &caller, id, SessionCommand::Delete).await?)
        }
        "session.start" | "session.stop" | "session.restart" | "session.sleep" => {
            let command = match spec.action {
                "session.start" => SessionCommand::Start,
                "session.stop" => SessionCommand::Stop,
                "session.sleep" => SessionCommand::Sleep,
                _ => SessionCommand::Restart,
            };
            ok(&sessions::command(ctx, &caller, p.get("session_id")?, command).await?)
        }
        "session.events" => {
            let (after, limit) = (q("after")?, q("limit")?);
            let id = p.get("session_id")?;
            ok(&sessions::events(ctx, &caller, id, after.as_deref(), limit.as_deref()).await?)
        }
        "session.ssh" => sessions::ssh(ctx, &caller, p.get("session_id")?, &req).await,
        "session.terminal" => sessions::terminal(ctx, &caller, p.get("session_id")?, &req).await,
        other => Err(unhandled(other)),
    }
}

fn unhandled(action: &str) -> ApiError {
    ApiError::internal(format!("route {action} has no handler"))
}

/// Routes that need no authentication.
async fn public(mut req: Request, ctx: &Ctx, spec: &RouteSpec) -> ApiResult<Response> {
    match spec.action {
        "health.get" => health::respond(ctx).await,
        "config.get" => ok(&turnstile::public_config(ctx)),
        "auth.register" => {
            let b: RegisterRequest = body(&mut req).await?;
            let (resp, cookie) = accounts::register(ctx, b).await?;
            signed_in_response(201, &resp, cookie.as_ref())
        }
        "auth.refresh" => {
            let b: RefreshRequest = body(&mut req).await?;
            ok(&signin::refresh(ctx, b).await?)
        }
        "auth.passkey_login_options" => {
            let b: PasskeyLoginOptionsRequest = body(&mut req).await?;
            ok(&passkeys::login_options(ctx, b).await?)
        }
        "auth.passkey_login" => {
            let b: PasskeyLoginRequest = body(&mut req).await?;
            let issued = passkeys::login(ctx, b).await?;
            signed_in_response(200, &issued.body, issued.cookie())
        }
        "auth.recovery_login" => {
            let b: RecoveryLoginRequest = body(&mut req).await?;
            let issued = recovery::login(ctx, b).await?;
            signed_in_response(200, &issued.body, issued.cookie())
        }
        "auth.device_code" => {
            let b: DeviceCodeRequest = body(&mut req).await?;
            ok(&device::create(ctx, b).await?)
        }
        "snapshot.upload" => {
            let grant = query_param(&req, "grant")?;
            created(&snapshots::upload(ctx, &mut req, grant.as_deref()).await?)
        }
        "template.bundle_upload" => {
            let grant = query_param(&req, "grant")?;
            created(&templates::upload_bundle(ctx, &mut req, grant.as_deref()).await?)
        }
        "auth.device_token" => {
            let b: DeviceTokenRequest = body(&mut req).await?;
            let issued = device::token(ctx, b).await?;
            ok(&issued.body)
        }
        other => Err(unhandled(other)),
    }
}

/// Routes on a template of a workspace the caller is a member of.
async fn template(
    mut req: Request,
    ctx: &Ctx,
    spec: &RouteSpec,
    p: &Params<'_>,
    caller: &Caller,
    row: TemplateRow,
    m: Membership,
) -> ApiResult<Response> {
    match spec.action {
        "template.get" => ok(&templates::get(&row, &m)?),
        "build.list" => ok(&builds::list(ctx, &row, &m).await?),
        "release.list" => ok(&releases::list(ctx, &row, &m).await?),
        "release.promote" => {
            let b: PromoteRequest = body(&mut req).await?;
            created(&releases::promote(ctx, caller, &row, &m, b).await?)
        }
        "release.rollback" => {
            ok(&releases::rollback(ctx, caller, &row, &m, p.get("release_id")?).await?)
        }
        "build.start" => {
            let b: CreateBuildRequest = body(&mut req).await?;
            created(&builds::create(ctx, caller, &row, &m, b).await?)
        }
        "build.retry_dead_lettered" => ok(&builds::retry_dead_lettered(ctx, &row, &m).await?),
        "template.update" => {
            let b: UpdateTemplateRequest = body(&mut req).await?;
            ok(&templates::update(ctx, row, &m, b).await?)
        }
        "template.delete" => {
            templates::delete(ctx, row, &m).await?;
            no_content()
        }
        "template.archive" => ok(&templates::set_archived(ctx, row, &m, true).await?),
        "template.restore" => ok(&templates::set_archived(ctx, row, &m, false).await?),
        "template.versions" => ok(&templates::versions(ctx, &row, &m).await?),
        "template.version_create" => {
            let b: CreateVersionRequest = body(&mut req).await?;
            created(&templates::create_version(ctx, caller, &row, &m, b).await?)
        }
        "template.version_get" => {
            ok(&templates::get_version(ctx, &row, &m, p.get("version_id")?).await?)
        }
        "template.bundle_grant" => {
            ok(&templates::bundle_grant(ctx, &row, &m, p.get("version_id")?).await?)
        }
        "template.bundle_download" => {
            templates::download_bundle(ctx, &row, &m, p.get("version_id")?).await
        }
        other => Err(unhandled(other)),
    }
}

/// Routes inside a workspace the caller is a member of.
async fn workspace(
    mut req: Request,
    ctx: &Ctx,
    spec: &RouteSpec,
    p: &Params<'_>,
    caller: &Caller,
    m: Membership,
) -> ApiResult<Response> {
    match spec.action {
        "workspace.get" => ok(&workspaces::get(&m)?),
        "workspace.rename" => {
            let b: RenameWorkspaceRequest = body(&mut req).await?;
            ok(&workspaces::rename(ctx, m, b).await?)
        }
        "workspace.settings" => {
            let b: UpdateSettingsRequest = body(&mut req).await?;
            ok(&workspaces::update_settings(ctx, m, b).await?)
        }
        "workspace.members" => ok(&workspaces::members(ctx, &m).await?),
        "snapshot.list_workspace" => ok(&snapshots::list_workspace(ctx, caller, &m).await?),
        "workspace.role_change" => {
            let b: ChangeRoleRequest = body(&mut req).await?;
            ok(&workspaces::change_role(ctx, &m, p.get("user_id")?, b).await?)
        }
        "workspace.member_remove" => {
            workspaces::remove_member(ctx, caller, &m, p.get("user_id")?).await?;
            no_content()
        }
        "workspace.leave" => {
            workspaces::leave(ctx, caller, &m).await?;
            no_content()
        }
        "workspace.invites" => {
            let (limit, cursor) = (query_param(&req, "limit")?, query_param(&req, "cursor")?);
            ok(&workspaces::invites(ctx, &m, limit.as_deref(), cursor.as_deref()).await?)
        }
        "workspace.invite" => {
            let b: CreateInviteRequest = body(&mut req).await?;
            created(&workspaces::invite(ctx, caller, &m, b).await?)
        }
        "workspace.invite_revoke" => {
            ok(&workspaces::revoke_invite(ctx, &m, p.get("invite_id")?).await?)
        }
        "audit.list" => {
            let query = audit::Query {
                action: query_param(&req, "action")?,
                actor: query_param(&req, "actor")?,
                since: query_param(&req, "since")?,
                until: query_param(&req, "until")?,
                limit: query_param(&req, "limit")?,
                cursor: query_param(&req, "cursor")?,
            };
            ok(&audit::list(ctx, &m, query).await?)
        }
        other => Err(unhandled(other)),
    }
}

//! Workspaces and membership: team workspaces, settings, members, roles,
//! invites, leaving. Every decision goes through
//! [`burstflare_domain::policy::authorize`]; this module only gathers the
//! facts it needs and applies the outcome.
//!
//! A workspace the caller is not a member of does not exist for them: every
//! workspace-scoped route answers 404 `workspace_not_found` before looking at
//! anything else ([`member_of`]).

use burstflare_api::identity::{
    AcceptInviteRequest, ChangeRoleRequest, CreateInviteRequest, CreateWorkspaceRequest,
    CreatedInvite, Invite, Member, RenameWorkspaceRequest, SessionVisibility,
    UpdateSettingsRequest, Workspace, WorkspaceSettings,
};
use burstflare_api::{ErrorCode, Page, WorkspaceKind, WorkspaceMembership, timestamp};
use burstflare_domain::policy::{self, Action, Denied};
use burstflare_domain::{
    Email, InviteId, Role, TokenKind, TokenSecret, UserId, WorkspaceId, WorkspaceName,
    WorkspaceSlug,
};
use serde_json::json;

use super::paging::{cut_page, decode_keyset, encode_keyset, parse_limit};
use super::{new_id, new_secret, parse_id};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::platform::{random, secs_var};
use crate::routes::Ctx;
use crate::store::d1;
use crate::store::workspaces::{self as store, InviteRow, MemberRow, WorkspaceRow};

const INVITE_TTL_SECS: i64 = 7 * 24 * 3600;

/// The caller's membership in a workspace, with what policy decisions need.
pub struct Membership {
    pub row: WorkspaceRow,
    pub role: Role,
}

impl Membership {
    pub fn id(&self) -> &str {
        &self.row.id
    }

    pub fn settings(&self) -> WorkspaceSettings {
        serde_json::from_str(&self.row.settings_json).unwrap_or_default()
    }

    pub fn context(&self) -> policy::Context {
        policy::Context {
            owners: u32::try_from(self.row.owners).unwrap_or(0),
            personal: self.row.kind == "personal",
            shared_sessions: self.settings().session_visibility == SessionVisibility::Workspace,
        }
    }

    /// Asks the policy; refusals become 403 (409 for the last-owner rule).
    pub fn allow(&self, action: Action) -> ApiResult<()> {
        policy::authorize(self.role, action, self.context()).map_err(denied)
    }
}

pub fn denied(d: Denied) -> ApiError {
    match d {
        Denied::LastOwner => ApiError::new(409, ErrorCode::LastOwner, d.to_string()),
        _ => ApiError::new(403, ErrorCode::Forbidden, d.to_string())
            .with_details(json!({ "reason": format!("{d:?}").to_lowercase() })),
    }
}

fn parse_role(raw: &str) -> ApiResult<Role> {
    raw.parse()
        .map_err(|_| ApiError::internal(format!("stored role {raw:?}")))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(ErrorCode::WorkspaceNotFound, "workspace", id)
}

/// The caller's membership of `raw_id`, or 404 for anyone else.
pub async fn member_of(ctx: &Ctx, caller: &Caller, raw_id: &str) -> ApiResult<Membership> {
    let id: WorkspaceId = parse_id(raw_id, "workspace_id")?;
    let row = store::find_for_member(&ctx.env, id.as_str(), &caller.user.id)
        .await?
        .ok_or_else(|| not_found(id.as_str()))?;
    ctx.note_workspace(&row.id);
    let role = parse_role(&row.role)?;
    Ok(Membership { row, role })
}

fn to_api(row: &WorkspaceRow) -> ApiResult<Workspace> {
    Ok(Workspace {
        id: parse_id(&row.id, "workspace_id")?,
        slug: row.slug.clone(),
        name: row.name.clone(),
        kind: if row.kind == "personal" {
            WorkspaceKind::Personal
        } else {
            WorkspaceKind::Team
        },
        role: parse_role(&row.role)?,
        settings: serde_json::from_str(&row.settings_json).unwrap_or_default(),
        member_count: u32::try_from(row.member_count).unwrap_or(0),
        created_at: timestamp(row.created_at),
    })
}

pub async fn list(ctx: &Ctx, caller: &Caller) -> ApiResult<Vec<Workspace>> {
    store::list_for_member(&ctx.env, &caller.user.id)
        .await?
        .iter()
        .map(to_api)
        .collect()
}

pub async fn create(
    ctx: &Ctx,
    caller: &Caller,
    req: CreateWorkspaceRequest,
) -> ApiResult<Workspace> {
    let name = WorkspaceName::parse(&req.name)?;
    let id = new_id(WorkspaceId::from_random)?;
    ctx.note_workspace(id.as_str());
    ctx.note_target("workspace", id.as_str());
    let slug = WorkspaceSlug::derive(name.as_str(), &hex::encode(random::<4>()?));
    let stmts = store::insert_team(
        &ctx.env,
        id.as_str(),
        slug.as_str(),
        name.as_str(),
        &caller.user.id,
        ctx.now,
    )?;
    d1::db(&ctx.env)?
        .batch(stmts)
        .await
        .map_err(|e| d1::failed("create workspace", e))?;
    let row = store::find_for_member(&ctx.env, id.as_str(), &caller.user.id)
        .await?
        .ok_or_else(|| ApiError::internal("created workspace is missing"))?;
    to_api(&row)
}

pub fn get(m: &Membership) -> ApiResult<Workspace> {
    m.allow(Action::ViewWorkspace)?;
    to_api(&m.row)
}

pub async fn rename(ctx: &Ctx, m: Membership, req: RenameWorkspaceRequest) -> ApiResult<Workspace> {
    ctx.note_target("workspace", m.id());
    m.allow(Action::RenameWorkspace)?;
    let name = WorkspaceName::parse(&req.name)?;
    store::rename(&ctx.env, m.id(), name.as_str(), ctx.now).await?;
    let mut row = m.row;
    row.name = name.as_str().to_owned();
    to_api(&row)
}

pub async fn update_settings(
    ctx: &Ctx,
    m: Membership,
    req: UpdateSettingsRequest,
) -> ApiResult<Workspace> {
    ctx.note_target("workspace", m.id());
    m.allow(Action::UpdateSettings)?;
    let mut settings = m.settings();
    if let Some(t) = req.default_instance_type {
        settings.default_instance_type = t;
    }
    if let Some(v) = req.deleted_session_snapshots {
        settings.deleted_session_snapshots = v;
    }
    if let Some(v) = req.session_visibility {
        settings.session_visibility = v;
    }
    let json = serde_json::to_string(&settings)?;
    store::save_settings(&ctx.env, m.id(), &json, ctx.now).await?;
    let mut row = m.row;
    row.settings_json = json;
    to_api(&row)
}

fn member_to_api(r: &MemberRow) -> ApiResult<Member> {
    Ok(Member {
        user_id: parse_id(&r.user_id, "user_id")?,
        email: r.email.clone(),
        display_name: r.display_name.clone(),
        role: parse_role(&r.role)?,
        joined_at: timestamp(r.created_at),
    })
}

pub async fn members(ctx: &Ctx, m: &Membership) -> ApiResult<Vec<Member>> {
    m.allow(Action::ListMembers)?;
    store::members(&ctx.env, m.id())
        .await?
        .iter()
        .map(member_to_api)
        .collect()
}

async fn target_member(ctx: &Ctx, m: &Membership, raw_user_id: &str) -> ApiResult<MemberRow> {
    let user_id: UserId = parse_id(raw_user_id, "user_id")?;
    ctx.note_target("user", user_id.as_str());
    store::member(&ctx.env, m.id(), user_id.as_str())
        .await?
        .ok_or_else(|| {
            ApiError::new(
                404,
                ErrorCode::MemberNotFound,
                format!("{user_id} is not a member of this workspace"),
            )
        })
}

fn last_owner() -> ApiError {
    denied(Denied::LastOwner)
}

pub async fn change_role(
    ctx: &Ctx,
    m: &Membership,
    raw_user_id: &str,
    req: ChangeRoleRequest,
) -> ApiResult<Member> {
    let target = target_member(ctx, m, raw_user_id).await?;
    let from = parse_role(&target.role)?;
    m.allow(Action::ChangeRole { from, to: req.role })?;
    let demotes_owner = from == Role::Owner && req.role != Role::Owner;
    if store::set_role(
        &ctx.env,
        m.id(),
        &target.user_id,
        req.role.as_str(),
        demotes_owner,
    )
    .await?
        == 0
    {
        return Err(last_owner());
    }
    let row = store::member(&ctx.env, m.id(), &target.user_id)
        .await?
        .ok_or_else(|| ApiError::internal("member vanished"))?;
    member_to_api(&row)
}

pub async fn remove_member(
    ctx: &Ctx,
    caller: &Caller,
    m: &Membership,
    raw_user_id: &str,
) -> ApiResult<()> {
    let target = target_member(ctx, m, raw_user_id).await?;
    let target_role = parse_role(&target.role)?;
    if target.user_id == caller.user.id {
        m.allow(Action::Leave)?;
    } else {
        m.allow(Action::RemoveMember {
            target: target_role,
        })?;
    }
    if store::remove(
        &ctx.env,
        m.id(),
        &target.user_id,
        target_role == Role::Owner,
    )
    .await?
        == 0
    {
        return Err(last_owner());
    }
    Ok(())
}

pub async fn leave(ctx: &Ctx, caller: &Caller, m: &Membership) -> ApiResult<()> {
    ctx.note_target("user", &caller.user.id);
    m.allow(Action::Leave)?;
    if store::remove(&ctx.env, m.id(), &caller.user.id, m.role == Role::Owner).await? == 0 {
        return Err(last_owner());
    }
    Ok(())
}

fn invite_to_api(ctx: &Ctx, r: &InviteRow) -> ApiResult<Invite> {
    let status = if r.accepted_at.is_some() {
        "accepted"
    } else if r.revoked_at.is_some() {
        "revoked"
    } else if r.expires_at <= ctx.now {
        "expired"
    } else {
        "pending"
    };
    Ok(Invite {
        id: parse_id(&r.id, "invite_id")?,
        workspace_id: parse_id(&r.workspace_id, "workspace_id")?,
        email: r.email.clone(),
        role: parse_role(&r.role)?,
        invited_by: parse_id(&r.invited_by, "invited_by")?,
        status: status.to_owned(),
        created_at: timestamp(r.created_at),
        expires_at: timestamp(r.expires_at),
    })
}

pub async fn invites(
    ctx: &Ctx,
    m: &Membership,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> ApiResult<Page<Invite>> {
    m.allow(Action::RevokeInvite)?;
    let limit = parse_limit(limit)?;
    let after = cursor.map(decode_keyset::<InviteId>).transpose()?;
    let mut rows = store::invites(&ctx.env, m.id(), after.as_ref(), limit + 1).await?;
    let next_cursor = cut_page(&mut rows, limit, |r| encode_keyset(r.created_at, &r.id));
    let items = rows
        .iter()
        .map(|r| invite_to_api(ctx, r))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Page { items, next_cursor })
}

pub async fn invite(
    ctx: &Ctx,
    caller: &Caller,
    m: &Membership,
    req: CreateInviteRequest,
) -> ApiResult<CreatedInvite> {
    m.allow(Action::Invite { role: req.role })?;
    let email = Email::parse(&req.email)?;
    if store::is_member_by_email(&ctx.env, m.id(), email.as_str()).await? {
        return Err(ApiError::new(
            409,
            ErrorCode::AlreadyMember,
            format!("{email} is a member of this workspace already"),
        ));
    }
    let id = new_id(InviteId::from_random)?;
    ctx.note_target("invite", id.as_str());
    let code = new_secret(TokenKind::Invite)?;
    let row = InviteRow {
        id: id.to_string(),
        workspace_id: m.id().to_owned(),
        email: email.as_str().to_owned(),
        role: req.role.as_str().to_owned(),
        invited_by: caller.user.id.clone(),
        created_at: ctx.now,
        expires_at: ctx.now + secs_var(&ctx.env, "INVITE_TTL_SECONDS", INVITE_TTL_SECS),
        accepted_at: None,
        revoked_at: None,
    };
    store::insert_invite(&ctx.env, &row, &code.hash()).await?;
    Ok(CreatedInvite {
        invite: invite_to_api(ctx, &row)?,
        code: code.expose().to_owned(),
    })
}

pub async fn revoke_invite(ctx: &Ctx, m: &Membership, raw_id: &str) -> ApiResult<Invite> {
    let id: InviteId = parse_id(raw_id, "invite_id")?;
    ctx.note_target("invite", id.as_str());
    m.allow(Action::RevokeInvite)?;
    let not_found = || ApiError::not_found(ErrorCode::InviteNotFound, "invite", id.as_str());
    store::invite(&ctx.env, m.id(), id.as_str())
        .await?
        .ok_or_else(not_found)?;
    store::revoke_invite(&ctx.env, id.as_str(), ctx.now).await?;
    let row = store::invite(&ctx.env, m.id(), id.as_str())
        .await?
        .ok_or_else(not_found)?;
    invite_to_api(ctx, &row)
}

/// `POST /invites/accept`: the invitee (signed in with the invited email)
/// joins with the invited role.
pub async fn accept(
    ctx: &Ctx,
    caller: &Caller,
    req: AcceptInviteRequest,
) -> ApiResult<WorkspaceMembership> {
    let unknown = || ApiError::new(404, ErrorCode::InviteNotFound, "no invite has this code");
    let secret = TokenSecret::parse(req.code.trim())
        .ok()
        .filter(|s| s.kind() == TokenKind::Invite)
        .ok_or_else(unknown)?;
    let row = store::invite_by_code(&ctx.env, &secret.hash())
        .await?
        .ok_or_else(unknown)?;
    ctx.note_workspace(&row.workspace_id);
    ctx.note_target("invite", &row.id);
    let shown = invite_to_api(ctx, &row)?;
    if shown.status != "pending" {
        return Err(ApiError::new(
            409,
            ErrorCode::InviteUnavailable,
            format!("this invite is {}; ask for a new one", shown.status),
        )
        .with_details(json!({ "status": shown.status })));
    }
    if row.email != caller.user.email {
        return Err(ApiError::new(
            403,
            ErrorCode::InviteEmailMismatch,
            "this invite is for another email address; sign in as the invited user",
        ));
    }
    if store::member(&ctx.env, &row.workspace_id, &caller.user.id)
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            409,
            ErrorCode::AlreadyMember,
            "you are a member of this workspace already",
        ));
    }
    if store::accept_invite(&ctx.env, &row.id, &caller.user.id, ctx.now).await? == 0 {
        return Err(ApiError::new(
            409,
            ErrorCode::InviteUnavailable,
            "this invite is no longer pending; ask for a new one",
        ));
    }
    store::add_member(
        &ctx.env,
        &row.workspace_id,
        &caller.user.id,
        &row.role,
        ctx.now,
    )
    .await?;
    let ws = store::find_for_member(&ctx.env, &row.workspace_id, &caller.user.id)
        .await?
        .ok_or_else(|| not_found(&row.workspace_id))?;
    let full = to_api(&ws)?;
    Ok(WorkspaceMembership {
        id: full.id,
        slug: full.slug,
        name: full.name,
        kind: full.kind,
        role: full.role,
    })
}

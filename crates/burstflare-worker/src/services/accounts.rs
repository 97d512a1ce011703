//! Registration and the caller's own account.

use burstflare_api::{ErrorCode, Me, RegisterRequest, RegisterResponse};
use burstflare_domain::{DisplayName, Email, UserId, WorkspaceId, WorkspaceSlug};
use serde_json::json;

use super::new_id;
use super::ratelimit::{self, Bucket};
use super::signin::{self, SessionCookie};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::platform::random;
use crate::routes::Ctx;
use crate::store::users::{self, NewAccount, UserRow};
use crate::store::{auth_sessions, d1};

fn email_taken(email: &Email) -> ApiError {
    ApiError::new(
        409,
        ErrorCode::EmailTaken,
        format!("an account for {email} already exists"),
    )
    .with_details(json!({ "field": "email" }))
}

/// Creates a user and their personal workspace (as owner) and signs them
/// in, atomically. Browsers get the session cookies, other clients tokens.
pub async fn register(
    ctx: &Ctx,
    req: RegisterRequest,
) -> ApiResult<(RegisterResponse, Option<SessionCookie>)> {
    ratelimit::check(ctx, Bucket::Register, ctx.ip_key()).await?;
    let email = Email::parse(&req.email)?;
    let display_name = DisplayName::parse(&req.display_name)?;
    super::turnstile::verify(ctx, req.turnstile_token.as_deref(), ctx.ip.as_deref()).await?;
    if users::email_exists(&ctx.env, email.as_str()).await? {
        return Err(email_taken(&email));
    }
    let user_id = new_id(UserId::from_random)?;
    let workspace_id = new_id(WorkspaceId::from_random)?;
    ctx.note_actor(user_id.as_str(), Some(workspace_id.as_str()));
    ctx.note_target("user", user_id.as_str());
    let slug = WorkspaceSlug::personal(&email, &hex::encode(random::<4>()?));
    let workspace_name = format!("{}'s workspace", display_name.as_str());
    let mut batch = users::insert_account(
        &ctx.env,
        &NewAccount {
            user_id: user_id.as_str(),
            email: email.as_str(),
            display_name: display_name.as_str(),
            workspace_id: workspace_id.as_str(),
            workspace_slug: slug.as_str(),
            workspace_name: &workspace_name,
            now: ctx.now,
        },
    )?;
    let (session_stmts, pending) =
        signin::prepare(ctx, user_id.as_str(), req.client, "registration")?;
    batch.extend(session_stmts);
    let db = d1::db(&ctx.env)?;
    if let Err(e) = db.batch(batch).await {
        let err = d1::failed("register batch", e);
        // Two registrations racing for one email: the loser sees the UNIQUE index.
        return Err(if d1::is_unique_violation(&err, "users.email") {
            email_taken(&email)
        } else {
            err
        });
    }
    let user = UserRow {
        id: user_id.to_string(),
        email: email.as_str().to_owned(),
        display_name: display_name.as_str().to_owned(),
        created_at: ctx.now,
        personal_workspace_id: Some(workspace_id.to_string()),
    };
    let workspace = users::memberships(&ctx.env, user_id.as_str())
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("registered user has no workspace"))?;
    let issued = pending.finish(&user)?;
    let response = RegisterResponse {
        user: issued.body.user,
        workspace: workspace.to_api()?,
        session: issued.body.session,
        credentials: issued.body.credentials,
        csrf_token: issued.body.csrf_token,
    };
    Ok((response, issued.cookie))
}

/// The caller, their workspaces and how they authenticated.
pub async fn me(ctx: &Ctx, caller: &Caller) -> ApiResult<Me> {
    let workspaces = users::memberships(&ctx.env, &caller.user.id)
        .await?
        .iter()
        .map(|m| m.to_api())
        .collect::<ApiResult<Vec<_>>>()?;
    let session = match &caller.session_id {
        Some(id) => auth_sessions::find(&ctx.env, id)
            .await?
            .map(|s| s.to_api(Some(id)))
            .transpose()?,
        None => None,
    };
    Ok(Me {
        user: caller.user.to_api()?,
        workspaces,
        token: caller.token.as_ref().map(|t| t.to_api()).transpose()?,
        session,
    })
}

//! Registration and the caller's own account.

use burstflare_api::{ErrorCode, IssuedToken, Me, RegisterRequest, RegisterResponse};
use burstflare_domain::{
    DisplayName, Email, TokenId, TokenKind, UserId, WorkspaceId, WorkspaceSlug,
};
use serde_json::json;

use super::{new_id, new_secret};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::platform::random;
use crate::routes::Ctx;
use crate::store::d1;
use crate::store::tokens::{self, NewToken};
use crate::store::users::{self, NewAccount, UserRow};

/// Name of the access token issued at registration.
const REGISTRATION_TOKEN_NAME: &str = "registration";

fn email_taken(email: &Email) -> ApiError {
    ApiError::new(
        409,
        ErrorCode::EmailTaken,
        format!("an account for {email} already exists"),
    )
    .with_details(json!({ "field": "email" }))
}

/// Creates a user, their personal workspace (as owner) and an access token,
/// atomically.
pub async fn register(
    ctx: &Ctx,
    req: RegisterRequest,
    remote_ip: Option<&str>,
) -> ApiResult<RegisterResponse> {
    let email = Email::parse(&req.email)?;
    let display_name = DisplayName::parse(&req.display_name)?;
    super::turnstile::verify(ctx, req.turnstile_token.as_deref(), remote_ip).await?;
    if users::email_exists(&ctx.env, email.as_str()).await? {
        return Err(email_taken(&email));
    }
    let user_id = new_id(UserId::from_random)?;
    let workspace_id = new_id(WorkspaceId::from_random)?;
    let slug = WorkspaceSlug::personal(&email, &hex::encode(random::<4>()?));
    let workspace_name = format!("{}'s workspace", display_name.as_str());
    let secret = new_secret(TokenKind::Access)?;
    let token_id = new_id(TokenId::from_random)?;
    let token = NewToken {
        id: token_id.as_str(),
        user_id: user_id.as_str(),
        kind: TokenKind::Access,
        name: REGISTRATION_TOKEN_NAME,
        hash: &secret.hash(),
        prefix: &secret.display_prefix(),
        now: ctx.now,
        expires_at: None,
    };
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
    batch.push(tokens::insert(&ctx.env, &token)?);
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
    };
    let workspace = users::memberships(&ctx.env, user_id.as_str())
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("registered user has no workspace"))?;
    Ok(RegisterResponse {
        user: user.to_api()?,
        workspace: workspace.to_api()?,
        access_token: IssuedToken {
            token: secret.expose().to_owned(),
            info: token.row().to_api()?,
        },
    })
}

/// The caller, their workspaces and the token they used.
pub async fn me(ctx: &Ctx, caller: &Caller) -> ApiResult<Me> {
    let workspaces = users::memberships(&ctx.env, &caller.user.id)
        .await?
        .iter()
        .map(|m| m.to_api())
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Me {
        user: caller.user.to_api()?,
        workspaces,
        token: caller.token.to_api()?,
    })
}

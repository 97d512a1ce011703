//! Device authorization (RFC 8628) for `burstflare login`.
//!
//! The CLI asks for a device code and a user code, shows the user code and
//! the verification URL, and polls. A signed-in user (the web app's device
//! page, or `burstflare auth device approve`) looks the request up by user
//! code, sees which client asked and from where, and approves or denies it.
//! The poll that follows an approval gets a CLI session's tokens, once.

use burstflare_api::identity::{
    ClientKind, DeviceCodeRequest, DeviceCodeResponse, DeviceRequest, DeviceTokenRequest,
};
use burstflare_api::{ErrorCode, timestamp};
use burstflare_domain::device::{
    self, DeviceStatus, PollOutcome, PollState, USER_CODE_LEN, display_user_code,
    normalize_user_code,
};
use burstflare_domain::{DeviceAuthId, TokenKind, TokenSecret, TokenUseError};
use serde_json::json;

use super::ratelimit::{self, Bucket};
use super::signin::{self, Issued};
use super::{new_id, new_secret};
use crate::auth::{Caller, invalid};
use crate::error::{ApiError, ApiResult};
use crate::platform::{random, secs_var, var};
use crate::routes::Ctx;
use crate::store::device::{self as store, DeviceRow};
use crate::store::{d1, users};

const CODE_TTL_SECS: i64 = 600;
const POLL_INTERVAL_SECS: i64 = 5;
const MAX_CLIENT_NAME: usize = 100;

fn poll_error(code: ErrorCode, message: &str) -> ApiError {
    ApiError::new(400, code, message)
}

/// `POST /auth/device/code`.
pub async fn create(ctx: &Ctx, req: DeviceCodeRequest) -> ApiResult<DeviceCodeResponse> {
    ratelimit::check(ctx, Bucket::DeviceCode, ctx.ip_key()).await?;
    let client_name = req
        .client_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("burstflare CLI")
        .to_owned();
    if client_name.chars().count() > MAX_CLIENT_NAME || client_name.chars().any(char::is_control) {
        return Err(burstflare_domain::account::FieldError::new(
            "client_name",
            format!("at most {MAX_CLIENT_NAME} printable characters"),
        )
        .into());
    }
    let ttl = secs_var(&ctx.env, "DEVICE_CODE_TTL_SECONDS", CODE_TTL_SECS);
    let interval = secs_var(&ctx.env, "DEVICE_POLL_INTERVAL_SECONDS", POLL_INTERVAL_SECS);
    let secret = new_secret(TokenKind::DeviceCode)?;
    let id = new_id(DeviceAuthId::from_random)?;
    let mut row = DeviceRow {
        id: id.to_string(),
        user_code: String::new(),
        client_name,
        user_agent: ctx.user_agent.clone(),
        ip: ctx.ip.clone(),
        status: DeviceStatus::Pending.as_str().to_owned(),
        user_id: None,
        interval_ms: interval,
        last_polled_at: None,
        created_at: ctx.now,
        expires_at: ctx.now + ttl,
    };
    // A user-code collision (1 in ~10^10 per live code) gets a second draw.
    let mut attempt = 0;
    loop {
        row.user_code = device::user_code(random::<USER_CODE_LEN>()?);
        match store::insert(&ctx.env, &row, &secret.hash()).await {
            Ok(()) => break,
            Err(e) if attempt == 0 && d1::is_unique_violation(&e, "user_code") => attempt += 1,
            Err(e) => return Err(e),
        }
    }
    let shown = display_user_code(&row.user_code);
    let base = var(&ctx.env, "PUBLIC_URL", "http://localhost:8787");
    let verification_uri = format!("{}/device", base.trim_end_matches('/'));
    Ok(DeviceCodeResponse {
        device_code: secret.expose().to_owned(),
        verification_uri_complete: format!("{verification_uri}?code={shown}"),
        verification_uri,
        user_code: shown,
        expires_in: u64::try_from(ttl / 1000).unwrap_or(0),
        interval: u64::try_from(interval / 1000).unwrap_or(0),
    })
}

/// `POST /auth/device/token`: one poll.
pub async fn token(ctx: &Ctx, req: DeviceTokenRequest) -> ApiResult<Issued> {
    let secret = TokenSecret::parse(req.device_code.trim()).map_err(invalid)?;
    if secret.kind() != TokenKind::DeviceCode {
        return Err(invalid(TokenUseError::WrongKind));
    }
    let hash = secret.hash();
    ratelimit::check(ctx, Bucket::DevicePoll, &hash).await?;
    let row = store::find_by_device_code(&ctx.env, &hash)
        .await?
        .ok_or_else(|| {
            poll_error(
                ErrorCode::InvalidGrant,
                "unknown device code; run `burstflare login` again",
            )
        })?;
    ctx.note_target("device_authorization", &row.id);
    let status = DeviceStatus::parse(&row.status)
        .ok_or_else(|| ApiError::internal(format!("stored device status {:?}", row.status)))?;
    let state = PollState {
        status,
        expires_at: row.expires_at,
        last_polled_at: row.last_polled_at,
        interval_ms: row.interval_ms,
        base_interval_ms: secs_var(&ctx.env, "DEVICE_POLL_INTERVAL_SECONDS", POLL_INTERVAL_SECS),
    };
    match device::poll(state, ctx.now) {
        PollOutcome::Pending => {
            store::record_poll(&ctx.env, &row.id, ctx.now, row.interval_ms).await?;
            Err(poll_error(
                ErrorCode::AuthorizationPending,
                "waiting for the user to approve this device",
            )
            .with_details(json!({ "interval": row.interval_ms / 1000 })))
        }
        PollOutcome::SlowDown { interval_ms } => {
            store::record_poll(&ctx.env, &row.id, ctx.now, interval_ms).await?;
            Err(poll_error(
                ErrorCode::SlowDown,
                &format!(
                    "polling too fast; wait {} s between polls",
                    interval_ms / 1000
                ),
            )
            .with_details(json!({ "interval": interval_ms / 1000 })))
        }
        PollOutcome::Expired => Err(poll_error(
            ErrorCode::ExpiredToken,
            "the device code expired before it was approved; run `burstflare login` again",
        )),
        PollOutcome::Denied => Err(poll_error(
            ErrorCode::AccessDenied,
            "the sign-in request was denied",
        )),
        PollOutcome::AlreadyUsed => Err(poll_error(
            ErrorCode::InvalidGrant,
            "this device code was exchanged already",
        )),
        PollOutcome::Issue => {
            if store::consume(&ctx.env, &row.id).await? == 0 {
                return Err(poll_error(
                    ErrorCode::InvalidGrant,
                    "this device code was exchanged already",
                ));
            }
            let user_id = row
                .user_id
                .as_deref()
                .ok_or_else(|| ApiError::internal("approved device request without a user"))?;
            let user = users::find(&ctx.env, user_id)
                .await?
                .ok_or_else(|| poll_error(ErrorCode::InvalidGrant, "the approving user is gone"))?;
            signin::sign_in(ctx, &user, ClientKind::Cli, "device").await
        }
    }
}

fn shown(ctx: &Ctx, row: &DeviceRow) -> DeviceRequest {
    let status = if row.status == "pending" && row.expires_at <= ctx.now {
        "expired".to_owned()
    } else {
        row.status.clone()
    };
    DeviceRequest {
        user_code: display_user_code(&row.user_code),
        client_name: row.client_name.clone(),
        user_agent: row.user_agent.clone(),
        ip: row.ip.clone(),
        status,
        created_at: timestamp(row.created_at),
        expires_at: timestamp(row.expires_at),
    }
}

async fn lookup(ctx: &Ctx, raw: &str) -> ApiResult<DeviceRow> {
    let not_found = || {
        ApiError::new(
            404,
            ErrorCode::DeviceRequestNotFound,
            format!("no sign-in request has the code {raw:?}; check the code the CLI shows"),
        )
    };
    let code = normalize_user_code(raw).ok_or_else(not_found)?;
    let row = store::find_by_user_code(&ctx.env, &code)
        .await?
        .ok_or_else(not_found)?;
    ctx.note_target("device_authorization", &row.id);
    Ok(row)
}

/// `GET /auth/device/{user_code}`.
pub async fn get(ctx: &Ctx, _caller: &Caller, user_code: &str) -> ApiResult<DeviceRequest> {
    Ok(shown(ctx, &lookup(ctx, user_code).await?))
}

/// `POST /auth/device/{user_code}/approve|deny`.
pub async fn decide(
    ctx: &Ctx,
    caller: &Caller,
    user_code: &str,
    approve: bool,
) -> ApiResult<DeviceRequest> {
    let row = lookup(ctx, user_code).await?;
    let status = if approve {
        DeviceStatus::Approved
    } else {
        DeviceStatus::Denied
    };
    if store::decide(&ctx.env, &row.id, status.as_str(), &caller.user.id, ctx.now).await? == 0 {
        let now = shown(ctx, &row);
        return Err(ApiError::new(
            409,
            ErrorCode::DeviceRequestDecided,
            format!(
                "this sign-in request is {} and can no longer be decided",
                now.status
            ),
        )
        .with_details(json!({ "status": now.status })));
    }
    let row = lookup(ctx, user_code).await?;
    Ok(shown(ctx, &row))
}

//! HTTP routes under `/api/v1`: parse, authenticate, call one service
//! function, shape the response. Every failure leaves through
//! [`crate::http::error_response`] as the JSON envelope.

mod table;

use burstflare_api::ErrorCode;
use burstflare_api::ops::CreateProbeRequest;
use burstflare_api::sessions::{AddSshKeyRequest, CreateSessionRequest};
use burstflare_api::{CreateTokenRequest, MAX_JSON_BODY_BYTES, RegisterRequest};
use burstflare_domain::SessionCommand;
use serde_json::json;
use table::{Route, RouteMatch, match_route};
use worker::{Env, Request, Response};

use crate::auth::authenticate;
use crate::error::{ApiError, ApiResult};
use crate::http::{
    error_response, json_response, new_request_id, query_param, read_json, with_request_id,
};
use crate::services::{accounts, diagnostics, health, sessions, ssh_keys, tokens};

/// Per-request context handed to services.
pub struct Ctx {
    pub env: Env,
    pub now: i64,
}

/// Serves one request; never fails (errors become envelopes).
pub async fn handle(req: Request, env: Env) -> worker::Result<Response> {
    let request_id = new_request_id();
    let method = req.method().to_string();
    let path = req.path();
    let ctx = Ctx {
        env,
        now: crate::platform::now(),
    };
    let resp = match dispatch(req, &ctx, &method, &path).await {
        Ok(resp) => resp,
        Err(err) => error_response(&err, &request_id, &method, &path)?,
    };
    Ok(with_request_id(resp, &request_id))
}

async fn dispatch(mut req: Request, ctx: &Ctx, method: &str, path: &str) -> ApiResult<Response> {
    let route = match match_route(method, path) {
        RouteMatch::Found(route) => route,
        RouteMatch::MethodNotAllowed(allowed) => {
            return Err(ApiError::new(
                405,
                ErrorCode::MethodNotAllowed,
                format!(
                    "{method} is not allowed on {path}; use {}",
                    allowed.join(" or ")
                ),
            )
            .with_details(json!({ "allowed": allowed })));
        }
        RouteMatch::NotFound => {
            return Err(ApiError::new(
                404,
                ErrorCode::RouteNotFound,
                format!("no route for {path}"),
            )
            .with_details(json!({ "path": path })));
        }
    };
    match route {
        Route::Health => health::respond(ctx).await,
        Route::Register => {
            let body: RegisterRequest = read_json(&mut req, MAX_JSON_BODY_BYTES).await?;
            let ip = req.headers().get("cf-connecting-ip").ok().flatten();
            json_response(201, &accounts::register(ctx, body, ip.as_deref()).await?)
        }
        Route::Me => {
            let caller = authenticate(ctx, &req).await?;
            json_response(200, &accounts::me(ctx, &caller).await?)
        }
        Route::ListTokens => {
            let caller = authenticate(ctx, &req).await?;
            let limit = query_param(&req, "limit")?;
            let cursor = query_param(&req, "cursor")?;
            json_response(
                200,
                &tokens::list(ctx, &caller, limit.as_deref(), cursor.as_deref()).await?,
            )
        }
        Route::CreateToken => {
            let caller = authenticate(ctx, &req).await?;
            let body: CreateTokenRequest = read_json(&mut req, MAX_JSON_BODY_BYTES).await?;
            json_response(201, &tokens::create(ctx, &caller, body).await?)
        }
        Route::RevokeToken { token_id } => {
            let caller = authenticate(ctx, &req).await?;
            json_response(200, &tokens::revoke(ctx, &caller, &token_id).await?)
        }
        Route::CreateProbe => {
            let caller = authenticate(ctx, &req).await?;
            let body: CreateProbeRequest = read_json(&mut req, MAX_JSON_BODY_BYTES).await?;
            json_response(201, &diagnostics::create(ctx, &caller, body).await?)
        }
        Route::GetProbe { probe_id } => {
            let caller = authenticate(ctx, &req).await?;
            json_response(200, &diagnostics::get(ctx, &caller, &probe_id).await?)
        }
        Route::ListSessions => {
            let caller = authenticate(ctx, &req).await?;
            let q = sessions::ListQuery {
                limit: query_param(&req, "limit")?,
                cursor: query_param(&req, "cursor")?,
                name: query_param(&req, "name")?,
                workspace_id: query_param(&req, "workspace_id")?,
            };
            json_response(200, &sessions::list(ctx, &caller, q).await?)
        }
        Route::CreateSession => {
            let caller = authenticate(ctx, &req).await?;
            let body: CreateSessionRequest = read_json(&mut req, MAX_JSON_BODY_BYTES).await?;
            json_response(201, &sessions::create(ctx, &caller, body).await?)
        }
        Route::GetSession { session_id } => {
            let caller = authenticate(ctx, &req).await?;
            json_response(200, &sessions::get(ctx, &caller, &session_id).await?)
        }
        Route::DeleteSession { session_id } => {
            let caller = authenticate(ctx, &req).await?;
            let result =
                sessions::command(ctx, &caller, &session_id, SessionCommand::Delete).await?;
            json_response(200, &result)
        }
        Route::SessionCommand {
            session_id,
            command,
        } => {
            let caller = authenticate(ctx, &req).await?;
            json_response(
                200,
                &sessions::command(ctx, &caller, &session_id, command).await?,
            )
        }
        Route::SessionEvents { session_id } => {
            let caller = authenticate(ctx, &req).await?;
            let after = query_param(&req, "after")?;
            let limit = query_param(&req, "limit")?;
            json_response(
                200,
                &sessions::events(
                    ctx,
                    &caller,
                    &session_id,
                    after.as_deref(),
                    limit.as_deref(),
                )
                .await?,
            )
        }
        Route::SessionSsh { session_id } => {
            let caller = authenticate(ctx, &req).await?;
            sessions::ssh(ctx, &caller, &session_id, &req).await
        }
        Route::ListSshKeys => {
            let caller = authenticate(ctx, &req).await?;
            json_response(200, &ssh_keys::list(ctx, &caller).await?)
        }
        Route::AddSshKey => {
            let caller = authenticate(ctx, &req).await?;
            let body: AddSshKeyRequest = read_json(&mut req, MAX_JSON_BODY_BYTES).await?;
            json_response(201, &ssh_keys::add(ctx, &caller, body).await?)
        }
        Route::RemoveSshKey { key_id } => {
            let caller = authenticate(ctx, &req).await?;
            ssh_keys::remove(ctx, &caller, &key_id).await?;
            Ok(Response::empty()?.with_status(204))
        }
    }
}

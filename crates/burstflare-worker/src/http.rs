//! HTTP plumbing shared by every route: request ids, bounded JSON bodies,
//! query parameters and building JSON and error responses.

use burstflare_api::identity::{CSRF_COOKIE, SESSION_COOKIE};
use burstflare_api::{ErrorCode, REQUEST_ID_HEADER};
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use worker::{Headers, Request, Response};

use crate::error::{ApiError, ApiResult};
use crate::services::signin::SessionCookie;

/// Generates a request id (`req_` + 24 hex characters).
pub fn new_request_id() -> String {
    match crate::platform::random::<12>() {
        Ok(bytes) => format!("req_{}", hex::encode(bytes)),
        Err(_) => "req_unavailable".to_owned(),
    }
}

/// Reads and parses a JSON body of at most `limit` bytes. The limit is
/// enforced from `Content-Length` when present and while streaming otherwise,
/// so an oversized body is never buffered whole.
pub async fn read_json<T: DeserializeOwned>(req: &mut Request, limit: usize) -> ApiResult<T> {
    let content_type = req
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json" {
        return Err(ApiError::new(
            415,
            ErrorCode::UnsupportedMediaType,
            "the request body must be JSON; send `Content-Type: application/json`",
        ));
    }
    let too_large = || {
        ApiError::new(
            413,
            ErrorCode::PayloadTooLarge,
            format!("the request body exceeds {limit} bytes"),
        )
        .with_details(json!({ "limit_bytes": limit }))
    };
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    if let Ok(mut stream) = req.stream() {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(
                    400,
                    ErrorCode::MalformedJson,
                    "the request body could not be read",
                )
                .with_details(json!({ "reason": e.to_string() }))
            })?;
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
    }
    if body.is_empty() {
        return Err(ApiError::new(
            400,
            ErrorCode::MalformedJson,
            "the request body is empty; expected a JSON object",
        ));
    }
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            400,
            ErrorCode::MalformedJson,
            format!("the request body is not valid: {e}"),
        )
        .with_details(json!({ "line": e.line(), "column": e.column() }))
    })
}

/// A query parameter's value, if present.
pub fn query_param(req: &Request, name: &str) -> ApiResult<Option<String>> {
    let url = req
        .url()
        .map_err(|e| ApiError::internal(format!("url: {e}")))?;
    Ok(url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned()))
}

/// Serializes `body` as a JSON response with `status`.
pub fn json_response<T: Serialize>(status: u16, body: &T) -> ApiResult<Response> {
    let text = serde_json::to_string(body)?;
    let headers = Headers::new();
    headers.set("content-type", "application/json; charset=utf-8")?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::ok(text)?
        .with_status(status)
        .with_headers(headers))
}

/// The one place an [`ApiError`] becomes an HTTP response. Internal context is
/// logged here, with the request id, and never sent.
pub fn error_response(
    err: &ApiError,
    request_id: &str,
    method: &str,
    path: &str,
) -> worker::Result<Response> {
    if err.status >= 500 {
        worker::console_error!(
            "{request_id} {method} {path} -> {} {:?}: {}",
            err.status,
            err.code,
            err.internal.as_deref().unwrap_or(&err.message)
        );
    }
    let body = serde_json::to_string(&err.envelope(request_id))?;
    let headers = Headers::new();
    headers.set("content-type", "application/json; charset=utf-8")?;
    headers.set("cache-control", "no-store")?;
    if err.status == 401 {
        headers.set("www-authenticate", "Bearer realm=\"burstflare\"")?;
    }
    if let Some(secs) = err.details.get("retry_after_secs").and_then(|s| s.as_u64()) {
        headers.set("retry-after", &secs.to_string())?;
    }
    if let Some(allowed) = err.details.get("allowed").and_then(|a| a.as_array()) {
        let allow: Vec<&str> = allowed.iter().filter_map(|m| m.as_str()).collect();
        headers.set("allow", &allow.join(", "))?;
    }
    Ok(Response::ok(body)?
        .with_status(err.status)
        .with_headers(headers))
}

fn set_cookie(name: &str, value: &str, http_only: bool, max_age_secs: i64) -> String {
    format!(
        "{name}={value}; Path=/; Max-Age={max_age_secs}; Secure; SameSite=Lax{}",
        if http_only { "; HttpOnly" } else { "" }
    )
}

/// A JSON response that also sets the browser session cookies when there are any.
pub fn signed_in_response<T: Serialize>(
    status: u16,
    body: &T,
    cookie: Option<&SessionCookie>,
) -> ApiResult<Response> {
    let resp = json_response(status, body)?;
    if let Some(c) = cookie {
        let headers = resp.headers().clone();
        headers.append(
            "set-cookie",
            &set_cookie(SESSION_COOKIE, &c.value, true, c.max_age_secs),
        )?;
        headers.append(
            "set-cookie",
            &set_cookie(CSRF_COOKIE, &c.csrf, false, c.max_age_secs),
        )?;
        return Ok(resp.with_headers(headers));
    }
    Ok(resp)
}

/// Adds headers expiring the browser session cookies.
pub fn clear_session_cookies(resp: Response) -> ApiResult<Response> {
    let headers = resp.headers().clone();
    headers.append("set-cookie", &set_cookie(SESSION_COOKIE, "", true, 0))?;
    headers.append("set-cookie", &set_cookie(CSRF_COOKIE, "", false, 0))?;
    Ok(resp.with_headers(headers))
}

/// Sets the request id header on a response.
pub fn with_request_id(resp: Response, request_id: &str) -> Response {
    let headers = resp.headers().clone();
    let _ = headers.set(REQUEST_ID_HEADER, request_id);
    resp.with_headers(headers)
}

//! Cloudflare Turnstile verification for registration.
//!
//! The client solves a Turnstile challenge and sends its token; the Worker asks
//! the siteverify endpoint (`TURNSTILE_SITEVERIFY_URL`, Cloudflare's by
//! default) with the secret (`TURNSTILE_SECRET`, a secret binding) and the
//! caller's IP (`CF-Connecting-IP`), in Cloudflare's documented form-encoded
//! request; `{"success": false, "error-codes": [...]}` rejects the request.
//! `TURNSTILE_REQUIRED = "false"` disables the check (local development only;
//! the Worker says so in its log on every registration).

use burstflare_api::ErrorCode;
use serde::Deserialize;
use serde_json::json;
use worker::{Fetch, Headers, Method, Request, RequestInit};

use crate::error::{ApiError, ApiResult};
use crate::platform::var;
use crate::routes::Ctx;

pub const DEFAULT_SITEVERIFY_URL: &str =
    "https://challenges.cloudflare.com/turnstile/v0/siteverify";

/// Siteverify's answer (fields we use).
#[derive(Debug, Deserialize)]
struct Verdict {
    success: bool,
    #[serde(default, rename = "error-codes")]
    error_codes: Vec<String>,
}

/// Whether registration needs a token here.
pub fn required(ctx: &Ctx) -> bool {
    var(&ctx.env, "TURNSTILE_REQUIRED", "true") != "false"
}

/// `GET /config`: the web app's settings (the Turnstile widget's site key).
pub fn public_config(ctx: &Ctx) -> burstflare_api::ops::PublicConfig {
    let required = required(ctx);
    burstflare_api::ops::PublicConfig {
        environment: crate::platform::environment(&ctx.env),
        turnstile: burstflare_api::ops::TurnstileConfig {
            required,
            site_key: required
                .then(|| var(&ctx.env, "TURNSTILE_SITE_KEY", ""))
                .filter(|k| !k.is_empty()),
        },
    }
}

/// Verifies `token` for a request from `remote_ip`.
pub async fn verify(ctx: &Ctx, token: Option<&str>, remote_ip: Option<&str>) -> ApiResult<()> {
    if !required(ctx) {
        worker::console_log!(
            "Turnstile verification is disabled (TURNSTILE_REQUIRED=false); never do this outside local development"
        );
        return Ok(());
    }
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(ApiError::new(
            400,
            ErrorCode::TurnstileRequired,
            "registration needs a Turnstile token (`turnstile_token`) from the sign-up page",
        )
        .with_details(json!({ "field": "turnstile_token" })));
    };
    if token.len() > 2048 {
        return Err(rejected(&["invalid-input-response".into()]));
    }
    let secret = ctx
        .env
        .secret("TURNSTILE_SECRET")
        .map(|s| s.to_string())
        .or_else(|_| ctx.env.var("TURNSTILE_SECRET").map(|v| v.to_string()))
        .map_err(|_| {
            ApiError::unavailable("Turnstile is required but TURNSTILE_SECRET is not configured")
        })?;
    let url = var(&ctx.env, "TURNSTILE_SITEVERIFY_URL", DEFAULT_SITEVERIFY_URL);
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("secret", &secret)
        .append_pair("response", token);
    if let Some(ip) = remote_ip {
        form.append_pair("remoteip", ip);
    }
    let headers = Headers::new();
    headers.set("content-type", "application/x-www-form-urlencoded")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(form.finish().into()));
    let mut resp = Fetch::Request(Request::new_with_init(&url, &init)?)
        .send()
        .await
        .map_err(|e| ApiError::unavailable(format!("Turnstile siteverify is unreachable: {e}")))?;
    if resp.status_code() != 200 {
        return Err(ApiError::unavailable(format!(
            "Turnstile siteverify answered HTTP {}",
            resp.status_code()
        )));
    }
    let verdict: Verdict = resp.json().await.map_err(|e| {
        ApiError::unavailable(format!(
            "Turnstile siteverify sent an unreadable answer: {e}"
        ))
    })?;
    if verdict.success {
        Ok(())
    } else {
        Err(rejected(&verdict.error_codes))
    }
}

fn rejected(codes: &[String]) -> ApiError {
    ApiError::new(
        400,
        ErrorCode::TurnstileFailed,
        format!(
            "the Turnstile check failed ({}); reload the sign-up page and try again",
            if codes.is_empty() {
                "no reason given".to_owned()
            } else {
                codes.join(", ")
            }
        ),
    )
    .with_details(json!({ "field": "turnstile_token", "error_codes": codes }))
}

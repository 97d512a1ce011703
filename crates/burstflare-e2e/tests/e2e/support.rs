//! Helpers shared by the end-to-end tests.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use burstflare_api::{ErrorBody, ErrorCode, ErrorEnvelope};
use burstflare_cli::client::ClientError;

pub type TestFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Asserts that a raw response is the error envelope with `status` and `code`,
/// and that its request id matches the header.
pub async fn expect_envelope(
    resp: reqwest::Response,
    status: u16,
    code: ErrorCode,
) -> Result<ErrorBody> {
    let got = resp.status().as_u16();
    let header_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await?;
    ensure!(got == status, "expected HTTP {status}, got {got}: {text}");
    ensure!(
        content_type.starts_with("application/json"),
        "content-type {content_type:?}"
    );
    let env: ErrorEnvelope =
        serde_json::from_str(&text).with_context(|| format!("not an envelope: {text}"))?;
    ensure!(
        env.error.code == code,
        "expected code {code:?}, got {:?}: {text}",
        env.error.code
    );
    ensure!(!env.error.message.is_empty(), "empty message");
    ensure!(
        env.error.request_id.is_some() && env.error.request_id == header_id,
        "request id mismatch: {text} vs {header_id:?}"
    );
    Ok(env.error)
}

/// Asserts that a client call failed with the API error `status`/`code`.
pub fn expect_api_error<T: std::fmt::Debug>(
    result: Result<T, ClientError>,
    status: u16,
    code: ErrorCode,
) -> Result<ErrorBody> {
    match result {
        Err(ClientError::Api { status: s, body }) if s == status && body.code == code => Ok(body),
        other => bail!("expected API error {status} {code:?}, got {other:?}"),
    }
}

/// Polls `check` until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A well-formed id (or code) for a path parameter that names nothing.
fn placeholder(param: &str) -> &'static str {
    match param {
        "workspace_id" => "ws_00000000000000000000000000",
        "user_id" => "usr_00000000000000000000000000",
        "session_id" => "ses_00000000000000000000000000",
        "token_id" => "tok_00000000000000000000000000",
        "probe_id" => "prb_00000000000000000000000000",
        "key_id" => "key_00000000000000000000000000",
        "passkey_id" => "pk_00000000000000000000000000",
        "auth_session_id" => "aus_00000000000000000000000000",
        "invite_id" => "inv_00000000000000000000000000",
        "user_code" => "BCDF-GHJK",
        "template_id" => "tpl_00000000000000000000000000",
        "version_id" => "tv_00000000000000000000000000",
        _ => "x",
    }
}

/// A catalogue path with `{param}`s replaced: from `values`, else placeholders.
pub fn fill_path(template: &str, values: &[(&str, &str)]) -> String {
    template
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => values
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map_or_else(|| placeholder(name).to_owned(), |(_, v)| (*v).to_owned()),
                None => seg.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

//! Previews and the browser editor: `/api/v1/sessions/{id}/preview/{port}/…`
//! proxies HTTP and WebSockets to a port the session's release declares, and
//! `/api/v1/sessions/{id}/editor/…` to the session's code-server (templates
//! with `editor = true`).
//!
//! These paths sit outside the route catalogue (they take any method and any
//! path below the prefix) and are not audited: they are the user's own
//! traffic. Rules:
//! * The caller is authenticated like any API request (bearer token, or the
//!   session cookie from the web app's origins; any cross-origin request
//!   carrying the cookie is 403 `csrf_failed`). The app's own requests carry
//!   no CSRF token, so none is asked for. A browser navigation without
//!   credentials is sent to the sign-in page and back.
//! * A preview is for whoever may see the session: its owner, and the
//!   workspace's members when the workspace shares sessions
//!   (`session_visibility = "workspace"`), and admins; everyone else gets 404
//!   `session_not_found`. The editor is a shell, so it is for those who may
//!   operate the session.
//! * A port the release does not declare is 404 `port_not_declared`.
//! * A sleeping session wakes (a stopped one for its owner); the request then
//!   waits for the container, exactly like `ssh`.
//! * Previews share the control plane's origin. A page served to anyone but
//!   the session's owner carries `Content-Security-Policy: sandbox …`
//!   (without `allow-same-origin`), so another member's app cannot act with
//!   the viewer's cookie; the owner's own app runs unsandboxed.
//! * The app sees the path below the prefix (`/` for the prefix itself), its
//!   own cookies (never the platform's `bf_session`/`bf_csrf`), no
//!   `Authorization`, and `X-Forwarded-Prefix` (the prefix),
//!   `X-Forwarded-Host` and `X-Forwarded-Proto` (where the browser is), so
//!   apps that build absolute links or check `Origin` (code-server) work. The bare prefix redirects to the
//!   prefix with a trailing slash, so relative links resolve below it.

use burstflare_api::ErrorCode;
use burstflare_api::identity::{CSRF_COOKIE, SESSION_COOKIE};
use burstflare_domain::template::EDITOR_PORT;
use serde_json::json;
use worker::{Request, Response};

use crate::auth::authenticate;
use crate::durable::session_coordinator::{self as coordinator, Target};
use crate::error::{ApiError, ApiResult};
use crate::routes::Ctx;

use super::sessions::accessible;

/// A path below a session's preview or editor prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewPath<'a> {
    pub session_id: &'a str,
    /// The port as written (`None`: the editor).
    pub port: Option<&'a str>,
    /// `/api/v1/sessions/{id}/preview/{port}` or `/api/v1/sessions/{id}/editor`.
    pub prefix: &'a str,
    /// What follows the prefix: empty or starting with `/`.
    pub rest: &'a str,
}

/// Recognises a preview or editor path.
pub fn parse(path: &str) -> Option<PreviewPath<'_>> {
    let base = "/api/v1/sessions/";
    let after = path.strip_prefix(base)?;
    let (session_id, tail) = after.split_once('/')?;
    if session_id.is_empty() {
        return None;
    }
    let head = base.len() + session_id.len() + 1;
    let (port, consumed) = if let Some(r) = tail.strip_prefix("editor") {
        if !(r.is_empty() || r.starts_with('/')) {
            return None;
        }
        (None, "editor".len())
    } else {
        let r = tail.strip_prefix("preview/")?;
        let port = r.split('/').next().unwrap_or_default();
        if port.is_empty() {
            return None;
        }
        (Some(port), "preview/".len() + port.len())
    };
    Some(PreviewPath {
        session_id,
        port,
        prefix: &path[..head + consumed],
        rest: &path[head + consumed..],
    })
}

/// Serves a preview or editor request.
pub async fn serve(ctx: &Ctx, req: &Request, p: &PreviewPath<'_>) -> ApiResult<Response> {
    let url = req.url()?;
    let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
    let caller = match authenticate(ctx, req, false).await {
        Ok(caller) => caller,
        Err(e) if e.status == 401 && is_navigation(req) => {
            let next = format!("{}{}{query}", p.prefix, p.rest);
            let to = format!("/signin?next={}", urlencoding_min(&next));
            return Ok(Response::redirect_with_status(join(&url, &to)?, 302)?);
        }
        Err(e) => return Err(e),
    };
    let port = match p.port {
        None => EDITOR_PORT,
        Some(raw) => raw.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
            ApiError::new(
                400,
                ErrorCode::InvalidField,
                format!("{raw:?} is not a port (1 to 65535)"),
            )
            .with_details(json!({ "field": "port", "reason": "not a port number" }))
        })?,
    };
    let editor = p.port.is_none();
    let rec = accessible(ctx, &caller, p.session_id, editor).await?;
    if p.rest.is_empty() {
        let to = format!("{}/{query}", p.prefix);
        return Ok(Response::redirect_with_status(join(&url, &to)?, 308)?);
    }
    let target = Target::Preview {
        port,
        path: format!("{}{query}", p.rest),
    };
    let own = rec.owner_id == caller.user.id;
    let link = coordinator::Link {
        actor: &caller.user.id,
        wake_stopped: own,
        app_cookie: app_cookies(req),
        // Where the browser is, for apps that check `Origin` against the
        // host (code-server does) or build absolute links.
        forwarded: vec![
            ("x-forwarded-prefix", p.prefix.to_owned()),
            (
                "x-forwarded-host",
                url.host_str().map_or_else(String::new, |h| {
                    url.port()
                        .map_or_else(|| h.to_owned(), |port| format!("{h}:{port}"))
                }),
            ),
            ("x-forwarded-proto", url.scheme().to_owned()),
        ],
    };
    let resp = coordinator::connect(&ctx.env, &rec.id, req, &target, &link).await?;
    if own || resp.status_code() == 101 {
        return Ok(resp);
    }
    // Someone else's app runs on this origin: sandboxed, its pages get an
    // opaque origin (no cookies, no same-origin API calls as the viewer).
    let headers = resp.headers().clone();
    headers.append("content-security-policy", FOREIGN_SANDBOX)?;
    Ok(resp.with_headers(headers))
}

/// The CSP of previews shown to anyone but the session's owner.
const FOREIGN_SANDBOX: &str = "sandbox allow-scripts allow-forms allow-popups \
     allow-popups-to-escape-sandbox allow-modals allow-downloads";

fn join(base: &worker::Url, to: &str) -> ApiResult<worker::Url> {
    base.join(to)
        .map_err(|e| ApiError::internal(format!("redirect to {to}: {e}")))
}

/// A top-level browser navigation (not `fetch`, not a WebSocket).
fn is_navigation(req: &Request) -> bool {
    let h = |n: &str| req.headers().get(n).ok().flatten().unwrap_or_default();
    h("sec-fetch-mode") == "navigate" || h("accept").contains("text/html")
}

/// The request's cookies minus the platform's own.
fn app_cookies(req: &Request) -> Option<String> {
    let raw = req.headers().get("cookie").ok().flatten()?;
    let kept: Vec<&str> = raw
        .split(';')
        .map(str::trim)
        .filter(|c| {
            let name = c.split('=').next().unwrap_or_default().trim();
            !c.is_empty() && name != SESSION_COOKIE && name != CSRF_COOKIE
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Percent-encodes what a query value cannot hold as is.
fn urlencoding_min(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char);
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (session id, port, prefix, rest) of a path.
    fn parts(path: &str) -> Option<(&str, Option<&str>, &str, &str)> {
        parse(path).map(|p| (p.session_id, p.port, p.prefix, p.rest))
    }

    #[test]
    fn preview_and_editor_paths() {
        let prefix = "/api/v1/sessions/ses_1/preview/3000";
        assert_eq!(
            parts("/api/v1/sessions/ses_1/preview/3000/a/b"),
            Some(("ses_1", Some("3000"), prefix, "/a/b"))
        );
        assert_eq!(parts(prefix), Some(("ses_1", Some("3000"), prefix, "")));
        assert_eq!(
            parts("/api/v1/sessions/ses_1/editor/"),
            Some(("ses_1", None, "/api/v1/sessions/ses_1/editor", "/"))
        );
        assert!(parse("/api/v1/sessions/ses_1/editors").is_none());
        assert!(parse("/api/v1/sessions/ses_1/preview/").is_none());
        assert!(parse("/api/v1/sessions/ses_1/ssh").is_none());
        assert!(parse("/api/v1/sessions//preview/1").is_none());
        assert!(parse("/api/v1/sessions/ses_1").is_none());
        assert_eq!(
            parts("/api/v1/sessions/ses_1/preview/x/").map(|p| p.1),
            Some(Some("x"))
        );
    }

    #[test]
    fn encodes_the_next_path() {
        assert_eq!(urlencoding_min("/a b?c=d&e"), "/a%20b%3Fc%3Dd%26e");
    }
}

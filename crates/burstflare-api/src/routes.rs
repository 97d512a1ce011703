//! The route catalogue: every `/api/v1` route with its method, path template,
//! audit action name and scope. The Worker's router is built from this table,
//! and the end-to-end suite walks it (every workspace-scoped route must answer
//! 404 to a non-member), so the two cannot drift apart.

/// Who may reach a route, and what it is scoped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// No authentication (registration, sign-in ceremonies, health).
    Public,
    /// Any signed-in user; acts on the caller's own account.
    User,
    /// Inside a workspace (`{workspace_id}` in the path): members only.
    Workspace,
    /// A session (`{session_id}` in the path): members of its workspace only.
    Session,
    /// A template (`{template_id}` in the path): members of its workspace only.
    Template,
    /// A build (`{build_id}` in the path): members of its template's workspace only.
    Build,
}

/// One route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: &'static str,
    /// Path after `/api/v1`, with `{param}` segments.
    pub path: &'static str,
    /// Audit action name (`session.start`), unique per route.
    pub action: &'static str,
    pub scope: Scope,
    /// The route speaks WebSocket only.
    pub websocket: bool,
    /// The route reads a JSON body (`{}` when it has no parameters).
    pub body: bool,
}

impl RouteSpec {
    /// Whether the route changes state (and so is audited and CSRF-checked).
    pub fn mutating(&self) -> bool {
        !matches!(self.method, "GET" | "HEAD")
    }

    /// Matches `segments` (the path after `/api/v1`, split on `/`) against the
    /// template; returns the `{param}` values in order.
    pub fn match_path<'a>(&self, segments: &[&'a str]) -> Option<Vec<(&'static str, &'a str)>> {
        let template: Vec<&'static str> = self.path.split('/').skip(1).collect();
        if template.len() != segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (t, s) in template.iter().zip(segments) {
            match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                Some(name) => params.push((name, *s)),
                None if t == s => {}
                None => return None,
            }
        }
        Some(params)
    }
}

const fn r(
    method: &'static str,
    path: &'static str,
    action: &'static str,
    scope: Scope,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        action,
        scope,
        websocket: false,
        body: false,
    }
}

/// A route with a JSON body.
const fn rb(
    method: &'static str,
    path: &'static str,
    action: &'static str,
    scope: Scope,
) -> RouteSpec {
    RouteSpec {
        body: true,
        ..r(method, path, action, scope)
    }
}

const fn ws(path: &'static str, action: &'static str, scope: Scope) -> RouteSpec {
    RouteSpec {
        method: "GET",
        path,
        action,
        scope,
        websocket: true,
        body: false,
    }
}

use Scope::{Build, Public, Session, Template, User, Workspace};

/// Every route, grouped by area.
pub const ROUTES: &[RouteSpec] = &[
    r("GET", "/health", "health.get", Public),
    r("GET", "/config", "config.get", Public),
    // Registration and signing in.
    rb("POST", "/auth/register", "auth.register", Public),
    rb("POST", "/auth/token/refresh", "auth.refresh", Public),
    rb(
        "POST",
        "/auth/login/passkey/options",
        "auth.passkey_login_options",
        Public,
    ),
    rb("POST", "/auth/login/passkey", "auth.passkey_login", Public),
    rb(
        "POST",
        "/auth/login/recovery",
        "auth.recovery_login",
        Public,
    ),
    rb("POST", "/auth/device/code", "auth.device_code", Public),
    rb("POST", "/auth/device/token", "auth.device_token", Public),
    r("GET", "/auth/device/{user_code}", "auth.device_get", User),
    r(
        "POST",
        "/auth/device/{user_code}/approve",
        "auth.device_approve",
        User,
    ),
    r(
        "POST",
        "/auth/device/{user_code}/deny",
        "auth.device_deny",
        User,
    ),
    // The caller's account.
    r("GET", "/me", "me.get", User),
    r("POST", "/auth/logout", "auth.logout", User),
    r("POST", "/auth/logout-all", "auth.logout_all", User),
    r("GET", "/auth/sessions", "auth.sessions_list", User),
    r(
        "DELETE",
        "/auth/sessions/{auth_session_id}",
        "auth.session_revoke",
        User,
    ),
    r("GET", "/auth/tokens", "token.list", User),
    rb("POST", "/auth/tokens", "token.create", User),
    r("DELETE", "/auth/tokens/{token_id}", "token.revoke", User),
    r("GET", "/auth/passkeys", "passkey.list", User),
    rb(
        "POST",
        "/auth/passkeys/options",
        "passkey.register_options",
        User,
    ),
    rb("POST", "/auth/passkeys", "passkey.register", User),
    r(
        "DELETE",
        "/auth/passkeys/{passkey_id}",
        "passkey.delete",
        User,
    ),
    r("GET", "/auth/recovery-codes", "recovery_codes.status", User),
    rb(
        "POST",
        "/auth/recovery-codes",
        "recovery_codes.generate",
        User,
    ),
    r("GET", "/ssh-keys", "ssh_key.list", User),
    rb("POST", "/ssh-keys", "ssh_key.add", User),
    r("DELETE", "/ssh-keys/{key_id}", "ssh_key.remove", User),
    rb("POST", "/diagnostics/probes", "probe.create", User),
    r("GET", "/diagnostics/probes/{probe_id}", "probe.get", User),
    // Workspaces.
    r("GET", "/workspaces", "workspace.list", User),
    rb("POST", "/workspaces", "workspace.create", User),
    rb("POST", "/invites/accept", "workspace.invite_accept", User),
    r(
        "GET",
        "/workspaces/{workspace_id}",
        "workspace.get",
        Workspace,
    ),
    rb(
        "PATCH",
        "/workspaces/{workspace_id}",
        "workspace.rename",
        Workspace,
    ),
    rb(
        "PATCH",
        "/workspaces/{workspace_id}/settings",
        "workspace.settings",
        Workspace,
    ),
    r(
        "GET",
        "/workspaces/{workspace_id}/members",
        "workspace.members",
        Workspace,
    ),
    rb(
        "PATCH",
        "/workspaces/{workspace_id}/members/{user_id}",
        "workspace.role_change",
        Workspace,
    ),
    r(
        "DELETE",
        "/workspaces/{workspace_id}/members/{user_id}",
        "workspace.member_remove",
        Workspace,
    ),
    r(
        "POST",
        "/workspaces/{workspace_id}/leave",
        "workspace.leave",
        Workspace,
    ),
    r(
        "GET",
        "/workspaces/{workspace_id}/invites",
        "workspace.invites",
        Workspace,
    ),
    rb(
        "POST",
        "/workspaces/{workspace_id}/invites",
        "workspace.invite",
        Workspace,
    ),
    r(
        "DELETE",
        "/workspaces/{workspace_id}/invites/{invite_id}",
        "workspace.invite_revoke",
        Workspace,
    ),
    r(
        "GET",
        "/workspaces/{workspace_id}/audit",
        "audit.list",
        Workspace,
    ),
    // Templates, versions and bundles.
    r("GET", "/templates", "template.list", User),
    rb("POST", "/templates", "template.create", User),
    r("GET", "/templates/{template_id}", "template.get", Template),
    rb(
        "PATCH",
        "/templates/{template_id}",
        "template.update",
        Template,
    ),
    r(
        "DELETE",
        "/templates/{template_id}",
        "template.delete",
        Template,
    ),
    r(
        "POST",
        "/templates/{template_id}/archive",
        "template.archive",
        Template,
    ),
    r(
        "POST",
        "/templates/{template_id}/restore",
        "template.restore",
        Template,
    ),
    r(
        "GET",
        "/templates/{template_id}/versions",
        "template.versions",
        Template,
    ),
    rb(
        "POST",
        "/templates/{template_id}/versions",
        "template.version_create",
        Template,
    ),
    r(
        "GET",
        "/templates/{template_id}/versions/{version_id}",
        "template.version_get",
        Template,
    ),
    r(
        "POST",
        "/templates/{template_id}/versions/{version_id}/bundle-grant",
        "template.bundle_grant",
        Template,
    ),
    r(
        "GET",
        "/templates/{template_id}/versions/{version_id}/bundle",
        "template.bundle_download",
        Template,
    ),
    r(
        "GET",
        "/templates/{template_id}/builds",
        "build.list",
        Template,
    ),
    rb(
        "POST",
        "/templates/{template_id}/builds",
        "build.start",
        Template,
    ),
    r(
        "POST",
        "/templates/{template_id}/builds/retry-dead-lettered",
        "build.retry_dead_lettered",
        Template,
    ),
    r(
        "GET",
        "/templates/{template_id}/releases",
        "release.list",
        Template,
    ),
    rb(
        "POST",
        "/templates/{template_id}/releases",
        "release.promote",
        Template,
    ),
    r(
        "POST",
        "/templates/{template_id}/releases/{release_id}/rollback",
        "release.rollback",
        Template,
    ),
    r("GET", "/builds/{build_id}", "build.get", Build),
    r("GET", "/builds/{build_id}/logs", "build.logs", Build),
    r("POST", "/builds/{build_id}/cancel", "build.cancel", Build),
    r("POST", "/builds/{build_id}/retry", "build.retry", Build),
    // Authorised by the signed grant in the query, not by a credential.
    r("PUT", "/uploads/bundle", "template.bundle_upload", Public),
    // Sessions.
    r("GET", "/sessions", "session.list", User),
    rb("POST", "/sessions", "session.create", User),
    r("GET", "/sessions/{session_id}", "session.get", Session),
    r(
        "DELETE",
        "/sessions/{session_id}",
        "session.delete",
        Session,
    ),
    r(
        "POST",
        "/sessions/{session_id}/start",
        "session.start",
        Session,
    ),
    r(
        "POST",
        "/sessions/{session_id}/stop",
        "session.stop",
        Session,
    ),
    r(
        "POST",
        "/sessions/{session_id}/restart",
        "session.restart",
        Session,
    ),
    r(
        "POST",
        "/sessions/{session_id}/sleep",
        "session.sleep",
        Session,
    ),
    r(
        "GET",
        "/sessions/{session_id}/events",
        "session.events",
        Session,
    ),
    r(
        "GET",
        "/sessions/{session_id}/activity",
        "session.activity",
        Session,
    ),
    ws("/sessions/{session_id}/ssh", "session.ssh", Session),
    ws(
        "/sessions/{session_id}/terminal",
        "session.terminal",
        Session,
    ),
    // Snapshots of a session's persisted paths.
    r(
        "GET",
        "/sessions/{session_id}/snapshots",
        "snapshot.list",
        Session,
    ),
    r(
        "POST",
        "/sessions/{session_id}/snapshots",
        "snapshot.create",
        Session,
    ),
    r(
        "GET",
        "/sessions/{session_id}/snapshots/{snapshot_id}",
        "snapshot.get",
        Session,
    ),
    r(
        "DELETE",
        "/sessions/{session_id}/snapshots/{snapshot_id}",
        "snapshot.delete",
        Session,
    ),
    r(
        "GET",
        "/sessions/{session_id}/snapshots/{snapshot_id}/download",
        "snapshot.download",
        Session,
    ),
    r(
        "POST",
        "/sessions/{session_id}/snapshots/uploads",
        "snapshot.upload_grant",
        Session,
    ),
    rb(
        "POST",
        "/sessions/{session_id}/restore",
        "snapshot.restore",
        Session,
    ),
    // Authorised by the signed grant in the query, not by a credential.
    r("PUT", "/uploads/snapshot", "snapshot.upload", Public),
    r(
        "GET",
        "/workspaces/{workspace_id}/snapshots",
        "snapshot.list_workspace",
        Workspace,
    ),
];

/// The outcome of matching a request against [`ROUTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matched<'a> {
    Found {
        spec: &'static RouteSpec,
        params: Vec<(&'static str, &'a str)>,
    },
    /// The path exists, but not for this method.
    MethodNotAllowed(Vec<&'static str>),
    NotFound,
}

/// Matches a full URL path (`/api/v1/...`) and method against [`ROUTES`].
/// `HEAD` is served by `GET` routes; a trailing slash is ignored.
pub fn match_route<'a>(method: &str, path: &'a str) -> Matched<'a> {
    let Some(rest) = path.strip_prefix(crate::API_PREFIX) else {
        return Matched::NotFound;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    if rest.is_empty() || !rest.starts_with('/') || segments.iter().any(|s| s.is_empty()) {
        return Matched::NotFound;
    }
    let method = if method == "HEAD" { "GET" } else { method };
    let mut allowed = Vec::new();
    for spec in ROUTES {
        if let Some(params) = spec.match_path(&segments) {
            if spec.method == method {
                return Matched::Found { spec, params };
            }
            allowed.push(spec.method);
        }
    }
    if allowed.is_empty() {
        Matched::NotFound
    } else {
        Matched::MethodNotAllowed(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(method: &str, path: &str) -> (&'static str, Vec<(&'static str, String)>) {
        match match_route(method, path) {
            Matched::Found { spec, params } => (
                spec.action,
                params.into_iter().map(|(k, v)| (k, v.to_owned())).collect(),
            ),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn every_route_matches_itself_and_is_unique() {
        let mut actions = std::collections::HashSet::new();
        for spec in ROUTES {
            assert!(
                actions.insert(spec.action),
                "duplicate action {}",
                spec.action
            );
            let concrete = spec
                .path
                .split('/')
                .map(|s| if s.starts_with('{') { "x_1" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let (action, _) = found(spec.method, &format!("/api/v1{concrete}"));
            assert_eq!(action, spec.action, "{} {}", spec.method, spec.path);
            let has_ws = spec.path.contains("{workspace_id}");
            let has_session = spec.path.contains("{session_id}");
            let has_template = spec.path.contains("{template_id}");
            assert_eq!(spec.scope == Scope::Workspace, has_ws, "{}", spec.path);
            assert_eq!(spec.scope == Scope::Session, has_session, "{}", spec.path);
            assert_eq!(spec.scope == Scope::Template, has_template, "{}", spec.path);
            assert_eq!(
                spec.scope == Scope::Build,
                spec.path.contains("{build_id}"),
                "{}",
                spec.path
            );
        }
    }

    #[test]
    fn every_route_is_documented() {
        // Headings read `### `GET /sessions/{session_id}` …` (paths under /api/v1),
        // optionally with a query string.
        let doc = include_str!("../../../docs/api.md");
        for spec in ROUTES {
            let route = format!("`{} {}", spec.method, spec.path);
            assert!(
                doc.contains(&format!("{route}`")) || doc.contains(&format!("{route}?")),
                "docs/api.md does not document {route}`"
            );
        }
    }

    #[test]
    fn params_methods_and_unknown_paths() {
        assert_eq!(
            found("PATCH", "/api/v1/workspaces/ws_1/members/usr_2/"),
            (
                "workspace.role_change",
                vec![("workspace_id", "ws_1".into()), ("user_id", "usr_2".into())]
            )
        );
        assert_eq!(found("HEAD", "/api/v1/me").0, "me.get");
        // Literal segments win over parameters declared later.
        assert_eq!(
            found("POST", "/api/v1/auth/passkeys/options").0,
            "passkey.register_options"
        );
        assert_eq!(
            match_route("PUT", "/api/v1/ssh-keys"),
            Matched::MethodNotAllowed(vec!["GET", "POST"])
        );
        assert_eq!(
            match_route("GET", "/api/v1/sessions/ses_1/start"),
            Matched::MethodNotAllowed(vec!["POST"])
        );
        for p in [
            "/",
            "/api/v1",
            "/api/v1/",
            "/api/v2/health",
            "/api/v1/nope",
            "/api/v1//health",
            "/api/v1/me/x",
            "/api/v1health",
            "/api/v1/sessions/ses_1/pause",
        ] {
            assert_eq!(match_route("GET", p), Matched::NotFound, "{p}");
        }
    }
}

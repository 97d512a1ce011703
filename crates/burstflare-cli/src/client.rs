//! A typed client for `/api/v1`. Every request and response body is a
//! `burstflare-api` type; failures carry the server's error envelope.

use std::time::Duration;

use burstflare_api::ops::{CreateProbeRequest, Health, Probe};
use burstflare_api::sessions::{
    AddSshKeyRequest, CommandResult, CreateSessionRequest, Session, SessionEvent, SshKey,
};
use burstflare_api::{
    CreateTokenRequest, ErrorBody, ErrorEnvelope, IssuedToken, Me, Page, RegisterRequest,
    RegisterResponse, TokenInfo,
};
use burstflare_domain::SessionCommand;
use std::sync::Arc;

use burstflare_api::WorkspaceMembership;
use burstflare_api::builds::{
    Build, BulkRetry, CreateBuildRequest, PromoteRequest, Release, Releases,
};
use burstflare_api::identity::{
    AcceptInviteRequest, AuditEvent, AuthSession, ChangeRoleRequest, CreateInviteRequest,
    CreateWorkspaceRequest, CreatedInvite, Credentials, DeviceCodeRequest, DeviceCodeResponse,
    DeviceRequest, DeviceTokenRequest, Empty, Invite, LogoutAll, Member, Passkey, PasskeyCeremony,
    PasskeyLoginOptionsRequest, PasskeyLoginRequest, RecoveryCodes, RecoveryLoginRequest,
    RecoveryStatus, RefreshRequest, RegisterPasskeyRequest, RenameWorkspaceRequest, SignedIn,
    UpdateSettingsRequest, Workspace,
};
use burstflare_api::snapshots::{RestoreRequest, RestoreResult, Snapshot};
use burstflare_api::templates::{
    Bundle, CreateTemplateRequest, CreateVersionRequest, Template, TemplateVersion,
    UpdateTemplateRequest, UploadGrant,
};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error envelope.
    #[error("{} ({}, HTTP {status})", body.message, serde_json::to_value(body.code).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())]
    Api { status: u16, body: ErrorBody },
    /// No answer: connection refused, DNS, timeout, TLS.
    #[error("could not reach {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered something that is not the expected JSON.
    #[error("unexpected response from {url} (HTTP {status}): {detail}")]
    Decode {
        url: String,
        status: u16,
        detail: String,
    },
    /// The API URL is not a valid http(s) URL.
    #[error("invalid API URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
}

impl ClientError {
    /// The HTTP status of an API error, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error envelope body, if the server sent one.
    pub fn api_error(&self) -> Option<&ErrorBody> {
        match self {
            ClientError::Api { body, .. } => Some(body),
            _ => None,
        }
    }
}

/// The health endpoint's answer: the report, healthy or not.
#[derive(Debug, Clone)]
pub struct HealthReport {
    pub healthy: bool,
    /// The error message when unhealthy.
    pub problem: Option<String>,
    pub health: Health,
}

/// The tokens of a signed-in session, as the CLI stores them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SessionTokens {
    pub access_token: String,
    /// Unix seconds; refreshed a minute before.
    pub access_expires_at: Option<i64>,
    pub refresh_token: String,
}

impl SessionTokens {
    pub fn from_credentials(c: &Credentials) -> Self {
        Self {
            access_token: c.access_token.token.clone(),
            access_expires_at: c.access_token.info.expires_at.map(|t| t.unix_timestamp()),
            refresh_token: c.refresh_token.clone(),
        }
    }

    fn expiring(&self) -> bool {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.access_expires_at.is_some_and(|at| at - 60 <= now)
    }
}

/// Called with the new tokens after every refresh, to persist them.
pub type PersistTokens = Arc<dyn Fn(&SessionTokens) + Send + Sync>;

/// A signed-in session whose access token is refreshed as needed.
struct Refreshing {
    tokens: std::sync::Mutex<SessionTokens>,
    /// One refresh at a time: a refresh token is good for one exchange.
    gate: tokio::sync::Mutex<()>,
    persist: Option<PersistTokens>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    session: Option<Arc<Refreshing>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("refreshing", &self.session.is_some())
            .finish()
    }
}

impl Client {
    /// A client for the API at `api_url` (scheme, host and port; no path).
    pub fn new(api_url: &str, token: Option<String>) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl {
            url: api_url.to_owned(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(api_url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("burstflare-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // Lifecycle commands wait for containers (and for commands queued
            // before them on the same session).
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Self {
            http,
            base,
            token,
            session: None,
        })
    }

    /// A client for a signed-in session: the access token is refreshed a
    /// minute before it expires (and once after a 401), and `persist` is
    /// told the new tokens.
    pub fn with_session(&self, tokens: SessionTokens, persist: Option<PersistTokens>) -> Self {
        Self {
            token: None,
            session: Some(Arc::new(Refreshing {
                tokens: std::sync::Mutex::new(tokens),
                gate: tokio::sync::Mutex::new(()),
                persist,
            })),
            ..self.clone()
        }
    }

    fn current_token(&self) -> Option<String> {
        match &self.session {
            Some(s) => s.tokens.lock().ok().map(|t| t.access_token.clone()),
            None => self.token.clone(),
        }
    }

    /// The session's tokens now (after any refresh).
    pub fn session_tokens(&self) -> Option<SessionTokens> {
        self.session
            .as_ref()
            .and_then(|s| s.tokens.lock().ok().map(|t| t.clone()))
    }

    /// Exchanges the refresh token for a new pair, unless another task did
    /// since `seen` was read.
    async fn refresh_session(&self, seen: &str) -> Result<(), ClientError> {
        let Some(session) = &self.session else {
            return Ok(());
        };
        let _one_at_a_time = session.gate.lock().await;
        let current = session.tokens.lock().ok().map(|t| t.clone());
        let Some(current) = current else {
            return Ok(());
        };
        if current.access_token != seen {
            return Ok(());
        }
        let req = RefreshRequest {
            refresh_token: current.refresh_token.clone(),
        };
        let (status, url, bytes) = self
            .send_once(Method::POST, "/auth/token/refresh", Some(&req), None)
            .await?;
        if !status.is_success() {
            return Err(api_error(status, url, &bytes));
        }
        let creds: Credentials =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
                url,
                status: status.as_u16(),
                detail: e.to_string(),
            })?;
        let next = SessionTokens::from_credentials(&creds);
        if let Ok(mut t) = session.tokens.lock() {
            *t = next.clone();
        }
        if let Some(persist) = &session.persist {
            persist(&next);
        }
        Ok(())
    }

    /// A valid access token, refreshing first if it is about to expire
    /// (for the WebSocket routes, which cannot retry after a 401).
    pub async fn fresh_token(&self) -> Result<Option<String>, ClientError> {
        if let Some(session) = &self.session {
            let expiring = session
                .tokens
                .lock()
                .ok()
                .map(|t| (t.expiring(), t.access_token.clone()));
            if let Some((true, seen)) = expiring {
                self.refresh_session(&seen).await?;
            }
        }
        Ok(self.current_token())
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    pub fn with_token(&self, token: Option<String>) -> Self {
        Self {
            token,
            session: None,
            ..self.clone()
        }
    }

    fn url(&self, path: &str) -> String {
        let base = self.base.as_str().trim_end_matches('/');
        format!("{base}{}{path}", burstflare_api::API_PREFIX)
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(StatusCode, String, Vec<u8>), ClientError> {
        let mut retried = false;
        let mut token = self.fresh_token().await?;
        loop {
            let (status, url, bytes) = self
                .send_once(method.clone(), path, body, token.as_deref())
                .await?;
            // An access token revoked or expired early: refresh once and retry.
            if status == StatusCode::UNAUTHORIZED
                && self.session.is_some()
                && !retried
                && let Some(seen) = &token
            {
                retried = true;
                self.refresh_session(seen).await?;
                token = self.current_token();
                continue;
            }
            return Ok((status, url, bytes));
        }
    }

    async fn send_once<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        token: Option<&str>,
    ) -> Result<(StatusCode, String, Vec<u8>), ClientError> {
        let url = self.url(path);
        let mut req = self.http.request(method, &url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|source| ClientError::Transport {
            url: url.clone(),
            source,
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        Ok((status, url, bytes.to_vec()))
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let (status, url, bytes) = self.send(method, path, body).await?;
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
                url,
                status: status.as_u16(),
                detail: e.to_string(),
            })
        } else {
            Err(api_error(status, url, &bytes))
        }
    }

    pub async fn health(&self) -> Result<HealthReport, ClientError> {
        let (status, url, bytes) = self.send::<()>(Method::GET, "/health", None).await?;
        let decode = |detail: String| ClientError::Decode {
            url: url.clone(),
            status: status.as_u16(),
            detail,
        };
        if status.is_success() {
            let health = serde_json::from_slice(&bytes).map_err(|e| decode(e.to_string()))?;
            return Ok(HealthReport {
                healthy: true,
                problem: None,
                health,
            });
        }
        let err = api_error(status, url.clone(), &bytes);
        // An unhealthy answer still carries the report in the envelope's details.
        match err
            .api_error()
            .map(|b| serde_json::from_value::<Health>(b.details.clone()))
        {
            Some(Ok(health)) => Ok(HealthReport {
                healthy: false,
                problem: err.api_error().map(|b| b.message.clone()),
                health,
            }),
            _ => Err(err),
        }
    }

    pub async fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse, ClientError> {
        self.call(Method::POST, "/auth/register", Some(req)).await
    }

    pub async fn me(&self) -> Result<Me, ClientError> {
        self.call::<(), _>(Method::GET, "/me", None).await
    }

    pub async fn create_token(&self, req: &CreateTokenRequest) -> Result<IssuedToken, ClientError> {
        self.call(Method::POST, "/auth/tokens", Some(req)).await
    }

    pub async fn list_tokens(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<TokenInfo>, ClientError> {
        let path = list_path("/auth/tokens", limit, cursor);
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// Every personal token, following cursors.
    pub async fn all_tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .list_tokens(Some(burstflare_api::MAX_PAGE_SIZE), cursor.as_deref())
                .await?;
            items.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(items),
            }
        }
    }

    pub async fn revoke_token(&self, id: &str) -> Result<TokenInfo, ClientError> {
        self.call::<(), _>(
            Method::DELETE,
            &format!("/auth/tokens/{}", encode_segment(id)),
            None,
        )
        .await
    }

    pub async fn create_probe(&self, req: &CreateProbeRequest) -> Result<Probe, ClientError> {
        self.call(Method::POST, "/diagnostics/probes", Some(req))
            .await
    }

    pub async fn get_probe(&self, id: &str) -> Result<Probe, ClientError> {
        self.call::<(), _>(
            Method::GET,
            &format!("/diagnostics/probes/{}", encode_segment(id)),
            None,
        )
        .await
    }
}

/// Identity: sessions and tokens, passkeys, recovery codes, device login.
impl Client {
    pub async fn refresh(&self, req: &RefreshRequest) -> Result<Credentials, ClientError> {
        self.call(Method::POST, "/auth/token/refresh", Some(req))
            .await
    }

    pub async fn logout(&self) -> Result<(), ClientError> {
        self.call_empty(Method::POST, "/auth/logout", Some(&Empty {}))
            .await
    }

    pub async fn logout_all(&self) -> Result<LogoutAll, ClientError> {
        self.call(Method::POST, "/auth/logout-all", Some(&Empty {}))
            .await
    }

    pub async fn auth_sessions(
        &self,
        cursor: Option<&str>,
    ) -> Result<Page<AuthSession>, ClientError> {
        let path = list_path(
            "/auth/sessions",
            Some(burstflare_api::MAX_PAGE_SIZE),
            cursor,
        );
        self.call::<(), _>(Method::GET, &path, None).await
    }

    pub async fn revoke_auth_session(&self, id: &str) -> Result<AuthSession, ClientError> {
        let path = format!("/auth/sessions/{}", encode_segment(id));
        self.call::<(), _>(Method::DELETE, &path, None).await
    }

    pub async fn passkey_register_options(&self) -> Result<PasskeyCeremony, ClientError> {
        self.call(Method::POST, "/auth/passkeys/options", Some(&Empty {}))
            .await
    }

    pub async fn register_passkey(
        &self,
        req: &RegisterPasskeyRequest,
    ) -> Result<Passkey, ClientError> {
        self.call(Method::POST, "/auth/passkeys", Some(req)).await
    }

    pub async fn passkeys(&self) -> Result<Vec<Passkey>, ClientError> {
        self.call::<(), _>(Method::GET, "/auth/passkeys", None)
            .await
    }

    pub async fn delete_passkey(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/auth/passkeys/{}", encode_segment(id));
        self.call_empty::<()>(Method::DELETE, &path, None).await
    }

    pub async fn passkey_login_options(
        &self,
        req: &PasskeyLoginOptionsRequest,
    ) -> Result<PasskeyCeremony, ClientError> {
        self.call(Method::POST, "/auth/login/passkey/options", Some(req))
            .await
    }

    pub async fn passkey_login(&self, req: &PasskeyLoginRequest) -> Result<SignedIn, ClientError> {
        self.call(Method::POST, "/auth/login/passkey", Some(req))
            .await
    }

    pub async fn recovery_codes(&self) -> Result<RecoveryStatus, ClientError> {
        self.call::<(), _>(Method::GET, "/auth/recovery-codes", None)
            .await
    }

    pub async fn generate_recovery_codes(&self) -> Result<RecoveryCodes, ClientError> {
        self.call(Method::POST, "/auth/recovery-codes", Some(&Empty {}))
            .await
    }

    pub async fn recovery_login(
        &self,
        req: &RecoveryLoginRequest,
    ) -> Result<SignedIn, ClientError> {
        self.call(Method::POST, "/auth/login/recovery", Some(req))
            .await
    }

    pub async fn device_code(
        &self,
        req: &DeviceCodeRequest,
    ) -> Result<DeviceCodeResponse, ClientError> {
        self.call(Method::POST, "/auth/device/code", Some(req))
            .await
    }

    pub async fn device_token(&self, req: &DeviceTokenRequest) -> Result<SignedIn, ClientError> {
        self.call(Method::POST, "/auth/device/token", Some(req))
            .await
    }

    pub async fn device_request(&self, user_code: &str) -> Result<DeviceRequest, ClientError> {
        let path = format!("/auth/device/{}", encode_segment(user_code));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    pub async fn decide_device(
        &self,
        user_code: &str,
        approve: bool,
    ) -> Result<DeviceRequest, ClientError> {
        let verb = if approve { "approve" } else { "deny" };
        let path = format!("/auth/device/{}/{verb}", encode_segment(user_code));
        self.call(Method::POST, &path, Some(&Empty {})).await
    }

    /// A call whose success has no body (204).
    async fn call_empty<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), ClientError> {
        let (status, url, bytes) = self.send(method, path, body).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(api_error(status, url, &bytes))
        }
    }
}

/// Workspaces, members, invites and the audit log.
impl Client {
    pub async fn workspaces(&self) -> Result<Vec<Workspace>, ClientError> {
        self.call::<(), _>(Method::GET, "/workspaces", None).await
    }

    pub async fn create_workspace(
        &self,
        req: &CreateWorkspaceRequest,
    ) -> Result<Workspace, ClientError> {
        self.call(Method::POST, "/workspaces", Some(req)).await
    }

    pub async fn workspace(&self, id: &str) -> Result<Workspace, ClientError> {
        let path = format!("/workspaces/{}", encode_segment(id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    pub async fn rename_workspace(
        &self,
        id: &str,
        req: &RenameWorkspaceRequest,
    ) -> Result<Workspace, ClientError> {
        let path = format!("/workspaces/{}", encode_segment(id));
        self.call(Method::PATCH, &path, Some(req)).await
    }

    pub async fn update_workspace_settings(
        &self,
        id: &str,
        req: &UpdateSettingsRequest,
    ) -> Result<Workspace, ClientError> {
        let path = format!("/workspaces/{}/settings", encode_segment(id));
        self.call(Method::PATCH, &path, Some(req)).await
    }

    pub async fn members(&self, id: &str) -> Result<Vec<Member>, ClientError> {
        let path = format!("/workspaces/{}/members", encode_segment(id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    pub async fn change_role(
        &self,
        id: &str,
        user_id: &str,
        req: &ChangeRoleRequest,
    ) -> Result<Member, ClientError> {
        let path = format!(
            "/workspaces/{}/members/{}",
            encode_segment(id),
            encode_segment(user_id)
        );
        self.call(Method::PATCH, &path, Some(req)).await
    }

    pub async fn remove_member(&self, id: &str, user_id: &str) -> Result<(), ClientError> {
        let path = format!(
            "/workspaces/{}/members/{}",
            encode_segment(id),
            encode_segment(user_id)
        );
        self.call_empty::<()>(Method::DELETE, &path, None).await
    }

    pub async fn leave_workspace(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/workspaces/{}/leave", encode_segment(id));
        self.call_empty(Method::POST, &path, Some(&Empty {})).await
    }

    pub async fn invites(&self, id: &str) -> Result<Page<Invite>, ClientError> {
        let path = list_path(
            &format!("/workspaces/{}/invites", encode_segment(id)),
            Some(burstflare_api::MAX_PAGE_SIZE),
            None,
        );
        self.call::<(), _>(Method::GET, &path, None).await
    }

    pub async fn invite(
        &self,
        id: &str,
        req: &CreateInviteRequest,
    ) -> Result<CreatedInvite, ClientError> {
        let path = format!("/workspaces/{}/invites", encode_segment(id));
        self.call(Method::POST, &path, Some(req)).await
    }

    pub async fn revoke_invite(&self, id: &str, invite_id: &str) -> Result<Invite, ClientError> {
        let path = format!(
            "/workspaces/{}/invites/{}",
            encode_segment(id),
            encode_segment(invite_id)
        );
        self.call::<(), _>(Method::DELETE, &path, None).await
    }

    pub async fn accept_invite(
        &self,
        req: &AcceptInviteRequest,
    ) -> Result<WorkspaceMembership, ClientError> {
        self.call(Method::POST, "/invites/accept", Some(req)).await
    }

    /// One page of a workspace's audit log; `query` holds `action`, `actor`,
    /// `since`, `until` (any subset).
    pub async fn audit(
        &self,
        id: &str,
        query: &[(&str, &str)],
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<AuditEvent>, ClientError> {
        let mut path = list_path(
            &format!("/workspaces/{}/audit", encode_segment(id)),
            limit,
            cursor,
        );
        for (k, v) in query {
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str(&format!("{k}={}", encode_segment(v)));
        }
        self.call::<(), _>(Method::GET, &path, None).await
    }
}

/// Templates, versions and bundles.
impl Client {
    pub async fn templates(
        &self,
        workspace_id: Option<&str>,
    ) -> Result<Vec<Template>, ClientError> {
        let path = match workspace_id {
            Some(w) => format!("/templates?workspace_id={}", encode_segment(w)),
            None => "/templates".to_owned(),
        };
        self.call::<(), _>(Method::GET, &path, None).await
    }

    pub async fn create_template(
        &self,
        req: &CreateTemplateRequest,
    ) -> Result<Template, ClientError> {
        self.call(Method::POST, "/templates", Some(req)).await
    }

    pub async fn template(&self, id: &str) -> Result<Template, ClientError> {
        let path = format!("/templates/{}", encode_segment(id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    pub async fn update_template(
        &self,
        id: &str,
        req: &UpdateTemplateRequest,
    ) -> Result<Template, ClientError> {
        let path = format!("/templates/{}", encode_segment(id));
        self.call(Method::PATCH, &path, Some(req)).await
    }

    /// Archives (`true`) or restores a template.
    pub async fn archive_template(&self, id: &str, archive: bool) -> Result<Template, ClientError> {
        let verb = if archive { "archive" } else { "restore" };
        let path = format!("/templates/{}/{verb}", encode_segment(id));
        self.call::<(), _>(Method::POST, &path, None).await
    }

    pub async fn delete_template(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/templates/{}", encode_segment(id));
        self.call_empty::<()>(Method::DELETE, &path, None).await
    }

    pub async fn template_versions(&self, id: &str) -> Result<Vec<TemplateVersion>, ClientError> {
        let path = format!("/templates/{}/versions", encode_segment(id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    pub async fn create_version(
        &self,
        id: &str,
        req: &CreateVersionRequest,
    ) -> Result<TemplateVersion, ClientError> {
        let path = format!("/templates/{}/versions", encode_segment(id));
        self.call(Method::POST, &path, Some(req)).await
    }

    pub async fn bundle_grant(
        &self,
        id: &str,
        version_id: &str,
    ) -> Result<UploadGrant, ClientError> {
        let path = format!(
            "/templates/{}/versions/{}/bundle-grant",
            encode_segment(id),
            encode_segment(version_id)
        );
        self.call::<(), _>(Method::POST, &path, None).await
    }

    /// `PUT`s `bytes` to a grant's upload URL (the grant is the only credential).
    pub async fn upload_with_grant(
        &self,
        grant: &UploadGrant,
        bytes: Vec<u8>,
    ) -> Result<Bundle, ClientError> {
        self.put_to_grant(grant, "application/gzip", bytes.into())
            .await
    }

    /// `PUT`s `body` to a grant's upload URL; the answer as `T`.
    pub async fn put_to_grant<T: DeserializeOwned>(
        &self,
        grant: &UploadGrant,
        content_type: &str,
        body: reqwest::Body,
    ) -> Result<T, ClientError> {
        let url = grant.upload_url.clone();
        let resp = self
            .http
            .put(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        if !status.is_success() {
            return Err(api_error(status, url, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            url,
            status: status.as_u16(),
            detail: e.to_string(),
        })
    }

    /// Streams an authenticated `GET` of `path` into `out`; the bytes written.
    pub async fn download(
        &self,
        path: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64, ClientError> {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let url = self.url(path);
        let token = self.fresh_token().await?;
        let mut req = self.http.get(&url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|source| ClientError::Transport {
            url: url.clone(),
            source,
        })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(api_error(status, url, &body));
        }
        let mut stream = resp.bytes_stream();
        let mut n = 0_u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
            out.write_all(&chunk)
                .await
                .map_err(|e| ClientError::Decode {
                    url: url.clone(),
                    status: status.as_u16(),
                    detail: format!("cannot write the download: {e}"),
                })?;
            n += chunk.len() as u64;
        }
        out.flush().await.map_err(|e| ClientError::Decode {
            url: url.clone(),
            status: status.as_u16(),
            detail: format!("cannot write the download: {e}"),
        })?;
        Ok(n)
    }
}

/// Builds.
impl Client {
    pub async fn start_build(
        &self,
        template_id: &str,
        req: &CreateBuildRequest,
    ) -> Result<Build, ClientError> {
        let path = format!("/templates/{}/builds", encode_segment(template_id));
        self.call(Method::POST, &path, Some(req)).await
    }

    pub async fn builds(&self, template_id: &str) -> Result<Vec<Build>, ClientError> {
        let path = format!("/templates/{}/builds", encode_segment(template_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    pub async fn build(&self, id: &str) -> Result<Build, ClientError> {
        let path = format!("/builds/{}", encode_segment(id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `cancel` or `retry`.
    pub async fn build_command(&self, id: &str, verb: &str) -> Result<Build, ClientError> {
        let path = format!("/builds/{}/{verb}", encode_segment(id));
        self.call::<(), _>(Method::POST, &path, None).await
    }

    pub async fn retry_dead_lettered(&self, template_id: &str) -> Result<BulkRetry, ClientError> {
        let path = format!(
            "/templates/{}/builds/retry-dead-lettered",
            encode_segment(template_id)
        );
        self.call::<(), _>(Method::POST, &path, None).await
    }

    pub async fn releases(&self, template_id: &str) -> Result<Releases, ClientError> {
        let path = format!("/templates/{}/releases", encode_segment(template_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    pub async fn promote(
        &self,
        template_id: &str,
        req: &PromoteRequest,
    ) -> Result<Release, ClientError> {
        let path = format!("/templates/{}/releases", encode_segment(template_id));
        self.call(Method::POST, &path, Some(req)).await
    }

    pub async fn rollback(
        &self,
        template_id: &str,
        release_id: &str,
    ) -> Result<Release, ClientError> {
        let path = format!(
            "/templates/{}/releases/{}/rollback",
            encode_segment(template_id),
            encode_segment(release_id)
        );
        self.call::<(), _>(Method::POST, &path, None).await
    }

    /// Every attempt's log, as text.
    pub async fn build_logs(&self, id: &str) -> Result<String, ClientError> {
        let path = format!("/builds/{}/logs", encode_segment(id));
        let (status, url, bytes) = self.send::<()>(Method::GET, &path, None).await?;
        if status.is_success() {
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        } else {
            Err(api_error(status, url, &bytes))
        }
    }
}

impl Client {
    pub async fn session_activity(
        &self,
        session_id: &str,
    ) -> Result<Vec<burstflare_api::sessions::ActivityEntry>, ClientError> {
        let path = format!("/sessions/{}/activity", encode_segment(session_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    pub async fn workspace_snapshots(
        &self,
        workspace_id: &str,
    ) -> Result<Vec<Snapshot>, ClientError> {
        let path = format!("/workspaces/{}/snapshots", encode_segment(workspace_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    pub async fn snapshots(&self, session_id: &str) -> Result<Vec<Snapshot>, ClientError> {
        let path = format!("/sessions/{}/snapshots", encode_segment(session_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    pub async fn create_snapshot(&self, session_id: &str) -> Result<Snapshot, ClientError> {
        let path = format!("/sessions/{}/snapshots", encode_segment(session_id));
        self.call::<(), _>(Method::POST, &path, None).await
    }

    pub async fn snapshot(&self, session_id: &str, id: &str) -> Result<Snapshot, ClientError> {
        let path = format!(
            "/sessions/{}/snapshots/{}",
            encode_segment(session_id),
            encode_segment(id)
        );
        self.call::<(), _>(Method::GET, &path, None).await
    }

    pub async fn delete_snapshot(
        &self,
        session_id: &str,
        id: &str,
    ) -> Result<Snapshot, ClientError> {
        let path = format!(
            "/sessions/{}/snapshots/{}",
            encode_segment(session_id),
            encode_segment(id)
        );
        self.call::<(), _>(Method::DELETE, &path, None).await
    }

    pub async fn snapshot_upload_grant(
        &self,
        session_id: &str,
    ) -> Result<UploadGrant, ClientError> {
        let path = format!("/sessions/{}/snapshots/uploads", encode_segment(session_id));
        self.call::<(), _>(Method::POST, &path, None).await
    }

    pub async fn restore(
        &self,
        session_id: &str,
        req: &RestoreRequest,
    ) -> Result<RestoreResult, ClientError> {
        let path = format!("/sessions/{}/restore", encode_segment(session_id));
        self.call(Method::POST, &path, Some(req)).await
    }

    pub async fn create_session(&self, req: &CreateSessionRequest) -> Result<Session, ClientError> {
        self.call(Method::POST, "/sessions", Some(req)).await
    }

    pub async fn list_sessions(
        &self,
        name: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Page<Session>, ClientError> {
        let mut path = list_path("/sessions", Some(burstflare_api::MAX_PAGE_SIZE), cursor);
        if let Some(name) = name {
            path.push_str(&format!("&name={}", encode_segment(name)));
        }
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// Every session of a workspace the caller may see, following cursors.
    pub async fn list_sessions_in(&self, workspace_id: &str) -> Result<Vec<Session>, ClientError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = list_path(
                "/sessions",
                Some(burstflare_api::MAX_PAGE_SIZE),
                cursor.as_deref(),
            );
            path.push_str(&format!("&workspace_id={}", encode_segment(workspace_id)));
            let page: Page<Session> = self.call::<(), _>(Method::GET, &path, None).await?;
            items.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(items),
            }
        }
    }

    /// Every session of the caller, following cursors.
    pub async fn all_sessions(&self) -> Result<Vec<Session>, ClientError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.list_sessions(None, cursor.as_deref()).await?;
            items.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(items),
            }
        }
    }

    pub async fn get_session(&self, id: &str) -> Result<Session, ClientError> {
        self.call::<(), _>(
            Method::GET,
            &format!("/sessions/{}", encode_segment(id)),
            None,
        )
        .await
    }

    /// `start`, `stop` or `restart`.
    pub async fn session_command(
        &self,
        id: &str,
        command: SessionCommand,
    ) -> Result<CommandResult, ClientError> {
        let path = format!("/sessions/{}/{}", encode_segment(id), command.as_str());
        match command {
            SessionCommand::Delete => {
                self.call::<(), _>(
                    Method::DELETE,
                    &format!("/sessions/{}", encode_segment(id)),
                    None,
                )
                .await
            }
            _ => self.call::<(), _>(Method::POST, &path, None).await,
        }
    }

    pub async fn session_events(
        &self,
        id: &str,
        after: Option<i64>,
    ) -> Result<Page<SessionEvent>, ClientError> {
        let mut path = format!(
            "/sessions/{}/events?limit={}",
            encode_segment(id),
            burstflare_api::MAX_PAGE_SIZE
        );
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        self.call::<(), _>(Method::GET, &path, None).await
    }

    pub async fn add_ssh_key(&self, req: &AddSshKeyRequest) -> Result<SshKey, ClientError> {
        self.call(Method::POST, "/ssh-keys", Some(req)).await
    }

    pub async fn list_ssh_keys(&self) -> Result<Vec<SshKey>, ClientError> {
        self.call::<(), _>(Method::GET, "/ssh-keys", None).await
    }

    pub async fn remove_ssh_key(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/ssh-keys/{}", encode_segment(id));
        self.call_empty::<()>(Method::DELETE, &path, None).await
    }

    /// The `ws(s)://` URL of a session's SSH bridge.
    pub fn ssh_ws_url(&self, session_id: &str) -> String {
        let http = self.url(&format!("/sessions/{}/ssh", encode_segment(session_id)));
        if let Some(rest) = http.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = http.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            http
        }
    }

    /// The access token in use now (see [`Client::fresh_token`]).
    pub fn token(&self) -> Option<String> {
        self.current_token()
    }
}

/// `base?limit=…&cursor=…` with only the parameters that are set.
fn list_path(base: &str, limit: Option<u32>, cursor: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(limit) = limit {
        query.append_pair("limit", &limit.to_string());
    }
    if let Some(cursor) = cursor {
        query.append_pair("cursor", cursor);
    }
    let query = query.finish();
    if query.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{query}")
    }
}

pub fn encode_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn api_error(status: StatusCode, url: String, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorEnvelope>(bytes) {
        Ok(env) => ClientError::Api {
            status: status.as_u16(),
            body: env.error,
        },
        Err(_) => ClientError::Decode {
            url,
            status: status.as_u16(),
            detail: format!(
                "expected a JSON error envelope, got {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
        },
    }
}

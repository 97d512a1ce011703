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

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
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
        Ok(Self { http, base, token })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    pub fn with_token(&self, token: Option<String>) -> Self {
        Self {
            token,
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
        let url = self.url(path);
        let mut req = self.http.request(method, &url);
        if let Some(token) = &self.token {
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

impl Client {
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
        let (status, url, bytes) = self
            .send::<()>(
                Method::DELETE,
                &format!("/ssh-keys/{}", encode_segment(id)),
                None,
            )
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(api_error(status, url, &bytes))
        }
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

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
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

fn encode_segment(s: &str) -> String {
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

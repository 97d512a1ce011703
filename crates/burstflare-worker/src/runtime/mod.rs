//! The runtime port: how a `SessionCoordinator` runs a session's container.
//!
//! Two adapters implement the same operations (DESIGN §4):
//! * [`runner::RunnerRuntime`] — `burstflare-runner` on a Docker host, over HTTP
//!   with a shared secret (local development, tests, self-hosted hosts);
//! * [`cloudflare::CloudflareRuntime`] — Cloudflare Containers through the Durable
//!   Object's `ctx.container` (staging and production).
//!
//! The deployment chooses with the `SESSION_RUNTIME` variable (`runner` or
//! `cloudflare`). Both return the same [`RuntimeError`] shape so the coordinator's
//! behaviour (failed with a reason, 503 to the caller) does not depend on the adapter.

pub mod cloudflare;
pub mod runner;

use std::collections::BTreeMap;

use std::time::Duration;

use burstflare_api::runtime::{
    AGENT_PORT, AGENT_TOKEN_HEADER, AgentHealth, AgentStatus, ResourceLimits,
};
use worker::{Delay, Env, Headers, Method, Request, RequestInit, Response, State};

use crate::platform::{now, var};

/// Everything needed to start one generation of a session.
pub struct StartSpec {
    pub session_id: String,
    pub generation: u64,
    pub image: String,
    pub limits: ResourceLimits,
    pub env: BTreeMap<String, String>,
    /// Container ports reachable through the runtime besides the agent's
    /// and sshd's (the release's declared ports and the editor's).
    pub ports: Vec<u16>,
}

/// What the runtime reports about a session's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Running,
    /// The container is gone or exited; the text says why.
    Exited(String),
}

/// A runtime failure: `message` is safe to show to the session's owner.
#[derive(Debug, Clone)]
pub struct RuntimeError {
    pub message: String,
}

impl RuntimeError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl From<worker::Error> for RuntimeError {
    fn from(e: worker::Error) -> Self {
        Self::new(format!("runtime call failed: {e}"))
    }
}

pub type RuntimeResult<T> = Result<T, RuntimeError>;

/// The adapter selected by `SESSION_RUNTIME`.
pub enum Runtime {
    Runner(runner::RunnerRuntime),
    Cloudflare(cloudflare::CloudflareRuntime),
}

impl Runtime {
    pub fn from_env(env: &Env, state: &State) -> RuntimeResult<Self> {
        match var(env, "SESSION_RUNTIME", "runner").as_str() {
            "runner" => Ok(Self::Runner(runner::RunnerRuntime::from_env(env)?)),
            "cloudflare" => Ok(Self::Cloudflare(cloudflare::CloudflareRuntime::new(state)?)),
            other => Err(RuntimeError::new(format!(
                "SESSION_RUNTIME {other:?} is not `runner` or `cloudflare`"
            ))),
        }
    }

    /// Starts a container for `spec` (idempotent per session generation) and
    /// returns the handle later calls use.
    pub async fn start(&self, spec: &StartSpec) -> RuntimeResult<String> {
        match self {
            Self::Runner(r) => r.start(spec).await,
            Self::Cloudflare(c) => c.start(spec),
        }
    }

    pub async fn status(&self, handle: &str) -> RuntimeResult<Observed> {
        match self {
            Self::Runner(r) => r.status(handle).await,
            Self::Cloudflare(c) => Ok(c.status()),
        }
    }

    /// Stops (SIGTERM, then kill after a grace period) and removes the container.
    /// Removing a container that is already gone succeeds.
    pub async fn destroy(&self, handle: &str) -> RuntimeResult<()> {
        match self {
            Self::Runner(r) => r.destroy(handle).await,
            Self::Cloudflare(c) => c.destroy().await,
        }
    }

    /// Sends `req` (HTTP or a WebSocket upgrade) to `port` of the container,
    /// at `path_and_query`. WebSocket responses pass through untouched.
    pub async fn fetch(
        &self,
        handle: &str,
        port: u16,
        path_and_query: &str,
        req: &Request,
        extra: &[(&str, &str)],
    ) -> RuntimeResult<Response> {
        match self {
            Self::Runner(r) => r.fetch(handle, port, path_and_query, req, extra).await,
            Self::Cloudflare(c) => c.fetch(port, path_and_query, req, extra).await,
        }
    }
}

/// Polls the agent's `/healthz` until it is ok (and, with `need_sshd`, sshd
/// is up with host keys), the container dies, or `timeout_ms` passes. The
/// error is the reason shown to users.
pub async fn wait_healthy(
    runtime: &Runtime,
    container: &str,
    secret: &str,
    timeout_ms: i64,
    need_sshd: bool,
) -> Result<AgentHealth, String> {
    let deadline = now() + timeout_ms;
    let mut attempt: u32 = 0;
    let mut last = String::from("the agent did not answer");
    loop {
        attempt += 1;
        let probe = Request::new("http://agent/healthz", Method::Get).map_err(|e| e.to_string())?;
        match runtime
            .fetch(
                container,
                AGENT_PORT,
                "/healthz",
                &probe,
                &[(AGENT_TOKEN_HEADER, secret)],
            )
            .await
        {
            Ok(mut resp) if resp.status_code() == 200 => {
                if let Ok(h) = resp.json::<AgentHealth>().await {
                    if !need_sshd || (h.status == AgentStatus::Ok && !h.host_keys.is_empty()) {
                        return Ok(h);
                    }
                    last = "sshd is not accepting connections yet".into();
                }
            }
            Ok(resp) => last = format!("the agent answered HTTP {}", resp.status_code()),
            Err(e) => last = e.message,
        }
        // A container that died while booting will never become healthy.
        if attempt.is_multiple_of(10)
            && let Ok(Observed::Exited(why)) = runtime.status(container).await
        {
            return Err(why);
        }
        if now() > deadline {
            return Err(format!(
                "the container did not become ready within {} s ({last})",
                timeout_ms / 1000
            ));
        }
        // sshd is usually up within tens of milliseconds of the container
        // starting: poll tightly at first, then back off.
        let wait = match attempt {
            0..=50 => 20,
            51..=100 => 100,
            _ => 250,
        };
        Delay::from(Duration::from_millis(wait)).await;
    }
}

/// Headers that describe one hop and are not forwarded.
const HOP_HEADERS: [&str; 7] = [
    "host",
    "authorization",
    "cookie",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
];

/// Builds the upstream request for a proxied call: same method, end-to-end
/// headers, body, plus `extra` headers.
pub fn upstream_request(
    url: &str,
    req: &Request,
    extra: &[(&str, &str)],
) -> RuntimeResult<Request> {
    let headers = Headers::new();
    for (name, value) in req.headers().entries() {
        // `x-burstflare-*` are the platform's internal headers: a caller's
        // copy is never trusted upstream (the `extra` ones are ours).
        if !HOP_HEADERS.contains(&name.as_str())
            && !name.starts_with("cf-")
            && !name.starts_with("x-burstflare-")
        {
            headers.set(&name, &value)?;
        }
    }
    for (name, value) in extra {
        headers.set(name, value)?;
    }
    let mut init = RequestInit::new();
    init.with_method(req.method()).with_headers(headers);
    if !matches!(req.method(), worker::Method::Get | worker::Method::Head) {
        init.with_body(req.inner().body().map(Into::into));
    }
    Ok(Request::new_with_init(url, &init)?)
}

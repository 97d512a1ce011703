//! Runtime adapter for `burstflare-runner` (HTTP API in `burstflare_api::runtime`).
//!
//! Configuration: `RUNNER_URL` (e.g. `http://127.0.0.1:7171`) and `RUNNER_SECRET`
//! (a secret binding, or a plain variable in local development). A runner that
//! cannot be reached, or that cannot reach Docker, yields a [`RuntimeError`]
//! quoting the runner's own message.

use burstflare_api::ErrorEnvelope;
use burstflare_api::runtime::{
    AGENT_PORT, ContainerInfo, ContainerStatus, CreateContainer, SSH_PORT, StopContainer,
};
use serde::Serialize;
use worker::{Env, Fetch, Headers, Method, Request, RequestInit, Response};

use super::{Observed, RuntimeError, RuntimeResult, StartSpec, upstream_request};

/// Seconds between SIGTERM and SIGKILL when a session stops.
const STOP_GRACE_SECS: u32 = 5;

pub struct RunnerRuntime {
    base: String,
    secret: String,
}

impl RunnerRuntime {
    pub fn from_env(env: &Env) -> RuntimeResult<Self> {
        let base = env
            .var("RUNNER_URL")
            .map(|v| v.to_string())
            .map_err(|_| RuntimeError::new("RUNNER_URL is not configured"))?;
        let secret = env
            .secret("RUNNER_SECRET")
            .map(|v| v.to_string())
            .or_else(|_| env.var("RUNNER_SECRET").map(|v| v.to_string()))
            .map_err(|_| RuntimeError::new("RUNNER_SECRET is not configured"))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            secret,
        })
    }

    async fn call<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> RuntimeResult<Response> {
        let headers = Headers::new();
        headers.set("authorization", &format!("Bearer {}", self.secret))?;
        let mut init = RequestInit::new();
        init.with_method(method);
        if let Some(body) = body {
            headers.set("content-type", "application/json")?;
            let json = serde_json::to_string(body)
                .map_err(|e| RuntimeError::new(format!("encode runner request: {e}")))?;
            init.with_body(Some(json.into()));
        }
        init.with_headers(headers);
        let url = format!("{}{path}", self.base);
        // Every runner call is idempotent, so a connection that the runner
        // closed (a pooled connection across a runner restart) is retried once.
        match Fetch::Request(Request::new_with_init(&url, &init)?)
            .send()
            .await
        {
            Ok(resp) => Ok(resp),
            Err(_) => Fetch::Request(Request::new_with_init(&url, &init)?)
                .send()
                .await
                .map_err(|e| self.unreachable(e)),
        }
    }

    fn unreachable(&self, e: worker::Error) -> RuntimeError {
        RuntimeError::new(format!(
            "the session runner at {} is not reachable: {e}",
            self.base
        ))
    }

    pub async fn start(&self, spec: &StartSpec) -> RuntimeResult<String> {
        let body = CreateContainer {
            session_id: spec.session_id.clone(),
            generation: spec.generation,
            image: spec.image.clone(),
            limits: spec.limits,
            env: spec.env.clone(),
            ports: [AGENT_PORT, SSH_PORT]
                .into_iter()
                .chain(spec.ports.iter().copied())
                .collect(),
            cmd: None,
        };
        let mut resp = self
            .call(Method::Post, "/v1/containers", Some(&body))
            .await?;
        let info: ContainerInfo = expect_json(&mut resp, &[200, 201]).await?;
        Ok(info.name)
    }

    pub async fn status(&self, handle: &str) -> RuntimeResult<Observed> {
        let mut resp = self
            .call::<()>(Method::Get, &format!("/v1/containers/{handle}"), None)
            .await?;
        if resp.status_code() == 404 {
            return Ok(Observed::Exited(format!(
                "container {handle} no longer exists"
            )));
        }
        let info: ContainerInfo = expect_json(&mut resp, &[200]).await?;
        Ok(match info.status {
            ContainerStatus::Running => Observed::Running,
            _ => Observed::Exited(describe_exit(&info)),
        })
    }

    pub async fn destroy(&self, handle: &str) -> RuntimeResult<()> {
        let stop = StopContainer {
            timeout_secs: Some(STOP_GRACE_SECS),
        };
        let mut resp = self
            .call(
                Method::Post,
                &format!("/v1/containers/{handle}/stop"),
                Some(&stop),
            )
            .await?;
        if resp.status_code() != 404 {
            let _: ContainerInfo = expect_json(&mut resp, &[200]).await?;
        }
        let mut resp = self
            .call::<()>(Method::Delete, &format!("/v1/containers/{handle}"), None)
            .await?;
        match resp.status_code() {
            204 | 404 => Ok(()),
            _ => Err(runner_error(&mut resp).await),
        }
    }

    pub async fn fetch(
        &self,
        handle: &str,
        port: u16,
        path_and_query: &str,
        req: &Request,
        extra: &[(&str, &str)],
    ) -> RuntimeResult<Response> {
        let url = format!(
            "{}/v1/containers/{handle}/ports/{port}{path_and_query}",
            self.base
        );
        let auth = format!("Bearer {}", self.secret);
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        headers.push(("authorization", &auth));
        let upstream = upstream_request(&url, req, &headers)?;
        let retry = matches!(req.method(), Method::Get | Method::Head)
            .then(|| upstream.clone())
            .transpose()?;
        match (Fetch::Request(upstream).send().await, retry) {
            (Ok(resp), _) => Ok(resp),
            // Nothing was sent upstream yet for a bodiless request: try once more.
            (Err(_), Some(again)) => Fetch::Request(again)
                .send()
                .await
                .map_err(|e| self.unreachable(e)),
            (Err(e), None) => Err(self.unreachable(e)),
        }
    }
}

/// "exited with code 137 (killed)", "ran out of memory", Docker's error text.
pub fn describe_exit(info: &ContainerInfo) -> String {
    let mut text = match (info.status, info.exit_code) {
        (ContainerStatus::Exited | ContainerStatus::Dead, Some(code)) => {
            let signal = match code {
                137 => " (killed)",
                143 => " (terminated)",
                139 => " (segmentation fault)",
                _ => "",
            };
            format!("container {} exited with code {code}{signal}", info.name)
        }
        (status, _) => format!("container {} is {status:?}", info.name).to_lowercase(),
    };
    if info.oom_killed {
        text.push_str("; it ran out of memory");
    }
    if let Some(err) = info.error.as_deref().filter(|e| !e.is_empty()) {
        text.push_str(&format!("; docker: {err}"));
    }
    text
}

async fn expect_json<T: serde::de::DeserializeOwned>(
    resp: &mut Response,
    ok: &[u16],
) -> RuntimeResult<T> {
    if !ok.contains(&resp.status_code()) {
        return Err(runner_error(resp).await);
    }
    resp.json::<T>()
        .await
        .map_err(|e| RuntimeError::new(format!("the runner sent an unreadable answer: {e}")))
}

/// The runner's own message from its error envelope.
async fn runner_error(resp: &mut Response) -> RuntimeError {
    let status = resp.status_code();
    match resp.json::<ErrorEnvelope>().await {
        Ok(env) => RuntimeError::new(env.error.message),
        Err(_) => RuntimeError::new(format!("the session runner answered HTTP {status}")),
    }
}

//! `BuildRunner`: one Durable Object per build, owning that build's builder
//! container (through the runtime port, like sessions: burstflare-runner
//! locally, Cloudflare Containers in production) and talking to the agent
//! in it. The build workflow's steps call it:
//!
//! * `/start` — a fresh container from the base image for the attempt
//!   (leftovers of earlier attempts are removed first), agent up;
//! * `/bundle` — the version's bundle, from R2, unpacked by the agent;
//! * `/run` — packages and setup commands; the log goes to R2;
//! * `/capture` — the layer, streamed from the agent into R2;
//! * `/destroy` — the container goes.
//!
//! Each call is idempotent for its attempt: `/start` of a started attempt
//! only re-checks the agent; `/bundle`, `/run` and `/capture` record their
//! outcome for the attempt and a replay returns it without touching the
//! container again. A replayed `/run` that finds the previous call
//! interrupted (it may have run some commands) fails, so the build retries
//! in a fresh container rather than run setup twice in one.

use std::collections::BTreeMap;

use burstflare_api::runtime::{
    AGENT_PORT, AGENT_TOKEN_HEADER, ENV_AGENT_SECRET, ENV_SESSION_ID, ResourceLimits,
};
use serde::{Deserialize, Serialize};
use worker::{
    DurableObject, Env, Headers, Method, Request, RequestInit, Response, State, durable_object,
};

use crate::error::{ApiError, ApiResult};
use crate::platform::{BUCKET, BUILDERS, now, random};
use crate::runtime::{Runtime, StartSpec, wait_healthy};
use crate::store::objects;

use super::agent_run;

/// Storage key of the log of the setup running now.
const LIVE_LOG: &str = "live_log";
/// The live log is saved at most this often.
const LIVE_LOG_FLUSH_MS: i64 = 1_000;
/// A stored build log keeps at most this many bytes.
const MAX_LOG_BYTES: usize = 4 << 20;
const TRUNCATED: &str = "[… log truncated at 4 MiB …]\n";
/// The live log keeps at most this many trailing bytes.
const LIVE_LOG_MAX: usize = 256 * 1024;

/// The last `LIVE_LOG_MAX` bytes of `text`, on a character boundary.
fn tail(text: &str) -> String {
    let mut start = text.len().saturating_sub(LIVE_LOG_MAX);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// How long a builder's agent may take to come up.
const START_TIMEOUT_MS: i64 = 90_000;
/// Largest layer a build may produce.
pub const MAX_LAYER_BYTES: u64 = 4 << 30;

#[durable_object]
pub struct BuildRunner {
    state: State,
    env: Env,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Held {
    container: Option<String>,
    secret: Option<String>,
    attempt: u32,
    /// Outcomes of the calls the attempt completed, by path.
    #[serde(default)]
    done: BTreeMap<String, serde_json::Value>,
    /// The call in progress.
    #[serde(default)]
    running: Option<String>,
}

/// What `/start` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Started {
    /// The agent's `base_digest`: the base the layer is captured against.
    pub base_digest: Option<String>,
}

/// `/start`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartBuilder {
    pub build_id: String,
    pub attempt: u32,
    pub image: String,
    pub limits: ResourceLimits,
}

/// `/bundle`: the R2 key of the bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushBundle {
    pub attempt: u32,
    pub key: String,
}

/// `/run`: what to install and run, and where the log goes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSetup {
    pub attempt: u32,
    pub packages: Vec<String>,
    pub commands: Vec<String>,
    /// Each command may run this long (the agent kills it after).
    pub timeout_secs: Option<u64>,
    pub log_key: String,
}

/// The agent's answer to `/build/run` (without the log, which is in R2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetupOutcome {
    pub exit_code: i32,
    pub failed_command: Option<String>,
    /// The last lines of the log, for the error message.
    pub log_tail: String,
}

/// `/capture`: where the layer goes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaptureLayer {
    pub attempt: u32,
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub digest: String,
    pub size: u64,
}

fn superseded(attempt: u32, current: u32) -> ApiError {
    ApiError::unavailable(format!(
        "attempt {attempt} was superseded by attempt {current}"
    ))
}

impl BuildRunner {
    async fn held(&self) -> ApiResult<Held> {
        Ok(self
            .state
            .storage()
            .get::<Held>("held")
            .await?
            .unwrap_or_default())
    }

    async fn save(&self, h: &Held) -> ApiResult<()> {
        self.state.storage().put("held", h).await?;
        Ok(())
    }

    fn runtime(&self) -> ApiResult<Runtime> {
        Runtime::from_env(&self.env, &self.state).map_err(|e| ApiError::unavailable(e.message))
    }

    /// The container and agent secret of `attempt` (a step of a superseded
    /// attempt must not act on the next attempt's container).
    async fn agent(&self, attempt: u32) -> ApiResult<(Runtime, String, String)> {
        let h = self.held().await?;
        if h.attempt != attempt {
            return Err(superseded(attempt, h.attempt));
        }
        match (h.container, h.secret) {
            (Some(c), Some(s)) => Ok((self.runtime()?, c, s)),
            _ => Err(ApiError::internal("the builder container is not running")),
        }
    }

    /// Sends a request to the agent in the builder.
    async fn call_agent(
        &self,
        attempt: u32,
        path: &str,
        method: Method,
        body: Option<worker::wasm_bindgen::JsValue>,
        content_type: &str,
    ) -> ApiResult<Response> {
        let (runtime, container, secret) = self.agent(attempt).await?;
        let headers = Headers::new();
        headers.set("content-type", content_type)?;
        let mut init = RequestInit::new();
        init.with_method(method)
            .with_headers(headers)
            .with_body(body);
        let req = Request::new_with_init(&format!("http://agent{path}"), &init)?;
        let resp = runtime
            .fetch(
                &container,
                AGENT_PORT,
                path,
                &req,
                &[(AGENT_TOKEN_HEADER, &secret)],
            )
            .await
            .map_err(|e| ApiError::unavailable(e.message))?;
        if resp.status_code() >= 300 {
            let mut resp = resp;
            let text = resp.text().await.unwrap_or_default();
            return Err(ApiError::unavailable(format!(
                "the builder's agent answered {} to {path}: {text}",
                resp.status_code()
            )));
        }
        Ok(resp)
    }

    /// Runs `work` once for `attempt` as call `path`: a repeated call gets
    /// the recorded outcome. With `rerun_safe` false, a call that finds the
    /// previous one interrupted fails instead of running again.
    async fn once<T, F>(&self, attempt: u32, path: &str, rerun_safe: bool, work: F) -> ApiResult<T>
    where
        T: Serialize + serde::de::DeserializeOwned,
        F: std::future::Future<Output = ApiResult<T>>,
    {
        let mut h = self.held().await?;
        if h.attempt != attempt {
            return Err(superseded(attempt, h.attempt));
        }
        if let Some(v) = h.done.get(path) {
            return Ok(serde_json::from_value(v.clone())?);
        }
        if !rerun_safe && h.running.as_deref() == Some(path) {
            return Err(ApiError::unavailable(format!(
                "{path} of attempt {attempt} was interrupted; its builder is in an unknown state"
            )));
        }
        h.running = Some(path.to_owned());
        self.save(&h).await?;
        let out = work.await?;
        let mut h = self.held().await?;
        if h.attempt == attempt {
            h.done.insert(path.to_owned(), serde_json::to_value(&out)?);
            h.running = None;
            self.save(&h).await?;
        }
        Ok(out)
    }

    async fn start(&self, s: StartBuilder) -> ApiResult<Started> {
        let mut h = self.held().await?;
        let runtime = self.runtime()?;
        if h.attempt == s.attempt
            && let (Some(container), Some(secret)) = (&h.container, &h.secret)
        {
            // A replay: the attempt's container exists; make sure it is up.
            let health = wait_healthy(&runtime, container, secret, START_TIMEOUT_MS, false)
                .await
                .map_err(ApiError::unavailable)?;
            return Ok(Started {
                base_digest: health.base_digest,
            });
        }
        if let Some(old) = h.container.take() {
            runtime
                .destroy(&old)
                .await
                .map_err(|e| ApiError::unavailable(e.message))?;
        }
        let secret = hex::encode(random::<32>()?);
        let mut env = BTreeMap::new();
        env.insert(ENV_AGENT_SECRET.to_owned(), secret.clone());
        env.insert(ENV_SESSION_ID.to_owned(), s.build_id.clone());
        let spec = StartSpec {
            session_id: s.build_id.clone(),
            generation: u64::from(s.attempt),
            image: s.image,
            limits: s.limits,
            env,
            ports: Vec::new(),
        };
        let container = runtime
            .start(&spec)
            .await
            .map_err(|e| ApiError::unavailable(e.message))?;
        h = Held {
            container: Some(container.clone()),
            secret: Some(secret.clone()),
            attempt: s.attempt,
            ..Held::default()
        };
        self.save(&h).await?;
        let health = wait_healthy(&runtime, &container, &secret, START_TIMEOUT_MS, false)
            .await
            .map_err(ApiError::unavailable)?;
        Ok(Started {
            base_digest: health.base_digest,
        })
    }

    async fn bundle(&self, p: PushBundle) -> ApiResult<()> {
        let object = self
            .env
            .bucket(BUCKET)?
            .get(&p.key)
            .execute()
            .await?
            .ok_or_else(|| ApiError::internal(format!("bundle {} is missing from R2", p.key)))?;
        let bytes = object
            .body()
            .ok_or_else(|| ApiError::internal("bundle without a body"))?
            .bytes()
            .await?;
        let body = js_sys::Uint8Array::from(bytes.as_slice());
        self.call_agent(
            p.attempt,
            "/build/bundle",
            Method::Post,
            Some(body.into()),
            "application/gzip",
        )
        .await?;
        Ok(())
    }

    /// Runs the setup; the log grows in this object's storage while it runs
    /// (`/log` reads it) and goes to R2 at the end.
    async fn run(&self, r: RunSetup) -> ApiResult<SetupOutcome> {
        let body = serde_json::to_string(&serde_json::json!({
            "packages": r.packages,
            "commands": r.commands,
            "timeout_secs": r.timeout_secs,
        }))?;
        let mut resp = self
            .call_agent(
                r.attempt,
                "/build/run",
                Method::Post,
                Some(body.into()),
                "application/json",
            )
            .await?;
        let storage = self.state.storage();
        storage.put(LIVE_LOG, String::new()).await?;
        let log = std::cell::RefCell::new(String::new());
        // Sparse output is saved line by line; bursts at most once a second.
        let flushed = std::cell::Cell::new(0_i64);
        let unsaved = std::cell::Cell::new(0_u32);
        let end = agent_run::read(&mut resp, |line| {
            {
                let mut log = log.borrow_mut();
                // The stored log keeps its head and its last lines.
                if log.len() < MAX_LOG_BYTES {
                    log.push_str(&line);
                    log.push('\n');
                } else if !log.ends_with(TRUNCATED) {
                    log.push_str(TRUNCATED);
                }
            }
            unsaved.set(unsaved.get() + 1);
            let due = now() - flushed.get() >= LIVE_LOG_FLUSH_MS || unsaved.get() <= 1;
            let snapshot = due.then(|| log.borrow().clone());
            let storage = &storage;
            let flushed = &flushed;
            let unsaved = &unsaved;
            async move {
                if let Some(text) = snapshot {
                    let _ = storage.put(LIVE_LOG, tail(&text)).await;
                    flushed.set(now());
                    unsaved.set(0);
                }
            }
        })
        .await
        .map_err(ApiError::unavailable)?;
        let log = log.into_inner();
        self.env
            .bucket(BUCKET)?
            .put(&r.log_key, log.clone().into_bytes())
            .execute()
            .await?;
        storage.delete(LIVE_LOG).await?;
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        Ok(SetupOutcome {
            exit_code: end.exit_code,
            failed_command: end.failed_command.or(end.error),
            log_tail: tail,
        })
    }

    /// The log of the setup running now (empty when none is).
    async fn live_log(&self) -> ApiResult<String> {
        Ok(self
            .state
            .storage()
            .get::<String>(LIVE_LOG)
            .await?
            .unwrap_or_default())
    }

    async fn capture(&self, c: CaptureLayer) -> ApiResult<Stored> {
        let mut resp = self
            .call_agent(
                c.attempt,
                "/build/capture",
                Method::Post,
                None,
                "application/json",
            )
            .await?;
        let announced = resp.headers().get("x-layer-sha256")?;
        let bucket = self.env.bucket(BUCKET)?;
        let (digest, size) = objects::put_stream(&bucket, &c.key, resp.stream()?, MAX_LAYER_BYTES)
            .await
            .map_err(|e| match e {
                objects::PutError::TooLarge => {
                    ApiError::internal(format!("the layer exceeds {MAX_LAYER_BYTES} bytes"))
                }
                objects::PutError::Read(r) => {
                    ApiError::unavailable(format!("reading the layer failed: {r}"))
                }
                objects::PutError::Store(e) => e,
            })?;
        // What arrived is what the agent wrote.
        if let Some(announced) = announced.filter(|a| *a != digest) {
            return Err(ApiError::unavailable(format!(
                "the layer arrived damaged: SHA-256 {digest}, the builder wrote {announced}"
            )));
        }
        Ok(Stored { digest, size })
    }

    async fn destroy(&self) -> ApiResult<()> {
        let mut h = self.held().await?;
        if let Some(c) = h.container.take() {
            self.runtime()?
                .destroy(&c)
                .await
                .map_err(|e| ApiError::unavailable(e.message))?;
        }
        h.secret = None;
        self.save(&h).await
    }

    async fn route(&self, mut req: Request) -> ApiResult<Response> {
        let path = req.path();
        let ok = |v: &serde_json::Value| -> ApiResult<Response> { Ok(Response::from_json(v)?) };
        match path.as_str() {
            "/start" => Ok(Response::from_json(&self.start(req.json().await?).await?)?),
            "/bundle" => {
                let p: PushBundle = req.json().await?;
                self.once(p.attempt, "/bundle", true, self.bundle(p.clone()))
                    .await?;
                ok(&serde_json::json!({}))
            }
            "/run" => {
                let r: RunSetup = req.json().await?;
                let out = self
                    .once(r.attempt, "/run", false, self.run(r.clone()))
                    .await?;
                Ok(Response::from_json(&out)?)
            }
            "/log" => Ok(Response::from_json(&self.live_log().await?)?),
            "/capture" => {
                let c: CaptureLayer = req.json().await?;
                let out = self
                    .once(c.attempt, "/capture", true, self.capture(c.clone()))
                    .await?;
                Ok(Response::from_json(&out)?)
            }
            "/destroy" => {
                self.destroy().await?;
                ok(&serde_json::json!({}))
            }
            other => Err(ApiError::internal(format!("BuildRunner has no {other}"))),
        }
    }
}

impl DurableObject for BuildRunner {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        match self.route(req).await {
            Ok(resp) => Ok(resp),
            Err(err) => {
                worker::console_error!(
                    "BuildRunner: {}",
                    err.internal.as_deref().unwrap_or(&err.message)
                );
                let status = err.status;
                Ok(Response::from_json(&err.envelope(""))?.with_status(status))
            }
        }
    }
}

/// Calls the build's runner at `path` with `body`; errors come back as [`ApiError`]s.
pub async fn call<B: Serialize, T: serde::de::DeserializeOwned>(
    env: &Env,
    build_id: &str,
    path: &str,
    body: &B,
) -> ApiResult<T> {
    let stub = env
        .durable_object(BUILDERS)
        .and_then(|ns| ns.get_by_name(build_id))
        .map_err(|e| ApiError::unavailable(format!("Durable Object binding `{BUILDERS}`: {e}")))?;
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(serde_json::to_string(body)?.into()));
    let req = Request::new_with_init(&format!("https://build-runner{path}"), &init)?;
    let mut resp = stub.fetch_with_request(req).await?;
    if resp.status_code() == 200 {
        return Ok(resp.json().await?);
    }
    let status = resp.status_code();
    match resp.json::<burstflare_api::ErrorEnvelope>().await {
        Ok(env) => Err(ApiError::new(status, env.error.code, env.error.message)),
        Err(e) => Err(ApiError::internal(format!(
            "BuildRunner answered {status}: {e}"
        ))),
    }
}

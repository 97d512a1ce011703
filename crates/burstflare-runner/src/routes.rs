//! The runner's HTTP API (wire types in `burstflare_api::runtime`).
//!
//! | route | success | failures (status `code`) |
//! |---|---|---|
//! | `GET /v1/health` | 200 `RunnerHealth` | 503 `runtime_unavailable` (Docker unreachable or silent for 10 s) |
//! | `POST /v1/containers` | 201 `ContainerInfo` (created and started), 200 (existed; started if it was not running) | 400 `invalid_field` (`details.field`), 400 `malformed_json`, 413 `payload_too_large`, 415 `unsupported_media_type`, 422 `image_not_found`, 409 `runtime_unavailable` (the name belongs to another runner), 502 `runtime_unavailable` (Docker refused to create/start), 503 `runtime_unavailable` |
//! | `GET /v1/containers[?session_id=]` | 200 `ContainerList` (this instance's containers, any state, by name) | 503 |
//! | `GET /v1/containers/{name}` | 200 `ContainerInfo` | 404 `container_not_found`, 503 |
//! | `POST /v1/containers/{name}/stop` (body `StopContainer` or empty) | 200 `ContainerInfo` | 400 `invalid_field` (`timeout_secs` > 300), 404, 503 |
//! | `DELETE /v1/containers/{name}` | 204 (force remove) | 404, 503 |
//! | `ANY /v1/containers/{name}/ports/{port}[/{*rest}]` | the container's answer, 101 for upgrades (see [`crate::proxy`]) | 400 `invalid_field` (port), 404 `container_not_found`, 404 `route_not_found` (port not published), 409 `runtime_unavailable` (not running), 502 `runtime_unavailable` (nothing answers on the port), 503 |
//!
//! Every route: 401 `unauthenticated` (no `Authorization: Bearer`) or
//! `invalid_token` (wrong secret); unknown paths 404 `route_not_found`, wrong
//! methods 405 `method_not_allowed`.
//!
//! Handlers are thin: authenticate (a middleware in front of every route,
//! including unknown ones), parse, call one [`Engine`] method, shape the answer.
//! JSON bodies are limited to [`MAX_JSON_BODY_BYTES`] (413 beyond); proxied
//! bodies are not limited. Every failure is an `ErrorEnvelope` produced by [`RunnerError`].

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use burstflare_api::MAX_JSON_BODY_BYTES;
use burstflare_api::runtime::{
    ContainerInfo, ContainerList, CreateContainer, RunnerHealth, StopContainer,
};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::docker::{Created, DEFAULT_STOP_TIMEOUT_SECS, Engine, MAX_STOP_TIMEOUT_SECS};
use crate::error::{RunnerError, RunnerResult};
use crate::proxy;
use crate::spec::ContainerSpec;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    secret_digest: [u8; 32],
}

impl AppState {
    pub fn new(engine: Arc<Engine>, secret: &str) -> Self {
        Self {
            engine,
            secret_digest: Sha256::digest(secret.as_bytes()).into(),
        }
    }

    /// Compares digests so the time taken does not depend on where (or whether)
    /// the presented token differs from the secret.
    fn secret_matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest
            .iter()
            .zip(self.secret_digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The router of the whole API.
pub fn router(state: AppState) -> Router {
    let containers = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/containers", get(list).post(create))
        .route("/v1/containers/{name}", get(inspect).delete(remove))
        .route("/v1/containers/{name}/stop", post(stop))
        .route("/v1/containers/{name}/ports/{port}", any(proxy_request))
        .route("/v1/containers/{name}/ports/{port}/", any(proxy_request))
        .route(
            "/v1/containers/{name}/ports/{port}/{*rest}",
            any(proxy_request),
        )
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed);
    containers
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

async fn authenticate(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, RunnerError> {
    check_authorization(&state, req.headers())?;
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
    Ok(resp)
}

fn check_authorization(state: &AppState, headers: &HeaderMap) -> RunnerResult<()> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(RunnerError::Unauthenticated);
    };
    let value = value.to_str().map_err(|_| RunnerError::InvalidToken)?;
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(RunnerError::Unauthenticated),
    };
    if state.secret_matches(token) {
        Ok(())
    } else {
        Err(RunnerError::InvalidToken)
    }
}

async fn route_not_found(method: Method, uri: Uri) -> RunnerError {
    RunnerError::RouteNotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> RunnerError {
    RunnerError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// How much of an oversized body the runner reads (and discards) before
/// answering 413: closing a connection with unread data makes the kernel reset
/// it, and the client may then never see the answer.
const DRAIN_LIMIT: u64 = 1024 * 1024;
/// How long draining an oversized body may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads a JSON request body of at most [`MAX_JSON_BODY_BYTES`]; `None` when it is empty.
async fn read_json(req: Request) -> RunnerResult<Option<Bytes>> {
    let too_large = RunnerError::PayloadTooLarge {
        limit: MAX_JSON_BODY_BYTES,
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > DRAIN_LIMIT) {
        return Err(too_large);
    }
    let is_json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
    let mut body = req.into_body();
    let mut bytes = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| RunnerError::MalformedJson(format!("the body could not be read: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if bytes.len() + data.len() > MAX_JSON_BODY_BYTES {
            let mut seen = (bytes.len() + data.len()) as u64;
            let drain = async {
                while seen <= DRAIN_LIMIT {
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                        }
                        _ => break,
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
            return Err(too_large);
        }
        bytes.extend_from_slice(&data);
    }
    if bytes.is_empty() {
        return Ok(None);
    }
    if !is_json {
        return Err(RunnerError::UnsupportedMediaType);
    }
    Ok(Some(bytes.freeze()))
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> RunnerResult<T> {
    serde_json::from_slice(bytes).map_err(|e| RunnerError::MalformedJson(e.to_string()))
}

/// A required JSON body of at most [`MAX_JSON_BODY_BYTES`].
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = RunnerError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, RunnerError> {
        match read_json(req).await? {
            Some(bytes) => parse_json(&bytes).map(Self),
            None => Err(RunnerError::MalformedJson(
                "the body is empty; this route needs a JSON object".to_owned(),
            )),
        }
    }
}

/// An optional JSON body: an empty body means `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = RunnerError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, RunnerError> {
        match read_json(req).await? {
            Some(bytes) => parse_json(&bytes).map(Self),
            None => Ok(Self(T::default())),
        }
    }
}

/// Maps axum's path rejection (e.g. invalid percent-encoding) into the envelope.
fn path_param<T>(path: Result<Path<T>, PathRejection>) -> RunnerResult<T> {
    path.map(|Path(p)| p)
        .map_err(|e| RunnerError::invalid_field("path", e.body_text()))
}

async fn health(State(state): State<AppState>) -> RunnerResult<Json<RunnerHealth>> {
    let (version, containers) = state.engine.health().await?;
    Ok(Json(RunnerHealth {
        runner: state.engine.instance().to_owned(),
        docker_version: Some(version),
        containers,
    }))
}

async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateContainer>,
) -> RunnerResult<(StatusCode, Json<ContainerInfo>)> {
    let spec = ContainerSpec::validate(body)?;
    match state.engine.create(&spec).await? {
        Created::New(info) => Ok((StatusCode::CREATED, Json(info))),
        Created::Existing(info) => Ok((StatusCode::OK, Json(info))),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    session_id: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> RunnerResult<Json<ContainerList>> {
    let Query(query) = query.map_err(|e| RunnerError::InvalidQuery(e.body_text()))?;
    let session = query.session_id.filter(|s| !s.is_empty());
    let items = state.engine.list(session.as_deref()).await?;
    Ok(Json(ContainerList { items }))
}

async fn inspect(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> RunnerResult<Json<ContainerInfo>> {
    let name = path_param(name)?;
    Ok(Json(state.engine.get(&name).await?))
}

async fn stop(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    OptionalJson(body): OptionalJson<StopContainer>,
) -> RunnerResult<Json<ContainerInfo>> {
    let name = path_param(name)?;
    let timeout = body.timeout_secs.unwrap_or(DEFAULT_STOP_TIMEOUT_SECS);
    if timeout > MAX_STOP_TIMEOUT_SECS {
        return Err(RunnerError::invalid_field(
            "timeout_secs",
            format!("{timeout} is above the maximum of {MAX_STOP_TIMEOUT_SECS}"),
        ));
    }
    Ok(Json(state.engine.stop(&name, timeout).await?))
}

async fn remove(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> RunnerResult<StatusCode> {
    let name = path_param(name)?;
    state.engine.remove(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct ProxyPath {
    name: String,
    port: String,
}

async fn proxy_request(
    State(state): State<AppState>,
    params: Result<Path<ProxyPath>, PathRejection>,
    req: Request<Body>,
) -> RunnerResult<Response> {
    let ProxyPath { name, port } = path_param(params)?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| RunnerError::invalid_field("port", format!("{port:?} is not a port")))?;
    let upstream = state.engine.upstream(&name, port).await?;
    proxy::forward(upstream, &name, port, req).await
}

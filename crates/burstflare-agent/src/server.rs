//! The agent's HTTP API (thin handlers; the work lives in the other modules).
//!
//! Every route, and the fallbacks, sit behind [`crate::auth::require_token`].
//! Errors use the API's JSON envelope (see [`crate::error`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use burstflare_api::ErrorCode;
use burstflare_api::runtime::{AgentActivity, AgentHealth, AgentStatus, LAYER_SHA256_HEADER};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::activity::Activity;
use crate::auth::{Secret, require_token};
use crate::editor::EditorStatus;
use crate::error::ApiError;
use crate::sshd::SshdStatus;
use crate::terminal::{Size, TerminalError, Terminals};
use crate::{keys, ssh_bridge, terminal_ws};

/// How long `/ssh` and `/healthz` wait for sshd to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest bundle `/build/bundle` accepts (the API's own limit is lower).
const MAX_BUNDLE: usize = 256 << 20;
/// Largest WebSocket message accepted from clients.
const MAX_MESSAGE: usize = 16 << 20;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub activity: Activity,
    pub terminals: Terminals,
    pub sshd: Arc<SshdStatus>,
    pub ssh_target: SocketAddr,
    pub host_key_dir: PathBuf,
    pub started: Instant,
    /// The sshd start (see [`SshdStatus::starts`]) whose port was seen
    /// accepting; probing once per start keeps sshd's log free of probes.
    pub verified_start: Arc<AtomicU64>,
    /// Turns true when the agent shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Snapshot scans, blob streams and restores ([`crate::snapshot_http`]).
    pub snapshots: Arc<crate::snapshot_http::Snapshots>,
    /// The browser editor, when the agent runs one ([`crate::editor`]).
    pub editor: Option<Arc<EditorStatus>>,
}

impl AppState {
    pub fn new(
        terminals: Terminals,
        sshd: Arc<SshdStatus>,
        ssh_target: SocketAddr,
        host_key_dir: PathBuf,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            activity: Activity::default(),
            terminals,
            sshd,
            ssh_target,
            host_key_dir,
            started: Instant::now(),
            verified_start: Arc::new(AtomicU64::new(0)),
            shutdown,
            snapshots: Arc::new(crate::snapshot_http::Snapshots::new(
                (
                    nix::unistd::getuid().as_raw(),
                    nix::unistd::getgid().as_raw(),
                ),
                Box::new(|| {}),
            )),
            editor: None,
        }
    }

    /// `/healthz` reports the editor's state.
    #[must_use]
    pub fn with_editor(mut self, editor: Arc<EditorStatus>) -> Self {
        self.editor = Some(editor);
        self
    }

    /// Restores go to `owner` and run `after_restore` when done.
    #[must_use]
    pub fn with_snapshots(
        mut self,
        owner: (u32, u32),
        after_restore: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        self.snapshots = Arc::new(crate::snapshot_http::Snapshots::new(owner, after_restore));
        self
    }
}

/// The agent's router.
pub fn router(state: AppState, secret: Secret) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/activity", get(activity))
        .route("/lifecycle/release", post(release))
        .route("/ssh", get(ssh))
        .route("/terminal", get(terminal))
        .route(
            "/build/bundle",
            post(build_bundle).layer(DefaultBodyLimit::max(MAX_BUNDLE)),
        )
        .route("/build/run", post(build_run))
        .route("/build/capture", post(build_capture))
        .route(
            "/layer/apply",
            post(layer_apply).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/snapshot/scan",
            post(crate::snapshot_http::scan).layer(DefaultBodyLimit::max(64 * 1024)),
        )
        .route(
            "/snapshot/blob",
            post(crate::snapshot_http::blob).layer(DefaultBodyLimit::max(4096)),
        )
        .route(
            "/snapshot/blobs",
            post(crate::snapshot_http::blobs).layer(DefaultBodyLimit::max(512 << 20)),
        )
        .route(
            "/snapshot/restore",
            post(crate::snapshot_http::restore).layer(DefaultBodyLimit::disable()),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(secret, require_token))
}

/// `POST /build/bundle`: unpacks a tar.gz into the bundle directory.
async fn build_bundle(body: bytes::Bytes) -> Result<Json<serde_json::Value>, ApiError> {
    let dir = crate::build::bundle_dir();
    let entries = tokio::task::spawn_blocking(move || crate::build::unpack_bundle(&body, &dir))
        .await
        .map_err(|e| ApiError::internal(format!("unpacking stopped: {e}")))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidField,
                format!("the bundle cannot be unpacked: {e}"),
            )
        })?;
    Ok(Json(serde_json::json!({ "entries": entries })))
}

/// `POST /build/run`: packages, then setup commands. The answer streams as
/// NDJSON: `{"line": "…"}` per log line as it is produced, then one
/// `{"exit_code", "failed_command"}` line.
async fn build_run(Json(req): Json<crate::build::RunRequest>) -> Response {
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (out_tx, out_rx) =
        tokio::sync::mpsc::unbounded_channel::<Result<bytes::Bytes, std::io::Error>>();
    tokio::spawn(async move {
        let runner = tokio::spawn(async move {
            crate::build::run_live(&req, &crate::build::bundle_dir(), Some(tx)).await
        });
        while let Some(line) = lines.recv().await {
            let mut json = serde_json::json!({ "line": line }).to_string();
            json.push('\n');
            if out_tx.send(Ok(bytes::Bytes::from(json))).is_err() {
                return;
            }
        }
        let last = match runner.await {
            Ok(Ok(out)) => serde_json::json!({
                "exit_code": out.exit_code,
                "failed_command": out.failed_command,
            }),
            Ok(Err(e)) => {
                serde_json::json!({ "exit_code": 127, "failed_command": null, "error": e.to_string() })
            }
            Err(e) => {
                serde_json::json!({ "exit_code": 127, "failed_command": null, "error": e.to_string() })
            }
        };
        let _ = out_tx.send(Ok(bytes::Bytes::from(format!("{last}\n"))));
    });
    let stream = futures_util::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(axum::body::Body::from_stream(stream))
        .unwrap_or_else(|_| ApiError::internal("response").into_response())
}

/// `POST /build/capture`: the layer of everything changed since the image
/// was built (against its base manifest), as tar+zstd, with its SHA-256 and
/// size in `x-layer-sha256` and `x-layer-size`.
async fn build_capture() -> Result<Response, ApiError> {
    let out = std::env::temp_dir().join("burstflare-layer.tar.zst");
    let path = out.clone();
    let summary = tokio::task::spawn_blocking(move || {
        let base = crate::layer::read_manifest_file(std::path::Path::new(
            crate::layer::DEFAULT_BASE_MANIFEST,
        ))?;
        let file = std::fs::File::create(&path).map_err(|e| crate::layer::LayerError::Io {
            path: path.clone(),
            action: "create",
            source: e,
        })?;
        crate::layer::capture(
            std::path::Path::new("/"),
            &base,
            &crate::layer::Excludes::production(),
            std::io::BufWriter::new(file),
        )
    })
    .await
    .map_err(|e| ApiError::internal(format!("capture stopped: {e}")))?
    .map_err(|e| ApiError::internal(format!("cannot capture the layer: {e}")))?;
    let file = tokio::fs::File::open(&out)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the layer: {e}")))?;
    // Streamed in chunks: a layer can be far larger than memory should hold.
    let chunks = futures_util::stream::unfold(Some(file), |file| async move {
        use tokio::io::AsyncReadExt;
        let mut file = file?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err::<bytes::Bytes, _>(e), None)),
        }
    });
    let body = axum::body::Body::from_stream(chunks);
    Response::builder()
        .header("content-type", "application/zstd")
        .header("x-layer-sha256", summary.sha256_of_compressed_output)
        .header("x-layer-size", summary.size_compressed.to_string())
        .body(body)
        .map_err(|e| ApiError::internal(format!("response: {e}")))
}

/// `POST /layer/apply`: a release's layer (tar+zstd), applied over `/`
/// before the session's start commands run. The body is spooled to a file
/// (memory stays bounded) while its SHA-256 is computed; with
/// [`LAYER_SHA256_HEADER`] a layer whose digest differs is refused before
/// anything is applied. [`crate::layer::apply`] refuses anything that would
/// land outside the root.
async fn layer_apply(
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<crate::layer::ApplySummary>, ApiError> {
    use futures_util::StreamExt;
    use sha2::Digest;
    use tokio::io::AsyncWriteExt;
    let expected = headers
        .get(LAYER_SHA256_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_start_matches("sha256:").to_ascii_lowercase());
    let mut hasher = sha2::Sha256::new();
    let path = std::env::temp_dir().join("burstflare-apply.tar.zst");
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| ApiError::internal(format!("cannot spool the layer: {e}")))?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidField,
                format!("the layer could not be read: {e}"),
            )
        })?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(format!("cannot spool the layer: {e}")))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::internal(format!("cannot spool the layer: {e}")))?;
    drop(file);
    let actual = hex::encode(hasher.finalize());
    if let Some(expected) = expected.filter(|e| *e != actual) {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidField,
            format!(
                "the layer was refused: its SHA-256 is {actual}, not the expected {expected}; nothing was applied"
            ),
        ));
    }
    let spooled = path.clone();
    let summary = tokio::task::spawn_blocking(move || {
        let input = std::fs::File::open(&spooled).map_err(|e| crate::layer::LayerError::Io {
            path: spooled.clone(),
            action: "open",
            source: e,
        })?;
        crate::layer::apply(
            std::path::Path::new("/"),
            std::io::BufReader::new(input),
            &crate::layer::ApplyLimits::default(),
        )
    })
    .await
    .map_err(|e| ApiError::internal(format!("applying stopped: {e}")))?;
    let _ = tokio::fs::remove_file(&path).await;
    summary.map(Json).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidField,
            format!("the layer was refused: {e}"),
        )
    })
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::RouteNotFound,
        "no such route on the agent",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this method is not allowed here",
    )
}

fn upgrade_required(e: &WebSocketUpgradeRejection) -> ApiError {
    ApiError::new(
        StatusCode::UPGRADE_REQUIRED,
        ErrorCode::UpgradeRequired,
        format!("this endpoint speaks WebSocket only ({e})"),
    )
}

async fn healthz(State(app): State<AppState>) -> Json<AgentHealth> {
    let host_keys = keys::host_public_keys(&app.host_key_dir);
    let running = app.sshd.running();
    let start = app.sshd.starts();
    let accepting = running
        && (app.verified_start.load(Ordering::SeqCst) == start || {
            let ok = matches!(
                tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(app.ssh_target)).await,
                Ok(Ok(_))
            );
            if ok {
                app.verified_start.store(start, Ordering::SeqCst);
            }
            ok
        });
    Json(AgentHealth {
        status: if accepting && !host_keys.is_empty() {
            AgentStatus::Ok
        } else {
            AgentStatus::Starting
        },
        sshd_running: running,
        sshd_restarts: app.sshd.restarts(),
        host_keys,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        uptime_ms: u64::try_from(app.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        base_digest: base_digest(),
        editor: app.editor.as_ref().map(|e| e.health()),
    })
}

/// `sha256:<hex>` of the image's base manifest, read once.
fn base_digest() -> Option<String> {
    static DIGEST: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    DIGEST
        .get_or_init(|| {
            use sha2::Digest;
            let bytes = std::fs::read(crate::layer::DEFAULT_BASE_MANIFEST).ok()?;
            Some(format!(
                "sha256:{}",
                hex::encode(sha2::Sha256::digest(&bytes))
            ))
        })
        .clone()
}

async fn activity(State(app): State<AppState>) -> Json<AgentActivity> {
    Json(app.activity.snapshot())
}

/// `POST /lifecycle/release`: the control plane is done with this container
/// (it stops it itself, or took the final snapshot of a draining agent), so
/// SIGTERM ends the agent at once.
async fn release(State(app): State<AppState>) -> Json<serde_json::Value> {
    app.activity.lifecycle.release();
    Json(serde_json::json!({ "released": true }))
}

async fn ssh(
    State(app): State<AppState>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|e| upgrade_required(&e))?;
    // Connect first, so that a down sshd is an HTTP error rather than a
    // WebSocket that closes at once.
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(app.ssh_target)).await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            tracing::warn!(target = %app.ssh_target, error = %e, "ssh: cannot connect to sshd");
            return Err(ApiError::unavailable("sshd is not accepting connections"));
        }
        Err(_) => {
            tracing::warn!(target = %app.ssh_target, "ssh: connecting to sshd timed out");
            return Err(ApiError::unavailable(
                "sshd did not accept the connection in time",
            ));
        }
    };
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "ssh: cannot set TCP_NODELAY");
    }
    let channel = Arc::clone(&app.activity.ssh);
    let shutdown = app.shutdown.clone();
    Ok(ws
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| ssh_bridge::bridge(socket, tcp, channel, shutdown)))
}

#[derive(Debug, Deserialize)]
struct TerminalQuery {
    terminal_id: Option<String>,
    cols: Option<u16>,
    rows: Option<u16>,
}

async fn terminal(
    State(app): State<AppState>,
    query: Result<Query<TerminalQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|e| upgrade_required(&e))?;
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidQuery,
            e.body_text(),
        )
    })?;
    let size = Size::from_client(q.cols, q.rows);
    let given = q.cols.is_some() || q.rows.is_some();
    let (term, fresh) = app
        .terminals
        .open(q.terminal_id.as_deref(), size)
        .map_err(|e| {
            tracing::error!(error = %e, "terminal: cannot open");
            match e {
                TerminalError::TooMany => ApiError::unavailable(e.to_string()),
                TerminalError::NoLoginUser(_) => ApiError::unavailable(e.to_string()),
                _ => ApiError::internal(format!("cannot start a shell: {e}")),
            }
        })?;
    let resize = (!fresh && given).then_some(size);
    let terminals = app.terminals.clone();
    let on_fail = (fresh, app.terminals.clone(), term.id().to_owned());
    let channel = Arc::clone(&app.activity.terminal);
    Ok(ws
        .max_message_size(MAX_MESSAGE)
        .on_failed_upgrade(move |e| {
            tracing::warn!(error = %e, "terminal: websocket upgrade failed");
            let (fresh, terminals, id) = on_fail;
            if fresh {
                tokio::spawn(async move { terminals.kill(&id).await });
            }
        })
        .on_upgrade(move |socket| terminal_ws::serve(socket, terminals, term, channel, resize)))
}

//! The snapshot endpoints of the agent ([`crate::snapshot`] does the work):
//!
//! * `POST /snapshot/scan` `{"roots": ["/home/dev", …]}` → the manifest
//!   (JSON). The scan's blob index is kept for the next `/snapshot/blobs`;
//!   the hash cache is saved at [`DEFAULT_HASH_CACHE`] (or
//!   `BURSTFLARE_AGENT_HASH_CACHE`).
//! * `POST /snapshot/blobs` `{"digests": [...]}` → the blob stream (see
//!   [`crate::snapshot`]) of those digests of the last scan; a digest the
//!   scan did not see is a 400 before anything is sent.
//! * `POST /snapshot/blob` `{"digest"}` → one blob of the last scan, raw,
//!   with its `content-length` (large blobs go this way, one at a time).
//! * `POST /snapshot/restore` — a JSON line `{"allowed_roots": [...],
//!   "manifest": {...}}`, then the content stream → `RestoreSummary`
//!   (JSON). All or nothing; a refused restore is a 400 with the reason.
//!   Afterwards the session's `authorized_keys` are installed again (a
//!   restored home would otherwise bring back old keys).
//!
//! Bodies stream both ways through bounded channels between the async server
//! and the blocking snapshot code, so memory stays bounded whatever the size.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use burstflare_api::ErrorCode;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;

use crate::error::ApiError;
use crate::server::AppState;
use crate::snapshot::{self, BlobIndex, HashCache, Manifest, RestoreOptions, SnapshotError};

/// Where the scan's hash cache lives by default.
pub const DEFAULT_HASH_CACHE: &str = "/var/lib/burstflare/snapshot-hashes";
/// Override of [`DEFAULT_HASH_CACHE`] (tests).
pub const ENV_HASH_CACHE: &str = "BURSTFLARE_AGENT_HASH_CACHE";
/// Chunks in flight between the async and the blocking side.
const CHANNEL_CHUNKS: usize = 16;
/// Size of the chunks the blob stream is sent in.
const CHUNK_BYTES: usize = 256 * 1024;
/// The restore request's first line (the manifest) may be this long.
const MAX_HEAD_BYTES: usize = 512 << 20;

/// The snapshot state of a running agent.
pub struct Snapshots {
    /// The index of the last scan: what `/snapshot/blobs` can send.
    index: Mutex<Option<Arc<BlobIndex>>>,
    cache_path: PathBuf,
    /// Owner of restored entries.
    owner: (u32, u32),
    /// Run after every restore.
    after_restore: Box<dyn Fn() + Send + Sync>,
}

impl Snapshots {
    pub fn new(owner: (u32, u32), after_restore: Box<dyn Fn() + Send + Sync>) -> Self {
        Self {
            index: Mutex::new(None),
            cache_path: std::env::var_os(ENV_HASH_CACHE)
                .map_or_else(|| PathBuf::from(DEFAULT_HASH_CACHE), PathBuf::from),
            owner,
            after_restore,
        }
    }
}

fn snapshot_error(e: SnapshotError) -> ApiError {
    if e.is_invalid_input() {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidField,
            e.to_string(),
        )
    } else {
        ApiError::internal(e.to_string())
    }
}

fn stopped(e: tokio::task::JoinError) -> ApiError {
    ApiError::internal(format!("the snapshot task stopped: {e}"))
}

#[derive(Deserialize)]
pub struct ScanRequest {
    roots: Vec<String>,
}

/// `POST /snapshot/scan`.
pub async fn scan(
    State(app): State<AppState>,
    Json(req): Json<ScanRequest>,
) -> Result<Json<Manifest>, ApiError> {
    let snapshots = app.snapshots.clone();
    let (manifest, index) = tokio::task::spawn_blocking(move || {
        let mut cache = HashCache::load(&snapshots.cache_path);
        let roots: Vec<PathBuf> = req.roots.iter().map(PathBuf::from).collect();
        let scan = snapshot::scan(&roots, &mut cache)?;
        if let Some(dir) = snapshots.cache_path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = cache.save(&snapshots.cache_path) {
            // Only the next scan gets slower.
            tracing::warn!(error = %e, "cannot save the snapshot hash cache");
        }
        Ok::<_, SnapshotError>((scan.manifest, scan.index))
    })
    .await
    .map_err(stopped)?
    .map_err(snapshot_error)?;
    if let Ok(mut slot) = app.snapshots.index.lock() {
        *slot = Some(Arc::new(index));
    }
    Ok(Json(manifest))
}

/// The blob index of the last scan (409 before any scan).
fn last_index(app: &AppState) -> Result<Arc<BlobIndex>, ApiError> {
    app.snapshots
        .index
        .lock()
        .ok()
        .and_then(|slot| slot.clone())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::InvalidField,
                "no scan to send blobs of: call /snapshot/scan first",
            )
        })
}

#[derive(Deserialize)]
pub struct BlobsRequest {
    digests: Vec<String>,
}

/// A `Write` that hands its bytes to the async side in chunks.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK_BYTES - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_BYTES {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// `POST /snapshot/blobs`.
pub async fn blobs(
    State(app): State<AppState>,
    Json(req): Json<BlobsRequest>,
) -> Result<Response, ApiError> {
    let index = last_index(&app)?;
    if let Some(unknown) = req.digests.iter().find(|d| index.get(d).is_none()) {
        return Err(snapshot_error(SnapshotError::UnknownDigest {
            digest: unknown.clone(),
        }));
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(CHANNEL_CHUNKS);
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK_BYTES),
        };
        let result = snapshot::blobs::write(&index, &req.digests, &mut out)
            .and_then(|_| out.flush().map_err(SnapshotError::Output));
        if let Err(e) = result {
            tracing::warn!(error = %e, "the blob stream failed");
            // The receiver sees an error and the response is cut short.
            let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Response::builder()
        .header("content-type", "application/octet-stream")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(format!("response: {e}")))
}

/// A `Read` over chunks the async side receives.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[derive(Deserialize)]
struct RestoreHead {
    allowed_roots: Vec<String>,
    manifest: Manifest,
}

fn bad_request(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidField, message)
}

/// `POST /snapshot/restore`.
pub async fn restore(
    State(app): State<AppState>,
    body: Body,
) -> Result<Json<snapshot::RestoreSummary>, ApiError> {
    let mut stream = body.into_data_stream();
    // The first line: allowed roots and manifest.
    let mut head = Vec::new();
    let rest = loop {
        let chunk = stream
            .next()
            .await
            .ok_or_else(|| bad_request("the restore request ends before its manifest line".into()))?
            .map_err(|e| bad_request(format!("the restore request could not be read: {e}")))?;
        if let Some(at) = chunk.iter().position(|b| *b == b'\n') {
            head.extend_from_slice(&chunk[..at]);
            break chunk.slice(at + 1..);
        }
        head.extend_from_slice(&chunk);
        if head.len() > MAX_HEAD_BYTES {
            return Err(bad_request(format!(
                "the manifest line exceeds {MAX_HEAD_BYTES} bytes"
            )));
        }
    };
    let head: RestoreHead = serde_json::from_slice(&head)
        .map_err(|e| bad_request(format!("the manifest line is not valid: {e}")))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(CHANNEL_CHUNKS);
    let pump = tokio::spawn(async move {
        if !rest.is_empty() && tx.send(Ok(rest)).await.is_err() {
            return;
        }
        while let Some(chunk) = stream.next().await {
            let item = chunk.map_err(io::Error::other);
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    let snapshots = app.snapshots.clone();
    let summary = tokio::task::spawn_blocking(move || {
        let roots: Vec<PathBuf> = head.allowed_roots.iter().map(PathBuf::from).collect();
        let opts = RestoreOptions {
            uid: snapshots.owner.0,
            gid: snapshots.owner.1,
            limits: snapshot::Limits::default(),
        };
        let reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        let summary = snapshot::restore(&head.manifest, &roots, reader, &opts)?;
        (snapshots.after_restore)();
        Ok::<_, SnapshotError>(summary)
    })
    .await
    .map_err(stopped)?;
    pump.abort();
    summary.map(Json).map_err(snapshot_error)
}

#[derive(Deserialize)]
pub struct BlobRequest {
    digest: String,
}

/// `POST /snapshot/blob` `{"digest"}`: one blob of the last scan, raw, with
/// its `content-length` (the control plane pipes it into storage without
/// parsing it). A file that changed since the scan cuts the body short.
pub async fn blob(
    State(app): State<AppState>,
    Json(req): Json<BlobRequest>,
) -> Result<Response, ApiError> {
    use tokio::io::AsyncReadExt;
    let index = last_index(&app)?;
    let source = index.get(&req.digest).ok_or_else(|| {
        snapshot_error(SnapshotError::UnknownDigest {
            digest: req.digest.clone(),
        })
    })?;
    let (path, size) = (source.path.clone(), source.size);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?
        .len();
    if len != size {
        return Err(snapshot_error(SnapshotError::Changed {
            path,
            reason: format!("{size} bytes when scanned, {len} now"),
        }));
    }
    let stream = futures_util::stream::unfold((file, size), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let want = usize::try_from(left)
            .unwrap_or(CHUNK_BYTES)
            .min(CHUNK_BYTES);
        let mut buf = vec![0_u8; want];
        match file.read(&mut buf).await {
            Ok(0) => Some((
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank during the snapshot",
                )),
                (file, 0),
            )),
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), (file, left - n as u64)))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    Response::builder()
        .header("content-type", "application/octet-stream")
        .header("content-length", size.to_string())
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(format!("response: {e}")))
}

//! Moving snapshots between a session's agent and R2, for the
//! `SessionCoordinator` (containers never call the control plane: this
//! object pulls snapshots from the agent and pushes restores to it).
//!
//! **Take** ([`take`]): the agent scans the persisted paths and answers the
//! manifest (`POST /snapshot/scan`); the snapshot's refs are recorded; the
//! blobs the workspace does not have yet are requested in one blob stream
//! (`POST /snapshot/blobs`: per blob 64 hex digits, a big-endian u64
//! length, the bytes) and each is streamed into its own R2 object while its
//! SHA-256 is checked, so a blob is stored only under its true digest and at
//! most one multipart part is held in memory; the manifest goes to R2 last.
//!
//! **Restore** ([`restore`]): the manifest is checked against the session's
//! persisted paths, then pushed as one request (`POST /snapshot/restore`):
//! a JSON line `{"allowed_roots", "manifest"}` and the content of every file
//! in manifest order, streamed from the blobs' objects. The agent checks
//! everything again and applies all or nothing.

use std::collections::{BTreeMap, BTreeSet};

use burstflare_api::runtime::{AGENT_PORT, AGENT_TOKEN_HEADER};
use burstflare_domain::snapshot::{self as domain, Kind, Manifest};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use worker::{Env, Headers, Method, Request, RequestInit, Response};

use crate::platform::{BUCKET, now, random};
use crate::runtime::Runtime;
use crate::store::objects::{self, PutError};
use crate::store::snapshots::{self as store, Completed};

/// The agent a snapshot talks to.
pub struct Agent<'a> {
    pub runtime: &'a Runtime,
    pub container: &'a str,
    pub secret: &'a str,
}

impl Agent<'_> {
    async fn post(
        &self,
        path: &str,
        body: Option<wasm_bindgen::JsValue>,
        content_type: &str,
    ) -> Result<Response, String> {
        let headers = Headers::new();
        headers
            .set("content-type", content_type)
            .map_err(|e| e.to_string())?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(body);
        let req = Request::new_with_init(&format!("http://agent{path}"), &init)
            .map_err(|e| e.to_string())?;
        let mut resp = self
            .runtime
            .fetch(
                self.container,
                AGENT_PORT,
                path,
                &req,
                &[(AGENT_TOKEN_HEADER, self.secret)],
            )
            .await
            .map_err(|e| e.message)?;
        if resp.status_code() != 200 {
            let text = resp.text().await.unwrap_or_default();
            let message = serde_json::from_str::<burstflare_api::ErrorEnvelope>(&text)
                .map(|e| e.error.message)
                .unwrap_or(text);
            return Err(message);
        }
        Ok(resp)
    }
}

/// What the agent restored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Restored {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

/// Reads a body stream piece by piece: blob frames, a first line, a given
/// number of bytes as a stream of its own.
pub struct Reader<S> {
    body: S,
    buf: Vec<u8>,
}

impl<S: Stream<Item = worker::Result<Vec<u8>>> + Unpin> Reader<S> {
    pub fn new(body: S) -> Self {
        Self {
            body,
            buf: Vec::new(),
        }
    }

    /// The bytes up to the first newline (at most `max`), without it.
    pub async fn line(&mut self, max: usize) -> Result<Vec<u8>, String> {
        loop {
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=at).collect();
                return Ok(line[..at].to_vec());
            }
            if self.buf.len() > max {
                return Err(format!("the first line exceeds {max} bytes"));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(format!("reading the body failed: {e}")),
                None => return Err("the body ends before its first line does".into()),
            }
        }
    }

    /// True when nothing is left.
    pub async fn at_end(&mut self) -> Result<bool, String> {
        Ok(!self.fill(1).await?)
    }

    /// Fills the buffer to `n` bytes; false at a clean end before any byte.
    async fn fill(&mut self, n: usize) -> Result<bool, String> {
        while self.buf.len() < n {
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(format!("reading the blob stream failed: {e}")),
                None if self.buf.is_empty() => return Ok(false),
                None => return Err("the blob stream ended inside a frame header".into()),
            }
        }
        Ok(true)
    }

    /// The next frame's digest and length.
    async fn header(&mut self) -> Result<Option<(String, u64)>, String> {
        if !self.fill(72).await? {
            return Ok(None);
        }
        let head: Vec<u8> = self.buf.drain(..72).collect();
        let digest = std::str::from_utf8(&head[..64])
            .ok()
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or("the blob stream has a malformed digest")?
            .to_owned();
        let mut len = [0_u8; 8];
        len.copy_from_slice(&head[64..]);
        Ok(Some((digest, u64::from_be_bytes(len))))
    }

    /// The next `len` bytes as a stream (what is read past them stays buffered).
    pub fn body(&mut self, len: u64) -> impl Stream<Item = worker::Result<Vec<u8>>> + Unpin + '_ {
        Box::pin(futures_util::stream::unfold(
            (self, len),
            |(frames, left)| async move {
                if left == 0 {
                    return None;
                }
                if frames.buf.is_empty() {
                    match frames.body.next().await {
                        Some(Ok(chunk)) => frames.buf = chunk,
                        Some(Err(e)) => return Some((Err(e), (frames, 0))),
                        None => {
                            return Some((
                                Err(worker::Error::RustError(
                                    "the stream ended inside a file's content".into(),
                                )),
                                (frames, 0),
                            ));
                        }
                    }
                }
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(frames.buf.len());
                let out: Vec<u8> = frames.buf.drain(..n).collect();
                Some((Ok(out), (frames, left - n as u64)))
            },
        ))
    }
}

/// Takes a snapshot of `roots` into the pending snapshot `row`; the counts to
/// complete it with. Errors are reasons shown to users.
pub async fn take(
    env: &Env,
    agent: &Agent<'_>,
    row: &store::SnapshotRow,
    roots: &[String],
) -> Result<(Completed, Manifest), String> {
    let ise = |e: crate::error::ApiError| e.internal.unwrap_or(e.message);
    // Nested persisted paths are covered by the outer one.
    let scan_roots = domain::collapse_roots(roots);
    let body = serde_json::to_string(&serde_json::json!({ "roots": scan_roots }))
        .map_err(|e| e.to_string())?;
    let mut resp = agent
        .post("/snapshot/scan", Some(body.into()), "application/json")
        .await
        .map_err(|e| format!("scanning the persisted paths failed: {e}"))?;
    let manifest: Manifest = resp
        .json()
        .await
        .map_err(|e| format!("the agent's manifest is unreadable: {e}"))?;
    let summary = domain::validate(&manifest, roots, &domain::Limits::default())
        .map_err(|e| format!("the agent's manifest is invalid: {e}"))?;
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    for e in &manifest.entries {
        if let (Kind::File, Some(d)) = (&e.kind, &e.sha256) {
            sizes.insert(d.clone(), e.size);
        }
    }
    let digests: Vec<String> = sizes.keys().cloned().collect();
    store::add_refs(env, &row.workspace_id, &row.id, &digests)
        .await
        .map_err(ise)?;
    let stored: BTreeSet<String> = store::blobs(env, &row.workspace_id, &digests)
        .await
        .map_err(ise)?
        .into_iter()
        .map(|b| b.digest)
        .collect();
    // Large blobs are piped one by one straight into R2; the small ones
    // come together in one framed stream.
    let (large, missing): (Vec<String>, Vec<String>) = digests
        .iter()
        .filter(|d| !stored.contains(*d))
        .cloned()
        .partition(|d| sizes.get(d).is_some_and(|s| *s >= LARGE_BLOB));
    let bucket = env.bucket(BUCKET).map_err(|e| e.to_string())?;
    let (mut new_blobs, mut new_bytes) = (0_u64, 0_u64);
    // A few at a time: the agent reads and hashes one file per request, so
    // overlapping them keeps its cores and the pipe to R2 busy.
    let mut piped = futures_util::stream::iter(large.iter().map(|digest| {
        let len = sizes.get(digest).copied().unwrap_or(0);
        let bucket = &bucket;
        async move {
            store_blob_piped(env, bucket, agent, &row.workspace_id, digest, len)
                .await
                .map(|kept| (kept, len))
                .map_err(|e| match e {
                    BlobError::Mismatch(actual) => format!(
                        "a file changed while it was read (expected {digest}, got {actual}); try again"
                    ),
                    BlobError::Read(r) | BlobError::Internal(r) => r,
                })
        }
    }))
    .buffer_unordered(LARGE_BLOBS_AT_ONCE);
    while let Some(done) = piped.next().await {
        let (kept, len) = done?;
        if kept {
            new_blobs += 1;
            new_bytes += len;
        }
    }
    drop(piped);
    if !missing.is_empty() {
        let body = serde_json::to_string(&serde_json::json!({ "digests": missing }))
            .map_err(|e| e.to_string())?;
        let mut resp = agent
            .post("/snapshot/blobs", Some(body.into()), "application/json")
            .await
            .map_err(|e| format!("reading the changed files failed: {e}"))?;
        let mut frames = Reader::new(resp.stream().map_err(|e| e.to_string())?);
        let mut expected = missing.iter();
        while let Some((digest, len)) = frames.header().await? {
            if expected.next() != Some(&digest) || sizes.get(&digest) != Some(&len) {
                return Err(format!(
                    "the agent sent blob {digest} ({len} bytes), which was not asked for"
                ));
            }
            let kept = store_blob(
                env,
                &bucket,
                &row.workspace_id,
                &digest,
                len,
                frames.body(len),
            )
            .await
            .map_err(|e| match e {
                BlobError::Mismatch(actual) => format!(
                    "a file changed while it was read (expected {digest}, got {actual}); try again"
                ),
                BlobError::Read(r) => r,
                BlobError::Internal(m) => m,
            })?;
            if kept {
                new_blobs += 1;
                new_bytes += len;
            }
        }
        if let Some(left) = expected.next() {
            return Err(format!("the agent did not send blob {left}"));
        }
    }
    bucket
        .put(
            store::manifest_key(&row.workspace_id, &row.id),
            serde_json::to_vec(&manifest).map_err(|e| e.to_string())?,
        )
        .execute()
        .await
        .map_err(|e| e.to_string())?;
    let skipped_json = serde_json::to_string(&manifest.skipped).map_err(|e| e.to_string())?;
    Ok((
        Completed {
            files: summary.files,
            bytes: summary.bytes,
            new_blobs,
            new_bytes,
            skipped_json,
        },
        manifest,
    ))
}

/// Why a blob was not stored.
enum BlobError {
    /// The content hashed to this instead.
    Mismatch(String),
    /// The body could not be read (or was cut short).
    Read(String),
    Internal(String),
}

/// Streams `len` bytes of `body`, which must hash to `digest`, into a new
/// object of the workspace's blobs and records it. `Ok(false)` when another
/// snapshot recorded the same blob meanwhile (this copy is deleted again).
/// Nothing stays behind on error.
async fn store_blob<S: Stream<Item = worker::Result<Vec<u8>>> + Unpin>(
    env: &Env,
    bucket: &worker::Bucket,
    workspace_id: &str,
    digest: &str,
    len: u64,
    body: S,
) -> Result<bool, BlobError> {
    let nonce = hex::encode(random::<8>().map_err(|e| BlobError::Internal(e.message))?);
    let key = store::blob_key(workspace_id, digest, &nonce);
    let (actual, size) =
        objects::put_stream(bucket, &key, body, len)
            .await
            .map_err(|e| match e {
                PutError::TooLarge => {
                    BlobError::Read(format!("blob {digest} is longer than announced"))
                }
                PutError::Read(r) => BlobError::Read(r),
                PutError::Store(e) => BlobError::Internal(e.internal.unwrap_or(e.message)),
            })?;
    if actual != digest || size != len {
        let _ = bucket.delete(&key).await;
        return Err(BlobError::Mismatch(actual));
    }
    let kept = store::add_blob(env, workspace_id, digest, size, &key, now())
        .await
        .map_err(|e| BlobError::Internal(e.internal.unwrap_or(e.message)))?;
    if !kept {
        let _ = bucket.delete(&key).await;
    }
    Ok(kept)
}

/// Blobs at least this large are piped one by one (`/snapshot/blob`).
const LARGE_BLOB: u64 = 1 << 20;
/// How many large blobs are piped from the agent into R2 at once.
const LARGE_BLOBS_AT_ONCE: usize = 3;

/// [`store_blob`] for one large blob asked of the agent by itself: its body
/// is piped by the runtime into R2 (through a `FixedLengthStream`) and, on a
/// tee, into a `DigestStream`, so its bytes never enter this Worker's wasm
/// memory. A digest that does not match deletes the object again.
async fn store_blob_piped(
    env: &Env,
    bucket: &worker::Bucket,
    agent: &Agent<'_>,
    workspace_id: &str,
    digest: &str,
    len: u64,
) -> Result<bool, BlobError> {
    use wasm_bindgen::JsCast as _;
    use worker::crypto::{DigestStream, DigestStreamAlgorithm};
    let js = |e: wasm_bindgen::JsValue| BlobError::Internal(js_text(&e));
    let body = serde_json::to_string(&serde_json::json!({ "digest": digest }))
        .map_err(|e| BlobError::Internal(e.to_string()))?;
    let resp = agent
        .post("/snapshot/blob", Some(body.into()), "application/json")
        .await
        .map_err(|e| BlobError::Read(format!("reading a changed file failed: {e}")))?;
    let source = worker::web_sys::Response::from(resp)
        .body()
        .ok_or_else(|| BlobError::Read(format!("blob {digest} came without a body")))?;
    let branches = source.tee();
    let (to_hash, to_store): (
        worker::web_sys::ReadableStream,
        worker::web_sys::ReadableStream,
    ) = (
        branches.get(0).unchecked_into(),
        branches.get(1).unchecked_into(),
    );
    let hasher = DigestStream::new(DigestStreamAlgorithm::Sha256);
    let hashed = wasm_bindgen_futures::JsFuture::from(to_hash.pipe_to(hasher.raw()));
    let fixed = worker::worker_sys::FixedLengthStream::new_big_int(js_sys::BigInt::from(len))
        .map_err(js)?;
    let piped = wasm_bindgen_futures::JsFuture::from(to_store.pipe_to(&fixed.writable()));
    let nonce = hex::encode(random::<8>().map_err(|e| BlobError::Internal(e.message))?);
    let key = store::blob_key(workspace_id, digest, &nonce);
    let put = bucket
        .put(&key, worker::Data::ReadableStream(fixed.readable()))
        .execute();
    let (stored, piped, hashed) = futures_util::join!(put, piped, hashed);
    let failed = stored
        .err()
        .map(|e| e.to_string())
        .or_else(|| piped.err().map(|e| js_text(&e)))
        .or_else(|| hashed.err().map(|e| js_text(&e)));
    if let Some(reason) = failed {
        let _ = bucket.delete(&key).await;
        return Err(BlobError::Read(format!(
            "storing blob {digest} failed: {reason}"
        )));
    }
    let actual = hex::encode(
        hasher
            .digest()
            .await
            .map_err(|e| BlobError::Internal(e.to_string()))?
            .to_vec(),
    );
    if actual != digest {
        let _ = bucket.delete(&key).await;
        return Err(BlobError::Mismatch(actual));
    }
    let kept = store::add_blob(env, workspace_id, digest, len, &key, now())
        .await
        .map_err(|e| BlobError::Internal(e.internal.unwrap_or(e.message)))?;
    if !kept {
        let _ = bucket.delete(&key).await;
    }
    Ok(kept)
}

/// Reads a stored snapshot's manifest.
pub async fn manifest(env: &Env, row: &store::SnapshotRow) -> Result<Manifest, String> {
    let object = env
        .bucket(BUCKET)
        .map_err(|e| e.to_string())?
        .get(store::manifest_key(&row.workspace_id, &row.id))
        .execute()
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("snapshot {}'s manifest is missing from storage", row.id))?;
    let bytes = object
        .body()
        .ok_or("the manifest is empty")?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("the manifest is unreadable: {e}"))
}

/// The blob keys of every file entry of `manifest` with content, in order.
fn content_keys(
    manifest: &Manifest,
    keys: &BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    let mut files = Vec::new();
    for e in &manifest.entries {
        if let (Kind::File, Some(d)) = (&e.kind, &e.sha256)
            && e.size > 0
        {
            let key = keys
                .get(d)
                .ok_or_else(|| format!("blob {d} of `{}` is missing from storage", e.path))?;
            files.push(key.clone());
        }
    }
    Ok(files)
}

fn js_text(e: &wasm_bindgen::JsValue) -> String {
    use wasm_bindgen::JsCast as _;
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|| format!("{e:?}"))
}

/// The restore request body: `head`, then every file's blob in manifest
/// order. The blobs are piped from R2 by the runtime (`pipeTo` into one
/// `TransformStream`), so their bytes never pass through this Worker's wasm
/// memory; a missing blob aborts the stream, which fails the restore.
fn restore_body(
    env: &Env,
    head: Vec<u8>,
    keys: Vec<String>,
) -> Result<worker::web_sys::ReadableStream, String> {
    let bucket = env.bucket(BUCKET).map_err(|e| e.to_string())?;
    let pipe = worker::web_sys::TransformStream::new().map_err(|e| js_text(&e))?;
    let readable = pipe.readable();
    let writable = pipe.writable();
    wasm_bindgen_futures::spawn_local(async move {
        let result: Result<(), String> = async {
            let writer = writable.get_writer().map_err(|e| js_text(&e))?;
            wasm_bindgen_futures::JsFuture::from(
                writer.write_with_chunk(&js_sys::Uint8Array::from(head.as_slice())),
            )
            .await
            .map_err(|e| js_text(&e))?;
            writer.release_lock();
            // `pipeTo(writable, { preventClose: true })`, one blob after another.
            let options = js_sys::Object::new();
            js_sys::Reflect::set(&options, &"preventClose".into(), &true.into())
                .map_err(|e| js_text(&e))?;
            // Each blob's lookup starts while the one before it streams.
            let get = |key: String| {
                let bucket = &bucket;
                async move {
                    let object = bucket
                        .get(&key)
                        .execute()
                        .await
                        .map_err(|e| e.to_string())?;
                    object
                        .ok_or_else(|| format!("blob {key} is missing"))
                        .map(|o| (key, o))
                }
            };
            let mut keys = keys.into_iter();
            let mut current = match keys.next() {
                Some(key) => Some(get(key).await?),
                None => None,
            };
            while let Some((key, object)) = current.take() {
                let following = keys.next();
                let (piped, next) =
                    futures_util::join!(pipe_blob(&key, &object, &writable, &options), async {
                        match following {
                            Some(k) => get(k).await.map(Some),
                            None => Ok(None),
                        }
                    });
                piped?;
                current = next?;
            }
            wasm_bindgen_futures::JsFuture::from(writable.close())
                .await
                .map_err(|e| js_text(&e))?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            worker::console_error!("restore body: {e}");
            let _ = writable.abort_with_reason(&wasm_bindgen::JsValue::from_str(&e));
        }
    });
    Ok(readable)
}

/// Pipes one R2 object's body into `writable` (left open for the next).
async fn pipe_blob(
    key: &str,
    object: &worker::Object,
    writable: &worker::web_sys::WritableStream,
    options: &js_sys::Object,
) -> Result<(), String> {
    use wasm_bindgen::JsCast as _;
    let body = object
        .body()
        .ok_or_else(|| format!("blob {key} has no body"))?
        .response_body()
        .map_err(|e| e.to_string())?;
    let worker::ResponseBody::Stream(stream) = body else {
        return Err(format!("blob {key} is not a stream"));
    };
    let pipe_to: js_sys::Function = js_sys::Reflect::get(&stream, &"pipeTo".into())
        .map_err(|e| js_text(&e))?
        .dyn_into()
        .map_err(|_| "ReadableStream.pipeTo is missing".to_owned())?;
    let promise: js_sys::Promise = pipe_to
        .call2(&stream, writable, options)
        .map_err(|e| js_text(&e))?
        .dyn_into()
        .map_err(|_| "pipeTo did not answer a promise".to_owned())?;
    wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map(drop)
        .map_err(|e| js_text(&e))
}

/// The distinct file digests of `manifest`, sorted.
fn digests_of(manifest: &Manifest) -> Vec<String> {
    manifest
        .entries
        .iter()
        .filter_map(|e| e.sha256.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The blob keys of every file of `manifest`, by digest.
pub async fn blob_keys(
    env: &Env,
    workspace_id: &str,
    manifest: &Manifest,
) -> Result<BTreeMap<String, String>, String> {
    let digests = digests_of(manifest);
    Ok(store::blobs(env, workspace_id, &digests)
        .await
        .map_err(|e| e.internal.unwrap_or(e.message))?
        .into_iter()
        .map(|b| (b.digest, b.object_key))
        .collect())
}

/// Restores `manifest` into the session's `allowed_roots` (all or nothing).
pub async fn restore(
    env: &Env,
    agent: &Agent<'_>,
    workspace_id: &str,
    manifest: &Manifest,
    allowed_roots: &[String],
) -> Result<Restored, String> {
    domain::validate(manifest, allowed_roots, &domain::Limits::default())
        .map_err(|e| format!("the snapshot cannot be restored here: {e}"))?;
    let keys = content_keys(manifest, &blob_keys(env, workspace_id, manifest).await?)?;
    let mut head = serde_json::to_vec(&serde_json::json!({
        "allowed_roots": allowed_roots,
        "manifest": manifest,
    }))
    .map_err(|e| e.to_string())?;
    head.push(b'\n');
    let body = restore_body(env, head, keys)?;
    let mut resp = agent
        .post(
            "/snapshot/restore",
            Some(body.into()),
            "application/octet-stream",
        )
        .await
        .map_err(|e| format!("the restore was refused: {e}"))?;
    resp.json()
        .await
        .map_err(|e| format!("the agent's restore answer is unreadable: {e}"))
}

/// Why an uploaded snapshot was refused.
pub enum IngestError {
    /// The content does not match the manifest (400).
    Invalid(String),
    /// More than the grant allows (413).
    TooLarge,
    /// Our side (500).
    Internal(String),
}

/// Stores an uploaded snapshot's content: after the manifest line, every
/// file's bytes in manifest order (the restore format). Each file is checked
/// against its digest; blobs the workspace lacks are stored, the others only
/// hashed. `limit` caps the content bytes.
pub async fn ingest<S: Stream<Item = worker::Result<Vec<u8>>> + Unpin>(
    env: &Env,
    row: &store::SnapshotRow,
    manifest: &Manifest,
    reader: &mut Reader<S>,
    limit: u64,
) -> Result<Completed, IngestError> {
    use sha2::Digest as _;
    let ise = |e: crate::error::ApiError| IngestError::Internal(e.internal.unwrap_or(e.message));
    let summary = domain::validate(manifest, &manifest.roots, &domain::Limits::default())
        .map_err(|e| IngestError::Invalid(e.to_string()))?;
    if summary.bytes > limit {
        return Err(IngestError::TooLarge);
    }
    let digests = digests_of(manifest);
    store::add_refs(env, &row.workspace_id, &row.id, &digests)
        .await
        .map_err(ise)?;
    let mut have: BTreeSet<String> = store::blobs(env, &row.workspace_id, &digests)
        .await
        .map_err(ise)?
        .into_iter()
        .map(|b| b.digest)
        .collect();
    let bucket = env
        .bucket(BUCKET)
        .map_err(|e| IngestError::Internal(e.to_string()))?;
    let (mut new_blobs, mut new_bytes) = (0_u64, 0_u64);
    for e in &manifest.entries {
        let (Kind::File, Some(digest)) = (&e.kind, &e.sha256) else {
            continue;
        };
        let mismatch = |actual: &str| {
            IngestError::Invalid(format!(
                "the content of `{}` does not match its sha256 (expected {digest}, got {actual})",
                e.path
            ))
        };
        if have.contains(digest) {
            let mut hasher = sha2::Sha256::new();
            let mut body = reader.body(e.size);
            let mut got = 0_u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| IngestError::Invalid(e.to_string()))?;
                got += chunk.len() as u64;
                hasher.update(&chunk);
            }
            let actual = hex::encode(hasher.finalize());
            if actual != *digest || got != e.size {
                return Err(mismatch(&actual));
            }
            continue;
        }
        let kept = store_blob(
            env,
            &bucket,
            &row.workspace_id,
            digest,
            e.size,
            reader.body(e.size),
        )
        .await
        .map_err(|err| match err {
            BlobError::Mismatch(actual) => mismatch(&actual),
            BlobError::Read(r) => IngestError::Invalid(r),
            BlobError::Internal(m) => IngestError::Internal(m),
        })?;
        if kept {
            new_blobs += 1;
            new_bytes += e.size;
        }
        have.insert(digest.clone());
    }
    if !reader.at_end().await.map_err(IngestError::Invalid)? {
        return Err(IngestError::Invalid(
            "the upload goes on after the last file of the manifest".into(),
        ));
    }
    bucket
        .put(
            store::manifest_key(&row.workspace_id, &row.id),
            serde_json::to_vec(manifest).map_err(|e| IngestError::Internal(e.to_string()))?,
        )
        .execute()
        .await
        .map_err(|e| IngestError::Internal(e.to_string()))?;
    Ok(Completed {
        files: summary.files,
        bytes: summary.bytes,
        new_blobs,
        new_bytes,
        skipped_json: serde_json::to_string(&manifest.skipped)
            .map_err(|e| IngestError::Internal(e.to_string()))?,
    })
}

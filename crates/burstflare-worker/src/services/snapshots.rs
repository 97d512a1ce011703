//! Snapshots of a session's persisted paths: take one now, list, get,
//! delete, restore (now or at the next start). The session's
//! `SessionCoordinator` does the work that touches the container
//! (`durable::snapshot_io`); this module checks access and reads D1.
//!
//! Access follows the session's: whoever may see the session sees its
//! snapshots; taking, restoring and deleting them is operating it.

use burstflare_api::ErrorCode;
use burstflare_api::snapshots::{RestoreRequest, RestoreResult, Snapshot};
use burstflare_domain::SnapshotId;
use worker::Method;

use super::parse_id;
use super::sessions::accessible;
use crate::auth::Caller;
use crate::durable::session_coordinator::{self as coordinator, RestoreCall, SnapshotCall};
use crate::durable::snapshot_io::Restored;
use crate::error::{ApiError, ApiResult};
use crate::platform::BUCKET;
use crate::routes::Ctx;
use crate::store::snapshots::{self as store, SnapshotRow};

fn to_api(r: &SnapshotRow) -> ApiResult<Snapshot> {
    let corrupt = |what: &str| ApiError::internal(format!("snapshot {}: bad {what}", r.id));
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(Snapshot {
        id: r.id.parse().map_err(|_| corrupt("id"))?,
        workspace_id: r
            .workspace_id
            .parse()
            .map_err(|_| corrupt("workspace id"))?,
        session_id: r.session_id.parse().map_err(|_| corrupt("session id"))?,
        session_name: r.session_name.clone(),
        kind: r.kind.clone(),
        state: r.state.clone(),
        roots: serde_json::from_str(&r.roots_json)?,
        files: n(r.files),
        bytes: n(r.bytes),
        new_blobs: n(r.new_blobs),
        new_bytes: n(r.new_bytes),
        skipped: serde_json::from_str(&r.skipped_json)?,
        error: r.error.clone(),
        created_by: r.created_by.clone(),
        created_at: burstflare_api::timestamp(r.created_at),
        completed_at: r.completed_at.map(burstflare_api::timestamp),
    })
}

/// The snapshot `raw` of the session `session_id` (404 otherwise).
async fn snapshot_of(ctx: &Ctx, session_id: &str, raw: &str) -> ApiResult<SnapshotRow> {
    let id: SnapshotId = parse_id(raw, "snapshot_id")?;
    ctx.note_target("snapshot", id.as_str());
    store::find(&ctx.env, id.as_str())
        .await?
        .filter(|r| r.session_id == session_id)
        .ok_or_else(|| ApiError::not_found(ErrorCode::SnapshotNotFound, "snapshot", id.as_str()))
}

pub async fn list(ctx: &Ctx, caller: &Caller, session: &str) -> ApiResult<Vec<Snapshot>> {
    let rec = accessible(ctx, caller, session, false).await?;
    store::of_session(&ctx.env, &rec.id)
        .await?
        .iter()
        .map(to_api)
        .collect()
}

pub async fn get(ctx: &Ctx, caller: &Caller, session: &str, id: &str) -> ApiResult<Snapshot> {
    let rec = accessible(ctx, caller, session, false).await?;
    to_api(&snapshot_of(ctx, &rec.id, id).await?)
}

/// `POST /sessions/{id}/snapshots`: a snapshot of the running session, now.
pub async fn create(ctx: &Ctx, caller: &Caller, session: &str) -> ApiResult<Snapshot> {
    let rec = accessible(ctx, caller, session, true).await?;
    let row: SnapshotRow = coordinator::call(
        &ctx.env,
        &rec.id,
        Method::Post,
        "/snapshot",
        Some(&SnapshotCall {
            actor: caller.user.id.clone(),
        }),
    )
    .await?;
    ctx.note_target("snapshot", &row.id);
    to_api(&row)
}

/// Deletes every snapshot of a session (a deleted session whose workspace
/// does not keep them) with the blobs nothing else needs.
pub async fn purge_session(env: &worker::Env, session_id: &str) -> ApiResult<()> {
    let bucket = env.bucket(BUCKET)?;
    for row in store::of_session(env, session_id).await? {
        remove(env, &bucket, &row).await?;
    }
    Ok(())
}

/// Deletes a snapshot row, its manifest and the blobs only it needed.
async fn remove(env: &worker::Env, bucket: &worker::Bucket, row: &SnapshotRow) -> ApiResult<()> {
    for blob in store::delete(env, row).await? {
        bucket.delete(&blob.object_key).await?;
    }
    bucket
        .delete(store::manifest_key(&row.workspace_id, &row.id))
        .await?;
    Ok(())
}

/// Deletes the snapshot and every blob no other snapshot of the workspace needs.
pub async fn delete(ctx: &Ctx, caller: &Caller, session: &str, id: &str) -> ApiResult<Snapshot> {
    let rec = accessible(ctx, caller, session, true).await?;
    let row = snapshot_of(ctx, &rec.id, id).await?;
    if row.state == "pending" {
        return Err(ApiError::new(
            409,
            ErrorCode::InvalidSnapshotState,
            format!("snapshot {} is still being taken", row.id),
        )
        .with_details(serde_json::json!({ "state": row.state })));
    }
    remove(&ctx.env, &ctx.env.bucket(BUCKET)?, &row).await?;
    to_api(&row)
}

/// `GET /workspaces/{id}/snapshots`: every snapshot of the workspace for
/// those who see every session (admins and owners, or everyone when sessions
/// are shared), else those of the caller's own sessions — deleted sessions'
/// included, which is where kept snapshots are found.
pub async fn list_workspace(
    ctx: &Ctx,
    caller: &Caller,
    m: &super::workspaces::Membership,
) -> ApiResult<Vec<Snapshot>> {
    let all = m
        .allow(burstflare_domain::policy::Action::ViewSession { own: false })
        .is_ok();
    let owner = (!all).then_some(caller.user.id.as_str());
    store::of_workspace(&ctx.env, m.id(), owner)
        .await?
        .iter()
        .map(to_api)
        .collect()
}

/// `POST /sessions/{id}/restore`, for the session `rec` the caller may
/// operate. The snapshot is the session's, or one of another session of the
/// workspace (a deleted one's kept snapshots too) whose snapshots the caller
/// may see: their own sessions', or every session's for admins and owners.
pub async fn restore(
    ctx: &Ctx,
    caller: &Caller,
    rec: &crate::store::sessions::SessionRecord,
    req: RestoreRequest,
) -> ApiResult<RestoreResult> {
    let id = req.snapshot_id.as_str();
    let not_found = || ApiError::not_found(ErrorCode::SnapshotNotFound, "snapshot", id);
    ctx.note_target("snapshot", id);
    let row = store::find(&ctx.env, id)
        .await?
        .filter(|r| r.workspace_id == rec.workspace_id)
        .ok_or_else(not_found)?;
    if row.session_id != rec.id {
        let m = super::workspaces::member_of(ctx, caller, &rec.workspace_id).await?;
        let origin_owner = crate::store::sessions::owner_of(&ctx.env, &row.session_id).await?;
        let own = origin_owner.as_deref() == Some(caller.user.id.as_str());
        m.allow(burstflare_domain::policy::Action::ViewSession { own })
            .map_err(|_| not_found())?;
    }
    let done: Restored = coordinator::call(
        &ctx.env,
        &rec.id,
        Method::Post,
        "/restore",
        Some(&RestoreCall {
            snapshot_id: row.id.clone(),
            when: req.when,
        }),
    )
    .await?;
    Ok(RestoreResult {
        snapshot_id: req.snapshot_id,
        when: req.when,
        files: done.files,
        dirs: done.dirs,
        symlinks: done.symlinks,
        bytes: done.bytes,
    })
}

/// How long a snapshot upload grant is valid.
const UPLOAD_GRANT_SECS: i64 = 15 * 60;
/// Default cap of an uploaded snapshot's content (`MAX_SNAPSHOT_UPLOAD_BYTES`).
const MAX_UPLOAD_BYTES: u64 = 4 << 30;
/// The manifest line of an upload may be this long.
const MAX_MANIFEST_BYTES: usize = 64 << 20;

fn max_upload_bytes(ctx: &Ctx) -> u64 {
    crate::platform::var(&ctx.env, "MAX_SNAPSHOT_UPLOAD_BYTES", "")
        .parse()
        .unwrap_or(MAX_UPLOAD_BYTES)
}

/// `POST /sessions/{id}/snapshots/uploads`: a grant to upload a snapshot of
/// the session (to seed it), bound to the session and the caller.
pub async fn upload_grant(
    ctx: &Ctx,
    caller: &Caller,
    session: &str,
) -> ApiResult<burstflare_api::templates::UploadGrant> {
    let rec = accessible(ctx, caller, session, true).await?;
    super::uploads::issue(
        ctx,
        "snapshot",
        &format!("{}:{}", rec.id, caller.user.id),
        max_upload_bytes(ctx),
        UPLOAD_GRANT_SECS,
        "snapshot",
    )
}

fn invalid_snapshot(message: String) -> ApiError {
    ApiError::new(400, ErrorCode::InvalidSnapshot, message)
}

/// `PUT /uploads/snapshot?grant=…`: a JSON manifest line, then every file's
/// content in manifest order. Checked against the session's persisted paths
/// and every digest; stored as a `ready` snapshot of kind `upload`, or
/// nothing is kept.
pub async fn upload(
    ctx: &Ctx,
    req: &mut worker::Request,
    raw_grant: Option<&str>,
) -> ApiResult<Snapshot> {
    use crate::durable::snapshot_io::{self, IngestError, Reader};
    let g = super::uploads::verify(ctx, raw_grant, "snapshot", "a snapshot upload")?;
    let (session_id, user_id) = g
        .target
        .split_once(':')
        .ok_or_else(|| super::uploads::invalid("this grant has no session"))?;
    let rec = crate::store::sessions::find_live(&ctx.env, session_id)
        .await?
        .ok_or_else(|| super::uploads::invalid("the grant's session no longer exists"))?;
    ctx.note_workspace(&rec.workspace_id);
    ctx.note_target("session", &rec.id);
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > g.max_bytes.saturating_add(MAX_MANIFEST_BYTES as u64)) {
        return Err(super::uploads::too_large("snapshot", g.max_bytes));
    }
    let mut reader = Reader::new(req.stream()?);
    let line = reader
        .line(MAX_MANIFEST_BYTES)
        .await
        .map_err(invalid_snapshot)?;
    let manifest: burstflare_domain::snapshot::Manifest = serde_json::from_slice(&line)
        .map_err(|e| invalid_snapshot(format!("the manifest line is not a manifest: {e}")))?;
    burstflare_domain::snapshot::validate(
        &manifest,
        &rec.spec.persisted_paths,
        &burstflare_domain::snapshot::Limits::default(),
    )
    .map_err(|e| {
        invalid_snapshot(format!(
            "the snapshot cannot be stored for this session: {e}"
        ))
    })?;
    let id = super::new_id(SnapshotId::from_random)?;
    ctx.note_target("snapshot", id.as_str());
    let row = SnapshotRow {
        id: id.to_string(),
        workspace_id: rec.workspace_id.clone(),
        session_id: rec.id.clone(),
        session_name: rec.name.clone(),
        kind: "upload".into(),
        state: "pending".into(),
        roots_json: serde_json::to_string(&manifest.roots)?,
        files: 0,
        bytes: 0,
        new_blobs: 0,
        new_bytes: 0,
        skipped_json: "[]".into(),
        error: None,
        created_by: user_id.to_owned(),
        created_at: ctx.now,
        completed_at: None,
    };
    store::insert(&ctx.env, &row).await?;
    match snapshot_io::ingest(&ctx.env, &row, &manifest, &mut reader, g.max_bytes).await {
        Ok(done) => {
            store::complete(&ctx.env, &row.id, &done, crate::platform::now()).await?;
            to_api(
                &store::find(&ctx.env, &row.id)
                    .await?
                    .ok_or_else(|| ApiError::internal("the snapshot vanished"))?,
            )
        }
        Err(e) => {
            let (err, reason) = match e {
                IngestError::Invalid(m) => (invalid_snapshot(m.clone()), m),
                IngestError::TooLarge => (
                    super::uploads::too_large("snapshot", g.max_bytes),
                    "too large".into(),
                ),
                IngestError::Internal(m) => (ApiError::internal(m.clone()), m),
            };
            discard(&ctx.env, &row, &reason).await?;
            Err(err)
        }
    }
}

/// Marks `row` failed and deletes what it stored that nothing else needs.
pub async fn discard(env: &worker::Env, row: &SnapshotRow, reason: &str) -> ApiResult<()> {
    let digests = store::ref_digests(env, &row.id).await?;
    store::fail(env, &row.id, reason, crate::platform::now()).await?;
    let bucket = env.bucket(BUCKET)?;
    for blob in store::collect(env, &row.workspace_id, &digests).await? {
        bucket.delete(&blob.object_key).await?;
    }
    Ok(())
}

/// `GET …/snapshots/{id}/download`: the snapshot as a tar archive (paths
/// relative to `/`: `home/dev/…`), streamed from its blobs.
pub async fn download(
    ctx: &Ctx,
    caller: &Caller,
    session: &str,
    id: &str,
) -> ApiResult<worker::Response> {
    use burstflare_domain::snapshot::Kind;
    use burstflare_domain::tarball::{self, EntryType};
    use futures_util::StreamExt;
    let rec = accessible(ctx, caller, session, false).await?;
    let row = snapshot_of(ctx, &rec.id, id).await?;
    if row.state != "ready" {
        return Err(ApiError::new(
            409,
            ErrorCode::InvalidSnapshotState,
            format!(
                "snapshot {} is {}; only a ready snapshot downloads",
                row.id, row.state
            ),
        )
        .with_details(serde_json::json!({ "state": row.state })));
    }
    let manifest = crate::durable::snapshot_io::manifest(&ctx.env, &row)
        .await
        .map_err(ApiError::internal)?;
    let keys = crate::durable::snapshot_io::blob_keys(&ctx.env, &row.workspace_id, &manifest)
        .await
        .map_err(ApiError::internal)?;
    let bucket = ctx.env.bucket(BUCKET)?;
    // One piece per header, file and padding, fetched as the stream is read.
    enum Piece {
        Bytes(Vec<u8>),
        Blob(String),
    }
    let mut pieces = Vec::new();
    for root in &manifest.roots {
        let name = root.trim_start_matches('/');
        pieces.push(Piece::Bytes(tarball::header(
            name,
            EntryType::Dir,
            0o755,
            0,
            0,
            "",
        )));
    }
    for e in &manifest.entries {
        let root = manifest
            .roots
            .get(e.root as usize)
            .ok_or_else(|| ApiError::internal("manifest entry without a root"))?;
        let path = format!("{}/{}", root.trim_start_matches('/'), e.path);
        let (kind, size, target) = match e.kind {
            Kind::Dir => (EntryType::Dir, 0, ""),
            Kind::File => (EntryType::File, e.size, ""),
            Kind::Symlink => (EntryType::Symlink, 0, e.target.as_deref().unwrap_or("")),
        };
        pieces.push(Piece::Bytes(tarball::header(
            &path, kind, e.mode, e.mtime, size, target,
        )));
        if kind == EntryType::File && size > 0 {
            let digest = e.sha256.as_deref().unwrap_or("");
            let key = keys
                .get(digest)
                .ok_or_else(|| ApiError::internal(format!("blob {digest} is missing")))?;
            pieces.push(Piece::Blob(key.clone()));
            pieces.push(Piece::Bytes(tarball::padding(size)));
        }
    }
    pieces.push(Piece::Bytes(tarball::END.to_vec()));
    let stream = futures_util::stream::iter(pieces)
        .then(move |piece| {
            let bucket = bucket.clone();
            async move {
                match piece {
                    Piece::Bytes(b) => {
                        Ok(futures_util::stream::once(async move { Ok(b) }).boxed_local())
                    }
                    Piece::Blob(key) => {
                        let object = bucket.get(&key).execute().await?.ok_or_else(|| {
                            worker::Error::RustError(format!("blob {key} is missing"))
                        })?;
                        let body = object.body().ok_or_else(|| {
                            worker::Error::RustError(format!("blob {key} has no body"))
                        })?;
                        Ok(body.stream()?.boxed_local())
                    }
                }
            }
        })
        .map(|s: worker::Result<_>| match s {
            Ok(s) => s,
            Err(e) => futures_util::stream::once(async move { Err(e) }).boxed_local(),
        })
        .flatten();
    let headers = worker::Headers::new();
    headers.set("content-type", "application/x-tar")?;
    headers.set(
        "content-disposition",
        &format!(
            "attachment; filename=\"{}-{}.tar\"",
            row.session_name, row.id
        ),
    )?;
    Ok(worker::Response::from_stream(stream)?.with_headers(headers))
}

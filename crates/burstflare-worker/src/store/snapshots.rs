//! `snapshots`, `snapshot_blobs` and `snapshot_refs`; the R2 keys of
//! manifests and blobs.
//!
//! **Reference safety.** A snapshot writes a `snapshot_refs` row for every
//! digest it needs *before* it looks up which blobs exist, and a blob row is
//! deleted only by a statement that checks, in the same statement, that no
//! ref names it. SQLite runs statements one at a time, so either the delete
//! sees the new ref and keeps the blob, or it ran first and the snapshot's
//! lookup no longer finds the blob and stores it again — under a new key
//! (blob keys carry a nonce), so the R2 delete that follows the row delete
//! can never remove the new copy.

use serde::{Deserialize, Serialize};
use worker::Env;

use super::d1::{self, int, text};
use crate::error::ApiResult;

/// Digests per `IN (…)` list (D1 allows 100 bound parameters).
const CHUNK: usize = 90;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRow {
    pub id: String,
    pub workspace_id: String,
    pub session_id: String,
    pub session_name: String,
    pub kind: String,
    pub state: String,
    pub roots_json: String,
    pub files: i64,
    pub bytes: i64,
    pub new_blobs: i64,
    pub new_bytes: i64,
    pub skipped_json: String,
    pub error: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub completed_at: Option<i64>,
}

const COLUMNS: &str = "id, workspace_id, session_id, session_name, kind, state, roots_json, files, \
     bytes, new_blobs, new_bytes, skipped_json, error, created_by, created_at, completed_at";

/// R2 key of a snapshot's manifest.
pub fn manifest_key(workspace_id: &str, snapshot_id: &str) -> String {
    format!("workspaces/{workspace_id}/snapshots/{snapshot_id}/manifest.json")
}

/// R2 key of a new copy of a blob (`nonce` makes every copy distinct).
pub fn blob_key(workspace_id: &str, digest: &str, nonce: &str) -> String {
    format!(
        "workspaces/{workspace_id}/blobs/{}/{digest}.{nonce}",
        &digest[..2.min(digest.len())]
    )
}

/// A new `pending` snapshot.
pub async fn insert(env: &Env, r: &SnapshotRow) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "INSERT INTO snapshots (id, workspace_id, session_id, session_name, kind, state, roots_json, \
         skipped_json, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        &[
            text(&r.id),
            text(&r.workspace_id),
            text(&r.session_id),
            text(&r.session_name),
            text(&r.kind),
            text(&r.state),
            text(&r.roots_json),
            text(&r.skipped_json),
            text(&r.created_by),
            int(r.created_at),
        ],
    )
    .await?;
    Ok(())
}

/// Records the digests `snapshot_id` needs (idempotent).
pub async fn add_refs(
    env: &Env,
    workspace_id: &str,
    snapshot_id: &str,
    digests: &[String],
) -> ApiResult<()> {
    let db = d1::db(env)?;
    // Three parameters a row; 30 rows a statement, many statements a batch.
    let mut stmts = Vec::new();
    for chunk in digests.chunks(30) {
        let mut sql = String::from(
            "INSERT OR IGNORE INTO snapshot_refs (snapshot_id, workspace_id, digest) VALUES ",
        );
        let mut args = Vec::with_capacity(chunk.len() * 3);
        for (i, d) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            let n = i * 3;
            sql.push_str(&format!("(?{}, ?{}, ?{})", n + 1, n + 2, n + 3));
            args.extend([text(snapshot_id), text(workspace_id), text(d)]);
        }
        stmts.push(d1::stmt(&db, &sql, &args)?);
        if stmts.len() == 50 {
            db.batch(std::mem::take(&mut stmts))
                .await
                .map_err(|e| d1::failed("INSERT snapshot_refs", e))?;
        }
    }
    if !stmts.is_empty() {
        db.batch(stmts)
            .await
            .map_err(|e| d1::failed("INSERT snapshot_refs", e))?;
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
pub struct BlobRow {
    pub digest: String,
    pub object_key: String,
}

/// The stored blobs among `digests`.
pub async fn blobs(env: &Env, workspace_id: &str, digests: &[String]) -> ApiResult<Vec<BlobRow>> {
    let db = d1::db(env)?;
    let mut out = Vec::new();
    for chunk in digests.chunks(CHUNK) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("?{}", i + 2)).collect();
        let sql = format!(
            "SELECT digest, object_key FROM snapshot_blobs WHERE workspace_id = ?1 AND digest IN ({})",
            marks.join(", ")
        );
        let mut args = vec![text(workspace_id)];
        args.extend(chunk.iter().map(|d| text(d)));
        out.extend(d1::all::<BlobRow>(&db, &sql, &args).await?);
    }
    Ok(out)
}

/// Records a stored blob; false when another copy was recorded first (the
/// caller deletes its own copy).
pub async fn add_blob(
    env: &Env,
    workspace_id: &str,
    digest: &str,
    size: u64,
    key: &str,
    now: i64,
) -> ApiResult<bool> {
    let db = d1::db(env)?;
    let changed = d1::execute(
        &db,
        "INSERT OR IGNORE INTO snapshot_blobs (workspace_id, digest, size, object_key, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        &[
            text(workspace_id),
            text(digest),
            int(i64::try_from(size).unwrap_or(i64::MAX)),
            text(key),
            int(now),
        ],
    )
    .await?;
    Ok(changed == 1)
}

/// The counts a finished snapshot records.
pub struct Completed {
    pub files: u64,
    pub bytes: u64,
    pub new_blobs: u64,
    pub new_bytes: u64,
    pub skipped_json: String,
}

pub async fn complete(env: &Env, id: &str, c: &Completed, now: i64) -> ApiResult<()> {
    let db = d1::db(env)?;
    let n = |v: u64| int(i64::try_from(v).unwrap_or(i64::MAX));
    d1::execute(
        &db,
        "UPDATE snapshots SET state = 'ready', files = ?2, bytes = ?3, new_blobs = ?4, new_bytes = ?5, \
         skipped_json = ?6, completed_at = ?7 WHERE id = ?1 AND state = 'pending'",
        &[
            text(id),
            n(c.files),
            n(c.bytes),
            n(c.new_blobs),
            n(c.new_bytes),
            text(&c.skipped_json),
            int(now),
        ],
    )
    .await?;
    Ok(())
}

/// Marks a pending snapshot failed and drops its refs (its blobs become
/// collectable unless another snapshot needs them).
pub async fn fail(env: &Env, id: &str, error: &str, now: i64) -> ApiResult<()> {
    let db = d1::db(env)?;
    d1::execute(
        &db,
        "UPDATE snapshots SET state = 'failed', error = ?2, completed_at = ?3 WHERE id = ?1 AND state = 'pending'",
        &[text(id), text(error), int(now)],
    )
    .await?;
    d1::execute(
        &db,
        "DELETE FROM snapshot_refs WHERE snapshot_id = ?1",
        &[text(id)],
    )
    .await?;
    Ok(())
}

pub async fn find(env: &Env, id: &str) -> ApiResult<Option<SnapshotRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!("SELECT {COLUMNS} FROM snapshots WHERE id = ?1"),
        &[text(id)],
    )
    .await
}

/// A session's snapshots, newest first.
pub async fn of_session(env: &Env, session_id: &str) -> ApiResult<Vec<SnapshotRow>> {
    let db = d1::db(env)?;
    d1::all(
        &db,
        &format!(
            "SELECT {COLUMNS} FROM snapshots WHERE session_id = ?1 ORDER BY created_at DESC, id DESC LIMIT 500"
        ),
        &[text(session_id)],
    )
    .await
}

/// A workspace's snapshots, newest first: all of them, or with `owner`
/// those of the sessions (live or deleted) that user owns.
pub async fn of_workspace(
    env: &Env,
    workspace_id: &str,
    owner: Option<&str>,
) -> ApiResult<Vec<SnapshotRow>> {
    let db = d1::db(env)?;
    let columns: String = COLUMNS
        .split(", ")
        .map(|c| format!("n.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    d1::all(
        &db,
        &format!(
            "SELECT {columns} FROM snapshots n LEFT JOIN sessions s ON s.id = n.session_id \
             WHERE n.workspace_id = ?1 AND (?2 IS NULL OR s.owner_id = ?2) \
             ORDER BY n.created_at DESC, n.id DESC LIMIT 500"
        ),
        &[text(workspace_id), super::d1::opt_text(owner)],
    )
    .await
}

/// The session's newest `ready` snapshot.
pub async fn latest_ready(env: &Env, session_id: &str) -> ApiResult<Option<SnapshotRow>> {
    let db = d1::db(env)?;
    d1::first(
        &db,
        &format!(
            "SELECT {COLUMNS} FROM snapshots WHERE session_id = ?1 AND state = 'ready' \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ),
        &[text(session_id)],
    )
    .await
}

/// Deletes a snapshot's row and refs; returns the blobs no snapshot needs
/// any more, already removed from `snapshot_blobs` (the caller deletes their
/// objects).
pub async fn delete(env: &Env, row: &SnapshotRow) -> ApiResult<Vec<BlobRow>> {
    let db = d1::db(env)?;
    let digests = ref_digests(env, &row.id).await?;
    d1::execute(
        &db,
        "DELETE FROM snapshot_refs WHERE snapshot_id = ?1",
        &[text(&row.id)],
    )
    .await?;
    d1::execute(&db, "DELETE FROM snapshots WHERE id = ?1", &[text(&row.id)]).await?;
    collect(env, &row.workspace_id, &digests).await
}

#[derive(Deserialize)]
struct Digest {
    digest: String,
}

/// The digests a snapshot names.
pub async fn ref_digests(env: &Env, snapshot_id: &str) -> ApiResult<Vec<String>> {
    let db = d1::db(env)?;
    Ok(d1::all::<Digest>(
        &db,
        "SELECT digest FROM snapshot_refs WHERE snapshot_id = ?1",
        &[text(snapshot_id)],
    )
    .await?
    .into_iter()
    .map(|d| d.digest)
    .collect())
}

/// Removes the rows of those `digests` no ref names; returns them.
pub async fn collect(env: &Env, workspace_id: &str, digests: &[String]) -> ApiResult<Vec<BlobRow>> {
    let db = d1::db(env)?;
    let mut gone = Vec::new();
    for chunk in digests.chunks(CHUNK) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("?{}", i + 2)).collect();
        let sql = format!(
            "DELETE FROM snapshot_blobs WHERE workspace_id = ?1 AND digest IN ({}) \
             AND NOT EXISTS (SELECT 1 FROM snapshot_refs r WHERE r.workspace_id = ?1 \
             AND r.digest = snapshot_blobs.digest) RETURNING digest, object_key",
            marks.join(", ")
        );
        let mut args = vec![text(workspace_id)];
        args.extend(chunk.iter().map(|d| text(d)));
        gone.extend(d1::all::<BlobRow>(&db, &sql, &args).await?);
    }
    Ok(gone)
}

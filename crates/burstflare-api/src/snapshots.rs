//! Snapshots of a session's persisted paths (`docs/persistence.md`).

use burstflare_domain::snapshot::Skipped;
use burstflare_domain::{SessionId, SnapshotId, WorkspaceId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A snapshot: a manifest of the persisted paths plus the blobs it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: SnapshotId,
    pub workspace_id: WorkspaceId,
    pub session_id: SessionId,
    pub session_name: String,
    /// `manual`, `sleep`, `stop`, `restart`, `upload` or `drain`.
    pub kind: String,
    /// `pending`, `ready` or `failed`.
    pub state: String,
    /// The persisted paths it covers.
    pub roots: Vec<String>,
    pub files: u64,
    /// Content bytes of all its files.
    pub bytes: u64,
    /// Blobs (and their bytes) this snapshot had to store: the rest were
    /// already stored by earlier snapshots of the workspace.
    pub new_blobs: u64,
    pub new_bytes: u64,
    /// Entries that could not be kept (sockets, devices, symlinks pointing
    /// outside the persisted paths), with the reason.
    pub skipped: Vec<Skipped>,
    pub error: Option<String>,
    /// `usr_…`, or `system` for automatic snapshots.
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
}

/// When a restore happens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreWhen {
    /// Into the running session, now.
    #[default]
    Now,
    /// At the session's next start (or wake) instead of its newest snapshot.
    NextStart,
}

/// `POST /sessions/{id}/restore`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub snapshot_id: SnapshotId,
    #[serde(default)]
    pub when: RestoreWhen,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreResult {
    pub snapshot_id: SnapshotId,
    pub when: RestoreWhen,
    /// Files, directories and symlinks written, and content bytes (zero for
    /// `next_start`, which only records the choice).
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

//! Persisted-path snapshots, the agent's side: [`scan`] the session's
//! persisted paths into a manifest and an index of their contents, stream the
//! contents the control plane asks for ([`blobs::write`]), and [`restore`] a
//! snapshot atomically. No HTTP here: the server wires the endpoints.
//!
//! A snapshot is a [`Manifest`] (JSON; the format and its rules are documented
//! in [`burstflare_domain::snapshot`]) plus *blobs*: file contents addressed by
//! the lowercase hex SHA-256 of the content. Files with the same content share
//! one blob; the control plane stores each blob once and asks only for the
//! ones it does not have.
//!
//! # Blob stream (agent → control plane)
//!
//! What [`blobs::write`] produces for a list of requested digests: for each
//! digest, in the order requested, one frame:
//!
//! ```text
//! +----------------------------+-------------------------+------------------+
//! | digest: 64 bytes, ASCII    | length: u64, big-endian | length bytes of  |
//! | lowercase hex SHA-256      | (8 bytes)               | content          |
//! +----------------------------+-------------------------+------------------+
//! ```
//!
//! Frames follow each other with nothing in between; the stream ends after
//! the last frame (no trailer). A receiver must check every frame's content
//! against its digest ([`blobs::Reader`] does) and treat a stream that ends
//! mid-frame as failed: when a file changes while it is streamed,
//! [`blobs::write`] fails after writing part of a frame.
//!
//! # Content stream (control plane → agent)
//!
//! What [`restore`] reads: for each `file` entry of the manifest, in manifest
//! order, exactly `size` bytes of its content, concatenated, no framing; then
//! end of stream. A file that appears twice in the manifest (same digest) is
//! sent twice. A short stream, trailing bytes, or content that does not match
//! an entry's `sha256` fail the restore, which then changes nothing.
//!
//! # Hash cache file
//!
//! [`HashCache`] keeps the digests of unchanged files between scans, keyed by
//! `(st_dev, st_ino, size, mtime in ns, ctime in ns)`. On disk, text:
//!
//! ```text
//! burstflare-snapshot-hashcache 1
//! <dev> <ino> <size> <mtime_ns> <ctime_ns> <sha256 hex>
//! ...
//! ```
//!
//! A missing or malformed file reads as an empty cache.
//!
//! # Restore
//!
//! [`restore`] validates the manifest first, then builds each root in a
//! staging directory next to it (`{parent}/.{name}.bf-restore-{random}`),
//! verifying every file's content as it is written, and only when everything
//! is in place swaps each staging directory with its root (the old root goes
//! to `{parent}/.{name}.bf-old-{random}` and is deleted afterwards). Any
//! failure before the swap removes the staging directories and leaves the
//! roots as they were; a failure during the swap puts back the roots already
//! swapped. Every entry gets the session user as owner; setuid and setgid bits
//! are dropped. A root missing from the manifest is left alone.
//!
//! Swapping renames the root, so a root must be a directory on the same
//! filesystem as its parent, with nothing mounted inside it: a mount point (a
//! volume) or a root with a mount inside is refused before anything changes.
//! On overlayfs without `redirect_dir` (Docker's default), a directory that
//! comes from an image layer — `/home/dev` — cannot be renamed (`EXDEV`); for
//! such a root the swap replaces what is inside it instead: its entries move
//! to the `old` directory (those that cannot move either, directories from
//! the image, are deleted), the staged entries move in, and the root takes
//! the staged root's mode and owner. The staged tree is complete and checked
//! before this starts; a failure midway moves the entries back, except the
//! deleted image directories. The
//! temporary trees are removed without following symlinks or entering other
//! filesystems. Nothing is fsynced: a session container does not outlive a
//! host crash.
//!
//! # Not carried by a snapshot
//!
//! * owners (every restored entry belongs to the session user), setuid and
//!   setgid bits, sub-second mtimes, access times;
//! * the root directory's own mode, owner and mtime (a restore keeps the
//!   existing root's mode and owner);
//! * hard links (each name becomes its own copy), holes (sparse files become
//!   dense), extended attributes and ACLs;
//! * sockets, FIFOs, devices, other filesystems, escaping symlinks, names that
//!   are not UTF-8 (all listed in [`Manifest::skipped`]).

pub mod blobs;
mod hashcache;
mod restore;
mod scan;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

pub use burstflare_domain::snapshot::{
    Entry, FORMAT, Kind, Limits, Manifest, Skipped, Summary, validate,
};
pub use hashcache::{HashCache, RACY_WINDOW};
pub use restore::{RestoreOptions, RestoreSummary, restore};
pub use scan::{BlobIndex, BlobSource, Scan, scan, scan_with_limits};

/// Read, hash and copy buffer size: files are streamed, never read whole.
const BUF_SIZE: usize = 64 * 1024;

/// Why a scan, a blob stream or a restore failed. [`is_invalid_input`]
/// separates what the caller sent wrong (HTTP 400) from trouble on the
/// agent's side (500).
///
/// [`is_invalid_input`]: SnapshotError::is_invalid_input
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The manifest breaks a rule of [`burstflare_domain::snapshot`].
    #[error("invalid snapshot manifest: {0}")]
    Manifest(#[from] burstflare_domain::snapshot::SnapshotError),
    /// A root given to [`scan`] is not a normalised absolute UTF-8 path.
    #[error("persisted path `{root}`: {reason}")]
    InvalidRoot { root: String, reason: &'static str },
    /// Restored content does not match the entry's `sha256`.
    #[error(
        "file `{}` of {root}: the content does not match its sha256 (expected {expected}, got {actual})",
        .path.escape_debug()
    )]
    DigestMismatch {
        root: String,
        path: String,
        expected: String,
        actual: String,
    },
    /// The content stream ended inside a file.
    #[error(
        "file `{}` of {root}: the content stream ends after {got} of its {size} bytes",
        .path.escape_debug()
    )]
    ShortContent {
        root: String,
        path: String,
        got: u64,
        size: u64,
    },
    /// The content stream goes on after the last file.
    #[error("the content stream has bytes after the last file of the manifest")]
    TrailingContent,
    /// [`blobs::write`] was asked for a digest the scan did not index.
    #[error("blob `{}` is not part of this snapshot", .digest.escape_debug())]
    UnknownDigest { digest: String },
    /// The blob stream is malformed (bad header, truncated frame).
    #[error("blob stream: {reason}")]
    BadFrame { reason: String },
    /// A blob frame is longer than the reader accepts.
    #[error("blob stream: blob {digest} has {size} bytes; at most {limit} are accepted")]
    FrameTooLarge {
        digest: String,
        size: u64,
        limit: u64,
    },
    /// A blob frame's content does not match its digest.
    #[error("blob stream: the content of blob {digest} does not match it (got {actual})")]
    FrameDigestMismatch { digest: String, actual: String },
    /// A file changed between the scan and [`blobs::write`]: take a new snapshot.
    #[error("{}: changed during the snapshot ({reason}); take the snapshot again", path.display())]
    Changed { path: PathBuf, reason: String },
    /// The filesystem is not fit for a restore (a symlink in a root's parent,
    /// a root that is a mount point or not a directory).
    #[error("{}: {reason}", path.display())]
    Unsuitable { path: PathBuf, reason: &'static str },
    /// A filesystem operation failed.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// Reading the input (content stream, blob stream) failed.
    #[error("cannot read the input stream: {0}")]
    Input(#[source] io::Error),
    /// Writing the output (blob stream, a frame's destination) failed.
    #[error("cannot write the output stream: {0}")]
    Output(#[source] io::Error),
}

impl SnapshotError {
    /// Whether the caller's input is at fault (a bad manifest, content that
    /// does not match it, an unknown digest, a malformed blob stream): HTTP
    /// 400. Everything else is the agent's trouble: 500.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            SnapshotError::Manifest(_)
            | SnapshotError::InvalidRoot { .. }
            | SnapshotError::DigestMismatch { .. }
            | SnapshotError::ShortContent { .. }
            | SnapshotError::TrailingContent
            | SnapshotError::UnknownDigest { .. }
            | SnapshotError::BadFrame { .. }
            | SnapshotError::FrameTooLarge { .. }
            | SnapshotError::FrameDigestMismatch { .. } => true,
            SnapshotError::Changed { .. }
            | SnapshotError::Unsuitable { .. }
            | SnapshotError::Io { .. }
            | SnapshotError::Input(_)
            | SnapshotError::Output(_) => false,
        }
    }
}

/// An [`SnapshotError::Io`] maker for `map_err`.
fn io_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.to_path_buf();
    move |source| SnapshotError::Io {
        path,
        action,
        source,
    }
}

/// [`SnapshotError::Io`] from a rustix error.
fn errno(path: &Path, action: &'static str, e: rustix::io::Errno) -> SnapshotError {
    SnapshotError::Io {
        path: path.to_path_buf(),
        action,
        source: e.into(),
    }
}

/// Random lowercase hex for temporary names.
fn random_hex() -> io::Result<String> {
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(hex::encode(raw))
}

/// Reads into `buf`, retrying on `Interrupted`.
fn read_some(r: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

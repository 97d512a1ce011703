//! Persisted-path snapshots: the manifest format and its validation.
//!
//! A session's persisted paths (absolute directories such as `/home/dev` or
//! `/workspace`, the *roots*) are snapshotted as a [`Manifest`] plus *blobs*:
//! file contents addressed by their SHA-256. The agent writes both
//! (`burstflare_agent::snapshot`); the control plane stores them and, to
//! restore, sends the manifest back with the contents. [`validate`] is the one
//! check every side runs on a manifest before trusting it.
//!
//! # Manifest (JSON)
//!
//! ```json
//! {
//!   "format": 1,
//!   "roots": ["/home/dev", "/workspace"],
//!   "entries": [
//!     {"root": 0, "path": ".config", "kind": "dir", "mode": 493, "mtime": 1700000000, "size": 0},
//!     {"root": 0, "path": ".config/app.toml", "kind": "file", "mode": 420,
//!      "mtime": 1700000000, "size": 12, "sha256": "<64 lowercase hex digits>"},
//!     {"root": 0, "path": "link", "kind": "symlink", "mode": 511, "mtime": 1700000000,
//!      "size": 0, "target": ".config/app.toml"}
//!   ],
//!   "skipped": [{"path": "/workspace/fifo", "reason": "is a FIFO"}]
//! }
//! ```
//!
//! * `format` is [`FORMAT`].
//! * `roots` are absolute and normalised (no trailing `/`, no empty, `.` or
//!   `..` components, not `/` itself), distinct and never nested in one
//!   another; each is one of the session's persisted paths.
//! * An entry's `root` indexes `roots`; its `path` is relative to that root,
//!   `/`-separated, normalised, and never empty (the root directory itself has
//!   no entry: restoring keeps its mode and owner). Entries are listed parents
//!   first: an entry's parent directory, unless it is the root, is an earlier
//!   `dir` entry of the same root. A path appears once.
//! * `kind` is `dir`, `file` or `symlink`. `mode` holds the permission bits
//!   (at most `0o7777`); `mtime` is the modification time in Unix seconds.
//! * A `file` has `size` (bytes) and `sha256`, the lowercase hex SHA-256 of its
//!   content. A `dir` has size 0 and neither `sha256` nor `target`.
//! * A `symlink` has size 0, no `sha256`, and a non-empty `target`, which,
//!   resolved lexically (a relative target against the link's directory, an
//!   absolute one as is), stays inside the link's root (the root itself
//!   counts). See [`resolve_symlink`].
//! * `skipped` (optional) lists what the snapshot left out, as absolute paths
//!   with a human-readable reason; it is information only.
//!
//! Ownership is not recorded: a restore gives every entry the session user.
//!
//! # What validation does not guarantee
//!
//! The symlink rule is lexical, link by link: a chain of symlinks that are each
//! inside the root (`a -> .`, then `b -> a/x/../..`) can still resolve outside
//! it on disk. Restoring never follows a symlink (parents must be directory
//! entries), so a manifest cannot make a restore write outside its roots; the
//! rule keeps snapshots from carrying obviously escaping links, and the
//! session user can create any link at run time anyway.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The manifest format this module reads and writes.
pub const FORMAT: u32 = 1;

/// A snapshot of one or more persisted paths (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The snapshotted roots, absolute and normalised.
    pub roots: Vec<String>,
    /// Every directory, regular file and symlink under the roots, parents first.
    pub entries: Vec<Entry>,
    /// What the snapshot left out, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

/// One directory, regular file or symlink of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Index into [`Manifest::roots`].
    pub root: u32,
    /// Relative to the root, `/`-separated, normalised, not empty.
    pub path: String,
    pub kind: Kind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// Content length of a file; 0 otherwise.
    #[serde(default)]
    pub size: u64,
    /// Lowercase hex SHA-256 of a file's content; files only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A symlink's target; symlinks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The kind of an [`Entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Dir,
    File,
    Symlink,
}

impl Kind {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dir => "dir",
            Kind::File => "file",
            Kind::Symlink => "symlink",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something under a root that the snapshot left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Absolute path.
    pub path: String,
    /// Why it was left out (`is a FIFO`, `another filesystem`, ...).
    pub reason: String,
}

/// Bounds a manifest must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries (and, separately, skipped paths) in a manifest.
    pub max_entries: usize,
    /// Size of one file.
    pub max_file_bytes: u64,
    /// Sum of the sizes of all files.
    pub max_total_bytes: u64,
    /// Length in bytes of an entry path and of a symlink target.
    pub max_path_bytes: usize,
}

impl Default for Limits {
    /// One million entries, 16 GiB per file, 64 GiB in all, 4096-byte paths.
    fn default() -> Self {
        Self {
            max_entries: 1_000_000,
            max_file_bytes: 16 << 30,
            max_total_bytes: 64 << 30,
            max_path_bytes: 4096,
        }
    }
}

/// What a valid manifest holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Sum of the file sizes.
    pub bytes: u64,
}

/// Why [`validate`] refuses a manifest. Every variant names the offending root
/// or entry; entry paths are shown with [`str::escape_debug`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("manifest format {found} is not supported (expected {FORMAT})")]
    Format { found: u32 },
    #[error("root `{}`: {reason}", .root.escape_debug())]
    InvalidRoot { root: String, reason: &'static str },
    #[error("root `{}` is listed twice", .root.escape_debug())]
    DuplicateRoot { root: String },
    #[error("root `{inner}` is inside root `{outer}`; list only `{outer}`")]
    NestedRoot { inner: String, outer: String },
    #[error("root `{}`: not a persisted path", .root.escape_debug())]
    RootNotAllowed { root: String },
    #[error("the manifest has {count} {what}; at most {limit} are allowed")]
    TooManyEntries {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("entry `{}`: root index {index} is out of range ({roots} roots)", .path.escape_debug())]
    RootIndex {
        path: String,
        index: u32,
        roots: usize,
    },
    #[error("an entry of {root} has an empty path")]
    EmptyPath { root: String },
    #[error("entry `{}` of {root}: absolute path; entry paths are relative to their root", .path.escape_debug())]
    AbsolutePath { root: String, path: String },
    #[error("entry `{}` of {root}: `..` is not allowed", .path.escape_debug())]
    DotDot { root: String, path: String },
    #[error("entry `{}` of {root}: empty or `.` component (paths are normalised)", .path.escape_debug())]
    NotNormalised { root: String, path: String },
    #[error("entry `{}` of {root}: NUL in the path", .path.escape_debug())]
    NulInPath { root: String, path: String },
    #[error("entry `{}` of {root}: the path is {len} bytes; at most {limit}", .path.escape_debug())]
    PathTooLong {
        root: String,
        path: String,
        len: usize,
        limit: usize,
    },
    #[error("entry `{}` of {root}: listed twice", .path.escape_debug())]
    DuplicateEntry { root: String, path: String },
    #[error(
        "entry `{}` of {root}: its parent `{}` must come earlier as a directory entry",
        .path.escape_debug(), .parent.escape_debug()
    )]
    MissingParent {
        root: String,
        path: String,
        parent: String,
    },
    #[error(
        "entry `{}` of {root}: its parent `{}` is a file",
        .path.escape_debug(), .parent.escape_debug()
    )]
    ParentNotDirectory {
        root: String,
        path: String,
        parent: String,
    },
    #[error(
        "entry `{}` of {root}: symlink escape: written through symlink `{}`",
        .path.escape_debug(), .link.escape_debug()
    )]
    WrittenThroughSymlink {
        root: String,
        path: String,
        link: String,
    },
    #[error("symlink `{}` of {root}: {reason}", .path.escape_debug())]
    InvalidTarget {
        root: String,
        path: String,
        reason: &'static str,
    },
    #[error(
        "symlink `{}` of {root}: symlink escape: target `{}` points outside {root}",
        .path.escape_debug(), .target.escape_debug()
    )]
    SymlinkEscape {
        root: String,
        path: String,
        target: String,
    },
    #[error("entry `{}` of {root}: {reason}", .path.escape_debug())]
    InconsistentEntry {
        root: String,
        path: String,
        reason: &'static str,
    },
    #[error("file `{}` of {root}: no sha256", .path.escape_debug())]
    MissingDigest { root: String, path: String },
    #[error(
        "file `{}` of {root}: sha256 `{}` is not 64 lowercase hex digits",
        .path.escape_debug(), .digest.escape_debug()
    )]
    InvalidDigest {
        root: String,
        path: String,
        digest: String,
    },
    #[error("oversized entry `{}` of {root}: {size} bytes; at most {limit} per file", .path.escape_debug())]
    OversizedEntry {
        root: String,
        path: String,
        size: u64,
        limit: u64,
    },
    #[error("entry `{}` of {root}: the files add up to more than {limit} bytes", .path.escape_debug())]
    TotalTooLarge {
        root: String,
        path: String,
        limit: u64,
    },
    #[error("entry `{}` of {root}: mode {mode:#o} is more than permission bits (0o7777)", .path.escape_debug())]
    InvalidMode {
        root: String,
        path: String,
        mode: u32,
    },
}

/// Highest permission bits an entry may carry.
const MAX_MODE: u32 = 0o7777;

/// Checks a manifest (every rule of the module docs) against the roots it may
/// name and the limits, and counts what it holds. `allowed_roots` are compared
/// exactly (normalise them with [`normalize_root`]).
pub fn validate(
    m: &Manifest,
    allowed_roots: &[String],
    limits: &Limits,
) -> Result<Summary, SnapshotError> {
    if m.format != FORMAT {
        return Err(SnapshotError::Format { found: m.format });
    }
    check_roots(&m.roots)?;
    if let Some(root) = m.roots.iter().find(|r| !allowed_roots.contains(r)) {
        return Err(SnapshotError::RootNotAllowed { root: root.clone() });
    }
    for (what, count) in [
        ("entries", m.entries.len()),
        ("skipped paths", m.skipped.len()),
    ] {
        if count > limits.max_entries {
            return Err(SnapshotError::TooManyEntries {
                what,
                count,
                limit: limits.max_entries,
            });
        }
    }

    let mut seen: HashMap<(u32, &str), Kind> = HashMap::with_capacity(m.entries.len());
    let mut summary = Summary::default();
    for entry in &m.entries {
        let Some(root) = usize::try_from(entry.root)
            .ok()
            .and_then(|i| m.roots.get(i))
        else {
            return Err(SnapshotError::RootIndex {
                path: entry.path.clone(),
                index: entry.root,
                roots: m.roots.len(),
            });
        };
        let at = |make: fn(String, String) -> SnapshotError| make(root.clone(), entry.path.clone());
        check_entry_path(root, &entry.path, limits.max_path_bytes)?;
        if entry.mode > MAX_MODE {
            return Err(SnapshotError::InvalidMode {
                root: root.clone(),
                path: entry.path.clone(),
                mode: entry.mode,
            });
        }
        if seen.contains_key(&(entry.root, entry.path.as_str())) {
            return Err(at(|root, path| SnapshotError::DuplicateEntry {
                root,
                path,
            }));
        }
        let parent = parent_of(&entry.path);
        if let Some(parent) = parent {
            let problem = match seen.get(&(entry.root, parent)) {
                Some(Kind::Dir) => None,
                None => Some(SnapshotError::MissingParent {
                    root: root.clone(),
                    path: entry.path.clone(),
                    parent: parent.to_owned(),
                }),
                Some(Kind::File) => Some(SnapshotError::ParentNotDirectory {
                    root: root.clone(),
                    path: entry.path.clone(),
                    parent: parent.to_owned(),
                }),
                Some(Kind::Symlink) => Some(SnapshotError::WrittenThroughSymlink {
                    root: root.clone(),
                    path: entry.path.clone(),
                    link: parent.to_owned(),
                }),
            };
            if let Some(problem) = problem {
                return Err(problem);
            }
        }
        let inconsistent = |reason: &'static str| SnapshotError::InconsistentEntry {
            root: root.clone(),
            path: entry.path.clone(),
            reason,
        };
        match entry.kind {
            Kind::Dir => {
                if entry.sha256.is_some() {
                    return Err(inconsistent("a directory has no sha256"));
                }
                if entry.target.is_some() {
                    return Err(inconsistent("a directory has no target"));
                }
                if entry.size != 0 {
                    return Err(inconsistent("a directory has size 0"));
                }
                summary.dirs += 1;
            }
            Kind::File => {
                if entry.target.is_some() {
                    return Err(inconsistent("a file has no target"));
                }
                let Some(digest) = &entry.sha256 else {
                    return Err(at(|root, path| SnapshotError::MissingDigest { root, path }));
                };
                if !is_sha256_hex(digest) {
                    return Err(SnapshotError::InvalidDigest {
                        root: root.clone(),
                        path: entry.path.clone(),
                        digest: digest.clone(),
                    });
                }
                if entry.size > limits.max_file_bytes {
                    return Err(SnapshotError::OversizedEntry {
                        root: root.clone(),
                        path: entry.path.clone(),
                        size: entry.size,
                        limit: limits.max_file_bytes,
                    });
                }
                summary.bytes = summary
                    .bytes
                    .checked_add(entry.size)
                    .filter(|total| *total <= limits.max_total_bytes)
                    .ok_or_else(|| SnapshotError::TotalTooLarge {
                        root: root.clone(),
                        path: entry.path.clone(),
                        limit: limits.max_total_bytes,
                    })?;
                summary.files += 1;
            }
            Kind::Symlink => {
                if entry.sha256.is_some() {
                    return Err(inconsistent("a symlink has no sha256"));
                }
                if entry.size != 0 {
                    return Err(inconsistent("a symlink has size 0"));
                }
                let bad_target = |reason: &'static str| SnapshotError::InvalidTarget {
                    root: root.clone(),
                    path: entry.path.clone(),
                    reason,
                };
                let target = match entry.target.as_deref() {
                    None => return Err(bad_target("no target")),
                    Some("") => return Err(bad_target("empty target")),
                    Some(t) if t.contains('\0') => return Err(bad_target("NUL in the target")),
                    Some(t) if t.len() > limits.max_path_bytes => {
                        return Err(bad_target("the target is longer than the path limit"));
                    }
                    Some(t) => t,
                };
                if resolve_symlink(parent.unwrap_or(""), target, root).is_none() {
                    return Err(SnapshotError::SymlinkEscape {
                        root: root.clone(),
                        path: entry.path.clone(),
                        target: target.to_owned(),
                    });
                }
                summary.symlinks += 1;
            }
        }
        seen.insert((entry.root, entry.path.as_str()), entry.kind);
    }
    Ok(summary)
}

/// Checks a list of roots: each normalised (see [`normalize_root`] — it must
/// already be in that form), none twice, none inside another.
pub fn check_roots(roots: &[String]) -> Result<(), SnapshotError> {
    for (i, root) in roots.iter().enumerate() {
        if let Some(reason) = root_problem(root) {
            return Err(SnapshotError::InvalidRoot {
                root: root.clone(),
                reason,
            });
        }
        for earlier in roots.iter().take(i) {
            if earlier == root {
                return Err(SnapshotError::DuplicateRoot { root: root.clone() });
            }
            let (inner, outer) = if is_within(root, earlier) {
                (root, earlier)
            } else if is_within(earlier, root) {
                (earlier, root)
            } else {
                continue;
            };
            return Err(SnapshotError::NestedRoot {
                inner: inner.clone(),
                outer: outer.clone(),
            });
        }
    }
    Ok(())
}

/// Why `root` is not a normalised absolute directory path other than `/`.
fn root_problem(root: &str) -> Option<&'static str> {
    let Some(rest) = root.strip_prefix('/') else {
        return Some("not an absolute path");
    };
    if rest.is_empty() {
        return Some("`/` itself cannot be a persisted path");
    }
    if root.contains('\0') {
        return Some("NUL in the path");
    }
    if rest.ends_with('/') {
        return Some("trailing `/` (roots are normalised)");
    }
    if rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Some("empty, `.` or `..` component (roots are normalised)");
    }
    None
}

/// The normal form of an absolute directory path: empty and `.` components and
/// a trailing `/` dropped. `None` for a relative path, a path with `..` or NUL,
/// and `/` itself (never a persisted path).
pub fn normalize_root(s: &str) -> Option<String> {
    let rest = s.strip_prefix('/')?;
    if s.contains('\0') {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    for component in rest.split('/') {
        match component {
            "" | "." => {}
            ".." => return None,
            c => {
                out.push('/');
                out.push_str(c);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Drops the roots nested in another root of the list (the outer one covers
/// them), and duplicates; keeps the order otherwise. Persisted paths may nest
/// (`/home/dev` and `/home/dev/.cache`); a manifest's roots may not.
pub fn collapse_roots(roots: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(roots.len());
    for root in roots {
        let covered = roots
            .iter()
            .any(|other| other != root && is_within(root, other))
            || out.contains(root);
        if !covered {
            out.push(root.clone());
        }
    }
    out
}

/// Whether the absolute path `path` is `root` or lies under it.
fn is_within(path: &str, root: &str) -> bool {
    path.strip_prefix(root)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Resolves a symlink target lexically, without looking at the filesystem.
/// `root_rel_parent` is the directory holding the link, relative to `root`
/// (`""` for the root itself); `target` is the link's content; `root` is an
/// absolute normalised path. A relative target starts from the link's
/// directory, an absolute one from `/`; `.` and empty components are dropped,
/// `..` removes the previous component (at `/` it stays at `/`).
///
/// Returns the result relative to `root` (`""` when it is `root` itself), or
/// `None` when it lies outside `root` or `target` is empty or has NUL.
pub fn resolve_symlink(root_rel_parent: &str, target: &str, root: &str) -> Option<String> {
    if target.is_empty() || target.contains('\0') {
        return None;
    }
    let mut stack: Vec<&str> = Vec::new();
    let start = if target.starts_with('/') {
        ""
    } else {
        stack.extend(root.split('/').filter(|c| !c.is_empty()));
        root_rel_parent
    };
    for component in start.split('/').chain(target.split('/')) {
        match component {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            c => stack.push(c),
        }
    }
    let resolved = stack.iter().fold(String::new(), |mut acc, c| {
        acc.push('/');
        acc.push_str(c);
        acc
    });
    let rest = resolved.strip_prefix(root)?;
    if rest.is_empty() {
        Some(String::new())
    } else {
        rest.strip_prefix('/').map(str::to_owned)
    }
}

/// Whether `s` is a SHA-256 digest as manifests spell it: 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The parent of a relative entry path; `None` when the parent is the root.
pub fn parent_of(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(parent, _)| parent)
}

/// Checks an entry path: not empty, relative, normalised, no NUL, bounded.
fn check_entry_path(root: &str, path: &str, max_bytes: usize) -> Result<(), SnapshotError> {
    let err =
        |make: fn(String, String) -> SnapshotError| Err(make(root.to_owned(), path.to_owned()));
    if path.is_empty() {
        return Err(SnapshotError::EmptyPath {
            root: root.to_owned(),
        });
    }
    if path.starts_with('/') {
        return err(|root, path| SnapshotError::AbsolutePath { root, path });
    }
    if path.contains('\0') {
        return err(|root, path| SnapshotError::NulInPath { root, path });
    }
    if path.split('/').any(|c| c == "..") {
        return err(|root, path| SnapshotError::DotDot { root, path });
    }
    if path.split('/').any(|c| c.is_empty() || c == ".") {
        return err(|root, path| SnapshotError::NotNormalised { root, path });
    }
    if path.len() > max_bytes {
        return Err(SnapshotError::PathTooLong {
            root: root.to_owned(),
            path: path.to_owned(),
            len: path.len(),
            limit: max_bytes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DIGEST: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn entry(root: u32, path: &str, kind: Kind) -> Entry {
        Entry {
            root,
            path: path.to_owned(),
            kind,
            mode: if kind == Kind::Dir { 0o755 } else { 0o644 },
            mtime: 1_700_000_000,
            size: 0,
            sha256: None,
            target: None,
        }
    }

    fn dir(path: &str) -> Entry {
        entry(0, path, Kind::Dir)
    }

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            size,
            sha256: Some(DIGEST.to_owned()),
            ..entry(0, path, Kind::File)
        }
    }

    fn link(path: &str, target: &str) -> Entry {
        Entry {
            mode: 0o777,
            target: Some(target.to_owned()),
            ..entry(0, path, Kind::Symlink)
        }
    }

    fn manifest(entries: Vec<Entry>) -> Manifest {
        Manifest {
            format: FORMAT,
            roots: vec!["/home/dev".to_owned(), "/workspace".to_owned()],
            entries,
            skipped: Vec::new(),
        }
    }

    fn allowed() -> Vec<String> {
        vec!["/home/dev".to_owned(), "/workspace".to_owned()]
    }

    fn check(entries: Vec<Entry>) -> Result<Summary, SnapshotError> {
        validate(&manifest(entries), &allowed(), &Limits::default())
    }

    fn check_err(entries: Vec<Entry>) -> SnapshotError {
        check(entries).expect_err("the manifest must be refused")
    }

    #[test]
    fn a_valid_manifest_is_counted() {
        let summary = check(vec![
            dir(".config"),
            file(".config/app.toml", 12),
            link("app", ".config/app.toml"),
            link("self", "."),
            link("abs", "/home/dev/.config"),
            link("around", "../dev/.config"),
            link("dangling", "nowhere/at/all"),
            file("empty", 0),
            entry(1, "src", Kind::Dir),
            Entry {
                root: 1,
                ..file("src/main.rs", 30)
            },
        ])
        .unwrap();
        assert_eq!(
            summary,
            Summary {
                files: 3,
                dirs: 2,
                symlinks: 5,
                bytes: 42
            }
        );
    }

    #[test]
    fn json_shape() {
        let m = manifest(vec![dir("d"), file("d/f", 3), link("l", "d/f")]);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "format": 1,
                "roots": ["/home/dev", "/workspace"],
                "entries": [
                    {"root": 0, "path": "d", "kind": "dir", "mode": 0o755, "mtime": 1_700_000_000, "size": 0},
                    {"root": 0, "path": "d/f", "kind": "file", "mode": 0o644, "mtime": 1_700_000_000,
                     "size": 3, "sha256": DIGEST},
                    {"root": 0, "path": "l", "kind": "symlink", "mode": 0o777, "mtime": 1_700_000_000,
                     "size": 0, "target": "d/f"},
                ],
            })
        );
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);

        // `size` defaults to 0, `skipped` to empty; unknown entry fields are refused.
        let parsed: Manifest = serde_json::from_str(
            r#"{"format":1,"roots":["/w"],"entries":[{"root":0,"path":"d","kind":"dir","mode":493,"mtime":0}]}"#,
        )
        .unwrap();
        assert_eq!(parsed.entries[0].size, 0);
        assert!(parsed.skipped.is_empty());
        let unknown = serde_json::from_str::<Manifest>(
            r#"{"format":1,"roots":["/w"],"entries":[{"root":0,"path":"d","kind":"dir","mode":493,"mtime":0,"uid":0}]}"#,
        );
        assert!(unknown.is_err());
        let bad_kind = serde_json::from_str::<Manifest>(
            r#"{"format":1,"roots":["/w"],"entries":[{"root":0,"path":"d","kind":"fifo","mode":0,"mtime":0}]}"#,
        );
        assert!(bad_kind.is_err());
    }

    #[test]
    fn format_must_match() {
        let m = Manifest {
            format: 2,
            ..manifest(vec![])
        };
        assert_eq!(
            validate(&m, &allowed(), &Limits::default()),
            Err(SnapshotError::Format { found: 2 })
        );
    }

    #[test]
    fn roots_must_be_normalised_distinct_unnested_and_allowed() {
        let run = |roots: &[&str]| {
            let m = Manifest {
                roots: roots.iter().map(|r| (*r).to_owned()).collect(),
                ..manifest(vec![])
            };
            let allowed: Vec<String> = roots.iter().map(|r| (*r).to_owned()).collect();
            validate(&m, &allowed, &Limits::default())
        };
        for bad in [
            "home/dev",
            "/",
            "/home/dev/",
            "/home//dev",
            "/home/./dev",
            "/home/../etc",
            "/home/dev\0",
            "",
        ] {
            assert!(
                matches!(run(&[bad]), Err(SnapshotError::InvalidRoot { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(
            run(&["/home/dev", "/home/dev"]),
            Err(SnapshotError::DuplicateRoot {
                root: "/home/dev".to_owned()
            })
        );
        for roots in [
            ["/home/dev", "/home/dev/.cache"],
            ["/home/dev/.cache", "/home/dev"],
        ] {
            assert_eq!(
                run(&roots),
                Err(SnapshotError::NestedRoot {
                    inner: "/home/dev/.cache".to_owned(),
                    outer: "/home/dev".to_owned()
                })
            );
        }
        // A shared prefix is not nesting.
        assert!(run(&["/home/dev", "/home/devx"]).is_ok());

        let m = Manifest {
            roots: vec!["/etc".to_owned()],
            ..manifest(vec![])
        };
        let err = validate(&m, &allowed(), &Limits::default()).unwrap_err();
        assert_eq!(err.to_string(), "root `/etc`: not a persisted path");
        // Allowed roots are compared exactly.
        let m = Manifest {
            roots: vec!["/home/dev".to_owned()],
            ..manifest(vec![])
        };
        let err = validate(&m, &["/home/dev/".to_owned()], &Limits::default()).unwrap_err();
        assert!(matches!(err, SnapshotError::RootNotAllowed { .. }));
    }

    #[test]
    fn root_index_must_be_in_range() {
        let err = check_err(vec![entry(2, "x", Kind::Dir)]);
        assert_eq!(
            err,
            SnapshotError::RootIndex {
                path: "x".to_owned(),
                index: 2,
                roots: 2
            }
        );
    }

    #[test]
    fn entry_paths_must_be_relative_and_normalised() {
        let err = check_err(vec![file("../etc/passwd", 1)]);
        assert!(matches!(err, SnapshotError::DotDot { .. }));
        assert_eq!(
            err.to_string(),
            "entry `../etc/passwd` of /home/dev: `..` is not allowed"
        );
        assert!(matches!(
            check_err(vec![dir("a"), file("a/../../x", 1)]),
            SnapshotError::DotDot { .. }
        ));
        let err = check_err(vec![file("/etc/passwd", 1)]);
        assert!(matches!(err, SnapshotError::AbsolutePath { .. }));
        assert!(err.to_string().contains("absolute path"), "{err}");
        assert!(matches!(
            check_err(vec![file("", 1)]),
            SnapshotError::EmptyPath { .. }
        ));
        for bad in ["./a", "a/.", "a//b", "a/"] {
            assert!(
                matches!(
                    check_err(vec![dir("a"), file(bad, 1)]),
                    SnapshotError::NotNormalised { .. }
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            check_err(vec![file("a\0b", 1)]),
            SnapshotError::NulInPath { .. }
        ));
        let limits = Limits {
            max_path_bytes: 8,
            ..Limits::default()
        };
        let ok = manifest(vec![file("12345678", 1)]);
        assert!(validate(&ok, &allowed(), &limits).is_ok());
        let long = manifest(vec![file("123456789", 1)]);
        assert!(matches!(
            validate(&long, &allowed(), &limits),
            Err(SnapshotError::PathTooLong {
                len: 9,
                limit: 8,
                ..
            })
        ));
    }

    #[test]
    fn paths_are_unique_per_root() {
        assert!(matches!(
            check_err(vec![dir("a"), file("a", 1)]),
            SnapshotError::DuplicateEntry { .. }
        ));
        // The same path under two roots is two entries.
        assert!(check(vec![dir("a"), entry(1, "a", Kind::Dir)]).is_ok());
    }

    #[test]
    fn parents_come_first_as_directories() {
        let err = check_err(vec![file("a/b", 1), dir("a")]);
        assert_eq!(
            err,
            SnapshotError::MissingParent {
                root: "/home/dev".to_owned(),
                path: "a/b".to_owned(),
                parent: "a".to_owned()
            }
        );
        assert!(matches!(
            check_err(vec![dir("a"), file("a/b/c", 1)]),
            SnapshotError::MissingParent { .. }
        ));
        // A parent under another root does not count.
        assert!(matches!(
            check_err(vec![dir("a"), entry(1, "a/b", Kind::Dir)]),
            SnapshotError::MissingParent { .. }
        ));
        assert!(matches!(
            check_err(vec![file("a", 1), file("a/b", 1)]),
            SnapshotError::ParentNotDirectory { .. }
        ));
        let err = check_err(vec![link("a", "."), file("a/b", 1)]);
        assert!(matches!(err, SnapshotError::WrittenThroughSymlink { .. }));
        assert!(
            err.to_string()
                .contains("symlink escape: written through symlink `a`"),
            "{err}"
        );
    }

    #[test]
    fn symlinks_stay_inside_their_root() {
        for target in [
            "../../outside",
            "..",
            "../devx",
            "/etc/passwd",
            "/",
            "/home",
            "/home/devx",
            "/workspace",
            "a/../../..",
        ] {
            let err = check_err(vec![link("l", target)]);
            assert!(
                matches!(err, SnapshotError::SymlinkEscape { .. }),
                "{target}: {err}"
            );
            assert!(err.to_string().contains("symlink escape"), "{err}");
        }
        // Relative targets start from the link's directory.
        assert!(check(vec![dir("a"), dir("a/b"), link("a/b/l", "../../x")]).is_ok());
        assert!(matches!(
            check_err(vec![dir("a"), dir("a/b"), link("a/b/l", "../../../x")]),
            SnapshotError::SymlinkEscape { .. }
        ));
        // The same rule under the second root.
        assert!(matches!(
            check_err(vec![Entry {
                root: 1,
                ..link("l", "../home/dev")
            }]),
            SnapshotError::SymlinkEscape { .. }
        ));
    }

    #[test]
    fn symlink_fields() {
        let bad_target = |target: Option<&str>| {
            let mut l = link("l", "x");
            l.target = target.map(str::to_owned);
            check_err(vec![l])
        };
        for target in [None, Some(""), Some("a\0b")] {
            assert!(
                matches!(bad_target(target), SnapshotError::InvalidTarget { .. }),
                "{target:?}"
            );
        }
        let limits = Limits {
            max_path_bytes: 4,
            ..Limits::default()
        };
        let m = manifest(vec![link("l", "abcde")]);
        assert!(matches!(
            validate(&m, &allowed(), &limits),
            Err(SnapshotError::InvalidTarget { .. })
        ));
        let with_digest = Entry {
            sha256: Some(DIGEST.to_owned()),
            ..link("l", "x")
        };
        assert!(matches!(
            check_err(vec![with_digest]),
            SnapshotError::InconsistentEntry { .. }
        ));
        let with_size = Entry {
            size: 1,
            ..link("l", "x")
        };
        assert!(matches!(
            check_err(vec![with_size]),
            SnapshotError::InconsistentEntry { .. }
        ));
    }

    #[test]
    fn file_fields() {
        let mut no_digest = file("f", 1);
        no_digest.sha256 = None;
        assert!(matches!(
            check_err(vec![no_digest]),
            SnapshotError::MissingDigest { .. }
        ));
        for digest in [
            DIGEST.to_uppercase(),
            DIGEST[1..].to_owned(),
            format!("{DIGEST}0"),
            format!("g{}", &DIGEST[1..]),
        ] {
            let mut f = file("f", 1);
            f.sha256 = Some(digest.clone());
            assert!(
                matches!(check_err(vec![f]), SnapshotError::InvalidDigest { .. }),
                "{digest}"
            );
        }
        let with_target = Entry {
            target: Some("x".to_owned()),
            ..file("f", 1)
        };
        assert!(matches!(
            check_err(vec![with_target]),
            SnapshotError::InconsistentEntry { .. }
        ));
    }

    #[test]
    fn file_sizes_are_bounded() {
        let limits = Limits {
            max_file_bytes: 10,
            max_total_bytes: 25,
            ..Limits::default()
        };
        let ok = manifest(vec![file("a", 10), file("b", 10), file("c", 5)]);
        assert_eq!(validate(&ok, &allowed(), &limits).unwrap().bytes, 25);
        let err = validate(&manifest(vec![file("a", 11)]), &allowed(), &limits).unwrap_err();
        assert!(matches!(
            err,
            SnapshotError::OversizedEntry { size: 11, .. }
        ));
        assert!(err.to_string().starts_with("oversized entry `a`"), "{err}");
        let total = manifest(vec![file("a", 10), file("b", 10), file("c", 6)]);
        assert!(matches!(
            validate(&total, &allowed(), &limits),
            Err(SnapshotError::TotalTooLarge { .. })
        ));
        // The running total cannot overflow into acceptance.
        let huge = Limits {
            max_file_bytes: u64::MAX,
            max_total_bytes: u64::MAX,
            ..Limits::default()
        };
        let overflow = manifest(vec![file("a", u64::MAX), file("b", 1)]);
        assert!(matches!(
            validate(&overflow, &allowed(), &huge),
            Err(SnapshotError::TotalTooLarge { .. })
        ));
    }

    #[test]
    fn directory_fields() {
        let with_digest = Entry {
            sha256: Some(DIGEST.to_owned()),
            ..dir("d")
        };
        let with_target = Entry {
            target: Some("x".to_owned()),
            ..dir("d")
        };
        let with_size = Entry {
            size: 1,
            ..dir("d")
        };
        for bad in [with_digest, with_target, with_size] {
            assert!(matches!(
                check_err(vec![bad]),
                SnapshotError::InconsistentEntry { .. }
            ));
        }
    }

    #[test]
    fn modes_are_permission_bits() {
        let ok = Entry {
            mode: 0o7777,
            ..dir("d")
        };
        assert!(check(vec![ok]).is_ok());
        let bad = Entry {
            mode: 0o10000,
            ..dir("d")
        };
        assert!(matches!(
            check_err(vec![bad]),
            SnapshotError::InvalidMode { mode: 0o10000, .. }
        ));
    }

    #[test]
    fn entry_counts_are_bounded() {
        let limits = Limits {
            max_entries: 2,
            ..Limits::default()
        };
        let two = manifest(vec![dir("a"), dir("b")]);
        assert!(validate(&two, &allowed(), &limits).is_ok());
        let three = manifest(vec![dir("a"), dir("b"), dir("c")]);
        assert!(matches!(
            validate(&three, &allowed(), &limits),
            Err(SnapshotError::TooManyEntries { count: 3, .. })
        ));
        let skipped = Manifest {
            skipped: (0..3)
                .map(|i| Skipped {
                    path: format!("/home/dev/s{i}"),
                    reason: "is a FIFO".to_owned(),
                })
                .collect(),
            ..manifest(vec![])
        };
        assert!(matches!(
            validate(&skipped, &allowed(), &limits),
            Err(SnapshotError::TooManyEntries {
                what: "skipped paths",
                ..
            })
        ));
    }

    #[test]
    fn normalising_roots() {
        assert_eq!(normalize_root("/home/dev").as_deref(), Some("/home/dev"));
        assert_eq!(normalize_root("/home//dev/").as_deref(), Some("/home/dev"));
        assert_eq!(
            normalize_root("/./home/./dev").as_deref(),
            Some("/home/dev")
        );
        for bad in ["home/dev", "", "/", "//", "/.", "/home/../etc", "/a\0"] {
            assert_eq!(normalize_root(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn collapsing_roots() {
        let roots = |r: &[&str]| r.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            collapse_roots(&roots(&[
                "/home/dev/.cache",
                "/workspace",
                "/home/dev",
                "/home/devx",
                "/workspace"
            ])),
            roots(&["/workspace", "/home/dev", "/home/devx"])
        );
        assert!(check_roots(&collapse_roots(&roots(&["/a/b/c", "/a", "/a/b"]))).is_ok());
    }

    #[test]
    fn resolving_symlinks() {
        let r = |parent: &str, target: &str| resolve_symlink(parent, target, "/home/dev");
        assert_eq!(r("", "a").as_deref(), Some("a"));
        assert_eq!(r("", ".").as_deref(), Some(""));
        assert_eq!(r("x/y", "../z").as_deref(), Some("x/z"));
        assert_eq!(r("x/y", "../../").as_deref(), Some(""));
        assert_eq!(r("x", "./a//b/").as_deref(), Some("x/a/b"));
        assert_eq!(r("", "../dev/a").as_deref(), Some("a"));
        assert_eq!(r("x", "/home/dev/a/../b").as_deref(), Some("b"));
        assert_eq!(r("x", "/../home/dev").as_deref(), Some(""));
        assert_eq!(r("", ".."), None);
        assert_eq!(r("x/y", "../../.."), None);
        assert_eq!(r("", "../devx"), None);
        assert_eq!(r("", "/home/devx/a"), None);
        assert_eq!(r("", "/etc"), None);
        assert_eq!(r("", ""), None);
        assert_eq!(r("", "a\0"), None);
    }

    fn component() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("dev".to_owned()),
            Just("home".to_owned()),
            Just("..".to_owned()),
            Just(".".to_owned()),
            Just(String::new()),
        ]
    }

    fn rel_path() -> impl Strategy<Value = String> {
        proptest::collection::vec(component(), 0..6).prop_map(|c| c.join("/"))
    }

    fn any_target() -> impl Strategy<Value = String> {
        (any::<bool>(), rel_path()).prop_map(|(abs, p)| if abs { format!("/{p}") } else { p })
    }

    fn is_normal_rel(path: &str) -> bool {
        path.is_empty() || path.split('/').all(|c| !matches!(c, "" | "." | ".."))
    }

    proptest! {
        #[test]
        fn resolution_never_leaves_the_root(parent in rel_path(), target in any_target()) {
            prop_assume!(is_normal_rel(&parent));
            if let Some(rel) = resolve_symlink(&parent, &target, "/home/dev") {
                prop_assert!(is_normal_rel(&rel), "{rel:?}");
                let full = if rel.is_empty() { "/home/dev".to_owned() } else { format!("/home/dev/{rel}") };
                // Walking `target` from the link's directory component by
                // component on a tree without symlinks reaches `full`.
                let mut stack: Vec<String> = if target.starts_with('/') {
                    Vec::new()
                } else {
                    ["home", "dev"].iter().map(|c| (*c).to_owned())
                        .chain(parent.split('/').filter(|c| !c.is_empty()).map(str::to_owned))
                        .collect()
                };
                for c in target.split('/') {
                    match c {
                        "" | "." => {}
                        ".." => { stack.pop(); }
                        c => stack.push(c.to_owned()),
                    }
                }
                prop_assert_eq!(format!("/{}", stack.join("/")), full);
            }
        }

        #[test]
        fn valid_manifests_only_name_paths_inside_their_roots(
            raw in proptest::collection::vec((rel_path(), 0u8..3, any_target()), 0..12)
        ) {
            let entries: Vec<Entry> = raw
                .iter()
                .map(|(path, kind, target)| match kind {
                    0 => dir(path),
                    1 => file(path, 1),
                    _ => link(path, target),
                })
                .collect();
            let m = manifest(entries);
            if validate(&m, &allowed(), &Limits::default()).is_ok() {
                for e in &m.entries {
                    prop_assert!(!e.path.is_empty() && is_normal_rel(&e.path), "{:?}", e.path);
                    if let Some(target) = &e.target {
                        let parent = parent_of(&e.path).unwrap_or("");
                        prop_assert!(resolve_symlink(parent, target, "/home/dev").is_some());
                    }
                }
            }
        }

        #[test]
        fn a_tree_listed_parents_first_validates(
            paths in proptest::collection::btree_set(
                proptest::collection::vec("[a-c]{1,2}", 1..4).prop_map(|c| c.join("/")),
                0..20,
            )
        ) {
            // Every prefix of every path as a directory, the paths themselves
            // as files where no other path is under them.
            let mut all = std::collections::BTreeSet::new();
            for p in &paths {
                let mut prefix = String::new();
                for c in p.split('/') {
                    if !prefix.is_empty() { prefix.push('/'); }
                    prefix.push_str(c);
                    all.insert(prefix.clone());
                }
            }
            let mut entries = Vec::new();
            let mut sorted: Vec<&String> = all.iter().collect();
            sorted.sort_by_key(|p| p.split('/').count());
            for p in sorted {
                let is_parent = all.iter().any(|o| o.starts_with(&format!("{p}/")));
                entries.push(if is_parent { dir(p) } else { file(p, 1) });
            }
            prop_assert!(check(entries).is_ok());
        }
    }
}

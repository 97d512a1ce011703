//! Template layers: the filesystem changes a template build's setup commands
//! make, captured once in a builder container and applied in every session
//! started from the template, so sessions see the setup's result without
//! running it again.
//!
//! # Pieces
//!
//! * The **base manifest** ([`Manifest`]) lists every entry of the pristine
//!   runtime image: path, kind, mode, owner, size, mtime, symlink target and,
//!   for regular files, the SHA-256 of the content. The image build writes it
//!   with `burstflare-agent base-manifest / /var/lib/burstflare/base-manifest`
//!   ([`write_base_manifest`], [`DEFAULT_BASE_MANIFEST`]).
//! * [`capture`] walks the builder container's tree after the setup commands
//!   ran, compares it with the base manifest and writes a **layer**: every
//!   entry that is new or differs, and the list of base paths that are gone.
//! * [`apply`] extracts a layer over a session's fresh tree, refusing anything
//!   that would write outside the root.
//!
//! # What counts as a change
//!
//! An entry is in the layer when it is new or its kind differs; a directory
//! when its mode or owner differs too; a symlink when its target or owner
//! differs; a regular file when its mode, owner, size or content differs. A
//! file whose size matches the base is hashed and compared with the base hash,
//! so a content change that keeps size and mtime is caught. Mtimes are
//! recorded (and carried by the layer, to the nanosecond) but never compared:
//! Docker truncates them to whole seconds when it exports and loads an image,
//! so a pulled image's mtimes need not match the manifest written at build
//! time. Hashing needs the base content, which the builder no longer has once
//! the setup ran, so the base manifest hashes every regular file eagerly when
//! the image is built.
//!
//! # Layer format
//!
//! A zstd stream (level [`ZSTD_LEVEL`], single-threaded, with a content
//! checksum) of a tar archive: GNU headers, GNU long names for paths and link
//! targets over 100 bytes, and a PAX `mtime` record before an entry whose mtime
//! has a fractional second. Entries come in path order (a directory before its
//! contents); directories, regular files and symlinks keep mode (setuid, setgid
//! and sticky bits included), uid, gid and mtime. A second name of an inode
//! already in the layer is a hard link to the first name. Last, when anything
//! was deleted, the regular file [`DELETIONS_ENTRY`] lists the deleted base
//! paths, one a line, escaped as in the manifest, in path order: a deleted
//! directory is listed once, not its contents; so is a directory replaced by a
//! file or symlink, whose entry replaces the whole tree.
//!
//! # Safety of `apply`
//!
//! Every entry path is checked before anything is written for it: relative, no
//! `..`, not under [`CONTROL_DIR`], not an excluded path (see
//! [`DEFAULT_EXCLUDES`]). The tree is then walked one component at a time from
//! a descriptor of the root with `O_NOFOLLOW`, so no symlink, whether already
//! in the tree or created earlier by the layer, is ever followed; an existing
//! entry in the way is removed (a directory recursively, never crossing into
//! another filesystem), not written through. Devices and FIFOs are refused;
//! hard links may only name a regular file written earlier by the same layer.
//! Limits ([`ApplyLimits`]) bound the entry count and the uncompressed size.
//!
//! # Not carried by a layer
//!
//! * extended attributes: file capabilities (`setcap`), ACLs, SELinux labels;
//! * devices, FIFOs and sockets (skipped by [`capture`], counted);
//! * holes: sparse files become dense;
//! * hard links between a captured file and an unchanged base file: the
//!   captured name becomes an independent copy;
//! * mtimes of directories that are not in the layer, and mtimes before 1970
//!   (they become 1970);
//! * other filesystems mounted under the root: a directory on another device
//!   than the root is skipped with its contents.

mod apply;
mod capture;
mod excludes;
mod manifest;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

pub use apply::{ApplyLimits, ApplySummary, apply};
pub use capture::{CaptureSummary, capture};
pub use excludes::{DEFAULT_EXCLUDES, Excludes};
pub use manifest::{
    DEFAULT_BASE_MANIFEST, Entry, EntryKind, MANIFEST_HEADER, Manifest, read_manifest,
    read_manifest_file, scan, write_base_manifest, write_manifest,
};

/// The directory of a layer reserved for the layer's own entries; no tree
/// entry is ever captured there, and [`apply`] refuses anything else in it.
pub const CONTROL_DIR: &str = ".burstflare";
/// The layer entry listing the deleted base paths.
pub const DELETIONS_ENTRY: &str = ".burstflare/deletions";
/// zstd compression level of layers.
pub const ZSTD_LEVEL: i32 = 3;

/// Read and hash buffer size.
const BUF_SIZE: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A filesystem operation on the tree or on a manifest file failed.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// Writing the layer or the manifest to its destination failed.
    #[error("cannot write the {what}: {source}")]
    Write {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The layer is not a zstd-compressed tar stream, or is corrupt or truncated.
    #[error("cannot read the layer (corrupt, truncated, or not a layer): {0}")]
    Read(#[source] io::Error),
    #[error("base manifest line {line}: {message}")]
    Manifest { line: usize, message: String },
    #[error("exclude pattern `{pattern}`: {reason}")]
    Exclude {
        pattern: String,
        reason: &'static str,
    },
    /// [`apply`] refused an entry: nothing was written for it or after it.
    #[error("layer entry `{path}`: {reason}; the layer is refused")]
    Rejected { path: String, reason: String },
    #[error("the layer exceeds its limit of {limit} {what}")]
    Limit { what: &'static str, limit: u64 },
    /// A file changed size while [`capture`] copied it into the layer.
    #[error(
        "{}: changed while being captured (expected {expected} bytes); stop what writes it, or exclude it",
        path.display()
    )]
    Changed { path: PathBuf, expected: u64 },
}

pub(crate) fn io_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> LayerError {
    let path = path.to_path_buf();
    move |source| LayerError::Io {
        path,
        action,
        source,
    }
}

pub(crate) fn rejected(raw_path: &[u8], reason: impl Into<String>) -> LayerError {
    LayerError::Rejected {
        path: escape(raw_path),
        reason: reason.into(),
    }
}

/// Escapes path bytes for the manifest and the deletions list: printable
/// ASCII except space and `\` stays; `\` is `\\`; every other byte is `\xHH`
/// (lowercase). The result has no space, tab or newline, and one spelling per
/// byte string.
pub(crate) fn escape(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x21..=0x7e => out.push(char::from(b)),
            _ => {
                out.push_str("\\x");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
    out
}

/// The inverse of [`escape`]; refuses every spelling [`escape`] does not produce.
pub(crate) fn unescape(s: &str) -> Result<Vec<u8>, &'static str> {
    fn hex(d: u8) -> Option<u8> {
        match d {
            b'0'..=b'9' => Some(d - b'0'),
            b'a'..=b'f' => Some(d - b'a' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some(b'\\') => out.push(b'\\'),
                Some(b'x') => {
                    let (Some(hi), Some(lo)) =
                        (bytes.next().and_then(hex), bytes.next().and_then(hex))
                    else {
                        return Err("`\\x` must be followed by two lowercase hex digits");
                    };
                    let v = hi << 4 | lo;
                    if (0x21..=0x7e).contains(&v) && v != b'\\' {
                        return Err("a printable character is escaped");
                    }
                    out.push(v);
                }
                _ => return Err("unknown escape (only `\\\\` and `\\xHH`)"),
            },
            0x21..=0x7e => out.push(b),
            _ => return Err("unescaped space, control or non-ASCII character"),
        }
    }
    Ok(out)
}

/// Parses a path as a layer names it (an entry, a hard-link target, a
/// deletion) into a relative path of normal components. `.` components,
/// empty components and a trailing `/` are dropped; absolute paths, `..`
/// and NUL are refused.
pub(crate) fn layer_path(raw: &[u8]) -> Result<PathBuf, &'static str> {
    use std::os::unix::ffi::OsStrExt as _;
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    if raw.contains(&0) {
        return Err("NUL in path");
    }
    let mut path = PathBuf::new();
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err("`..` component"),
            name => path.push(std::ffi::OsStr::from_bytes(name)),
        }
    }
    if path.as_os_str().is_empty() {
        return Err("empty path (names the root itself)");
    }
    Ok(path)
}

/// Counts what goes through a writer and hashes it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, the hex SHA-256 and the count of what was written.
    pub(crate) fn into_parts(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let written = buf.get(..n).unwrap_or(buf);
        self.hasher.update(written);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts what goes through a reader and hashes it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The hex SHA-256 and the count of what was read.
    pub(crate) fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = buf.get(..n).unwrap_or(buf);
        self.hasher.update(read);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let escaped = escape(&all);
        assert!(!escaped.contains([' ', '\t', '\n']));
        assert_eq!(unescape(&escaped).unwrap(), all);
        assert_eq!(escape(b"a b\\c\n"), "a\\x20b\\\\c\\x0a");
    }

    #[test]
    fn unescape_refuses_non_canonical_spellings() {
        for bad in ["\\x41", "\\x0A", "\\n", "\\x4", "a b", "é"] {
            assert!(unescape(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn layer_paths() {
        assert_eq!(layer_path(b"./a//b/").unwrap(), Path::new("a/b"));
        assert_eq!(layer_path(b"/abs").unwrap_err(), "absolute path");
        assert_eq!(layer_path(b"a/../b").unwrap_err(), "`..` component");
        assert!(layer_path(b"./").is_err());
        assert!(layer_path(b"").is_err());
        assert!(layer_path(b"a\0b").is_err());
    }
}

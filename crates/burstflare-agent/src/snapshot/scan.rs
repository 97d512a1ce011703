//! [`scan`]: walks the persisted paths into a [`Manifest`] and a [`BlobIndex`].
//!
//! The walk never follows a symlink (every entry is `lstat`ed, every file
//! opened with `O_NOFOLLOW`) and never leaves the root's filesystem. Each
//! directory's children are visited in byte order of their names, depth
//! first, so parents come before children and the same tree always gives the
//! same manifest. What a restore would refuse is left out and listed in
//! [`Manifest::skipped`] with a reason instead, so a scan's manifest always
//! passes [`validate`](burstflare_domain::snapshot::validate) with its roots
//! as the allowed roots (within the limits given to [`scan_with_limits`];
//! entry count and total size are not trimmed to fit):
//!
//! * a root that does not exist (`does not exist`; it is left out of
//!   `roots`, so a restore leaves it alone), or is not a directory;
//! * sockets, FIFOs and devices;
//! * anything on another filesystem (`another filesystem`), with its contents;
//! * symlinks that point outside their root (`points outside the persisted path`);
//! * names that are not UTF-8, paths and targets over the path limit, files
//!   over the per-file limit;
//! * files that keep changing while they are hashed (three tries).
//!
//! Entries that vanish during the walk are left out silently. Roots nested in
//! another root are folded into the outer one
//! ([`collapse_roots`](burstflare_domain::snapshot::collapse_roots)); what the
//! outer walk skips as another filesystem is then not snapshotted.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use burstflare_domain::snapshot::{self as domain, Entry, FORMAT, Kind, Limits, Manifest, Skipped};
use rustix::fs::{Mode, OFlags};
use sha2::{Digest as _, Sha256};

use super::hashcache::{FileKey, HashCache};
use super::{BUF_SIZE, SnapshotError, io_err, read_some};

/// Tries to hash a file that changes while it is read.
const HASH_TRIES: usize = 3;

/// What [`scan`] found: the manifest, and where to read each blob.
#[derive(Debug, Clone)]
pub struct Scan {
    pub manifest: Manifest,
    pub index: BlobIndex,
}

/// Where the content of each blob of a scan is: digest → the first file
/// scanned with that content, and its size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobIndex {
    blobs: BTreeMap<String, BlobSource>,
}

/// A file holding a blob's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSource {
    /// Absolute path.
    pub path: PathBuf,
    /// Size at scan time.
    pub size: u64,
}

impl BlobIndex {
    /// Where the blob with this digest is.
    pub fn get(&self, digest: &str) -> Option<&BlobSource> {
        self.blobs.get(digest)
    }

    /// The digests, in order.
    pub fn digests(&self) -> impl Iterator<Item = &str> {
        self.blobs.keys().map(String::as_str)
    }

    /// Distinct blobs.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Whether there is no blob.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Sum of the sizes of the distinct blobs.
    pub fn total_bytes(&self) -> u64 {
        self.blobs.values().map(|b| b.size).sum()
    }

    /// Records a blob; the first path wins.
    fn insert(&mut self, digest: String, path: PathBuf, size: u64) {
        self.blobs
            .entry(digest)
            .or_insert(BlobSource { path, size });
    }
}

/// Scans `roots` (absolute, normalised) with the default [`Limits`]; see
/// [`scan_with_limits`].
pub fn scan(roots: &[PathBuf], cache: &mut HashCache) -> Result<Scan, SnapshotError> {
    scan_with_limits(roots, cache, &Limits::default())
}

/// Scans `roots` (absolute, normalised, UTF-8) into a manifest and a blob
/// index (rules in the module docs). `limits` bounds path lengths and file
/// sizes (what exceeds them is skipped). `cache` supplies the digests of
/// unchanged files and counts hits and misses.
pub fn scan_with_limits(
    roots: &[PathBuf],
    cache: &mut HashCache,
    limits: &Limits,
) -> Result<Scan, SnapshotError> {
    let mut names = Vec::with_capacity(roots.len());
    for root in roots {
        let invalid = |reason| SnapshotError::InvalidRoot {
            root: root.display().to_string(),
            reason,
        };
        let name = root.to_str().ok_or_else(|| invalid("not UTF-8"))?;
        if domain::normalize_root(name).as_deref() != Some(name) {
            return Err(invalid(
                "not a normalised absolute path (no trailing `/`, no empty, `.` or `..` components, not `/`)",
            ));
        }
        names.push(name.to_owned());
    }
    cache.begin_scan();
    let mut walker = Walker {
        limits,
        cache,
        manifest: Manifest {
            format: FORMAT,
            roots: Vec::new(),
            entries: Vec::new(),
            skipped: Vec::new(),
        },
        index: BlobIndex::default(),
        buf: vec![0u8; BUF_SIZE],
    };
    for root in domain::collapse_roots(&names) {
        walker.root(root)?;
    }
    Ok(Scan {
        manifest: walker.manifest,
        index: walker.index,
    })
}

struct Walker<'a> {
    limits: &'a Limits,
    cache: &'a mut HashCache,
    manifest: Manifest,
    index: BlobIndex,
    buf: Vec<u8>,
}

/// A directory being walked.
struct Dir {
    abs: PathBuf,
    /// Relative to the root; empty for the root.
    rel: String,
    children: std::vec::IntoIter<OsString>,
}

/// What hashing a file gave.
enum Hashed {
    File { digest: String, meta: fs::Metadata },
    Skip(String),
    Vanished,
}

impl Walker<'_> {
    fn skip(&mut self, path: &Path, reason: impl Into<String>) {
        self.manifest.skipped.push(Skipped {
            path: path.to_string_lossy().into_owned(),
            reason: reason.into(),
        });
    }

    fn root(&mut self, root: String) -> Result<(), SnapshotError> {
        let abs = PathBuf::from(&root);
        let meta = match fs::symlink_metadata(&abs) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.skip(&abs, "does not exist");
                return Ok(());
            }
            Err(e) => return Err(io_err(&abs, "stat")(e)),
        };
        if meta.is_symlink() {
            self.skip(&abs, "is a symlink, not a directory");
            return Ok(());
        }
        if !meta.is_dir() {
            self.skip(&abs, "is not a directory");
            return Ok(());
        }
        let index = u32::try_from(self.manifest.roots.len()).unwrap_or(u32::MAX);
        self.manifest.roots.push(root.clone());
        let dev = meta.dev();
        let Some(children) = list(&abs)? else {
            return Ok(());
        };
        let mut stack = vec![Dir {
            abs,
            rel: String::new(),
            children,
        }];
        while let Some(dir) = stack.last_mut() {
            let Some(name) = dir.children.next() else {
                stack.pop();
                continue;
            };
            let abs = dir.abs.join(&name);
            let Some(name) = name.to_str() else {
                self.skip(&abs, "the name is not UTF-8");
                continue;
            };
            let rel = if dir.rel.is_empty() {
                name.to_owned()
            } else {
                format!("{}/{name}", dir.rel)
            };
            if rel.len() > self.limits.max_path_bytes {
                let reason = format!(
                    "the path is longer than {} bytes",
                    self.limits.max_path_bytes
                );
                self.skip(&abs, reason);
                continue;
            }
            let meta = match fs::symlink_metadata(&abs) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&abs, "stat")(e)),
            };
            if meta.dev() != dev {
                self.skip(&abs, "another filesystem");
                continue;
            }
            let entry = |kind| Entry {
                root: index,
                path: rel.clone(),
                kind,
                mode: meta.mode() & 0o7777,
                mtime: meta.mtime(),
                size: 0,
                sha256: None,
                target: None,
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                self.manifest.entries.push(entry(Kind::Dir));
                // A directory that vanishes now stays listed, empty.
                if let Some(children) = list(&abs)? {
                    stack.push(Dir { abs, rel, children });
                }
            } else if ft.is_file() {
                if meta.size() > self.limits.max_file_bytes {
                    let reason = format!(
                        "larger than the limit of {} bytes per file",
                        self.limits.max_file_bytes
                    );
                    self.skip(&abs, reason);
                    continue;
                }
                match self.hash(&abs, dev)? {
                    Hashed::File { digest, meta } => {
                        self.index.insert(digest.clone(), abs, meta.size());
                        self.manifest.entries.push(Entry {
                            root: index,
                            path: rel,
                            kind: Kind::File,
                            mode: meta.mode() & 0o7777,
                            mtime: meta.mtime(),
                            size: meta.size(),
                            sha256: Some(digest),
                            target: None,
                        });
                    }
                    Hashed::Skip(reason) => self.skip(&abs, reason),
                    Hashed::Vanished => {}
                }
            } else if ft.is_symlink() {
                let target = match fs::read_link(&abs) {
                    Ok(target) => target,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&abs, "read the symlink")(e)),
                };
                let Some(target) = target.to_str() else {
                    self.skip(&abs, "the symlink target is not UTF-8");
                    continue;
                };
                if target.len() > self.limits.max_path_bytes {
                    let reason = format!(
                        "the symlink target is longer than {} bytes",
                        self.limits.max_path_bytes
                    );
                    self.skip(&abs, reason);
                    continue;
                }
                let parent = domain::parent_of(&rel).unwrap_or("");
                if domain::resolve_symlink(parent, target, &root).is_none() {
                    let reason = format!("points outside the persisted path (to `{target}`)");
                    self.skip(&abs, reason);
                    continue;
                }
                self.manifest.entries.push(Entry {
                    target: Some(target.to_owned()),
                    ..entry(Kind::Symlink)
                });
            } else {
                let reason = if ft.is_fifo() {
                    "is a FIFO"
                } else if ft.is_socket() {
                    "is a socket"
                } else if ft.is_char_device() {
                    "is a character device"
                } else if ft.is_block_device() {
                    "is a block device"
                } else {
                    "is of an unknown file type"
                };
                self.skip(&abs, reason);
            }
        }
        Ok(())
    }

    /// The digest of a regular file: from the cache, or hashed. A file that
    /// changes while it is read is read again.
    fn hash(&mut self, abs: &Path, dev: u64) -> Result<Hashed, SnapshotError> {
        for _ in 0..HASH_TRIES {
            // O_NONBLOCK: a FIFO that replaced the file must not block the open.
            let fd = match rustix::fs::open(
                abs,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => return Ok(Hashed::Vanished),
                // Replaced by a symlink since the `lstat`.
                Err(rustix::io::Errno::LOOP) => continue,
                Err(e) => return Err(super::errno(abs, "open", e)),
            };
            let mut file = File::from(fd);
            let before = file.metadata().map_err(io_err(abs, "stat"))?;
            if !before.is_file() {
                continue;
            }
            if before.dev() != dev {
                return Ok(Hashed::Skip("another filesystem".to_owned()));
            }
            let key = FileKey::of(&before);
            if let Some(digest) = self.cache.lookup(&key) {
                return Ok(Hashed::File {
                    digest,
                    meta: before,
                });
            }
            let start = SystemTime::now();
            let mut hasher = Sha256::new();
            let mut read = 0u64;
            loop {
                let n = read_some(&mut file, &mut self.buf).map_err(io_err(abs, "read"))?;
                if n == 0 {
                    break;
                }
                hasher.update(self.buf.get(..n).unwrap_or_default());
                read += n as u64;
            }
            let after = file.metadata().map_err(io_err(abs, "stat"))?;
            if FileKey::of(&after) == key && read == key.size {
                let digest = hex::encode(hasher.finalize());
                self.cache.insert(key, &digest, start);
                return Ok(Hashed::File {
                    digest,
                    meta: before,
                });
            }
        }
        Ok(Hashed::Skip(format!(
            "kept changing while it was read ({HASH_TRIES} tries)"
        )))
    }
}

/// The names in a directory, sorted by bytes; `None` if it vanished.
fn list(dir: &Path) -> Result<Option<std::vec::IntoIter<OsString>>, SnapshotError> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(dir, "list")(e)),
    };
    let mut names = Vec::new();
    for entry in read {
        names.push(entry.map_err(io_err(dir, "list"))?.file_name());
    }
    names.sort();
    Ok(Some(names.into_iter()))
}

/// Hashes a whole reader (tests and tools).
#[cfg(test)]
pub(crate) fn sha256_hex(mut r: impl io::Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
}

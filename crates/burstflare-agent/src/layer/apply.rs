//! [`apply`]: extracts a layer over a tree, safely (rules in the [`super`]
//! docs).
//!
//! Every operation is relative to a directory descriptor reached from the
//! root's descriptor one component at a time with `O_NOFOLLOW`, so a symlink
//! in the way is an error, never a detour, even if the tree changes while the
//! layer is applied. Each entry is validated (path, type, header fields,
//! limits) before anything is written for it; the deletions list is validated
//! whole before anything is deleted. Directory modes and mtimes are set last,
//! deepest first, so that read-only directories can still be filled and their
//! mtimes are not disturbed by their contents. Ownership is applied only when
//! running as root.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{self, Read, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;
use serde::Serialize;
use tar::EntryType;

use super::{
    BUF_SIZE, CONTROL_DIR, DELETIONS_ENTRY, Excludes, HashingReader, LayerError, escape,
    layer_path, rejected, unescape,
};

/// Bounds on what a layer may hold; exceeding one is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyLimits {
    /// Entries of the archive (directories, files, links, the deletions list).
    pub max_entries: u64,
    /// Size of the uncompressed tar stream (headers and contents); compare
    /// [`super::CaptureSummary::bytes_uncompressed`].
    pub max_total_bytes: u64,
}

impl Default for ApplyLimits {
    /// One million entries, 16 GiB.
    fn default() -> Self {
        Self {
            max_entries: 1_000_000,
            max_total_bytes: 16 << 30,
        }
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplySummary {
    /// Archive entries read.
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Listed deletions that existed and were removed.
    pub deleted: u64,
    /// Size of the uncompressed tar stream.
    pub bytes_uncompressed: u64,
    /// Bytes read from `input`.
    pub size_compressed: u64,
    /// Lowercase hex SHA-256 of the bytes read from `input`; compare with
    /// [`super::CaptureSummary::sha256_of_compressed_output`].
    pub sha256_of_compressed_input: String,
}

/// Extracts the layer read from `input` over the tree under `root`, then
/// applies its deletions. On error, what was written before the offending
/// entry stays (a layer is applied to a fresh container, thrown away on
/// failure); nothing is ever written outside `root`.
pub fn apply(
    root: &Path,
    input: impl Read,
    limits: &ApplyLimits,
) -> Result<ApplySummary, LayerError> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(root, "open the root", e))?;
    let meter = Rc::new(Meter {
        bytes: Cell::new(0),
        exceeded: Cell::new(false),
        limit: limits.max_total_bytes,
    });
    let decoder =
        zstd::stream::read::Decoder::new(HashingReader::new(input)).map_err(LayerError::Read)?;
    let mut archive = tar::Archive::new(Metered {
        inner: decoder,
        meter: Rc::clone(&meter),
    });
    let mut applier = Applier {
        root,
        root_fd,
        owner: crate::user::is_root(),
        protected: Excludes::production(),
        meter: Rc::clone(&meter),
        written: HashSet::new(),
        dirs: Vec::new(),
        deletions: None,
        summary: ApplySummary::default(),
        buf: vec![0u8; BUF_SIZE],
    };
    for entry in archive.entries().map_err(|e| meter.error(e))? {
        let mut entry = entry.map_err(|e| meter.error(e))?;
        applier.summary.entries += 1;
        if applier.summary.entries > limits.max_entries {
            return Err(LayerError::Limit {
                what: "entries",
                limit: limits.max_entries,
            });
        }
        if meter.bytes.get().saturating_add(entry.size()) > limits.max_total_bytes {
            return Err(meter.exceeded());
        }
        applier.entry(&mut entry)?;
    }
    // Reading to the end checks the zstd checksum and hashes all of the input.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| meter.error(e))?;
    applier.apply_deletions()?;
    applier.finish_dirs()?;
    let (sha256, size) = rest.inner.finish().into_inner().finish();
    let mut summary = applier.summary;
    summary.bytes_uncompressed = meter.bytes.get();
    summary.sha256_of_compressed_input = sha256;
    summary.size_compressed = size;
    Ok(summary)
}

fn io(path: &Path, action: &'static str, errno: Errno) -> LayerError {
    LayerError::Io {
        path: path.to_path_buf(),
        action,
        source: errno.into(),
    }
}

/// Counts the uncompressed stream against the byte limit.
struct Meter {
    bytes: Cell<u64>,
    exceeded: Cell<bool>,
    limit: u64,
}

impl Meter {
    fn exceeded(&self) -> LayerError {
        LayerError::Limit {
            what: "bytes uncompressed",
            limit: self.limit,
        }
    }

    /// A read error: the limit when that is what stopped the reader.
    fn error(&self, e: io::Error) -> LayerError {
        if self.exceeded.get() {
            self.exceeded()
        } else {
            LayerError::Read(e)
        }
    }
}

struct Metered<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.meter.bytes.get().saturating_add(n as u64);
        self.meter.bytes.set(total);
        if total > self.meter.limit {
            self.meter.exceeded.set(true);
            return Err(io::Error::other("the layer exceeds max_total_bytes"));
        }
        Ok(n)
    }
}

/// Mode, owner and mtime of an entry, from its header (and PAX `mtime`).
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
}

impl Meta {
    fn timestamps(&self) -> Timestamps {
        Timestamps {
            last_access: self.mtime,
            last_modification: self.mtime,
        }
    }
}

struct Applier<'a> {
    root: &'a Path,
    root_fd: OwnedFd,
    /// Running as root: apply ownership.
    owner: bool,
    protected: Excludes,
    meter: Rc<Meter>,
    /// Regular files written by this layer: the only hard-link targets.
    written: HashSet<PathBuf>,
    /// Directories of the layer, in archive order, with mode and mtime.
    dirs: Vec<(PathBuf, Mode, Timestamps)>,
    deletions: Option<Vec<u8>>,
    summary: ApplySummary,
    buf: Vec<u8>,
}

impl Applier<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), LayerError> {
        let raw = entry.path_bytes().into_owned();
        let path = layer_path(&raw).map_err(|reason| rejected(&raw, reason))?;
        let kind = entry.header().entry_type();
        if path.starts_with(CONTROL_DIR) {
            if path == Path::new(DELETIONS_ENTRY)
                && kind == EntryType::Regular
                && self.deletions.is_none()
            {
                let mut list = Vec::new();
                entry
                    .read_to_end(&mut list)
                    .map_err(|e| self.meter.error(e))?;
                self.deletions = Some(list);
                return Ok(());
            }
            return Err(rejected(
                &raw,
                format!(
                    "`{CONTROL_DIR}` is reserved: it holds one regular file, `{DELETIONS_ENTRY}`"
                ),
            ));
        }
        if self.protected.matches(&path) {
            return Err(rejected(
                &raw,
                "excluded from layers (kernel filesystems, Docker's mounts, per-session files)",
            ));
        }
        match kind {
            EntryType::Regular => {
                let meta = self.meta(&raw, entry)?;
                self.file(&path, &raw, entry, &meta)
            }
            EntryType::Directory => {
                let meta = self.meta(&raw, entry)?;
                self.dir(&path, &raw, &meta)
            }
            EntryType::Symlink => {
                let meta = self.meta(&raw, entry)?;
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| rejected(&raw, "symlink without a target"))?;
                if target.contains(&0) {
                    return Err(rejected(&raw, "NUL in the symlink target"));
                }
                self.symlink(&path, &raw, &target, &meta)
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .ok_or_else(|| rejected(&raw, "hard link without a target"))?;
                self.hardlink(&path, &raw, &target)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => Err(rejected(
                &raw,
                "device and FIFO entries are never part of a layer",
            )),
            other => Err(rejected(&raw, format!("unsupported entry type {other:?}"))),
        }
    }

    fn meta<R: Read>(&self, raw: &[u8], entry: &mut tar::Entry<'_, R>) -> Result<Meta, LayerError> {
        let header = entry.header();
        let bad = |field: &str, e: io::Error| {
            rejected(raw, format!("invalid {field} in the header: {e}"))
        };
        let mode = header.mode().map_err(|e| bad("mode", e))? & 0o7777;
        let id = |v: u64, field: &str| {
            u32::try_from(v)
                .ok()
                .filter(|v| *v != u32::MAX)
                .ok_or_else(|| rejected(raw, format!("{field} {v} is out of range")))
        };
        let uid = id(header.uid().map_err(|e| bad("uid", e))?, "uid")?;
        let gid = id(header.gid().map_err(|e| bad("gid", e))?, "gid")?;
        let secs = header.mtime().map_err(|e| bad("mtime", e))?;
        let mut mtime = Timespec {
            tv_sec: i64::try_from(secs).map_err(|_| rejected(raw, "mtime out of range"))?,
            tv_nsec: 0,
        };
        if let Some(extensions) = entry.pax_extensions().map_err(|e| self.meter.error(e))? {
            for extension in extensions {
                let extension =
                    extension.map_err(|e| rejected(raw, format!("invalid PAX header: {e}")))?;
                if extension.key_bytes() == b"mtime" {
                    mtime = parse_pax_time(extension.value_bytes()).ok_or_else(|| {
                        rejected(
                            raw,
                            format!("invalid PAX mtime `{}`", escape(extension.value_bytes())),
                        )
                    })?;
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
        })
    }

    fn file<R: Read>(
        &mut self,
        path: &Path,
        raw: &[u8],
        entry: &mut tar::Entry<'_, R>,
        meta: &Meta,
    ) -> Result<(), LayerError> {
        let (parent, name) = self
            .parent(path, raw, true)?
            .ok_or_else(|| rejected(raw, "vanished"))?;
        self.clear(&parent, name, path, false)?;
        let at = self.root.join(path);
        let fd = rustix::fs::openat(
            &parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io(&at, "create", e))?;
        let mut file = File::from(fd);
        let expected = entry.size();
        let mut copied = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.meter.error(e)),
            };
            file.write_all(self.buf.get(..n).unwrap_or_default())
                .map_err(super::io_err(&at, "write"))?;
            copied += n as u64;
        }
        if copied != expected {
            return Err(LayerError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("`{}`: {copied} of {expected} bytes", escape(raw)),
            )));
        }
        if self.owner {
            rustix::fs::fchown(
                &file,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(|e| io(&at, "chown", e))?;
        }
        // After chown, which clears setuid and setgid.
        rustix::fs::fchmod(&file, Mode::from_raw_mode(meta.mode))
            .map_err(|e| io(&at, "chmod", e))?;
        rustix::fs::futimens(&file, &meta.timestamps())
            .map_err(|e| io(&at, "set the mtime of", e))?;
        self.written.insert(path.to_path_buf());
        self.summary.files += 1;
        Ok(())
    }

    fn dir(&mut self, path: &Path, raw: &[u8], meta: &Meta) -> Result<(), LayerError> {
        let (parent, name) = self
            .parent(path, raw, true)?
            .ok_or_else(|| rejected(raw, "vanished"))?;
        let at = self.root.join(path);
        if !self.clear(&parent, name, path, true)? {
            // Owner-only until `finish_dirs` sets the real mode.
            rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700))
                .map_err(|e| io(&at, "create the directory", e))?;
        }
        if self.owner {
            rustix::fs::chownat(
                &parent,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io(&at, "chown", e))?;
        }
        self.dirs.push((
            path.to_path_buf(),
            Mode::from_raw_mode(meta.mode),
            meta.timestamps(),
        ));
        self.summary.dirs += 1;
        Ok(())
    }

    fn symlink(
        &mut self,
        path: &Path,
        raw: &[u8],
        target: &[u8],
        meta: &Meta,
    ) -> Result<(), LayerError> {
        let (parent, name) = self
            .parent(path, raw, true)?
            .ok_or_else(|| rejected(raw, "vanished"))?;
        let at = self.root.join(path);
        self.clear(&parent, name, path, false)?;
        rustix::fs::symlinkat(OsStr::from_bytes(target), &parent, name)
            .map_err(|e| io(&at, "create the symlink", e))?;
        if self.owner {
            rustix::fs::chownat(
                &parent,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io(&at, "chown", e))?;
        }
        rustix::fs::utimensat(&parent, name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io(&at, "set the mtime of", e))?;
        self.summary.symlinks += 1;
        Ok(())
    }

    fn hardlink(&mut self, path: &Path, raw: &[u8], raw_target: &[u8]) -> Result<(), LayerError> {
        let target = layer_path(raw_target).map_err(|reason| {
            rejected(
                raw,
                format!("hard link target `{}`: {reason}", escape(raw_target)),
            )
        })?;
        if !self.written.contains(&target) || target == path {
            return Err(rejected(
                raw,
                format!(
                    "hard link to `{}`, which is not a regular file written earlier by this layer",
                    escape(raw_target)
                ),
            ));
        }
        let (source_parent, source_name) = self.parent(&target, raw, false)?.ok_or_else(|| {
            rejected(
                raw,
                format!("hard link target `{}` is gone", escape(raw_target)),
            )
        })?;
        let (parent, name) = self
            .parent(path, raw, true)?
            .ok_or_else(|| rejected(raw, "vanished"))?;
        self.clear(&parent, name, path, false)?;
        rustix::fs::linkat(&source_parent, source_name, &parent, name, AtFlags::empty())
            .map_err(|e| io(&self.root.join(path), "create the hard link", e))?;
        self.written.insert(path.to_path_buf());
        self.summary.hardlinks += 1;
        Ok(())
    }

    /// The parent directory of `path` and its last component. Walks from the
    /// root without following symlinks; a symlink or non-directory in the way
    /// is refused. A missing directory is created (mode 0755) when `create`,
    /// else the answer is `None`.
    fn parent<'p>(
        &self,
        path: &'p Path,
        raw: &[u8],
        create: bool,
    ) -> Result<Option<(OwnedFd, &'p OsStr)>, LayerError> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut components: Vec<&OsStr> = path.iter().collect();
        let name = components
            .pop()
            .ok_or_else(|| rejected(raw, "empty path"))?;
        let mut dir = rustix::fs::openat(&self.root_fd, ".", flags, Mode::empty())
            .map_err(|e| io(self.root, "open the root", e))?;
        let mut walked = PathBuf::new();
        for component in components {
            walked.push(component);
            let next = match rustix::fs::openat(&dir, component, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&dir, component, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => {
                            return Err(io(&self.root.join(&walked), "create the directory", e));
                        }
                    }
                    rustix::fs::openat(&dir, component, flags, Mode::empty())
                        .map_err(|e| self.walk_error(dir.as_fd(), component, &walked, raw, e))?
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(e) => return Err(self.walk_error(dir.as_fd(), component, &walked, raw, e)),
            };
            let stat =
                rustix::fs::fstat(&next).map_err(|e| io(&self.root.join(&walked), "stat", e))?;
            if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
                return Err(not_a_dir(raw, &walked));
            }
            dir = next;
        }
        Ok(Some((dir, name)))
    }

    fn walk_error(
        &self,
        dir: BorrowedFd<'_>,
        component: &OsStr,
        walked: &Path,
        raw: &[u8],
        e: Errno,
    ) -> LayerError {
        if e != Errno::NOTDIR && e != Errno::LOOP {
            return io(&self.root.join(walked), "open the directory", e);
        }
        match rustix::fs::statat(dir, component, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => rejected(
                raw,
                format!(
                    "`{}` is a symlink; a layer never writes through one",
                    escape(walked.as_os_str().as_bytes())
                ),
            ),
            _ => not_a_dir(raw, walked),
        }
    }

    /// Makes room for `name` in `parent`: removes what is there (a directory
    /// recursively), except a directory when `keep_dir`. Whether a directory
    /// was kept.
    fn clear(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        path: &Path,
        keep_dir: bool,
    ) -> Result<bool, LayerError> {
        let at = self.root.join(path);
        let stat = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(io(&at, "stat", e)),
        };
        self.written.remove(path);
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            if keep_dir {
                return Ok(true);
            }
            remove_tree(parent.as_fd(), name, &at)?;
        } else {
            rustix::fs::unlinkat(parent, name, AtFlags::empty())
                .map_err(|e| io(&at, "remove", e))?;
        }
        Ok(false)
    }

    /// Validates the whole deletions list, then deletes; missing paths are fine.
    fn apply_deletions(&mut self) -> Result<(), LayerError> {
        let Some(list) = self.deletions.take() else {
            return Ok(());
        };
        let reject = |line: usize, shown: &[u8], reason: &str| {
            rejected(
                DELETIONS_ENTRY.as_bytes(),
                format!("line {line}, `{}`: {reason}", escape(shown)),
            )
        };
        let mut paths = Vec::new();
        for (i, line) in list.split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let text = std::str::from_utf8(line)
                .map_err(|_| reject(i + 1, line, "not an escaped path"))?;
            let raw = unescape(text).map_err(|reason| reject(i + 1, line, reason))?;
            let path = layer_path(&raw).map_err(|reason| reject(i + 1, &raw, reason))?;
            if path.starts_with(CONTROL_DIR) || self.protected.matches(&path) {
                return Err(reject(i + 1, &raw, "excluded from layers"));
            }
            paths.push((path, raw));
        }
        for (path, raw) in paths {
            let Some((parent, name)) = self.parent(&path, &raw, false)? else {
                continue;
            };
            let at = self.root.join(&path);
            let stat = match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(io(&at, "stat", e)),
            };
            if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
                remove_tree(parent.as_fd(), name, &at)?;
            } else {
                rustix::fs::unlinkat(&parent, name, AtFlags::empty())
                    .map_err(|e| io(&at, "remove", e))?;
            }
            self.summary.deleted += 1;
        }
        Ok(())
    }

    /// Sets the mode and mtime of the layer's directories, deepest first.
    fn finish_dirs(&mut self) -> Result<(), LayerError> {
        let dirs = std::mem::take(&mut self.dirs);
        for (path, mode, times) in dirs.into_iter().rev() {
            let raw = path.as_os_str().as_bytes().to_vec();
            let Some((parent, name)) = self.parent(&path, &raw, false)? else {
                continue;
            };
            let at = self.root.join(&path);
            match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                Ok(_) | Err(Errno::NOENT) => continue,
                Err(e) => return Err(io(&at, "stat", e)),
            }
            rustix::fs::chmodat(&parent, name, mode, AtFlags::empty())
                .map_err(|e| io(&at, "chmod", e))?;
            rustix::fs::utimensat(&parent, name, &times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io(&at, "set the mtime of", e))?;
        }
        Ok(())
    }
}

fn not_a_dir(raw: &[u8], walked: &Path) -> LayerError {
    rejected(
        raw,
        format!(
            "`{}` is not a directory",
            escape(walked.as_os_str().as_bytes())
        ),
    )
}

/// Removes the directory `name` in `parent` and everything under it, without
/// following symlinks or entering another filesystem.
fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr, at: &Path) -> Result<(), LayerError> {
    let parent_dev = rustix::fs::fstat(parent)
        .map_err(|e| io(at, "stat the parent of", e))?
        .st_dev;
    let dir = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(at, "open the directory", e))?;
    let stat = rustix::fs::fstat(&dir).map_err(|e| io(at, "stat", e))?;
    if stat.st_dev != parent_dev {
        return Err(LayerError::Io {
            path: at.to_path_buf(),
            action: "remove",
            source: io::Error::other(
                "it is a mount point; a layer never removes across filesystems",
            ),
        });
    }
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir).map_err(|e| io(at, "read the directory", e))? {
        let entry = entry.map_err(|e| io(at, "read the directory", e))?;
        let child: &CStr = entry.file_name();
        if child != c"." && child != c".." {
            names.push(child.to_owned());
        }
    }
    for child in names {
        let child_name = OsStr::from_bytes(child.to_bytes());
        let child_at = at.join(child_name);
        match rustix::fs::statat(&dir, child.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                remove_tree(dir.as_fd(), child_name, &child_at)?;
            }
            Ok(_) => rustix::fs::unlinkat(&dir, child.as_c_str(), AtFlags::empty())
                .map_err(|e| io(&child_at, "remove", e))?,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(io(&child_at, "stat", e)),
        }
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)
        .map_err(|e| io(at, "remove the directory", e))
}

/// Parses a PAX time, `[-]seconds[.fraction]`, to the nanosecond.
fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let negative = secs.starts_with('-');
    let mut tv_sec: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut tv_nsec: i64 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        tv_nsec += i64::from(d - b'0') * 10i64.pow(8 - i as u32);
    }
    if negative && tv_nsec > 0 {
        tv_sec -= 1;
        tv_nsec = 1_000_000_000 - tv_nsec;
    }
    Some(Timespec { tv_sec, tv_nsec })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        let t = |s: &str| parse_pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(
            t("1700000000.123456789"),
            Some((1_700_000_000, 123_456_789))
        );
        assert_eq!(t("12.5"), Some((12, 500_000_000)));
        assert_eq!(t("12"), Some((12, 0)));
        assert_eq!(t("12.1234567891"), Some((12, 123_456_789)));
        assert_eq!(t("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(t("x"), None);
        assert_eq!(t("1.x"), None);
    }
}

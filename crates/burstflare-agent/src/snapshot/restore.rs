//! [`restore`]: puts a snapshot back, all or nothing (algorithm in the
//! [`super`] docs).
//!
//! Entries are created inside fresh staging directories only, each relative
//! to a descriptor of its parent reached from the staging directory one
//! component at a time with `O_NOFOLLOW`; files are created with `O_EXCL`.
//! Validation guarantees every parent is a directory entry written earlier,
//! so nothing is ever written through a symlink, nor outside the staging
//! directories. Directory modes and mtimes are set last, deepest first, so
//! that filling a directory neither needs its final mode nor moves its mtime.

use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Read, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use burstflare_domain::snapshot::{self as domain, Kind, Limits, Manifest};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, RenameFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{BUF_SIZE, SnapshotError, errno, io_err, random_hex, read_some};

/// Who owns the restored tree, and the bounds the manifest must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Owner of every restored entry (and of a root created by the restore).
    pub uid: u32,
    pub gid: u32,
    pub limits: Limits,
}

/// What [`restore`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Content bytes written.
    pub bytes: u64,
}

/// Mode bits a restored entry keeps: permissions and sticky, never setuid or setgid.
const RESTORED_MODE_BITS: u32 = 0o1777;

/// Restores `manifest` with file contents read from `content` (the content
/// stream of the [`super`] docs) into its roots, each of which must be one of
/// `allowed_roots` exactly (paths that are not UTF-8 never match). All or
/// nothing: on error, the roots are as they were.
pub fn restore(
    manifest: &Manifest,
    allowed_roots: &[PathBuf],
    mut content: impl Read,
    opts: &RestoreOptions,
) -> Result<RestoreSummary, SnapshotError> {
    let allowed: Vec<String> = allowed_roots
        .iter()
        .filter_map(|p| p.to_str())
        .map(str::to_owned)
        .collect();
    domain::validate(manifest, &allowed, &opts.limits)?;

    let targets = manifest
        .roots
        .iter()
        .map(|root| Target::inspect(Path::new(root)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut staging = Staging::default();
    for target in targets {
        staging.add(target)?;
    }
    let summary = Builder::new(manifest, &staging, opts).build(&mut content)?;
    staging.finish_roots(opts)?;
    staging.swap()?;
    Ok(summary)
}

/// A root to restore, inspected before anything is written.
struct Target {
    root: PathBuf,
    parent: PathBuf,
    name: String,
    /// Mode (`& 0o7777`), uid and gid of the existing root.
    existing: Option<(u32, u32, u32)>,
}

impl Target {
    fn inspect(root: &Path) -> Result<Self, SnapshotError> {
        // Validation guarantees an absolute normalised path other than `/`.
        let (Some(parent), Some(name)) = (root.parent(), root.file_name().and_then(OsStr::to_str))
        else {
            return Err(SnapshotError::Unsuitable {
                path: root.to_path_buf(),
                reason: "not a restorable path",
            });
        };
        let unsuitable = |reason| SnapshotError::Unsuitable {
            path: parent.to_path_buf(),
            reason,
        };
        match fs::canonicalize(parent) {
            Ok(real) if real == parent => {}
            Ok(_) => {
                return Err(unsuitable(
                    "the parent of a persisted path must be a real directory, without symlinks",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(unsuitable("the parent of a persisted path does not exist"));
            }
            Err(e) => return Err(io_err(parent, "resolve")(e)),
        }
        let parent_meta = fs::symlink_metadata(parent).map_err(io_err(parent, "stat"))?;
        if !parent_meta.is_dir() {
            return Err(unsuitable(
                "the parent of a persisted path is not a directory",
            ));
        }
        let existing = match fs::symlink_metadata(root) {
            Ok(meta) if meta.is_dir() => {
                let mounts = mounts_within(root);
                if meta.dev() != parent_meta.dev() || mounts.iter().any(|m| m == root) {
                    return Err(SnapshotError::Unsuitable {
                        path: root.to_path_buf(),
                        reason: "is a mount point; a restore cannot replace it",
                    });
                }
                if let Some(mount) = mounts.into_iter().next() {
                    return Err(SnapshotError::Unsuitable {
                        path: mount,
                        reason: "a filesystem is mounted here, inside a persisted path; a restore would move it",
                    });
                }
                Some((meta.mode() & 0o7777, meta.uid(), meta.gid()))
            }
            Ok(_) => {
                return Err(SnapshotError::Unsuitable {
                    path: root.to_path_buf(),
                    reason: "is not a directory (a symlink or a file)",
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(root, "stat")(e)),
        };
        Ok(Self {
            root: root.to_path_buf(),
            parent: parent.to_path_buf(),
            name: name.to_owned(),
            existing,
        })
    }

    /// `{parent}/.{name}.bf-{what}-{random}`.
    fn sibling(&self, what: &str) -> Result<PathBuf, SnapshotError> {
        let random = random_hex().map_err(io_err(&self.parent, "name a temporary directory in"))?;
        Ok(self
            .parent
            .join(format!(".{}.bf-{what}-{random}", self.name)))
    }
}

/// A root and its staging directory.
struct Staged {
    target: Target,
    staging: PathBuf,
    /// The staging directory, open.
    fd: OwnedFd,
}

/// The staging directories of a restore; those not swapped in are removed on drop.
#[derive(Default)]
struct Staging {
    roots: Vec<Staged>,
    swapped: bool,
}

impl Staging {
    fn add(&mut self, target: Target) -> Result<(), SnapshotError> {
        let staging = target.sibling("restore")?;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(io_err(&staging, "create the staging directory"))?;
        let fd = rustix::fs::open(
            &staging,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let fd = match fd {
            Ok(fd) => fd,
            Err(e) => {
                remove_tree(&staging);
                return Err(errno(&staging, "open the staging directory", e));
            }
        };
        self.roots.push(Staged {
            target,
            staging,
            fd,
        });
        Ok(())
    }

    /// Gives each staged root the old root's mode and owner, or 0755 and the
    /// session user.
    fn finish_roots(&self, opts: &RestoreOptions) -> Result<(), SnapshotError> {
        for staged in &self.roots {
            let (mode, uid, gid) = staged
                .target
                .existing
                .unwrap_or((0o755, opts.uid, opts.gid));
            let at = &staged.staging;
            rustix::fs::fchown(
                &staged.fd,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
            )
            .map_err(|e| errno(at, "chown", e))?;
            rustix::fs::fchmod(&staged.fd, Mode::from_raw_mode(mode))
                .map_err(|e| errno(at, "chmod", e))?;
        }
        Ok(())
    }

    /// Swaps every staged root in; on failure, puts back those already swapped.
    fn swap(&mut self) -> Result<(), SnapshotError> {
        let mut olds: Vec<Swapped> = Vec::with_capacity(self.roots.len());
        for staged in &self.roots {
            match swap_one(staged) {
                Ok(old) => olds.push(old),
                Err(e) => {
                    for (done, old) in self.roots.iter().zip(&olds).rev() {
                        unswap(done, old);
                    }
                    return Err(e);
                }
            }
        }
        self.swapped = true;
        for (staged, old) in self.roots.iter().zip(olds) {
            match old {
                Swapped::Renamed(Some(old)) => remove_tree(&old),
                Swapped::Renamed(None) => {}
                Swapped::Contents(old) => {
                    remove_tree(&old);
                    // Emptied by the swap.
                    remove_tree(&staged.staging);
                }
            }
        }
        Ok(())
    }
}

/// How a root was replaced.
enum Swapped {
    /// The root itself was renamed aside (to the path, if it existed) and the
    /// staging directory renamed into its place.
    Renamed(Option<PathBuf>),
    /// The root could not be renamed (a directory from a lower overlayfs
    /// layer: `EXDEV` without `redirect_dir`), so its entries were: moved to
    /// this directory, or deleted when they could not be moved either; then
    /// the staged entries were moved in and the root took the staged root's
    /// mode and owner.
    Contents(PathBuf),
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.swapped {
            for staged in &self.roots {
                remove_tree(&staged.staging);
            }
        }
    }
}

/// Moves the root (if any) aside and the staging directory in; how.
fn swap_one(staged: &Staged) -> Result<Swapped, SnapshotError> {
    let root = &staged.target.root;
    let old = match staged.target.existing {
        Some(_) => {
            let old = staged.target.sibling("old")?;
            match fs::rename(root, &old) {
                Ok(()) => Some(old),
                Err(e) if e.raw_os_error() == Some(Errno::XDEV.raw_os_error()) => {
                    return swap_contents(staged, &old).map(|()| Swapped::Contents(old));
                }
                Err(e) => return Err(io_err(root, "move aside")(e)),
            }
        }
        None => None,
    };
    if let Err(e) = rename_noreplace(&staged.staging, root) {
        if let Some(old) = &old
            && let Err(back) = fs::rename(old, root)
        {
            tracing::error!(
                root = %root.display(), old = %old.display(), error = %back,
                "cannot put a persisted path back after a failed restore"
            );
        }
        return Err(io_err(root, "replace")(e));
    }
    Ok(Swapped::Renamed(old))
}

/// Names in `dir` (without `.` and `..`).
fn entries_of(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect()
}

/// [`Swapped::Contents`]: replaces what is inside the root rather than the
/// root. The staged tree is complete and checked by now; what can fail here
/// is the filesystem, and then the staged entries moved in so far go back
/// and the old ones that were moved aside return (those that had to be
/// deleted, directories that came with the image, do not).
fn swap_contents(staged: &Staged, old: &Path) -> Result<(), SnapshotError> {
    let root = &staged.target.root;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(old)
        .map_err(io_err(old, "create"))?;
    let current = entries_of(root).map_err(io_err(root, "list"))?;
    for name in &current {
        let from = root.join(name);
        match fs::rename(&from, old.join(name)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(Errno::XDEV.raw_os_error()) => {
                try_remove_tree(&from).map_err(io_err(&from, "remove"))?;
            }
            Err(e) => {
                put_back(old, root);
                return Err(io_err(&from, "move aside")(e));
            }
        }
    }
    let incoming = entries_of(&staged.staging).map_err(io_err(&staged.staging, "list"))?;
    for name in &incoming {
        if let Err(e) = rename_noreplace(&staged.staging.join(name), &root.join(name)) {
            put_back(root, &staged.staging);
            put_back(old, root);
            return Err(io_err(&root.join(name), "move in")(e));
        }
    }
    // The root takes the staged root's mode and owner.
    let meta = fs::symlink_metadata(&staged.staging).map_err(io_err(&staged.staging, "stat"))?;
    std::os::unix::fs::lchown(root, Some(meta.uid()), Some(meta.gid()))
        .map_err(io_err(root, "chown"))?;
    fs::set_permissions(
        root,
        std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777),
    )
    .map_err(io_err(root, "chmod"))?;
    Ok(())
}

/// Moves every entry of `from` back into `to`, best effort.
fn put_back(from: &Path, to: &Path) {
    for name in entries_of(from).unwrap_or_default() {
        if let Err(e) = fs::rename(from.join(&name), to.join(&name)) {
            tracing::error!(
                entry = %from.join(&name).display(), to = %to.display(), error = %e,
                "cannot undo a restore"
            );
        }
    }
}

/// Undoes [`swap_one`], best effort: the restored tree goes back to its
/// staging path (removed on drop), the old root (or its entries) to its place.
fn unswap(staged: &Staged, swapped: &Swapped) {
    let root = &staged.target.root;
    let old = match swapped {
        Swapped::Renamed(old) => old.as_deref(),
        Swapped::Contents(old) => {
            put_back(root, &staged.staging);
            put_back(old, root);
            remove_tree(old);
            return;
        }
    };
    if let Err(e) = fs::rename(root, &staged.staging) {
        tracing::error!(root = %root.display(), error = %e, "cannot undo a restore");
        return;
    }
    if let Some(old) = old
        && let Err(e) = fs::rename(old, root)
    {
        tracing::error!(
            root = %root.display(), old = %old.display(), error = %e,
            "cannot put a persisted path back after a failed restore"
        );
    }
}

/// `rename` that fails rather than replace something that appeared at `to`.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        RenameFlags::NOREPLACE,
    ) {
        Ok(()) => Ok(()),
        // The filesystem does not support the flag.
        Err(Errno::INVAL) => fs::rename(from, to),
        Err(e) => Err(e.into()),
    }
}

/// Removes a staging or old tree, never following a symlink nor entering
/// another filesystem (a mount inside is left in place); failures are logged.
fn remove_tree(path: &Path) {
    match try_remove_tree(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(
            path = %path.display(), error = %e,
            "cannot remove a restore's temporary tree"
        ),
    }
}

/// A directory being emptied by [`try_remove_tree`].
struct Emptying {
    fd: OwnedFd,
    names: std::vec::IntoIter<CString>,
    /// Its name in the directory below it on the stack; `None` for the top.
    name: Option<CString>,
}

pub(super) fn try_remove_tree(path: &Path) -> io::Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty())?;
    let dev = rustix::fs::fstat(&fd)?.st_dev;
    let names = dir_names(&fd)?;
    let mut stack = vec![Emptying {
        fd,
        names,
        name: None,
    }];
    let mut kept_mounts = false;
    while let Some(top) = stack.last_mut() {
        let Some(name) = top.names.next() else {
            let done = stack.pop();
            if let (Some(done), Some(parent)) = (done, stack.last()) {
                let Emptying { fd, name, .. } = done;
                drop(fd);
                if let Some(name) = name {
                    match rustix::fs::unlinkat(&parent.fd, &name, AtFlags::REMOVEDIR) {
                        Ok(()) | Err(Errno::NOENT) => {}
                        Err(Errno::NOTEMPTY) if kept_mounts => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            continue;
        };
        let stat = match rustix::fs::statat(&top.fd, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
            match rustix::fs::unlinkat(&top.fd, &name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        let child = rustix::fs::openat(&top.fd, &name, flags, Mode::empty())?;
        if stat.st_dev != dev || rustix::fs::fstat(&child)?.st_dev != dev {
            kept_mounts = true;
            tracing::warn!(
                tree = %path.display(), name = ?name,
                "not removing a filesystem mounted inside a restore's temporary tree"
            );
            continue;
        }
        let names = dir_names(&child)?;
        stack.push(Emptying {
            fd: child,
            names,
            name: Some(name),
        });
    }
    fs::remove_dir(path)
}

/// The names in a directory, but `.` and `..`, read before any is removed.
fn dir_names(fd: &OwnedFd) -> io::Result<std::vec::IntoIter<CString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(fd)? {
        let name = entry?.file_name().to_owned();
        if name.as_bytes() != b"." && name.as_bytes() != b".." {
            names.push(name);
        }
    }
    Ok(names.into_iter())
}

/// Mount points at or under `root`, from `/proc/self/mountinfo` (none when
/// it cannot be read: [`remove_tree`] still never enters a mount).
fn mounts_within(root: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| PathBuf::from(OsStr::from_bytes(&unescape_mountinfo(field))))
        .filter(|mount| mount.starts_with(root))
        .collect()
}

/// Undoes the octal escapes (`\040` for a space) of a mountinfo field.
pub(super) fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while let Some(&b) = field.get(i) {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0')));
        match octal.and_then(|v| u8::try_from(v).ok()) {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Writes the entries into the staging directories.
struct Builder<'a> {
    manifest: &'a Manifest,
    staging: &'a Staging,
    opts: &'a RestoreOptions,
    /// The last parent directory opened: root index, relative path, descriptor.
    parent: Option<(u32, String, OwnedFd)>,
    buf: Vec<u8>,
}

impl<'a> Builder<'a> {
    fn new(manifest: &'a Manifest, staging: &'a Staging, opts: &'a RestoreOptions) -> Self {
        Self {
            manifest,
            staging,
            opts,
            parent: None,
            buf: vec![0u8; BUF_SIZE],
        }
    }

    fn build(mut self, content: &mut impl Read) -> Result<RestoreSummary, SnapshotError> {
        let mut summary = RestoreSummary::default();
        let mut dirs = Vec::new();
        for (i, entry) in self.manifest.entries.iter().enumerate() {
            match entry.kind {
                Kind::Dir => {
                    self.dir(entry)?;
                    dirs.push(i);
                    summary.dirs += 1;
                }
                Kind::File => {
                    self.file(entry, content)?;
                    summary.files += 1;
                    summary.bytes += entry.size;
                }
                Kind::Symlink => {
                    self.symlink(entry)?;
                    summary.symlinks += 1;
                }
            }
        }
        let mut probe = [0u8; 1];
        if read_some(content, &mut probe).map_err(SnapshotError::Input)? != 0 {
            return Err(SnapshotError::TrailingContent);
        }
        // Deepest first: every descendant of a directory comes after it in
        // the manifest, so in reverse order it is finished before it.
        for &i in dirs.iter().rev() {
            if let Some(entry) = self.manifest.entries.get(i) {
                self.finish_dir(entry)?;
            }
        }
        Ok(summary)
    }

    /// The staged root of an entry, and the path of the entry for messages.
    fn staged(&self, entry: &domain::Entry) -> Result<(&'a Staged, PathBuf), SnapshotError> {
        let staging = self.staging;
        let staged = usize::try_from(entry.root)
            .ok()
            .and_then(|i| staging.roots.get(i))
            .ok_or_else(|| SnapshotError::Unsuitable {
                path: PathBuf::from(&entry.path),
                reason: "root index out of range",
            })?;
        let at = staged.staging.join(&entry.path);
        Ok((staged, at))
    }

    /// The parent directory of `entry`, opened, and its name in it.
    fn parent<'e>(
        &mut self,
        entry: &'e domain::Entry,
    ) -> Result<(&OwnedFd, &'e str, PathBuf), SnapshotError> {
        let (staged, at) = self.staged(entry)?;
        let (parent, name) = match entry.path.rsplit_once('/') {
            Some((parent, name)) => (parent, name),
            None => ("", entry.path.as_str()),
        };
        let cached =
            matches!(&self.parent, Some((root, path, _)) if *root == entry.root && path == parent);
        if !cached {
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let mut dir = rustix::fs::openat(&staged.fd, ".", flags, Mode::empty())
                .map_err(|e| errno(&staged.staging, "open", e))?;
            for component in parent.split('/').filter(|c| !c.is_empty()) {
                dir = rustix::fs::openat(&dir, component, flags, Mode::empty())
                    .map_err(|e| errno(&staged.staging.join(parent), "open", e))?;
            }
            self.parent = Some((entry.root, parent.to_owned(), dir));
        }
        match &self.parent {
            Some((_, _, fd)) => Ok((fd, name, at)),
            None => Err(SnapshotError::Unsuitable {
                path: at,
                reason: "no parent directory",
            }),
        }
    }

    fn owner(&self) -> (Option<Uid>, Option<Gid>) {
        (
            Some(Uid::from_raw(self.opts.uid)),
            Some(Gid::from_raw(self.opts.gid)),
        )
    }

    fn dir(&mut self, entry: &domain::Entry) -> Result<(), SnapshotError> {
        let (uid, gid) = self.owner();
        let (parent, name, at) = self.parent(entry)?;
        // Owner-only until `finish_dir` sets the real mode.
        rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
            .map_err(|e| errno(&at, "create the directory", e))?;
        rustix::fs::chownat(parent, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| errno(&at, "chown", e))?;
        Ok(())
    }

    fn finish_dir(&mut self, entry: &domain::Entry) -> Result<(), SnapshotError> {
        let (parent, name, at) = self.parent(entry)?;
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno(&at, "open", e))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(entry.mode & RESTORED_MODE_BITS))
            .map_err(|e| errno(&at, "chmod", e))?;
        rustix::fs::futimens(&fd, &timestamps(entry.mtime))
            .map_err(|e| errno(&at, "set the mtime of", e))?;
        Ok(())
    }

    fn file(
        &mut self,
        entry: &domain::Entry,
        content: &mut impl Read,
    ) -> Result<(), SnapshotError> {
        let (uid, gid) = self.owner();
        let manifest = self.manifest;
        let root = || root_name(manifest, entry);
        let (parent, name, at) = self.parent(entry)?;
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| errno(&at, "create", e))?;
        let mut file = File::from(fd);
        let mut hasher = Sha256::new();
        let mut left = entry.size;
        while left > 0 {
            let want = usize::try_from(left).map_or(self.buf.len(), |l| l.min(self.buf.len()));
            let chunk = self.buf.get_mut(..want).unwrap_or_default();
            let n = read_some(content, chunk).map_err(SnapshotError::Input)?;
            if n == 0 {
                return Err(SnapshotError::ShortContent {
                    root: root(),
                    path: entry.path.clone(),
                    got: entry.size - left,
                    size: entry.size,
                });
            }
            let data = chunk.get(..n).unwrap_or_default();
            hasher.update(data);
            file.write_all(data).map_err(io_err(&at, "write"))?;
            left -= n as u64;
        }
        let actual = hex::encode(hasher.finalize());
        let expected = entry.sha256.as_deref().unwrap_or_default();
        if actual != expected {
            return Err(SnapshotError::DigestMismatch {
                root: root(),
                path: entry.path.clone(),
                expected: expected.to_owned(),
                actual,
            });
        }
        rustix::fs::fchown(&file, uid, gid).map_err(|e| errno(&at, "chown", e))?;
        // After chown, which clears setuid and setgid anyway.
        rustix::fs::fchmod(&file, Mode::from_raw_mode(entry.mode & RESTORED_MODE_BITS))
            .map_err(|e| errno(&at, "chmod", e))?;
        rustix::fs::futimens(&file, &timestamps(entry.mtime))
            .map_err(|e| errno(&at, "set the mtime of", e))?;
        Ok(())
    }

    fn symlink(&mut self, entry: &domain::Entry) -> Result<(), SnapshotError> {
        let (uid, gid) = self.owner();
        let target = entry.target.as_deref().unwrap_or_default();
        let (parent, name, at) = self.parent(entry)?;
        rustix::fs::symlinkat(target, parent, name)
            .map_err(|e| errno(&at, "create the symlink", e))?;
        rustix::fs::chownat(parent, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| errno(&at, "chown", e))?;
        rustix::fs::utimensat(
            parent,
            name,
            &timestamps(entry.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| errno(&at, "set the mtime of", e))?;
        Ok(())
    }
}

/// The root of an entry, for messages.
fn root_name(manifest: &Manifest, entry: &domain::Entry) -> String {
    usize::try_from(entry.root)
        .ok()
        .and_then(|i| manifest.roots.get(i))
        .cloned()
        .unwrap_or_default()
}

/// Access and modification time both `mtime` (whole seconds).
fn timestamps(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

//! The manifest of a filesystem tree, and the base manifest file.
//!
//! A [`Manifest`] maps every path under a root (relative, in path order: a
//! directory before its contents, siblings by name bytes), except excluded
//! ones and other filesystems mounted below the root, to its [`Entry`].
//! Regular files are hashed (SHA-256) as they are scanned.
//!
//! # File format (v1)
//!
//! Text, one entry a line, sorted by path, fields separated by one space:
//!
//! ```text
//! burstflare-base-manifest v1
//! d 0755 0 0 0 1700000000000000000 etc
//! f 0644 0 0 12 1700000000123456789 <sha256 hex> etc/motd
//! l 0777 0 0 14 1700000000000000000 lib usr/lib
//! o 0644 0 0 0 1700000000000000000 run/initctl
//! end 4
//! ```
//!
//! Fields: kind (`f` file, `d` directory, `l` symlink, `o` anything else),
//! mode in octal (permission bits with setuid, setgid and sticky), uid, gid,
//! size in bytes, mtime in nanoseconds since the epoch, the content hash
//! (files only), the path, and the target (symlinks only). Paths and targets
//! are escaped: printable ASCII except space and `\` stays, `\` is `\\`, any
//! other byte is `\xHH`. The `end` line carries the entry count, so a
//! truncated file is detected.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead as _, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use sha2::{Digest as _, Sha256};

use super::{BUF_SIZE, Excludes, LayerError, escape, io_err, layer_path, unescape};

/// The first line of a base manifest file.
pub const MANIFEST_HEADER: &str = "burstflare-base-manifest v1";
/// Where the runtime image keeps its base manifest (under the agent's state
/// directory, which [`super::DEFAULT_EXCLUDES`] leaves out of every layer).
pub const DEFAULT_BASE_MANIFEST: &str = "/var/lib/burstflare/base-manifest";

const MANIFEST_PREFIX: &str = "burstflare-base-manifest ";

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File {
        sha256: [u8; 32],
    },
    Dir,
    Symlink {
        target: PathBuf,
    },
    /// A device, FIFO or socket: recorded, never captured.
    Other,
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// Permission bits, with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Content size of files, target length of symlinks, 0 otherwise.
    pub size: u64,
    /// Nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// The entries of a tree by relative path; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    entries: BTreeMap<PathBuf, Entry>,
}

impl Manifest {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, path: &Path) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// Entries in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&Path, &Entry)> {
        self.entries.iter().map(|(p, e)| (p.as_path(), e))
    }

    pub fn entries(&self) -> &BTreeMap<PathBuf, Entry> {
        &self.entries
    }

    pub fn into_entries(self) -> BTreeMap<PathBuf, Entry> {
        self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total size of the regular files.
    pub fn file_bytes(&self) -> u64 {
        self.entries
            .values()
            .filter(|e| matches!(e.kind, EntryKind::File { .. }))
            .map(|e| e.size)
            .sum()
    }
}

impl From<BTreeMap<PathBuf, Entry>> for Manifest {
    fn from(entries: BTreeMap<PathBuf, Entry>) -> Self {
        Self { entries }
    }
}

/// Scans the tree under `root` (see the module docs).
pub fn scan(root: &Path, excludes: &Excludes) -> Result<Manifest, LayerError> {
    let mut entries = BTreeMap::new();
    let mut buf = vec![0u8; BUF_SIZE];
    walk(root, excludes, |rel, abs, meta| {
        if let Some(entry) = read_entry(abs, meta, &mut buf)? {
            entries.insert(rel.to_path_buf(), entry);
        }
        Ok(())
    })?;
    Ok(Manifest { entries })
}

/// Scans `root` with the production excludes (and `out`, when it is under
/// `root`) and writes the manifest to `out`, atomically (a sibling file,
/// fsynced, renamed into place; mode 0644).
pub fn write_base_manifest(root: &Path, out: &Path) -> Result<(), LayerError> {
    let mut excludes = Excludes::production();
    let abs_root = std::path::absolute(root).map_err(io_err(root, "resolve"))?;
    let abs_out = std::path::absolute(out).map_err(io_err(out, "resolve"))?;
    if let Ok(rel) = abs_out.strip_prefix(&abs_root) {
        excludes.add_exact(rel);
    }
    let manifest = scan(root, &excludes)?;

    let dir = abs_out.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(io_err(dir, "create the directory"))?;
    let mut tmp_name = abs_out.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let mut file = File::create(&tmp).map_err(io_err(&tmp, "create"))?;
        write_manifest(&manifest, &mut file)?;
        file.set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(io_err(&tmp, "set the mode of"))?;
        file.sync_all().map_err(io_err(&tmp, "fsync"))?;
        fs::rename(&tmp, &abs_out).map_err(io_err(&abs_out, "rename into place"))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `manifest` in the v1 format.
pub fn write_manifest(manifest: &Manifest, out: impl Write) -> Result<(), LayerError> {
    let write_err = |source| LayerError::Write {
        what: "manifest",
        source,
    };
    let mut out = BufWriter::new(out);
    let mut line = String::with_capacity(256);
    writeln!(out, "{MANIFEST_HEADER}").map_err(write_err)?;
    for (path, entry) in &manifest.entries {
        line.clear();
        format_entry(&mut line, path, entry);
        out.write_all(line.as_bytes()).map_err(write_err)?;
    }
    writeln!(out, "end {}", manifest.entries.len()).map_err(write_err)?;
    out.flush().map_err(write_err)
}

fn format_entry(line: &mut String, path: &Path, e: &Entry) {
    let kind = match e.kind {
        EntryKind::File { .. } => 'f',
        EntryKind::Dir => 'd',
        EntryKind::Symlink { .. } => 'l',
        EntryKind::Other => 'o',
    };
    // Writing to a String cannot fail.
    let _ = write!(
        line,
        "{kind} {:04o} {} {} {} {} ",
        e.mode, e.uid, e.gid, e.size, e.mtime_ns
    );
    if let EntryKind::File { sha256 } = &e.kind {
        line.push_str(&hex::encode(sha256));
        line.push(' ');
    }
    line.push_str(&escape(path.as_os_str().as_bytes()));
    if let EntryKind::Symlink { target } = &e.kind {
        line.push(' ');
        line.push_str(&escape(target.as_os_str().as_bytes()));
    }
    line.push('\n');
}

/// Reads a manifest in the v1 format; refuses other versions, unsorted or
/// duplicate paths, and a missing or wrong `end` line.
pub fn read_manifest(input: impl Read) -> Result<Manifest, LayerError> {
    let err = |line: usize, message: String| LayerError::Manifest { line, message };
    let mut lines = BufReader::new(input).lines();
    let mut n = 1;
    let header = match lines.next() {
        Some(Ok(header)) => header,
        Some(Err(e)) => return Err(err(n, format!("cannot read: {e}"))),
        None => return Err(err(n, "empty file; not a base manifest".into())),
    };
    if header != MANIFEST_HEADER {
        return Err(match header.strip_prefix(MANIFEST_PREFIX) {
            Some(version) => err(
                n,
                format!("unsupported version `{version}` (this agent reads v1)"),
            ),
            None => err(n, format!("`{header}` is not `{MANIFEST_HEADER}`")),
        });
    }
    let mut entries = BTreeMap::new();
    let mut last: Option<PathBuf> = None;
    while let Some(line) = lines.next() {
        n += 1;
        let line = line.map_err(|e| err(n, format!("cannot read: {e}")))?;
        if let Some(count) = line.strip_prefix("end ") {
            if count.parse::<usize>().ok() != Some(entries.len()) {
                return Err(err(
                    n,
                    format!("`end {count}`, but {} entries precede it", entries.len()),
                ));
            }
            if lines.next().is_some() {
                return Err(err(n + 1, "content after the `end` line".into()));
            }
            return Ok(Manifest { entries });
        }
        let (path, entry) = parse_entry(&line).map_err(|m| err(n, m))?;
        if last.as_ref().is_some_and(|last| *last >= path) {
            return Err(err(
                n,
                format!(
                    "`{}` is out of order or repeated",
                    escape(path.as_os_str().as_bytes())
                ),
            ));
        }
        last = Some(path.clone());
        entries.insert(path, entry);
    }
    Err(err(n + 1, "truncated: no `end` line".into()))
}

/// [`read_manifest`] from a file.
pub fn read_manifest_file(path: &Path) -> Result<Manifest, LayerError> {
    read_manifest(File::open(path).map_err(io_err(path, "open"))?)
}

fn parse_entry(line: &str) -> Result<(PathBuf, Entry), String> {
    let fields: Vec<&str> = line.split(' ').collect();
    let (kind, rest) = fields
        .split_first()
        .ok_or_else(|| "empty line".to_string())?;
    let expected = match *kind {
        "f" | "l" => 8,
        "d" | "o" => 7,
        other => return Err(format!("unknown kind `{other}` (f, d, l or o)")),
    };
    if fields.len() != expected {
        return Err(format!(
            "kind `{kind}` has {expected} fields, this line {}",
            fields.len()
        ));
    }
    let num = |i: usize, what: &str| -> Result<&str, String> {
        rest.get(i)
            .copied()
            .ok_or_else(|| format!("missing {what}"))
    };
    let raw_mode = num(0, "mode")?;
    let mode = u32::from_str_radix(raw_mode, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("mode `{raw_mode}` is not octal permission bits"))?;
    let parse_u = |i: usize, what: &str| -> Result<u64, String> {
        let s = num(i, what)?;
        s.parse()
            .map_err(|_| format!("{what} `{s}` is not a number"))
    };
    let uid = u32::try_from(parse_u(1, "uid")?).map_err(|_| "uid out of range".to_string())?;
    let gid = u32::try_from(parse_u(2, "gid")?).map_err(|_| "gid out of range".to_string())?;
    let size = parse_u(3, "size")?;
    let mtime = num(4, "mtime")?;
    let mtime_ns: i64 = mtime
        .parse()
        .map_err(|_| format!("mtime `{mtime}` is not a number"))?;
    let path_at = if *kind == "f" { 6 } else { 5 };
    let raw_path = num(path_at, "path")?;
    let path_bytes = unescape(raw_path).map_err(|e| format!("path `{raw_path}`: {e}"))?;
    let path = layer_path(&path_bytes).map_err(|e| format!("path `{raw_path}`: {e}"))?;
    if path.as_os_str().as_bytes() != path_bytes.as_slice() {
        return Err(format!(
            "path `{raw_path}` is not a normalized relative path"
        ));
    }
    let kind = match *kind {
        "f" => {
            let hash = num(5, "hash")?;
            let mut sha256 = [0u8; 32];
            hex::decode_to_slice(hash, &mut sha256)
                .map_err(|_| format!("hash `{hash}` is not 64 hex digits"))?;
            EntryKind::File { sha256 }
        }
        "l" => {
            let raw = num(6, "target")?;
            let target = unescape(raw).map_err(|e| format!("target `{raw}`: {e}"))?;
            if target.is_empty() {
                return Err("empty symlink target".into());
            }
            EntryKind::Symlink {
                target: PathBuf::from(std::ffi::OsStr::from_bytes(&target)),
            }
        }
        "d" => EntryKind::Dir,
        _ => EntryKind::Other,
    };
    Ok((
        path,
        Entry {
            kind,
            mode,
            uid,
            gid,
            size,
            mtime_ns,
        },
    ))
}

/// Walks the tree under `root` in path order, calling `visit(relative,
/// absolute, lstat)` for every entry that is not excluded. Entries that vanish
/// during the walk are skipped; so are directories on another device than the
/// root (mount points), with their contents: their relative paths are returned.
pub(crate) fn walk(
    root: &Path,
    excludes: &Excludes,
    visit: impl FnMut(&Path, &Path, &fs::Metadata) -> Result<(), LayerError>,
) -> Result<Vec<PathBuf>, LayerError> {
    let meta = fs::metadata(root).map_err(io_err(root, "stat the root"))?;
    if !meta.is_dir() {
        return Err(LayerError::Io {
            path: root.to_path_buf(),
            action: "walk",
            source: io::Error::new(io::ErrorKind::NotADirectory, "the root is not a directory"),
        });
    }
    let mut walker = Walker {
        excludes,
        dev: meta.dev(),
        visit,
        mounts: Vec::new(),
    };
    walker.dir(Path::new(""), root)?;
    Ok(walker.mounts)
}

struct Walker<'a, F> {
    excludes: &'a Excludes,
    dev: u64,
    visit: F,
    mounts: Vec<PathBuf>,
}

impl<F> Walker<'_, F>
where
    F: FnMut(&Path, &Path, &fs::Metadata) -> Result<(), LayerError>,
{
    fn dir(&mut self, rel: &Path, abs: &Path) -> Result<(), LayerError> {
        let mut names = Vec::new();
        let read = match fs::read_dir(abs) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !rel.as_os_str().is_empty() => {
                return Ok(());
            }
            Err(e) => return Err(io_err(abs, "read the directory")(e)),
        };
        for entry in read {
            names.push(
                entry
                    .map_err(io_err(abs, "read the directory"))?
                    .file_name(),
            );
        }
        // Byte order of names: with directories visited before their
        // contents, this is `PathBuf`'s (component-wise) order.
        names.sort_unstable();
        for name in names {
            let rel = rel.join(&name);
            if self.excludes.matches(&rel) {
                continue;
            }
            let abs = abs.join(&name);
            let meta = match fs::symlink_metadata(&abs) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&abs, "stat")(e)),
            };
            if meta.is_dir() && meta.dev() != self.dev {
                self.mounts.push(rel);
                continue;
            }
            (self.visit)(&rel, &abs, &meta)?;
            if meta.is_dir() {
                self.dir(&rel, &abs)?;
            }
        }
        Ok(())
    }
}

/// The manifest entry of `abs`, hashing a regular file; `None` if it vanished.
pub(crate) fn read_entry(
    abs: &Path,
    meta: &fs::Metadata,
    buf: &mut [u8],
) -> Result<Option<Entry>, LayerError> {
    let ft = meta.file_type();
    let mut size = 0;
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        let target = match fs::read_link(abs) {
            Ok(target) => target,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(abs, "read the symlink")(e)),
        };
        size = target.as_os_str().len() as u64;
        EntryKind::Symlink { target }
    } else if ft.is_file() {
        let Some((sha256, len)) = hash_file(abs, buf)? else {
            return Ok(None);
        };
        size = len;
        EntryKind::File { sha256 }
    } else {
        EntryKind::Other
    };
    Ok(Some(Entry {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size,
        mtime_ns: mtime_ns(meta),
    }))
}

pub(crate) fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// Opens a regular file for reading without following a symlink and without
/// blocking on a FIFO put in its place; `None` if it vanished.
pub(crate) fn open_regular(abs: &Path) -> Result<Option<File>, LayerError> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let fd = match rustix::fs::open(abs, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(io_err(abs, "open")(e.into())),
    };
    let file = File::from(fd);
    let meta = file.metadata().map_err(io_err(abs, "stat"))?;
    if !meta.is_file() {
        return Err(LayerError::Changed {
            path: abs.to_path_buf(),
            expected: 0,
        });
    }
    Ok(Some(file))
}

/// The SHA-256 and length of a regular file's content; `None` if it vanished.
pub(crate) fn hash_file(abs: &Path, buf: &mut [u8]) -> Result<Option<([u8; 32], u64)>, LayerError> {
    let Some(mut file) = open_regular(abs)? else {
        return Ok(None);
    };
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(abs, "read")(e)),
        };
        hasher.update(buf.get(..n).unwrap_or_default());
        len += n as u64;
    }
    Ok(Some((hasher.finalize().into(), len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: EntryKind) -> Entry {
        Entry {
            kind,
            mode: 0o4755,
            uid: 1000,
            gid: 1000,
            size: 3,
            mtime_ns: 1_700_000_000_123_456_789,
        }
    }

    #[test]
    fn format_round_trips() {
        let mut map = BTreeMap::new();
        map.insert(PathBuf::from("a"), entry(EntryKind::Dir));
        map.insert(
            PathBuf::from("a/b c\n"),
            entry(EntryKind::File { sha256: [7; 32] }),
        );
        map.insert(
            PathBuf::from("a/l"),
            entry(EntryKind::Symlink {
                target: PathBuf::from("../x y"),
            }),
        );
        map.insert(PathBuf::from("z"), entry(EntryKind::Other));
        let manifest = Manifest::from(map);
        let mut out = Vec::new();
        write_manifest(&manifest, &mut out).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with(
            "burstflare-base-manifest v1\nd 4755 1000 1000 3 1700000000123456789 a\n"
        ));
        assert!(text.contains(" a/b\\x20c\\x0a\n"));
        assert!(text.ends_with("\nend 4\n"));
        assert_eq!(read_manifest(out.as_slice()).unwrap(), manifest);
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        let cases = [
            ("", 1, "empty file"),
            (
                "burstflare-base-manifest v2\nend 0\n",
                1,
                "unsupported version `v2`",
            ),
            ("hello\n", 1, "is not"),
            ("burstflare-base-manifest v1\n", 2, "truncated"),
            (
                "burstflare-base-manifest v1\nd 0755 0 0 0 0 a\n",
                3,
                "truncated",
            ),
            ("burstflare-base-manifest v1\nend 1\n", 2, "0 entries"),
            (
                "burstflare-base-manifest v1\nend 0\nd 0755 0 0 0 0 a\n",
                3,
                "after",
            ),
            (
                "burstflare-base-manifest v1\nd 0755 0 0 0 0 b\nd 0755 0 0 0 0 a\nend 2\n",
                3,
                "out of order",
            ),
            (
                "burstflare-base-manifest v1\nd 0755 0 0 0 0 a\nd 0755 0 0 0 0 a\nend 2\n",
                3,
                "out of order",
            ),
            (
                "burstflare-base-manifest v1\nd 9755 0 0 0 0 a\nend 1\n",
                2,
                "mode",
            ),
            (
                "burstflare-base-manifest v1\nd 0755 0 0 0 0 ../a\nend 1\n",
                2,
                "`..`",
            ),
            (
                "burstflare-base-manifest v1\nd 0755 0 0 0 0 /a\nend 1\n",
                2,
                "absolute",
            ),
            (
                "burstflare-base-manifest v1\nd 0755 0 0 0 0 a/./b\nend 1\n",
                2,
                "normalized",
            ),
            (
                "burstflare-base-manifest v1\nf 0755 0 0 0 0 xyz a\nend 1\n",
                2,
                "hex",
            ),
            (
                "burstflare-base-manifest v1\nq 0755 0 0 0 0 a\nend 1\n",
                2,
                "unknown kind",
            ),
        ];
        for (text, line, needle) in cases {
            match read_manifest(text.as_bytes()) {
                Err(LayerError::Manifest { line: l, message }) => {
                    assert_eq!(l, line, "{text:?}: {message}");
                    assert!(message.contains(needle), "{text:?}: {message}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}

//! [`capture`]: the layer of a tree against its base manifest (format and
//! change rules in the [`super`] docs).
//!
//! Memory stays bounded by the size of the tree's path list: file contents are
//! streamed (hashed once when the size matches the base, then copied into the
//! archive), and the compressed output is hashed and counted as it is written.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tar::{EntryType, Header};

use super::manifest::{hash_file, open_regular, walk};
use super::{
    BUF_SIZE, DELETIONS_ENTRY, EntryKind, Excludes, HashingWriter, LayerError, Manifest,
    ZSTD_LEVEL, escape, io_err,
};

/// What [`capture`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CaptureSummary {
    /// Regular files (hard links not included).
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Further names of a file already in the layer.
    pub hardlinks: u64,
    /// Lines of the deletions list.
    pub deleted: u64,
    /// New or changed devices, FIFOs and sockets, left out.
    pub skipped: u64,
    /// Size of the tar stream.
    pub bytes_uncompressed: u64,
    /// Lowercase hex SHA-256 of the bytes written to `out`.
    pub sha256_of_compressed_output: String,
    /// Bytes written to `out`.
    pub size_compressed: u64,
}

/// Writes to `out` the layer of the tree under `root` against `base`: entries
/// that are new or changed, and the deletions list. Paths matching `excludes`
/// are neither captured nor listed as deleted.
pub fn capture(
    root: &Path,
    base: &Manifest,
    excludes: &Excludes,
    out: impl Write,
) -> Result<CaptureSummary, LayerError> {
    let mut encoder = zstd::stream::write::Encoder::new(HashingWriter::new(out), ZSTD_LEVEL)
        .map_err(write_err)?;
    encoder.include_checksum(true).map_err(write_err)?;
    let mut capture = Capture {
        tar: tar::Builder::new(CountingWriter {
            inner: encoder,
            bytes: 0,
        }),
        base,
        present: HashMap::new(),
        links: HashMap::new(),
        summary: CaptureSummary::default(),
        buf: vec![0u8; BUF_SIZE],
    };
    let mounts = walk(root, excludes, |rel, abs, meta| {
        capture.visit(rel, abs, meta)
    })?;
    let deleted = deletions(base, &capture.present, excludes, &mounts);
    if !deleted.is_empty() {
        capture.write_deletions(&deleted)?;
    }
    let Capture {
        tar, mut summary, ..
    } = capture;
    let counting = tar.into_inner().map_err(write_err)?;
    summary.bytes_uncompressed = counting.bytes;
    let (mut out, sha256, size) = counting.inner.finish().map_err(write_err)?.into_parts();
    out.flush().map_err(write_err)?;
    summary.sha256_of_compressed_output = sha256;
    summary.size_compressed = size;
    Ok(summary)
}

fn write_err(source: io::Error) -> LayerError {
    LayerError::Write {
        what: "layer",
        source,
    }
}

type Encoder<W> = zstd::stream::write::Encoder<'static, HashingWriter<W>>;

struct Capture<'a, W: Write> {
    tar: tar::Builder<CountingWriter<Encoder<W>>>,
    base: &'a Manifest,
    /// Every path of the tree, and whether it is a directory.
    present: HashMap<PathBuf, bool>,
    /// (device, inode) of files with several names → the first name captured.
    links: HashMap<(u64, u64), PathBuf>,
    summary: CaptureSummary,
    buf: Vec<u8>,
}

impl<W: Write> Capture<'_, W> {
    fn visit(&mut self, rel: &Path, abs: &Path, meta: &fs::Metadata) -> Result<(), LayerError> {
        let ft = meta.file_type();
        self.present.insert(rel.to_path_buf(), ft.is_dir());
        let base = self.base.get(rel);
        let same_owner = base.is_some_and(|b| b.uid == meta.uid() && b.gid == meta.gid());
        let same_mode = base.is_some_and(|b| b.mode == meta.mode() & 0o7777);
        if ft.is_dir() {
            let same = same_owner && same_mode && base.is_some_and(|b| b.kind == EntryKind::Dir);
            if !same {
                let mut header = header(EntryType::Directory, meta, 0);
                self.pax_mtime(meta)?;
                self.tar
                    .append_data(&mut header, rel, io::empty())
                    .map_err(write_err)?;
                self.summary.dirs += 1;
            }
        } else if ft.is_symlink() {
            let target = match fs::read_link(abs) {
                Ok(target) => target,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.present.remove(rel);
                    return Ok(());
                }
                Err(e) => return Err(io_err(abs, "read the symlink")(e)),
            };
            let same = same_owner
                && base.is_some_and(
                    |b| matches!(&b.kind, EntryKind::Symlink { target: t } if *t == target),
                );
            if !same {
                let mut header = header(EntryType::Symlink, meta, 0);
                self.pax_mtime(meta)?;
                self.append_link(&mut header, rel, target.as_os_str().as_bytes())?;
                self.summary.symlinks += 1;
            }
        } else if ft.is_file() {
            let base_hash = match base.map(|b| &b.kind) {
                Some(EntryKind::File { sha256 })
                    if same_owner && same_mode && base.is_some_and(|b| b.size == meta.len()) =>
                {
                    Some(*sha256)
                }
                _ => None,
            };
            if let Some(base_hash) = base_hash {
                match hash_file(abs, &mut self.buf)? {
                    Some((sha256, _)) if sha256 == base_hash => return Ok(()),
                    Some(_) => {}
                    None => {
                        self.present.remove(rel);
                        return Ok(());
                    }
                }
            }
            if !self.append_file(rel, abs)? {
                self.present.remove(rel);
            }
        } else {
            let same = same_owner && same_mode && base.is_some_and(|b| b.kind == EntryKind::Other);
            if !same {
                tracing::warn!(
                    path = %abs.display(),
                    "not captured: devices, FIFOs and sockets are never part of a layer"
                );
                self.summary.skipped += 1;
            }
        }
        Ok(())
    }

    /// Appends a regular file (or a hard link to a name already in the layer);
    /// `false` if it vanished.
    fn append_file(&mut self, rel: &Path, abs: &Path) -> Result<bool, LayerError> {
        let Some(file) = open_regular(abs)? else {
            return Ok(false);
        };
        let meta = file.metadata().map_err(io_err(abs, "stat"))?;
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                let first = first.as_os_str().as_bytes().to_vec();
                let mut header = header(EntryType::Link, &meta, 0);
                self.append_link(&mut header, rel, &first)?;
                self.summary.hardlinks += 1;
                return Ok(true);
            }
            self.links.insert(key, rel.to_path_buf());
        }
        let size = meta.len();
        let mut header = header(EntryType::Regular, &meta, size);
        self.pax_mtime(&meta)?;
        let mut reader = ExactReader {
            file,
            remaining: size,
            failure: None,
        };
        if let Err(e) = self.tar.append_data(&mut header, rel, &mut reader) {
            return Err(match reader.failure.take() {
                Some(Failure::Read(source)) => io_err(abs, "read")(source),
                Some(Failure::Short) => LayerError::Changed {
                    path: abs.to_path_buf(),
                    expected: size,
                },
                None => write_err(e),
            });
        }
        // A file that grew since the header was written is as inconsistent as
        // one that shrank.
        if reader
            .file
            .read(&mut [0u8; 1])
            .map_err(io_err(abs, "read"))?
            != 0
        {
            return Err(LayerError::Changed {
                path: abs.to_path_buf(),
                expected: size,
            });
        }
        self.summary.files += 1;
        Ok(true)
    }

    /// Appends a symlink or hard link entry with `target` byte for byte (the
    /// tar crate's own helper normalizes link names like paths); a target over
    /// 100 bytes goes in a GNU long-link entry.
    fn append_link(
        &mut self,
        header: &mut Header,
        rel: &Path,
        target: &[u8],
    ) -> Result<(), LayerError> {
        let field = &mut header.as_old_mut().linkname;
        if let Some(slot) = field.get_mut(..target.len()) {
            slot.copy_from_slice(target);
        } else {
            let mut long = Header::new_gnu();
            let name = b"././@LongLink";
            long.as_old_mut().name[..name.len()].copy_from_slice(name);
            long.set_entry_type(EntryType::GNULongLink);
            long.set_mode(0o644);
            long.set_size(target.len() as u64 + 1);
            long.set_cksum();
            self.tar
                .append(&long, target.chain(&[0u8][..]))
                .map_err(write_err)?;
        }
        self.tar
            .append_data(header, rel, io::empty())
            .map_err(write_err)
    }

    /// Precedes the next entry with a PAX `mtime` record when the mtime has a
    /// fractional second (tar headers hold whole seconds).
    fn pax_mtime(&mut self, meta: &fs::Metadata) -> Result<(), LayerError> {
        if meta.mtime_nsec() == 0 || meta.mtime() < 0 {
            return Ok(());
        }
        let record = pax_record(
            "mtime",
            &format!("{}.{:09}", meta.mtime(), meta.mtime_nsec()),
        );
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::XHeader);
        header.set_mode(0o644);
        header.set_size(record.len() as u64);
        self.tar
            .append_data(&mut header, "PaxHeader", record.as_bytes())
            .map_err(write_err)
    }

    fn write_deletions(&mut self, deleted: &[&Path]) -> Result<(), LayerError> {
        let mut list = String::new();
        for path in deleted {
            list.push_str(&escape(path.as_os_str().as_bytes()));
            list.push('\n');
        }
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(list.len() as u64);
        self.tar
            .append_data(&mut header, DELETIONS_ENTRY, list.as_bytes())
            .map_err(write_err)?;
        self.summary.deleted = deleted.len() as u64;
        Ok(())
    }
}

/// The base paths that are gone, minimal: a path is listed when it is not in
/// the tree, is not excluded or under a skipped mount point, and its parent
/// is still a directory (or it is at the top). Under a deleted directory
/// nothing more is listed; under one replaced by a file or symlink, neither:
/// that entry's replacement removes the whole tree.
fn deletions<'m>(
    base: &'m Manifest,
    present: &HashMap<PathBuf, bool>,
    excludes: &Excludes,
    mounts: &[PathBuf],
) -> Vec<&'m Path> {
    let mounts: HashSet<&Path> = mounts.iter().map(PathBuf::as_path).collect();
    base.iter()
        .map(|(path, _)| path)
        .filter(|path| !present.contains_key(*path))
        .filter(|path| {
            path.parent()
                .is_none_or(|p| p.as_os_str().is_empty() || present.get(p) == Some(&true))
        })
        .filter(|path| !excludes.matches(path))
        .filter(|path| !path.ancestors().any(|a| mounts.contains(a)))
        .collect()
}

/// A GNU tar header carrying `meta`'s mode, owner and mtime (whole seconds).
fn header(kind: EntryType, meta: &fs::Metadata, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(u64::from(meta.uid()));
    header.set_gid(u64::from(meta.gid()));
    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    header.set_size(size);
    header
}

/// One PAX extended header record: `<length> <key>=<value>\n`, where the
/// length counts the whole record, its own digits included.
fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    loop {
        let total = len.to_string().len() + body.len();
        if total == len {
            return format!("{len}{body}");
        }
        len = total;
    }
}

/// Counts what goes through a writer.
struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Failure {
    Read(io::Error),
    Short,
}

/// Yields exactly `remaining` bytes of `file` (the size in the tar header), or
/// fails, recording why.
struct ExactReader {
    file: File,
    remaining: u64,
    failure: Option<Failure>,
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let buf = buf.get_mut(..max).unwrap_or_default();
        match self.file.read(buf) {
            Ok(0) => {
                self.failure = Some(Failure::Short);
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"))
            }
            Ok(n) => {
                self.remaining -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                self.failure = Some(Failure::Read(e));
                Err(io::Error::new(kind, "cannot read the file"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        assert_eq!(pax_record("mtime", "1.5"), "13 mtime=1.5\n");
        for n in 0..200 {
            let value = "x".repeat(n);
            let record = pax_record("k", &value);
            let (len, _) = record.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), record.len());
        }
    }
}

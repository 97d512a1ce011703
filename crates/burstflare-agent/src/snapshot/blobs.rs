//! The blob stream (format in the [`super`] docs): [`write()`] sends the
//! contents of a scan's files, [`Reader`] parses and checks such a stream.

use std::fs::File;
use std::io::{Read, Write};

use burstflare_domain::snapshot::is_sha256_hex;
use rustix::fs::{Mode, OFlags};
use sha2::{Digest as _, Sha256};

use super::scan::{BlobIndex, BlobSource};
use super::{BUF_SIZE, SnapshotError, io_err, read_some};

/// Bytes before a frame's content: 64 hex digits and a u64 length.
pub const HEADER_LEN: usize = 64 + 8;

/// Writes one frame per requested digest, in order, to `out`; returns the
/// bytes written. Every digest is looked up before anything is written, so an
/// unknown digest fails with nothing written. A file that is no longer what
/// the scan saw (other size, other content, not a regular file) fails the
/// stream, possibly after part of its frame was written.
pub fn write(
    index: &BlobIndex,
    digests: &[String],
    mut out: impl Write,
) -> Result<u64, SnapshotError> {
    let mut sources = Vec::with_capacity(digests.len());
    for digest in digests {
        let source = index
            .get(digest)
            .ok_or_else(|| SnapshotError::UnknownDigest {
                digest: digest.clone(),
            })?;
        sources.push((digest, source));
    }
    let mut buf = vec![0u8; BUF_SIZE];
    let mut written = 0u64;
    for (digest, source) in sources {
        written += write_frame(digest, source, &mut out, &mut buf)?;
    }
    out.flush().map_err(SnapshotError::Output)?;
    Ok(written)
}

fn write_frame(
    digest: &str,
    source: &BlobSource,
    out: &mut impl Write,
    buf: &mut [u8],
) -> Result<u64, SnapshotError> {
    let path = &source.path;
    let changed = |reason: String| SnapshotError::Changed {
        path: path.clone(),
        reason,
    };
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::NOENT => changed("it is gone".to_owned()),
        rustix::io::Errno::LOOP => changed("it is a symlink now".to_owned()),
        e => super::errno(path, "open", e),
    })?;
    let mut file = File::from(fd);
    let meta = file.metadata().map_err(io_err(path, "stat"))?;
    if !meta.is_file() {
        return Err(changed("it is not a regular file any more".to_owned()));
    }
    if meta.len() != source.size {
        return Err(changed(format!(
            "{} bytes now, {} when scanned",
            meta.len(),
            source.size
        )));
    }
    let mut header = [0u8; HEADER_LEN];
    let (hex_part, len_part) = header.split_at_mut(64);
    hex_part.copy_from_slice(digest.as_bytes());
    len_part.copy_from_slice(&source.size.to_be_bytes());
    out.write_all(&header).map_err(SnapshotError::Output)?;

    let mut hasher = Sha256::new();
    let mut left = source.size;
    while left > 0 {
        let want = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        let chunk = buf.get_mut(..want).unwrap_or_default();
        let n = read_some(&mut file, chunk).map_err(io_err(path, "read"))?;
        if n == 0 {
            return Err(changed(format!(
                "it ends after {} of {} bytes",
                source.size - left,
                source.size
            )));
        }
        let data = chunk.get(..n).unwrap_or_default();
        hasher.update(data);
        out.write_all(data).map_err(SnapshotError::Output)?;
        left -= n as u64;
    }
    let mut probe = [0u8; 1];
    if read_some(&mut file, &mut probe).map_err(io_err(path, "read"))? != 0 {
        return Err(changed(format!("it grew beyond {} bytes", source.size)));
    }
    let actual = hex::encode(hasher.finalize());
    if actual != digest {
        return Err(changed("its content differs".to_owned()));
    }
    Ok(HEADER_LEN as u64 + source.size)
}

/// One blob read by [`Reader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Lowercase hex SHA-256 of the content, checked.
    pub digest: String,
    /// Content length.
    pub size: u64,
}

/// Parses a blob stream frame by frame, checking each frame's digest.
#[derive(Debug)]
pub struct Reader<R> {
    inner: R,
    max_frame: u64,
    buf: Vec<u8>,
}

impl<R: Read> Reader<R> {
    /// A reader of `inner` that refuses frames longer than `max_frame` bytes
    /// (before reading their content).
    pub fn new(inner: R, max_frame: u64) -> Self {
        Self {
            inner,
            max_frame,
            buf: vec![0u8; BUF_SIZE],
        }
    }

    /// Reads the next frame, copying its content to `out`; `None` at the end
    /// of the stream. The content reaches `out` before the digest is checked:
    /// on error, discard what was written.
    pub fn next_into(&mut self, mut out: impl Write) -> Result<Option<Frame>, SnapshotError> {
        let mut header = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            let n = read_some(&mut self.inner, header.get_mut(got..).unwrap_or_default())
                .map_err(SnapshotError::Input)?;
            if n == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(SnapshotError::BadFrame {
                    reason: format!(
                        "the stream ends inside a frame header ({got} of {HEADER_LEN} bytes)"
                    ),
                });
            }
            got += n;
        }
        let (hex_part, len_part) = header.split_at(64);
        let digest = std::str::from_utf8(hex_part)
            .ok()
            .filter(|d| is_sha256_hex(d))
            .ok_or_else(|| SnapshotError::BadFrame {
                reason: format!(
                    "a frame starts with `{}`, not 64 lowercase hex digits",
                    hex_part.escape_ascii()
                ),
            })?
            .to_owned();
        let mut len = [0u8; 8];
        len.copy_from_slice(len_part);
        let size = u64::from_be_bytes(len);
        if size > self.max_frame {
            return Err(SnapshotError::FrameTooLarge {
                digest,
                size,
                limit: self.max_frame,
            });
        }
        let mut hasher = Sha256::new();
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left).map_or(self.buf.len(), |l| l.min(self.buf.len()));
            let chunk = self.buf.get_mut(..want).unwrap_or_default();
            let n = read_some(&mut self.inner, chunk).map_err(SnapshotError::Input)?;
            if n == 0 {
                return Err(SnapshotError::BadFrame {
                    reason: format!(
                        "the stream ends inside blob {digest} ({} of {size} bytes)",
                        size - left
                    ),
                });
            }
            let data = chunk.get(..n).unwrap_or_default();
            hasher.update(data);
            out.write_all(data).map_err(SnapshotError::Output)?;
            left -= n as u64;
        }
        let actual = hex::encode(hasher.finalize());
        if actual != digest {
            return Err(SnapshotError::FrameDigestMismatch { digest, actual });
        }
        Ok(Some(Frame { digest, size }))
    }

    /// Reads the next frame into memory (for small blobs and tests).
    pub fn next_vec(&mut self) -> Result<Option<(Frame, Vec<u8>)>, SnapshotError> {
        let mut content = Vec::new();
        Ok(self.next_into(&mut content)?.map(|f| (f, content)))
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

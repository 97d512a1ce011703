//! [`HashCache`]: the digests of files that have not changed since the last
//! scan, so that a scan hashes only what changed.
//!
//! A file is unchanged when its device, inode, size, mtime and ctime (both to
//! the nanosecond) are the same. ctime cannot be set by the user and moves on
//! every write, so a `touch -d` that restores an old mtime does not hide a
//! change. A digest is only remembered when the file's ctime is at least
//! [`RACY_WINDOW`] older than the moment hashing began: the kernel stamps
//! times from a clock that ticks every few milliseconds, and a file written
//! again within the tick in which it was hashed would otherwise keep its key
//! with new content. Writes through a shared memory map that was already
//! dirty do not move ctime; like every mtime-based cache (git, rsync), this one
//! cannot see them.
//!
//! The file format is in the [`super`] docs.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufRead as _, BufReader, BufWriter, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{SnapshotError, io_err, random_hex};

/// First line of a cache file.
const HEADER: &str = "burstflare-snapshot-hashcache 1";

/// How much older than the start of hashing a file's ctime must be for its
/// digest to be remembered (see the module docs).
pub const RACY_WINDOW: Duration = Duration::from_millis(100);

/// What identifies an unchanged file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileKey {
    pub(crate) fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            ctime_ns: meta
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec()),
        }
    }
}

/// Digests of files by (device, inode, size, mtime, ctime), with the hit and
/// miss counts of the last scan. Entries the last scan did not see are dropped
/// on [`save`](Self::save).
#[derive(Debug, Default)]
pub struct HashCache {
    entries: HashMap<FileKey, [u8; 32]>,
    seen: HashSet<FileKey>,
    scanned: bool,
    hits: u64,
    misses: u64,
}

impl HashCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a cache file; a missing, unreadable or malformed file gives an
    /// empty cache (the next scan hashes everything).
    pub fn load(path: &Path) -> Self {
        match Self::read(path) {
            Ok(cache) => cache,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring the snapshot hash cache");
                }
                Self::default()
            }
        }
    }

    fn read(path: &Path) -> io::Result<Self> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed hash cache");
        let mut lines = BufReader::new(File::open(path)?).lines();
        if lines.next().transpose()?.as_deref() != Some(HEADER) {
            return Err(bad());
        }
        let mut entries = HashMap::new();
        for line in lines {
            let line = line?;
            let mut fields = line.split(' ');
            let mut next = || fields.next().ok_or_else(bad);
            let key = FileKey {
                dev: next()?.parse().map_err(|_| bad())?,
                ino: next()?.parse().map_err(|_| bad())?,
                size: next()?.parse().map_err(|_| bad())?,
                mtime_ns: next()?.parse().map_err(|_| bad())?,
                ctime_ns: next()?.parse().map_err(|_| bad())?,
            };
            let mut digest = [0u8; 32];
            let hex_digest = next()?;
            if !burstflare_domain::snapshot::is_sha256_hex(hex_digest) {
                return Err(bad());
            }
            hex::decode_to_slice(hex_digest, &mut digest).map_err(|_| bad())?;
            if fields.next().is_some() {
                return Err(bad());
            }
            entries.insert(key, digest);
        }
        Ok(Self {
            entries,
            ..Self::default()
        })
    }

    /// Writes the cache atomically (a temporary file in the same directory,
    /// then a rename). After a scan, only the entries that scan saw are kept.
    pub fn save(&mut self, path: &Path) -> Result<(), SnapshotError> {
        if self.scanned {
            let seen = &self.seen;
            self.entries.retain(|key, _| seen.contains(key));
        }
        let name = path
            .file_name()
            .map_or_else(|| "hashcache".into(), |n| n.to_string_lossy().into_owned());
        let tmp = path.with_file_name(format!(
            ".{name}.tmp-{}",
            random_hex().map_err(io_err(path, "name a temporary file for"))?
        ));
        let write = || -> io::Result<()> {
            let mut out = BufWriter::new(File::create_new(&tmp)?);
            writeln!(out, "{HEADER}")?;
            for (k, digest) in &self.entries {
                writeln!(
                    out,
                    "{} {} {} {} {} {}",
                    k.dev,
                    k.ino,
                    k.size,
                    k.mtime_ns,
                    k.ctime_ns,
                    hex::encode(digest)
                )?;
            }
            let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(path, "write the hash cache")(e)
        })
    }

    /// Hits of the last scan: files whose digest came from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Misses of the last scan: files that were hashed.
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// Remembered digests.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Starts a scan: resets the counters and what was seen.
    pub(crate) fn begin_scan(&mut self) {
        self.scanned = true;
        self.seen.clear();
        self.hits = 0;
        self.misses = 0;
    }

    /// The digest of an unchanged file, counted as a hit.
    pub(crate) fn lookup(&mut self, key: &FileKey) -> Option<String> {
        let digest = self.entries.get(key)?;
        self.hits += 1;
        self.seen.insert(*key);
        Some(hex::encode(digest))
    }

    /// Records a file that was hashed (a miss); `hash_start` is when hashing
    /// began (see [`RACY_WINDOW`]).
    pub(crate) fn insert(&mut self, key: FileKey, digest: &str, hash_start: SystemTime) {
        self.misses += 1;
        let mut raw = [0u8; 32];
        if hex::decode_to_slice(digest, &mut raw).is_err() || is_racy(&key, hash_start) {
            return;
        }
        self.entries.insert(key, raw);
        self.seen.insert(key);
    }
}

/// Whether the file may change again without moving its ctime (see the module docs).
pub(crate) fn is_racy(key: &FileKey, hash_start: SystemTime) -> bool {
    let Ok(start) = hash_start.duration_since(UNIX_EPOCH + RACY_WINDOW) else {
        return true;
    };
    let start_ns = i64::try_from(start.as_nanos()).unwrap_or(i64::MAX);
    key.ctime_ns >= start_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ctime_ns: i64) -> FileKey {
        FileKey {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 4,
            ctime_ns,
        }
    }

    #[test]
    fn recent_changes_are_racy() {
        let start = UNIX_EPOCH + Duration::from_secs(100);
        let window = i64::try_from(RACY_WINDOW.as_nanos()).unwrap();
        let start_ns = 100_000_000_000;
        assert!(!is_racy(&key(start_ns - window - 1), start));
        assert!(is_racy(&key(start_ns - window), start));
        assert!(is_racy(&key(start_ns + 5), start));
        assert!(!is_racy(&key(-5), start));
    }

    #[test]
    fn racy_entries_are_counted_but_not_remembered() {
        let digest = "ab".repeat(32);
        let start = UNIX_EPOCH + Duration::from_secs(100);
        let mut cache = HashCache::new();
        cache.begin_scan();
        cache.insert(key(99_000_000_000), &digest, start);
        cache.insert(key(100_000_000_000), &digest, start);
        assert_eq!((cache.hits(), cache.misses(), cache.len()), (0, 2, 1));
        assert_eq!(cache.lookup(&key(99_000_000_000)), Some(digest));
        assert_eq!(cache.lookup(&key(100_000_000_000)), None);
        assert_eq!(cache.hits(), 1);
    }

    #[test]
    fn save_and_load_round_trip_and_drop_unseen_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        let start = UNIX_EPOCH + Duration::from_secs(100);
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        let mut cache = HashCache::new();
        cache.begin_scan();
        cache.insert(key(1), &a, start);
        cache.insert(key(2), &b, start);
        cache.save(&path).unwrap();

        let mut loaded = HashCache::load(&path);
        assert_eq!(loaded.len(), 2);
        loaded.begin_scan();
        assert_eq!(loaded.lookup(&key(2)), Some(b.clone()));
        loaded.save(&path).unwrap();
        let mut again = HashCache::load(&path);
        assert_eq!(again.len(), 1);
        assert_eq!(again.lookup(&key(2)), Some(b));
        assert_eq!(again.lookup(&key(1)), None);
        // Nothing but the cache is left in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_or_corrupt_files_load_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        assert!(HashCache::load(&path).is_empty());
        let good = format!("{HEADER}\n1 2 3 4 5 {}\n", "cd".repeat(32));
        fs::write(&path, &good).unwrap();
        assert_eq!(HashCache::load(&path).len(), 1);
        for bad in [
            String::new(),
            "garbage".to_owned(),
            format!("{HEADER}\n1 2 3 4 {}\n", "cd".repeat(32)),
            format!("{HEADER}\n1 2 3 4 5 {}\n", "CD".repeat(32)),
            format!("{HEADER}\n1 2 3 4 5 {} 6\n", "cd".repeat(32)),
            format!("{HEADER}\nx 2 3 4 5 {}\n", "cd".repeat(32)),
            format!("{}\n1 2 3 4 5 {}\n", "other 1", "cd".repeat(32)),
        ] {
            fs::write(&path, &bad).unwrap();
            assert!(HashCache::load(&path).is_empty(), "{bad:?}");
        }
    }
}

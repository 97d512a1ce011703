//! Snapshot tests on real trees in temporary directories: a fixture holds the
//! roots `<tmp>/home/dev` and `<tmp>/workspace`, and `<tmp>/outside`, a canary
//! that no restore may touch.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use burstflare_domain::snapshot as domain;
use rustix::fs::{AtFlags, Timespec, Timestamps};

use super::*;

/// Owner of restored trees: a non-root user when the tests run as root (they
/// do in CI), else the current user, whom chown accepts.
fn opts() -> RestoreOptions {
    let (uid, gid) = if crate::user::is_root() {
        (1000, 1000)
    } else {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    };
    RestoreOptions {
        uid,
        gid,
        limits: Limits::default(),
    }
}

/// Deterministic filler bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn write(path: &Path, content: &[u8], mode: u32) {
    fs::write(path, content).unwrap();
    chmod(path, mode);
}

struct Fixture {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    home: PathBuf,
    ws: PathBuf,
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let home = base.join("home/dev");
        let ws = base.join("workspace");
        let outside = base.join("outside");
        for dir in [&home, &ws, &outside.join("sub")] {
            fs::create_dir_all(dir).unwrap();
        }
        write(&outside.join("secret.txt"), b"do not touch\n", 0o600);
        write(&outside.join("sub/canary"), &noise(99, 5000), 0o644);
        set_mtime(&outside.join("sub"), 1_500_000_000);
        Self {
            _tmp: tmp,
            base,
            home,
            ws,
            outside,
        }
    }

    fn roots(&self) -> Vec<PathBuf> {
        vec![self.home.clone(), self.ws.clone()]
    }

    fn root_names(&self) -> Vec<String> {
        self.roots()
            .iter()
            .map(|r| r.to_str().unwrap().to_owned())
            .collect()
    }

    /// A varied tree under both roots, with whole-second mtimes.
    fn populate(&self) {
        let h = |p: &str| self.home.join(p);
        for dir in [".ssh", "bin", "empty.d", "tmp", "a/b/c/d", "ro"] {
            fs::create_dir_all(h(dir)).unwrap();
        }
        write(&h(".bashrc"), b"export EDITOR=vi\n", 0o644);
        write(&h("copy-of-bashrc"), b"export EDITOR=vi\n", 0o640);
        write(&h(".ssh/id_ed25519"), b"PRIVATE KEY\n", 0o600);
        write(&h("bin/tool"), b"#!/bin/sh\necho tool\n", 0o755);
        write(&h("bin/suid"), b"#!/bin/sh\necho suid\n", 0o4755);
        write(&h("big.bin"), &noise(1, 300 * 1024 + 17), 0o644);
        write(&h("empty"), b"", 0o644);
        write(&h("naïve file.txt"), "unicode ✓\n".as_bytes(), 0o644);
        write(&h("a/b/c/d/deep"), b"deep\n", 0o444);
        write(&h("ro/inside"), b"read-only dir\n", 0o644);
        symlink(".bashrc", h("link-rel")).unwrap();
        symlink("bin", h("link-dir")).unwrap();
        symlink("nope/nothing", h("dangling")).unwrap();
        symlink(h("bin/tool"), h("link-abs")).unwrap();
        symlink("../dev/.bashrc", h("link-around")).unwrap();
        symlink("../../..", h("a/b/c/to-root")).unwrap();
        chmod(&h(".ssh"), 0o700);
        chmod(&h("empty.d"), 0o750);
        chmod(&h("tmp"), 0o1777);
        chmod(&h("ro"), 0o555);

        let w = |p: &str| self.ws.join(p);
        fs::create_dir_all(w("src")).unwrap();
        fs::create_dir_all(w(".git/objects/ab")).unwrap();
        write(&w("README.md"), b"# project\n", 0o644);
        write(&w("src/main.rs"), b"fn main() {}\n", 0o644);
        write(&w(".git/objects/ab/cdef"), &noise(2, 70_000), 0o444);
        symlink("src/main.rs", w("main")).unwrap();

        for root in self.roots() {
            let mut secs = 1_600_000_000;
            stamp(&root, &mut secs);
        }
    }
}

/// Gives every entry under `dir` its own whole-second mtime, children first.
fn stamp(dir: &Path, secs: &mut i64) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            stamp(&path, secs);
        }
        *secs += 1000;
        set_mtime(&path, *secs);
    }
}

/// Everything about one filesystem entry that a restore must preserve or set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Seconds and nanoseconds; `None` where it is not compared.
    mtime: Option<(i64, i64)>,
    /// File content or symlink target.
    data: Vec<u8>,
}

type Listing = BTreeMap<PathBuf, Node>;

/// A recursive listing of everything under `dir` (not `dir` itself), by path
/// relative to `dir`. The mtimes of `volatile` directories are left out: a
/// restore creates and removes its staging directories in them.
fn listing(dir: &Path, volatile: &[&Path]) -> Listing {
    fn walk(base: &Path, dir: &Path, volatile: &[&Path], out: &mut Listing) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let (kind, data) = if meta.is_dir() {
                ("dir", Vec::new())
            } else if meta.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                ("symlink", target.into_os_string().into_encoded_bytes())
            } else if meta.is_file() {
                ("file", fs::read(&path).unwrap())
            } else {
                ("special", Vec::new())
            };
            let mtime =
                (!volatile.contains(&path.as_path())).then(|| (meta.mtime(), meta.mtime_nsec()));
            let rel = path.strip_prefix(base).unwrap().to_path_buf();
            out.insert(
                rel,
                Node {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mtime,
                    data,
                },
            );
            if meta.is_dir() {
                walk(base, &path, volatile, out);
            }
        }
    }
    let mut out = Listing::new();
    walk(dir, dir, volatile, &mut out);
    out
}

impl Fixture {
    /// The whole temporary tree, for "nothing changed" comparisons.
    fn everything(&self) -> Listing {
        let home = self.base.join("home");
        listing(&self.base, &[&home])
    }

    /// Temporary names a restore left next to the roots.
    fn leftovers(&self) -> Vec<PathBuf> {
        [self.base.clone(), self.base.join("home")]
            .iter()
            .flat_map(|dir| fs::read_dir(dir).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".bf-"))
            .collect()
    }
}

/// What a root's listing must be after a restore of `before`: same tree,
/// owned by the session user, setuid and setgid dropped.
fn as_restored(before: &Listing, opts: &RestoreOptions) -> Listing {
    before
        .iter()
        .map(|(path, node)| {
            let mut node = node.clone();
            node.uid = opts.uid;
            node.gid = opts.gid;
            node.mode &= 0o1777;
            (path.clone(), node)
        })
        .collect()
}

/// The content stream of a scan, built the way the control plane does: the
/// blob stream of every digest, parsed and checked, then each file entry's
/// blob in manifest order.
fn content_of(scan: &Scan) -> Vec<u8> {
    let digests: Vec<String> = scan.index.digests().map(str::to_owned).collect();
    let mut stream = Vec::new();
    let written = blobs::write(&scan.index, &digests, &mut stream).unwrap();
    assert_eq!(written, stream.len() as u64);
    let mut reader = blobs::Reader::new(&stream[..], 1 << 30);
    let mut store = HashMap::new();
    while let Some((frame, data)) = reader.next_vec().unwrap() {
        assert_eq!(frame.size, data.len() as u64);
        store.insert(frame.digest, data);
    }
    assert_eq!(store.len(), digests.len());
    content_stream(&scan.manifest, &store)
}

fn content_stream(manifest: &Manifest, store: &HashMap<String, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in &manifest.entries {
        if entry.kind == Kind::File {
            out.extend_from_slice(&store[entry.sha256.as_deref().unwrap()]);
        }
    }
    out
}

fn sha256(data: &[u8]) -> String {
    scan::sha256_hex(data).unwrap()
}

fn remove_contents(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            fs::remove_dir_all(&path).unwrap();
        } else {
            fs::remove_file(&path).unwrap();
        }
    }
}

#[test]
fn round_trip_restores_an_identical_tree() {
    let f = Fixture::new();
    f.populate();
    let snap = scan(&f.roots(), &mut HashCache::new()).unwrap();
    let summary = domain::validate(&snap.manifest, &f.root_names(), &Limits::default()).unwrap();
    assert_eq!(snap.manifest.roots, f.root_names());
    assert!(
        snap.manifest.skipped.is_empty(),
        "{:?}",
        snap.manifest.skipped
    );
    // `.bashrc` and `copy-of-bashrc` share a blob.
    assert_eq!(snap.index.len() as u64, summary.files - 1);
    let content = content_of(&snap);
    assert_eq!(content.len() as u64, summary.bytes);

    let home_before = listing(&f.home, &[]);
    let ws_before = listing(&f.ws, &[]);
    let outside_before = listing(&f.outside, &[]);
    // One root gone, the other emptied (its mode and owner stay).
    fs::remove_dir_all(&f.home).unwrap();
    remove_contents(&f.ws);
    chmod(&f.ws, 0o770);

    let opts = opts();
    let restored = restore(&snap.manifest, &f.roots(), &content[..], &opts).unwrap();
    assert_eq!(
        restored,
        RestoreSummary {
            files: summary.files,
            dirs: summary.dirs,
            symlinks: summary.symlinks,
            bytes: summary.bytes,
        }
    );

    assert_eq!(listing(&f.home, &[]), as_restored(&home_before, &opts));
    assert_eq!(listing(&f.ws, &[]), as_restored(&ws_before, &opts));
    assert_eq!(listing(&f.outside, &[]), outside_before);
    let home_meta = fs::metadata(&f.home).unwrap();
    assert_eq!(home_meta.mode() & 0o7777, 0o755);
    assert_eq!((home_meta.uid(), home_meta.gid()), (opts.uid, opts.gid));
    let ws_meta = fs::metadata(&f.ws).unwrap();
    assert_eq!(ws_meta.mode() & 0o7777, 0o770);
    assert_eq!(ws_meta.uid(), nix::unistd::geteuid().as_raw());
    // Spot checks of what `as_restored` encodes.
    let suid = fs::metadata(f.home.join("bin/suid")).unwrap();
    assert_eq!(suid.mode() & 0o7777, 0o755);
    assert_eq!(
        fs::metadata(f.home.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        fs::read_link(f.home.join("link-rel")).unwrap(),
        Path::new(".bashrc")
    );
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());

    // A scan of the restored tree gives the same manifest.
    let again = scan(&f.roots(), &mut HashCache::new()).unwrap();
    assert_eq!(
        again.manifest,
        Manifest {
            entries: snap
                .manifest
                .entries
                .iter()
                .map(|e| Entry {
                    mode: if e.kind == Kind::Symlink {
                        e.mode
                    } else {
                        e.mode & 0o1777
                    },
                    ..e.clone()
                })
                .collect(),
            ..snap.manifest.clone()
        }
    );
}

#[test]
fn restore_replaces_existing_content_and_never_follows_symlinks_on_disk() {
    let f = Fixture::new();
    f.populate();
    let snap = scan(&f.roots(), &mut HashCache::new()).unwrap();
    let content = content_of(&snap);
    let home_before = listing(&f.home, &[]);
    let ws_before = listing(&f.ws, &[]);

    // The session changed things since: new files, edits, a directory turned
    // into a file, and symlinks to the outside where the snapshot has
    // directories (a restorer writing through them would hit the canary).
    write(&f.home.join("extra.txt"), b"not in the snapshot", 0o644);
    fs::create_dir(f.ws.join("new-dir")).unwrap();
    write(&f.ws.join("new-dir/x"), b"x", 0o644);
    write(&f.home.join(".bashrc"), b"changed\n", 0o600);
    fs::remove_dir_all(f.home.join("empty.d")).unwrap();
    write(&f.home.join("empty.d"), b"now a file", 0o644);
    fs::remove_dir_all(f.home.join(".ssh")).unwrap();
    symlink(&f.outside, f.home.join(".ssh")).unwrap();
    fs::remove_dir_all(f.ws.join("src")).unwrap();
    symlink("../outside", f.ws.join("src")).unwrap();
    let outside_before = listing(&f.outside, &[]);
    let outside_meta = fs::metadata(&f.outside).unwrap();

    let opts = opts();
    restore(&snap.manifest, &f.roots(), &content[..], &opts).unwrap();

    assert_eq!(listing(&f.home, &[]), as_restored(&home_before, &opts));
    assert_eq!(listing(&f.ws, &[]), as_restored(&ws_before, &opts));
    assert!(!f.home.join("extra.txt").exists());
    assert!(!f.ws.join("new-dir").exists());
    assert_eq!(listing(&f.outside, &[]), outside_before);
    let outside_after = fs::metadata(&f.outside).unwrap();
    assert_eq!(
        (outside_after.mtime(), outside_after.mtime_nsec()),
        (outside_meta.mtime(), outside_meta.mtime_nsec())
    );
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

/// A populated fixture, its scan and content stream.
fn scanned() -> (Fixture, Manifest, Vec<u8>) {
    let f = Fixture::new();
    f.populate();
    let snap = scan(&f.roots(), &mut HashCache::new()).unwrap();
    let content = content_of(&snap);
    (f, snap.manifest, content)
}

/// Restores and expects a refusal that changes nothing under the fixture.
fn assert_refused(
    f: &Fixture,
    manifest: &Manifest,
    content: &[u8],
    limits: Limits,
    expected: impl Fn(&SnapshotError) -> bool,
) -> SnapshotError {
    let before = f.everything();
    let opts = RestoreOptions { limits, ..opts() };
    let err = restore(manifest, &f.roots(), content, &opts).unwrap_err();
    assert!(expected(&err), "unexpected error: {err}");
    assert_eq!(f.everything(), before, "the restore changed something");
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
    err
}

fn evil_file(root: u32, path: &str, content: &[u8]) -> Entry {
    Entry {
        root,
        path: path.to_owned(),
        kind: Kind::File,
        mode: 0o644,
        mtime: 0,
        size: content.len() as u64,
        sha256: Some(sha256(content)),
        target: None,
    }
}

fn evil_link(root: u32, path: &str, target: &str) -> Entry {
    Entry {
        root,
        path: path.to_owned(),
        kind: Kind::Symlink,
        mode: 0o777,
        mtime: 0,
        size: 0,
        sha256: None,
        target: Some(target.to_owned()),
    }
}

fn invalid(err: &SnapshotError) -> &domain::SnapshotError {
    assert!(err.is_invalid_input(), "{err}");
    match err {
        SnapshotError::Manifest(e) => e,
        other => panic!("not a manifest error: {other}"),
    }
}

/// Appends an entry (and its content) to a valid snapshot.
fn with_extra(
    mut manifest: Manifest,
    mut content: Vec<u8>,
    entries: &[(Entry, &[u8])],
) -> (Manifest, Vec<u8>) {
    for (entry, data) in entries {
        manifest.entries.push(entry.clone());
        content.extend_from_slice(data);
    }
    (manifest, content)
}

#[test]
fn refuses_a_dotdot_component() {
    let (f, m, c) = scanned();
    let (m, c) = with_extra(
        m,
        c,
        &[(evil_file(0, "../../outside/pwned", b"pwned"), b"pwned")],
    );
    let err = assert_refused(&f, &m, &c, Limits::default(), |e| {
        matches!(invalid(e), domain::SnapshotError::DotDot { .. })
    });
    assert!(err.to_string().contains("`..` is not allowed"), "{err}");
}

#[test]
fn refuses_an_absolute_path() {
    let (f, m, c) = scanned();
    let target = f.outside.join("pwned");
    let (m, c) = with_extra(
        m,
        c,
        &[(evil_file(0, target.to_str().unwrap(), b"pwned"), b"pwned")],
    );
    assert_refused(&f, &m, &c, Limits::default(), |e| {
        matches!(invalid(e), domain::SnapshotError::AbsolutePath { .. })
    });
}

#[test]
fn refuses_an_entry_written_through_a_symlink_entry() {
    let (f, m, c) = scanned();
    let (m, c) = with_extra(
        m,
        c,
        &[
            (evil_link(0, "via", "a/b"), b""),
            (evil_file(0, "via/pwned", b"pwned"), b"pwned"),
        ],
    );
    let err = assert_refused(&f, &m, &c, Limits::default(), |e| {
        matches!(
            invalid(e),
            domain::SnapshotError::WrittenThroughSymlink { .. }
        )
    });
    assert!(err.to_string().contains("symlink escape"), "{err}");
}

#[test]
fn refuses_a_relative_symlink_escape() {
    let (f, m, c) = scanned();
    let (m, c) = with_extra(m, c, &[(evil_link(0, "evil", "../../outside"), b"")]);
    assert_refused(&f, &m, &c, Limits::default(), |e| {
        matches!(invalid(e), domain::SnapshotError::SymlinkEscape { .. })
    });
    // From a subdirectory, and under the second root.
    let (f, m, c) = scanned();
    let (m, c) = with_extra(
        m,
        c,
        &[(
            evil_link(0, "a/b/evil", "../../../../outside/secret.txt"),
            b"",
        )],
    );
    assert_refused(&f, &m, &c, Limits::default(), |e| {
        matches!(invalid(e), domain::SnapshotError::SymlinkEscape { .. })
    });
    let (f, m, c) = scanned();
    let (m, c) = with_extra(m, c, &[(evil_link(1, "evil", "../outside"), b"")]);
    assert_refused(&f, &m, &c, Limits::default(), |e| {
        matches!(invalid(e), domain::SnapshotError::SymlinkEscape { .. })
    });
}

#[test]
fn refuses_an_absolute_symlink_escape() {
    let (f, m, c) = scanned();
    let outside = f.outside.to_str().unwrap().to_owned();
    let (m, c) = with_extra(m, c, &[(evil_link(0, "evil", &outside), b"")]);
    assert_refused(&f, &m, &c, Limits::default(), |e| {
        matches!(invalid(e), domain::SnapshotError::SymlinkEscape { .. })
    });
}

#[test]
fn refuses_a_root_that_is_not_allowed() {
    let (f, mut m, c) = scanned();
    // The workspace's entries, aimed at the canary.
    m.roots[1] = f.outside.to_str().unwrap().to_owned();
    let err = assert_refused(&f, &m, &c, Limits::default(), |e| {
        matches!(invalid(e), domain::SnapshotError::RootNotAllowed { .. })
    });
    assert!(err.to_string().contains("not a persisted path"), "{err}");
}

#[test]
fn refuses_an_oversized_file() {
    let (f, m, c) = scanned();
    let limits = Limits {
        max_file_bytes: 100 * 1024,
        ..Limits::default()
    };
    let err = assert_refused(&f, &m, &c, limits, |e| {
        matches!(invalid(e), domain::SnapshotError::OversizedEntry { .. })
    });
    assert!(
        err.to_string().contains("oversized entry `big.bin`"),
        "{err}"
    );
}

#[test]
fn refuses_content_that_does_not_match_its_sha256() {
    let (f, m, mut c) = scanned();
    // The last file of the stream: everything before it is staged by then.
    *c.last_mut().unwrap() ^= 1;
    let last = m
        .entries
        .iter()
        .rev()
        .find(|e| e.kind == Kind::File)
        .unwrap();
    let err = assert_refused(&f, &m, &c, Limits::default(), |e| {
        matches!(e, SnapshotError::DigestMismatch { .. })
    });
    assert!(err.is_invalid_input());
    assert!(err.to_string().contains(&last.path), "{err}");

    // Same length, content from another file.
    let (f, m, mut c) = scanned();
    let first = m
        .entries
        .iter()
        .position(|e| e.kind == Kind::File && e.size > 0)
        .unwrap();
    let offset: u64 = m.entries[..first].iter().map(|e| e.size).sum();
    c[usize::try_from(offset).unwrap()] ^= 0xff;
    assert_refused(&f, &m, &c, Limits::default(), |e| {
        matches!(e, SnapshotError::DigestMismatch { .. })
    });
}

#[test]
fn refuses_a_short_content_stream() {
    let (f, m, mut c) = scanned();
    c.pop();
    let err = assert_refused(&f, &m, &c, Limits::default(), |e| {
        matches!(e, SnapshotError::ShortContent { .. })
    });
    assert!(err.is_invalid_input());
    assert_refused(&f, &m, &[], Limits::default(), |e| {
        matches!(e, SnapshotError::ShortContent { got: 0, .. })
    });
}

#[test]
fn refuses_trailing_content() {
    let (f, m, mut c) = scanned();
    c.push(b'x');
    let err = assert_refused(&f, &m, &c, Limits::default(), |e| {
        matches!(e, SnapshotError::TrailingContent)
    });
    assert!(err.is_invalid_input());
}

#[test]
fn refuses_a_duplicate_path() {
    let (f, m, c) = scanned();
    let (m, c) = with_extra(m, c, &[(evil_file(0, ".bashrc", b"pwned"), b"pwned")]);
    assert_refused(&f, &m, &c, Limits::default(), |e| {
        matches!(invalid(e), domain::SnapshotError::DuplicateEntry { .. })
    });
}

#[test]
fn refuses_a_child_before_its_parent() {
    let (f, mut m, c) = scanned();
    let at = m.entries.iter().position(|e| e.path == "a/b").unwrap();
    let dir = m.entries.remove(at);
    m.entries.push(dir);
    assert_refused(&f, &m, &c, Limits::default(), |e| {
        matches!(invalid(e), domain::SnapshotError::MissingParent { .. })
    });
}

#[test]
fn refuses_a_root_whose_parent_is_a_symlink() {
    let (f, m, c) = scanned();
    // `<tmp>/alias -> home`: `<tmp>/alias/dev` is the home root through a symlink.
    symlink("home", f.base.join("alias")).unwrap();
    let alias = f.base.join("alias/dev");
    let mut m = m;
    m.roots[0] = alias.to_str().unwrap().to_owned();
    // Absolute targets name the real root; the rest of the manifest is valid.
    m.entries
        .retain(|e| !e.target.as_deref().is_some_and(|t| t.starts_with('/')));
    let before = f.everything();
    let err = restore(&m, &[alias, f.ws.clone()], &c[..], &opts()).unwrap_err();
    assert!(matches!(err, SnapshotError::Unsuitable { .. }), "{err}");
    assert!(!err.is_invalid_input());
    assert_eq!(f.everything(), before);
    assert!(f.leftovers().is_empty());
}

#[test]
fn restores_nothing_from_an_empty_manifest_and_refuses_content_with_it() {
    let f = Fixture::new();
    let m = Manifest {
        format: FORMAT,
        roots: Vec::new(),
        entries: Vec::new(),
        skipped: Vec::new(),
    };
    let before = f.everything();
    assert_eq!(
        restore(&m, &f.roots(), &[][..], &opts()).unwrap(),
        RestoreSummary::default()
    );
    assert!(matches!(
        restore(&m, &f.roots(), &b"x"[..], &opts()),
        Err(SnapshotError::TrailingContent)
    ));
    assert_eq!(f.everything(), before);
}

/// Waits until files written so far are old enough for the hash cache to
/// remember them (see `RACY_WINDOW`).
fn wait_out_racy_window() {
    std::thread::sleep(RACY_WINDOW + Duration::from_millis(20));
}

#[test]
fn hash_cache_skips_unchanged_files() {
    const FILES: usize = 40;
    let f = Fixture::new();
    let data = f.ws.join("data");
    fs::create_dir(&data).unwrap();
    for i in 0..FILES {
        write(
            &data.join(format!("f{i:02}")),
            &noise(i as u64, 512 * 1024),
            0o644,
        );
    }
    wait_out_racy_window();
    let roots = [f.ws.clone()];
    let mut cache = HashCache::new();
    let first = scan(&roots, &mut cache).unwrap();
    assert_eq!((cache.hits(), cache.misses()), (0, FILES as u64));
    assert_eq!(first.index.total_bytes(), 20 * 1024 * 1024);

    let second = scan(&roots, &mut cache).unwrap();
    assert_eq!((cache.hits(), cache.misses()), (FILES as u64, 0));
    assert_eq!(second.manifest, first.manifest);

    // Through the file.
    let path = f.base.join("hashcache");
    cache.save(&path).unwrap();
    let mut cache = HashCache::load(&path);
    assert_eq!(cache.len(), FILES);
    scan(&roots, &mut cache).unwrap();
    assert_eq!((cache.hits(), cache.misses()), (FILES as u64, 0));

    // Touching one file (new mtime and ctime) costs exactly one hash.
    let touched = data.join("f07");
    File::options()
        .write(true)
        .open(&touched)
        .unwrap()
        .set_modified(SystemTime::now())
        .unwrap();
    let third = scan(&roots, &mut cache).unwrap();
    assert_eq!((cache.hits(), cache.misses()), (FILES as u64 - 1, 1));
    assert_eq!(third.index, first.index);

    // Entries the last scan did not see are dropped on save. (`f07` was
    // hashed within the racy window, so it is hashed again once it is old.)
    wait_out_racy_window();
    fs::remove_file(data.join("f00")).unwrap();
    scan(&roots, &mut cache).unwrap();
    assert_eq!((cache.hits(), cache.misses()), (FILES as u64 - 2, 1));
    cache.save(&path).unwrap();
    assert_eq!(HashCache::load(&path).len(), FILES - 1);
}

#[test]
fn hash_cache_sees_a_same_size_edit_that_keeps_the_mtime() {
    let f = Fixture::new();
    let path = f.ws.join("file");
    write(&path, b"original content", 0o644);
    set_mtime(&path, 1_600_000_000);
    wait_out_racy_window();
    let roots = [f.ws.clone()];
    let mut cache = HashCache::new();
    let before = scan(&roots, &mut cache).unwrap();
    assert_eq!(
        before.manifest.entries[0].sha256,
        Some(sha256(b"original content"))
    );

    fs::write(&path, b"modified content").unwrap();
    set_mtime(&path, 1_600_000_000);
    let after = scan(&roots, &mut cache).unwrap();
    assert_eq!((cache.hits(), cache.misses()), (0, 1));
    assert_eq!(
        after.manifest.entries[0].mtime,
        before.manifest.entries[0].mtime
    );
    assert_eq!(
        after.manifest.entries[0].sha256,
        Some(sha256(b"modified content"))
    );
}

#[test]
fn scan_skips_special_files_with_a_reason() {
    let f = Fixture::new();
    nix::unistd::mkfifo(&f.home.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(f.home.join("sock")).unwrap();
    write(&f.home.join("plain"), b"plain", 0o644);
    let snap = scan(&f.roots(), &mut HashCache::new()).unwrap();
    let paths: Vec<&str> = snap
        .manifest
        .entries
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(paths, ["plain"]);
    let skipped: Vec<(String, &str)> = snap
        .manifest
        .skipped
        .iter()
        .map(|s| (s.path.clone(), s.reason.as_str()))
        .collect();
    let at = |name: &str| f.home.join(name).to_str().unwrap().to_owned();
    assert_eq!(
        skipped,
        [(at("fifo"), "is a FIFO"), (at("sock"), "is a socket")]
    );
    domain::validate(&snap.manifest, &f.root_names(), &Limits::default()).unwrap();
}

#[test]
fn scan_skips_symlinks_that_point_outside_the_root() {
    let f = Fixture::new();
    fs::create_dir(f.home.join("sub")).unwrap();
    symlink("../../outside", f.home.join("up")).unwrap();
    symlink(&f.outside, f.home.join("abs")).unwrap();
    symlink("..", f.home.join("parent")).unwrap();
    symlink("../../../outside/secret.txt", f.home.join("sub/deep")).unwrap();
    symlink("sub", f.home.join("ok")).unwrap();
    symlink("..", f.home.join("sub/ok-parent")).unwrap();
    let snap = scan(&f.roots(), &mut HashCache::new()).unwrap();
    let kept: Vec<&str> = snap
        .manifest
        .entries
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(kept, ["ok", "sub", "sub/ok-parent"]);
    let mut skipped: Vec<&str> = snap
        .manifest
        .skipped
        .iter()
        .map(|s| s.path.as_str())
        .collect();
    skipped.sort_unstable();
    let at = |name: &str| f.home.join(name).to_str().unwrap().to_owned();
    assert_eq!(skipped, [at("abs"), at("parent"), at("sub/deep"), at("up")]);
    assert!(
        snap.manifest
            .skipped
            .iter()
            .all(|s| s.reason.starts_with("points outside the persisted path"))
    );
    domain::validate(&snap.manifest, &f.root_names(), &Limits::default()).unwrap();
}

#[test]
fn scan_records_missing_roots_and_folds_nested_ones() {
    let f = Fixture::new();
    fs::create_dir(f.home.join(".cache")).unwrap();
    let missing = f.base.join("nope");
    let roots = [f.home.clone(), f.home.join(".cache"), missing.clone()];
    let snap = scan(&roots, &mut HashCache::new()).unwrap();
    assert_eq!(snap.manifest.roots, [f.home.to_str().unwrap()]);
    assert_eq!(snap.manifest.skipped.len(), 1);
    assert_eq!(snap.manifest.skipped[0].path, missing.to_str().unwrap());
    assert_eq!(snap.manifest.skipped[0].reason, "does not exist");
    let paths: Vec<&str> = snap
        .manifest
        .entries
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(paths, [".cache"]);

    for bad in ["relative/path", "/trailing/", "/a/../b", "/"] {
        let err = scan(&[PathBuf::from(bad)], &mut HashCache::new()).unwrap_err();
        assert!(
            matches!(err, SnapshotError::InvalidRoot { .. }),
            "{bad}: {err}"
        );
        assert!(err.is_invalid_input());
    }
}

#[test]
fn scan_is_deterministic_and_lists_parents_first() {
    let f = Fixture::new();
    for dir in ["a/b", "a-c", "b"] {
        fs::create_dir_all(f.ws.join(dir)).unwrap();
    }
    write(&f.ws.join("a/b/file"), b"1", 0o644);
    write(&f.ws.join("a/z"), b"2", 0o644);
    write(&f.ws.join("A"), b"3", 0o644);
    let one = scan(std::slice::from_ref(&f.ws), &mut HashCache::new()).unwrap();
    let two = scan(std::slice::from_ref(&f.ws), &mut HashCache::new()).unwrap();
    assert_eq!(one.manifest, two.manifest);
    let paths: Vec<&str> = one
        .manifest
        .entries
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(paths, ["A", "a", "a/b", "a/b/file", "a/z", "a-c", "b"]);
    let file = &one.manifest.entries[3];
    assert_eq!(file.kind, Kind::File);
    assert_eq!(file.size, 1);
    assert_eq!(file.mode, 0o644);
    assert_eq!(
        file.mtime,
        fs::metadata(f.ws.join("a/b/file")).unwrap().mtime()
    );
}

#[test]
fn blob_stream_format() {
    let f = Fixture::new();
    write(&f.ws.join("hello"), b"hello\n", 0o644);
    write(&f.ws.join("empty"), b"", 0o644);
    let snap = scan(std::slice::from_ref(&f.ws), &mut HashCache::new()).unwrap();
    let hello = sha256(b"hello\n");
    let empty = sha256(b"");
    let mut out = Vec::new();
    let n = blobs::write(
        &snap.index,
        &[hello.clone(), empty.clone(), hello.clone()],
        &mut out,
    )
    .unwrap();

    let mut expected = Vec::new();
    expected.extend_from_slice(hello.as_bytes());
    expected.extend_from_slice(&6u64.to_be_bytes());
    expected.extend_from_slice(b"hello\n");
    expected.extend_from_slice(empty.as_bytes());
    expected.extend_from_slice(&0u64.to_be_bytes());
    expected.extend_from_slice(hello.as_bytes());
    expected.extend_from_slice(&6u64.to_be_bytes());
    expected.extend_from_slice(b"hello\n");
    assert_eq!(out, expected);
    assert_eq!(n, expected.len() as u64);

    let mut reader = blobs::Reader::new(&out[..], 6);
    let mut frames = Vec::new();
    while let Some((frame, data)) = reader.next_vec().unwrap() {
        frames.push((frame.digest, frame.size, data));
    }
    assert_eq!(
        frames,
        [
            (hello.clone(), 6, b"hello\n".to_vec()),
            (empty, 0, Vec::new()),
            (hello, 6, b"hello\n".to_vec()),
        ]
    );
}

#[test]
fn blob_write_refuses_unknown_digests_before_writing_anything() {
    let f = Fixture::new();
    write(&f.ws.join("hello"), b"hello\n", 0o644);
    let snap = scan(std::slice::from_ref(&f.ws), &mut HashCache::new()).unwrap();
    let mut out = Vec::new();
    let unknown = sha256(b"something else");
    let err = blobs::write(
        &snap.index,
        &[sha256(b"hello\n"), unknown.clone()],
        &mut out,
    )
    .unwrap_err();
    assert!(matches!(&err, SnapshotError::UnknownDigest { digest } if *digest == unknown));
    assert!(err.is_invalid_input());
    assert!(out.is_empty());
}

#[test]
fn blob_write_detects_files_changed_since_the_scan() {
    let f = Fixture::new();
    let path = f.ws.join("file");
    let cases: [(&str, &[u8]); 3] = [
        ("grew", b"0123456789+"),
        ("shrank", b"012345678"),
        ("same size", b"9876543210"),
    ];
    for (what, new) in cases {
        write(&path, b"0123456789", 0o644);
        let snap = scan(std::slice::from_ref(&f.ws), &mut HashCache::new()).unwrap();
        fs::write(&path, new).unwrap();
        let digests: Vec<String> = snap.index.digests().map(str::to_owned).collect();
        let err = blobs::write(&snap.index, &digests, std::io::sink()).unwrap_err();
        assert!(
            matches!(err, SnapshotError::Changed { .. }),
            "{what}: {err}"
        );
        assert!(!err.is_invalid_input());
        assert!(
            err.to_string().contains("changed during the snapshot"),
            "{err}"
        );
    }
    let snap = scan(std::slice::from_ref(&f.ws), &mut HashCache::new()).unwrap();
    fs::remove_file(&path).unwrap();
    let digests: Vec<String> = snap.index.digests().map(str::to_owned).collect();
    let err = blobs::write(&snap.index, &digests, std::io::sink()).unwrap_err();
    assert!(matches!(err, SnapshotError::Changed { .. }), "{err}");
}

#[test]
fn blob_reader_checks_every_frame() {
    let frame = |digest: &str, content: &[u8]| {
        let mut out = digest.as_bytes().to_vec();
        out.extend_from_slice(&(content.len() as u64).to_be_bytes());
        out.extend_from_slice(content);
        out
    };
    let good = frame(&sha256(b"abc"), b"abc");
    let read_all = |stream: &[u8], max: u64| -> Result<usize, SnapshotError> {
        let mut reader = blobs::Reader::new(stream, max);
        let mut n = 0;
        while reader.next_vec()?.is_some() {
            n += 1;
        }
        Ok(n)
    };
    assert_eq!(read_all(&good, 3).unwrap(), 1);
    assert_eq!(read_all(&[], 3).unwrap(), 0);

    let cases: Vec<(&str, Vec<u8>, u64)> = vec![
        ("wrong content", frame(&sha256(b"abc"), b"abd"), 3),
        ("truncated content", good[..good.len() - 1].to_vec(), 3),
        ("truncated header", good[..70].to_vec(), 3),
        (
            "uppercase digest",
            frame(&sha256(b"abc").to_uppercase(), b"abc"),
            3,
        ),
        ("not hex", frame(&"z".repeat(64), b"abc"), 3),
        ("over the limit", good.clone(), 2),
        (
            "second frame bad",
            [good.clone(), frame(&sha256(b"x"), b"y")].concat(),
            3,
        ),
    ];
    for (what, stream, max) in cases {
        let err = read_all(&stream, max).unwrap_err();
        assert!(err.is_invalid_input(), "{what}: {err}");
        let kind_ok = match what {
            "wrong content" | "second frame bad" => {
                matches!(err, SnapshotError::FrameDigestMismatch { .. })
            }
            "over the limit" => matches!(err, SnapshotError::FrameTooLarge { .. }),
            _ => matches!(err, SnapshotError::BadFrame { .. }),
        };
        assert!(kind_ok, "{what}: {err}");
    }
}

/// A mount made by a test, unmounted on drop. [`TestMount::tmpfs`] gives
/// `None` (and the test skips that part) where mounting is not permitted.
struct TestMount(PathBuf);

impl TestMount {
    fn tmpfs(at: &Path) -> Option<Self> {
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "burstflare-test"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipping the mount checks: cannot mount a tmpfs here (needs root)");
        }
        mounted.then(|| Self(at.to_path_buf()))
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn scan_does_not_cross_into_another_filesystem() {
    let f = Fixture::new();
    let mnt = f.home.join("mnt");
    fs::create_dir(&mnt).unwrap();
    write(&f.home.join("plain"), b"plain", 0o644);
    let Some(_tmpfs) = TestMount::tmpfs(&mnt) else {
        return;
    };
    write(&mnt.join("on-tmpfs"), b"elsewhere", 0o644);
    let snap = scan(&f.roots(), &mut HashCache::new()).unwrap();
    let paths: Vec<&str> = snap
        .manifest
        .entries
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(paths, ["plain"]);
    assert_eq!(snap.manifest.skipped.len(), 1);
    assert_eq!(snap.manifest.skipped[0].path, mnt.to_str().unwrap());
    assert_eq!(snap.manifest.skipped[0].reason, "another filesystem");
    domain::validate(&snap.manifest, &f.root_names(), &Limits::default()).unwrap();
}

#[test]
fn restore_refuses_roots_with_mounts() {
    let (f, m, c) = scanned();
    let mnt = f.home.join("a/mnt");
    fs::create_dir(&mnt).unwrap();
    let Some(_inside) = TestMount::tmpfs(&mnt) else {
        return;
    };
    write(&mnt.join("volume-data"), b"keep me", 0o644);
    let before = f.everything();
    let err = restore(&m, &f.roots(), &c[..], &opts()).unwrap_err();
    assert!(
        matches!(&err, SnapshotError::Unsuitable { path, .. } if *path == mnt),
        "{err}"
    );
    assert!(!err.is_invalid_input());
    assert_eq!(f.everything(), before);
    drop(_inside);

    // A root that is itself a mount point cannot be renamed, even a bind
    // mount from the same filesystem.
    let Some(_root) = TestMount::tmpfs(&f.ws) else {
        return;
    };
    let before = f.everything();
    let err = restore(&m, &f.roots(), &c[..], &opts()).unwrap_err();
    assert!(
        matches!(&err, SnapshotError::Unsuitable { path, .. } if *path == f.ws),
        "{err}"
    );
    assert_eq!(f.everything(), before);
    drop(_root);
    let bound = std::process::Command::new("mount")
        .arg("--bind")
        .arg(&f.ws)
        .arg(&f.ws)
        .status()
        .is_ok_and(|s| s.success());
    assert!(bound, "mount --bind");
    let _bind = TestMount(f.ws.clone());
    assert_eq!(
        fs::metadata(&f.ws).unwrap().dev(),
        fs::metadata(&f.base).unwrap().dev()
    );
    let before = f.everything();
    let err = restore(&m, &f.roots(), &c[..], &opts()).unwrap_err();
    assert!(
        matches!(&err, SnapshotError::Unsuitable { path, .. } if *path == f.ws),
        "{err}"
    );
    assert_eq!(f.everything(), before);
    assert!(f.leftovers().is_empty());
}

#[test]
fn removing_a_temporary_tree_never_follows_symlinks_nor_enters_mounts() {
    let f = Fixture::new();
    let tree = f.base.join("tree");
    fs::create_dir_all(tree.join("a/b")).unwrap();
    write(&tree.join("a/b/file"), b"x", 0o644);
    symlink(&f.outside, tree.join("a/to-outside")).unwrap();
    symlink(f.outside.join("secret.txt"), tree.join("secret-link")).unwrap();
    fs::create_dir(tree.join("ro")).unwrap();
    write(&tree.join("ro/file"), b"x", 0o644);
    chmod(&tree.join("ro"), 0o555);
    let outside = listing(&f.outside, &[]);
    restore::try_remove_tree(&tree).unwrap();
    assert!(!tree.exists());
    assert_eq!(listing(&f.outside, &[]), outside);

    fs::create_dir_all(tree.join("m")).unwrap();
    write(&tree.join("file"), b"x", 0o644);
    let Some(_tmpfs) = TestMount::tmpfs(&tree.join("m")) else {
        return;
    };
    write(&tree.join("m/volume-data"), b"keep me", 0o644);
    assert!(restore::try_remove_tree(&tree).is_err());
    assert_eq!(fs::read(tree.join("m/volume-data")).unwrap(), b"keep me");
    assert!(!tree.join("file").exists());
}

#[test]
fn mountinfo_escapes() {
    assert_eq!(
        restore::unescape_mountinfo(br"/home/dev/my\040dir\134x\011"),
        b"/home/dev/my dir\\x\t"
    );
    assert_eq!(restore::unescape_mountinfo(br"/a\04"), br"/a\04");
    assert_eq!(restore::unescape_mountinfo(br"/a\999"), br"/a\999");
}

/// On overlayfs without `redirect_dir` (Docker's default), a directory that
/// comes from a lower layer — `/home/dev` of the image — cannot be renamed
/// (`EXDEV`): the restore replaces what is inside it instead.
#[test]
fn restores_into_a_root_from_a_lower_overlay_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let (lower, upper, work, merged) = (
        base.join("lower"),
        base.join("upper"),
        base.join("work"),
        base.join("merged"),
    );
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir_all(d).unwrap();
    }
    // The image: a home with a file and a directory.
    fs::create_dir_all(lower.join("home/dev/.ssh")).unwrap();
    write(&lower.join("home/dev/.bashrc"), b"image bashrc", 0o644);
    write(&lower.join("home/dev/.ssh/known"), b"image key", 0o600);
    let options = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=off",
        lower.display(),
        upper.display(),
        work.display()
    );
    let mounted = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(&merged)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping: cannot mount overlayfs here (needs root)");
        return;
    }
    let _mount = TestMount(merged.clone());
    let root = merged.join("home/dev");
    // The premise: the root cannot be renamed.
    let err = fs::rename(&root, merged.join("home/other")).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::XDEV.raw_os_error())
    );

    // A snapshot of another tree, restored as that root.
    let src = base.join("src/home/dev");
    fs::create_dir_all(src.join("project/src")).unwrap();
    write(&src.join("project/src/main.rs"), b"fn main() {}", 0o644);
    write(&src.join(".bashrc"), b"my bashrc", 0o600);
    symlink("project/src/main.rs", src.join("main")).unwrap();
    let snap = scan(std::slice::from_ref(&src), &mut HashCache::new()).unwrap();
    let content = content_of(&snap);
    let mut manifest = snap.manifest.clone();
    manifest.roots = vec![root.to_str().unwrap().to_owned()];
    let summary = restore(
        &manifest,
        std::slice::from_ref(&root),
        &content[..],
        &opts(),
    )
    .unwrap();
    assert_eq!((summary.files, summary.symlinks), (2, 1));
    // Same entries, kinds, modes and contents (owners and sub-second mtimes
    // are not carried).
    let shape = |dir: &Path| -> Vec<(PathBuf, &'static str, u32, Vec<u8>)> {
        listing(dir, &[])
            .into_iter()
            .map(|(path, n)| (path, n.kind, n.mode, n.data))
            .collect()
    };
    assert_eq!(shape(&root), shape(&src));
    assert!(
        !root.join(".ssh").exists(),
        "the image's directory is replaced too"
    );
    let owner = fs::symlink_metadata(root.join(".bashrc")).unwrap();
    assert_eq!((owner.uid(), owner.gid()), (opts().uid, opts().gid));
    let leftovers: Vec<_> = fs::read_dir(merged.join("home"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".bf-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // And again, over its own restored content.
    restore(
        &manifest,
        std::slice::from_ref(&root),
        &content[..],
        &opts(),
    )
    .unwrap();
    assert_eq!(shape(&root), shape(&src));
}

//! Template layers end to end on real trees in temp dirs: scan a base tree,
//! mutate it the way setup commands do, capture, apply to a fresh copy of the
//! base, and compare the trees; malicious layers built by hand with the `tar`
//! crate; limits; the base manifest file; throughput. Two ignored tests
//! measure a real image and drive a manual run in real containers.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a broken precondition aborts the test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burstflare_agent::layer::{
    self, ApplyLimits, CaptureSummary, DELETIONS_ENTRY, Entry, EntryKind, Excludes, LayerError,
    Manifest,
};
use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};
use tempfile::TempDir;

/// The mtime every base entry gets, so two base trees are identical.
const BASE_MTIME: i64 = 1_600_000_000;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn gid() -> u32 {
    nix::unistd::getegid().as_raw()
}

fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let time = Timespec {
        tv_sec: secs,
        tv_nsec: nanos.into(),
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

fn write(root: &Path, rel: &str, content: &[u8], mode: u32) -> PathBuf {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// A small image: nested directories, an executable, a setuid file, an empty
/// file, symlinks, and directories a layer must never carry.
fn build_base(root: &Path) {
    for dir in [
        "etc/app",
        "usr/bin",
        "usr/lib/tool",
        "opt/old/sub",
        "srv/data",
        "var/dir-becomes-file",
        "var/log",
        "tmp",
        "proc",
        "home/dev/.ssh",
    ] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    write(root, "etc/app/config", b"a=1\n", 0o644);
    write(root, "etc/app/same-size", b"AAAA", 0o644);
    write(root, "etc/mode-change", b"mode\n", 0o644);
    write(root, "etc/empty", b"", 0o644);
    write(root, "etc/file-becomes-dir", b"file\n", 0o644);
    write(root, "usr/bin/tool", b"#!/bin/sh\necho tool\n", 0o755);
    write(root, "usr/bin/suid-tool", b"\x7fELF pretend", 0o4755);
    write(root, "opt/old/a", b"old a", 0o644);
    write(root, "opt/old/sub/b", b"old b", 0o600);
    write(root, "srv/data/file-to-delete", b"bye", 0o644);
    write(root, "srv/data/to-symlink", b"soon a symlink", 0o644);
    write(root, "var/dir-becomes-file/child", b"child", 0o644);
    write(root, "var/log/base.log", b"log", 0o644);
    symlink("../../bin/tool", root.join("usr/lib/tool/current")).unwrap();
    symlink("usr/bin", root.join("bin")).unwrap();
    fix_modes_and_mtimes(root);
}

/// Gives every directory under `root` mode 0755 and every entry the base mtime.
fn fix_modes_and_mtimes(root: &Path) {
    let mut paths = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o755)).unwrap();
                stack.push(entry.path());
            }
            paths.push(entry.path());
        }
    }
    for path in paths {
        set_mtime(&path, BASE_MTIME, 0);
    }
}

/// Names and a target that exercise GNU long names and escaping.
fn long_dir() -> String {
    format!("opt/new/{}", "d".repeat(120))
}

fn long_target() -> String {
    format!("../{}", "t".repeat(150))
}

fn odd_name() -> &'static [u8] {
    b"opt/new/caf\xe9 \n name"
}

/// What setup commands might do. Returns the paths the layer must hold, with
/// their entry types (f file, d directory, l symlink, h hard link).
fn mutate(root: &Path) -> BTreeSet<(Vec<u8>, char)> {
    let mut expected = BTreeSet::new();
    let mut expect = |path: &[u8], kind: char| {
        expected.insert((path.to_vec(), kind));
    };

    // New files in new directories, a hard link, long names, an odd name, a FIFO.
    write(root, "opt/new/deep/file.txt", b"new file\n", 0o644);
    fs::hard_link(
        root.join("opt/new/deep/file.txt"),
        root.join("opt/new/deep/file2"),
    )
    .unwrap();
    write(root, &format!("{}/file", long_dir()), b"long", 0o640);
    symlink(long_target(), root.join("opt/new/long-target")).unwrap();
    fs::write(root.join(OsStr::from_bytes(odd_name())), b"odd").unwrap();
    write(root, "opt/new/empty", b"", 0o644);
    write(root, "opt/new/suid", b"setuid", 0o4755);
    nix::unistd::mkfifo(
        &root.join("opt/new/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    // A sub-second mtime: carried by a PAX record.
    set_mtime(
        &root.join("opt/new/deep/file.txt"),
        1_700_000_000,
        123_456_789,
    );
    for (path, kind) in [
        ("opt/new", 'd'),
        ("opt/new/deep", 'd'),
        ("opt/new/deep/file.txt", 'f'),
        ("opt/new/deep/file2", 'h'),
        ("opt/new/empty", 'f'),
        ("opt/new/long-target", 'l'),
        ("opt/new/suid", 'f'),
    ] {
        expect(path.as_bytes(), kind);
    }
    expect(long_dir().as_bytes(), 'd');
    expect(format!("{}/file", long_dir()).as_bytes(), 'f');
    expect(odd_name(), 'f');

    // Same size, same mtime, other content: only the hash tells.
    let same_size = root.join("etc/app/same-size");
    fs::write(&same_size, b"BBBB").unwrap();
    set_mtime(&same_size, BASE_MTIME, 0);
    expect(b"etc/app/same-size", 'f');

    fs::set_permissions(
        root.join("etc/mode-change"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    expect(b"etc/mode-change", 'f');

    fs::set_permissions(root.join("srv"), fs::Permissions::from_mode(0o750)).unwrap();
    expect(b"srv", 'd');

    fs::remove_file(root.join("srv/data/to-symlink")).unwrap();
    symlink("../../etc/app/config", root.join("srv/data/to-symlink")).unwrap();
    expect(b"srv/data/to-symlink", 'l');

    fs::remove_file(root.join("usr/lib/tool/current")).unwrap();
    symlink("../../bin/tool2", root.join("usr/lib/tool/current")).unwrap();
    expect(b"usr/lib/tool/current", 'l');

    fs::remove_dir_all(root.join("var/dir-becomes-file")).unwrap();
    write(root, "var/dir-becomes-file", b"now a file", 0o644);
    expect(b"var/dir-becomes-file", 'f');

    fs::remove_file(root.join("etc/file-becomes-dir")).unwrap();
    write(root, "etc/file-becomes-dir/child", b"child", 0o644);
    fs::set_permissions(
        root.join("etc/file-becomes-dir"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    expect(b"etc/file-becomes-dir", 'd');
    expect(b"etc/file-becomes-dir/child", 'f');

    if is_root() {
        std::os::unix::fs::lchown(root.join("etc/app/config"), Some(1000), Some(1000)).unwrap();
        expect(b"etc/app/config", 'f');
    }

    // Deletions: a file, a whole directory.
    fs::remove_file(root.join("srv/data/file-to-delete")).unwrap();
    fs::remove_dir_all(root.join("opt/old")).unwrap();
    expect(DELETIONS_ENTRY.as_bytes(), 'f');

    // Never captured.
    write(root, "tmp/x", b"scratch", 0o644);
    write(root, "proc/y", b"not really proc", 0o644);
    write(root, "var/log/build.log", b"build log", 0o644);
    write(
        root,
        "home/dev/.ssh/authorized_keys",
        b"ssh-ed25519 AAAA",
        0o600,
    );
    write(root, "etc/hostname", b"builder", 0o644);
    expected
}

/// The entries of a layer: path, type (f, d, l, h; x for others), content.
fn list_layer(layer: &[u8]) -> Vec<(Vec<u8>, char, Vec<u8>)> {
    let mut archive = tar::Archive::new(zstd::stream::read::Decoder::new(layer).unwrap());
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let kind = match entry.header().entry_type() {
            EntryType::Regular => 'f',
            EntryType::Directory => 'd',
            EntryType::Symlink => 'l',
            EntryType::Link => 'h',
            _ => 'x',
        };
        let path = entry.path_bytes().into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        out.push((path, kind, content));
    }
    out
}

/// Entries with directory mtimes zeroed: directories that are not in a layer
/// keep the mtime of the tree they are in.
fn comparable(manifest: Manifest) -> BTreeMap<PathBuf, Entry> {
    let mut entries = manifest.into_entries();
    for entry in entries.values_mut() {
        if entry.kind == EntryKind::Dir {
            entry.mtime_ns = 0;
        }
    }
    entries
}

fn assert_same_tree(want: &Path, got: &Path) {
    let excludes = Excludes::production();
    let want = comparable(layer::scan(want, &excludes).unwrap());
    let got = comparable(layer::scan(got, &excludes).unwrap());
    let mut problems = Vec::new();
    for (path, entry) in &want {
        match got.get(path) {
            None => problems.push(format!("missing: {}", path.display())),
            Some(other) if other != entry => problems.push(format!(
                "differs: {}\n  want {entry:?}\n  got  {other:?}",
                path.display()
            )),
            Some(_) => {}
        }
    }
    for path in got.keys().filter(|p| !want.contains_key(*p)) {
        problems.push(format!("unexpected: {}", path.display()));
    }
    assert!(
        problems.is_empty(),
        "trees differ:\n{}",
        problems.join("\n")
    );
}

fn capture_to_vec(root: &Path, base: &Manifest) -> (Vec<u8>, CaptureSummary) {
    let mut layer = Vec::new();
    let summary = layer::capture(root, base, &Excludes::production(), &mut layer).unwrap();
    (layer, summary)
}

#[test]
fn capture_then_apply_reproduces_the_mutated_tree() {
    let tmp = TempDir::new().unwrap();
    let builder = tmp.path().join("builder");
    let session = tmp.path().join("session");
    build_base(&builder);
    build_base(&session);

    // The base manifest goes through its file format, as in production.
    let manifest_file = tmp.path().join("base-manifest");
    layer::write_base_manifest(&builder, &manifest_file).unwrap();
    let base = layer::read_manifest_file(&manifest_file).unwrap();
    assert!(
        base.get(Path::new("usr/bin/suid-tool"))
            .is_some_and(|e| e.mode == 0o4755)
    );
    assert!(base.get(Path::new("tmp")).is_none() && base.get(Path::new("proc")).is_none());

    let expected = mutate(&builder);
    let (bytes, summary) = capture_to_vec(&builder, &base);
    let (again, _) = capture_to_vec(&builder, &base);
    assert!(
        again == bytes,
        "capturing the same tree twice gave other bytes"
    );

    let listed = list_layer(&bytes);
    let got: BTreeSet<(Vec<u8>, char)> = listed.iter().map(|(p, k, _)| (p.clone(), *k)).collect();
    let show = |set: &BTreeSet<(Vec<u8>, char)>| {
        set.iter()
            .map(|(p, k)| format!("{k} {}", String::from_utf8_lossy(p)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(show(&got), show(&expected));
    assert_eq!(listed.len(), got.len(), "an entry appears twice");
    // Directories come before their contents; the deletions list comes last.
    let order: Vec<&Vec<u8>> = listed.iter().map(|(p, _, _)| p).collect();
    let mut sorted = order.clone();
    sorted.sort_by(|a, b| Path::new(OsStr::from_bytes(a)).cmp(Path::new(OsStr::from_bytes(b))));
    sorted.retain(|p| p.as_slice() != DELETIONS_ENTRY.as_bytes());
    sorted.push(&listed.last().unwrap().0);
    assert_eq!(order, sorted);
    let deletions = &listed.last().unwrap().2;
    assert_eq!(
        String::from_utf8_lossy(deletions),
        "opt/old\nsrv/data/file-to-delete\n"
    );

    let root_files = u64::from(is_root());
    assert_eq!(
        (
            summary.files,
            summary.dirs,
            summary.symlinks,
            summary.hardlinks,
            summary.deleted,
            summary.skipped
        ),
        (9 + root_files, 5, 3, 1, 2, 1),
        "{summary:?}"
    );
    assert_eq!(summary.size_compressed, bytes.len() as u64);
    assert_eq!(
        summary.sha256_of_compressed_output,
        hex::encode(Sha256::digest(&bytes))
    );
    let mut tar_bytes = Vec::new();
    zstd::stream::read::Decoder::new(bytes.as_slice())
        .unwrap()
        .read_to_end(&mut tar_bytes)
        .unwrap();
    assert_eq!(summary.bytes_uncompressed, tar_bytes.len() as u64);

    let applied = layer::apply(&session, bytes.as_slice(), &ApplyLimits::default()).unwrap();
    assert_eq!(
        applied.sha256_of_compressed_input,
        summary.sha256_of_compressed_output
    );
    assert_eq!(applied.size_compressed, summary.size_compressed);
    assert_eq!(applied.bytes_uncompressed, summary.bytes_uncompressed);
    assert_eq!(
        (
            applied.files,
            applied.dirs,
            applied.symlinks,
            applied.hardlinks,
            applied.deleted
        ),
        (
            summary.files,
            summary.dirs,
            summary.symlinks,
            summary.hardlinks,
            2
        )
    );
    // FIFOs are never carried.
    assert!(!session.join("opt/new/fifo").exists());
    fs::remove_file(builder.join("opt/new/fifo")).unwrap();
    assert_same_tree(&builder, &session);

    // What the comparison cannot see: hard links stay links, file mtimes keep
    // their nanoseconds, setuid survives chown, excluded paths never arrive,
    // and excluded paths of the base stay.
    let a = fs::metadata(session.join("opt/new/deep/file.txt")).unwrap();
    let b = fs::metadata(session.join("opt/new/deep/file2")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!((a.mtime(), a.mtime_nsec()), (1_700_000_000, 123_456_789));
    assert_eq!(
        fs::metadata(session.join("opt/new/suid")).unwrap().mode() & 0o7777,
        0o4755
    );
    for never in [
        "tmp/x",
        "proc/y",
        "var/log/build.log",
        "home/dev/.ssh/authorized_keys",
        "etc/hostname",
    ] {
        assert!(!session.join(never).exists(), "{never} was applied");
    }
    assert!(session.join("var/log/base.log").exists());

    // Applying again changes nothing (a retried session start).
    layer::apply(&session, bytes.as_slice(), &ApplyLimits::default()).unwrap();
    assert_same_tree(&builder, &session);
}

#[test]
fn an_unchanged_tree_gives_an_empty_layer() {
    let tmp = TempDir::new().unwrap();
    build_base(tmp.path());
    let base = layer::scan(tmp.path(), &Excludes::production()).unwrap();
    // Only an mtime changes: mtimes are never compared.
    set_mtime(&tmp.path().join("usr/bin/tool"), BASE_MTIME + 10, 5);
    let (bytes, summary) = capture_to_vec(tmp.path(), &base);
    assert_eq!(
        summary,
        CaptureSummary {
            bytes_uncompressed: 1024,
            sha256_of_compressed_output: summary.sha256_of_compressed_output.clone(),
            size_compressed: bytes.len() as u64,
            ..CaptureSummary::default()
        }
    );
    assert!(list_layer(&bytes).is_empty());
    let applied = layer::apply(tmp.path(), bytes.as_slice(), &ApplyLimits::default()).unwrap();
    assert_eq!(applied.entries, 0);
}

#[test]
fn the_base_manifest_file_round_trips_and_leaves_itself_out() {
    let tmp = TempDir::new().unwrap();
    build_base(tmp.path());
    let out = tmp.path().join("srv/base-manifest");
    layer::write_base_manifest(tmp.path(), &out).unwrap();
    // Written again: replaced in place, and still not listing itself.
    layer::write_base_manifest(tmp.path(), &out).unwrap();
    let read = layer::read_manifest_file(&out).unwrap();
    assert!(read.get(Path::new("srv/base-manifest")).is_none());
    let excludes = Excludes::production().with("srv/base-manifest").unwrap();
    let scanned = layer::scan(tmp.path(), &excludes).unwrap();
    // Writing the file changed the mtime of its directory, nothing else.
    assert_eq!(comparable(read.clone()), comparable(scanned));
    assert_eq!(fs::metadata(&out).unwrap().mode() & 0o777, 0o644);

    let text = fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().next(), Some(layer::MANIFEST_HEADER));
    assert_eq!(
        text.lines().last(),
        Some(format!("end {}", read.len()).as_str())
    );
    let hash = hex::encode(Sha256::digest(b"\x7fELF pretend"));
    let (u, g) = (uid(), gid());
    assert!(
        text.lines()
            .any(|l| l
                == format!("f 4755 {u} {g} 12 {BASE_MTIME}000000000 {hash} usr/bin/suid-tool"))
    );
    assert!(
        text.lines()
            .any(|l| l == format!("l 0777 {u} {g} 7 {BASE_MTIME}000000000 bin usr/bin"))
    );

    // Truncation is detected.
    let cut = &text[..text.rfind("end ").unwrap()];
    assert!(matches!(
        layer::read_manifest(cut.as_bytes()),
        Err(LayerError::Manifest { .. })
    ));
}

// ---------------------------------------------------------------------------
// Malicious layers

/// Builds tar archives byte for byte, names included (the tar crate's own
/// helpers refuse `..` and absolute paths).
struct Evil {
    tar: tar::Builder<Vec<u8>>,
}

impl Evil {
    fn new() -> Self {
        Self {
            tar: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: EntryType, name: &[u8], link: &[u8], size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(BASE_MTIME as u64);
        h.set_size(size);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        h
    }

    fn append(mut self, kind: EntryType, name: &str, link: &str, data: &[u8]) -> Self {
        let h = Self::header(kind, name.as_bytes(), link.as_bytes(), data.len() as u64);
        self.tar.append(&h, data).unwrap();
        self
    }

    fn file(self, name: &str, data: &[u8]) -> Self {
        self.append(EntryType::Regular, name, "", data)
    }

    fn dir(self, name: &str) -> Self {
        self.append(EntryType::Directory, name, "", b"")
    }

    fn link(self, kind: EntryType, name: &str, target: &str) -> Self {
        self.append(kind, name, target, b"")
    }

    fn special(self, kind: EntryType, name: &str) -> Self {
        self.append(kind, name, "", b"")
    }

    fn deletions(self, list: &str) -> Self {
        self.file(DELETIONS_ENTRY, list.as_bytes())
    }

    fn tar(self) -> Vec<u8> {
        self.tar.into_inner().unwrap()
    }

    fn zstd(self) -> Vec<u8> {
        zstd::encode_all(self.tar().as_slice(), 3).unwrap()
    }
}

/// A root with a sentinel directory beside it.
struct Sandbox {
    _tmp: TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("sentinel"), "untouched").unwrap();
        fs::write(root.join("etc/passwd"), "root:x:0:0").unwrap();
        Self {
            _tmp: tmp,
            root,
            outside,
        }
    }

    fn outside_str(&self) -> String {
        self.outside.to_str().unwrap().to_owned()
    }

    fn apply(&self, layer: &[u8]) -> Result<layer::ApplySummary, LayerError> {
        layer::apply(&self.root, layer, &ApplyLimits::default())
    }

    /// Applies `layer`, expects a refusal mentioning `needle`, and checks that
    /// nothing outside the root changed. The message.
    fn refuses(&self, layer: Vec<u8>, needle: &str) -> String {
        let err = self.apply(&layer).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, LayerError::Rejected { .. }), "{err:?}");
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        self.assert_outside_untouched();
        message
    }

    fn assert_outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["sentinel"],
            "something was written outside the root"
        );
        assert_eq!(
            fs::read_to_string(self.outside.join("sentinel")).unwrap(),
            "untouched"
        );
        let mut siblings: Vec<_> = fs::read_dir(self.outside.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        siblings.sort();
        assert_eq!(
            siblings,
            ["outside", "root"],
            "something was written beside the root"
        );
    }
}

#[test]
fn parent_components_are_refused() {
    let sb = Sandbox::new();
    let message = sb.refuses(Evil::new().file("../escape", b"x").zstd(), "`..` component");
    assert_eq!(
        message,
        "layer entry `../escape`: `..` component; the layer is refused"
    );
    sb.refuses(
        Evil::new().file("a/../../outside/sentinel", b"x").zstd(),
        "`..`",
    );
}

#[test]
fn absolute_paths_are_refused() {
    let sb = Sandbox::new();
    let target = format!("{}/abs", sb.outside_str());
    sb.refuses(Evil::new().file(&target, b"x").zstd(), "absolute path");
    sb.refuses(Evil::new().dir("/").zstd(), "absolute path");
}

#[test]
fn writing_through_a_symlink_the_layer_made_is_refused() {
    let sb = Sandbox::new();
    // link -> <outside> (absolute), then link/passwd.
    let layer = Evil::new()
        .link(EntryType::Symlink, "link", &sb.outside_str())
        .file("link/passwd", b"pwned")
        .zstd();
    let message = sb.refuses(layer, "`link` is a symlink");
    assert!(
        message.starts_with("layer entry `link/passwd`"),
        "{message}"
    );
    // The symlink itself is fine: it is never followed.
    assert!(
        fs::symlink_metadata(sb.root.join("link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // Relative, overwriting the sentinel itself; and a directory through one.
    let layer = Evil::new()
        .link(EntryType::Symlink, "up", "../outside")
        .file("up/sentinel", b"pwned")
        .zstd();
    sb.refuses(layer, "`up` is a symlink");
    let layer = Evil::new()
        .link(EntryType::Symlink, "up2", "../outside")
        .dir("up2/new")
        .zstd();
    sb.refuses(layer, "`up2` is a symlink");
}

#[test]
fn writing_through_a_symlink_already_in_the_tree_is_refused() {
    let sb = Sandbox::new();
    symlink(&sb.outside, sb.root.join("etc/sub")).unwrap();
    sb.refuses(
        Evil::new().file("etc/sub/sentinel", b"pwned").zstd(),
        "`etc/sub` is a symlink",
    );
    sb.refuses(
        Evil::new().file("etc/sub/deeper/x", b"pwned").zstd(),
        "`etc/sub` is a symlink",
    );

    // An entry named like a symlink replaces the symlink; its target stays.
    symlink(sb.outside.join("sentinel"), sb.root.join("evil")).unwrap();
    sb.apply(&Evil::new().file("evil", b"replaced").zstd())
        .unwrap();
    assert_eq!(fs::read(sb.root.join("evil")).unwrap(), b"replaced");
    assert!(
        fs::symlink_metadata(sb.root.join("evil"))
            .unwrap()
            .is_file()
    );
    sb.assert_outside_untouched();

    // A file where a directory is needed.
    sb.refuses(
        Evil::new().file("etc/passwd/x", b"x").zstd(),
        "`etc/passwd` is not a directory",
    );
}

#[test]
fn hard_links_outside_the_layer_are_refused() {
    let sb = Sandbox::new();
    let abs = format!("{}/sentinel", sb.outside_str());
    sb.refuses(
        Evil::new().link(EntryType::Link, "hl", &abs).zstd(),
        "hard link target",
    );
    sb.refuses(
        Evil::new()
            .link(EntryType::Link, "hl", "../outside/sentinel")
            .zstd(),
        "`..`",
    );
    // Inside the root, but not written by this layer: the tree's /etc/passwd.
    sb.refuses(
        Evil::new().link(EntryType::Link, "hl", "etc/passwd").zstd(),
        "not a regular file written earlier by this layer",
    );
    // Not extracted yet.
    let layer = Evil::new()
        .link(EntryType::Link, "hl", "later")
        .file("later", b"x")
        .zstd();
    sb.refuses(layer, "not a regular file written earlier");
    // Through a symlink the layer put in place of the file's directory.
    let layer = Evil::new()
        .dir("d")
        .file("d/f", b"x")
        .link(EntryType::Symlink, "d", &sb.outside_str())
        .link(EntryType::Link, "hl", "d/f")
        .zstd();
    sb.refuses(layer, "`d` is a symlink");
    assert!(!sb.root.join("hl").exists());

    // A proper one works.
    let layer = Evil::new()
        .file("a", b"x")
        .link(EntryType::Link, "b", "a")
        .zstd();
    let summary = sb.apply(&layer).unwrap();
    assert_eq!((summary.files, summary.hardlinks), (1, 1));
    let ino = |p: &str| fs::metadata(sb.root.join(p)).unwrap().ino();
    assert_eq!(ino("a"), ino("b"));
}

#[test]
fn devices_and_fifos_are_refused() {
    let sb = Sandbox::new();
    sb.refuses(
        Evil::new().special(EntryType::Char, "null").zstd(),
        "device and FIFO",
    );
    sb.refuses(
        Evil::new().special(EntryType::Block, "sda").zstd(),
        "device and FIFO",
    );
    sb.refuses(
        Evil::new().special(EntryType::Fifo, "pipe").zstd(),
        "device and FIFO",
    );
    assert!(!sb.root.join("null").exists());
}

#[test]
fn excluded_and_reserved_paths_are_refused() {
    let sb = Sandbox::new();
    sb.refuses(
        Evil::new().file("etc/hosts", b"1.2.3.4 x").zstd(),
        "excluded from layers",
    );
    sb.refuses(
        Evil::new().file("proc/sysrq-trigger", b"b").zstd(),
        "excluded from layers",
    );
    sb.refuses(
        Evil::new()
            .file("home/dev/.ssh/authorized_keys", b"k")
            .zstd(),
        "excluded",
    );
    sb.refuses(
        Evil::new().file(".burstflare/other", b"x").zstd(),
        "reserved",
    );
    sb.refuses(Evil::new().deletions("").deletions("").zstd(), "reserved");
    sb.refuses(
        Evil::new().deletions("dev\n").zstd(),
        "excluded from layers",
    );
}

#[test]
fn unsafe_deletions_are_refused_before_anything_is_deleted() {
    let sb = Sandbox::new();
    fs::write(sb.root.join("keep"), "k").unwrap();
    let message = sb.refuses(
        Evil::new().deletions("keep\n../outside/sentinel\n").zstd(),
        "`..`",
    );
    assert_eq!(
        message,
        "layer entry `.burstflare/deletions`: line 2, `../outside/sentinel`: `..` component; \
         the layer is refused"
    );
    assert!(
        sb.root.join("keep").exists(),
        "deleted before the list was validated"
    );
    let absolute = format!("keep\n{}/sentinel\n", sb.outside_str());
    sb.refuses(Evil::new().deletions(&absolute).zstd(), "absolute path");
    sb.refuses(Evil::new().deletions("a b\n").zstd(), "unescaped space");
    assert!(sb.root.join("keep").exists());

    // Through a symlink in the tree.
    symlink(&sb.outside, sb.root.join("lnk")).unwrap();
    sb.refuses(
        Evil::new().deletions("lnk/sentinel\n").zstd(),
        "`lnk` is a symlink",
    );
    // The symlink itself may go; its target stays. Missing paths are fine.
    let summary = sb
        .apply(&Evil::new().deletions("keep\nlnk\nmissing\n").zstd())
        .unwrap();
    assert_eq!(summary.deleted, 2);
    assert!(!sb.root.join("lnk").exists() && !sb.root.join("keep").exists());
    sb.assert_outside_untouched();
}

#[test]
fn a_directory_replaced_by_a_symlink_is_removed_without_following_anything() {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.root.join("dir/sub")).unwrap();
    fs::write(sb.root.join("dir/sub/f"), "f").unwrap();
    symlink(&sb.outside, sb.root.join("dir/out")).unwrap();
    let layer = Evil::new()
        .link(EntryType::Symlink, "dir", &sb.outside_str())
        .zstd();
    sb.apply(&layer).unwrap();
    assert_eq!(fs::read_link(sb.root.join("dir")).unwrap(), sb.outside);
    sb.assert_outside_untouched();
}

#[test]
fn garbage_and_truncated_layers_are_read_errors() {
    let sb = Sandbox::new();
    let err = sb.apply(b"not zstd at all").unwrap_err();
    assert!(matches!(err, LayerError::Read(_)), "{err:?}");

    let full = Evil::new()
        .file("a", &[7u8; 100_000])
        .file("b", b"b")
        .zstd();
    let err = sb.apply(&full[..full.len() / 2]).unwrap_err();
    assert!(matches!(err, LayerError::Read(_)), "{err:?}");
    sb.assert_outside_untouched();
}

#[test]
fn limits_are_enforced_before_writing() {
    let sb = Sandbox::new();
    let mut evil = Evil::new();
    for i in 0..10 {
        evil = evil.file(&format!("f{i}"), b"x");
    }
    let limits = ApplyLimits {
        max_entries: 5,
        max_total_bytes: 1 << 30,
    };
    let err = layer::apply(&sb.root, evil.zstd().as_slice(), &limits).unwrap_err();
    assert_eq!(err.to_string(), "the layer exceeds its limit of 5 entries");
    assert!(sb.root.join("f4").exists() && !sb.root.join("f5").exists());

    let layer = Evil::new()
        .file("small", b"s")
        .file("big", &vec![0u8; 1 << 20])
        .zstd();
    let limits = ApplyLimits {
        max_entries: 100,
        max_total_bytes: 512 << 10,
    };
    let err = layer::apply(&sb.root, layer.as_slice(), &limits).unwrap_err();
    assert!(
        matches!(err, LayerError::Limit { what: "bytes uncompressed", limit } if limit == 512 << 10),
        "{err:?}"
    );
    assert!(sb.root.join("small").exists());
    assert!(
        !sb.root.join("big").exists(),
        "written before the limit was checked"
    );

    // The whole stream is metered: zeros after the archive's end count too.
    let mut tar = Evil::new().file("x", b"x").tar();
    tar.extend(std::iter::repeat_n(0u8, 4 << 20));
    let layer = zstd::encode_all(tar.as_slice(), 3).unwrap();
    let limits = ApplyLimits {
        max_entries: 100,
        max_total_bytes: 1 << 20,
    };
    let err = layer::apply(&sb.root, layer.as_slice(), &limits).unwrap_err();
    assert!(matches!(err, LayerError::Limit { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------
// Throughput and real images

/// Deterministic bytes: incompressible (xorshift) or text.
fn fill(buf: &mut [u8], seed: u64, text: bool) {
    if text {
        let line = b"export PATH=/usr/local/bin:/usr/bin:/bin # a line of a config file\n";
        for (i, b) in buf.iter_mut().enumerate() {
            *b = line[(i + seed as usize) % line.len()];
        }
        return;
    }
    let mut x = seed | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

#[test]
fn throughput_of_capture_and_apply() {
    const FILES: usize = 50;
    const SIZE: usize = 1 << 20;
    let tmp = TempDir::new().unwrap();
    let builder = tmp.path().join("builder");
    let session = tmp.path().join("session");
    // The base has every file with other content of the same size, so capture
    // hashes each one before copying it: the expensive path.
    let mut buf = vec![0u8; SIZE];
    for i in 0..FILES {
        let rel = format!("data/{:02}/file-{i}", i % 7);
        fill(&mut buf, i as u64, i % 2 == 0);
        write(&session, &rel, &buf, 0o644);
        fill(&mut buf, i as u64 + 1000, i % 2 == 0);
        write(&builder, &rel, &buf, 0o644);
    }
    let started = Instant::now();
    let base = layer::scan(&session, &Excludes::production()).unwrap();
    let scan_time = started.elapsed();
    assert_eq!(base.file_bytes(), (FILES * SIZE) as u64);

    let layer_file = tmp.path().join("layer.tar.zst");
    let started = Instant::now();
    let mut out = File::create(&layer_file).unwrap();
    let summary = layer::capture(&builder, &base, &Excludes::production(), &mut out).unwrap();
    out.flush().unwrap();
    drop(out);
    let capture_time = started.elapsed();
    assert_eq!(summary.files, FILES as u64);

    let started = Instant::now();
    let input = std::io::BufReader::new(File::open(&layer_file).unwrap());
    let applied = layer::apply(&session, input, &ApplyLimits::default()).unwrap();
    let apply_time = started.elapsed();
    assert_eq!(applied.files, FILES as u64);
    assert_same_tree(&builder, &session);

    let mb = (FILES * SIZE) as f64 / 1e6;
    let rate = |d: Duration| mb / d.as_secs_f64().max(1e-9);
    eprintln!(
        "layer throughput ({} build): {mb:.1} MB in {FILES} files (half random, half text)\n  \
         scan (hash all): {scan_time:>8.1?} {:>7.1} MB/s\n  \
         capture:         {capture_time:>8.1?} {:>7.1} MB/s  → {:.1} MB compressed\n  \
         apply:           {apply_time:>8.1?} {:>7.1} MB/s",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        rate(scan_time),
        rate(capture_time),
        summary.size_compressed as f64 / 1e6,
        rate(apply_time),
    );
}

/// Scans the tree named by `BURSTFLARE_LAYER_SCAN_ROOT` (`/` inside the
/// runtime image) and captures it against its own scan, which must give an
/// empty layer; prints the times.
#[test]
#[ignore = "measures a real image; needs BURSTFLARE_LAYER_SCAN_ROOT"]
fn measure_a_real_root() {
    let Some(root) = std::env::var_os("BURSTFLARE_LAYER_SCAN_ROOT") else {
        eprintln!("BURSTFLARE_LAYER_SCAN_ROOT is not set; nothing measured");
        return;
    };
    let root = PathBuf::from(root);
    let excludes = Excludes::production();
    let started = Instant::now();
    let base = layer::scan(&root, &excludes).unwrap();
    let scan_time = started.elapsed();
    let mut manifest = Vec::new();
    layer::write_manifest(&base, &mut manifest).unwrap();
    let started = Instant::now();
    let mut layer_bytes = Vec::new();
    let summary = layer::capture(&root, &base, &excludes, &mut layer_bytes).unwrap();
    let capture_time = started.elapsed();
    eprintln!(
        "{}: {} entries, {:.1} MB of files; scan {scan_time:.2?}; manifest {:.1} KB; \
         capture against itself {capture_time:.2?}: {summary:?}",
        root.display(),
        base.len(),
        base.file_bytes() as f64 / 1e6,
        manifest.len() as f64 / 1e3,
    );
    let listed: Vec<_> = list_layer(&layer_bytes)
        .into_iter()
        .map(|(p, k, _)| format!("{k} {}", String::from_utf8_lossy(&p)))
        .collect();
    assert!(listed.is_empty(), "spurious changes: {listed:?}");
}

/// One step of a manual end-to-end run in real containers of the runtime
/// image (overlayfs, Docker's mounts, apt), chosen by `BURSTFLARE_LAYER_STEP`
/// (`base`, `capture`, `apply`, `compare`), on files in
/// `BURSTFLARE_LAYER_DIR` (a bind mount, hence a mount point the scans skip):
///
/// * builder container: `base`, setup commands (`apt-get install -y jq`, …),
///   `capture` (writes `layer.tar.zst` and `builder-manifest`);
/// * a fresh session container: `apply` (writes `session-manifest`);
/// * anywhere: `compare`, which fails on any difference but mtimes of
///   directories and mtime-only changes (which layers do not carry).
#[test]
#[ignore = "a step of a manual run in containers; needs BURSTFLARE_LAYER_STEP"]
fn container_step() {
    let (Some(step), Some(dir)) = (
        std::env::var_os("BURSTFLARE_LAYER_STEP"),
        std::env::var_os("BURSTFLARE_LAYER_DIR"),
    ) else {
        eprintln!("BURSTFLARE_LAYER_STEP or BURSTFLARE_LAYER_DIR is not set; nothing done");
        return;
    };
    let dir = PathBuf::from(dir);
    let root = Path::new("/");
    let excludes = Excludes::production();
    let save_scan = |name: &str| {
        let manifest = layer::scan(root, &excludes).unwrap();
        layer::write_manifest(&manifest, File::create(dir.join(name)).unwrap()).unwrap();
    };
    let started = Instant::now();
    match step.to_str().unwrap() {
        "base" => {
            layer::write_base_manifest(root, &dir.join("base-manifest")).unwrap();
            eprintln!("base manifest written in {:.2?}", started.elapsed());
        }
        "capture" => {
            let base = layer::read_manifest_file(&dir.join("base-manifest")).unwrap();
            let out = File::create(dir.join("layer.tar.zst")).unwrap();
            let summary = layer::capture(root, &base, &excludes, out).unwrap();
            eprintln!("captured in {:.2?}: {summary:?}", started.elapsed());
            save_scan("builder-manifest");
        }
        "apply" => {
            let input = std::io::BufReader::new(File::open(dir.join("layer.tar.zst")).unwrap());
            let summary = layer::apply(root, input, &ApplyLimits::default()).unwrap();
            eprintln!("applied in {:.2?}: {summary:?}", started.elapsed());
            save_scan("session-manifest");
        }
        "compare" => {
            let read = |name: &str| comparable(layer::read_manifest_file(&dir.join(name)).unwrap());
            let (want, got) = (read("builder-manifest"), read("session-manifest"));
            let paths: BTreeSet<&PathBuf> = want.keys().chain(got.keys()).collect();
            let (mut mtime_only, mut differences) = (Vec::new(), Vec::new());
            let without_mtime = |e: &Entry| Entry {
                mtime_ns: 0,
                ..e.clone()
            };
            for path in paths {
                match (want.get(path), got.get(path)) {
                    (Some(w), Some(g)) if w == g => {}
                    (Some(w), Some(g)) if without_mtime(w) == without_mtime(g) => {
                        mtime_only.push(path.display().to_string());
                    }
                    (w, g) => differences.push(format!("{}: {w:?} != {g:?}", path.display())),
                }
            }
            assert!(differences.is_empty(), "{}", differences.join("\n"));
            eprintln!(
                "{} entries, identical but for directory mtimes and mtime-only changes: \
                 {mtime_only:?}",
                want.len()
            );
        }
        other => panic!("unknown step {other}"),
    }
}

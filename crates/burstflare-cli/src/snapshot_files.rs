//! Local snapshots for `burstflare snapshot upload|download`: a directory or a
//! tar archive turned into a snapshot manifest plus the content stream the
//! upload endpoint takes (a JSON manifest line, then every file's bytes in
//! manifest order; `burstflare_domain::snapshot` documents the manifest).
//!
//! A tar archive is checked entry by entry before anything is extracted (into
//! a scratch directory): absolute paths, `..`, paths outside the session's
//! persisted paths, device files and FIFOs, hard links to anything outside
//! their persisted path and symlinks whose target leads outside it are
//! refused, naming the entry. The server checks the manifest again.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use burstflare_domain::snapshot::{self, Entry, FORMAT, Kind, Manifest, Skipped};
use sha2::{Digest, Sha256};

/// A snapshot ready to upload: its manifest and, for every `file` entry in
/// order, the local file holding its content.
pub struct LocalSnapshot {
    pub manifest: Manifest,
    pub files: Vec<PathBuf>,
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0_u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Adds the tree under `dir` as root `root` (an absolute path) of `out`.
fn add_dir(out: &mut LocalSnapshot, dir: &Path, root: &str) -> Result<(), String> {
    let index = u32::try_from(out.manifest.roots.len()).map_err(|_| "too many roots")?;
    out.manifest.roots.push(root.to_owned());
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let mut children: Vec<_> = std::fs::read_dir(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        children.sort_by_key(|c| c.file_name());
        // Directories are visited after this level's entries, depth first in
        // reverse so the stack pops them in name order.
        let mut dirs = Vec::new();
        for child in children {
            let name = child
                .file_name()
                .into_string()
                .map_err(|n| format!("{}: not UTF-8: {n:?}", path.display()))?;
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = std::fs::symlink_metadata(child.path())
                .map_err(|e| format!("{}: {e}", child.path().display()))?;
            let ft = meta.file_type();
            let mode = meta.permissions().mode() & 0o7777;
            let mtime = meta.mtime();
            let absolute = format!("{root}/{child_rel}");
            let entry = |kind, size, sha256, target| Entry {
                root: index,
                path: child_rel.clone(),
                kind,
                mode,
                mtime,
                size,
                sha256,
                target,
            };
            if ft.is_dir() {
                out.manifest.entries.push(entry(Kind::Dir, 0, None, None));
                dirs.push((child.path(), child_rel.clone()));
            } else if ft.is_file() {
                let digest = sha256_file(&child.path())?;
                out.manifest
                    .entries
                    .push(entry(Kind::File, meta.len(), Some(digest), None));
                out.files.push(child.path());
            } else if ft.is_symlink() {
                let target = std::fs::read_link(child.path())
                    .map_err(|e| format!("{}: {e}", child.path().display()))?
                    .into_os_string()
                    .into_string()
                    .map_err(|t| format!("{absolute}: target not UTF-8: {t:?}"))?;
                let parent = rel.as_str();
                if snapshot::resolve_symlink(parent, &target, root).is_none() {
                    out.manifest.skipped.push(Skipped {
                        path: absolute,
                        reason: "a symlink pointing outside the persisted path".into(),
                    });
                    continue;
                }
                out.manifest
                    .entries
                    .push(entry(Kind::Symlink, 0, None, Some(target)));
            } else {
                out.manifest.skipped.push(Skipped {
                    path: absolute,
                    reason: "not a file, directory or symlink".into(),
                });
            }
        }
        // Children of this directory come right after it: depth first.
        for d in dirs.into_iter().rev() {
            stack.push(d);
        }
    }
    // Depth-first with a stack lists a directory's subtrees after all of its
    // direct entries, which keeps parents before children; sort by path
    // components for a stable, parent-first order.
    out.manifest.entries.sort_by(|a, b| {
        (a.root, a.path.split('/').collect::<Vec<_>>()).cmp(&(b.root, b.path.split('/').collect()))
    });
    Ok(())
}

/// The snapshot of the local directory `dir`, stored as persisted path `root`.
pub fn from_dir(dir: &Path, root: &str) -> Result<LocalSnapshot, String> {
    let mut out = LocalSnapshot {
        manifest: Manifest {
            format: FORMAT,
            roots: Vec::new(),
            entries: Vec::new(),
            skipped: Vec::new(),
        },
        files: Vec::new(),
    };
    add_dir(&mut out, dir, root)?;
    fix_file_order(&mut out, &[(root.to_owned(), dir.to_path_buf())]);
    Ok(out)
}

/// Rebuilds `files` from the (sorted) manifest: `base` maps each root to the
/// local directory holding it.
fn fix_file_order(out: &mut LocalSnapshot, base: &[(String, PathBuf)]) {
    out.files = out
        .manifest
        .entries
        .iter()
        .filter(|e| e.kind == Kind::File)
        .map(|e| {
            let root = &out.manifest.roots[e.root as usize];
            let dir = base
                .iter()
                .find(|(r, _)| r == root)
                .map(|(_, d)| d.clone())
                .unwrap_or_default();
            dir.join(&e.path)
        })
        .collect();
}

/// The persisted path (of `roots`) that `path` (absolute) lies in.
fn root_of<'a>(roots: &'a [String], path: &str) -> Option<&'a String> {
    roots.iter().find(|r| {
        path.strip_prefix(r.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// A relative, normalised archive path (`home/dev/x`), or why not.
fn archive_path(raw: &Path) -> Result<String, String> {
    let shown = raw.display().to_string();
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => parts.push(
                p.to_str()
                    .ok_or_else(|| format!("entry {shown:?}: not UTF-8"))?
                    .to_owned(),
            ),
            Component::CurDir => {}
            Component::ParentDir => return Err(format!("entry {shown:?}: `..` is not allowed")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("entry {shown:?}: absolute paths are not allowed"));
            }
        }
    }
    if parts.is_empty() {
        return Err(format!("entry {shown:?}: empty path"));
    }
    Ok(parts.join("/"))
}

/// The snapshot of the tar archive `archive`, whose paths are relative to `/`
/// (`home/dev/…`, as `snapshot download` writes them), for a session whose
/// persisted paths are `roots`. Extracted into `scratch` after every entry
/// passed the checks.
pub fn from_tar(archive: &Path, roots: &[String], scratch: &Path) -> Result<LocalSnapshot, String> {
    let open = || std::fs::File::open(archive).map_err(|e| format!("{}: {e}", archive.display()));
    // First pass: check everything; nothing is written yet.
    let mut used = BTreeSet::new();
    let mut tar = tar::Archive::new(open()?);
    for entry in tar
        .entries()
        .map_err(|e| format!("{}: {e}", archive.display()))?
    {
        let entry = entry.map_err(|e| format!("{}: {e}", archive.display()))?;
        let raw = entry
            .path()
            .map_err(|e| format!("{}: {e}", archive.display()))?;
        let path = archive_path(&raw)?;
        let absolute = format!("/{path}");
        // Parents of a persisted path (`home/` for `/home/dev`) are fine.
        let is_parent = roots.iter().any(|r| r.starts_with(&format!("{absolute}/")));
        let kind = entry.header().entry_type();
        if is_parent && kind.is_dir() {
            continue;
        }
        let root = root_of(roots, &absolute).ok_or_else(|| {
            format!(
                "entry {path:?} is outside the session's persisted paths ({})",
                roots.join(", ")
            )
        })?;
        used.insert(root.clone());
        let rel_parent = absolute
            .strip_prefix(root.as_str())
            .unwrap_or("")
            .trim_start_matches('/')
            .rsplit_once('/')
            .map_or("", |(p, _)| p)
            .to_owned();
        match kind {
            k if k.is_file() || k.is_dir() => {}
            k if k.is_symlink() => {
                let target = entry
                    .link_name()
                    .map_err(|e| format!("entry {path:?}: {e}"))?
                    .ok_or_else(|| format!("entry {path:?}: a symlink without a target"))?;
                let target = target
                    .to_str()
                    .ok_or_else(|| format!("entry {path:?}: target not UTF-8"))?;
                if snapshot::resolve_symlink(&rel_parent, target, root).is_none() {
                    return Err(format!(
                        "entry {path:?}: symlink escape: its target {target:?} leads outside {root}"
                    ));
                }
            }
            k if k.is_hard_link() => {
                let target = entry
                    .link_name()
                    .map_err(|e| format!("entry {path:?}: {e}"))?
                    .ok_or_else(|| format!("entry {path:?}: a hard link without a target"))?;
                let target = archive_path(&target)
                    .map_err(|e| format!("entry {path:?}: hard link out: {e}"))?;
                if root_of(std::slice::from_ref(root), &format!("/{target}")).is_none() {
                    return Err(format!(
                        "entry {path:?}: hard link out of {root} (to {target:?})"
                    ));
                }
            }
            k if k.is_character_special() || k.is_block_special() => {
                return Err(format!("entry {path:?}: device files are not allowed"));
            }
            k if k.is_fifo() => return Err(format!("entry {path:?}: FIFOs are not allowed")),
            other => return Err(format!("entry {path:?}: unsupported entry type {other:?}")),
        }
    }
    // Second pass: extract (the tar crate refuses to write outside `scratch`).
    let mut tar = tar::Archive::new(open()?);
    tar.set_preserve_permissions(true);
    tar.set_preserve_mtime(true);
    tar.unpack(scratch)
        .map_err(|e| format!("cannot extract {}: {e}", archive.display()))?;
    let mut out = LocalSnapshot {
        manifest: Manifest {
            format: FORMAT,
            roots: Vec::new(),
            entries: Vec::new(),
            skipped: Vec::new(),
        },
        files: Vec::new(),
    };
    let mut base = Vec::new();
    for root in used {
        let dir = scratch.join(root.trim_start_matches('/'));
        add_dir(&mut out, &dir, &root)?;
        base.push((root, dir));
    }
    fix_file_order(&mut out, &base);
    Ok(out)
}

/// The upload body: the manifest as one JSON line, then every file's
/// content in manifest order, read as the body is sent.
pub fn body(s: &LocalSnapshot) -> Result<reqwest::Body, String> {
    use futures_util::StreamExt;
    use tokio::io::AsyncReadExt;
    let mut head = serde_json::to_vec(&s.manifest).map_err(|e| e.to_string())?;
    head.push(b'\n');
    let files = s.files.clone();
    let head = futures_util::stream::once(async move { Ok::<_, std::io::Error>(head) });
    let contents = futures_util::stream::iter(files)
        .then(|path| async move { tokio::fs::File::open(&path).await.map(|f| (f, path)) })
        .map(|opened| match opened {
            Ok((file, _)) => futures_util::stream::unfold(Some(file), |file| async move {
                let mut file = file?;
                let mut buf = vec![0_u8; 256 * 1024];
                match file.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(buf), Some(file)))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            })
            .boxed(),
            Err(e) => futures_util::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten();
    Ok(reqwest::Body::wrap_stream(head.chain(contents)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> tempfile::NamedTempFile {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let bytes = b.into_inner().unwrap();
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), bytes).unwrap();
        f
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, path, target).unwrap();
    }

    fn roots() -> Vec<String> {
        vec!["/home/dev".into()]
    }

    #[test]
    fn directories_become_valid_manifests_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x.txt"), b"x").unwrap();
        std::fs::write(dir.path().join("z.txt"), b"zz").unwrap();
        std::os::unix::fs::symlink("z.txt", dir.path().join("a/link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("out")).unwrap();
        let s = from_dir(dir.path(), "/home/dev").unwrap();
        let paths: Vec<&str> = s.manifest.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "a/b", "a/b/x.txt", "a/link", "z.txt"]);
        assert_eq!(
            s.files,
            [dir.path().join("a/b/x.txt"), dir.path().join("z.txt")]
        );
        assert_eq!(s.manifest.skipped.len(), 1, "{:?}", s.manifest.skipped);
        snapshot::validate(&s.manifest, &roots(), &snapshot::Limits::default()).unwrap();
    }

    #[test]
    fn tar_archives_round_trip_and_bad_entries_are_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let good = tar_with(|b| {
            file(b, "home/dev/notes/a.txt", b"alpha");
            link(b, tar::EntryType::Symlink, "home/dev/notes/l", "a.txt");
            link(
                b,
                tar::EntryType::Link,
                "home/dev/notes/hard",
                "home/dev/notes/a.txt",
            );
        });
        let s = from_tar(good.path(), &roots(), scratch.path()).unwrap();
        assert_eq!(s.manifest.roots, ["/home/dev"]);
        let kinds: Vec<(String, Kind)> = s
            .manifest
            .entries
            .iter()
            .map(|e| (e.path.clone(), e.kind))
            .collect();
        assert!(
            kinds.contains(&("notes/hard".into(), Kind::File)),
            "{kinds:?}"
        );
        assert!(
            kinds.contains(&("notes/l".into(), Kind::Symlink)),
            "{kinds:?}"
        );
        snapshot::validate(&s.manifest, &roots(), &snapshot::Limits::default()).unwrap();

        let cases: Vec<(&str, tempfile::NamedTempFile)> = vec![
            (
                "outside the session",
                tar_with(|b| file(b, "etc/passwd", b"x")),
            ),
            (
                "symlink escape",
                tar_with(|b| link(b, tar::EntryType::Symlink, "home/dev/l", "../../etc/passwd")),
            ),
            (
                "hard link out",
                tar_with(|b| link(b, tar::EntryType::Link, "home/dev/h", "etc/shadow")),
            ),
            (
                "device files",
                tar_with(|b| {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Char);
                    h.set_size(0);
                    h.set_cksum();
                    b.append_data(&mut h, "home/dev/null", &b""[..]).unwrap();
                }),
            ),
        ];
        for (why, archive) in cases {
            let scratch = tempfile::tempdir().unwrap();
            let err = from_tar(archive.path(), &roots(), scratch.path())
                .err()
                .unwrap();
            assert!(err.contains(why), "{why}: {err}");
            assert_eq!(
                std::fs::read_dir(scratch.path()).unwrap().count(),
                0,
                "{why}: extracted"
            );
        }
        assert!(
            archive_path(Path::new("home/../etc"))
                .unwrap_err()
                .contains("`..`")
        );
        assert!(
            archive_path(Path::new("/etc/passwd"))
                .unwrap_err()
                .contains("absolute")
        );
    }
}

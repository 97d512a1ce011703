//! `cargo xtask image`: the session runtime image built from `images/runtime`.
//!
//! * The base is `burstflare/base:bookworm`, a `debootstrap --variant=minbase`
//!   Debian imported into Docker, so no image registry is needed; it is made
//!   once per Docker daemon. `BURSTFLARE_BASE_IMAGE` names another base
//!   instead (`debian:bookworm-slim` where Docker Hub answers).
//! * The build context (`target/burstflare/image-context`) is the files of
//!   `images/runtime` except Markdown, plus the release `burstflare-agent`.
//! * The tag is `burstflare/runtime:<16 hex>`, the start of a SHA-256 over the
//!   context (paths, modes, contents) and the base image id: the same inputs
//!   always give the same tag, and an existing tag means there is nothing to
//!   build. `burstflare/runtime:latest` is moved to it as well (the dev config's
//!   default), and the tag is written to `target/burstflare/runtime-image`.
//!
//! `cargo xtask image --editor` also builds the editor variant from
//! `images/editor`: `FROM` the runtime image, plus code-server and its Node.js
//! ([`crate::editor`] installs them on the host, cached). Its tag is
//! `burstflare/runtime-editor:<16 hex>` over the runtime image's id, the files
//! of `images/editor` (Markdown excluded) and the install's digest;
//! `burstflare/runtime-editor:latest` follows it and the tag is written to
//! `target/burstflare/editor-image`. The context
//! (`target/burstflare/editor-context`) is assembled only when there is
//! something to build, from hard links into the install.

use std::env;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::docker::{self, docker, image_id};
use crate::proc;

/// The offline base image (debootstrap'd Debian bookworm, minbase).
pub const BASE_IMAGE: &str = "burstflare/base:bookworm";
/// The repository of runtime image tags.
pub const RUNTIME_REPOSITORY: &str = "burstflare/runtime";
/// Moved to the newest build; the dev config's default `RUNTIME_IMAGE`.
pub const RUNTIME_LATEST: &str = "burstflare/runtime:latest";
/// The repository of editor image tags.
pub const EDITOR_REPOSITORY: &str = "burstflare/runtime-editor";
/// Moved to the newest editor build; the dev config's default `EDITOR_IMAGE`.
pub const EDITOR_LATEST: &str = "burstflare/runtime-editor:latest";

const SUITE: &str = "bookworm";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const DEFAULT_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
const AGENT_BIN: &str = "burstflare-agent";
/// Bumped when the way the tag is computed changes, so old tags are not reused.
const DIGEST_VERSION: &str = "burstflare-runtime-image v1";
/// As [`DIGEST_VERSION`], for the editor image.
const EDITOR_DIGEST_VERSION: &str = "burstflare-editor-image v1";

/// `cargo xtask image [--editor]`: ensures the runtime image (and the editor
/// image built from it) and prints the tag of the one asked for on stdout.
pub fn run(rebuild: bool, editor: bool) -> Result<()> {
    let tag = if editor {
        ensure_editor_image(rebuild)?
    } else {
        ensure_runtime_image(rebuild)?
    };
    println!("{tag}");
    Ok(())
}

/// `target/burstflare`, created, and a lock on `<name>.lock` in it, held
/// until the file is dropped: one build at a time per checkout and context.
fn out_dir_locked(name: &str) -> Result<(PathBuf, File)> {
    let out_dir = crate::repo_root().join("target/burstflare");
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let lock_path = out_dir.join(format!("{name}.lock"));
    let lock = File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        eprintln!("waiting for another {name} build in this checkout to finish");
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    }
    Ok((out_dir, lock))
}

/// Ensures Docker, the base image, the release agent and the runtime image
/// built from them; returns the image's tag (`burstflare/runtime:<16 hex>`).
/// Builds only when no image has that tag yet, or always with `rebuild`
/// (which also bypasses Docker's layer cache). Logs go to stderr.
pub fn ensure_runtime_image(rebuild: bool) -> Result<String> {
    let root = crate::repo_root();
    // They share the context directory.
    let (out_dir, _lock) = out_dir_locked("image")?;

    docker::ensure_docker()?;
    let (base, base_id) = base_image()?;
    let agent = build_agent(&root)?;
    let context = out_dir.join("image-context");
    let files = assemble_context(
        &root.join("images/runtime"),
        &[(AGENT_BIN.to_owned(), agent)],
        &context,
    )?;
    let digest = image_digest(&files, &base_id);
    let tag = format!("{RUNTIME_REPOSITORY}:{}", &digest[..16]);

    if !rebuild && image_id(&tag).is_some() {
        eprintln!("runtime image {tag} is up to date");
    } else {
        eprintln!("building runtime image {tag} from {base}");
        let mut cmd = docker();
        cmd.env("DOCKER_BUILDKIT", "0")
            .args(["build", "--force-rm"])
            .args(["--build-arg", &format!("BASE_IMAGE={base}")])
            .args(["--label", &format!("dev.burstflare.image-digest={digest}")])
            .args(["--tag", &tag]);
        if rebuild {
            cmd.arg("--no-cache");
        }
        cmd.arg(&context).stdout(io::stderr());
        proc::run(&mut cmd).context("cannot build the runtime image")?;
    }
    proc::run(docker().args(["tag", &tag, RUNTIME_LATEST]))?;
    let tag_file = out_dir.join("runtime-image");
    fs::write(&tag_file, format!("{tag}\n"))
        .with_context(|| format!("cannot write {}", tag_file.display()))?;
    Ok(tag)
}

/// Ensures the runtime image and the editor image built `FROM` it; returns
/// the editor image's tag (`burstflare/runtime-editor:<16 hex>`).
pub fn ensure_editor_image(rebuild: bool) -> Result<String> {
    let runtime = ensure_runtime_image(rebuild)?;
    ensure_editor_image_on(&runtime, rebuild)
}

/// Ensures the editor image built `FROM` the runtime image `runtime` (a tag
/// that exists) and the cached code-server install; returns its tag. Builds
/// only when no image has that tag yet, or always with `rebuild`.
pub fn ensure_editor_image_on(runtime: &str, rebuild: bool) -> Result<String> {
    let root = crate::repo_root();
    let (out_dir, _lock) = out_dir_locked("editor-image")?;
    docker::ensure_docker()?;
    let runtime_id =
        image_id(runtime).with_context(|| format!("the runtime image {runtime} does not exist"))?;
    let install = crate::editor::ensure_install()?;
    let source = root.join("images/editor");
    let mut sources = Vec::new();
    collect_files(&source, &source, &mut sources)?;
    sources.sort();
    let files = sources
        .iter()
        .map(|(path, from)| context_file(path, from))
        .collect::<Result<Vec<_>>>()?;
    let digest = editor_digest(&files, &runtime_id, &install.digest);
    let tag = format!("{EDITOR_REPOSITORY}:{}", &digest[..16]);

    if !rebuild && image_id(&tag).is_some() {
        eprintln!("editor image {tag} is up to date");
    } else {
        let context = out_dir.join("editor-context");
        let assembled = assemble_context(&source, &[], &context)?;
        if assembled != files {
            bail!(
                "{} changed while the editor image was being built; run it again",
                source.display()
            );
        }
        crate::editor::stage(&install.staged()?, &context)?;
        eprintln!(
            "building editor image {tag} from {runtime} (code-server {}, Node.js {})",
            crate::editor::CODE_SERVER_VERSION,
            crate::editor::NODE_VERSION
        );
        let mut cmd = docker();
        cmd.env("DOCKER_BUILDKIT", "0")
            .args(["build", "--force-rm"])
            .args(["--build-arg", &format!("RUNTIME_IMAGE={runtime}")])
            .args(["--label", &format!("dev.burstflare.image-digest={digest}")])
            .args(["--tag", &tag]);
        if rebuild {
            cmd.arg("--no-cache");
        }
        cmd.arg(&context).stdout(io::stderr());
        let built = proc::run(&mut cmd).context("cannot build the editor image");
        // The context is ~700 MB of hard links (or copies): not kept around.
        if let Err(e) = fs::remove_dir_all(&context) {
            eprintln!("warning: cannot remove {}: {e}", context.display());
        }
        built?;
    }
    proc::run(docker().args(["tag", &tag, EDITOR_LATEST]))?;
    let tag_file = out_dir.join("editor-image");
    fs::write(&tag_file, format!("{tag}\n"))
        .with_context(|| format!("cannot write {}", tag_file.display()))?;
    Ok(tag)
}

/// The hex SHA-256 naming an editor build: the runtime image id, the files of
/// `images/editor` and the code-server install.
fn editor_digest(files: &[ContextFile], runtime_id: &str, install_digest: &str) -> String {
    let mut h = Sha256::new();
    h.update(EDITOR_DIGEST_VERSION);
    h.update(format!(
        "\nruntime {runtime_id}\ninstall {install_digest}\n"
    ));
    for f in files {
        h.update(format!("{:o} {} {}\n", f.mode, f.sha256, f.path));
    }
    hex::encode(h.finalize())
}

/// `BURSTFLARE_BASE_IMAGE` (pulled if missing) or the offline base: `(name, id)`.
fn base_image() -> Result<(String, String)> {
    match env::var("BURSTFLARE_BASE_IMAGE") {
        Ok(name) if !name.is_empty() && name != BASE_IMAGE => {
            if image_id(&name).is_none() {
                proc::run(docker().args(["pull", &name]).stdout(io::stderr()))
                    .with_context(|| format!("cannot pull BURSTFLARE_BASE_IMAGE={name}"))?;
            }
            let id = image_id(&name).with_context(|| format!("no image {name} after pulling"))?;
            Ok((name, id))
        }
        _ => Ok((BASE_IMAGE.to_owned(), ensure_base_image()?)),
    }
}

/// Ensures `burstflare/base:bookworm` exists and returns its id: debootstraps
/// Debian bookworm (minbase) from this machine's apt mirror into a temporary
/// directory, slims it like Debian's `-slim` images and imports it. Needs root
/// (and installs debootstrap with apt when it is missing).
pub fn ensure_base_image() -> Result<String> {
    if let Some(id) = image_id(BASE_IMAGE) {
        return Ok(id);
    }
    if !docker::is_root() {
        bail!(
            "the base image {BASE_IMAGE} does not exist and making it (debootstrap) needs root\n\
             hint: run `sudo cargo xtask image` once, or set BURSTFLARE_BASE_IMAGE=debian:bookworm-slim \
             where Docker Hub is reachable"
        );
    }
    let debootstrap = match docker::find_program("debootstrap") {
        Some(path) => path,
        None => {
            docker::apt_install(&["debootstrap"])?;
            docker::find_program("debootstrap")
                .context("debootstrap is not found after installing it")?
        }
    };
    let mirrors = host_mirrors();
    let rootfs =
        Scratch::new(env::temp_dir().join(format!("burstflare-base-{}", std::process::id())))?;
    eprintln!(
        "making the base image {BASE_IMAGE}: debootstrap {SUITE} from {}",
        mirrors.main
    );
    proc::run(
        Command::new(debootstrap)
            .args(["--variant=minbase", SUITE])
            .arg(&rootfs.0)
            .arg(&mirrors.main)
            .stdout(io::stderr()),
    )
    .context("debootstrap failed; is the Debian mirror reachable?")?;
    finish_rootfs(&rootfs.0, &mirrors)?;
    import_rootfs(&rootfs.0, &mirrors.main)?;
    image_id(BASE_IMAGE).with_context(|| format!("{BASE_IMAGE} is missing after the import"))
}

/// The apt mirrors the image uses: this machine's, so builds work wherever the host's apt does.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mirrors {
    main: String,
    security: String,
}

fn host_mirrors() -> Mirrors {
    let mut text = String::new();
    for path in [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ] {
        text.push_str(&fs::read_to_string(path).unwrap_or_default());
        text.push_str("\n\n");
    }
    let mut mirrors = parse_mirrors(&text);
    if let Ok(main) = env::var("BURSTFLARE_DEBIAN_MIRROR")
        && !main.is_empty()
    {
        mirrors.main = main;
    }
    mirrors
}

/// Finds the bookworm and bookworm-security mirrors in apt sources, in either
/// the deb822 format (`URIs:`/`Suites:` stanzas) or one-line `deb URI suite …`.
fn parse_mirrors(text: &str) -> Mirrors {
    let mut main = None;
    let mut security = None;
    let mut note = |uri: &str, suite: &str| {
        let uri = uri.trim_end_matches('/').to_owned();
        if suite == SUITE {
            main.get_or_insert(uri);
        } else if suite == format!("{SUITE}-security") {
            security.get_or_insert(uri);
        }
    };
    for stanza in text.split("\n\n") {
        let field = |name: &str| -> Vec<&str> {
            stanza
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(|l| l.split_once(':'))
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .flat_map(|(_, v)| v.split_whitespace())
                .collect()
        };
        if field("Types").contains(&"deb")
            && let Some(uri) = field("URIs").first()
        {
            for suite in field("Suites") {
                note(uri, suite);
            }
        }
        for line in stanza.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let words = match words.as_slice() {
                ["deb", opts, rest @ ..] if opts.starts_with('[') => {
                    // `deb [a=b c=d] URI suite`: skip to the word closing the options.
                    let close = rest.iter().position(|w| w.ends_with(']'));
                    match (opts.ends_with(']'), close) {
                        (true, _) => rest.to_vec(),
                        (false, Some(i)) => rest[i + 1..].to_vec(),
                        (false, None) => continue,
                    }
                }
                ["deb", rest @ ..] => rest.to_vec(),
                _ => continue,
            };
            if let [uri, suite, ..] = words.as_slice() {
                note(uri, suite);
            }
        }
    }
    Mirrors {
        main: main.unwrap_or_else(|| DEFAULT_MIRROR.to_owned()),
        security: security.unwrap_or_else(|| DEFAULT_SECURITY_MIRROR.to_owned()),
    }
}

/// dpkg never installs these paths again (what Debian's `-slim` images do).
const DPKG_EXCLUDES: &str = "\
# Keep the image small, as Debian's -slim images do.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
";

/// Deletes what `DPKG_EXCLUDES` excludes, apt caches and logs, and the host's
/// hostname and resolver (Docker provides both); points apt at the mirrors.
const SLIM_SCRIPT: &str = r#"set -eu
cd "$1"
find usr/share/doc -xdev -mindepth 1 ! -type d ! -name copyright -delete
find usr/share/doc -xdev -mindepth 1 -type d -empty -delete
find usr/share/locale -xdev -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
rm -rf usr/share/man/* usr/share/groff/* usr/share/info/* usr/share/lintian/* usr/share/linda/*
rm -rf var/cache/apt/archives/*.deb var/cache/apt/*.bin var/lib/apt/lists/*
rm -rf var/log/apt/* var/log/dpkg.log var/log/bootstrap.log var/log/alternatives.log
: > etc/resolv.conf
: > etc/hostname
"#;

fn finish_rootfs(dir: &Path, mirrors: &Mirrors) -> Result<()> {
    let sources = format!(
        "deb {main} {SUITE} main\ndeb {main} {SUITE}-updates main\ndeb {security} {SUITE}-security main\n",
        main = mirrors.main,
        security = mirrors.security,
    );
    let write = |rel: &str, text: &str| {
        let path = dir.join(rel);
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("etc/apt/sources.list", &sources)?;
    write("etc/dpkg/dpkg.cfg.d/burstflare-slim", DPKG_EXCLUDES)?;
    proc::run(Command::new("sh").args(["-c", SLIM_SCRIPT, "sh"]).arg(dir))
}

fn import_rootfs(dir: &Path, mirror: &str) -> Result<()> {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["--numeric-owner", "-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start tar")?;
    let archive = tar.stdout.take().context("tar has no stdout")?;
    let mut import = docker();
    import
        .args(["import", "--change", r#"CMD ["bash"]"#])
        .args([
            "--message",
            &format!("debootstrap --variant=minbase {SUITE} {mirror}"),
        ])
        .args(["-", BASE_IMAGE])
        .stdin(archive)
        .stdout(io::stderr());
    let imported = proc::run(&mut import);
    let tarred = tar.wait().context("tar did not finish")?;
    imported.context("cannot import the base image")?;
    if !tarred.success() {
        bail!("tar of {} failed ({tarred})", dir.display());
    }
    eprintln!("imported {BASE_IMAGE}");
    Ok(())
}

/// Builds the release agent for this host (x86_64 Linux; the images' glibc
/// matches Debian 12 hosts) and returns its path.
fn build_agent(root: &Path) -> Result<PathBuf> {
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        bail!("the runtime image needs an x86_64 Linux agent; build it on an x86_64 Linux host");
    }
    proc::run(Command::new(env!("CARGO")).current_dir(root).args([
        "build",
        "--release",
        "--package",
        AGENT_BIN,
        "--bin",
        AGENT_BIN,
    ]))
    .context("cannot build the agent")?;
    let bin = target_dir(root).join("release").join(AGENT_BIN);
    if !bin.is_file() {
        bail!(
            "cargo built {AGENT_BIN} but {} does not exist",
            bin.display()
        );
    }
    Ok(bin)
}

/// Cargo's target directory for builds started in `root`: `CARGO_TARGET_DIR`
/// (relative to `root`) or `root/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"))
}

/// One file of the build context.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ContextFile {
    /// Relative path with `/` separators.
    path: String,
    /// 0o755 or 0o644: only the executable bit of the source is kept, so the
    /// image and its tag do not depend on the checkout's umask.
    mode: u32,
    sha256: String,
}

/// The [`ContextFile`] of `from` at `path` (mode normalised).
fn context_file(path: &str, from: &Path) -> Result<ContextFile> {
    let bytes = fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    let executable = fs::metadata(from)?.permissions().mode() & 0o111 != 0;
    Ok(ContextFile {
        path: path.to_owned(),
        mode: if executable { 0o755 } else { 0o644 },
        sha256: hex::encode(Sha256::digest(&bytes)),
    })
}

/// Recreates `context` from the files of `source` (Markdown excluded) and
/// `extra` files (context path, source path); returns the files sorted by path.
fn assemble_context(
    source: &Path,
    extra: &[(String, PathBuf)],
    context: &Path,
) -> Result<Vec<ContextFile>> {
    let mut inputs = Vec::new();
    collect_files(source, source, &mut inputs)?;
    inputs.extend(extra.iter().cloned());
    inputs.sort();
    if context.exists() {
        fs::remove_dir_all(context)
            .with_context(|| format!("cannot remove {}", context.display()))?;
    }
    let mut files = Vec::with_capacity(inputs.len());
    for (rel, from) in inputs {
        let to = context.join(&rel);
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let bytes = fs::read(&from).with_context(|| format!("cannot read {}", from.display()))?;
        let executable = fs::metadata(&from)?.permissions().mode() & 0o111 != 0;
        let mode = if executable { 0o755 } else { 0o644 };
        fs::write(&to, &bytes).with_context(|| format!("cannot write {}", to.display()))?;
        fs::set_permissions(&to, fs::Permissions::from_mode(mode))?;
        files.push(ContextFile {
            path: rel,
            mode,
            sha256: hex::encode(Sha256::digest(&bytes)),
        });
    }
    Ok(files)
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let kind = fs::symlink_metadata(&path)?.file_type();
        if kind.is_dir() {
            collect_files(root, &path, out)?;
        } else if kind.is_file() {
            if path.extension().is_some_and(|e| e == "md") {
                continue;
            }
            let rel = path.strip_prefix(root)?;
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push((rel.join("/"), path));
        } else {
            bail!(
                "{} is neither a file nor a directory; the image context takes plain files only",
                path.display()
            );
        }
    }
    Ok(())
}

/// The hex SHA-256 naming a build: the context files and the base image id.
fn image_digest(files: &[ContextFile], base_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(DIGEST_VERSION);
    h.update(format!("\nbase {base_id}\n"));
    for f in files {
        h.update(format!("{:o} {} {}\n", f.mode, f.sha256, f.path));
    }
    hex::encode(h.finalize())
}

/// A directory removed on drop, unless something is still mounted inside it
/// (a debootstrap interrupted while `/proc` was mounted in the chroot).
struct Scratch(PathBuf);

impl Scratch {
    fn new(path: PathBuf) -> Result<Self> {
        if path.exists() {
            fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let prefix = format!("{}/", self.0.display());
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        if mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .any(|m| m.starts_with(&prefix))
        {
            eprintln!(
                "warning: leaving {} in place: something is still mounted inside it",
                self.0.display()
            );
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.0) {
            eprintln!("warning: cannot remove {}: {e}", self.0.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_from_deb822_sources() {
        let text = "Types: deb\n\
                    # http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
                    URIs: http://mirror.example/debian/\n\
                    Suites: bookworm bookworm-updates\n\
                    Components: main\n\
                    \n\
                    Types: deb\n\
                    URIs: http://mirror.example/debian-security\n\
                    Suites: bookworm-security\n\
                    Components: main\n";
        assert_eq!(
            parse_mirrors(text),
            Mirrors {
                main: "http://mirror.example/debian".into(),
                security: "http://mirror.example/debian-security".into(),
            }
        );
    }

    #[test]
    fn mirrors_from_one_line_sources_and_defaults() {
        let text = "# deb http://commented.example/debian bookworm main\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n";
        assert_eq!(
            parse_mirrors(text),
            Mirrors {
                main: "http://one.example/debian".into(),
                security: DEFAULT_SECURITY_MIRROR.into(),
            }
        );
        assert_eq!(parse_mirrors("").main, DEFAULT_MIRROR);
        // Other releases' mirrors are not used for bookworm.
        assert_eq!(
            parse_mirrors("deb http://x.example/debian trixie main\n").main,
            DEFAULT_MIRROR
        );
    }

    #[test]
    fn digest_covers_base_paths_modes_and_contents() {
        let file = |path: &str, mode, sha: &str| ContextFile {
            path: path.into(),
            mode,
            sha256: sha.into(),
        };
        let files = vec![
            file("Dockerfile", 0o644, "aa"),
            file("burstflare-agent", 0o755, "bb"),
        ];
        let d = image_digest(&files, "sha256:1");
        assert_eq!(d, image_digest(&files, "sha256:1"));
        assert_ne!(d, image_digest(&files, "sha256:2"));
        let mut other = files.clone();
        other[1].mode = 0o644;
        assert_ne!(d, image_digest(&other, "sha256:1"));
        other[1] = file("burstflare-agent", 0o755, "cc");
        assert_ne!(d, image_digest(&other, "sha256:1"));
        other[1] = file("bin/burstflare-agent", 0o755, "bb");
        assert_ne!(d, image_digest(&other, "sha256:1"));
    }

    #[test]
    fn editor_digest_covers_runtime_install_and_files() {
        let files = vec![ContextFile {
            path: "Dockerfile".into(),
            mode: 0o644,
            sha256: "aa".into(),
        }];
        let d = editor_digest(&files, "sha256:1", "i1");
        assert_eq!(d, editor_digest(&files, "sha256:1", "i1"));
        assert_ne!(d, editor_digest(&files, "sha256:2", "i1"));
        assert_ne!(d, editor_digest(&files, "sha256:1", "i2"));
        let mut other = files.clone();
        other[0].sha256 = "bb".into();
        assert_ne!(d, editor_digest(&other, "sha256:1", "i1"));
        // Never the runtime image's tag for the same inputs.
        assert_ne!(d, image_digest(&files, "sha256:1"));
    }

    #[test]
    fn context_takes_files_without_markdown_and_normalises_modes() -> Result<()> {
        let scratch = env::temp_dir().join(format!("xtask-image-test-{}", std::process::id()));
        let source = scratch.join("src");
        fs::create_dir_all(source.join("rootfs/etc"))?;
        fs::write(source.join("Dockerfile"), "FROM scratch\n")?;
        fs::write(source.join("README.md"), "docs\n")?;
        fs::write(source.join("rootfs/etc/conf"), "x\n")?;
        fs::set_permissions(
            source.join("rootfs/etc/conf"),
            fs::Permissions::from_mode(0o664),
        )?;
        let agent = scratch.join("agent");
        fs::write(&agent, "binary")?;
        fs::set_permissions(&agent, fs::Permissions::from_mode(0o775))?;
        let context = scratch.join("ctx");
        fs::create_dir_all(context.join("stale"))?;

        let files = assemble_context(&source, &[("burstflare-agent".into(), agent)], &context)?;
        let listed: Vec<(&str, u32)> = files.iter().map(|f| (f.path.as_str(), f.mode)).collect();
        assert_eq!(
            listed,
            [
                ("Dockerfile", 0o644),
                ("burstflare-agent", 0o755),
                ("rootfs/etc/conf", 0o644)
            ]
        );
        assert!(!context.join("stale").exists());
        assert!(!context.join("README.md").exists());
        assert_eq!(
            fs::read_to_string(context.join("burstflare-agent"))?,
            "binary"
        );
        assert_eq!(
            fs::metadata(context.join("rootfs/etc/conf"))?
                .permissions()
                .mode()
                & 0o777,
            0o644
        );
        // Same inputs, same files (and so the same tag).
        assert_eq!(
            assemble_context(
                &source,
                &[("burstflare-agent".into(), scratch.join("agent"))],
                &context
            )?,
            files
        );
        fs::remove_dir_all(&scratch)?;
        Ok(())
    }
}

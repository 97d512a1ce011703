//! Docker Engine: make sure a daemon answers, installing and starting it when
//! this machine allows (root with apt), and small image queries.
//!
//! A daemon that xtask starts runs detached in its own process group, outlives
//! xtask and logs to `~/.cache/burstflare/dockerd.log`; later runs find it up
//! and do nothing.

use std::env;
use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{proc, tools};

/// How long a freshly started dockerd may take to answer.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(60);

/// A `docker` command (the client on PATH).
pub fn docker() -> Command {
    Command::new("docker")
}

/// Whether the daemon answers `docker info`.
fn daemon_answers() -> bool {
    docker()
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The id (`sha256:…`) of a local image, or None if there is no such image.
pub fn image_id(reference: &str) -> Option<String> {
    proc::output(
        "docker",
        &["image", "inspect", "--format", "{{.Id}}", reference],
    )
    .filter(|id| !id.is_empty())
}

/// Whether this process runs as root (installs and daemons need it).
pub fn is_root() -> bool {
    proc::output("id", &["-u"]).is_some_and(|uid| uid == "0")
}

/// `program` on PATH or in the sbin directories (which a non-login PATH may lack).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// `apt-get install -y <packages>` (after `apt-get update`), as root only.
pub fn apt_install(packages: &[&str]) -> Result<()> {
    if !is_root() || find_program("apt-get").is_none() {
        bail!(
            "{} must be installed (as root: `apt-get install -y {}`)",
            packages.join(", "),
            packages.join(" ")
        );
    }
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        // stdout carries only results (`cargo xtask image` prints the tag).
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(std::io::stderr());
        cmd
    };
    proc::run(&mut apt(&["update", "-qq"]))?;
    proc::run(apt(&["install", "-y", "-qq"]).args(packages))
}

/// Makes sure a Docker daemon answers. When it does not and this process is
/// root without `DOCKER_HOST` pointing elsewhere, installs Debian's `docker.io`
/// if `dockerd` is missing, starts `dockerd` in the background and waits for it.
pub fn ensure_docker() -> Result<()> {
    if daemon_answers() {
        return Ok(());
    }
    if env::var_os("DOCKER_HOST").is_some() {
        bail!(
            "the Docker daemon at DOCKER_HOST={} does not answer `docker info`\n\
             hint: start it, or unset DOCKER_HOST to use the local daemon",
            env::var("DOCKER_HOST").unwrap_or_default()
        );
    }
    if !is_root() {
        bail!(
            "the Docker daemon does not answer `docker info`\n\
             hint: start it (`sudo systemctl start docker`, or `sudo dockerd &`) and make sure \
             you may use it (`sudo usermod -aG docker $USER`, then log in again); \
             as root, `cargo xtask image` installs and starts Docker itself"
        );
    }
    let dockerd = match find_program("dockerd") {
        Some(path) => path,
        None => {
            eprintln!("Docker Engine is not installed; installing Debian's docker.io");
            apt_install(&["docker.io"]).context("cannot install Docker Engine")?;
            // The package starts the daemon where an init system runs it.
            if daemon_answers() {
                return Ok(());
            }
            find_program("dockerd").context("docker.io is installed but dockerd is not found")?
        }
    };
    if find_program("docker").is_none() {
        bail!(
            "{} exists but the `docker` client is not on PATH\nhint: `apt-get install -y docker.io`",
            dockerd.display()
        );
    }
    start_dockerd(&dockerd)
}

fn start_dockerd(dockerd: &Path) -> Result<()> {
    let log_path = tools::cache_dir().join("dockerd.log");
    if let Some(dir) = log_path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let log_err = log.try_clone()?;
    eprintln!(
        "starting {} in the background (log: {})",
        dockerd.display(),
        log_path.display()
    );
    // Its own process group: Ctrl-C on xtask must not stop the daemon.
    let mut child = Command::new(dockerd)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", dockerd.display()))?;
    let deadline = Instant::now() + DAEMON_START_TIMEOUT;
    loop {
        if daemon_answers() {
            eprintln!("Docker daemon is up");
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "dockerd exited ({status}) before answering{}",
                log_tail(&log_path)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "dockerd did not answer within {} s{}",
                DAEMON_START_TIMEOUT.as_secs(),
                log_tail(&log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The last lines of a log, for error messages.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n  ");
    format!("; last lines of {}:\n  {tail}", path.display())
}

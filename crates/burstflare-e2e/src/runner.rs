//! A `burstflare-runner` process for one stack: its own port, secret and
//! instance label, so concurrent runs never see each other's containers.
//!
//! [`Runner::restart`] stops and starts the process on the same port (the
//! Worker's `RUNNER_URL` stays valid), optionally pointing it at another Docker
//! endpoint — how the tests take Docker "down" without touching the daemon.
//! Dropping the runner kills it and removes every container carrying its
//! instance label.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::stack::{free_port, unique};

pub struct Runner {
    pub port: u16,
    pub url: String,
    pub secret: String,
    /// The `dev.burstflare.runner` label value of this runner's containers.
    pub instance: String,
    bin: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Runner {
    pub fn start(bin: &Path, log_dir: &Path) -> Result<Self> {
        let port = free_port()?;
        let mut runner = Self {
            port,
            url: format!("http://127.0.0.1:{port}"),
            secret: format!("e2e-runner-secret-{}", unique()),
            instance: format!("e2e-{}", unique()),
            bin: bin.to_owned(),
            log: log_dir.join("runner.log"),
            child: None,
        };
        runner.spawn(None)?;
        Ok(runner)
    }

    fn spawn(&mut self, docker_host: Option<&str>) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--instance", &self.instance])
            .env("BURSTFLARE_RUNNER_SECRET", &self.secret)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        if let Some(host) = docker_host {
            cmd.args(["--docker-host", host]);
        }
        self.child = Some(
            cmd.spawn()
                .with_context(|| format!("cannot start {}", self.bin.display()))?,
        );
        self.wait_listening(Duration::from_secs(30))
    }

    fn wait_listening(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "burstflare-runner did not listen on {} within {timeout:?}:\n{}",
            self.port,
            self.log_tail(30)
        )
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = Pid::from_raw(child.id() as i32);
            let _ = killpg(pgid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Restarts the runner on the same port; `docker_host` overrides the Docker endpoint.
    pub fn restart(&mut self, docker_host: Option<&str>) -> Result<()> {
        self.kill();
        self.spawn(docker_host)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Names of the containers (any state) that carry `label=value`.
pub fn docker_containers(label: &str, value: &str) -> Result<Vec<String>> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label={label}={value}"))
        .output()
        .context("cannot run docker")?;
    if !out.status.success() {
        bail!("docker ps failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect())
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.kill();
        if let Ok(names) = docker_containers(burstflare_api::runtime::LABEL_RUNNER, &self.instance)
            && !names.is_empty()
        {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&names)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

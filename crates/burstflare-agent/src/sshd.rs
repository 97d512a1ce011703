//! The sshd supervisor: runs `sshd -D -e` (foreground, logging to stderr,
//! which is the container log) and restarts it with a capped exponential
//! backoff whenever it dies, counting the restarts for `/healthz`.
//!
//! Invariants: at most one listener sshd runs at a time; `running` is true
//! exactly while a spawned sshd has not been reaped; stopping sends SIGTERM,
//! then SIGKILL after [`STOP_TIMEOUT`]. Per-connection sshd children are not
//! the supervisor's: they outlive a listener restart, as with any sshd.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{DEFAULT_HOST_KEY_DIR, PRIVATE_ENV};
use crate::keys;

/// sshd's privilege-separation directory; sshd refuses to start without it.
pub const PRIVSEP_DIR: &str = "/run/sshd";
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// An sshd that ran this long was healthy; the next failure starts the backoff over.
const STABLE_AFTER: Duration = Duration::from_secs(30);
pub const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// The arguments sshd runs with: foreground (`-D`), log to stderr (`-e`), and,
/// when the host keys live outside `/etc/ssh`, one `-h` per key (the image's
/// sshd config names the keys in `/etc/ssh` itself).
pub fn sshd_args(host_key_dir: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["-D".into(), "-e".into()];
    if host_key_dir != Path::new(DEFAULT_HOST_KEY_DIR) {
        for key in keys::host_key_files(host_key_dir) {
            args.push("-h".into());
            args.push(key.into_os_string());
        }
    }
    args
}

/// Creates sshd's privilege-separation directory (root only; 0755).
pub fn ensure_privsep_dir() -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(PRIVSEP_DIR)?;
    std::fs::set_permissions(PRIVSEP_DIR, std::fs::Permissions::from_mode(0o755))
}

/// What `/healthz` reports about sshd.
#[derive(Debug, Default)]
pub struct SshdStatus {
    running: AtomicBool,
    restarts: AtomicU64,
    starts: AtomicU64,
}

impl SshdStatus {
    pub fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::SeqCst)
    }

    /// How many times sshd was started successfully (identifies the current run).
    pub fn starts(&self) -> u64 {
        self.starts.load(Ordering::SeqCst)
    }
}

/// A running supervisor; [`Supervisor::stop`] ends it and sshd.
pub struct Supervisor {
    status: Arc<SshdStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Starts supervising `program args…`.
    pub fn spawn(program: PathBuf, args: Vec<OsString>) -> Self {
        let status = Arc::new(SshdStatus::default());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(program, args, Arc::clone(&status), stop_rx));
        Self { status, stop, task }
    }

    pub fn status(&self) -> Arc<SshdStatus> {
        Arc::clone(&self.status)
    }

    /// Stops sshd (SIGTERM, then SIGKILL) and the supervisor.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the sshd supervisor failed");
        }
    }
}

fn spawn_sshd(program: &Path, args: &[OsString]) -> std::io::Result<Child> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for var in PRIVATE_ENV {
        cmd.env_remove(var);
    }
    cmd.spawn()
}

async fn supervise(
    program: PathBuf,
    args: Vec<OsString>,
    status: Arc<SshdStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut first = true;
    loop {
        if !first {
            status.restarts.fetch_add(1, Ordering::SeqCst);
        }
        first = false;
        let started = Instant::now();
        match spawn_sshd(&program, &args) {
            Ok(mut child) => {
                status.starts.fetch_add(1, Ordering::SeqCst);
                status.running.store(true, Ordering::SeqCst);
                tracing::info!(pid = ?child.id(), program = %program.display(), "sshd started");
                tokio::select! {
                    res = child.wait() => {
                        status.running.store(false, Ordering::SeqCst);
                        match res {
                            Ok(s) => tracing::warn!(status = %s, "sshd exited; restarting it"),
                            Err(e) => tracing::error!(error = %e, "cannot wait for sshd; restarting it"),
                        }
                    }
                    () = stopped(&mut stop) => {
                        let res = terminate(&mut child, STOP_TIMEOUT).await;
                        status.running.store(false, Ordering::SeqCst);
                        tracing::info!(status = ?res, "sshd stopped");
                        return;
                    }
                }
                if started.elapsed() >= STABLE_AFTER {
                    backoff = MIN_BACKOFF;
                }
            }
            Err(e) => {
                tracing::error!(program = %program.display(), error = %e, "cannot start sshd");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Resolves once a stop is requested (or the supervisor handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// SIGTERM, then SIGKILL after `timeout`; reaps the child.
pub async fn terminate(child: &mut Child, timeout: Duration) -> std::io::Result<ExitStatus> {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        if let Ok(res) = tokio::time::timeout(timeout, child.wait()).await {
            return res;
        }
        tracing::warn!(pid, "did not exit after SIGTERM; sending SIGKILL");
    }
    child.kill().await?;
    child.wait().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_name_host_keys_outside_etc_ssh() {
        assert_eq!(sshd_args(Path::new("/etc/ssh")), vec!["-D", "-e"]);
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("ssh_host_ed25519_key");
        std::fs::write(&key, "k").unwrap();
        std::fs::write(tmp.path().join("ssh_host_ed25519_key.pub"), "p").unwrap();
        assert_eq!(
            sshd_args(tmp.path()),
            vec![
                OsString::from("-D"),
                "-e".into(),
                "-h".into(),
                key.into_os_string()
            ]
        );
    }

    #[tokio::test]
    async fn restarts_a_dying_sshd_and_stops_it() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("runs");
        let script = tmp.path().join("fake-sshd");
        // Dies at once twice, then stays up.
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{log}'\n[ $(wc -l < '{log}') -ge 3 ] && exec sleep 60\nexit 1\n",
                log = log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let sup = Supervisor::spawn(script, vec!["-D".into(), "-e".into()]);
        let status = sup.status();
        let deadline = Instant::now() + Duration::from_secs(20);
        let runs = || std::fs::read_to_string(&log).unwrap_or_default();
        while !(status.running() && status.restarts() == 2 && runs().lines().count() == 3) {
            assert!(Instant::now() < deadline, "restarts: {}", status.restarts());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(runs(), "-D -e\n-D -e\n-D -e\n");
        let started = Instant::now();
        sup.stop().await;
        assert!(started.elapsed() < STOP_TIMEOUT, "sleep dies on SIGTERM");
        assert!(!status.running());
    }
}

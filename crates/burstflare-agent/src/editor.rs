//! The browser editor: code-server, run and supervised when the container's
//! environment sets `BURSTFLARE_EDITOR_PORT`
//! (`burstflare_api::runtime::ENV_EDITOR_PORT`), which the control plane does
//! for templates with `editor = true`; their sessions run the editor variant
//! of the runtime image (`images/editor`), which has code-server at
//! [`crate::config::DEFAULT_EDITOR_BIN`].
//!
//! code-server runs as the login user, in the user's home, with the session's
//! environment, and listens on all interfaces at the port with its own
//! password off (`--auth none`, see [`editor_args`]): the control plane
//! authenticates users and is the only way to reach the container's ports.
//! As root the agent starts it through a login shell (`runuser -l`), so it —
//! and every terminal opened in it — gets what a terminal gets, the session's
//! variables included (the profile script, [`crate::session_env`]). When the
//! agent is not root (tests, local runs) it runs directly as the agent's user
//! with a login environment and the session's variables.
//!
//! Invariants, as for sshd ([`crate::sshd`]): at most one code-server runs;
//! it is restarted with a capped exponential backoff whenever it exits;
//! `running` is true exactly while a spawned one has not been reaped. It runs
//! in a process group of its own (code-server is a parent and a child
//! process, behind `runuser` as root), and stopping signals the whole group
//! (as root, all but `runuser`, which then exits with its command): SIGTERM,
//! then SIGKILL after [`STOP_TIMEOUT`]. A missing binary
//! (the plain runtime image) is logged once and reported by `/healthz`; the
//! agent keeps looking for it, quietly, and never fails because of it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use burstflare_api::runtime::EditorHealth;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::PRIVATE_ENV;
use crate::session_env::{SessionEnv, shell_quote};
use crate::terminal::{DEFAULT_PATH, INHERITED_ENV};
use crate::user::{LoginTarget, RUNUSER, ShellMode};

const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// An editor that ran this long was healthy; the next failure starts the backoff over.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How often a missing binary is looked for again.
const MISSING_RECHECK: Duration = Duration::from_secs(5);
pub const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Which editor to run, and where (from the environment; see [`crate::config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditorConfig {
    /// The port code-server listens on (all interfaces).
    pub port: u16,
    /// The code-server launcher, absolute.
    pub program: PathBuf,
}

/// code-server's arguments: no password of its own, all interfaces, nothing
/// phoning home (no telemetry, no update check, no Coder "getting started"
/// page), no workspace-trust prompt (the session is the user's own), and the
/// folder to open.
pub fn editor_args(port: u16, folder: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--auth",
        "none",
        "--bind-addr",
        &format!("0.0.0.0:{port}"),
        "--disable-telemetry",
        "--disable-update-check",
        "--disable-workspace-trust",
        "--disable-getting-started-override",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(folder.as_os_str().to_owned());
    args
}

/// What `/healthz` reports about the editor.
#[derive(Debug)]
pub struct EditorStatus {
    port: u16,
    running: AtomicBool,
    restarts: AtomicU64,
    error: Mutex<Option<String>>,
}

impl EditorStatus {
    fn new(port: u16) -> Self {
        Self {
            port,
            running: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
            error: Mutex::new(None),
        }
    }

    pub fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// How many times the editor was started again after it exited.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::SeqCst)
    }

    /// Why the editor is not running, if it is not.
    pub fn error(&self) -> Option<String> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn health(&self) -> EditorHealth {
        EditorHealth {
            port: self.port,
            running: self.running(),
            error: self.error(),
        }
    }

    fn set_error(&self, error: Option<String>) {
        *self.error.lock().unwrap_or_else(PoisonError::into_inner) = error;
    }
}

/// A running editor supervisor; [`Editor::stop`] ends it and code-server.
pub struct Editor {
    status: Arc<EditorStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Editor {
    /// Starts supervising code-server as `target` (none: no login user, so
    /// no editor; the reason is reported).
    pub fn spawn(
        config: EditorConfig,
        target: Option<LoginTarget>,
        session_env: SessionEnv,
    ) -> Self {
        let status = Arc::new(EditorStatus::new(config.port));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(
            config,
            target,
            session_env,
            Arc::clone(&status),
            stop_rx,
        ));
        Self { status, stop, task }
    }

    pub fn status(&self) -> Arc<EditorStatus> {
        Arc::clone(&self.status)
    }

    /// Stops code-server (its process group: SIGTERM, then SIGKILL) and the supervisor.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the editor supervisor failed");
        }
    }
}

/// The command that starts code-server as `target` (see the module docs).
fn editor_command(
    config: &EditorConfig,
    target: &LoginTarget,
    session_env: &SessionEnv,
) -> Command {
    let home = if target.home.is_dir() {
        target.home.as_path()
    } else {
        Path::new("/")
    };
    let args = editor_args(config.port, home);
    let mut cmd = match target.mode {
        ShellMode::Runuser => {
            let line: Vec<String> = std::iter::once(config.program.as_os_str())
                .chain(args.iter().map(OsString::as_os_str))
                .map(|a| shell_quote(&a.to_string_lossy()))
                .collect();
            // A login shell, as terminals get (`runuser -l`, which sets HOME,
            // SHELL, USER, LOGNAME and PATH and starts in the home directory).
            // `--session-command` rather than `-c`: the shell stays in this
            // process group, so stopping reaches every process of the editor.
            let mut cmd = Command::new(RUNUSER);
            cmd.arg("-l")
                .arg("-w")
                .arg(INHERITED_ENV.join(","))
                .arg("--session-command")
                .arg(format!("exec {}", line.join(" ")))
                .arg(&target.name)
                .env_clear()
                .env("PATH", DEFAULT_PATH);
            cmd
        }
        ShellMode::Direct => {
            let mut cmd = Command::new(&config.program);
            cmd.args(&args)
                .env_clear()
                .env(
                    "PATH",
                    std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into()),
                )
                .env("HOME", &target.home)
                .env("USER", &target.name)
                .env("LOGNAME", &target.name)
                .env("SHELL", &target.shell)
                // What the profile script does for `runuser` logins.
                .envs(session_env);
            cmd
        }
    };
    cmd.envs(
        INHERITED_ENV
            .iter()
            .filter_map(|&k| std::env::var(k).ok().map(|v| (k, v))),
    )
    .current_dir(home)
    .stdin(Stdio::null())
    .stdout(Stdio::inherit())
    .stderr(Stdio::inherit())
    .process_group(0)
    .kill_on_drop(true);
    for var in PRIVATE_ENV {
        cmd.env_remove(var);
    }
    cmd
}

async fn supervise(
    config: EditorConfig,
    target: Option<LoginTarget>,
    session_env: SessionEnv,
    status: Arc<EditorStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let program = config.program.display().to_string();
    let Some(target) = target else {
        tracing::error!("no login user: the editor is unavailable");
        status.set_error(Some("no login user to run the editor as".into()));
        return;
    };
    let mut backoff = MIN_BACKOFF;
    let mut spawned = false;
    let mut missing_logged = false;
    loop {
        if !config.program.is_file() {
            if !missing_logged {
                tracing::error!(
                    program,
                    "code-server is not installed: the editor is unavailable \
                     (the editor variant of the runtime image has it)"
                );
                missing_logged = true;
            }
            status.set_error(Some(format!(
                "{program} does not exist: this image has no editor"
            )));
            tokio::select! {
                () = tokio::time::sleep(MISSING_RECHECK) => continue,
                () = stopped(&mut stop) => return,
            }
        }
        if spawned {
            status.restarts.fetch_add(1, Ordering::SeqCst);
        }
        let started = Instant::now();
        match editor_command(&config, &target, &session_env).spawn() {
            Ok(mut child) => {
                spawned = true;
                status.running.store(true, Ordering::SeqCst);
                status.set_error(None);
                tracing::info!(
                    pid = ?child.id(),
                    program,
                    port = config.port,
                    user = target.name,
                    "code-server started"
                );
                tokio::select! {
                    res = child.wait() => {
                        status.running.store(false, Ordering::SeqCst);
                        let why = match res {
                            Ok(s) => format!("code-server exited ({s})"),
                            Err(e) => format!("cannot wait for code-server ({e})"),
                        };
                        tracing::warn!("{why}; restarting it");
                        status.set_error(Some(why));
                    }
                    () = stopped(&mut stop) => {
                        let runuser = target.mode == ShellMode::Runuser;
                        let res = terminate_group(&mut child, STOP_TIMEOUT, runuser).await;
                        status.running.store(false, Ordering::SeqCst);
                        status.set_error(Some("stopped".into()));
                        tracing::info!(status = ?res, "code-server stopped");
                        return;
                    }
                }
                if started.elapsed() >= STABLE_AFTER {
                    backoff = MIN_BACKOFF;
                }
            }
            Err(e) => {
                tracing::error!(program, error = %e, "cannot start code-server");
                status.set_error(Some(format!("cannot start {program}: {e}")));
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

/// SIGTERM to the child's process group, then SIGKILL to what is left of it
/// after `timeout` (or once the child is gone); reaps the child.
///
/// With `spare_leader` (the leader is `runuser`), SIGTERM goes to the other
/// members only when there are any: runuser, signalled, waits two seconds
/// before it exits, while it exits as soon as its command does otherwise.
async fn terminate_group(
    child: &mut Child,
    timeout: Duration,
    spare_leader: bool,
) -> std::io::Result<ExitStatus> {
    let Some(leader) = child.id().and_then(|p| i32::try_from(p).ok()) else {
        // Already reaped.
        return child.wait().await;
    };
    let group = Pid::from_raw(leader);
    let others: Vec<i32> = crate::procs::group_members(leader)
        .into_iter()
        .filter(|&pid| pid != leader)
        .collect();
    if spare_leader && !others.is_empty() {
        for pid in others {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    } else {
        let _ = killpg(group, Signal::SIGTERM);
    }
    let res = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(
                pgid = group.as_raw(),
                "code-server did not exit after SIGTERM; sending SIGKILL"
            );
            let _ = killpg(group, Signal::SIGKILL);
            child.wait().await
        }
    };
    // Members that outlived the leader do not outlive the stop.
    let _ = killpg(group, Signal::SIGKILL);
    res
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn me() -> LoginTarget {
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .unwrap();
        LoginTarget {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
            shell: PathBuf::from("/bin/sh"),
            mode: ShellMode::Direct,
        }
    }

    fn script(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("fake-code-server");
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check() {
            assert!(Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn args_turn_off_the_password_and_phoning_home() {
        let args = editor_args(13337, Path::new("/home/dev"));
        assert_eq!(
            args,
            [
                "--auth",
                "none",
                "--bind-addr",
                "0.0.0.0:13337",
                "--disable-telemetry",
                "--disable-update-check",
                "--disable-workspace-trust",
                "--disable-getting-started-override",
                "/home/dev",
            ]
        );
    }

    #[tokio::test]
    async fn restarts_a_dying_editor_and_stops_its_whole_group() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path().join("runs");
        let helper = tmp.path().join("helper.pid");
        // Dies at once twice, then stays up with a helper in its group.
        let program = script(
            tmp.path(),
            &format!(
                "echo \"$*\" >> '{runs}'\n\
                 [ $(wc -l < '{runs}') -ge 3 ] || exit 1\n\
                 sleep 60 & echo $! > '{helper}'\n\
                 exec sleep 60\n",
                runs = runs.display(),
                helper = helper.display()
            ),
        );
        let editor = Editor::spawn(
            EditorConfig {
                port: 13337,
                program,
            },
            Some(me()),
            SessionEnv::new(),
        );
        let status = editor.status();
        until("running after two restarts", || {
            status.running() && status.restarts() == 2 && helper.exists()
        })
        .await;
        assert_eq!(
            status.health(),
            EditorHealth {
                port: 13337,
                running: true,
                error: None
            }
        );
        let lines = std::fs::read_to_string(&runs).unwrap();
        assert_eq!(lines.lines().count(), 3);
        assert!(lines.starts_with("--auth none --bind-addr 0.0.0.0:13337 "));
        until("helper pid written", || {
            std::fs::read_to_string(&helper).is_ok_and(|s| s.trim().parse::<i32>().is_ok())
        })
        .await;
        let helper_pid: i32 = std::fs::read_to_string(&helper)
            .unwrap()
            .trim()
            .parse()
            .unwrap();

        let started = Instant::now();
        editor.stop().await;
        assert!(started.elapsed() < STOP_TIMEOUT, "sleep dies on SIGTERM");
        assert!(!status.running());
        // The helper got the group's SIGTERM too (it is a zombie at most:
        // its parent, the agent's test process, is not its reaper).
        until("the helper is gone", || {
            std::fs::read_to_string(format!("/proc/{helper_pid}/stat")).map_or(true, |s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        })
        .await;
    }

    #[tokio::test]
    async fn a_missing_binary_is_reported_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let program = tmp.path().join("no-code-server");
        let editor = Editor::spawn(
            EditorConfig {
                port: 13337,
                program: program.clone(),
            },
            Some(me()),
            SessionEnv::new(),
        );
        let status = editor.status();
        until("the error is reported", || status.error().is_some()).await;
        let health = status.health();
        assert!(!health.running);
        assert_eq!(
            health.error.as_deref(),
            Some(
                format!(
                    "{} does not exist: this image has no editor",
                    program.display()
                )
                .as_str()
            )
        );
        editor.stop().await;
    }

    #[tokio::test]
    async fn no_login_user_no_editor() {
        let editor = Editor::spawn(
            EditorConfig {
                port: 13337,
                program: PathBuf::from("/bin/true"),
            },
            None,
            SessionEnv::new(),
        );
        let status = editor.status();
        until("the error is reported", || status.error().is_some()).await;
        assert!(!status.running());
        editor.stop().await;
    }
}

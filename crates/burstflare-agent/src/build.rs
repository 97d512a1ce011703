//! Builder mode: what a template build asks of the agent in a builder
//! container (started from the base runtime image, thrown away after).
//!
//! * `POST /build/bundle` — the template's bundle (tar.gz) is unpacked into
//!   the bundle directory (`/opt/burstflare/bundle`); entries that would land
//!   outside it are refused by the unpacker.
//! * `POST /build/run` — `{"packages": [...], "commands": [...]}`: installs
//!   the apt packages, then runs each setup command with `bash -lc` as root in
//!   the bundle directory, stopping at the first failure. The answer carries
//!   the exit code, the failed command and the combined output (the build
//!   log; its head and tail when it exceeds [`MAX_LOG_BYTES`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

/// Largest log returned; longer logs keep their head and tail.
pub const MAX_LOG_BYTES: usize = 4 << 20;
/// Where bundles are unpacked and setup commands run.
pub const DEFAULT_BUNDLE_DIR: &str = "/opt/burstflare/bundle";
/// How long output is still read after a command has exited.
pub const DRAIN_AFTER_EXIT: std::time::Duration = std::time::Duration::from_millis(500);
/// The exit code of a command killed by its timeout (as `timeout(1)`).
pub const TIMED_OUT: i32 = 124;

/// `POST /build/run`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunRequest {
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub commands: Vec<String>,
    /// Each command (and the package install) may run this long; none: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// The outcome of `POST /build/run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOutcome {
    pub exit_code: i32,
    /// The command that failed (`apt-get install …` for packages).
    pub failed_command: Option<String>,
    pub log: String,
}

/// A log that keeps its first and last bytes within a budget, and hands
/// every line to a live sink as well (the streamed build log).
#[derive(Default)]
struct Log {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    dropped: usize,
    live: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

impl Log {
    fn push(&mut self, bytes: &[u8]) {
        let half = MAX_LOG_BYTES / 2;
        for &b in bytes {
            if self.head.len() < half {
                self.head.push(b);
            } else {
                if self.tail.len() == half {
                    self.tail.pop_front();
                    self.dropped += 1;
                }
                self.tail.push_back(b);
            }
        }
    }

    fn line(&mut self, s: &str) {
        self.push(s.as_bytes());
        self.push(b"\n");
        if let Some(live) = &self.live {
            let _ = live.send(s.to_owned());
        }
    }

    fn finish(self) -> String {
        let mut out = self.head;
        if self.dropped > 0 {
            out.extend_from_slice(
                format!("\n[… {} bytes of log omitted …]\n", self.dropped).as_bytes(),
            );
        }
        out.extend(self.tail);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Unpacks a tar.gz bundle into `dir` (created if needed).
pub fn unpack_bundle(bytes: &[u8], dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    let mut n = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        // `unpack_in` refuses `..` and absolute paths (returns false).
        if !entry.unpack_in(dir)? {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "bundle entry {:?} escapes the bundle directory",
                    entry.path()?
                ),
            ));
        }
        n += 1;
    }
    Ok(n)
}

async fn pump(reader: impl AsyncRead + Unpin, tx: tokio::sync::mpsc::UnboundedSender<String>) {
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if tx.send(line).is_err() {
            break;
        }
    }
}

/// Runs `bash -lc script` in `dir` in a process group of its own, appending
/// its output to `log`; the exit code ([`TIMED_OUT`] when `timeout` passed
/// first and the group was killed).
async fn run_one(
    script: &str,
    dir: &Path,
    timeout: Option<std::time::Duration>,
    log: &mut Log,
) -> std::io::Result<i32> {
    log.line(&format!("$ {script}"));
    let mut child = Command::new("bash")
        .arg("-lc")
        .arg(script)
        .current_dir(dir)
        .env("DEBIAN_FRONTEND", "noninteractive")
        // The agent's secrets never reach user code.
        .env_remove(burstflare_api::runtime::ENV_AGENT_SECRET)
        .env_remove(burstflare_api::runtime::ENV_AUTHORIZED_KEYS)
        .env_remove(burstflare_api::runtime::ENV_SESSION_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let group = child.id().and_then(|id| i32::try_from(id).ok());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    if let Some(out) = child.stdout.take() {
        tokio::spawn(pump(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(err, tx.clone()));
    }
    drop(tx);
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    // Output until the command exits; `None`: the deadline passed first.
    let mut open = true;
    let status = loop {
        tokio::select! {
            line = rx.recv(), if open => match line {
                Some(line) => log.line(&line),
                None => open = false,
            },
            status = child.wait() => break Some(status?),
            () = &mut deadline => break None,
        }
    };
    let code = match status {
        Some(status) => {
            // Background processes it started may keep the pipes open: what
            // they print right after still belongs to the command's log.
            let drain = tokio::time::sleep(DRAIN_AFTER_EXIT);
            tokio::pin!(drain);
            while open {
                tokio::select! {
                    line = rx.recv() => match line {
                        Some(line) => log.line(&line),
                        None => open = false,
                    },
                    () = &mut drain => break,
                }
            }
            status.code().unwrap_or(128 + 9)
        }
        None => {
            if let Some(pgid) = group {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.wait().await;
            while let Ok(line) = rx.try_recv() {
                log.line(&line);
            }
            log.line(&format!(
                "[timed out after {} s; the command and its processes were killed]",
                timeout.unwrap_or_default().as_secs()
            ));
            TIMED_OUT
        }
    };
    log.line(&format!("[exit {code}]"));
    Ok(code)
}

/// Installs `packages` and runs `commands` in `dir`.
pub async fn run(req: &RunRequest, dir: &Path) -> std::io::Result<RunOutcome> {
    run_live(req, dir, None).await
}

/// [`run`], also sending every log line to `live` as it is produced.
pub async fn run_live(
    req: &RunRequest,
    dir: &Path,
    live: Option<tokio::sync::mpsc::UnboundedSender<String>>,
) -> std::io::Result<RunOutcome> {
    std::fs::create_dir_all(dir)?;
    let mut log = Log {
        live,
        ..Log::default()
    };
    let mut steps: Vec<String> = Vec::new();
    if !req.packages.is_empty() {
        steps.push("apt-get update".to_owned());
        steps.push(format!(
            "apt-get install -y --no-install-recommends {}",
            req.packages.join(" ")
        ));
    }
    steps.extend(req.commands.iter().cloned());
    let timeout = req.timeout_secs.map(std::time::Duration::from_secs);
    for step in steps {
        let code = run_one(&step, dir, timeout, &mut log).await?;
        if code != 0 {
            return Ok(RunOutcome {
                exit_code: code,
                failed_command: Some(step),
                log: log.finish(),
            });
        }
    }
    Ok(RunOutcome {
        exit_code: 0,
        failed_command: None,
        log: log.finish(),
    })
}

/// The bundle directory (overridable for tests).
pub fn bundle_dir() -> PathBuf {
    std::env::var_os("BURSTFLARE_AGENT_BUNDLE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BUNDLE_DIR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_until_the_first_failure_and_keeps_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let req = RunRequest {
            commands: vec![
                "echo one; echo two >&2".into(),
                "pwd".into(),
                "exit 3".into(),
                "echo never".into(),
            ],
            ..RunRequest::default()
        };
        let out = run(&req, dir.path()).await.unwrap();
        assert_eq!(out.exit_code, 3);
        assert_eq!(out.failed_command.as_deref(), Some("exit 3"));
        assert!(
            out.log.contains("one") && out.log.contains("two"),
            "{}",
            out.log
        );
        assert!(
            out.log.contains(&dir.path().display().to_string()),
            "runs in the bundle dir"
        );
        assert!(!out.log.contains("never"));
        assert!(out.log.contains("[exit 3]"));
    }

    #[tokio::test]
    async fn lines_are_sent_live() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let req = RunRequest {
            commands: vec!["echo live-line".into()],
            ..RunRequest::default()
        };
        let out = run_live(&req, dir.path(), Some(tx)).await.unwrap();
        assert_eq!(out.exit_code, 0);
        let mut lines = Vec::new();
        while let Ok(l) = rx.try_recv() {
            lines.push(l);
        }
        assert_eq!(lines, vec!["$ echo live-line", "live-line", "[exit 0]"]);
    }

    #[tokio::test]
    async fn timeouts_kill_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-alive");
        let req = RunRequest {
            commands: vec![
                format!(
                    "(sleep 3; touch {}) & echo started; sleep 30",
                    marker.display()
                ),
                "echo never".into(),
            ],
            timeout_secs: Some(1),
            ..RunRequest::default()
        };
        let started = std::time::Instant::now();
        let out = run(&req, dir.path()).await.unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(out.exit_code, TIMED_OUT);
        assert!(out.log.contains("started"), "{}", out.log);
        assert!(out.log.contains("[timed out after 1 s"), "{}", out.log);
        assert!(!out.log.contains("never"));
        // The background child was in the group and died with it.
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn background_processes_do_not_hold_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("server-alive");
        let req = RunRequest {
            // The background "server" keeps stdout open and outlives the command.
            commands: vec![
                format!(
                    "(echo serving; sleep 2; touch {}; sleep 60) & echo launched",
                    marker.display()
                ),
                "echo after".into(),
            ],
            ..RunRequest::default()
        };
        let started = std::time::Instant::now();
        let out = run(&req, dir.path()).await.unwrap();
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(2), "{took:?}");
        assert_eq!(out.exit_code, 0, "{}", out.log);
        assert!(
            out.log.contains("launched") && out.log.contains("after"),
            "{}",
            out.log
        );
        // It was not killed: it keeps running after the run.
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        assert!(marker.exists(), "the background process was killed");
    }

    #[test]
    fn long_logs_keep_head_and_tail() {
        let mut log = Log::default();
        for i in 0..(MAX_LOG_BYTES / 4) {
            log.line(&format!("{i:07}"));
        }
        let text = log.finish();
        assert!(text.len() <= MAX_LOG_BYTES + 100);
        assert!(text.starts_with("0000000"));
        assert!(text.contains("bytes of log omitted"));
        assert!(
            text.trim_end()
                .ends_with(&format!("{:07}", MAX_LOG_BYTES / 4 - 1))
        );
    }

    #[test]
    fn bundles_unpack_and_escapes_are_refused() {
        let mut good = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let data = b"hello";
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        good.append_data(&mut h, "bin/tool.sh", &data[..]).unwrap();
        let bytes = good.into_inner().unwrap().finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(unpack_bundle(&bytes, dir.path()).unwrap(), 1);
        assert_eq!(std::fs::read(dir.path().join("bin/tool.sh")).unwrap(), data);

        // A raw header with `../x` (the builder API refuses to write one).
        let mut raw = tar::Header::new_old();
        raw.as_old_mut().name[..4].copy_from_slice(b"../x");
        raw.set_size(1);
        raw.set_cksum();
        let mut evil = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        evil.append(&raw, &b"x"[..]).unwrap();
        let bytes = evil.into_inner().unwrap().finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("bundle");
        assert!(unpack_bundle(&bytes, &inner).is_err());
        assert!(!dir.path().join("x").exists());
    }
}

//! Terminal sessions: a PTY running the login user's login shell, kept alive
//! across WebSocket reconnects.
//!
//! Each [`Terminal`] has a pump task that reads the PTY for as long as the
//! shell lives — attached or not, so a detached shell never blocks on output —
//! appends every chunk to a bounded scrollback ([`SCROLLBACK`] bytes) and
//! forwards it to the one attached client. Attaching again (with the
//! terminal's id) replaces the previous client and first replays the
//! scrollback.
//!
//! Invariants:
//! * appending to the scrollback and choosing the client to forward to happen
//!   under one lock, so an attaching client never sees a byte twice, and
//!   misses none beyond what fell out of the scrollback: each byte is either
//!   in its replay or sent to it live;
//! * the shell's exit is delivered after all of its output (same queue);
//! * a terminal nobody is attached to is hung up after the grace period (see
//!   [`Terminal::terminate`]); at most [`MAX_TERMINALS`] exist at once.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pty_process::{OwnedReadPty, OwnedWritePty};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::PRIVATE_ENV;
use crate::procs;
use crate::session_env::SessionEnv;
use crate::user::{LoginTarget, RUNUSER, ShellMode};

/// Bytes of output kept for replay on reattach.
pub const SCROLLBACK: usize = 64 * 1024;
/// Terminals that may exist at once (attached or not).
pub const MAX_TERMINALS: usize = 32;
/// How long a hung-up shell gets before SIGKILL.
pub const HANGUP_TIMEOUT: Duration = Duration::from_secs(3);
const READ_CHUNK: usize = 16 * 1024;
/// How far into a truncated scrollback the replay looks for a line start.
const REPLAY_ALIGN: usize = 4096;
/// Chunks queued for the attached client before the pump waits for it.
const EVENT_QUEUE: usize = 64;
/// After the shell exits, output still in the PTY is read for at most this long.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);
const TERM: &str = "xterm-256color";
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Variables of the agent's environment a shell (and the editor) inherits
/// (locale, session id).
pub(crate) const INHERITED_ENV: [&str; 4] = [
    "LANG",
    "LC_ALL",
    "TZ",
    burstflare_api::runtime::ENV_SESSION_ID,
];

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub cols: u16,
    pub rows: u16,
}

impl Default for Size {
    fn default() -> Self {
        Self { cols: 80, rows: 24 }
    }
}

impl Size {
    /// A size from client values; zero (or absent) falls back to the default.
    pub fn from_client(cols: Option<u16>, rows: Option<u16>) -> Self {
        let d = Self::default();
        Self {
            cols: cols.filter(|&c| c > 0).unwrap_or(d.cols),
            rows: rows.filter(|&r| r > 0).unwrap_or(d.rows),
        }
    }
}

/// The last [`SCROLLBACK`] bytes of output.
#[derive(Debug)]
pub struct Scrollback {
    buf: VecDeque<u8>,
    cap: usize,
    /// Whether older output was dropped (the buffer starts mid-stream).
    truncated: bool,
}

impl Scrollback {
    pub fn new(cap: usize) -> Self {
        Self {
            buf: VecDeque::with_capacity(cap),
            cap,
            truncated: false,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        let cut = data.len().saturating_sub(self.cap);
        let data = &data[cut..];
        let overflow = (self.buf.len() + data.len()).saturating_sub(self.cap);
        self.buf.drain(..overflow);
        self.buf.extend(data);
        self.truncated |= cut > 0 || overflow > 0;
    }

    /// What a reattaching client gets. Once older output was dropped, the
    /// replay starts after the first newline (when there is one early on), so
    /// that it does not begin in the middle of a line, a UTF-8 sequence or an
    /// escape sequence.
    pub fn replay(&self) -> Bytes {
        let (a, b) = self.buf.as_slices();
        let mut out = BytesMut::with_capacity(a.len() + b.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        let out = out.freeze();
        if self.truncated
            && let Some(nl) = out.iter().take(REPLAY_ALIGN).position(|&c| c == b'\n')
        {
            return out.slice(nl + 1..);
        }
        out
    }
}

/// What the pump sends to the attached client.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Output(Bytes),
    Exit(i32),
}

/// A client's attachment; see [`Terminal::attach`].
pub struct Attachment {
    /// Identifies this attachment for [`Terminals::detached`].
    pub generation: u64,
    /// The scrollback at the moment of attaching.
    pub replay: Bytes,
    /// The shell's exit code when it has exited already (no events follow then).
    pub exit: Option<i32>,
    pub events: mpsc::Receiver<Event>,
    /// Resolves (with an error) once another client attached or this one was
    /// detached. The client must then stop at once, even in the middle of a
    /// send to a stalled connection: the pump may be waiting on its queue.
    pub replaced: oneshot::Receiver<()>,
}

#[derive(Debug)]
struct Attached {
    generation: u64,
    events: mpsc::Sender<Event>,
    /// Dropped to tell the client it was replaced.
    _replaced: oneshot::Sender<()>,
}

#[derive(Debug)]
struct Shared {
    scrollback: Scrollback,
    attached: Option<Attached>,
    /// Incremented on every attach.
    generation: u64,
    exit: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    #[error("cannot open a PTY: {0}")]
    Pty(#[source] pty_process::Error),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: pty_process::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("terminals are unavailable: {0}")]
    NoLoginUser(String),
    #[error("too many terminals are open (at most {MAX_TERMINALS})")]
    TooMany,
}

/// One shell on one PTY.
pub struct Terminal {
    id: String,
    pid: Option<i32>,
    writer: tokio::sync::Mutex<OwnedWritePty>,
    /// A duplicate of the PTY master for resizing while a write holds `writer`.
    ctl: OwnedFd,
    shared: Mutex<Shared>,
    done: watch::Receiver<bool>,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("id", &self.id)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Terminal {
    /// Starts the login shell of `target` on a new PTY of `size`. A shell run
    /// directly ([`ShellMode::Direct`]) gets `session_env` in its environment;
    /// through `runuser` it comes from the profile script instead.
    pub fn spawn(
        id: String,
        target: &LoginTarget,
        session_env: &SessionEnv,
        size: Size,
    ) -> Result<Arc<Self>, TerminalError> {
        let (pty, pts) = pty_process::open().map_err(TerminalError::Pty)?;
        pty.resize(pty_process::Size::new(size.rows, size.cols))
            .map_err(TerminalError::Pty)?;
        let ctl = pty.as_fd().try_clone_to_owned()?;
        let (program, cmd) = shell_command(target, session_env);
        let child = cmd.spawn(pts).map_err(|source| TerminalError::Spawn {
            program: program.clone(),
            source,
        })?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok());
        let (reader, writer) = pty.into_split();
        let (done_tx, done) = watch::channel(false);
        let term = Arc::new(Self {
            id,
            pid,
            writer: tokio::sync::Mutex::new(writer),
            ctl,
            shared: Mutex::new(Shared {
                scrollback: Scrollback::new(SCROLLBACK),
                attached: None,
                generation: 0,
                exit: None,
            }),
            done,
        });
        tracing::info!(terminal = %term.id, pid, program, user = %target.name, "terminal started");
        tokio::spawn(pump(Arc::clone(&term), reader, child, done_tx));
        Ok(term)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The shell's process id (the session leader of the PTY).
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    /// Attaches a client, replacing (and thereby disconnecting) any other.
    pub fn attach(&self) -> Attachment {
        let (tx, events) = mpsc::channel(EVENT_QUEUE);
        let (replaced_tx, replaced) = oneshot::channel();
        let mut s = lock(&self.shared);
        s.generation += 1;
        let generation = s.generation;
        s.attached = Some(Attached {
            generation,
            events: tx,
            _replaced: replaced_tx,
        });
        Attachment {
            generation,
            replay: s.scrollback.replay(),
            exit: s.exit,
            events,
            replaced,
        }
    }

    /// Detaches the client of `generation` if it is still the attached one.
    fn detach(&self, generation: u64) -> bool {
        let mut s = lock(&self.shared);
        if s.attached
            .as_ref()
            .is_some_and(|a| a.generation == generation)
        {
            s.attached = None;
            true
        } else {
            false
        }
    }

    /// Nobody attached since the attachment `generation` went away.
    fn detached_since(&self, generation: u64) -> bool {
        let s = lock(&self.shared);
        s.attached.is_none() && s.generation == generation
    }

    /// Writes user input to the shell.
    pub async fn write(&self, data: &[u8]) -> std::io::Result<()> {
        let mut w = self.writer.lock().await;
        w.write_all(data).await?;
        w.flush().await
    }

    /// Sets the PTY size; the kernel signals SIGWINCH to the foreground job.
    pub fn resize(&self, size: Size) -> std::io::Result<()> {
        rustix::termios::tcsetwinsize(
            &self.ctl,
            rustix::termios::Winsize {
                ws_row: size.rows,
                ws_col: size.cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .map_err(std::io::Error::from)
    }

    pub fn exited(&self) -> Option<i32> {
        lock(&self.shared).exit
    }

    /// Output of the shell: into the scrollback and to the attached client.
    async fn output(&self, data: Bytes) {
        let tx = {
            let mut s = lock(&self.shared);
            s.scrollback.push(&data);
            s.attached.as_ref().map(|a| a.events.clone())
        };
        if let Some(tx) = tx {
            // A client that went away drops its receiver; the data stays in the scrollback.
            let _ = tx.send(Event::Output(data)).await;
        }
    }

    async fn finish(&self, code: i32) {
        let tx = {
            let mut s = lock(&self.shared);
            s.exit = Some(code);
            s.attached.as_ref().map(|a| a.events.clone())
        };
        tracing::info!(terminal = %self.id, code, "shell exited");
        if let Some(tx) = tx {
            let _ = tx.send(Event::Exit(code)).await;
        }
    }

    /// Signals every process of the terminal's session (the shell, or
    /// `runuser`, is its leader, so the session id is its pid).
    fn signal_session(&self, signals: &[Signal], spare_nohup: bool) {
        let Some(sid) = self.pid else { return };
        for pid in procs::session_members(sid) {
            if spare_nohup && procs::ignores_sighup(pid) {
                continue;
            }
            for &signal in signals {
                let _ = kill(Pid::from_raw(pid), signal);
            }
        }
    }

    async fn wait_done(&self, timeout: Duration) -> bool {
        let mut done = self.done.clone();
        tokio::time::timeout(timeout, done.wait_for(|d| *d))
            .await
            .is_ok()
    }

    /// Hangs up the terminal as a closed connection would: SIGHUP (and
    /// SIGCONT, for stopped jobs) to every process of its session; after
    /// [`HANGUP_TIMEOUT`], SIGKILL to those still there, except processes that
    /// ignore SIGHUP (`nohup`), which asked to outlive the terminal.
    pub async fn terminate(&self) {
        if *self.done.borrow() {
            return;
        }
        self.signal_session(&[Signal::SIGHUP, Signal::SIGCONT], false);
        if !self.wait_done(HANGUP_TIMEOUT).await {
            tracing::warn!(terminal = %self.id, "the shell survived SIGHUP; sending SIGKILL");
            self.signal_session(&[Signal::SIGKILL], true);
            self.wait_done(Duration::from_secs(1)).await;
        }
    }
}

/// The command that starts `target`'s login shell (see [`crate::user`]).
fn shell_command(target: &LoginTarget, session_env: &SessionEnv) -> (String, pty_process::Command) {
    let inherited: Vec<(&str, String)> = INHERITED_ENV
        .iter()
        .filter_map(|&k| std::env::var(k).ok().map(|v| (k, v)))
        .collect();
    let home = if target.home.is_dir() {
        target.home.as_path()
    } else {
        Path::new("/")
    };
    let (program, cmd) = match target.mode {
        ShellMode::Runuser => {
            // runuser -l clears the environment except TERM and the whitelist,
            // and sets HOME, SHELL, USER, LOGNAME and PATH itself.
            let cmd = pty_process::Command::new(RUNUSER)
                .arg("-l")
                .arg("-w")
                .arg(format!("{},COLORTERM", INHERITED_ENV.join(",")))
                .arg(&target.name)
                .env_clear()
                .env("PATH", DEFAULT_PATH);
            (format!("{RUNUSER} -l {}", target.name), cmd)
        }
        ShellMode::Direct => {
            let cmd = pty_process::Command::new(&target.shell)
                .arg("-l")
                .env_clear()
                .env(
                    "PATH",
                    std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into()),
                )
                .env("HOME", &target.home)
                .env("USER", &target.name)
                .env("LOGNAME", &target.name)
                .env("SHELL", &target.shell);
            (format!("{} -l", target.shell.display()), cmd)
        }
    };
    let mut cmd = cmd
        .env("TERM", TERM)
        .env("COLORTERM", "truecolor")
        .envs(inherited)
        .current_dir(home);
    if target.mode == ShellMode::Direct {
        // What the profile script does for `runuser` shells, which start
        // with a clean environment; like it, the user's values win.
        cmd = cmd.envs(session_env);
    }
    for var in PRIVATE_ENV {
        cmd = cmd.env_remove(var);
    }
    (program, cmd)
}

/// Reads the PTY until the shell is gone, then records its exit.
async fn pump(
    term: Arc<Terminal>,
    mut reader: OwnedReadPty,
    mut child: Child,
    done: watch::Sender<bool>,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let status = loop {
        buf.reserve(READ_CHUNK);
        tokio::select! {
            r = reader.read_buf(&mut buf) => match r {
                Ok(n) if n > 0 => term.output(buf.split().freeze()).await,
                // EOF/EIO: every process closed the terminal.
                _ => break child.wait().await,
            },
            status = child.wait() => {
                // Output written just before the exit may still be in the PTY;
                // background jobs may keep writing, hence the deadline.
                let deadline = tokio::time::Instant::now() + DRAIN_AFTER_EXIT;
                loop {
                    buf.reserve(READ_CHUNK);
                    match tokio::time::timeout_at(deadline, reader.read_buf(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => term.output(buf.split().freeze()).await,
                        _ => break,
                    }
                }
                break status;
            }
        }
    };
    let code = match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(e) => {
            tracing::error!(terminal = %term.id, error = %e, "cannot wait for the shell");
            -1
        }
    };
    term.finish(code).await;
    let _ = done.send(true);
}

/// All terminals of the agent, by id.
#[derive(Clone)]
pub struct Terminals {
    inner: Arc<Inner>,
}

struct Inner {
    map: Mutex<HashMap<String, Arc<Terminal>>>,
    target: Result<LoginTarget, String>,
    session_env: SessionEnv,
    grace: Duration,
}

impl Terminals {
    /// `target` is the login user, or why there is none (terminals then fail);
    /// `session_env` is the session's user environment (see [`Terminal::spawn`]).
    pub fn new(
        target: Result<LoginTarget, String>,
        session_env: SessionEnv,
        grace: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                map: Mutex::new(HashMap::new()),
                target,
                session_env,
                grace,
            }),
        }
    }

    /// The terminal `id` when it exists, else a new shell of `size` (with a new
    /// id). The flag tells whether the terminal is new.
    pub fn open(
        &self,
        id: Option<&str>,
        size: Size,
    ) -> Result<(Arc<Terminal>, bool), TerminalError> {
        if let Some(t) = id.and_then(|id| lock(&self.inner.map).get(id).cloned()) {
            return Ok((t, false));
        }
        let target = self
            .inner
            .target
            .as_ref()
            .map_err(|e| TerminalError::NoLoginUser(e.clone()))?;
        let term = {
            let mut map = lock(&self.inner.map);
            if map.len() >= MAX_TERMINALS {
                return Err(TerminalError::TooMany);
            }
            let term = Terminal::spawn(new_id()?, target, &self.inner.session_env, size)?;
            map.insert(term.id.clone(), Arc::clone(&term));
            term
        };
        // Until a client attaches, the terminal counts as detached.
        self.schedule_expiry(&term, 0);
        Ok((term, true))
    }

    /// The client of `generation` went away: the shell stays for the grace period.
    pub fn detached(&self, term: &Arc<Terminal>, generation: u64) {
        if term.detach(generation) {
            tracing::info!(terminal = %term.id, grace = ?self.inner.grace, "terminal detached");
            self.schedule_expiry(term, generation);
        }
    }

    fn schedule_expiry(&self, term: &Arc<Terminal>, generation: u64) {
        let this = self.clone();
        let id = term.id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.inner.grace).await;
            this.expire(&id, generation).await;
        });
    }

    async fn expire(&self, id: &str, generation: u64) {
        let term = {
            let mut map = lock(&self.inner.map);
            match map.get(id) {
                Some(t) if t.detached_since(generation) => map.remove(id),
                _ => None,
            }
        };
        if let Some(term) = term {
            tracing::info!(terminal = %id, "terminal stayed detached past the grace period; hanging up");
            term.terminate().await;
        }
    }

    /// Forgets a terminal whose exit was delivered.
    pub fn remove(&self, id: &str) {
        lock(&self.inner.map).remove(id);
    }

    /// Hangs up a terminal right away (a client that never attached).
    pub async fn kill(&self, id: &str) {
        let term = lock(&self.inner.map).remove(id);
        if let Some(term) = term {
            term.terminate().await;
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.inner.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hangs up every terminal (agent shutdown).
    pub async fn shutdown(&self) {
        let all: Vec<Arc<Terminal>> = lock(&self.inner.map).drain().map(|(_, t)| t).collect();
        let mut set = tokio::task::JoinSet::new();
        for t in all {
            set.spawn(async move { t.terminate().await });
        }
        while set.join_next().await.is_some() {}
    }
}

/// A new random terminal id: 32 hex digits.
fn new_id() -> Result<String, TerminalError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw)
        .map_err(|e| TerminalError::Io(std::io::Error::other(e.to_string())))?;
    Ok(hex::encode(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrollback_keeps_the_tail() {
        let mut s = Scrollback::new(8);
        s.push(b"abc");
        assert_eq!(&s.replay()[..], b"abc");
        s.push(b"defgh");
        assert_eq!(&s.replay()[..], b"abcdefgh");
        s.push(b"ij");
        assert_eq!(&s.replay()[..], b"cdefghij");
        s.push(b"0123456789xyz");
        assert_eq!(&s.replay()[..], b"56789xyz");
    }

    #[test]
    fn truncated_replay_starts_at_a_line() {
        let mut s = Scrollback::new(10);
        s.push(b"ab\ncd\n");
        assert_eq!(&s.replay()[..], b"ab\ncd\n", "nothing dropped: all of it");
        s.push(b"efgh\n");
        // "a" was dropped; the rest of its line ("b\n") is not replayed.
        assert_eq!(&s.replay()[..], b"cd\nefgh\n");
    }

    #[test]
    fn size_defaults() {
        assert_eq!(
            Size::from_client(None, Some(0)),
            Size { cols: 80, rows: 24 }
        );
        assert_eq!(
            Size::from_client(Some(100), Some(30)),
            Size {
                cols: 100,
                rows: 30
            }
        );
    }
}

//! `burstflare-agent`: runs as the child of `tini` inside every session
//! container (DESIGN.md §5). At start it generates the SSH host keys if they
//! are missing, installs the login user's `authorized_keys`, writes the
//! session's user environment where login sessions read it ([`session_env`]),
//! starts and supervises `sshd -D -e`, and, when asked to, the browser editor
//! (code-server, [`editor`]); then it serves, on one port,
//! authenticated by the per-session secret in `x-burstflare-agent-token` (401
//! with the error envelope otherwise):
//!
//! * `GET /healthz` → `AgentHealth` (`ok` once sshd runs, accepts TCP on the
//!   SSH target and the host keys exist; `starting` before; the editor's
//!   state when there is one);
//! * `GET /activity` → `AgentActivity` (per channel: last input/output, bytes, open connections);
//! * `GET /ssh` — WebSocket ↔ TCP to sshd, binary frames ([`ssh_bridge`]);
//! * `GET /terminal` — WebSocket ↔ the login shell on a PTY, with resize and
//!   reattach ([`terminal_ws`] documents the protocol).
//!
//! SIGTERM or SIGINT stops accepting, hangs up the shells, stops sshd and the
//! editor, and exits 0.
//!
//! # Environment
//!
//! Set by the control plane (the wire contract, `burstflare_api::runtime`):
//! * `BURSTFLARE_AGENT_SECRET` — required; the agent exits with status 2 without it;
//! * `BURSTFLARE_AUTHORIZED_KEYS` — newline-separated OpenSSH public keys;
//! * `BURSTFLARE_SESSION_ID` — for logs; shells inherit it;
//! * `BURSTFLARE_SESSION_ENV` — the session's user environment, a JSON object
//!   of strings (bad entries or invalid JSON are logged and ignored). Written
//!   to `/etc/environment` (pam_env, for SSH sessions) and
//!   `/etc/profile.d/burstflare-session-env.sh` (login shells: terminals);
//!   shells the agent runs directly get it in their environment;
//! * `BURSTFLARE_AGENT_PORT` — listen port (default 7070);
//! * `BURSTFLARE_EDITOR_PORT` — run code-server on this port (templates with
//!   `editor = true`; `EDITOR_PORT`, 13337, is the platform's choice). Unset:
//!   no editor. Where the image has no code-server, the agent logs it once
//!   and reports it in `/healthz`.
//!
//! Overrides for tests and local runs (never set in session containers):
//! * `BURSTFLARE_AGENT_LISTEN_ADDR` — listen IP (default `0.0.0.0`);
//! * `BURSTFLARE_AGENT_SSHD` — the sshd binary, absolute (default `/usr/sbin/sshd`);
//! * `BURSTFLARE_AGENT_SSH_KEYGEN` — `ssh-keygen` (default `/usr/bin/ssh-keygen`);
//! * `BURSTFLARE_AGENT_SSH_TARGET` — what `/ssh` connects to (default `127.0.0.1:22`);
//! * `BURSTFLARE_AGENT_HOST_KEY_DIR` — host key directory (default `/etc/ssh`;
//!   elsewhere, sshd is given the keys with `-h`);
//! * `BURSTFLARE_AGENT_LOGIN_USER` — login user (default `dev`). As root the
//!   shell runs through `runuser -l <user>`; when the agent is not root it
//!   runs shells as itself, whatever this says;
//! * `BURSTFLARE_AGENT_SHELL` — the shell run directly as the agent's user
//!   (default: that user's shell, else `/bin/bash`);
//! * `BURSTFLARE_AGENT_AUTHORIZED_KEYS_FILE` — where the keys go (default
//!   `~<login user>/.ssh/authorized_keys`; a non-root agent without this
//!   override leaves `authorized_keys` alone rather than touch its own user's);
//! * `BURSTFLARE_AGENT_ENVIRONMENT_FILE`, `BURSTFLARE_AGENT_PROFILE_ENV_FILE`
//!   — where the session environment goes (defaults `/etc/environment` and
//!   `/etc/profile.d/burstflare-session-env.sh`; like `authorized_keys`, a
//!   non-root agent without these overrides writes neither);
//! * `BURSTFLARE_AGENT_TERMINAL_GRACE_SECS` — how long a detached shell lives (default 600);
//! * `BURSTFLARE_AGENT_EDITOR_BIN` — the code-server launcher, absolute
//!   (default `/usr/local/bin/code-server`);
//! * `RUST_LOG` — log filter (default `info`); logs go to stderr.

pub mod activity;
pub mod auth;
pub mod build;
pub mod config;
pub mod editor;
pub mod error;
pub mod keys;
pub mod layer;
pub mod procs;
pub mod server;
pub mod session_env;
pub mod snapshot;
pub mod snapshot_http;
pub mod ssh_bridge;
pub mod sshd;
pub mod terminal;
pub mod terminal_ws;
pub mod user;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::Secret;
use crate::config::Config;
use crate::editor::Editor;
use crate::server::AppState;
use crate::sshd::Supervisor;
use crate::terminal::Terminals;
use crate::user::LoginTarget;

/// How long in-flight HTTP requests get once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long open WebSockets get to close once sshd and the shells are gone.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the agent until `shutdown` completes, then stops everything it started.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        session = config.session_id.as_deref().unwrap_or("-"),
        "burstflare-agent starting"
    );
    let root = user::is_root();

    match keys::ensure_host_keys(&config.ssh_keygen, &config.host_key_dir) {
        Ok(generated) => {
            for key in generated {
                tracing::info!(key = %key.display(), "generated an SSH host key");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot generate the SSH host keys"),
    }

    let target = user::resolve(&config.login_user, config.shell.as_deref()).map_err(|e| {
        tracing::error!(error = %e, "no login user: terminals are unavailable");
        e.to_string()
    });
    install_authorized_keys(&config, target.as_ref().ok(), root);
    install_session_env(&config, root);
    if root && let Err(e) = sshd::ensure_privsep_dir() {
        tracing::error!(dir = sshd::PRIVSEP_DIR, error = %e, "cannot create sshd's privilege separation directory");
    }

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(config.listen);

    let (stop_tx, mut stop_rx) = watch::channel(false);
    let supervisor = Supervisor::spawn(config.sshd.clone(), sshd::sshd_args(&config.host_key_dir));
    // Restored files belong to the login user; a restored home gets the
    // session's authorized_keys back.
    let owner = match (&target, root) {
        (Ok(t), true) => (t.uid, t.gid),
        _ => (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        ),
    };
    let reinstall = {
        let config = config.clone();
        let target = target.as_ref().ok().cloned();
        Box::new(move || install_authorized_keys(&config, target.as_ref(), root))
    };
    let mut editor = config.editor.clone().map(|editor| {
        Editor::spawn(
            editor,
            target.as_ref().ok().cloned(),
            config.session_env.clone(),
        )
    });
    let terminals = Terminals::new(target, config.session_env.clone(), config.terminal_grace);
    let mut state = AppState::new(
        terminals.clone(),
        supervisor.status(),
        config.ssh_target,
        config.host_key_dir.clone(),
        stop_rx.clone(),
    )
    .with_snapshots(owner, reinstall);
    if let Some(editor) = &editor {
        state = state.with_editor(editor.status());
    }
    let activity = state.activity.clone();
    let app = server::router(state, Secret::new(&config.secret));

    let mut server = tokio::spawn(async move {
        // Small SSH packets (key exchange, keystrokes) must not wait for
        // delayed ACKs: no Nagle on the connections the control plane opens.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await
    });
    tracing::info!("listening on {addr}");

    let server_running = tokio::select! {
        () = shutdown => {
            tracing::info!("shutting down");
            true
        }
        res = &mut server => {
            tracing::error!(result = ?res, "the HTTP server stopped; shutting down");
            false
        }
    };
    // SIGTERM from the platform (not after the control plane released us):
    // stop sshd, the editor and the shells, then keep serving until the
    // control plane has taken its final snapshot, or the drain time is up.
    let lifecycle = activity.lifecycle.clone();
    let mut supervisor = Some(supervisor);
    if server_running && !config.drain.is_zero() && !lifecycle.released() {
        lifecycle.start_draining();
        tracing::info!(
            secs = config.drain.as_secs(),
            "draining: sshd, the editor and the shells stop; waiting for the final snapshot"
        );
        if let Some(s) = supervisor.take() {
            tokio::join!(terminals.shutdown(), s.stop(), stop_editor(editor.take()));
        }
        match tokio::time::timeout(config.drain, lifecycle.until_released()).await {
            Ok(()) => tracing::info!("released after the final snapshot"),
            Err(_) => tracing::warn!("no final snapshot within the drain time; exiting"),
        }
    }
    let _ = stop_tx.send(true);
    if server_running
        && tokio::time::timeout(DRAIN_TIMEOUT, &mut server)
            .await
            .is_err()
    {
        server.abort();
    }
    if let Some(s) = supervisor {
        tokio::join!(terminals.shutdown(), s.stop(), stop_editor(editor.take()));
    }
    // Let the WebSockets deliver their last words (exit codes, Close frames).
    let deadline = tokio::time::Instant::now() + GOODBYE_TIMEOUT;
    let open = || {
        let a = activity.snapshot();
        a.ssh.open + a.terminal.open
    };
    while open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn stop_editor(editor: Option<Editor>) {
    if let Some(editor) = editor {
        editor.stop().await;
    }
}

/// Installs the configured keys (see the crate docs for where). Failures are
/// logged: the agent keeps serving, and `/ssh` logins then fail visibly.
fn install_authorized_keys(config: &Config, target: Option<&LoginTarget>, root: bool) {
    let path = match (&config.authorized_keys_file, target) {
        (Some(path), _) => path.clone(),
        (None, Some(t)) if root => t.home.join(".ssh").join("authorized_keys"),
        (None, _) => {
            tracing::info!("not installing authorized_keys (not root, or no login user)");
            return;
        }
    };
    let owner = target.filter(|_| root).map(|t| (t.uid, t.gid));
    match keys::install_authorized_keys(&path, &config.authorized_keys, owner) {
        Ok(()) => tracing::info!(
            path = %path.display(),
            keys = config.authorized_keys.len(),
            "installed authorized_keys"
        ),
        Err(e) => tracing::error!(error = %e, "cannot install authorized_keys"),
    }
}

/// Writes the session environment to the pam_env file and the profile script
/// (see [`session_env`]). Without an override, only a root agent writes (the
/// files are the system's). Failures are logged: the agent keeps serving.
fn install_session_env(config: &Config, root: bool) {
    let vars = &config.session_env;
    let target = |file: &Option<std::path::PathBuf>, default: &str| match file {
        Some(path) => Some(path.clone()),
        None if root => Some(default.into()),
        None => None,
    };
    match target(
        &config.environment_file,
        session_env::DEFAULT_ENVIRONMENT_FILE,
    ) {
        Some(path) => {
            let (content, skipped) = session_env::render_environment(vars);
            for name in &skipped {
                tracing::warn!(
                    variable = name,
                    path = %path.display(),
                    "pam_env cannot represent the value (it has \", \\, #, a newline, or is too long); \
                     left out of this file, so only login shells get it"
                );
            }
            match session_env::write_file(&path, &content) {
                Ok(()) => tracing::info!(
                    path = %path.display(),
                    variables = vars.len() - skipped.len(),
                    "wrote the session environment"
                ),
                Err(e) => tracing::error!(error = %e, "cannot write the session environment"),
            }
        }
        None => tracing::info!("not writing the pam_env file (not root)"),
    }
    match target(
        &config.profile_env_file,
        session_env::DEFAULT_PROFILE_ENV_FILE,
    ) {
        Some(path) => match session_env::write_file(&path, &session_env::render_profile(vars)) {
            Ok(()) => tracing::info!(
                path = %path.display(),
                variables = vars.len(),
                "wrote the session environment"
            ),
            Err(e) => tracing::error!(error = %e, "cannot write the session environment"),
        },
        None => tracing::info!("not writing the profile script (not root)"),
    }
}

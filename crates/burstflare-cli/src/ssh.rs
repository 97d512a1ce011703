//! SSH integration: the stdio proxy that `ssh` runs as its `ProxyCommand`,
//! the managed block in `~/.ssh/config`, and the BurstFlare-managed
//! `known_hosts` file.
//!
//! Host keys are pinned, never trusted on first use: each container generates
//! its own host keys at first boot, the control plane reads them from the agent
//! when the session starts, and the CLI writes them — fetched over the
//! authenticated API — into `<config dir>/known_hosts` under the alias
//! `bf-<session id>` before every connection. `ssh` runs with
//! `StrictHostKeyChecking yes`, so a key that did not come from the control
//! plane is refused, and users never learn to click through key warnings.
//!
//! The `~/.ssh/config` block sits between [`BLOCK_START`] and [`BLOCK_END`];
//! rewriting it replaces only those lines, and writing the same content twice
//! leaves the file untouched.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use burstflare_api::sessions::Session;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::error::CliError;

pub const BLOCK_START: &str =
    "# ------------ START BURSTFLARE (managed by `burstflare config-ssh`) ------------";
pub const BLOCK_END: &str = "# ------------ END BURSTFLARE ------------";

/// The `Host` name of a session in `~/.ssh/config`.
pub fn host_alias(session_name: &str) -> String {
    format!("bf-{session_name}")
}

/// The `HostKeyAlias` a session's keys are pinned under (ids never repeat).
pub fn key_alias(session: &Session) -> String {
    format!("bf-{}", session.id)
}

/// Replaces the lines pinned for `alias` with `keys`; other lines are kept as they are.
pub fn update_known_hosts(text: &str, alias: &str, keys: &[String]) -> String {
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| l.split_whitespace().next() != Some(alias))
        .map(str::to_owned)
        .collect();
    for key in keys {
        let mut parts = key.split_whitespace();
        if let (Some(kind), Some(blob)) = (parts.next(), parts.next()) {
            out.push(format!("{alias} {kind} {blob}"));
        }
    }
    let mut joined = out.join("\n");
    if !joined.is_empty() {
        joined.push('\n');
    }
    joined
}

/// Pins `session`'s current host keys in `known_hosts` (atomic rewrite, 0600).
pub fn pin_host_keys(known_hosts: &Path, session: &Session) -> Result<(), CliError> {
    let old = match fs::read_to_string(known_hosts) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(
                CliError::user(format!("cannot read {}", known_hosts.display()))
                    .cause(e.to_string()),
            );
        }
    };
    let new = update_known_hosts(&old, &key_alias(session), &session.ssh_host_keys);
    if new != old {
        write_file(known_hosts, &new, 0o600)?;
    }
    Ok(())
}

/// One `Host` entry of the managed block.
pub struct HostEntry {
    pub alias: String,
    pub key_alias: String,
    pub proxy_command: String,
}

/// The managed block for `entries`.
pub fn render_block(api_url: &str, known_hosts: &Path, entries: &[HostEntry]) -> String {
    let mut out = format!(
        "{BLOCK_START}\n# Sessions of {api_url}. Edits inside this block are overwritten.\n"
    );
    for e in entries {
        out.push_str(&format!(
            "Host {alias}\n  HostName {alias}\n  User {user}\n  ProxyCommand {proxy}\n  HostKeyAlias {key}\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n  CheckHostIP no\n",
            alias = e.alias,
            user = burstflare_api::runtime::LOGIN_USER,
            proxy = e.proxy_command.replace('%', "%%"),
            key = e.key_alias,
            known = quote(&known_hosts.to_string_lossy()),
        ));
    }
    out.push_str(BLOCK_END);
    out.push('\n');
    out
}

/// Puts `block` into `config` in place of an existing managed block, or at the end.
pub fn splice_block(config: &str, block: &str) -> Result<String, String> {
    let lines: Vec<&str> = config.lines().collect();
    let start = lines.iter().position(|l| l.trim_end() == BLOCK_START);
    let end = lines.iter().position(|l| l.trim_end() == BLOCK_END);
    let mut out = String::new();
    match (start, end) {
        (Some(s), Some(e)) if s < e => {
            for l in &lines[..s] {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str(block);
            for l in &lines[e + 1..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        (None, None) => {
            out.push_str(config);
            if !config.is_empty() && !config.ends_with('\n') {
                out.push('\n');
            }
            if !config.trim().is_empty() {
                out.push('\n');
            }
            out.push_str(block);
        }
        _ => {
            return Err(
                "the BurstFlare block in the SSH config is damaged (start and end markers do not match)"
                    .into(),
            );
        }
    }
    Ok(out)
}

/// Quotes a path or command word for ssh_config if it has spaces.
pub fn quote(s: &str) -> String {
    if s.contains(char::is_whitespace) {
        format!("\"{s}\"")
    } else {
        s.to_owned()
    }
}

/// Writes `text` atomically with `mode`, creating the directory (0700) if needed.
pub fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), CliError> {
    let fail = |e: std::io::Error| {
        CliError::user(format!("cannot write {}", path.display())).cause(e.to_string())
    };
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        fs::create_dir_all(dir).map_err(fail)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(fail)?;
    }
    let tmp: PathBuf = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    // Keep an existing file's permissions (the user may have tightened them).
    if let Ok(meta) = fs::metadata(path) {
        fs::set_permissions(&tmp, meta.permissions()).map_err(fail)?;
    }
    fs::rename(&tmp, path).map_err(fail)
}

/// Size of one read from stdin.
const READ_CHUNK: usize = 64 * 1024;
/// Largest WebSocket frame the proxy sends.
const MAX_FRAME: usize = 512 * 1024;

/// Runs the stdio proxy: stdin → WebSocket binary frames → the session's
/// sshd, and back to stdout, until either side closes.
pub async fn stdio_proxy(ws_url: &str, token: &str, session_label: &str) -> Result<(), CliError> {
    let mut request = ws_url.into_client_request().map_err(|e| {
        CliError::user(format!("invalid SSH bridge URL {ws_url}")).cause(e.to_string())
    })?;
    let auth = format!("Bearer {token}")
        .parse()
        .map_err(|_| CliError::user("the saved token is not a valid header value"))?;
    request.headers_mut().insert("authorization", auth);
    // Nagle off: interactive SSH sends many small packets.
    let (ws, _) = match tokio_tungstenite::connect_async_with_config(request, None, true).await {
        Ok(ok) => ok,
        Err(tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp.body().clone().unwrap_or_default();
            return Err(
                match serde_json::from_slice::<burstflare_api::ErrorEnvelope>(&body) {
                    Ok(env) => CliError::user(format!("cannot connect to {session_label}"))
                        .cause(format!("{} (HTTP {status})", env.error.message)),
                    Err(_) => CliError::user(format!("cannot connect to {session_label}"))
                        .cause(format!("the SSH bridge answered HTTP {status}")),
                },
            );
        }
        Err(e) => {
            return Err(
                CliError::user(format!("cannot connect to {session_label}")).cause(e.to_string())
            );
        }
    };
    let (mut sink, mut stream) = ws.split();
    // stdin is read on a thread of its own; chunks that are already waiting
    // when a frame is sent travel in that frame (each frame costs a hop through
    // every WebSocket relay on the way, whatever its size).
    let (chunks_tx, mut chunks) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(64);
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut buf = vec![0u8; READ_CHUNK];
            let result = match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    Ok(buf)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = result.is_err();
            if chunks_tx.blocking_send(result).is_err() || failed {
                return;
            }
        }
    });
    let upstream = async {
        while let Some(chunk) = chunks.recv().await {
            let mut frame = chunk?;
            while frame.len() < MAX_FRAME {
                match chunks.try_recv() {
                    Ok(more) => frame.extend_from_slice(&more?),
                    Err(_) => break,
                }
            }
            sink.send(Message::binary(frame))
                .await
                .map_err(std::io::Error::other)?;
        }
        let _ = sink.send(Message::Close(None)).await;
        Ok::<(), std::io::Error>(())
    };
    // stdout is written by a thread of its own, so a frame is one write
    // syscall without a hop through the runtime's blocking pool.
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        while let Some(bytes) = out_rx.blocking_recv() {
            stdout.write_all(&bytes)?;
            stdout.flush()?;
        }
        Ok(())
    });
    let downstream = async {
        let broken = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdout closed");
        while let Some(msg) = stream.next().await {
            match msg.map_err(std::io::Error::other)? {
                Message::Binary(b) => out_tx.send(b.into()).await.map_err(|_| broken())?,
                Message::Text(t) => out_tx
                    .send(t.as_bytes().to_vec())
                    .await
                    .map_err(|_| broken())?,
                Message::Close(_) => break,
                _ => {}
            }
        }
        drop(out_tx);
        // Everything received is on stdout before the proxy exits.
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(std::io::Error::other)?
            .map_err(|_| std::io::Error::other("the stdout writer panicked"))?
    };
    // Whichever side finishes first ends the connection (ssh closes stdin
    // when it is done; sshd closes the stream when the session ends).
    let result = tokio::select! {
        r = upstream => r,
        r = downstream => r,
    };
    result.map_err(|e| {
        CliError::user(format!("the connection to {session_label} broke")).cause(e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_replace_only_the_alias() {
        let old = "other ssh-ed25519 AAAAother\nbf-ses_1 ssh-ed25519 AAAAold\n";
        let new = update_known_hosts(old, "bf-ses_1", &["ssh-ed25519 AAAAnew root@c".into()]);
        assert_eq!(
            new,
            "other ssh-ed25519 AAAAother\nbf-ses_1 ssh-ed25519 AAAAnew\n"
        );
        assert_eq!(
            update_known_hosts(&new, "bf-ses_1", &[]),
            "other ssh-ed25519 AAAAother\n"
        );
    }

    #[test]
    fn block_is_spliced_idempotently_and_never_touches_other_lines() {
        let entries = [HostEntry {
            alias: "bf-s1".into(),
            key_alias: "bf-ses_1".into(),
            proxy_command: "/usr/bin/burstflare ssh --stdio ses_1".into(),
        }];
        let block = render_block("http://x", Path::new("/k h/known_hosts"), &entries);
        assert!(block.contains("UserKnownHostsFile \"/k h/known_hosts\""));
        let user = "Host mine\n  User me\n";
        let once = splice_block(user, &block).unwrap();
        assert!(once.starts_with(user));
        let twice = splice_block(&once, &block).unwrap();
        assert_eq!(once, twice);
        let after = format!("{once}Host later\n  User x\n");
        let empty = render_block("http://x", Path::new("/k"), &[]);
        let replaced = splice_block(&after, &empty).unwrap();
        assert!(replaced.starts_with(user));
        assert!(replaced.ends_with("Host later\n  User x\n"));
        assert!(!replaced.contains("bf-s1"));
        let broken = format!("{BLOCK_START}\nHost x\n");
        assert!(splice_block(&broken, &block).is_err());
    }
}

//! End-to-end tests of the real `burstflare-agent` binary, run as the current
//! user with the test overrides: a fake sshd (a shell script that records its
//! arguments and sleeps), a real TCP echo server standing in for sshd's port,
//! the real `ssh-keygen`, and real shells on real PTYs.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a broken precondition aborts the test"
)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use burstflare_api::runtime::{
    AGENT_TOKEN_HEADER, AgentActivity, AgentHealth, AgentStatus, EditorHealth, LAYER_SHA256_HEADER,
    TerminalControl,
};
use futures_util::{SinkExt as _, StreamExt as _};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, geteuid};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const DEADLINE: Duration = Duration::from_secs(20);
const KEYS: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyOne one@test\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyTwo two@test\n";
/// `BURSTFLARE_SESSION_ENV`: good entries, one pam_env cannot hold (`"`), and
/// entries the agent drops (a bad name, a reserved name, a number).
const SESSION_ENV: &str = r#"{"FOO":"bar","QUOTED":"it's a \"quoted-value\"","SPACES":"  two  words  ",
    "LITERAL":"$HOME","bad-name":"x","BURSTFLARE_AGENT_SHELL":"/bin/false","NUM":7}"#;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

// ---------------------------------------------------------------- harness

/// The editor the agent is asked to run (`BURSTFLARE_EDITOR_PORT`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum FakeEditor {
    None,
    /// A fake code-server that records what it was started with (one line
    /// in `editor.log`, see [`Agent::editor_runs`]) and sleeps.
    Script,
    /// A binary path where nothing is (the plain runtime image).
    Missing,
}

/// The port the agent is told the editor uses (nothing binds it).
const EDITOR_PORT: u16 = 13337;

struct AgentBuilder {
    ssh_target: SocketAddr,
    grace_secs: u64,
    drain_secs: u64,
    sshd_script: Option<String>,
    editor: FakeEditor,
}

impl AgentBuilder {
    fn new(ssh_target: SocketAddr) -> Self {
        Self {
            ssh_target,
            grace_secs: 600,
            drain_secs: 0,
            sshd_script: None,
            editor: FakeEditor::None,
        }
    }

    fn editor(mut self, editor: FakeEditor) -> Self {
        self.editor = editor;
        self
    }

    fn drain_secs(mut self, secs: u64) -> Self {
        self.drain_secs = secs;
        self
    }

    fn grace_secs(mut self, secs: u64) -> Self {
        self.grace_secs = secs;
        self
    }

    fn start(self) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let sshd_log = dir.path().join("sshd.log");
        let script = dir.path().join("fake-sshd");
        let body = self.sshd_script.unwrap_or_else(|| {
            format!(
                "#!/bin/sh\necho \"$$ $*\" >> '{}'\nexec sleep 300\n",
                sshd_log.display()
            )
        });
        std::fs::write(&script, body).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let secret = format!("secret-{}-{:?}", std::process::id(), Instant::now());
        let me = User::from_uid(geteuid()).unwrap().unwrap().name;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_burstflare-agent"));
        for (k, _) in std::env::vars() {
            if k.starts_with("BURSTFLARE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("BURSTFLARE_AGENT_SECRET", &secret)
            .env("BURSTFLARE_AUTHORIZED_KEYS", KEYS)
            .env("BURSTFLARE_SESSION_ID", "ses_test")
            .env("BURSTFLARE_AGENT_PORT", "0")
            .env("BURSTFLARE_AGENT_LISTEN_ADDR", "127.0.0.1")
            .env("BURSTFLARE_AGENT_SSHD", &script)
            .env("BURSTFLARE_AGENT_SSH_TARGET", self.ssh_target.to_string())
            .env("BURSTFLARE_AGENT_LOGIN_USER", me)
            .env("BURSTFLARE_AGENT_SHELL", "/bin/bash")
            .env("BURSTFLARE_AGENT_HOST_KEY_DIR", dir.path().join("hostkeys"))
            .env(
                "BURSTFLARE_AGENT_AUTHORIZED_KEYS_FILE",
                dir.path().join("home/.ssh/authorized_keys"),
            )
            .env("BURSTFLARE_SESSION_ENV", SESSION_ENV)
            .env(
                "BURSTFLARE_AGENT_ENVIRONMENT_FILE",
                dir.path().join("environment"),
            )
            .env(
                "BURSTFLARE_AGENT_PROFILE_ENV_FILE",
                dir.path().join("session-env.sh"),
            )
            .env(
                "BURSTFLARE_AGENT_TERMINAL_GRACE_SECS",
                self.grace_secs.to_string(),
            )
            .env("BURSTFLARE_DRAIN_SECS", self.drain_secs.to_string())
            .env("RUST_LOG", "info,burstflare_agent=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let editor_bin = dir.path().join("fake-code-server");
        match self.editor {
            FakeEditor::None => {}
            FakeEditor::Script => {
                std::fs::write(
                    &editor_bin,
                    format!(
                        "#!/bin/sh\n\
                         echo \"$$|$*|$HOME|$PWD|$FOO|${{BURSTFLARE_AGENT_SECRET-unset}}|\
                         ${{BURSTFLARE_SESSION_ENV-unset}}|${{BURSTFLARE_SESSION_ID-unset}}\" >> '{}'\n\
                         exec sleep 300\n",
                        dir.path().join("editor.log").display()
                    ),
                )
                .unwrap();
                std::fs::set_permissions(&editor_bin, std::fs::Permissions::from_mode(0o755))
                    .unwrap();
            }
            FakeEditor::Missing => {}
        }
        if self.editor != FakeEditor::None {
            cmd.env("BURSTFLARE_EDITOR_PORT", EDITOR_PORT.to_string())
                .env("BURSTFLARE_AGENT_EDITOR_BIN", &editor_bin);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.trim().parse::<SocketAddr>().unwrap());
                }
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let addr = match rx.recv_timeout(DEADLINE) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("the agent did not start:\n{}", logs.lock().unwrap());
            }
        };
        Agent {
            child,
            addr,
            secret,
            dir,
            logs,
        }
    }
}

struct Agent {
    child: Child,
    addr: SocketAddr,
    secret: String,
    dir: tempfile::TempDir,
    logs: Arc<Mutex<String>>,
}

impl Agent {
    fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    fn sshd_runs(&self) -> Vec<(i32, String)> {
        std::fs::read_to_string(self.dir.path().join("sshd.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let (pid, args) = l.split_once(' ').unwrap();
                (pid.parse().unwrap(), args.to_owned())
            })
            .collect()
    }

    /// Waits until the fake sshd was started `n` times (it logs itself when it runs).
    async fn wait_sshd_runs(&self, n: usize) -> Vec<(i32, String)> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let runs = self.sshd_runs();
            if runs.len() >= n {
                return runs;
            }
            assert!(Instant::now() < deadline, "sshd ran {} times", runs.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the fake editor recorded, one entry per start: its pid, then its
    /// arguments, HOME, working directory, `$FOO` (from the session
    /// environment), and the agent's secret, the session environment's JSON
    /// and the session id (`unset` when absent).
    async fn editor_runs(&self, n: usize) -> Vec<Vec<String>> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let runs: Vec<Vec<String>> =
                std::fs::read_to_string(self.dir.path().join("editor.log"))
                    .unwrap_or_default()
                    .lines()
                    .map(|l| l.split('|').map(str::to_owned).collect())
                    .collect();
            if runs.len() >= n {
                return runs;
            }
            assert!(
                Instant::now() < deadline,
                "the editor ran {} times:\n{}",
                runs.len(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap())
    }

    /// Sends SIGTERM and waits for the exit.
    fn terminate(&mut self, within: Duration) -> ExitStatus {
        kill(self.pid(), Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not exit within {within:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        http(self.addr, "GET", path, token).await
    }

    async fn get_ok<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let (status, body) = self.get(path, Some(&self.secret)).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).unwrap()
    }

    async fn ws(&self, path: &str) -> Ws {
        self.try_ws(path, Some(&self.secret)).await.unwrap()
    }

    async fn try_ws(&self, path: &str, token: Option<&str>) -> Result<Ws, tungstenite::Error> {
        let mut req = format!("ws://{}{path}", self.addr)
            .into_client_request()
            .unwrap();
        if let Some(token) = token {
            req.headers_mut()
                .insert(AGENT_TOKEN_HEADER, token.parse().unwrap());
        }
        tokio_tungstenite::connect_async(req)
            .await
            .map(|(ws, _)| ws)
    }

    /// Polls `/activity` until `check` holds.
    async fn activity_until(&self, check: impl Fn(&AgentActivity) -> bool) -> AgentActivity {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let a: AgentActivity = self.get_ok("/activity").await;
            if check(&a) {
                return a;
            }
            assert!(Instant::now() < deadline, "activity never matched: {a:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn health_until(&self, check: impl Fn(&AgentHealth) -> bool) -> AgentHealth {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let h: AgentHealth = self.get_ok("/healthz").await;
            if check(&h) {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "health never matched: {h:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = kill(self.pid(), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("agent log:\n{}", self.logs());
        }
    }
}

/// A minimal HTTP/1.1 client: one request, `Connection: close`, JSON body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    http_with(addr, method, path, token, &[], &[]).await
}

/// [`http`] with extra headers and a request body.
async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in token.map(|t| (AGENT_TOKEN_HEADER, t)).iter().chain(headers) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
    };
    (status, body)
}

/// A stand-in for sshd's port: sends a banner, then echoes; a connection whose
/// first bytes are `QUIT` gets `bye\n` and is closed by the server. Each
/// finished connection reports the bytes it received.
async fn echo_server() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                conn.write_all(b"SSH-2.0-echo\r\n").await.unwrap();
                let mut buf = vec![0u8; 32 * 1024];
                let mut total = 0u64;
                loop {
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    if total == 0 && buf[..n].starts_with(b"QUIT") {
                        conn.write_all(b"bye\n").await.unwrap();
                        total += n as u64;
                        break;
                    }
                    total += n as u64;
                    if conn.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = conn.shutdown().await;
                let _ = tx.send(total);
            });
        }
    });
    (addr, rx)
}

/// An address nothing listens on.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn process_gone(pid: i32) -> bool {
    // A zombie has exited; only its parent has not collected it yet.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_gone(pid: i32) {
    let deadline = Instant::now() + DEADLINE;
    while !process_gone(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------- terminal client

/// A `/terminal` client that accumulates output and control messages.
struct Term {
    ws: Ws,
    out: Vec<u8>,
    /// Output before this offset was matched already.
    cursor: usize,
    controls: Vec<TerminalControl>,
    close: Option<Option<CloseCode>>,
}

impl Term {
    async fn open(agent: &Agent, query: &str) -> (Self, String) {
        let ws = agent.ws(&format!("/terminal{query}")).await;
        let mut t = Self {
            ws,
            out: Vec::new(),
            cursor: 0,
            controls: Vec::new(),
            close: None,
        };
        t.next_frame().await;
        let id = match t.controls.first() {
            Some(TerminalControl::Ready { terminal_id }) => terminal_id.clone(),
            other => panic!("first message is not ready: {other:?}"),
        };
        assert!(t.out.is_empty(), "output before ready");
        (t, id)
    }

    async fn next_frame(&mut self) -> bool {
        let msg = tokio::time::timeout(DEADLINE, self.ws.next())
            .await
            .unwrap_or_else(|_| {
                let tail = &self.out[self.out.len().saturating_sub(4096)..];
                panic!(
                    "no frame within {DEADLINE:?}; output ends with:\n{}",
                    String::from_utf8_lossy(tail)
                )
            });
        match msg {
            Some(Ok(Message::Binary(b))) => self.out.extend_from_slice(&b),
            Some(Ok(Message::Text(t))) => self.controls.push(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(frame))) => self.close = Some(frame.map(|f| f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return false,
        }
        true
    }

    async fn send(&mut self, input: &str) {
        self.ws
            .send(Message::Binary(input.as_bytes().to_vec().into()))
            .await
            .unwrap();
    }

    async fn control(&mut self, msg: &TerminalControl) {
        self.ws
            .send(Message::Text(serde_json::to_string(msg).unwrap().into()))
            .await
            .unwrap();
    }

    /// Waits for `needle` in output not matched before; returns the text up to it.
    async fn expect(&mut self, needle: &str) -> String {
        let needle = needle.as_bytes();
        // Output before `searched` holds no match (except one straddling it).
        let mut searched = self.cursor;
        loop {
            let from = searched.saturating_sub(needle.len()).max(self.cursor);
            if let Some(at) = self.out[from..]
                .windows(needle.len())
                .position(|w| w == needle)
            {
                let end = from + at + needle.len();
                let text = String::from_utf8_lossy(&self.out[self.cursor..end]).into_owned();
                self.cursor = end;
                return text;
            }
            searched = self.out.len();
            assert!(
                self.next_frame().await,
                "connection ended before {:?}; output:\n{}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&self.out[self.cursor..])
            );
        }
    }

    /// Waits for `<prefix><digits>-end` in the output.
    async fn expect_pid(&mut self, prefix: &str) -> i32 {
        loop {
            if let Some(pid) = find_pid(&String::from_utf8_lossy(&self.out), prefix) {
                return pid;
            }
            assert!(self.next_frame().await, "connection ended before {prefix}");
        }
    }

    /// Reads until the agent closes; returns the close code.
    async fn until_closed(&mut self) -> Option<CloseCode> {
        while self.close.is_none() {
            if !self.next_frame().await {
                break;
            }
        }
        self.close.flatten()
    }
}

/// `<prefix><digits>-end` in `text`.
fn find_pid(text: &str, prefix: &str) -> Option<i32> {
    text.match_indices(prefix).find_map(|(at, _)| {
        let rest = &text[at + prefix.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        (!digits.is_empty() && rest[digits.len()..].starts_with("-end"))
            .then(|| digits.parse().unwrap())
    })
}

/// `pid-<digits>-end` in `text`.
fn parse_pid(text: &str) -> i32 {
    find_pid(text, "pid-").unwrap_or_else(|| panic!("no pid in {text:?}"))
}

// ---------------------------------------------------------------- tests

#[test]
fn refuses_to_start_without_the_secret() {
    let out = Command::new(env!("CARGO_BIN_EXE_burstflare-agent"))
        .env_remove("BURSTFLARE_AGENT_SECRET")
        .env("BURSTFLARE_AGENT_PORT", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: BURSTFLARE_AGENT_SECRET is not set"),
        "{stderr}"
    );
}

#[tokio::test]
async fn every_request_needs_the_token() {
    let (target, _conns) = echo_server().await;
    let agent = AgentBuilder::new(target).start();

    let (status, body) = agent.get("/healthz", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthenticated");
    let (status, body) = agent.get("/activity", Some("wrong")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_token");
    let (status, body) = agent.get("/nope", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &"unauthenticated".into())
    );

    for path in ["/ssh", "/terminal"] {
        for token in [None, Some("wrong")] {
            match agent.try_ws(path, token).await {
                Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
                other => panic!("{path} with {token:?}: {:?}", other.map(|_| ())),
            }
        }
    }

    let (status, body) = agent.get("/nope", Some(&agent.secret)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &"route_not_found".into())
    );
    let (status, body) = http(agent.addr, "POST", "/healthz", Some(&agent.secret)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (405, &"method_not_allowed".into())
    );
    let (status, body) = agent.get("/ssh", Some(&agent.secret)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (426, &"upgrade_required".into())
    );
}

#[tokio::test]
async fn a_layer_with_the_wrong_digest_is_not_applied() {
    let (target, _conns) = echo_server().await;
    let agent = AgentBuilder::new(target).start();
    // Not a layer at all: the digest check comes before anything is read.
    let body = b"not really a layer";
    let (status, resp) = http_with(
        agent.addr,
        "POST",
        "/layer/apply",
        Some(&agent.secret),
        &[(LAYER_SHA256_HEADER, &"0".repeat(64))],
        body,
    )
    .await;
    assert_eq!(status, 400, "{resp}");
    let message = resp["error"]["message"].as_str().unwrap();
    assert!(message.contains("nothing was applied"), "{message}");
    use sha2::Digest;
    assert!(
        message.contains(&hex::encode(sha2::Sha256::digest(body))),
        "{message}"
    );
}

#[tokio::test]
async fn boots_keys_and_reports_health() {
    let (target, _conns) = echo_server().await;
    let agent = AgentBuilder::new(target).start();

    let health = agent.health_until(|h| h.status == AgentStatus::Ok).await;
    assert!(health.sshd_running);
    assert_eq!(health.sshd_restarts, 0);
    assert_eq!(health.editor, None, "no editor was asked for");
    assert_eq!(health.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(health.host_keys.len(), 1, "{health:?}");
    assert!(
        health.host_keys[0].starts_with("ssh-ed25519 AAAA"),
        "{health:?}"
    );
    let host_key = agent.dir.path().join("hostkeys/ssh_host_ed25519_key");
    assert_eq!(
        std::fs::read_to_string(host_key.with_extension("pub"))
            .unwrap()
            .trim(),
        health.host_keys[0]
    );

    // sshd runs in the foreground, logging to stderr, with the generated key.
    let runs = agent.wait_sshd_runs(1).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].1, format!("-D -e -h {}", host_key.display()));

    // authorized_keys: exactly the given keys, strict modes.
    let ak = agent.dir.path().join("home/.ssh/authorized_keys");
    assert_eq!(
        std::fs::read_to_string(&ak).unwrap(),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyOne one@test\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyTwo two@test\n"
    );
    assert_eq!(std::fs::metadata(&ak).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(ak.parent().unwrap()).unwrap().mode() & 0o777,
        0o700
    );
    assert!(
        !agent.logs().contains(&agent.secret),
        "the secret is logged"
    );
}

/// The lines of `path` that are not comments.
fn content_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn session_env_reaches_the_files_and_the_terminal() {
    let (target, _conns) = echo_server().await;
    let agent = AgentBuilder::new(target).start();

    // pam_env's file: sorted, and without the value it cannot represent.
    let environment = agent.dir.path().join("environment");
    assert_eq!(
        content_lines(&environment),
        [
            "FOO=\"bar\"",
            "LITERAL=\"$HOME\"",
            "SPACES=\"  two  words  \""
        ]
    );
    // The login shells' script: every value, single-quoted.
    let profile = agent.dir.path().join("session-env.sh");
    assert_eq!(
        content_lines(&profile),
        [
            "export FOO='bar'",
            "export LITERAL='$HOME'",
            r#"export QUOTED='it'\''s a "quoted-value"'"#,
            "export SPACES='  two  words  '",
        ]
    );
    for f in [&environment, &profile] {
        assert_eq!(std::fs::metadata(f).unwrap().mode() & 0o777, 0o644);
    }
    let logs = agent.logs();
    for dropped in ["bad-name", "BURSTFLARE_AGENT_SHELL", "NUM", "QUOTED"] {
        assert!(
            logs.contains(dropped),
            "no warning about {dropped}:\n{logs}"
        );
    }
    assert!(!logs.contains("quoted-value"), "a value is logged:\n{logs}");

    // A shell the agent runs itself gets the variables, literally, and not
    // the JSON they came in.
    let (mut t, _) = Term::open(&agent, "").await;
    t.send(concat!(
        "printf 'env-[%s]-[%s]-[%s]-[%s]-[%s]\\n' \"$FOO\" \"$QUOTED\" \"$SPACES\" \"$LITERAL\" ",
        "\"${BURSTFLARE_SESSION_ENV-unset}\"; echo mark-$((2+3))\n"
    ))
    .await;
    let out = t.expect("mark-5").await;
    assert!(
        out.contains(r#"env-[bar]-[it's a "quoted-value"]-[  two  words  ]-[$HOME]-[unset]"#),
        "{out}"
    );
    t.send("exit\n").await;
    t.until_closed().await;
}

#[tokio::test]
async fn health_is_starting_while_sshd_does_not_accept() {
    let agent = AgentBuilder::new(closed_port()).start();
    let h = agent.health_until(|h| h.sshd_running).await;
    assert_eq!(h.status, AgentStatus::Starting);
    let (status, body) = agent.get("/ssh", Some(&agent.secret)).await;
    assert_eq!(status, 426, "{body}");
    match agent.try_ws("/ssh", Some(&agent.secret)).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn ssh_bridge_round_trips_megabytes() {
    let (target, mut conns) = echo_server().await;
    let agent = AgentBuilder::new(target).start();

    let ws = agent.ws("/ssh").await;
    let (mut tx, mut rx) = ws.split();
    // 6 MiB of deterministic noise in frames of varying size (1 byte .. 200 KiB).
    let mut data = Vec::with_capacity(6 << 20);
    data.extend_from_slice(b"DATA");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < 6 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    let sender = {
        let data = data.clone();
        tokio::spawn(async move {
            let mut at = 0;
            let mut size = 1;
            while at < data.len() {
                let end = (at + size).min(data.len());
                tx.send(Message::Binary(data[at..end].to_vec().into()))
                    .await
                    .unwrap();
                at = end;
                size = (size * 7 + 13) % (200 * 1024) + 1;
            }
            tx
        })
    };
    let mut expected = b"SSH-2.0-echo\r\n".to_vec();
    expected.extend_from_slice(&data);
    let mut got = Vec::with_capacity(expected.len());
    let started = Instant::now();
    while got.len() < expected.len() {
        match tokio::time::timeout(DEADLINE, rx.next()).await.unwrap() {
            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?} after {} bytes", got.len()),
        }
    }
    eprintln!("echoed {} bytes in {:?}", data.len(), started.elapsed());
    assert!(got == expected, "the echo differs from what was sent");

    let a = agent
        .activity_until(|a| a.ssh.bytes_out >= expected.len() as u64)
        .await;
    assert_eq!(a.ssh.bytes_in, data.len() as u64);
    assert_eq!(a.ssh.bytes_out, expected.len() as u64);
    assert_eq!(a.ssh.open, 1);
    assert!(a.ssh.last_input_ms.is_some() && a.ssh.last_output_ms.is_some());
    assert_eq!(a.terminal, Default::default());

    // The client closes: sshd's side sees EOF, everything is released.
    let mut tx = sender.await.unwrap();
    tx.send(Message::Close(None)).await.unwrap();
    let seen = tokio::time::timeout(DEADLINE, conns.recv()).await.unwrap();
    assert_eq!(seen, Some(data.len() as u64));
    agent.activity_until(|a| a.ssh.open == 0).await;
}

#[tokio::test]
async fn ssh_bridge_closes_when_sshd_closes_and_when_the_client_vanishes() {
    let (target, mut conns) = echo_server().await;
    let agent = AgentBuilder::new(target).start();

    // Server-side close: the data arrives, then a normal Close.
    let mut ws = agent.ws("/ssh").await;
    ws.send(Message::Binary(b"QUIT".to_vec().into()))
        .await
        .unwrap();
    let mut got = Vec::new();
    let code = loop {
        match tokio::time::timeout(DEADLINE, ws.next()).await.unwrap() {
            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
            Some(Ok(Message::Close(f))) => break f.map(|f| f.code),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(got, b"SSH-2.0-echo\r\nbye\n");
    assert_eq!(code, Some(CloseCode::Normal));
    assert_eq!(conns.recv().await, Some(4));
    drop(ws);

    // A client that disappears without a Close: the TCP side is released too.
    let mut ws = agent.ws("/ssh").await;
    ws.send(Message::Binary(b"hello".to_vec().into()))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < b"SSH-2.0-echo\r\nhello".len() {
        match tokio::time::timeout(DEADLINE, ws.next()).await.unwrap() {
            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(ws);
    assert_eq!(
        tokio::time::timeout(DEADLINE, conns.recv()).await.unwrap(),
        Some(5)
    );
    agent.activity_until(|a| a.ssh.open == 0).await;
}

#[tokio::test]
async fn terminal_runs_resizes_reattaches_and_exits() {
    let (target, _conns) = echo_server().await;
    let agent = AgentBuilder::new(target).start();

    let (mut a, id) = Term::open(&agent, "?cols=100&rows=30").await;
    assert_eq!(id.len(), 32, "{id}");
    a.send("echo hi-$((40+2))\n").await;
    a.expect("hi-42").await;
    a.send("stty size; echo size-$((1+1))\n").await;
    assert!(a.expect("size-2").await.contains("30 100"));

    a.control(&TerminalControl::Resize {
        cols: 120,
        rows: 40,
    })
    .await;
    a.send("stty size; echo size-$((2+1))\n").await;
    let out = a.expect("size-3").await;
    assert!(out.contains("40 120"), "{out}");

    a.send("export BFVAR=kept-$((6*7)); echo pid-$$-end; echo mark-$((1+1))\n")
        .await;
    let shell_pid = parse_pid(&a.expect("mark-2").await);

    // A second client takes over: the first is told with Close 4000.
    let (mut b, id_b) = Term::open(&agent, &format!("?terminal_id={id}")).await;
    assert_eq!(id_b, id);
    assert_eq!(a.until_closed().await, Some(CloseCode::from(4000)));
    b.expect("mark-2").await; // the replay

    // The network drops (no Close frame): the shell survives, the reattach replays.
    drop(b);
    let (mut c, id_c) = Term::open(&agent, &format!("?terminal_id={id}&cols=90&rows=20")).await;
    assert_eq!(id_c, id);
    c.expect("mark-2").await;
    c.send("echo got-$BFVAR; stty size; echo pid-$$-end; echo mark-$((2+2))\n")
        .await;
    let out = c.expect("mark-4").await;
    assert!(out.contains("got-kept-42"), "{out}");
    assert!(out.contains("20 90"), "{out}");
    assert_eq!(parse_pid(&out), shell_pid);

    c.send("exit 3\n").await;
    assert_eq!(c.until_closed().await, Some(CloseCode::Normal));
    assert_eq!(
        c.controls.last(),
        Some(&TerminalControl::Exit { code: 3 }),
        "{:?}",
        c.controls
    );
    wait_gone(shell_pid).await;

    // The exited terminal is gone: its id now starts a new shell.
    let (mut d, id_d) = Term::open(&agent, &format!("?terminal_id={id}")).await;
    assert_ne!(id_d, id);
    d.send("exit\n").await;
    d.until_closed().await;
    assert_eq!(d.controls.last(), Some(&TerminalControl::Exit { code: 0 }));

    let activity = agent.activity_until(|a| a.terminal.open == 0).await;
    assert!(activity.terminal.bytes_in > 0 && activity.terminal.bytes_out > 0);
    assert!(activity.terminal.last_input_ms.is_some());
}

#[tokio::test]
async fn reattach_takes_over_from_a_stalled_client() {
    let (target, _conns) = echo_server().await;
    let agent = AgentBuilder::new(target).start();

    // Client A asks for far more output than the socket buffers hold, then
    // stops reading: the agent's sends to it block.
    let (mut a, id) = Term::open(&agent, "").await;
    a.send("yes | head -c 16000000; echo done-$((5+5))\n").await;
    a.expect("y\r\ny\r\n").await;
    // Wait until the output to A has stalled.
    let mut sent = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = agent
            .get_ok::<AgentActivity>("/activity")
            .await
            .terminal
            .bytes_out;
        if now == sent {
            break;
        }
        sent = now;
    }
    assert!(
        sent < 16_000_000,
        "the output did not stall: {sent} bytes sent"
    );

    // Client B takes over and gets the rest, then a working shell.
    let (mut b, id_b) = Term::open(&agent, &format!("?terminal_id={id}")).await;
    assert_eq!(id_b, id);
    b.expect("done-10").await;
    b.send("echo b-$((1+2))\n").await;
    b.expect("b-3").await;
    drop(a);
}

#[tokio::test]
async fn detached_terminal_is_hung_up_after_the_grace_period() {
    let (target, _conns) = echo_server().await;
    let agent = AgentBuilder::new(target).grace_secs(1).start();

    let (mut t, id) = Term::open(&agent, "").await;
    t.send("echo pid-$$-end; echo mark-$((9+1))\n").await;
    let pid = parse_pid(&t.expect("mark-10").await);
    drop(t);
    wait_gone(pid).await;
    let (_t, id2) = Term::open(&agent, &format!("?terminal_id={id}")).await;
    assert_ne!(id2, id);
}

#[tokio::test]
async fn sshd_is_restarted_after_it_dies() {
    let (target, _conns) = echo_server().await;
    let agent = AgentBuilder::new(target).start();

    agent.health_until(|h| h.status == AgentStatus::Ok).await;
    let first = agent.wait_sshd_runs(1).await[0].0;
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let h = agent
        .health_until(|h| h.sshd_restarts == 1 && h.sshd_running)
        .await;
    assert_eq!(h.status, AgentStatus::Ok);
    let runs = agent.wait_sshd_runs(2).await;
    assert_ne!(runs[1].0, first);
    assert_eq!(runs[1].1, runs[0].1);
}

/// With a drain time (sessions with persisted paths), SIGTERM from the
/// platform stops sshd but keeps the agent serving until the control plane
/// releases it after its final snapshot; released before, it exits at once.
#[tokio::test]
async fn sigterm_drains_until_released() {
    let (target, _conns) = echo_server().await;
    let mut agent = AgentBuilder::new(target).drain_secs(60).start();
    agent.health_until(|h| h.sshd_running).await;
    let sshd_pid = agent.wait_sshd_runs(1).await[0].0;
    let before: AgentActivity = agent.get_ok("/activity").await;
    assert!(!before.draining);
    kill(agent.pid(), Signal::SIGTERM).unwrap();
    let draining = agent.activity_until(|a| a.draining).await;
    assert!(draining.draining);
    wait_gone(sshd_pid).await;
    // Still serving (a snapshot would be taken now), not exiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "exited while draining"
    );
    let (status, body) = http(
        agent.addr,
        "POST",
        "/lifecycle/release",
        Some(&agent.secret),
    )
    .await;
    assert_eq!((status, &body["released"]), (200, &true.into()));
    let started = Instant::now();
    let status = agent.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", agent.logs());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        agent.logs().contains("released after the final snapshot"),
        "{}",
        agent.logs()
    );

    // Released first (the control plane stops it itself): no drain.
    let (target, _conns) = echo_server().await;
    let mut agent = AgentBuilder::new(target).drain_secs(60).start();
    agent.health_until(|h| h.sshd_running).await;
    let (status, _) = http(
        agent.addr,
        "POST",
        "/lifecycle/release",
        Some(&agent.secret),
    )
    .await;
    assert_eq!(status, 200);
    let started = Instant::now();
    let status = agent.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn sigterm_stops_sshd_and_shells_and_exits_zero() {
    let (target, _conns) = echo_server().await;
    let mut agent = AgentBuilder::new(target).start();

    agent.health_until(|h| h.sshd_running).await;
    let sshd_pid = agent.wait_sshd_runs(1).await[0].0;
    let (mut t, _) = Term::open(&agent, "").await;
    // A shell with a nohup'd background job and a foreground job.
    t.send(concat!(
        "echo pid-$$-end; nohup sleep 100 >/dev/null 2>&1 & echo nohup-$!-end; ",
        "sh -c 'echo job-$$-end; exec sleep 100'\n"
    ))
    .await;
    let shell_pid = t.expect_pid("pid-").await;
    let nohup_pid = t.expect_pid("nohup-").await;
    let job_pid = t.expect_pid("job-").await;
    // `nohup` ignores SIGHUP only once it runs; wait until it has exec'd
    // `sleep` (after setting the disposition) so the hangup cannot race it.
    let deadline = std::time::Instant::now() + DEADLINE;
    while std::fs::read_to_string(format!("/proc/{nohup_pid}/comm"))
        .map(|c| c.trim() != "sleep")
        .unwrap_or(true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "nohup never ran sleep"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ssh = agent.ws("/ssh").await;
    assert!(matches!(ssh.next().await, Some(Ok(Message::Binary(_)))));

    let started = Instant::now();
    let status = agent.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", agent.logs());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    wait_gone(sshd_pid).await;
    wait_gone(shell_pid).await;
    wait_gone(job_pid).await;
    // The terminal's client heard about it.
    t.until_closed().await;
    assert_eq!(
        t.controls.last(),
        Some(&TerminalControl::Exit { code: 129 }),
        "the shell dies of SIGHUP"
    );
    // An SSH connection is told that the agent goes away.
    let code = loop {
        match tokio::time::timeout(DEADLINE, ssh.next()).await.unwrap() {
            Some(Ok(Message::Close(f))) => break f.map(|f| f.code),
            Some(Ok(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Away));
    // What asked to survive a hangup does.
    assert!(!process_gone(nohup_pid));
    kill(Pid::from_raw(nohup_pid), Signal::SIGKILL).unwrap();
    assert!(agent.logs().contains("stopped"), "{}", agent.logs());
}

#[tokio::test]
async fn editor_runs_as_the_login_user_and_stops_with_the_agent() {
    let (target, _conns) = echo_server().await;
    let mut agent = AgentBuilder::new(target).editor(FakeEditor::Script).start();

    let health = agent
        .health_until(|h| h.editor.as_ref().is_some_and(|e| e.running))
        .await;
    assert_eq!(
        health.editor,
        Some(EditorHealth {
            port: EDITOR_PORT,
            running: true,
            error: None
        })
    );
    let runs = agent.editor_runs(1).await;
    assert_eq!(runs.len(), 1);
    let home = User::from_uid(geteuid()).unwrap().unwrap().dir;
    let home = home.display().to_string();
    let run = &runs[0];
    assert_eq!(
        run[1],
        format!(
            "--auth none --bind-addr 0.0.0.0:{EDITOR_PORT} --disable-telemetry \
             --disable-update-check --disable-workspace-trust \
             --disable-getting-started-override {home}"
        )
    );
    // In the user's home, with the session's environment, without the
    // agent's secrets.
    assert_eq!(
        run[2..],
        [
            home.as_str(),
            home.as_str(),
            "bar",
            "unset",
            "unset",
            "ses_test"
        ]
    );
    let editor_pid: i32 = run[0].parse().unwrap();

    let status = agent.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", agent.logs());
    wait_gone(editor_pid).await;
    assert!(
        agent.logs().contains("code-server stopped"),
        "{}",
        agent.logs()
    );
}

#[tokio::test]
async fn a_missing_editor_is_reported_once_and_the_agent_serves_on() {
    let (target, _conns) = echo_server().await;
    let agent = AgentBuilder::new(target)
        .editor(FakeEditor::Missing)
        .start();

    let health = agent
        .health_until(|h| {
            h.status == AgentStatus::Ok && h.editor.as_ref().is_some_and(|e| e.error.is_some())
        })
        .await;
    let editor = health.editor.unwrap();
    assert_eq!((editor.port, editor.running), (EDITOR_PORT, false));
    let error = editor.error.unwrap();
    assert!(
        error.ends_with("fake-code-server does not exist: this image has no editor"),
        "{error}"
    );
    assert_eq!(
        agent.logs().matches("code-server is not installed").count(),
        1,
        "{}",
        agent.logs()
    );
    // Everything else works.
    let (mut t, _) = Term::open(&agent, "").await;
    t.send("echo mark-$((20+3))\n").await;
    t.expect("mark-23").await;
}

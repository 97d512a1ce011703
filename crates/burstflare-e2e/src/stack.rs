//! A running Worker on `wrangler dev` with its own local state.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use burstflare_api::identity::ClientKind;
use burstflare_api::{RegisterRequest, RegisterResponse};
use burstflare_cli::client::{Client, SessionTokens};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::runner::Runner;

/// Paths to the tools the harness runs.
#[derive(Debug, Clone)]
pub struct Tools {
    pub repo: PathBuf,
    pub node_bin_dir: PathBuf,
    pub wrangler: PathBuf,
    pub cli: PathBuf,
    pub runner: PathBuf,
    /// The content-addressed runtime image tag sessions boot.
    pub runtime_image: String,
    /// The content-addressed editor image tag (the runtime image plus
    /// code-server) that sessions of templates with `editor = true` boot.
    pub editor_image: String,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_default()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(repo_root());
    cmd
}

fn run_checked(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Tools {
    /// From the environment `cargo xtask test` sets, or by bootstrapping and
    /// building through xtask when run standalone.
    pub fn discover() -> Result<Self> {
        let repo = repo_root();
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let (
            Some(node_bin_dir),
            Some(wrangler),
            Some(cli),
            Some(runner),
            Ok(runtime_image),
            Ok(editor_image),
        ) = (
            var("BURSTFLARE_NODE_BIN_DIR"),
            var("BURSTFLARE_WRANGLER"),
            var("BURSTFLARE_CLI_BIN"),
            var("BURSTFLARE_RUNNER_BIN"),
            std::env::var("BURSTFLARE_RUNTIME_IMAGE"),
            std::env::var("BURSTFLARE_EDITOR_IMAGE"),
        ) {
            return Ok(Self {
                repo,
                node_bin_dir,
                wrangler,
                cli,
                runner,
                runtime_image,
                editor_image,
            });
        }
        eprintln!(
            "e2e: bootstrapping and building through xtask (run `cargo xtask test` to reuse its build)"
        );
        let env_lines = run_checked(cargo().args(["run", "-q", "-p", "xtask", "--", "env"]))?;
        run_checked(cargo().args([
            "build",
            "-q",
            "-p",
            "burstflare-cli",
            "-p",
            "burstflare-runner",
            "--bins",
        ]))?;
        let mut node_bin_dir = None;
        let mut wrangler = None;
        let mut runtime_image = None;
        let mut editor_image = None;
        for line in env_lines.lines() {
            match line.split_once('=') {
                Some(("BURSTFLARE_NODE_BIN_DIR", v)) => node_bin_dir = Some(PathBuf::from(v)),
                Some(("BURSTFLARE_WRANGLER", v)) => wrangler = Some(PathBuf::from(v)),
                Some(("BURSTFLARE_RUNTIME_IMAGE", v)) => runtime_image = Some(v.to_owned()),
                Some(("BURSTFLARE_EDITOR_IMAGE", v)) => editor_image = Some(v.to_owned()),
                _ => {}
            }
        }
        let target = var("CARGO_TARGET_DIR").unwrap_or_else(|| repo.join("target"));
        Ok(Self {
            node_bin_dir: node_bin_dir
                .context("xtask env did not print BURSTFLARE_NODE_BIN_DIR")?,
            wrangler: wrangler.context("xtask env did not print BURSTFLARE_WRANGLER")?,
            cli: target.join("debug/burstflare"),
            runner: target.join("debug/burstflare-runner"),
            runtime_image: runtime_image
                .context("xtask env did not print BURSTFLARE_RUNTIME_IMAGE")?,
            editor_image: editor_image
                .context("xtask env did not print BURSTFLARE_EDITOR_IMAGE")?,
            repo,
        })
    }

    fn path_env(&self) -> OsString {
        let mut paths = vec![self.node_bin_dir.clone()];
        paths.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        std::env::join_paths(paths).unwrap_or_default()
    }

    /// `wrangler` with Node 22+ first on PATH and metrics off.
    pub fn wrangler(&self) -> Command {
        let mut cmd = Command::new(&self.wrangler);
        cmd.env("PATH", self.path_env())
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("NO_UPDATE_NOTIFIER", "1")
            .current_dir(&self.repo)
            .stdin(Stdio::null());
        cmd
    }

    /// Renders the config for `env` through xtask and returns its path.
    pub fn config(&self, env: &str) -> Result<PathBuf> {
        let out = run_checked(cargo().args(["run", "-q", "-p", "xtask", "--", "config", env]))?;
        Ok(PathBuf::from(out.trim()))
    }
}

/// The status with which 127.0.0.1:`port` answers `GET path`, if anything answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    // "HTTP/1.x NNN": the server may answer in either minor version.
    if !head.starts_with(b"HTTP/1.") {
        return None;
    }
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The upload-grant key every test stack uses (tests sign grants with it).
pub const UPLOAD_GRANT_SECRET: &str = "e2e-upload-grant-secret-0123456789abcdef";
/// Bundle size limit on test stacks (above one 8 MiB R2 part, so that both
/// the single-put and the multipart paths are exercised).
pub const MAX_BUNDLE_BYTES: u64 = 12 * 1024 * 1024;

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A string unique within and across runs (`1732712345123-7`).
pub fn unique() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{ms}-{}", UNIQUE.fetch_add(1, Ordering::Relaxed))
}

/// `wrangler dev` serving the Worker with its own local state.
pub struct Stack {
    pub tools: Tools,
    pub port: u16,
    pub url: String,
    pub config: PathBuf,
    /// The stack's session runner (behind a lock: tests restart it).
    pub runner: std::sync::Mutex<Runner>,
    child: Child,
    log: PathBuf,
    // Declared last: dropped after the runner, whose log lives in it.
    state: tempfile::TempDir,
}

impl Stack {
    /// Starts a stack; with `migrate`, applies the D1 migrations first.
    pub fn start(tools: &Tools, migrate: bool) -> Result<Self> {
        Self::start_with(tools, migrate, &[])
    }

    /// The process id of the stack's `wrangler dev` (workerd runs below it).
    pub fn wrangler_pid(&self) -> u32 {
        self.child.id()
    }

    /// The R2 object keys under `prefix` in this stack's local bucket (read
    /// from the local R2 state with the `sqlite3` CLI).
    pub fn r2_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self
            .state
            .path()
            .join("state/v3/r2/miniflare-R2BucketObject");
        let mut keys = Vec::new();
        for entry in fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "sqlite")
                || path.file_name().is_some_and(|n| n == "metadata.sqlite")
            {
                continue;
            }
            let out = Command::new("sqlite3")
                .arg("-readonly")
                .arg(&path)
                .arg("SELECT key FROM _mf_objects ORDER BY key")
                .output()
                .context("sqlite3 (apt-get install sqlite3)")?;
            if !out.status.success() {
                bail!("sqlite3: {}", String::from_utf8_lossy(&out.stderr));
            }
            keys.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|k| k.starts_with(prefix))
                    .map(str::to_owned),
            );
        }
        Ok(keys)
    }

    /// Worker variables every stack gets unless the test sets them: passkey
    /// origins for this port, fast device-login polling, and rate limits
    /// loose enough for a suite that registers many users from one address
    /// (the rate-limit tests run with the production limits).
    fn defaults(port: u16) -> Vec<(&'static str, String)> {
        vec![
            (
                "WEBAUTHN_ORIGINS",
                format!("http://localhost:{port},http://127.0.0.1:{port}"),
            ),
            ("PUBLIC_URL", format!("http://127.0.0.1:{port}")),
            ("DEVICE_POLL_INTERVAL_SECONDS", "1".to_owned()),
            ("RATE_LIMIT_MULTIPLIER", "100".to_owned()),
            ("UPLOAD_GRANT_SECRET", UPLOAD_GRANT_SECRET.to_owned()),
            ("MAX_BUNDLE_BYTES", MAX_BUNDLE_BYTES.to_string()),
        ]
    }

    /// Starts a stack with extra Worker variables (`--var NAME:value`).
    pub fn start_with(tools: &Tools, migrate: bool, vars: &[(&str, &str)]) -> Result<Self> {
        let config = tools.config("dev")?;
        let state = tempfile::Builder::new()
            .prefix("burstflare-e2e-")
            .tempdir()?;
        let port = free_port()?;
        let log = state.path().join("wrangler.log");
        let log_file = fs::File::create(&log)?;
        let runner = Runner::start(&tools.runner, state.path())?;
        let mut cmd = tools.wrangler();
        cmd.args(["dev", "--config"])
            .arg(&config)
            .arg("--persist-to")
            .arg(state.path().join("state"))
            .args([
                "--ip",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--inspector-port",
                "0",
            ])
            .args([
                "--test-scheduled",
                "--show-interactive-dev-session=false",
                "--log-level",
                "info",
            ])
            .args(["--var", &format!("RUNNER_URL:{}", runner.url)])
            .args(["--var", &format!("RUNNER_SECRET:{}", runner.secret)])
            .args(["--var", &format!("RUNTIME_IMAGE:{}", tools.runtime_image)])
            .args(["--var", &format!("EDITOR_IMAGE:{}", tools.editor_image)])
            .args(
                Self::defaults(port)
                    .into_iter()
                    .filter(|(k, _)| !vars.iter().any(|(name, _)| name == k))
                    .chain(vars.iter().map(|(k, v)| (*k, (*v).to_owned())))
                    .flat_map(|(k, v)| ["--var".to_owned(), format!("{k}:{v}")]),
            )
            // A dev registry of its own: stacks share worker and queue names, and
            // wrangler would otherwise route queue messages between them.
            .env("WRANGLER_REGISTRY_PATH", state.path().join("registry"))
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            // Its own process group, so teardown reaches workerd as well.
            .process_group(0);
        let child = cmd.spawn().context("cannot start wrangler dev")?;
        let stack = Self {
            tools: tools.clone(),
            port,
            url: format!("http://127.0.0.1:{port}"),
            config,
            runner: std::sync::Mutex::new(runner),
            child,
            log,
            state,
        };
        if migrate {
            stack.migrate()?;
        }
        // A migrated stack must be healthy; an unmigrated one only has to answer.
        stack.wait_until_serving(Duration::from_secs(90), migrate)?;
        Ok(stack)
    }

    fn persist_dir(&self) -> PathBuf {
        self.state.path().join("state")
    }

    /// Runs `wrangler d1 <args> DB --local` on this stack's state; returns stdout.
    /// Runs `wrangler d1 …` against the stack's local database. The Worker
    /// writes to the same SQLite file, so a busy database is retried.
    fn d1(&self, args: &[&str], extra: &[&str]) -> Result<String> {
        let mut tries = 0;
        loop {
            tries += 1;
            let out = self
                .tools
                .wrangler()
                .arg("d1")
                .args(args)
                .args(["DB", "--local", "--config"])
                .arg(&self.config)
                .arg("--persist-to")
                .arg(self.persist_dir())
                .args(extra)
                .output()?;
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() {
                return Ok(stdout);
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            let busy = stdout.contains("SQLITE_BUSY") || stderr.contains("SQLITE_BUSY");
            if !busy || tries >= 10 {
                bail!("wrangler d1 {args:?} {extra:?} failed: {stdout}{stderr}");
            }
            std::thread::sleep(Duration::from_millis(200 * tries));
        }
    }

    /// `wrangler d1 migrations apply DB --local` against this stack's state.
    pub fn migrate(&self) -> Result<()> {
        self.d1(&["migrations", "apply"], &[]).map(drop)
    }

    /// Runs SQL against this stack's local D1 (`wrangler d1 execute --local`).
    pub fn d1_execute(&self, sql: &str) -> Result<String> {
        self.d1(&["execute"], &["--json", "--command", sql])
    }

    /// Waits until `/api/v1/health` answers: 200 when `healthy`, else anything.
    fn wait_until_serving(&self, timeout: Duration, healthy: bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            last = http_status(self.port, "/api/v1/health");
            if last.is_some_and(|s| !healthy || s == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "wrangler dev was not {} within {timeout:?} (last health status {last:?}); log tail:\n{}",
            if healthy { "healthy" } else { "serving" },
            self.log_tail(40)
        )
    }

    /// The last `lines` lines of wrangler's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// An unauthenticated API client.
    pub fn client(&self) -> Result<Client> {
        Ok(Client::new(&self.url, None)?)
    }

    /// Registers a fresh user; returns the response and a client signed in as them.
    pub async fn register(&self, name: &str) -> Result<(RegisterResponse, Client)> {
        let email = format!("{name}-{}@example.test", unique());
        let resp = self
            .client()?
            .register(&RegisterRequest {
                email,
                display_name: name.to_owned(),
                turnstile_token: None,
                client: ClientKind::Api,
            })
            .await
            .context("register")?;
        let creds = resp
            .credentials
            .as_ref()
            .context("registration returned no credentials")?;
        let client = Client::new(&self.url, None)?
            .with_session(SessionTokens::from_credentials(creds), None);
        Ok((resp, client))
    }

    /// A plain HTTP client for requests the typed client cannot make.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let pgid = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = self.child.wait();
        // Keep the logs for post-mortems (CI prints nothing else of them).
        let logs = self.tools.repo.join("target/burstflare/e2e-logs");
        if fs::create_dir_all(&logs).is_ok() {
            let _ = fs::copy(&self.log, logs.join(format!("wrangler-{}.log", self.port)));
            let _ = fs::copy(
                self.state.path().join("runner.log"),
                logs.join(format!("runner-{}.log", self.port)),
            );
        }
    }
}

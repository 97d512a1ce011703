//! Integration tests of `burstflare-runner` against the real Docker Engine.
//!
//! Every test starts the real runner binary (`CARGO_BIN_EXE_burstflare-runner`)
//! on a free port with a unique `--instance`, so tests run in parallel and never
//! see each other's containers. Dropping a [`RunnerProc`] kills it and removes
//! every container carrying its instance label; `main` sweeps whatever this
//! process created once more at the end, even after failures.
//!
//! The proxy tests need a server inside a container. The minimal Debian base
//! image has no suitable one, so this test binary doubles as that server: with
//! `BF_RUNNER_TEST_HELPER=1` it serves HTTP, WebSocket and raw-upgrade echo
//! endpoints ([`helper`]) instead of running tests. [`helper_image`] commits it
//! into an image derived from the base image (`docker create` + `docker cp` +
//! `docker commit`), which works offline and without buildx. The binary is
//! dynamically linked, which is fine because the hosts and the base image are
//! both Debian bookworm.
//!
//! Requirements: a running Docker Engine and the base image
//! (`burstflare/base:bookworm`, or `BURSTFLARE_TEST_BASE_IMAGE`).

use std::fs;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use bollard::Docker;
use burstflare_api::runtime::{
    AGENT_TOKEN_HEADER, ContainerInfo, ContainerList, ContainerStatus, LABEL_GENERATION,
    LABEL_MANAGED, LABEL_RUNNER, LABEL_SESSION, RunnerHealth,
};
use futures_util::{SinkExt, StreamExt};
use libtest_mimic::{Arguments, Failed, Trial};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_burstflare-runner");
const DEFAULT_BASE_IMAGE: &str = "burstflare/base:bookworm";
/// Where the helper binary lives inside the helper image.
const HELPER_PATH: &str = "/usr/local/bin/bf-runner-test-helper";

fn main() -> ExitCode {
    if std::env::var_os(helper::ENV).is_some() {
        return helper::main();
    }
    let args = Arguments::from_args();
    let trials = vec![
        trial("secret_is_required", secret_is_required),
        trial("auth_is_required", auth_is_required),
        trial("bad_requests_get_envelopes", bad_requests_get_envelopes),
        trial("lifecycle", lifecycle),
        trial("proxy_http_and_upgrades", proxy_http_and_upgrades),
        trial(
            "restart_rediscovers_and_proxies",
            restart_rediscovers_and_proxies,
        ),
        trial("docker_unreachable_is_503", docker_unreachable_is_503),
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    sweep();
    conclusion.exit_code()
}

/// A trial running an async test on its own runtime.
fn trial<F, Fut>(name: &'static str, test: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>>,
{
    Trial::test(name, move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Failed::from(e.to_string()))?;
        rt.block_on(test())
            .map_err(|e| Failed::from(format!("{e:?}")))
    })
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Prefix of every instance name this process uses (for the final sweep).
fn instance_prefix() -> String {
    format!("rt{}-", std::process::id())
}

fn unique(tag: &str) -> String {
    format!(
        "{tag}{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn base_image() -> String {
    std::env::var("BURSTFLARE_TEST_BASE_IMAGE").unwrap_or_else(|_| DEFAULT_BASE_IMAGE.to_owned())
}

fn docker_cli(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("cannot run the docker CLI")?;
    if !out.status.success() {
        bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn require_base_image() -> Result<String> {
    let image = base_image();
    docker_cli(&["image", "inspect", "--format", "{{.Id}}", &image]).with_context(|| {
        format!(
            "the base image {image} is missing; create it with `debootstrap --variant=minbase bookworm DIR http://deb.debian.org/debian && tar -C DIR -c . | docker import - {image}`"
        )
    })?;
    Ok(image)
}

/// The helper image (base image + this binary as its command), built once per run.
fn helper_image() -> Result<String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| build_helper_image().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!("cannot build the helper image: {e}"))
}

fn helper_image_name() -> String {
    format!("burstflare-runner-test:{}", std::process::id())
}

fn build_helper_image() -> Result<String> {
    let base = require_base_image()?;
    let exe = std::env::current_exe().context("where is the test binary?")?;
    let tmp = format!("bf-runner-test-build-{}", std::process::id());
    let _ = docker_cli(&["rm", "-f", &tmp]);
    docker_cli(&["create", "--name", &tmp, &base, "true"])?;
    let result = (|| {
        docker_cli(&[
            "cp",
            &exe.display().to_string(),
            &format!("{tmp}:{HELPER_PATH}"),
        ])?;
        let image = helper_image_name();
        docker_cli(&[
            "commit",
            "--change",
            &format!("CMD [\"{HELPER_PATH}\"]"),
            "--change",
            &format!("ENV {}=1", helper::ENV),
            &tmp,
            &image,
        ])?;
        Ok(image)
    })();
    let _ = docker_cli(&["rm", "-f", &tmp]);
    result
}

/// Removes every container and image this process created.
fn sweep() {
    let prefix = instance_prefix();
    if let Ok(out) = docker_cli(&[
        "ps",
        "-a",
        "--filter",
        &format!("label={LABEL_MANAGED}=true"),
        "--format",
        &format!("{{{{.ID}}}} {{{{.Label \"{LABEL_RUNNER}\"}}}}"),
    ]) {
        let ids: Vec<&str> = out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, runner)| runner.starts_with(&prefix))
            .map(|(id, _)| id)
            .collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = docker_cli(&args);
        }
    }
    let _ = docker_cli(&["rmi", "-f", &helper_image_name()]);
}

fn free_port() -> Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One runner process on its own port with its own instance label.
struct RunnerProc {
    port: u16,
    secret: String,
    instance: String,
    docker_host: Option<String>,
    log: PathBuf,
    child: Option<Child>,
    http: reqwest::Client,
}

impl RunnerProc {
    async fn start() -> Result<Self> {
        Self::start_with(None).await
    }

    async fn start_with(docker_host: Option<&str>) -> Result<Self> {
        let instance = format!("{}{}", instance_prefix(), unique("i"));
        let mut runner = Self {
            port: free_port()?,
            secret: format!("test-secret-{}", unique("s")),
            log: std::env::temp_dir().join(format!("burstflare-runner-{instance}.log")),
            instance,
            docker_host: docker_host.map(str::to_owned),
            child: None,
            http: reqwest::Client::new(),
        };
        runner.spawn().await?;
        Ok(runner)
    }

    async fn spawn(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--instance", &self.instance])
            .env("BURSTFLARE_RUNNER_SECRET", &self.secret)
            .env("RUST_LOG", "info,burstflare_runner=debug")
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(host) = &self.docker_host {
            cmd.args(["--docker-host", host]);
        }
        self.child = Some(cmd.spawn().context("cannot start burstflare-runner")?);
        // Pooled connections to a previous process on this port are dead.
        self.http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("the runner exited with {status}:\n{}", self.log_text());
            }
            ensure!(
                Instant::now() < deadline,
                "the runner did not listen within 30 s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then wait for the exit.
    async fn terminate(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("the runner is not running")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the runner ignored SIGTERM for 15 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn restart(&mut self) -> Result<()> {
        let status = self.terminate().await?;
        ensure!(
            status.success(),
            "the runner exited with {status} on SIGTERM"
        );
        self.spawn().await
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.secret)
    }

    /// Sends an authenticated request; the answer's status and JSON body (Null if empty).
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply> {
        let mut req = self.request(method.clone(), path);
        if let Some(body) = body {
            req = req.json(body);
        }
        Reply::read(
            req.send()
                .await
                .with_context(|| format!("{method} {path}"))?,
        )
        .await
    }

    async fn create(&self, body: &Value) -> Result<Reply> {
        self.call(Method::POST, "/v1/containers", Some(body)).await
    }
}

impl Drop for RunnerProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Ok(ids) = docker_cli(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label={LABEL_RUNNER}={}", self.instance),
        ]) && !ids.is_empty()
        {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.lines());
            let _ = docker_cli(&args);
        }
        if !std::thread::panicking() {
            let _ = fs::remove_file(&self.log);
        }
    }
}

/// A runner answer.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: Value,
}

impl Reply {
    async fn read(resp: reqwest::Response) -> Result<Self> {
        let status = resp.status();
        let text = resp.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("HTTP {status}: {text:?}"))?
        };
        Ok(Self { status, body })
    }

    fn ok<T: serde::de::DeserializeOwned>(self, status: u16) -> Result<T> {
        ensure!(
            self.status.as_u16() == status,
            "expected HTTP {status}, got {}: {}",
            self.status,
            self.body
        );
        Ok(serde_json::from_value(self.body)?)
    }

    /// Checks the status and envelope code; returns the message.
    fn error(&self, status: u16, code: &str) -> Result<String> {
        ensure!(
            self.status.as_u16() == status && self.body["error"]["code"] == code,
            "expected HTTP {status} {code}, got {}: {}",
            self.status,
            self.body
        );
        Ok(self.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }
}

/// A create request with defaults; `cmd: None` runs the image's command.
fn create_body(session: &str, image: &str, ports: &[u16], cmd: Option<&[&str]>) -> Value {
    let mut body = json!({
        "session_id": session,
        "generation": 1,
        "image": image,
        "limits": { "cpu_millis": 500, "memory_mib": 128, "pids": 64 },
        "env": { "BF_TEST": "yes" },
        "ports": ports,
    });
    if let Some(cmd) = cmd {
        body["cmd"] = json!(cmd);
    }
    body
}

/// A bash PID 1 that exits 0 on SIGTERM (so a stop is graceful, not a kill).
const SLEEPER: &[&str] = &[
    "bash",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done",
];

async fn docker() -> Result<Docker> {
    Ok(Docker::connect_with_local_defaults()?
        .negotiate_version()
        .await?)
}

/// Polls `check` until it succeeds or `timeout` passes.
async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e.context("gave up waiting")),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Creates a helper container and waits until its server answers through the proxy.
async fn start_helper(runner: &RunnerProc, ports: &[u16]) -> Result<ContainerInfo> {
    let image = helper_image()?;
    let session = unique("ses_h");
    let info: ContainerInfo = runner
        .create(&create_body(&session, &image, ports, None))
        .await?
        .ok(201)?;
    let path = format!("/v1/containers/{}/ports/{}/echo", info.name, helper::PORT);
    eventually(Duration::from_secs(30), || async {
        let reply = runner.call(Method::GET, &path, None).await?;
        ensure!(reply.status == StatusCode::OK, "{reply:?}");
        Ok(())
    })
    .await?;
    Ok(info)
}

/// Opens a raw `Upgrade: bf-raw` tunnel to the helper's echo through the runner.
async fn open_raw_tunnel(runner: &RunnerProc, base: &str) -> Result<tokio::net::TcpStream> {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", runner.port)).await?;
    tcp.write_all(
        format!(
            "GET {base}/raw HTTP/1.1\r\nHost: runner\r\nAuthorization: Bearer {}\r\nConnection: Upgrade\r\nUpgrade: bf-raw\r\n\r\n",
            runner.secret
        )
        .as_bytes(),
    )
    .await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        ensure!(tcp.read(&mut byte).await? == 1, "closed during the 101");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    ensure!(head.starts_with("HTTP/1.1 101"), "{head}");
    ensure!(
        head.to_ascii_lowercase().contains("upgrade: bf-raw"),
        "{head}"
    );
    Ok(tcp)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

async fn secret_is_required() -> Result<()> {
    for secret in [None, Some("too-short")] {
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", &format!("127.0.0.1:{}", free_port()?)])
            .env_remove("BURSTFLARE_RUNNER_SECRET");
        if let Some(s) = secret {
            cmd.env("BURSTFLARE_RUNNER_SECRET", s);
        }
        let out = cmd.output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.code() == Some(2), "{:?}: {stderr}", out.status);
        ensure!(
            stderr.contains("BURSTFLARE_RUNNER_SECRET") && stderr.contains("hint:"),
            "{stderr}"
        );
    }
    Ok(())
}

async fn auth_is_required() -> Result<()> {
    let runner = RunnerProc::start().await?;
    let http = reqwest::Client::new();
    for path in ["/v1/health", "/v1/containers", "/v1/nope"] {
        let r = Reply::read(http.get(runner.url(path)).send().await?).await?;
        r.error(401, "unauthenticated")?;
        let r = Reply::read(
            http.get(runner.url(path))
                .bearer_auth(format!("{}x", runner.secret))
                .send()
                .await?,
        )
        .await?;
        r.error(401, "invalid_token")?;
        let r = Reply::read(
            http.get(runner.url(path))
                .basic_auth("runner", Some(&runner.secret))
                .send()
                .await?,
        )
        .await?;
        r.error(401, "unauthenticated")?;
    }
    // The proxy needs the secret too.
    let r = Reply::read(
        http.get(runner.url("/v1/containers/bf-x-g1/ports/22/"))
            .send()
            .await?,
    )
    .await?;
    r.error(401, "unauthenticated")?;

    let health: RunnerHealth = runner
        .call(Method::GET, "/v1/health", None)
        .await?
        .ok(200)?;
    ensure!(health.runner == runner.instance);
    ensure!(health.docker_version.is_some());
    ensure!(health.containers == 0);
    Ok(())
}

async fn bad_requests_get_envelopes() -> Result<()> {
    let runner = RunnerProc::start().await?;
    let image = require_base_image()?;
    let good = create_body(&unique("ses_b"), &image, &[22], Some(SLEEPER));
    let cases: Vec<(&str, Value)> = vec![
        ("session_id", json!("bad id")),
        ("session_id", json!("")),
        ("session_id", json!("x".repeat(65))),
        ("image", json!("")),
        (
            "limits.cpu_millis",
            json!({"cpu_millis": 0, "memory_mib": 128, "pids": 64}),
        ),
        (
            "limits.memory_mib",
            json!({"cpu_millis": 500, "memory_mib": 0, "pids": 64}),
        ),
        (
            "limits.pids",
            json!({"cpu_millis": 500, "memory_mib": 128, "pids": 0}),
        ),
        ("ports[0]", json!([0])),
        ("ports[1]", json!([22, 22])),
        ("ports", json!((1..=17).collect::<Vec<u16>>())),
        ("cmd", json!([])),
    ];
    for (field, value) in cases {
        let mut body = good.clone();
        let key = field.split(['.', '[']).next().unwrap_or(field);
        body[key] = value;
        let reply = runner.create(&body).await?;
        reply.error(400, "invalid_field")?;
        ensure!(
            reply.body["error"]["details"]["field"] == field,
            "{field}: {reply:?}"
        );
    }

    let mut body = good.clone();
    body["ports"] = json!([70000]);
    runner.create(&body).await?.error(400, "malformed_json")?;
    let mut body = good.clone();
    body["surprise"] = json!(1);
    let msg = runner.create(&body).await?.error(400, "malformed_json")?;
    ensure!(msg.contains("surprise"), "{msg}");
    let reply = Reply::read(
        runner
            .request(Method::POST, "/v1/containers")
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await?,
    )
    .await?;
    reply.error(400, "malformed_json")?;
    let reply = Reply::read(
        runner
            .request(Method::POST, "/v1/containers")
            .header("content-type", "text/plain")
            .body(good.to_string())
            .send()
            .await?,
    )
    .await?;
    reply.error(415, "unsupported_media_type")?;

    let mut huge = good.clone();
    huge["env"] = json!({ "BIG": "x".repeat(70 * 1024) });
    runner
        .create(&huge)
        .await?
        .error(413, "payload_too_large")?;
    // Without a Content-Length the limit applies while streaming.
    let chunks =
        futures_util::stream::iter((0..80).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let reply = Reply::read(
        runner
            .request(Method::POST, "/v1/containers")
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await?,
    )
    .await?;
    reply.error(413, "payload_too_large")?;

    let mut missing = good.clone();
    missing["image"] = json!("burstflare/does-not-exist:nope");
    let reply = runner.create(&missing).await?;
    let msg = reply.error(422, "image_not_found")?;
    ensure!(msg.contains("burstflare/does-not-exist:nope"), "{msg}");

    runner
        .call(Method::GET, "/v1/nope", None)
        .await?
        .error(404, "route_not_found")?;
    runner
        .call(Method::PUT, "/v1/containers", None)
        .await?
        .error(405, "method_not_allowed")?;
    for name in ["bf-nothing-g1", "not-ours", "bf-x%2Fy-g1"] {
        for (method, path) in [
            (Method::GET, format!("/v1/containers/{name}")),
            (Method::DELETE, format!("/v1/containers/{name}")),
            (Method::POST, format!("/v1/containers/{name}/stop")),
            (Method::GET, format!("/v1/containers/{name}/ports/22/")),
        ] {
            runner
                .call(method, &path, None)
                .await?
                .error(404, "container_not_found")?;
        }
    }
    runner
        .call(Method::GET, "/v1/containers/bf-x-g1/ports/0/", None)
        .await?
        .error(400, "invalid_field")?;
    runner
        .call(Method::GET, "/v1/containers/bf-x-g1/ports/http/", None)
        .await?
        .error(400, "invalid_field")?;
    runner
        .call(
            Method::POST,
            "/v1/containers/bf-x-g1/stop",
            Some(&json!({"timeout_secs": 301})),
        )
        .await?
        .error(400, "invalid_field")?;
    // Nothing above created a container.
    let list: ContainerList = runner
        .call(Method::GET, "/v1/containers", None)
        .await?
        .ok(200)?;
    ensure!(list.items.is_empty(), "{list:?}");
    Ok(())
}

async fn lifecycle() -> Result<()> {
    let runner = RunnerProc::start().await?;
    let docker = docker().await?;
    let image = require_base_image()?;
    let session = unique("ses_l");
    let body = create_body(&session, &image, &[22, 7070], Some(SLEEPER));

    let info: ContainerInfo = runner.create(&body).await?.ok(201)?;
    ensure!(info.name == format!("bf-{session}-g1"), "{info:?}");
    ensure!(info.session_id == session && info.generation == 1);
    ensure!(info.status == ContainerStatus::Running, "{info:?}");
    ensure!(info.image == image);
    ensure!(info.started_at.is_some() && info.finished_at.is_none());
    ensure!(
        info.ports.keys().copied().collect::<Vec<_>>() == [22, 7070],
        "{info:?}"
    );

    let inspect = docker.inspect_container(&info.name, None).await?;
    ensure!(inspect.id.as_deref() == Some(info.docker_id.as_str()));
    ensure!(inspect.state.as_ref().and_then(|s| s.running) == Some(true));
    let labels = inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    ensure!(labels.get(LABEL_MANAGED).map(String::as_str) == Some("true"));
    ensure!(labels.get(LABEL_RUNNER) == Some(&runner.instance));
    ensure!(labels.get(LABEL_SESSION) == Some(&session));
    ensure!(labels.get(LABEL_GENERATION).map(String::as_str) == Some("1"));
    let env = inspect
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default();
    ensure!(env.iter().any(|e| e == "BF_TEST=yes"), "{env:?}");
    let hc = inspect.host_config.clone().context("no HostConfig")?;
    ensure!(hc.memory == Some(128 * 1024 * 1024), "{:?}", hc.memory);
    ensure!(hc.memory_swap == hc.memory, "{:?}", hc.memory_swap);
    ensure!(hc.nano_cpus == Some(500_000_000), "{:?}", hc.nano_cpus);
    ensure!(hc.pids_limit == Some(64), "{:?}", hc.pids_limit);
    ensure!(hc.init != Some(true), "{:?}", hc.init);
    ensure!(
        hc.restart_policy
            .as_ref()
            .and_then(|p| p.name)
            .is_none_or(|n| n == bollard::models::RestartPolicyNameEnum::NO
                || n == bollard::models::RestartPolicyNameEnum::EMPTY),
        "{:?}",
        hc.restart_policy
    );
    let bindings = inspect
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.clone())
        .context("no published ports")?;
    for (port, list) in &bindings {
        let list = list.clone().unwrap_or_default();
        ensure!(!list.is_empty(), "{port} is not published");
        for b in list {
            ensure!(
                b.host_ip.as_deref() == Some("127.0.0.1"),
                "{port} is published on {:?}",
                b.host_ip
            );
        }
    }
    // The memory limit holds inside the container too (cgroup v1 or v2).
    let exec = docker
        .create_exec(
            &info.name,
            bollard::models::ExecConfig {
                cmd: Some(
                    [
                        "bash",
                        "-c",
                        "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
                attach_stdout: Some(true),
                ..Default::default()
            },
        )
        .await?;
    let mut limit_text = String::new();
    if let bollard::exec::StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await?
    {
        while let Some(chunk) = output.next().await {
            limit_text.push_str(&chunk?.to_string());
        }
    }
    ensure!(
        limit_text.trim() == (128u64 * 1024 * 1024).to_string(),
        "memory limit inside the container: {limit_text:?}"
    );

    // Idempotent create: same container, 200.
    let again: ContainerInfo = runner.create(&body).await?.ok(200)?;
    ensure!(again.docker_id == info.docker_id && again.status == ContainerStatus::Running);

    // Listing is scoped to this runner's instance and optionally to a session.
    let list: ContainerList = runner
        .call(Method::GET, "/v1/containers", None)
        .await?
        .ok(200)?;
    ensure!(
        list.items.len() == 1 && list.items[0].docker_id == info.docker_id,
        "{list:?}"
    );
    let list: ContainerList = runner
        .call(
            Method::GET,
            &format!("/v1/containers?session_id={session}"),
            None,
        )
        .await?
        .ok(200)?;
    ensure!(list.items.len() == 1, "{list:?}");
    let list: ContainerList = runner
        .call(Method::GET, "/v1/containers?session_id=ses_other", None)
        .await?
        .ok(200)?;
    ensure!(list.items.is_empty(), "{list:?}");
    let health: RunnerHealth = runner
        .call(Method::GET, "/v1/health", None)
        .await?
        .ok(200)?;
    ensure!(health.containers == 1, "{health:?}");

    // Another runner on the same Docker sees nothing of it and cannot take the name.
    let other = RunnerProc::start().await?;
    let list: ContainerList = other
        .call(Method::GET, "/v1/containers", None)
        .await?
        .ok(200)?;
    ensure!(list.items.is_empty(), "{list:?}");
    for (method, path) in [
        (Method::GET, format!("/v1/containers/{}", info.name)),
        (Method::POST, format!("/v1/containers/{}/stop", info.name)),
        (Method::DELETE, format!("/v1/containers/{}", info.name)),
    ] {
        other
            .call(method, &path, None)
            .await?
            .error(404, "container_not_found")?;
    }
    let msg = other
        .create(&body)
        .await?
        .error(409, "runtime_unavailable")?;
    ensure!(msg.contains(&runner.instance), "{msg}");
    drop(other);

    // Stop: SIGTERM first (the sleeper exits 0 on it), well within the timeout.
    let started = Instant::now();
    let stopped: ContainerInfo = runner
        .call(
            Method::POST,
            &format!("/v1/containers/{}/stop", info.name),
            Some(&json!({"timeout_secs": 20})),
        )
        .await?
        .ok(200)?;
    ensure!(started.elapsed() < Duration::from_secs(15));
    ensure!(stopped.status == ContainerStatus::Exited, "{stopped:?}");
    ensure!(stopped.exit_code == Some(0), "{stopped:?}");
    ensure!(
        stopped.finished_at.is_some() && stopped.ports.is_empty(),
        "{stopped:?}"
    );
    let got: ContainerInfo = runner
        .call(Method::GET, &format!("/v1/containers/{}", info.name), None)
        .await?
        .ok(200)?;
    ensure!(got.status == ContainerStatus::Exited);
    // Stopping again is fine; an empty body means the default timeout.
    let reply = Reply::read(
        runner
            .request(Method::POST, &format!("/v1/containers/{}/stop", info.name))
            .send()
            .await?,
    )
    .await?;
    let _: ContainerInfo = reply.ok(200)?;

    // Create on a stopped container starts it again.
    let restarted: ContainerInfo = runner.create(&body).await?.ok(200)?;
    ensure!(restarted.docker_id == info.docker_id && restarted.status == ContainerStatus::Running);

    // Delete (force, while running), then it is gone.
    let reply = runner
        .call(
            Method::DELETE,
            &format!("/v1/containers/{}", info.name),
            None,
        )
        .await?;
    ensure!(reply.status == StatusCode::NO_CONTENT, "{reply:?}");
    for (method, path) in [
        (Method::GET, format!("/v1/containers/{}", info.name)),
        (Method::DELETE, format!("/v1/containers/{}", info.name)),
        (Method::POST, format!("/v1/containers/{}/stop", info.name)),
    ] {
        runner
            .call(method, &path, None)
            .await?
            .error(404, "container_not_found")?;
    }
    ensure!(docker.inspect_container(&info.name, None).await.is_err());

    // A command that cannot start leaves nothing behind.
    let broken = create_body(&unique("ses_x"), &image, &[], Some(&["/no/such/program"]));
    let reply = runner.create(&broken).await?;
    reply.error(502, "runtime_unavailable")?;
    let list: ContainerList = runner
        .call(Method::GET, "/v1/containers", None)
        .await?
        .ok(200)?;
    ensure!(list.items.is_empty(), "{list:?}");
    Ok(())
}

async fn proxy_http_and_upgrades() -> Result<()> {
    let runner = RunnerProc::start().await?;
    // 9999 is published but nothing listens on it.
    let info = start_helper(&runner, &[helper::PORT, 9999]).await?;
    let base = format!("/v1/containers/{}/ports/{}", info.name, helper::PORT);

    // Path, query, method and headers arrive as sent, minus the runner secret.
    let resp = runner
        .request(Method::PUT, &format!("{base}/echo/a%20b/c?x=1&y=%2F"))
        .header(AGENT_TOKEN_HEADER, "agent-secret")
        .header("x-custom", "kept")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "dropped")
        .send()
        .await?;
    ensure!(resp.status() == StatusCode::OK);
    let echo: Value = resp.json().await?;
    ensure!(echo["method"] == "PUT", "{echo}");
    ensure!(echo["uri"] == "/echo/a%20b/c?x=1&y=%2F", "{echo}");
    let headers = &echo["headers"];
    ensure!(headers[AGENT_TOKEN_HEADER] == "agent-secret", "{echo}");
    ensure!(headers["x-custom"] == "kept", "{echo}");
    ensure!(headers.get("authorization").is_none(), "{echo}");
    ensure!(headers.get("x-hop").is_none(), "{echo}");
    ensure!(
        headers["host"] == format!("127.0.0.1:{}", helper::PORT),
        "{echo}"
    );
    ensure!(
        headers["x-forwarded-host"] == format!("127.0.0.1:{}", runner.port),
        "{echo}"
    );
    // A proxy in front names the browser's host; the runner keeps it.
    let resp = runner
        .request(Method::GET, &format!("{base}/echo/x"))
        .header("x-forwarded-host", "app.example:8443")
        .send()
        .await?;
    let echo: Value = resp.json().await?;
    ensure!(
        echo["headers"]["x-forwarded-host"] == "app.example:8443",
        "{echo}"
    );
    // The upstream's status and headers come back.
    let resp = runner
        .request(Method::GET, &format!("{base}/status/418"))
        .send()
        .await?;
    ensure!(resp.status().as_u16() == 418);
    ensure!(resp.headers().get("x-helper").is_some_and(|v| v == "yes"));

    // Large bodies stream both ways.
    const SIZE: u64 = 48 * 1024 * 1024;
    let upload = futures_util::stream::iter((0..SIZE / 65536).map(|i| {
        Ok::<_, std::io::Error>(
            (0..65536u64)
                .map(|j| ((i * 65536 + j) % 251) as u8)
                .collect::<Vec<u8>>(),
        )
    }));
    let resp = runner
        .request(Method::POST, &format!("{base}/count"))
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await?;
    ensure!(resp.status() == StatusCode::OK, "{resp:?}");
    let count: Value = resp.json().await?;
    ensure!(count["bytes"] == SIZE, "{count}");
    ensure!(count["sum"] == helper::checksum_of_pattern(SIZE), "{count}");
    let mut resp = runner
        .request(Method::GET, &format!("{base}/bytes?n={SIZE}"))
        .send()
        .await?;
    ensure!(resp.status() == StatusCode::OK);
    let (mut n, mut sum) = (0u64, 0u64);
    while let Some(chunk) = resp.chunk().await? {
        n += chunk.len() as u64;
        sum = helper::checksum(sum, &chunk);
    }
    ensure!(n == SIZE && sum == helper::checksum_of_pattern(SIZE));

    // WebSocket with a subprotocol, through the runner.
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut ws_req = format!("ws://127.0.0.1:{}{base}/ws", runner.port).into_client_request()?;
    ws_req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", runner.secret).parse()?,
    );
    ws_req
        .headers_mut()
        .insert("sec-websocket-protocol", "bf-test".parse()?);
    let (mut ws, resp) = tokio_tungstenite::connect_async(ws_req).await?;
    ensure!(
        resp.headers()
            .get("sec-websocket-protocol")
            .is_some_and(|v| v == "bf-test")
    );
    ws.send(Message::text("hello")).await?;
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    ws.send(Message::binary(big.clone())).await?;
    let first = ws.next().await.context("ws closed")??;
    ensure!(first == Message::text("hello"), "{first:?}");
    let second = ws.next().await.context("ws closed")??;
    ensure!(second.into_data().as_ref() == big.as_slice());
    ws.close(None).await?;

    // A raw upgrade with a made-up protocol: bytes pass untouched, half-close propagates.
    let tcp = open_raw_tunnel(&runner, &base).await?;
    let payload: Vec<u8> = (0..4_000_000u32).map(|i| (i % 241) as u8).collect();
    let (mut rd, mut wr) = tcp.into_split();
    let to_send = payload.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&to_send).await?;
        wr.shutdown().await?;
        Ok::<_, std::io::Error>(())
    });
    let mut echoed = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), rd.read_to_end(&mut echoed)).await??;
    writer.await??;
    ensure!(
        echoed == payload,
        "echoed {} of {} bytes",
        echoed.len(),
        payload.len()
    );

    // Errors: unpublished port, nothing listening, container not running.
    let msg = runner
        .call(
            Method::GET,
            &format!("/v1/containers/{}/ports/5555/", info.name),
            None,
        )
        .await?
        .error(404, "route_not_found")?;
    ensure!(msg.contains("5555"), "{msg}");
    runner
        .call(
            Method::GET,
            &format!("/v1/containers/{}/ports/9999/", info.name),
            None,
        )
        .await?
        .error(502, "runtime_unavailable")?;
    let stopped: ContainerInfo = runner
        .call(
            Method::POST,
            &format!("/v1/containers/{}/stop", info.name),
            Some(&json!({"timeout_secs": 5})),
        )
        .await?
        .ok(200)?;
    // The helper exits 0 on SIGTERM.
    ensure!(stopped.exit_code == Some(0), "{stopped:?}");
    let msg = runner
        .call(Method::GET, &format!("{base}/echo"), None)
        .await?
        .error(409, "runtime_unavailable")?;
    ensure!(msg.contains("exited"), "{msg}");
    Ok(())
}

async fn restart_rediscovers_and_proxies() -> Result<()> {
    let mut runner = RunnerProc::start().await?;
    let info = start_helper(&runner, &[helper::PORT]).await?;
    let base = format!("/v1/containers/{}/ports/{}", info.name, helper::PORT);
    let mut tunnel = open_raw_tunnel(&runner, &base).await?;
    tunnel.write_all(b"ping").await?;
    let mut pong = [0u8; 4];
    tunnel.read_exact(&mut pong).await?;
    ensure!(&pong == b"ping");

    // A tunnel open across the restart ends (it does not hang); the container stays.
    runner.restart().await?;
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), tunnel.read_to_end(&mut rest)).await;
    ensure!(ended.is_ok(), "the tunnel outlived the runner");
    let docker = docker().await?;
    let inspect = docker.inspect_container(&info.name, None).await?;
    ensure!(inspect.state.and_then(|s| s.running) == Some(true));
    eventually(Duration::from_secs(10), || async {
        let log = runner.log_text();
        ensure!(log.contains("rediscovered 1 containers"), "{log}");
        Ok(())
    })
    .await?;

    let list: ContainerList = runner
        .call(Method::GET, "/v1/containers", None)
        .await?
        .ok(200)?;
    ensure!(
        list.items.len() == 1 && list.items[0].docker_id == info.docker_id,
        "{list:?}"
    );
    ensure!(list.items[0].ports == info.ports, "{list:?}");
    let resp = runner
        .request(
            Method::GET,
            &format!(
                "/v1/containers/{}/ports/{}/echo?after=restart",
                info.name,
                helper::PORT
            ),
        )
        .send()
        .await?;
    ensure!(resp.status() == StatusCode::OK);
    let echo: Value = resp.json().await?;
    ensure!(echo["uri"] == "/echo?after=restart", "{echo}");
    Ok(())
}

async fn docker_unreachable_is_503() -> Result<()> {
    let runner = RunnerProc::start_with(Some("unix:///nonexistent.sock")).await?;
    let expected = "Docker Engine is not reachable at unix:///nonexistent.sock";
    let image = base_image();
    let replies = [
        runner.call(Method::GET, "/v1/health", None).await?,
        runner
            .create(&create_body(&unique("ses_d"), &image, &[22], None))
            .await?,
        runner.call(Method::GET, "/v1/containers", None).await?,
        runner
            .call(Method::GET, "/v1/containers/bf-x-g1", None)
            .await?,
        runner
            .call(Method::GET, "/v1/containers/bf-x-g1/ports/22/", None)
            .await?,
    ];
    for reply in replies {
        let msg = reply.error(503, "runtime_unavailable")?;
        ensure!(msg.starts_with(expected), "{msg}");
    }
    eventually(Duration::from_secs(10), || async {
        let log = runner.log_text();
        ensure!(log.contains("rediscovered 0 containers"), "{log}");
        Ok(())
    })
    .await?;

    // A closed TCP endpoint is just as clear.
    let port = free_port()?;
    let runner = RunnerProc::start_with(Some(&format!("tcp://127.0.0.1:{port}"))).await?;
    let msg = runner
        .call(Method::GET, "/v1/health", None)
        .await?
        .error(503, "runtime_unavailable")?;
    ensure!(
        msg.starts_with(&format!(
            "Docker Engine is not reachable at tcp://127.0.0.1:{port}"
        )),
        "{msg}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// The server that runs inside helper containers
// ---------------------------------------------------------------------------

mod helper {
    //! HTTP, WebSocket and raw-upgrade echo server for the proxy tests; runs
    //! inside a container as PID 1 and exits 0 on SIGTERM.

    use std::collections::{BTreeMap, HashMap};
    use std::process::ExitCode;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::extract::{Path, Query, Request};
    use axum::http::header::{CONNECTION, UPGRADE};
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{any, get, post};
    use futures_util::StreamExt;
    use hyper_util::rt::TokioIo;
    use serde_json::{Value, json};

    pub const ENV: &str = "BF_RUNNER_TEST_HELPER";
    pub const PORT: u16 = 8080;

    pub fn checksum(mut sum: u64, bytes: &[u8]) -> u64 {
        for &b in bytes {
            sum = sum.wrapping_mul(31).wrapping_add(u64::from(b));
        }
        sum
    }

    fn pattern(offset: u64, len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|j| ((offset + j) % 251) as u8)
            .collect()
    }

    pub fn checksum_of_pattern(n: u64) -> u64 {
        let mut sum = 0;
        let mut offset = 0;
        while offset < n {
            let len = (n - offset).min(65536);
            sum = checksum(sum, &pattern(offset, len as usize));
            offset += len;
        }
        sum
    }

    pub fn main() -> ExitCode {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("helper: {e}");
                return ExitCode::FAILURE;
            }
        };
        let served = rt.block_on(async {
            let app = Router::new()
                .route("/echo", any(echo))
                .route("/echo/{*rest}", any(echo))
                .route("/status/{code}", get(status))
                .route("/count", post(count))
                .route("/bytes", get(bytes))
                .route("/ws", get(ws))
                .route("/raw", get(raw));
            let listener = tokio::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    term.recv().await;
                })
                .await
        });
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("helper: {e}");
                ExitCode::FAILURE
            }
        }
    }

    async fn echo(req: Request) -> axum::Json<Value> {
        let headers: BTreeMap<String, String> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("<binary>").to_owned()))
            .collect();
        axum::Json(json!({
            "method": req.method().as_str(),
            "uri": req.uri().to_string(),
            "headers": headers,
        }))
    }

    async fn status(Path(code): Path<u16>) -> Response {
        let mut resp = (
            StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
            "status",
        )
            .into_response();
        resp.headers_mut()
            .insert("x-helper", HeaderValue::from_static("yes"));
        resp
    }

    async fn count(body: Body) -> Result<axum::Json<Value>, StatusCode> {
        let mut stream = body.into_data_stream();
        let (mut n, mut sum) = (0u64, 0u64);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
            n += chunk.len() as u64;
            sum = checksum(sum, &chunk);
        }
        Ok(axum::Json(json!({ "bytes": n, "sum": sum })))
    }

    async fn bytes(Query(q): Query<HashMap<String, u64>>) -> Body {
        let n = q.get("n").copied().unwrap_or(0);
        let chunks = futures_util::stream::unfold(0u64, move |offset| async move {
            (offset < n).then(|| {
                let len = (n - offset).min(65536);
                (
                    Ok::<_, std::io::Error>(pattern(offset, len as usize)),
                    offset + len,
                )
            })
        });
        Body::from_stream(chunks)
    }

    async fn ws(upgrade: WebSocketUpgrade) -> Response {
        upgrade
            .protocols(["bf-test"])
            .max_message_size(64 << 20)
            .on_upgrade(|mut socket| async move {
                while let Some(Ok(msg)) = socket.recv().await {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                    let echo = matches!(msg, Message::Text(_) | Message::Binary(_));
                    if echo && socket.send(msg).await.is_err() {
                        break;
                    }
                }
            })
    }

    async fn raw(mut req: Request) -> Response {
        if req.headers().get(UPGRADE).map(|v| v.as_bytes()) != Some(b"bf-raw".as_slice()) {
            return (StatusCode::BAD_REQUEST, "needs Upgrade: bf-raw").into_response();
        }
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut wr).await;
            }
        });
        let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
        resp.headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("bf-raw"));
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        resp
    }
}

//! `cargo xtask dev`: the whole platform on local state.
//!
//! Local state (D1, R2, Durable Objects, queues, workflows) lives in
//! `.burstflare/state` and survives restarts; `--fresh` starts empty.
//! Sessions run on the local Docker Engine through `burstflare-runner`, which
//! is started here (Docker too, when it is installed but not running, and the
//! runtime image and its editor variant are built when their inputs changed).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::build::{self, Wasm};
use crate::test::Images;
use crate::tools::{self, Toolchain};
use crate::{config, proc};

/// Applies every migration in `migrations/` to the local D1 state in `state`.
pub fn migrate_local(t: &Toolchain, config: &str, state: &str) -> Result<()> {
    proc::run(t.wrangler().args([
        "d1",
        "migrations",
        "apply",
        "DB",
        "--local",
        "--config",
        config,
        "--persist-to",
        state,
    ]))
}

/// The runner `cargo xtask dev` starts next to wrangler.
pub struct DevRunner {
    pub url: String,
    pub secret: String,
    child: Child,
}

impl Drop for DevRunner {
    fn drop(&mut self) {
        // SIGTERM via kill(1) would need nix here; the runner has nothing to
        // flush and never touches containers on exit, so a kill is enough.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `burstflare-runner` on 127.0.0.1:`port` with a fresh secret.
pub fn spawn_runner(t: &Toolchain, port: u16) -> Result<DevRunner> {
    if http_status(port, "/v1/health").is_some() {
        bail!("runner port {port} is in use; stop what is running there or pass --runner-port");
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let bin = crate::image::target_dir(&t.root).join("debug/burstflare-runner");
    let mut cmd = std::process::Command::new(&bin);
    cmd.args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--instance",
        "dev",
    ])
    .env("BURSTFLARE_RUNNER_SECRET", &secret)
    .stdin(Stdio::null());
    eprintln!(
        "$ {} --listen 127.0.0.1:{port} --instance dev",
        bin.display()
    );
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("burstflare-runner did not listen on {port} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(DevRunner {
        url: format!("http://127.0.0.1:{port}"),
        secret,
        child,
    })
}

/// Starts `wrangler dev` on 127.0.0.1:`port` with local state in `state`,
/// sessions on `runner` and the session images `images`.
pub fn spawn_wrangler(
    t: &Toolchain,
    config: &str,
    state: &str,
    port: u16,
    runner: &DevRunner,
    images: &Images,
) -> Result<Child> {
    let mut cmd = t.wrangler();
    cmd.args([
        "dev",
        "--config",
        config,
        "--persist-to",
        state,
        "--ip",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--inspector-port",
        "0",
        "--test-scheduled",
        "--show-interactive-dev-session=false",
        "--log-level",
        "info",
    ])
    .args(["--var", &format!("RUNNER_URL:{}", runner.url)])
    .args(["--var", &format!("RUNTIME_IMAGE:{}", images.runtime)])
    .args(["--var", &format!("EDITOR_IMAGE:{}", images.editor)])
    // Upload URLs, device-login links and passkey origins follow the port.
    .args(["--var", &format!("PUBLIC_URL:http://localhost:{port}")])
    .args([
        "--var",
        &format!("WEBAUTHN_ORIGINS:http://localhost:{port},http://127.0.0.1:{port}"),
    ])
    .stdin(Stdio::null());
    eprintln!("$ {}", proc::display(&cmd));
    // The secret is passed after printing the command line.
    cmd.args(["--var", &format!("RUNNER_SECRET:{}", runner.secret)]);
    cmd.spawn().context("cannot start wrangler dev")
}

/// The status code of `GET path` on 127.0.0.1:`port`, if anything answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

pub fn run(port: u16, runner_port: u16, fresh: bool) -> Result<()> {
    let t = tools::bootstrap()?;
    build::all(&t, Wasm { optimize: false })?;
    let images = crate::test::images()?;
    let config = config::render("dev")?.to_string_lossy().into_owned();
    let state_dir = t.root.join(".burstflare/state");
    if fresh && state_dir.exists() {
        std::fs::remove_dir_all(&state_dir)
            .with_context(|| format!("cannot remove {}", state_dir.display()))?;
    }
    let state = state_dir.to_string_lossy().into_owned();
    migrate_local(&t, &config, &state)?;
    if http_status(port, "/").is_some() {
        bail!("port {port} is in use; stop what is running there or pass --port");
    }

    // The terminal's Ctrl-C reaches wrangler too (same process group); xtask
    // waits for it to finish shutting down instead of dying first.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("cannot handle Ctrl-C")?;

    let runner = spawn_runner(&t, runner_port)?;
    let mut child = spawn_wrangler(&t, &config, &state, port, &runner, &images)?;
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut announced = false;
    let mut stop_deadline: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait()? {
            if interrupted.load(Ordering::SeqCst) {
                eprintln!("stopped.");
                return Ok(());
            }
            bail!("wrangler dev exited ({status})");
        }
        if interrupted.load(Ordering::SeqCst) {
            let at = *stop_deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(10));
            if Instant::now() >= at {
                let _ = child.kill();
            }
        } else if !announced {
            match http_status(port, "/api/v1/health") {
                Some(200) => {
                    announced = true;
                    eprintln!();
                    eprintln!("BurstFlare is running at {url}");
                    eprintln!("  web app:   {url}/");
                    eprintln!("  health:    target/debug/burstflare --api-url {url} status");
                    eprintln!(
                        "  sign up:   target/debug/burstflare --api-url {url} auth register --email you@example.com --name You"
                    );
                    eprintln!("  state:     {state}");
                    eprintln!(
                        "  sessions:  burstflare-runner at {} (images {} and {})",
                        runner.url, images.runtime, images.editor
                    );
                    eprintln!("Press Ctrl-C to stop.");
                }
                Some(code) if Instant::now() > deadline => {
                    bail!("{url}/api/v1/health answers {code}; see the log above")
                }
                _ if Instant::now() > deadline => {
                    let _ = child.kill();
                    bail!("wrangler dev did not come up within 120 s")
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

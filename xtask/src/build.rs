//! Building the web app, the Worker and the native binaries, and deploying.

use std::env;
use std::process::Command;

use anyhow::{Result, bail};

use crate::tools::{self, Toolchain};
use crate::{config, proc};

#[derive(Debug, Clone, Copy)]
pub struct Wasm {
    /// Run wasm-opt (deploys); skipped for local runs to save time.
    pub optimize: bool,
}

/// Builds the Worker into `crates/burstflare-worker/build/` with worker-build,
/// pointing it at local wasm-bindgen, wasm-opt and esbuild (it would download
/// them from GitHub otherwise).
pub fn worker(t: &Toolchain, wasm: Wasm) -> Result<()> {
    web(t)?;
    let mut cmd = t.command(&t.worker_build);
    cmd.current_dir(t.root.join("crates/burstflare-worker"))
        .env("WASM_BINDGEN_BIN", &t.wasm_bindgen)
        .env("WASM_OPT_BIN", &t.wasm_opt)
        .env("ESBUILD_BIN", &t.esbuild)
        .arg("--release");
    if !wasm.optimize {
        cmd.arg("--no-opt");
    }
    proc::run(&mut cmd)
}

/// Bundles the web app (`web/build.mjs`: esbuild) into `web/dist/`, the
/// Worker's static assets; it prints the size of the dashboard's first load.
pub fn web(t: &Toolchain) -> Result<()> {
    proc::run(t.command("node").current_dir(&t.root).arg("web/build.mjs"))
}

/// The Worker plus every native binary.
pub fn all(t: &Toolchain, wasm: Wasm) -> Result<()> {
    worker(t, wasm)?;
    proc::run(Command::new(env!("CARGO")).current_dir(&t.root).args([
        "build",
        "--workspace",
        "--bins",
    ]))
}

/// Deploys `env_name`: remote D1 migrations first (so the new code never runs
/// against an older schema), then the Worker. `--dry-run` bundles offline.
pub fn deploy(env_name: &str, dry_run: bool) -> Result<()> {
    if env_name == "dev" {
        bail!("`dev` runs locally only (`cargo xtask dev`); deploy `staging` or `production`");
    }
    let t = tools::bootstrap()?;
    worker(&t, Wasm { optimize: true })?;
    if dry_run {
        let config = config::render(env_name)?;
        let config = config.to_string_lossy().into_owned();
        let outdir = t.root.join(format!("target/burstflare/dist-{env_name}"));
        return proc::run(t.wrangler().args([
            "deploy",
            "--dry-run",
            "--config",
            &config,
            "--outdir",
            &outdir.to_string_lossy(),
        ]));
    }
    if env::var_os("CLOUDFLARE_API_TOKEN").is_none() {
        bail!(
            "set CLOUDFLARE_API_TOKEN (and CLOUDFLARE_ACCOUNT_ID) to deploy; see docs/runbooks.md"
        );
    }
    // The runtime image goes to Cloudflare's registry under its content tag,
    // and the rendered config binds the SessionCoordinator to exactly that tag.
    let image = crate::image::ensure_runtime_image(false)?;
    let tag = image.rsplit(':').next().unwrap_or("latest").to_owned();
    let local = format!("burstflare-runtime:{tag}");
    proc::run(crate::docker::docker().args(["tag", &image, &local]))?;
    proc::run(t.wrangler().args(["containers", "push", &local]))?;
    let config = config::render_with(env_name, &tag)?;
    let config = config.to_string_lossy().into_owned();
    proc::run(t.wrangler().args([
        "d1",
        "migrations",
        "apply",
        "DB",
        "--remote",
        "--config",
        &config,
    ]))?;
    proc::run(t.wrangler().args(["deploy", "--config", &config]))
}

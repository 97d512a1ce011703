//! `cargo xtask bench <name>`: builds what the benchmarks need and runs the
//! `burstflare-bench` binary (crate `burstflare-e2e`), which boots its own
//! stack and prints its figures. Benchmarks measure; they never assert. The
//! CLI and runner are release builds, as users run them.

use std::process::Command;

use anyhow::{Result, bail};

use crate::build::{self, Wasm};
use crate::{proc, test, tools};

pub const BENCHMARKS: &[&str] = &["session-start", "ssh-throughput", "prebuild", "snapshot"];

pub fn run(name: &str, runs: Option<u32>, mb: Option<u32>) -> Result<()> {
    if !BENCHMARKS.contains(&name) {
        bail!(
            "unknown benchmark {name:?}; choose one of {}",
            BENCHMARKS.join(", ")
        );
    }
    let t = tools::bootstrap()?;
    build::all(&t, Wasm { optimize: false })?;
    let images = test::images()?;
    // Measure what users run: optimised CLI (the SSH stdio proxy) and runner.
    proc::run(Command::new(env!("CARGO")).current_dir(&t.root).args([
        "build",
        "--release",
        "-p",
        "burstflare-cli",
        "-p",
        "burstflare-runner",
    ]))?;
    let release = crate::image::target_dir(&t.root).join("release");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(&t.root)
        .args([
            "run",
            "-q",
            "-p",
            "burstflare-e2e",
            "--bin",
            "burstflare-bench",
            "--",
        ])
        .arg(name);
    if let Some(runs) = runs {
        cmd.args(["--runs", &runs.to_string()]);
    }
    if let Some(mb) = mb {
        cmd.args(["--mb", &mb.to_string()]);
    }
    test::harness_env(&mut cmd, &t, &images);
    cmd.env("BURSTFLARE_CLI_BIN", release.join("burstflare"))
        .env("BURSTFLARE_RUNNER_BIN", release.join("burstflare-runner"));
    proc::run(&mut cmd)
}

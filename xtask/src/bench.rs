//! `cargo xtask bench <name>`: builds what the benchmarks need and runs the
//! `burstflare-bench` binary (crate `burstflare-e2e`), which boots its own
//! stack and prints its figures. Benchmarks measure; they never assert.

use std::process::Command;

use anyhow::{Result, bail};

use crate::build::{self, Wasm};
use crate::{proc, test, tools};

pub const BENCHMARKS: &[&str] = &["session-start", "ssh-throughput"];

pub fn run(name: &str, runs: u32, mb: u32) -> Result<()> {
    if !BENCHMARKS.contains(&name) {
        bail!(
            "unknown benchmark {name:?}; choose one of {}",
            BENCHMARKS.join(", ")
        );
    }
    let t = tools::bootstrap()?;
    build::all(&t, Wasm { optimize: false })?;
    let image = test::runtime_image()?;
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
        .arg(name)
        .args(["--runs", &runs.to_string(), "--mb", &mb.to_string()]);
    test::harness_env(&mut cmd, &t, &image);
    proc::run(&mut cmd)
}

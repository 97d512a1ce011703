//! `cargo xtask test`: every check, ending with one summary line
//! (`summary: N passed, N failed, N skipped`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::build::{self, Wasm};
use crate::{proc, tools};

#[derive(Debug, Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Adds the counts of a libtest summary line (`test result: ok. 3 passed; 0 failed; 1 ignored; …`).
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let (n, what) = match words.as_slice() {
                [.., n, what] => (n.parse::<u64>().unwrap_or(0), *what),
                _ => continue,
            };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// Runs a test command, echoing its output and adding its summary lines.
fn run_tests(cmd: &mut Command, totals: &mut Totals) -> Result<bool> {
    eprintln!("$ {}", proc::display(cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", proc::display(cmd)))?;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            totals.add_line(&line);
        }
    }
    Ok(child.wait()?.success())
}

/// Docker up and the runtime image built (both cached; see `image`); the
/// `sqlite3` CLI, with which the e2e suite lists local R2 objects; Chromium
/// and chromedriver for the browser test.
pub fn runtime_image() -> Result<String> {
    crate::docker::ensure_docker()?;
    if crate::docker::find_program("sqlite3").is_none() {
        crate::docker::apt_install(&["sqlite3"])?;
    }
    // The browser test drives Debian's Chromium through its chromedriver.
    if crate::docker::find_program("chromium").is_none()
        || crate::docker::find_program("chromedriver").is_none()
    {
        crate::docker::apt_install(&["chromium", "chromium-driver"])?;
    }
    crate::image::ensure_runtime_image(false)
}

/// The session images a stack boots (their tags).
#[derive(Debug, Clone)]
pub struct Images {
    /// `RUNTIME_IMAGE`: every session and builder.
    pub runtime: String,
    /// `EDITOR_IMAGE`: sessions of templates with `editor = true`.
    pub editor: String,
}

/// [`runtime_image`] and the editor image built from it (cached; see `image`).
pub fn images() -> Result<Images> {
    let runtime = runtime_image()?;
    let editor = crate::image::ensure_editor_image_on(&runtime, false)?;
    Ok(Images { runtime, editor })
}

/// The environment through which the e2e harness (and the benchmarks) find
/// the tools xtask built instead of building them again.
pub fn harness_env(cmd: &mut Command, t: &tools::Toolchain, images: &Images) {
    let bin = crate::image::target_dir(&t.root).join("debug");
    cmd.env("BURSTFLARE_NODE_BIN_DIR", &t.node_bin_dir)
        .env("BURSTFLARE_WRANGLER", &t.wrangler)
        .env("BURSTFLARE_CLI_BIN", bin.join("burstflare"))
        .env("BURSTFLARE_RUNNER_BIN", bin.join("burstflare-runner"))
        .env("BURSTFLARE_RUNTIME_IMAGE", &images.runtime)
        .env("BURSTFLARE_EDITOR_IMAGE", &images.editor)
        .env("BURSTFLARE_WORKER_PREBUILT", "1");
}

pub fn run(lint: bool, e2e_filter: Option<&str>) -> Result<()> {
    let started = std::time::Instant::now();
    let t = tools::bootstrap()?;
    let cargo = || {
        let mut c = Command::new(env!("CARGO"));
        c.current_dir(&t.root);
        c
    };
    if lint {
        proc::run(cargo().args(["fmt", "--all", "--", "--check"]))
            .context("formatting differs; run `cargo fmt --all`")?;
        proc::run(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
        proc::run(cargo().args([
            "clippy",
            "-p",
            "burstflare-worker",
            "-p",
            "burstflare-domain",
            "-p",
            "burstflare-api",
            "--target",
            "wasm32-unknown-unknown",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    build::worker(&t, Wasm { optimize: false })?;
    proc::run(cargo().args(["build", "--workspace", "--bins"]))?;
    let images = images()?;

    let mut totals = Totals::default();
    let unit_ok = run_tests(
        cargo().args(["test", "--workspace", "--exclude", "burstflare-e2e"]),
        &mut totals,
    )?;
    let mut e2e = cargo();
    e2e.args(["test", "-p", "burstflare-e2e", "--test", "e2e", "--"]);
    harness_env(&mut e2e, &t, &images);
    if let Some(filter) = e2e_filter {
        e2e.arg(filter);
    }
    let e2e_ok = run_tests(&mut e2e, &mut totals)?;
    let ok = unit_ok && e2e_ok && totals.failed == 0;
    eprintln!(
        "xtask test: {} in {:.0?}",
        if ok {
            "all tests passed"
        } else {
            "tests FAILED"
        },
        started.elapsed()
    );
    // The summary is the last line printed, pass or fail.
    println!(
        "summary: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_summaries() {
        let mut t = Totals::default();
        t.add_line("test result: ok. 18 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.03s");
        t.add_line(
            "test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        t.add_line("running 4 tests");
        assert_eq!((t.passed, t.failed, t.ignored), (21, 1, 2));
    }
}

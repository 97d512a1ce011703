//! `cargo xtask`: the project's developer tasks.
//!
//! * `dev`: bootstrap the toolchain, build, apply D1 migrations to local
//!   state, run `wrangler dev` and print its URL; Ctrl-C stops everything.
//! * `test`: formatting, clippy (native and wasm32), unit tests and the
//!   end-to-end suite, ending with one summary line.
//! * `build`: the Worker (wasm, via worker-build) and the native binaries.
//! * `config <env>`: render the Wrangler config for `dev`, `staging` or `production`.
//! * `deploy <env>`: apply remote D1 migrations and `wrangler deploy` (or `--dry-run`).
//! * `bootstrap`: install missing tools only; `env` prints them for scripts.
//! * `bench <name>`: benchmarks on the real stack (`session-start`,
//!   `ssh-throughput`, `prebuild`, `snapshot`), printed as figures.
//! * `image`: build the session runtime image (`images/runtime`) if its inputs
//!   changed and print its tag; `--editor` builds its editor variant
//!   (`images/editor`, code-server) as well and prints that one's tag.
//!
//! Tool installs are cached (`~/.cargo/bin`, `~/.cache/burstflare`,
//! `node_modules`) and skipped when present.

mod bench;
mod build;
mod config;
mod dev;
mod docker;
mod editor;
mod image;
mod proc;
mod test;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "BurstFlare developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bring the platform up on local state and print its URL.
    Dev {
        /// Port for `wrangler dev`.
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// Start from empty local state (deletes `.burstflare/state`).
        #[arg(long)]
        fresh: bool,
        /// Port for `burstflare-runner`.
        #[arg(long, default_value_t = 7171)]
        runner_port: u16,
    },
    /// Run every check: fmt, clippy (native + wasm32), unit and end-to-end tests.
    Test {
        /// Skip fmt and clippy.
        #[arg(long)]
        no_lint: bool,
        /// Only run end-to-end tests whose name contains this.
        #[arg(long)]
        e2e_filter: Option<String>,
    },
    /// Build the Worker and the native binaries.
    Build {
        /// Optimise the wasm with wasm-opt (slower; what deploys use).
        #[arg(long)]
        optimize: bool,
    },
    /// Render the Wrangler config for an environment and print its path.
    Config { env: String },
    /// Deploy to an environment (migrations, then the Worker).
    Deploy {
        env: String,
        /// Bundle without uploading (works offline).
        #[arg(long)]
        dry_run: bool,
    },
    /// Install missing tools and exit.
    Bootstrap,
    /// Bootstrap, build the Worker and print `KEY=value` lines for the e2e harness.
    Env,
    /// Measure on the real stack and print figures.
    Bench {
        /// `session-start` (create+start → ssh vs raw docker run),
        /// `ssh-throughput` (scp through BurstFlare vs direct), `prebuild`
        /// (prebuilt layer vs setup at boot) or `snapshot` (save/restore vs
        /// raw tar|zstd, incremental save, wake latency, peak memory).
        name: String,
        /// Runs (default per benchmark).
        #[arg(long)]
        runs: Option<u32>,
        /// Size in MB for `ssh-throughput` (100) and `snapshot` (500).
        #[arg(long)]
        mb: Option<u32>,
    },
    /// Build the session runtime image if its inputs changed; print its tag.
    Image {
        /// Build even if the tag exists, without Docker's layer cache.
        #[arg(long)]
        rebuild: bool,
        /// Build the editor image (the runtime image plus code-server) as
        /// well, and print its tag instead.
        #[arg(long)]
        editor: bool,
    },
}

/// The repository root (xtask lives one level below it).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev {
            port,
            fresh,
            runner_port,
        } => dev::run(port, runner_port, fresh),
        Command::Test {
            no_lint,
            e2e_filter,
        } => test::run(!no_lint, e2e_filter.as_deref()),
        Command::Build { optimize } => {
            tools::bootstrap().and_then(|t| build::all(&t, build::Wasm { optimize }))
        }
        Command::Config { env } => config::render(&env).map(|p| println!("{}", p.display())),
        Command::Deploy { env, dry_run } => build::deploy(&env, dry_run),
        Command::Bootstrap => tools::bootstrap().map(|t| t.describe()),
        Command::Env => tools::bootstrap().and_then(|t| {
            build::worker(&t, build::Wasm { optimize: false })?;
            t.print_env();
            let images = test::images()?;
            println!("BURSTFLARE_RUNTIME_IMAGE={}", images.runtime);
            println!("BURSTFLARE_EDITOR_IMAGE={}", images.editor);
            Ok(())
        }),
        Command::Image { rebuild, editor } => image::run(rebuild, editor),
        Command::Bench { name, runs, mb } => bench::run(&name, runs, mb),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  Caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

//! The `burstflare-runner` binary: parses flags, reads the secret from the
//! environment, sets up logging (`RUST_LOG`, default `info`, to stderr) and
//! serves until SIGTERM/SIGINT.
//!
//! Exit codes: 0 after a clean shutdown, 2 for configuration errors (nothing
//! was started), 1 when serving failed (e.g. the address is in use).

use std::io::IsTerminal;
use std::process::ExitCode;

use burstflare_runner::config::{Args, Config, SECRET_ENV};
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    let config = match Config::new(args, std::env::var(SECRET_ENV).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\nhint: {}", e.hint());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime\nCaused by: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "error: cannot listen on {}\nCaused by: {e}\nhint: pick a free address with --listen",
                    config.listen
                );
                return ExitCode::from(1);
            }
        };
        match burstflare_runner::serve(listener, &config, burstflare_runner::shutdown_signal())
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: the runner stopped serving\nCaused by: {e}");
                ExitCode::from(1)
            }
        }
    })
}

//! `burstflare-runner`: the runtime host for Docker (DESIGN.md §4).
//!
//! It will expose an HTTP API authenticated by a shared secret to create,
//! start, stop, delete and inspect session containers (labelled with session id
//! and generation, with CPU/memory/pids limits and ports published on
//! 127.0.0.1 only) and proxy HTTP and WebSocket traffic to container ports.
//! The sessions issue builds it; until then it only reports that it is not
//! implemented.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "burstflare-runner {}: not implemented yet (see the sessions issue)",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}

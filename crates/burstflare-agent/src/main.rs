//! `burstflare-agent`: runs as the child of `tini` inside every session
//! container (DESIGN.md §5).
//!
//! It will supervise `sshd`, install the authorized keys it is given, and serve
//! `/healthz`, `/activity`, `/ssh` (WebSocket ↔ 127.0.0.1:22), `/terminal`
//! (WebSocket ↔ PTY), `/snapshot`, `/restore` and `/layer`, authenticated by a
//! per-session secret. The sessions issue builds it; until then it only
//! reports that it is not implemented.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "burstflare-agent {}: not implemented yet (see the sessions issue)",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}

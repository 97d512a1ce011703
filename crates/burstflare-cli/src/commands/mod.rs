//! Subcommand implementations that outgrew `main.rs`.

pub mod builds;
pub mod identity;
pub mod sessions;
pub mod snapshots;
pub mod templates;
pub mod workspaces;

use burstflare_cli::client::ClientError;
use burstflare_cli::error::CliError;

/// Maps a failed API call to a CLI error under `context`.
pub fn api(context: impl Into<String>) -> impl FnOnce(ClientError) -> CliError {
    let context = context.into();
    move |e| CliError::from_client(context, e)
}

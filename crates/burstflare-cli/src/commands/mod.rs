//! Subcommand implementations that outgrew `main.rs`.

pub mod identity;
pub mod sessions;
pub mod workspaces;

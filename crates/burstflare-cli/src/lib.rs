//! The `burstflare` CLI as a library: the typed API [`client`], the on-disk
//! [`config`], the CLI's [`error`] rendering and the [`ssh`] integration. The binary (`src/main.rs`)
//! is a thin clap layer over these, and the end-to-end tests drive the API
//! through the same client.

pub mod client;
pub mod config;
pub mod error;
pub mod snapshot_files;
pub mod ssh;

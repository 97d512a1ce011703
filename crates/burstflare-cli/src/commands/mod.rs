//! Subcommand implementations that outgrew `main.rs`.

pub mod sessions;

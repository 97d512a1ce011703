//! The end-to-end harness: boots the real stack once and tears it down.
//!
//! [`Stack::start`] renders the dev Wrangler config (through xtask), starts
//! `wrangler dev` on a free port with a fresh `--persist-to` directory,
//! applies the D1 migrations and waits for `/api/v1/health`. Dropping the
//! stack kills wrangler's whole process group, so nothing outlives a run, a
//! failed test or a panic. Tests isolate themselves by registering their own
//! users ([`Stack::register`]).
//!
//! Each stack runs its own [`Runner`] (burstflare-runner on the local Docker
//! Engine) and passes its URL, secret and the runtime and editor image tags
//! to `wrangler dev` with `--var`.
//!
//! Tool paths come from the environment `cargo xtask test` sets
//! (`BURSTFLARE_WRANGLER`, `BURSTFLARE_NODE_BIN_DIR`, `BURSTFLARE_CLI_BIN`,
//! `BURSTFLARE_RUNNER_BIN`, `BURSTFLARE_RUNTIME_IMAGE`, `BURSTFLARE_EDITOR_IMAGE`);
//! run standalone, the harness asks xtask to bootstrap and build first.

pub mod passkey;
pub mod runner;
pub mod siteverify;
pub mod stack;
pub mod user;
pub mod webdriver;

pub use runner::Runner;
pub use stack::{Stack, Tools};

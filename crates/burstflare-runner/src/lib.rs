//! `burstflare-runner`: the runtime host for Docker (DESIGN.md §4).
//!
//! A native daemon on a Docker host that the Worker's runner adapter drives over
//! HTTP with a shared secret: it creates, starts, stops, removes and inspects
//! session containers (labelled with the session id, generation and the
//! runner's instance name; CPU/memory/pids limits; ports published on
//! 127.0.0.1 only) and proxies HTTP and upgraded (WebSocket) connections to
//! container ports. It keeps no state: Docker labels are the truth, so a
//! restarted runner picks up where it left off.
//!
//! Modules: [`config`] (flags, secret), [`spec`] (request validation → Docker
//! spec), [`docker`] (Docker Engine operations), [`routes`] (HTTP API),
//! [`proxy`] (reverse proxy), [`error`] (the error envelope), [`server`]
//! (serve and shut down).

pub mod config;
pub mod docker;
pub mod error;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod spec;

pub use config::{Args, Config, ConfigError};
pub use docker::Engine;
pub use error::RunnerError;
pub use routes::{AppState, router};
pub use server::{serve, shutdown_signal};

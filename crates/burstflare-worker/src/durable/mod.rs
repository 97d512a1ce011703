//! Durable Object classes and the Worker-side helpers that call them.

pub mod agent_run;
pub mod build_runner;
pub mod rate_limiter;
pub mod session_coordinator;
pub mod snapshot_io;

pub use build_runner::BuildRunner;
pub use rate_limiter::RateLimiter;
pub use session_coordinator::{SessionCoordinator, ping};

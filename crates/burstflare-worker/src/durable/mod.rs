//! Durable Object classes and the Worker-side helpers that call them.

pub mod rate_limiter;
pub mod session_coordinator;

pub use rate_limiter::RateLimiter;
pub use session_coordinator::{SessionCoordinator, ping};

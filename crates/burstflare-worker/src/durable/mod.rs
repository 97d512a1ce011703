//! Durable Object classes and the Worker-side helpers that call them.

pub mod session_coordinator;

pub use session_coordinator::{SessionCoordinator, ping};

//! The BurstFlare Worker: the control plane of the platform.
//!
//! Entry points:
//! * `fetch` serves `/api/v1` (static assets from `web/` are served by the
//!   runtime before the Worker sees a request);
//! * `queue` consumes the build, reconcile and dead-letter queues;
//! * `scheduled` runs the cron reconcile trigger;
//! * [`workflow_step`] is called by the JS `BuildWorkflow` shim
//!   (`js/entry.mjs`), because workers-rs has no Workflow entrypoint.
//!
//! Layers: `routes` (parse, authenticate, call one service) → `services`
//! (decisions from `burstflare-domain`, orchestration) → `store` (D1 SQL, R2
//! keys) and `durable` (Durable Object classes). Handlers never build SQL.
//! Worker code never panics: a panic kills the isolate.

mod auth;
mod cron;
mod durable;
mod error;
mod http;
mod platform;
mod queues;
mod routes;
mod runtime;
mod services;
mod store;
mod workflow;

pub use durable::{BuildRunner, RateLimiter, SessionCoordinator};
pub use workflow::workflow_step;

use worker::{
    Context, Env, MessageBatch, Request, Response, ScheduleContext, ScheduledEvent, event,
};

/// Migration names embedded at build time (see `build.rs`).
mod migrations {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    routes::handle(req, env).await
}

#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    queues::consume(batch, env).await;
    Ok(())
}

#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    cron::run(event, env).await;
}

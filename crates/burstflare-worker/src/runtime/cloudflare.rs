//! Runtime adapter for Cloudflare Containers: the `SessionCoordinator` class is
//! bound to a container image in the generated Wrangler config (`[[containers]]`),
//! so each Durable Object owns at most one container, reached through
//! `ctx.container`.
//!
//! Mirrors the runner adapter: `start` passes the environment and the
//! entrypoint (tini → burstflare-agent, as in the image), `status` is `running()`,
//! `destroy` sends SIGTERM, waits for the exit up to a grace period and then
//! destroys, and `fetch` goes through `get_tcp_port(port).fetch`, which carries
//! WebSocket upgrades. CPU and memory come from the container's `instance_type`
//! in the Wrangler config rather than per start. This adapter cannot run under
//! `wrangler dev` here (no Docker Hub, no buildx); see docs/runtime.md for what
//! is verified.

use std::time::Duration;

use burstflare_api::runtime::AGENT_ENTRYPOINT;
use futures_util::future::{Either, select};
use worker::{Container, ContainerStartupOptions, Delay, Request, Response, State};

use super::{Observed, RuntimeError, RuntimeResult, StartSpec, upstream_request};

const SIGTERM: i32 = 15;
const STOP_GRACE: Duration = Duration::from_secs(5);

pub struct CloudflareRuntime {
    container: Container,
}

impl CloudflareRuntime {
    pub fn new(state: &State) -> RuntimeResult<Self> {
        let container = state.container().ok_or_else(|| {
            RuntimeError::new(
                "this Durable Object has no container; check the [[containers]] section of the Wrangler config",
            )
        })?;
        Ok(Self { container })
    }

    pub fn start(&self, spec: &StartSpec) -> RuntimeResult<String> {
        let handle = format!("bf-{}-g{}", spec.session_id, spec.generation);
        if self.container.running() {
            return Ok(handle);
        }
        let mut options = ContainerStartupOptions::new();
        // Explicit, so an image built with another entrypoint still boots the agent.
        options.set_entrypoint(&AGENT_ENTRYPOINT);
        for (key, value) in &spec.env {
            options.add_env(key, value);
        }
        options.enable_internet(true);
        self.container.start(Some(options))?;
        Ok(handle)
    }

    pub fn status(&self) -> Observed {
        if self.container.running() {
            Observed::Running
        } else {
            Observed::Exited("the container is not running".into())
        }
    }

    pub async fn destroy(&self) -> RuntimeResult<()> {
        if !self.container.running() {
            return Ok(());
        }
        self.container.signal(SIGTERM)?;
        let exit = self.container.wait_for_exit();
        let grace = Delay::from(STOP_GRACE);
        futures_util::pin_mut!(exit, grace);
        if let Either::Right(_) = select(exit, grace).await {
            self.container
                .destroy(Some("stopped by BurstFlare"))
                .await?;
        }
        Ok(())
    }

    pub async fn fetch(
        &self,
        port: u16,
        path_and_query: &str,
        req: &Request,
        extra: &[(&str, &str)],
    ) -> RuntimeResult<Response> {
        let url = format!("http://container{path_and_query}");
        let upstream = upstream_request(&url, req, extra)?;
        Ok(self
            .container
            .get_tcp_port(port)?
            .fetch_request(upstream)
            .await?)
    }
}

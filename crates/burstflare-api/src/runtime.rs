//! Wire types of the session runtime: the `burstflare-runner` HTTP API the
//! Worker's runner adapter calls, and the `burstflare-agent` HTTP/WebSocket API
//! inside every session container.
//!
//! Authentication:
//! * runner: `Authorization: Bearer <runner secret>` on every request
//!   (the secret is shared between the Worker and the runner);
//! * agent: `x-burstflare-agent-token: <per-session secret>` on every request
//!   (the control plane generates it per container start and passes it in the
//!   container environment as [`ENV_AGENT_SECRET`]). The runner's proxy strips
//!   `Authorization` and forwards every other header, so the two never mix.
//!
//! Errors from both use the API's [`crate::ErrorEnvelope`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The port the agent listens on inside the container.
pub const AGENT_PORT: u16 = 7070;
/// The port sshd listens on inside the container.
pub const SSH_PORT: u16 = 22;
/// Header carrying the per-session agent secret.
pub const AGENT_TOKEN_HEADER: &str = "x-burstflare-agent-token";

/// Container environment: the agent secret (required).
pub const ENV_AGENT_SECRET: &str = "BURSTFLARE_AGENT_SECRET";
/// Container environment: newline-separated OpenSSH public keys for the login user.
pub const ENV_AUTHORIZED_KEYS: &str = "BURSTFLARE_AUTHORIZED_KEYS";
/// Container environment: the session id (for logs and the prompt).
pub const ENV_SESSION_ID: &str = "BURSTFLARE_SESSION_ID";
/// Container environment: the agent's listen port (default [`AGENT_PORT`]).
pub const ENV_AGENT_PORT: &str = "BURSTFLARE_AGENT_PORT";
/// Container environment: the session's user environment as a JSON object
/// (string → string); the agent makes it visible to SSH sessions and terminals.
pub const ENV_SESSION_ENV: &str = "BURSTFLARE_SESSION_ENV";
/// Container environment: the port the browser editor (code-server) listens
/// on. Set only for templates with `editor = true`, whose sessions run the
/// editor variant of the runtime image; unset, the agent runs no editor.
pub const ENV_EDITOR_PORT: &str = "BURSTFLARE_EDITOR_PORT";
/// The port the browser editor listens on inside the container (a reserved
/// port: manifests cannot declare it).
pub use burstflare_domain::template::EDITOR_PORT;
/// The runtime image's entrypoint: tini as PID 1 running the agent.
pub const AGENT_ENTRYPOINT: [&str; 3] = ["/usr/bin/tini", "--", "/usr/local/bin/burstflare-agent"];
/// The login user of the runtime image.
pub const LOGIN_USER: &str = "dev";

/// Docker labels the runner puts on every container it creates.
pub const LABEL_MANAGED: &str = "dev.burstflare.managed";
pub const LABEL_RUNNER: &str = "dev.burstflare.runner";
pub const LABEL_SESSION: &str = "dev.burstflare.session";
pub const LABEL_GENERATION: &str = "dev.burstflare.generation";

/// Resource limits applied to a container (from the instance type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimits {
    /// CPU limit in milli-CPUs (1000 = one CPU).
    pub cpu_millis: u32,
    /// Memory limit in MiB (swap is not added on top).
    pub memory_mib: u32,
    /// Maximum number of processes.
    pub pids: u32,
}

/// `POST /v1/containers`: create and start the container for one generation of a session.
///
/// Idempotent: if a container for `(session_id, generation)` exists already it
/// is started if needed and returned (200 instead of 201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateContainer {
    pub session_id: String,
    /// Incremented on every start; older generations of a session are stale.
    pub generation: u64,
    pub image: String,
    pub limits: ResourceLimits,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Container ports to publish on 127.0.0.1 (ephemeral host ports).
    pub ports: Vec<u16>,
    /// Overrides the image's command (the image's entrypoint is kept); used by
    /// builders and tests. Sessions leave it unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
}

/// What the runner observes about a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerStatus {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

/// `GET /v1/containers/{name}` and the body of create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// The runner's name for the container (`bf-<session>-g<generation>`); used in every path.
    pub name: String,
    /// Docker's container id.
    pub docker_id: String,
    pub session_id: String,
    pub generation: u64,
    pub image: String,
    pub status: ContainerStatus,
    /// Exit code once exited.
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// Docker's error text when the container failed to run.
    pub error: Option<String>,
    /// RFC 3339, as Docker reports it.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Container port → 127.0.0.1 host port.
    pub ports: BTreeMap<u16, u16>,
}

/// `GET /v1/containers` (optionally `?session_id=`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerList {
    pub items: Vec<ContainerInfo>,
}

/// `POST /v1/containers/{name}/stop`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopContainer {
    /// Seconds to wait after SIGTERM before SIGKILL (default 10).
    #[serde(default)]
    pub timeout_secs: Option<u32>,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunnerHealth {
    /// This runner's instance label value.
    pub runner: String,
    /// The Docker Engine version; absent when Docker is unreachable (the answer is then 503).
    pub docker_version: Option<String>,
    /// Containers this runner manages, by status.
    pub containers: usize,
}

/// Agent `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHealth {
    pub status: AgentStatus,
    /// Whether sshd is running right now.
    pub sshd_running: bool,
    /// How many times the agent restarted sshd after it died.
    pub sshd_restarts: u64,
    /// The container's SSH host public keys (`ssh-ed25519 AAAA…`), generated at first boot.
    pub host_keys: Vec<String>,
    pub agent_version: String,
    pub uptime_ms: u64,
    /// `sha256:<hex>` of the image's base manifest (what template layers are
    /// captured against and applied onto); none when the image has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_digest: Option<String>,
    /// The browser editor, when the container runs one ([`ENV_EDITOR_PORT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub editor: Option<EditorHealth>,
}

/// The browser editor (code-server) in the agent's `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditorHealth {
    /// The port it listens on (all interfaces).
    pub port: u16,
    /// Whether it is running right now.
    pub running: bool,
    /// Why it is not running (missing from the image, exited and about to be
    /// restarted, …); none while it runs.
    pub error: Option<String>,
}

/// Request header naming the SHA-256 (hex) a layer sent to the agent's
/// `/layer/apply` must have; a layer that does not match is not applied.
pub const LAYER_SHA256_HEADER: &str = "x-layer-sha256";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// sshd is up and the host keys exist.
    Ok,
    /// The agent is up but sshd is not (yet) accepting connections.
    Starting,
}

/// Activity of one channel as the agent saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelActivity {
    /// Unix milliseconds of the last byte from the user, if any.
    pub last_input_ms: Option<i64>,
    /// Unix milliseconds of the last byte to the user, if any.
    pub last_output_ms: Option<i64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Connections open right now.
    pub open: u32,
}

/// Agent `GET /activity`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentActivity {
    pub ssh: ChannelActivity,
    pub terminal: ChannelActivity,
    /// The platform sent the agent SIGTERM and it waits (up to
    /// [`ENV_DRAIN_SECS`]) for a final snapshot before it exits.
    #[serde(default)]
    pub draining: bool,
}

/// How many seconds the agent, on SIGTERM from the platform, keeps serving
/// snapshot requests (sshd and terminals stopped) before it exits, unless the
/// control plane releases it first (`POST /lifecycle/release`). Unset or 0:
/// it exits at once. Set by the control plane for sessions with persisted paths.
pub const ENV_DRAIN_SECS: &str = "BURSTFLARE_DRAIN_SECS";

/// Control messages of the agent's `/terminal` WebSocket, sent as **text** frames.
/// Binary frames carry raw terminal bytes in both directions.
///
/// Client → agent: `{"type":"resize","cols":120,"rows":40}`.
/// Agent → client: `{"type":"ready","terminal_id":"…"}` once attached (pass it back as
/// `?terminal_id=` to reattach after a disconnect) and `{"type":"exit","code":0}`
/// when the shell ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TerminalControl {
    Resize { cols: u16, rows: u16 },
    Ready { terminal_id: String },
    Exit { code: i32 },
}

//! Sessions and SSH keys on the wire (`/api/v1/sessions…`, `/api/v1/ssh-keys…`).

use std::collections::BTreeMap;

use burstflare_domain::{
    DesiredState, InstanceType, SessionId, SessionState, SshKeyId, UserId, WorkspaceId,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What a session boots: a template release's image and layer (see
/// [`ReleaseBoot`]) or the platform's default image; size, environment and
/// persisted paths come from the release and the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeSpec {
    /// The runtime image (set by the platform, not by the caller).
    pub image: String,
    pub instance_type: InstanceType,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Absolute paths kept across sleep, stop and restart (snapshotted
    /// before, restored after).
    #[serde(default)]
    pub persisted_paths: Vec<String>,
    /// Seconds without activity after which the running session sleeps (the
    /// release's `sleep_ttl`; none: the deployment's `SESSION_SLEEP_TTL_SECONDS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_ttl_secs: Option<u32>,
    /// Seconds the session may sleep before the reconcile job deletes it (the
    /// release's `retention`; none: `SESSION_RETENTION_SECONDS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_secs: Option<u32>,
    /// The template release the session boots: its layer is applied and its
    /// start commands run before the session is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseBoot>,
}

/// What a session takes from its template's release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseBoot {
    pub template_id: burstflare_domain::TemplateId,
    pub release_id: burstflare_domain::ReleaseId,
    /// The layer's R2 key and SHA-256.
    pub layer_key: String,
    pub layer_digest: String,
    pub start: Vec<String>,
    /// The ports the release declares: published by the runtime and reachable
    /// at `/sessions/{id}/preview/{port}/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Whether the session serves the browser editor (`/sessions/{id}/editor/`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub editor: bool,
}

/// `POST /api/v1/sessions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    pub name: String,
    /// Defaults to the caller's personal workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<WorkspaceId>,
    /// Defaults to `small`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<InstanceType>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Defaults to `["/home/dev"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persisted_paths: Option<Vec<String>>,
    /// Start the session right away (the call returns once it is running).
    #[serde(default)]
    pub start: bool,
    /// Boot this template's active release (template name or id, in the
    /// session's workspace); without it, the platform's default environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Boot this release of the template instead of its active one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_id: Option<String>,
}

/// A session as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub name: String,
    pub workspace_id: WorkspaceId,
    pub owner_id: UserId,
    pub state: SessionState,
    pub desired_state: DesiredState,
    /// What the runtime last reported (`running`, `exited`, `absent`, `unreachable`).
    pub runtime_status: Option<String>,
    /// The runtime's own detail (container name, exit code, error).
    pub runtime_state: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub runtime_updated_at: Option<OffsetDateTime>,
    /// Increases with every lifecycle write; older projections are ignored.
    pub state_version: i64,
    /// Incremented on every start; each generation is a new container.
    pub generation: i64,
    /// Why the session is `failed`, if it is.
    pub failure_reason: Option<String>,
    pub spec: RuntimeSpec,
    /// The running container's SSH host keys, for known_hosts pinning.
    pub ssh_host_keys: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Response of a lifecycle command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandResult {
    pub session: Session,
    /// True when the session was already in (or heading to) the requested state.
    pub already_done: bool,
}

/// One entry of a session's activity log: why it stayed awake or slept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `awake`, `idle`, `sleep`, `sleep_failed`, `wake` or `drain`.
    pub kind: String,
    pub detail: String,
}

/// One entry of a session's event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEvent {
    /// The `state_version` this transition produced.
    pub seq: i64,
    pub from_state: SessionState,
    pub to_state: SessionState,
    /// The command that caused it, or `None` for runtime observations.
    pub command: Option<String>,
    /// `usr_…` for users, `system` for the platform.
    pub actor: String,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// `POST /api/v1/ssh-keys`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddSshKeyRequest {
    /// Defaults to the key's comment, else its fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub public_key: String,
}

/// A registered SSH public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKey {
    pub id: SshKeyId,
    pub name: String,
    pub algorithm: String,
    pub fingerprint: String,
    pub public_key: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

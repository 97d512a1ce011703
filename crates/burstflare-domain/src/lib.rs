//! Pure BurstFlare domain logic.
//!
//! Everything here is deterministic: no clock, randomness, environment or I/O.
//! Callers pass `now` (Unix milliseconds) and random bytes in. The crate builds
//! for `wasm32-unknown-unknown` (the Worker) and natively (CLI, runner, tests).
//!
//! Later issues add the session and build state machines, RBAC policy, manifest
//! validation and quota math here; the foundation holds identifiers, account
//! validation, token formats and the D1 schema drift check.

pub mod account;
pub mod build;
pub mod device;
pub mod grant;
pub mod ids;
pub mod policy;
pub mod ratelimit;
pub mod recovery;
pub mod schema;
pub mod session;
pub mod snapshot;
pub mod ssh_key;
pub mod tarball;
pub mod template;
pub mod token;
pub mod webauthn;

pub use account::{DisplayName, Email, Role, TokenName, WorkspaceName, WorkspaceSlug};
pub use ids::{
    AuditId, AuthSessionId, BuildId, ChallengeId, DeviceAuthId, InviteId, PasskeyId, ProbeId,
    ReleaseId, SessionId, SnapshotId, SshKeyId, TemplateId, TemplateVersionId, TokenId, UserId,
    WorkspaceId,
};
pub use schema::{SchemaStatus, check_schema};
pub use session::{
    Action, DesiredState, InstanceType, InvalidTransition, Observation, SessionCommand,
    SessionName, SessionState, decide, observe,
};
pub use ssh_key::SshPublicKey;
pub use token::{TokenKind, TokenSecret, TokenUseError, check_token_use};

/// Milliseconds since the Unix epoch: the only notion of time the domain knows.
pub type UnixMillis = i64;

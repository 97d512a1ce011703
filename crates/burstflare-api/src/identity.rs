//! Identity and access wire types: signed-in sessions and tokens, passkeys,
//! recovery codes, device authorization, workspaces, members, invites and the
//! audit log.

use burstflare_domain::{
    AuditId, AuthSessionId, ChallengeId, InstanceType, InviteId, PasskeyId, Role, UserId,
    WorkspaceId,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{IssuedToken, User, WorkspaceKind};

/// What kind of client signs in. Browsers get an HttpOnly session cookie and a
/// CSRF token; everything else gets an access token and a refresh token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    #[default]
    Api,
    Cli,
    Browser,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Api => "api",
            ClientKind::Cli => "cli",
            ClientKind::Browser => "browser",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "api" => ClientKind::Api,
            "cli" => ClientKind::Cli,
            "browser" => ClientKind::Browser,
            _ => return None,
        })
    }
}

/// Name of the browser session cookie (HttpOnly).
pub const SESSION_COOKIE: &str = "bf_session";
/// Name of the cookie carrying the CSRF token (readable by the page).
pub const CSRF_COOKIE: &str = "bf_csrf";
/// Header a cookie-authenticated mutating request must carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Tokens for a non-browser client. The access token lives 15 minutes; the
/// refresh token 30 days and exactly one exchange.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub session_id: AuthSessionId,
    pub access_token: IssuedToken,
    pub refresh_token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub refresh_expires_at: OffsetDateTime,
}

/// A signed-in session as its user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthSession {
    pub id: AuthSessionId,
    pub client: ClientKind,
    /// How the user signed in: `registration`, `passkey`, `recovery_code`, `device`.
    pub method: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_used_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// Whether this is the session the request authenticated with.
    pub current: bool,
}

/// The answer to every sign-in: the user and their new session, with tokens
/// (API and CLI clients) or a CSRF token (browsers; the cookie is set).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedIn {
    pub user: User,
    pub session: AuthSession,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// `POST /auth/token/refresh`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// An empty JSON object, for POST routes without parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `POST /auth/logout-all` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogoutAll {
    pub sessions_revoked: u32,
    pub tokens_revoked: u32,
}

// ---------------------------------------------------------------- passkeys

/// A registration or sign-in ceremony: the challenge id to send back, and
/// the options for `navigator.credentials.create/get` in their JSON form
/// (binary fields base64url), ready for `PublicKeyCredential.parse*OptionsFromJSON`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasskeyCeremony {
    pub challenge_id: ChallengeId,
    pub public_key: serde_json::Value,
}

/// The attestation part of `PublicKeyCredential.toJSON()` after `create()`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttestationResponse {
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    #[serde(rename = "attestationObject")]
    pub attestation_object: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transports: Vec<String>,
}

/// `PublicKeyCredential.toJSON()` after `create()`; unknown fields are ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistrationCredential {
    pub id: String,
    #[serde(rename = "rawId")]
    pub raw_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub response: AttestationResponse,
}

/// The assertion part of `PublicKeyCredential.toJSON()` after `get()`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssertionResponse {
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    #[serde(rename = "authenticatorData")]
    pub authenticator_data: String,
    pub signature: String,
    #[serde(
        rename = "userHandle",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub user_handle: Option<String>,
}

/// `PublicKeyCredential.toJSON()` after `get()`; unknown fields are ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssertionCredential {
    pub id: String,
    #[serde(rename = "rawId")]
    pub raw_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub response: AssertionResponse,
}

/// `POST /auth/passkeys`: finish registering a passkey.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterPasskeyRequest {
    pub challenge_id: ChallengeId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub credential: RegistrationCredential,
}

/// `POST /auth/login/passkey/options`: with `email`, only that user's
/// passkeys are allowed; without, any discoverable passkey.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyLoginOptionsRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// `POST /auth/login/passkey`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyLoginRequest {
    pub challenge_id: ChallengeId,
    pub credential: AssertionCredential,
    #[serde(default)]
    pub client: ClientKind,
}

/// A registered passkey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Passkey {
    pub id: PasskeyId,
    pub name: String,
    /// COSE algorithm: -7 (ES256), -8 (EdDSA).
    pub algorithm: i64,
    pub backed_up: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

// ---------------------------------------------------------------- recovery codes

/// A new set of recovery codes: shown once, never again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryCodes {
    pub codes: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
}

/// `GET /auth/recovery-codes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryStatus {
    pub remaining: u32,
    pub total: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub generated_at: Option<OffsetDateTime>,
}

/// `POST /auth/login/recovery`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryLoginRequest {
    pub email: String,
    pub code: String,
    #[serde(default)]
    pub client: ClientKind,
}

// ---------------------------------------------------------------- device authorization

/// `POST /auth/device/code`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCodeRequest {
    /// Shown to the approving user (`burstflare CLI on laptop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
}

/// RFC 8628 §3.2 device authorization response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceCodeResponse {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds to wait between polls.
    pub interval: u64,
}

/// `POST /auth/device/token`: poll. Pending, slow-down, expired and denied
/// answers are 400 envelopes with the RFC 8628 codes
/// (`authorization_pending`, `slow_down` with `details.interval`,
/// `expired_token`, `access_denied`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceTokenRequest {
    pub device_code: String,
}

/// A device authorization as the approving user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRequest {
    pub user_code: String,
    pub client_name: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// `pending`, `approved`, `denied`, `consumed` or `expired`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

// ---------------------------------------------------------------- workspaces

/// Who sees a session: its owner only (and admins), or every workspace member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionVisibility {
    #[default]
    Owner,
    Workspace,
}

/// What happens to a session's snapshots when the session is deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotPolicy {
    /// They stay (listed under the workspace; restorable into other sessions).
    #[default]
    Keep,
    /// They are deleted with the session.
    Delete,
}

/// A workspace's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceSettings {
    /// Instance type of sessions created without one.
    #[serde(default)]
    pub default_instance_type: InstanceType,
    #[serde(default)]
    pub session_visibility: SessionVisibility,
    /// Snapshots of deleted sessions: kept (default) or deleted with them.
    #[serde(default)]
    pub deleted_session_snapshots: SnapshotPolicy,
}

/// `PATCH /workspaces/{id}/settings`: omitted fields keep their value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettingsRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_instance_type: Option<InstanceType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_visibility: Option<SessionVisibility>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_session_snapshots: Option<SnapshotPolicy>,
}

/// A workspace with the caller's role and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub slug: String,
    pub name: String,
    pub kind: WorkspaceKind,
    pub role: Role,
    pub settings: WorkspaceSettings,
    pub member_count: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `POST /workspaces`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspaceRequest {
    pub name: String,
}

/// `PATCH /workspaces/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameWorkspaceRequest {
    pub name: String,
}

/// A workspace member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub joined_at: OffsetDateTime,
}

/// `PATCH /workspaces/{id}/members/{user_id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRoleRequest {
    pub role: Role,
}

/// `POST /workspaces/{id}/invites`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInviteRequest {
    pub email: String,
    pub role: Role,
}

/// An invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub id: InviteId,
    pub workspace_id: WorkspaceId,
    pub email: String,
    pub role: Role,
    pub invited_by: UserId,
    /// `pending`, `accepted`, `revoked` or `expired`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A new invitation with its code, shown once: give it to the invitee.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedInvite {
    pub invite: Invite,
    pub code: String,
}

/// `POST /invites/accept`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptInviteRequest {
    pub code: String,
}

// ---------------------------------------------------------------- audit

/// How a mutating request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Success,
    /// Refused: unauthenticated, forbidden, not found, rate limited, CSRF.
    Denied,
    /// Accepted but failed: invalid input, conflicts, platform errors.
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }

    /// The outcome of an HTTP status.
    pub fn of_status(status: u16) -> Self {
        match status {
            200..=399 => AuditOutcome::Success,
            401 | 403 | 404 | 429 => AuditOutcome::Denied,
            _ => AuditOutcome::Failed,
        }
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: AuditId,
    pub workspace_id: Option<WorkspaceId>,
    pub actor_id: Option<UserId>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub outcome: AuditOutcome,
    pub status: u16,
    pub error_code: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

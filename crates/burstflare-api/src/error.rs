//! The JSON error envelope every failing `/api/v1` response carries:
//! `{"error":{"code":"…","message":"…","details":{…},"request_id":"…"}}`.

use serde::{Deserialize, Serialize};

/// Machine-readable error codes. Clients match on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON or does not have the expected shape.
    MalformedJson,
    /// A field failed validation; `details.field` names it.
    InvalidField,
    /// A query parameter is malformed.
    InvalidQuery,
    /// No or a bad `Content-Type`.
    UnsupportedMediaType,
    /// The endpoint speaks WebSocket only.
    UpgradeRequired,
    /// The body exceeds the route's limit.
    PayloadTooLarge,
    /// No credentials were presented.
    Unauthenticated,
    /// The credentials are unknown, revoked or expired.
    InvalidToken,
    /// The caller may not do this.
    Forbidden,
    /// No route matches the path.
    RouteNotFound,
    /// The route exists but not for this method; `details.allowed` lists methods.
    MethodNotAllowed,
    UserNotFound,
    TokenNotFound,
    ProbeNotFound,
    /// The email is registered already.
    EmailTaken,
    /// Registration needs a Turnstile token.
    TurnstileRequired,
    /// Turnstile's siteverify rejected the token; `details.error_codes` says why.
    TurnstileFailed,
    WorkspaceNotFound,
    SessionNotFound,
    /// A preview of a port the session's release does not declare (or the
    /// editor of a session without one).
    PortNotDeclared,
    /// A session with this name exists in the workspace already.
    SessionNameTaken,
    /// The command is not valid in the session's current state; `details.state` names it.
    InvalidSessionState,
    SshKeyNotFound,
    /// The caller registered this SSH key already.
    SshKeyExists,
    /// The container runtime could not run the session (Docker down, image missing, …).
    RuntimeUnavailable,
    /// Runner: no managed container has this name.
    ContainerNotFound,
    /// Runner: the image does not exist on the Docker host.
    ImageNotFound,
    /// A required platform dependency is unavailable; see the message.
    Unavailable,
    /// The D1 schema does not match the Worker (health only).
    SchemaDrift,
    /// A cookie-authenticated mutation without the matching `X-CSRF-Token`.
    CsrfFailed,
    /// Too many requests; retry after `Retry-After` seconds (`details.retry_after_secs`).
    RateLimited,
    /// A refresh token was presented after it had been exchanged: the whole
    /// signed-in session is revoked (possible theft).
    RefreshTokenReused,
    AuthSessionNotFound,
    /// The WebAuthn challenge is unknown, used already or expired.
    ChallengeInvalid,
    /// The passkey response failed verification; `details.reason` says which check.
    PasskeyRejected,
    PasskeyNotFound,
    /// The passkey is registered already.
    PasskeyExists,
    /// Deleting this would leave the account without a way to sign in.
    LastSignInMethod,
    /// The email/recovery-code pair is not valid (or the code was used).
    InvalidRecoveryCode,
    /// RFC 8628: the user has not approved the device yet; poll again.
    AuthorizationPending,
    /// RFC 8628: polling too fast; `details.interval` is the new interval in seconds.
    SlowDown,
    /// RFC 8628: the device code expired; start `burstflare login` again.
    ExpiredToken,
    /// RFC 8628: the user denied the device.
    AccessDenied,
    /// The device code is unknown or was exchanged already.
    InvalidGrant,
    DeviceRequestNotFound,
    /// The device request was decided already.
    DeviceRequestDecided,
    InviteNotFound,
    /// The invite expired, was revoked or was accepted already.
    InviteUnavailable,
    /// The invite is for another email address.
    InviteEmailMismatch,
    /// The user is a member of the workspace already.
    AlreadyMember,
    MemberNotFound,
    /// The workspace would be left without an owner.
    LastOwner,
    TemplateNotFound,
    /// A template with this name exists in the workspace already.
    TemplateNameTaken,
    /// The template is archived: it starts no new sessions (restore it first).
    TemplateArchived,
    VersionNotFound,
    /// The manifest is invalid; `details.field` names the field path.
    InvalidManifest,
    /// The upload grant is missing, malformed, forged, expired or for another object.
    GrantInvalid,
    /// The version has no bundle uploaded.
    BundleMissing,
    /// The version has its bundle already (versions are immutable).
    BundleExists,
    /// The template has no active release to boot yet.
    NoActiveRelease,
    BuildNotFound,
    ReleaseNotFound,
    /// The command is not valid in the build's state; `details.state` names it.
    InvalidBuildState,
    SnapshotNotFound,
    /// An uploaded snapshot breaks the rules (a path outside the persisted
    /// paths, `..`, a symlink escape, content that does not match its digest).
    InvalidSnapshot,
    /// Only a `ready` snapshot restores, and only into a session whose
    /// persisted paths cover it; `details.state` names the snapshot's state.
    InvalidSnapshotState,
    /// Taking the snapshot failed; the session keeps running, nothing was
    /// lost, `details.reason` says why.
    SnapshotFailed,
    /// The agent refused the restore (an entry outside the persisted paths,
    /// a digest mismatch); nothing was changed.
    RestoreRefused,
    /// Something went wrong on our side; quote the request id when reporting it.
    Internal,
    /// A code this client does not know yet (newer server).
    #[serde(other)]
    Unknown,
}

/// The body of an error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_shape() {
        let env = ErrorEnvelope {
            error: ErrorBody {
                code: ErrorCode::MethodNotAllowed,
                message: "GET is not allowed on /api/v1/auth/register".into(),
                details: serde_json::json!({"allowed": ["POST"]}),
                request_id: Some("req_1".into()),
            },
        };
        insta::assert_json_snapshot!(env, @r###"
        {
          "error": {
            "code": "method_not_allowed",
            "message": "GET is not allowed on /api/v1/auth/register",
            "details": {
              "allowed": [
                "POST"
              ]
            },
            "request_id": "req_1"
          }
        }
        "###);
    }

    #[test]
    fn unknown_codes_from_newer_servers_parse() {
        let env: ErrorEnvelope =
            serde_json::from_str(r#"{"error":{"code":"quota_exceeded","message":"m"}}"#).unwrap();
        assert_eq!(env.error.code, ErrorCode::Unknown);
        assert!(env.error.details.is_null());
    }
}

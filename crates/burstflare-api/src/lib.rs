//! BurstFlare `/api/v1` wire types.
//!
//! Every request and response body the Worker accepts or returns is a type in
//! this crate, so the Worker, the CLI and the tests cannot disagree about the
//! JSON. Timestamps are RFC 3339 strings in UTC.

pub mod builds;
pub mod error;
pub mod identity;
pub mod ops;
pub mod routes;
pub mod runtime;
pub mod sessions;
pub mod snapshots;
pub mod templates;

pub use error::{ErrorBody, ErrorCode, ErrorEnvelope};

use burstflare_domain::{Role, TokenId, TokenKind, UserId, WorkspaceId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The version prefix of every API route.
pub const API_PREFIX: &str = "/api/v1";

/// Header carrying the request id on every response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Largest JSON request body the API accepts.
pub const MAX_JSON_BODY_BYTES: usize = 64 * 1024;

/// Converts Unix milliseconds to a timestamp; out-of-range values clamp to the epoch.
pub fn timestamp(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `POST /api/v1/auth/register`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub email: String,
    pub display_name: String,
    /// The Turnstile token from the sign-up page (required unless the
    /// deployment disables Turnstile, as local development does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turnstile_token: Option<String>,
    /// `browser` signs the new user in with a cookie; anything else gets tokens.
    #[serde(default)]
    pub client: identity::ClientKind,
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Whether a workspace belongs to one user or to a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkspaceKind {
    Personal,
    Team,
}

/// A workspace together with the caller's role in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceMembership {
    pub id: WorkspaceId,
    pub slug: String,
    pub name: String,
    pub kind: WorkspaceKind,
    pub role: Role,
}

/// A token's metadata; the secret itself is never listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: TokenId,
    pub kind: TokenKind,
    pub name: String,
    /// The first characters of the token, to tell tokens apart (`bf_pat_k3x9`).
    pub prefix: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A freshly issued token: metadata plus the plaintext, shown exactly once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedToken {
    pub token: String,
    pub info: TokenInfo,
}

/// Response of `POST /api/v1/auth/register`: the new user is signed in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub user: User,
    pub workspace: WorkspaceMembership,
    pub session: identity::AuthSession,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<identity::Credentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// Response of `GET /api/v1/me`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Me {
    pub user: User,
    pub workspaces: Vec<WorkspaceMembership>,
    /// The token this request authenticated with (none for a browser cookie).
    pub token: Option<TokenInfo>,
    /// The signed-in session this request belongs to (none for personal tokens).
    pub session: Option<identity::AuthSession>,
}

/// `POST /api/v1/auth/tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    pub name: String,
    /// Lifetime in days (1–366); omitted means the token does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

/// One page of a list; pass `next_cursor` back as `?cursor=` for the next page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Default and maximum page sizes for list endpoints.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 200;

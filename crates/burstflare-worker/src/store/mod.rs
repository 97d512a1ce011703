//! Storage: every D1 query and R2 key lives here, behind typed functions.
//! Rows mirror `migrations/`; `docs/storage.md` documents both.

pub mod audit;
pub mod auth_sessions;
pub mod d1;
pub mod device;
pub mod identity_cleanup;
pub mod passkeys;
pub mod probes;
pub mod reconcile;
pub mod recovery;
pub mod sessions;
pub mod ssh_keys;
pub mod tokens;
pub mod users;
pub mod workspaces;

/// Keyset position of a `(created_at, id)`-ordered list page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub created_at: i64,
    pub id: String,
}

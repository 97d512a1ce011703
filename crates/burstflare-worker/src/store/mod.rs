//! Storage: every D1 query and R2 key lives here, behind typed functions.
//! Rows mirror `migrations/`; `docs/storage.md` documents both.

pub mod d1;
pub mod probes;
pub mod reconcile;
pub mod sessions;
pub mod ssh_keys;
pub mod tokens;
pub mod users;

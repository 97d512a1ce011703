//! Storage: every D1 query and R2 key lives here, behind typed functions.
//! Rows mirror `migrations/`; `docs/storage.md` documents both.

pub mod audit;
pub mod auth_sessions;
pub mod builds;
pub mod d1;
pub mod device;
pub mod identity_cleanup;
pub mod objects;
pub mod passkeys;
pub mod probes;
pub mod reconcile;
pub mod recovery;
pub mod releases;
pub mod sessions;
pub mod snapshots;
pub mod ssh_keys;
pub mod templates;
pub mod tokens;
pub mod users;
pub mod workspaces;

/// Keyset position of a `(created_at, id)`-ordered list page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub created_at: i64,
    pub id: String,
}

impl After {
    /// The condition selecting rows after this position in a
    /// `created_at DESC, id DESC` list; pushes its two arguments onto `args`.
    pub fn newest_first_clause(&self, args: &mut Vec<wasm_bindgen::JsValue>) -> String {
        args.push(d1::int(self.created_at));
        let at = args.len();
        args.push(d1::text(&self.id));
        let id = args.len();
        format!("(created_at < ?{at} OR (created_at = ?{at} AND id < ?{id}))")
    }
}

/// `AND <clause>` for an optional keyset position (empty without one).
pub fn and_after(after: Option<&After>, args: &mut Vec<wasm_bindgen::JsValue>) -> String {
    after.map_or_else(String::new, |a| {
        format!("AND {}", a.newest_first_clause(args))
    })
}

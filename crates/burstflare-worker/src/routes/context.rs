//! The per-request context handed to services, including the audit note a
//! request fills in as it learns who acts, where and on what.

use std::cell::RefCell;

use worker::Env;

/// What the audit record of a request will say.
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    pub actor_id: Option<String>,
    pub workspace_id: Option<String>,
    pub target: Option<(&'static str, String)>,
}

/// Per-request context handed to services.
pub struct Ctx {
    pub env: Env,
    pub now: i64,
    /// The client's address (`CF-Connecting-IP`).
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    note: RefCell<AuditNote>,
    /// The actor's personal workspace: where the record goes when the
    /// request names no workspace.
    fallback_workspace: RefCell<Option<String>>,
}

impl Ctx {
    pub fn new(env: Env, now: i64, ip: Option<String>, user_agent: Option<String>) -> Self {
        Self {
            env,
            now,
            ip,
            user_agent: user_agent.map(|ua| ua.chars().take(512).collect()),
            note: RefCell::default(),
            fallback_workspace: RefCell::default(),
        }
    }

    /// The key rate limits use for this client.
    pub fn ip_key(&self) -> &str {
        self.ip.as_deref().unwrap_or("unknown")
    }

    pub fn note_actor(&self, user_id: &str, personal_workspace: Option<&str>) {
        self.note.borrow_mut().actor_id = Some(user_id.to_owned());
        if let Some(ws) = personal_workspace {
            *self.fallback_workspace.borrow_mut() = Some(ws.to_owned());
        }
    }

    pub fn note_workspace(&self, workspace_id: &str) {
        self.note.borrow_mut().workspace_id = Some(workspace_id.to_owned());
    }

    pub fn note_target(&self, kind: &'static str, id: &str) {
        self.note.borrow_mut().target = Some((kind, id.to_owned()));
    }

    /// The note as recorded: the named workspace, else the actor's own.
    pub fn audit_note(&self) -> AuditNote {
        let mut note = self.note.borrow().clone();
        if note.workspace_id.is_none() {
            note.workspace_id = self.fallback_workspace.borrow().clone();
        }
        note
    }
}

//! Workspace permissions: one function, [`authorize`], decides every
//! (role, action, resource ownership) case. Routes never compare roles
//! themselves; they describe what the caller wants to do and ask.
//!
//! The rules:
//! * viewers read and never mutate;
//! * members create sessions and templates and manage only their own sessions;
//! * admins manage everything but ownership (they cannot grant, change or
//!   remove an owner, and cannot delete the workspace);
//! * owners manage everything; the last owner can neither leave nor be
//!   demoted or removed, so a workspace always has an owner;
//! * personal workspaces have exactly one member: nobody can be invited to,
//!   leave or be removed from them.
//!
//! The test module spells the whole table out, case by case.

use crate::account::Role;

/// What the caller wants to do inside a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    ViewWorkspace,
    RenameWorkspace,
    UpdateSettings,
    DeleteWorkspace,
    ListMembers,
    /// Invite someone with `role`.
    Invite {
        role: Role,
    },
    RevokeInvite,
    /// Change a member whose role is `from` to `to`.
    ChangeRole {
        from: Role,
        to: Role,
    },
    /// Remove a member whose role is `target`.
    RemoveMember {
        target: Role,
    },
    /// The caller leaves the workspace.
    Leave,
    CreateSession,
    /// Read a session; `own` when the caller created it.
    ViewSession {
        own: bool,
    },
    /// Start, stop, restart, delete or connect to a session.
    OperateSession {
        own: bool,
    },
    UseTemplates,
    ManageTemplates,
    ReadAudit,
}

/// Facts about the workspace the decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// How many owners the workspace has now.
    pub owners: u32,
    /// Personal workspaces have one member, their owner, forever.
    pub personal: bool,
    /// The workspace's session visibility is `workspace`: every member may
    /// see (not operate) every session.
    pub shared_sessions: bool,
}

/// Why an action is refused (HTTP 403; 409 for the last-owner rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("viewers cannot change anything in a workspace")]
    ReadOnly,
    #[error("your role does not allow this; ask an admin or owner")]
    Role,
    #[error("only owners can grant, change or remove the owner role")]
    OwnersOnly,
    #[error("a workspace needs at least one owner; make someone else owner first")]
    LastOwner,
    #[error("personal workspaces have exactly one member")]
    Personal,
}

fn rank(role: Role) -> u8 {
    match role {
        Role::Owner => 3,
        Role::Admin => 2,
        Role::Member => 1,
        Role::Viewer => 0,
    }
}

/// Decides whether a caller with `role` may do `action` in a workspace.
pub fn authorize(role: Role, action: Action, ctx: Context) -> Result<(), Denied> {
    use Action as A;
    let at_least = |min: Role| {
        if rank(role) >= rank(min) {
            Ok(())
        } else if role == Role::Viewer {
            Err(Denied::ReadOnly)
        } else {
            Err(Denied::Role)
        }
    };
    let last_owner = ctx.owners <= 1;
    match action {
        A::ViewWorkspace | A::ListMembers | A::UseTemplates | A::ViewSession { own: true } => {
            Ok(())
        }
        A::ViewSession { own: false } if ctx.shared_sessions => Ok(()),
        A::ViewSession { own: false } | A::OperateSession { own: false } | A::ReadAudit => {
            at_least(Role::Admin)
        }
        A::CreateSession | A::OperateSession { own: true } | A::ManageTemplates => {
            at_least(Role::Member)
        }
        A::RenameWorkspace | A::UpdateSettings | A::RevokeInvite => at_least(Role::Admin),
        A::DeleteWorkspace => match at_least(Role::Owner) {
            Err(Denied::Role) => Err(Denied::OwnersOnly),
            other => other,
        },
        A::Invite { role: invited } => {
            if ctx.personal {
                return Err(Denied::Personal);
            }
            at_least(Role::Admin)?;
            if invited == Role::Owner && role != Role::Owner {
                return Err(Denied::OwnersOnly);
            }
            Ok(())
        }
        A::ChangeRole { from, to } => {
            if ctx.personal {
                return Err(Denied::Personal);
            }
            at_least(Role::Admin)?;
            if (from == Role::Owner || to == Role::Owner) && role != Role::Owner {
                return Err(Denied::OwnersOnly);
            }
            if from == Role::Owner && to != Role::Owner && last_owner {
                return Err(Denied::LastOwner);
            }
            Ok(())
        }
        A::RemoveMember { target } => {
            if ctx.personal {
                return Err(Denied::Personal);
            }
            at_least(Role::Admin)?;
            if target == Role::Owner && role != Role::Owner {
                return Err(Denied::OwnersOnly);
            }
            if target == Role::Owner && last_owner {
                return Err(Denied::LastOwner);
            }
            Ok(())
        }
        A::Leave => {
            if ctx.personal {
                return Err(Denied::Personal);
            }
            if role == Role::Owner && last_owner {
                return Err(Denied::LastOwner);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Role; 4] = [Role::Owner, Role::Admin, Role::Member, Role::Viewer];

    fn actions() -> Vec<Action> {
        use Action as A;
        let mut v = vec![
            A::ViewWorkspace,
            A::RenameWorkspace,
            A::UpdateSettings,
            A::DeleteWorkspace,
            A::ListMembers,
            A::RevokeInvite,
            A::Leave,
            A::CreateSession,
            A::ViewSession { own: true },
            A::ViewSession { own: false },
            A::OperateSession { own: true },
            A::OperateSession { own: false },
            A::UseTemplates,
            A::ManageTemplates,
            A::ReadAudit,
        ];
        for r in ROLES {
            v.push(A::Invite { role: r });
            v.push(A::RemoveMember { target: r });
            for t in ROLES {
                v.push(A::ChangeRole { from: r, to: t });
            }
        }
        v
    }

    /// The whole table for a team workspace with two owners, written out by
    /// hand: `O A M V` columns, `y` allowed, `.` denied.
    const TEAM_TABLE: &str = "
        ViewWorkspace                         y y y y
        RenameWorkspace                       y y . .
        UpdateSettings                        y y . .
        DeleteWorkspace                       y . . .
        ListMembers                           y y y y
        RevokeInvite                          y y . .
        Leave                                 y y y y
        CreateSession                         y y y .
        ViewSession{own:true}                 y y y y
        ViewSession{own:false}                y y . .
        OperateSession{own:true}              y y y .
        OperateSession{own:false}             y y . .
        UseTemplates                          y y y y
        ManageTemplates                       y y y .
        ReadAudit                             y y . .
        Invite{role:Owner}                    y . . .
        RemoveMember{target:Owner}            y . . .
        ChangeRole{from:Owner,to:Owner}       y . . .
        ChangeRole{from:Owner,to:Admin}       y . . .
        ChangeRole{from:Owner,to:Member}      y . . .
        ChangeRole{from:Owner,to:Viewer}      y . . .
        Invite{role:Admin}                    y y . .
        RemoveMember{target:Admin}            y y . .
        ChangeRole{from:Admin,to:Owner}       y . . .
        ChangeRole{from:Admin,to:Admin}       y y . .
        ChangeRole{from:Admin,to:Member}      y y . .
        ChangeRole{from:Admin,to:Viewer}      y y . .
        Invite{role:Member}                   y y . .
        RemoveMember{target:Member}           y y . .
        ChangeRole{from:Member,to:Owner}      y . . .
        ChangeRole{from:Member,to:Admin}      y y . .
        ChangeRole{from:Member,to:Member}     y y . .
        ChangeRole{from:Member,to:Viewer}     y y . .
        Invite{role:Viewer}                   y y . .
        RemoveMember{target:Viewer}           y y . .
        ChangeRole{from:Viewer,to:Owner}      y . . .
        ChangeRole{from:Viewer,to:Admin}      y y . .
        ChangeRole{from:Viewer,to:Member}     y y . .
        ChangeRole{from:Viewer,to:Viewer}     y y . .
    ";

    fn name(a: Action) -> String {
        format!("{a:?}").replace(' ', "")
    }

    #[test]
    fn the_full_table_for_team_workspaces() {
        let ctx = Context {
            owners: 2,
            personal: false,
            shared_sessions: false,
        };
        let rows: Vec<(String, Vec<bool>)> = TEAM_TABLE
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut parts = l.split_whitespace();
                let action = parts.next().unwrap().to_owned();
                (action, parts.map(|c| c == "y").collect())
            })
            .collect();
        let all = actions();
        assert_eq!(rows.len(), all.len(), "every action has a row");
        for action in all {
            let (_, allowed) = rows
                .iter()
                .find(|(n, _)| *n == name(action))
                .unwrap_or_else(|| panic!("no row for {}", name(action)));
            for (role, want) in ROLES.iter().zip(allowed) {
                let got = authorize(*role, action, ctx);
                assert_eq!(got.is_ok(), *want, "{role:?} {action:?}: {got:?}");
                if role == &Role::Viewer && !want {
                    assert_eq!(got, Err(Denied::ReadOnly), "{action:?}");
                }
            }
        }
    }

    #[test]
    fn the_last_owner_stays() {
        let ctx = Context {
            owners: 1,
            personal: false,
            shared_sessions: false,
        };
        assert_eq!(
            authorize(Role::Owner, Action::Leave, ctx),
            Err(Denied::LastOwner)
        );
        for to in [Role::Admin, Role::Member, Role::Viewer] {
            assert_eq!(
                authorize(
                    Role::Owner,
                    Action::ChangeRole {
                        from: Role::Owner,
                        to
                    },
                    ctx
                ),
                Err(Denied::LastOwner)
            );
        }
        assert_eq!(
            authorize(
                Role::Owner,
                Action::RemoveMember {
                    target: Role::Owner
                },
                ctx
            ),
            Err(Denied::LastOwner)
        );
        // Everything else an owner may do is unaffected by being the last one.
        for action in actions() {
            let with_two = authorize(Role::Owner, action, Context { owners: 2, ..ctx });
            let alone = authorize(Role::Owner, action, ctx);
            if alone.is_err() {
                assert_eq!(alone, Err(Denied::LastOwner), "{action:?}");
                assert!(with_two.is_ok(), "{action:?}");
            } else {
                assert_eq!(alone, with_two, "{action:?}");
            }
        }
        // Others leave freely.
        for role in [Role::Admin, Role::Member, Role::Viewer] {
            assert_eq!(authorize(role, Action::Leave, ctx), Ok(()));
        }
    }

    #[test]
    fn shared_sessions_are_visible_not_operable() {
        let ctx = Context {
            owners: 2,
            personal: false,
            shared_sessions: true,
        };
        for role in ROLES {
            assert_eq!(
                authorize(role, Action::ViewSession { own: false }, ctx),
                Ok(())
            );
            let unshared = Context {
                shared_sessions: false,
                ..ctx
            };
            // Sharing changes nothing else.
            for action in actions() {
                if action != (Action::ViewSession { own: false }) {
                    assert_eq!(
                        authorize(role, action, ctx),
                        authorize(role, action, unshared),
                        "{role:?} {action:?}"
                    );
                }
            }
        }
        assert_eq!(
            authorize(Role::Member, Action::OperateSession { own: false }, ctx),
            Err(Denied::Role)
        );
    }

    #[test]
    fn personal_workspaces_have_one_member() {
        let ctx = Context {
            owners: 1,
            personal: true,
            shared_sessions: false,
        };
        for action in actions() {
            let got = authorize(Role::Owner, action, ctx);
            let membership = matches!(
                action,
                Action::Invite { .. }
                    | Action::ChangeRole { .. }
                    | Action::RemoveMember { .. }
                    | Action::Leave
            );
            if membership {
                assert_eq!(got, Err(Denied::Personal), "{action:?}");
            } else {
                assert_eq!(got, Ok(()), "{action:?}");
            }
        }
    }
}

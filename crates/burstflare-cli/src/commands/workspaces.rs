//! Workspaces, members, invites and the audit log.
//!
//! Commands act on `--workspace` (id or slug), else the workspace chosen with
//! `burstflare workspace use`, else your personal workspace.

use burstflare_api::WorkspaceKind;
use burstflare_api::identity::{
    AcceptInviteRequest, ChangeRoleRequest, CreateInviteRequest, CreateWorkspaceRequest,
    RenameWorkspaceRequest, SessionVisibility, SnapshotPolicy, UpdateSettingsRequest, Workspace,
};
use burstflare_cli::client::Client;
use burstflare_cli::error::CliError;
use burstflare_domain::{InstanceType, Role};
use clap::{Args, Subcommand, ValueEnum};

use super::api;
use crate::{App, JsonFlag, fmt_time, print_json, print_table};

#[derive(Args, Clone)]
pub struct WorkspaceFlag {
    /// Workspace id (`ws_…`) or slug [default: `workspace use`, else personal]
    #[arg(long, short = 'w')]
    pub workspace: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Owner => Role::Owner,
            RoleArg::Admin => Role::Admin,
            RoleArg::Member => Role::Member,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

/// `--deleted-session-snapshots`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SnapshotPolicyArg {
    Keep,
    Delete,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum VisibilityArg {
    Owner,
    Workspace,
}

#[derive(Subcommand)]
pub enum WorkspaceCmd {
    /// Create a team workspace (you become its owner).
    Create {
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List your workspaces and your role in each.
    List(JsonFlag),
    /// Show a workspace and its settings.
    Get {
        #[command(flatten)]
        ws: WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Rename a workspace (admins and owners).
    Rename {
        name: String,
        #[command(flatten)]
        ws: WorkspaceFlag,
    },
    /// Change settings (admins and owners).
    Settings {
        /// Instance type of sessions created without one.
        #[arg(long)]
        default_instance_type: Option<InstanceType>,
        /// Who sees a member's sessions: only them (and admins), or every member.
        #[arg(long, value_enum)]
        session_visibility: Option<VisibilityArg>,
        /// What happens to a session's snapshots when it is deleted.
        #[arg(long, value_enum)]
        deleted_session_snapshots: Option<SnapshotPolicyArg>,
        #[command(flatten)]
        ws: WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List members and their roles.
    Members {
        #[command(flatten)]
        ws: WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Invite someone by email; prints the invite code to give them.
    Invite {
        email: String,
        #[arg(long, value_enum, default_value = "member")]
        role: RoleArg,
        #[command(flatten)]
        ws: WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List invites (admins and owners).
    Invites {
        #[command(flatten)]
        ws: WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Revoke a pending invite.
    RevokeInvite {
        /// The invite id (`inv_…`).
        id: String,
        #[command(flatten)]
        ws: WorkspaceFlag,
    },
    /// Accept an invite with the code you were given.
    Accept {
        code: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Change a member's role.
    Role {
        /// The member's user id (`usr_…`) or email.
        member: String,
        #[arg(value_enum)]
        role: RoleArg,
        #[command(flatten)]
        ws: WorkspaceFlag,
    },
    /// Remove a member.
    Remove {
        /// The member's user id (`usr_…`) or email.
        member: String,
        #[command(flatten)]
        ws: WorkspaceFlag,
    },
    /// Leave a team workspace.
    Leave {
        #[command(flatten)]
        ws: WorkspaceFlag,
    },
    /// Use this workspace by default (stored with your credentials).
    Use {
        /// Workspace id or slug.
        workspace: String,
    },
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// List audit records, newest first (admins and owners).
    List {
        /// Only this action (`session.start`) or family (`session.*`).
        #[arg(long)]
        action: Option<String>,
        /// Only this actor's records (user id).
        #[arg(long)]
        actor: Option<String>,
        /// From this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// At most this many records.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        ws: WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// Resolves `--workspace`, the stored default, or the personal workspace.
pub async fn resolve(
    app: &App,
    client: &Client,
    flag: Option<&str>,
) -> Result<Workspace, CliError> {
    let stored = app.dir.host(&app.api_url)?.and_then(|h| h.workspace_id);
    let wanted = flag.map(str::to_owned).or(stored);
    let all = client
        .workspaces()
        .await
        .map_err(api("could not list your workspaces"))?;
    let found = match &wanted {
        Some(w) => all
            .into_iter()
            .find(|ws| ws.id.as_str() == w || ws.slug == *w),
        None => all
            .into_iter()
            .find(|ws| ws.kind == WorkspaceKind::Personal),
    };
    found.ok_or_else(|| {
        CliError::user(format!(
            "you are not a member of a workspace {:?}",
            wanted.unwrap_or_default()
        ))
        .hint("see `burstflare workspace list`")
    })
}

async fn member_id(client: &Client, ws: &Workspace, member: &str) -> Result<String, CliError> {
    if member.starts_with("usr_") {
        return Ok(member.to_owned());
    }
    let members = client
        .members(ws.id.as_str())
        .await
        .map_err(api("could not list members"))?;
    members
        .iter()
        .find(|m| m.email.eq_ignore_ascii_case(member))
        .map(|m| m.user_id.to_string())
        .ok_or_else(|| CliError::user(format!("{member} is not a member of {}", ws.slug)))
}

fn show(ws: &Workspace) {
    println!(
        "{} ({})  {}  kind {}  role {}  members {}",
        ws.name,
        ws.slug,
        ws.id,
        format!("{:?}", ws.kind).to_lowercase(),
        ws.role.as_str(),
        ws.member_count
    );
    println!(
        "settings: default instance type {}, session visibility {}, snapshots of deleted sessions: {}",
        serde_json::to_value(ws.settings.default_instance_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        match ws.settings.session_visibility {
            SessionVisibility::Owner => "owner",
            SessionVisibility::Workspace => "workspace",
        },
        match ws.settings.deleted_session_snapshots {
            SnapshotPolicy::Keep => "keep",
            SnapshotPolicy::Delete => "delete",
        }
    );
}

pub async fn workspace(app: &App, cmd: WorkspaceCmd) -> Result<(), CliError> {
    let client = app.signed_in()?;
    match cmd {
        WorkspaceCmd::Create { name, json } => {
            let ws = client
                .create_workspace(&CreateWorkspaceRequest { name: name.clone() })
                .await
                .map_err(api(format!("could not create workspace {name:?}")))?;
            if json.json {
                return print_json(&ws);
            }
            println!("{}", ws.id);
            eprintln!(
                "Created workspace {} ({}); you are its owner.",
                ws.name, ws.slug
            );
            Ok(())
        }
        WorkspaceCmd::List(flag) => {
            let all = client
                .workspaces()
                .await
                .map_err(api("could not list your workspaces"))?;
            if flag.json {
                return print_json(&all);
            }
            let current = resolve(app, &client, None).await.ok().map(|w| w.id);
            print_table(
                &["ID", "SLUG", "NAME", "KIND", "ROLE", "MEMBERS", ""],
                &all.iter()
                    .map(|w| {
                        vec![
                            w.id.to_string(),
                            w.slug.clone(),
                            w.name.clone(),
                            format!("{:?}", w.kind).to_lowercase(),
                            w.role.as_str().to_owned(),
                            w.member_count.to_string(),
                            if current.as_ref() == Some(&w.id) {
                                "(in use)".into()
                            } else {
                                String::new()
                            },
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
        WorkspaceCmd::Get { ws, json } => {
            let w = resolve(app, &client, ws.workspace.as_deref()).await?;
            if json.json {
                return print_json(&w);
            }
            show(&w);
            Ok(())
        }
        WorkspaceCmd::Rename { name, ws } => {
            let w = resolve(app, &client, ws.workspace.as_deref()).await?;
            let renamed = client
                .rename_workspace(w.id.as_str(), &RenameWorkspaceRequest { name })
                .await
                .map_err(api(format!("could not rename {}", w.slug)))?;
            eprintln!("Renamed {} to {:?}.", renamed.slug, renamed.name);
            Ok(())
        }
        WorkspaceCmd::Settings {
            default_instance_type,
            session_visibility,
            deleted_session_snapshots,
            ws,
            json,
        } => {
            let w = resolve(app, &client, ws.workspace.as_deref()).await?;
            let updated = client
                .update_workspace_settings(
                    w.id.as_str(),
                    &UpdateSettingsRequest {
                        default_instance_type,
                        session_visibility: session_visibility.map(|v| match v {
                            VisibilityArg::Owner => SessionVisibility::Owner,
                            VisibilityArg::Workspace => SessionVisibility::Workspace,
                        }),
                        deleted_session_snapshots: deleted_session_snapshots.map(|v| match v {
                            SnapshotPolicyArg::Keep => SnapshotPolicy::Keep,
                            SnapshotPolicyArg::Delete => SnapshotPolicy::Delete,
                        }),
                    },
                )
                .await
                .map_err(api(format!("could not change the settings of {}", w.slug)))?;
            if json.json {
                return print_json(&updated);
            }
            show(&updated);
            Ok(())
        }
        WorkspaceCmd::Members { ws, json } => {
            let w = resolve(app, &client, ws.workspace.as_deref()).await?;
            let members = client
                .members(w.id.as_str())
                .await
                .map_err(api(format!("could not list the members of {}", w.slug)))?;
            if json.json {
                return print_json(&members);
            }
            print_table(
                &["USER", "EMAIL", "NAME", "ROLE", "JOINED"],
                &members
                    .iter()
                    .map(|m| {
                        vec![
                            m.user_id.to_string(),
                            m.email.clone(),
                            m.display_name.clone(),
                            m.role.as_str().to_owned(),
                            fmt_time(Some(m.joined_at)),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
        WorkspaceCmd::Invite {
            email,
            role,
            ws,
            json,
        } => {
            let w = resolve(app, &client, ws.workspace.as_deref()).await?;
            let created = client
                .invite(
                    w.id.as_str(),
                    &CreateInviteRequest {
                        email: email.clone(),
                        role: role.into(),
                    },
                )
                .await
                .map_err(api(format!("could not invite {email} to {}", w.slug)))?;
            if json.json {
                return print_json(&created);
            }
            println!("{}", created.code);
            eprintln!(
                "Invited {} to {} as {} (invite {}, expires {}). Give them the code above; they run `burstflare workspace accept <code>`.",
                created.invite.email,
                w.slug,
                created.invite.role.as_str(),
                created.invite.id,
                fmt_time(Some(created.invite.expires_at))
            );
            Ok(())
        }
        WorkspaceCmd::Invites { ws, json } => {
            let w = resolve(app, &client, ws.workspace.as_deref()).await?;
            let page = client
                .invites(w.id.as_str())
                .await
                .map_err(api(format!("could not list the invites of {}", w.slug)))?;
            if json.json {
                return print_json(&page.items);
            }
            print_table(
                &["ID", "EMAIL", "ROLE", "STATUS", "EXPIRES"],
                &page
                    .items
                    .iter()
                    .map(|i| {
                        vec![
                            i.id.to_string(),
                            i.email.clone(),
                            i.role.as_str().to_owned(),
                            i.status.clone(),
                            fmt_time(Some(i.expires_at)),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
        WorkspaceCmd::RevokeInvite { id, ws } => {
            let w = resolve(app, &client, ws.workspace.as_deref()).await?;
            let invite = client
                .revoke_invite(w.id.as_str(), &id)
                .await
                .map_err(api(format!("could not revoke invite {id}")))?;
            eprintln!(
                "Invite {} for {} is {}.",
                invite.id, invite.email, invite.status
            );
            Ok(())
        }
        WorkspaceCmd::Accept { code, json } => {
            let joined = client
                .accept_invite(&AcceptInviteRequest { code })
                .await
                .map_err(api("could not accept the invite"))?;
            if json.json {
                return print_json(&joined);
            }
            println!("{}", joined.id);
            eprintln!(
                "Joined {} ({}) as {}.",
                joined.name,
                joined.slug,
                joined.role.as_str()
            );
            Ok(())
        }
        WorkspaceCmd::Role { member, role, ws } => {
            let w = resolve(app, &client, ws.workspace.as_deref()).await?;
            let user_id = member_id(&client, &w, &member).await?;
            let m = client
                .change_role(
                    w.id.as_str(),
                    &user_id,
                    &ChangeRoleRequest { role: role.into() },
                )
                .await
                .map_err(api(format!("could not change the role of {member}")))?;
            eprintln!("{} is now {} in {}.", m.email, m.role.as_str(), w.slug);
            Ok(())
        }
        WorkspaceCmd::Remove { member, ws } => {
            let w = resolve(app, &client, ws.workspace.as_deref()).await?;
            let user_id = member_id(&client, &w, &member).await?;
            client
                .remove_member(w.id.as_str(), &user_id)
                .await
                .map_err(api(format!("could not remove {member}")))?;
            eprintln!("Removed {member} from {}.", w.slug);
            Ok(())
        }
        WorkspaceCmd::Leave { ws } => {
            let w = resolve(app, &client, ws.workspace.as_deref()).await?;
            client
                .leave_workspace(w.id.as_str())
                .await
                .map_err(api(format!("could not leave {}", w.slug)))?;
            app.dir.update_host(&app.api_url, |old| {
                old.map(|mut h| {
                    if h.workspace_id.as_deref() == Some(w.id.as_str()) {
                        h.workspace_id = None;
                    }
                    h
                })
            })?;
            eprintln!("Left {}.", w.slug);
            Ok(())
        }
        WorkspaceCmd::Use { workspace } => {
            let w = resolve(app, &client, Some(&workspace)).await?;
            app.dir.update_host(&app.api_url, |old| {
                old.map(|mut h| {
                    h.workspace_id = Some(w.id.to_string());
                    h
                })
            })?;
            eprintln!("Using workspace {} ({}) by default.", w.name, w.slug);
            Ok(())
        }
    }
}

pub async fn audit(app: &App, cmd: AuditCmd) -> Result<(), CliError> {
    let client = app.signed_in()?;
    let AuditCmd::List {
        action,
        actor,
        since,
        until,
        limit,
        ws,
        json,
    } = cmd;
    let w = resolve(app, &client, ws.workspace.as_deref()).await?;
    let mut query = Vec::new();
    for (k, v) in [
        ("action", &action),
        ("actor", &actor),
        ("since", &since),
        ("until", &until),
    ] {
        if let Some(v) = v {
            query.push((k, v.as_str()));
        }
    }
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    while items.len() < limit as usize {
        let want =
            (limit as usize - items.len()).min(burstflare_api::MAX_PAGE_SIZE as usize) as u32;
        let page = client
            .audit(w.id.as_str(), &query, cursor.as_deref(), Some(want))
            .await
            .map_err(api(format!("could not read the audit log of {}", w.slug)))?;
        items.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    if json.json {
        return print_json(&items);
    }
    print_table(
        &[
            "TIME", "ACTION", "OUTCOME", "STATUS", "ACTOR", "TARGET", "IP",
        ],
        &items
            .iter()
            .map(|e| {
                vec![
                    fmt_time(Some(e.created_at)),
                    e.action.clone(),
                    format!("{:?}", e.outcome).to_lowercase(),
                    e.status.to_string(),
                    e.actor_id.as_ref().map_or("-".into(), |a| a.to_string()),
                    match (&e.target_type, &e.target_id) {
                        (Some(t), Some(id)) => format!("{t} {id}"),
                        _ => "-".into(),
                    },
                    e.ip.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect::<Vec<_>>(),
    );
    Ok(())
}

//! `burstflare snapshot …`: snapshots of a session's persisted paths.

use burstflare_api::snapshots::{RestoreRequest, RestoreWhen, Snapshot};
use burstflare_cli::error::CliError;
use burstflare_cli::snapshot_files;
use clap::Subcommand;

use super::api;
use super::sessions::{human_bytes, resolve};
use crate::{App, JsonFlag, fmt_time, print_json, print_table};

#[derive(Subcommand)]
pub enum SnapshotCmd {
    /// Snapshot a running session's persisted paths now.
    Create {
        /// Session name or id.
        session: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List a session's snapshots, newest first.
    List {
        session: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List every snapshot of a workspace you may see, deleted sessions'
    /// included (restore one into another session with `snapshot restore`).
    ListWorkspace {
        #[command(flatten)]
        ws: super::workspaces::WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show one snapshot.
    Get {
        session: String,
        /// `snp_…`.
        snapshot: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Delete a snapshot (blobs other snapshots share are kept).
    Delete { session: String, snapshot: String },
    /// Download a snapshot as a tar archive (paths relative to `/`).
    Download {
        session: String,
        snapshot: String,
        /// Where to write it (default `<session>-<snapshot>.tar`).
        #[arg(short = 'o', long)]
        output: Option<std::path::PathBuf>,
    },
    /// Upload a snapshot for a session (to seed it): a directory (stored as
    /// the persisted path --root, by default the session's first) or a tar
    /// archive as `snapshot download` writes it. Restore it afterwards.
    Upload {
        session: String,
        /// A directory or a `.tar` file.
        path: std::path::PathBuf,
        /// For a directory: the persisted path it becomes.
        #[arg(long)]
        root: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Restore a snapshot into the running session (all or nothing), or with
    /// --next-start make it the one the next start or wake restores.
    Restore {
        session: String,
        snapshot: String,
        #[arg(long)]
        next_start: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
}

fn print_snapshot(s: &Snapshot) {
    println!("id         {}", s.id);
    println!("session    {}", s.session_name);
    println!("kind       {}", s.kind);
    println!("state      {}", s.state);
    println!("roots      {}", s.roots.join(", "));
    println!("files      {} ({})", s.files, human_bytes(s.bytes));
    println!(
        "stored     {} new blobs ({})",
        s.new_blobs,
        human_bytes(s.new_bytes)
    );
    println!(
        "created    {} by {}",
        fmt_time(Some(s.created_at)),
        s.created_by
    );
    for k in &s.skipped {
        println!("skipped    {}: {}", k.path, k.reason);
    }
    if let Some(e) = &s.error {
        println!("error      {e}");
    }
}

fn print_list(list: &[Snapshot]) {
    print_table(
        &[
            "ID", "SESSION", "KIND", "STATE", "FILES", "SIZE", "NEW", "CREATED",
        ],
        &list
            .iter()
            .map(|x| {
                vec![
                    x.id.to_string(),
                    x.session_name.clone(),
                    x.kind.clone(),
                    x.state.clone(),
                    x.files.to_string(),
                    human_bytes(x.bytes),
                    human_bytes(x.new_bytes),
                    fmt_time(Some(x.created_at)),
                ]
            })
            .collect::<Vec<_>>(),
    );
}

pub async fn snapshot(app: &App, cmd: SnapshotCmd) -> Result<(), CliError> {
    let client = app.signed_in()?;
    match cmd {
        SnapshotCmd::Create { session, json } => {
            let s = resolve(&client, &session).await?;
            eprintln!("Snapshotting {}…", s.name);
            let snap = client
                .create_snapshot(s.id.as_str())
                .await
                .map_err(api(format!("could not snapshot session {}", s.name)))?;
            if json.json {
                return print_json(&snap);
            }
            print_snapshot(&snap);
            Ok(())
        }
        SnapshotCmd::List { session, json } => {
            let s = resolve(&client, &session).await?;
            let list = client
                .snapshots(s.id.as_str())
                .await
                .map_err(api(format!("could not list the snapshots of {}", s.name)))?;
            if json.json {
                return print_json(&list);
            }
            print_list(&list);
            Ok(())
        }
        SnapshotCmd::ListWorkspace { ws, json } => {
            let w = super::workspaces::resolve(app, &client, ws.workspace.as_deref()).await?;
            let list = client
                .workspace_snapshots(w.id.as_str())
                .await
                .map_err(api(format!("could not list the snapshots of {}", w.slug)))?;
            if json.json {
                return print_json(&list);
            }
            print_list(&list);
            Ok(())
        }
        SnapshotCmd::Get {
            session,
            snapshot,
            json,
        } => {
            let s = resolve(&client, &session).await?;
            let snap = client
                .snapshot(s.id.as_str(), &snapshot)
                .await
                .map_err(api(format!("could not read snapshot {snapshot}")))?;
            if json.json {
                return print_json(&snap);
            }
            print_snapshot(&snap);
            Ok(())
        }
        SnapshotCmd::Delete { session, snapshot } => {
            let s = resolve(&client, &session).await?;
            client
                .delete_snapshot(s.id.as_str(), &snapshot)
                .await
                .map_err(api(format!("could not delete snapshot {snapshot}")))?;
            eprintln!("Deleted snapshot {snapshot}.");
            Ok(())
        }
        SnapshotCmd::Download {
            session,
            snapshot,
            output,
        } => {
            let s = resolve(&client, &session).await?;
            let path = output.unwrap_or_else(|| format!("{}-{snapshot}.tar", s.name).into());
            let mut file = tokio::fs::File::create(&path).await.map_err(|e| {
                CliError::user(format!("cannot create {}", path.display())).cause(e.to_string())
            })?;
            let url = format!(
                "/sessions/{}/snapshots/{}/download",
                s.id,
                burstflare_cli::client::encode_segment(&snapshot)
            );
            let n = client
                .download(&url, &mut file)
                .await
                .map_err(api(format!("could not download snapshot {snapshot}")))?;
            eprintln!("Wrote {} ({}).", path.display(), human_bytes(n));
            Ok(())
        }
        SnapshotCmd::Upload {
            session,
            path,
            root,
            json,
        } => {
            let s = resolve(&client, &session).await?;
            let persisted = &s.spec.persisted_paths;
            let scratch = tempfile::tempdir().map_err(|e| {
                CliError::user("cannot create a scratch directory").cause(e.to_string())
            })?;
            let local = if path.is_dir() {
                let root = match root {
                    Some(r) => r,
                    None => persisted.first().cloned().ok_or_else(|| {
                        CliError::user(format!("session {} has no persisted paths", s.name))
                    })?,
                };
                snapshot_files::from_dir(&path, &root)
            } else {
                snapshot_files::from_tar(&path, persisted, scratch.path())
            }
            .map_err(|e| CliError::user(format!("cannot upload {}", path.display())).cause(e))?;
            burstflare_domain::snapshot::validate(
                &local.manifest,
                persisted,
                &burstflare_domain::snapshot::Limits::default(),
            )
            .map_err(|e| {
                CliError::user(format!("cannot upload {}", path.display())).cause(e.to_string())
            })?;
            for k in &local.manifest.skipped {
                eprintln!("skipping {}: {}", k.path, k.reason);
            }
            let grant = client
                .snapshot_upload_grant(s.id.as_str())
                .await
                .map_err(api(format!("could not upload a snapshot for {}", s.name)))?;
            let body = snapshot_files::body(&local)
                .map_err(|e| CliError::user("cannot read the snapshot").cause(e))?;
            let snap: Snapshot = client
                .put_to_grant(&grant, "application/octet-stream", body)
                .await
                .map_err(api(format!("could not upload a snapshot for {}", s.name)))?;
            if json.json {
                return print_json(&snap);
            }
            print_snapshot(&snap);
            eprintln!(
                "Restore it with `burstflare snapshot restore {} {}` (add --next-start for a stopped session).",
                s.name, snap.id
            );
            Ok(())
        }
        SnapshotCmd::Restore {
            session,
            snapshot,
            next_start,
            json,
        } => {
            let s = resolve(&client, &session).await?;
            let req = RestoreRequest {
                snapshot_id: snapshot.parse().map_err(|e| {
                    CliError::user(format!("{snapshot:?} is not a snapshot id: {e}"))
                })?,
                when: if next_start {
                    RestoreWhen::NextStart
                } else {
                    RestoreWhen::Now
                },
            };
            let r = client
                .restore(s.id.as_str(), &req)
                .await
                .map_err(api(format!("could not restore {snapshot} into {}", s.name)))?;
            if json.json {
                return print_json(&r);
            }
            if next_start {
                eprintln!("The next start of {} restores {snapshot}.", s.name);
            } else {
                eprintln!(
                    "Restored {snapshot} into {}: {} files, {} directories, {} symlinks ({}).",
                    s.name,
                    r.files,
                    r.dirs,
                    r.symlinks,
                    human_bytes(r.bytes)
                );
            }
            Ok(())
        }
    }
}

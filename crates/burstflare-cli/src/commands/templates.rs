//! `burstflare template …`: templates, versions and bundles.
//!
//! A template is named by its name (in the workspace in use) or id. A
//! version is created from a TOML manifest (`burstflare template init`
//! writes a starter) or a `devcontainer.json`, and may carry a bundle: the
//! files of a directory (packed as tar.gz) or a ready `.tar.gz`, uploaded
//! with a signed grant.

use std::path::{Path, PathBuf};

use burstflare_api::templates::{
    CreateTemplateRequest, CreateVersionRequest, Template, UpdateTemplateRequest,
};
use burstflare_cli::client::Client;
use burstflare_cli::error::CliError;
use burstflare_domain::template::Manifest;
use clap::Subcommand;

use super::api;
use super::workspaces::{WorkspaceFlag, resolve};
use crate::{App, JsonFlag, fmt_time, print_json, print_table};

#[derive(Subcommand)]
pub enum TemplateCmd {
    /// Write a starter manifest (burstflare.toml) to edit.
    Init {
        /// Where to write it.
        #[arg(long, default_value = "burstflare.toml")]
        file: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Create a template.
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        ws: WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List templates.
    List {
        #[command(flatten)]
        ws: WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show a template.
    Get {
        template: String,
        #[command(flatten)]
        ws: WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Rename a template.
    Rename {
        template: String,
        new_name: String,
        #[command(flatten)]
        ws: WorkspaceFlag,
    },
    /// Archive a template: running sessions keep running, new ones are refused.
    Archive {
        template: String,
        #[command(flatten)]
        ws: WorkspaceFlag,
    },
    /// Restore an archived template.
    Restore {
        template: String,
        #[command(flatten)]
        ws: WorkspaceFlag,
    },
    /// Delete a template with its versions, bundles, builds and releases.
    Delete {
        template: String,
        #[command(flatten)]
        ws: WorkspaceFlag,
    },
    /// Template versions.
    #[command(subcommand)]
    Version(VersionCmd),
}

#[derive(Subcommand)]
pub enum VersionCmd {
    /// Create a version from a manifest or a devcontainer.json, with an optional bundle.
    Create {
        template: String,
        /// A TOML manifest (see `burstflare template init`).
        #[arg(
            long,
            conflicts_with = "devcontainer",
            required_unless_present = "devcontainer"
        )]
        manifest: Option<PathBuf>,
        /// A devcontainer.json (a supported subset is translated).
        #[arg(long)]
        devcontainer: Option<PathBuf>,
        /// The template's files: a directory (packed as tar.gz) or a .tar.gz file.
        #[arg(long)]
        bundle: Option<PathBuf>,
        #[command(flatten)]
        ws: WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List a template's versions.
    List {
        template: String,
        #[command(flatten)]
        ws: WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
}

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::user(format!("cannot read {}", path.display())).cause(e.to_string()))
}

/// The bytes of a bundle: a `.tar.gz` as is, a directory packed.
fn bundle_bytes(path: &Path) -> Result<Vec<u8>, CliError> {
    let fail = |e: std::io::Error| {
        CliError::user(format!("cannot pack {}", path.display())).cause(e.to_string())
    };
    if path.is_dir() {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.follow_symlinks(false);
        tar.append_dir_all(".", path).map_err(fail)?;
        tar.into_inner().map_err(fail)?.finish().map_err(fail)
    } else {
        std::fs::read(path).map_err(fail)
    }
}

/// Finds a template by id or name in the workspace in use.
pub async fn find_template(
    app: &App,
    client: &Client,
    ws: &WorkspaceFlag,
    reference: &str,
) -> Result<Template, CliError> {
    if reference.starts_with("tpl_") {
        return client
            .template(reference)
            .await
            .map_err(api(format!("could not find template {reference}")));
    }
    let w = resolve(app, client, ws.workspace.as_deref()).await?;
    client
        .templates(Some(w.id.as_str()))
        .await
        .map_err(api("could not list templates"))?
        .into_iter()
        .find(|t| t.name == reference)
        .ok_or_else(|| {
            CliError::user(format!("no template named {reference:?} in {}", w.slug))
                .hint("see `burstflare template list`")
        })
}

fn show(t: &Template) {
    println!(
        "{}  {}  versions {}  release {}  {}",
        t.id,
        t.name,
        t.latest_version,
        t.active_release_id
            .as_ref()
            .map_or("-".to_owned(), |r| r.to_string()),
        if t.archived_at.is_some() {
            "archived"
        } else {
            "active"
        }
    );
}

pub async fn template(app: &App, cmd: TemplateCmd) -> Result<(), CliError> {
    if let TemplateCmd::Init { file, force } = &cmd {
        if file.exists() && !force {
            return Err(CliError::user(format!("{} exists", file.display()))
                .hint("pass --force to overwrite it"));
        }
        std::fs::write(file, Manifest::starter("runtime")).map_err(|e| {
            CliError::user(format!("cannot write {}", file.display())).cause(e.to_string())
        })?;
        eprintln!(
            "Wrote {}; edit it, then `burstflare template version create <template> --manifest {}`.",
            file.display(),
            file.display()
        );
        return Ok(());
    }
    let client = app.signed_in()?;
    match cmd {
        TemplateCmd::Init { .. } => Ok(()),
        TemplateCmd::Create {
            name,
            description,
            ws,
            json,
        } => {
            let w = resolve(app, &client, ws.workspace.as_deref()).await?;
            let t = client
                .create_template(&CreateTemplateRequest {
                    name: name.clone(),
                    workspace_id: Some(w.id.clone()),
                    description,
                })
                .await
                .map_err(api(format!("could not create template {name:?}")))?;
            if json.json {
                return print_json(&t);
            }
            println!("{}", t.id);
            eprintln!("Created template {} in {}.", t.name, w.slug);
            Ok(())
        }
        TemplateCmd::List { ws, json } => {
            let w = resolve(app, &client, ws.workspace.as_deref()).await?;
            let all = client
                .templates(Some(w.id.as_str()))
                .await
                .map_err(api("could not list templates"))?;
            if json.json {
                return print_json(&all);
            }
            print_table(
                &["ID", "NAME", "VERSIONS", "RELEASE", "STATE", "UPDATED"],
                &all.iter()
                    .map(|t| {
                        vec![
                            t.id.to_string(),
                            t.name.clone(),
                            t.latest_version.to_string(),
                            t.active_release_id
                                .as_ref()
                                .map_or("-".to_owned(), |r| r.to_string()),
                            if t.archived_at.is_some() {
                                "archived"
                            } else {
                                "active"
                            }
                            .into(),
                            fmt_time(Some(t.updated_at)),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
        TemplateCmd::Get { template, ws, json } => {
            let t = find_template(app, &client, &ws, &template).await?;
            if json.json {
                return print_json(&t);
            }
            show(&t);
            Ok(())
        }
        TemplateCmd::Rename {
            template,
            new_name,
            ws,
        } => {
            let t = find_template(app, &client, &ws, &template).await?;
            let t = client
                .update_template(
                    t.id.as_str(),
                    &UpdateTemplateRequest {
                        name: Some(new_name),
                        description: None,
                    },
                )
                .await
                .map_err(api(format!("could not rename {template}")))?;
            eprintln!("Renamed to {}.", t.name);
            Ok(())
        }
        TemplateCmd::Archive { template, ws } => {
            set_archived(app, &client, &ws, &template, true).await
        }
        TemplateCmd::Restore { template, ws } => {
            set_archived(app, &client, &ws, &template, false).await
        }
        TemplateCmd::Delete { template, ws } => {
            let t = find_template(app, &client, &ws, &template).await?;
            client
                .delete_template(t.id.as_str())
                .await
                .map_err(api(format!("could not delete {template}")))?;
            eprintln!("Deleted template {} and everything it stored.", t.name);
            Ok(())
        }
        TemplateCmd::Version(cmd) => version(app, &client, cmd).await,
    }
}

async fn set_archived(
    app: &App,
    client: &Client,
    ws: &WorkspaceFlag,
    template: &str,
    archive: bool,
) -> Result<(), CliError> {
    let t = find_template(app, client, ws, template).await?;
    let t = client
        .archive_template(t.id.as_str(), archive)
        .await
        .map_err(api(format!("could not change {template}")))?;
    eprintln!(
        "Template {} is {}.",
        t.name,
        if t.archived_at.is_some() {
            "archived: it starts no new sessions"
        } else {
            "active"
        }
    );
    Ok(())
}

async fn version(app: &App, client: &Client, cmd: VersionCmd) -> Result<(), CliError> {
    match cmd {
        VersionCmd::Create {
            template,
            manifest,
            devcontainer,
            bundle,
            ws,
            json,
        } => {
            let t = find_template(app, client, &ws, &template).await?;
            let req = CreateVersionRequest {
                manifest: manifest.as_deref().map(read).transpose()?,
                devcontainer: devcontainer.as_deref().map(read).transpose()?,
            };
            let bytes = bundle.as_deref().map(bundle_bytes).transpose()?;
            let mut v = client
                .create_version(t.id.as_str(), &req)
                .await
                .map_err(api(format!("could not create a version of {template}")))?;
            for w in &v.warnings {
                eprintln!("warning: {}: {}", w.field, w.message);
            }
            if let Some(bytes) = bytes {
                let grant = client
                    .bundle_grant(t.id.as_str(), v.id.as_str())
                    .await
                    .map_err(api("could not get an upload grant"))?;
                let size = bytes.len();
                let uploaded = client
                    .upload_with_grant(&grant, bytes)
                    .await
                    .map_err(api(format!("could not upload the bundle ({size} bytes)")))?;
                v.bundle = Some(uploaded);
            }
            if json.json {
                return print_json(&v);
            }
            println!("{}", v.id);
            eprintln!(
                "Created version {} of {}{}.",
                v.number,
                t.name,
                v.bundle.as_ref().map_or(String::new(), |b| format!(
                    " with a {}-byte bundle (sha256 {})",
                    b.size, b.digest
                ))
            );
            Ok(())
        }
        VersionCmd::List { template, ws, json } => {
            let t = find_template(app, client, &ws, &template).await?;
            let versions = client
                .template_versions(t.id.as_str())
                .await
                .map_err(api(format!("could not list the versions of {template}")))?;
            if json.json {
                return print_json(&versions);
            }
            print_table(
                &["VERSION", "ID", "SOURCE", "BASE", "BUNDLE", "CREATED"],
                &versions
                    .iter()
                    .map(|v| {
                        vec![
                            v.number.to_string(),
                            v.id.to_string(),
                            format!("{:?}", v.source).to_lowercase(),
                            v.manifest.base.clone(),
                            v.bundle
                                .as_ref()
                                .map_or("-".to_owned(), |b| format!("{} bytes", b.size)),
                            fmt_time(Some(v.created_at)),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
    }
}

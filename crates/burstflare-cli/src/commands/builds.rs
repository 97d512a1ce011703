//! `burstflare build …`: start a build of a template version, follow it,
//! read its log and artifact, retry or cancel it.

use std::time::Duration;

use burstflare_api::builds::{Build, CreateBuildRequest, PromoteRequest};
use burstflare_cli::client::Client;
use burstflare_cli::error::CliError;
use burstflare_domain::build::BuildState;
use clap::Subcommand;

use super::api;
use super::templates::find_template;
use super::workspaces::WorkspaceFlag;
use crate::{App, JsonFlag, fmt_time, print_json, print_table};

#[derive(Subcommand)]
pub enum BuildCmd {
    /// Build a template version (the newest by default).
    Start {
        template: String,
        /// Version number or id [default: the newest].
        #[arg(long, value_name = "VERSION")]
        template_version: Option<String>,
        /// Wait for the build to end, printing its log.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        ws: WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List a template's builds.
    List {
        template: String,
        #[command(flatten)]
        ws: WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show a build and its attempts.
    Get {
        id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Print a build's log (every attempt).
    Logs {
        id: String,
        /// Keep printing until the build ends.
        #[arg(long)]
        follow: bool,
    },
    /// Show what a successful build produced.
    Artifact {
        id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Retry a failed or dead-lettered build.
    Retry { id: String },
    /// Cancel a build that has not ended.
    Cancel { id: String },
    /// Re-queue every dead-lettered build of a template.
    RetryDeadLettered {
        template: String,
        #[command(flatten)]
        ws: WorkspaceFlag,
    },
}

fn show(b: &Build) {
    println!(
        "{}  {}  attempts {}  updated {}",
        b.id,
        b.state.as_str(),
        b.attempts,
        fmt_time(Some(b.updated_at))
    );
    if let Some(e) = &b.last_error {
        println!("last error: {e}");
    }
}

/// Prints the log as it grows until the build ends (to stderr when the
/// log is progress rather than the output asked for); the final build.
async fn follow(client: &Client, id: &str, to_stderr: bool) -> Result<Build, CliError> {
    let mut printed = 0;
    loop {
        let b = client
            .build(id)
            .await
            .map_err(api(format!("could not read build {id}")))?;
        let log = client
            .build_logs(id)
            .await
            .map_err(api("could not read the log"))?;
        // The log only grows while a build runs; what is new is the rest.
        if let Some(new) = log.get(printed..).filter(|n| !n.is_empty()) {
            if to_stderr {
                eprint!("{new}");
            } else {
                print!("{new}");
            }
            printed = log.len();
        }
        if b.state.is_terminal() {
            return Ok(b);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

pub async fn build(app: &App, cmd: BuildCmd) -> Result<(), CliError> {
    let client = app.signed_in()?;
    match cmd {
        BuildCmd::Start {
            template,
            template_version: version,
            wait,
            ws,
            json,
        } => {
            let t = find_template(app, &client, &ws, &template).await?;
            let versions = client
                .template_versions(t.id.as_str())
                .await
                .map_err(api("could not list versions"))?;
            let v = match &version {
                Some(v) => versions
                    .iter()
                    .find(|x| x.id.as_str() == v || x.number.to_string() == *v),
                None => versions.first(),
            }
            .ok_or_else(|| {
                CliError::user(format!(
                    "{template} has no version {}",
                    version.clone().unwrap_or_default()
                ))
                .hint("create one with `burstflare template version create`")
            })?;
            let b = client
                .start_build(
                    t.id.as_str(),
                    &CreateBuildRequest {
                        version_id: v.id.clone(),
                    },
                )
                .await
                .map_err(api(format!("could not start a build of {template}")))?;
            let b = if wait {
                follow(&client, b.id.as_str(), true).await?
            } else {
                b
            };
            if json.json {
                return print_json(&b);
            }
            println!("{}", b.id);
            eprintln!(
                "Build {} of {} version {} is {}.",
                b.id,
                t.name,
                v.number,
                b.state.as_str()
            );
            if wait && b.state != BuildState::Succeeded {
                return Err(
                    CliError::user(format!("the build ended {}", b.state.as_str()))
                        .cause(b.last_error.unwrap_or_default()),
                );
            }
            Ok(())
        }
        BuildCmd::List { template, ws, json } => {
            let t = find_template(app, &client, &ws, &template).await?;
            let all = client
                .builds(t.id.as_str())
                .await
                .map_err(api("could not list builds"))?;
            if json.json {
                return print_json(&all);
            }
            print_table(
                &["ID", "STATE", "ATTEMPTS", "VERSION", "CREATED"],
                &all.iter()
                    .map(|b| {
                        vec![
                            b.id.to_string(),
                            b.state.as_str().to_owned(),
                            b.attempts.to_string(),
                            b.version_id.to_string(),
                            fmt_time(Some(b.created_at)),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
        BuildCmd::Get { id, json } => {
            let b = client
                .build(&id)
                .await
                .map_err(api(format!("could not read build {id}")))?;
            if json.json {
                return print_json(&b);
            }
            show(&b);
            for a in &b.history {
                println!(
                    "  attempt {}: {} {}",
                    a.attempt,
                    a.outcome.as_deref().unwrap_or("running"),
                    a.error.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }
        BuildCmd::Logs { id, follow: true } => {
            follow(&client, &id, false).await?;
            Ok(())
        }
        BuildCmd::Logs { id, follow: false } => {
            let log = client
                .build_logs(&id)
                .await
                .map_err(api(format!("could not read the log of {id}")))?;
            print!("{log}");
            Ok(())
        }
        BuildCmd::Artifact { id, json } => {
            let b = client
                .build(&id)
                .await
                .map_err(api(format!("could not read build {id}")))?;
            let Some(a) = &b.artifact else {
                return Err(CliError::user(format!(
                    "build {id} is {} and has no artifact",
                    b.state.as_str()
                )));
            };
            if json.json {
                return print_json(a);
            }
            println!(
                "layer     sha256:{} ({} bytes)",
                a.layer_digest, a.layer_size
            );
            println!(
                "base      {} ({})",
                a.base_image,
                a.base_image_digest.as_deref().unwrap_or("digest unknown")
            );
            println!("manifest  {}", a.manifest_hash);
            println!("bundle    {}", a.bundle_digest.as_deref().unwrap_or("-"));
            for s in &a.steps {
                println!("step      {} {} ms", s.step, s.millis);
            }
            Ok(())
        }
        BuildCmd::Retry { id } => {
            let b = client
                .build_command(&id, "retry")
                .await
                .map_err(api(format!("could not retry {id}")))?;
            eprintln!("Build {} is {}.", b.id, b.state.as_str());
            Ok(())
        }
        BuildCmd::Cancel { id } => {
            let b = client
                .build_command(&id, "cancel")
                .await
                .map_err(api(format!("could not cancel {id}")))?;
            eprintln!("Build {} is {}.", b.id, b.state.as_str());
            Ok(())
        }
        BuildCmd::RetryDeadLettered { template, ws } => {
            let t = find_template(app, &client, &ws, &template).await?;
            let r = client
                .retry_dead_lettered(t.id.as_str())
                .await
                .map_err(api("could not retry the dead-lettered builds"))?;
            for id in &r.requeued {
                println!("{id}");
            }
            eprintln!(
                "Re-queued {} dead-lettered build(s) of {}.",
                r.requeued.len(),
                t.name
            );
            Ok(())
        }
    }
}

#[derive(Subcommand)]
pub enum ReleaseCmd {
    /// List a template's releases and the history of promotions and rollbacks.
    List {
        template: String,
        #[command(flatten)]
        ws: WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Promote a succeeded build: new sessions boot it.
    Promote {
        template: String,
        /// The build id (`bld_…`).
        build: String,
        #[command(flatten)]
        ws: WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Make an earlier release active again.
    Rollback {
        template: String,
        /// The release id (`rel_…`) or number.
        release: String,
        #[command(flatten)]
        ws: WorkspaceFlag,
    },
}

pub async fn release(app: &App, cmd: ReleaseCmd) -> Result<(), CliError> {
    let client = app.signed_in()?;
    match cmd {
        ReleaseCmd::List { template, ws, json } => {
            let t = find_template(app, &client, &ws, &template).await?;
            let r = client
                .releases(t.id.as_str())
                .await
                .map_err(api("could not list releases"))?;
            if json.json {
                return print_json(&r);
            }
            print_table(
                &["NUMBER", "ID", "BUILD", "LAYER", "CREATED", ""],
                &r.releases
                    .iter()
                    .map(|x| {
                        vec![
                            x.number.to_string(),
                            x.id.to_string(),
                            x.spec.build_id.to_string(),
                            format!("{} bytes", x.spec.layer_size),
                            fmt_time(Some(x.created_at)),
                            if x.active {
                                "(active)".into()
                            } else {
                                String::new()
                            },
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            for a in &r.activations {
                println!(
                    "{}  {} {} (from {}) by {}",
                    fmt_time(Some(a.created_at)),
                    a.kind,
                    a.release_id,
                    a.previous_release_id
                        .as_ref()
                        .map_or("-".to_owned(), |p| p.to_string()),
                    a.actor_id
                );
            }
            Ok(())
        }
        ReleaseCmd::Promote {
            template,
            build,
            ws,
            json,
        } => {
            let t = find_template(app, &client, &ws, &template).await?;
            let r = client
                .promote(
                    t.id.as_str(),
                    &PromoteRequest {
                        build_id: build.parse().map_err(|e| CliError::user(format!("{e}")))?,
                    },
                )
                .await
                .map_err(api(format!("could not promote {build}")))?;
            if json.json {
                return print_json(&r);
            }
            println!("{}", r.id);
            eprintln!(
                "Release {} of {} is active; new sessions boot it.",
                r.number, t.name
            );
            Ok(())
        }
        ReleaseCmd::Rollback {
            template,
            release,
            ws,
        } => {
            let t = find_template(app, &client, &ws, &template).await?;
            let id = if release.starts_with("rel_") {
                release.clone()
            } else {
                client
                    .releases(t.id.as_str())
                    .await
                    .map_err(api("could not list releases"))?
                    .releases
                    .into_iter()
                    .find(|r| r.number.to_string() == release)
                    .map(|r| r.id.to_string())
                    .ok_or_else(|| CliError::user(format!("{template} has no release {release}")))?
            };
            let r = client
                .rollback(t.id.as_str(), &id)
                .await
                .map_err(api(format!("could not roll back to {release}")))?;
            eprintln!("Rolled back {} to release {}.", t.name, r.number);
            Ok(())
        }
    }
}

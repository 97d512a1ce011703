//! Builds on real builder containers: apt packages and setup commands run
//! once, the log shows them, the layer lands in R2; failing setups retry up
//! to the limit, dead-letter, and are re-queued in bulk.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use burstflare_api::builds::{Build, CreateBuildRequest};
use burstflare_api::templates::{CreateTemplateRequest, CreateVersionRequest};
use burstflare_cli::client::Client;
use burstflare_domain::build::{BuildState, MAX_ATTEMPTS};
use burstflare_e2e::Stack;

use crate::support::eventually;

pub const JQ_TEMPLATE: &str = r#"
base = "runtime"
packages = ["jq"]
setup = [
  "mkdir -p /opt/tool",
  "echo 1.6-burstflare > /opt/tool/VERSION",
  "echo ran >> /opt/tool/setup-runs",
]
start = ["echo started"]
"#;

/// A template with one version of `manifest`; returns (template id, version id).
pub async fn template_with(c: &Client, name: &str, manifest: &str) -> Result<(String, String)> {
    let t = c
        .create_template(&CreateTemplateRequest {
            name: name.into(),
            ..Default::default()
        })
        .await?;
    let v = c
        .create_version(
            t.id.as_str(),
            &CreateVersionRequest {
                manifest: Some(manifest.into()),
                devcontainer: None,
            },
        )
        .await?;
    Ok((t.id.to_string(), v.id.to_string()))
}

/// Waits until the build is in one of `states`.
pub async fn wait_for(
    c: &Client,
    id: &str,
    states: &[BuildState],
    timeout: Duration,
) -> Result<Build> {
    eventually(timeout, &format!("build {id} in {states:?}"), || async {
        let b = c.build(id).await?;
        Ok(states.contains(&b.state).then_some(b))
    })
    .await
}

pub async fn apt_build_succeeds_with_log_and_layer(stack: &Stack) -> Result<()> {
    let (_, c) = stack.register("builds").await?;
    let (tid, vid) = template_with(&c, "jq-build", JQ_TEMPLATE).await?;
    let b = c
        .start_build(
            &tid,
            &CreateBuildRequest {
                version_id: vid.parse()?,
            },
        )
        .await?;
    ensure!(b.state == BuildState::Queued && b.attempts == 0, "{b:?}");
    let done = wait_for(
        &c,
        b.id.as_str(),
        &[
            BuildState::Succeeded,
            BuildState::Failed,
            BuildState::DeadLettered,
            BuildState::Retrying,
        ],
        Duration::from_secs(600),
    )
    .await?;
    let log = c.build_logs(b.id.as_str()).await?;
    ensure!(done.state == BuildState::Succeeded, "{done:?}\n{log}");
    ensure!(
        log.contains("$ apt-get install") && log.contains("Setting up jq"),
        "{log}"
    );
    ensure!(log.contains("$ echo ran >> /opt/tool/setup-runs"), "{log}");
    let artifact = done.artifact.clone().context("artifact")?;
    ensure!(
        artifact.layer_digest.len() == 64 && artifact.layer_size > 0,
        "{artifact:?}"
    );
    ensure!(
        artifact
            .steps
            .iter()
            .map(|s| s.step.as_str())
            .collect::<Vec<_>>()
            == ["prepare", "setup", "capture"],
        "{artifact:?}"
    );
    let keys = stack.r2_keys(&format!("templates/{tid}/"))?;
    ensure!(
        keys.iter()
            .any(|k| k.ends_with(&format!("layers/{}.tar.zst", b.id))),
        "{keys:?}"
    );
    ensure!(
        done.history.len() == 1 && done.history[0].outcome.as_deref() == Some("succeeded"),
        "{done:?}"
    );
    Ok(())
}

pub async fn failing_setup_retries_dead_letters_and_bulk_retries(stack: &Stack) -> Result<()> {
    let (_, c) = stack.register("builds-fail").await?;
    let manifest =
        "base = \"runtime\"\nsetup = [\"echo about to fail\", \"echo oops >&2; exit 7\"]\n";
    let (tid, vid) = template_with(&c, "always-fails", manifest).await?;
    let b = c
        .start_build(
            &tid,
            &CreateBuildRequest {
                version_id: vid.parse()?,
            },
        )
        .await?;
    let dead = wait_for(
        &c,
        b.id.as_str(),
        &[BuildState::DeadLettered, BuildState::Succeeded],
        Duration::from_secs(600),
    )
    .await?;
    ensure!(dead.state == BuildState::DeadLettered, "{dead:?}");
    ensure!(dead.attempts == MAX_ATTEMPTS, "{dead:?}");
    let err = dead.last_error.clone().unwrap_or_default();
    ensure!(
        err.contains("exited with 7") && err.contains("oops"),
        "{err}"
    );
    ensure!(
        dead.history.len() == MAX_ATTEMPTS as usize,
        "{:?}",
        dead.history
    );
    ensure!(
        dead.history
            .iter()
            .all(|a| a.outcome.as_deref() == Some("failed")),
        "{:?}",
        dead.history
    );
    let log = c.build_logs(b.id.as_str()).await?;
    ensure!(
        log.matches("[exit 7]").count() == MAX_ATTEMPTS as usize,
        "{log}"
    );
    ensure!(
        log.contains("about to fail") && log.contains("=== attempt 3 ==="),
        "{log}"
    );
    // Bulk retry re-queues it with a fresh allowance; cancel stops it.
    let r = c.retry_dead_lettered(&tid).await?;
    ensure!(r.requeued.len() == 1 && r.requeued[0] == b.id, "{r:?}");
    let again = c.build(b.id.as_str()).await?;
    ensure!(
        matches!(again.state, BuildState::Queued | BuildState::Building),
        "{again:?}"
    );
    let cancelled = c.build_command(b.id.as_str(), "cancel").await?;
    ensure!(cancelled.state == BuildState::Cancelled, "{cancelled:?}");
    let err = c
        .build_command(b.id.as_str(), "cancel")
        .await
        .err()
        .context("a cancelled build cannot be cancelled")?;
    ensure!(err.status() == Some(409), "{err}");
    Ok(())
}

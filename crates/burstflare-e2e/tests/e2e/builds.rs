//! Builds on real builder containers: apt packages and setup commands run
//! once, the log shows them, the layer lands in R2; failing setups retry up
//! to the limit, dead-letter, and are re-queued in bulk.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use burstflare_api::builds::{Build, CreateBuildRequest, PromoteRequest};
use burstflare_api::runtime::LABEL_SESSION;
use burstflare_api::sessions::Session;
use burstflare_api::templates::{CreateTemplateRequest, CreateVersionRequest};
use burstflare_cli::client::Client;
use burstflare_domain::SessionState;
use burstflare_domain::build::{BuildState, MAX_ATTEMPTS};
use burstflare_e2e::runner::docker_containers;
use burstflare_e2e::stack::unique;
use burstflare_e2e::user::{User, ok, run, text};
use burstflare_e2e::{Stack, Tools};

use crate::support::eventually;

pub const JQ_TEMPLATE: &str = r#"
base = "runtime"
packages = ["jq"]
setup = [
  "mkdir -p /opt/tool",
  "echo 1.6-burstflare > /opt/tool/VERSION",
  "echo ran >> /opt/tool/setup-runs",
]
start = [
  "echo started >> /opt/tool/start-runs",
  # A background server keeps the command's output open; boot goes on.
  "(echo serving; exec sleep 600) &",
]
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

/// Builds `manifest` as a new version of template `tid`; the finished build.
async fn build_version(c: &Client, tid: &str, manifest: &str) -> Result<Build> {
    let v = c
        .create_version(
            tid,
            &CreateVersionRequest {
                manifest: Some(manifest.into()),
                devcontainer: None,
            },
        )
        .await?;
    finished_build(c, tid, v.id.as_str()).await
}

/// Builds version `vid` of template `tid`; the build, which must succeed.
async fn finished_build(c: &Client, tid: &str, vid: &str) -> Result<Build> {
    let b = c
        .start_build(
            tid,
            &CreateBuildRequest {
                version_id: vid.parse()?,
            },
        )
        .await?;
    ensure!(b.state == BuildState::Queued && b.attempts == 0, "{b:?}");
    let done = wait_for(
        c,
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
    Ok(done)
}

/// Builds version `vid` of template `tid`, waits for it and promotes it.
pub async fn build_and_promote(c: &Client, tid: &str, vid: &str) -> Result<Build> {
    let done = finished_build(c, tid, vid).await?;
    c.promote(
        tid,
        &PromoteRequest {
            build_id: done.id.clone(),
        },
    )
    .await?;
    Ok(done)
}

/// Runs `cmd` over SSH in session `name` as `u`; its stdout.
async fn ssh(u: &User, name: &str, cmd: &str) -> Result<String> {
    let key = u.key();
    let out = ok(run(u.cli(&[
        "ssh",
        name,
        "-i",
        &key.to_string_lossy(),
        "-o",
        "BatchMode=yes",
        "--",
        cmd,
    ]))
    .await?)?;
    Ok(text(&out.stdout).trim().to_owned())
}

/// Creates and starts a session of the template `template` with the CLI.
async fn session_of(u: &User, template: &str) -> Result<String> {
    let name = format!("tpl-{}", unique().replace('-', ""));
    let out = ok(run(u.cli(&[
        "session",
        "create",
        &name,
        "--template",
        template,
        "--start",
        "--json",
    ]))
    .await?)?;
    let s: Session = serde_json::from_slice(&out.stdout)?;
    ensure!(s.state == SessionState::Running, "{s:?}");
    ensure!(s.spec.release.is_some(), "{s:?}");
    Ok(name)
}

pub async fn apt_build_promote_boot_and_rollback(stack: &Stack) -> Result<()> {
    let u = User::new(stack, "builds").await?;
    u.add_key().await?;
    let c = &u.client;
    let t = c
        .create_template(&CreateTemplateRequest {
            name: "jq-build".into(),
            ..Default::default()
        })
        .await?;
    let tid = t.id.to_string();
    let first = build_version(c, &tid, JQ_TEMPLATE).await?;
    let log = c.build_logs(first.id.as_str()).await?;
    ensure!(
        log.contains("$ apt-get install") && log.contains("Setting up jq"),
        "{log}"
    );
    ensure!(log.contains("$ echo ran >> /opt/tool/setup-runs"), "{log}");
    let artifact = first.artifact.clone().context("artifact")?;
    ensure!(
        artifact.layer_digest.len() == 64 && artifact.layer_size > 0,
        "{artifact:?}"
    );
    ensure!(
        artifact
            .base_image_digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:") && d.len() == 71),
        "{artifact:?}"
    );
    ensure!(
        artifact
            .steps
            .iter()
            .map(|s| s.step.as_str())
            .collect::<Vec<_>>()
            == ["validate", "prepare", "setup", "capture"],
        "{artifact:?}"
    );
    let keys = stack.r2_keys(&format!("templates/{tid}/"))?;
    ensure!(
        keys.iter()
            .any(|k| k.ends_with(&format!("layers/{}.tar.zst", first.id))),
        "{keys:?}"
    );
    ensure!(
        first.history.len() == 1 && first.history[0].outcome.as_deref() == Some("succeeded"),
        "{first:?}"
    );

    // Promote; a new session boots the layer without running the setup again.
    let r1 = c
        .promote(
            &tid,
            &PromoteRequest {
                build_id: first.id.clone(),
            },
        )
        .await?;
    ensure!(
        r1.number == 1
            && r1.active
            && r1.spec.layer_digest == artifact.layer_digest
            && r1.spec.base_image_digest == artifact.base_image_digest,
        "{r1:?}"
    );
    let s1 = session_of(&u, "jq-build").await?;
    ensure!(ssh(&u, &s1, "jq --version").await?.starts_with("jq-1."));
    ensure!(ssh(&u, &s1, "cat /opt/tool/VERSION").await? == "1.6-burstflare");
    ensure!(
        ssh(&u, &s1, "wc -l < /opt/tool/setup-runs").await? == "1",
        "the setup ran once, at build time"
    );
    ensure!(
        ssh(&u, &s1, "wc -l < /opt/tool/start-runs").await? == "1",
        "the start command ran at boot"
    );
    ensure!(
        ssh(&u, &s1, "pgrep -c -x sleep").await? == "1",
        "the background process started at boot keeps running"
    );

    // A second version, built and promoted with the CLI; then a rollback.
    let second = build_version(
        c,
        &tid,
        &JQ_TEMPLATE.replace("1.6-burstflare", "2.0-burstflare"),
    )
    .await?;
    ok(run(u.cli(&["release", "promote", "jq-build", second.id.as_str()])).await?)?;
    let s2 = session_of(&u, "jq-build").await?;
    ensure!(ssh(&u, &s2, "cat /opt/tool/VERSION").await? == "2.0-burstflare");
    ok(run(u.cli(&["release", "rollback", "jq-build", "1"])).await?)?;
    let s3 = session_of(&u, "jq-build").await?;
    ensure!(
        ssh(&u, &s3, "cat /opt/tool/VERSION").await? == "1.6-burstflare",
        "rollback boots release 1"
    );
    let history = c.releases(&tid).await?;
    ensure!(
        history.active_release_id.as_ref() == Some(&r1.id),
        "{history:?}"
    );
    let kinds: Vec<&str> = history
        .activations
        .iter()
        .map(|a| a.kind.as_str())
        .collect();
    ensure!(kinds == ["rollback", "promote", "promote"], "{kinds:?}");
    ensure!(history.activations[0].previous_release_id.is_some());
    ensure!(history.activations[0].actor_id.to_string() == u.user_id);
    // An explicit release boots even when another is active.
    let r2 = history
        .releases
        .iter()
        .find(|r| r.number == 2)
        .context("release 2")?;
    let name = format!("tpl-{}", unique().replace('-', ""));
    ok(run(u.cli(&[
        "session",
        "create",
        &name,
        "--template",
        "jq-build",
        "--release",
        r2.id.as_str(),
        "--start",
    ]))
    .await?)?;
    ensure!(ssh(&u, &name, "cat /opt/tool/VERSION").await? == "2.0-burstflare");
    // Only succeeded builds are promoted.
    let err = c
        .promote(
            &tid,
            &PromoteRequest {
                build_id: "bld_00000000000000000000000000".parse()?,
            },
        )
        .await
        .err()
        .context("unknown build")?;
    ensure!(err.status() == Some(404), "{err}");
    for s in [s1, s2, s3, name] {
        ok(run(u.cli(&["session", "delete", &s])).await?)?;
    }
    // Deleting the template removes its bundles, logs and layers from R2.
    ensure!(!stack.r2_keys(&format!("templates/{tid}/"))?.is_empty());
    c.delete_template(&tid).await?;
    let left = stack.r2_keys(&format!("templates/{tid}/"))?;
    ensure!(left.is_empty(), "{left:?}");
    ensure!(
        c.releases(&tid).await.is_err(),
        "the releases went with the template"
    );
    Ok(())
}

/// Own stack with a short "stuck" threshold: an attempt that makes no
/// progress is redispatched by the reconcile sweep (same build, new attempt,
/// the lost attempt kept in the history), and the stale attempt's remaining
/// steps change nothing when they finally run.
pub async fn stuck_builds_are_redispatched(tools: &Tools) -> Result<()> {
    let tools = tools.clone();
    let stack = tokio::task::spawn_blocking(move || {
        Stack::start_with(&tools, true, &[("BUILD_STUCK_BUILDING_SECONDS", "4")])
    })
    .await??;
    let (_, c) = stack.register("stuck").await?;
    // The first attempt sleeps past the threshold; the marker makes later
    // attempts quick, so the build finishes.
    let manifest = "base = \"runtime\"\nsetup = [\"test -e /tmp/never || sleep 12\", \"echo done > /opt/done\"]\n";
    let (tid, vid) = template_with(&c, "slow-setup", manifest).await?;
    let b = c
        .start_build(
            &tid,
            &CreateBuildRequest {
                version_id: vid.parse()?,
            },
        )
        .await?;
    wait_for(
        &c,
        b.id.as_str(),
        &[BuildState::Building],
        Duration::from_secs(120),
    )
    .await?;
    // While it runs, the log so far is readable (streamed from the builder).
    eventually(Duration::from_secs(8), "the live build log", || async {
        let log = c.build_logs(b.id.as_str()).await?;
        Ok(log
            .contains("$ test -e /tmp/never || sleep 12")
            .then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let resp = stack
        .http()
        .get(format!("{}/__scheduled?cron=*/5+*+*+*+*", stack.url))
        .send()
        .await?;
    ensure!(resp.status().is_success(), "scheduled: {}", resp.status());
    let again = match eventually(
        Duration::from_secs(60),
        "the build redispatched",
        || async {
            let b = c.build(b.id.as_str()).await?;
            Ok((b.attempts >= 2).then_some(b))
        },
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            let now = c.build(b.id.as_str()).await?;
            anyhow::bail!("{e}: the build is {now:?}");
        }
    };
    ensure!(
        again.history.first().and_then(|a| a.outcome.as_deref()) == Some("lost"),
        "{:?}",
        again.history
    );
    // The redispatched attempt also sleeps (the marker is per container),
    // so let it run to the end without further sweeps.
    let done = wait_for(
        &c,
        b.id.as_str(),
        &[
            BuildState::Succeeded,
            BuildState::DeadLettered,
            BuildState::Failed,
        ],
        Duration::from_secs(300),
    )
    .await?;
    ensure!(done.state == BuildState::Succeeded, "{done:?}");
    ensure!(done.attempts == 2, "{done:?}");
    // The first attempt's workflow finished its steps late: nothing changed.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = c.build(b.id.as_str()).await?;
    ensure!(
        after.state == BuildState::Succeeded && after.attempts == 2,
        "{after:?}"
    );
    ensure!(
        after.artifact == done.artifact,
        "the artifact is the second attempt's"
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

/// Own stack where every build step runs twice (`WORKFLOW_REPLAY_STEPS`,
/// the engine replaying a step whose result it lost) and commands time out
/// after 4 s: the replayed build runs its setup once, stores one layer and
/// one attempt; a setup command and a start command that outlive the
/// timeout fail with the reason instead of hanging.
pub async fn replayed_steps_and_command_timeouts(tools: &Tools) -> Result<()> {
    let tools = tools.clone();
    let stack = tokio::task::spawn_blocking(move || {
        Stack::start_with(
            &tools,
            true,
            &[
                ("WORKFLOW_REPLAY_STEPS", "true"),
                ("BUILD_COMMAND_TIMEOUT_SECONDS", "4"),
                ("START_COMMAND_TIMEOUT_SECONDS", "4"),
            ],
        )
    })
    .await??;
    let u = User::new(&stack, "replay").await?;
    u.add_key().await?;
    let c = &u.client;

    // Replayed steps: nothing runs twice.
    let manifest = "base = \"runtime\"\nsetup = [\"mkdir -p /opt/tool\", \"echo ran >> /opt/tool/setup-runs\"]\nstart = [\"echo started >> /opt/tool/start-runs\"]\n";
    let (tid, _) = template_with(c, "replayed", manifest).await?;
    let built = build_version(c, &tid, manifest).await?;
    ensure!(
        built.attempts == 1
            && built.history.len() == 1
            && built.history[0].outcome.as_deref() == Some("succeeded"),
        "{built:?}"
    );
    let log = c.build_logs(built.id.as_str()).await?;
    ensure!(
        log.matches("$ echo ran >> /opt/tool/setup-runs").count() == 1,
        "{log}"
    );
    let layers: Vec<String> = stack
        .r2_keys(&format!("templates/{tid}/"))?
        .into_iter()
        .filter(|k| k.contains("/layers/"))
        .collect();
    ensure!(layers.len() == 1, "{layers:?}");
    // `finish` removes the builder right after recording the success.
    eventually(Duration::from_secs(30), "the builder removed", || async {
        Ok(docker_containers(LABEL_SESSION, built.id.as_str())?
            .is_empty()
            .then_some(()))
    })
    .await?;
    c.promote(
        &tid,
        &PromoteRequest {
            build_id: built.id.clone(),
        },
    )
    .await?;
    let s = session_of(&u, "replayed").await?;
    ensure!(
        ssh(&u, &s, "wc -l < /opt/tool/setup-runs").await? == "1",
        "the setup ran once although every step ran twice"
    );

    // A setup command past the timeout is killed; the attempt fails with why.
    let (slow, vid) = template_with(
        c,
        "slow",
        "base = \"runtime\"\nsetup = [\"echo before; sleep 60\"]\n",
    )
    .await?;
    let b = c
        .start_build(
            &slow,
            &CreateBuildRequest {
                version_id: vid.parse()?,
            },
        )
        .await?;
    let failed = eventually(
        Duration::from_secs(120),
        "the first attempt to time out",
        || async {
            let b = c.build(b.id.as_str()).await?;
            Ok(b.history
                .first()
                .filter(|a| a.outcome.is_some())
                .map(|_| b.clone()))
        },
    )
    .await?;
    let error = failed.history[0].error.clone().unwrap_or_default();
    ensure!(
        error.contains("exited with 124") && error.contains("timed out after 4 s"),
        "{failed:?}"
    );
    c.build_command(b.id.as_str(), "cancel").await?;

    // A start command past the timeout fails the session start with why.
    let hang = "base = \"runtime\"\nstart = [\"echo starting; sleep 60\"]\n";
    let (hung, _) = template_with(c, "hangs-at-start", hang).await?;
    let built = build_version(c, &hung, hang).await?;
    c.promote(
        &hung,
        &PromoteRequest {
            build_id: built.id.clone(),
        },
    )
    .await?;
    let name = format!("tpl-{}", unique().replace('-', ""));
    let out = run(u.cli(&[
        "session",
        "create",
        &name,
        "--template",
        "hangs-at-start",
        "--start",
    ]))
    .await?;
    let stderr = text(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("timed out after 4 s"),
        "{stderr}"
    );
    Ok(())
}

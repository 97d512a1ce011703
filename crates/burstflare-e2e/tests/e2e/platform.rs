//! Every binding, the schema drift check, cron, assets and deploy configs.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use burstflare_api::ErrorCode;
use burstflare_api::ops::{
    BindingKind, CreateProbeRequest, Health, HealthState, Probe, ProbeStageName, ProbeStageStatus,
};
use burstflare_cli::client::Client;
use burstflare_domain::SchemaStatus;
use burstflare_e2e::{Stack, Tools};

use crate::support::{eventually, expect_envelope};

const BINDINGS: &[(&str, BindingKind)] = &[
    ("DB", BindingKind::D1),
    ("BUCKET", BindingKind::R2),
    ("SESSIONS", BindingKind::DurableObject),
    ("BUILD_QUEUE", BindingKind::Queue),
    ("RECONCILE_QUEUE", BindingKind::Queue),
    ("BUILD_WORKFLOW", BindingKind::Workflow),
    ("ASSETS", BindingKind::Assets),
];

fn migration_names() -> Result<Vec<String>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut names: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    Ok(names)
}

/// Polls a probe until no stage is pending.
async fn completed_probe(client: &Client, id: &str) -> Result<Probe> {
    eventually(
        Duration::from_secs(90),
        &format!("probe {id} to complete"),
        || async {
            let p = client.get_probe(id).await?;
            Ok(p.complete.then_some(p))
        },
    )
    .await
}

pub async fn health_reports_every_binding_and_schema(stack: &Stack) -> Result<()> {
    let report = stack.client()?.health().await?;
    ensure!(report.healthy, "unhealthy: {:?}", report.problem);
    let h = report.health;
    ensure!(h.status == HealthState::Ok && h.environment == "dev");
    for (name, kind) in BINDINGS {
        let b = h
            .bindings
            .iter()
            .find(|b| b.name == *name)
            .with_context(|| format!("no check for {name}"))?;
        ensure!(b.kind == *kind && b.ok, "{name}: {b:?}");
    }
    let names = migration_names()?;
    let latest = names.last().cloned().unwrap_or_default();
    match h.schema {
        SchemaStatus::Current { version, latest: l } => {
            ensure!(
                version as usize == names.len() && l == latest,
                "schema v{version} {l} vs {names:?}"
            )
        }
        other => anyhow::bail!("schema not current: {other:?}"),
    }
    Ok(())
}

pub async fn probe_exercises_r2_do_queues_and_workflow(stack: &Stack) -> Result<()> {
    let (_, client) = stack.register("probe").await?;
    let first = client.create_probe(&CreateProbeRequest::default()).await?;
    // Synchronous stages are done when the create call returns.
    for name in [
        ProbeStageName::D1,
        ProbeStageName::R2,
        ProbeStageName::DurableObject,
    ] {
        let stage = first.stage(name).context("stage")?;
        ensure!(
            stage.status == ProbeStageStatus::Done,
            "{name:?}: {stage:?}"
        );
    }
    ensure!(
        first
            .stage(ProbeStageName::R2)
            .and_then(|s| s.detail.clone())
            .unwrap_or_default()
            .contains("read back")
    );
    ensure!(
        first
            .stage(ProbeStageName::DeadLetterQueue)
            .map(|s| s.status)
            == Some(ProbeStageStatus::Skipped)
    );
    let id = first.id.to_string();
    let done = completed_probe(&client, &id).await?;
    for name in [
        ProbeStageName::BuildQueue,
        ProbeStageName::ReconcileQueue,
        ProbeStageName::Workflow,
    ] {
        let stage = done.stage(name).context("stage")?;
        ensure!(
            stage.status == ProbeStageStatus::Done && stage.at.is_some(),
            "{name:?}: {stage:?}"
        );
    }
    let wf = done
        .stage(ProbeStageName::Workflow)
        .and_then(|s| s.detail.clone())
        .unwrap_or_default();
    ensure!(
        wf.contains("complete") && wf.contains("ran in Rust"),
        "workflow detail {wf:?}"
    );
    // The same user's Durable Object keeps its SQLite state between calls.
    let second = client.create_probe(&CreateProbeRequest::default()).await?;
    let detail = second
        .stage(ProbeStageName::DurableObject)
        .and_then(|s| s.detail.clone())
        .unwrap_or_default();
    ensure!(detail.contains("ping #2"), "second ping: {detail:?}");
    // Another user cannot read the probe.
    let (_, other) = stack.register("probe-other").await?;
    crate::support::expect_api_error(other.get_probe(&id).await, 404, ErrorCode::ProbeNotFound)?;
    Ok(())
}

pub async fn rejected_queue_message_lands_in_dead_letter_queue(stack: &Stack) -> Result<()> {
    let (_, client) = stack.register("dlq").await?;
    let probe = client
        .create_probe(&CreateProbeRequest { dead_letter: true })
        .await?;
    let id = probe.id.to_string();
    let done = completed_probe(&client, &id).await?;
    let dlq = done
        .stage(ProbeStageName::DeadLetterQueue)
        .context("dlq stage")?;
    ensure!(
        dlq.status == ProbeStageStatus::Done && dlq.at.is_some(),
        "{dlq:?}"
    );
    // max_retries = 2 in the dev config: one delivery plus two retries.
    let build = done
        .stage(ProbeStageName::BuildQueue)
        .and_then(|s| s.detail.clone())
        .unwrap_or_default();
    ensure!(
        build.contains("delivered 3 time(s)"),
        "build stage: {build:?}"
    );
    Ok(())
}

pub async fn cron_trigger_runs_reconcile_sweep(stack: &Stack) -> Result<()> {
    let client = stack.client()?;
    let before = client.health().await?.health.last_reconcile.map(|r| r.id);
    let resp = stack
        .http()
        .get(format!("{}/__scheduled?cron=*/5+*+*+*+*", stack.url))
        .send()
        .await?;
    ensure!(resp.status().is_success(), "scheduled: {}", resp.status());
    let run = eventually(Duration::from_secs(30), "a new reconcile run", || async {
        let last = client.health().await?.health.last_reconcile;
        Ok(last.filter(|r| Some(&r.id) != before.as_ref()))
    })
    .await?;
    ensure!(
        run.trigger == "cron" && run.finished_at >= run.started_at,
        "{run:?}"
    );
    Ok(())
}

pub async fn static_assets_are_served(stack: &Stack) -> Result<()> {
    let http = stack.http();
    let page = |path: &'static str| {
        let http = http.clone();
        let url = format!("{}{path}", stack.url);
        async move {
            let resp = http.get(url).send().await?;
            ensure!(resp.status() == 200, "{path}: {:?}", resp.status());
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            anyhow::Ok((ct, resp.text().await?))
        }
    };
    // The app's page, also for paths the app routes itself (the device
    // approval link the CLI prints).
    let (ct, index) = page("/").await?;
    ensure!(ct.starts_with("text/html"), "content-type {ct}");
    ensure!(index.contains("/assets/app.js"), "{index}");
    for path in [
        "/device?code=ABCD-EFGH",
        "/sessions/ses_x/terminal",
        "/signin",
    ] {
        let (ct, body) = page(path).await?;
        ensure!(ct.starts_with("text/html") && body == index, "{path}: {ct}");
    }
    let (ct, js) = page("/assets/app.js").await?;
    ensure!(ct.contains("javascript"), "content-type {ct}");
    ensure!(js.contains("import"), "the entry imports its chunks: {js}");
    // Unknown API paths stay JSON errors; the config tells the app about Turnstile.
    let resp = http.get(stack.api("/no-such-route")).send().await?;
    expect_envelope(resp, 404, ErrorCode::RouteNotFound).await?;
    let config: burstflare_api::ops::PublicConfig =
        http.get(stack.api("/config")).send().await?.json().await?;
    ensure!(
        !config.turnstile.required && config.turnstile.site_key.is_none(),
        "{config:?}"
    );
    Ok(())
}

/// Drift on a stack of its own: no migrations, then all, then one unknown to
/// the Worker, then one missing. Its D1 is edited with the real
/// `wrangler d1 execute --local` while the Worker runs.
pub async fn schema_drift_is_reported(tools: &Tools) -> Result<()> {
    let tools = tools.clone();
    let drift = tokio::task::spawn_blocking(move || Stack::start(&tools, false)).await??;
    let http = drift.http();
    let health = || http.get(drift.api("/health")).send();

    let err = expect_envelope(health().await?, 503, ErrorCode::SchemaDrift).await?;
    ensure!(
        err.message.contains("no D1 migrations are applied"),
        "{}",
        err.message
    );
    let report: Health = serde_json::from_value(err.details)?;
    ensure!(
        matches!(report.schema, SchemaStatus::Missing { .. }),
        "{:?}",
        report.schema
    );
    ensure!(
        report.bindings.iter().all(|b| b.ok),
        "bindings should still be fine: {:?}",
        report.bindings
    );

    // An internal failure (no tables yet) is a 500 that leaks nothing.
    let resp = http
        .post(drift.api("/auth/register"))
        .json(&serde_json::json!({"email": "x@example.test", "display_name": "X"}))
        .send()
        .await?;
    let err = expect_envelope(resp, 500, ErrorCode::Internal).await?;
    let leaked = ["users", "table", "D1", "SQL", "INSERT", "SELECT"];
    ensure!(
        !leaked.iter().any(|w| err.message.contains(w)),
        "500 leaks internals: {}",
        err.message
    );
    ensure!(err.details.is_null(), "500 details: {}", err.details);

    let cli_status = std::process::Command::new(&drift.tools.cli)
        .args(["--api-url", &drift.url, "status"])
        .env("BURSTFLARE_CONFIG_DIR", tempfile::tempdir()?.path())
        .output()?;
    ensure!(
        cli_status.status.code() == Some(3),
        "unhealthy status exits 3: {cli_status:?}"
    );
    ensure!(String::from_utf8_lossy(&cli_status.stderr).contains("error:"));

    drift.migrate()?; // blocking is fine: this future runs on the test's own thread
    let ok = health().await?;
    ensure!(ok.status() == 200, "after migrating: {}", ok.status());

    drift.d1_execute("INSERT INTO d1_migrations (name) VALUES ('9999_from_the_future.sql')")?;
    let err = expect_envelope(health().await?, 503, ErrorCode::SchemaDrift).await?;
    ensure!(
        err.message
            .contains("unknown to this Worker: 9999_from_the_future.sql"),
        "{}",
        err.message
    );

    let names = migration_names()?;
    let last = names.last().context("no migrations")?;
    drift.d1_execute(&format!(
        "DELETE FROM d1_migrations WHERE name IN ('9999_from_the_future.sql', '{last}')"
    ))?;
    let err = expect_envelope(health().await?, 503, ErrorCode::SchemaDrift).await?;
    ensure!(
        err.message.contains(&format!("not applied: {last}")),
        "{}",
        err.message
    );
    let report: Health = serde_json::from_value(err.details)?;
    match report.schema {
        SchemaStatus::Drift {
            missing,
            unexpected,
            ..
        } => {
            ensure!(missing == vec![last.clone()] && unexpected.is_empty())
        }
        other => anyhow::bail!("expected drift, got {other:?}"),
    }
    tokio::task::spawn_blocking(move || drop(drift)).await?;
    Ok(())
}

/// `wrangler deploy --dry-run` bundles the staging and production configs offline.
pub async fn wrangler_deploy_dry_run_staging_and_production(stack: &Stack) -> Result<()> {
    for env in ["staging", "production"] {
        let tools = stack.tools.clone();
        let out = tokio::task::spawn_blocking(
            move || -> Result<(std::process::Output, tempfile::TempDir)> {
                let config = tools.config(env)?;
                let outdir = tempfile::tempdir()?;
                let out = tools
                    .wrangler()
                    .args(["deploy", "--dry-run", "--config"])
                    .arg(&config)
                    .arg("--outdir")
                    .arg(outdir.path())
                    .output()?;
                Ok((out, outdir))
            },
        )
        .await??;
        let (output, outdir) = out;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        ensure!(output.status.success(), "{env} dry run failed:\n{text}");
        ensure!(text.contains("--dry-run: exiting now"), "{env}: {text}");
        for binding in [
            "env.DB",
            "env.BUCKET",
            "env.SESSIONS",
            "env.BUILD_QUEUE",
            "env.BUILD_WORKFLOW",
        ] {
            ensure!(
                text.contains(binding),
                "{env} dry run does not list {binding}:\n{text}"
            );
        }
        // Sessions run on Cloudflare Containers there: the coordinator class
        // is bound to the runtime image, and the adapter is selected.
        ensure!(
            text.contains(&format!("burstflare-{env}-sessioncoordinator"))
                && text.contains("/burstflare-runtime:"),
            "{env} dry run lists no session container:\n{text}"
        );
        ensure!(
            text.contains("env.SESSION_RUNTIME (\"cloudflare\")"),
            "{env} does not select the Containers adapter:\n{text}"
        );
        ensure!(
            text.contains(&format!("burstflare-{env}")),
            "{env} resource names: {text}"
        );
        let bundled: Vec<_> = std::fs::read_dir(outdir.path())?
            .filter_map(|e| e.ok())
            .collect();
        ensure!(
            bundled
                .iter()
                .any(|e| e.file_name().to_string_lossy().ends_with(".wasm")),
            "no wasm in bundle"
        );
    }
    Ok(())
}

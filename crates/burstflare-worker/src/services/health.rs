//! `GET /api/v1/health`: every binding's status and the D1 schema drift check.
//!
//! Healthy → 200 with the report. Otherwise 503 with the error envelope
//! (`schema_drift` when migrations are missing or stale, `unavailable` when a
//! binding fails) carrying the full report in `details`.

use burstflare_api::ops::{BindingCheck, BindingKind, Health, HealthState};
use burstflare_api::{ErrorCode, timestamp};
use burstflare_domain::check_schema;
use serde::Deserialize;
use worker::{Env, Response};

use crate::error::{ApiError, ApiResult};
use crate::http::json_response;
use crate::platform::{
    self, ASSETS, BUCKET, BUILD_QUEUE, BUILD_WORKFLOW, DB, RECONCILE_QUEUE, SESSIONS,
};
use crate::routes::Ctx;
use crate::store::{d1, reconcile};
use crate::{durable, workflow};

pub async fn respond(ctx: &Ctx) -> ApiResult<Response> {
    let report = check(ctx).await;
    if report.status == HealthState::Ok {
        return json_response(200, &report);
    }
    let (code, message) = if report.schema.is_current() {
        let failing: Vec<&str> = report
            .bindings
            .iter()
            .filter(|b| !b.ok)
            .map(|b| b.name.as_str())
            .collect();
        (
            ErrorCode::Unavailable,
            format!("unhealthy: binding(s) {} failing", failing.join(", ")),
        )
    } else {
        (ErrorCode::SchemaDrift, report.schema.explain())
    };
    Err(ApiError::new(503, code, message).with_details(serde_json::to_value(&report)?))
}

fn check_result(name: &str, kind: BindingKind, result: Result<String, String>) -> BindingCheck {
    let (ok, detail) = match result {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    BindingCheck {
        name: name.to_owned(),
        kind,
        ok,
        detail,
    }
}

async fn check(ctx: &Ctx) -> Health {
    let env = &ctx.env;
    let (db_check, applied) = match applied_migrations(env).await {
        Ok(applied) => (
            Ok(format!("reachable; {} migration(s) applied", applied.len())),
            applied,
        ),
        Err(e) => (Err(e), Vec::new()),
    };
    let schema = check_schema(crate::migrations::MIGRATIONS, &applied);
    let bindings = vec![
        check_result(DB, BindingKind::D1, db_check),
        check_result(BUCKET, BindingKind::R2, check_bucket(env).await),
        check_result(
            SESSIONS,
            BindingKind::DurableObject,
            check_sessions(env).await,
        ),
        check_result(
            BUILD_QUEUE,
            BindingKind::Queue,
            check_queue(env, BUILD_QUEUE),
        ),
        check_result(
            RECONCILE_QUEUE,
            BindingKind::Queue,
            check_queue(env, RECONCILE_QUEUE),
        ),
        check_result(
            BUILD_WORKFLOW,
            BindingKind::Workflow,
            workflow::check_binding(env),
        ),
        check_result(ASSETS, BindingKind::Assets, check_assets(env).await),
    ];
    let last_reconcile = if schema.is_current() {
        reconcile::latest(env).await.ok().flatten()
    } else {
        None
    };
    let healthy = schema.is_current() && bindings.iter().all(|b| b.ok);
    Health {
        status: if healthy {
            HealthState::Ok
        } else {
            HealthState::Unavailable
        },
        environment: platform::environment(env),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        schema,
        bindings,
        last_reconcile,
        checked_at: timestamp(ctx.now),
    }
}

/// Names of applied migrations; an absent `d1_migrations` table means none.
async fn applied_migrations(env: &Env) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Name {
        name: String,
    }
    let db = d1::db(env).map_err(|e| e.message)?;
    match d1::all::<Name>(&db, "SELECT name FROM d1_migrations ORDER BY id", &[]).await {
        Ok(rows) => Ok(rows.into_iter().map(|r| r.name).collect()),
        Err(e)
            if e.internal
                .as_deref()
                .is_some_and(|m| m.contains("no such table")) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(format!("query failed: {}", e.internal.unwrap_or(e.message))),
    }
}

async fn check_bucket(env: &Env) -> Result<String, String> {
    let bucket = env
        .bucket(BUCKET)
        .map_err(|e| format!("binding missing: {e}"))?;
    bucket
        .head("health/ping")
        .await
        .map_err(|e| format!("head failed: {e}"))?;
    Ok("reachable".into())
}

async fn check_sessions(env: &Env) -> Result<String, String> {
    let pong = durable::ping(env, "health", false)
        .await
        .map_err(|e| e.internal.unwrap_or(e.message))?;
    Ok(format!(
        "SessionCoordinator answered ({} pings recorded)",
        pong.count
    ))
}

fn check_queue(env: &Env, name: &str) -> Result<String, String> {
    env.queue(name)
        .map(|_| "producer bound".to_owned())
        .map_err(|e| format!("binding missing: {e}"))
}

async fn check_assets(env: &Env) -> Result<String, String> {
    let assets = env
        .assets(ASSETS)
        .map_err(|e| format!("binding missing: {e}"))?;
    let resp = assets
        .fetch("https://assets.invalid/index.html", None)
        .await
        .map_err(|e| format!("fetch failed: {e}"))?;
    match resp.status_code() {
        200 => Ok("index.html served".into()),
        s => Err(format!("index.html answered {s}")),
    }
}

//! The `BuildWorkflow` Workflow: Rust steps behind a tiny JS shim.
//!
//! workers-rs has no Workflow entrypoint, so `js/entry.mjs` defines
//! `class BuildWorkflow extends WorkflowEntrypoint`. Its `run` calls
//! [`workflow_step`] with the step name `"plan"`, which returns the list of
//! step names for the instance's params, then wraps each in `step.do(name, …)`
//! calling [`workflow_step`] again. Durability, retries and replay are the
//! Workflows engine's; every step here is idempotent, so a replayed step
//! leaves the same state behind. With `WORKFLOW_REPLAY_STEPS=true` (a drill
//! for tests, never set in deployments) every build step runs twice and the
//! first result is dropped, which is what a replay after a lost step result
//! looks like; the e2e suite builds that way and checks nothing ran twice.
//!
//! The Worker starts instances and reads their status through the binding's
//! JS API (`create`, `get`, `status`), which workers-rs does not wrap.

use std::collections::BTreeMap;

use js_sys::{Array, Function, Object, Promise, Reflect};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use worker::Env;

use crate::error::{ApiError, ApiResult};
use crate::platform::{self, BUILD_WORKFLOW};
use crate::services::builds::{self, StepResult};
use crate::store::probes::{self, Mark};

/// An instance's params (`event.payload` in the shim).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Params {
    /// A diagnostics probe: one step that records itself on the probe.
    Probe { probe_id: String },
    /// One attempt of a build (`services::builds`). The shim adds the
    /// results of the steps done so far, and `error` for the `fail` step.
    Build {
        build_id: String,
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(default, skip_serializing)]
        results: BTreeMap<String, StepResult>,
    },
}

/// The plan returned by the `"plan"` step: the steps, the step to run
/// (with `error` set) when one fails, and how often the engine retries a
/// failing step (builds retry whole attempts themselves).
#[derive(Debug, Serialize)]
struct Plan {
    steps: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_error: Option<&'static str>,
    retries: u32,
}

/// Runs one workflow step. Called from the JS shim; returns JSON text.
#[wasm_bindgen]
pub async fn workflow_step(env: Env, step: String, payload: String) -> Result<String, JsValue> {
    run_step(&env, &step, &payload).await.map_err(|e| {
        let msg = format!("workflow step {step}: {}", e.internal.unwrap_or(e.message));
        worker::console_error!("{msg}");
        JsValue::from(js_sys::Error::new(&msg))
    })
}

async fn run_step(env: &Env, step: &str, payload: &str) -> ApiResult<String> {
    let params: Params = serde_json::from_str(payload)
        .map_err(|e| ApiError::internal(format!("bad params {payload}: {e}")))?;
    match (step, &params) {
        ("plan", Params::Probe { .. }) => Ok(serde_json::to_string(&Plan {
            steps: vec!["record"],
            on_error: None,
            retries: 3,
        })?),
        ("plan", Params::Build { .. }) => Ok(serde_json::to_string(&Plan {
            steps: builds::STEPS.to_vec(),
            on_error: Some("fail"),
            retries: 0,
        })?),
        (
            "fail",
            Params::Build {
                build_id,
                attempt,
                error,
                ..
            },
        ) => {
            builds::fail(
                env,
                build_id,
                *attempt,
                error.as_deref().unwrap_or("the step failed"),
            )
            .await?;
            Ok("{}".to_owned())
        }
        (
            name,
            Params::Build {
                build_id,
                attempt,
                results,
                ..
            },
        ) => {
            if platform::var(env, "WORKFLOW_REPLAY_STEPS", "false") == "true" {
                // Replay drill (tests): the step runs once and its result is
                // dropped, as when the engine loses it and runs the step again.
                builds::step(env, name, build_id, *attempt, results).await?;
            }
            Ok(serde_json::to_string(
                &builds::step(env, name, build_id, *attempt, results).await?,
            )?)
        }
        ("record", Params::Probe { probe_id }) => {
            probes::mark(
                env,
                probe_id,
                Mark::Workflow,
                platform::now(),
                Some("step `record` ran in Rust"),
            )
            .await?;
            Ok(serde_json::to_string(
                &serde_json::json!({ "probe_id": probe_id }),
            )?)
        }
        (other, _) => Err(ApiError::internal(format!(
            "unknown step {other:?} for {payload}"
        ))),
    }
}

fn binding(env: &Env) -> Result<JsValue, String> {
    let value = Reflect::get(env, &JsValue::from_str(BUILD_WORKFLOW))
        .map_err(|_| format!("binding `{BUILD_WORKFLOW}` is unreadable"))?;
    if value.is_undefined() {
        return Err(format!("binding `{BUILD_WORKFLOW}` is missing"));
    }
    Ok(value)
}

fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|| format!("{e:?}"))
}

/// Calls `target[name](...args)` and awaits the result if it is a promise.
async fn call(target: &JsValue, name: &str, args: &[JsValue]) -> Result<JsValue, String> {
    let f: Function = Reflect::get(target, &JsValue::from_str(name))
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| format!("`{name}` is not a function"))?;
    let result = f
        .apply(target, &args.iter().collect::<Array>())
        .map_err(|e| js_message(&e))?;
    match result.dyn_into::<Promise>() {
        Ok(promise) => JsFuture::from(promise).await.map_err(|e| js_message(&e)),
        Err(value) => Ok(value),
    }
}

/// Starts an instance with a caller-chosen id (idempotency key).
pub async fn start(env: &Env, id: &str, params: &Params) -> ApiResult<()> {
    let wf = binding(env).map_err(ApiError::unavailable)?;
    let options = Object::new();
    let set = |k: &str, v: &JsValue| Reflect::set(&options, &JsValue::from_str(k), v).map(|_| ());
    let params_js = js_sys::JSON::parse(&serde_json::to_string(params)?)
        .map_err(|e| ApiError::internal(format!("params: {}", js_message(&e))))?;
    set("id", &JsValue::from_str(id))
        .and_then(|_| set("params", &params_js))
        .map_err(|e| ApiError::internal(format!("options: {}", js_message(&e))))?;
    call(&wf, "create", &[options.into()])
        .await
        .map_err(|e| ApiError::internal(format!("{BUILD_WORKFLOW}.create({id}): {e}")))?;
    Ok(())
}

/// The instance's status (`queued`, `running`, `complete`, `errored`, …).
pub async fn status(env: &Env, id: &str) -> ApiResult<String> {
    let wf = binding(env).map_err(ApiError::unavailable)?;
    let instance = call(&wf, "get", &[JsValue::from_str(id)])
        .await
        .map_err(|e| ApiError::internal(format!("{BUILD_WORKFLOW}.get({id}): {e}")))?;
    let status = call(&instance, "status", &[])
        .await
        .map_err(|e| ApiError::internal(format!("instance {id} status: {e}")))?;
    let value = Reflect::get(&status, &JsValue::from_str("status"))
        .ok()
        .and_then(|s| s.as_string());
    Ok(value.unwrap_or_else(|| "unknown".into()))
}

/// Health: the binding exists and exposes `create`.
pub fn check_binding(env: &Env) -> Result<String, String> {
    let wf = binding(env)?;
    let create = Reflect::get(&wf, &JsValue::from_str("create")).map_err(|e| js_message(&e))?;
    if create.is_function() {
        Ok("bound".into())
    } else {
        Err("binding has no `create` method".into())
    }
}

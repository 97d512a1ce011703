//! `SessionCoordinator`: one Durable Object per session (named by the session
//! id), SQLite storage. It is the single writer of the session's lifecycle.
//!
//! * Every command (start, stop, restart, delete) runs under one async lock, so
//!   concurrent requests are serialised even while a command awaits the
//!   runtime; what each command means is decided by
//!   [`burstflare_domain::decide`].
//! * Every transition bumps `state_version`, is appended to the event log and
//!   is projected into D1 (`sessions`, `session_events`); a projection that
//!   fails is retried by the alarm, and D1 ignores older versions.
//! * While the session is running, the alarm polls the runtime every
//!   `SESSION_MONITOR_INTERVAL_MS`; a container that died moves the session to
//!   `failed` with the runtime's reason.
//! * `/connect` bridges SSH and terminal WebSockets (to the agent) and
//!   previews (HTTP and WebSockets to a declared port) by handing the
//!   runtime's response straight back to the caller, so bytes flow
//!   runtime-to-runtime without passing through this object's code; a
//!   sleeping session is woken first.
//!
//! Internal HTTP interface (called by `services::sessions` only):
//! `POST /create` ([`CreateRequest`]: a new record, optionally started), `POST /command`
//! ([`CommandRequest`]), `GET /session`, `ANY /connect` ([`Target`]), and
//! `GET|POST /ping` (diagnostics).
//!
//! DO SQLite tables (documented in `docs/storage.md`):
//! * `record (k INTEGER PRIMARY KEY CHECK (k = 1), json TEXT, private_json TEXT, projected_version INTEGER)`
//! * `events (seq INTEGER PRIMARY KEY, json TEXT)`
//! * `counters (name TEXT PRIMARY KEY, value INTEGER)` (diagnostics pings)

use std::collections::BTreeMap;
use std::time::Duration;

use burstflare_api::runtime::{
    AGENT_PORT, AGENT_TOKEN_HEADER, AgentHealth, ENV_AGENT_SECRET, ENV_AUTHORIZED_KEYS,
    ENV_DRAIN_SECS, ENV_EDITOR_PORT, ENV_SESSION_ENV, ENV_SESSION_ID, LAYER_SHA256_HEADER,
    ResourceLimits,
};
use burstflare_api::sessions::CommandResult;
use burstflare_api::{ErrorCode, ErrorEnvelope};
use burstflare_domain::template::EDITOR_PORT;
use burstflare_domain::{
    Action, Observation, SessionCommand, SessionState, decide, observe, session::entered_state,
};
use futures_util::lock::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{
    DurableObject, Env, Headers, Method, Request, RequestInit, Response, State, durable_object,
};

use crate::error::{ApiError, ApiResult};
use crate::platform::{SESSIONS, now, random, var};
use crate::runtime::{Observed, Runtime, StartSpec};
use crate::store::sessions::{self as store, EventRecord, SessionRecord};
use crate::store::snapshots as snapstore;
use crate::store::{d1, ssh_keys};

use super::snapshot_io;

/// How long a start may take until the agent answers healthy.
const START_TIMEOUT_MS: i64 = 90_000;
/// The actor recorded for transitions the platform makes on its own.
pub const SYSTEM_ACTOR: &str = "system";

#[durable_object]
pub struct SessionCoordinator {
    state: State,
    env: Env,
    lock: Mutex<()>,
    /// No idle sleep is tried before this time (a failed attempt backs off).
    sleep_not_before: std::cell::Cell<i64>,
}

/// Internal headers of `/connect`: who connects, whether a stopped session
/// may be woken for them, what they connect to (`ssh`, `terminal` or
/// `preview:<port>`), the path and query to forward, and the cookies meant
/// for the previewed app (the platform's own are never forwarded). The
/// runtime never forwards `x-burstflare-*` headers upstream.
const WAKE_ACTOR_HEADER: &str = "x-burstflare-actor";
const WAKE_STOPPED_HEADER: &str = "x-burstflare-wake-stopped";
const TARGET_HEADER: &str = "x-burstflare-target";
const TARGET_PATH_HEADER: &str = "x-burstflare-target-path";
const APP_COOKIE_HEADER: &str = "x-burstflare-app-cookie";
/// Marks the coordinator's own error envelopes (a preview's answer may be
/// any status).
const COORDINATOR_ERROR_HEADER: &str = "x-burstflare-coordinator-error";

/// What `/connect` bridges to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The agent's `/ssh` WebSocket.
    Ssh,
    /// The agent's `/terminal` WebSocket; the path carries the query.
    Terminal(String),
    /// A declared port of the container; `path` with its query.
    Preview { port: u16, path: String },
}

impl Target {
    fn header(&self) -> String {
        match self {
            Self::Ssh => "ssh".into(),
            Self::Terminal(_) => "terminal".into(),
            Self::Preview { port, .. } => format!("preview:{port}"),
        }
    }

    fn path(&self) -> &str {
        match self {
            Self::Ssh => "/ssh",
            Self::Terminal(p) | Self::Preview { path: p, .. } => p,
        }
    }

    fn parse(kind: &str, path: &str) -> ApiResult<Self> {
        let path = if path.starts_with('/') { path } else { "/" };
        match kind {
            "ssh" => Ok(Self::Ssh),
            "terminal" => Ok(Self::Terminal(path.to_owned())),
            other => other
                .strip_prefix("preview:")
                .and_then(|p| p.parse().ok())
                .map(|port| Self::Preview {
                    port,
                    path: path.to_owned(),
                })
                .ok_or_else(|| ApiError::internal(format!("unknown connect target {other:?}"))),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Ssh => "SSH",
            Self::Terminal(_) => "terminal",
            Self::Preview { .. } => "preview",
        }
    }
}

/// The 404 message for a preview of a port the session does not declare.
fn undeclared_port(l: &Loaded, port: u16) -> String {
    let release = l.rec.spec.release.as_ref();
    if port == EDITOR_PORT {
        return format!(
            "session {:?} has no browser editor (its template does not set `editor = true`)",
            l.rec.name
        );
    }
    let ports: Vec<String> = release
        .map(|r| r.ports.iter().map(u16::to_string).collect())
        .unwrap_or_default();
    if ports.is_empty() {
        format!(
            "port {port} is not a declared port of session {:?}; its template declares no ports",
            l.rec.name
        )
    } else {
        format!(
            "port {port} is not a declared port of session {:?} (declared: {})",
            l.rec.name,
            ports.join(", ")
        )
    }
}

/// How long an idle sleep that failed (its snapshot did) waits to try again.
const SLEEP_RETRY_MS: i64 = 60_000;

/// `POST /create`: the new session, started right away when `start` is set
/// (one call instead of two when the caller asked for `start: true`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateRequest {
    pub record: SessionRecord,
    pub start: bool,
}

/// `POST /command`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandRequest {
    pub command: SessionCommand,
    /// `usr_…` of the caller.
    pub actor: String,
    /// The kind recorded for the snapshot taken before a sleep (default
    /// `sleep`; `drain` when the platform is stopping the container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_kind: Option<String>,
}

/// Runtime details never shown through the API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Private {
    /// The runtime's handle of the current generation's container.
    container: Option<String>,
    /// The agent secret of the current generation.
    agent_secret: Option<String>,
    /// The snapshot the next start restores instead of the newest one.
    #[serde(default)]
    restore_on_start: Option<String>,
    /// When the current generation became `running` (idle time counts from
    /// here until the agent reports activity).
    #[serde(default)]
    awake_since: Option<i64>,
}

/// `POST /snapshot`: a snapshot of the running session, now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotCall {
    pub actor: String,
}

/// `POST /restore`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreCall {
    pub snapshot_id: String,
    pub when: burstflare_api::snapshots::RestoreWhen,
}

#[derive(Deserialize)]
struct StoredRecord {
    json: String,
    private_json: String,
    projected_version: i64,
}

#[derive(Deserialize)]
struct Count {
    value: i64,
}

#[derive(Deserialize)]
struct ActivityRow {
    at: i64,
    kind: String,
    detail: String,
}

/// Entries the activity log keeps.
const ACTIVITY_KEPT: i64 = 500;

/// What the monitor found about a running session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tick {
    Awake,
    /// Idle past its sleep TTL.
    Idle,
    /// Its agent is draining: the platform is stopping the container.
    Draining,
}

/// A loaded session with its private half.
struct Loaded {
    rec: SessionRecord,
    private: Private,
}

impl SessionCoordinator {
    fn init_tables(&self) -> worker::Result<()> {
        let sql = self.state.storage().sql();
        sql.exec(
            "CREATE TABLE IF NOT EXISTS record (k INTEGER PRIMARY KEY CHECK (k = 1), \
             json TEXT NOT NULL, private_json TEXT NOT NULL, projected_version INTEGER NOT NULL)",
            None,
        )?;
        sql.exec(
            "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, json TEXT NOT NULL)",
            None,
        )?;
        sql.exec(
            "CREATE TABLE IF NOT EXISTS activity (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
             at INTEGER NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL)",
            None,
        )?;
        Ok(())
    }

    fn load(&self) -> ApiResult<Option<(Loaded, i64)>> {
        self.init_tables()?;
        let rows: Vec<StoredRecord> = self
            .state
            .storage()
            .sql()
            .exec(
                "SELECT json, private_json, projected_version FROM record WHERE k = 1",
                None,
            )?
            .to_array()?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        Ok(Some((
            Loaded {
                rec: serde_json::from_str(&row.json)?,
                private: serde_json::from_str(&row.private_json)?,
            },
            row.projected_version,
        )))
    }

    fn save(&self, l: &Loaded, event: Option<&EventRecord>) -> ApiResult<()> {
        let sql = self.state.storage().sql();
        sql.exec(
            "INSERT INTO record (k, json, private_json, projected_version) VALUES (1, ?, ?, 0) \
             ON CONFLICT (k) DO UPDATE SET json = excluded.json, private_json = excluded.private_json",
            vec![
                serde_json::to_string(&l.rec)?.into(),
                serde_json::to_string(&l.private)?.into(),
            ],
        )?;
        if let Some(e) = event {
            sql.exec(
                "INSERT OR REPLACE INTO events (seq, json) VALUES (?, ?)",
                vec![e.seq.into(), serde_json::to_string(e)?.into()],
            )?;
        }
        Ok(())
    }

    /// Writes the record and every unprojected event to D1. Failures are logged
    /// and retried by the alarm; the DO's own state is already durable.
    async fn project(&self, rec: &SessionRecord) -> ApiResult<()> {
        let projected = self.load()?.map_or(0, |(_, p)| p);
        if projected >= rec.state_version {
            return Ok(());
        }
        let events: Vec<EventRecord> = self
            .state
            .storage()
            .sql()
            .exec(
                "SELECT json FROM events WHERE seq > ? ORDER BY seq",
                vec![projected.into()],
            )?
            .to_array::<serde_json::Value>()?
            .into_iter()
            .filter_map(|row| {
                row.get("json")
                    .and_then(|j| j.as_str())
                    .and_then(|j| serde_json::from_str(j).ok())
            })
            .collect();
        let mut batch = vec![store::upsert(&self.env, rec)?];
        for e in &events {
            batch.push(store::insert_event(&self.env, &rec.id, e)?);
        }
        d1::db(&self.env)?
            .batch(batch)
            .await
            .map_err(|e| d1::failed("project session", e))?;
        self.state.storage().sql().exec(
            "UPDATE record SET projected_version = ? WHERE k = 1 AND projected_version < ?",
            vec![rec.state_version.into(), rec.state_version.into()],
        )?;
        Ok(())
    }

    async fn project_or_retry(&self, rec: &SessionRecord) {
        if let Err(e) = self.project(rec).await {
            worker::console_error!(
                "session {}: projection of version {} failed, retrying from the alarm: {}",
                rec.id,
                rec.state_version,
                e.internal.as_deref().unwrap_or(&e.message)
            );
            let _ = self.state.storage().set_alarm(Duration::from_secs(2)).await;
        }
    }

    /// Records a transition: new state, version, event; saves and projects.
    async fn transition(
        &self,
        l: &mut Loaded,
        to: SessionState,
        command: Option<SessionCommand>,
        actor: &str,
        reason: String,
    ) -> ApiResult<()> {
        self.record(l, to, command, actor, reason)?;
        self.project_or_retry(&l.rec).await;
        Ok(())
    }

    /// Records a transition in the object's storage only; the caller projects.
    fn record(
        &self,
        l: &mut Loaded,
        to: SessionState,
        command: Option<SessionCommand>,
        actor: &str,
        reason: String,
    ) -> ApiResult<()> {
        let at = now();
        let event = EventRecord {
            seq: l.rec.state_version + 1,
            from_state: l.rec.state,
            to_state: to,
            command: command.map(|c| c.as_str().to_owned()),
            actor: actor.to_owned(),
            reason,
            at,
        };
        l.rec.state = to;
        l.rec.state_version += 1;
        l.rec.updated_at = at;
        if to == SessionState::Deleted {
            l.rec.deleted_at = Some(at);
        }
        self.save(l, Some(&event))
    }

    /// Records what the runtime reported (no state change, new version).
    async fn runtime_update(
        &self,
        l: &mut Loaded,
        status: &str,
        detail: Option<String>,
    ) -> ApiResult<()> {
        let at = now();
        l.rec.runtime_status = Some(status.to_owned());
        l.rec.runtime_state = detail;
        l.rec.runtime_updated_at = Some(at);
        l.rec.state_version += 1;
        l.rec.updated_at = at;
        self.save(l, None)?;
        self.project_or_retry(&l.rec).await;
        Ok(())
    }

    async fn create(&self, rec: SessionRecord) -> ApiResult<SessionRecord> {
        let _guard = self.lock.lock().await;
        if let Some((existing, _)) = self.load()? {
            if existing.rec.created_at == rec.created_at && existing.rec.owner_id == rec.owner_id {
                return Ok(existing.rec);
            }
            return Err(ApiError::internal(format!(
                "session {} exists already with other data",
                rec.id
            )));
        }
        let event = EventRecord {
            seq: rec.state_version,
            from_state: SessionState::Created,
            to_state: SessionState::Created,
            command: None,
            actor: rec.owner_id.clone(),
            reason: "session created".into(),
            at: rec.created_at,
        };
        let l = Loaded {
            rec,
            private: Private::default(),
        };
        // D1 first: the unique name index decides whether the session exists.
        let insert = store::upsert(&self.env, &l.rec)?;
        let ev = store::insert_event(&self.env, &l.rec.id, &event)?;
        let result = d1::db(&self.env)?
            .batch(vec![insert, ev])
            .await
            .map_err(|e| d1::failed("insert session", e));
        if let Err(e) = result {
            if d1::is_unique_violation(&e, "sessions.") {
                return Err(ApiError::new(
                    409,
                    ErrorCode::SessionNameTaken,
                    format!(
                        "a session named {:?} exists in this workspace already",
                        l.rec.name
                    ),
                )
                .with_details(json!({ "name": l.rec.name })));
            }
            return Err(e);
        }
        self.save(&l, Some(&event))?;
        self.state.storage().sql().exec(
            "UPDATE record SET projected_version = ? WHERE k = 1",
            vec![l.rec.state_version.into()],
        )?;
        Ok(l.rec)
    }

    fn require(&self) -> ApiResult<Loaded> {
        self.load()?.map(|(l, _)| l).ok_or_else(|| {
            ApiError::not_found(ErrorCode::SessionNotFound, "session", "(coordinator)")
        })
    }

    async fn command(&self, req: CommandRequest) -> ApiResult<CommandResult> {
        let _guard = self.lock.lock().await;
        let mut l = self.require()?;
        let action = decide(l.rec.state, req.command).map_err(|e| {
            ApiError::new(409, ErrorCode::InvalidSessionState, format!("{e}"))
                .with_details(json!({ "state": e.state, "command": e.command }))
        })?;
        let command = Some(req.command);
        let actor = req.actor.as_str();
        // Whatever takes a running container away keeps its persisted paths
        // first; a failed snapshot keeps the session running, with the reason.
        let kind = match action {
            Action::SleepRuntime => Some(req.snapshot_kind.as_deref().unwrap_or("sleep")),
            Action::StopRuntime { runtime: true } => Some("stop"),
            Action::RestartRuntime => Some("restart"),
            _ => None,
        };
        if let Some(kind) = kind.filter(|_| l.rec.state == SessionState::Running) {
            self.auto_snapshot(&l, kind, req.command).await?;
        }
        if let Some(desired) = action.desired() {
            l.rec.desired_state = desired;
        }
        match action {
            Action::AlreadyDone => {
                return Ok(CommandResult {
                    session: l.rec.to_api()?,
                    already_done: true,
                });
            }
            Action::StartRuntime => {
                let from = l.rec.state;
                self.start(&mut l, command, actor).await?;
                if matches!(from, SessionState::Sleeping | SessionState::Stopped) {
                    self.note_activity("wake", &format!("started from {from} by {actor}"));
                }
            }
            Action::RestartRuntime => {
                let to = entered_state(action, l.rec.state);
                self.transition(
                    &mut l,
                    to,
                    command,
                    actor,
                    format!("{} requested", req.command),
                )
                .await?;
                self.remove_container(&mut l).await?;
                self.transition(
                    &mut l,
                    SessionState::Stopped,
                    None,
                    SYSTEM_ACTOR,
                    "container removed for restart".into(),
                )
                .await?;
                self.start(&mut l, command, actor).await?;
            }
            Action::StopRuntime {
                runtime: has_runtime,
            } => {
                let to = entered_state(action, l.rec.state);
                self.transition(&mut l, to, command, actor, "stop requested".into())
                    .await?;
                if has_runtime {
                    self.remove_container(&mut l).await?;
                    let next = observe(l.rec.state, &Observation::Stopped).unwrap_or(l.rec.state);
                    self.transition(
                        &mut l,
                        next,
                        None,
                        SYSTEM_ACTOR,
                        "container stopped and removed".into(),
                    )
                    .await?;
                }
            }
            Action::SleepRuntime => {
                self.transition(
                    &mut l,
                    SessionState::Stopping,
                    command,
                    actor,
                    "sleep requested".into(),
                )
                .await?;
                self.remove_container(&mut l).await?;
                let next = observe(l.rec.state, &Observation::Slept).unwrap_or(l.rec.state);
                self.transition(
                    &mut l,
                    next,
                    None,
                    SYSTEM_ACTOR,
                    "snapshot stored and container removed".into(),
                )
                .await?;
            }
            Action::Delete {
                runtime: has_runtime,
            } => {
                if has_runtime {
                    // Remove the container first: a failure leaves the session intact.
                    self.remove_container(&mut l).await?;
                }
                self.transition(
                    &mut l,
                    SessionState::Deleted,
                    command,
                    actor,
                    "delete requested".into(),
                )
                .await?;
                let _ = self.state.storage().delete_alarm().await;
            }
        }
        Ok(CommandResult {
            session: l.rec.to_api()?,
            already_done: false,
        })
    }

    /// Removes the current container, if any, and records that it is absent.
    async fn remove_container(&self, l: &mut Loaded) -> ApiResult<()> {
        let Some(container) = l.private.container.clone() else {
            return Ok(());
        };
        let runtime = Runtime::from_env(&self.env, &self.state).map_err(runtime_error)?;
        // We stop it ourselves: its agent need not wait for a final snapshot.
        if let Some(secret) = &l.private.agent_secret
            && let Ok(release) = Request::new_with_init(
                "http://agent/lifecycle/release",
                RequestInit::new().with_method(Method::Post),
            )
        {
            let _ = runtime
                .fetch(
                    &container,
                    AGENT_PORT,
                    "/lifecycle/release",
                    &release,
                    &[(AGENT_TOKEN_HEADER, secret)],
                )
                .await;
        }
        runtime.destroy(&container).await.map_err(runtime_error)?;
        l.private.container = None;
        l.private.agent_secret = None;
        l.rec.host_keys.clear();
        self.runtime_update(l, "absent", Some(format!("container {container} removed")))
            .await
    }

    /// Starts a new generation: `starting`, container, agent health, `running`.
    /// A runtime failure ends in `failed` with the reason and a 503 to the caller.
    async fn start(
        &self,
        l: &mut Loaded,
        command: Option<SessionCommand>,
        actor: &str,
    ) -> ApiResult<()> {
        l.rec.generation += 1;
        l.rec.failure_reason = None;
        l.rec.desired_state = burstflare_domain::DesiredState::Running;
        let reason = match command {
            Some(c) => format!("{c} requested (generation {})", l.rec.generation),
            None => format!("starting generation {}", l.rec.generation),
        };
        self.record(l, SessionState::Starting, command, actor, reason)?;
        // The `starting` projection and the container start overlap: neither
        // waits for the other, and D1 orders them by version anyway.
        let starting = l.rec.clone();
        let (booted, ()) = futures_util::join!(self.boot(l), self.project_or_retry(&starting));
        match booted {
            Ok(health) => {
                l.rec.host_keys = health.host_keys;
                let container = l.private.container.clone().unwrap_or_default();
                l.rec.runtime_status = Some("running".into());
                l.rec.runtime_state = Some(format!("container {container} running"));
                l.rec.runtime_updated_at = Some(now());
                l.private.awake_since = Some(now());
                self.transition(
                    l,
                    SessionState::Running,
                    None,
                    SYSTEM_ACTOR,
                    "agent is healthy and sshd is up".into(),
                )
                .await?;
                self.schedule_monitor().await;
                Ok(())
            }
            Err(reason) => {
                // Leave nothing half-started behind.
                let _ = self.remove_container(l).await;
                l.rec.failure_reason = Some(reason.clone());
                self.transition(
                    l,
                    SessionState::Failed,
                    None,
                    SYSTEM_ACTOR,
                    format!("start failed: {reason}"),
                )
                .await?;
                Err(ApiError::new(
                    503,
                    ErrorCode::RuntimeUnavailable,
                    format!("session {:?} failed to start: {reason}", l.rec.name),
                )
                .with_details(json!({ "state": l.rec.state, "reason": reason })))
            }
        }
    }

    /// Runs the container and waits for the agent; the error is the reason shown to users.
    async fn boot(&self, l: &mut Loaded) -> Result<AgentHealth, String> {
        let runtime = Runtime::from_env(&self.env, &self.state).map_err(|e| e.message)?;
        // Leftovers of an earlier generation (a failed start, a dead container) go first.
        if let Some(old) = l.private.container.clone() {
            runtime.destroy(&old).await.map_err(|e| e.message)?;
            l.private.container = None;
        }
        let keys = ssh_keys::list(&self.env, &l.rec.owner_id)
            .await
            .map_err(|e| e.message)?;
        let secret = hex::encode(random::<32>().map_err(|e| e.message)?);
        let mut env: BTreeMap<String, String> = l.rec.spec.env.clone();
        env.insert(ENV_AGENT_SECRET.into(), secret.clone());
        env.insert(ENV_SESSION_ID.into(), l.rec.id.clone());
        // With persisted paths, SIGTERM from the platform waits for a final snapshot.
        if !l.rec.spec.persisted_paths.is_empty() {
            env.insert(
                ENV_DRAIN_SECS.into(),
                var(&self.env, "SESSION_DRAIN_SECONDS", "120"),
            );
        }
        // Login sessions (sshd, `runuser -l`) start with a clean environment;
        // the agent republishes the user's variables for them.
        env.insert(
            ENV_SESSION_ENV.into(),
            serde_json::to_string(&l.rec.spec.env).map_err(|e| e.to_string())?,
        );
        env.insert(
            ENV_AUTHORIZED_KEYS.into(),
            keys.iter()
                .map(|k| k.public_key.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        );
        let limits = l.rec.spec.instance_type.limits();
        let release = l.rec.spec.release.as_ref();
        let mut ports: Vec<u16> = release.map(|r| r.ports.clone()).unwrap_or_default();
        if release.is_some_and(|r| r.editor) {
            ports.push(EDITOR_PORT);
            env.insert(ENV_EDITOR_PORT.into(), EDITOR_PORT.to_string());
        }
        let spec = StartSpec {
            session_id: l.rec.id.clone(),
            generation: u64::try_from(l.rec.generation).unwrap_or_default(),
            image: l.rec.spec.image.clone(),
            limits: ResourceLimits {
                cpu_millis: limits.cpu_millis,
                memory_mib: limits.memory_mib,
                pids: limits.pids,
            },
            env,
            ports,
        };
        let container = runtime.start(&spec).await.map_err(|e| e.message)?;
        l.private.container = Some(container.clone());
        l.private.agent_secret = Some(secret.clone());
        self.save(l, None).map_err(|e| e.message)?;
        let health =
            crate::runtime::wait_healthy(&runtime, &container, &secret, START_TIMEOUT_MS, true)
                .await?;
        if let Some(release) = &l.rec.spec.release {
            self.prepare_release(&runtime, &container, &secret, release)
                .await?;
        }
        self.hydrate(l, &runtime, &container, &secret).await?;
        Ok(health)
    }

    /// Restores the chosen snapshot (else the newest ready one) into a
    /// container that just started; the error is the reason shown to users.
    async fn hydrate(
        &self,
        l: &mut Loaded,
        runtime: &Runtime,
        container: &str,
        secret: &str,
    ) -> Result<(), String> {
        let roots = &l.rec.spec.persisted_paths;
        if roots.is_empty() {
            return Ok(());
        }
        let ise = |e: ApiError| e.internal.unwrap_or(e.message);
        let row = match l.private.restore_on_start.clone() {
            Some(id) => snapstore::find(&self.env, &id)
                .await
                .map_err(ise)?
                .filter(|r| r.state == "ready")
                .ok_or_else(|| format!("snapshot {id} chosen for this start is gone"))?,
            None => match snapstore::latest_ready(&self.env, &l.rec.id)
                .await
                .map_err(ise)?
            {
                Some(row) => row,
                None => return Ok(()),
            },
        };
        let manifest = snapshot_io::manifest(&self.env, &row).await?;
        let agent = snapshot_io::Agent {
            runtime,
            container,
            secret,
        };
        snapshot_io::restore(&self.env, &agent, &row.workspace_id, &manifest, roots)
            .await
            .map_err(|e| format!("restoring snapshot {} failed: {e}", row.id))?;
        if l.private.restore_on_start.take().is_some() {
            self.save(l, None).map_err(ise)?;
        }
        Ok(())
    }

    /// Takes a snapshot of the running session into a new row; the row
    /// (ready) or a 503 `snapshot_failed` with the reason.
    async fn take_snapshot(
        &self,
        l: &Loaded,
        kind: &str,
        actor: &str,
    ) -> ApiResult<snapstore::SnapshotRow> {
        let (Some(container), Some(secret)) = (&l.private.container, &l.private.agent_secret)
        else {
            return Err(ApiError::internal("a running session without a container"));
        };
        let id = burstflare_domain::SnapshotId::from_random(random::<16>()?).to_string();
        let roots = l.rec.spec.persisted_paths.clone();
        let mut row = snapstore::SnapshotRow {
            id,
            workspace_id: l.rec.workspace_id.clone(),
            session_id: l.rec.id.clone(),
            session_name: l.rec.name.clone(),
            kind: kind.to_owned(),
            state: "pending".into(),
            roots_json: serde_json::to_string(&roots)?,
            files: 0,
            bytes: 0,
            new_blobs: 0,
            new_bytes: 0,
            skipped_json: "[]".into(),
            error: None,
            created_by: actor.to_owned(),
            created_at: now(),
            completed_at: None,
        };
        snapstore::insert(&self.env, &row).await?;
        let runtime = Runtime::from_env(&self.env, &self.state).map_err(runtime_error)?;
        let agent = snapshot_io::Agent {
            runtime: &runtime,
            container,
            secret,
        };
        match snapshot_io::take(&self.env, &agent, &row, &roots).await {
            Ok((done, _)) => {
                let at = now();
                snapstore::complete(&self.env, &row.id, &done, at).await?;
                row.state = "ready".into();
                row.files = i64::try_from(done.files).unwrap_or(i64::MAX);
                row.bytes = i64::try_from(done.bytes).unwrap_or(i64::MAX);
                row.new_blobs = i64::try_from(done.new_blobs).unwrap_or(i64::MAX);
                row.new_bytes = i64::try_from(done.new_bytes).unwrap_or(i64::MAX);
                row.skipped_json = done.skipped_json;
                row.completed_at = Some(at);
                Ok(row)
            }
            Err(reason) => {
                // Blobs it stored before failing go too, unless others need them.
                crate::services::snapshots::discard(&self.env, &row, &reason).await?;
                Err(ApiError::new(
                    503,
                    ErrorCode::SnapshotFailed,
                    format!("the snapshot of session {:?} failed: {reason}", l.rec.name),
                )
                .with_details(json!({ "snapshot_id": row.id, "reason": reason })))
            }
        }
    }

    /// The snapshot before a sleep, stop or restart; a failure keeps the
    /// session running and says so.
    async fn auto_snapshot(
        &self,
        l: &Loaded,
        kind: &str,
        command: SessionCommand,
    ) -> ApiResult<()> {
        if l.rec.spec.persisted_paths.is_empty() {
            return Ok(());
        }
        self.take_snapshot(l, kind, SYSTEM_ACTOR)
            .await
            .map(|_| ())
            .map_err(|mut e| {
                e.message = format!(
                    "session {:?} keeps running: {}; nothing was lost (retry `{command}`)",
                    l.rec.name, e.message
                );
                e
            })
    }

    /// `POST /snapshot`.
    async fn snapshot(&self, call: SnapshotCall) -> ApiResult<snapstore::SnapshotRow> {
        let _guard = self.lock.lock().await;
        let l = self.require()?;
        if l.rec.state != SessionState::Running {
            return Err(not_running_for(&l, "snapshot"));
        }
        if l.rec.spec.persisted_paths.is_empty() {
            return Err(ApiError::new(
                409,
                ErrorCode::InvalidSessionState,
                format!(
                    "session {:?} has no persisted paths; nothing would be kept",
                    l.rec.name
                ),
            ));
        }
        self.take_snapshot(&l, "manual", &call.actor).await
    }

    /// `POST /restore`: into the running container now, or chosen for the
    /// next start.
    async fn restore(&self, call: RestoreCall) -> ApiResult<snapshot_io::Restored> {
        use burstflare_api::snapshots::RestoreWhen;
        let _guard = self.lock.lock().await;
        let mut l = self.require()?;
        let row = snapstore::find(&self.env, &call.snapshot_id)
            .await?
            .filter(|r| r.workspace_id == l.rec.workspace_id)
            .ok_or_else(|| {
                ApiError::not_found(ErrorCode::SnapshotNotFound, "snapshot", &call.snapshot_id)
            })?;
        if row.state != "ready" {
            return Err(ApiError::new(
                409,
                ErrorCode::InvalidSnapshotState,
                format!(
                    "snapshot {} is {}; only a ready snapshot restores",
                    row.id, row.state
                ),
            )
            .with_details(json!({ "state": row.state })));
        }
        let manifest = snapshot_io::manifest(&self.env, &row)
            .await
            .map_err(ApiError::internal)?;
        burstflare_domain::snapshot::validate(
            &manifest,
            &l.rec.spec.persisted_paths,
            &burstflare_domain::snapshot::Limits::default(),
        )
        .map_err(|e| {
            ApiError::new(
                409,
                ErrorCode::InvalidSnapshotState,
                format!(
                    "snapshot {} does not fit session {:?}: {e}",
                    row.id, l.rec.name
                ),
            )
        })?;
        match call.when {
            RestoreWhen::NextStart => {
                if l.rec.state == SessionState::Deleted {
                    return Err(not_running_for(&l, "restore"));
                }
                l.private.restore_on_start = Some(row.id.clone());
                self.save(&l, None)?;
                Ok(snapshot_io::Restored::default())
            }
            RestoreWhen::Now => {
                if l.rec.state != SessionState::Running {
                    return Err(not_running_for(&l, "restore into"));
                }
                let (Some(container), Some(secret)) =
                    (&l.private.container, &l.private.agent_secret)
                else {
                    return Err(not_running_for(&l, "restore into"));
                };
                let runtime = Runtime::from_env(&self.env, &self.state).map_err(runtime_error)?;
                let agent = snapshot_io::Agent {
                    runtime: &runtime,
                    container,
                    secret,
                };
                snapshot_io::restore(
                    &self.env,
                    &agent,
                    &row.workspace_id,
                    &manifest,
                    &l.rec.spec.persisted_paths,
                )
                .await
                .map_err(|reason| {
                    ApiError::new(
                        422,
                        ErrorCode::RestoreRefused,
                        format!("nothing was changed: {reason}"),
                    )
                })
            }
        }
    }

    /// Applies the release's layer (streamed from R2 to the agent) and runs
    /// its start commands; the error is the reason shown to users.
    async fn prepare_release(
        &self,
        runtime: &Runtime,
        container: &str,
        secret: &str,
        release: &burstflare_api::sessions::ReleaseBoot,
    ) -> Result<(), String> {
        let object = self
            .env
            .bucket(crate::platform::BUCKET)
            .map_err(|e| e.to_string())?
            .get(&release.layer_key)
            .execute()
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the release's layer {} is missing", release.layer_key))?;
        let body = object
            .body()
            .ok_or_else(|| "the release's layer is empty".to_owned())?
            .stream()
            .map_err(|e| e.to_string())?;
        // A Response turns the R2 stream into a JS body the request can carry.
        let carrier = Response::from_stream(body).map_err(|e| e.to_string())?;
        let agent_call =
            |path: &str, method: Method, body: Option<wasm_bindgen::JsValue>, ct: &str| {
                let headers = Headers::new();
                let _ = headers.set("content-type", ct);
                let mut init = RequestInit::new();
                init.with_method(method)
                    .with_headers(headers)
                    .with_body(body);
                Request::new_with_init(&format!("http://agent{path}"), &init)
                    .map_err(|e| e.to_string())
            };
        let apply = agent_call(
            "/layer/apply",
            Method::Post,
            worker::web_sys::Response::from(carrier)
                .body()
                .map(Into::into),
            "application/zstd",
        )?;
        let mut resp = runtime
            .fetch(
                container,
                AGENT_PORT,
                "/layer/apply",
                &apply,
                &[
                    (AGENT_TOKEN_HEADER, secret),
                    (LAYER_SHA256_HEADER, &release.layer_digest),
                ],
            )
            .await
            .map_err(|e| e.message)?;
        if resp.status_code() != 200 {
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("the release's layer could not be applied: {text}"));
        }
        if release.start.is_empty() {
            return Ok(());
        }
        let run = agent_call(
            "/build/run",
            Method::Post,
            Some(
                serde_json::to_string(&json!({
                    "commands": release.start,
                    "timeout_secs": var(&self.env, "START_COMMAND_TIMEOUT_SECONDS", "300")
                        .parse::<u64>()
                        .ok(),
                }))
                .map_err(|e| e.to_string())?
                .into(),
            ),
            "application/json",
        )?;
        let mut resp = runtime
            .fetch(
                container,
                AGENT_PORT,
                "/build/run",
                &run,
                &[(AGENT_TOKEN_HEADER, secret)],
            )
            .await
            .map_err(|e| e.message)?;
        let mut last = std::collections::VecDeque::new();
        let end = super::agent_run::read(&mut resp, |line| {
            if last.len() == 5 {
                last.pop_front();
            }
            last.push_back(line);
            async {}
        })
        .await?;
        if end.exit_code != 0 {
            return Err(format!(
                "start command `{}` exited with {}: {}",
                end.failed_command.or(end.error).unwrap_or_default(),
                end.exit_code,
                last.into_iter().collect::<Vec<_>>().join(" | ")
            ));
        }
        Ok(())
    }

    async fn schedule_monitor(&self) {
        let every = var(&self.env, "SESSION_MONITOR_INTERVAL_MS", "5000")
            .parse::<u64>()
            .unwrap_or(5000);
        if let Err(e) = self
            .state
            .storage()
            .set_alarm(Duration::from_millis(every))
            .await
        {
            worker::console_error!("set monitor alarm: {e}");
        }
    }

    /// The alarm: reproject if behind, and check a running container is alive.
    async fn monitor(&self) -> ApiResult<()> {
        let _guard = self.lock.lock().await;
        let Some((mut l, projected)) = self.load()? else {
            return Ok(());
        };
        if projected < l.rec.state_version {
            self.project_or_retry(&l.rec).await;
        }
        if l.rec.state != SessionState::Running {
            return Ok(());
        }
        let Some(container) = l.private.container.clone() else {
            return Ok(());
        };
        let runtime = Runtime::from_env(&self.env, &self.state).map_err(runtime_error)?;
        match runtime.status(&container).await {
            Ok(Observed::Running) => {
                let tick = self.idle_past_ttl(&l, &runtime, &container).await;
                if tick != Tick::Awake {
                    drop(_guard);
                    let slept = self
                        .command(CommandRequest {
                            command: SessionCommand::Sleep,
                            actor: SYSTEM_ACTOR.into(),
                            snapshot_kind: (tick == Tick::Draining).then(|| "drain".into()),
                        })
                        .await;
                    match slept {
                        Ok(_) => return Ok(()),
                        Err(e) => {
                            self.note_activity(
                                "sleep_failed",
                                &format!("staying awake: {}", e.message),
                            );
                            self.sleep_not_before.set(now() + SLEEP_RETRY_MS);
                        }
                    }
                }
            }
            Ok(Observed::Exited(reason)) => {
                let at = now();
                l.rec.runtime_status = Some("exited".into());
                l.rec.runtime_state = Some(reason.clone());
                l.rec.runtime_updated_at = Some(at);
                l.rec.failure_reason = Some(reason.clone());
                l.rec.host_keys.clear();
                let next = observe(
                    l.rec.state,
                    &Observation::Exited {
                        reason: reason.clone(),
                    },
                )
                .unwrap_or(SessionState::Failed);
                self.transition(
                    &mut l,
                    next,
                    None,
                    SYSTEM_ACTOR,
                    format!("container died: {reason}"),
                )
                .await?;
                return Ok(());
            }
            Err(e) => {
                // The runtime being unreachable says nothing about the container.
                l.rec.runtime_status = Some("unreachable".into());
                l.rec.runtime_state = Some(e.message);
                l.rec.runtime_updated_at = Some(now());
                self.save(&l, None)?;
            }
        }
        self.schedule_monitor().await;
        Ok(())
    }

    /// Appends to the activity log: always for `sleep`, `sleep_failed`,
    /// `wake` and `drain`; for `awake`, `idle` and `preview` only when the last entry is
    /// of another kind or a minute old, so a quiet monitor writes little. The
    /// log keeps its last [`ACTIVITY_KEPT`] entries.
    fn note_activity(&self, kind: &str, detail: &str) {
        let sql = self.state.storage().sql();
        let at = now();
        if matches!(kind, "awake" | "idle" | "preview") {
            let last: Vec<ActivityRow> = sql
                .exec(
                    "SELECT at, kind, detail FROM activity ORDER BY seq DESC LIMIT 1",
                    None,
                )
                .and_then(|c| c.to_array())
                .unwrap_or_default();
            if last
                .first()
                .is_some_and(|r| r.kind == kind && at - r.at < 60_000)
            {
                return;
            }
        }
        let inserted = sql.exec(
            "INSERT INTO activity (at, kind, detail) VALUES (?, ?, ?)",
            vec![(at as f64).into(), kind.into(), detail.into()],
        );
        let trimmed = sql.exec(
            "DELETE FROM activity WHERE seq <= (SELECT MAX(seq) FROM activity) - ?",
            vec![(ACTIVITY_KEPT as f64).into()],
        );
        if let Err(e) = inserted.and(trimmed) {
            worker::console_error!("session activity log: {e}");
        }
    }

    /// `GET /activity`: the log, newest first.
    fn activity_log(&self) -> ApiResult<Vec<burstflare_api::sessions::ActivityEntry>> {
        let rows: Vec<ActivityRow> = self
            .state
            .storage()
            .sql()
            .exec(
                "SELECT at, kind, detail FROM activity ORDER BY seq DESC LIMIT 500",
                None,
            )?
            .to_array()?;
        Ok(rows
            .into_iter()
            .map(|r| burstflare_api::sessions::ActivityEntry {
                at: burstflare_api::timestamp(r.at),
                kind: r.kind,
                detail: r.detail,
            })
            .collect())
    }

    /// Whether the running session has been idle for its sleep TTL (no SSH or
    /// terminal bytes either way and no preview request since it started) or its agent is draining
    /// (the platform sent it SIGTERM). Notes why in the activity log.
    async fn idle_past_ttl(&self, l: &Loaded, runtime: &Runtime, container: &str) -> Tick {
        let ttl_secs = l.rec.spec.sleep_ttl_secs.map_or_else(
            || {
                var(&self.env, "SESSION_SLEEP_TTL_SECONDS", "1800")
                    .parse::<i64>()
                    .unwrap_or(1800)
            },
            i64::from,
        );
        let at = now();
        let Some(secret) = &l.private.agent_secret else {
            return Tick::Awake;
        };
        let Ok(probe) = Request::new("http://agent/activity", Method::Get) else {
            return Tick::Awake;
        };
        let activity = match runtime
            .fetch(
                container,
                AGENT_PORT,
                "/activity",
                &probe,
                &[(AGENT_TOKEN_HEADER, secret)],
            )
            .await
        {
            Ok(mut resp) if resp.status_code() == 200 => {
                match resp.json::<burstflare_api::runtime::AgentActivity>().await {
                    Ok(a) => a,
                    Err(_) => return Tick::Awake,
                }
            }
            // An agent that does not answer is not evidence of idleness.
            _ => return Tick::Awake,
        };
        if activity.draining {
            self.note_activity(
                "drain",
                "the platform is stopping the container: taking the final snapshot",
            );
            return Tick::Draining;
        }
        // A failed idle sleep backs off; so does idle sleep turned off.
        if ttl_secs <= 0 || at < self.sleep_not_before.get() {
            return Tick::Awake;
        }
        // The newest sign of use, and where it came from.
        let mut last = (l.private.awake_since.unwrap_or(at), "the start");
        for (name, c) in [("ssh", &activity.ssh), ("terminal", &activity.terminal)] {
            if let Some(t) = [c.last_input_ms, c.last_output_ms]
                .into_iter()
                .flatten()
                .max()
                && t > last.0
            {
                last = (t, name);
            }
        }
        let preview = self.preview_activity();
        if let Some((t, _)) = preview
            && t > last.0
        {
            last = (t, "preview");
        }
        // An open terminal or SSH connection with traffic keeps it awake;
        // one that is silent for the whole TTL does not.
        let idle_secs = (at - last.0).max(0) / 1000;
        let idle = idle_secs >= ttl_secs;
        if idle {
            self.note_activity(
                "sleep",
                &format!(
                    "idle for {idle_secs} s since {} (sleep TTL {ttl_secs} s): going to sleep",
                    last.1
                ),
            );
        } else if last.1 == "the start" || idle_secs >= 60 {
            self.note_activity(
                "idle",
                &format!(
                    "idle for {idle_secs} s since {} (sleep TTL {ttl_secs} s)",
                    last.1
                ),
            );
        } else {
            let detail = match last.1 {
                "ssh" | "terminal" => {
                    let c = if last.1 == "ssh" {
                        &activity.ssh
                    } else {
                        &activity.terminal
                    };
                    format!(
                        "{} used {idle_secs} s ago ({} bytes in, {} bytes out, {} open)",
                        last.1, c.bytes_in, c.bytes_out, c.open
                    )
                }
                _ => format!(
                    "preview used {idle_secs} s ago ({} requests)",
                    preview.map_or(0, |p| p.1)
                ),
            };
            self.note_activity("awake", &detail);
        }
        if idle { Tick::Idle } else { Tick::Awake }
    }

    /// `/connect`: bridges an SSH or terminal WebSocket to the agent, or a
    /// preview request (HTTP or WebSocket) to a declared port, of the running
    /// container. A sleeping session is woken first (a stopped one too when
    /// the caller owns it); concurrent wakes start one container.
    async fn bridge(&self, req: Request) -> ApiResult<Response> {
        let header = |name: &str| req.headers().get(name).ok().flatten();
        let target = Target::parse(
            &header(TARGET_HEADER).unwrap_or_default(),
            &header(TARGET_PATH_HEADER).unwrap_or_default(),
        )?;
        let mut l = self.require()?;
        let wake = match l.rec.state {
            SessionState::Sleeping => true,
            SessionState::Stopped => header(WAKE_STOPPED_HEADER).is_some(),
            _ => false,
        };
        if wake {
            // Concurrent wakes serialise on the command lock: the first
            // starts the container, the others find it running.
            let actor = header(WAKE_ACTOR_HEADER).unwrap_or_else(|| SYSTEM_ACTOR.into());
            self.command(CommandRequest {
                command: SessionCommand::Start,
                actor,
                snapshot_kind: None,
            })
            .await?;
            l = self.require()?;
        }
        let not_running = || {
            let hint = match l.rec.state {
                SessionState::Starting => "it is starting; try again in a moment".to_owned(),
                SessionState::Deleted => "it was deleted".to_owned(),
                _ => format!("start it with `burstflare session start {}`", l.rec.name),
            };
            ApiError::new(
                409,
                ErrorCode::InvalidSessionState,
                format!("session {:?} is {}; {hint}", l.rec.name, l.rec.state),
            )
            .with_details(json!({ "state": l.rec.state }))
        };
        if l.rec.state != SessionState::Running {
            return Err(not_running());
        }
        let (Some(container), Some(secret)) = (&l.private.container, &l.private.agent_secret)
        else {
            return Err(not_running());
        };
        let runtime = Runtime::from_env(&self.env, &self.state).map_err(runtime_error)?;
        let mut extra: Vec<(&str, &str)> = Vec::new();
        let app_cookie = header(APP_COOKIE_HEADER);
        let port = match &target {
            // The agent's own endpoints need its secret.
            Target::Ssh | Target::Terminal(_) => {
                extra.push((AGENT_TOKEN_HEADER, secret));
                AGENT_PORT
            }
            Target::Preview { port, .. } => {
                let release = l.rec.spec.release.as_ref();
                let declared = release
                    .is_some_and(|r| r.ports.contains(port) || (r.editor && *port == EDITOR_PORT));
                if !declared {
                    return Err(ApiError::new(
                        404,
                        ErrorCode::PortNotDeclared,
                        undeclared_port(&l, *port),
                    )
                    .with_details(json!({ "port": port })));
                }
                self.note_preview(*port);
                if let Some(cookie) = app_cookie.as_deref() {
                    extra.push(("cookie", cookie));
                }
                *port
            }
        };
        let resp = runtime
            .fetch(container, port, target.path(), &req, &extra)
            .await
            .map_err(runtime_error)?;
        if !matches!(target, Target::Preview { .. }) && resp.status_code() != 101 {
            return Err(ApiError::new(
                502,
                ErrorCode::RuntimeUnavailable,
                format!(
                    "the session's {} bridge answered HTTP {}",
                    target.name(),
                    resp.status_code()
                ),
            ));
        }
        Ok(resp)
    }

    /// Records a preview request: it counts as activity (the session stays
    /// awake), and the activity log notes it at most once a minute.
    fn note_preview(&self, port: u16) {
        let at = now();
        let sql = self.state.storage().sql();
        let written = sql
            .exec(
                "CREATE TABLE IF NOT EXISTS preview_activity \
                 (k INTEGER PRIMARY KEY CHECK (k = 1), last_ms INTEGER NOT NULL, requests INTEGER NOT NULL)",
                None,
            )
            .and_then(|_| {
                sql.exec(
                    "INSERT INTO preview_activity (k, last_ms, requests) VALUES (1, ?, 1) \
                     ON CONFLICT (k) DO UPDATE SET last_ms = excluded.last_ms, requests = requests + 1",
                    vec![(at as f64).into()],
                )
            });
        if let Err(e) = written {
            worker::console_error!("session preview activity: {e}");
        }
        self.note_activity("preview", &format!("preview of port {port} requested"));
    }

    /// When a preview was last requested, and how many requests there were.
    fn preview_activity(&self) -> Option<(i64, i64)> {
        #[derive(Deserialize)]
        struct Row {
            last_ms: i64,
            requests: i64,
        }
        let rows: Vec<Row> = self
            .state
            .storage()
            .sql()
            .exec(
                "SELECT last_ms, requests FROM preview_activity WHERE k = 1",
                None,
            )
            .and_then(|c| c.to_array())
            .ok()?;
        rows.first().map(|r| (r.last_ms, r.requests))
    }

    fn pings(&self, increment: bool) -> worker::Result<i64> {
        let sql = self.state.storage().sql();
        sql.exec(
            "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
            None,
        )?;
        let cursor = if increment {
            sql.exec(
                "INSERT INTO counters (name, value) VALUES ('pings', 1) \
                 ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
                None,
            )?
        } else {
            sql.exec(
                "SELECT COALESCE((SELECT value FROM counters WHERE name = 'pings'), 0) AS value",
                None,
            )?
        };
        let rows: Vec<Count> = cursor.to_array()?;
        Ok(rows.first().map_or(0, |r| r.value))
    }

    async fn route(&self, mut req: Request) -> ApiResult<Response> {
        match (req.method(), req.path().as_str()) {
            (Method::Get, "/ping") => pong(&self.state, self.pings(false)?),
            (Method::Post, "/ping") => pong(&self.state, self.pings(true)?),
            (Method::Post, "/create") => {
                let create: CreateRequest = req.json().await?;
                let actor = create.record.owner_id.clone();
                let rec = self.create(create.record).await?;
                if !create.start {
                    return ok_json(&rec.to_api()?);
                }
                let started = self
                    .command(CommandRequest {
                        command: SessionCommand::Start,
                        actor,
                        snapshot_kind: None,
                    })
                    .await?;
                ok_json(&started.session)
            }
            (Method::Post, "/command") => {
                let cmd: CommandRequest = req.json().await?;
                ok_json(&self.command(cmd).await?)
            }
            (Method::Get, "/session") => ok_json(&self.require()?.rec),
            (Method::Post, "/snapshot") => ok_json(&self.snapshot(req.json().await?).await?),
            (Method::Post, "/restore") => ok_json(&self.restore(req.json().await?).await?),
            (Method::Get, "/activity") => ok_json(&self.activity_log()?),
            (_, "/connect") => self.bridge(req).await,
            _ => Err(ApiError::internal(format!(
                "SessionCoordinator has no {} {}",
                req.method(),
                req.path()
            ))),
        }
    }
}

/// 409 naming the state a session must leave for `what`.
fn not_running_for(l: &Loaded, what: &str) -> ApiError {
    ApiError::new(
        409,
        ErrorCode::InvalidSessionState,
        format!(
            "cannot {what} session {:?} while it is {}; it must be running",
            l.rec.name, l.rec.state
        ),
    )
    .with_details(json!({ "state": l.rec.state }))
}

fn runtime_error(e: crate::runtime::RuntimeError) -> ApiError {
    ApiError::new(503, ErrorCode::RuntimeUnavailable, e.message)
}

fn ok_json<T: Serialize>(body: &T) -> ApiResult<Response> {
    Ok(Response::from_json(body)?)
}

fn pong(state: &State, count: i64) -> ApiResult<Response> {
    ok_json(&Pong {
        object_id: state.id().to_string(),
        count,
    })
}

impl DurableObject for SessionCoordinator {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            lock: Mutex::new(()),
            sleep_not_before: std::cell::Cell::new(0),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        match self.route(req).await {
            Ok(resp) => Ok(resp),
            Err(err) => {
                if let Some(internal) = &err.internal {
                    worker::console_error!("SessionCoordinator: {internal}");
                }
                let status = err.status;
                let resp = Response::from_json(&err.envelope(""))?.with_status(status);
                resp.headers().set(COORDINATOR_ERROR_HEADER, "1")?;
                Ok(resp)
            }
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        if let Err(e) = self.monitor().await {
            worker::console_error!(
                "SessionCoordinator monitor: {}",
                e.internal.as_deref().unwrap_or(&e.message)
            );
            self.schedule_monitor().await;
        }
        Response::ok("ok")
    }
}

/// Reply to a ping.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pong {
    pub object_id: String,
    pub count: i64,
}

fn stub(env: &Env, name: &str) -> ApiResult<worker::Stub> {
    env.durable_object(SESSIONS)
        .and_then(|ns| ns.get_by_name(name))
        .map_err(|e| ApiError::unavailable(format!("Durable Object binding `{SESSIONS}`: {e}")))
}

/// Calls the coordinator named `name`; error envelopes come back as [`ApiError`]s.
pub async fn call<B: Serialize, T: serde::de::DeserializeOwned>(
    env: &Env,
    name: &str,
    method: Method,
    path: &str,
    body: Option<&B>,
) -> ApiResult<T> {
    let mut init = RequestInit::new();
    init.with_method(method);
    if let Some(body) = body {
        let headers = Headers::new();
        headers.set("content-type", "application/json")?;
        init.with_headers(headers);
        init.with_body(Some(serde_json::to_string(body)?.into()));
    }
    let req = Request::new_with_init(&format!("https://session-coordinator{path}"), &init)?;
    let mut resp = stub(env, name)?.fetch_with_request(req).await?;
    if resp.status_code() == 200 {
        return Ok(resp.json::<T>().await?);
    }
    Err(envelope_error(&mut resp).await)
}

/// Turns a coordinator error response back into the error it was.
async fn envelope_error(resp: &mut Response) -> ApiError {
    let status = resp.status_code();
    match resp.json::<ErrorEnvelope>().await {
        Ok(env) => {
            ApiError::new(status, env.error.code, env.error.message).with_details(env.error.details)
        }
        Err(e) => ApiError::internal(format!("SessionCoordinator answered {status}: {e}")),
    }
}

/// Who connects, and what goes along with a [`connect`].
pub struct Link<'a> {
    /// Recorded as the waker.
    pub actor: &'a str,
    /// A stopped session is woken too (the caller owns it).
    pub wake_stopped: bool,
    /// What a previewed app gets as `Cookie`.
    pub app_cookie: Option<String>,
    /// Headers for a previewed app (`X-Forwarded-*`).
    pub forwarded: Vec<(&'static str, String)>,
}

/// Connects to `target` of the session `name` (see `SessionCoordinator::bridge`):
/// a WebSocket for SSH and the terminal (anything but 101 is an error), any
/// HTTP request or WebSocket for a preview (the app's answer, whatever its
/// status).
pub async fn connect(
    env: &Env,
    name: &str,
    req: &Request,
    target: &Target,
    link: &Link<'_>,
) -> ApiResult<Response> {
    let mut extra = vec![
        (WAKE_ACTOR_HEADER, link.actor.to_owned()),
        (TARGET_HEADER, target.header()),
        (TARGET_PATH_HEADER, target.path().to_owned()),
    ];
    if link.wake_stopped {
        extra.push((WAKE_STOPPED_HEADER, "1".into()));
    }
    if let Some(cookie) = &link.app_cookie {
        extra.push((APP_COOKIE_HEADER, cookie.clone()));
    }
    extra.extend(link.forwarded.iter().cloned());
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let inner =
        crate::runtime::upstream_request("https://session-coordinator/connect", req, &extra)
            .map_err(runtime_error)?;
    let mut resp = stub(env, name)?.fetch_with_request(inner).await?;
    let ours = resp
        .headers()
        .get(COORDINATOR_ERROR_HEADER)
        .ok()
        .flatten()
        .is_some();
    if resp.status_code() == 101 || (matches!(target, Target::Preview { .. }) && !ours) {
        return Ok(resp);
    }
    Err(envelope_error(&mut resp).await)
}

/// Pings the `SessionCoordinator` named `name` (incrementing its counter when asked).
pub async fn ping(env: &Env, name: &str, increment: bool) -> ApiResult<Pong> {
    let method = if increment { Method::Post } else { Method::Get };
    call::<(), Pong>(env, name, method, "/ping", None).await
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn targets_survive_their_headers() {
        for t in [
            Target::Ssh,
            Target::Terminal("/terminal?cols=80&terminal_id=ab".into()),
            Target::Preview {
                port: 3000,
                path: "/a/b?c=d".into(),
            },
        ] {
            let back = Target::parse(&t.header(), t.path()).ok();
            assert_eq!(back, Some(t));
        }
        assert!(Target::parse("preview:http", "/").is_err());
        assert!(Target::parse("shell", "/").is_err());
        // A path that is not absolute is the root.
        assert_eq!(
            Target::parse("preview:80", "x").ok(),
            Some(Target::Preview {
                port: 80,
                path: "/".into()
            })
        );
    }
}

//! Operational wire types: the health report, reconcile runs and diagnostics
//! probes (one request that exercises every platform binding end to end).

use burstflare_domain::{ProbeId, SchemaStatus};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Overall health: `ok` only when every binding answers and the schema is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Ok,
    Unavailable,
}

/// The kind of platform binding a check covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingKind {
    D1,
    R2,
    DurableObject,
    Queue,
    Workflow,
    Assets,
}

/// The result of checking one binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingCheck {
    /// The binding name in the Worker config (`DB`, `BUCKET`, …).
    pub name: String,
    pub kind: BindingKind,
    pub ok: bool,
    pub detail: String,
}

/// The last reconcile sweep the queue consumer finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileRun {
    pub id: String,
    pub trigger: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    pub probes_purged: u32,
}

/// `GET /api/v1/health`. Served with 200 when healthy; otherwise the error
/// envelope (503) carries this report in `details`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthState,
    pub environment: String,
    pub version: String,
    pub schema: SchemaStatus,
    pub bindings: Vec<BindingCheck>,
    pub last_reconcile: Option<ReconcileRun>,
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
}

/// `POST /api/v1/diagnostics/probes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProbeRequest {
    /// Make the build-queue consumer reject the probe's message so that it is
    /// retried and then lands in the dead-letter queue.
    #[serde(default)]
    pub dead_letter: bool,
}

/// The stages a probe goes through, one per binding path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeStageName {
    D1,
    R2,
    DurableObject,
    BuildQueue,
    ReconcileQueue,
    DeadLetterQueue,
    Workflow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeStageStatus {
    Pending,
    Done,
    /// The stage does not apply to this probe.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeStage {
    pub name: ProbeStageName,
    pub status: ProbeStageStatus,
    #[serde(with = "time::serde::rfc3339::option")]
    pub at: Option<OffsetDateTime>,
    pub detail: Option<String>,
}

/// A diagnostics probe and how far it has got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    pub id: ProbeId,
    pub dead_letter: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub stages: Vec<ProbeStage>,
    /// True once no stage is pending.
    pub complete: bool,
}

impl Probe {
    pub fn stage(&self, name: ProbeStageName) -> Option<&ProbeStage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// `GET /config` (no auth): what the web app needs to know before anyone
/// signs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicConfig {
    /// The deployment's name (`local`, `staging`, `production`).
    pub environment: String,
    pub turnstile: TurnstileConfig,
}

/// Whether sign-up needs a Turnstile token, and the widget's site key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnstileConfig {
    pub required: bool,
    /// `TURNSTILE_SITE_KEY`; none where Turnstile is not required.
    pub site_key: Option<String>,
}

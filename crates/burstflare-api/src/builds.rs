//! Builds: running a template version's setup once and keeping the result
//! as a layer.

use burstflare_domain::build::BuildState;
use burstflare_domain::{BuildId, ReleaseId, TemplateId, TemplateVersionId, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// `POST /templates/{id}/builds`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBuildRequest {
    pub version_id: TemplateVersionId,
}

/// How long one step of an attempt took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTiming {
    pub step: String,
    pub millis: u64,
}

/// What a successful build produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildArtifact {
    /// SHA-256 of the layer (tar+zstd) as stored.
    pub layer_digest: String,
    pub layer_size: u64,
    /// The base runtime image the layer applies to.
    pub base_image: String,
    /// `sha256:<hex>` of that image's base manifest as the builder's agent
    /// reported it: exactly the filesystem the layer was captured against.
    #[serde(default)]
    pub base_image_digest: Option<String>,
    pub manifest_hash: String,
    pub bundle_digest: Option<String>,
    pub steps: Vec<StepTiming>,
}

/// One attempt of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildAttempt {
    pub attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// `succeeded`, `failed` or `lost` (found stuck and redispatched).
    pub outcome: Option<String>,
    pub error: Option<String>,
}

/// A build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub id: BuildId,
    pub template_id: TemplateId,
    pub version_id: TemplateVersionId,
    pub state: BuildState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub artifact: Option<BuildArtifact>,
    /// Attempt history, oldest first (only on `GET /builds/{id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<BuildAttempt>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// `POST /templates/{id}/builds/retry-dead-lettered`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BulkRetry {
    pub requeued: Vec<BuildId>,
}

/// Exactly what sessions of a release boot; never changes once created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSpec {
    pub build_id: BuildId,
    pub version_id: TemplateVersionId,
    pub base_image: String,
    /// See [`BuildArtifact::base_image_digest`].
    #[serde(default)]
    pub base_image_digest: Option<String>,
    pub layer_digest: String,
    pub layer_size: u64,
    pub manifest_hash: String,
    pub start: Vec<String>,
    pub env: std::collections::BTreeMap<String, String>,
    pub ports: Vec<burstflare_domain::template::Port>,
    pub persist: Vec<String>,
    pub sleep_ttl_secs: u32,
    /// Seconds a session may sleep before it is deleted (none in releases
    /// made before the manifest had `retention`: the deployment's default).
    #[serde(default)]
    pub retention_secs: Option<u32>,
    pub instance_type: burstflare_domain::InstanceType,
    pub editor: bool,
}

/// A release of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub id: ReleaseId,
    pub template_id: TemplateId,
    pub number: u32,
    pub spec: ReleaseSpec,
    /// Whether new sessions of the template boot this release.
    pub active: bool,
    pub created_by: UserId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// One change of a template's active release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    pub release_id: ReleaseId,
    pub previous_release_id: Option<ReleaseId>,
    /// `promote` or `rollback`.
    pub kind: String,
    pub actor_id: UserId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `GET /templates/{id}/releases`: releases newest first, and the history of
/// activations newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Releases {
    pub active_release_id: Option<ReleaseId>,
    pub releases: Vec<Release>,
    pub activations: Vec<Activation>,
}

/// `POST /templates/{id}/releases`: promote a succeeded build.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    pub build_id: BuildId,
}

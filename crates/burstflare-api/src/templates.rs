//! Templates, versions and bundles.

use burstflare_domain::template::{Manifest, Warning};
use burstflare_domain::{ReleaseId, TemplateId, TemplateVersionId, WorkspaceId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Largest template bundle (a tar.gz of the template's files).
pub const MAX_BUNDLE_BYTES: u64 = 64 * 1024 * 1024;
/// Upload grants for bundles are valid this long.
pub const BUNDLE_GRANT_SECS: i64 = 15 * 60;

/// A template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub id: TemplateId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub description: String,
    pub active_release_id: Option<ReleaseId>,
    /// Archived templates keep their sessions but start no new ones.
    #[serde(with = "time::serde::rfc3339::option")]
    pub archived_at: Option<OffsetDateTime>,
    /// The newest version's number (0 before the first).
    pub latest_version: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// `POST /templates`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplateRequest {
    pub name: String,
    /// Defaults to the caller's personal workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<WorkspaceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `PATCH /templates/{id}`: rename and/or describe.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTemplateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Where a version's manifest came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManifestSource {
    Manifest,
    Devcontainer,
}

/// `POST /templates/{id}/versions`: exactly one of a TOML manifest or a
/// `devcontainer.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVersionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devcontainer: Option<String>,
}

/// A version's uploaded bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// Lowercase hex SHA-256 of the bytes.
    pub digest: String,
    pub size: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub uploaded_at: OffsetDateTime,
}

/// A template version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateVersion {
    pub id: TemplateVersionId,
    pub template_id: TemplateId,
    pub number: u32,
    pub source: ManifestSource,
    pub manifest: Manifest,
    pub manifest_hash: String,
    /// What a devcontainer.json translation ignored or changed.
    pub warnings: Vec<Warning>,
    pub bundle: Option<Bundle>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A signed grant to upload a version's bundle: `PUT` the bytes to
/// `upload_url` (no other credential) before `expires_at`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadGrant {
    pub upload_url: String,
    pub max_bytes: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

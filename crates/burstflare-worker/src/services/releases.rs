//! Releases: promoting a succeeded build creates an immutable release (what
//! sessions boot) and makes it the template's active release; rollback makes
//! an earlier release active again. Every change is recorded (who, when, from
//! which release).

use burstflare_api::builds::{
    Activation, BuildArtifact, PromoteRequest, Release, ReleaseSpec, Releases,
};
use burstflare_api::sessions::ReleaseBoot;
use burstflare_api::{ErrorCode, timestamp};
use burstflare_domain::build::BuildState;
use burstflare_domain::policy::Action;
use burstflare_domain::template::Manifest;
use burstflare_domain::{ReleaseId, TemplateId};
use serde_json::json;

use super::workspaces::Membership;
use super::{new_id, parse_id};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::platform::random;
use crate::routes::Ctx;
use crate::store::builds::{self as bstore, layer_key};
use crate::store::releases::{self as store, ReleaseRow};
use crate::store::templates::{self as tstore, TemplateRow};

fn to_api(r: &ReleaseRow, active: Option<&str>) -> ApiResult<Release> {
    Ok(Release {
        id: parse_id(&r.id, "release_id")?,
        template_id: parse_id(&r.template_id, "template_id")?,
        number: u32::try_from(r.number).unwrap_or(0),
        spec: serde_json::from_str(&r.spec_json)?,
        active: active == Some(r.id.as_str()),
        created_by: parse_id(&r.created_by, "created_by")?,
        created_at: timestamp(r.created_at),
    })
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(ErrorCode::ReleaseNotFound, "release", id)
}

pub async fn list(ctx: &Ctx, t: &TemplateRow, m: &Membership) -> ApiResult<Releases> {
    m.allow(Action::UseTemplates)?;
    let active = t.active_release_id.as_deref();
    let releases = store::list(&ctx.env, &t.id)
        .await?
        .iter()
        .map(|r| to_api(r, active))
        .collect::<ApiResult<Vec<_>>>()?;
    let activations = store::activations(&ctx.env, &t.id)
        .await?
        .into_iter()
        .map(|a| {
            Ok(Activation {
                release_id: parse_id(&a.release_id, "release_id")?,
                previous_release_id: a
                    .previous_release_id
                    .as_deref()
                    .map(|p| parse_id(p, "previous_release_id"))
                    .transpose()?,
                kind: a.kind,
                actor_id: parse_id(&a.actor_id, "actor_id")?,
                created_at: timestamp(a.created_at),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Releases {
        active_release_id: active.map(|a| parse_id(a, "release_id")).transpose()?,
        releases,
        activations,
    })
}

/// `POST /templates/{id}/releases`: promotes a succeeded build of the template.
pub async fn promote(
    ctx: &Ctx,
    caller: &Caller,
    t: &TemplateRow,
    m: &Membership,
    req: PromoteRequest,
) -> ApiResult<Release> {
    m.allow(Action::ManageTemplates)?;
    let build = bstore::find(&ctx.env, req.build_id.as_str())
        .await?
        .filter(|b| b.template_id == t.id)
        .ok_or_else(|| {
            ApiError::not_found(ErrorCode::BuildNotFound, "build", req.build_id.as_str())
        })?;
    if build.state != BuildState::Succeeded.as_str() {
        return Err(ApiError::new(
            409,
            ErrorCode::InvalidBuildState,
            format!(
                "only a succeeded build can be promoted; this one is {}",
                build.state
            ),
        )
        .with_details(json!({ "state": build.state })));
    }
    let artifact: BuildArtifact = serde_json::from_str(
        build
            .artifact_json
            .as_deref()
            .ok_or_else(|| ApiError::internal("succeeded build without an artifact"))?,
    )?;
    let version = tstore::version(&ctx.env, &t.id, &build.version_id)
        .await?
        .ok_or_else(|| ApiError::internal("the build's version is gone"))?;
    let manifest: Manifest = serde_json::from_str(&version.manifest_json)?;
    let spec = ReleaseSpec {
        build_id: parse_id(&build.id, "build_id")?,
        version_id: parse_id(&version.id, "version_id")?,
        base_image: artifact.base_image,
        base_image_digest: artifact.base_image_digest,
        layer_digest: artifact.layer_digest,
        layer_size: artifact.layer_size,
        manifest_hash: artifact.manifest_hash,
        start: manifest.start,
        env: manifest.env,
        ports: manifest.ports,
        persist: manifest.persist,
        sleep_ttl_secs: manifest.sleep_ttl_secs,
        retention_secs: Some(manifest.retention_secs),
        instance_type: manifest.instance_type,
        editor: manifest.editor,
    };
    let id = new_id(ReleaseId::from_random)?;
    ctx.note_target("release", id.as_str());
    let row = ReleaseRow {
        id: id.to_string(),
        template_id: t.id.clone(),
        build_id: build.id.clone(),
        number: 0,
        spec_json: serde_json::to_string(&spec)?,
        created_by: caller.user.id.clone(),
        created_at: ctx.now,
    };
    let activation = hex::encode(random::<16>()?);
    store::create_and_activate(&ctx.env, &row, &activation, t.active_release_id.as_deref()).await?;
    let stored = store::find(&ctx.env, &t.id, id.as_str())
        .await?
        .ok_or_else(|| not_found(id.as_str()))?;
    to_api(&stored, Some(id.as_str()))
}

/// `POST /templates/{id}/releases/{release_id}/rollback`.
pub async fn rollback(
    ctx: &Ctx,
    caller: &Caller,
    t: &TemplateRow,
    m: &Membership,
    raw_release: &str,
) -> ApiResult<Release> {
    m.allow(Action::ManageTemplates)?;
    let id: ReleaseId = parse_id(raw_release, "release_id")?;
    ctx.note_target("release", id.as_str());
    let row = store::find(&ctx.env, &t.id, id.as_str())
        .await?
        .ok_or_else(|| not_found(id.as_str()))?;
    if t.active_release_id.as_deref() != Some(row.id.as_str()) {
        let activation = hex::encode(random::<16>()?);
        store::rollback(
            &ctx.env,
            &t.id,
            &row.id,
            t.active_release_id.as_deref(),
            &activation,
            &caller.user.id,
            ctx.now,
        )
        .await?;
    }
    to_api(&row, Some(row.id.as_str()))
}

/// What a new session of `t` boots: the explicit release, else the active one.
pub async fn boot(
    ctx: &Ctx,
    t: &TemplateRow,
    release: Option<&str>,
) -> ApiResult<(ReleaseSpec, ReleaseBoot)> {
    let id = match release {
        Some(r) => parse_id::<ReleaseId>(r, "release_id")?.to_string(),
        None => t
            .active_release_id
            .clone()
            .ok_or_else(|| ApiError::internal("bootable template without a release"))?,
    };
    let row = store::find(&ctx.env, &t.id, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let spec: ReleaseSpec = serde_json::from_str(&row.spec_json)?;
    let boot = ReleaseBoot {
        template_id: parse_id::<TemplateId>(&t.id, "template_id")?,
        release_id: parse_id(&row.id, "release_id")?,
        layer_key: layer_key(&t.id, &row.build_id),
        layer_digest: spec.layer_digest.clone(),
        start: spec.start.clone(),
        ports: spec.ports.iter().map(|p| p.port).collect(),
        editor: spec.editor,
    };
    Ok((spec, boot))
}

//! Templates, versions and bundles.
//!
//! A template belongs to a workspace: non-members get 404 for it, members
//! may read it, and changing it needs `ManageTemplates`. A version holds a
//! validated manifest (TOML, or a translated `devcontainer.json`) and, once
//! uploaded, a bundle. Bundles are uploaded with a signed, short-lived grant
//! (`PUT /uploads/bundle?grant=…`) and streamed to R2: the size limit is
//! enforced while streaming (413, and nothing is stored: parts go to a
//! multipart upload that is aborted), and the SHA-256 is recorded.
//! Deleting a template deletes every R2 object under its prefix first, then
//! its rows.

use burstflare_api::templates::{
    BUNDLE_GRANT_SECS, Bundle, CreateTemplateRequest, CreateVersionRequest, MAX_BUNDLE_BYTES,
    ManifestSource, Template, TemplateVersion, UpdateTemplateRequest, UploadGrant,
};
use burstflare_api::{ErrorCode, timestamp};
use burstflare_domain::policy::Action;
use burstflare_domain::template::{BaseImage, Manifest, ManifestError, from_devcontainer};
use burstflare_domain::{SessionName, TemplateId, TemplateVersionId, account::FieldError};
use serde_json::json;
use worker::{Request, Response};

use super::workspaces::{self, Membership};
use super::{new_id, parse_id, uploads};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::platform::{BUCKET, var};
use crate::routes::Ctx;
use crate::store::templates::{self as store, TemplateRow, VersionRow};
use crate::store::{d1, objects};

const MAX_DESCRIPTION: usize = 500;

/// The base images manifests may name.
fn bases(ctx: &Ctx) -> Vec<(String, String)> {
    vec![(
        "runtime".to_owned(),
        var(&ctx.env, "RUNTIME_IMAGE", super::sessions::DEFAULT_IMAGE),
    )]
}

fn invalid_manifest(e: ManifestError) -> ApiError {
    ApiError::new(
        400,
        ErrorCode::InvalidManifest,
        format!("the manifest is invalid: {}: {}", e.field, e.message),
    )
    .with_details(json!({ "field": e.field, "reason": e.message }))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(ErrorCode::TemplateNotFound, "template", id)
}

fn to_api(r: &TemplateRow) -> ApiResult<Template> {
    Ok(Template {
        id: parse_id(&r.id, "template_id")?,
        workspace_id: parse_id(&r.workspace_id, "workspace_id")?,
        name: r.name.clone(),
        description: r.description.clone(),
        active_release_id: r
            .active_release_id
            .as_deref()
            .map(|id| parse_id(id, "release_id"))
            .transpose()?,
        archived_at: r.archived_at.map(timestamp),
        latest_version: r
            .latest_version
            .map_or(0, |n| u32::try_from(n).unwrap_or(0)),
        created_at: timestamp(r.created_at),
        updated_at: timestamp(r.updated_at),
    })
}

fn version_to_api(r: &VersionRow) -> ApiResult<TemplateVersion> {
    Ok(TemplateVersion {
        id: parse_id(&r.id, "version_id")?,
        template_id: parse_id(&r.template_id, "template_id")?,
        number: u32::try_from(r.number).unwrap_or(0),
        source: if r.source == "devcontainer" {
            ManifestSource::Devcontainer
        } else {
            ManifestSource::Manifest
        },
        manifest: serde_json::from_str(&r.manifest_json)?,
        manifest_hash: r.manifest_hash.clone(),
        warnings: serde_json::from_str(&r.warnings_json)?,
        bundle: match (&r.bundle_digest, r.bundle_size, r.bundle_uploaded_at) {
            (Some(digest), Some(size), Some(at)) => Some(Bundle {
                digest: digest.clone(),
                size: u64::try_from(size).unwrap_or(0),
                uploaded_at: timestamp(at),
            }),
            _ => None,
        },
        created_at: timestamp(r.created_at),
    })
}

/// The template `raw_id` and the caller's membership of its workspace; 404
/// for anyone who is not a member.
pub async fn template_of(
    ctx: &Ctx,
    caller: &Caller,
    raw_id: &str,
) -> ApiResult<(TemplateRow, Membership)> {
    let id: TemplateId = parse_id(raw_id, "template_id")?;
    ctx.note_target("template", id.as_str());
    let row = store::find(&ctx.env, id.as_str())
        .await?
        .ok_or_else(|| not_found(id.as_str()))?;
    let m = workspaces::member_of(ctx, caller, &row.workspace_id)
        .await
        .map_err(|e| {
            if e.status == 404 {
                not_found(id.as_str())
            } else {
                e
            }
        })?;
    Ok((row, m))
}

fn parse_name(raw: &str) -> ApiResult<String> {
    Ok(SessionName::parse(raw)?.as_str().to_owned())
}

fn parse_description(raw: Option<&str>) -> ApiResult<String> {
    let d = raw.unwrap_or("").trim();
    if d.chars().count() > MAX_DESCRIPTION || d.chars().any(|c| c.is_control() && c != '\n') {
        return Err(FieldError::new(
            "description",
            format!("at most {MAX_DESCRIPTION} characters, no control characters"),
        )
        .into());
    }
    Ok(d.to_owned())
}

fn name_taken(name: &str) -> ApiError {
    ApiError::new(
        409,
        ErrorCode::TemplateNameTaken,
        format!("a template named {name:?} exists in this workspace already"),
    )
    .with_details(json!({ "field": "name" }))
}

pub async fn list(
    ctx: &Ctx,
    caller: &Caller,
    workspace_id: Option<&str>,
) -> ApiResult<Vec<Template>> {
    if let Some(ws) = workspace_id {
        workspaces::member_of(ctx, caller, ws).await?;
    }
    store::list(&ctx.env, &caller.user.id, workspace_id)
        .await?
        .iter()
        .map(to_api)
        .collect()
}

pub async fn create(ctx: &Ctx, caller: &Caller, req: CreateTemplateRequest) -> ApiResult<Template> {
    let ws = match &req.workspace_id {
        Some(w) => w.to_string(),
        None => caller.personal_workspace()?.to_owned(),
    };
    let m = workspaces::member_of(ctx, caller, &ws).await?;
    m.allow(Action::ManageTemplates)?;
    let name = parse_name(&req.name)?;
    let description = parse_description(req.description.as_deref())?;
    let id = new_id(TemplateId::from_random)?;
    ctx.note_target("template", id.as_str());
    let row = TemplateRow {
        id: id.to_string(),
        workspace_id: m.id().to_owned(),
        name: name.clone(),
        description,
        active_release_id: None,
        archived_at: None,
        created_by: caller.user.id.clone(),
        created_at: ctx.now,
        updated_at: ctx.now,
        latest_version: None,
    };
    if let Err(e) = store::insert(&ctx.env, &row).await {
        return Err(if d1::is_unique_violation(&e, "templates.") {
            name_taken(&name)
        } else {
            e
        });
    }
    to_api(&row)
}

pub fn get(row: &TemplateRow, m: &Membership) -> ApiResult<Template> {
    m.allow(Action::UseTemplates)?;
    to_api(row)
}

pub async fn update(
    ctx: &Ctx,
    row: TemplateRow,
    m: &Membership,
    req: UpdateTemplateRequest,
) -> ApiResult<Template> {
    m.allow(Action::ManageTemplates)?;
    let name = match &req.name {
        Some(n) => parse_name(n)?,
        None => row.name.clone(),
    };
    let description = match &req.description {
        Some(d) => parse_description(Some(d))?,
        None => row.description.clone(),
    };
    if let Err(e) = store::update(&ctx.env, &row.id, &name, &description, ctx.now).await {
        return Err(if d1::is_unique_violation(&e, "templates.") {
            name_taken(&name)
        } else {
            e
        });
    }
    to_api(&TemplateRow {
        name,
        description,
        updated_at: ctx.now,
        ..row
    })
}

/// Archives (`archive`) or restores a template; doing it twice is a no-op.
pub async fn set_archived(
    ctx: &Ctx,
    row: TemplateRow,
    m: &Membership,
    archive: bool,
) -> ApiResult<Template> {
    m.allow(Action::ManageTemplates)?;
    let archived_at = match (archive, row.archived_at) {
        (true, Some(at)) => Some(at),
        (true, None) => Some(ctx.now),
        (false, _) => None,
    };
    if archived_at != row.archived_at {
        store::set_archived(&ctx.env, &row.id, archived_at, ctx.now).await?;
    }
    to_api(&TemplateRow { archived_at, ..row })
}

/// Deletes every R2 object under the template's prefix, then its rows.
pub async fn delete(ctx: &Ctx, row: TemplateRow, m: &Membership) -> ApiResult<()> {
    m.allow(Action::ManageTemplates)?;
    // Running builds stop first, so none writes a layer after the cleanup.
    super::builds::cancel_all(&ctx.env, &row.id, ctx.now).await?;
    let bucket = ctx.env.bucket(BUCKET)?;
    let prefix = store::r2_prefix(&row.id);
    loop {
        let page = bucket.list().prefix(prefix.clone()).execute().await?;
        let keys: Vec<String> = page.objects().iter().map(|o| o.key()).collect();
        if keys.is_empty() {
            break;
        }
        bucket.delete_multiple(keys).await?;
    }
    store::delete(&ctx.env, &row.id).await
}

pub async fn versions(
    ctx: &Ctx,
    row: &TemplateRow,
    m: &Membership,
) -> ApiResult<Vec<TemplateVersion>> {
    m.allow(Action::UseTemplates)?;
    store::versions(&ctx.env, &row.id)
        .await?
        .iter()
        .map(version_to_api)
        .collect()
}

pub async fn create_version(
    ctx: &Ctx,
    caller: &Caller,
    row: &TemplateRow,
    m: &Membership,
    req: CreateVersionRequest,
) -> ApiResult<TemplateVersion> {
    m.allow(Action::ManageTemplates)?;
    let owned = bases(ctx);
    let bases: Vec<BaseImage<'_>> = owned
        .iter()
        .map(|(name, image)| BaseImage { name, image })
        .collect();
    let (source, manifest, warnings) = match (&req.manifest, &req.devcontainer) {
        (Some(toml), None) => (
            ManifestSource::Manifest,
            Manifest::parse_toml(toml, &bases).map_err(invalid_manifest)?,
            Vec::new(),
        ),
        (None, Some(json)) => {
            let (m, w) = from_devcontainer(json, &bases).map_err(invalid_manifest)?;
            (ManifestSource::Devcontainer, m, w)
        }
        _ => {
            return Err(FieldError::new(
                "manifest",
                "send exactly one of `manifest` (TOML) or `devcontainer` (devcontainer.json)",
            )
            .into());
        }
    };
    let id = new_id(TemplateVersionId::from_random)?;
    let version = VersionRow {
        id: id.to_string(),
        template_id: row.id.clone(),
        number: 0,
        source: serde_json::to_value(source)?
            .as_str()
            .unwrap_or("manifest")
            .to_owned(),
        manifest_json: serde_json::to_string(&manifest)?,
        manifest_hash: manifest.hash(),
        warnings_json: serde_json::to_string(&warnings)?,
        bundle_digest: None,
        bundle_size: None,
        bundle_uploaded_at: None,
        created_by: caller.user.id.clone(),
        created_at: ctx.now,
    };
    let stored = store::insert_version(&ctx.env, &version)
        .await?
        .ok_or_else(|| ApiError::internal("version insert returned nothing"))?;
    version_to_api(&stored)
}

async fn version_of(ctx: &Ctx, row: &TemplateRow, raw_id: &str) -> ApiResult<VersionRow> {
    let id: TemplateVersionId = parse_id(raw_id, "version_id")?;
    store::version(&ctx.env, &row.id, id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(ErrorCode::VersionNotFound, "version", id.as_str()))
}

pub async fn get_version(
    ctx: &Ctx,
    row: &TemplateRow,
    m: &Membership,
    raw_id: &str,
) -> ApiResult<TemplateVersion> {
    m.allow(Action::UseTemplates)?;
    version_to_api(&version_of(ctx, row, raw_id).await?)
}

fn max_bundle_bytes(ctx: &Ctx) -> u64 {
    ctx.env
        .var("MAX_BUNDLE_BYTES")
        .ok()
        .and_then(|v| v.to_string().parse().ok())
        .unwrap_or(MAX_BUNDLE_BYTES)
}

/// `POST …/versions/{id}/bundle-grant`.
pub async fn bundle_grant(
    ctx: &Ctx,
    row: &TemplateRow,
    m: &Membership,
    raw_version: &str,
) -> ApiResult<UploadGrant> {
    m.allow(Action::ManageTemplates)?;
    let v = version_of(ctx, row, raw_version).await?;
    if v.bundle_digest.is_some() {
        return Err(bundle_exists());
    }
    uploads::issue(
        ctx,
        "bundle",
        &v.id,
        max_bundle_bytes(ctx),
        BUNDLE_GRANT_SECS,
        "bundle",
    )
}

fn bundle_exists() -> ApiError {
    ApiError::new(
        409,
        ErrorCode::BundleExists,
        "this version has its bundle already; versions are immutable, create a new one",
    )
}

/// `PUT /uploads/bundle?grant=…`: streams the body to R2.
pub async fn upload_bundle(
    ctx: &Ctx,
    req: &mut Request,
    raw_grant: Option<&str>,
) -> ApiResult<Bundle> {
    let g = uploads::verify(ctx, raw_grant, "bundle", "a template bundle")?;
    let v = store::version_by_id(&ctx.env, &g.target)
        .await?
        .ok_or_else(|| uploads::invalid("the grant's version no longer exists"))?;
    ctx.note_target("template_version", &v.id);
    if let Ok(Some(t)) = store::find(&ctx.env, &v.template_id).await {
        ctx.note_workspace(&t.workspace_id);
    }
    if v.bundle_digest.is_some() {
        return Err(bundle_exists());
    }
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > g.max_bytes) {
        return Err(uploads::too_large("bundle", g.max_bytes));
    }
    let key = store::bundle_key(&v.template_id, &v.id);
    let bucket = ctx.env.bucket(BUCKET)?;
    let (digest, size) = objects::put_stream(&bucket, &key, req.stream()?, g.max_bytes)
        .await
        .map_err(|e| match e {
            objects::PutError::TooLarge => uploads::too_large("bundle", g.max_bytes),
            objects::PutError::Read(reason) => ApiError::new(
                400,
                ErrorCode::MalformedJson,
                "the upload body could not be read",
            )
            .with_details(json!({ "reason": reason })),
            objects::PutError::Store(e) => e,
        })?;
    store::set_bundle(
        &ctx.env,
        &v.id,
        &digest,
        i64::try_from(size).unwrap_or(i64::MAX),
        ctx.now,
    )
    .await?;
    Ok(Bundle {
        digest,
        size,
        uploaded_at: timestamp(ctx.now),
    })
}

/// `GET …/versions/{id}/bundle`: the bundle's bytes.
pub async fn download_bundle(
    ctx: &Ctx,
    row: &TemplateRow,
    m: &Membership,
    raw_version: &str,
) -> ApiResult<Response> {
    m.allow(Action::UseTemplates)?;
    let v = version_of(ctx, row, raw_version).await?;
    let missing = || {
        ApiError::new(
            404,
            ErrorCode::BundleMissing,
            "this version has no bundle; upload one with a bundle grant",
        )
    };
    let digest = v.bundle_digest.clone().ok_or_else(missing)?;
    let object = ctx
        .env
        .bucket(BUCKET)?
        .get(store::bundle_key(&v.template_id, &v.id))
        .execute()
        .await?
        .ok_or_else(missing)?;
    let body = object.body().ok_or_else(missing)?;
    let headers = worker::Headers::new();
    headers.set("content-type", "application/gzip")?;
    headers.set("x-bundle-digest", &digest)?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::from_stream(body.stream()?)?.with_headers(headers))
}

/// The template a new session in `workspace_id` boots (by id or name):
/// 404 when there is none, 409 when it is archived or has no release yet.
pub async fn bootable(
    ctx: &Ctx,
    workspace_id: &str,
    reference: &str,
    explicit_release: bool,
) -> ApiResult<TemplateRow> {
    let row = match reference.parse::<TemplateId>() {
        Ok(id) => store::find(&ctx.env, id.as_str())
            .await?
            .filter(|t| t.workspace_id == workspace_id),
        Err(_) => store::find_by_name(&ctx.env, workspace_id, reference).await?,
    }
    .ok_or_else(|| not_found(reference))?;
    if row.archived_at.is_some() {
        return Err(ApiError::new(
            409,
            ErrorCode::TemplateArchived,
            format!(
                "template {:?} is archived and starts no new sessions; restore it first",
                row.name
            ),
        )
        .with_details(json!({ "template_id": row.id })));
    }
    if row.active_release_id.is_none() && !explicit_release {
        return Err(ApiError::new(
            409,
            ErrorCode::NoActiveRelease,
            format!(
                "template {:?} has no release yet: build a version and promote the build",
                row.name
            ),
        )
        .with_details(json!({ "template_id": row.id })));
    }
    Ok(row)
}

//! Templates, versions and bundles: manifests and devcontainer.json,
//! signed upload grants, streamed size limits, R2 cleanup on delete.

use anyhow::{Context, Result, ensure};
use burstflare_api::ErrorCode;
use burstflare_api::sessions::CreateSessionRequest;
use burstflare_api::templates::{
    CreateTemplateRequest, CreateVersionRequest, ManifestSource, UpdateTemplateRequest,
};
use burstflare_domain::grant::{self, Grant};
use burstflare_e2e::Stack;
use burstflare_e2e::stack::{MAX_BUNDLE_BYTES, UPLOAD_GRANT_SECRET};
use sha2::{Digest, Sha256};

use crate::identity::expect_audit;
use crate::support::{expect_api_error, expect_envelope};

const JQ_MANIFEST: &str = r#"
base = "runtime"
packages = ["jq"]
setup = ["mkdir -p /opt/tool", "echo 1.0 > /opt/tool/VERSION"]
start = ["echo started"]

[env]
TOOL_HOME = "/opt/tool"

[[ports]]
port = 3000
name = "web"
"#;

const DEVCONTAINER: &str = r#"{
  // A typical devcontainer.json, comments and trailing commas included.
  "name": "demo",
  "image": "mcr.microsoft.com/devcontainers/base:bookworm",
  "features": { "ghcr.io/devcontainers/features/node:1": {} },
  "postCreateCommand": "echo created",
  "forwardPorts": [8080,],
  "containerEnv": { "MODE": "dev" },
}"#;

fn noise(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub async fn templates_versions_bundles_and_lifecycle(stack: &Stack) -> Result<()> {
    let (reg, c) = stack.register("templates").await?;
    let t = c
        .create_template(&CreateTemplateRequest {
            name: "jq-tool".into(),
            description: Some("jq and a version file".into()),
            ..Default::default()
        })
        .await?;
    ensure!(t.workspace_id == reg.workspace.id && t.latest_version == 0 && t.archived_at.is_none());
    expect_api_error(
        c.create_template(&CreateTemplateRequest {
            name: "jq-tool".into(),
            ..Default::default()
        })
        .await,
        409,
        ErrorCode::TemplateNameTaken,
    )?;
    let err = expect_api_error(
        c.create_template(&CreateTemplateRequest {
            name: "Not A Slug".into(),
            ..Default::default()
        })
        .await,
        400,
        ErrorCode::InvalidField,
    )?;
    ensure!(err.details["field"] == "name", "{err:?}");
    let renamed = c
        .update_template(
            t.id.as_str(),
            &UpdateTemplateRequest {
                name: Some("jq-tools".into()),
                description: None,
            },
        )
        .await?;
    ensure!(renamed.name == "jq-tools" && renamed.description == "jq and a version file");
    ensure!(c.templates(None).await?.iter().any(|x| x.id == t.id));
    let id = t.id.as_str();

    // Versions: a TOML manifest, errors that name the field, a devcontainer.json.
    let v1 = c
        .create_version(
            id,
            &CreateVersionRequest {
                manifest: Some(JQ_MANIFEST.into()),
                devcontainer: None,
            },
        )
        .await?;
    ensure!(v1.number == 1 && v1.source == ManifestSource::Manifest && v1.bundle.is_none());
    ensure!(v1.manifest.packages == vec!["jq".to_owned()] && v1.manifest_hash.len() == 64);
    for (toml, field) in [
        (
            "base = \"runtime\"\npackages = [\"jq\", \"Bad Name\"]",
            "packages[1]",
        ),
        ("base = \"runtime\"\ncolour = \"blue\"", "colour"),
        ("base = \"nope\"", "base"),
        ("base = \"runtime\"\n[[ports]]\nport = 22", "ports[0].port"),
        ("base = [", "(toml)"),
    ] {
        let err = expect_api_error(
            c.create_version(
                id,
                &CreateVersionRequest {
                    manifest: Some(toml.into()),
                    devcontainer: None,
                },
            )
            .await,
            400,
            ErrorCode::InvalidManifest,
        )?;
        ensure!(err.details["field"] == field, "want {field}: {err:?}");
    }
    for req in [
        CreateVersionRequest::default(),
        CreateVersionRequest {
            manifest: Some(JQ_MANIFEST.into()),
            devcontainer: Some(DEVCONTAINER.into()),
        },
    ] {
        expect_api_error(
            c.create_version(id, &req).await,
            400,
            ErrorCode::InvalidField,
        )?;
    }
    let v2 = c
        .create_version(
            id,
            &CreateVersionRequest {
                manifest: None,
                devcontainer: Some(DEVCONTAINER.into()),
            },
        )
        .await?;
    ensure!(v2.number == 2 && v2.source == ManifestSource::Devcontainer);
    ensure!(
        v2.manifest.setup == vec!["echo created".to_owned()],
        "{:?}",
        v2.manifest
    );
    ensure!(
        v2.warnings.iter().any(|w| w.field.starts_with("features.")),
        "the unsupported feature is reported: {:?}",
        v2.warnings
    );
    let err = expect_api_error(
        c.create_version(
            id,
            &CreateVersionRequest {
                manifest: None,
                devcontainer: Some(r#"{"image": "ubuntu:22.04"}"#.into()),
            },
        )
        .await,
        400,
        ErrorCode::InvalidManifest,
    )?;
    ensure!(err.details["field"] == "image", "{err:?}");

    // Bundles: a small one (one R2 put) and one over a part (multipart).
    let http = stack.http();
    for (version, len) in [(&v1, 64 * 1024), (&v2, 9 * 1024 * 1024)] {
        let bytes = noise(len, version.number as u8);
        let g = c.bundle_grant(id, version.id.as_str()).await?;
        ensure!(g.max_bytes == MAX_BUNDLE_BYTES);
        let b = c.upload_with_grant(&g, bytes.clone()).await?;
        ensure!(b.digest == sha(&bytes) && b.size == len as u64, "{b:?}");
        let down = http
            .get(stack.api(&format!("/templates/{id}/versions/{}/bundle", version.id)))
            .bearer_auth(c.token().context("token")?)
            .send()
            .await?;
        ensure!(down.status() == 200);
        ensure!(down.headers()["x-bundle-digest"] == b.digest.as_str());
        ensure!(sha(&down.bytes().await?) == b.digest);
        // Versions are immutable: no second bundle, with a new grant or the old one.
        expect_api_error(
            c.bundle_grant(id, version.id.as_str()).await,
            409,
            ErrorCode::BundleExists,
        )?;
        expect_api_error(
            c.upload_with_grant(&g, bytes).await,
            409,
            ErrorCode::BundleExists,
        )?;
    }
    let keys = stack.r2_keys(&format!("templates/{id}/"))?;
    ensure!(keys.len() == 2, "{keys:?}");

    // Oversized bodies: by Content-Length, and while streaming (chunked);
    // nothing is stored either way.
    let v3 = c
        .create_version(
            id,
            &CreateVersionRequest {
                manifest: Some(JQ_MANIFEST.into()),
                devcontainer: None,
            },
        )
        .await?;
    let g3 = c.bundle_grant(id, v3.id.as_str()).await?;
    let big = noise(MAX_BUNDLE_BYTES as usize + 1, 3);
    expect_api_error(
        c.upload_with_grant(&g3, big.clone()).await,
        413,
        ErrorCode::PayloadTooLarge,
    )?;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(1024 * 1024).map(|c| Ok(c.to_vec())).collect();
    let resp = http
        .put(&g3.upload_url)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await?;
    expect_envelope(resp, 413, ErrorCode::PayloadTooLarge).await?;
    ensure!(stack.r2_keys(&format!("templates/{id}/"))?.len() == 2);
    ensure!(
        c.template_versions(id)
            .await?
            .iter()
            .find(|v| v.id == v3.id)
            .context("v3")?
            .bundle
            .is_none()
    );

    // Forged, expired, missing and misdirected grants are refused.
    let forged = g3.upload_url.replace("grant=", "grant=x");
    let expired = grant::sign(
        &Grant {
            purpose: "bundle".into(),
            target: v3.id.to_string(),
            max_bytes: MAX_BUNDLE_BYTES,
            expires_at: 1_000,
        },
        UPLOAD_GRANT_SECRET.as_bytes(),
    );
    let snapshot = grant::sign(
        &Grant {
            purpose: "snapshot".into(),
            target: v3.id.to_string(),
            max_bytes: MAX_BUNDLE_BYTES,
            expires_at: i64::MAX / 2,
        },
        UPLOAD_GRANT_SECRET.as_bytes(),
    );
    let base = stack.api("/uploads/bundle");
    for url in [
        forged,
        format!("{base}?grant={expired}"),
        format!("{base}?grant={snapshot}"),
        base.clone(),
    ] {
        let resp = http.put(&url).body(vec![1, 2, 3]).send().await?;
        expect_envelope(resp, 403, ErrorCode::GrantInvalid)
            .await
            .context(url)?;
    }

    // Archived templates start no sessions; restored ones need a release.
    let create = |name: &str| CreateSessionRequest {
        name: name.into(),
        template: Some("jq-tools".into()),
        ..Default::default()
    };
    let archived = c.archive_template(id, true).await?;
    ensure!(archived.archived_at.is_some());
    ensure!(
        c.archive_template(id, true).await?.archived_at == archived.archived_at,
        "idempotent"
    );
    expect_api_error(
        c.create_session(&create("from-archived")).await,
        409,
        ErrorCode::TemplateArchived,
    )?;
    ensure!(c.archive_template(id, false).await?.archived_at.is_none());
    expect_api_error(
        c.create_session(&create("from-unreleased")).await,
        409,
        ErrorCode::NoActiveRelease,
    )?;
    let missing = CreateSessionRequest {
        template: Some("no-such-template".into()),
        ..create("from-nothing")
    };
    expect_api_error(
        c.create_session(&missing).await,
        404,
        ErrorCode::TemplateNotFound,
    )?;

    // Others see nothing; delete removes every object under the prefix.
    let (_, stranger) = stack.register("templates-stranger").await?;
    expect_api_error(
        stranger.template(id).await,
        404,
        ErrorCode::TemplateNotFound,
    )?;
    expect_api_error(
        stranger.delete_template(id).await,
        404,
        ErrorCode::TemplateNotFound,
    )?;
    c.delete_template(id).await?;
    ensure!(stack.r2_keys(&format!("templates/{id}/"))?.is_empty());
    expect_api_error(c.template(id).await, 404, ErrorCode::TemplateNotFound)?;
    for action in [
        "template.create",
        "template.update",
        "template.version_create",
        "template.bundle_upload",
        "template.archive",
        "template.delete",
    ] {
        expect_audit(&c, action, burstflare_api::identity::AuditOutcome::Success).await?;
    }
    Ok(())
}

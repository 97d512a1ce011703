//! Users' SSH public keys: add (validated OpenSSH key), list, remove. Keys are
//! injected as `authorized_keys` when a session starts.

use burstflare_api::ErrorCode;
use burstflare_api::sessions::{AddSshKeyRequest, SshKey};
use burstflare_domain::{SshKeyId, SshPublicKey, account::FieldError};
use serde_json::json;

use super::{new_id, parse_id};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::Ctx;
use crate::store::d1::is_unique_violation;
use crate::store::ssh_keys::{self, SshKeyRow};

/// Most keys one user may register.
const MAX_KEYS: usize = 50;

pub async fn add(ctx: &Ctx, caller: &Caller, req: AddSshKeyRequest) -> ApiResult<SshKey> {
    let key = SshPublicKey::parse(&req.public_key)?;
    let name = match req.name.as_deref().map(str::trim) {
        Some("") => return Err(FieldError::new("name", "must not be empty").into()),
        Some(n) if n.chars().count() > 100 || n.chars().any(char::is_control) => {
            return Err(FieldError::new(
                "name",
                "must be at most 100 characters without control characters",
            )
            .into());
        }
        Some(n) => n.to_owned(),
        None => key
            .comment
            .clone()
            .unwrap_or_else(|| key.fingerprint.clone())
            .chars()
            .take(100)
            .collect(),
    };
    let existing = ssh_keys::list(&ctx.env, &caller.user.id).await?;
    if let Some(dup) = existing.iter().find(|k| k.fingerprint == key.fingerprint) {
        return Err(duplicate(&key.fingerprint, &dup.id));
    }
    if existing.len() >= MAX_KEYS {
        return Err(
            FieldError::new("public_key", format!("at most {MAX_KEYS} keys per user")).into(),
        );
    }
    let row = SshKeyRow {
        id: new_id(SshKeyId::from_random)?.to_string(),
        user_id: caller.user.id.clone(),
        name,
        algorithm: key.algorithm.clone(),
        public_key: key.authorized_line(),
        fingerprint: key.fingerprint.clone(),
        created_at: ctx.now,
    };
    match ssh_keys::insert(&ctx.env, &row).await {
        Err(e) if is_unique_violation(&e, "ssh_keys.") => Err(duplicate(&key.fingerprint, "")),
        other => other,
    }?;
    row.to_api()
}

fn duplicate(fingerprint: &str, id: &str) -> ApiError {
    ApiError::new(
        409,
        ErrorCode::SshKeyExists,
        format!("this key ({fingerprint}) is registered already"),
    )
    .with_details(json!({ "fingerprint": fingerprint, "id": id }))
}

pub async fn list(ctx: &Ctx, caller: &Caller) -> ApiResult<Vec<SshKey>> {
    ssh_keys::list(&ctx.env, &caller.user.id)
        .await?
        .iter()
        .map(SshKeyRow::to_api)
        .collect()
}

pub async fn remove(ctx: &Ctx, caller: &Caller, id: &str) -> ApiResult<()> {
    let id: SshKeyId = parse_id(id, "ssh_key_id")?;
    if ssh_keys::delete(&ctx.env, &caller.user.id, id.as_str()).await? {
        Ok(())
    } else {
        Err(ApiError::not_found(
            ErrorCode::SshKeyNotFound,
            "SSH key",
            id.as_str(),
        ))
    }
}

//! Passkeys (WebAuthn): registration and sign-in ceremonies, list, delete.
//!
//! Each ceremony starts with options carrying a fresh 32-byte challenge,
//! stored with a short expiry and spent by the first response that names it
//! (successful or not), so a captured response cannot be replayed. The
//! response is verified by [`burstflare_domain::webauthn`]: type, challenge,
//! origin, RP id hash, user-present and user-verified flags, the attestation
//! (`none` or `packed` self-attestation), the signature (ES256, EdDSA) and
//! the sign counter. The relying party comes from `WEBAUTHN_RP_ID`,
//! `WEBAUTHN_RP_NAME` and `WEBAUTHN_ORIGINS` (comma-separated).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use burstflare_api::identity::{
    Passkey, PasskeyCeremony, PasskeyLoginOptionsRequest, PasskeyLoginRequest,
    RegisterPasskeyRequest,
};
use burstflare_api::{ErrorCode, timestamp};
use burstflare_domain::webauthn::{self, RelyingParty, WebAuthnError};
use burstflare_domain::{ChallengeId, Email, PasskeyId, TokenName};
use serde_json::json;

use super::ratelimit::{self, Bucket};
use super::signin::{self, Issued};
use super::{new_id, parse_id, recovery};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::platform::{random, secs_var, var, web_origins};
use crate::routes::Ctx;
use crate::store::passkeys::{self as store, PasskeyRow};
use crate::store::{d1, users};

const CHALLENGE_TTL_SECS: i64 = 300;

struct RpConfig {
    id: String,
    name: String,
    origins: Vec<String>,
}

fn rp(ctx: &Ctx) -> RpConfig {
    RpConfig {
        id: var(&ctx.env, "WEBAUTHN_RP_ID", "localhost"),
        name: var(&ctx.env, "WEBAUTHN_RP_NAME", "BurstFlare"),
        origins: web_origins(&ctx.env),
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a base64url field (padding tolerated); 400 naming the field otherwise.
fn unb64(field: &str, value: &str) -> ApiResult<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|_| {
            ApiError::new(
                400,
                ErrorCode::InvalidField,
                format!("{field} must be base64url"),
            )
            .with_details(json!({ "field": field }))
        })
}

fn rejected(status: u16, e: &WebAuthnError) -> ApiError {
    ApiError::new(
        status,
        ErrorCode::PasskeyRejected,
        format!("the passkey response was rejected: {e}"),
    )
    .with_details(json!({ "reason": e.reason() }))
}

fn rejected_because(status: u16, reason: &str, message: &str) -> ApiError {
    ApiError::new(
        status,
        ErrorCode::PasskeyRejected,
        format!("the passkey response was rejected: {message}"),
    )
    .with_details(json!({ "reason": reason }))
}

/// Checks the credential type and decodes `rawId` and `clientDataJSON`,
/// the parts both ceremonies' responses share.
fn decode_common(
    status: u16,
    kind: &str,
    raw_id: &str,
    client_data_json: &str,
) -> ApiResult<(Vec<u8>, Vec<u8>)> {
    if kind != "public-key" {
        return Err(rejected_because(
            status,
            "credential_type",
            "the credential type must be public-key",
        ));
    }
    Ok((
        unb64("credential.rawId", raw_id)?,
        unb64("credential.response.clientDataJSON", client_data_json)?,
    ))
}

fn challenge_invalid() -> ApiError {
    ApiError::new(
        400,
        ErrorCode::ChallengeInvalid,
        "the challenge is unknown, expired or used already; start the ceremony again",
    )
}

async fn new_challenge(
    ctx: &Ctx,
    purpose: &str,
    user_id: Option<&str>,
) -> ApiResult<(ChallengeId, String)> {
    let id = new_id(ChallengeId::from_random)?;
    let challenge = b64(&random::<32>()?);
    let ttl = secs_var(
        &ctx.env,
        "WEBAUTHN_CHALLENGE_TTL_SECONDS",
        CHALLENGE_TTL_SECS,
    );
    store::insert_challenge(
        &ctx.env,
        id.as_str(),
        purpose,
        user_id,
        &challenge,
        ctx.now,
        ctx.now + ttl,
    )
    .await?;
    Ok((id, challenge))
}

fn to_api(r: &PasskeyRow) -> ApiResult<Passkey> {
    Ok(Passkey {
        id: parse_id(&r.id, "passkey_id")?,
        name: r.name.clone(),
        algorithm: r.algorithm,
        backed_up: r.backed_up != 0,
        created_at: timestamp(r.created_at),
        last_used_at: r.last_used_at.map(timestamp),
    })
}

fn descriptor(credential_id: &str) -> serde_json::Value {
    json!({ "type": "public-key", "id": credential_id })
}

/// `POST /auth/passkeys/options`: creation options for the caller.
pub async fn register_options(ctx: &Ctx, caller: &Caller) -> ApiResult<PasskeyCeremony> {
    let rp = rp(ctx);
    let (challenge_id, challenge) = new_challenge(ctx, "register", Some(&caller.user.id)).await?;
    let existing = store::list(&ctx.env, &caller.user.id).await?;
    let ttl = secs_var(
        &ctx.env,
        "WEBAUTHN_CHALLENGE_TTL_SECONDS",
        CHALLENGE_TTL_SECS,
    );
    Ok(PasskeyCeremony {
        challenge_id,
        public_key: json!({
            "rp": { "id": rp.id, "name": rp.name },
            "user": {
                "id": b64(caller.user.id.as_bytes()),
                "name": caller.user.email,
                "displayName": caller.user.display_name,
            },
            "challenge": challenge,
            "pubKeyCredParams": [
                { "type": "public-key", "alg": webauthn::ALG_EDDSA },
                { "type": "public-key", "alg": webauthn::ALG_ES256 },
            ],
            "timeout": ttl,
            "attestation": "none",
            "authenticatorSelection": { "residentKey": "required", "userVerification": "required" },
            "excludeCredentials": existing.iter().map(|p| descriptor(&p.credential_id)).collect::<Vec<_>>(),
        }),
    })
}

/// `POST /auth/passkeys`: verifies the attestation and stores the passkey.
pub async fn register(
    ctx: &Ctx,
    caller: &Caller,
    req: RegisterPasskeyRequest,
) -> ApiResult<Passkey> {
    let name = TokenName::parse(req.name.as_deref().unwrap_or("passkey"))?;
    let challenge =
        store::consume_challenge(&ctx.env, req.challenge_id.as_str(), "register", ctx.now)
            .await?
            .filter(|c| c.user_id.as_deref() == Some(caller.user.id.as_str()))
            .ok_or_else(challenge_invalid)?;
    let cred = &req.credential;
    let (raw_id, client_data) = decode_common(
        400,
        &cred.kind,
        &cred.raw_id,
        &cred.response.client_data_json,
    )?;
    let attestation = unb64(
        "credential.response.attestationObject",
        &cred.response.attestation_object,
    )?;
    let expected = unb64("challenge", &challenge.challenge)?;
    let cfg = rp(ctx);
    let party = RelyingParty {
        id: &cfg.id,
        origins: &cfg.origins,
    };
    let verified =
        webauthn::verify_registration(&party, &expected, &client_data, &attestation, true)
            .map_err(|e| rejected(400, &e))?;
    if verified.credential_id != raw_id {
        return Err(rejected_because(
            400,
            "credential_id_mismatch",
            "rawId does not match the attested credential id",
        ));
    }
    let id = new_id(PasskeyId::from_random)?;
    ctx.note_target("passkey", id.as_str());
    let row = PasskeyRow {
        id: id.to_string(),
        user_id: caller.user.id.clone(),
        credential_id: b64(&verified.credential_id),
        public_key: b64(&verified.public_key_cose),
        algorithm: verified.algorithm,
        sign_count: i64::from(verified.sign_count),
        aaguid: hex::encode(verified.aaguid),
        name: name.as_str().to_owned(),
        backup_eligible: i64::from(verified.backup_eligible),
        backed_up: i64::from(verified.backed_up),
        created_at: ctx.now,
        last_used_at: None,
    };
    if let Err(e) = store::insert(&ctx.env, &row).await {
        return Err(if d1::is_unique_violation(&e, "credential_id") {
            ApiError::new(
                409,
                ErrorCode::PasskeyExists,
                "this passkey is registered already",
            )
        } else {
            e
        });
    }
    to_api(&row)
}

pub async fn list(ctx: &Ctx, caller: &Caller) -> ApiResult<Vec<Passkey>> {
    store::list(&ctx.env, &caller.user.id)
        .await?
        .iter()
        .map(to_api)
        .collect()
}

/// `DELETE /auth/passkeys/{id}`. The last passkey stays unless the user still
/// has an unused recovery code to get back in with.
pub async fn delete(ctx: &Ctx, caller: &Caller, raw_id: &str) -> ApiResult<()> {
    let id: PasskeyId = parse_id(raw_id, "passkey_id")?;
    ctx.note_target("passkey", id.as_str());
    let all = store::list(&ctx.env, &caller.user.id).await?;
    if !all.iter().any(|p| p.id == id.as_str()) {
        return Err(ApiError::not_found(
            ErrorCode::PasskeyNotFound,
            "passkey",
            id.as_str(),
        ));
    }
    if all.len() == 1 && !recovery::has_remaining(ctx, &caller.user.id).await? {
        return Err(ApiError::new(
            409,
            ErrorCode::LastSignInMethod,
            "this is your last passkey and you have no unused recovery codes; add another \
             passkey or generate recovery codes first",
        ));
    }
    store::delete(&ctx.env, &caller.user.id, id.as_str()).await?;
    Ok(())
}

/// `POST /auth/login/passkey/options`.
pub async fn login_options(
    ctx: &Ctx,
    req: PasskeyLoginOptionsRequest,
) -> ApiResult<PasskeyCeremony> {
    ratelimit::check(ctx, Bucket::Login, ctx.ip_key()).await?;
    let cfg = rp(ctx);
    let user = match req.email.as_deref() {
        Some(raw) => users::find_by_email(&ctx.env, Email::parse(raw)?.as_str()).await?,
        None => None,
    };
    let (challenge_id, challenge) =
        new_challenge(ctx, "login", user.as_ref().map(|u| u.id.as_str())).await?;
    let ttl = secs_var(
        &ctx.env,
        "WEBAUTHN_CHALLENGE_TTL_SECONDS",
        CHALLENGE_TTL_SECS,
    );
    Ok(PasskeyCeremony {
        challenge_id,
        public_key: json!({
            "rpId": cfg.id,
            "challenge": challenge,
            "timeout": ttl,
            "userVerification": "required",
            // Passkeys are discoverable: the authenticator offers them itself.
            // Listing an account's credentials here would tell anyone which
            // emails have passkeys; naming the email only binds the challenge.
            "allowCredentials": [],
        }),
    })
}

/// `POST /auth/login/passkey`: verifies the assertion and signs the user in.
pub async fn login(ctx: &Ctx, req: PasskeyLoginRequest) -> ApiResult<Issued> {
    ratelimit::check(ctx, Bucket::Login, ctx.ip_key()).await?;
    let challenge = store::consume_challenge(&ctx.env, req.challenge_id.as_str(), "login", ctx.now)
        .await?
        .ok_or_else(challenge_invalid)?;
    let cred = &req.credential;
    let (raw_id, client_data) = decode_common(
        401,
        &cred.kind,
        &cred.raw_id,
        &cred.response.client_data_json,
    )?;
    let auth_data = unb64(
        "credential.response.authenticatorData",
        &cred.response.authenticator_data,
    )?;
    let signature = unb64("credential.response.signature", &cred.response.signature)?;
    let passkey = store::find_by_credential(&ctx.env, &b64(&raw_id))
        .await?
        .ok_or_else(|| {
            rejected_because(401, "unknown_credential", "this passkey is not registered")
        })?;
    ctx.note_actor(&passkey.user_id, None);
    ctx.note_target("passkey", &passkey.id);
    if challenge
        .user_id
        .as_deref()
        .is_some_and(|u| u != passkey.user_id)
    {
        return Err(rejected_because(
            401,
            "credential_not_allowed",
            "this passkey belongs to another account",
        ));
    }
    if let Some(handle) = &cred.response.user_handle
        && unb64("credential.response.userHandle", handle)? != passkey.user_id.as_bytes()
    {
        return Err(rejected_because(
            401,
            "user_handle_mismatch",
            "the user handle does not match the passkey's account",
        ));
    }
    let expected = unb64("challenge", &challenge.challenge)?;
    let public_key = unb64("stored public key", &passkey.public_key)?;
    let cfg = rp(ctx);
    let party = RelyingParty {
        id: &cfg.id,
        origins: &cfg.origins,
    };
    let verified = webauthn::verify_assertion(
        &party,
        &expected,
        &client_data,
        &auth_data,
        &signature,
        &public_key,
        u32::try_from(passkey.sign_count).unwrap_or(u32::MAX),
        true,
    )
    .map_err(|e| rejected(401, &e))?;
    store::record_use(
        &ctx.env,
        &passkey.id,
        i64::from(verified.sign_count),
        verified.backed_up,
        ctx.now,
    )
    .await?;
    let user = users::find(&ctx.env, &passkey.user_id)
        .await?
        .ok_or_else(|| {
            rejected_because(401, "unknown_credential", "the passkey's account is gone")
        })?;
    signin::sign_in(ctx, &user, req.client, "passkey").await
}

//! Identity: refresh rotation and reuse detection, signed-in sessions,
//! logout, recovery codes, passkeys (software authenticator), browser
//! cookies with CSRF, device login (API and CLI), and the audit records all
//! of that leaves.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use burstflare_api::identity::{
    AcceptInviteRequest, AuditOutcome, ChangeRoleRequest, ClientKind, CreateInviteRequest,
    CreateWorkspaceRequest, DeviceCodeRequest, DeviceTokenRequest, PasskeyLoginOptionsRequest,
    RecoveryLoginRequest, RefreshRequest, RenameWorkspaceRequest, SessionVisibility, SignedIn,
    UpdateSettingsRequest,
};
use burstflare_api::routes::{ROUTES, RouteSpec, Scope};
use burstflare_api::sessions::CreateSessionRequest;
use burstflare_api::{
    CreateTokenRequest, ErrorCode, RegisterRequest, RegisterResponse, WorkspaceKind,
};
use burstflare_cli::client::Client;
use burstflare_domain::webauthn::soft::SoftAlg;
use burstflare_domain::{InstanceType, Role, SessionCommand};
use burstflare_e2e::passkey::{SoftAttestation, SoftPasskey};
use burstflare_e2e::stack::unique;
use burstflare_e2e::user::{User, ok, run, text};
use burstflare_e2e::{Stack, Tools};
use futures_util::FutureExt;

use crate::support::{expect_api_error, expect_envelope, fill_path};

/// The caller's audit records (personal workspace) for `action`.
async fn audit_of(
    client: &Client,
    action: &str,
) -> Result<Vec<burstflare_api::identity::AuditEvent>> {
    let me = client.me().await?;
    let personal = me
        .workspaces
        .iter()
        .find(|w| w.kind == burstflare_api::WorkspaceKind::Personal)
        .context("personal workspace")?;
    Ok(client
        .audit(personal.id.as_str(), &[("action", action)], None, Some(200))
        .await?
        .items)
}

/// Asserts the caller's audit log has an `action` record with `outcome`.
pub async fn expect_audit(client: &Client, action: &str, outcome: AuditOutcome) -> Result<()> {
    let records = audit_of(client, action).await?;
    ensure!(
        records.iter().any(|r| r.outcome == outcome),
        "no {outcome:?} audit record for {action}: {records:?}"
    );
    Ok(())
}

fn tokens_client(stack: &Stack, signed_in: &SignedIn) -> Result<Client> {
    let creds = signed_in.credentials.as_ref().context("tokens")?;
    Ok(stack
        .client()?
        .with_token(Some(creds.access_token.token.clone())))
}

async fn recovery_sign_in(stack: &Stack, email: &str, code: &str) -> Result<SignedIn> {
    Ok(stack
        .client()?
        .recovery_login(&RecoveryLoginRequest {
            email: email.to_owned(),
            code: code.to_owned(),
            client: ClientKind::Api,
        })
        .await?)
}

/// A personal access token for `client`'s user: survives session revocations.
async fn pat(client: &Client, stack: &Stack) -> Result<Client> {
    let issued = client
        .create_token(&CreateTokenRequest {
            name: format!("audit-{}", unique()),
            expires_in_days: Some(1),
        })
        .await?;
    Ok(stack.client()?.with_token(Some(issued.token)))
}

pub async fn refresh_rotates_and_reuse_revokes_the_family(stack: &Stack) -> Result<()> {
    let (reg, client) = stack.register("refresh").await?;
    let reader = pat(&client, stack).await?;
    let first = reg.credentials.clone().context("tokens")?;
    let anon = stack.client()?;
    let second = anon
        .refresh(&RefreshRequest {
            refresh_token: first.refresh_token.clone(),
        })
        .await?;
    ensure!(second.session_id == first.session_id, "same session");
    ensure!(second.refresh_token != first.refresh_token);
    ensure!(second.access_token.token != first.access_token.token);
    let a2 = anon.with_token(Some(second.access_token.token.clone()));
    ensure!(a2.me().await?.session.map(|s| s.id) == Some(reg.session.id.clone()));
    // Presenting the exchanged token again: the whole session is revoked.
    let err = expect_api_error(
        anon.refresh(&RefreshRequest {
            refresh_token: first.refresh_token.clone(),
        })
        .await,
        401,
        ErrorCode::RefreshTokenReused,
    )?;
    ensure!(err.message.contains("used already"), "{}", err.message);
    for token in [&first.access_token.token, &second.access_token.token] {
        expect_api_error(
            anon.with_token(Some(token.clone())).me().await,
            401,
            ErrorCode::InvalidToken,
        )?;
    }
    // The successor is dead too.
    expect_api_error(
        anon.refresh(&RefreshRequest {
            refresh_token: second.refresh_token.clone(),
        })
        .await,
        401,
        ErrorCode::InvalidToken,
    )?;
    // Malformed and wrong-kind refresh tokens.
    for bad in ["nope", first.access_token.token.as_str()] {
        expect_api_error(
            anon.refresh(&RefreshRequest {
                refresh_token: bad.to_owned(),
            })
            .await,
            401,
            ErrorCode::InvalidToken,
        )?;
    }
    // The personal token still works and reads the audit trail.
    expect_audit(&reader, "auth.refresh", AuditOutcome::Success).await?;
    let reuse = audit_of(&reader, "auth.refresh").await?;
    ensure!(
        reuse.iter().any(|r| r.outcome == AuditOutcome::Denied
            && r.error_code.as_deref() == Some("refresh_token_reused")
            && r.target_id.as_deref() == Some(reg.session.id.as_str())),
        "{reuse:?}"
    );
    // The refreshing client refreshes by itself after a 401 (its access
    // token is revoked along with the session here, so it fails cleanly).
    expect_api_error(client.me().await, 401, ErrorCode::InvalidToken)?;
    Ok(())
}

pub async fn sessions_list_revoke_logout_and_logout_all(stack: &Stack) -> Result<()> {
    let (reg, client) = stack.register("sessions").await?;
    let codes = client.generate_recovery_codes().await?.codes;
    let other = recovery_sign_in(stack, &reg.user.email, &codes[0]).await?;
    let other_client = tokens_client(stack, &other)?;
    let listed = client.auth_sessions(None).await?.items;
    ensure!(listed.len() == 2, "{listed:?}");
    let mine = listed
        .iter()
        .find(|s| s.current)
        .context("current session")?;
    ensure!(mine.id == reg.session.id && mine.method == "registration");
    let theirs = listed
        .iter()
        .find(|s| !s.current)
        .context("other session")?;
    ensure!(theirs.id == other.session.id && theirs.method == "recovery_code");
    ensure!(
        theirs.ip.is_some() && theirs.user_agent.is_some(),
        "{theirs:?}"
    );
    // Revoke the other one by id: its token stops working at once.
    let revoked = client
        .revoke_auth_session(other.session.id.as_str())
        .await?;
    ensure!(revoked.revoked_at.is_some());
    expect_api_error(other_client.me().await, 401, ErrorCode::InvalidToken)?;
    // A mutation with the revoked token is refused and audited against the user.
    let stale = other_client
        .create_token(&CreateTokenRequest {
            name: "after-revoke".into(),
            expires_in_days: None,
        })
        .await;
    expect_api_error(stale, 401, ErrorCode::InvalidToken)?;
    ensure!(client.auth_sessions(None).await?.items.len() == 1);
    // Someone else's session id is a 404.
    let (_, stranger) = stack.register("sessions-stranger").await?;
    expect_api_error(
        stranger.revoke_auth_session(reg.session.id.as_str()).await,
        404,
        ErrorCode::AuthSessionNotFound,
    )?;
    expect_api_error(
        client.revoke_auth_session("aus_nope").await,
        400,
        ErrorCode::InvalidField,
    )?;
    // Logout ends the current session only.
    let third = recovery_sign_in(stack, &reg.user.email, &codes[1]).await?;
    let third_client = tokens_client(stack, &third)?;
    let reader = pat(&third_client, stack).await?;
    client.logout().await?;
    expect_api_error(client.me().await, 401, ErrorCode::InvalidToken)?;
    third_client.me().await?;
    // Logout-all ends every session and every token, personal ones included.
    let fourth = recovery_sign_in(stack, &reg.user.email, &codes[2]).await?;
    expect_audit(&reader, "auth.logout", AuditOutcome::Success).await?;
    expect_audit(&reader, "auth.session_revoke", AuditOutcome::Success).await?;
    expect_audit(&reader, "auth.recovery_login", AuditOutcome::Success).await?;
    let refused = audit_of(&reader, "token.create").await?;
    ensure!(
        refused.iter().any(|r| r.outcome == AuditOutcome::Denied
            && r.error_code.as_deref() == Some("invalid_token")),
        "{refused:?}"
    );
    let result = third_client.logout_all().await?;
    ensure!(result.sessions_revoked == 2, "{result:?}");
    ensure!(result.tokens_revoked >= 3, "{result:?}");
    for c in [&third_client, &reader, &tokens_client(stack, &fourth)?] {
        expect_api_error(c.me().await, 401, ErrorCode::InvalidToken)?;
    }
    let back = recovery_sign_in(stack, &reg.user.email, &codes[3]).await?;
    let back = tokens_client(stack, &back)?;
    expect_audit(&back, "auth.logout_all", AuditOutcome::Success).await?;
    Ok(())
}

pub async fn recovery_codes_are_one_time_and_regenerate(stack: &Stack) -> Result<()> {
    let (reg, client) = stack.register("recovery").await?;
    let status = client.recovery_codes().await?;
    ensure!(status.total == 0 && status.remaining == 0 && status.generated_at.is_none());
    let set = client.generate_recovery_codes().await?;
    ensure!(set.codes.len() == 10);
    ensure!(client.recovery_codes().await?.remaining == 10);
    // Only hashes are stored.
    let dump = stack.d1_execute(&format!(
        "SELECT * FROM recovery_codes WHERE user_id = '{}'",
        reg.user.id
    ))?;
    ensure!(
        !set.codes.iter().any(|c| dump.contains(c)),
        "plaintext code stored"
    );
    // Typed loosely (upper case, no dashes), a code signs in once.
    let typed = set.codes[0].replace('-', "").to_uppercase();
    let signed = recovery_sign_in(stack, &reg.user.email.to_uppercase(), &typed).await?;
    ensure!(signed.session.method == "recovery_code");
    tokens_client(stack, &signed)?.me().await?;
    let again = stack
        .client()?
        .recovery_login(&RecoveryLoginRequest {
            email: reg.user.email.clone(),
            code: set.codes[0].clone(),
            client: ClientKind::Api,
        })
        .await;
    expect_api_error(again, 401, ErrorCode::InvalidRecoveryCode)?;
    ensure!(client.recovery_codes().await?.remaining == 9);
    // A wrong email, a malformed code and an unknown account all look the same.
    for (email, code) in [
        (
            format!("nobody-{}@example.test", unique()),
            set.codes[1].clone(),
        ),
        (reg.user.email.clone(), "not-a-code".to_owned()),
        (reg.user.email.clone(), "00000-00000-00000".to_owned()),
    ] {
        let r = stack
            .client()?
            .recovery_login(&RecoveryLoginRequest {
                email,
                code,
                client: ClientKind::Api,
            })
            .await;
        expect_api_error(r, 401, ErrorCode::InvalidRecoveryCode)?;
    }
    // Regenerating invalidates the old set.
    let fresh = client.generate_recovery_codes().await?;
    ensure!(fresh.codes != set.codes);
    let old = stack
        .client()?
        .recovery_login(&RecoveryLoginRequest {
            email: reg.user.email.clone(),
            code: set.codes[1].clone(),
            client: ClientKind::Api,
        })
        .await;
    expect_api_error(old, 401, ErrorCode::InvalidRecoveryCode)?;
    ensure!(client.recovery_codes().await?.remaining == 10);
    recovery_sign_in(stack, &reg.user.email, &fresh.codes[9]).await?;
    expect_audit(&client, "recovery_codes.generate", AuditOutcome::Success).await?;
    expect_audit(&client, "auth.recovery_login", AuditOutcome::Denied).await?;
    Ok(())
}

fn origin(stack: &Stack) -> String {
    format!("http://localhost:{}", stack.port)
}

pub async fn passkeys_register_sign_in_and_reject_tampering(stack: &Stack) -> Result<()> {
    let (reg, client) = stack.register("passkeys").await?;
    let anon = stack.client()?;
    let mut es = SoftPasskey::new(SoftAlg::Es256, 11, &origin(stack));
    let mut ed = SoftPasskey::new(SoftAlg::EdDsa, 12, &origin(stack));
    // Registration: ES256 with packed self-attestation, EdDSA with none.
    let c = client.passkey_register_options().await?;
    ensure!(c.public_key["rp"]["id"] == "localhost", "{}", c.public_key);
    let es_key = client
        .register_passkey(&es.create(&c, "laptop", |o| {
            o.attestation = SoftAttestation::PackedSelf;
        })?)
        .await?;
    ensure!(es_key.algorithm == -7 && es_key.name == "laptop");
    let c = client.passkey_register_options().await?;
    let excluded = c.public_key["excludeCredentials"].as_array().map(Vec::len);
    ensure!(excluded == Some(1), "{}", c.public_key);
    let ed_key = client
        .register_passkey(&ed.create(&c, "phone", |_| {})?)
        .await?;
    ensure!(ed_key.algorithm == -8);
    ensure!(client.passkeys().await?.len() == 2);
    // The same credential twice, a replayed registration challenge.
    let c = client.passkey_register_options().await?;
    let dup = es.create(&c, "again", |_| {})?;
    expect_api_error(
        client.register_passkey(&dup).await,
        409,
        ErrorCode::PasskeyExists,
    )?;
    expect_api_error(
        client.register_passkey(&dup).await,
        400,
        ErrorCode::ChallengeInvalid,
    )?;
    // Registration rejections, each with its reason.
    let mut rogue = SoftPasskey::new(SoftAlg::Es256, 13, &origin(stack));
    for (reason, tweak) in [
        (
            "origin_not_allowed",
            Box::new(|o: &mut burstflare_domain::webauthn::soft::CreateOptions| {
                o.origin = "https://evil.example".into()
            }) as Box<dyn FnOnce(&mut _) + Send>,
        ),
        (
            "rp_id_mismatch",
            Box::new(|o: &mut burstflare_domain::webauthn::soft::CreateOptions| {
                o.rp_id = "evil.example".into()
            }),
        ),
        (
            "user_not_verified",
            Box::new(|o: &mut burstflare_domain::webauthn::soft::CreateOptions| {
                o.user_verified = false
            }),
        ),
        (
            "invalid_attestation_statement",
            Box::new(|o: &mut burstflare_domain::webauthn::soft::CreateOptions| {
                o.attestation = SoftAttestation::PackedSelf;
                o.tamper_signature = true;
            }),
        ),
        (
            "wrong_ceremony_type",
            Box::new(|o: &mut burstflare_domain::webauthn::soft::CreateOptions| {
                o.ceremony_type = Some("webauthn.get".into())
            }),
        ),
    ] {
        let c = client.passkey_register_options().await?;
        let req = rogue.create(&c, "rogue", tweak)?;
        let err = expect_api_error(
            client.register_passkey(&req).await,
            400,
            ErrorCode::PasskeyRejected,
        )?;
        ensure!(err.details["reason"] == reason, "want {reason}: {err:?}");
    }
    // Sign in with each passkey, with and without naming the account.
    for (key, email) in [(&mut es, Some(reg.user.email.clone())), (&mut ed, None)] {
        let c = anon
            .passkey_login_options(&PasskeyLoginOptionsRequest {
                email: email.clone(),
            })
            .await?;
        // The options never list an account's passkeys (no enumeration).
        ensure!(
            c.public_key["allowCredentials"] == serde_json::json!([]),
            "{}",
            c.public_key
        );
        let signed = anon
            .passkey_login(&key.get(&c, ClientKind::Api, |_| {})?)
            .await?;
        ensure!(signed.user.id == reg.user.id && signed.session.method == "passkey");
        tokens_client(stack, &signed)?.me().await?;
    }
    // Assertion rejections.
    type Tweak = Box<dyn FnOnce(&mut burstflare_domain::webauthn::soft::GetOptions) + Send>;
    let cases: Vec<(&str, Tweak)> = vec![
        ("invalid_signature", Box::new(|o| o.tamper_signature = true)),
        (
            "origin_not_allowed",
            Box::new(|o| o.origin = "http://localhost:1".into()),
        ),
        (
            "rp_id_mismatch",
            Box::new(|o| o.rp_id = "example.com".into()),
        ),
        (
            "challenge_mismatch",
            Box::new(|o| o.challenge = vec![7; 32]),
        ),
        ("user_not_verified", Box::new(|o| o.user_verified = false)),
        ("user_not_present", Box::new(|o| o.user_present = false)),
        (
            "sign_count_regression",
            Box::new(|o| o.sign_count = Some(1)),
        ),
        (
            "wrong_ceremony_type",
            Box::new(|o| o.ceremony_type = Some("webauthn.create".into())),
        ),
    ];
    for (reason, tweak) in cases {
        let c = anon
            .passkey_login_options(&PasskeyLoginOptionsRequest::default())
            .await?;
        let req = es.get(&c, ClientKind::Api, tweak)?;
        let err = expect_api_error(
            anon.passkey_login(&req).await,
            401,
            ErrorCode::PasskeyRejected,
        )?;
        ensure!(err.details["reason"] == reason, "want {reason}: {err:?}");
        // Each challenge is spent by its first use, failed or not: a replay is refused.
        expect_api_error(
            anon.passkey_login(&req).await,
            400,
            ErrorCode::ChallengeInvalid,
        )?;
    }
    // A replayed successful assertion is refused too.
    let c = anon
        .passkey_login_options(&PasskeyLoginOptionsRequest::default())
        .await?;
    let good = es.get(&c, ClientKind::Api, |_| {})?;
    anon.passkey_login(&good).await?;
    expect_api_error(
        anon.passkey_login(&good).await,
        400,
        ErrorCode::ChallengeInvalid,
    )?;
    // Options for another account do not accept this passkey.
    let (other_reg, other) = stack.register("passkeys-other").await?;
    // Someone else's passkey is a 404 to them, and stays.
    expect_api_error(
        other.delete_passkey(es_key.id.as_str()).await,
        404,
        ErrorCode::PasskeyNotFound,
    )?;
    ensure!(other.passkeys().await?.is_empty());
    let c = anon
        .passkey_login_options(&PasskeyLoginOptionsRequest {
            email: Some(other_reg.user.email.clone()),
        })
        .await?;
    let err = expect_api_error(
        anon.passkey_login(&es.get(&c, ClientKind::Api, |_| {})?)
            .await,
        401,
        ErrorCode::PasskeyRejected,
    )?;
    ensure!(err.details["reason"] == "credential_not_allowed", "{err:?}");
    // An unregistered passkey.
    let c = anon
        .passkey_login_options(&PasskeyLoginOptionsRequest::default())
        .await?;
    let err = expect_api_error(
        anon.passkey_login(&rogue.get(&c, ClientKind::Api, |_| {})?)
            .await,
        401,
        ErrorCode::PasskeyRejected,
    )?;
    ensure!(err.details["reason"] == "unknown_credential", "{err:?}");
    // Delete: fine while another passkey remains; the last one needs recovery codes.
    client.delete_passkey(ed_key.id.as_str()).await?;
    expect_api_error(
        client.delete_passkey(es_key.id.as_str()).await,
        409,
        ErrorCode::LastSignInMethod,
    )?;
    client.generate_recovery_codes().await?;
    client.delete_passkey(es_key.id.as_str()).await?;
    ensure!(client.passkeys().await?.is_empty());
    expect_api_error(
        client.delete_passkey(es_key.id.as_str()).await,
        404,
        ErrorCode::PasskeyNotFound,
    )?;
    expect_audit(&client, "passkey.register", AuditOutcome::Success).await?;
    expect_audit(&client, "passkey.register", AuditOutcome::Failed).await?;
    expect_audit(&client, "auth.passkey_login", AuditOutcome::Success).await?;
    expect_audit(&client, "auth.passkey_login", AuditOutcome::Denied).await?;
    expect_audit(&client, "passkey.delete", AuditOutcome::Success).await?;
    Ok(())
}

/// `Set-Cookie` headers of a response, by cookie name.
fn set_cookies(resp: &reqwest::Response) -> Vec<(String, String)> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (name, _) = v.split_once('=')?;
            Some((name.to_owned(), v.to_owned()))
        })
        .collect()
}

fn cookie_value(header: &str) -> String {
    header
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default()
}

pub async fn browser_cookie_and_csrf(stack: &Stack) -> Result<()> {
    let http = stack.http();
    let resp = http
        .post(stack.api("/auth/register"))
        .json(&RegisterRequest {
            email: format!("browser-{}@example.test", unique()),
            display_name: "Browser".into(),
            turnstile_token: None,
            client: ClientKind::Browser,
        })
        .send()
        .await?;
    ensure!(resp.status() == 201, "{}", resp.status());
    let cookies = set_cookies(&resp);
    let body: RegisterResponse = resp.json().await?;
    ensure!(body.credentials.is_none(), "no bearer tokens for browsers");
    let csrf = body.csrf_token.clone().context("csrf token")?;
    let session = cookies
        .iter()
        .find(|(n, _)| n == "bf_session")
        .map(|(_, v)| v.clone())
        .context("session cookie")?;
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        ensure!(session.contains(attr), "{attr} missing: {session}");
    }
    let csrf_cookie = cookies
        .iter()
        .find(|(n, _)| n == "bf_csrf")
        .map(|(_, v)| v.clone())
        .context("csrf cookie")?;
    ensure!(!csrf_cookie.contains("HttpOnly") && cookie_value(&csrf_cookie) == csrf);
    let cookie = format!("bf_session={}", cookie_value(&session));
    // Reads need only the cookie.
    let me: burstflare_api::Me = http
        .get(stack.api("/me"))
        .header("cookie", &cookie)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    ensure!(me.user.id == body.user.id && me.token.is_none());
    ensure!(me.session.map(|s| s.client) == Some(ClientKind::Browser));
    // A request from a foreign origin (a cross-site fetch or WebSocket)
    // cannot use the cookie; the web app's own origin can.
    let resp = http
        .get(stack.api("/me"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await?;
    expect_envelope(resp, 403, ErrorCode::CsrfFailed).await?;
    let resp = http
        .get(stack.api("/me"))
        .header("cookie", &cookie)
        .header("origin", origin(stack))
        .send()
        .await?;
    ensure!(resp.status() == 200, "{}", resp.status());
    // Mutations need the matching CSRF token as well.
    let create = |csrf: Option<&str>| {
        let mut req = http
            .post(stack.api("/auth/tokens"))
            .header("cookie", &cookie)
            .json(&CreateTokenRequest {
                name: "from-browser".into(),
                expires_in_days: None,
            });
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        req.send()
    };
    expect_envelope(create(None).await?, 403, ErrorCode::CsrfFailed).await?;
    expect_envelope(
        create(Some("0".repeat(64).as_str())).await?,
        403,
        ErrorCode::CsrfFailed,
    )
    .await?;
    ensure!(create(Some(&csrf)).await?.status() == 201);
    let resp = http
        .delete(stack.api("/ssh-keys/key_00000000000000000000000000"))
        .header("cookie", &cookie)
        .send()
        .await?;
    expect_envelope(resp, 403, ErrorCode::CsrfFailed).await?;
    // A bearer token is never needed: the cookie is enough for everything.
    let ws = http
        .post(stack.api("/workspaces"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&CreateWorkspaceRequest {
            name: "Cookie team".into(),
        })
        .send()
        .await?;
    ensure!(ws.status() == 201, "{}", ws.status());
    // The denied attempts are audited against the user.
    let audit: burstflare_api::Page<burstflare_api::identity::AuditEvent> = http
        .get(stack.api(&format!(
            "/workspaces/{}/audit?action=token.create",
            body.workspace.id
        )))
        .header("cookie", &cookie)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let denied = audit
        .items
        .iter()
        .filter(|r| r.error_code.as_deref() == Some("csrf_failed"))
        .count();
    ensure!(denied == 2, "{:?}", audit.items);
    ensure!(
        audit
            .items
            .iter()
            .any(|r| r.outcome == AuditOutcome::Success)
    );
    // Logout clears the cookies and ends the session.
    let resp = http
        .post(stack.api("/auth/logout"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await?;
    ensure!(resp.status() == 204, "{}", resp.status());
    let cleared = set_cookies(&resp);
    ensure!(
        cleared
            .iter()
            .any(|(n, v)| n == "bf_session" && v.contains("Max-Age=0")),
        "{cleared:?}"
    );
    let resp = http
        .get(stack.api("/me"))
        .header("cookie", &cookie)
        .send()
        .await?;
    expect_envelope(resp, 401, ErrorCode::InvalidToken).await?;
    // Passkey sign-in for a browser sets a cookie too.
    let (reg, client) = stack.register("browser-passkey").await?;
    let mut key = SoftPasskey::new(SoftAlg::EdDsa, 21, &origin(stack));
    let c = client.passkey_register_options().await?;
    client
        .register_passkey(&key.create(&c, "browser", |_| {})?)
        .await?;
    let c = stack
        .client()?
        .passkey_login_options(&PasskeyLoginOptionsRequest::default())
        .await?;
    let resp = http
        .post(stack.api("/auth/login/passkey"))
        .json(&key.get(&c, ClientKind::Browser, |_| {})?)
        .send()
        .await?;
    ensure!(resp.status() == 200, "{}", resp.status());
    ensure!(set_cookies(&resp).iter().any(|(n, _)| n == "bf_session"));
    let signed: SignedIn = resp.json().await?;
    ensure!(
        signed.user.id == reg.user.id
            && signed.credentials.is_none()
            && signed.csrf_token.is_some()
    );
    Ok(())
}

pub async fn device_authorization_api_rules(stack: &Stack) -> Result<()> {
    let (_, approver) = stack.register("device-approver").await?;
    let anon = stack.client()?;
    let code = anon
        .device_code(&DeviceCodeRequest {
            client_name: Some("test device".into()),
        })
        .await?;
    ensure!(code.device_code.starts_with("bf_dc_"));
    ensure!(code.user_code.len() == 9 && code.user_code.as_bytes()[4] == b'-');
    ensure!(code.verification_uri.ends_with("/device") && code.interval == 1);
    ensure!(code.verification_uri_complete.contains(&code.user_code));
    let req = DeviceTokenRequest {
        device_code: code.device_code.clone(),
    };
    let poll = || anon.device_token(&req);
    expect_api_error(poll().await, 400, ErrorCode::AuthorizationPending)?;
    // Polling faster than the interval: slow down, and the interval grows.
    let err = expect_api_error(poll().await, 400, ErrorCode::SlowDown)?;
    ensure!(err.details["interval"] == 2, "{err:?}");
    // The approver sees the request (any case, without the dash).
    let shown = approver
        .device_request(&code.user_code.replace('-', "").to_lowercase())
        .await?;
    ensure!(shown.client_name == "test device" && shown.status == "pending");
    ensure!(
        shown.ip.is_some() && shown.user_agent.is_some(),
        "{shown:?}"
    );
    let decided = approver.decide_device(&code.user_code, true).await?;
    ensure!(decided.status == "approved");
    expect_api_error(
        approver.decide_device(&code.user_code, false).await,
        409,
        ErrorCode::DeviceRequestDecided,
    )?;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let signed = poll().await?;
    ensure!(signed.session.client == ClientKind::Cli && signed.session.method == "device");
    tokens_client(stack, &signed)?.me().await?;
    // A device code is good for one exchange.
    expect_api_error(poll().await, 400, ErrorCode::InvalidGrant)?;
    // Denied.
    let denied = anon.device_code(&DeviceCodeRequest::default()).await?;
    approver.decide_device(&denied.user_code, false).await?;
    let r = anon
        .device_token(&DeviceTokenRequest {
            device_code: denied.device_code.clone(),
        })
        .await;
    expect_api_error(r, 400, ErrorCode::AccessDenied)?;
    // Unknown codes.
    expect_api_error(
        approver.device_request("BCDF-GHJK").await,
        404,
        ErrorCode::DeviceRequestNotFound,
    )?;
    expect_api_error(
        anon.device_token(&DeviceTokenRequest {
            device_code: "bf_dc_0000000000000000000000000000000000000000000000000000".into(),
        })
        .await,
        400,
        ErrorCode::InvalidGrant,
    )?;
    expect_audit(&approver, "auth.device_approve", AuditOutcome::Success).await?;
    expect_audit(&approver, "auth.device_deny", AuditOutcome::Success).await?;
    expect_audit(&approver, "auth.device_deny", AuditOutcome::Failed).await?;
    Ok(())
}

type RestOfStderr = std::thread::JoinHandle<Vec<String>>;

/// Runs `burstflare login` in the background; returns the user code it
/// prints, the process, and the rest of its stderr (once it exits).
pub fn start_cli_login(
    mut cmd: std::process::Command,
) -> Result<(String, std::process::Child, RestOfStderr)> {
    let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    while let Some(line) = lines.next().transpose()? {
        if let Some(code) = line.strip_prefix("and enter the code ") {
            let code = code.trim().to_owned();
            // Keep draining stderr so the CLI never blocks on a full pipe.
            let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect());
            return Ok((code, child, rest));
        }
        seen.push(line);
    }
    let _ = child.kill();
    bail!("no user code in `burstflare login` output: {seen:?}")
}

pub async fn cli_login_logout_and_sessions(stack: &Stack) -> Result<()> {
    // The approving user is signed in already (their browser, here the API).
    let approver = User::new(stack, "cli-login").await?;
    // A second machine: an empty config directory.
    let laptop = User::new(stack, "cli-login-laptop").await?;
    std::fs::remove_file(laptop.config_dir().join("credentials.toml"))?;
    let login = laptop.cli(&["login"]);
    let (code, child, _) = tokio::task::spawn_blocking(move || start_cli_login(login)).await??;
    let shown = approver.client.device_request(&code).await?;
    ensure!(
        shown.client_name.starts_with("burstflare CLI on "),
        "{shown:?}"
    );
    approver.client.decide_device(&code, true).await?;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    ensure!(out.status.success(), "login failed: {}", text(&out.stdout));
    ensure!(
        text(&out.stdout).trim() == approver.user_id,
        "{}",
        text(&out.stdout)
    );
    // Credentials are private and hold a refreshable session.
    let creds = laptop.config_dir().join("credentials.toml");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&creds)?.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "credentials mode {mode:o}");
    ensure!(std::fs::read_to_string(&creds)?.contains("bf_rt_"));
    let who = text(&ok(run(laptop.cli(&["whoami"])).await?)?.stdout);
    ensure!(
        who.contains(&approver.user_id) || who.contains("cli-login"),
        "{who}"
    );
    ensure!(who.contains("cli, signed in by device"), "{who}");
    // `auth sessions list` shows both the approver's and the laptop's sessions.
    let list: Vec<burstflare_api::identity::AuthSession> = serde_json::from_slice(
        &ok(run(laptop.cli(&["auth", "sessions", "list", "--json"])).await?)?.stdout,
    )?;
    ensure!(list.len() == 2, "{list:?}");
    let laptop_session = list.iter().find(|s| s.current).context("current")?;
    ensure!(laptop_session.client == ClientKind::Cli);
    // Revoke the approver's original session from the laptop.
    let other = list.iter().find(|s| !s.current).context("other")?;
    ok(run(laptop.cli(&["auth", "sessions", "revoke", other.id.as_str()])).await?)?;
    expect_api_error(approver.client.me().await, 401, ErrorCode::InvalidToken)?;
    // Logout ends the laptop session and removes the credentials.
    ok(run(laptop.cli(&["logout"])).await?)?;
    ensure!(!std::fs::read_to_string(&creds)?.contains("bf_"));
    let after = run(laptop.cli(&["whoami"])).await?;
    ensure!(!after.status.success() && text(&after.stderr).contains("burstflare login"));
    // A denied login fails with a clear message.
    let login = laptop.cli(&["login"]);
    let (code, child, _) = tokio::task::spawn_blocking(move || start_cli_login(login)).await??;
    let (_, denier) = stack.register("cli-denier").await?;
    denier.decide_device(&code, false).await?;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    ensure!(out.status.code() == Some(1), "{:?}", out.status);
    // `auth logout-all` from the CLI.
    let fresh = User::new(stack, "cli-logout-all").await?;
    ok(run(fresh.cli(&["auth", "token", "create", "--name", "extra"])).await?)?;
    let out = text(&ok(run(fresh.cli(&["auth", "logout-all"])).await?)?.stderr);
    ensure!(out.contains("1 session(s) and 2 token(s)"), "{out}");
    expect_api_error(fresh.client.me().await, 401, ErrorCode::InvalidToken)?;
    Ok(())
}

/// A user signed in on the stack: their id, email and client.
struct Person {
    id: String,
    email: String,
    client: Client,
}

async fn person(stack: &Stack, name: &str) -> Result<Person> {
    let (reg, client) = stack.register(name).await?;
    Ok(Person {
        id: reg.user.id.to_string(),
        email: reg.user.email,
        client,
    })
}

/// `owner` invites `who` with `role`; `who` accepts.
async fn join(owner: &Client, ws: &str, who: &Person, role: Role) -> Result<()> {
    let invite = owner
        .invite(
            ws,
            &CreateInviteRequest {
                email: who.email.clone(),
                role,
            },
        )
        .await?;
    ensure!(invite.code.starts_with("bf_inv_") && invite.invite.status == "pending");
    let joined = who
        .client
        .accept_invite(&AcceptInviteRequest { code: invite.code })
        .await?;
    ensure!(joined.role == role && joined.id.as_str() == ws);
    Ok(())
}

pub async fn workspaces_roles_invites_and_rules(stack: &Stack) -> Result<()> {
    let owner = person(stack, "ws-owner").await?;
    let admin = person(stack, "ws-admin").await?;
    let member = person(stack, "ws-member").await?;
    let viewer = person(stack, "ws-viewer").await?;
    let outsider = person(stack, "ws-outsider").await?;
    let ws = owner
        .client
        .create_workspace(&CreateWorkspaceRequest {
            name: "Team Rocket".into(),
        })
        .await?;
    ensure!(ws.kind == WorkspaceKind::Team && ws.role == Role::Owner && ws.member_count == 1);
    ensure!(ws.slug.starts_with("team-rocket-"), "{}", ws.slug);
    let id = ws.id.as_str();
    join(&owner.client, id, &admin, Role::Admin).await?;
    join(&owner.client, id, &member, Role::Member).await?;
    join(&admin.client, id, &viewer, Role::Viewer).await?;
    let members = member.client.members(id).await?;
    ensure!(members.len() == 4, "{members:?}");

    // Invites: wrong email, reuse, revoke, duplicates, admins cannot invite owners.
    let inv = owner
        .client
        .invite(
            id,
            &CreateInviteRequest {
                email: outsider.email.clone(),
                role: Role::Member,
            },
        )
        .await?;
    let code = AcceptInviteRequest {
        code: inv.code.clone(),
    };
    let stranger = person(stack, "ws-stranger").await?;
    expect_api_error(
        stranger.client.accept_invite(&code).await,
        403,
        ErrorCode::InviteEmailMismatch,
    )?;
    // Two invites for one person: the second finds them a member already.
    let twice = |who: &Person| CreateInviteRequest {
        email: who.email.clone(),
        role: Role::Viewer,
    };
    let first = owner.client.invite(id, &twice(&stranger)).await?;
    let second = owner.client.invite(id, &twice(&stranger)).await?;
    stranger
        .client
        .accept_invite(&AcceptInviteRequest {
            code: first.code.clone(),
        })
        .await?;
    expect_api_error(
        stranger
            .client
            .accept_invite(&AcceptInviteRequest { code: second.code })
            .await,
        409,
        ErrorCode::AlreadyMember,
    )?;
    let err = expect_api_error(
        stranger
            .client
            .accept_invite(&AcceptInviteRequest { code: first.code })
            .await,
        409,
        ErrorCode::InviteUnavailable,
    )?;
    ensure!(err.details["status"] == "accepted", "{err:?}");
    stranger.client.leave_workspace(id).await?;
    let revoked = owner
        .client
        .revoke_invite(id, inv.invite.id.as_str())
        .await?;
    ensure!(revoked.status == "revoked");
    let err = expect_api_error(
        outsider.client.accept_invite(&code).await,
        409,
        ErrorCode::InviteUnavailable,
    )?;
    ensure!(err.details["status"] == "revoked");
    expect_api_error(
        outsider
            .client
            .accept_invite(&AcceptInviteRequest {
                code: "bf_inv_0000000000000000000000000000000000000000000000000000".into(),
            })
            .await,
        404,
        ErrorCode::InviteNotFound,
    )?;
    expect_api_error(
        owner
            .client
            .invite(
                id,
                &CreateInviteRequest {
                    email: member.email.clone(),
                    role: Role::Viewer,
                },
            )
            .await,
        409,
        ErrorCode::AlreadyMember,
    )?;
    expect_api_error(
        admin
            .client
            .invite(
                id,
                &CreateInviteRequest {
                    email: outsider.email.clone(),
                    role: Role::Owner,
                },
            )
            .await,
        403,
        ErrorCode::Forbidden,
    )?;
    for c in [&member.client, &viewer.client] {
        expect_api_error(
            c.invite(
                id,
                &CreateInviteRequest {
                    email: outsider.email.clone(),
                    role: Role::Viewer,
                },
            )
            .await,
            403,
            ErrorCode::Forbidden,
        )?;
        expect_api_error(c.invites(id).await, 403, ErrorCode::Forbidden)?;
    }
    ensure!(admin.client.invites(id).await?.items.len() == 6);

    // Viewers read and never mutate; members cannot administer.
    let rename = RenameWorkspaceRequest {
        name: "Renamed".into(),
    };
    let err = expect_api_error(
        viewer.client.rename_workspace(id, &rename).await,
        403,
        ErrorCode::Forbidden,
    )?;
    ensure!(err.details["reason"] == "readonly", "{err:?}");
    expect_api_error(
        member.client.rename_workspace(id, &rename).await,
        403,
        ErrorCode::Forbidden,
    )?;
    ensure!(admin.client.rename_workspace(id, &rename).await?.name == "Renamed");
    expect_api_error(
        viewer
            .client
            .create_session(&CreateSessionRequest {
                name: "viewer-s".into(),
                workspace_id: Some(ws.id.clone()),
                ..Default::default()
            })
            .await,
        403,
        ErrorCode::Forbidden,
    )?;
    expect_api_error(
        member
            .client
            .update_workspace_settings(id, &UpdateSettingsRequest::default())
            .await,
        403,
        ErrorCode::Forbidden,
    )?;
    expect_api_error(
        viewer.client.audit(id, &[], None, None).await,
        403,
        ErrorCode::Forbidden,
    )?;

    // Sessions: members manage their own; admins manage everyone's.
    let create = |c: &Client, name: &str| {
        let req = CreateSessionRequest {
            name: format!("{name}-{}", unique().replace('-', "")),
            workspace_id: Some(ws.id.clone()),
            instance_type: None,
            ..Default::default()
        };
        let c = c.clone();
        async move { c.create_session(&req).await }
    };
    // The workspace's default instance type applies to new sessions.
    let updated = admin
        .client
        .update_workspace_settings(
            id,
            &UpdateSettingsRequest {
                default_instance_type: Some(InstanceType::Medium),
                ..Default::default()
            },
        )
        .await?;
    ensure!(updated.settings.default_instance_type == InstanceType::Medium);
    let ms = create(&member.client, "member").await?;
    ensure!(
        ms.spec.instance_type == InstanceType::Medium,
        "{:?}",
        ms.spec
    );
    let admin_s = create(&admin.client, "admin").await?;
    // Others' sessions are invisible to members and viewers (404), visible to admins.
    expect_api_error(
        viewer.client.get_session(ms.id.as_str()).await,
        404,
        ErrorCode::SessionNotFound,
    )?;
    expect_api_error(
        member.client.get_session(admin_s.id.as_str()).await,
        404,
        ErrorCode::SessionNotFound,
    )?;
    owner.client.get_session(ms.id.as_str()).await?;
    admin.client.get_session(ms.id.as_str()).await?;
    // Listing a workspace: admins see all, members their own.
    let all = admin.client.list_sessions_in(id).await?;
    ensure!(all.len() == 2, "{all:?}");
    ensure!(member.client.list_sessions_in(id).await?.len() == 1);
    // Shared visibility: members see (not operate) everyone's sessions.
    admin
        .client
        .update_workspace_settings(
            id,
            &UpdateSettingsRequest {
                session_visibility: Some(SessionVisibility::Workspace),
                ..Default::default()
            },
        )
        .await?;
    member.client.get_session(admin_s.id.as_str()).await?;
    viewer.client.get_session(ms.id.as_str()).await?;
    ensure!(member.client.list_sessions_in(id).await?.len() == 2);
    expect_api_error(
        member
            .client
            .session_command(admin_s.id.as_str(), SessionCommand::Delete)
            .await,
        403,
        ErrorCode::Forbidden,
    )?;
    expect_api_error(
        viewer
            .client
            .session_command(ms.id.as_str(), SessionCommand::Stop)
            .await,
        403,
        ErrorCode::Forbidden,
    )?;
    // The admin deletes the member's session.
    admin
        .client
        .session_command(ms.id.as_str(), SessionCommand::Delete)
        .await?;
    member
        .client
        .session_command(admin_s.id.as_str(), SessionCommand::Delete)
        .await
        .err()
        .context("members cannot delete others' sessions")?;
    owner
        .client
        .session_command(admin_s.id.as_str(), SessionCommand::Delete)
        .await?;
    // Outsiders see nothing.
    expect_api_error(
        outsider.client.workspace(id).await,
        404,
        ErrorCode::WorkspaceNotFound,
    )?;
    expect_api_error(
        outsider.client.list_sessions_in(id).await,
        404,
        ErrorCode::WorkspaceNotFound,
    )?;

    // Roles: only owners grant owner; the last owner stays.
    let err = expect_api_error(
        admin
            .client
            .change_role(id, &member.id, &ChangeRoleRequest { role: Role::Owner })
            .await,
        403,
        ErrorCode::Forbidden,
    )?;
    ensure!(err.details["reason"] == "ownersonly", "{err:?}");
    expect_api_error(
        owner
            .client
            .change_role(id, &owner.id, &ChangeRoleRequest { role: Role::Admin })
            .await,
        409,
        ErrorCode::LastOwner,
    )?;
    expect_api_error(
        owner.client.leave_workspace(id).await,
        409,
        ErrorCode::LastOwner,
    )?;
    expect_api_error(
        admin.client.remove_member(id, &owner.id).await,
        403,
        ErrorCode::Forbidden,
    )?;
    let promoted = owner
        .client
        .change_role(id, &admin.id, &ChangeRoleRequest { role: Role::Owner })
        .await?;
    ensure!(promoted.role == Role::Owner);
    // With two owners, one may step down.
    owner
        .client
        .change_role(id, &owner.id, &ChangeRoleRequest { role: Role::Admin })
        .await?;
    expect_api_error(
        admin
            .client
            .change_role(id, &admin.id, &ChangeRoleRequest { role: Role::Member })
            .await,
        409,
        ErrorCode::LastOwner,
    )?;
    expect_api_error(
        member
            .client
            .change_role(id, &viewer.id, &ChangeRoleRequest { role: Role::Member })
            .await,
        403,
        ErrorCode::Forbidden,
    )?;
    expect_api_error(
        owner
            .client
            .change_role(id, &outsider.id, &ChangeRoleRequest { role: Role::Member })
            .await,
        404,
        ErrorCode::MemberNotFound,
    )?;
    // Remove and leave.
    admin.client.remove_member(id, &viewer.id).await?;
    expect_api_error(
        viewer.client.workspace(id).await,
        404,
        ErrorCode::WorkspaceNotFound,
    )?;
    member.client.leave_workspace(id).await?;
    ensure!(owner.client.members(id).await?.len() == 2);
    // Personal workspaces have exactly one member.
    let personal = owner
        .client
        .workspaces()
        .await?
        .into_iter()
        .find(|w| w.kind == WorkspaceKind::Personal)
        .context("personal")?;
    let err = expect_api_error(
        owner
            .client
            .invite(
                personal.id.as_str(),
                &CreateInviteRequest {
                    email: outsider.email.clone(),
                    role: Role::Member,
                },
            )
            .await,
        403,
        ErrorCode::Forbidden,
    )?;
    ensure!(err.details["reason"] == "personal", "{err:?}");
    expect_api_error(
        owner.client.leave_workspace(personal.id.as_str()).await,
        403,
        ErrorCode::Forbidden,
    )?;

    // Every mutation above is in the team's audit log, with its outcome.
    let log = admin.client.audit(id, &[], None, Some(200)).await?.items;
    for (action, outcome) in [
        ("workspace.invite", AuditOutcome::Success),
        ("workspace.invite", AuditOutcome::Denied),
        ("workspace.invite", AuditOutcome::Failed),
        ("workspace.invite_accept", AuditOutcome::Success),
        ("workspace.invite_accept", AuditOutcome::Failed),
        ("workspace.invite_revoke", AuditOutcome::Success),
        ("workspace.rename", AuditOutcome::Success),
        ("workspace.rename", AuditOutcome::Denied),
        ("workspace.settings", AuditOutcome::Success),
        ("workspace.role_change", AuditOutcome::Success),
        ("workspace.role_change", AuditOutcome::Denied),
        ("workspace.role_change", AuditOutcome::Failed),
        ("workspace.member_remove", AuditOutcome::Success),
        ("workspace.leave", AuditOutcome::Success),
        ("workspace.leave", AuditOutcome::Failed),
        ("session.create", AuditOutcome::Success),
        ("session.create", AuditOutcome::Denied),
        ("session.delete", AuditOutcome::Success),
        ("session.delete", AuditOutcome::Denied),
        ("session.stop", AuditOutcome::Denied),
    ] {
        ensure!(
            log.iter()
                .any(|r| r.action == action && r.outcome == outcome),
            "no {outcome:?} record of {action} in {:#?}",
            log.iter()
                .map(|r| (&r.action, r.outcome))
                .collect::<Vec<_>>()
        );
    }
    let rec = log
        .iter()
        .find(|r| r.action == "workspace.member_remove")
        .context("remove record")?;
    ensure!(rec.actor_id.as_ref().map(|a| a.to_string()) == Some(admin.id.clone()));
    ensure!(rec.target_id.as_deref() == Some(viewer.id.as_str()));
    ensure!(rec.ip.is_some() && rec.user_agent.is_some(), "{rec:?}");
    // Filters: action family, actor, time window, pagination.
    let sessions_only = admin
        .client
        .audit(id, &[("action", "session.*")], None, Some(200))
        .await?;
    ensure!(
        sessions_only
            .items
            .iter()
            .all(|r| r.action.starts_with("session."))
    );
    ensure!(!sessions_only.items.is_empty());
    let by_viewer = admin
        .client
        .audit(id, &[("actor", &viewer.id)], None, Some(200))
        .await?;
    ensure!(!by_viewer.items.is_empty());
    ensure!(
        by_viewer
            .items
            .iter()
            .all(|r| r.actor_id.as_ref().map(|a| a.to_string()) == Some(viewer.id.clone()))
    );
    let future = admin
        .client
        .audit(id, &[("since", "2100-01-01T00:00:00Z")], None, None)
        .await?;
    ensure!(future.items.is_empty());
    let past = admin
        .client
        .audit(id, &[("until", "2000-01-01T00:00:00Z")], None, None)
        .await?;
    ensure!(past.items.is_empty());
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = admin
            .client
            .audit(id, &[], cursor.as_deref(), Some(7))
            .await?;
        ensure!(page.items.len() <= 7);
        seen.extend(page.items.into_iter().map(|r| r.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let all_ids: Vec<_> = admin
        .client
        .audit(id, &[], None, Some(200))
        .await?
        .items
        .into_iter()
        .map(|r| r.id)
        .collect();
    ensure!(
        seen == all_ids,
        "pagination returns every record once, in order"
    );
    for bad in [
        ("since", "yesterday"),
        ("actor", "bob"),
        ("action", "DROP TABLE"),
    ] {
        expect_api_error(
            admin.client.audit(id, &[bad], None, None).await,
            400,
            ErrorCode::InvalidQuery,
        )?;
    }
    Ok(())
}

/// The whole route table, as someone who is not a member: every
/// workspace-scoped and session-scoped route answers 404, before looking at
/// the body; as the owner, no route is unhandled; and every mutating route
/// leaves an audit record.
pub async fn route_table_membership_handlers_and_audit(stack: &Stack) -> Result<()> {
    let (owner_reg, owner) = stack.register("table-owner").await?;
    let (_, outsider) = stack.register("table-outsider").await?;
    let team = owner
        .create_workspace(&CreateWorkspaceRequest {
            name: "Route table".into(),
        })
        .await?;
    let session = owner
        .create_session(&CreateSessionRequest {
            name: format!("table-{}", unique().replace('-', "")),
            workspace_id: Some(team.id.clone()),
            ..Default::default()
        })
        .await?;
    let invite = owner
        .invite(
            team.id.as_str(),
            &CreateInviteRequest {
                email: format!("invitee-{}@example.test", unique()),
                role: Role::Member,
            },
        )
        .await?;
    let template = owner
        .create_template(&burstflare_api::templates::CreateTemplateRequest {
            name: "route-table".into(),
            workspace_id: Some(team.id.clone()),
            description: None,
        })
        .await?;
    let version = owner
        .create_version(
            template.id.as_str(),
            &burstflare_api::templates::CreateVersionRequest {
                manifest: Some("base = \"runtime\"".into()),
                devcontainer: None,
            },
        )
        .await?;
    let values = [
        ("workspace_id", team.id.as_str()),
        ("template_id", template.id.as_str()),
        ("version_id", version.id.as_str()),
        ("session_id", session.id.as_str()),
        ("user_id", owner_reg.user.id.as_str()),
        ("invite_id", invite.invite.id.as_str()),
    ];
    let http = stack.http();
    let outsider_token = outsider.token().context("token")?;
    let mut checked = 0;
    for spec in ROUTES
        .iter()
        .filter(|s| matches!(s.scope, Scope::Workspace | Scope::Session | Scope::Template))
    {
        let path = fill_path(spec.path, &values);
        let mut req = http
            .request(
                reqwest::Method::from_bytes(spec.method.as_bytes())?,
                stack.api(&path),
            )
            .bearer_auth(&outsider_token);
        if spec.body {
            req = req.json(&serde_json::json!({}));
        }
        if spec.websocket {
            req = req
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        }
        let want = match spec.scope {
            Scope::Workspace => ErrorCode::WorkspaceNotFound,
            Scope::Template => ErrorCode::TemplateNotFound,
            _ => ErrorCode::SessionNotFound,
        };
        expect_envelope(req.send().await?, 404, want)
            .await
            .with_context(|| format!("{} {path} as a non-member", spec.method))?;
        checked += 1;
    }
    ensure!(checked >= 25, "only {checked} scoped routes");

    // As the owner, every route reaches a handler (no 500, no unknown route).
    // Sign-out routes go last, after a recovery code is kept to read the log.
    let owner_token = owner.token().context("token")?;
    let (last, first): (Vec<&RouteSpec>, Vec<&RouteSpec>) = ROUTES
        .iter()
        .partition(|s| matches!(s.action, "auth.logout" | "auth.logout_all"));
    let mut codes = Vec::new();
    for (signs_out, batch) in [(false, first), (true, last)] {
        if signs_out {
            codes = owner.generate_recovery_codes().await?.codes;
        }
        for spec in batch {
            if spec.websocket {
                continue;
            }
            // Each sign-out route signs out a session of its own.
            let owner_token = if signs_out {
                let code = codes.pop().context("codes")?;
                let s = recovery_sign_in(stack, &owner_reg.user.email, &code).await?;
                s.credentials.context("tokens")?.access_token.token
            } else {
                owner_token.clone()
            };
            let path = fill_path(spec.path, &values);
            let mut req = http
                .request(
                    reqwest::Method::from_bytes(spec.method.as_bytes())?,
                    stack.api(&path),
                )
                .bearer_auth(&owner_token);
            if spec.body {
                req = req.json(&serde_json::json!({}));
            }
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let text = resp.text().await?;
            ensure!(
                status < 500 && !text.contains("route_not_found"),
                "{} {path}: {status} {text}",
                spec.method
            );
        }
    }
    // Every mutating route left a record, in the team or the owner's own log.
    let back = recovery_sign_in(stack, &owner_reg.user.email, &codes[0]).await?;
    let back = tokens_client(stack, &back)?;
    let mut actions = Vec::new();
    for ws in [team.id.as_str(), owner_reg.workspace.id.as_str()] {
        let mut cursor = None;
        loop {
            let page = back.audit(ws, &[], cursor.as_deref(), Some(200)).await?;
            actions.extend(page.items.into_iter().map(|r| r.action));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    let missing: Vec<&str> = ROUTES
        .iter()
        .filter(|s| s.mutating() && s.scope != Scope::Public)
        .map(|s| s.action)
        .filter(|a| !actions.iter().any(|x| x == a))
        .collect();
    ensure!(
        missing.is_empty(),
        "mutations without audit records: {missing:?}"
    );
    Ok(())
}

/// Calls `attempt` until it answers 429 (at most `max` times); checks the
/// envelope and `Retry-After`, and returns how many calls were allowed.
async fn burst_until_limited<F, Fut>(what: &str, max: usize, mut attempt: F) -> Result<usize>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<reqwest::Response>>,
{
    for n in 0..max {
        let resp = attempt().await?;
        if resp.status().as_u16() != 429 {
            continue;
        }
        let retry_after: u64 = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{what}: 429 without a numeric Retry-After"))?;
        ensure!(retry_after >= 1, "{what}: Retry-After {retry_after}");
        let err = expect_envelope(resp, 429, ErrorCode::RateLimited).await?;
        ensure!(
            err.details["retry_after_secs"] == retry_after,
            "{what}: {err:?}"
        );
        return Ok(n);
    }
    bail!("{what}: no 429 after {max} requests")
}

/// Own stack with short lifetimes and production rate limits: expired
/// access tokens (and automatic refresh in the client and the CLI), expired
/// device codes (API and CLI), invites and WebAuthn challenges, then a burst
/// against every rate-limited endpoint.
pub async fn expiry_and_rate_limits(tools: &Tools) -> Result<()> {
    let vars = [
        ("ACCESS_TOKEN_TTL_SECONDS", "3"),
        ("DEVICE_CODE_TTL_SECONDS", "3"),
        ("INVITE_TTL_SECONDS", "3"),
        ("WEBAUTHN_CHALLENGE_TTL_SECONDS", "3"),
        ("RATE_LIMIT_MULTIPLIER", "1"),
    ];
    let tools = tools.clone();
    let stack =
        tokio::task::spawn_blocking(move || Stack::start_with(&tools, true, &vars)).await??;
    let stack = &stack;
    let (reg, client) = stack.register("expiry").await?;
    let (invitee_reg, invitee) = stack.register("expiry-invitee").await?;
    let cli_user = User::new(stack, "expiry-cli").await?;
    let creds = reg.credentials.clone().context("tokens")?;
    let fixed = stack
        .client()?
        .with_token(Some(creds.access_token.token.clone()));
    let team = client
        .create_workspace(&CreateWorkspaceRequest {
            name: "Expiring".into(),
        })
        .await?;
    let invite = client
        .invite(
            team.id.as_str(),
            &CreateInviteRequest {
                email: invitee_reg.user.email.clone(),
                role: Role::Member,
            },
        )
        .await?;
    let anon = stack.client()?;
    let device = anon.device_code(&DeviceCodeRequest::default()).await?;
    let ceremony = client.passkey_register_options().await?;
    let cli_creds = std::fs::read_to_string(cli_user.config_dir().join("credentials.toml"))?;
    // The CLI waits out an unapproved code and reports its expiry.
    let login = {
        let laptop = User::new(stack, "expiry-laptop").await?;
        std::fs::remove_file(laptop.config_dir().join("credentials.toml"))?;
        let cmd = laptop.cli(&["login"]);
        let (_, child, rest) = tokio::task::spawn_blocking(move || start_cli_login(cmd)).await??;
        (laptop, child, rest)
    };
    tokio::time::sleep(Duration::from_millis(3500)).await;

    // The access token has expired; the refresh token has not.
    let err = expect_api_error(fixed.me().await, 401, ErrorCode::InvalidToken)?;
    ensure!(err.message.contains("expired"), "{}", err.message);
    let before = client.session_tokens().context("session")?;
    ensure!(
        client.me().await?.user.id == reg.user.id,
        "the client refreshes by itself"
    );
    let after = client.session_tokens().context("session")?;
    ensure!(
        after.access_token != before.access_token && after.refresh_token != before.refresh_token
    );
    // So does the CLI, saving the new tokens.
    let who = text(&ok(run(cli_user.cli(&["whoami"])).await?)?.stdout);
    ensure!(who.contains("expiry-cli"), "{who}");
    let saved = std::fs::read_to_string(cli_user.config_dir().join("credentials.toml"))?;
    ensure!(saved != cli_creds, "refreshed tokens are saved");

    // Expired device code, invite and challenge.
    let r = anon
        .device_token(&DeviceTokenRequest {
            device_code: device.device_code.clone(),
        })
        .await;
    expect_api_error(r, 400, ErrorCode::ExpiredToken)?;
    ensure!(client.device_request(&device.user_code).await?.status == "expired");
    let err = expect_api_error(
        client.decide_device(&device.user_code, true).await,
        409,
        ErrorCode::DeviceRequestDecided,
    )?;
    ensure!(err.details["status"] == "expired", "{err:?}");
    let err = expect_api_error(
        invitee
            .accept_invite(&AcceptInviteRequest { code: invite.code })
            .await,
        409,
        ErrorCode::InviteUnavailable,
    )?;
    ensure!(err.details["status"] == "expired", "{err:?}");
    let mut key = SoftPasskey::new(SoftAlg::Es256, 31, &origin(stack));
    expect_api_error(
        client
            .register_passkey(&key.create(&ceremony, "late", |_| {})?)
            .await,
        400,
        ErrorCode::ChallengeInvalid,
    )?;
    let (laptop, child, rest) = login;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    ensure!(out.status.code() == Some(1), "{:?}", out.status);
    let stderr = rest.join().unwrap_or_default().join("\n");
    ensure!(stderr.contains("expired"), "{stderr}");
    drop(laptop);
    // The reconcile sweep deletes spent and expired challenges.
    let count = || -> Result<String> {
        stack.d1_execute(&format!(
            "SELECT COUNT(*) AS n FROM webauthn_challenges WHERE user_id = '{}'",
            reg.user.id
        ))
    };
    ensure!(count()?.contains("\"n\": 1"), "{}", count()?);
    let resp = stack
        .http()
        .get(format!("{}/__scheduled?cron=*/5+*+*+*+*", stack.url))
        .send()
        .await?;
    ensure!(resp.status().is_success(), "scheduled: {}", resp.status());
    crate::support::eventually(
        Duration::from_secs(30),
        "expired challenges purged",
        || async { Ok(count()?.contains("\"n\": 0").then_some(())) },
    )
    .await?;

    // Rate limits, production values (the registrations above count).
    let http = stack.http();
    let allowed = burst_until_limited("register", 12, || {
        http.post(stack.api("/auth/register"))
            .json(&RegisterRequest {
                email: format!("burst-{}@example.test", unique()),
                display_name: "Burst".into(),
                turnstile_token: None,
                client: ClientKind::Api,
            })
            .send()
            .map(|r| r.map_err(Into::into))
    })
    .await?;
    ensure!(
        allowed == 6,
        "4 registrations so far + {allowed} of the burst of 10"
    );
    let email = reg.user.email.clone();
    let allowed = burst_until_limited("recovery", 10, || {
        http.post(stack.api("/auth/login/recovery"))
            .json(&RecoveryLoginRequest {
                email: email.clone(),
                code: "00000-00000-00000".into(),
                client: ClientKind::Api,
            })
            .send()
            .map(|r| r.map_err(Into::into))
    })
    .await?;
    ensure!(allowed == 5, "recovery burst per email: {allowed}");
    burst_until_limited("device code", 12, || {
        http.post(stack.api("/auth/device/code"))
            .json(&DeviceCodeRequest::default())
            .send()
            .map(|r| r.map_err(Into::into))
    })
    .await?;
    let polled = stack
        .client()?
        .device_code(&DeviceCodeRequest::default())
        .await
        .err()
        .context("device codes are limited per address")?;
    ensure!(polled.status() == Some(429));
    burst_until_limited("passkey options", 40, || {
        http.post(stack.api("/auth/login/passkey/options"))
            .json(&PasskeyLoginOptionsRequest::default())
            .send()
            .map(|r| r.map_err(Into::into))
    })
    .await?;
    burst_until_limited("refresh", 70, || {
        http.post(stack.api("/auth/token/refresh"))
            .json(&RefreshRequest {
                refresh_token: "bf_rt_nope".into(),
            })
            .send()
            .map(|r| r.map_err(Into::into))
    })
    .await?;
    // Polling one device code: slow_down first, then 429 past the burst.
    let code = device.device_code.clone();
    burst_until_limited("device poll", 40, || {
        http.post(stack.api("/auth/device/token"))
            .json(&DeviceTokenRequest {
                device_code: code.clone(),
            })
            .send()
            .map(|r| r.map_err(Into::into))
    })
    .await?;
    Ok(())
}

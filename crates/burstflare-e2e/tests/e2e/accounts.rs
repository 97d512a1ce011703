//! Registration, bearer authentication and personal access tokens.

use anyhow::{Context, Result, ensure};
use burstflare_api::{CreateTokenRequest, ErrorCode, RegisterRequest, WorkspaceKind};
use burstflare_cli::client::Client;
use burstflare_domain::{Role, TokenKind};
use burstflare_e2e::siteverify::Siteverify;
use burstflare_e2e::stack::unique;
use burstflare_e2e::{Stack, Tools};

use crate::support::{expect_api_error, expect_envelope};

pub async fn register_creates_user_workspace_and_token(stack: &Stack) -> Result<()> {
    let email = format!("Ada.Lovelace-{}@Example.TEST", unique());
    let resp = stack
        .client()?
        .register(&RegisterRequest {
            email: email.clone(),
            display_name: "  Ada Lovelace ".into(),
            turnstile_token: None,
            client: Default::default(),
        })
        .await?;
    ensure!(
        resp.user.email == email.to_lowercase(),
        "email normalized: {}",
        resp.user.email
    );
    ensure!(resp.user.display_name == "Ada Lovelace");
    ensure!(resp.workspace.kind == WorkspaceKind::Personal && resp.workspace.role == Role::Owner);
    ensure!(
        resp.workspace.slug.starts_with("ada-lovelace-"),
        "slug {}",
        resp.workspace.slug
    );
    let creds = resp
        .credentials
        .as_ref()
        .context("API registration returns tokens")?;
    ensure!(resp.csrf_token.is_none(), "no CSRF token without a cookie");
    let token = &creds.access_token;
    ensure!(token.token.starts_with("bf_at_") && token.info.kind == TokenKind::Access);
    ensure!(token.token.starts_with(&token.info.prefix));
    // Short-lived access token, 30-day refresh token, one session.
    let lifetime = token.info.expires_at.context("access tokens expire")? - token.info.created_at;
    ensure!(
        lifetime == time::Duration::minutes(15),
        "access lifetime {lifetime}"
    );
    ensure!(creds.refresh_token.starts_with("bf_rt_"));
    let refresh_life = creds.refresh_expires_at - resp.session.created_at;
    ensure!(
        refresh_life == time::Duration::days(30),
        "refresh lifetime {refresh_life}"
    );
    ensure!(resp.session.method == "registration" && resp.session.current);

    // D1 read back through /me with the issued token.
    let client = Client::new(&stack.url, Some(token.token.clone()))?;
    let me = client.me().await?;
    ensure!(me.user == resp.user, "{:?} vs {:?}", me.user, resp.user);
    ensure!(me.workspaces == vec![resp.workspace.clone()]);
    ensure!(me.token.as_ref().map(|t| &t.id) == Some(&token.info.id));
    ensure!(me.session.as_ref().map(|s| &s.id) == Some(&resp.session.id));

    // Only the hash is stored: the plaintext appears nowhere in D1.
    let dump = stack.d1_execute(&format!(
        "SELECT * FROM api_tokens WHERE id = '{}'",
        token.info.id
    ))?;
    ensure!(!dump.contains(&token.token), "plaintext token stored in D1");
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        token.token.as_bytes(),
    ));
    ensure!(
        dump.contains(&hash),
        "token_hash is the SHA-256 of the token: {dump}"
    );
    Ok(())
}

pub async fn register_rejects_bad_and_duplicate_input(stack: &Stack) -> Result<()> {
    let client = stack.client()?;
    let email = format!("dup-{}@example.test", unique());
    client
        .register(&RegisterRequest {
            email: email.clone(),
            display_name: "Dup".into(),
            turnstile_token: None,
            client: Default::default(),
        })
        .await?;
    let err = expect_api_error(
        client
            .register(&RegisterRequest {
                email: email.to_uppercase(),
                display_name: "Dup 2".into(),
                turnstile_token: None,
                client: Default::default(),
            })
            .await,
        409,
        ErrorCode::EmailTaken,
    )?;
    ensure!(err.message.contains(&email), "{}", err.message);

    for bad in [
        "",
        "no-at-sign",
        "a@localhost",
        "two@@example.com",
        "spa ce@example.com",
    ] {
        let err = expect_api_error(
            client
                .register(&RegisterRequest {
                    email: bad.into(),
                    display_name: "X".into(),
                    turnstile_token: None,
                    client: Default::default(),
                })
                .await,
            400,
            ErrorCode::InvalidField,
        )?;
        ensure!(
            err.details["field"] == "email",
            "{bad:?}: {:?}",
            err.details
        );
    }
    let err = expect_api_error(
        client
            .register(&RegisterRequest {
                email: format!("n-{}@example.test", unique()),
                display_name: "  ".into(),
                turnstile_token: None,
                client: Default::default(),
            })
            .await,
        400,
        ErrorCode::InvalidField,
    )?;
    ensure!(err.details["field"] == "display_name");
    // Unknown and missing fields are rejected by shape.
    let http = stack.http();
    for body in [
        serde_json::json!({"email": "x@example.test"}),
        serde_json::json!({"email": "x@example.test", "display_name": "X", "admin": true}),
        serde_json::json!(["x@example.test"]),
    ] {
        let resp = http
            .post(stack.api("/auth/register"))
            .json(&body)
            .send()
            .await?;
        expect_envelope(resp, 400, ErrorCode::MalformedJson).await?;
    }
    Ok(())
}

pub async fn missing_invalid_revoked_and_expired_tokens_are_401(stack: &Stack) -> Result<()> {
    let http = stack.http();
    let me = stack.api("/me");
    let resp = http.get(&me).send().await?;
    ensure!(
        resp.headers().get("www-authenticate").is_some(),
        "401 without WWW-Authenticate"
    );
    expect_envelope(resp, 401, ErrorCode::Unauthenticated).await?;
    for header in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer not-a-token",
        "Bearer ghp_0123456789",
    ] {
        let resp = http.get(&me).header("authorization", header).send().await?;
        expect_envelope(resp, 401, ErrorCode::InvalidToken).await?;
    }
    // Well-formed but never issued.
    let forged = format!("bf_pat_{}", "0".repeat(52));
    let resp = http.get(&me).bearer_auth(&forged).send().await?;
    let err = expect_envelope(resp, 401, ErrorCode::InvalidToken).await?;
    ensure!(err.message.contains("not recognised"), "{}", err.message);

    let (_, client) = stack.register("auth401").await?;
    let pat = client
        .create_token(&CreateTokenRequest {
            name: "soon revoked".into(),
            expires_in_days: None,
        })
        .await?;
    let pat_client = client.with_token(Some(pat.token.clone()));
    pat_client.me().await.context("a fresh PAT works")?;
    client.revoke_token(pat.info.id.as_str()).await?;
    let err = expect_api_error(pat_client.me().await, 401, ErrorCode::InvalidToken)?;
    ensure!(err.message.contains("revoked"), "{}", err.message);

    let expiring = client
        .create_token(&CreateTokenRequest {
            name: "expiring".into(),
            expires_in_days: Some(1),
        })
        .await?;
    let expiring_client = client.with_token(Some(expiring.token.clone()));
    expiring_client.me().await.context("not expired yet")?;
    // Move the expiry into the past in the real local D1.
    stack.d1_execute(&format!(
        "UPDATE api_tokens SET expires_at = 1 WHERE id = '{}'",
        expiring.info.id
    ))?;
    let err = expect_api_error(expiring_client.me().await, 401, ErrorCode::InvalidToken)?;
    ensure!(err.message.contains("expired"), "{}", err.message);
    // The registration token is unaffected by all of this.
    client.me().await?;
    Ok(())
}

pub async fn personal_tokens_create_list_paginate_revoke(stack: &Stack) -> Result<()> {
    let (_, client) = stack.register("tokens").await?;
    ensure!(
        client.list_tokens(None, None).await?.items.is_empty(),
        "new user has no personal tokens"
    );
    let mut created = Vec::new();
    for (name, days) in [("ci", Some(30)), ("laptop", None), ("deploy", Some(366))] {
        let issued = client
            .create_token(&CreateTokenRequest {
                name: name.into(),
                expires_in_days: days,
            })
            .await?;
        ensure!(issued.token.starts_with("bf_pat_") && issued.info.kind == TokenKind::Personal);
        ensure!(issued.info.expires_at.is_some() == days.is_some());
        if let Some(d) = days {
            let lifetime = issued.info.expires_at.context("expiry")? - issued.info.created_at;
            ensure!(lifetime.whole_days() == i64::from(d), "lifetime {lifetime}");
        }
        created.push(issued);
    }
    // The PAT authenticates and records its use.
    let pat_client = client.with_token(Some(created[0].token.clone()));
    let me = pat_client.me().await?;
    ensure!(me.token.map(|t| t.id) == Some(created[0].info.id.clone()));
    ensure!(me.session.is_none(), "personal tokens belong to no session");

    // Pagination: one per page, newest first, cursors chain to the end.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = client.list_tokens(Some(1), cursor.as_deref()).await?;
        ensure!(page.items.len() <= 1);
        seen.extend(page.items.into_iter().map(|t| t.name));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    ensure!(seen == vec!["deploy", "laptop", "ci"], "pages: {seen:?}");
    let all = client.list_tokens(None, None).await?;
    ensure!(all.items.len() == 3 && all.next_cursor.is_none());
    let ci = all.items.iter().find(|t| t.name == "ci").context("ci")?;
    ensure!(ci.last_used_at.is_some(), "last_used_at recorded");
    let listed = serde_json::to_string(&all)?;
    ensure!(
        created.iter().all(|c| !listed.contains(&c.token)),
        "secrets must never be listed"
    );

    // Revoke, idempotently.
    let revoked = client.revoke_token(created[1].info.id.as_str()).await?;
    ensure!(revoked.revoked_at.is_some());
    let again = client.revoke_token(created[1].info.id.as_str()).await?;
    ensure!(
        again.revoked_at == revoked.revoked_at,
        "second revoke keeps the first time"
    );
    let after = client.list_tokens(None, None).await?;
    ensure!(
        after
            .items
            .iter()
            .filter(|t| t.revoked_at.is_some())
            .count()
            == 1
    );

    // Bad input.
    for (req, field) in [
        (
            CreateTokenRequest {
                name: "".into(),
                expires_in_days: None,
            },
            "name",
        ),
        (
            CreateTokenRequest {
                name: "x".repeat(65),
                expires_in_days: None,
            },
            "name",
        ),
        (
            CreateTokenRequest {
                name: "zero".into(),
                expires_in_days: Some(0),
            },
            "expires_in_days",
        ),
        (
            CreateTokenRequest {
                name: "long".into(),
                expires_in_days: Some(367),
            },
            "expires_in_days",
        ),
    ] {
        let err = expect_api_error(
            client.create_token(&req).await,
            400,
            ErrorCode::InvalidField,
        )?;
        ensure!(err.details["field"] == field, "{:?}", err.details);
    }
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=x", "limit"),
        ("cursor=zz", "cursor"),
        ("cursor=3a", "cursor"),
    ] {
        let resp = stack
            .http()
            .get(stack.api(&format!("/auth/tokens?{query}")))
            .bearer_auth(&created[0].token)
            .send()
            .await?;
        let err = expect_envelope(resp, 400, ErrorCode::InvalidQuery).await?;
        ensure!(err.details["param"] == param, "{query}: {:?}", err.details);
    }
    expect_api_error(
        client.revoke_token("not-an-id").await,
        400,
        ErrorCode::InvalidField,
    )?;
    expect_api_error(
        client.revoke_token("tok_00000000000000000000000000").await,
        404,
        ErrorCode::TokenNotFound,
    )?;
    Ok(())
}

pub async fn tokens_are_isolated_between_users(stack: &Stack) -> Result<()> {
    let (_, alice) = stack.register("alice").await?;
    let (bob_reg, bob) = stack.register("bob").await?;
    let alice_pat = alice
        .create_token(&CreateTokenRequest {
            name: "mine".into(),
            expires_in_days: None,
        })
        .await?;
    // Bob sees 404 for Alice's token, exactly as for a missing one, and it keeps working.
    expect_api_error(
        bob.revoke_token(alice_pat.info.id.as_str()).await,
        404,
        ErrorCode::TokenNotFound,
    )?;
    ensure!(bob.list_tokens(None, None).await?.items.is_empty());
    alice.with_token(Some(alice_pat.token.clone())).me().await?;
    // The registration (access) token is not revocable as a personal token.
    expect_api_error(
        bob.revoke_token(
            bob_reg
                .credentials
                .as_ref()
                .context("tokens")?
                .access_token
                .info
                .id
                .as_str(),
        )
        .await,
        404,
        ErrorCode::TokenNotFound,
    )?;
    // Alice's PAT authenticates as Alice only.
    let me = alice.with_token(Some(alice_pat.token)).me().await?;
    ensure!(me.user.id != bob_reg.user.id);
    Ok(())
}

/// Own stack: registration with Turnstile required, against the local
/// siteverify stand-in.
pub async fn registration_requires_a_valid_turnstile_token(tools: &Tools) -> Result<()> {
    let siteverify = Siteverify::start("e2e-turnstile-secret").await?;
    let vars = [
        ("TURNSTILE_REQUIRED".to_owned(), "true".to_owned()),
        (
            "TURNSTILE_SITEVERIFY_URL".to_owned(),
            siteverify.url.clone(),
        ),
        ("TURNSTILE_SECRET".to_owned(), siteverify.secret.clone()),
    ];
    let tools = tools.clone();
    let stack = tokio::task::spawn_blocking(move || {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Stack::start_with(&tools, true, &vars)
    })
    .await??;
    let client = stack.client()?;
    let request = |token: Option<&str>| RegisterRequest {
        email: format!("turnstile-{}@example.test", unique()),
        display_name: "T".into(),
        turnstile_token: token.map(str::to_owned),
        client: Default::default(),
    };
    let err = expect_api_error(
        client.register(&request(None)).await,
        400,
        ErrorCode::TurnstileRequired,
    )?;
    ensure!(err.details["field"] == "turnstile_token", "{err:?}");
    ensure!(
        siteverify.requests().is_empty(),
        "no token, no siteverify call"
    );

    let err = expect_api_error(
        client.register(&request(Some("fail-123"))).await,
        400,
        ErrorCode::TurnstileFailed,
    )?;
    ensure!(
        err.details["error_codes"][0] == "invalid-input-response",
        "{err:?}"
    );
    ensure!(
        err.message.contains("invalid-input-response"),
        "{}",
        err.message
    );

    let ok = client.register(&request(Some("pass-123"))).await?;
    ensure!(ok.user.display_name == "T");
    let sent = siteverify.requests();
    ensure!(sent.len() == 2, "{sent:?}");
    for form in &sent {
        ensure!(
            form.get("secret").map(String::as_str) == Some("e2e-turnstile-secret"),
            "{form:?}"
        );
        ensure!(
            form.get("remoteip").is_some_and(|ip| !ip.is_empty()),
            "no remoteip: {form:?}"
        );
    }
    ensure!(sent[1].get("response").map(String::as_str) == Some("pass-123"));

    // The CLI passes the token through.
    let home = tempfile::tempdir()?;
    let out = std::process::Command::new(&stack.tools.cli)
        .args(["--api-url", &stack.url, "auth", "register", "--email"])
        .arg(format!("cli-turnstile-{}@example.test", unique()))
        .args(["--name", "C", "--turnstile-token", "pass-cli"])
        .env("BURSTFLARE_CONFIG_DIR", home.path())
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(&stack.tools.cli)
        .args(["--api-url", &stack.url, "auth", "register", "--email"])
        .arg(format!("cli-turnstile-{}@example.test", unique()))
        .args(["--name", "C"])
        .env("BURSTFLARE_CONFIG_DIR", home.path())
        .env("NO_COLOR", "1")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1) && stderr.contains("turnstile_required"),
        "{stderr}"
    );
    Ok(())
}

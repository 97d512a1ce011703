//! Signing in and out, signed-in sessions, passkeys, recovery codes and
//! device approvals.
//!
//! `burstflare login` is the RFC 8628 device flow: it shows a URL and a code,
//! polls at the server's interval (slowing down when told to) until the code
//! is approved, denied or expires, and stores the session's tokens in
//! `credentials.toml` (mode 0600). The client refreshes the access token by
//! itself from then on.

use std::time::Duration;

use burstflare_api::ErrorCode;
use burstflare_api::identity::{
    ClientKind, DeviceCodeRequest, DeviceTokenRequest, RecoveryLoginRequest, SignedIn,
};
use burstflare_cli::client::SessionTokens;
use burstflare_cli::error::CliError;
use clap::{Args, Subcommand};

use super::api;
use crate::{App, JsonFlag, fmt_time, print_json, print_table};

#[derive(Subcommand)]
pub enum SessionsCmd {
    /// List the places you are signed in (browsers, the CLI, API clients).
    List(JsonFlag),
    /// Sign one of them out.
    Revoke {
        /// The session id (`aus_…`) from `burstflare auth sessions list`.
        id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Subcommand)]
pub enum PasskeysCmd {
    /// List your passkeys (register them in the web app).
    List(JsonFlag),
    /// Delete a passkey (the last one only while you have recovery codes).
    Delete {
        /// The passkey id (`pk_…`).
        id: String,
    },
}

#[derive(Subcommand)]
pub enum RecoveryCmd {
    /// Generate ten new one-time codes (the old set stops working); shown once.
    Generate(JsonFlag),
    /// How many unused codes you have.
    Status(JsonFlag),
}

#[derive(Subcommand)]
pub enum DeviceCmd {
    /// Show the sign-in request with this code.
    Show {
        code: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Approve the sign-in request with this code (you are signing that device in as you).
    Approve { code: String },
    /// Deny the sign-in request with this code.
    Deny { code: String },
}

fn client_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "this computer".to_owned());
    format!("burstflare CLI on {host}")
}

#[derive(Args)]
pub struct LoginArgs {
    /// Your account's email (with --recovery-code).
    #[arg(long, requires = "recovery_code")]
    pub email: Option<String>,
    /// Sign in with one of your one-time recovery codes instead of a browser.
    #[arg(long, env = "BURSTFLARE_RECOVERY_CODE", requires = "email")]
    pub recovery_code: Option<String>,
    #[command(flatten)]
    pub json: JsonFlag,
}

/// Stores a new session's tokens and reports who signed in.
fn save_sign_in(app: &App, signed_in: &SignedIn, json: JsonFlag) -> Result<(), CliError> {
    let Some(creds) = &signed_in.credentials else {
        return Err(CliError::unexpected(
            "the server answered the sign-in without tokens",
        ));
    };
    let path = app.dir.save_session(
        &app.api_url,
        &SessionTokens::from_credentials(creds),
        Some(&signed_in.user.email),
    )?;
    if json.json {
        return print_json(&signed_in.user);
    }
    println!("{}", signed_in.user.id);
    eprintln!(
        "Signed in to {} as {} <{}>; credentials saved to {}.",
        app.api_url,
        signed_in.user.display_name,
        signed_in.user.email,
        path.display()
    );
    Ok(())
}

/// `burstflare login`.
pub async fn login(app: &App, args: LoginArgs) -> Result<(), CliError> {
    let client = app.anonymous()?;
    if let (Some(email), Some(code)) = (&args.email, &args.recovery_code) {
        let s = client
            .recovery_login(&RecoveryLoginRequest {
                email: email.clone(),
                code: code.clone(),
                client: ClientKind::Cli,
            })
            .await
            .map_err(api("could not sign in with the recovery code"))?;
        save_sign_in(app, &s, args.json)?;
        eprintln!(
            "That recovery code is now used; `burstflare auth recovery-codes status` shows how many remain."
        );
        return Ok(());
    }
    let json = args.json;
    let code = client
        .device_code(&DeviceCodeRequest {
            client_name: Some(client_name()),
        })
        .await
        .map_err(api(format!(
            "could not start signing in to {}",
            app.api_url
        )))?;
    eprintln!("To sign in, open {}", code.verification_uri);
    eprintln!("and enter the code {}", code.user_code);
    eprintln!("(or open {})", code.verification_uri_complete);
    eprintln!("Waiting for approval…");
    let mut interval = code.interval.max(1);
    let deadline = std::time::Instant::now() + Duration::from_secs(code.expires_in.max(1));
    let req = DeviceTokenRequest {
        device_code: code.device_code.clone(),
    };
    let signed_in = loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        match client.device_token(&req).await {
            Ok(s) => break s,
            Err(e) => match e.api_error().map(|b| (b.code, b.details.clone())) {
                Some((ErrorCode::AuthorizationPending, _)) => {
                    if std::time::Instant::now() > deadline + Duration::from_secs(30) {
                        return Err(CliError::user("the sign-in code expired")
                            .hint("run `burstflare login` again"));
                    }
                }
                Some((ErrorCode::SlowDown, details)) => {
                    interval = details
                        .get("interval")
                        .and_then(|i| i.as_u64())
                        .unwrap_or(interval + 5);
                    eprintln!(
                        "The server asked to poll less often; waiting {interval} s between polls."
                    );
                }
                Some((ErrorCode::ExpiredToken, _)) => {
                    return Err(
                        CliError::user("the sign-in code expired before it was approved")
                            .hint("run `burstflare login` again"),
                    );
                }
                Some((ErrorCode::AccessDenied, _)) => {
                    return Err(CliError::user("the sign-in request was denied"));
                }
                _ => return Err(CliError::from_client("could not finish signing in", e)),
            },
        }
    };
    save_sign_in(app, &signed_in, json)
}

/// `burstflare logout`: ends the session on the server and forgets it here.
pub async fn logout(app: &App) -> Result<(), CliError> {
    let Some(host) = app.dir.host(&app.api_url)? else {
        eprintln!("Not signed in to {}.", app.api_url);
        return Ok(());
    };
    if host.session().is_some() {
        match app.signed_in()?.logout().await {
            Ok(()) => {}
            // Signed out on the server already (revoked, expired, logged out elsewhere).
            Err(e) if e.status() == Some(401) => {}
            Err(e) => return Err(CliError::from_client("could not sign out", e)),
        }
    }
    let path = app.dir.update_host(&app.api_url, |old| {
        // Keep the chosen workspace; drop every secret.
        old.and_then(|o| o.workspace_id).map(|workspace_id| {
            burstflare_cli::config::HostCredentials {
                workspace_id: Some(workspace_id),
                ..Default::default()
            }
        })
    })?;
    eprintln!(
        "Signed out of {}; credentials removed from {}.",
        app.api_url,
        path.display()
    );
    if host.session().is_none() {
        eprintln!(
            "The stored token was a personal access token; it still works until you revoke it (`burstflare auth token revoke`)."
        );
    }
    Ok(())
}

/// `burstflare auth logout-all`.
pub async fn logout_all(app: &App, json: JsonFlag) -> Result<(), CliError> {
    let result = app
        .signed_in()?
        .logout_all()
        .await
        .map_err(api("could not sign out everywhere"))?;
    app.dir.update_host(&app.api_url, |_| None)?;
    if json.json {
        return print_json(&result);
    }
    eprintln!(
        "Signed out everywhere: {} session(s) and {} token(s) revoked.",
        result.sessions_revoked, result.tokens_revoked
    );
    Ok(())
}

pub async fn sessions(app: &App, cmd: SessionsCmd) -> Result<(), CliError> {
    let client = app.signed_in()?;
    match cmd {
        SessionsCmd::List(flag) => {
            let mut items = Vec::new();
            let mut cursor = None;
            loop {
                let page = client
                    .auth_sessions(cursor.as_deref())
                    .await
                    .map_err(api("could not list your sessions"))?;
                items.extend(page.items);
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            if flag.json {
                return print_json(&items);
            }
            print_table(
                &[
                    "ID",
                    "CLIENT",
                    "METHOD",
                    "IP",
                    "CREATED",
                    "LAST USED",
                    "USER AGENT",
                    "",
                ],
                &items
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.to_string(),
                            s.client.as_str().to_owned(),
                            s.method.clone(),
                            s.ip.clone().unwrap_or_else(|| "-".into()),
                            fmt_time(Some(s.created_at)),
                            fmt_time(Some(s.last_used_at)),
                            s.user_agent.clone().unwrap_or_else(|| "-".into()),
                            if s.current {
                                "(this one)".into()
                            } else {
                                String::new()
                            },
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
        SessionsCmd::Revoke { id, json } => {
            let s = client
                .revoke_auth_session(&id)
                .await
                .map_err(api(format!("could not revoke session {id}")))?;
            if json.json {
                return print_json(&s);
            }
            eprintln!("Signed out session {} ({}).", s.id, s.client.as_str());
            Ok(())
        }
    }
}

pub async fn passkeys(app: &App, cmd: PasskeysCmd) -> Result<(), CliError> {
    let client = app.signed_in()?;
    match cmd {
        PasskeysCmd::List(flag) => {
            let keys = client
                .passkeys()
                .await
                .map_err(api("could not list your passkeys"))?;
            if flag.json {
                return print_json(&keys);
            }
            print_table(
                &["ID", "NAME", "ALGORITHM", "CREATED", "LAST USED"],
                &keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.to_string(),
                            k.name.clone(),
                            match k.algorithm {
                                -7 => "ES256".to_owned(),
                                -8 => "EdDSA".to_owned(),
                                a => a.to_string(),
                            },
                            fmt_time(Some(k.created_at)),
                            fmt_time(k.last_used_at),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
        PasskeysCmd::Delete { id } => {
            client
                .delete_passkey(&id)
                .await
                .map_err(api(format!("could not delete passkey {id}")))?;
            eprintln!("Deleted passkey {id}.");
            Ok(())
        }
    }
}

pub async fn recovery(app: &App, cmd: RecoveryCmd) -> Result<(), CliError> {
    let client = app.signed_in()?;
    match cmd {
        RecoveryCmd::Generate(flag) => {
            let set = client
                .generate_recovery_codes()
                .await
                .map_err(api("could not generate recovery codes"))?;
            if flag.json {
                return print_json(&set);
            }
            for code in &set.codes {
                println!("{code}");
            }
            eprintln!(
                "These {} codes are shown once. Keep them somewhere safe; each signs you in once \
                 (`burstflare` web app → sign in with a recovery code). Any older codes no longer work.",
                set.codes.len()
            );
            Ok(())
        }
        RecoveryCmd::Status(flag) => {
            let s = client
                .recovery_codes()
                .await
                .map_err(api("could not read your recovery codes"))?;
            if flag.json {
                return print_json(&s);
            }
            println!(
                "{} of {} recovery codes unused (generated {})",
                s.remaining,
                s.total,
                fmt_time(s.generated_at)
            );
            Ok(())
        }
    }
}

pub async fn device(app: &App, cmd: DeviceCmd) -> Result<(), CliError> {
    let client = app.signed_in()?;
    let (code, decision) = match &cmd {
        DeviceCmd::Show { code, .. } => (code, None),
        DeviceCmd::Approve { code } => (code, Some(true)),
        DeviceCmd::Deny { code } => (code, Some(false)),
    };
    let req = match decision {
        None => client.device_request(code).await,
        Some(approve) => client.decide_device(code, approve).await,
    }
    .map_err(api(format!("could not use sign-in code {code}")))?;
    if let DeviceCmd::Show { json, .. } = &cmd
        && json.json
    {
        return print_json(&req);
    }
    println!(
        "{}  {}  {}  from {} ({})",
        req.user_code,
        req.status,
        req.client_name,
        req.ip.as_deref().unwrap_or("unknown address"),
        req.user_agent.as_deref().unwrap_or("unknown client")
    );
    Ok(())
}

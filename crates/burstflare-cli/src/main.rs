//! `burstflare`: the BurstFlare command-line interface.
//!
//! Data goes to stdout (tables, or JSON with `--json`); progress, notes and
//! errors go to stderr. See `burstflare_cli::error` for exit codes.

mod commands;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use burstflare_api::ops::{CreateProbeRequest, HealthState, ProbeStageStatus};
use burstflare_api::{CreateTokenRequest, RegisterRequest, TokenInfo};
use std::sync::Arc;

use burstflare_cli::client::{Client, PersistTokens, SessionTokens};
use burstflare_cli::config::{ConfigDir, DEFAULT_API_URL, normalize_url};
use burstflare_cli::error::CliError;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// BurstFlare: on-demand cloud development environments.
#[derive(Parser)]
#[command(name = "burstflare", version, propagate_version = true)]
struct Cli {
    /// Base URL of the BurstFlare API [default: config.toml's api_url, else http://127.0.0.1:8787]
    #[arg(long, global = true, env = "BURSTFLARE_API_URL")]
    api_url: Option<String>,
    /// Directory of config.toml, credentials.toml and known_hosts [default: ~/.config/burstflare]
    #[arg(long, global = true, env = "BURSTFLARE_CONFIG_DIR")]
    config_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the platform's health: every binding and the schema version.
    Status(JsonFlag),
    /// Show who you are signed in as.
    Whoami(JsonFlag),
    /// Sign in: approve this computer from a browser where you are signed in
    /// (or use a recovery code with --email and --recovery-code).
    Login(commands::identity::LoginArgs),
    /// Sign out (the session ends on the server too) and forget the credentials.
    Logout,
    /// Accounts, sign-in sessions, passkeys, recovery codes and tokens.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Team workspaces, members, roles and invites.
    #[command(subcommand)]
    Workspace(commands::workspaces::WorkspaceCmd),
    /// Templates: manifests, versions and bundles.
    #[command(subcommand)]
    Template(commands::templates::TemplateCmd),
    /// Template builds: start, follow, logs, artifacts, retries.
    #[command(subcommand)]
    Build(commands::builds::BuildCmd),
    /// Releases: promote builds, roll back.
    #[command(subcommand)]
    Release(commands::builds::ReleaseCmd),
    /// A workspace's audit log.
    #[command(subcommand)]
    Audit(commands::workspaces::AuditCmd),
    /// Show or change the CLI's settings (`config.toml`).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Development sessions: create, start, stop, restart, sleep, delete, events.
    #[command(subcommand)]
    Session(commands::sessions::SessionCmd),
    /// Snapshots of a session's persisted paths: create, list, restore, delete.
    #[command(subcommand)]
    Snapshot(commands::snapshots::SnapshotCmd),
    /// Your SSH public keys, installed in every session you start.
    #[command(subcommand)]
    SshKey(commands::sessions::SshKeyCmd),
    /// Open an SSH connection to a session (runs the system `ssh`).
    Ssh(commands::sessions::SshArgs),
    /// Write `Host bf-<session>` entries into ~/.ssh/config (a managed block).
    ConfigSsh(commands::sessions::ConfigSshArgs),
    /// Run a diagnostics probe through every platform binding and wait for it.
    Diagnose {
        /// Also route a queue message to the dead-letter queue.
        #[arg(long)]
        dead_letter: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Create an account and its personal workspace, and sign in.
    Register {
        /// Your email address.
        #[arg(long)]
        email: String,
        /// The name other people see.
        #[arg(long)]
        name: String,
        /// A Turnstile token, where the deployment requires one (the web sign-up page solves the challenge).
        #[arg(long, env = "BURSTFLARE_TURNSTILE_TOKEN")]
        turnstile_token: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Personal access tokens for automation.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Where you are signed in; sign one out.
    #[command(subcommand)]
    Sessions(commands::identity::SessionsCmd),
    /// Sign out everywhere: every session and every token (including this one).
    LogoutAll(JsonFlag),
    /// Your passkeys.
    #[command(subcommand)]
    Passkeys(commands::identity::PasskeysCmd),
    /// One-time recovery codes, for when passkeys are lost.
    #[command(subcommand)]
    RecoveryCodes(commands::identity::RecoveryCmd),
    /// Approve or deny a `burstflare login` from another device.
    #[command(subcommand)]
    Device(commands::identity::DeviceCmd),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the settings in effect and where they come from.
    Show(JsonFlag),
    /// Set the API URL used when neither --api-url nor BURSTFLARE_API_URL is given.
    SetApiUrl {
        /// For example https://app.burstflare.dev
        url: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed once, on stdout.
    Create {
        /// A label to recognise the token by.
        #[arg(long)]
        name: String,
        /// Days until the token expires (1-366); without it, it never expires.
        #[arg(long)]
        expires_in_days: Option<u32>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List your tokens (never their secrets).
    List(JsonFlag),
    /// Revoke a token; requests using it fail from then on.
    Revoke {
        /// The token id (`tok_…`), as shown by `burstflare auth token list`.
        id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Args, Clone, Copy)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub struct App {
    pub dir: ConfigDir,
    pub api_url: String,
}

impl App {
    fn new(
        api_url: Option<String>,
        config_dir: Option<std::path::PathBuf>,
    ) -> Result<Self, CliError> {
        let dir = match config_dir {
            Some(dir) => ConfigDir::at(dir),
            None => ConfigDir::discover()?,
        };
        let api_url = match api_url {
            Some(url) => url,
            None => dir
                .load_config()?
                .api_url
                .unwrap_or_else(|| DEFAULT_API_URL.to_owned()),
        };
        Ok(Self {
            dir,
            api_url: normalize_url(&api_url),
        })
    }

    fn anonymous(&self) -> Result<Client, CliError> {
        Client::new(&self.api_url, None)
            .map_err(|e| CliError::from_client("cannot use the configured API URL", e))
    }

    /// A client with the token from `BURSTFLARE_TOKEN`, or the credentials
    /// file's session (refreshed as needed, and saved back) or token.
    pub fn signed_in(&self) -> Result<Client, CliError> {
        if let Some(t) = std::env::var("BURSTFLARE_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
        {
            return Ok(self.anonymous()?.with_token(Some(t)));
        }
        let Some(host) = self
            .dir
            .host(&self.api_url)?
            .filter(|h| !h.token.is_empty())
        else {
            return Err(CliError::user(format!("not signed in to {}", self.api_url)).hint(
                "run `burstflare login` (or `burstflare auth register --email you@example.com --name \"Your Name\"`), or set BURSTFLARE_TOKEN",
            ));
        };
        match host.session() {
            Some(tokens) => {
                let dir = self.dir.clone();
                let url = self.api_url.clone();
                let persist: PersistTokens = Arc::new(move |t: &SessionTokens| {
                    if let Err(e) = dir.save_session(&url, t, None) {
                        eprintln!(
                            "warning: could not save refreshed credentials: {}",
                            e.render()
                        );
                    }
                });
                Ok(self.anonymous()?.with_session(tokens, Some(persist)))
            }
            None => Ok(self.anonymous()?.with_token(Some(host.token))),
        }
    }
}

pub fn print_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::unexpected("cannot encode JSON output").cause(e.to_string()))?;
    println!("{text}");
    Ok(())
}

pub fn fmt_time(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".to_owned())
}

/// Prints rows as left-aligned columns.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn token_state(t: &TokenInfo) -> &'static str {
    let now = OffsetDateTime::now_utc();
    if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let app = App::new(cli.api_url, cli.config_dir)?;
    match cli.command {
        Command::Status(flag) => status(&app, flag).await,
        Command::Whoami(flag) => {
            let me = app
                .signed_in()?
                .me()
                .await
                .map_err(|e| CliError::from_client("could not fetch your account", e))?;
            if flag.json {
                return print_json(&me);
            }
            println!(
                "{} <{}> ({})",
                me.user.display_name, me.user.email, me.user.id
            );
            match (&me.session, &me.token) {
                (Some(s), _) => println!(
                    "API: {}  session: {} ({}, signed in by {})",
                    app.api_url,
                    s.id,
                    s.client.as_str(),
                    s.method
                ),
                (None, Some(t)) => {
                    println!("API: {}  token: {} ({})", app.api_url, t.prefix, t.name)
                }
                (None, None) => println!("API: {}", app.api_url),
            }
            print_table(
                &["WORKSPACE", "SLUG", "KIND", "ROLE"],
                &me.workspaces
                    .iter()
                    .map(|w| {
                        vec![
                            w.name.clone(),
                            w.slug.clone(),
                            format!("{:?}", w.kind).to_lowercase(),
                            w.role.as_str().into(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
        Command::Auth(AuthCommand::Register {
            email,
            name,
            turnstile_token,
            json,
        }) => {
            let client = app.anonymous()?;
            let resp = client
                .register(&RegisterRequest {
                    email: email.clone(),
                    display_name: name,
                    turnstile_token,
                    client: burstflare_api::identity::ClientKind::Cli,
                })
                .await
                .map_err(|e| CliError::from_client(format!("could not register {email}"), e))?;
            let Some(creds) = &resp.credentials else {
                return Err(CliError::unexpected(
                    "the server answered the registration without tokens",
                ));
            };
            let path = app.dir.save_session(
                &app.api_url,
                &SessionTokens::from_credentials(creds),
                Some(&resp.user.email),
            )?;
            if json.json {
                return print_json(&resp);
            }
            println!("{}", resp.user.id);
            eprintln!(
                "Registered {} with personal workspace {}.",
                resp.user.email, resp.workspace.slug
            );
            eprintln!(
                "Signed in to {}; token saved to {}.",
                app.api_url,
                path.display()
            );
            Ok(())
        }
        Command::Auth(AuthCommand::Token(cmd)) => token(&app, cmd).await,
        Command::Auth(AuthCommand::Sessions(cmd)) => commands::identity::sessions(&app, cmd).await,
        Command::Auth(AuthCommand::LogoutAll(flag)) => {
            commands::identity::logout_all(&app, flag).await
        }
        Command::Auth(AuthCommand::Passkeys(cmd)) => commands::identity::passkeys(&app, cmd).await,
        Command::Auth(AuthCommand::RecoveryCodes(cmd)) => {
            commands::identity::recovery(&app, cmd).await
        }
        Command::Auth(AuthCommand::Device(cmd)) => commands::identity::device(&app, cmd).await,
        Command::Login(args) => commands::identity::login(&app, args).await,
        Command::Logout => commands::identity::logout(&app).await,
        Command::Workspace(cmd) => commands::workspaces::workspace(&app, cmd).await,
        Command::Audit(cmd) => commands::workspaces::audit(&app, cmd).await,
        Command::Template(cmd) => commands::templates::template(&app, cmd).await,
        Command::Build(cmd) => commands::builds::build(&app, cmd).await,
        Command::Release(cmd) => commands::builds::release(&app, cmd).await,
        Command::Snapshot(cmd) => commands::snapshots::snapshot(&app, cmd).await,
        Command::Config(ConfigCommand::Show(flag)) => {
            let signed_in = app.dir.token_for(&app.api_url)?.is_some();
            let shown = serde_json::json!({
                "api_url": app.api_url,
                "config_file": app.dir.config_path(),
                "credentials_file": app.dir.credentials_path(),
                "signed_in": signed_in,
            });
            if flag.json {
                return print_json(&shown);
            }
            println!("api_url           {}", app.api_url);
            println!("config file       {}", app.dir.config_path().display());
            println!("credentials file  {}", app.dir.credentials_path().display());
            println!("signed in         {}", if signed_in { "yes" } else { "no" });
            Ok(())
        }
        Command::Config(ConfigCommand::SetApiUrl { url }) => {
            // Validate before saving, so a typo is caught now rather than on the next command.
            Client::new(&url, None)
                .map_err(|e| CliError::from_client(format!("cannot use {url:?}"), e))?;
            let mut config = app.dir.load_config()?;
            config.api_url = Some(normalize_url(&url));
            let path = app.dir.save_config(&config)?;
            eprintln!(
                "API URL set to {} in {}.",
                normalize_url(&url),
                path.display()
            );
            Ok(())
        }
        Command::Diagnose {
            dead_letter,
            timeout,
            json,
        } => diagnose(&app, dead_letter, timeout, json.json).await,
        Command::Session(cmd) => commands::sessions::session(&app, cmd).await,
        Command::SshKey(cmd) => commands::sessions::ssh_key(&app, cmd).await,
        Command::Ssh(args) => commands::sessions::ssh_command(&app, args).await,
        Command::ConfigSsh(args) => commands::sessions::config_ssh(&app, args).await,
    }
}

async fn status(app: &App, flag: JsonFlag) -> Result<(), CliError> {
    let report = app
        .anonymous()?
        .health()
        .await
        .map_err(|e| CliError::from_client(format!("could not check {}", app.api_url), e))?;
    if flag.json {
        print_json(&report.health)?;
    } else {
        let h = &report.health;
        let state = if h.status == HealthState::Ok {
            "healthy"
        } else {
            "UNHEALTHY"
        };
        println!(
            "{} — {state} (environment {}, version {})",
            app.api_url, h.environment, h.version
        );
        println!("schema: {}", h.schema.explain());
        print_table(
            &["BINDING", "KIND", "STATUS", "DETAIL"],
            &h.bindings
                .iter()
                .map(|b| {
                    let kind = serde_json::to_value(b.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned));
                    vec![
                        b.name.clone(),
                        kind.unwrap_or_default(),
                        if b.ok { "ok" } else { "FAIL" }.into(),
                        b.detail.clone(),
                    ]
                })
                .collect::<Vec<_>>(),
        );
        match &h.last_reconcile {
            Some(r) => println!(
                "last reconcile: {} ({})",
                fmt_time(Some(r.finished_at)),
                r.trigger
            ),
            None => println!("last reconcile: never"),
        }
    }
    if report.healthy {
        Ok(())
    } else {
        Err(CliError::unhealthy(format!("{} is unhealthy", app.api_url))
            .cause(report.problem.unwrap_or_default())
            .hint("see docs/runbooks.md, \"Health check failing\""))
    }
}

async fn token(app: &App, cmd: TokenCommand) -> Result<(), CliError> {
    let client = app.signed_in()?;
    match cmd {
        TokenCommand::Create {
            name,
            expires_in_days,
            json,
        } => {
            let issued = client
                .create_token(&CreateTokenRequest {
                    name: name.clone(),
                    expires_in_days,
                })
                .await
                .map_err(|e| {
                    CliError::from_client(format!("could not create token {name:?}"), e)
                })?;
            if json.json {
                return print_json(&issued);
            }
            println!("{}", issued.token);
            eprintln!(
                "Created token {} ({}), expires {}. Store it now: it is not shown again.",
                issued.info.id,
                issued.info.name,
                fmt_time(issued.info.expires_at)
            );
            Ok(())
        }
        TokenCommand::List(flag) => {
            let tokens = client
                .all_tokens()
                .await
                .map_err(|e| CliError::from_client("could not list tokens", e))?;
            if flag.json {
                return print_json(&tokens);
            }
            if tokens.is_empty() {
                eprintln!(
                    "No personal access tokens. Create one with `burstflare auth token create --name ci`."
                );
                return Ok(());
            }
            print_table(
                &[
                    "ID",
                    "NAME",
                    "PREFIX",
                    "STATE",
                    "CREATED",
                    "EXPIRES",
                    "LAST USED",
                ],
                &tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.to_string(),
                            t.name.clone(),
                            t.prefix.clone(),
                            token_state(t).into(),
                            fmt_time(Some(t.created_at)),
                            fmt_time(t.expires_at),
                            fmt_time(t.last_used_at),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
        TokenCommand::Revoke { id, json } => {
            let info = client
                .revoke_token(&id)
                .await
                .map_err(|e| CliError::from_client(format!("could not revoke token {id}"), e))?;
            if json.json {
                return print_json(&info);
            }
            eprintln!("Revoked token {} ({}).", info.id, info.name);
            Ok(())
        }
    }
}

async fn diagnose(app: &App, dead_letter: bool, timeout: u64, json: bool) -> Result<(), CliError> {
    let client = app.signed_in()?;
    let mut probe = client
        .create_probe(&CreateProbeRequest { dead_letter })
        .await
        .map_err(|e| CliError::from_client("could not start a diagnostics probe", e))?;
    eprintln!("Probe {} started; waiting for every stage…", probe.id);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut reported = Vec::new();
    loop {
        for stage in &probe.stages {
            if stage.status != ProbeStageStatus::Pending && !reported.contains(&stage.name) {
                reported.push(stage.name);
                let name = serde_json::to_value(stage.name)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned));
                eprintln!(
                    "  ✓ {:<18} {}",
                    name.unwrap_or_default(),
                    stage.detail.as_deref().unwrap_or("")
                );
            }
        }
        if probe.complete || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        probe = client
            .get_probe(probe.id.as_str())
            .await
            .map_err(|e| CliError::from_client("could not read the diagnostics probe", e))?;
    }
    if json {
        print_json(&probe)?;
    }
    if probe.complete {
        eprintln!("All stages passed.");
        Ok(())
    } else {
        let pending: Vec<String> = probe
            .stages
            .iter()
            .filter(|s| s.status == ProbeStageStatus::Pending)
            .filter_map(|s| {
                serde_json::to_value(s.name)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
            })
            .collect();
        Err(CliError::unhealthy(format!(
            "probe {} did not complete within {timeout}s",
            probe.id
        ))
        .cause(format!("still pending: {}", pending.join(", ")))
        .hint(
            "check the Worker's logs (`wrangler tail` in production) for queue or workflow errors",
        ))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprint!(
                "{}",
                CliError::unexpected("cannot start the async runtime")
                    .cause(e.to_string())
                    .render()
            );
            return ExitCode::from(70);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let text = err.render();
            let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            if color {
                eprint!("{}", text.replacen("error:", "\x1b[1;31merror:\x1b[0m", 1));
            } else {
                eprint!("{text}");
            }
            ExitCode::from(err.kind.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks the whole command tree (unique names, valid defaults…).
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}

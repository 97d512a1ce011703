//! `burstflare session …`, `burstflare ssh-key …`, `burstflare ssh` and
//! `burstflare config-ssh`.
//!
//! Sessions are named on the command line by id (`ses_…`) or by name; names
//! are resolved through the API's `?name=` filter.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use burstflare_api::sessions::{AddSshKeyRequest, CreateSessionRequest, Session};
use burstflare_cli::client::Client;
use burstflare_cli::error::CliError;
use burstflare_cli::ssh;
use burstflare_domain::{InstanceType, SessionCommand, SessionState};
use clap::{Args, Subcommand};

use super::api;
use crate::{App, JsonFlag, fmt_time, print_json, print_table};

#[derive(Subcommand)]
pub enum SessionCmd {
    /// Create a session (from a template's release with --template, else the default environment).
    Create {
        /// Session name: a-z, 0-9 and dashes, starting with a letter (used in `ssh bf-<name>`).
        name: String,
        /// small, medium or large.
        #[arg(long)]
        instance_type: Option<InstanceType>,
        /// Environment variable for the session, KEY=VALUE (repeatable).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Path kept across stops (repeatable; default /home/dev).
        #[arg(long = "persist", value_name = "PATH")]
        persist: Vec<String>,
        /// Start it right away and wait until it is running.
        #[arg(long)]
        start: bool,
        /// Boot this template's active release (name or id).
        #[arg(long)]
        template: Option<String>,
        /// Boot this release of the template instead (`rel_…`).
        #[arg(long, requires = "template")]
        release: Option<String>,
        #[command(flatten)]
        ws: super::workspaces::WorkspaceFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List your sessions.
    List(JsonFlag),
    /// Show one session.
    Get(SessionArg),
    /// Start a session and wait until it is running.
    Start(SessionArg),
    /// Stop a session (its container is removed).
    Stop(SessionArg),
    /// Restart a session in a fresh container (its persisted paths are
    /// snapshotted first and restored).
    Restart(SessionArg),
    /// Put a running session to sleep: snapshot, remove the container. Any
    /// SSH access (or `session start`) wakes it.
    Sleep(SessionArg),
    /// Delete a session and its container.
    Delete(SessionArg),
    /// Show a session's lifecycle events.
    Events(SessionArg),
    /// Show why a session stayed awake or went to sleep, newest first.
    Activity(SessionArg),
}

#[derive(Args)]
pub struct SessionArg {
    /// Session name or id.
    session: String,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Subcommand)]
pub enum SshKeyCmd {
    /// Register an OpenSSH public key (a `.pub` file, or `-` for stdin).
    Add {
        /// Path to the public key file.
        file: PathBuf,
        /// A label (default: the key's comment).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List your SSH keys.
    List(JsonFlag),
    /// Remove a key by id (`key_…`) or fingerprint (`SHA256:…`).
    Remove { key: String },
}

/// `burstflare ssh`.
#[derive(Args)]
pub struct SshArgs {
    /// Session name or id.
    session: String,
    /// Act as ssh's ProxyCommand: bridge stdin/stdout to the session's sshd.
    #[arg(long)]
    stdio: bool,
    /// With --stdio: the caller pinned the host keys just now (`burstflare ssh`
    /// does), so connect without looking the session up again.
    #[arg(long, hide = true, requires = "stdio")]
    pinned: bool,
    /// Identity file passed to ssh (`ssh -i`).
    #[arg(short = 'i', long)]
    identity: Option<PathBuf>,
    /// Extra ssh option (`ssh -o`), repeatable.
    #[arg(short = 'o', long = "option", value_name = "OPTION")]
    options: Vec<String>,
    /// Command to run instead of a login shell (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
}

/// `burstflare config-ssh`.
#[derive(Args)]
pub struct ConfigSshArgs {
    /// The SSH config file to manage.
    #[arg(long, env = "BURSTFLARE_SSH_CONFIG", default_value_os_t = default_ssh_config())]
    ssh_config: PathBuf,
    /// Print what would be written instead of writing it.
    #[arg(long)]
    dry_run: bool,
}

fn default_ssh_config() -> PathBuf {
    dirs::home_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".ssh/config")
}

/// Finds a session by id or name.
pub async fn resolve(client: &Client, reference: &str) -> Result<Session, CliError> {
    if reference.starts_with("ses_") {
        return client
            .get_session(reference)
            .await
            .map_err(api(format!("could not find session {reference}")));
    }
    let page = client
        .list_sessions(Some(reference), None)
        .await
        .map_err(api(format!("could not find session {reference:?}")))?;
    match page.items.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(CliError::user(format!("no session named {reference:?}"))
            .hint("list your sessions with `burstflare session list`")),
        many => Err(CliError::user(format!(
            "{} sessions are named {reference:?} (in different workspaces)",
            many.len()
        ))
        .hint("use the session id (`ses_…`) instead")),
    }
}

fn print_session(s: &Session) {
    println!("{} ({})", s.name, s.id);
    println!(
        "  state          {} (desired {})",
        s.state,
        s.desired_state.as_str()
    );
    println!(
        "  runtime        {} {}",
        s.runtime_status.as_deref().unwrap_or("-"),
        s.runtime_state.as_deref().unwrap_or("")
    );
    println!("  generation     {}", s.generation);
    if let Some(reason) = &s.failure_reason {
        println!("  failure        {reason}");
    }
    println!(
        "  instance       {}",
        serde_json::to_value(s.spec.instance_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    );
    println!("  image          {}", s.spec.image);
    println!("  persisted      {}", s.spec.persisted_paths.join(", "));
    println!("  ssh            burstflare ssh {}", s.name);
    println!("  created        {}", fmt_time(Some(s.created_at)));
    println!("  updated        {}", fmt_time(Some(s.updated_at)));
}

pub async fn session(app: &App, cmd: SessionCmd) -> Result<(), CliError> {
    let client = app.signed_in()?;
    match cmd {
        SessionCmd::Create {
            name,
            instance_type,
            env,
            persist,
            start,
            template,
            release,
            ws,
            json,
        } => {
            let workspace =
                super::workspaces::resolve(app, &client, ws.workspace.as_deref()).await?;
            let mut vars = BTreeMap::new();
            for pair in env {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err(CliError::user(format!("--env {pair:?} must be KEY=VALUE")));
                };
                vars.insert(k.to_owned(), v.to_owned());
            }
            if start {
                eprintln!("Creating and starting {name}…");
            }
            let s = client
                .create_session(&CreateSessionRequest {
                    name: name.clone(),
                    workspace_id: Some(workspace.id.clone()),
                    instance_type,
                    env: vars,
                    persisted_paths: (!persist.is_empty()).then_some(persist),
                    start,
                    template,
                    release_id: release,
                })
                .await
                .map_err(api(format!("could not create session {name:?}")))?;
            if json.json {
                return print_json(&s);
            }
            println!("{}", s.id);
            eprintln!("Session {} is {}.", s.name, s.state);
            if s.state == SessionState::Running {
                eprintln!("Connect with `burstflare ssh {}`.", s.name);
            }
            Ok(())
        }
        SessionCmd::List(flag) => {
            let sessions = client
                .all_sessions()
                .await
                .map_err(api("could not list sessions"))?;
            if flag.json {
                return print_json(&sessions);
            }
            if sessions.is_empty() {
                eprintln!(
                    "No sessions. Create one with `burstflare session create my-box --start`."
                );
                return Ok(());
            }
            print_table(
                &["NAME", "ID", "STATE", "RUNTIME", "GEN", "UPDATED"],
                &sessions
                    .iter()
                    .map(|s| {
                        vec![
                            s.name.clone(),
                            s.id.to_string(),
                            s.state.to_string(),
                            s.runtime_status.clone().unwrap_or_else(|| "-".into()),
                            s.generation.to_string(),
                            fmt_time(Some(s.updated_at)),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
        SessionCmd::Get(arg) => {
            let s = resolve(&client, &arg.session).await?;
            if arg.json.json {
                return print_json(&s);
            }
            print_session(&s);
            Ok(())
        }
        SessionCmd::Start(arg) => lifecycle(&client, arg, SessionCommand::Start).await,
        SessionCmd::Stop(arg) => lifecycle(&client, arg, SessionCommand::Stop).await,
        SessionCmd::Restart(arg) => lifecycle(&client, arg, SessionCommand::Restart).await,
        SessionCmd::Sleep(arg) => lifecycle(&client, arg, SessionCommand::Sleep).await,
        SessionCmd::Delete(arg) => lifecycle(&client, arg, SessionCommand::Delete).await,
        SessionCmd::Activity(arg) => {
            let s = resolve(&client, &arg.session).await?;
            let log = client
                .session_activity(s.id.as_str())
                .await
                .map_err(api(format!("could not read the activity of {}", s.name)))?;
            if arg.json.json {
                return print_json(&log);
            }
            print_table(
                &["AT", "KIND", "DETAIL"],
                &log.iter()
                    .map(|e| vec![fmt_time(Some(e.at)), e.kind.clone(), e.detail.clone()])
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
        SessionCmd::Events(arg) => {
            let s = resolve(&client, &arg.session).await?;
            let mut events = Vec::new();
            let mut after = None;
            loop {
                let page = client
                    .session_events(s.id.as_str(), after)
                    .await
                    .map_err(api(format!("could not read the events of {}", s.name)))?;
                after = page.next_cursor.as_deref().and_then(|c| c.parse().ok());
                events.extend(page.items);
                if after.is_none() {
                    break;
                }
            }
            if arg.json.json {
                return print_json(&events);
            }
            print_table(
                &["SEQ", "AT", "FROM", "TO", "COMMAND", "ACTOR", "REASON"],
                &events
                    .iter()
                    .map(|e| {
                        vec![
                            e.seq.to_string(),
                            fmt_time(Some(e.at)),
                            e.from_state.to_string(),
                            e.to_state.to_string(),
                            e.command.clone().unwrap_or_else(|| "-".into()),
                            e.actor.clone(),
                            e.reason.clone(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
    }
}

async fn lifecycle(
    client: &Client,
    arg: SessionArg,
    command: SessionCommand,
) -> Result<(), CliError> {
    let s = resolve(client, &arg.session).await?;
    let verb = match command {
        SessionCommand::Start => "Starting",
        SessionCommand::Stop => "Stopping",
        SessionCommand::Restart => "Restarting",
        SessionCommand::Delete => "Deleting",
        SessionCommand::Sleep => "Putting to sleep",
    };
    eprintln!("{verb} {}…", s.name);
    let result = client
        .session_command(s.id.as_str(), command)
        .await
        .map_err(api(format!("could not {command} session {}", s.name)))?;
    if arg.json.json {
        return print_json(&result);
    }
    let s = &result.session;
    if result.already_done {
        eprintln!("Session {} is already {}.", s.name, s.state);
    } else {
        eprintln!("Session {} is {}.", s.name, s.state);
    }
    Ok(())
}

pub async fn ssh_key(app: &App, cmd: SshKeyCmd) -> Result<(), CliError> {
    let client = app.signed_in()?;
    match cmd {
        SshKeyCmd::Add { file, name, json } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).map_err(|e| {
                    CliError::user("cannot read the key from stdin").cause(e.to_string())
                })?
            } else {
                std::fs::read_to_string(&file).map_err(|e| {
                    CliError::user(format!("cannot read {}", file.display())).cause(e.to_string())
                })?
            };
            if text.contains("PRIVATE KEY") {
                return Err(
                    CliError::user(format!("{} is a private key", file.display()))
                        .hint("add the public half: the `.pub` file next to it"),
                );
            }
            let key = client
                .add_ssh_key(&AddSshKeyRequest {
                    name,
                    public_key: text,
                })
                .await
                .map_err(api("could not add the SSH key"))?;
            if json.json {
                return print_json(&key);
            }
            println!("{}", key.id);
            eprintln!(
                "Added {} key {} ({}); sessions started from now on accept it.",
                key.algorithm, key.name, key.fingerprint
            );
            Ok(())
        }
        SshKeyCmd::List(flag) => {
            let keys = client
                .list_ssh_keys()
                .await
                .map_err(api("could not list SSH keys"))?;
            if flag.json {
                return print_json(&keys);
            }
            if keys.is_empty() {
                eprintln!(
                    "No SSH keys. Add one with `burstflare ssh-key add ~/.ssh/id_ed25519.pub`."
                );
                return Ok(());
            }
            print_table(
                &["ID", "NAME", "TYPE", "FINGERPRINT", "ADDED"],
                &keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.to_string(),
                            k.name.clone(),
                            k.algorithm.clone(),
                            k.fingerprint.clone(),
                            fmt_time(Some(k.created_at)),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
        SshKeyCmd::Remove { key } => {
            let id = if key.starts_with("SHA256:") {
                let keys = client
                    .list_ssh_keys()
                    .await
                    .map_err(api("could not list SSH keys"))?;
                keys.into_iter()
                    .find(|k| k.fingerprint == key)
                    .map(|k| k.id.to_string())
                    .ok_or_else(|| CliError::user(format!("no SSH key with fingerprint {key}")))?
            } else {
                key.clone()
            };
            client
                .remove_ssh_key(&id)
                .await
                .map_err(api(format!("could not remove SSH key {key}")))?;
            eprintln!("Removed SSH key {id}.");
            Ok(())
        }
    }
}

fn known_hosts_path(app: &App) -> PathBuf {
    app.dir.dir().join("known_hosts")
}

/// The `ProxyCommand` line that reaches `session_id` through this CLI.
fn proxy_command(app: &App, session_id: &str) -> Result<String, CliError> {
    let exe = std::env::current_exe().map_err(|e| {
        CliError::unexpected("cannot locate the burstflare binary").cause(e.to_string())
    })?;
    // Explicit API URL and config dir: ssh runs the proxy without our environment.
    let dir = std::path::absolute(app.dir.dir()).unwrap_or_else(|_| app.dir.dir().to_owned());
    Ok(format!(
        "{} --api-url {} --config-dir {} ssh --stdio {session_id}",
        ssh::quote(&exe.to_string_lossy()),
        app.api_url,
        ssh::quote(&dir.to_string_lossy()),
    ))
}

fn not_running(s: &Session) -> CliError {
    let hint = match s.state {
        SessionState::Starting => "it is starting; try again in a moment".to_owned(),
        _ => format!("start it with `burstflare session start {}`", s.name),
    };
    CliError::user(format!("session {} is {}", s.name, s.state)).hint(hint)
}

/// Starts a sleeping (or stopped) session for an SSH connection, telling
/// the user on stderr what happens: `waking s1… restoring 120 MB… ready`.
async fn wake(client: &Client, s: &Session) -> Result<Session, CliError> {
    use std::io::Write as _;
    let mut err = std::io::stderr();
    let _ = write!(err, "waking {}…", s.name);
    let _ = err.flush();
    if let Ok(snapshots) = client.snapshots(s.id.as_str()).await
        && let Some(latest) = snapshots.iter().find(|x| x.state == "ready")
    {
        let _ = write!(err, " restoring {}…", human_bytes(latest.bytes));
        let _ = err.flush();
    }
    let result = client
        .session_command(s.id.as_str(), SessionCommand::Start)
        .await;
    match result {
        Ok(r) => {
            let _ = writeln!(err, " ready");
            Ok(r.session)
        }
        Err(e) => {
            let _ = writeln!(err);
            Err(api(format!("could not wake session {}", s.name))(e))
        }
    }
}

/// `120 MB`, `4.2 kB`: decimal units, as `ls -h --si` prints them.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 || value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub async fn ssh_command(app: &App, args: SshArgs) -> Result<(), CliError> {
    let client = app.signed_in()?;
    if args.stdio && args.pinned && args.session.starts_with("ses_") {
        let token = client
            .fresh_token()
            .await
            .map_err(api("could not refresh your sign-in"))?
            .unwrap_or_default();
        let label = format!("session {}", args.session);
        return ssh::stdio_proxy(&client.ssh_ws_url(&args.session), &token, &label).await;
    }
    let mut session = resolve(&client, &args.session).await?;
    if matches!(
        session.state,
        SessionState::Sleeping | SessionState::Stopped
    ) {
        session = wake(&client, &session).await?;
    }
    if session.state != SessionState::Running {
        return Err(not_running(&session));
    }
    ssh::pin_host_keys(&known_hosts_path(app), &session)?;
    if args.stdio {
        let token = client
            .fresh_token()
            .await
            .map_err(api("could not refresh your sign-in"))?
            .unwrap_or_default();
        let label = format!("session {}", session.name);
        return ssh::stdio_proxy(&client.ssh_ws_url(session.id.as_str()), &token, &label).await;
    }
    let ssh_bin = std::env::var("BURSTFLARE_SSH").unwrap_or_else(|_| "ssh".into());
    let mut cmd = Command::new(&ssh_bin);
    cmd.arg("-o")
        .arg(format!(
            "ProxyCommand={} --pinned",
            proxy_command(app, session.id.as_str())?
        ))
        .arg("-o")
        .arg(format!("HostKeyAlias={}", ssh::key_alias(&session)))
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            known_hosts_path(app).display()
        ))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "CheckHostIP=no"]);
    if let Some(identity) = &args.identity {
        cmd.arg("-i").arg(identity);
    }
    for opt in &args.options {
        cmd.arg("-o").arg(opt);
    }
    cmd.arg(format!(
        "{}@{}",
        burstflare_api::runtime::LOGIN_USER,
        ssh::host_alias(&session.name)
    ));
    if !args.command.is_empty() {
        cmd.arg("--").args(&args.command);
    }
    let err = cmd.exec();
    Err(CliError::user(format!("cannot run {ssh_bin}"))
        .cause(err.to_string())
        .hint(
            "install the OpenSSH client (`apt-get install openssh-client`) or set BURSTFLARE_SSH",
        ))
}

pub async fn config_ssh(app: &App, args: ConfigSshArgs) -> Result<(), CliError> {
    let client = app.signed_in()?;
    let sessions = client
        .all_sessions()
        .await
        .map_err(api("could not list sessions"))?;
    let known_hosts = known_hosts_path(app);
    let mut entries = Vec::new();
    for s in &sessions {
        if s.state == SessionState::Running {
            ssh::pin_host_keys(&known_hosts, s)?;
        }
        entries.push(ssh::HostEntry {
            alias: ssh::host_alias(&s.name),
            key_alias: ssh::key_alias(s),
            proxy_command: proxy_command(app, s.id.as_str())?,
        });
    }
    let block = ssh::render_block(&app.api_url, &known_hosts, &entries);
    let old = match std::fs::read_to_string(&args.ssh_config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(
                CliError::user(format!("cannot read {}", args.ssh_config.display()))
                    .cause(e.to_string()),
            );
        }
    };
    let new = ssh::splice_block(&old, &block).map_err(|e| {
        CliError::user(e).hint(format!(
            "fix or remove the BurstFlare lines in {}",
            args.ssh_config.display()
        ))
    })?;
    if args.dry_run {
        print!("{block}");
        return Ok(());
    }
    if new == old {
        eprintln!(
            "{} is up to date ({} sessions).",
            args.ssh_config.display(),
            entries.len()
        );
        return Ok(());
    }
    ssh::write_file(&args.ssh_config, &new, 0o600)?;
    eprintln!(
        "Wrote {} host entries to {}; connect with `ssh bf-<session>`.",
        entries.len(),
        args.ssh_config.display()
    );
    Ok(())
}

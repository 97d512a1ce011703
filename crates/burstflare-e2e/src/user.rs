//! A test user on a stack: their own CLI config dir, SSH key pair and SSH
//! config file, plus helpers to run the real `burstflare`, `ssh` and `scp`
//! binaries as them without blocking the async runtime.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, ensure};
use burstflare_api::sessions::{CreateSessionRequest, Session};
use burstflare_cli::client::{Client, SessionTokens};
use burstflare_cli::config::ConfigDir;
use burstflare_domain::SessionState;

use crate::stack::{Stack, unique};

/// A user with their own config dir, SSH key pair and SSH config file.
pub struct User {
    pub home: tempfile::TempDir,
    pub client: Client,
    pub user_id: String,
    pub email: String,
    pub url: String,
    pub cli: PathBuf,
}

impl User {
    pub async fn new(stack: &Stack, name: &str) -> Result<Self> {
        let home = tempfile::tempdir()?;
        let (resp, client) = stack.register(name).await?;
        let user = Self {
            home,
            client,
            user_id: resp.user.id.to_string(),
            email: resp.user.email.clone(),
            url: stack.url.clone(),
            cli: stack.tools.cli.clone(),
        };
        // The CLI finds the session in its credentials file, as after `auth register`.
        let creds = resp
            .credentials
            .as_ref()
            .context("registration returned no credentials")?;
        ConfigDir::at(user.config_dir()).save_session(
            &stack.url,
            &SessionTokens::from_credentials(creds),
            Some(&resp.user.email),
        )?;
        let keygen = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "e2e@burstflare",
                "-f",
            ])
            .arg(user.key())
            .output()
            .context("ssh-keygen")?;
        ensure!(keygen.status.success(), "ssh-keygen failed");
        Ok(user)
    }

    pub fn config_dir(&self) -> PathBuf {
        self.home.path().join("config")
    }

    pub fn key(&self) -> PathBuf {
        self.home.path().join("id_ed25519")
    }

    pub fn ssh_config(&self) -> PathBuf {
        self.home.path().join("ssh_config")
    }

    /// The `burstflare` binary with this user's config.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.cli);
        cmd.args(["--api-url", &self.url])
            .args(args)
            .env("BURSTFLARE_CONFIG_DIR", self.config_dir())
            .env("BURSTFLARE_SSH_CONFIG", self.ssh_config())
            .env_remove("BURSTFLARE_TOKEN")
            .env_remove("BURSTFLARE_API_URL")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// Plain `ssh` with the config `config-ssh` wrote.
    pub fn ssh(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg(self.ssh_config())
            .arg("-i")
            .arg(self.key())
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=30"])
            .args(args)
            .env("BURSTFLARE_CONFIG_DIR", self.config_dir())
            .stdin(Stdio::null());
        cmd
    }

    pub async fn add_key(&self) -> Result<()> {
        let pubkey = format!("{}.pub", self.key().display());
        ok(run(self.cli(&["ssh-key", "add", &pubkey])).await?)?;
        Ok(())
    }

    /// Creates and starts a session through the API.
    pub async fn running_session(&self, prefix: &str) -> Result<Session> {
        let name = format!("{prefix}-{}", unique().replace('-', ""));
        let s = self
            .client
            .create_session(&CreateSessionRequest {
                name,
                start: true,
                ..Default::default()
            })
            .await?;
        ensure!(s.state == SessionState::Running, "{s:?}");
        Ok(s)
    }
}

/// Runs a blocking command off the async workers.
pub async fn run(mut cmd: Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    tokio::task::spawn_blocking(move || cmd.output())
        .await?
        .with_context(|| format!("cannot run {shown}"))
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn ok(o: Output) -> Result<Output> {
    ensure!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    Ok(o)
}

//! The agent's configuration, read once from the environment at start.
//!
//! The control plane sets the variables of the wire contract
//! (`burstflare_api::runtime::ENV_*`); the `BURSTFLARE_AGENT_*` overrides exist
//! for tests and local runs and are never set in session containers (see the
//! crate documentation for the full list). Parsing is a pure function of a
//! variable lookup so that it is testable without touching the process
//! environment.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use burstflare_api::runtime::{
    AGENT_PORT, ENV_AGENT_PORT, ENV_AGENT_SECRET, ENV_AUTHORIZED_KEYS, ENV_DRAIN_SECS,
    ENV_EDITOR_PORT, ENV_SESSION_ENV, ENV_SESSION_ID, LOGIN_USER, SSH_PORT,
};

use crate::editor::EditorConfig;
use crate::session_env::{self, SessionEnv};

/// Override: the sshd binary (default [`DEFAULT_SSHD`]).
pub const ENV_SSHD: &str = "BURSTFLARE_AGENT_SSHD";
/// Override: the `ssh-keygen` binary (default [`DEFAULT_SSH_KEYGEN`]).
pub const ENV_SSH_KEYGEN: &str = "BURSTFLARE_AGENT_SSH_KEYGEN";
/// Override: where `/ssh` connects (default `127.0.0.1:22`).
pub const ENV_SSH_TARGET: &str = "BURSTFLARE_AGENT_SSH_TARGET";
/// Override: the login user of terminals and `authorized_keys` (default `dev`).
pub const ENV_LOGIN_USER: &str = "BURSTFLARE_AGENT_LOGIN_USER";
/// Override: the shell of terminals when the agent runs it directly (default:
/// the user's shell from the password database, else `/bin/bash`).
pub const ENV_SHELL: &str = "BURSTFLARE_AGENT_SHELL";
/// Override: the directory of the SSH host keys (default [`DEFAULT_HOST_KEY_DIR`]).
pub const ENV_HOST_KEY_DIR: &str = "BURSTFLARE_AGENT_HOST_KEY_DIR";
/// Override: the `authorized_keys` file (default `~<login user>/.ssh/authorized_keys`).
pub const ENV_AUTHORIZED_KEYS_FILE: &str = "BURSTFLARE_AGENT_AUTHORIZED_KEYS_FILE";
/// Override: the pam_env file the session environment goes to (default
/// [`session_env::DEFAULT_ENVIRONMENT_FILE`]).
pub const ENV_ENVIRONMENT_FILE: &str = "BURSTFLARE_AGENT_ENVIRONMENT_FILE";
/// Override: the login-shell script the session environment goes to (default
/// [`session_env::DEFAULT_PROFILE_ENV_FILE`]).
pub const ENV_PROFILE_ENV_FILE: &str = "BURSTFLARE_AGENT_PROFILE_ENV_FILE";
/// Override: the listen address (default `0.0.0.0`).
pub const ENV_LISTEN_ADDR: &str = "BURSTFLARE_AGENT_LISTEN_ADDR";
/// Override: how long a detached terminal's shell is kept, in seconds (default 600).
pub const ENV_TERMINAL_GRACE_SECS: &str = "BURSTFLARE_AGENT_TERMINAL_GRACE_SECS";
/// Override: the code-server binary, absolute (default [`DEFAULT_EDITOR_BIN`]).
pub const ENV_EDITOR_BIN: &str = "BURSTFLARE_AGENT_EDITOR_BIN";

pub const DEFAULT_SSHD: &str = "/usr/sbin/sshd";
pub const DEFAULT_SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";
pub const DEFAULT_HOST_KEY_DIR: &str = "/etc/ssh";
pub const DEFAULT_TERMINAL_GRACE: Duration = Duration::from_secs(600);
/// Where the editor image installs code-server's launcher (`images/editor`).
pub const DEFAULT_EDITOR_BIN: &str = "/usr/local/bin/code-server";

/// Variables that must not leak into the processes the agent starts.
/// (The session environment reaches them as separate variables, or through
/// the files the agent writes.)
pub const PRIVATE_ENV: [&str; 3] = [ENV_AGENT_SECRET, ENV_AUTHORIZED_KEYS, ENV_SESSION_ENV];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{ENV_AGENT_SECRET} is not set; the agent refuses to serve without its secret")]
    MissingSecret,
    #[error("{var}: {value:?} is not {expected}")]
    Invalid {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Everything the agent needs to know; see the crate documentation.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub secret: String,
    /// OpenSSH public keys, one per entry, trimmed, without blank or comment lines.
    pub authorized_keys: Vec<String>,
    pub session_id: Option<String>,
    pub listen: SocketAddr,
    pub sshd: PathBuf,
    pub ssh_keygen: PathBuf,
    pub ssh_target: SocketAddr,
    pub login_user: String,
    pub shell: Option<PathBuf>,
    pub host_key_dir: PathBuf,
    pub authorized_keys_file: Option<PathBuf>,
    /// The session's user environment, filtered (see [`session_env`]).
    pub session_env: SessionEnv,
    pub environment_file: Option<PathBuf>,
    pub profile_env_file: Option<PathBuf>,
    pub terminal_grace: Duration,
    /// How long to wait for a final snapshot after SIGTERM (0: none).
    pub drain: Duration,
    /// The browser editor to supervise; none without [`ENV_EDITOR_PORT`].
    pub editor: Option<EditorConfig>,
}

impl std::fmt::Debug for Config {
    // The secret stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("authorized_keys", &self.authorized_keys.len())
            .field("session_id", &self.session_id)
            .field("listen", &self.listen)
            .field("sshd", &self.sshd)
            .field("ssh_keygen", &self.ssh_keygen)
            .field("ssh_target", &self.ssh_target)
            .field("login_user", &self.login_user)
            .field("shell", &self.shell)
            .field("host_key_dir", &self.host_key_dir)
            .field("authorized_keys_file", &self.authorized_keys_file)
            // Names only: values may be credentials.
            .field("session_env", &self.session_env.keys().collect::<Vec<_>>())
            .field("environment_file", &self.environment_file)
            .field("profile_env_file", &self.profile_env_file)
            .field("terminal_grace", &self.terminal_grace)
            .field("drain", &self.drain)
            .field("editor", &self.editor)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (a variable name → its value).
    /// Empty values count as unset. Problems with the session environment are
    /// logged as warnings and the bad entries dropped; they never fail.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let secret = get(ENV_AGENT_SECRET).ok_or(ConfigError::MissingSecret)?;
        let port = match get(ENV_AGENT_PORT) {
            None => AGENT_PORT,
            Some(v) => v.trim().parse::<u16>().map_err(|_| ConfigError::Invalid {
                var: ENV_AGENT_PORT,
                value: v.clone(),
                expected: "a port number",
            })?,
        };
        let ip = match get(ENV_LISTEN_ADDR) {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(v) => v
                .trim()
                .parse::<IpAddr>()
                .map_err(|_| ConfigError::Invalid {
                    var: ENV_LISTEN_ADDR,
                    value: v.clone(),
                    expected: "an IP address",
                })?,
        };
        let ssh_target = match get(ENV_SSH_TARGET) {
            None => SocketAddr::from((Ipv4Addr::LOCALHOST, SSH_PORT)),
            Some(v) => v
                .trim()
                .parse::<SocketAddr>()
                .map_err(|_| ConfigError::Invalid {
                    var: ENV_SSH_TARGET,
                    value: v.clone(),
                    expected: "an address like 127.0.0.1:22",
                })?,
        };
        let sshd = PathBuf::from(get(ENV_SSHD).unwrap_or_else(|| DEFAULT_SSHD.into()));
        // sshd re-executes itself and refuses to run unless started by absolute path.
        if !sshd.is_absolute() {
            return Err(ConfigError::Invalid {
                var: ENV_SSHD,
                value: sshd.display().to_string(),
                expected: "an absolute path",
            });
        }
        let terminal_grace = match get(ENV_TERMINAL_GRACE_SECS) {
            None => DEFAULT_TERMINAL_GRACE,
            Some(v) => {
                Duration::from_secs(v.trim().parse::<u64>().map_err(|_| ConfigError::Invalid {
                    var: ENV_TERMINAL_GRACE_SECS,
                    value: v.clone(),
                    expected: "a number of seconds",
                })?)
            }
        };
        let drain = match get(ENV_DRAIN_SECS) {
            None => Duration::ZERO,
            Some(v) => {
                Duration::from_secs(v.trim().parse::<u64>().map_err(|_| ConfigError::Invalid {
                    var: ENV_DRAIN_SECS,
                    value: v.clone(),
                    expected: "a number of seconds",
                })?)
            }
        };
        let editor = match get(ENV_EDITOR_PORT) {
            None => None,
            Some(v) => {
                let port = v
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| ConfigError::Invalid {
                        var: ENV_EDITOR_PORT,
                        value: v.clone(),
                        expected: "a port number (1-65535)",
                    })?;
                let program =
                    PathBuf::from(get(ENV_EDITOR_BIN).unwrap_or_else(|| DEFAULT_EDITOR_BIN.into()));
                // It runs through a login shell whose PATH is not the agent's.
                if !program.is_absolute() {
                    return Err(ConfigError::Invalid {
                        var: ENV_EDITOR_BIN,
                        value: program.display().to_string(),
                        expected: "an absolute path",
                    });
                }
                Some(EditorConfig { port, program })
            }
        };
        let session_env = session_env::parse(&get(ENV_SESSION_ENV).unwrap_or_default());
        for problem in &session_env.problems {
            tracing::warn!("{problem}");
        }
        Ok(Self {
            secret,
            authorized_keys: parse_authorized_keys(
                &lookup(ENV_AUTHORIZED_KEYS).unwrap_or_default(),
            ),
            session_id: get(ENV_SESSION_ID).map(|s| s.trim().to_owned()),
            listen: SocketAddr::new(ip, port),
            sshd,
            ssh_keygen: PathBuf::from(
                get(ENV_SSH_KEYGEN).unwrap_or_else(|| DEFAULT_SSH_KEYGEN.into()),
            ),
            ssh_target,
            login_user: get(ENV_LOGIN_USER)
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|| LOGIN_USER.into()),
            shell: get(ENV_SHELL).map(PathBuf::from),
            host_key_dir: PathBuf::from(
                get(ENV_HOST_KEY_DIR).unwrap_or_else(|| DEFAULT_HOST_KEY_DIR.into()),
            ),
            authorized_keys_file: get(ENV_AUTHORIZED_KEYS_FILE).map(PathBuf::from),
            session_env: session_env.vars,
            environment_file: get(ENV_ENVIRONMENT_FILE).map(PathBuf::from),
            profile_env_file: get(ENV_PROFILE_ENV_FILE).map(PathBuf::from),
            terminal_grace,
            drain,
            editor,
        })
    }
}

/// Splits the newline-separated key list: trims each line and drops blank
/// lines, comments and lines with control characters (which could smuggle
/// extra `authorized_keys` lines or options past the control plane).
pub fn parse_authorized_keys(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| !l.chars().any(char::is_control))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn secret_is_required() {
        assert_eq!(config(&[]), Err(ConfigError::MissingSecret));
        assert_eq!(
            config(&[(ENV_AGENT_SECRET, "  ")]),
            Err(ConfigError::MissingSecret)
        );
    }

    #[test]
    fn defaults() {
        let c = config(&[(ENV_AGENT_SECRET, "s3cret")]).unwrap();
        assert_eq!(c.secret, "s3cret");
        assert_eq!(c.listen, "0.0.0.0:7070".parse().unwrap());
        assert_eq!(c.ssh_target, "127.0.0.1:22".parse().unwrap());
        assert_eq!(c.sshd, PathBuf::from("/usr/sbin/sshd"));
        assert_eq!(c.login_user, "dev");
        assert_eq!(c.host_key_dir, PathBuf::from("/etc/ssh"));
        assert_eq!(c.authorized_keys_file, None);
        assert!(c.session_env.is_empty());
        assert_eq!(c.environment_file, None);
        assert_eq!(c.profile_env_file, None);
        assert_eq!(c.terminal_grace, Duration::from_secs(600));
        assert!(c.authorized_keys.is_empty());
        assert_eq!(c.editor, None);
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn overrides_and_errors() {
        let c = config(&[
            (ENV_AGENT_SECRET, "s"),
            (ENV_AGENT_PORT, "8080"),
            (ENV_LISTEN_ADDR, "127.0.0.1"),
            (ENV_SSH_TARGET, "127.0.0.1:2222"),
            (ENV_LOGIN_USER, "alice"),
            (ENV_TERMINAL_GRACE_SECS, "5"),
        ])
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.ssh_target, "127.0.0.1:2222".parse().unwrap());
        assert_eq!(c.login_user, "alice");
        assert_eq!(c.terminal_grace, Duration::from_secs(5));

        let err = config(&[(ENV_AGENT_SECRET, "s"), (ENV_AGENT_PORT, "70000")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "BURSTFLARE_AGENT_PORT: \"70000\" is not a port number"
        );
        let err = config(&[(ENV_AGENT_SECRET, "s"), (ENV_SSHD, "sshd")]).unwrap_err();
        assert!(err.to_string().contains("absolute path"), "{err}");
    }

    #[test]
    fn editor_runs_only_with_a_port() {
        let c = config(&[(ENV_AGENT_SECRET, "s"), (ENV_EDITOR_PORT, " 13337 ")]).unwrap();
        assert_eq!(
            c.editor,
            Some(EditorConfig {
                port: 13337,
                program: PathBuf::from("/usr/local/bin/code-server"),
            })
        );
        let c = config(&[
            (ENV_AGENT_SECRET, "s"),
            (ENV_EDITOR_PORT, "8080"),
            (ENV_EDITOR_BIN, "/opt/fake-code-server"),
        ])
        .unwrap();
        assert_eq!(
            c.editor.map(|e| e.program),
            Some(PathBuf::from("/opt/fake-code-server"))
        );
        // The binary alone does not start an editor.
        let c = config(&[(ENV_AGENT_SECRET, "s"), (ENV_EDITOR_BIN, "/x")]).unwrap();
        assert_eq!(c.editor, None);
        for bad in ["0", "70000", "http"] {
            let err = config(&[(ENV_AGENT_SECRET, "s"), (ENV_EDITOR_PORT, bad)]).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("BURSTFLARE_EDITOR_PORT: {bad:?} is not a port number (1-65535)")
            );
        }
        let err = config(&[
            (ENV_AGENT_SECRET, "s"),
            (ENV_EDITOR_PORT, "13337"),
            (ENV_EDITOR_BIN, "code-server"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("absolute path"), "{err}");
    }

    #[test]
    fn session_env_is_parsed_and_never_fatal() {
        let c = config(&[
            (ENV_AGENT_SECRET, "s"),
            (ENV_SESSION_ENV, r#"{"FOO":"it's","bad name":"x","N":1}"#),
            (ENV_ENVIRONMENT_FILE, "/tmp/environment"),
            (ENV_PROFILE_ENV_FILE, "/tmp/env.sh"),
        ])
        .unwrap();
        assert_eq!(
            c.session_env,
            SessionEnv::from([("FOO".to_owned(), "it's".to_owned())])
        );
        assert_eq!(c.environment_file, Some(PathBuf::from("/tmp/environment")));
        assert_eq!(c.profile_env_file, Some(PathBuf::from("/tmp/env.sh")));
        let debug = format!("{c:?}");
        assert!(debug.contains("FOO") && !debug.contains("it's"), "{debug}");

        let c = config(&[(ENV_AGENT_SECRET, "s"), (ENV_SESSION_ENV, "{not json")]).unwrap();
        assert!(c.session_env.is_empty());
    }

    #[test]
    fn authorized_keys_are_cleaned() {
        let keys = parse_authorized_keys(
            "ssh-ed25519 AAAA1 a@b\r\n\n  # comment\n ssh-rsa AAAA2 c@d \nssh-ed25519 AAAA3\u{1b}x\n",
        );
        assert_eq!(keys, vec!["ssh-ed25519 AAAA1 a@b", "ssh-rsa AAAA2 c@d"]);
    }
}

//! The CLI's files: `config.toml` (settings) and `credentials.toml` (tokens,
//! mode 0600), in `$BURSTFLARE_CONFIG_DIR` or `~/.config/burstflare/`.
//!
//! Credentials are stored per API URL, so one machine can hold a token for a
//! local stack and one for production at the same time.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::client::SessionTokens;
use crate::error::CliError;

/// The API the CLI talks to when nothing else is configured: a local `cargo xtask dev`.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8787";

/// `config.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL of the BurstFlare API (`https://app.burstflare.dev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// `credentials.toml`: a token per API URL.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(default)]
    pub hosts: BTreeMap<String, HostCredentials>,
}

/// What the CLI holds for one API URL: a personal access token (`token`
/// alone), or a signed-in session (`token` is its access token, refreshed
/// with `refresh_token` before `access_expires_at`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostCredentials {
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<i64>,
    /// The workspace commands use by default (`burstflare workspace use`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
}

impl HostCredentials {
    /// The session tokens, when these are a signed-in session's.
    pub fn session(&self) -> Option<SessionTokens> {
        self.refresh_token.as_ref().map(|r| SessionTokens {
            access_token: self.token.clone(),
            access_expires_at: self.access_expires_at,
            refresh_token: r.clone(),
        })
    }
}

/// Where the CLI keeps its files.
#[derive(Debug, Clone)]
pub struct ConfigDir {
    dir: PathBuf,
}

/// Canonical form of an API URL used as the credentials key.
pub fn normalize_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

impl ConfigDir {
    /// `$BURSTFLARE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/burstflare`, else `~/.config/burstflare`.
    pub fn discover() -> Result<Self, CliError> {
        if let Some(dir) = std::env::var_os("BURSTFLARE_CONFIG_DIR").filter(|d| !d.is_empty()) {
            return Ok(Self {
                dir: PathBuf::from(dir),
            });
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| dirs::home_dir().map(|h| h.join(".config")))
            .ok_or_else(|| {
                CliError::user("cannot find a configuration directory")
                    .hint("set BURSTFLARE_CONFIG_DIR or HOME")
            })?;
        Ok(Self {
            dir: base.join("burstflare"),
        })
    }

    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory itself (also home of the managed `known_hosts`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    pub fn credentials_path(&self) -> PathBuf {
        self.dir.join("credentials.toml")
    }

    pub fn load_config(&self) -> Result<Config, CliError> {
        read_toml(&self.config_path())
    }

    /// Writes `config.toml` (mode 0600, like every file here).
    pub fn save_config(&self, config: &Config) -> Result<PathBuf, CliError> {
        let text = toml::to_string(config).map_err(|e| {
            CliError::unexpected("cannot encode the configuration").cause(e.to_string())
        })?;
        let path = self.config_path();
        write_private(&self.dir, &path, &text)?;
        Ok(path)
    }

    pub fn load_credentials(&self) -> Result<Credentials, CliError> {
        read_toml(&self.credentials_path())
    }

    /// Changes what is stored for `api_url` (`None` removes it), writing
    /// the file with mode 0600.
    pub fn update_host(
        &self,
        api_url: &str,
        change: impl FnOnce(Option<HostCredentials>) -> Option<HostCredentials>,
    ) -> Result<PathBuf, CliError> {
        let mut creds = self.load_credentials()?;
        let key = normalize_url(api_url);
        if let Some(h) = change(creds.hosts.remove(&key)) {
            creds.hosts.insert(key, h);
        }
        let path = self.credentials_path();
        let text = toml::to_string(&creds)
            .map_err(|e| CliError::unexpected("cannot encode credentials").cause(e.to_string()))?;
        write_private(&self.dir, &path, &text)?;
        Ok(path)
    }

    /// Stores a personal access token for `api_url` (replacing any session).
    pub fn save_token(
        &self,
        api_url: &str,
        token: &str,
        email: Option<&str>,
    ) -> Result<PathBuf, CliError> {
        self.update_host(api_url, |old| {
            Some(HostCredentials {
                token: token.to_owned(),
                email: email.map(str::to_owned),
                workspace_id: old.and_then(|o| o.workspace_id),
                ..HostCredentials::default()
            })
        })
    }

    /// Stores a signed-in session's tokens for `api_url`.
    pub fn save_session(
        &self,
        api_url: &str,
        tokens: &SessionTokens,
        email: Option<&str>,
    ) -> Result<PathBuf, CliError> {
        self.update_host(api_url, |old| {
            let old = old.unwrap_or_default();
            Some(HostCredentials {
                token: tokens.access_token.clone(),
                refresh_token: Some(tokens.refresh_token.clone()),
                access_expires_at: tokens.access_expires_at,
                email: email.map(str::to_owned).or(old.email),
                workspace_id: old.workspace_id,
            })
        })
    }

    /// What is stored for `api_url`, if anything.
    pub fn host(&self, api_url: &str) -> Result<Option<HostCredentials>, CliError> {
        Ok(self
            .load_credentials()?
            .hosts
            .get(&normalize_url(api_url))
            .cloned())
    }

    /// The stored token for `api_url`, if any.
    pub fn token_for(&self, api_url: &str) -> Result<Option<String>, CliError> {
        Ok(self.host(api_url)?.map(|h| h.token))
    }
}

fn read_toml<T: Default + for<'de> Deserialize<'de>>(path: &Path) -> Result<T, CliError> {
    match fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            CliError::user(format!("cannot parse {}", path.display()))
                .cause(e.to_string())
                .hint("fix or delete the file")
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => {
            Err(CliError::user(format!("cannot read {}", path.display())).cause(e.to_string()))
        }
    }
}

/// Writes `text` to `path` atomically with mode 0600 (directory 0700).
fn write_private(dir: &Path, path: &Path, text: &str) -> Result<(), CliError> {
    let io = |what: String| move |e: std::io::Error| CliError::user(what).cause(e.to_string());
    fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io(format!("cannot restrict {}", dir.display())))?;
    let tmp = path.with_extension("toml.tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(format!("cannot write {}", tmp.display())))?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(io(format!("cannot write {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io(format!("cannot write {}", path.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_private_and_per_url() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ConfigDir::at(tmp.path().join("bf"));
        assert_eq!(dir.token_for("http://a").unwrap(), None);
        let session = SessionTokens {
            access_token: "bf_at_s".into(),
            access_expires_at: Some(100),
            refresh_token: "bf_rt_s".into(),
        };
        dir.save_session("http://c", &session, Some("c@example.com"))
            .unwrap();
        let host = dir.host("http://c/").unwrap().unwrap();
        assert_eq!(host.session(), Some(session));
        assert_eq!(host.email.as_deref(), Some("c@example.com"));
        dir.save_token("http://a/", "bf_at_1", Some("a@example.com"))
            .unwrap();
        dir.save_token("http://b", "bf_at_2", None).unwrap();
        assert_eq!(
            dir.token_for("http://a").unwrap().as_deref(),
            Some("bf_at_1")
        );
        assert_eq!(
            dir.token_for("http://b/").unwrap().as_deref(),
            Some("bf_at_2")
        );
        let mode = fs::metadata(dir.credentials_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(tmp.path().join("bf"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
    }

    #[test]
    fn config_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ConfigDir::at(tmp.path());
        assert_eq!(dir.load_config().unwrap().api_url, None);
        dir.save_config(&Config {
            api_url: Some("https://x.example".into()),
        })
        .unwrap();
        assert_eq!(
            dir.load_config().unwrap().api_url.as_deref(),
            Some("https://x.example")
        );
    }

    #[test]
    fn broken_config_is_a_user_error() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("config.toml"), "api_url = [").unwrap();
        let err = ConfigDir::at(tmp.path()).load_config().unwrap_err();
        assert!(err.to_string().contains("cannot parse"));
        fs::write(tmp.path().join("config.toml"), "api_url = \"http://x\"\n").unwrap();
        assert_eq!(
            ConfigDir::at(tmp.path())
                .load_config()
                .unwrap()
                .api_url
                .as_deref(),
            Some("http://x")
        );
    }
}

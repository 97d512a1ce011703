//! Command-line flags and the validated runner configuration.
//!
//! The shared secret comes only from the environment (`BURSTFLARE_RUNNER_SECRET`)
//! so it never shows up in `ps`; the runner refuses to start without a secret of
//! at least [`MIN_SECRET_LEN`] bytes. The instance name becomes the
//! `dev.burstflare.runner` label of every container, so it is restricted to
//! characters that are safe in labels, filters and logs.

use std::net::SocketAddr;

use clap::Parser;

/// Environment variable holding the shared secret.
pub const SECRET_ENV: &str = "BURSTFLARE_RUNNER_SECRET";
/// Shortest secret the runner accepts.
pub const MIN_SECRET_LEN: usize = 16;
/// Docker endpoint used when neither `--docker-host` nor `DOCKER_HOST` is set.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Runs BurstFlare session containers on a Docker Engine and proxies traffic to them.
///
/// Every request needs `Authorization: Bearer <secret>`, where the secret is
/// the value of the BURSTFLARE_RUNNER_SECRET environment variable.
#[derive(Debug, Clone, Parser)]
#[command(name = "burstflare-runner", version)]
pub struct Args {
    /// Address to listen on (keep it on loopback or a private network).
    #[arg(long, default_value = "127.0.0.1:7171")]
    pub listen: SocketAddr,

    /// This runner's name; containers are labelled with it and only containers
    /// carrying it are listed, inspected, stopped, deleted or proxied.
    #[arg(long, default_value = "default")]
    pub instance: String,

    /// Docker Engine endpoint (`unix:///path` or `tcp://host:port`).
    #[arg(long, env = "DOCKER_HOST", default_value = DEFAULT_DOCKER_HOST)]
    pub docker_host: String,
}

/// A validated configuration.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub instance: String,
    pub docker_host: String,
    pub secret: String,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("instance", &self.instance)
            .field("docker_host", &self.docker_host)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A configuration problem; the runner exits with it before listening.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{SECRET_ENV} is not set")]
    MissingSecret,
    #[error("{SECRET_ENV} is {len} bytes long; it must have at least {MIN_SECRET_LEN}")]
    ShortSecret { len: usize },
    #[error(
        "--instance {0:?} must be 1-63 characters of letters, digits, `.`, `_` and `-`, starting with a letter or digit"
    )]
    BadInstance(String),
    #[error("--docker-host {0:?} is not a `unix://`, `tcp://` or `http://` URL")]
    BadDockerHost(String),
}

impl ConfigError {
    /// What the operator should do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::MissingSecret | Self::ShortSecret { .. } => {
                "set BURSTFLARE_RUNNER_SECRET to the RUNNER_SECRET the Worker uses, e.g. `export BURSTFLARE_RUNNER_SECRET=$(openssl rand -hex 32)`"
            }
            Self::BadInstance(_) => "pick a short name such as `local` or `host-1`",
            Self::BadDockerHost(_) => {
                "use e.g. `unix:///var/run/docker.sock` or `tcp://127.0.0.1:2375`"
            }
        }
    }
}

impl Config {
    /// Validates the flags together with the secret read from the environment.
    pub fn new(args: Args, secret: Option<String>) -> Result<Self, ConfigError> {
        let secret = secret.ok_or(ConfigError::MissingSecret)?;
        if secret.len() < MIN_SECRET_LEN {
            return Err(ConfigError::ShortSecret { len: secret.len() });
        }
        if !valid_instance(&args.instance) {
            return Err(ConfigError::BadInstance(args.instance));
        }
        let host = args.docker_host.trim().to_owned();
        if !["unix://", "tcp://", "http://"]
            .iter()
            .any(|scheme| host.len() > scheme.len() && host.starts_with(scheme))
        {
            return Err(ConfigError::BadDockerHost(host));
        }
        Ok(Self {
            listen: args.listen,
            instance: args.instance,
            docker_host: host,
            secret,
        })
    }
}

fn valid_instance(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(instance: &str, host: &str) -> Args {
        Args {
            listen: "127.0.0.1:7171".parse().unwrap(),
            instance: instance.into(),
            docker_host: host.into(),
        }
    }

    #[test]
    fn secret_is_required_and_long() {
        let a = args("local", DEFAULT_DOCKER_HOST);
        assert!(matches!(
            Config::new(a.clone(), None),
            Err(ConfigError::MissingSecret)
        ));
        assert!(matches!(
            Config::new(a.clone(), Some("short".into())),
            Err(ConfigError::ShortSecret { len: 5 })
        ));
        let c = Config::new(a, Some("0123456789abcdef".into())).unwrap();
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn instance_and_host_are_validated() {
        let secret = Some("0123456789abcdef".to_owned());
        for bad in ["", "-x", "a b", "x/y", &"a".repeat(64)] {
            assert!(
                matches!(
                    Config::new(args(bad, DEFAULT_DOCKER_HOST), secret.clone()),
                    Err(ConfigError::BadInstance(_))
                ),
                "{bad:?}"
            );
        }
        for bad in ["/var/run/docker.sock", "unix://", "ssh://host"] {
            assert!(
                matches!(
                    Config::new(args("local", bad), secret.clone()),
                    Err(ConfigError::BadDockerHost(_))
                ),
                "{bad:?}"
            );
        }
        assert!(Config::new(args("e2e-1.a_b", "tcp://127.0.0.1:2375"), secret).is_ok());
    }
}

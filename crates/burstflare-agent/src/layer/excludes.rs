//! Paths that are never part of a layer: left out of the base manifest and of
//! captures, and refused by [`super::apply`] whatever [`Excludes`] the capture
//! used (the production list, [`DEFAULT_EXCLUDES`]).
//!
//! A pattern is a path relative to the root (a leading `/` is ignored) and
//! matches that path and everything under it, component by component: `run`
//! excludes `run` and `run/x` but not `running`. A last component ending in
//! `*` matches names starting with the rest: `etc/ssh/ssh_host_*`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path};

use super::LayerError;

/// The production excludes, relative to the container's `/`.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    // Kernel and runtime filesystems Docker mounts in every container, and
    // scratch space: their contents are the running container's, not the
    // template's.
    "proc",
    "sys",
    "dev",
    "run",
    "tmp",
    "var/tmp",
    // apt's package indexes and downloaded packages: large, re-downloadable,
    // and not in the runtime image either (its Dockerfile removes them).
    "var/lib/apt/lists",
    "var/cache/apt",
    // The build's own logs.
    "var/log",
    // Docker creates or bind-mounts these in every container.
    ".dockerenv",
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
    // Written by the agent at every session start: the login user's
    // authorized_keys (the default login user is `dev`), the host keys (each
    // container makes its own; `config::DEFAULT_HOST_KEY_DIR`) and the session
    // environment (`session_env`).
    "home/dev/.ssh",
    "etc/ssh/ssh_host_*",
    "etc/environment",
    "etc/profile.d/burstflare-session-env.sh",
    // The agent's state, the base manifest among it.
    "var/lib/burstflare",
    // Reserved for the layer's own entries.
    ".burstflare",
];

/// A set of excluded paths; see the module docs for the matching rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excludes {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    components: Vec<OsString>,
    /// The last component is a name prefix (the pattern ended in `*`).
    prefix: bool,
}

impl Default for Excludes {
    /// The production excludes, [`DEFAULT_EXCLUDES`].
    fn default() -> Self {
        Self::production()
    }
}

impl Excludes {
    /// Excludes nothing.
    pub fn none() -> Self {
        Self {
            patterns: Vec::new(),
        }
    }

    /// [`DEFAULT_EXCLUDES`].
    pub fn production() -> Self {
        Self {
            // Every default parses (a unit test checks).
            patterns: DEFAULT_EXCLUDES
                .iter()
                .filter_map(|p| Pattern::parse(Path::new(p)).ok())
                .collect(),
        }
    }

    /// Adds a pattern (see the module docs).
    pub fn add(&mut self, pattern: impl AsRef<Path>) -> Result<(), LayerError> {
        let pattern = pattern.as_ref();
        let parsed = Pattern::parse(pattern).map_err(|reason| LayerError::Exclude {
            pattern: pattern.display().to_string(),
            reason,
        })?;
        self.patterns.push(parsed);
        Ok(())
    }

    /// [`Excludes::add`], by value.
    pub fn with(mut self, pattern: impl AsRef<Path>) -> Result<Self, LayerError> {
        self.add(pattern)?;
        Ok(self)
    }

    /// Excludes exactly `path` (relative to the root) and what is under it,
    /// taking `*` literally.
    pub(crate) fn add_exact(&mut self, path: &Path) {
        let components: Vec<OsString> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(name.to_owned()),
                _ => None,
            })
            .collect();
        if !components.is_empty() {
            self.patterns.push(Pattern {
                components,
                prefix: false,
            });
        }
    }

    /// Whether `path` (relative to the root, normal components only) is excluded.
    pub fn matches(&self, path: &Path) -> bool {
        self.patterns.iter().any(|p| p.matches(path))
    }
}

impl Pattern {
    fn parse(pattern: &Path) -> Result<Self, &'static str> {
        let mut components = Vec::new();
        for component in pattern.components() {
            match component {
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir => return Err("`..` is not allowed"),
                Component::Prefix(_) => return Err("not a Unix path"),
                Component::Normal(name) => components.push(name.to_owned()),
            }
        }
        let Some(last) = components.len().checked_sub(1) else {
            return Err("names the root itself");
        };
        let mut prefix = false;
        for (i, name) in components.iter_mut().enumerate() {
            let bytes = name.as_bytes();
            if let Some(star) = bytes.iter().position(|&b| b == b'*') {
                if i != last || star + 1 != bytes.len() {
                    return Err("`*` is only allowed at the end of the last component");
                }
                let stem = std::ffi::OsStr::from_bytes(&bytes[..star]).to_owned();
                *name = stem;
                prefix = true;
            }
        }
        Ok(Self { components, prefix })
    }

    fn matches(&self, path: &Path) -> bool {
        let mut names = path.iter();
        let last = self.components.len().saturating_sub(1);
        for (i, want) in self.components.iter().enumerate() {
            let Some(name) = names.next() else {
                return false;
            };
            let ok = if i == last && self.prefix {
                name.as_bytes().starts_with(want.as_bytes())
            } else {
                name == want
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_parses() {
        assert_eq!(
            Excludes::production().patterns.len(),
            DEFAULT_EXCLUDES.len()
        );
    }

    #[test]
    fn matching_is_by_component() {
        let ex = Excludes::production();
        for excluded in [
            "run",
            "run/x",
            "proc/1/status",
            "var/tmp/a",
            "etc/ssh/ssh_host_ed25519_key",
            "etc/ssh/ssh_host_ed25519_key.pub",
            "home/dev/.ssh/authorized_keys",
            "var/cache/apt/archives/jq.deb",
            ".burstflare/deletions",
        ] {
            assert!(ex.matches(Path::new(excluded)), "{excluded}");
        }
        for kept in [
            "running",
            "var",
            "var/cache",
            "var/lib/apt/extended_states",
            "etc/ssh/sshd_config",
            "etc/ssh",
            "home/dev/.bashrc",
            "etc/hosts.allow",
            "usr/tmp",
        ] {
            assert!(!ex.matches(Path::new(kept)), "{kept}");
        }
    }

    #[test]
    fn patterns_are_validated() {
        let mut ex = Excludes::none();
        assert!(ex.add("../x").is_err());
        assert!(ex.add("/").is_err());
        assert!(ex.add("a*/b").is_err());
        assert!(ex.add("a/b*c").is_err());
        ex.add("/opt/cache/").unwrap();
        ex.add("srv/*").unwrap();
        assert!(ex.matches(Path::new("opt/cache/x")));
        assert!(!ex.matches(Path::new("opt/cached")));
        assert!(ex.matches(Path::new("srv/a")));
        assert!(!ex.matches(Path::new("srv")));
    }
}

//! Template manifests: the TOML file that describes what a template version
//! builds and how its sessions run, and the translation of a
//! `devcontainer.json` subset into one.
//!
//! # The manifest format
//!
//! ```toml
//! base = "runtime"                # required: a base image the platform knows
//! instance_type = "small"         # small | medium | large            (default small)
//! editor = false                  # serve the browser editor          (default false)
//! sleep_ttl = "30m"               # idle time before sleep, s|m|h, 1m..=24h (default 30m)
//! retention = "30d"               # a session asleep this long is deleted, s|m|h|d, 1h..=365d (default 30d)
//! packages = ["jq", "curl=7.88.1-10+deb12u5"]   # apt packages, optionally pinned
//! setup = ["mkdir -p /opt/tool"]  # shell commands run when the image is built
//! start = ["echo started"]        # shell commands run at every boot
//! persist = ["/home/dev", "/workspace"]         # kept across sleeps (default ["/home/dev"])
//!
//! [env]                           # environment of every session process
//! EDITOR = "vim"
//!
//! [[ports]]                       # ports the session serves
//! port = 3000
//! name = "web"                    # optional
//! ```
//!
//! Rules ([`Manifest::validate`] enforces them for every source):
//! * The file is at most [`MAX_MANIFEST_BYTES`]. Unknown keys are errors, at the
//!   top level and inside `[[ports]]`, so a typo never passes silently.
//! * `packages`: at most [`MAX_PACKAGES`] Debian package names
//!   (`[a-z0-9][a-z0-9+.-]{0,127}`), each optionally `=version`
//!   (`[A-Za-z0-9.+:~-]{1,64}`); a package is listed once.
//! * `setup` / `start`: at most [`MAX_COMMANDS`] commands of 1 to
//!   [`MAX_COMMAND_BYTES`] bytes, without NUL.
//! * `env`: at most [`MAX_ENV_VARS`] names accepted by
//!   [`validate_env_name`] (so nothing in
//!   the reserved `BURSTFLARE_` namespace); values up to
//!   [`MAX_ENV_VALUE_BYTES`] bytes, without NUL.
//! * `ports`: at most [`MAX_PORTS`], each 1 to 65535, unique, never one of
//!   [`RESERVED_PORTS`] (sshd, the session agent and the editor); an optional name
//!   (`[a-z][a-z0-9-]{0,31}`), unique too.
//! * `persist`: as [`validate_persisted_paths`] requires: absolute,
//!   normalised, under `/home/dev` or `/workspace`, at most 16, no duplicates.
//!
//! Errors are [`ManifestError`]s naming the field path (`packages[2]`,
//! `env.FOO`, `ports[0].port`, `sleep_ttl`); TOML syntax errors and the size
//! limit use the field `(toml)` and give the line and column.
//!
//! [`Manifest::to_toml`] writes the canonical form that is stored; it parses
//! back to the same manifest. [`Manifest::hash`] is the SHA-256 of the
//! canonical JSON, so two manifests that differ only in key order, comments or
//! whitespace hash the same. The hash covers the field names and order of
//! [`Manifest`]: changing the struct changes every hash.
//!
//! # devcontainer.json
//!
//! [`from_devcontainer`] accepts the common part of `devcontainer.json`,
//! returns a [`Warning`] for everything it drops, and runs the result through
//! the same validation.
//!
//! The file is JSONC: `//` and `/* */` comments and trailing commas before
//! `}` or `]` are removed (outside strings) before it is parsed as JSON. The
//! mapping:
//!
//! | devcontainer.json | manifest |
//! |---|---|
//! | `image` | `base`: a base's image or name, or one of [`COMMON_DEVCONTAINER_IMAGES`] (→ the first base); absent → the first base, with a warning; anything else is an error |
//! | `build`, `dockerFile`, `dockerComposeFile` | error: image builds and Compose are not supported |
//! | `onCreateCommand`, `updateContentCommand`, `postCreateCommand` | `setup`, in that order |
//! | `postStartCommand` | `start` |
//! | `forwardPorts` | `ports` (`"host:port"` strings give the port) |
//! | `containerEnv`, `remoteEnv` | `env` (`remoteEnv` wins on a clash) |
//! | `customizations.vscode` | `editor = true` |
//! | `name`, `$schema` | nothing |
//!
//! A command is a string (one shell command), an array (arguments, joined
//! with shell quoting) or an object of named commands (each value, in name
//! order). Everything else — features, `postAttachCommand`, users other than
//! `dev`, mounts, run arguments, unknown keys — is dropped with a [`Warning`]
//! naming it. The result passes [`Manifest::validate`]; its errors name the
//! devcontainer.json key the value came from (`forwardPorts[1]`,
//! `containerEnv.FOO`, `postCreateCommand.install`). JSON syntax errors and
//! the size limit use the field `(json)`.
//!
//! Everything here is pure: the known base images are passed in by the caller
//! ([`BaseImage`]); the first one is the default.

mod devcontainer;
mod parse;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::account::FieldError;
use crate::session::{InstanceType, validate_env_name, validate_persisted_paths};

pub use devcontainer::{COMMON_DEVCONTAINER_IMAGES, Warning, from_devcontainer};

/// Largest manifest (TOML or devcontainer.json) accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;
/// Most apt packages a manifest installs.
pub const MAX_PACKAGES: usize = 200;
/// Most commands in `setup`, and in `start`.
pub const MAX_COMMANDS: usize = 100;
/// Longest single command, in bytes.
pub const MAX_COMMAND_BYTES: usize = 8192;
/// Most environment variables.
pub const MAX_ENV_VARS: usize = 64;
/// Longest environment variable value, in bytes.
pub const MAX_ENV_VALUE_BYTES: usize = 4096;
/// Most ports.
pub const MAX_PORTS: usize = 20;
/// Ports a template may not claim: sshd (22) and the session agent (7070).
/// The port the browser editor (code-server) listens on in sessions of
/// templates with `editor = true`.
pub const EDITOR_PORT: u16 = 13337;
/// Ports a manifest may not declare: sshd, the session agent and the editor.
pub const RESERVED_PORTS: [u16; 3] = [22, 7070, EDITOR_PORT];
/// Shortest `sleep_ttl` (1m).
pub const MIN_SLEEP_TTL_SECS: u32 = 60;
/// Longest `sleep_ttl` (24h).
pub const MAX_SLEEP_TTL_SECS: u32 = 24 * 60 * 60;
/// `sleep_ttl` when the manifest gives none (30m).
pub const DEFAULT_SLEEP_TTL_SECS: u32 = 30 * 60;
/// Shortest `retention` (1h).
pub const MIN_RETENTION_SECS: u32 = 60 * 60;
/// Longest `retention` (365d).
pub const MAX_RETENTION_SECS: u32 = 365 * 24 * 60 * 60;
/// `retention` when the manifest gives none (30d).
pub const DEFAULT_RETENTION_SECS: u32 = 30 * 24 * 60 * 60;
/// `persist` when the manifest gives none.
pub const DEFAULT_PERSIST: &str = "/home/dev";

/// A base runtime image the platform knows: the name users write, and the
/// image reference it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseImage<'a> {
    pub name: &'a str,
    pub image: &'a str,
}

/// A port a session serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub port: u16,
    pub name: Option<String>,
}

/// A validated template manifest (see the module doc for the rules).
///
/// `Deserialize` does not validate: it reads manifests this crate already
/// validated (the stored canonical form). Untrusted input goes through
/// [`Manifest::parse_toml`], [`from_devcontainer`] or [`Manifest::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// A known base image name (e.g. `runtime`).
    pub base: String,
    pub instance_type: InstanceType,
    /// Whether sessions serve the browser editor.
    pub editor: bool,
    /// Idle seconds before a session sleeps; written `sleep_ttl = "30m"`.
    pub sleep_ttl_secs: u32,
    /// Seconds a session may sleep before the reconcile job deletes it;
    /// written `retention = "30d"`.
    /// Left out of the stored JSON when it is the default, so the hashes of
    /// manifests written before the key existed stay the same.
    #[serde(
        default = "default_retention",
        skip_serializing_if = "is_default_retention"
    )]
    pub retention_secs: u32,
    /// apt packages, `name` or `name=version`.
    pub packages: Vec<String>,
    /// Shell commands run when the image is built.
    pub setup: Vec<String>,
    /// Shell commands run at every boot.
    pub start: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<Port>,
    /// Persisted paths, normalised by `validate_persisted_paths`.
    pub persist: Vec<String>,
}

/// Why a manifest was refused: the field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ManifestError {
    /// `packages[2]`, `env.FOO`, `ports[0].port`, `sleep_ttl`; `(toml)` or
    /// `(json)` for syntax errors and the size limit.
    pub field: String,
    pub message: String,
}

impl ManifestError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Field names a [`ManifestError`] path can start with, as `'static` strings
/// for [`FieldError`].
const ERROR_ROOTS: &[&str] = &[
    "(toml)",
    "(json)",
    "base",
    "instance_type",
    "editor",
    "sleep_ttl",
    "retention",
    "packages",
    "setup",
    "start",
    "env",
    "ports",
    "persist",
    "image",
    "build",
    "dockerFile",
    "dockerfile",
    "dockerComposeFile",
    "features",
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "forwardPorts",
    "containerEnv",
    "remoteEnv",
];

/// [`FieldError::field`] is `'static`, so the error keeps the top-level key
/// as its field (`packages`), or `manifest` for an unknown key, and the full
/// path moves into the message (`packages[2]: "Foo" is not …`).
impl From<ManifestError> for FieldError {
    fn from(e: ManifestError) -> Self {
        let root = e.field.split(['.', '[']).next().unwrap_or_default();
        let field = ERROR_ROOTS
            .iter()
            .copied()
            .find(|r| *r == root)
            .unwrap_or("manifest");
        let message = if e.field == field {
            e.message
        } else {
            format!("{}: {}", e.field, e.message)
        };
        FieldError::new(field, message)
    }
}

impl Manifest {
    /// A manifest on `base` with every other field at its default.
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            instance_type: InstanceType::default(),
            editor: false,
            sleep_ttl_secs: DEFAULT_SLEEP_TTL_SECS,
            retention_secs: DEFAULT_RETENTION_SECS,
            packages: Vec::new(),
            setup: Vec::new(),
            start: Vec::new(),
            env: BTreeMap::new(),
            ports: Vec::new(),
            persist: vec![DEFAULT_PERSIST.to_owned()],
        }
    }

    /// Parses and validates a TOML manifest. Unknown keys are errors naming
    /// them; syntax errors have the field `(toml)` and give line and column.
    pub fn parse_toml(text: &str, bases: &[BaseImage<'_>]) -> Result<Manifest, ManifestError> {
        parse::parse_toml(text)?.validate(bases)
    }

    /// The canonical TOML: every field written, in a fixed order; what
    /// `burstflare template init` writes and what is stored. It parses back to
    /// `self` with [`Manifest::parse_toml`].
    pub fn to_toml(&self) -> String {
        parse::to_toml(self)
    }

    /// Lowercase hex SHA-256 of the canonical JSON serialisation.
    pub fn hash(&self) -> String {
        // Serialising cannot fail: every map key is a string and no field has
        // a fallible `Serialize`.
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(json))
    }

    /// The commented starter manifest `burstflare template init` writes.
    pub fn starter(base: &str) -> String {
        parse::starter(base)
    }

    /// Checks every rule of the module doc and returns the manifest with
    /// `persist` normalised. Every way of making a manifest ends here.
    pub fn validate(mut self, bases: &[BaseImage<'_>]) -> Result<Manifest, ManifestError> {
        if !bases.iter().any(|b| b.name == self.base) {
            return Err(ManifestError::new(
                "base",
                format!(
                    "{:?} is not a known base image; known: {}",
                    self.base,
                    known_bases(bases)
                ),
            ));
        }
        if !(MIN_SLEEP_TTL_SECS..=MAX_SLEEP_TTL_SECS).contains(&self.sleep_ttl_secs) {
            return Err(ManifestError::new(
                "sleep_ttl",
                format!(
                    "{} is out of range; use 1m to 24h",
                    format_duration(self.sleep_ttl_secs)
                ),
            ));
        }
        if !(MIN_RETENTION_SECS..=MAX_RETENTION_SECS).contains(&self.retention_secs) {
            return Err(ManifestError::new(
                "retention",
                format!(
                    "{} is out of range; use 1h to 365d",
                    format_duration(self.retention_secs)
                ),
            ));
        }
        check_packages(&self.packages)?;
        check_commands("setup", &self.setup)?;
        check_commands("start", &self.start)?;
        check_env(&self.env)?;
        check_ports(&self.ports)?;
        self.persist = check_persist(&self.persist)?;
        Ok(self)
    }
}

fn known_bases(bases: &[BaseImage<'_>]) -> String {
    if bases.is_empty() {
        return "none are configured".to_owned();
    }
    let names: Vec<&str> = bases.iter().map(|b| b.name).collect();
    names.join(", ")
}

/// Splits `name[=version]` and checks both parts.
fn package_name(spec: &str) -> Option<&str> {
    let (name, version) = match spec.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (spec, None),
    };
    let name_ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b));
    let version_ok = version.is_none_or(|v| {
        (1..=64).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".+:~-".contains(&b))
    });
    (name_ok && version_ok).then_some(name)
}

fn check_packages(packages: &[String]) -> Result<(), ManifestError> {
    if packages.len() > MAX_PACKAGES {
        return Err(ManifestError::new(
            "packages",
            format!(
                "lists {} packages; the limit is {MAX_PACKAGES}",
                packages.len()
            ),
        ));
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, spec) in packages.iter().enumerate() {
        let field = format!("packages[{i}]");
        let Some(name) = package_name(spec) else {
            return Err(ManifestError::new(
                field,
                format!(
                    "{spec:?} is not a package: a name of a-z, 0-9, `+`, `.` and `-` \
                     (starting with a letter or digit, at most 128), optionally \
                     `=version` (A-Z, a-z, 0-9, `.+:~-`, at most 64)"
                ),
            ));
        };
        if let Some(first) = seen.insert(name, i) {
            return Err(ManifestError::new(
                field,
                format!("package {name:?} is already listed at packages[{first}]"),
            ));
        }
    }
    Ok(())
}

fn check_commands(key: &str, commands: &[String]) -> Result<(), ManifestError> {
    if commands.len() > MAX_COMMANDS {
        return Err(ManifestError::new(
            key,
            format!(
                "has {} commands; the limit is {MAX_COMMANDS}",
                commands.len()
            ),
        ));
    }
    for (i, command) in commands.iter().enumerate() {
        let why = if command.is_empty() {
            "is empty".to_owned()
        } else if command.len() > MAX_COMMAND_BYTES {
            format!(
                "is {} bytes; the limit is {MAX_COMMAND_BYTES}",
                command.len()
            )
        } else if command.contains('\0') {
            "contains a NUL character".to_owned()
        } else {
            continue;
        };
        return Err(ManifestError::new(format!("{key}[{i}]"), why));
    }
    Ok(())
}

fn check_env(env: &BTreeMap<String, String>) -> Result<(), ManifestError> {
    if env.len() > MAX_ENV_VARS {
        return Err(ManifestError::new(
            "env",
            format!("has {} variables; the limit is {MAX_ENV_VARS}", env.len()),
        ));
    }
    for (name, value) in env {
        let field = format!("env.{name}");
        if name.starts_with("BURSTFLARE_") {
            return Err(ManifestError::new(
                field,
                "BURSTFLARE_ names are reserved for the platform",
            ));
        }
        if !validate_env_name(name) {
            return Err(ManifestError::new(
                field,
                format!(
                    "{name:?} is not a variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 128 bytes"
                ),
            ));
        }
        if value.len() > MAX_ENV_VALUE_BYTES {
            return Err(ManifestError::new(
                field,
                format!(
                    "value is {} bytes; the limit is {MAX_ENV_VALUE_BYTES}",
                    value.len()
                ),
            ));
        }
        if value.contains('\0') {
            return Err(ManifestError::new(field, "value contains a NUL character"));
        }
    }
    Ok(())
}

fn valid_port_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_ports(ports: &[Port]) -> Result<(), ManifestError> {
    if ports.len() > MAX_PORTS {
        return Err(ManifestError::new(
            "ports",
            format!("lists {} ports; the limit is {MAX_PORTS}", ports.len()),
        ));
    }
    for (i, p) in ports.iter().enumerate() {
        let field = format!("ports[{i}].port");
        if p.port == 0 {
            return Err(ManifestError::new(field, "0 is not a port (1-65535)"));
        }
        if RESERVED_PORTS.contains(&p.port) {
            return Err(ManifestError::new(
                field,
                format!(
                    "{} is reserved for the platform (22 is sshd, 7070 the session agent)",
                    p.port
                ),
            ));
        }
        if let Some(first) = ports[..i].iter().position(|q| q.port == p.port) {
            return Err(ManifestError::new(
                field,
                format!("port {} is already listed at ports[{first}]", p.port),
            ));
        }
        if let Some(name) = &p.name {
            let field = format!("ports[{i}].name");
            if !valid_port_name(name) {
                return Err(ManifestError::new(
                    field,
                    format!(
                        "{name:?} is not a port name: 1-32 of a-z, 0-9 and dashes, \
                         starting with a letter"
                    ),
                ));
            }
            if let Some(first) = ports[..i]
                .iter()
                .position(|q| q.name.as_deref() == Some(name))
            {
                return Err(ManifestError::new(
                    field,
                    format!("name {name:?} is already used by ports[{first}]"),
                ));
            }
        }
    }
    Ok(())
}

/// Runs `validate_persisted_paths` and turns its `persisted_paths` error into
/// a `persist[i]` path: validating growing prefixes finds the failing index
/// (the count limit fails only on the whole list and stays on `persist`).
fn check_persist(paths: &[String]) -> Result<Vec<String>, ManifestError> {
    validate_persisted_paths(paths).map_err(|whole| {
        for end in 1..=paths.len() {
            if let Err(e) = validate_persisted_paths(&paths[..end]) {
                let i = end - 1;
                if let Some(message) = e.message.strip_prefix(&format!("[{i}] ")) {
                    return ManifestError::new(format!("persist[{i}]"), message);
                }
                break;
            }
        }
        ManifestError::new("persist", whole.message)
    })
}

/// `90s`, `30m`, `2h`: the largest unit that divides `secs` exactly.
fn default_retention() -> u32 {
    DEFAULT_RETENTION_SECS
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
fn is_default_retention(secs: &u32) -> bool {
    *secs == DEFAULT_RETENTION_SECS
}

pub(crate) fn format_duration(secs: u32) -> String {
    if secs > 86_400 && secs.is_multiple_of(86_400) {
        format!("{}d", secs / 86_400)
    } else if secs != 0 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs != 0 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

//! Translation of a `devcontainer.json` subset into a [`Manifest`].
//!
//! The format and the mapping are documented on the parent module
//! ([`super`]), which is what users read.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::parse::too_large;
use super::{BaseImage, MAX_MANIFEST_BYTES, Manifest, ManifestError, Port};

/// Images commonly named in devcontainer.json that the first (default) base
/// stands in for: Debian bookworm, which the runtime image is built on.
pub const COMMON_DEVCONTAINER_IMAGES: &[&str] = &[
    "mcr.microsoft.com/devcontainers/base:bookworm",
    "mcr.microsoft.com/devcontainers/base:1-bookworm",
    "mcr.microsoft.com/devcontainers/base:debian",
    "mcr.microsoft.com/devcontainers/base:1-debian",
    "mcr.microsoft.com/devcontainers/base:debian-12",
    "debian:bookworm",
    "debian:bookworm-slim",
    "debian:12",
    "debian:12-slim",
];

/// Something in the input that was dropped or changed in translation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// The devcontainer.json key path (`features.ghcr.io/devcontainers/features/node:1`).
    pub field: String,
    pub message: String,
}

/// Keys of the devcontainer spec that have no equivalent and are dropped with
/// a warning.
const UNSUPPORTED: &[&str] = &[
    "appPort",
    "capAdd",
    "context",
    "hostRequirements",
    "init",
    "mounts",
    "otherPortsAttributes",
    "overrideCommand",
    "overrideFeatureInstallOrder",
    "portsAttributes",
    "privileged",
    "runArgs",
    "runServices",
    "securityOpt",
    "service",
    "shutdownAction",
    "updateRemoteUserUID",
    "userEnvProbe",
    "waitFor",
    "workspaceFolder",
    "workspaceMount",
];

/// Keys read by the translation itself (not reported as unsupported).
const HANDLED: &[&str] = &[
    "$schema",
    "name",
    "image",
    "build",
    "dockerFile",
    "dockerfile",
    "dockerComposeFile",
    "features",
    "initializeCommand",
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
    "forwardPorts",
    "containerEnv",
    "remoteEnv",
    "containerUser",
    "remoteUser",
    "customizations",
];

const SYNTAX: &str = "(json)";

/// Translates `devcontainer.json` (JSONC) into a validated manifest and the
/// warnings for everything dropped. See the module doc for the mapping.
pub fn from_devcontainer(
    json: &str,
    bases: &[BaseImage<'_>],
) -> Result<(Manifest, Vec<Warning>), ManifestError> {
    if json.len() > MAX_MANIFEST_BYTES {
        return Err(too_large(SYNTAX, json.len()));
    }
    let clean = strip_jsonc(json)?;
    let value: Value =
        serde_json::from_str(&clean).map_err(|e| ManifestError::new(SYNTAX, e.to_string()))?;
    let Value::Object(doc) = value else {
        return Err(ManifestError::new(
            SYNTAX,
            "the top level must be an object",
        ));
    };
    let mut t = Translation {
        warnings: Vec::new(),
        origins: Vec::new(),
    };
    let manifest = t.translate(&doc, bases)?;
    match manifest.validate(bases) {
        Ok(m) => Ok((m, t.warnings)),
        Err(mut e) => {
            if let Some((_, origin)) = t.origins.iter().find(|(path, _)| *path == e.field) {
                e.field.clone_from(origin);
            }
            Err(e)
        }
    }
}

struct Translation {
    warnings: Vec<Warning>,
    /// Manifest field path → the devcontainer.json path its value came from,
    /// so validation errors point at the user's file.
    origins: Vec<(String, String)>,
}

impl Translation {
    fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Warning {
            field: field.into(),
            message: message.into(),
        });
    }

    fn translate(
        &mut self,
        doc: &Map<String, Value>,
        bases: &[BaseImage<'_>],
    ) -> Result<Manifest, ManifestError> {
        for key in ["build", "dockerFile", "dockerfile"] {
            if doc.contains_key(key) {
                return Err(ManifestError::new(
                    key,
                    "building from a Dockerfile is not supported; start from `image` and \
                     move the Dockerfile's RUN steps into postCreateCommand",
                ));
            }
        }
        if doc.contains_key("dockerComposeFile") {
            return Err(ManifestError::new(
                "dockerComposeFile",
                "Docker Compose is not supported; use `image` and run extra services \
                 from postStartCommand",
            ));
        }
        let mut m = Manifest::new(self.base(doc.get("image"), bases)?);

        if let Some(features) = doc.get("features") {
            let Value::Object(features) = features else {
                return Err(wrong_type("features", "an object", features));
            };
            for name in sorted_keys(features) {
                self.warn(
                    format!("features.{name}"),
                    format!("feature {name} is not supported and was ignored"),
                );
            }
        }

        for key in ["initializeCommand", "postAttachCommand"] {
            if doc.contains_key(key) {
                let why = if key == "initializeCommand" {
                    "runs on the local machine"
                } else {
                    "runs when a tool attaches"
                };
                self.warn(
                    key,
                    format!("{key} {why}; it is not supported and was ignored"),
                );
            }
        }
        for key in [
            "onCreateCommand",
            "updateContentCommand",
            "postCreateCommand",
        ] {
            if let Some(v) = doc.get(key) {
                for (command, origin) in commands(v, key)? {
                    self.origins
                        .push((format!("setup[{}]", m.setup.len()), origin));
                    m.setup.push(command);
                }
            }
        }
        if let Some(v) = doc.get("postStartCommand") {
            for (command, origin) in commands(v, "postStartCommand")? {
                self.origins
                    .push((format!("start[{}]", m.start.len()), origin));
                m.start.push(command);
            }
        }

        if let Some(v) = doc.get("forwardPorts") {
            self.ports(v, &mut m)?;
        }
        self.env(doc, &mut m)?;

        for key in ["containerUser", "remoteUser"] {
            match doc.get(key) {
                None => {}
                Some(Value::String(user)) if user == "dev" => {}
                Some(Value::String(user)) => self.warn(
                    key,
                    format!("sessions run as \"dev\"; {key} {user:?} was ignored"),
                ),
                Some(other) => self.warn(
                    key,
                    format!("sessions run as \"dev\"; {key} {other} was ignored"),
                ),
            }
        }

        if let Some(v) = doc.get("customizations") {
            self.customizations(v, &mut m)?;
        }

        for key in sorted_keys(doc) {
            if HANDLED.contains(&key) {
                continue;
            }
            if UNSUPPORTED.contains(&key) {
                self.warn(key, format!("{key} is not supported and was ignored"));
            } else {
                self.warn(key, format!("unknown key {key:?} was ignored"));
            }
        }
        Ok(m)
    }

    fn base(
        &mut self,
        image: Option<&Value>,
        bases: &[BaseImage<'_>],
    ) -> Result<String, ManifestError> {
        let Some(default) = bases.first() else {
            return Err(ManifestError::new(
                "image",
                "no base images are configured on this platform",
            ));
        };
        let image = match image {
            None => {
                self.warn(
                    "image",
                    format!("no image given; using the {} base", default.name),
                );
                return Ok(default.name.to_owned());
            }
            Some(Value::String(image)) => image,
            Some(other) => return Err(wrong_type("image", "a string", other)),
        };
        if let Some(base) = bases
            .iter()
            .find(|b| b.image == image.as_str() || b.name == image.as_str())
        {
            return Ok(base.name.to_owned());
        }
        if COMMON_DEVCONTAINER_IMAGES.contains(&image.as_str()) {
            return Ok(default.name.to_owned());
        }
        let mut supported: Vec<String> = bases.iter().map(|b| format!("{:?}", b.image)).collect();
        supported.extend(COMMON_DEVCONTAINER_IMAGES.iter().map(|i| format!("{i:?}")));
        Err(ManifestError::new(
            "image",
            format!(
                "{image:?} is not a supported image; use one of {}, or omit image to use {}",
                supported.join(", "),
                default.name
            ),
        ))
    }

    fn ports(&mut self, v: &Value, m: &mut Manifest) -> Result<(), ManifestError> {
        let Value::Array(items) = v else {
            return Err(wrong_type("forwardPorts", "an array", v));
        };
        self.origins
            .push(("ports".to_owned(), "forwardPorts".to_owned()));
        for (i, item) in items.iter().enumerate() {
            let field = format!("forwardPorts[{i}]");
            let not_a_port = |what: &dyn std::fmt::Display| {
                ManifestError::new(&field, format!("{what} is not a port (1-65535)"))
            };
            let port = match item {
                Value::Number(n) => n
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| not_a_port(n))?,
                Value::String(s) => {
                    let (host, port) = match s.rsplit_once(':') {
                        Some((host, port)) => (Some(host), port),
                        None => (None, s.as_str()),
                    };
                    let port = port
                        .parse::<u16>()
                        .map_err(|_| not_a_port(&format!("{s:?}")))?;
                    if let Some(host) = host.filter(|h| !matches!(*h, "localhost" | "127.0.0.1")) {
                        self.warn(
                            &field,
                            format!(
                                "{s:?} forwards a port of host {host:?}; sessions serve \
                                 only their own ports, so port {port} of the session is used"
                            ),
                        );
                    }
                    port
                }
                other => return Err(wrong_type(&field, "a number or \"host:port\"", other)),
            };
            let k = m.ports.len();
            self.origins.push((format!("ports[{k}]"), field.clone()));
            self.origins.push((format!("ports[{k}].port"), field));
            m.ports.push(Port { port, name: None });
        }
        Ok(())
    }

    fn env(&mut self, doc: &Map<String, Value>, m: &mut Manifest) -> Result<(), ManifestError> {
        for key in ["containerEnv", "remoteEnv"] {
            let Some(v) = doc.get(key) else { continue };
            let Value::Object(vars) = v else {
                return Err(wrong_type(key, "an object of strings", v));
            };
            if key == "remoteEnv" && !vars.is_empty() {
                self.warn(
                    key,
                    "remoteEnv is applied to the whole container, not only to remote processes",
                );
            }
            for name in sorted_keys(vars) {
                let field = format!("{key}.{name}");
                let value = match &vars[name] {
                    Value::String(s) => s,
                    Value::Null if key == "remoteEnv" => {
                        self.warn(&field, "unsetting a variable is not supported; ignored");
                        continue;
                    }
                    other => return Err(wrong_type(&field, "a string", other)),
                };
                if value.contains("${") {
                    self.warn(
                        &field,
                        "variable substitution (${...}) is not supported; the value is used \
                         as written",
                    );
                }
                let path = format!("env.{name}");
                self.origins.retain(|(p, _)| *p != path);
                self.origins.push((path, field));
                m.env.insert(name.to_owned(), value.clone());
            }
        }
        Ok(())
    }

    fn customizations(&mut self, v: &Value, m: &mut Manifest) -> Result<(), ManifestError> {
        let Value::Object(tools) = v else {
            return Err(wrong_type("customizations", "an object", v));
        };
        for tool in sorted_keys(tools) {
            if tool != "vscode" {
                self.warn(
                    format!("customizations.{tool}"),
                    format!("customizations for {tool} are not supported and were ignored"),
                );
                continue;
            }
            m.editor = true;
            let Value::Object(vscode) = &tools[tool] else {
                continue;
            };
            let extensions: Vec<String> = match vscode.get("extensions") {
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|e| match e {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            if !extensions.is_empty() {
                self.warn(
                    "customizations.vscode.extensions",
                    format!(
                        "extensions are not installed in the browser editor: {}",
                        extensions.join(", ")
                    ),
                );
            }
            if vscode
                .get("settings")
                .is_some_and(|s| s.as_object().is_none_or(|o| !o.is_empty()))
            {
                self.warn(
                    "customizations.vscode.settings",
                    "settings are not applied to the browser editor",
                );
            }
        }
        Ok(())
    }
}

/// An object's keys, sorted: serde_json's map order depends on its features.
fn sorted_keys(map: &Map<String, Value>) -> Vec<&str> {
    let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(field: &str, expected: &str, found: &Value) -> ManifestError {
    ManifestError::new(
        field,
        format!("must be {expected}, not {}", json_type(found)),
    )
}

/// A lifecycle command as `(shell command, devcontainer.json path)` pairs.
fn commands(v: &Value, key: &str) -> Result<Vec<(String, String)>, ManifestError> {
    let expected = "a string, an array of arguments or an object of named commands";
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Object(named) => {
            let mut out = Vec::new();
            for name in sorted_keys(named) {
                let field = format!("{key}.{name}");
                if let Some(command) = command(&named[name], &field, "a string or an array")? {
                    out.push((command, field));
                }
            }
            Ok(out)
        }
        other => Ok(command(other, key, expected)?
            .map(|c| (c, key.to_owned()))
            .into_iter()
            .collect()),
    }
}

/// One command from a string or an argument array; `None` when it is empty.
fn command(v: &Value, field: &str, expected: &str) -> Result<Option<String>, ManifestError> {
    let command = match v {
        Value::String(s) => s.clone(),
        Value::Array(args) => {
            let mut words = Vec::with_capacity(args.len());
            for (i, arg) in args.iter().enumerate() {
                let Value::String(arg) = arg else {
                    return Err(wrong_type(&format!("{field}[{i}]"), "a string", arg));
                };
                words.push(shell_quote(arg));
            }
            words.join(" ")
        }
        other => return Err(wrong_type(field, expected, other)),
    };
    Ok((!command.trim().is_empty()).then_some(command))
}

/// `arg` as one POSIX shell word: as is when every byte is safe, otherwise in
/// single quotes (a `'` becomes `'\''`).
fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./=:,+@%".contains(&b));
    if safe {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Removes `//` and `/* */` comments and trailing commas before `}` or `]`,
/// outside strings. Removed characters become spaces (newlines stay), so JSON
/// errors keep their line and column.
fn strip_jsonc(input: &str) -> Result<String, ManifestError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let mut i = 0;
    let mut in_string = false;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(&next) = chars.get(i + 1) {
                    out.push(next);
                    i += 1;
                }
            } else if c == '"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match (c, chars.get(i + 1)) {
            ('"', _) => {
                in_string = true;
                out.push(c);
                i += 1;
            }
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    out.push(' ');
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                let start_line = out.iter().filter(|c| **c == '\n').count() + 1;
                out.push(' ');
                out.push(' ');
                i += 2;
                loop {
                    match (chars.get(i), chars.get(i + 1)) {
                        (Some('*'), Some('/')) => {
                            out.push(' ');
                            out.push(' ');
                            i += 2;
                            break;
                        }
                        (Some(&c), _) => {
                            out.push(if c == '\n' { '\n' } else { ' ' });
                            i += 1;
                        }
                        (None, _) => {
                            return Err(ManifestError::new(
                                SYNTAX,
                                format!("line {start_line}: a /* comment is not closed"),
                            ));
                        }
                    }
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(remove_trailing_commas(&out))
}

/// Second pass over comment-free text: a `,` that follows a value and is
/// followed (after whitespace) by `}` or `]`, outside strings, becomes a
/// space. Commas after `{`, `[` or another comma stay, for the parser to refuse.
fn remove_trailing_commas(chars: &[char]) -> String {
    let mut out = String::with_capacity(chars.len());
    let mut in_string = false;
    let mut escaped = false;
    // The last character outside whitespace (a string counts as its quote).
    let mut previous = ' ';
    for (i, &c) in chars.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            out.push(c);
            previous = c;
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        let trailing = c == ','
            && !matches!(previous, '{' | '[' | ',')
            && matches!(
                chars[i + 1..].iter().find(|c| !c.is_whitespace()),
                Some('}' | ']')
            );
        out.push(if trailing { ' ' } else { c });
        if !c.is_whitespace() {
            previous = c;
        }
    }
    out
}

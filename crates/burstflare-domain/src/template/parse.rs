//! Reading a TOML manifest into an unvalidated [`Manifest`], and writing the
//! canonical TOML and the starter file.
//!
//! Reading checks shape only (known keys, value types, ranges the Rust types
//! impose); [`Manifest::validate`] checks the rules.

use std::collections::BTreeMap;

use toml::{Table, Value};

use super::{DEFAULT_PERSIST, MAX_MANIFEST_BYTES, Manifest, ManifestError, Port, format_duration};
use crate::session::InstanceType;

/// Top-level keys, in canonical order.
const KEYS: [&str; 11] = [
    "base",
    "instance_type",
    "editor",
    "sleep_ttl",
    "retention",
    "packages",
    "setup",
    "start",
    "persist",
    "env",
    "ports",
];
const PORT_KEYS: [&str; 2] = ["port", "name"];

const SYNTAX: &str = "(toml)";

pub(super) fn parse_toml(text: &str) -> Result<Manifest, ManifestError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(too_large(SYNTAX, text.len()));
    }
    let table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| syntax_error(text, &e))?;
    reject_unknown_keys(&table, &KEYS, "")?;

    let base = match table.get("base") {
        Some(v) => string(v, "base")?.to_owned(),
        None => return Err(ManifestError::new("base", "is required")),
    };
    let mut m = Manifest::new(base);
    if let Some(v) = table.get("instance_type") {
        m.instance_type = string(v, "instance_type")?
            .parse::<InstanceType>()
            .map_err(|e| ManifestError::new("instance_type", e.message))?;
    }
    if let Some(v) = table.get("editor") {
        m.editor = v
            .as_bool()
            .ok_or_else(|| wrong_type("editor", "true or false", v))?;
    }
    if let Some(v) = table.get("sleep_ttl") {
        m.sleep_ttl_secs = parse_duration(string(v, "sleep_ttl")?)
            .map_err(|why| ManifestError::new("sleep_ttl", why))?;
    }
    if let Some(v) = table.get("retention") {
        m.retention_secs = parse_duration(string(v, "retention")?)
            .map_err(|why| ManifestError::new("retention", why))?;
    }
    if let Some(v) = table.get("packages") {
        m.packages = strings(v, "packages")?;
    }
    if let Some(v) = table.get("setup") {
        m.setup = strings(v, "setup")?;
    }
    if let Some(v) = table.get("start") {
        m.start = strings(v, "start")?;
    }
    if let Some(v) = table.get("persist") {
        m.persist = strings(v, "persist")?;
    }
    if let Some(v) = table.get("env") {
        let env = v
            .as_table()
            .ok_or_else(|| wrong_type("env", "a table of strings", v))?;
        m.env = env
            .iter()
            .map(|(name, value)| {
                let value = string(value, &format!("env.{name}"))?;
                Ok((name.clone(), value.to_owned()))
            })
            .collect::<Result<BTreeMap<_, _>, ManifestError>>()?;
    }
    if let Some(v) = table.get("ports") {
        let items = v
            .as_array()
            .ok_or_else(|| wrong_type("ports", "an array of tables ([[ports]])", v))?;
        m.ports = items
            .iter()
            .enumerate()
            .map(|(i, item)| port(item, i))
            .collect::<Result<_, _>>()?;
    }
    Ok(m)
}

fn port(item: &Value, i: usize) -> Result<Port, ManifestError> {
    let path = format!("ports[{i}]");
    let t = item
        .as_table()
        .ok_or_else(|| wrong_type(&path, "a table with `port` and `name`", item))?;
    reject_unknown_keys(t, &PORT_KEYS, &format!("{path}."))?;
    let field = format!("{path}.port");
    let Some(v) = t.get("port") else {
        return Err(ManifestError::new(field, "is required"));
    };
    let n = v
        .as_integer()
        .ok_or_else(|| wrong_type(&field, "an integer", v))?;
    let port = u16::try_from(n)
        .map_err(|_| ManifestError::new(&field, format!("{n} is not a port (1-65535)")))?;
    let name = match t.get("name") {
        Some(v) => Some(string(v, &format!("{path}.name"))?.to_owned()),
        None => None,
    };
    Ok(Port { port, name })
}

fn reject_unknown_keys(table: &Table, known: &[&str], prefix: &str) -> Result<(), ManifestError> {
    // Sorted, so the error does not depend on the map's iteration order.
    let mut unknown: Vec<&String> = table
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .collect();
    unknown.sort();
    let Some(key) = unknown.first() else {
        return Ok(());
    };
    let hint = match closest(key, known) {
        Some(k) => format!(" (did you mean {k:?}?)"),
        None => String::new(),
    };
    Err(ManifestError::new(
        format!("{prefix}{key}"),
        format!("unknown key{hint}; the keys are {}", known.join(", ")),
    ))
}

/// The known key within edit distance 2 of `key`, if any.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

fn string<'v>(v: &'v Value, field: &str) -> Result<&'v str, ManifestError> {
    v.as_str().ok_or_else(|| wrong_type(field, "a string", v))
}

fn strings(v: &Value, field: &str) -> Result<Vec<String>, ManifestError> {
    let items = v
        .as_array()
        .ok_or_else(|| wrong_type(field, "an array of strings", v))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| string(item, &format!("{field}[{i}]")).map(str::to_owned))
        .collect()
}

fn wrong_type(field: &str, expected: &str, found: &Value) -> ManifestError {
    ManifestError::new(
        field,
        format!("must be {expected}, not {}", found.type_str()),
    )
}

pub(super) fn too_large(field: &str, len: usize) -> ManifestError {
    ManifestError::new(
        field,
        format!("the file is {len} bytes; the limit is {MAX_MANIFEST_BYTES} (64 KiB)"),
    )
}

fn syntax_error(text: &str, e: &toml::de::Error) -> ManifestError {
    let message = e.message().trim_end();
    let message = match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before
                .rsplit_once('\n')
                .map_or(before, |(_, last)| last)
                .chars()
                .count()
                + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_owned(),
    };
    ManifestError::new(SYNTAX, message)
}

/// `"90s"`, `"30m"`, `"2h"` → seconds. Range limits are checked by
/// [`Manifest::validate`].
fn parse_duration(s: &str) -> Result<u32, String> {
    let usage =
        "use a whole number and a unit s, m, h or d, like \"90s\", \"30m\", \"2h\" or \"7d\"";
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("{s:?} is not a duration; {usage}"));
    }
    let scale: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "" => return Err(format!("{s:?} has no unit; {usage}")),
        _ => return Err(format!("{s:?} is not a duration; {usage}")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .and_then(|secs| u32::try_from(secs).ok())
        .ok_or_else(|| format!("{s:?} is out of range"))
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A key bare when TOML allows it, quoted otherwise.
fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { k.to_owned() } else { quote(k) }
}

/// `key = [...]` on one line when it fits in 100 columns, else one item a line.
fn array_line(out: &mut String, name: &str, items: &[String]) {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    let one_line = format!("{name} = [{}]\n", quoted.join(", "));
    if one_line.len() <= 101 {
        out.push_str(&one_line);
        return;
    }
    out.push_str(name);
    out.push_str(" = [\n");
    for q in quoted {
        out.push_str("    ");
        out.push_str(&q);
        out.push_str(",\n");
    }
    out.push_str("]\n");
}

pub(super) fn to_toml(m: &Manifest) -> String {
    let mut out = String::new();
    out.push_str(&format!("base = {}\n", quote(&m.base)));
    out.push_str(&format!(
        "instance_type = {}\n",
        quote(m.instance_type.as_str())
    ));
    out.push_str(&format!("editor = {}\n", m.editor));
    out.push_str(&format!(
        "sleep_ttl = {}\n",
        quote(&format_duration(m.sleep_ttl_secs))
    ));
    out.push_str(&format!(
        "retention = {}\n",
        quote(&format_duration(m.retention_secs))
    ));
    array_line(&mut out, "packages", &m.packages);
    array_line(&mut out, "setup", &m.setup);
    array_line(&mut out, "start", &m.start);
    array_line(&mut out, "persist", &m.persist);
    if !m.env.is_empty() {
        out.push_str("\n[env]\n");
        for (name, value) in &m.env {
            out.push_str(&format!("{} = {}\n", key(name), quote(value)));
        }
    }
    for p in &m.ports {
        out.push_str(&format!("\n[[ports]]\nport = {}\n", p.port));
        if let Some(name) = &p.name {
            out.push_str(&format!("name = {}\n", quote(name)));
        }
    }
    out
}

pub(super) fn starter(base: &str) -> String {
    let size = |t: InstanceType| {
        let l = t.limits();
        format!(
            "{} ({} CPU, {} GiB)",
            t.as_str(),
            f64::from(l.cpu_millis) / 1000.0,
            l.memory_mib / 1024
        )
    };
    let sizes: Vec<String> = InstanceType::ALL.into_iter().map(size).collect();
    format!(
        r#"# A BurstFlare template manifest. Unknown keys are errors, so a typo never
# passes silently.

# The base runtime image (required).
base = {base}

# Compute size: {sizes}.
instance_type = "small"

# Serve the browser editor.
editor = false

# Idle time before a session sleeps: a whole number and s, m or h, 1m to 24h.
sleep_ttl = "30m"

# How long a session may sleep before it is deleted: s, m, h or d, 1h to 365d.
retention = "30d"

# Debian packages to install, optionally pinned: "curl=7.88.1-10+deb12u5".
packages = []

# Shell commands run when the image is built, in order.
setup = []

# Shell commands run at every boot, in order.
start = []

# Paths kept while a session sleeps or restarts, under /home/dev or /workspace.
persist = [{persist}]

# Environment variables of every session process (not BURSTFLARE_*).
[env]
# EDITOR = "vim"

# Ports the session serves (not 22 or 7070). Repeat the block for more.
# [[ports]]
# port = 3000
# name = "web"
"#,
        base = quote(base),
        sizes = sizes.join(", "),
        persist = quote(DEFAULT_PERSIST),
    )
}

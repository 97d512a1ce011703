//! The session's user environment: the variables the user defined for the
//! session, which the control plane passes as one JSON object in
//! `BURSTFLARE_SESSION_ENV` (`burstflare_api::runtime::ENV_SESSION_ENV`).
//!
//! sshd and `runuser -l` start login sessions with a clean environment, so the
//! agent's own environment never reaches them. At start the agent writes the
//! variables where those sessions look:
//!
//! * `/etc/environment`, which pam_env reads for every sshd session (also
//!   `ssh host command`): `NAME="value"` lines. pam_env has no escapes: a
//!   value with `"`, `\`, `#` (it starts a comment), a newline or NUL, or a
//!   line longer than [`MAX_ENVIRONMENT_LINE`] (pam_env reads lines into an
//!   8 KiB buffer, and a longer one ends the parse of the whole file), is left
//!   out of this file, with a warning;
//! * `/etc/profile.d/burstflare-session-env.sh`, sourced by login shells
//!   (terminals, which start through `runuser -l`, and interactive SSH
//!   logins): `export NAME='value'` lines, which represent every value.
//!
//! Both files are replaced atomically with mode 0644 and sorted by name.
//! Shells the agent runs directly (not root) get the variables in their
//! process environment instead (see [`crate::terminal`]).
//!
//! Only names matching `[A-Za-z_][A-Za-z0-9_]*` are kept, and none starting
//! with `BURSTFLARE_` (the agent's own namespace); entries that are not
//! strings, or contain NUL, are dropped with a warning too.

use std::collections::BTreeMap;
use std::path::Path;

use burstflare_api::runtime::ENV_SESSION_ENV;

use crate::keys::{self, KeyError};

/// Where pam_env reads the system-wide environment.
pub const DEFAULT_ENVIRONMENT_FILE: &str = "/etc/environment";
/// The script login shells source (via `/etc/profile`).
pub const DEFAULT_PROFILE_ENV_FILE: &str = "/etc/profile.d/burstflare-session-env.sh";
/// The longest `NAME="value"` line written to `/etc/environment` (pam_env
/// reads at most 8190 characters a line; this leaves room).
pub const MAX_ENVIRONMENT_LINE: usize = 8000;
/// Mode of both files: world-readable, like the rest of `/etc`.
pub const FILE_MODE: u32 = 0o644;
/// Names the agent reserves for itself.
const RESERVED_PREFIX: &str = "BURSTFLARE_";

const ENVIRONMENT_HEADER: &str = "# Written by burstflare-agent at container start from the session's environment; edits are lost.\n";
const PROFILE_HEADER: &str = ENVIRONMENT_HEADER;

/// Variable name → value, sorted by name.
pub type SessionEnv = BTreeMap<String, String>;

/// The outcome of [`parse`]: the usable variables and why others were dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub vars: SessionEnv,
    /// One message per dropped entry (or for the whole value); never a value.
    pub problems: Vec<String>,
}

/// Whether `name` is a portable variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses the JSON object of `BURSTFLARE_SESSION_ENV` (blank: no variables).
/// Bad entries are dropped and described in [`Parsed::problems`]; invalid
/// JSON or anything but an object yields no variables.
pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    if text.trim().is_empty() {
        return parsed;
    }
    // The messages never quote the value: it may hold credentials.
    let object = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(object)) => object,
        Ok(_) => {
            parsed.problems.push(format!(
                "{ENV_SESSION_ENV} is not a JSON object; ignoring it"
            ));
            return parsed;
        }
        Err(e) => {
            parsed.problems.push(format!(
                "{ENV_SESSION_ENV} is not valid JSON (line {}, column {}); ignoring it",
                e.line(),
                e.column()
            ));
            return parsed;
        }
    };
    for (name, value) in object {
        let problem = if !valid_name(&name) {
            "is not a valid variable name"
        } else if name.starts_with(RESERVED_PREFIX) {
            "is reserved (BURSTFLARE_ names belong to the agent)"
        } else {
            match value {
                serde_json::Value::String(v) if v.contains('\0') => "has a value with NUL",
                serde_json::Value::String(v) => {
                    parsed.vars.insert(name, v);
                    continue;
                }
                _ => "has a value that is not a string",
            }
        };
        parsed.problems.push(format!(
            "{ENV_SESSION_ENV}: variable {name:?} {problem}; ignoring it"
        ));
    }
    parsed
}

/// Whether pam_env reads `NAME="value"` back as exactly `value`.
fn pam_env_can_represent(name: &str, value: &str) -> bool {
    !value.contains(['"', '\\', '#', '\n', '\0'])
        && name.len() + value.len() + 3 <= MAX_ENVIRONMENT_LINE
}

/// The content of `/etc/environment`, and the names left out of it (see the
/// module docs).
pub fn render_environment(vars: &SessionEnv) -> (String, Vec<&str>) {
    let mut out = String::from(ENVIRONMENT_HEADER);
    let mut skipped = Vec::new();
    for (name, value) in vars {
        if pam_env_can_represent(name, value) {
            out.push_str(&format!("{name}=\"{value}\"\n"));
        } else {
            skipped.push(name.as_str());
        }
    }
    (out, skipped)
}

/// `value` as one single-quoted POSIX shell word.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The content of the profile script.
pub fn render_profile(vars: &SessionEnv) -> String {
    let mut out = String::from(PROFILE_HEADER);
    for (name, value) in vars {
        out.push_str(&format!("export {name}={}\n", shell_quote(value)));
    }
    out
}

/// Replaces `path` with `content` atomically, mode [`FILE_MODE`].
pub fn write_file(path: &Path, content: &str) -> Result<(), KeyError> {
    keys::write_atomically(path, content.as_bytes(), FILE_MODE, None)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> SessionEnv {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn names() {
        for ok in ["FOO", "_x", "a1_B2", "_"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "Ä", "A\nB", "A.B"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn parse_keeps_good_entries_and_reports_the_rest() {
        let p = parse(
            r#"{"FOO":"bar","bad-name":"x","1X":"y","BURSTFLARE_AGENT_SECRET":"s",
                "NUM":1,"NUL":"a\u0000b","EMPTY":"","Q":"it's"}"#,
        );
        assert_eq!(p.vars, env(&[("EMPTY", ""), ("FOO", "bar"), ("Q", "it's")]));
        assert_eq!(p.problems.len(), 5, "{:?}", p.problems);
        let all = p.problems.join("\n");
        for name in ["bad-name", "1X", "BURSTFLARE_AGENT_SECRET", "NUM", "NUL"] {
            assert!(all.contains(&format!("{name:?}")), "{name}: {all}");
        }
        // Values never reach the messages.
        assert!(
            !all.contains("\"s\"") && !all.contains("a\\u0000b"),
            "{all}"
        );
    }

    #[test]
    fn parse_ignores_blank_invalid_and_non_objects() {
        assert_eq!(parse(""), Parsed::default());
        assert_eq!(parse("  \n"), Parsed::default());
        for text in [r#"{"FOO":"#, r#"["FOO"]"#, r#""secret-ish""#, "null"] {
            let p = parse(text);
            assert!(p.vars.is_empty(), "{text}");
            assert_eq!(p.problems.len(), 1, "{text}");
            assert!(!p.problems[0].contains("secret-ish"), "{:?}", p.problems);
        }
    }

    #[test]
    fn environment_file_skips_what_pam_env_cannot_read() {
        let long = "x".repeat(MAX_ENVIRONMENT_LINE);
        let vars = env(&[
            ("B_SPACES", "  a b  "),
            ("A_QUOTE", "it's"),
            ("C_HOME", "$HOME/x"),
            ("D_DQUOTE", "say \"hi\""),
            ("E_BACKSLASH", r"C:\dir"),
            ("F_HASH", "a#b"),
            ("G_NEWLINE", "a\nb"),
            ("H_EMPTY", ""),
            ("I_LONG", &long),
        ]);
        let (content, skipped) = render_environment(&vars);
        assert_eq!(
            content,
            format!(
                "{ENVIRONMENT_HEADER}A_QUOTE=\"it's\"\nB_SPACES=\"  a b  \"\nC_HOME=\"$HOME/x\"\nH_EMPTY=\"\"\n"
            )
        );
        assert_eq!(
            skipped,
            vec!["D_DQUOTE", "E_BACKSLASH", "F_HASH", "G_NEWLINE", "I_LONG"]
        );
        let none = SessionEnv::new();
        let (content, skipped) = render_environment(&none);
        assert_eq!((content.as_str(), skipped.len()), (ENVIRONMENT_HEADER, 0));
    }

    #[test]
    fn profile_quotes_every_value() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        let vars = env(&[
            ("A", "it's"),
            ("B", "  a b  "),
            ("C", "$HOME `id` $(id) \\ \"q\""),
            ("D", "line1\nline2"),
        ]);
        assert_eq!(
            render_profile(&vars),
            format!(
                "{PROFILE_HEADER}export A='it'\\''s'\nexport B='  a b  '\nexport C='$HOME `id` $(id) \\ \"q\"'\nexport D='line1\nline2'\n"
            )
        );
    }

    #[test]
    fn profile_round_trips_through_sh() {
        let vars = env(&[
            ("A", "it's 'quoted' ''"),
            ("B", "  a b  "),
            ("C", "$HOME `id` $(id) \\ \"q\" # not a comment"),
            ("D", "line1\nline2\n"),
        ]);
        let tmp = tempfile::tempdir().unwrap();
        let script = tmp.path().join("env.sh");
        write_file(&script, &render_profile(&vars)).unwrap();
        assert_eq!(fs_mode(&script), FILE_MODE);
        for (name, value) in &vars {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!(". '{}' && printf %s \"${name}\"", script.display()))
                .env_clear()
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            assert_eq!(String::from_utf8(out.stdout).unwrap(), *value, "{name}");
        }
    }

    fn fs_mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o777
    }
}

//! Account-level value types: emails, display names, token names, workspace
//! slugs and workspace roles.
//!
//! Each type validates on construction (`parse`, `FromStr`, `Deserialize`) and
//! its error quotes the field and the offending value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// A validation failure for one request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Field path in the request (`email`, `expires_in_days`).
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// A normalized (trimmed, lowercased) email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let value = raw.trim().to_ascii_lowercase();
        let bad = |why: &str| {
            FieldError::new(
                "email",
                format!("{raw:?} is not a valid email address: {why}"),
            )
        };
        if value.is_empty() {
            return Err(FieldError::new("email", "is required"));
        }
        if value.len() > Self::MAX_LEN {
            return Err(bad("longer than 254 characters"));
        }
        let Some((local, domain)) = value.split_once('@') else {
            return Err(bad("missing `@`"));
        };
        if local.is_empty() || local.len() > 64 {
            return Err(bad("the part before `@` must be 1 to 64 characters"));
        }
        let local_ok = local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b));
        if !local_ok || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(bad(
                "the part before `@` has characters that are not allowed",
            ));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !domain_ok {
            return Err(bad("the domain must look like `example.com`"));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before `@`, used to suggest a personal workspace slug.
    pub fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or_default()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Validates a free-text label: trimmed, 1..=max characters, no control characters.
fn parse_label(field: &'static str, raw: &str, max: usize) -> Result<String, FieldError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    let chars = value.chars().count();
    if chars > max {
        return Err(FieldError::new(
            field,
            format!("is {chars} characters long; the limit is {max}"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            format!("{value:?} contains control characters"),
        ));
    }
    Ok(value.to_owned())
}

/// A user's display name (1–100 characters, no control characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        parse_label("display_name", raw, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A token's human label (1–64 characters, no control characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TokenName(String);

impl TokenName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        parse_label("name", raw, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A workspace's display name (1–64 characters, no control characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct WorkspaceName(String);

impl WorkspaceName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        parse_label("name", raw, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A workspace slug: 3–40 of `[a-z0-9-]`, starting with a letter, no `--`,
/// not ending in `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct WorkspaceSlug(String);

impl WorkspaceSlug {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let ok = (3..=40).contains(&raw.len())
            && raw.as_bytes()[0].is_ascii_lowercase()
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !raw.ends_with('-')
            && !raw.contains("--");
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(
                "slug",
                format!(
                    "{raw:?} must be 3-40 of a-z, 0-9 and single dashes, starting with a letter"
                ),
            ))
        }
    }

    /// Derives a personal workspace slug from an email's local part plus a
    /// caller-supplied disambiguating suffix (random, from the caller).
    pub fn personal(email: &Email, suffix: &str) -> Self {
        Self::derive(email.local_part(), suffix)
    }

    /// Derives a slug from any text (a team workspace's name) plus a
    /// caller-supplied random suffix.
    pub fn derive(text: &str, suffix: &str) -> Self {
        let mut base: String = text
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        while base.contains("--") {
            base = base.replace("--", "-");
        }
        let base = base.trim_matches('-');
        let base = if base.starts_with(|c: char| c.is_ascii_lowercase()) {
            base.to_owned()
        } else {
            format!("u-{base}")
        };
        let mut base: String = base.chars().take(30).collect();
        while base.ends_with('-') {
            base.pop();
        }
        let suffix: String = suffix
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            .take(8)
            .collect();
        Self(format!("{base}-{suffix}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A member's role in a workspace, most privileged first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }
}

impl FromStr for Role {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            "viewer" => Ok(Role::Viewer),
            other => Err(FieldError::new(
                "role",
                format!("{other:?} is not a role (owner, admin, member, viewer)"),
            )),
        }
    }
}

macro_rules! deserialize_via_parse {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                <$ty>::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
deserialize_via_parse!(Email, DisplayName, TokenName, WorkspaceSlug);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn email_is_normalized() {
        let e = Email::parse("  Ada.Lovelace+dev@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "ada.lovelace+dev@example.com");
        assert_eq!(e.local_part(), "ada.lovelace+dev");
    }

    #[test]
    fn bad_emails_are_rejected_with_reason() {
        for (raw, why) in [
            ("", "is required"),
            ("plainaddress", "missing `@`"),
            ("@example.com", "1 to 64"),
            ("a@localhost", "example.com"),
            ("a b@example.com", "not allowed"),
            ("a..b@example.com", "not allowed"),
            ("a@-example.com", "example.com"),
            ("a@example..com", "example.com"),
        ] {
            let err = Email::parse(raw).unwrap_err();
            assert_eq!(err.field, "email");
            assert!(err.message.contains(why), "{raw:?}: {err}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).unwrap_err().message.contains("254"));
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(DisplayName::parse("  Ada  ").unwrap().as_str(), "Ada");
        assert!(DisplayName::parse("   ").is_err());
        assert!(
            DisplayName::parse(&"x".repeat(101))
                .unwrap_err()
                .message
                .contains("limit is 100")
        );
        assert!(DisplayName::parse("a\u{7}b").is_err());
        assert!(TokenName::parse(&"é".repeat(64)).is_ok());
        assert!(TokenName::parse(&"é".repeat(65)).is_err());
    }

    #[test]
    fn personal_slug_from_odd_local_parts() {
        let slug = |raw: &str| WorkspaceSlug::personal(&Email::parse(raw).unwrap(), "ab12cd34").0;
        assert_eq!(slug("ada.lovelace@example.com"), "ada-lovelace-ab12cd34");
        assert_eq!(slug("42@example.com"), "u-42-ab12cd34");
        assert_eq!(slug("--x--@example.com"), "x-ab12cd34");
        assert_eq!(slug("'@example.com"), "u-ab12cd34");
    }

    #[test]
    fn roles_round_trip() {
        for role in [Role::Owner, Role::Admin, Role::Member, Role::Viewer] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
    }

    proptest! {
        #[test]
        fn personal_slugs_are_always_valid(local in "[a-zA-Z0-9._%+-]{1,64}", suffix in "[a-z0-9]{8}") {
            prop_assume!(!local.starts_with('.') && !local.ends_with('.') && !local.contains(".."));
            let email = Email::parse(&format!("{local}@example.com")).unwrap();
            let slug = WorkspaceSlug::personal(&email, &suffix);
            prop_assert!(WorkspaceSlug::parse(slug.as_str()).is_ok(), "{}", slug.as_str());
        }
    }
}

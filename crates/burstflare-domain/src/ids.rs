//! Typed, prefixed identifiers (`usr_…`, `ws_…`, `tok_…`).
//!
//! An id is its prefix, an underscore and 26 lowercase Crockford base32
//! characters encoding 128 random bits. Ids validate in `FromStr` and in
//! `Deserialize`, so a malformed id never reaches a query.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const BODY_LEN: usize = 26;

/// Error for a string that is not a valid id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value:?} is not a valid {kind} id (expected `{prefix}_` followed by 26 base32 characters)"
)]
pub struct InvalidId {
    pub kind: &'static str,
    pub prefix: &'static str,
    pub value: String,
}

fn encode(bytes: [u8; 16]) -> String {
    let mut n = u128::from_be_bytes(bytes);
    let mut out = [0u8; BODY_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n & 31) as usize];
        n >>= 5;
    }
    out.iter().map(|&b| b as char).collect()
}

fn valid_body(body: &str) -> bool {
    body.len() == BODY_LEN
        && body.bytes().all(|b| ALPHABET.contains(&b))
        // 26 * 5 = 130 bits; the top character carries only 3 bits of the u128.
        && body.as_bytes()[0] <= b'7'
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// Builds an id from 16 random bytes supplied by the caller.
            pub fn from_random(bytes: [u8; 16]) -> Self {
                Self(format!("{}_{}", $prefix, encode(bytes)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.strip_prefix(concat!($prefix, "_")) {
                    Some(body) if valid_body(body) => Ok(Self(s.to_owned())),
                    _ => Err(InvalidId { kind: $kind, prefix: $prefix, value: s.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(/// A user account.
    UserId, "usr", "user");
typed_id!(/// A workspace (personal or team).
    WorkspaceId, "ws", "workspace");
typed_id!(/// An API token (access or personal).
    TokenId, "tok", "token");
typed_id!(/// A development session (one container lifecycle, many generations).
    SessionId, "ses", "session");
typed_id!(/// A user's registered SSH public key.
    SshKeyId, "key", "SSH key");
typed_id!(/// A diagnostics probe that exercises every platform binding.
    ProbeId, "prb", "probe");
typed_id!(/// A signed-in session of a user (a browser, the CLI or an API client).
    AuthSessionId, "aus", "auth session");
typed_id!(/// A registered passkey (WebAuthn credential).
    PasskeyId, "pk", "passkey");
typed_id!(/// A pending WebAuthn ceremony (single-use challenge).
    ChallengeId, "chl", "challenge");
typed_id!(/// A device-authorization request (`burstflare login`).
    DeviceAuthId, "dev", "device authorization");
typed_id!(/// An invitation to join a team workspace.
    InviteId, "inv", "invite");
typed_id!(/// One audit-log record.
    AuditId, "aud", "audit record");
typed_id!(/// A template: a named development environment in a workspace.
    TemplateId, "tpl", "template");
typed_id!(/// One version of a template: a manifest and a bundle.
    TemplateVersionId, "tv", "template version");
typed_id!(/// A build of a template version.
    BuildId, "bld", "build");
typed_id!(/// An immutable release: exactly what sessions of a template boot.
    ReleaseId, "rel", "release");
typed_id!(/// A snapshot of a session's persisted paths.
    SnapshotId, "snp", "snapshot");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_wrong_prefix_and_body() {
        let id = UserId::from_random([7; 16]);
        assert!(id.as_str().starts_with("usr_"));
        assert!(WorkspaceId::from_str(id.as_str()).is_err());
        assert!(UserId::from_str("usr_").is_err());
        assert!(UserId::from_str("usr_ABCDEFGHJKMNPQRSTVWXYZ0123").is_err());
        let err = UserId::from_str("nope").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"nope\" is not a valid user id (expected `usr_` followed by 26 base32 characters)"
        );
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<TokenId>("\"tok_x\"").is_err());
        let id = TokenId::from_random([0xff; 16]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<TokenId>(&json).unwrap(), id);
    }

    proptest! {
        #[test]
        fn every_generated_id_round_trips(bytes in any::<[u8; 16]>()) {
            let id = ProbeId::from_random(bytes);
            prop_assert_eq!(id.as_str().len(), 4 + BODY_LEN);
            prop_assert_eq!(ProbeId::from_str(id.as_str()).unwrap(), id);
        }

        #[test]
        fn distinct_bytes_give_distinct_ids(a in any::<[u8; 16]>(), b in any::<[u8; 16]>()) {
            prop_assume!(a != b);
            prop_assert_ne!(UserId::from_random(a), UserId::from_random(b));
        }
    }
}

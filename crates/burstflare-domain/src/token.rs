//! Bearer token formats, hashing and use rules.
//!
//! A token is `bf_<kind>_<52 base32 characters>` (256 random bits), for
//! example `bf_pat_…` for a personal access token. The prefix lets secret
//! scanners and humans recognise BurstFlare tokens; only the SHA-256 of the
//! whole token is ever stored.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::UnixMillis;
use crate::account::FieldError;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const SECRET_LEN: usize = 52;
const DAY_MS: i64 = 86_400_000;

/// What a token was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Issued by registration or sign-in.
    Access,
    /// Created by the user for automation (`burstflare auth token create`).
    Personal,
    /// Exchanged for a new access token (and its own successor); never a bearer token.
    Refresh,
    /// The browser session cookie; never a bearer token.
    BrowserSession,
    /// The secret half of a device authorization (`burstflare login` polls with it).
    DeviceCode,
    /// A workspace invitation code.
    Invite,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Personal => "personal",
            TokenKind::Refresh => "refresh",
            TokenKind::BrowserSession => "browser_session",
            TokenKind::DeviceCode => "device_code",
            TokenKind::Invite => "invite",
        }
    }

    /// Whether `Authorization: Bearer` accepts this kind.
    pub fn is_bearer(self) -> bool {
        matches!(self, TokenKind::Access | TokenKind::Personal)
    }

    const ALL: [TokenKind; 6] = [
        TokenKind::Access,
        TokenKind::Personal,
        TokenKind::Refresh,
        TokenKind::BrowserSession,
        TokenKind::DeviceCode,
        TokenKind::Invite,
    ];

    fn tag(self) -> &'static str {
        match self {
            TokenKind::Access => "at",
            TokenKind::Personal => "pat",
            TokenKind::Refresh => "rt",
            TokenKind::BrowserSession => "bs",
            TokenKind::DeviceCode => "dc",
            TokenKind::Invite => "inv",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "access" => Some(TokenKind::Access),
            "personal" => Some(TokenKind::Personal),
            "refresh" => Some(TokenKind::Refresh),
            "browser_session" => Some(TokenKind::BrowserSession),
            "device_code" => Some(TokenKind::DeviceCode),
            "invite" => Some(TokenKind::Invite),
            _ => None,
        }
    }
}

/// Why a presented bearer token is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenUseError {
    #[error("the token is not a BurstFlare token (expected `bf_…`)")]
    Malformed,
    #[error("the token is not recognised")]
    Unknown,
    #[error("the token has been revoked")]
    Revoked,
    #[error("the token has expired")]
    Expired,
    #[error("this kind of token cannot authenticate requests")]
    WrongKind,
}

/// A plaintext bearer token. Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret {
    kind: TokenKind,
    value: String,
}

impl TokenSecret {
    /// Builds a token from 32 random bytes supplied by the caller.
    pub fn generate(kind: TokenKind, random: [u8; 32]) -> Self {
        let mut bits: u32 = 0;
        let mut nbits = 0;
        let mut body = String::with_capacity(SECRET_LEN);
        for byte in random {
            bits = (bits << 8) | u32::from(byte);
            nbits += 8;
            while nbits >= 5 {
                nbits -= 5;
                body.push(ALPHABET[((bits >> nbits) & 31) as usize] as char);
            }
        }
        if nbits > 0 {
            body.push(ALPHABET[((bits << (5 - nbits)) & 31) as usize] as char);
        }
        Self {
            kind,
            value: format!("bf_{}_{body}", kind.tag()),
        }
    }

    /// Parses a presented token, checking only its shape.
    pub fn parse(raw: &str) -> Result<Self, TokenUseError> {
        let rest = raw.strip_prefix("bf_").ok_or(TokenUseError::Malformed)?;
        let (tag, body) = rest.split_once('_').ok_or(TokenUseError::Malformed)?;
        let kind = TokenKind::ALL
            .into_iter()
            .find(|k| k.tag() == tag)
            .ok_or(TokenUseError::Malformed)?;
        if body.len() != SECRET_LEN || !body.bytes().all(|b| ALPHABET.contains(&b)) {
            return Err(TokenUseError::Malformed);
        }
        Ok(Self {
            kind,
            value: raw.to_owned(),
        })
    }

    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The plaintext, to show the user exactly once.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Lowercase hex SHA-256 of the whole token: the only form that is stored.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.value.as_bytes()))
    }

    /// A short, non-secret prefix shown in token lists (`bf_pat_k3x9`).
    pub fn display_prefix(&self) -> String {
        let tag_len = 4 + self.kind.tag().len();
        self.value.chars().take(tag_len + 4).collect()
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSecret({}…)", self.display_prefix())
    }
}

/// Decides whether a stored token may be used at `now`.
pub fn check_token_use(
    revoked_at: Option<UnixMillis>,
    expires_at: Option<UnixMillis>,
    now: UnixMillis,
) -> Result<(), TokenUseError> {
    if revoked_at.is_some() {
        return Err(TokenUseError::Revoked);
    }
    match expires_at {
        Some(at) if at <= now => Err(TokenUseError::Expired),
        _ => Ok(()),
    }
}

/// Longest lifetime a personal access token may be given.
pub const MAX_TOKEN_DAYS: u32 = 366;

/// Turns a requested lifetime in days into an absolute expiry.
pub fn token_expiry(now: UnixMillis, days: Option<u32>) -> Result<Option<UnixMillis>, FieldError> {
    match days {
        None => Ok(None),
        Some(d) if (1..=MAX_TOKEN_DAYS).contains(&d) => Ok(Some(now + i64::from(d) * DAY_MS)),
        Some(d) => Err(FieldError::new(
            "expires_in_days",
            format!(
                "{d} is out of range; use 1 to {MAX_TOKEN_DAYS} days, or omit it for no expiry"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn format_and_prefix() {
        let t = TokenSecret::generate(TokenKind::Personal, [0; 32]);
        assert_eq!(t.expose(), format!("bf_pat_{}", "0".repeat(52)));
        assert_eq!(t.display_prefix(), "bf_pat_0000");
        assert_eq!(format!("{t:?}"), "TokenSecret(bf_pat_0000…)");
        let a = TokenSecret::generate(TokenKind::Access, [0xff; 32]);
        assert!(a.expose().starts_with("bf_at_zzzz"));
        assert_eq!(a.hash().len(), 64);
    }

    #[test]
    fn malformed_tokens() {
        for raw in [
            "",
            "bf_",
            "bf_pat_",
            "ghp_abc",
            "bf_xx_0000",
            &format!("bf_pat_{}", "O".repeat(52)),
        ] {
            assert_eq!(
                TokenSecret::parse(raw),
                Err(TokenUseError::Malformed),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn use_rules() {
        assert_eq!(check_token_use(None, None, 10), Ok(()));
        assert_eq!(check_token_use(None, Some(11), 10), Ok(()));
        assert_eq!(
            check_token_use(None, Some(10), 10),
            Err(TokenUseError::Expired)
        );
        assert_eq!(
            check_token_use(Some(1), Some(100), 10),
            Err(TokenUseError::Revoked)
        );
    }

    #[test]
    fn expiry_bounds() {
        assert_eq!(token_expiry(0, None), Ok(None));
        assert_eq!(token_expiry(0, Some(1)), Ok(Some(DAY_MS)));
        assert!(token_expiry(0, Some(0)).is_err());
        assert!(
            token_expiry(0, Some(367))
                .unwrap_err()
                .message
                .contains("1 to 366")
        );
    }

    proptest! {
        #[test]
        fn generated_tokens_parse_back(bytes in any::<[u8; 32]>(), k in 0usize..6) {
            let kind = TokenKind::ALL[k];
            prop_assert_eq!(TokenKind::parse(kind.as_str()), Some(kind));
            let t = TokenSecret::generate(kind, bytes);
            let parsed = TokenSecret::parse(t.expose()).unwrap();
            prop_assert_eq!(parsed.kind(), kind);
            prop_assert_eq!(parsed.hash(), t.hash());
        }
    }
}

//! Signed, short-lived grants: the capability to upload one object (a
//! template bundle, later a snapshot) of at most `max_bytes` until
//! `expires_at`, handed to a client that then streams to the upload URL
//! without any other credential.
//!
//! A grant is `base64url(JSON claims) "." base64url(HMAC-SHA256(key, JSON))`.
//! The key is a Worker secret; the signature is checked in constant time
//! before anything in the claims is believed; then expiry. Callers check that
//! the claims name what the request is uploading to.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::UnixMillis;

/// What a grant allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// What is uploaded (`bundle`).
    pub purpose: String,
    /// The object it is for (a template version id).
    pub target: String,
    pub max_bytes: u64,
    pub expires_at: UnixMillis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("the upload grant is malformed")]
    Malformed,
    #[error("the upload grant's signature is not valid")]
    BadSignature,
    #[error("the upload grant has expired; ask for a new one")]
    Expired,
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => Hmac::<Sha256>::new(&Default::default()),
    }
}

/// Signs `grant` with `key`.
pub fn sign(grant: &Grant, key: &[u8]) -> String {
    let claims = serde_json::to_vec(grant).unwrap_or_default();
    let mut m = mac(key);
    m.update(&claims);
    let tag = m.finalize().into_bytes();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&claims),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// Verifies a presented grant at `now`.
pub fn verify(token: &str, key: &[u8], now: UnixMillis) -> Result<Grant, GrantError> {
    let (claims, tag) = token.trim().split_once('.').ok_or(GrantError::Malformed)?;
    let claims = URL_SAFE_NO_PAD
        .decode(claims)
        .map_err(|_| GrantError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| GrantError::Malformed)?;
    let mut m = mac(key);
    m.update(&claims);
    m.verify_slice(&tag).map_err(|_| GrantError::BadSignature)?;
    let grant: Grant = serde_json::from_slice(&claims).map_err(|_| GrantError::Malformed)?;
    if grant.expires_at <= now {
        return Err(GrantError::Expired);
    }
    Ok(grant)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            purpose: "bundle".into(),
            target: "tv_1".into(),
            max_bytes: 1024,
            expires_at: 1_000,
        }
    }

    #[test]
    fn round_trip_and_expiry() {
        let t = sign(&grant(), b"secret");
        assert_eq!(verify(&t, b"secret", 999), Ok(grant()));
        assert_eq!(verify(&t, b"secret", 1_000), Err(GrantError::Expired));
    }

    #[test]
    fn forged_grants_are_refused() {
        let t = sign(&grant(), b"secret");
        assert_eq!(verify(&t, b"other", 0), Err(GrantError::BadSignature));
        // Raising the size limit in the claims breaks the signature.
        let (_, tag) = t.split_once('.').unwrap();
        let bigger = Grant {
            max_bytes: 1 << 40,
            ..grant()
        };
        let forged = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&bigger).unwrap())
        );
        assert_eq!(verify(&forged, b"secret", 0), Err(GrantError::BadSignature));
        for bad in ["", "abc", "a.b", "!!.!!", &t.replace('.', "")] {
            assert!(verify(bad, b"secret", 0).is_err(), "{bad}");
        }
        // A valid signature over something that is not a grant.
        let mut m = mac(b"secret");
        m.update(b"[]");
        let junk = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(b"[]"),
            URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
        );
        assert_eq!(verify(&junk, b"secret", 0), Err(GrantError::Malformed));
    }
}

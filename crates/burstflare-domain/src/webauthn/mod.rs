//! WebAuthn (passkey) ceremony verification for the relying party.
//!
//! [`verify_registration`] checks a `navigator.credentials.create()` response
//! and returns the credential to store; [`verify_assertion`] checks a
//! `navigator.credentials.get()` response against a stored credential. Both
//! follow WebAuthn Level 3 §7.1 and §7.2 for a relying party that requests
//! `attestation: "none"` and offers ES256 and EdDSA keys:
//!
//! * **clientDataJSON**: the ceremony `type`, the `challenge` the server issued
//!   (compared in constant time), an `origin` from the configured list, and
//!   `crossOrigin` not true (BurstFlare is never embedded in another site).
//! * **Authenticator data**: the SHA-256 of the RP id, user presence always,
//!   user verification when required, consistent backup flags, and an exact
//!   layout: the credential public key and the extensions are CBOR items whose
//!   ends are measured, so truncation and trailing bytes are errors.
//! * **Attestation**: `none` (empty statement) or `packed` self attestation
//!   (signed by the credential key itself). Certificate chains (`x5c`) and
//!   other formats are refused rather than accepted unchecked: BurstFlare keeps
//!   no attestation roots, so it has no use for them.
//! * **Keys and signatures**: COSE ES256 (P-256, DER signatures) and EdDSA
//!   (Ed25519) — see [`cose`]. RS256 ([`ALG_RS256`]) is refused with
//!   [`WebAuthnError::UnsupportedAlgorithm`].
//! * **Sign counters**: once either side is non-zero, the counter must grow;
//!   otherwise the authenticator may have been cloned (§6.1.1, §7.2 step 21).
//!
//! Everything is pure and deterministic: callers pass the expected challenge,
//! the stored key and counter; no clock or randomness is read, so the module
//! builds for the Worker. What stays with the caller: issuing challenges of at
//! least 16 random bytes and consuming each once, checking that the response's
//! `rawId` equals [`VerifiedCredential::credential_id`] on registration,
//! finding the credential by id and checking `userHandle` on sign-in, and
//! storing the new sign count.
//!
//! [`soft`] (tests and the `authenticator` feature) is a software authenticator
//! that produces real responses for this verifier.

mod cbor;
mod cose;
#[cfg(any(test, feature = "authenticator"))]
pub mod soft;
#[cfg(test)]
mod tests;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::subtle::ConstantTimeEq as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use cbor::{Key, Value};

/// COSE algorithm ECDSA with SHA-256 on P-256.
pub const ALG_ES256: i64 = -7;
/// COSE algorithm EdDSA (Ed25519 for WebAuthn).
pub const ALG_EDDSA: i64 = -8;
/// COSE algorithm RSASSA-PKCS1-v1_5 with SHA-256: not supported; do not offer it.
pub const ALG_RS256: i64 = -257;

/// The shortest challenge accepted (WebAuthn §13.4.3 asks for 16 random bytes).
pub const MIN_CHALLENGE_LEN: usize = 16;
/// The longest credential id accepted (WebAuthn §7.1 step 25).
pub const MAX_CREDENTIAL_ID_LEN: usize = 1023;

const TYPE_CREATE: &str = "webauthn.create";
const TYPE_GET: &str = "webauthn.get";
const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;
const FLAG_ED: u8 = 0x80;
/// rpIdHash (32) + flags (1) + signCount (4).
const FIXED_AUTH_DATA_LEN: usize = 37;

/// What the relying party expects, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct RelyingParty<'a> {
    /// The RP id, a registrable domain such as `localhost` or `burstflare.dev`.
    pub id: &'a str,
    /// The allowed origins, matched exactly (`http://localhost:8787`).
    pub origins: &'a [String],
}

/// A verified new credential, to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCredential {
    pub credential_id: Vec<u8>,
    /// The COSE_Key bytes exactly as received (re-parsed at sign-in).
    pub public_key_cose: Vec<u8>,
    pub algorithm: i64,
    pub sign_count: u32,
    pub aaguid: [u8; 16],
    pub user_verified: bool,
    pub backup_eligible: bool,
    pub backed_up: bool,
    /// `"none"` or `"packed"`.
    pub attestation_format: String,
}

/// The outcome of a verified assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// The counter to store for the credential.
    pub sign_count: u32,
    pub user_verified: bool,
    pub backed_up: bool,
}

/// Why a WebAuthn response is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebAuthnError {
    #[error("clientDataJSON is not valid: {0}")]
    MalformedClientData(String),
    #[error("clientDataJSON.type is {received:?}, expected {expected:?}")]
    WrongCeremonyType {
        expected: &'static str,
        received: String,
    },
    #[error(
        "the expected challenge is {len} bytes; at least {MIN_CHALLENGE_LEN} random bytes are required"
    )]
    ChallengeTooShort { len: usize },
    #[error("clientDataJSON.challenge does not match the challenge issued for this ceremony")]
    ChallengeMismatch,
    #[error("clientDataJSON.origin {origin:?} is not an allowed origin")]
    OriginNotAllowed { origin: String },
    #[error("clientDataJSON.crossOrigin is true: the ceremony ran in a cross-origin iframe")]
    CrossOrigin,
    #[error("authenticator data is malformed: {0}")]
    MalformedAuthenticatorData(String),
    #[error(
        "authenticator data is for another relying party (rpIdHash is not SHA-256 of {rp_id:?})"
    )]
    RpIdHashMismatch { rp_id: String },
    #[error("the authenticator did not report user presence (UP flag)")]
    UserNotPresent,
    #[error(
        "user verification is required but the authenticator did not verify the user (UV flag)"
    )]
    UserNotVerified,
    #[error("authenticator data carries no attested credential data (AT flag)")]
    MissingAttestedCredentialData,
    #[error("the attestation object is malformed: {0}")]
    MalformedAttestationObject(String),
    #[error(
        "attestation format {format:?} is not supported (only \"none\" and self-attested \"packed\"; request attestation \"none\")"
    )]
    UnsupportedAttestationFormat { format: String },
    #[error(
        "\"packed\" attestation with a certificate chain (x5c) is not supported (only self attestation; request attestation \"none\")"
    )]
    AttestationCertificateUnsupported,
    #[error("the attestation statement is invalid: {0}")]
    InvalidAttestationStatement(String),
    #[error("COSE algorithm {alg} is not supported (ES256 -7 and EdDSA -8 are)")]
    UnsupportedAlgorithm { alg: i64 },
    #[error("the credential public key is malformed: {0}")]
    MalformedPublicKey(String),
    #[error("the signature does not verify with the credential public key")]
    InvalidSignature,
    #[error(
        "the sign count went from {stored} to {received}: the authenticator may have been cloned"
    )]
    SignCountRegression { stored: u32, received: u32 },
    #[error("{count} unexpected bytes follow the {after}")]
    TrailingBytes { after: &'static str, count: usize },
}

impl WebAuthnError {
    /// A stable snake_case reason for API error details.
    pub fn reason(&self) -> &'static str {
        match self {
            WebAuthnError::MalformedClientData(_) => "malformed_client_data",
            WebAuthnError::WrongCeremonyType { .. } => "wrong_ceremony_type",
            WebAuthnError::ChallengeTooShort { .. } => "challenge_too_short",
            WebAuthnError::ChallengeMismatch => "challenge_mismatch",
            WebAuthnError::OriginNotAllowed { .. } => "origin_not_allowed",
            WebAuthnError::CrossOrigin => "cross_origin",
            WebAuthnError::MalformedAuthenticatorData(_) => "malformed_authenticator_data",
            WebAuthnError::RpIdHashMismatch { .. } => "rp_id_mismatch",
            WebAuthnError::UserNotPresent => "user_not_present",
            WebAuthnError::UserNotVerified => "user_not_verified",
            WebAuthnError::MissingAttestedCredentialData => "missing_attested_credential_data",
            WebAuthnError::MalformedAttestationObject(_) => "malformed_attestation_object",
            WebAuthnError::UnsupportedAttestationFormat { .. } => "unsupported_attestation_format",
            WebAuthnError::AttestationCertificateUnsupported => {
                "unsupported_attestation_certificate"
            }
            WebAuthnError::InvalidAttestationStatement(_) => "invalid_attestation_statement",
            WebAuthnError::UnsupportedAlgorithm { .. } => "unsupported_algorithm",
            WebAuthnError::MalformedPublicKey(_) => "malformed_public_key",
            WebAuthnError::InvalidSignature => "invalid_signature",
            WebAuthnError::SignCountRegression { .. } => "sign_count_regression",
            WebAuthnError::TrailingBytes { .. } => "trailing_bytes",
        }
    }
}

/// Verifies a registration ceremony response (`navigator.credentials.create`).
///
/// `client_data_json` and `attestation_object` are the raw bytes (already
/// base64url-decoded by the caller); `expected_challenge` is the challenge
/// issued for this ceremony.
pub fn verify_registration(
    rp: &RelyingParty<'_>,
    expected_challenge: &[u8],
    client_data_json: &[u8],
    attestation_object: &[u8],
    require_user_verification: bool,
) -> Result<VerifiedCredential, WebAuthnError> {
    check_client_data(rp, TYPE_CREATE, expected_challenge, client_data_json)?;
    let client_data_hash = Sha256::digest(client_data_json);

    let attestation = AttestationObject::parse(attestation_object)?;
    let auth_data = AuthenticatorData::parse(attestation.auth_data)?;
    auth_data.check(rp, require_user_verification)?;
    let credential = auth_data
        .attested
        .as_ref()
        .ok_or(WebAuthnError::MissingAttestedCredentialData)?;
    let public_key = cose::PublicKey::from_cose(&credential.public_key)?;

    match attestation.format {
        "none" => {
            let entries = attestation.statement.as_map().map(<[_]>::len);
            if entries != Some(0) {
                return Err(WebAuthnError::InvalidAttestationStatement(
                    "\"none\" attestation must have an empty attStmt map".into(),
                ));
            }
        }
        "packed" => verify_packed_self(
            &attestation.statement,
            attestation.auth_data,
            &client_data_hash,
            &public_key,
        )?,
        other => {
            return Err(WebAuthnError::UnsupportedAttestationFormat {
                format: truncate(other),
            });
        }
    }

    Ok(VerifiedCredential {
        credential_id: credential.credential_id.to_vec(),
        public_key_cose: credential.public_key_cose.to_vec(),
        algorithm: public_key.algorithm(),
        sign_count: auth_data.sign_count,
        aaguid: credential.aaguid,
        user_verified: auth_data.flags & FLAG_UV != 0,
        backup_eligible: auth_data.flags & FLAG_BE != 0,
        backed_up: auth_data.flags & FLAG_BS != 0,
        attestation_format: attestation.format.to_owned(),
    })
}

/// Verifies an authentication ceremony response (`navigator.credentials.get`)
/// against the stored credential.
///
/// On success the caller stores [`VerifiedAssertion::sign_count`].
#[expect(
    clippy::too_many_arguments,
    reason = "the WebAuthn inputs are distinct byte strings; a struct would only rename them"
)]
pub fn verify_assertion(
    rp: &RelyingParty<'_>,
    expected_challenge: &[u8],
    client_data_json: &[u8],
    authenticator_data: &[u8],
    signature: &[u8],
    stored_public_key_cose: &[u8],
    stored_sign_count: u32,
    require_user_verification: bool,
) -> Result<VerifiedAssertion, WebAuthnError> {
    check_client_data(rp, TYPE_GET, expected_challenge, client_data_json)?;
    let auth_data = AuthenticatorData::parse(authenticator_data)?;
    auth_data.check(rp, require_user_verification)?;

    let public_key = cose::parse_stored(stored_public_key_cose)?;
    let mut signed = Vec::with_capacity(authenticator_data.len() + 32);
    signed.extend_from_slice(authenticator_data);
    signed.extend_from_slice(&Sha256::digest(client_data_json));
    public_key.verify(&signed, signature)?;

    let received = auth_data.sign_count;
    if (received != 0 || stored_sign_count != 0) && received <= stored_sign_count {
        return Err(WebAuthnError::SignCountRegression {
            stored: stored_sign_count,
            received,
        });
    }

    Ok(VerifiedAssertion {
        sign_count: received,
        user_verified: auth_data.flags & FLAG_UV != 0,
        backed_up: auth_data.flags & FLAG_BS != 0,
    })
}

/// The members of `CollectedClientData` that are checked. Other members
/// (`topOrigin`, `tokenBinding`, browser additions) are ignored; a member
/// that appears twice is an error.
#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    ceremony: String,
    challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin", default)]
    cross_origin: Option<bool>,
}

fn check_client_data(
    rp: &RelyingParty<'_>,
    expected_type: &'static str,
    expected_challenge: &[u8],
    client_data_json: &[u8],
) -> Result<(), WebAuthnError> {
    if expected_challenge.len() < MIN_CHALLENGE_LEN {
        return Err(WebAuthnError::ChallengeTooShort {
            len: expected_challenge.len(),
        });
    }
    // Serde would also read a struct from a JSON array; only an object is client data.
    if client_data_json.trim_ascii_start().first() != Some(&b'{') {
        return Err(WebAuthnError::MalformedClientData(
            "it is not a JSON object".into(),
        ));
    }
    let data: ClientData = serde_json::from_slice(client_data_json)
        .map_err(|e| WebAuthnError::MalformedClientData(e.to_string()))?;
    if data.ceremony != expected_type {
        return Err(WebAuthnError::WrongCeremonyType {
            expected: expected_type,
            received: truncate(&data.ceremony),
        });
    }
    let expected = URL_SAFE_NO_PAD.encode(expected_challenge);
    if !bool::from(expected.as_bytes().ct_eq(data.challenge.as_bytes())) {
        return Err(WebAuthnError::ChallengeMismatch);
    }
    if !rp.origins.contains(&data.origin) {
        return Err(WebAuthnError::OriginNotAllowed {
            origin: truncate(&data.origin),
        });
    }
    if data.cross_origin == Some(true) {
        return Err(WebAuthnError::CrossOrigin);
    }
    Ok(())
}

/// Caps an attacker-supplied string quoted in an error message.
fn truncate(s: &str) -> String {
    const MAX_CHARS: usize = 200;
    match s.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

/// `{"fmt": text, "attStmt": map, "authData": bytes}` (WebAuthn §6.5.4).
struct AttestationObject<'a> {
    format: &'a str,
    statement: Value<'a>,
    auth_data: &'a [u8],
}

impl<'a> AttestationObject<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, WebAuthnError> {
        let malformed = WebAuthnError::MalformedAttestationObject;
        let value = match cbor::decode_exact(bytes) {
            Ok(value) => value,
            Err(cbor::CborError::TrailingBytes { count }) => {
                return Err(WebAuthnError::TrailingBytes {
                    after: "attestation object",
                    count,
                });
            }
            Err(e) => return Err(malformed(e.to_string())),
        };
        if value.as_map().is_none() {
            return Err(malformed("it is not a CBOR map".into()));
        }
        let field = |name: &'static str| {
            value
                .get(Key::Text(name))
                .map_err(|e| malformed(e.to_string()))?
                .ok_or_else(|| malformed(format!("{name:?} is missing")))
        };
        let format = field("fmt")?
            .as_text()
            .ok_or_else(|| malformed("\"fmt\" is not a text string".into()))?;
        let statement = field("attStmt")?.clone();
        if statement.as_map().is_none() {
            return Err(malformed("\"attStmt\" is not a map".into()));
        }
        let auth_data = field("authData")?
            .as_bytes()
            .ok_or_else(|| malformed("\"authData\" is not a byte string".into()))?;
        Ok(Self {
            format,
            statement,
            auth_data,
        })
    }
}

/// `packed` self attestation (WebAuthn §8.2): `{"alg": int, "sig": bytes}`,
/// signed over `authData || SHA-256(clientDataJSON)` by the credential key.
fn verify_packed_self(
    statement: &Value<'_>,
    auth_data: &[u8],
    client_data_hash: &[u8],
    public_key: &cose::PublicKey,
) -> Result<(), WebAuthnError> {
    let invalid = WebAuthnError::InvalidAttestationStatement;
    let member = |name: &'static str| {
        statement
            .get(Key::Text(name))
            .map_err(|e| invalid(e.to_string()))
    };
    if member("x5c")?.is_some() {
        return Err(WebAuthnError::AttestationCertificateUnsupported);
    }
    if member("ecdaaKeyId")?.is_some() {
        return Err(WebAuthnError::UnsupportedAttestationFormat {
            format: "packed (ECDAA)".into(),
        });
    }
    let alg = member("alg")?
        .and_then(Value::as_int)
        .ok_or_else(|| invalid("\"packed\" attStmt has no integer \"alg\"".into()))?;
    let sig = member("sig")?
        .and_then(Value::as_bytes)
        .ok_or_else(|| invalid("\"packed\" attStmt has no byte string \"sig\"".into()))?;
    let key_alg = public_key.algorithm();
    if alg != i128::from(key_alg) {
        return Err(invalid(format!(
            "attStmt alg {alg} differs from the credential key's alg {key_alg}"
        )));
    }
    let mut signed = Vec::with_capacity(auth_data.len() + client_data_hash.len());
    signed.extend_from_slice(auth_data);
    signed.extend_from_slice(client_data_hash);
    public_key.verify(&signed, sig).map_err(|_| {
        invalid("the self-attestation signature does not verify with the credential key".into())
    })
}

/// Authenticator data (WebAuthn §6.1): `rpIdHash(32) | flags(1) |
/// signCount(4, BE) | [attestedCredentialData] | [extensions]`.
struct AuthenticatorData<'a> {
    rp_id_hash: &'a [u8; 32],
    flags: u8,
    sign_count: u32,
    attested: Option<AttestedCredential<'a>>,
}

/// `aaguid(16) | credentialIdLength(2, BE) | credentialId | credentialPublicKey`.
struct AttestedCredential<'a> {
    aaguid: [u8; 16],
    credential_id: &'a [u8],
    public_key_cose: &'a [u8],
    public_key: Value<'a>,
}

impl<'a> AuthenticatorData<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, WebAuthnError> {
        let malformed = WebAuthnError::MalformedAuthenticatorData;
        if bytes.len() < FIXED_AUTH_DATA_LEN {
            return Err(malformed(format!(
                "{} bytes, shorter than the {FIXED_AUTH_DATA_LEN}-byte fixed part",
                bytes.len()
            )));
        }
        let fixed = || malformed(format!("{} bytes is too short", bytes.len()));
        let (rp_id_hash, rest) = bytes.split_first_chunk::<32>().ok_or_else(fixed)?;
        let (&flags, rest) = rest.split_first().ok_or_else(fixed)?;
        let (count, mut rest) = rest.split_first_chunk::<4>().ok_or_else(fixed)?;
        let sign_count = u32::from_be_bytes(*count);
        if flags & FLAG_BS != 0 && flags & FLAG_BE == 0 {
            return Err(malformed(
                "the backup state flag (BS) is set without backup eligibility (BE)".into(),
            ));
        }

        let attested = if flags & FLAG_AT != 0 {
            let (credential, after) = AttestedCredential::parse(rest)?;
            rest = after;
            Some(credential)
        } else {
            None
        };
        if flags & FLAG_ED != 0 {
            let (extensions, used) = cbor::decode_prefix(rest)
                .map_err(|e| malformed(format!("extensions (ED flag): {e}")))?;
            if extensions.as_map().is_none() {
                return Err(malformed("extensions (ED flag) are not a CBOR map".into()));
            }
            rest = rest.get(used..).unwrap_or_default();
        }
        if !rest.is_empty() {
            return Err(WebAuthnError::TrailingBytes {
                after: "authenticator data",
                count: rest.len(),
            });
        }
        Ok(Self {
            rp_id_hash,
            flags,
            sign_count,
            attested,
        })
    }

    /// The checks common to both ceremonies: RP id, UP and (when required) UV.
    fn check(
        &self,
        rp: &RelyingParty<'_>,
        require_user_verification: bool,
    ) -> Result<(), WebAuthnError> {
        if self.rp_id_hash[..] != Sha256::digest(rp.id.as_bytes())[..] {
            return Err(WebAuthnError::RpIdHashMismatch {
                rp_id: rp.id.to_owned(),
            });
        }
        if self.flags & FLAG_UP == 0 {
            return Err(WebAuthnError::UserNotPresent);
        }
        if require_user_verification && self.flags & FLAG_UV == 0 {
            return Err(WebAuthnError::UserNotVerified);
        }
        Ok(())
    }
}

impl<'a> AttestedCredential<'a> {
    /// Parses attested credential data at the start of `bytes`; returns it and
    /// what follows the credential public key.
    fn parse(bytes: &'a [u8]) -> Result<(Self, &'a [u8]), WebAuthnError> {
        let malformed = WebAuthnError::MalformedAuthenticatorData;
        let truncated = || {
            malformed(format!(
                "attested credential data is truncated ({} bytes)",
                bytes.len()
            ))
        };
        let (aaguid, rest) = bytes.split_first_chunk::<16>().ok_or_else(truncated)?;
        let (len, rest) = rest.split_first_chunk::<2>().ok_or_else(truncated)?;
        let id_len = usize::from(u16::from_be_bytes(*len));
        if id_len == 0 || id_len > MAX_CREDENTIAL_ID_LEN {
            return Err(malformed(format!(
                "the credential id is {id_len} bytes; 1 to {MAX_CREDENTIAL_ID_LEN} are allowed"
            )));
        }
        let (credential_id, rest) = rest.split_at_checked(id_len).ok_or_else(truncated)?;
        let (public_key, used) = cbor::decode_prefix(rest)
            .map_err(|e| malformed(format!("the credential public key: {e}")))?;
        let (public_key_cose, rest) = rest.split_at_checked(used).ok_or_else(truncated)?;
        Ok((
            Self {
                aaguid: *aaguid,
                credential_id,
                public_key_cose,
                public_key,
            },
            rest,
        ))
    }
}

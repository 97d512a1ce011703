//! A software WebAuthn authenticator plus browser, for tests.
//!
//! [`SoftAuthenticator`] plays both the authenticator and the client: it
//! builds the clientDataJSON a browser would, canonical-CBOR authenticator
//! data and attestation objects, COSE public keys, and real ES256 (DER) or
//! Ed25519 signatures — the bytes a relying party receives after
//! base64url-decoding `navigator.credentials.create()`/`get()` responses.
//! Every field the verifier checks can be overridden to produce a bad
//! response (wrong type, origin, flags, counter, attestation, signature).
//!
//! It is deterministic: keys and the credential id derive from a 32-byte seed.
//! It holds a single credential, and its private key is not protected in any
//! way, so it only exists in tests and behind the `authenticator` feature.

// `signature::Signer`, shared by p256 and ed25519-dalek.
use ed25519_dalek::Signer as _;
use sha2::{Digest, Sha256};

use super::cbor::Encoder;
use super::{ALG_EDDSA, ALG_ES256, FLAG_AT, FLAG_BE, FLAG_BS, FLAG_ED, FLAG_UP, FLAG_UV};

/// The key type of a soft credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftAlg {
    /// ECDSA P-256 with SHA-256 (COSE -7).
    Es256,
    /// Ed25519 (COSE -8).
    EdDsa,
}

/// The attestation statement [`SoftAuthenticator::create`] produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoftAttestation {
    /// `fmt: "none"`, empty `attStmt`.
    None,
    /// `fmt: "packed"` self attestation, signed by the credential key.
    PackedSelf,
    /// Any format and statement, for negative tests: `att_stmt` is one
    /// encoded CBOR item placed as is.
    Raw { format: String, att_stmt: Vec<u8> },
}

/// What the relying party and the user do in `navigator.credentials.create()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    pub origin: String,
    pub rp_id: String,
    pub challenge: Vec<u8>,
    pub user_handle: Vec<u8>,
    /// clientDataJSON `type`; `None` writes `webauthn.create`.
    pub ceremony_type: Option<String>,
    /// clientDataJSON `crossOrigin`.
    pub cross_origin: bool,
    pub attestation: SoftAttestation,
    /// The UP flag.
    pub user_present: bool,
    /// The UV flag.
    pub user_verified: bool,
    /// The BE flag.
    pub backup_eligible: bool,
    /// The BS flag.
    pub backed_up: bool,
    /// The sign count to report; `None` reports the current counter.
    pub sign_count: Option<u32>,
    /// An encoded CBOR extensions map appended to authenticator data (sets ED).
    pub extensions: Option<Vec<u8>>,
    /// Flips a bit in the attestation signature (`PackedSelf`).
    pub tamper_signature: bool,
}

impl CreateOptions {
    /// A well-formed ceremony: `none` attestation, user present and verified.
    pub fn new(origin: &str, rp_id: &str, challenge: &[u8], user_handle: &[u8]) -> Self {
        Self {
            origin: origin.to_owned(),
            rp_id: rp_id.to_owned(),
            challenge: challenge.to_vec(),
            user_handle: user_handle.to_vec(),
            ceremony_type: None,
            cross_origin: false,
            attestation: SoftAttestation::None,
            user_present: true,
            user_verified: true,
            backup_eligible: false,
            backed_up: false,
            sign_count: None,
            extensions: None,
            tamper_signature: false,
        }
    }

    /// The same options with another attestation.
    pub fn with_attestation(mut self, attestation: SoftAttestation) -> Self {
        self.attestation = attestation;
        self
    }
}

/// What the relying party and the user do in `navigator.credentials.get()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetOptions {
    pub origin: String,
    pub rp_id: String,
    pub challenge: Vec<u8>,
    /// clientDataJSON `type`; `None` writes `webauthn.get`.
    pub ceremony_type: Option<String>,
    /// clientDataJSON `crossOrigin`.
    pub cross_origin: bool,
    /// The UP flag.
    pub user_present: bool,
    /// The UV flag.
    pub user_verified: bool,
    /// The BE flag.
    pub backup_eligible: bool,
    /// The BS flag.
    pub backed_up: bool,
    /// The sign count to report instead of advancing the counter.
    pub sign_count: Option<u32>,
    /// An encoded CBOR extensions map appended to authenticator data (sets ED).
    pub extensions: Option<Vec<u8>>,
    /// Flips a bit in the assertion signature.
    pub tamper_signature: bool,
}

impl GetOptions {
    /// A well-formed ceremony: user present and verified, counter advanced.
    pub fn new(origin: &str, rp_id: &str, challenge: &[u8]) -> Self {
        Self {
            origin: origin.to_owned(),
            rp_id: rp_id.to_owned(),
            challenge: challenge.to_vec(),
            ceremony_type: None,
            cross_origin: false,
            user_present: true,
            user_verified: true,
            backup_eligible: false,
            backed_up: false,
            sign_count: None,
            extensions: None,
            tamper_signature: false,
        }
    }
}

/// The decoded `AuthenticatorAttestationResponse` of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedCredential {
    /// `rawId`.
    pub credential_id: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub attestation_object: Vec<u8>,
    /// The `authData` inside the attestation object.
    pub authenticator_data: Vec<u8>,
    /// The COSE_Key inside the authenticator data.
    pub public_key_cose: Vec<u8>,
}

/// The decoded `AuthenticatorAssertionResponse` of a sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// `rawId`.
    pub credential_id: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub authenticator_data: Vec<u8>,
    pub signature: Vec<u8>,
    /// `userHandle`: the user handle given at registration, if any.
    pub user_handle: Option<Vec<u8>>,
}

#[derive(Clone)]
enum SoftKey {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_dalek::SigningKey),
}

/// A single-credential software authenticator. `Debug` does not show the key.
#[derive(Clone)]
pub struct SoftAuthenticator {
    key: SoftKey,
    credential_id: Vec<u8>,
    aaguid: [u8; 16],
    counter: u32,
    user_handle: Option<Vec<u8>>,
}

impl std::fmt::Debug for SoftAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftAuthenticator")
            .field("algorithm", &self.algorithm())
            .field("credential_id", &hex::encode(&self.credential_id))
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl SoftAuthenticator {
    /// An authenticator whose key and 32-byte credential id derive from `seed`.
    /// Its AAGUID is all zeros and its counter starts at 0.
    pub fn new(alg: SoftAlg, seed: [u8; 32]) -> Self {
        let key = match alg {
            SoftAlg::Es256 => {
                // The seed is the scalar; the rare seed that is zero or not
                // below the group order is hashed until it is a valid one.
                let mut candidate = seed;
                loop {
                    if let Ok(key) = p256::ecdsa::SigningKey::from_bytes(&candidate.into()) {
                        break SoftKey::Es256(key);
                    }
                    candidate = Sha256::digest(candidate).into();
                }
            }
            SoftAlg::EdDsa => SoftKey::EdDsa(ed25519_dalek::SigningKey::from_bytes(&seed)),
        };
        let credential_id = Sha256::new()
            .chain_update(b"burstflare soft authenticator credential id")
            .chain_update(seed)
            .finalize()
            .to_vec();
        Self {
            key,
            credential_id,
            aaguid: [0; 16],
            counter: 0,
            user_handle: None,
        }
    }

    /// The same authenticator reporting another AAGUID.
    pub fn with_aaguid(mut self, aaguid: [u8; 16]) -> Self {
        self.aaguid = aaguid;
        self
    }

    pub fn credential_id(&self) -> &[u8] {
        &self.credential_id
    }

    /// The COSE algorithm of the credential key.
    pub fn algorithm(&self) -> i64 {
        match self.key {
            SoftKey::Es256(_) => ALG_ES256,
            SoftKey::EdDsa(_) => ALG_EDDSA,
        }
    }

    /// The current signature counter.
    pub fn sign_count(&self) -> u32 {
        self.counter
    }

    /// The credential public key as a canonical COSE_Key.
    pub fn public_key_cose(&self) -> Vec<u8> {
        match &self.key {
            SoftKey::Es256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                let x = point.x().map(|c| c.to_vec()).unwrap_or_default();
                let y = point.y().map(|c| c.to_vec()).unwrap_or_default();
                Encoder::new()
                    .map(5)
                    .int(1)
                    .int(2)
                    .int(3)
                    .int(ALG_ES256)
                    .int(-1)
                    .int(1)
                    .int(-2)
                    .bytes(&x)
                    .int(-3)
                    .bytes(&y)
                    .finish()
            }
            SoftKey::EdDsa(key) => Encoder::new()
                .map(4)
                .int(1)
                .int(1)
                .int(3)
                .int(ALG_EDDSA)
                .int(-1)
                .int(6)
                .int(-2)
                .bytes(key.verifying_key().as_bytes())
                .finish(),
        }
    }

    /// Signs `message` with the credential key: DER for ES256, raw for EdDSA.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.key {
            SoftKey::Es256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_der().as_bytes().to_vec()
            }
            SoftKey::EdDsa(key) => key.sign(message).to_bytes().to_vec(),
        }
    }

    /// `navigator.credentials.create()`: registers the credential.
    pub fn create(&mut self, opts: &CreateOptions) -> CreatedCredential {
        self.user_handle = Some(opts.user_handle.clone());
        let client_data_json = client_data(
            opts.ceremony_type.as_deref().unwrap_or(super::TYPE_CREATE),
            &opts.challenge,
            &opts.origin,
            opts.cross_origin,
        );
        let public_key_cose = self.public_key_cose();
        let mut attested =
            Vec::with_capacity(18 + self.credential_id.len() + public_key_cose.len());
        attested.extend_from_slice(&self.aaguid);
        attested.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        attested.extend_from_slice(&self.credential_id);
        attested.extend_from_slice(&public_key_cose);
        let authenticator_data = authenticator_data(
            &opts.rp_id,
            Flags {
                user_present: opts.user_present,
                user_verified: opts.user_verified,
                backup_eligible: opts.backup_eligible,
                backed_up: opts.backed_up,
            },
            opts.sign_count.unwrap_or(self.counter),
            Some(&attested),
            opts.extensions.as_deref(),
        );

        let (format, att_stmt) = match &opts.attestation {
            SoftAttestation::None => ("none", Encoder::new().map(0).finish()),
            SoftAttestation::PackedSelf => {
                let mut sig = self.sign(&signed_data(&authenticator_data, &client_data_json));
                if opts.tamper_signature {
                    flip_last_bit(&mut sig);
                }
                let stmt = Encoder::new()
                    .map(2)
                    .text("alg")
                    .int(self.algorithm())
                    .text("sig")
                    .bytes(&sig)
                    .finish();
                ("packed", stmt)
            }
            SoftAttestation::Raw { format, att_stmt } => (format.as_str(), att_stmt.clone()),
        };
        let attestation_object = Encoder::new()
            .map(3)
            .text("fmt")
            .text(format)
            .text("attStmt")
            .raw(&att_stmt)
            .text("authData")
            .bytes(&authenticator_data)
            .finish();

        CreatedCredential {
            credential_id: self.credential_id.clone(),
            client_data_json,
            attestation_object,
            authenticator_data,
            public_key_cose,
        }
    }

    /// `navigator.credentials.get()`: signs in with the credential, advancing
    /// the counter by one unless `opts.sign_count` overrides it.
    pub fn get(&mut self, opts: &GetOptions) -> Assertion {
        let sign_count = match opts.sign_count {
            Some(count) => count,
            None => {
                self.counter = self.counter.saturating_add(1);
                self.counter
            }
        };
        let client_data_json = client_data(
            opts.ceremony_type.as_deref().unwrap_or(super::TYPE_GET),
            &opts.challenge,
            &opts.origin,
            opts.cross_origin,
        );
        let authenticator_data = authenticator_data(
            &opts.rp_id,
            Flags {
                user_present: opts.user_present,
                user_verified: opts.user_verified,
                backup_eligible: opts.backup_eligible,
                backed_up: opts.backed_up,
            },
            sign_count,
            None,
            opts.extensions.as_deref(),
        );
        let mut signature = self.sign(&signed_data(&authenticator_data, &client_data_json));
        if opts.tamper_signature {
            flip_last_bit(&mut signature);
        }
        Assertion {
            credential_id: self.credential_id.clone(),
            client_data_json,
            authenticator_data,
            signature,
            user_handle: self.user_handle.clone(),
        }
    }
}

struct Flags {
    user_present: bool,
    user_verified: bool,
    backup_eligible: bool,
    backed_up: bool,
}

/// clientDataJSON as browsers serialise it: `type`, `challenge`, `origin`,
/// `crossOrigin`, in that order.
fn client_data(ceremony: &str, challenge: &[u8], origin: &str, cross_origin: bool) -> Vec<u8> {
    use base64::Engine as _;
    let json = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(challenge);
    format!(
        "{{\"type\":{},\"challenge\":{},\"origin\":{},\"crossOrigin\":{cross_origin}}}",
        json(ceremony),
        json(&challenge),
        json(origin),
    )
    .into_bytes()
}

fn authenticator_data(
    rp_id: &str,
    flags: Flags,
    sign_count: u32,
    attested: Option<&[u8]>,
    extensions: Option<&[u8]>,
) -> Vec<u8> {
    let mut bits = 0;
    for (set, bit) in [
        (flags.user_present, FLAG_UP),
        (flags.user_verified, FLAG_UV),
        (flags.backup_eligible, FLAG_BE),
        (flags.backed_up, FLAG_BS),
        (attested.is_some(), FLAG_AT),
        (extensions.is_some(), FLAG_ED),
    ] {
        if set {
            bits |= bit;
        }
    }
    let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
    data.push(bits);
    data.extend_from_slice(&sign_count.to_be_bytes());
    data.extend_from_slice(attested.unwrap_or_default());
    data.extend_from_slice(extensions.unwrap_or_default());
    data
}

/// `authenticatorData || SHA-256(clientDataJSON)`, what both ceremonies sign.
fn signed_data(authenticator_data: &[u8], client_data_json: &[u8]) -> Vec<u8> {
    let mut data = authenticator_data.to_vec();
    data.extend_from_slice(&Sha256::digest(client_data_json));
    data
}

fn flip_last_bit(signature: &mut [u8]) {
    if let Some(last) = signature.last_mut() {
        *last ^= 0x01;
    }
}

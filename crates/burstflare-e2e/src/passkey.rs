//! A browser-side passkey for the tests: the domain crate's software
//! authenticator (real ES256/EdDSA keys, real CBOR attestations and
//! assertions) driven by the options the API returns, producing the
//! `PublicKeyCredential.toJSON()` bodies a browser would send.

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use burstflare_api::identity::{
    AssertionCredential, AssertionResponse, AttestationResponse, ClientKind, PasskeyCeremony,
    PasskeyLoginRequest, RegisterPasskeyRequest, RegistrationCredential,
};
use burstflare_domain::webauthn::soft::{CreateOptions, GetOptions, SoftAlg, SoftAuthenticator};

pub use burstflare_domain::webauthn::soft::SoftAttestation;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn field(ceremony: &PasskeyCeremony, pointer: &str) -> Result<Vec<u8>> {
    let text = ceremony
        .public_key
        .pointer(pointer)
        .and_then(|v| v.as_str())
        .with_context(|| format!("options have no {pointer}: {}", ceremony.public_key))?;
    Ok(URL_SAFE_NO_PAD.decode(text)?)
}

/// A passkey on a simulated device, used from `origin`.
pub struct SoftPasskey {
    pub authenticator: SoftAuthenticator,
    pub origin: String,
    pub rp_id: String,
}

impl SoftPasskey {
    pub fn new(alg: SoftAlg, seed: u8, origin: &str) -> Self {
        Self {
            authenticator: SoftAuthenticator::new(alg, [seed; 32]),
            origin: origin.to_owned(),
            rp_id: "localhost".to_owned(),
        }
    }

    /// `navigator.credentials.create()` for `ceremony`, after `tweak`
    /// (to produce wrong origins, flags, attestations…).
    pub fn create(
        &mut self,
        ceremony: &PasskeyCeremony,
        name: &str,
        tweak: impl FnOnce(&mut CreateOptions),
    ) -> Result<RegisterPasskeyRequest> {
        let challenge = field(ceremony, "/challenge")?;
        let user = field(ceremony, "/user/id")?;
        let mut opts = CreateOptions::new(&self.origin, &self.rp_id, &challenge, &user);
        tweak(&mut opts);
        let created = self.authenticator.create(&opts);
        Ok(RegisterPasskeyRequest {
            challenge_id: ceremony.challenge_id.clone(),
            name: Some(name.to_owned()),
            credential: RegistrationCredential {
                id: b64(&created.credential_id),
                raw_id: b64(&created.credential_id),
                kind: "public-key".into(),
                response: AttestationResponse {
                    client_data_json: b64(&created.client_data_json),
                    attestation_object: b64(&created.attestation_object),
                    transports: vec!["internal".into()],
                },
            },
        })
    }

    /// `navigator.credentials.get()` for `ceremony`, after `tweak`.
    pub fn get(
        &mut self,
        ceremony: &PasskeyCeremony,
        client: ClientKind,
        tweak: impl FnOnce(&mut GetOptions),
    ) -> Result<PasskeyLoginRequest> {
        let challenge = field(ceremony, "/challenge")?;
        let mut opts = GetOptions::new(&self.origin, &self.rp_id, &challenge);
        tweak(&mut opts);
        let a = self.authenticator.get(&opts);
        Ok(PasskeyLoginRequest {
            challenge_id: ceremony.challenge_id.clone(),
            client,
            credential: AssertionCredential {
                id: b64(&a.credential_id),
                raw_id: b64(&a.credential_id),
                kind: "public-key".into(),
                response: AssertionResponse {
                    client_data_json: b64(&a.client_data_json),
                    authenticator_data: b64(&a.authenticator_data),
                    signature: b64(&a.signature),
                    user_handle: a.user_handle.as_deref().map(b64),
                },
            },
        })
    }
}

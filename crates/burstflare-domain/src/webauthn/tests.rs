//! Ceremonies driven by the software authenticator against the verifier,
//! every rejection path, and real browser responses from py_webauthn's tests.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::cbor::Encoder;
use super::soft::{CreateOptions, GetOptions, SoftAlg, SoftAttestation, SoftAuthenticator};
use super::*;

const ORIGIN: &str = "http://localhost:8787";
const RP_ID: &str = "localhost";
const REG_CHALLENGE: [u8; 32] = [0x11; 32];
const LOGIN_CHALLENGE: [u8; 32] = [0x22; 32];
const USER: &[u8] = b"usr_0123456789";
const ALGS: [SoftAlg; 2] = [SoftAlg::Es256, SoftAlg::EdDsa];

fn origins() -> Vec<String> {
    vec![ORIGIN.to_owned(), "https://burstflare.dev".to_owned()]
}

fn authenticator(alg: SoftAlg) -> SoftAuthenticator {
    SoftAuthenticator::new(alg, [0x5e; 32])
}

fn create_opts() -> CreateOptions {
    CreateOptions::new(ORIGIN, RP_ID, &REG_CHALLENGE, USER)
}

fn get_opts() -> GetOptions {
    GetOptions::new(ORIGIN, RP_ID, &LOGIN_CHALLENGE)
}

/// Registers with `opts` and verifies as the relying party.
fn register(
    auth: &mut SoftAuthenticator,
    opts: &CreateOptions,
    require_uv: bool,
) -> Result<VerifiedCredential, WebAuthnError> {
    let created = auth.create(opts);
    verify_raw_registration(
        &created.client_data_json,
        &created.attestation_object,
        require_uv,
    )
}

fn verify_raw_registration(
    client_data_json: &[u8],
    attestation_object: &[u8],
    require_uv: bool,
) -> Result<VerifiedCredential, WebAuthnError> {
    let origins = origins();
    let rp = RelyingParty {
        id: RP_ID,
        origins: &origins,
    };
    verify_registration(
        &rp,
        &REG_CHALLENGE,
        client_data_json,
        attestation_object,
        require_uv,
    )
}

/// A registered authenticator and its stored credential.
fn registered(alg: SoftAlg) -> (SoftAuthenticator, VerifiedCredential) {
    let mut auth = authenticator(alg);
    let credential = register(&mut auth, &create_opts(), true).unwrap();
    (auth, credential)
}

fn verify_raw_assertion(
    a: &soft::Assertion,
    stored_key: &[u8],
    stored_count: u32,
    require_uv: bool,
) -> Result<VerifiedAssertion, WebAuthnError> {
    let origins = origins();
    let rp = RelyingParty {
        id: RP_ID,
        origins: &origins,
    };
    verify_assertion(
        &rp,
        &LOGIN_CHALLENGE,
        &a.client_data_json,
        &a.authenticator_data,
        &a.signature,
        stored_key,
        stored_count,
        require_uv,
    )
}

/// Signs in with `opts` and verifies against `credential`.
fn login(
    auth: &mut SoftAuthenticator,
    credential: &VerifiedCredential,
    stored_count: u32,
    opts: &GetOptions,
    require_uv: bool,
) -> Result<VerifiedAssertion, WebAuthnError> {
    let assertion = auth.get(opts);
    verify_raw_assertion(
        &assertion,
        &credential.public_key_cose,
        stored_count,
        require_uv,
    )
}

fn attestation_object(format: &str, att_stmt: &[u8], auth_data: &[u8]) -> Vec<u8> {
    Encoder::new()
        .map(3)
        .text("fmt")
        .text(format)
        .text("attStmt")
        .raw(att_stmt)
        .text("authData")
        .bytes(auth_data)
        .finish()
}

fn packed_statement(alg: i64, sig: &[u8]) -> Vec<u8> {
    Encoder::new()
        .map(2)
        .text("alg")
        .int(alg)
        .text("sig")
        .bytes(sig)
        .finish()
}

fn signed_data(auth_data: &[u8], client_data_json: &[u8]) -> Vec<u8> {
    let mut data = auth_data.to_vec();
    data.extend_from_slice(&Sha256::digest(client_data_json));
    data
}

/// Registration authenticator data (UP, UV, AT) carrying `cose_key` verbatim.
fn auth_data_with_key(cose_key: &[u8]) -> Vec<u8> {
    let mut data = Sha256::digest(RP_ID.as_bytes()).to_vec();
    data.push(FLAG_UP | FLAG_UV | FLAG_AT);
    data.extend_from_slice(&0u32.to_be_bytes());
    data.extend_from_slice(&[0; 16]);
    data.extend_from_slice(&16u16.to_be_bytes());
    data.extend_from_slice(&[0xc1; 16]);
    data.extend_from_slice(cose_key);
    data
}

fn b64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

#[test]
fn registers_and_signs_in_with_every_algorithm_and_attestation() {
    for alg in ALGS {
        for attestation in [SoftAttestation::None, SoftAttestation::PackedSelf] {
            let mut auth = authenticator(alg).with_aaguid([0xaa; 16]);
            let opts = create_opts().with_attestation(attestation.clone());
            let credential = register(&mut auth, &opts, true).unwrap();
            let format = match attestation {
                SoftAttestation::PackedSelf => "packed",
                _ => "none",
            };
            assert_eq!(
                credential,
                VerifiedCredential {
                    credential_id: auth.credential_id().to_vec(),
                    public_key_cose: auth.public_key_cose(),
                    algorithm: auth.algorithm(),
                    sign_count: 0,
                    aaguid: [0xaa; 16],
                    user_verified: true,
                    backup_eligible: false,
                    backed_up: false,
                    attestation_format: format.to_owned(),
                },
                "{alg:?} {format}"
            );

            let mut stored = credential.sign_count;
            for expected in 1..=3 {
                let assertion = auth.get(&get_opts());
                assert_eq!(assertion.credential_id, credential.credential_id);
                assert_eq!(assertion.user_handle.as_deref(), Some(USER));
                let verified =
                    verify_raw_assertion(&assertion, &credential.public_key_cose, stored, true)
                        .unwrap();
                assert_eq!(
                    verified,
                    VerifiedAssertion {
                        sign_count: expected,
                        user_verified: true,
                        backed_up: false,
                    }
                );
                stored = verified.sign_count;
            }
        }
    }
}

#[test]
fn soft_authenticator_is_deterministic_per_seed() {
    for alg in ALGS {
        let a = SoftAuthenticator::new(alg, [1; 32]);
        let b = SoftAuthenticator::new(alg, [1; 32]);
        let c = SoftAuthenticator::new(alg, [2; 32]);
        assert_eq!(a.public_key_cose(), b.public_key_cose());
        assert_eq!(a.credential_id(), b.credential_id());
        assert_eq!(a.credential_id().len(), 32);
        assert_ne!(a.public_key_cose(), c.public_key_cose());
        assert_ne!(a.credential_id(), c.credential_id());
    }
    // A seed that is not a valid P-256 scalar still yields a working key.
    let mut auth = SoftAuthenticator::new(SoftAlg::Es256, [0xff; 32]);
    assert!(register(&mut auth, &create_opts(), true).is_ok());
    let mut zero = SoftAuthenticator::new(SoftAlg::Es256, [0; 32]);
    assert!(register(&mut zero, &create_opts(), true).is_ok());
}

#[test]
fn tampered_assertion_signature_is_rejected() {
    for alg in ALGS {
        let (mut auth, credential) = registered(alg);
        let opts = GetOptions {
            tamper_signature: true,
            ..get_opts()
        };
        assert_eq!(
            login(&mut auth, &credential, 0, &opts, true),
            Err(WebAuthnError::InvalidSignature),
            "{alg:?}"
        );
    }
}

#[test]
fn tampered_packed_attestation_signature_is_rejected() {
    for alg in ALGS {
        let mut auth = authenticator(alg);
        let opts = CreateOptions {
            tamper_signature: true,
            ..create_opts().with_attestation(SoftAttestation::PackedSelf)
        };
        let err = register(&mut auth, &opts, true).unwrap_err();
        assert_eq!(err.reason(), "invalid_attestation_statement", "{alg:?}");
        assert!(err.to_string().contains("does not verify"), "{err}");
    }
}

#[test]
fn unlisted_origins_are_rejected_exactly() {
    for origin in [
        "https://evil.example",
        "http://localhost:8788",
        "https://localhost:8787",
        "http://localhost:8787/",
        "HTTP://LOCALHOST:8787",
        "",
    ] {
        let expected = WebAuthnError::OriginNotAllowed {
            origin: origin.to_owned(),
        };
        let mut auth = authenticator(SoftAlg::Es256);
        let opts = CreateOptions {
            origin: origin.to_owned(),
            ..create_opts()
        };
        assert_eq!(register(&mut auth, &opts, true), Err(expected.clone()));

        let (mut auth, credential) = registered(SoftAlg::EdDsa);
        let opts = GetOptions {
            origin: origin.to_owned(),
            ..get_opts()
        };
        assert_eq!(login(&mut auth, &credential, 0, &opts, true), Err(expected));
    }
    let err = WebAuthnError::OriginNotAllowed {
        origin: "https://evil.example".into(),
    };
    assert!(err.to_string().contains("\"https://evil.example\""));
    // Any configured origin is accepted.
    let (mut auth, credential) = registered(SoftAlg::Es256);
    let opts = GetOptions {
        origin: "https://burstflare.dev".to_owned(),
        ..get_opts()
    };
    assert!(login(&mut auth, &credential, 0, &opts, true).is_ok());
}

#[test]
fn replayed_or_foreign_challenges_are_rejected() {
    for alg in ALGS {
        let mut auth = authenticator(alg);
        let opts = CreateOptions {
            challenge: vec![0x33; 32],
            ..create_opts()
        };
        assert_eq!(
            register(&mut auth, &opts, true),
            Err(WebAuthnError::ChallengeMismatch)
        );

        // A response to the registration challenge replayed at sign-in.
        let (mut auth, credential) = registered(alg);
        let opts = GetOptions {
            challenge: REG_CHALLENGE.to_vec(),
            ..get_opts()
        };
        assert_eq!(
            login(&mut auth, &credential, 0, &opts, true),
            Err(WebAuthnError::ChallengeMismatch)
        );
        // A prefix of the right challenge is not the challenge.
        let opts = GetOptions {
            challenge: LOGIN_CHALLENGE[..31].to_vec(),
            ..get_opts()
        };
        assert_eq!(
            login(&mut auth, &credential, 0, &opts, true),
            Err(WebAuthnError::ChallengeMismatch)
        );
    }
}

#[test]
fn padded_or_standard_base64_challenges_do_not_match() {
    // 0xfb 0xff encodes as "-_8" in base64url and "+/8=" in standard base64.
    let challenge = [
        0xfb, 0xff, 0xfb, 0xff, 0xfb, 0xff, 0xfb, 0xff, 0xfb, 0xff, 0xfb, 0xff, 0xfb, 0xff, 0xfb,
        0xff,
    ];
    let origins = origins();
    let rp = RelyingParty {
        id: RP_ID,
        origins: &origins,
    };
    let standard = base64::engine::general_purpose::STANDARD.encode(challenge);
    let padded = base64::engine::general_purpose::URL_SAFE.encode(challenge);
    for encoded in [standard, padded] {
        let client_data =
            format!(r#"{{"type":"webauthn.get","challenge":"{encoded}","origin":"{ORIGIN}"}}"#);
        assert_eq!(
            verify_assertion(
                &rp,
                &challenge,
                client_data.as_bytes(),
                &[],
                &[],
                &[],
                0,
                false
            ),
            Err(WebAuthnError::ChallengeMismatch),
            "{encoded}"
        );
    }
}

#[test]
fn short_expected_challenges_are_refused() {
    let origins = origins();
    let rp = RelyingParty {
        id: RP_ID,
        origins: &origins,
    };
    let mut auth = authenticator(SoftAlg::Es256);
    let created = auth.create(&CreateOptions::new(ORIGIN, RP_ID, b"", USER));
    assert_eq!(
        verify_registration(
            &rp,
            b"",
            &created.client_data_json,
            &created.attestation_object,
            false
        ),
        Err(WebAuthnError::ChallengeTooShort { len: 0 })
    );
    let short = [7u8; 15];
    let created = auth.create(&CreateOptions::new(ORIGIN, RP_ID, &short, USER));
    assert_eq!(
        verify_registration(
            &rp,
            &short,
            &created.client_data_json,
            &created.attestation_object,
            false
        ),
        Err(WebAuthnError::ChallengeTooShort { len: 15 })
    );
}

#[test]
fn another_rp_id_is_rejected() {
    let expected = WebAuthnError::RpIdHashMismatch {
        rp_id: RP_ID.to_owned(),
    };
    for rp_id in ["evil.example", "burstflare.dev", "localhost.", ""] {
        let mut auth = authenticator(SoftAlg::Es256);
        let opts = CreateOptions {
            rp_id: rp_id.to_owned(),
            ..create_opts()
        };
        assert_eq!(
            register(&mut auth, &opts, true),
            Err(expected.clone()),
            "{rp_id}"
        );

        let (mut auth, credential) = registered(SoftAlg::EdDsa);
        let opts = GetOptions {
            rp_id: rp_id.to_owned(),
            ..get_opts()
        };
        assert_eq!(
            login(&mut auth, &credential, 0, &opts, true),
            Err(expected.clone()),
            "{rp_id}"
        );
    }
}

#[test]
fn wrong_ceremony_types_are_rejected() {
    let mut auth = authenticator(SoftAlg::Es256);
    let opts = CreateOptions {
        ceremony_type: Some("webauthn.get".to_owned()),
        ..create_opts()
    };
    assert_eq!(
        register(&mut auth, &opts, true),
        Err(WebAuthnError::WrongCeremonyType {
            expected: "webauthn.create",
            received: "webauthn.get".to_owned(),
        })
    );

    let (mut auth, credential) = registered(SoftAlg::Es256);
    for ty in ["webauthn.create", "payment.get", ""] {
        let opts = GetOptions {
            ceremony_type: Some(ty.to_owned()),
            ..get_opts()
        };
        assert_eq!(
            login(&mut auth, &credential, 0, &opts, true),
            Err(WebAuthnError::WrongCeremonyType {
                expected: "webauthn.get",
                received: ty.to_owned(),
            })
        );
    }

    // A registration response presented as a sign-in.
    let created = authenticator(SoftAlg::Es256).create(&CreateOptions::new(
        ORIGIN,
        RP_ID,
        &LOGIN_CHALLENGE,
        USER,
    ));
    let origins = origins();
    let rp = RelyingParty {
        id: RP_ID,
        origins: &origins,
    };
    let err = verify_assertion(
        &rp,
        &LOGIN_CHALLENGE,
        &created.client_data_json,
        &created.authenticator_data,
        &[],
        &created.public_key_cose,
        0,
        true,
    )
    .unwrap_err();
    assert_eq!(err.reason(), "wrong_ceremony_type");
}

#[test]
fn missing_user_presence_is_rejected_even_without_uv() {
    for require_uv in [true, false] {
        let mut auth = authenticator(SoftAlg::EdDsa);
        let opts = CreateOptions {
            user_present: false,
            ..create_opts()
        };
        assert_eq!(
            register(&mut auth, &opts, require_uv),
            Err(WebAuthnError::UserNotPresent)
        );

        let (mut auth, credential) = registered(SoftAlg::Es256);
        let opts = GetOptions {
            user_present: false,
            ..get_opts()
        };
        assert_eq!(
            login(&mut auth, &credential, 0, &opts, require_uv),
            Err(WebAuthnError::UserNotPresent)
        );
    }
}

#[test]
fn user_verification_is_enforced_only_when_required() {
    for alg in ALGS {
        let opts = CreateOptions {
            user_verified: false,
            ..create_opts()
        };
        assert_eq!(
            register(&mut authenticator(alg), &opts, true),
            Err(WebAuthnError::UserNotVerified)
        );
        let credential = register(&mut authenticator(alg), &opts, false).unwrap();
        assert!(!credential.user_verified);

        let (mut auth, credential) = registered(alg);
        let opts = GetOptions {
            user_verified: false,
            ..get_opts()
        };
        assert_eq!(
            login(&mut auth, &credential, 0, &opts, true),
            Err(WebAuthnError::UserNotVerified)
        );
        let verified = login(&mut auth, &credential, 1, &opts, false).unwrap();
        assert!(!verified.user_verified);
        assert_eq!(verified.sign_count, 2);
    }
}

#[test]
fn sign_count_must_grow_once_either_side_is_non_zero() {
    let (mut auth, credential) = registered(SoftAlg::Es256);
    for (stored, received, ok) in [
        (0, 0, true),
        (0, 1, true),
        (5, 6, true),
        (5, 1_000, true),
        (u32::MAX - 1, u32::MAX, true),
        (5, 5, false),
        (5, 4, false),
        (5, 0, false),
        (u32::MAX, u32::MAX, false),
    ] {
        let opts = GetOptions {
            sign_count: Some(received),
            ..get_opts()
        };
        let result = login(&mut auth, &credential, stored, &opts, true);
        if ok {
            assert_eq!(
                result.map(|v| v.sign_count),
                Ok(received),
                "{stored}->{received}"
            );
        } else {
            assert_eq!(
                result,
                Err(WebAuthnError::SignCountRegression { stored, received }),
                "{stored}->{received}"
            );
        }
    }
    // An override does not advance the soft counter; a plain get does.
    assert_eq!(auth.sign_count(), 0);
    auth.get(&get_opts());
    assert_eq!(auth.sign_count(), 1);
}

#[test]
fn cross_origin_ceremonies_are_rejected() {
    let mut auth = authenticator(SoftAlg::Es256);
    let opts = CreateOptions {
        cross_origin: true,
        ..create_opts()
    };
    assert_eq!(
        register(&mut auth, &opts, true),
        Err(WebAuthnError::CrossOrigin)
    );
    let (mut auth, credential) = registered(SoftAlg::EdDsa);
    let opts = GetOptions {
        cross_origin: true,
        ..get_opts()
    };
    assert_eq!(
        login(&mut auth, &credential, 0, &opts, true),
        Err(WebAuthnError::CrossOrigin)
    );
}

#[test]
fn packed_attestation_with_a_certificate_chain_is_refused() {
    for alg in ALGS {
        let mut auth = authenticator(alg);
        let created = auth.create(&create_opts());
        // A valid self signature: only the x5c makes it unacceptable.
        let sig = auth.sign(&signed_data(
            &created.authenticator_data,
            &created.client_data_json,
        ));
        let statement = Encoder::new()
            .map(3)
            .text("alg")
            .int(auth.algorithm())
            .text("sig")
            .bytes(&sig)
            .text("x5c")
            .array(1)
            .bytes(b"0\x82 a DER certificate")
            .finish();
        let object = attestation_object("packed", &statement, &created.authenticator_data);
        assert_eq!(
            verify_raw_registration(&created.client_data_json, &object, true),
            Err(WebAuthnError::AttestationCertificateUnsupported)
        );
        // Without x5c, the same statement is a valid self attestation.
        let object = attestation_object(
            "packed",
            &packed_statement(auth.algorithm(), &sig),
            &created.authenticator_data,
        );
        assert!(verify_raw_registration(&created.client_data_json, &object, true).is_ok());
    }
}

#[test]
fn other_attestation_formats_are_refused() {
    let empty = Encoder::new().map(0).finish();
    for format in [
        "tpm",
        "android-key",
        "android-safetynet",
        "fido-u2f",
        "apple",
        "compound",
        "Packed",
        "",
    ] {
        let mut auth = authenticator(SoftAlg::Es256);
        let opts = create_opts().with_attestation(SoftAttestation::Raw {
            format: format.to_owned(),
            att_stmt: empty.clone(),
        });
        assert_eq!(
            register(&mut auth, &opts, true),
            Err(WebAuthnError::UnsupportedAttestationFormat {
                format: format.to_owned()
            })
        );
    }
}

#[test]
fn attestation_statements_are_checked() {
    let (auth, _) = registered(SoftAlg::Es256);
    let created = auth.clone().create(&create_opts());
    let sig = auth.sign(&signed_data(
        &created.authenticator_data,
        &created.client_data_json,
    ));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("none", packed_statement(ALG_ES256, &sig), "empty attStmt"),
        ("packed", packed_statement(ALG_EDDSA, &sig), "differs from"),
        ("packed", packed_statement(ALG_RS256, &sig), "differs from"),
        (
            "packed",
            Encoder::new().map(1).text("alg").int(ALG_ES256).finish(),
            "no byte string \"sig\"",
        ),
        (
            "packed",
            Encoder::new().map(1).text("sig").bytes(&sig).finish(),
            "no integer \"alg\"",
        ),
        (
            "packed",
            Encoder::new()
                .map(3)
                .text("alg")
                .int(ALG_ES256)
                .text("sig")
                .bytes(&sig)
                .text("sig")
                .bytes(&sig)
                .finish(),
            "more than once",
        ),
        // A valid signature over other data (here: authData alone).
        (
            "packed",
            packed_statement(ALG_ES256, &auth.sign(&created.authenticator_data)),
            "does not verify",
        ),
    ];
    for (format, statement, needle) in cases {
        let object = attestation_object(format, &statement, &created.authenticator_data);
        let err = verify_raw_registration(&created.client_data_json, &object, true).unwrap_err();
        assert_eq!(err.reason(), "invalid_attestation_statement", "{needle}");
        assert!(err.to_string().contains(needle), "{err} / {needle}");
    }
}

#[test]
fn packed_signature_by_another_key_is_rejected() {
    let created = authenticator(SoftAlg::Es256).create(&create_opts());
    let other = SoftAuthenticator::new(SoftAlg::Es256, [0x77; 32]);
    let sig = other.sign(&signed_data(
        &created.authenticator_data,
        &created.client_data_json,
    ));
    let object = attestation_object(
        "packed",
        &packed_statement(ALG_ES256, &sig),
        &created.authenticator_data,
    );
    assert_eq!(
        verify_raw_registration(&created.client_data_json, &object, true)
            .unwrap_err()
            .reason(),
        "invalid_attestation_statement"
    );
}

#[test]
fn truncated_authenticator_data_is_rejected() {
    let (mut auth, credential) = registered(SoftAlg::Es256);
    let assertion = auth.get(&get_opts());
    for len in [0, 1, 32, 33, 36] {
        let mut short = assertion.clone();
        short.authenticator_data.truncate(len);
        let err = verify_raw_assertion(&short, &credential.public_key_cose, 0, true).unwrap_err();
        assert_eq!(err.reason(), "malformed_authenticator_data", "{len}: {err}");
    }

    let created = authenticator(SoftAlg::EdDsa).create(&create_opts());
    let full = created.authenticator_data.len();
    // Cut inside the AAGUID, the id length, the id, and the COSE key.
    for len in [37, 40, 53, 54, 60, 55 + 32, full - 1] {
        let object = attestation_object(
            "none",
            &Encoder::new().map(0).finish(),
            &created.authenticator_data[..len],
        );
        let err = verify_raw_registration(&created.client_data_json, &object, true).unwrap_err();
        assert_eq!(err.reason(), "malformed_authenticator_data", "{len}: {err}");
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let (mut auth, credential) = registered(SoftAlg::EdDsa);
    let mut assertion = auth.get(&get_opts());
    assertion
        .authenticator_data
        .extend_from_slice(&[0xa0, 0x00]);
    assert_eq!(
        verify_raw_assertion(&assertion, &credential.public_key_cose, 0, true),
        Err(WebAuthnError::TrailingBytes {
            after: "authenticator data",
            count: 2
        })
    );

    let created = authenticator(SoftAlg::Es256).create(&create_opts());
    let mut auth_data = created.authenticator_data.clone();
    auth_data.push(0x00);
    let object = attestation_object("none", &[0xa0], &auth_data);
    assert_eq!(
        verify_raw_registration(&created.client_data_json, &object, true),
        Err(WebAuthnError::TrailingBytes {
            after: "authenticator data",
            count: 1
        })
    );

    let mut object = created.attestation_object.clone();
    object.extend_from_slice(b"garbage");
    assert_eq!(
        verify_raw_registration(&created.client_data_json, &object, true),
        Err(WebAuthnError::TrailingBytes {
            after: "attestation object",
            count: 7
        })
    );
}

#[test]
fn extensions_are_parsed_past() {
    // {"credProtect": 2} and {"hmac-secret": true}-like maps.
    let cred_protect = Encoder::new().map(1).text("credProtect").int(2).finish();
    let nested = Encoder::new()
        .map(2)
        .text("largeBlobKey")
        .bytes(&[9; 32])
        .text("thirdPartyPayment")
        .map(1)
        .int(1)
        .text("x")
        .finish();
    for alg in ALGS {
        for ext in [&cred_protect, &nested] {
            let mut auth = authenticator(alg);
            let opts = CreateOptions {
                extensions: Some(ext.clone()),
                ..create_opts().with_attestation(SoftAttestation::PackedSelf)
            };
            let credential = register(&mut auth, &opts, true).unwrap();
            assert_eq!(credential.public_key_cose, auth.public_key_cose());
            let opts = GetOptions {
                extensions: Some(ext.clone()),
                ..get_opts()
            };
            assert!(login(&mut auth, &credential, 0, &opts, true).is_ok());
        }
    }

    let (mut auth, credential) = registered(SoftAlg::Es256);
    for (ext, reason) in [
        (vec![], "malformed_authenticator_data"),
        (vec![0x02], "malformed_authenticator_data"),
        (vec![0x81, 0x00], "malformed_authenticator_data"),
        (vec![0xa1, 0x61], "malformed_authenticator_data"),
        (vec![0xbf, 0xff], "malformed_authenticator_data"),
        (vec![0xa0, 0xa0], "trailing_bytes"),
    ] {
        let opts = GetOptions {
            extensions: Some(ext.clone()),
            ..get_opts()
        };
        let err = login(&mut auth, &credential, 0, &opts, true).unwrap_err();
        assert_eq!(err.reason(), reason, "{ext:02x?}: {err}");
    }
}

#[test]
fn cose_key_alg_must_match_its_key_type() {
    let (auth, credential) = registered(SoftAlg::Es256);
    let ed = authenticator(SoftAlg::EdDsa).public_key_cose();
    // Relabel the stored keys: ES256 coordinates marked -8, Ed25519 marked -7.
    let mut es_as_ed = credential.public_key_cose.clone();
    assert_eq!(es_as_ed[4], 0x26);
    es_as_ed[4] = 0x27;
    let mut ed_as_es = ed.clone();
    assert_eq!(ed_as_es[4], 0x27);
    ed_as_es[4] = 0x26;
    for key in [&es_as_ed, &ed_as_es] {
        let err = verify_raw_registration(
            &auth.clone().create(&create_opts()).client_data_json,
            &attestation_object("none", &[0xa0], &auth_data_with_key(key)),
            true,
        )
        .unwrap_err();
        assert_eq!(err.reason(), "malformed_public_key", "{err}");
        assert!(err.to_string().contains("needs kty"), "{err}");

        let assertion = auth.clone().get(&get_opts());
        assert_eq!(
            verify_raw_assertion(&assertion, key, 0, true)
                .unwrap_err()
                .reason(),
            "malformed_public_key"
        );
    }
    // The unmodified key parses in the same hand-built authenticator data.
    let client_data = auth.clone().create(&create_opts()).client_data_json;
    let object = attestation_object(
        "none",
        &[0xa0],
        &auth_data_with_key(&credential.public_key_cose),
    );
    assert!(verify_raw_registration(&client_data, &object, true).is_ok());
}

#[test]
fn signatures_by_another_key_are_rejected() {
    for alg in ALGS {
        let (_, credential) = registered(alg);
        for other_alg in ALGS {
            let mut other = SoftAuthenticator::new(other_alg, [0x99; 32]);
            assert_eq!(
                login(&mut other, &credential, 0, &get_opts(), true),
                Err(WebAuthnError::InvalidSignature),
                "{alg:?} key, {other_alg:?} signature"
            );
        }
    }
}

#[test]
fn unsupported_algorithms_are_refused() {
    let rsa = b64(PY_WEBAUTHN_RSA_KEY);
    let client_data = authenticator(SoftAlg::Es256)
        .create(&create_opts())
        .client_data_json;
    let object = attestation_object("none", &[0xa0], &auth_data_with_key(&rsa));
    assert_eq!(
        verify_raw_registration(&client_data, &object, true),
        Err(WebAuthnError::UnsupportedAlgorithm { alg: ALG_RS256 })
    );
    let assertion = authenticator(SoftAlg::Es256).get(&get_opts());
    assert_eq!(
        verify_raw_assertion(&assertion, &rsa, 0, true),
        Err(WebAuthnError::UnsupportedAlgorithm { alg: ALG_RS256 })
    );
}

#[test]
fn malformed_client_data_is_rejected() {
    let origins = origins();
    let rp = RelyingParty {
        id: RP_ID,
        origins: &origins,
    };
    let challenge = URL_SAFE_NO_PAD.encode(LOGIN_CHALLENGE);
    for client_data in [
        "".to_owned(),
        "not json".to_owned(),
        "[]".to_owned(),
        format!(r#"["webauthn.get","{challenge}","{ORIGIN}"]"#),
        r#"{"type":"webauthn.get","origin":"http://localhost:8787"}"#.to_owned(),
        format!(r#"{{"type":"webauthn.get","challenge":"{challenge}"}}"#),
        format!(r#"{{"challenge":"{challenge}","origin":"{ORIGIN}"}}"#),
        format!(r#"{{"type":"webauthn.get","challenge":7,"origin":"{ORIGIN}"}}"#),
        format!(
            r#"{{"type":"webauthn.create","type":"webauthn.get","challenge":"{challenge}","origin":"{ORIGIN}"}}"#
        ),
        format!(
            r#"{{"type":"webauthn.get","challenge":"{challenge}","origin":"{ORIGIN}","crossOrigin":"no"}}"#
        ),
    ] {
        let err = verify_assertion(
            &rp,
            &LOGIN_CHALLENGE,
            client_data.as_bytes(),
            &[],
            &[],
            &[],
            0,
            false,
        )
        .unwrap_err();
        assert_eq!(
            err.reason(),
            "malformed_client_data",
            "{client_data}: {err}"
        );
    }
    let invalid_utf8 = b"{\"type\":\"webauthn.get\xff\"}";
    let err =
        verify_assertion(&rp, &LOGIN_CHALLENGE, invalid_utf8, &[], &[], &[], 0, false).unwrap_err();
    assert_eq!(err.reason(), "malformed_client_data");
}

#[test]
fn backup_flags_are_reported_and_checked() {
    let mut auth = authenticator(SoftAlg::EdDsa);
    let opts = CreateOptions {
        backup_eligible: true,
        backed_up: true,
        ..create_opts()
    };
    let credential = register(&mut auth, &opts, true).unwrap();
    assert!(credential.backup_eligible && credential.backed_up);
    let opts = GetOptions {
        backup_eligible: true,
        backed_up: true,
        ..get_opts()
    };
    assert!(
        login(&mut auth, &credential, 0, &opts, true)
            .unwrap()
            .backed_up
    );

    let opts = GetOptions {
        backup_eligible: false,
        backed_up: true,
        ..get_opts()
    };
    let err = login(&mut auth, &credential, 1, &opts, true).unwrap_err();
    assert_eq!(err.reason(), "malformed_authenticator_data");
    assert!(err.to_string().contains("BS"), "{err}");
}

#[test]
fn registration_needs_attested_credential_data() {
    // Sign-in authenticator data (no AT flag) inside an attestation object.
    let assertion = authenticator(SoftAlg::Es256).get(&get_opts());
    let client_data = authenticator(SoftAlg::Es256)
        .create(&create_opts())
        .client_data_json;
    let object = attestation_object("none", &[0xa0], &assertion.authenticator_data);
    assert_eq!(
        verify_raw_registration(&client_data, &object, true),
        Err(WebAuthnError::MissingAttestedCredentialData)
    );
}

#[test]
fn credential_id_lengths_are_bounded() {
    let created = authenticator(SoftAlg::Es256).create(&create_opts());
    let key = created.public_key_cose.clone();
    for id_len in [0usize, MAX_CREDENTIAL_ID_LEN + 1] {
        let mut data = created.authenticator_data[..37 + 16].to_vec();
        data.extend_from_slice(&(id_len as u16).to_be_bytes());
        data.extend(std::iter::repeat_n(0xc1, id_len));
        data.extend_from_slice(&key);
        let object = attestation_object("none", &[0xa0], &data);
        let err = verify_raw_registration(&created.client_data_json, &object, true).unwrap_err();
        assert_eq!(err.reason(), "malformed_authenticator_data", "{id_len}");
    }
}

#[test]
fn malformed_attestation_objects_are_rejected() {
    let created = authenticator(SoftAlg::Es256).create(&create_opts());
    let auth_data = &created.authenticator_data;
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        b"not cbor".to_vec(),
        vec![0x80],
        Encoder::new().map(0).finish(),
        Encoder::new()
            .map(2)
            .text("attStmt")
            .map(0)
            .text("authData")
            .bytes(auth_data)
            .finish(),
        Encoder::new()
            .map(3)
            .text("fmt")
            .int(1)
            .text("attStmt")
            .map(0)
            .text("authData")
            .bytes(auth_data)
            .finish(),
        Encoder::new()
            .map(3)
            .text("fmt")
            .text("none")
            .text("attStmt")
            .int(0)
            .text("authData")
            .bytes(auth_data)
            .finish(),
        Encoder::new()
            .map(3)
            .text("fmt")
            .text("none")
            .text("attStmt")
            .map(0)
            .text("authData")
            .text("not bytes")
            .finish(),
        Encoder::new()
            .map(4)
            .text("fmt")
            .text("none")
            .text("fmt")
            .text("packed")
            .text("attStmt")
            .map(0)
            .text("authData")
            .bytes(auth_data)
            .finish(),
    ];
    for object in cases {
        let err = verify_raw_registration(&created.client_data_json, &object, true).unwrap_err();
        assert_eq!(
            err.reason(),
            "malformed_attestation_object",
            "{object:02x?}: {err}"
        );
    }
}

#[test]
fn reasons_are_distinct_snake_case_and_messages_quote_values() {
    let errors = [
        WebAuthnError::MalformedClientData("x".into()),
        WebAuthnError::WrongCeremonyType {
            expected: "webauthn.get",
            received: "x".into(),
        },
        WebAuthnError::ChallengeTooShort { len: 3 },
        WebAuthnError::ChallengeMismatch,
        WebAuthnError::OriginNotAllowed { origin: "x".into() },
        WebAuthnError::CrossOrigin,
        WebAuthnError::MalformedAuthenticatorData("x".into()),
        WebAuthnError::RpIdHashMismatch { rp_id: "x".into() },
        WebAuthnError::UserNotPresent,
        WebAuthnError::UserNotVerified,
        WebAuthnError::MissingAttestedCredentialData,
        WebAuthnError::MalformedAttestationObject("x".into()),
        WebAuthnError::UnsupportedAttestationFormat { format: "x".into() },
        WebAuthnError::AttestationCertificateUnsupported,
        WebAuthnError::InvalidAttestationStatement("x".into()),
        WebAuthnError::UnsupportedAlgorithm { alg: -257 },
        WebAuthnError::MalformedPublicKey("x".into()),
        WebAuthnError::InvalidSignature,
        WebAuthnError::SignCountRegression {
            stored: 9,
            received: 3,
        },
        WebAuthnError::TrailingBytes {
            after: "authenticator data",
            count: 2,
        },
    ];
    let mut reasons: Vec<&str> = errors.iter().map(WebAuthnError::reason).collect();
    for reason in &reasons {
        assert!(
            !reason.is_empty() && reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{reason}"
        );
    }
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), errors.len());

    assert_eq!(
        errors[18].to_string(),
        "the sign count went from 9 to 3: the authenticator may have been cloned"
    );
    assert!(errors[15].to_string().contains("-257"));
    let long = "https://".to_owned() + &"a".repeat(1000);
    let (mut auth, credential) = registered(SoftAlg::Es256);
    let opts = GetOptions {
        origin: long,
        ..get_opts()
    };
    let message = login(&mut auth, &credential, 0, &opts, true)
        .unwrap_err()
        .to_string();
    assert!(message.len() < 300, "{message}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every byte a sign-in response carries is covered by a check: flipping
    /// any bit of clientDataJSON, authenticatorData or the signature fails.
    #[test]
    fn any_bit_flip_breaks_an_assertion(ed in any::<bool>(), index in any::<prop::sample::Index>(), bit in 0u8..8) {
        let alg = if ed { SoftAlg::EdDsa } else { SoftAlg::Es256 };
        let (mut auth, credential) = registered(alg);
        let assertion = auth.get(&get_opts());
        let lens = [
            assertion.client_data_json.len(),
            assertion.authenticator_data.len(),
            assertion.signature.len(),
        ];
        let mut at = index.index(lens.iter().sum());
        let mut tampered = assertion.clone();
        for (part, len) in [
            &mut tampered.client_data_json,
            &mut tampered.authenticator_data,
            &mut tampered.signature,
        ]
        .into_iter()
        .zip(lens)
        {
            if at < len {
                part[at] ^= 1 << bit;
                break;
            }
            at -= len;
        }
        prop_assert!(verify_raw_assertion(&assertion, &credential.public_key_cose, 0, true).is_ok());
        prop_assert!(verify_raw_assertion(&tampered, &credential.public_key_cose, 0, true).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        client_data in proptest::collection::vec(any::<u8>(), 0..80),
        blob in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let origins = origins();
        let rp = RelyingParty { id: RP_ID, origins: &origins };
        let challenge = URL_SAFE_NO_PAD.encode(REG_CHALLENGE);
        let good_client_data = format!(
            r#"{{"type":"webauthn.create","challenge":"{challenge}","origin":"{ORIGIN}"}}"#
        );
        prop_assert!(verify_registration(&rp, &REG_CHALLENGE, &client_data, &blob, false).is_err());
        prop_assert!(verify_registration(&rp, &REG_CHALLENGE, good_client_data.as_bytes(), &blob, false).is_err());
        let mut auth_data = Sha256::digest(RP_ID.as_bytes()).to_vec();
        auth_data.extend_from_slice(&blob);
        let object = attestation_object("none", &[0xa0], &auth_data);
        // Random authenticator data is (overwhelmingly) not a valid credential.
        let _ = verify_registration(&rp, &REG_CHALLENGE, good_client_data.as_bytes(), &object, false);
        let _ = cose::parse_stored(&blob);
    }
}

// Real browser responses from py_webauthn's test suite
// (https://github.com/duo-labs/py_webauthn, tests/test_verify_registration_response.py,
// tests/test_verify_registration_response_packed.py and
// tests/test_verify_authentication_response.py; BSD-3-Clause). All use RP id
// "localhost" and origin "http://localhost:5000".

const PY_ORIGIN: &str = "http://localhost:5000";

/// The RS256 credential public key of `test_verify_authentication_response_with_RSA_public_key`.
const PY_WEBAUTHN_RSA_KEY: &str = "pAEDAzkBACBZAQDfV20epzvQP-HtcdDpX-cGzdOxy73WQEvsU7Dnr9UWJophEfpngouvgnRLXaEUn_d8HGkp_HIx8rrpkx4BVs6X_B6ZjhLlezjIdJbLbVeb92BaEsmNn1HW2N9Xj2QM8cH-yx28_vCjf82ahQ9gyAr552Bn96G22n8jqFRQKdVpO-f-bvpvaP3IQ9F5LCX7CUaxptgbog1SFO6FI6ob5SlVVB00lVXsaYg8cIDZxCkkENkGiFPgwEaZ7995SCbiyCpUJbMqToLMgojPkAhWeyktu7TlK6UBWdJMHc3FPAIs0lH_2_2hKS-mGI1uZAFVAfW1X-mzKL0czUm2P1UlUox7IUMBAAE";

fn py_rp(origins: &[String]) -> RelyingParty<'_> {
    RelyingParty {
        id: "localhost",
        origins,
    }
}

#[test]
fn py_webauthn_none_registration_verifies() {
    // test_verifies_none_attestation_response
    let origins = vec![PY_ORIGIN.to_owned()];
    let credential = verify_registration(
        &py_rp(&origins),
        &b64("TwN7n4WTyGKLc4ZY-qGsFqKnHM4nglqsyV0ICJlN2TO9XiRyFtrkaDwUvsql-gkLJXP6fnF1MlrZ53Mm4R7Cvw"),
        &b64("eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIiwiY2hhbGxlbmdlIjoiVHdON240V1R5R0tMYzRaWS1xR3NGcUtuSE00bmdscXN5VjBJQ0psTjJUTzlYaVJ5RnRya2FEd1V2c3FsLWdrTEpYUDZmbkYxTWxyWjUzTW00UjdDdnciLCJvcmlnaW4iOiJodHRwOi8vbG9jYWxob3N0OjUwMDAiLCJjcm9zc09yaWdpbiI6ZmFsc2V9"),
        &b64("o2NmbXRkbm9uZWdhdHRTdG10oGhhdXRoRGF0YVjESZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2NFAAAAFwAAAAAAAAAAAAAAAAAAAAAAQPctcQPE5oNRRJk_nO_371mf7qE7qIodzr0eOf6ACvnMB1oQG165dqutoi1U44shGezu5_gkTjmOPeJO0N8a7P-lAQIDJiABIVggSFbUJF-42Ug3pdM8rDRFu_N5oiVEysPDB6n66r_7dZAiWCDUVnB39FlGypL-qAoIO9xWHtJygo2jfDmHl-_eKFRLDA"),
        true,
    )
    .unwrap();
    assert_eq!(
        credential,
        VerifiedCredential {
            credential_id: b64(
                "9y1xA8Tmg1FEmT-c7_fvWZ_uoTuoih3OvR45_oAK-cwHWhAbXrl2q62iLVTjiyEZ7O7n-CROOY494k7Q3xrs_w"
            ),
            public_key_cose: b64(
                "pQECAyYgASFYIEhW1CRfuNlIN6XTPKw0RbvzeaIlRMrDwwep-uq_-3WQIlgg1FZwd_RZRsqS_qgKCDvcVh7ScoKNo3w5h5fv3ihUSww"
            ),
            algorithm: ALG_ES256,
            sign_count: 23,
            aaguid: [0; 16],
            user_verified: true,
            backup_eligible: false,
            backed_up: false,
            attestation_format: "none".to_owned(),
        }
    );
    // The same response for another origin or RP id is refused.
    let other = vec!["https://foo.bar".to_owned()];
    assert_eq!(
        verify_registration(
            &py_rp(&other),
            &b64(
                "TwN7n4WTyGKLc4ZY-qGsFqKnHM4nglqsyV0ICJlN2TO9XiRyFtrkaDwUvsql-gkLJXP6fnF1MlrZ53Mm4R7Cvw"
            ),
            &b64(
                "eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIiwiY2hhbGxlbmdlIjoiVHdON240V1R5R0tMYzRaWS1xR3NGcUtuSE00bmdscXN5VjBJQ0psTjJUTzlYaVJ5RnRya2FEd1V2c3FsLWdrTEpYUDZmbkYxTWxyWjUzTW00UjdDdnciLCJvcmlnaW4iOiJodHRwOi8vbG9jYWxob3N0OjUwMDAiLCJjcm9zc09yaWdpbiI6ZmFsc2V9"
            ),
            &b64(
                "o2NmbXRkbm9uZWdhdHRTdG10oGhhdXRoRGF0YVjESZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2NFAAAAFwAAAAAAAAAAAAAAAAAAAAAAQPctcQPE5oNRRJk_nO_371mf7qE7qIodzr0eOf6ACvnMB1oQG165dqutoi1U44shGezu5_gkTjmOPeJO0N8a7P-lAQIDJiABIVggSFbUJF-42Ug3pdM8rDRFu_N5oiVEysPDB6n66r_7dZAiWCDUVnB39FlGypL-qAoIO9xWHtJygo2jfDmHl-_eKFRLDA"
            ),
            true,
        ),
        Err(WebAuthnError::OriginNotAllowed {
            origin: PY_ORIGIN.to_owned()
        })
    );
}

#[test]
fn py_webauthn_es256_assertion_verifies() {
    // test_verify_authentication_response_with_EC2_public_key: an older
    // Firefox clientDataJSON (extra members, no crossOrigin).
    let origins = vec![PY_ORIGIN.to_owned()];
    let verified = verify_assertion(
        &py_rp(&origins),
        &b64("xi30GPGAFYRxVDpY1sM10DaLzVQG66nv-_7RUazH0vI2YvG8LYgDEnvN5fZZNVuvEDuMi9te3VLqb42N0fkLGA"),
        &b64("eyJjaGFsbGVuZ2UiOiJ4aTMwR1BHQUZZUnhWRHBZMXNNMTBEYUx6VlFHNjZudi1fN1JVYXpIMHZJMll2RzhMWWdERW52TjVmWlpOVnV2RUR1TWk5dGUzVkxxYjQyTjBma0xHQSIsImNsaWVudEV4dGVuc2lvbnMiOnt9LCJoYXNoQWxnb3JpdGhtIjoiU0hBLTI1NiIsIm9yaWdpbiI6Imh0dHA6Ly9sb2NhbGhvc3Q6NTAwMCIsInR5cGUiOiJ3ZWJhdXRobi5nZXQifQ"),
        &b64("SZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2MBAAAATg"),
        &b64("MEUCIGisVZOBapCWbnJJvjelIzwpixxIwkjCCb5aCHafQu68AiEA88v-2pJNNApPFwAKFiNuf82-2hBxYW5kGwVweeoxCwo"),
        &b64("pQECAyYgASFYIIeDTe-gN8A-zQclHoRnGFWN8ehM1b7yAsa8I8KIvmplIlgg4nFGT5px8o6gpPZZhO01wdy9crDSA_Ngtkx0vGpvPHI"),
        77,
        false,
    )
    .unwrap();
    assert_eq!(
        verified,
        VerifiedAssertion {
            sign_count: 78,
            user_verified: false,
            backed_up: false
        }
    );
}

#[test]
fn py_webauthn_eddsa_assertion_verifies() {
    // test_verify_authentication_response_with_OKP_public_key
    let origins = vec![PY_ORIGIN.to_owned()];
    let verified = verify_assertion(
        &py_rp(&origins),
        &b64("eZ4eeA3O4jy5FIzqDaSJ6JDNGu0bBc5zI1DjQ_kLso1WNqkG6k5mCYf1dtQhVUiBWZWlZkzR5MFeeWCpJRUNXw"),
        &b64("eyJ0eXBlIjoid2ViYXV0aG4uZ2V0IiwiY2hhbGxlbmdlIjoiZVo0ZWVBM080ank1Rkl6cURhU0o2SkROR3UwYkJjNXpJMURqUV9rTHNvMVdOcWtHNms1bUNZZjFkdFFoVlVpQldaV2xaa3pSNU1GZWVXQ3BKUlVOWHciLCJvcmlnaW4iOiJodHRwOi8vbG9jYWxob3N0OjUwMDAiLCJjcm9zc09yaWdpbiI6ZmFsc2V9"),
        &b64("SZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2MBAAAABw"),
        &b64("RRWV8mYDRvK7YdQgdtZD4pJ2dh1D_IWZ_D6jsZo6FHJBoenbj0CVT5nA20vUzlRhN4R6dOEUHmUwP1F8eRBhBg"),
        &b64("pAEBAycgBiFYIMz6_SUFLiDid2Yhlq0YboyJ-CDrIrNpkPUGmJp4D3Dp"),
        3,
        false,
    )
    .unwrap();
    assert_eq!(verified.sign_count, 7);
}

#[test]
fn py_webauthn_assertion_without_uv_is_refused_when_required() {
    // test_raises_exception_on_uv_required_but_false
    let origins = vec![PY_ORIGIN.to_owned()];
    let run = |require_uv| {
        verify_assertion(
            &py_rp(&origins),
            &b64(
                "umGemXJIPBXPxkD8Hjanuv9BDor8Z7O3aPdtOgMCdW4PAfqDX43EFlhrsF0PW90df5zrgbt7YVMRAa27tCdHzw",
            ),
            &b64(
                "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0IiwiY2hhbGxlbmdlIjoidW1HZW1YSklQQlhQeGtEOEhqYW51djlCRG9yOFo3TzNhUGR0T2dNQ2RXNFBBZnFEWDQzRUZsaHJzRjBQVzkwZGY1enJnYnQ3WVZNUkFhMjd0Q2RIenciLCJvcmlnaW4iOiJodHRwOi8vbG9jYWxob3N0OjUwMDAiLCJjcm9zc09yaWdpbiI6ZmFsc2V9",
            ),
            &b64("SZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2MBAAAAIQ"),
            &b64(
                "MEUCIGp5ADnU_SFvT4J_bKvQJ4Pc1GmANhbYq5GioOLjyUrxAiEA6Kk5qAZb8MLY-jyTiJLr_R9Fke02UHkxsRB0dnZt2X8",
            ),
            &b64(
                "pQECAyYgASFYIOQ5TKpXJR2cV76Wgfge9BkLkEhLxVjhFjM1jKHYOcqpIlggaiNy1blt3OU8Hsmg041HUYP7eajgL7fk3nSuTEjYCwU",
            ),
            32,
            require_uv,
        )
    };
    assert_eq!(run(true), Err(WebAuthnError::UserNotVerified));
    assert_eq!(run(false).map(|v| v.sign_count), Ok(33));
}

#[test]
fn py_webauthn_yubikey_packed_x5c_registration_is_refused() {
    // test_verify_attestation_from_yubikey_firefox: full attestation with a
    // Yubico certificate chain, which this verifier does not evaluate.
    let origins = vec![PY_ORIGIN.to_owned()];
    let result = verify_registration(
        &py_rp(&origins),
        &b64(
            "8LBCiOY3q1cBZHFAWtS4AZZChzGphy67lK7I70zKi4yC7pgrQ2Pch7nAjLk1wq9greshIAsW2AjibhXjjI0TmQ",
        ),
        &b64(
            "eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIiwiY2hhbGxlbmdlIjoiOExCQ2lPWTNxMWNCWkhGQVd0UzRBWlpDaHpHcGh5NjdsSzdJNzB6S2k0eUM3cGdyUTJQY2g3bkFqTGsxd3E5Z3Jlc2hJQXNXMkFqaWJoWGpqSTBUbVEiLCJvcmlnaW4iOiJodHRwOi8vbG9jYWxob3N0OjUwMDAiLCJjcm9zc09yaWdpbiI6ZmFsc2V9",
        ),
        &b64(
            "o2NmbXRmcGFja2VkZ2F0dFN0bXSjY2FsZyZjc2lnWEcwRQIhAOfrFlQpbavT6dJeTDJSCDzYSYPjBDHli2-syT2c1IiKAiAx5gQ2z5cHjdQX-jEHTb7JcjfQoVSW8fXszF5ihSgeOGN4NWOBWQLBMIICvTCCAaWgAwIBAgIEKudiYzANBgkqhkiG9w0BAQsFADAuMSwwKgYDVQQDEyNZdWJpY28gVTJGIFJvb3QgQ0EgU2VyaWFsIDQ1NzIwMDYzMTAgFw0xNDA4MDEwMDAwMDBaGA8yMDUwMDkwNDAwMDAwMFowbjELMAkGA1UEBhMCU0UxEjAQBgNVBAoMCVl1YmljbyBBQjEiMCAGA1UECwwZQXV0aGVudGljYXRvciBBdHRlc3RhdGlvbjEnMCUGA1UEAwweWXViaWNvIFUyRiBFRSBTZXJpYWwgNzE5ODA3MDc1MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKgOGXmBD2Z4R_xCqJVRXhL8Jr45rHjsyFykhb1USGozZENOZ3cdovf5Ke8fj2rxi5tJGn_VnW4_6iQzKdIaeP6NsMGowIgYJKwYBBAGCxAoCBBUxLjMuNi4xLjQuMS40MTQ4Mi4xLjEwEwYLKwYBBAGC5RwCAQEEBAMCBDAwIQYLKwYBBAGC5RwBAQQEEgQQbUS6m_bsLkm5MAyP6SDLczAMBgNVHRMBAf8EAjAAMA0GCSqGSIb3DQEBCwUAA4IBAQByV9A83MPhFWmEkNb4DvlbUwcjc9nmRzJjKxHc3HeK7GvVkm0H4XucVDB4jeMvTke0WHb_jFUiApvpOHh5VyMx5ydwFoKKcRs5x0_WwSWL0eTZ5WbVcHkDR9pSNcA_D_5AsUKOBcbpF5nkdVRxaQHuuIuwV4k1iK2IqtMNcU8vL6w21U261xCcWwJ6sMq4zzVO8QCKCQhsoIaWrwz828GDmPzfAjFsJiLJXuYivdHACkeJ5KHMt0mjVLpfJ2BCML7_rgbmvwL7wBW80VHfNdcKmKjkLcpEiPzwcQQhiN_qHV90t-p4iyr5xRSpurlP5zic2hlRkLKxMH2_kRjhqSn4aGF1dGhEYXRhWMRJlg3liA6MaHQ0Fw9kdmBbj-SuuaKGMseZXPO6gx2XY0UAAAA0bUS6m_bsLkm5MAyP6SDLcwBAsyGQPDZRUYdb4m3rdWeyPaIMYlbmydGp1TP_33vE_lqJ3PHNyTd0iKsnKr5WjnCcBzcesZrDEfB_RBLFzU3k46UBAgMmIAEhWCBAX_i3O3DvBnkGq_uLNk_PeAX5WwO_MIxBp0mhX6Lw7yJYIOW-1-Fch829McWvRUYAHTWZTx5IycKSGECL1UzUaK_8",
        ),
        true,
    );
    assert_eq!(
        result,
        Err(WebAuthnError::AttestationCertificateUnsupported)
    );
}

#[test]
fn high_s_es256_signatures_are_accepted() {
    // ECDSA signatures are valid with s or n - s; authenticators emit either,
    // and WebAuthn does not require low-S.
    let (mut auth, credential) = registered(SoftAlg::Es256);
    let mut assertion = auth.get(&get_opts());
    let sig = p256::ecdsa::Signature::from_der(&assertion.signature).unwrap();
    let (r, s) = sig.split_scalars();
    let negated = p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
    let (low, high) = match sig.normalize_s() {
        Some(normalized) => (normalized, sig),
        None => (sig, negated),
    };
    assert!(low.normalize_s().is_none() && high.normalize_s().is_some());
    for variant in [low, high] {
        assertion.signature = variant.to_der().as_bytes().to_vec();
        assert!(verify_raw_assertion(&assertion, &credential.public_key_cose, 0, true).is_ok());
    }
}

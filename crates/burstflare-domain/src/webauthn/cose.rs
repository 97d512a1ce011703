//! COSE_Key (RFC 9052/9053) credential public keys and signature checks.
//!
//! A WebAuthn credential public key is a CBOR map with integer labels. Only
//! the two algorithms BurstFlare offers in `pubKeyCredParams` are accepted:
//!
//! * ES256 (`alg` -7): `kty` 2 (EC2), `crv` 1 (P-256), 32-byte `x` and `y`
//!   (uncompressed); signatures are ASN.1 DER `ECDSA-Sig-Value` over
//!   SHA-256 of the message;
//! * EdDSA (`alg` -8): `kty` 1 (OKP), `crv` 6 (Ed25519), 32-byte `x`;
//!   signatures are the raw 64 bytes, checked with `verify_strict` (canonical
//!   `S`, no small-order keys or `R`).
//!
//! The `alg` label is required (WebAuthn §5.8.5 makes it mandatory) and must
//! agree with `kty`/`crv`, so a key cannot be read under another algorithm.

// `signature::Verifier`, shared by p256 and ed25519-dalek.
use ed25519_dalek::Verifier as _;

use super::cbor::{Key, Value};
use super::{ALG_EDDSA, ALG_ES256, WebAuthnError};

const LABEL_KTY: i64 = 1;
const LABEL_ALG: i64 = 3;
const LABEL_CRV: i64 = -1;
const LABEL_X: i64 = -2;
const LABEL_Y: i64 = -3;
const KTY_OKP: i128 = 1;
const KTY_EC2: i128 = 2;
const CRV_P256: i128 = 1;
const CRV_ED25519: i128 = 6;

/// A parsed, validated credential public key.
#[derive(Debug, Clone)]
pub(crate) enum PublicKey {
    Es256(p256::ecdsa::VerifyingKey),
    EdDsa(ed25519_dalek::VerifyingKey),
}

fn malformed(why: impl Into<String>) -> WebAuthnError {
    WebAuthnError::MalformedPublicKey(why.into())
}

fn label<'v, 'a>(map: &'v Value<'a>, label: i64) -> Result<Option<&'v Value<'a>>, WebAuthnError> {
    map.get(Key::Int(label))
        .map_err(|e| malformed(e.to_string()))
}

fn int_label(map: &Value<'_>, l: i64, name: &str) -> Result<i128, WebAuthnError> {
    label(map, l)?
        .ok_or_else(|| malformed(format!("the COSE key has no {name} (label {l})")))?
        .as_int()
        .ok_or_else(|| {
            malformed(format!(
                "the COSE key's {name} (label {l}) is not an integer"
            ))
        })
}

fn coordinate(map: &Value<'_>, l: i64, name: &str) -> Result<[u8; 32], WebAuthnError> {
    let bytes = label(map, l)?
        .ok_or_else(|| malformed(format!("the COSE key has no {name} coordinate (label {l})")))?
        .as_bytes()
        .ok_or_else(|| {
            malformed(format!(
                "the COSE key's {name} coordinate (label {l}) is not a byte string"
            ))
        })?;
    <[u8; 32]>::try_from(bytes).map_err(|_| {
        malformed(format!(
            "the COSE key's {name} coordinate is {} bytes, expected 32",
            bytes.len()
        ))
    })
}

impl PublicKey {
    /// Reads a decoded COSE_Key.
    pub(crate) fn from_cose(key: &Value<'_>) -> Result<Self, WebAuthnError> {
        if key.as_map().is_none() {
            return Err(malformed("the COSE key is not a CBOR map"));
        }
        let kty = int_label(key, LABEL_KTY, "kty")?;
        let alg = int_label(key, LABEL_ALG, "alg")?;
        let alg = i64::try_from(alg)
            .map_err(|_| malformed(format!("the COSE key's alg {alg} is out of range")))?;
        match alg {
            ALG_ES256 => {
                if kty != KTY_EC2 {
                    return Err(malformed(format!(
                        "alg -7 (ES256) needs kty 2 (EC2), the key has kty {kty}"
                    )));
                }
                let crv = int_label(key, LABEL_CRV, "crv")?;
                if crv != CRV_P256 {
                    return Err(malformed(format!(
                        "alg -7 (ES256) needs crv 1 (P-256), the key has crv {crv}"
                    )));
                }
                let x = coordinate(key, LABEL_X, "x")?;
                let y = coordinate(key, LABEL_Y, "y")?;
                let point =
                    p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
                p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                    .map(PublicKey::Es256)
                    .map_err(|_| malformed("the ES256 key is not a point on P-256"))
            }
            ALG_EDDSA => {
                if kty != KTY_OKP {
                    return Err(malformed(format!(
                        "alg -8 (EdDSA) needs kty 1 (OKP), the key has kty {kty}"
                    )));
                }
                let crv = int_label(key, LABEL_CRV, "crv")?;
                if crv != CRV_ED25519 {
                    return Err(malformed(format!(
                        "alg -8 (EdDSA) needs crv 6 (Ed25519), the key has crv {crv}"
                    )));
                }
                let x = coordinate(key, LABEL_X, "x")?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| malformed("the Ed25519 key is not a valid curve point"))?;
                if key.is_weak() {
                    return Err(malformed("the Ed25519 key has small order"));
                }
                Ok(PublicKey::EdDsa(key))
            }
            other => Err(WebAuthnError::UnsupportedAlgorithm { alg: other }),
        }
    }

    /// The COSE algorithm identifier.
    pub(crate) fn algorithm(&self) -> i64 {
        match self {
            PublicKey::Es256(_) => ALG_ES256,
            PublicKey::EdDsa(_) => ALG_EDDSA,
        }
    }

    /// Checks `signature` over `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), WebAuthnError> {
        let ok = match self {
            PublicKey::Es256(key) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok()),
            PublicKey::EdDsa(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify_strict(message, &sig).is_ok()),
        };
        if ok {
            Ok(())
        } else {
            Err(WebAuthnError::InvalidSignature)
        }
    }
}

/// Parses stored COSE_Key bytes (one CBOR item, nothing after it).
pub(crate) fn parse_stored(bytes: &[u8]) -> Result<PublicKey, WebAuthnError> {
    let value = super::cbor::decode_exact(bytes)
        .map_err(|e| malformed(format!("the stored COSE key is not CBOR: {e}")))?;
    PublicKey::from_cose(&value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webauthn::cbor::Encoder;

    // The P-256 point of py_webauthn's ES256 test credential (see the vectors in
    // `webauthn/tests.rs`).
    fn point() -> ([u8; 32], [u8; 32]) {
        let x = hex::decode("87834defa037c03ecd07251e846718558df1e84cd5bef202c6bc23c288be6a65");
        let y = hex::decode("e271464f9a71f28ea0a4f65984ed35c1dcbd72b0d203f360b64c74bc6a6f3c72");
        (
            x.unwrap().try_into().unwrap(),
            y.unwrap().try_into().unwrap(),
        )
    }

    fn ec2(kty: i64, alg: i64, crv: i64, x: &[u8], y: &[u8]) -> Vec<u8> {
        Encoder::new()
            .map(5)
            .int(1)
            .int(kty)
            .int(3)
            .int(alg)
            .int(-1)
            .int(crv)
            .int(-2)
            .bytes(x)
            .int(-3)
            .bytes(y)
            .finish()
    }

    fn reason(bytes: &[u8]) -> String {
        parse_stored(bytes).unwrap_err().to_string()
    }

    #[test]
    fn accepts_a_p256_key() {
        let (x, y) = point();
        let key = parse_stored(&ec2(2, -7, 1, &x, &y)).unwrap();
        assert_eq!(key.algorithm(), ALG_ES256);
    }

    #[test]
    fn rejects_inconsistent_or_broken_keys() {
        let (x, y) = point();
        assert!(reason(&ec2(2, -8, 1, &x, &y)).contains("needs kty 1"));
        assert!(reason(&ec2(1, -7, 1, &x, &y)).contains("needs kty 2"));
        assert!(reason(&ec2(2, -7, 2, &x, &y)).contains("needs crv 1"));
        assert!(reason(&ec2(2, -7, 1, &x[..31], &y)).contains("31 bytes"));
        let mut off_curve = y;
        off_curve[31] ^= 1;
        assert!(reason(&ec2(2, -7, 1, &x, &off_curve)).contains("not a point"));
        assert_eq!(
            parse_stored(&ec2(2, -35, 2, &x, &y)).unwrap_err(),
            WebAuthnError::UnsupportedAlgorithm { alg: -35 }
        );
        let no_alg = Encoder::new().map(1).int(1).int(2).finish();
        assert!(reason(&no_alg).contains("no alg"));
        let dup = Encoder::new()
            .map(6)
            .int(1)
            .int(2)
            .int(3)
            .int(-7)
            .int(3)
            .int(-8)
            .int(-1)
            .int(1)
            .int(-2)
            .bytes(&x)
            .int(-3)
            .bytes(&y)
            .finish();
        assert!(reason(&dup).contains("appears more than once"));
        let mut trailing = ec2(2, -7, 1, &x, &y);
        trailing.push(0);
        assert!(reason(&trailing).contains("1 bytes follow"));
        assert!(reason(&[0x80]).contains("not a CBOR map"));
    }

    #[test]
    fn rejects_small_order_ed25519_keys() {
        // The identity point (y = 1) has order 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let key = Encoder::new()
            .map(4)
            .int(1)
            .int(1)
            .int(3)
            .int(-8)
            .int(-1)
            .int(6)
            .int(-2)
            .bytes(&identity)
            .finish();
        assert!(reason(&key).contains("small order"));
    }
}

//! OpenSSH public keys as users register them (`ssh-ed25519 AAAA… comment`).
//!
//! A key is one line: algorithm, base64 blob, optional comment. The blob must
//! decode and start with the same algorithm name (as OpenSSH writes it), which
//! catches truncated and pasted-wrong keys. Options (`command=…`) are refused:
//! the platform writes `authorized_keys` itself. The fingerprint is OpenSSH's
//! `SHA256:<unpadded base64>` of the blob.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

use crate::account::FieldError;

/// Algorithms accepted for user keys.
pub const ALGORITHMS: [&str; 7] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Longest key line accepted (RSA 16384-bit keys fit).
pub const MAX_KEY_LEN: usize = 8 * 1024;

/// A validated OpenSSH public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshPublicKey {
    pub algorithm: String,
    /// The base64 blob as given.
    pub blob: String,
    pub comment: Option<String>,
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
}

impl SshPublicKey {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let bad = |why: &str| FieldError::new("public_key", why.to_owned());
        let line = raw.trim();
        if line.is_empty() {
            return Err(bad("is required"));
        }
        if line.len() > MAX_KEY_LEN {
            return Err(bad("is longer than 8 KiB"));
        }
        if line.contains('\n') || line.contains('\r') {
            return Err(bad("must be a single line (one key per request)"));
        }
        let mut parts = line.split_whitespace();
        let algorithm = parts.next().unwrap_or_default();
        if !ALGORITHMS.contains(&algorithm) {
            let shown: String = algorithm.chars().take(40).collect();
            return Err(bad(&format!(
                "{shown:?} is not a supported key type (expected one of {}); paste the contents of a `.pub` file",
                ALGORITHMS.join(", ")
            )));
        }
        let blob = parts
            .next()
            .ok_or_else(|| bad("is missing the base64 key data after the key type"))?;
        let bytes = STANDARD
            .decode(blob)
            .map_err(|_| bad("key data is not valid base64"))?;
        let mut name_len = [0u8; 4];
        if bytes.len() < 4 {
            return Err(bad("key data is truncated"));
        }
        name_len.copy_from_slice(&bytes[..4]);
        let name_len = u32::from_be_bytes(name_len) as usize;
        let embedded = bytes.get(4..4 + name_len);
        if embedded != Some(algorithm.as_bytes()) {
            return Err(bad(&format!(
                "key data does not match the key type {algorithm:?} (truncated or mixed-up key?)"
            )));
        }
        if bytes.len() <= 4 + name_len + 4 {
            return Err(bad("key data is truncated"));
        }
        let comment: Vec<&str> = parts.collect();
        let comment = (!comment.is_empty()).then(|| comment.join(" "));
        let fingerprint = format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&bytes)));
        Ok(Self {
            algorithm: algorithm.to_owned(),
            blob: blob.to_owned(),
            comment,
            fingerprint,
        })
    }

    /// The `authorized_keys` line (without options).
    pub fn authorized_line(&self) -> String {
        match &self.comment {
            Some(c) => format!("{} {} {c}", self.algorithm, self.blob),
            None => format!("{} {}", self.algorithm, self.blob),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Generated with `ssh-keygen -t ed25519 -C test@example`; `ssh-keygen -lf`
    // prints the fingerprint asserted below.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEnPcCUj2PPGFo9DjgTvWjHPUfpZ3d0l7VUi6xytOdQb test@example";

    #[test]
    fn parses_a_real_key() {
        let key = SshPublicKey::parse(&format!("  {ED25519}\n")).unwrap();
        assert_eq!(key.algorithm, "ssh-ed25519");
        assert_eq!(key.comment.as_deref(), Some("test@example"));
        assert_eq!(
            key.fingerprint,
            "SHA256:8PcW/9fPjqpGKRaouj8yVvU+KBkUJTFtdqYvJ7l+vD0"
        );
        assert_eq!(key.authorized_line(), ED25519);
    }

    #[test]
    fn rejects_bad_keys_with_reasons() {
        let cases = [
            ("", "required"),
            ("ssh-dss AAAAB3NzaC1kc3M=", "not a supported key type"),
            ("ssh-ed25519", "missing the base64"),
            ("ssh-ed25519 !!!notbase64", "not valid base64"),
            (
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIEnPcCUj2PPGFo9DjgTvWjHPUfpZ3d0l7VUi6xytOdQb",
                "does not match",
            ),
            ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "truncated"),
            ("command=\"x\" ssh-ed25519 AAAA", "not a supported key type"),
        ];
        for (raw, why) in cases {
            let err = SshPublicKey::parse(raw).unwrap_err();
            assert_eq!(err.field, "public_key");
            assert!(err.message.contains(why), "{raw}: {}", err.message);
        }
        let two = format!("{ED25519}\n{ED25519}");
        assert!(
            SshPublicKey::parse(&two)
                .unwrap_err()
                .message
                .contains("single line")
        );
    }
}

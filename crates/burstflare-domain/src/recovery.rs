//! Account recovery codes: ten one-time codes shown once, stored as hashes.
//!
//! A code is 15 characters of Crockford base32 in three dash-separated groups
//! (`k3x9q-7mwzt-a1c4e`, 75 bits). Users type them in any case, with or
//! without dashes and spaces, and with the letters Crockford base32 maps to
//! digits (`o` → `0`, `i`/`l` → `1`); [`normalize`] makes all of those the same
//! string before hashing, so the stored SHA-256 matches however it was typed.

use sha2::{Digest, Sha256};

/// How many codes a set has.
pub const CODES_PER_SET: usize = 10;
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const GROUPS: usize = 3;
const GROUP_LEN: usize = 5;
/// Random bytes needed for one code (75 bits, rounded up).
pub const RANDOM_BYTES_PER_CODE: usize = 10;

/// Formats one code from caller-supplied random bytes.
pub fn format_code(random: [u8; RANDOM_BYTES_PER_CODE]) -> String {
    let mut n = u128::from_be_bytes({
        let mut wide = [0u8; 16];
        wide[6..].copy_from_slice(&random);
        wide
    });
    let mut chars = Vec::with_capacity(GROUPS * GROUP_LEN);
    for _ in 0..GROUPS * GROUP_LEN {
        chars.push(ALPHABET[(n & 31) as usize] as char);
        n >>= 5;
    }
    chars
        .chunks(GROUP_LEN)
        .map(|g| g.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// Generates a set of codes from `CODES_PER_SET` random byte arrays.
pub fn generate_set(random: [[u8; RANDOM_BYTES_PER_CODE]; CODES_PER_SET]) -> Vec<String> {
    random.into_iter().map(format_code).collect()
}

/// The canonical form of a typed code, or `None` if it cannot be one.
pub fn normalize(typed: &str) -> Option<String> {
    let mut out = String::with_capacity(GROUPS * GROUP_LEN);
    for c in typed.chars() {
        let c = c.to_ascii_lowercase();
        let mapped = match c {
            '-' | ' ' => continue,
            'o' => '0',
            'i' | 'l' => '1',
            c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
            _ => return None,
        };
        out.push(mapped);
    }
    (out.len() == GROUPS * GROUP_LEN).then_some(out)
}

/// The stored hash of a code (hex SHA-256 of its canonical form).
pub fn hash(typed: &str) -> Option<String> {
    normalize(typed).map(|c| hex::encode(Sha256::digest(c.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codes_look_right_and_differ() {
        let set = generate_set(std::array::from_fn(|i| {
            [i as u8 * 17 + 1; RANDOM_BYTES_PER_CODE]
        }));
        assert_eq!(set.len(), 10);
        for code in &set {
            assert_eq!(code.len(), 17);
            assert_eq!(code.matches('-').count(), 2);
        }
        let mut unique = set.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10);
    }

    #[test]
    fn typing_variants_hash_the_same() {
        let code = format_code([0xab; RANDOM_BYTES_PER_CODE]);
        let shouted = code.to_ascii_uppercase().replace('-', " ");
        assert_eq!(hash(&code), hash(&shouted));
        assert_eq!(
            normalize("OIL00-11111-00000"),
            Some("011001111100000".into())
        );
        assert_eq!(normalize("abcde-fghjk"), None);
        assert_eq!(
            normalize("abcde-fghjk-mnpqu"),
            None,
            "`u` is not in the alphabet"
        );
        assert_eq!(normalize("abcde-fghjk-mnpqé"), None);
        assert!(hash("nope").is_none());
    }

    proptest! {
        #[test]
        fn every_code_round_trips(bytes in any::<[u8; RANDOM_BYTES_PER_CODE]>()) {
            let code = format_code(bytes);
            prop_assert_eq!(normalize(&code), Some(code.replace('-', "")));
            prop_assert!(hash(&code).is_some());
        }
    }
}

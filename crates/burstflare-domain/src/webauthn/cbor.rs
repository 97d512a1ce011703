//! A small, strict CBOR (RFC 8949) decoder for what WebAuthn sends, and an
//! encoder for the software authenticator.
//!
//! WebAuthn puts CBOR items back to back inside authenticator data (the
//! COSE public key, then the extensions map), so the verifier must know exactly
//! where an item ends: [`decode_prefix`] returns the item and the number of
//! bytes it used. Values borrow from the input, nothing is allocated for a
//! declared length before the bytes are there, nesting is bounded by
//! [`MAX_DEPTH`], and malformed input is an error, never a panic.
//!
//! CTAP2 authenticators emit canonical CBOR, which has no indefinite-length
//! items; they are rejected. Map keys are not checked for duplicates here:
//! [`Value::get`] refuses a key that appears twice in a map that is read.

use std::fmt;

/// How deeply arrays, maps and tags may nest. WebAuthn structures need four.
pub(crate) const MAX_DEPTH: usize = 16;

/// A decoded CBOR data item, borrowing strings from the input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    Int(i128),
    Bytes(&'a [u8]),
    Text(&'a str),
    Array(Vec<Value<'a>>),
    Map(Vec<(Value<'a>, Value<'a>)>),
    Tag(u64, Box<Value<'a>>),
    Bool(bool),
    Null,
    Undefined,
    Simple(u8),
    /// A half, single or double precision float, kept as its raw bits.
    Float(u64),
}

/// Why bytes are not one well-formed CBOR item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CborError {
    #[error("the CBOR ends early (at byte {0})")]
    Truncated(usize),
    #[error("indefinite-length CBOR item at byte {0} (CTAP2 canonical CBOR has none)")]
    IndefiniteLength(usize),
    #[error("reserved CBOR additional information {info} at byte {offset}")]
    Reserved { offset: usize, info: u8 },
    #[error("CBOR text at byte {0} is not UTF-8")]
    InvalidUtf8(usize),
    #[error("CBOR nests deeper than {MAX_DEPTH} levels at byte {0}")]
    TooDeep(usize),
    #[error("{count} bytes follow the CBOR item")]
    TrailingBytes { count: usize },
}

/// Decodes the CBOR item at the start of `input`; returns it and the bytes it used.
pub(crate) fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), CborError> {
    let mut reader = Reader { input, pos: 0 };
    let value = reader.item(0)?;
    Ok((value, reader.pos))
}

/// Decodes `input`, which must be exactly one CBOR item.
pub(crate) fn decode_exact(input: &[u8]) -> Result<Value<'_>, CborError> {
    let (value, used) = decode_prefix(input)?;
    match input.len() - used {
        0 => Ok(value),
        count => Err(CborError::TrailingBytes { count }),
    }
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(CborError::Truncated(self.pos))?;
        let bytes = self
            .input
            .get(self.pos..end)
            .ok_or(CborError::Truncated(self.pos))?;
        self.pos = end;
        Ok(bytes)
    }

    fn uint_be(&mut self, n: usize) -> Result<u64, CborError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn length(&self, arg: u64, at: usize) -> Result<usize, CborError> {
        usize::try_from(arg).map_err(|_| CborError::Truncated(at))
    }

    fn item(&mut self, depth: usize) -> Result<Value<'a>, CborError> {
        let at = self.pos;
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep(at));
        }
        let initial = *self.take(1)?.first().ok_or(CborError::Truncated(at))?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        let arg = match info {
            0..=23 => u64::from(info),
            24 => self.uint_be(1)?,
            25 => self.uint_be(2)?,
            26 => self.uint_be(4)?,
            27 => self.uint_be(8)?,
            31 => return Err(CborError::IndefiniteLength(at)),
            _ => return Err(CborError::Reserved { offset: at, info }),
        };
        Ok(match major {
            0 => Value::Int(i128::from(arg)),
            1 => Value::Int(-1 - i128::from(arg)),
            2 => Value::Bytes(self.take(self.length(arg, at)?)?),
            3 => {
                let bytes = self.take(self.length(arg, at)?)?;
                Value::Text(std::str::from_utf8(bytes).map_err(|_| CborError::InvalidUtf8(at))?)
            }
            4 => {
                let mut items = Vec::new();
                for _ in 0..arg {
                    items.push(self.item(depth + 1)?);
                }
                Value::Array(items)
            }
            5 => {
                let mut entries = Vec::new();
                for _ in 0..arg {
                    let key = self.item(depth + 1)?;
                    let value = self.item(depth + 1)?;
                    entries.push((key, value));
                }
                Value::Map(entries)
            }
            6 => Value::Tag(arg, Box::new(self.item(depth + 1)?)),
            _ => match info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 => Value::Null,
                23 => Value::Undefined,
                // One-byte simple values below 32 are not well-formed (RFC 8949 §3.3).
                24 if arg < 32 => return Err(CborError::Reserved { offset: at, info }),
                0..=24 => Value::Simple(u8::try_from(arg).unwrap_or(u8::MAX)),
                _ => Value::Float(arg),
            },
        })
    }
}

impl<'a> Value<'a> {
    pub(crate) fn as_int(&self) -> Option<i128> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    pub(crate) fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub(crate) fn as_text(&self) -> Option<&'a str> {
        match self {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }

    pub(crate) fn as_map(&self) -> Option<&[(Value<'a>, Value<'a>)]> {
        match self {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value under `key` in a map; `Err` if the key appears more than once,
    /// `Ok(None)` if it is absent or `self` is not a map.
    pub(crate) fn get(&self, key: Key<'_>) -> Result<Option<&Value<'a>>, DuplicateKey> {
        let mut found = None;
        for (k, v) in self.as_map().unwrap_or_default() {
            let matches = match (key, k) {
                (Key::Int(want), Value::Int(have)) => i128::from(want) == *have,
                (Key::Text(want), Value::Text(have)) => want == *have,
                _ => false,
            };
            if matches {
                if found.is_some() {
                    return Err(DuplicateKey(key.to_string()));
                }
                found = Some(v);
            }
        }
        Ok(found)
    }
}

/// A map key that WebAuthn structures use: a COSE label or a text name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key<'k> {
    Int(i64),
    Text(&'k str),
}

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(n) => write!(f, "{n}"),
            Key::Text(t) => write!(f, "{t:?}"),
        }
    }
}

/// A map key that appears more than once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("map key {0} appears more than once")]
pub(crate) struct DuplicateKey(pub(crate) String);

/// Writes canonical (shortest-form, definite-length) CBOR.
#[cfg(any(test, feature = "authenticator"))]
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    out: Vec<u8>,
}

#[cfg(any(test, feature = "authenticator"))]
impl Encoder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn head(&mut self, major: u8, arg: u64) -> &mut Self {
        let major = major << 5;
        match arg {
            0..=23 => self.out.push(major | arg as u8),
            24..=0xff => self.out.extend([major | 24, arg as u8]),
            0x100..=0xffff => {
                self.out.push(major | 25);
                self.out.extend((arg as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.out.push(major | 26);
                self.out.extend((arg as u32).to_be_bytes());
            }
            _ => {
                self.out.push(major | 27);
                self.out.extend(arg.to_be_bytes());
            }
        }
        self
    }

    pub(crate) fn int(&mut self, n: i64) -> &mut Self {
        if n >= 0 {
            self.head(0, n.unsigned_abs())
        } else {
            self.head(1, (-1 - n).unsigned_abs())
        }
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.head(2, b.len() as u64);
        self.out.extend_from_slice(b);
        self
    }

    pub(crate) fn text(&mut self, t: &str) -> &mut Self {
        self.head(3, t.len() as u64);
        self.out.extend_from_slice(t.as_bytes());
        self
    }

    #[cfg(test)]
    pub(crate) fn array(&mut self, len: usize) -> &mut Self {
        self.head(4, len as u64)
    }

    pub(crate) fn map(&mut self, len: usize) -> &mut Self {
        self.head(5, len as u64)
    }

    /// Appends already-encoded CBOR.
    pub(crate) fn raw(&mut self, encoded: &[u8]) -> &mut Self {
        self.out.extend_from_slice(encoded);
        self
    }

    pub(crate) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_and_measures_items() {
        // {1: 2, 3: -7, "k": h'0102'} followed by one extra byte.
        let bytes = [
            0xa3, 0x01, 0x02, 0x03, 0x26, 0x61, b'k', 0x42, 0x01, 0x02, 0xff,
        ];
        let (value, used) = decode_prefix(&bytes).unwrap();
        assert_eq!(used, 10);
        assert_eq!(value.get(Key::Int(1)).unwrap(), Some(&Value::Int(2)));
        assert_eq!(value.get(Key::Int(3)).unwrap(), Some(&Value::Int(-7)));
        assert_eq!(
            value.get(Key::Text("k")).unwrap(),
            Some(&Value::Bytes(&[1, 2]))
        );
        assert_eq!(value.get(Key::Int(4)).unwrap(), None);
        assert_eq!(
            decode_exact(&bytes),
            Err(CborError::TrailingBytes { count: 1 })
        );
    }

    #[test]
    fn extreme_integers_decode() {
        let max = [0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decode_exact(&max), Ok(Value::Int(i128::from(u64::MAX))));
        let min = [0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            decode_exact(&min),
            Ok(Value::Int(-1 - i128::from(u64::MAX)))
        );
    }

    #[test]
    fn rejects_malformed_input() {
        // A byte string claiming 2^64-1 bytes: no allocation, just an error.
        let huge = [0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decode_exact(&huge), Err(CborError::Truncated(9)));
        // An array claiming 2^32 items with none present.
        assert!(matches!(
            decode_exact(&[0x9a, 0xff, 0xff, 0xff, 0xff]),
            Err(CborError::Truncated(_))
        ));
        assert_eq!(
            decode_exact(&[0x5f, 0x41, 0x00, 0xff]),
            Err(CborError::IndefiniteLength(0))
        );
        assert_eq!(
            decode_exact(&[0x1c]),
            Err(CborError::Reserved {
                offset: 0,
                info: 28
            })
        );
        assert_eq!(
            decode_exact(&[0xf8, 0x10]),
            Err(CborError::Reserved {
                offset: 0,
                info: 24
            })
        );
        assert_eq!(
            decode_exact(&[0x62, 0xc3, 0x28]),
            Err(CborError::InvalidUtf8(0))
        );
        assert_eq!(decode_exact(&[]), Err(CborError::Truncated(0)));
        assert_eq!(decode_exact(&[0xff]), Err(CborError::IndefiniteLength(0)));
        let deep = [0x81; MAX_DEPTH + 2];
        assert!(matches!(decode_exact(&deep), Err(CborError::TooDeep(_))));
        let ok_depth: Vec<u8> = std::iter::repeat_n(0x81, MAX_DEPTH).chain([0x00]).collect();
        assert!(decode_exact(&ok_depth).is_ok());
    }

    #[test]
    fn duplicate_keys_are_refused_when_read() {
        let map = decode_exact(&[0xa2, 0x01, 0x02, 0x01, 0x03]).unwrap();
        assert_eq!(
            map.get(Key::Int(1)),
            Err(DuplicateKey("1".into())),
            "{{1: 2, 1: 3}} is ambiguous"
        );
    }

    #[test]
    fn encoder_round_trips() {
        let bytes = Encoder::new()
            .map(4)
            .int(1)
            .int(-300)
            .text("fmt")
            .bytes(&[7; 300])
            .int(70_000)
            .array(2)
            .int(i64::MIN)
            .int(i64::MAX)
            .int(-1)
            .text("")
            .finish();
        let value = decode_exact(&bytes).unwrap();
        assert_eq!(value.get(Key::Int(1)).unwrap(), Some(&Value::Int(-300)));
        assert_eq!(
            value
                .get(Key::Text("fmt"))
                .unwrap()
                .and_then(Value::as_bytes),
            Some(&[7u8; 300][..])
        );
        assert_eq!(
            value.get(Key::Int(70_000)).unwrap(),
            Some(&Value::Array(vec![
                Value::Int(i128::from(i64::MIN)),
                Value::Int(i128::from(i64::MAX))
            ]))
        );
        assert_eq!(value.get(Key::Int(-1)).unwrap(), Some(&Value::Text("")));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok((_, used)) = decode_prefix(&bytes) {
                prop_assert!(used <= bytes.len());
            }
        }
    }
}

//! Canonical CBOR encoding of every ledger object, behind one module.
//!
//! The canonical form of an object is exactly what [`encode`] produces (`serde_cbor` in packed
//! form: structs as maps keyed by field index, in declaration order; byte strings as CBOR byte
//! strings). [`decode`] accepts an input only if re-encoding the decoded value reproduces the
//! input byte for byte, so unknown fields, non-minimal integers, indefinite lengths, reordered
//! keys and trailing bytes are all rejected. Every decode is bounded by a size limit chosen by
//! the caller. This module is the only place that names `serde_cbor` (RUSTSEC-2021-0127: the
//! crate is unmaintained, so it stays swappable).

use serde::{de::DeserializeOwned, Serialize};

/// Decoding and encoding failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input is longer than the limit for this kind of object.
    #[error("{what}: {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Kind of object being decoded.
        what: &'static str,
        /// Length of the input.
        len: usize,
        /// Limit for this kind.
        limit: usize,
    },
    /// The input is empty.
    #[error("{what}: empty input")]
    Empty {
        /// Kind of object being decoded.
        what: &'static str,
    },
    /// The bytes are not a well-formed CBOR value of the expected shape.
    #[error("{what}: malformed CBOR: {reason}")]
    Malformed {
        /// Kind of object being decoded.
        what: &'static str,
        /// Decoder message.
        reason: String,
    },
    /// The input decodes but is not in canonical form (re-encoding differs).
    #[error("{what}: non-canonical encoding")]
    NonCanonical {
        /// Kind of object being decoded.
        what: &'static str,
    },
    /// Encoding failed (cannot happen for ledger types; kept typed rather than panicking).
    #[error("encoding failed: {0}")]
    Encode(String),
}

impl CodecError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CodecError::TooLarge { .. } => "codec.too_large",
            CodecError::Empty { .. } => "codec.empty",
            CodecError::Malformed { .. } => "codec.malformed",
            CodecError::NonCanonical { .. } => "codec.non_canonical",
            CodecError::Encode(_) => "codec.encode",
        }
    }
}

/// Encodes `value` in canonical form.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    serde_cbor::ser::to_vec_packed(value).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes a canonical encoding of `T` of at most `limit` bytes.
///
/// Rejects inputs that are empty, too large, malformed, followed by trailing bytes, or not
/// byte-identical to the re-encoding of the decoded value.
pub fn decode<T: Serialize + DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    limit: usize,
) -> Result<T, CodecError> {
    let value: T = decode_own(what, bytes, limit)?;
    let again = encode(&value)?;
    if again != bytes {
        return Err(CodecError::NonCanonical { what });
    }
    Ok(value)
}

/// Decodes a value this crate encoded itself and kept (a state value written by the rules, or
/// read back from the CRC-sealed store): the same checks as [`decode`] except the canonical
/// re-encoding, which for such bytes can only confirm what `encode` wrote. Never use it on bytes
/// that crossed a trust boundary (entries, blocks, certificates, anything from the network).
pub fn decode_own<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    limit: usize,
) -> Result<T, CodecError> {
    if bytes.is_empty() {
        return Err(CodecError::Empty { what });
    }
    if bytes.len() > limit {
        return Err(CodecError::TooLarge {
            what,
            len: bytes.len(),
            limit,
        });
    }
    serde_cbor::from_slice(bytes).map_err(|e| CodecError::Malformed {
        what,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        a: u64,
        #[serde(with = "serde_bytes")]
        b: Vec<u8>,
        c: String,
    }

    fn sample() -> Sample {
        Sample {
            a: 7,
            b: vec![1, 2, 3],
            c: "x".into(),
        }
    }

    #[test]
    fn round_trip_is_identity() {
        let bytes = encode(&sample()).unwrap();
        let back: Sample = decode("sample", &bytes, 1024).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn own_values_decode_with_every_check_but_the_re_encoding() {
        let bytes = encode(&sample()).unwrap();
        let back: Sample = decode_own("sample", &bytes, 1024).unwrap();
        assert_eq!(back, sample());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_own::<Sample>("sample", &trailing, 1024).is_err());
        for cut in 0..bytes.len() {
            assert!(decode_own::<Sample>("sample", &bytes[..cut], 1024).is_err());
        }
        let err = decode_own::<Sample>("sample", &bytes, bytes.len() - 1).unwrap_err();
        assert_eq!(err.code(), "codec.too_large");
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode(&sample()).unwrap();
        bytes.push(0);
        let err = decode::<Sample>("sample", &bytes, 1024).unwrap_err();
        assert!(matches!(err, CodecError::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn truncated_input_is_rejected() {
        let bytes = encode(&sample()).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode::<Sample>("sample", &bytes[..cut], 1024).is_err());
        }
    }

    #[test]
    fn oversized_input_is_rejected_before_decoding() {
        let bytes = encode(&sample()).unwrap();
        let err = decode::<Sample>("sample", &bytes, bytes.len() - 1).unwrap_err();
        assert_eq!(err.code(), "codec.too_large");
    }

    #[test]
    fn non_minimal_integer_is_non_canonical() {
        // Map {0: 7, 1: h'010203', 2: "x"} with 7 written as a one-byte-argument integer (0x18 0x07).
        let bytes = [
            0xa3, 0x00, 0x18, 0x07, 0x01, 0x43, 1, 2, 3, 0x02, 0x61, b'x',
        ];
        let err = decode::<Sample>("sample", &bytes, 1024).unwrap_err();
        assert_eq!(err, CodecError::NonCanonical { what: "sample" });
    }

    #[test]
    fn named_field_keys_are_non_canonical() {
        let named = serde_cbor::to_vec(&sample()).unwrap();
        let err = decode::<Sample>("sample", &named, 1024).unwrap_err();
        assert_eq!(err.code(), "codec.non_canonical");
    }

    #[test]
    fn unknown_field_is_rejected() {
        // {0: 7, 1: h'010203', 2: "x", 3: 0}
        let bytes = [
            0xa4, 0x00, 0x07, 0x01, 0x43, 1, 2, 3, 0x02, 0x61, b'x', 0x03, 0x00,
        ];
        assert!(decode::<Sample>("sample", &bytes, 1024).is_err());
    }
}

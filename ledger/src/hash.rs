//! SHA-256 digests with one domain tag per kind of object.
//!
//! Every ledger hash is `SHA-256(tag ‖ 0x00 ‖ bytes)` where `tag` is one of the ASCII strings of
//! [`Domain`]; distinct tags make a digest of one kind useless as a digest of another. The only
//! exception is the RFC 9162 Merkle log (`merkle`), whose leaf and node hashes use the RFC's
//! 0x00/0x01 prefixes so that standard tooling can check them. This module is not a place for
//! signatures (see `keys`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// A 32-byte SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest(pub [u8; 32]);

/// The first 8 bytes of a 32-byte hash as a big-endian integer: the in-memory index key of an
/// entry id (store) or replay id (state), confirmed against the full hash on every match.
pub(crate) fn prefix64(h: &[u8; 32]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    u64::from_be_bytes(b)
}

impl Digest {
    /// The all-zero digest (used as "no previous block" in the genesis header link).
    pub const ZERO: Digest = Digest([0u8; 32]);

    /// Lower-case hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Digest, HashError> {
        let v = hex::decode(s).map_err(|_| HashError::BadHex)?;
        Digest::from_slice(&v)
    }

    /// Takes exactly 32 bytes.
    pub fn from_slice(b: &[u8]) -> Result<Digest, HashError> {
        let a: [u8; 32] = b
            .try_into()
            .map_err(|_| HashError::BadLength { got: b.len() })?;
        Ok(Digest(a))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Malformed digest text or bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// Not hexadecimal.
    #[error("digest is not hexadecimal")]
    BadHex,
    /// Not 32 bytes.
    #[error("digest must be 32 bytes, got {got}")]
    BadLength {
        /// Length found.
        got: usize,
    },
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Digest::from_hex(&s).map_err(serde::de::Error::custom)
        } else {
            let b: serde_bytes::ByteBuf = serde_bytes::ByteBuf::deserialize(d)?;
            Digest::from_slice(&b).map_err(serde::de::Error::custom)
        }
    }
}

/// The domain tag of each kind of hashed object. The tag strings are part of the protocol
/// (`specs/hashing.md`) and must never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Domain {
    /// Hash of a stored entry's bytes (entry id; also consent, repair and commitment ids).
    Entry,
    /// Hash of a block header's bytes (block id, signed by the commit certificate).
    Header,
    /// Hash of the genesis document (chain id).
    Genesis,
    /// Hash of a validator set.
    ValidatorSet,
    /// One link of the state-root chain.
    State,
    /// Hash of one block's state write set.
    WriteSet,
    /// Salted digest of off-ledger credit data (query responses, records, proofs).
    Data,
}

impl Domain {
    /// The ASCII tag.
    pub const fn tag(self) -> &'static [u8] {
        match self {
            Domain::Entry => b"xinyi/v1/entry",
            Domain::Header => b"xinyi/v1/header",
            Domain::Genesis => b"xinyi/v1/genesis",
            Domain::ValidatorSet => b"xinyi/v1/validator-set",
            Domain::State => b"xinyi/v1/state",
            Domain::WriteSet => b"xinyi/v1/write-set",
            Domain::Data => b"xinyi/v1/data",
        }
    }

    /// Every domain, for documentation and vector generation.
    pub const ALL: [Domain; 7] = [
        Domain::Entry,
        Domain::Header,
        Domain::Genesis,
        Domain::ValidatorSet,
        Domain::State,
        Domain::WriteSet,
        Domain::Data,
    ];
}

/// `SHA-256(tag ‖ 0x00 ‖ part_1 ‖ … ‖ part_n)`.
pub fn tagged(domain: Domain, parts: &[&[u8]]) -> Digest {
    let mut h = Sha256::new();
    h.update(domain.tag());
    h.update([0u8]);
    for p in parts {
        h.update(p);
    }
    Digest(h.finalize().into())
}

/// Salted digest of off-ledger data: `tagged(Data, salt ‖ data)`. The salt (32 random bytes)
/// travels with the data to its legitimate reader, never on the ledger, so the digest cannot be
/// brute-forced from guessed contents.
pub fn salted(salt: &[u8; 32], data: &[u8]) -> Digest {
    tagged(Domain::Data, &[salt, data])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_separate_equal_inputs() {
        let mut seen = std::collections::BTreeSet::new();
        for d in Domain::ALL {
            assert!(seen.insert(tagged(d, &[b"same"])), "{d:?} collides");
        }
    }

    #[test]
    fn tagged_matches_plain_sha256_of_prefixed_input() {
        let mut input = b"xinyi/v1/entry".to_vec();
        input.push(0);
        input.extend_from_slice(b"abc");
        let want: [u8; 32] = Sha256::digest(&input).into();
        assert_eq!(tagged(Domain::Entry, &[b"a", b"bc"]).0, want);
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let d = tagged(Domain::Header, &[b"x"]);
        assert_eq!(Digest::from_hex(&d.to_hex()).unwrap(), d);
        assert_eq!(Digest::from_hex("zz"), Err(HashError::BadHex));
        assert_eq!(
            Digest::from_hex("abcd"),
            Err(HashError::BadLength { got: 2 })
        );
    }

    #[test]
    fn cbor_rejects_wrong_length_digest() {
        let bytes = crate::codec::encode(&serde_bytes::ByteBuf::from(vec![1u8; 31])).unwrap();
        assert!(crate::codec::decode::<Digest>("digest", &bytes, 64).is_err());
    }
}

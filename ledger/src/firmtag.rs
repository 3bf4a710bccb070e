//! Keyed firm tags: how firms appear on the ledger.
//!
//! Entries and state name a firm by `FirmTag = HMAC-SHA-256(firm key, "xinyi/v1/firm-tag" ‖ 0x00 ‖
//! USCC)`, never by its USCC. The **firm key** is a 32-byte secret of the consortium, given to
//! member nodes out of band (a `firm.key` file); it is not in the genesis document nor on the
//! ledger, so a copy of the chain without the key shows tags, not which firm is which
//! (`specs/privacy.md`). The ledger's rules only compare tags; the USCC check character is
//! validated where USCCs enter (API, client), before the tag is derived.

use crate::uscc::Uscc;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Domain prefix of the tag's HMAC input (`0x00` terminated).
pub const TAG_DOMAIN: &[u8] = b"xinyi/v1/firm-tag\0";

/// The consortium's secret firm key (32 bytes). Not `Debug`-printable.
#[derive(Clone, PartialEq, Eq)]
pub struct FirmKey([u8; 32]);

/// A malformed firm key or tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirmTagError {
    /// Not hexadecimal.
    #[error("{0} is not hexadecimal")]
    BadHex(&'static str),
    /// Not 32 bytes.
    #[error("{what} must be 32 bytes, got {got}")]
    BadLength {
        /// Which value.
        what: &'static str,
        /// Length found.
        got: usize,
    },
}

impl FirmKey {
    /// Wraps 32 secret bytes.
    pub fn from_bytes(b: [u8; 32]) -> FirmKey {
        FirmKey(b)
    }

    /// Parses the key file's text: 64 hex characters, surrounding whitespace ignored.
    pub fn from_hex(s: &str) -> Result<FirmKey, FirmTagError> {
        let v = hex::decode(s.trim()).map_err(|_| FirmTagError::BadHex("firm key"))?;
        let a: [u8; 32] = v
            .as_slice()
            .try_into()
            .map_err(|_| FirmTagError::BadLength {
                what: "firm key",
                got: v.len(),
            })?;
        Ok(FirmKey(a))
    }

    /// A fresh random key.
    pub fn generate() -> FirmKey {
        use rand::RngCore;
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        FirmKey(b)
    }

    /// The key file's text: lower-case hex and a newline.
    pub fn to_hex(&self) -> String {
        format!("{}\n", hex::encode(self.0))
    }

    /// The tag of `uscc` under this key.
    pub fn tag(&self, uscc: &Uscc) -> FirmTag {
        FirmTag::derive(self, uscc)
    }
}

impl fmt::Debug for FirmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FirmKey(..)")
    }
}

/// A firm as the ledger knows it: 32 bytes, lower-case hex in JSON and text, a 32-byte byte
/// string in CBOR.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FirmTag(pub [u8; 32]);

type HmacSha256 = hmac::Hmac<sha2_11::Sha256>;

impl FirmTag {
    /// `HMAC-SHA-256(key, "xinyi/v1/firm-tag" ‖ 0x00 ‖ USCC as 18 ASCII bytes)`.
    pub fn derive(key: &FirmKey, uscc: &Uscc) -> FirmTag {
        // HMAC accepts keys of any length, so this cannot fail.
        let Ok(mut mac) = HmacSha256::new_from_slice(&key.0) else {
            return FirmTag([0u8; 32]);
        };
        mac.update(TAG_DOMAIN);
        mac.update(uscc.as_str().as_bytes());
        let out = mac.finalize().into_bytes();
        let mut t = [0u8; 32];
        t.copy_from_slice(&out);
        FirmTag(t)
    }

    /// Lower-case hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<FirmTag, FirmTagError> {
        let v = hex::decode(s).map_err(|_| FirmTagError::BadHex("firm tag"))?;
        FirmTag::from_slice(&v)
    }

    /// Takes exactly 32 bytes.
    pub fn from_slice(b: &[u8]) -> Result<FirmTag, FirmTagError> {
        let a: [u8; 32] = b.try_into().map_err(|_| FirmTagError::BadLength {
            what: "firm tag",
            got: b.len(),
        })?;
        Ok(FirmTag(a))
    }

    /// The raw bytes (used in state keys).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for FirmTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for FirmTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FirmTag({})", self.to_hex())
    }
}

impl std::str::FromStr for FirmTag {
    type Err = FirmTagError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FirmTag::from_hex(s)
    }
}

impl Serialize for FirmTag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for FirmTag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FirmTag, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            FirmTag::from_hex(&s).map_err(serde::de::Error::custom)
        } else {
            let b: serde_bytes::ByteBuf = serde_bytes::ByteBuf::deserialize(d)?;
            FirmTag::from_slice(&b).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of `specs/privacy.md` §2: key = bytes 0x00..0x1f, USCC
    /// 91350100M000100Y43.
    #[test]
    fn tag_vector() {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = i as u8;
        }
        let key = FirmKey::from_bytes(k);
        let uscc = Uscc::parse("91350100M000100Y43").unwrap();
        assert_eq!(FirmTag::derive(&key, &uscc).to_hex(), VECTOR_TAG);
        // RFC 4231 test case 2 pins the HMAC construction itself.
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    const VECTOR_TAG: &str = "71aaa08e66d2684373f0caacfa8b5bdaf792ea3fdda687121f092e67917f66db";

    #[test]
    fn tag_encodings() {
        let t = FirmTag([7u8; 32]);
        let cbor = crate::codec::encode(&t).unwrap();
        assert_eq!(cbor[0], 0x58);
        assert_eq!(cbor[1], 32);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            format!("\"{}\"", "07".repeat(32))
        );
        let back: FirmTag = crate::codec::decode("tag", &cbor, 64).unwrap();
        assert_eq!(back, t);
        assert!(FirmKey::from_hex(&FirmKey::from_bytes([1; 32]).to_hex()).is_ok());
        assert!(FirmKey::from_hex("00").is_err());
    }
}

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

/// HMAC input of a key's public id (`FirmKey::id`).
pub const KEY_ID_DOMAIN: &[u8] = b"xinyi/v1/firm-key-id\0";

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

    /// The key's public id, `HMAC-SHA-256(key, "xinyi/v1/firm-key-id" ‖ 0x00)`: what a firm-key
    /// rotation entry names (`MemberChange::RotateFirmKey`), so a node can check that the key
    /// file it holds for an epoch is the one the consortium approved. It reveals nothing of the
    /// key and cannot be used to compute tags.
    pub fn id(&self) -> crate::hash::Digest {
        crate::hash::Digest(hmac32(&self.0, &[KEY_ID_DOMAIN]))
    }
}

/// The firm keys of every epoch a node holds: epoch 0 is the key the consortium started with,
/// epoch `e` the key approved by the `e`-th firm-key rotation (`specs/privacy.md` §8). A firm has
/// one tag per epoch; only a holder of the keys can tell that two tags name one firm, so the
/// ledger never links them. Pure data: loading the files is the node's business.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FirmKeyring {
    keys: Vec<FirmKey>,
}

impl fmt::Debug for FirmKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FirmKeyring({} epochs)", self.keys.len())
    }
}

impl FirmKeyring {
    /// A keyring holding epoch 0 only.
    pub fn new(epoch0: FirmKey) -> FirmKeyring {
        FirmKeyring { keys: vec![epoch0] }
    }

    /// A keyring of epochs 0, 1, ... in order.
    pub fn from_keys(keys: Vec<FirmKey>) -> FirmKeyring {
        FirmKeyring { keys }
    }

    /// Adds the key of the next epoch (`self.epochs()`).
    pub fn push(&mut self, key: FirmKey) {
        self.keys.push(key);
    }

    /// Number of epochs held (the next epoch's number).
    pub fn epochs(&self) -> u32 {
        u32::try_from(self.keys.len()).unwrap_or(u32::MAX)
    }

    /// The key of `epoch`, if held.
    pub fn key(&self, epoch: u32) -> Option<&FirmKey> {
        self.keys.get(epoch as usize)
    }

    /// The key of the highest epoch held.
    pub fn latest(&self) -> Option<&FirmKey> {
        self.keys.last()
    }

    /// The tag of `uscc` in `epoch`, if that epoch's key is held.
    pub fn tag(&self, epoch: u32, uscc: &Uscc) -> Option<FirmTag> {
        self.key(epoch).map(|k| k.tag(uscc))
    }

    /// `uscc`'s tag in every epoch held, oldest first.
    pub fn tags(&self, uscc: &Uscc) -> Vec<(u32, FirmTag)> {
        (0..self.epochs())
            .zip(self.keys.iter())
            .map(|(e, k)| (e, k.tag(uscc)))
            .collect()
    }
}

fn hmac32(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut t = [0u8; 32];
    // HMAC accepts keys of any length, so this cannot fail.
    if let Ok(mut mac) = HmacSha256::new_from_slice(key) {
        for p in parts {
            mac.update(p);
        }
        t.copy_from_slice(&mac.finalize().into_bytes());
    }
    t
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
        FirmTag(hmac32(&key.0, &[TAG_DOMAIN, uscc.as_str().as_bytes()]))
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

    /// The key id of the same vector key (`specs/privacy.md` §8), and a keyring's tags differ
    /// per epoch.
    #[test]
    fn key_id_vector_and_keyring() {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = i as u8;
        }
        let key = FirmKey::from_bytes(k);
        let mut mac = HmacSha256::new_from_slice(&k).unwrap();
        mac.update(b"xinyi/v1/firm-key-id\0");
        assert_eq!(
            key.id().0.as_slice(),
            mac.finalize().into_bytes().as_slice()
        );
        assert_eq!(key.id().to_hex(), VECTOR_KEY_ID);
        assert_ne!(
            key.id().0,
            FirmTag::derive(&key, &Uscc::parse("91350100M000100Y43").unwrap()).0
        );
        let uscc = Uscc::parse("91350100M000100Y43").unwrap();
        let mut ring = FirmKeyring::new(key.clone());
        ring.push(FirmKey::from_bytes([9; 32]));
        let tags = ring.tags(&uscc);
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0], (0, key.tag(&uscc)));
        assert_ne!(tags[0].1, tags[1].1);
        assert_eq!(ring.tag(1, &uscc), Some(tags[1].1));
        assert_eq!(ring.tag(2, &uscc), None);
        assert_eq!(ring.epochs(), 2);
    }

    const VECTOR_KEY_ID: &str = "4163420c39d2f8cfc9d8cbd3593daedfd5241dd46615190e790f67a0341b5536";

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

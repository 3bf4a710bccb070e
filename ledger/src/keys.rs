//! Ed25519 keys and signatures over domain-separated messages.
//!
//! Every signature in xinyi covers `tag ‖ 0x00 ‖ payload`, with one tag per kind of signed
//! statement ([`SigDomain`]), so a signature can never be replayed as another kind. Single
//! verification is `verify_strict` (rejects small-order keys and non-canonical encodings);
//! [`verify_many`] batch-verifies and falls back to strict per-signature checks to name the first
//! bad one. ed25519-dalek's batch verification is deterministic (its random coefficients come
//! from a transcript of the inputs), so every node reaches the same verdict on the same block.
//! Checkpoint signatures use the C2SP signed-note format instead (`note`).

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Key and signature failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The 32 bytes are not a valid Ed25519 point, or are a weak (small-order) key.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// The signature does not verify under this key and domain.
    #[error("signature does not verify")]
    BadSignature,
    /// Wrong length or encoding of a key or signature in text form.
    #[error("malformed key material: {0}")]
    Malformed(String),
    /// In a batch, the signature at this index is the first that does not verify.
    #[error("signature #{index} of the batch does not verify")]
    BadSignatureInBatch {
        /// Index in the batch.
        index: usize,
    },
}

/// The kind of statement a signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SigDomain {
    /// An entry's body bytes, by the entry's author (organisation or firm).
    Entry,
    /// A bank's query request, embedded in a query record or denial.
    QueryRequest,
    /// A validator's commit vote over a block header hash.
    Commit,
    /// A validator's approval of a membership change.
    Membership,
    /// A signed HTTP API request envelope (node/client, not stored on the ledger).
    ApiRequest,
    /// Evidence statements.
    Evidence,
}

impl SigDomain {
    /// The ASCII tag.
    pub const fn tag(self) -> &'static [u8] {
        match self {
            SigDomain::Entry => b"xinyi/v1/sig/entry",
            SigDomain::QueryRequest => b"xinyi/v1/sig/query-request",
            SigDomain::Commit => b"xinyi/v1/sig/commit",
            SigDomain::Membership => b"xinyi/v1/sig/membership",
            SigDomain::ApiRequest => b"xinyi/v1/sig/api-request",
            SigDomain::Evidence => b"xinyi/v1/sig/evidence",
        }
    }

    /// Every domain, for documentation and vector generation.
    pub const ALL: [SigDomain; 6] = [
        SigDomain::Entry,
        SigDomain::QueryRequest,
        SigDomain::Commit,
        SigDomain::Membership,
        SigDomain::ApiRequest,
        SigDomain::Evidence,
    ];
}

/// The exact bytes signed for `payload` in `domain`.
pub fn signing_message(domain: SigDomain, payload: &[u8]) -> Vec<u8> {
    let tag = domain.tag();
    let mut m = Vec::with_capacity(tag.len() + 1 + payload.len());
    m.extend_from_slice(tag);
    m.push(0);
    m.extend_from_slice(payload);
    m
}

/// An Ed25519 public key (32 bytes, compressed Edwards point).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

/// An Ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl PublicKey {
    /// Decompresses and checks the key: must be a valid point and not of small order.
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        let vk = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::InvalidPublicKey)?;
        if vk.is_weak() {
            return Err(KeyError::InvalidPublicKey);
        }
        Ok(vk)
    }

    /// Strictly verifies `sig` over `payload` in `domain`.
    pub fn verify(
        &self,
        domain: SigDomain,
        payload: &[u8],
        sig: &Signature,
    ) -> Result<(), KeyError> {
        let vk = self.verifying_key()?;
        verify_with(&vk, domain, payload, sig)
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters (checks the point).
    pub fn from_hex(s: &str) -> Result<PublicKey, KeyError> {
        let v = hex::decode(s.trim())
            .map_err(|_| KeyError::Malformed("public key is not hex".into()))?;
        let a: [u8; 32] = v
            .try_into()
            .map_err(|_| KeyError::Malformed("public key must be 32 bytes".into()))?;
        let pk = PublicKey(a);
        pk.verifying_key()?;
        Ok(pk)
    }
}

/// Strictly verifies with an already decompressed key.
pub fn verify_with(
    vk: &VerifyingKey,
    domain: SigDomain,
    payload: &[u8],
    sig: &Signature,
) -> Result<(), KeyError> {
    verify_message(vk, &signing_message(domain, payload), sig)
}

/// One signature to check in a batch.
#[derive(Debug, Clone, Copy)]
pub struct SigCheck<'a> {
    /// The complete signed message (for xinyi statements, [`signing_message`]'s output; for
    /// C2SP notes, the note text).
    pub message: &'a [u8],
    /// Signer's key, already decompressed.
    pub key: &'a VerifyingKey,
    /// The signature.
    pub signature: &'a Signature,
}

/// Strictly verifies a complete message (no domain prefix added).
pub fn verify_message(vk: &VerifyingKey, message: &[u8], sig: &Signature) -> Result<(), KeyError> {
    let s = ed25519_dalek::Signature::from_bytes(&sig.0);
    vk.verify_strict(message, &s)
        .map_err(|_| KeyError::BadSignature)
}

/// Verifies all checks, batched; on failure names the first signature that fails strict
/// verification. An empty batch verifies.
pub fn verify_many(checks: &[SigCheck<'_>]) -> Result<(), KeyError> {
    if checks.is_empty() {
        return Ok(());
    }
    let msg_refs: Vec<&[u8]> = checks.iter().map(|c| c.message).collect();
    let sigs: Vec<ed25519_dalek::Signature> = checks
        .iter()
        .map(|c| ed25519_dalek::Signature::from_bytes(&c.signature.0))
        .collect();
    let keys: Vec<VerifyingKey> = checks.iter().map(|c| *c.key).collect();
    if ed25519_dalek::verify_batch(&msg_refs, &sigs, &keys).is_ok() {
        return Ok(());
    }
    for (index, c) in checks.iter().enumerate() {
        if verify_message(c.key, c.message, c.signature).is_err() {
            return Err(KeyError::BadSignatureInBatch { index });
        }
    }
    // The batch equation failed but every signature verifies alone: cannot happen for valid
    // signatures; treat as the first signature being bad rather than accepting.
    Err(KeyError::BadSignatureInBatch { index: 0 })
}

/// A signing key pair.
#[derive(Clone)]
pub struct KeyPair {
    signing: SigningKey,
}

impl KeyPair {
    /// Generates a key from the operating system's randomness.
    pub fn generate() -> KeyPair {
        KeyPair {
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// Deterministic key from a 32-byte seed (tests, dev mode, vectors).
    pub fn from_seed(seed: [u8; 32]) -> KeyPair {
        KeyPair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The 32-byte secret seed.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// A firm's signing key for firm-key epoch `epoch` (`specs/privacy.md` §8): the key itself
    /// for epoch 0, else the key whose seed is `SHA-256("xinyi/v1/firm-epoch-key" ‖ 0x00 ‖ seed ‖
    /// BE32(epoch))`. A firm keeps one key file and registers each epoch's tag with that epoch's
    /// public key, so its registrations under two tags share no key: without the secret seed the
    /// public keys are unrelated.
    pub fn firm_epoch_key(&self, epoch: u32) -> KeyPair {
        use sha2::{Digest as _, Sha256};
        if epoch == 0 {
            return self.clone();
        }
        let mut h = Sha256::new();
        h.update(b"xinyi/v1/firm-epoch-key\0");
        h.update(self.seed());
        h.update(epoch.to_be_bytes());
        KeyPair::from_seed(h.finalize().into())
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// The dalek signing key (for the C2SP note signer).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// Signs `payload` in `domain`.
    pub fn sign(&self, domain: SigDomain, payload: &[u8]) -> Signature {
        Signature(
            self.signing
                .sign(&signing_message(domain, payload))
                .to_bytes(),
        )
    }

    /// Key file text: one line `xinyi-ed25519-secret:<hex seed>`.
    pub fn to_file_text(&self) -> String {
        format!("xinyi-ed25519-secret:{}\n", hex::encode(self.seed()))
    }

    /// Parses [`KeyPair::to_file_text`].
    pub fn from_file_text(text: &str) -> Result<KeyPair, KeyError> {
        let rest = text
            .trim()
            .strip_prefix("xinyi-ed25519-secret:")
            .ok_or_else(|| {
                KeyError::Malformed("key file must start with xinyi-ed25519-secret:".into())
            })?;
        let v = hex::decode(rest)
            .map_err(|_| KeyError::Malformed("key file seed is not hex".into()))?;
        let seed: [u8; 32] = v
            .try_into()
            .map_err(|_| KeyError::Malformed("key file seed must be 32 bytes".into()))?;
        Ok(KeyPair::from_seed(seed))
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({})", self.public().to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode(self.0))
    }
}

macro_rules! bytes_serde {
    ($t:ty, $n:expr) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&hex::encode(self.0))
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                let v: Vec<u8> = if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    hex::decode(&s).map_err(serde::de::Error::custom)?
                } else {
                    serde_bytes::ByteBuf::deserialize(d)?.into_vec()
                };
                let a: [u8; $n] = v.try_into().map_err(|v: Vec<u8>| {
                    serde::de::Error::custom(format!("expected {} bytes, got {}", $n, v.len()))
                })?;
                Ok(Self(a))
            }
        }
    };
}
bytes_serde!(PublicKey, 32);
bytes_serde!(Signature, 64);

#[cfg(test)]
mod tests {
    use super::*;

    fn kp(i: u8) -> KeyPair {
        KeyPair::from_seed([i; 32])
    }

    #[test]
    fn firm_epoch_key_vector() {
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = i as u8;
        }
        let k = KeyPair::from_seed(seed);
        assert_eq!(k.firm_epoch_key(0).seed(), seed);
        assert_eq!(
            hex::encode(k.firm_epoch_key(1).seed()),
            "ef5e48e22fca0e2e2bebbb9e63fa0dcfa27ce0a52444ca73718bfeab8e467867"
        );
        assert_eq!(
            hex::encode(k.firm_epoch_key(2).seed()),
            "07af8ab089ea3e16cdd65e619ee9cc64a457c1d4857c3c36dabf28515e0e3a7d"
        );
        // Public keys, as any Ed25519 implementation derives them (Python `cryptography`).
        assert_eq!(
            k.public().to_hex(),
            "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
        );
        assert_eq!(
            k.firm_epoch_key(1).public().to_hex(),
            "772f9bbfc1b29f0b2b86be3e72af13167a590f7e550e60d152aa4e23bb97ab1e"
        );
    }

    #[test]
    fn signature_verifies_only_in_its_domain() {
        let k = kp(1);
        let sig = k.sign(SigDomain::Entry, b"hello");
        assert!(k.public().verify(SigDomain::Entry, b"hello", &sig).is_ok());
        assert_eq!(
            k.public().verify(SigDomain::Commit, b"hello", &sig),
            Err(KeyError::BadSignature)
        );
        assert_eq!(
            k.public().verify(SigDomain::Entry, b"hellO", &sig),
            Err(KeyError::BadSignature)
        );
    }

    #[test]
    fn weak_key_is_rejected() {
        // The identity point (small order) encodes as 0x01 followed by zeros.
        let mut b = [0u8; 32];
        b[0] = 1;
        assert_eq!(
            PublicKey(b).verifying_key().unwrap_err(),
            KeyError::InvalidPublicKey
        );
    }

    #[test]
    fn batch_names_first_bad_signature() {
        let keys: Vec<KeyPair> = (1..=5).map(kp).collect();
        let vks: Vec<VerifyingKey> = keys
            .iter()
            .map(|k| k.public().verifying_key().unwrap())
            .collect();
        let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10]).collect();
        let messages: Vec<Vec<u8>> = payloads
            .iter()
            .map(|p| signing_message(SigDomain::Entry, p))
            .collect();
        let mut sigs: Vec<Signature> = keys
            .iter()
            .zip(&payloads)
            .map(|(k, p)| k.sign(SigDomain::Entry, p))
            .collect();
        let checks = |sigs: &[Signature]| -> Result<(), KeyError> {
            let c: Vec<SigCheck<'_>> = (0..5)
                .map(|i| SigCheck {
                    message: &messages[i],
                    key: &vks[i],
                    signature: &sigs[i],
                })
                .collect();
            verify_many(&c)
        };
        assert!(checks(&sigs).is_ok());
        sigs[3].0[5] ^= 1;
        assert_eq!(
            checks(&sigs),
            Err(KeyError::BadSignatureInBatch { index: 3 })
        );
    }

    #[test]
    fn key_file_round_trip() {
        let k = kp(9);
        let back = KeyPair::from_file_text(&k.to_file_text()).unwrap();
        assert_eq!(back.public(), k.public());
        assert!(KeyPair::from_file_text("nonsense").is_err());
        assert!(KeyPair::from_file_text("xinyi-ed25519-secret:abcd").is_err());
    }
}

//! Blocks, headers, validator sets and commit certificates.
//!
//! A block is a header plus the stored bytes of its entries. Its id is
//! `tagged(Header, canonical header bytes)`. It is final when a [`CommitCertificate`] carries
//! valid commit votes (domain [`SigDomain::Commit`] over `chain id ‖ height (u64 BE) ‖ header
//! hash`) from validators holding more than two thirds of the voting power of the validator set
//! in force at that height. This module verifies certificates; producing blocks and collecting
//! votes is the node's job.

use crate::codec::{self, CodecError};
use crate::hash::{self, Digest, Domain};
use crate::keys::{self, KeyError, KeyPair, PublicKey, SigCheck, SigDomain, Signature};
use crate::types::{OrgId, TimeMs};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

/// Maximum encoded header size.
pub const MAX_HEADER_BYTES: usize = 1024;
/// Maximum encoded block size.
pub const MAX_BLOCK_BYTES: usize = 64 * 1024 * 1024;
/// Maximum encoded certificate size.
pub const MAX_CERT_BYTES: usize = 64 * 1024;
/// Protocol version of headers produced by this code.
pub const HEADER_VERSION: u32 = 1;

/// A block header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Protocol version ([`HEADER_VERSION`]).
    pub version: u32,
    /// Chain id (genesis hash).
    pub chain: Digest,
    /// Height, from 1.
    pub height: u64,
    /// Previous header hash; the chain id for height 1.
    pub prev: Digest,
    /// Proposer's time; strictly greater than the previous block's (or genesis) time.
    pub time: TimeMs,
    /// Proposing validator.
    pub proposer: OrgId,
    /// Hash of the validator set in force at this height.
    pub validator_set: Digest,
    /// RFC 9162 root over this block's entries.
    pub entries_root: Digest,
    /// Number of entries in this block.
    pub entry_count: u32,
    /// Size of the global entry log after this block.
    pub log_size: u64,
    /// RFC 9162 root of the global entry log after this block.
    pub log_root: Digest,
    /// State root after this block.
    pub state_root: Digest,
}

impl BlockHeader {
    /// Canonical bytes.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    /// The block id.
    pub fn hash(&self) -> Result<Digest, CodecError> {
        Ok(hash::tagged(Domain::Header, &[&self.encode()?]))
    }
}

/// A block: header and the stored bytes of each entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Header.
    pub header: BlockHeader,
    /// Entries' stored bytes, in log order.
    pub entries: Vec<serde_bytes::ByteBuf>,
}

impl Block {
    /// Canonical bytes.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    /// Decodes canonical bytes.
    pub fn decode(bytes: &[u8]) -> Result<Block, CodecError> {
        codec::decode("block", bytes, MAX_BLOCK_BYTES)
    }
}

/// A validator: id, key and voting power.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    /// Organisation.
    pub org: OrgId,
    /// Signing key.
    pub key: PublicKey,
    /// Voting power (> 0).
    pub power: u64,
}

/// The validator set in force at a height, sorted by org id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorSet {
    /// Validators, sorted by org id, unique.
    pub validators: Vec<Validator>,
}

impl ValidatorSet {
    /// Total voting power.
    pub fn total_power(&self) -> u64 {
        // Powers are bounded by `genesis::MAX_POWER` and membership validation; saturate anyway
        // so that a bad value cannot wrap around into a small quorum.
        self.validators
            .iter()
            .fold(0u64, |acc, v| acc.saturating_add(v.power))
    }

    /// Smallest power that is more than two thirds of the total.
    pub fn quorum(&self) -> u64 {
        (u128::from(self.total_power()) * 2 / 3 + 1).min(u128::from(u64::MAX)) as u64
    }

    /// Hash committed in headers.
    pub fn hash(&self) -> Result<Digest, CodecError> {
        Ok(hash::tagged(Domain::ValidatorSet, &[&codec::encode(self)?]))
    }

    /// Finds a validator.
    pub fn get(&self, org: &OrgId) -> Option<&Validator> {
        self.validators
            .binary_search_by(|v| v.org.cmp(org))
            .ok()
            .map(|i| &self.validators[i])
    }
}

/// One validator's commit vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitVote {
    /// Voter.
    pub validator: OrgId,
    /// Signature over [`commit_payload`].
    pub signature: Signature,
}

/// Proof that a block is final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitCertificate {
    /// Height of the block.
    pub height: u64,
    /// Its header hash.
    pub header_hash: Digest,
    /// Votes, sorted by validator id, unique.
    pub votes: Vec<CommitVote>,
}

/// Why a certificate does not prove finality.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Certificate bytes malformed.
    #[error("certificate encoding: {0}")]
    Codec(#[from] CodecError),
    /// Certifies another height.
    #[error("certificate is for height {got}, block is {want}")]
    WrongHeight {
        /// Block height.
        want: u64,
        /// Certificate height.
        got: u64,
    },
    /// Certifies another header.
    #[error("certificate is for header {got}, block header is {want}")]
    WrongHeader {
        /// Block header hash.
        want: Digest,
        /// Certified hash.
        got: Digest,
    },
    /// Votes not sorted or a validator voted twice.
    #[error("duplicate or unsorted vote by {0}")]
    DuplicateSigner(OrgId),
    /// A voter is not in the validator set.
    #[error("vote by {0}, who is not a validator at this height")]
    UnknownSigner(OrgId),
    /// Not enough voting power.
    #[error("votes carry power {got}, quorum is {need}")]
    BelowQuorum {
        /// Power collected.
        got: u64,
        /// Power needed.
        need: u64,
    },
    /// A vote's signature is invalid.
    #[error("vote by {validator} has an invalid signature")]
    BadSignature {
        /// The voter.
        validator: OrgId,
    },
    /// A validator key in the set is invalid.
    #[error("validator {0} has an invalid key")]
    BadKey(OrgId),
}

impl CertError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CertError::Codec(e) => e.code(),
            CertError::WrongHeight { .. } => "cert.wrong_height",
            CertError::WrongHeader { .. } => "cert.wrong_header",
            CertError::DuplicateSigner(_) => "cert.duplicate_signer",
            CertError::UnknownSigner(_) => "cert.unknown_signer",
            CertError::BelowQuorum { .. } => "cert.below_quorum",
            CertError::BadSignature { .. } => "cert.bad_signature",
            CertError::BadKey(_) => "cert.bad_key",
        }
    }
}

/// The payload of a commit vote.
pub fn commit_payload(chain: &Digest, height: u64, header_hash: &Digest) -> [u8; 72] {
    let mut p = [0u8; 72];
    p[..32].copy_from_slice(chain.as_bytes());
    p[32..40].copy_from_slice(&height.to_be_bytes());
    p[40..].copy_from_slice(header_hash.as_bytes());
    p
}

/// Signs a commit vote.
pub fn sign_commit(
    key: &KeyPair,
    validator: OrgId,
    chain: &Digest,
    height: u64,
    header_hash: &Digest,
) -> CommitVote {
    CommitVote {
        validator,
        signature: key.sign(
            SigDomain::Commit,
            &commit_payload(chain, height, header_hash),
        ),
    }
}

impl CommitCertificate {
    /// Canonical bytes.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    /// Decodes canonical bytes.
    pub fn decode(bytes: &[u8]) -> Result<CommitCertificate, CodecError> {
        codec::decode("certificate", bytes, MAX_CERT_BYTES)
    }

    /// Verifies that this certificate makes `header` final under `set`.
    pub fn verify(&self, header: &BlockHeader, set: &ValidatorSet) -> Result<(), CertError> {
        let want = header.hash()?;
        if self.height != header.height {
            return Err(CertError::WrongHeight {
                want: header.height,
                got: self.height,
            });
        }
        if self.header_hash != want {
            return Err(CertError::WrongHeader {
                want,
                got: self.header_hash,
            });
        }
        let mut power = 0u64;
        let mut keys: Vec<VerifyingKey> = Vec::with_capacity(self.votes.len());
        for (i, v) in self.votes.iter().enumerate() {
            if i > 0 && self.votes[i - 1].validator >= v.validator {
                return Err(CertError::DuplicateSigner(v.validator.clone()));
            }
            let val = set
                .get(&v.validator)
                .ok_or_else(|| CertError::UnknownSigner(v.validator.clone()))?;
            keys.push(
                val.key
                    .verifying_key()
                    .map_err(|_| CertError::BadKey(v.validator.clone()))?,
            );
            power = power.saturating_add(val.power);
        }
        if power < set.quorum() {
            return Err(CertError::BelowQuorum {
                got: power,
                need: set.quorum(),
            });
        }
        let message = keys::signing_message(
            SigDomain::Commit,
            &commit_payload(&header.chain, header.height, &want),
        );
        let checks: Vec<SigCheck<'_>> = self
            .votes
            .iter()
            .zip(&keys)
            .map(|(v, k)| SigCheck {
                message: &message,
                key: k,
                signature: &v.signature,
            })
            .collect();
        keys::verify_many(&checks).map_err(|e| match e {
            KeyError::BadSignatureInBatch { index } => CertError::BadSignature {
                validator: self.votes[index].validator.clone(),
            },
            _ => CertError::BadSignature {
                validator: self.votes[0].validator.clone(),
            },
        })
    }
}

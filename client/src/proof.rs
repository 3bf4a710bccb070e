//! Checking what a node returns: signed checkpoints, RFC 9162 inclusion proofs and salted
//! response digests, against keys taken from a genesis document.
//!
//! Trust comes from the genesis (the validators' keys, and its `name` as the checkpoint origin
//! and note key name); a genesis fetched from the node itself is only as trustworthy as that
//! node, which callers must say. This module does no I/O and never trusts a number it can
//! recompute: the leaf hash is computed from the entry bytes, the root from the proof.

use anyhow::{anyhow, bail, Result};
use serde_json::Value;
use xinyi_ledger::genesis::Genesis;
use xinyi_ledger::hash::{self, Digest};
use xinyi_ledger::merkle;
use xinyi_ledger::note::{open_checkpoint, Checkpoint, VerifierKey};

/// The keys a checkpoint must be signed with.
#[derive(Debug, Clone)]
pub struct Trust {
    /// Checkpoint origin and note key name (the genesis name).
    pub origin: String,
    /// Validators' verifier keys.
    pub keys: Vec<VerifierKey>,
    /// Chain id of the genesis.
    pub chain_id: Digest,
}

impl Trust {
    /// The validators (voting power > 0) of `genesis`.
    pub fn from_genesis(genesis: &Genesis) -> Result<Trust> {
        let mut keys = Vec::new();
        for o in genesis.orgs.iter().filter(|o| o.power > 0) {
            let vk = o
                .key
                .verifying_key()
                .map_err(|e| anyhow!("genesis key of {}: {e}", o.id))?;
            keys.push(VerifierKey::new(genesis.name.clone(), vk).map_err(|e| anyhow!("{e}"))?);
        }
        if keys.is_empty() {
            bail!("the genesis has no validator keys");
        }
        Ok(Trust {
            origin: genesis.name.clone(),
            keys,
            chain_id: genesis.chain_id().map_err(|e| anyhow!("{e}"))?,
        })
    }

    /// Verifies a signed checkpoint note and returns its body.
    pub fn open(&self, note: &str) -> Result<Checkpoint> {
        let (cp, _) =
            open_checkpoint(note, &self.keys).map_err(|e| anyhow!("checkpoint.invalid: {e}"))?;
        if cp.origin != self.origin {
            bail!(
                "checkpoint.origin: checkpoint origin {:?} is not this chain's {:?}",
                cp.origin,
                self.origin
            );
        }
        Ok(cp)
    }
}

/// Parses hex proof hashes.
pub fn parse_proof(hexes: &[String]) -> Result<Vec<merkle::Hash>> {
    hexes
        .iter()
        .map(|h| {
            let b =
                hex::decode(h).map_err(|_| anyhow!("proof.malformed: proof hash is not hex"))?;
            merkle::hash_from_slice(&b).map_err(|e| anyhow!("proof.malformed: {e}"))
        })
        .collect()
}

/// What an inclusion check established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Included {
    /// Log position of the entry.
    pub position: u64,
    /// Size of the checkpoint's tree.
    pub size: u64,
}

impl std::fmt::Display for Included {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "verified: entry {} included in checkpoint of size {}",
            self.position, self.size
        )
    }
}

/// Verifies that `entry_bytes` is the leaf at `position` of the tree of the signed checkpoint
/// `note`, using `proof`.
pub fn verify_inclusion(
    trust: &Trust,
    entry_bytes: &[u8],
    position: u64,
    proof: &[String],
    note: &str,
) -> Result<Included> {
    let cp = trust.open(note)?;
    let proof = parse_proof(proof)?;
    merkle::verify_inclusion(
        &merkle::leaf_hash(entry_bytes),
        position,
        cp.size,
        &proof,
        &cp.root,
    )
    .map_err(|e| anyhow!("proof.inclusion: entry {position}: {e}"))?;
    Ok(Included {
        position,
        size: cp.size,
    })
}

/// Checks `response_digest == salted(salt, data bytes)`. The data bytes are the compact JSON of
/// the `data` object exactly as the node sent it (`raw`), or — if the node re-serialised —
/// serde_json's compact, key-sorted form of the parsed object.
pub fn verify_response_digest(
    raw_data: &str,
    data: &Value,
    salt_hex: &str,
    digest: &Digest,
) -> Result<()> {
    let salt: [u8; 32] = hex::decode(salt_hex)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| anyhow!("query.salt: the salt is not 32 bytes of hex"))?;
    if hash::salted(&salt, raw_data.as_bytes()) == *digest {
        return Ok(());
    }
    let canonical = serde_json::to_vec(data).map_err(|e| anyhow!("{e}"))?;
    if hash::salted(&salt, &canonical) == *digest {
        return Ok(());
    }
    bail!("query.digest_mismatch: the data returned does not match the logged response digest")
}

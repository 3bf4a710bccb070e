//! Checking what a node returns: signed checkpoints, RFC 9162 inclusion proofs and salted
//! response digests, against keys taken from a genesis document.
//!
//! Trust comes from the genesis (the validators' keys, and its `name` as the checkpoint origin
//! and note key name); a genesis fetched from the node itself is only as trustworthy as that
//! node, which callers must say. This module does no I/O and never trusts a number it can
//! recompute: the leaf hash is computed from the entry bytes, the root from the proof.

use anyhow::{anyhow, bail, Result};
use serde_json::Value;
use xinyi_ledger::block::{BlockHeader, CommitCertificate, Validator, ValidatorSet};
use xinyi_ledger::codec;
use xinyi_ledger::genesis::Genesis;
use xinyi_ledger::hash::{self, Digest};
use xinyi_ledger::merkle;
use xinyi_ledger::note::{open_checkpoint, Checkpoint, CosignerKey, Note, VerifierKey};
use xinyi_ledger::smt;
use xinyi_ledger::state::{access_key, access_value, root_step, AccessHead};
use xinyi_ledger::FirmTag;

/// The keys a checkpoint must be signed with.
#[derive(Debug, Clone)]
pub struct Trust {
    /// Checkpoint origin and note key name (the genesis name).
    pub origin: String,
    /// Validators' verifier keys.
    pub keys: Vec<VerifierKey>,
    /// Voting power of each key of `keys` (same order).
    pub powers: Vec<u64>,
    /// Chain id of the genesis.
    pub chain_id: Digest,
    /// Witnesses whose `cosignature/v1` the client requires (`--witness VKEY`).
    pub witnesses: Vec<CosignerKey>,
    /// How many of `witnesses` must have cosigned a checkpoint (0 = none required).
    pub min_witnesses: usize,
}

/// A checkpoint whose note verified, with who signed it.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The checkpoint body.
    pub cp: Checkpoint,
    /// Power of the validators whose signatures verified.
    pub power: u64,
    /// Total validator power.
    pub total_power: u64,
    /// Number of validator signatures that verified.
    pub validators: usize,
    /// Trusted witnesses that cosigned, with their timestamps.
    pub witnesses: Vec<(String, u64)>,
    /// The note as given.
    pub note: String,
}

impl Opened {
    /// More than two thirds of the validator power signed.
    pub fn has_quorum(&self) -> bool {
        u128::from(self.power) * 3 > u128::from(self.total_power) * 2
    }
}

impl Trust {
    /// The validators (voting power > 0) of `genesis`.
    pub fn from_genesis(genesis: &Genesis) -> Result<Trust> {
        let mut keys = Vec::new();
        let mut powers = Vec::new();
        for o in genesis.orgs.iter().filter(|o| o.power > 0) {
            let vk = o
                .key
                .verifying_key()
                .map_err(|e| anyhow!("genesis key of {}: {e}", o.id))?;
            keys.push(VerifierKey::new(genesis.name.clone(), vk).map_err(|e| anyhow!("{e}"))?);
            powers.push(o.power);
        }
        if keys.is_empty() {
            bail!("the genesis has no validator keys");
        }
        Ok(Trust {
            origin: genesis.name.clone(),
            keys,
            powers,
            chain_id: genesis.chain_id().map_err(|e| anyhow!("{e}"))?,
            witnesses: vec![],
            min_witnesses: 0,
        })
    }

    /// Total validator power.
    pub fn total_power(&self) -> u64 {
        self.powers.iter().fold(0u64, |a, p| a.saturating_add(*p))
    }

    /// Verifies a signed checkpoint note signed by at least one validator (every matching
    /// signature must verify) and reports the power and witnesses that signed it. Does not
    /// require a quorum: see [`Trust::open`].
    pub fn open_any(&self, note: &str) -> Result<Opened> {
        let parsed = Note::parse(note).map_err(|e| anyhow!("checkpoint.invalid: {e}"))?;
        let (cp, verified) =
            open_checkpoint(note, &self.keys).map_err(|e| anyhow!("checkpoint.invalid: {e}"))?;
        if cp.origin != self.origin {
            bail!(
                "checkpoint.origin: checkpoint origin {:?} is not this chain's {:?}",
                cp.origin,
                self.origin
            );
        }
        let power = self
            .keys
            .iter()
            .zip(&self.powers)
            .filter(|(k, _)| verified.contains(k))
            .fold(0u64, |a, (_, p)| a.saturating_add(*p));
        let witnesses = parsed
            .verify_cosignatures(&self.witnesses)
            .map_err(|e| anyhow!("checkpoint.witness: {e}"))?
            .into_iter()
            .map(|(k, t)| (k.name, t))
            .collect();
        Ok(Opened {
            cp,
            power,
            total_power: self.total_power(),
            validators: verified.len(),
            witnesses,
            note: note.to_string(),
        })
    }

    /// Checks that an opened checkpoint is final: a quorum (more than two thirds of the
    /// validator power) of validator signatures and the required number of witness
    /// cosignatures.
    pub fn check_final(&self, o: &Opened) -> Result<()> {
        if !o.has_quorum() {
            bail!(
                "checkpoint.no_quorum: the checkpoint of size {} is signed by validators of power {} of {}; more than two thirds are required",
                o.cp.size,
                o.power,
                o.total_power
            );
        }
        if o.witnesses.len() < self.min_witnesses {
            bail!(
                "checkpoint.witnesses: the checkpoint of size {} carries {} of the {} required witness cosignatures",
                o.cp.size,
                o.witnesses.len(),
                self.min_witnesses
            );
        }
        Ok(())
    }

    /// Verifies a signed checkpoint note and requires it to be final ([`Trust::check_final`]);
    /// returns its body.
    pub fn open(&self, note: &str) -> Result<Checkpoint> {
        let o = self.open_any(note)?;
        self.check_final(&o)?;
        Ok(o.cp)
    }
}

/// Verifies an RFC 9162 consistency proof between two checkpoints of the same log. Equal sizes
/// need equal roots; `old` of size 0 is consistent with anything.
pub fn verify_consistency(old: &Checkpoint, new: &Checkpoint, proof: &[String]) -> Result<()> {
    if old.size > new.size {
        bail!(
            "consistency.order: old size {} is above new size {}",
            old.size,
            new.size
        );
    }
    if old.size == new.size {
        if old.root != new.root {
            bail!(
                "consistency.fork: two checkpoints of size {} have different roots",
                old.size
            );
        }
        return Ok(());
    }
    if old.size == 0 {
        return Ok(());
    }
    let proof = parse_proof(proof)?;
    merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &proof).map_err(|e| {
        anyhow!(
            "consistency.fork: the checkpoint of size {} is not an extension of the one of size {}: {e}",
            new.size,
            old.size
        )
    })
}

/// The strings of a JSON array of hex hashes (`"proof": [...]`), as they are; a non-string item
/// becomes `""` so that [`parse_proof`] rejects it instead of it being dropped. Not an array:
/// empty (a proof that then fails to verify).
pub fn hex_list(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|h| h.as_str().unwrap_or_default().to_string())
        .collect()
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
/// `note`, using `proof`; the checkpoint must be final ([`Trust::open`]).
pub fn verify_inclusion(
    trust: &Trust,
    entry_bytes: &[u8],
    position: u64,
    proof: &[String],
    note: &str,
) -> Result<Included> {
    let cp = trust.open(note)?;
    verify_inclusion_in(&cp, entry_bytes, position, proof)
}

/// Verifies that `entry_bytes` is the leaf at `position` of the tree of `cp` (already verified).
pub fn verify_inclusion_in(
    cp: &Checkpoint,
    entry_bytes: &[u8],
    position: u64,
    proof: &[String],
) -> Result<Included> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use xinyi_ledger::note::{sign_checkpoint, Cosigner, NoteSigner};

    fn setup(powers: &[u64]) -> (Trust, Vec<NoteSigner>) {
        let signers: Vec<NoteSigner> = (0..powers.len())
            .map(|i| NoteSigner::new("o", SigningKey::from_bytes(&[i as u8 + 1; 32])).unwrap())
            .collect();
        let t = Trust {
            origin: "o".into(),
            keys: signers.iter().map(NoteSigner::verifier_key).collect(),
            powers: powers.to_vec(),
            chain_id: Digest([0; 32]),
            witnesses: vec![],
            min_witnesses: 0,
        };
        (t, signers)
    }

    fn cp(size: u64) -> Checkpoint {
        Checkpoint {
            origin: "o".into(),
            size,
            root: [size as u8; 32],
            extensions: vec![],
        }
    }

    #[test]
    fn a_checkpoint_is_final_with_more_than_two_thirds_of_the_power() {
        let (t, s) = setup(&[1, 1, 1, 1]);
        let two = sign_checkpoint(&cp(3), &[&s[0], &s[1]]).unwrap();
        let e = t.open(&two).unwrap_err().to_string();
        assert!(e.contains("checkpoint.no_quorum"), "{e}");
        assert_eq!(t.open_any(&two).unwrap().power, 2);
        let three = sign_checkpoint(&cp(3), &[&s[0], &s[1], &s[3]]).unwrap();
        assert_eq!(t.open(&three).unwrap(), cp(3));
        // Power, not heads: one heavy validator is a quorum alone.
        let (t, s) = setup(&[5, 1, 1]);
        assert!(t.open(&sign_checkpoint(&cp(1), &[&s[0]]).unwrap()).is_ok());
        assert!(t
            .open(&sign_checkpoint(&cp(1), &[&s[1], &s[2]]).unwrap())
            .is_err());
        // The single dev validator is a quorum of one.
        let (t, s) = setup(&[1]);
        assert!(t.open(&sign_checkpoint(&cp(1), &[&s[0]]).unwrap()).is_ok());
        // An altered checkpoint fails even with every signature present.
        let note = sign_checkpoint(&cp(1), &[&s[0]]).unwrap();
        let altered = note.replacen("\n1\n", "\n2\n", 1);
        assert!(t
            .open(&altered)
            .unwrap_err()
            .to_string()
            .contains("checkpoint.invalid"));
    }

    #[test]
    fn required_witnesses() {
        let (mut t, s) = setup(&[1]);
        let w = Cosigner::new("w/1", SigningKey::from_bytes(&[9; 32])).unwrap();
        t.witnesses = vec![w.key().clone()];
        t.min_witnesses = 1;
        let note = sign_checkpoint(&cp(2), &[&s[0]]).unwrap();
        assert!(t
            .open(&note)
            .unwrap_err()
            .to_string()
            .contains("checkpoint.witnesses"));
        let mut n = Note::parse(&note).unwrap();
        n.merge_signatures([w.cosign(&n.text, 100).unwrap()])
            .unwrap();
        assert!(t.open(&n.to_string()).is_ok());
    }

    #[test]
    fn consistency_between_checkpoints() {
        let mut tree = merkle::MerkleTree::new();
        for i in 0..7u8 {
            tree.append(&[i]);
        }
        let mk = |n: u64, root| Checkpoint {
            origin: "o".into(),
            size: n,
            root,
            extensions: vec![],
        };
        let a = mk(3, tree.root_at(3).unwrap());
        let b = mk(7, tree.root_at(7).unwrap());
        let p: Vec<String> = tree
            .consistency_proof(3, 7)
            .unwrap()
            .iter()
            .map(hex::encode)
            .collect();
        verify_consistency(&a, &b, &p).unwrap();
        let forked = mk(7, [1; 32]);
        assert!(verify_consistency(&a, &forked, &p)
            .unwrap_err()
            .to_string()
            .contains("consistency.fork"));
        assert!(verify_consistency(&b, &mk(7, [2; 32]), &[]).is_err());
    }
}

/// What a verified access proof establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessCommitment {
    /// Height of the certified block.
    pub height: u64,
    /// Log size after that block: access entries below it are covered.
    pub log_size: u64,
    /// The firm's access head in that block's state (None: no access yet).
    pub value: Option<AccessHead>,
}

fn digest_field(v: &Value, k: &str) -> Result<Digest> {
    v.get(k)
        .and_then(Value::as_str)
        .and_then(|s| Digest::from_hex(s).ok())
        .ok_or_else(|| anyhow!("access_log.proof: field {k} is missing or not a digest"))
}

fn h256(s: &Value) -> Result<[u8; 32]> {
    s.as_str()
        .and_then(|s| hex::decode(s).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow!("access_log.proof: a proof hash is not 32 bytes of hex"))
}

/// Verifies a multi-epoch `GET /v1/firms/{uscc}/access-proof` (`specs/privacy.md` §8): one
/// proof per tag in `tags`, all against the same certified block. An answer without a `tags`
/// list (a node before firm-key rotation) is one proof for the top-level `tag`. A tag of
/// `tags` without a proof, or a proof of another block, is refused.
pub fn verify_access_proofs(
    genesis: &Genesis,
    tags: &[FirmTag],
    v: &Value,
) -> Result<Vec<(FirmTag, AccessCommitment)>> {
    let per_tag = v.get("tags").and_then(Value::as_array);
    let mut out = Vec::with_capacity(tags.len());
    for tag in tags {
        let one = match per_tag {
            None => v.clone(),
            Some(list) => {
                let p = list
                    .iter()
                    .find(|p| p.get("tag").and_then(Value::as_str) == Some(&tag.to_hex()))
                    .ok_or_else(|| {
                        anyhow!("access_log.proof: the node gave no access proof for tag {tag}")
                    })?;
                let mut one = v.clone();
                if let (Value::Object(m), Value::Object(p)) = (&mut one, p) {
                    m.insert("value".into(), p.get("value").cloned().unwrap_or_default());
                    m.insert("proof".into(), p.get("proof").cloned().unwrap_or_default());
                }
                one
            }
        };
        out.push((*tag, verify_access_proof(genesis, tag, &one)?));
    }
    Ok(out)
}

/// Verifies `GET /v1/firms/{uscc}/access-proof`: the block header's commit certificate against
/// the genesis validators, the state root recomputed from (previous root, write-set hash,
/// access map root), and the firm's sparse Merkle proof in that map.
pub fn verify_access_proof(
    genesis: &Genesis,
    firm: &FirmTag,
    v: &Value,
) -> Result<AccessCommitment> {
    let header: BlockHeader = serde_json::from_value(v.get("header").cloned().unwrap_or_default())
        .map_err(|e| anyhow!("access_log.proof: header: {e}"))?;
    let cert: CommitCertificate =
        serde_json::from_value(v.get("certificate").cloned().unwrap_or_default())
            .map_err(|e| anyhow!("access_log.proof: certificate: {e}"))?;
    let chain = genesis.chain_id().map_err(|e| anyhow!("{e}"))?;
    if header.chain != chain {
        bail!("access_log.proof: the block is of another chain");
    }
    let mut validators: Vec<Validator> = genesis
        .orgs
        .iter()
        .filter(|o| o.power > 0)
        .map(|o| Validator {
            org: o.id.clone(),
            key: o.key,
            power: o.power,
        })
        .collect();
    validators.sort_by(|a, b| a.org.cmp(&b.org));
    cert.verify(&header, &ValidatorSet { validators })
        .map_err(|e| anyhow!("access_log.proof: block {}: {e}", header.height))?;
    let prev = digest_field(v, "prev_root")?;
    let ws = digest_field(v, "write_set_hash")?;
    let access_root = digest_field(v, "access_root")?;
    if root_step(&prev, header.height, &ws, &access_root) != header.state_root {
        bail!(
            "access_log.proof: the access map root is not committed in block {}'s state root",
            header.height
        );
    }
    let value = match v.get("value") {
        None | Some(Value::Null) => None,
        Some(x) => Some(AccessHead {
            head: digest_field(x, "head")?,
            count: x
                .get("count")
                .and_then(Value::as_u64)
                .ok_or_else(|| anyhow!("access_log.proof: value without a count"))?,
        }),
    };
    let p = v
        .get("proof")
        .ok_or_else(|| anyhow!("access_log.proof: no proof"))?;
    let siblings = p
        .get("siblings")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("access_log.proof: no siblings"))?
        .iter()
        .map(h256)
        .collect::<Result<Vec<_>>>()?;
    let t = p.get("terminal").cloned().unwrap_or_default();
    let terminal = if t.get("empty").and_then(Value::as_bool) == Some(true) {
        smt::Terminal::Empty
    } else {
        smt::Terminal::Leaf {
            key: h256(t.get("key").unwrap_or(&Value::Null))?,
            value: h256(t.get("value").unwrap_or(&Value::Null))?,
        }
    };
    let vh = match &value {
        Some(a) => Some(access_value(&codec::encode(a).map_err(|e| anyhow!("{e}"))?)),
        None => None,
    };
    if !smt::verify(
        &access_root.0,
        &access_key(firm.as_bytes()),
        vh.as_ref(),
        &smt::Proof { siblings, terminal },
    ) {
        bail!(
            "access_log.proof: the firm's access head does not verify against the access map root of block {}",
            header.height
        );
    }
    Ok(AccessCommitment {
        height: header.height,
        log_size: header.log_size,
        value,
    })
}

//! Property tests over the fuzz targets of `xinyi-reliability fuzz` (docs/reliability.md), CI
//! sized: mutations of valid inputs taken from the spec vectors never panic a decoder, what a
//! decoder accepts is canonical (re-encodes to the same bytes), a mutated bundle never
//! verifies, and Merkle proofs only verify for the leaf / tree they were made for.

use proptest::prelude::*;
use std::sync::OnceLock;
use xinyi_ledger::block::{Block, CommitCertificate};
use xinyi_ledger::bundle::BundleReader;
use xinyi_ledger::merkle::{self, MerkleTree};
use xinyi_ledger::note::{Checkpoint, Note};
use xinyi_ledger::verify::verify_bundle;
use xinyi_ledger::{Entry, Genesis};

const BUNDLE: &[u8] = include_bytes!("../../specs/vectors/chain.bundle");
const GENESIS: &[u8] = include_bytes!("../../specs/vectors/genesis.json");
const CHECKPOINTS: &str = include_str!("../../specs/vectors/checkpoints.json");

struct Vectors {
    blocks: Vec<Vec<u8>>,
    certs: Vec<Vec<u8>>,
    entries: Vec<Vec<u8>>,
    notes: Vec<String>,
    tree: MerkleTree,
    genesis: Genesis,
}

fn vectors() -> &'static Vectors {
    static V: OnceLock<Vectors> = OnceLock::new();
    V.get_or_init(|| {
        let mut v = Vectors {
            blocks: vec![],
            certs: vec![],
            entries: vec![],
            notes: vec![],
            tree: MerkleTree::new(),
            genesis: Genesis::from_json(GENESIS).unwrap(),
        };
        for item in BundleReader::new(BUNDLE).unwrap() {
            let (b, c) = item.unwrap();
            for e in Block::decode(&b).unwrap().entries {
                v.tree.append(&e);
                v.entries.push(e.into_vec());
            }
            v.blocks.push(b);
            v.certs.push(c);
        }
        let j: serde_json::Value = serde_json::from_str(CHECKPOINTS).unwrap();
        for k in ["cosigned_on_ledger", "head"] {
            v.notes.push(j[k]["note"].as_str().unwrap().to_string());
        }
        v
    })
}

/// A mutation: (position seed, xor value, kind) — kind 0 xor, 1 delete, 2 insert, 3 truncate.
fn apply(mut b: Vec<u8>, pos: usize, x: u8, kind: u8) -> Vec<u8> {
    if b.is_empty() {
        return vec![x];
    }
    let p = pos % b.len();
    match kind % 4 {
        0 => b[p] ^= x.max(1),
        1 => {
            b.remove(p);
        }
        2 => b.insert(p, x),
        _ => b.truncate(p),
    }
    b
}

fn mutation() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4)
}

fn mutate(seed: &[u8], m: &[(usize, u8, u8)]) -> Vec<u8> {
    m.iter()
        .fold(seed.to_vec(), |b, &(p, x, k)| apply(b, p, x, k))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn mutated_entries_blocks_certificates_decode_canonically_or_not_at_all(
        which in any::<usize>(), m in mutation()
    ) {
        let v = vectors();
        let e = mutate(&v.entries[which % v.entries.len()], &m);
        if let Ok(d) = Entry::decode(&e) {
            prop_assert_eq!(&d.bytes, &e);
        }
        let b = mutate(&v.blocks[which % v.blocks.len()], &m);
        if let Ok(d) = Block::decode(&b) {
            prop_assert_eq!(d.encode().unwrap(), b);
        }
        let c = mutate(&v.certs[which % v.certs.len()], &m);
        if let Ok(d) = CommitCertificate::decode(&c) {
            prop_assert_eq!(d.encode().unwrap(), c);
        }
    }

    #[test]
    fn mutated_notes_checkpoints_and_genesis_never_panic(which in any::<usize>(), m in mutation()) {
        let v = vectors();
        let n = mutate(v.notes[which % v.notes.len()].as_bytes(), &m);
        if let Ok(note) = Note::parse_bytes(&n) {
            let _ = Checkpoint::parse_text(&note.text);
        }
        let _ = Checkpoint::parse_text(&String::from_utf8_lossy(&n));
        let _ = Genesis::from_json(&mutate(GENESIS, &m));
    }

    #[test]
    fn inclusion_proofs_verify_only_for_their_leaf(
        index in 0u64..23, size_seed in any::<u64>(), other in 0u64..23,
        bad_hash in any::<usize>(), flip in 1u8..=255
    ) {
        let v = vectors();
        let n = v.tree.size();
        let size = index + 1 + size_seed % (n - index);
        let root = v.tree.root_at(size).unwrap();
        let leaf = v.tree.leaf_hash_at(index).unwrap();
        let proof = v.tree.inclusion_proof(index, size).unwrap();
        prop_assert!(merkle::verify_inclusion(&leaf, index, size, &proof, &root).is_ok());
        // Another index, another leaf, or any changed proof hash fails.
        if other != index && other < size {
            prop_assert!(merkle::verify_inclusion(&leaf, other, size, &proof, &root).is_err());
            let l2 = v.tree.leaf_hash_at(other).unwrap();
            prop_assert!(merkle::verify_inclusion(&l2, index, size, &proof, &root).is_err());
        }
        if !proof.is_empty() {
            let mut p = proof.clone();
            let i = bad_hash % p.len();
            p[i][bad_hash % 32] ^= flip;
            prop_assert!(merkle::verify_inclusion(&leaf, index, size, &p, &root).is_err());
        }
    }

    #[test]
    fn consistency_proofs_verify_only_for_their_trees(
        old in 1u64..=23, new_seed in any::<u64>(), bad_hash in any::<usize>(), flip in 1u8..=255
    ) {
        let v = vectors();
        let n = v.tree.size();
        let new = old + new_seed % (n - old + 1);
        let (r_old, r_new) = (v.tree.root_at(old).unwrap(), v.tree.root_at(new).unwrap());
        let proof = v.tree.consistency_proof(old, new).unwrap();
        prop_assert!(merkle::verify_consistency(old, new, &r_old, &r_new, &proof).is_ok());
        if !proof.is_empty() {
            let mut p = proof.clone();
            let i = bad_hash % p.len();
            p[i][bad_hash % 32] ^= flip;
            prop_assert!(merkle::verify_consistency(old, new, &r_old, &r_new, &p).is_err());
        }
        if new > old {
            // The old tree's root under another size, or a root no tree has, fails.
            prop_assert!(merkle::verify_consistency(old, new, &r_old, &[0; 32], &proof).is_err());
            prop_assert!(merkle::verify_consistency(old, new, &[0; 32], &r_new, &proof).is_err());
        }
    }
}

proptest! {
    // Each case verifies a whole bundle (11 blocks): fewer cases.
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn a_mutated_bundle_never_verifies(m in mutation()) {
        let v = vectors();
        let b = mutate(BUNDLE, &m);
        prop_assume!(b != BUNDLE);
        if let Ok(report) = verify_bundle(&v.genesis, b.as_slice(), |_, _| {}) {
            // Only a change inside the genesis JSON that parses to the same genesis may pass.
            let g = BundleReader::new(b.as_slice()).unwrap();
            let g = Genesis::from_json(g.genesis()).unwrap();
            prop_assert_eq!(g.to_json(), v.genesis.to_json());
            prop_assert_eq!(report.blocks, 12);
        }
    }
}

#[test]
fn the_vectors_themselves_are_accepted() {
    let v = vectors();
    assert_eq!(v.entries.len(), 30);
    for e in &v.entries {
        Entry::decode(e).unwrap();
    }
    verify_bundle(&v.genesis, BUNDLE, |_, _| {}).unwrap();
}

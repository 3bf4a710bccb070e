//! A compact sparse Merkle map over 256-bit keys, with membership and non-membership proofs.
//! It is the per-firm access map whose root is part of every state root (`specs/state.md` §6).
//!
//! Hashing (SHA-256): leaf = `H("xinyi/v1/smt/leaf\0" ‖ key ‖ value)`, inner node =
//! `H("xinyi/v1/smt/node\0" ‖ left ‖ right)`, empty subtree = 32 zero bytes. The tree branches on
//! the key bits, most significant bit of byte 0 first (0 = left). A subtree holding exactly one
//! leaf *is* that leaf's hash (no chain of nodes down to depth 256), so the root of a map of n
//! keys costs O(n log n) hashes and a proof has about log2(n) siblings.

use sha2::{Digest as _, Sha256};

/// A 32-byte hash or key.
pub type H256 = [u8; 32];

/// Hash of an empty subtree.
pub const EMPTY: H256 = [0u8; 32];

const LEAF_TAG: &[u8] = b"xinyi/v1/smt/leaf\0";
const NODE_TAG: &[u8] = b"xinyi/v1/smt/node\0";

/// Leaf hash of `key` → `value`.
pub fn leaf_hash(key: &H256, value: &H256) -> H256 {
    let mut h = Sha256::new();
    h.update(LEAF_TAG);
    h.update(key);
    h.update(value);
    h.finalize().into()
}

/// Inner node hash.
pub fn node_hash(left: &H256, right: &H256) -> H256 {
    let mut h = Sha256::new();
    h.update(NODE_TAG);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

fn bit(key: &H256, depth: usize) -> bool {
    (key[depth / 8] >> (7 - depth % 8)) & 1 == 1
}

/// What a proof ends in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Terminal {
    /// An empty subtree: the key is absent.
    Empty,
    /// A single leaf: the key itself (membership) or another key sharing the path (absence).
    Leaf {
        /// Its key.
        key: H256,
        /// Its value.
        value: H256,
    },
}

/// A proof for one key: the siblings from the root down, then what the path ends in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// Sibling hashes, top-down (index i is the sibling at depth i).
    pub siblings: Vec<H256>,
    /// The end of the path.
    pub terminal: Terminal,
}

/// A sparse Merkle map (keys and values are 32 bytes). The leaves are a persistent ordered map,
/// so a clone (one per speculative state copy) is O(1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SparseMap {
    leaves: imbl::OrdMap<H256, H256>,
}

fn subtree(leaves: &[(H256, H256)], depth: usize) -> H256 {
    match leaves {
        [] => EMPTY,
        [(k, v)] => leaf_hash(k, v),
        _ => {
            let split = leaves.partition_point(|(k, _)| !bit(k, depth));
            node_hash(
                &subtree(&leaves[..split], depth + 1),
                &subtree(&leaves[split..], depth + 1),
            )
        }
    }
}

impl SparseMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` → `value`.
    pub fn insert(&mut self, key: H256, value: H256) {
        self.leaves.insert(key, value);
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &H256) {
        self.leaves.remove(key);
    }

    /// The value of `key`.
    pub fn get(&self, key: &H256) -> Option<&H256> {
        self.leaves.get(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// No keys.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    fn sorted(&self) -> Vec<(H256, H256)> {
        self.leaves.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// The root.
    pub fn root(&self) -> H256 {
        subtree(&self.sorted(), 0)
    }

    /// The proof for `key` (membership if present, absence otherwise).
    pub fn prove(&self, key: &H256) -> Proof {
        let all = self.sorted();
        let mut cur: &[(H256, H256)] = &all;
        let mut siblings = Vec::new();
        let mut depth = 0;
        loop {
            match cur {
                [] => {
                    return Proof {
                        siblings,
                        terminal: Terminal::Empty,
                    }
                }
                [(k, v)] => {
                    return Proof {
                        siblings,
                        terminal: Terminal::Leaf { key: *k, value: *v },
                    }
                }
                _ => {
                    let split = cur.partition_point(|(k, _)| !bit(k, depth));
                    let (l, r) = cur.split_at(split);
                    if bit(key, depth) {
                        siblings.push(subtree(l, depth + 1));
                        cur = r;
                    } else {
                        siblings.push(subtree(r, depth + 1));
                        cur = l;
                    }
                    depth += 1;
                }
            }
        }
    }
}

/// Verifies that under `root`, `key` maps to `value` (`Some`) or is absent (`None`).
pub fn verify(root: &H256, key: &H256, value: Option<&H256>, proof: &Proof) -> bool {
    let n = proof.siblings.len();
    if n > 256 {
        return false;
    }
    let mut h = match (&proof.terminal, value) {
        (Terminal::Leaf { key: k, value: v }, Some(want)) => {
            if k != key || v != want {
                return false;
            }
            leaf_hash(k, v)
        }
        (Terminal::Leaf { key: k, value: v }, None) => {
            // Another key on the same path proves absence.
            if k == key || (0..n).any(|d| bit(k, d) != bit(key, d)) {
                return false;
            }
            leaf_hash(k, v)
        }
        (Terminal::Empty, None) => EMPTY,
        (Terminal::Empty, Some(_)) => return false,
    };
    for d in (0..n).rev() {
        let s = &proof.siblings[d];
        h = if bit(key, d) {
            node_hash(s, &h)
        } else {
            node_hash(&h, s)
        };
    }
    h == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: u32) -> H256 {
        Sha256::digest(i.to_be_bytes()).into()
    }

    #[test]
    fn proofs_of_membership_and_absence() {
        let mut m = SparseMap::new();
        assert_eq!(m.root(), EMPTY);
        assert!(verify(&EMPTY, &k(1), None, &m.prove(&k(1))));
        for i in 0..200 {
            m.insert(k(i), k(i + 1000));
        }
        let root = m.root();
        for i in 0..200 {
            let p = m.prove(&k(i));
            assert!(verify(&root, &k(i), Some(&k(i + 1000)), &p));
            assert!(!verify(&root, &k(i), Some(&k(i + 1001)), &p));
            assert!(!verify(&root, &k(i), None, &p));
            let mut bad = p.clone();
            if let Some(s) = bad.siblings.first_mut() {
                s[0] ^= 1;
            }
            assert!(!verify(&root, &k(i), Some(&k(i + 1000)), &bad));
        }
        for i in 200..260 {
            let p = m.prove(&k(i));
            assert!(verify(&root, &k(i), None, &p), "absent {i}");
            assert!(!verify(&root, &k(i), Some(&k(0)), &p));
        }
        // A value change changes the root.
        m.insert(k(5), k(0));
        assert_ne!(m.root(), root);
        let single: SparseMap = {
            let mut s = SparseMap::new();
            s.insert(k(1), k(2));
            s
        };
        assert_eq!(single.root(), leaf_hash(&k(1), &k(2)));
    }
}

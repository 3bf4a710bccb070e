//! A compact sparse Merkle map over 256-bit keys, with membership and non-membership proofs.
//! It is the per-firm access map whose root is part of every state root (`specs/state.md` §6).
//!
//! Hashing (SHA-256): leaf = `H("xinyi/v1/smt/leaf\0" ‖ key ‖ value)`, inner node =
//! `H("xinyi/v1/smt/node\0" ‖ left ‖ right)`, empty subtree = 32 zero bytes. The tree branches on
//! the key bits, most significant bit of byte 0 first (0 = left). A subtree holding exactly one
//! leaf *is* that leaf's hash (no chain of nodes down to depth 256), so a proof has about log2(n)
//! siblings.
//!
//! The map is kept as that very tree, with every node's hash cached and nodes shared by `Arc`:
//! an insert or removal rehashes only its path (about log2(n) hashes, not the whole map), the
//! root is read in O(1), and a clone (one per speculative state copy) is O(1).

use sha2::{Digest as _, Sha256};
use std::sync::Arc;

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

/// A sparse Merkle map (keys and values are 32 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseMap {
    root: Arc<Node>,
    len: usize,
}

impl Default for SparseMap {
    fn default() -> Self {
        SparseMap {
            root: Arc::new(Node::Empty),
            len: 0,
        }
    }
}

/// A subtree at some depth: empty, exactly one leaf, or two or more leaves split by the key bit
/// at that depth (one side may be empty). Its hash is cached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Empty,
    Leaf {
        key: H256,
        value: H256,
        hash: H256,
    },
    Inner {
        left: Arc<Node>,
        right: Arc<Node>,
        hash: H256,
    },
}

impl Node {
    fn hash(&self) -> H256 {
        match self {
            Node::Empty => EMPTY,
            Node::Leaf { hash, .. } | Node::Inner { hash, .. } => *hash,
        }
    }

    fn leaf(key: H256, value: H256) -> Arc<Node> {
        Arc::new(Node::Leaf {
            key,
            value,
            hash: leaf_hash(&key, &value),
        })
    }

    fn inner(left: Arc<Node>, right: Arc<Node>) -> Arc<Node> {
        let hash = node_hash(&left.hash(), &right.hash());
        Arc::new(Node::Inner { left, right, hash })
    }

    /// The subtree at `depth` holding the two leaves `a` and `b` (different keys).
    fn join(a: Arc<Node>, a_key: &H256, b: Arc<Node>, b_key: &H256, depth: usize) -> Arc<Node> {
        if depth >= 256 {
            // Unreachable for different keys; keep the newer leaf rather than recurse forever.
            return b;
        }
        match (bit(a_key, depth), bit(b_key, depth)) {
            (false, true) => Node::inner(a, b),
            (true, false) => Node::inner(b, a),
            (side, _) => {
                let below = Node::join(a, a_key, b, b_key, depth + 1);
                let empty = Arc::new(Node::Empty);
                if side {
                    Node::inner(empty, below)
                } else {
                    Node::inner(below, empty)
                }
            }
        }
    }

    fn insert(node: &Arc<Node>, depth: usize, key: &H256, value: &H256) -> Arc<Node> {
        match node.as_ref() {
            Node::Empty => Node::leaf(*key, *value),
            Node::Leaf { key: k, .. } if k == key => Node::leaf(*key, *value),
            Node::Leaf { key: k, .. } => {
                let k = *k;
                Node::join(node.clone(), &k, Node::leaf(*key, *value), key, depth)
            }
            Node::Inner { left, right, .. } => {
                if bit(key, depth) {
                    Node::inner(left.clone(), Node::insert(right, depth + 1, key, value))
                } else {
                    Node::inner(Node::insert(left, depth + 1, key, value), right.clone())
                }
            }
        }
    }

    /// `node` without `key` (the same node if `key` is absent).
    fn remove(node: &Arc<Node>, depth: usize, key: &H256) -> Arc<Node> {
        match node.as_ref() {
            Node::Empty => node.clone(),
            Node::Leaf { key: k, .. } => {
                if k == key {
                    Arc::new(Node::Empty)
                } else {
                    node.clone()
                }
            }
            Node::Inner { left, right, .. } => {
                let (l, r) = if bit(key, depth) {
                    (left.clone(), Node::remove(right, depth + 1, key))
                } else {
                    (Node::remove(left, depth + 1, key), right.clone())
                };
                // A subtree left with a single leaf *is* that leaf.
                match (l.as_ref(), r.as_ref()) {
                    (Node::Empty | Node::Leaf { .. }, Node::Empty) => l,
                    (Node::Empty, Node::Leaf { .. }) => r,
                    _ => Node::inner(l, r),
                }
            }
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
        if self.get(&key).is_none() {
            self.len += 1;
        }
        self.root = Node::insert(&self.root, 0, &key, &value);
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &H256) {
        if self.get(key).is_some() {
            self.len -= 1;
            self.root = Node::remove(&self.root, 0, key);
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &H256) -> Option<&H256> {
        let mut node = self.root.as_ref();
        let mut depth = 0;
        loop {
            match node {
                Node::Empty => return None,
                Node::Leaf { key: k, value, .. } => return (k == key).then_some(value),
                Node::Inner { left, right, .. } => {
                    node = if bit(key, depth) { right } else { left };
                    depth += 1;
                }
            }
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The root.
    pub fn root(&self) -> H256 {
        self.root.hash()
    }

    /// The proof for `key` (membership if present, absence otherwise).
    pub fn prove(&self, key: &H256) -> Proof {
        let mut node = self.root.as_ref();
        let mut siblings = Vec::new();
        let mut depth = 0;
        loop {
            match node {
                Node::Empty => {
                    return Proof {
                        siblings,
                        terminal: Terminal::Empty,
                    }
                }
                Node::Leaf { key: k, value, .. } => {
                    return Proof {
                        siblings,
                        terminal: Terminal::Leaf {
                            key: *k,
                            value: *value,
                        },
                    }
                }
                Node::Inner { left, right, .. } => {
                    if bit(key, depth) {
                        siblings.push(left.hash());
                        node = right;
                    } else {
                        siblings.push(right.hash());
                        node = left;
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

    /// The hash rule written directly over the sorted leaves (what the cached tree must equal).
    fn reference_root(leaves: &[(H256, H256)], depth: usize) -> H256 {
        match leaves {
            [] => EMPTY,
            [(k, v)] => leaf_hash(k, v),
            _ => {
                let split = leaves.partition_point(|(k, _)| !bit(k, depth));
                node_hash(
                    &reference_root(&leaves[..split], depth + 1),
                    &reference_root(&leaves[split..], depth + 1),
                )
            }
        }
    }

    /// Random inserts, overwrites and removals (including keys sharing long prefixes): root,
    /// length, lookups and proofs always match the rule computed from scratch, and a clone is
    /// unaffected by later changes to the original.
    #[test]
    fn incremental_tree_matches_the_rule_from_scratch() {
        use std::collections::BTreeMap;
        let mut m = SparseMap::new();
        let mut reference: BTreeMap<H256, H256> = BTreeMap::new();
        let mut snapshot: Option<(SparseMap, H256)> = None;
        let near = |i: u8| {
            // Keys equal but for their last byte: the split happens at depth >= 248.
            let mut key = k(7);
            key[31] = i;
            key
        };
        for step in 0u32..600 {
            let r = k(step + 50_000);
            let key = if r[0].is_multiple_of(4) {
                near(r[1] % 6)
            } else {
                k(u32::from(r[2] % 90))
            };
            if r[3].is_multiple_of(3) {
                m.remove(&key);
                reference.remove(&key);
            } else {
                m.insert(key, r);
                reference.insert(key, r);
            }
            let leaves: Vec<(H256, H256)> = reference.iter().map(|(a, b)| (*a, *b)).collect();
            assert_eq!(m.root(), reference_root(&leaves, 0), "step {step}");
            assert_eq!(m.len(), reference.len());
            assert_eq!(m.get(&key), reference.get(&key));
            let p = m.prove(&key);
            assert!(
                verify(&m.root(), &key, reference.get(&key), &p),
                "step {step}"
            );
            if step == 300 {
                snapshot = Some((m.clone(), m.root()));
            }
        }
        let (old, old_root) = snapshot.unwrap();
        assert_eq!(old.root(), old_root);
        assert_ne!(old.root(), m.root());
        // Removing everything gives the empty map again.
        for key in reference.keys() {
            m.remove(key);
        }
        assert_eq!(m.root(), EMPTY);
        assert!(m.is_empty());
        assert_eq!(m, SparseMap::new());
    }
}

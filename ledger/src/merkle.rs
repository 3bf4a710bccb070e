//! The RFC 9162 (Certificate Transparency v2) Merkle tree, §2.1: an append-only log of leaves
//! whose root can be taken at any size, with inclusion proofs (§2.1.3) and consistency proofs
//! (§2.1.4), plus pure verification functions for both (the §2.1.3.2 and §2.1.4.2 algorithms,
//! written as small pure functions after transparency-dev/merkle `proof/verify.go`).
//!
//! Hashing is SHA-256 with domain separation: a leaf hash is `SHA-256(0x00 ‖ data)`, an interior
//! node is `SHA-256(0x01 ‖ left ‖ right)` and the empty tree's root is `SHA-256("")`. A tree of
//! `n > 1` leaves splits at the largest power of two smaller than `n`.
//!
//! [`MerkleTree`] keeps every leaf hash and every complete aligned subtree hash in memory, so the
//! root at any earlier size and every proof cost O(log n) hash operations. This module is not a
//! store: it does no I/O and persists nothing; callers rebuild a tree from stored leaf hashes with
//! [`MerkleTree::from_leaf_hashes`].

use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A SHA-256 digest: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// Why a Merkle operation or proof verification failed; each variant carries its evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// A leaf index is not below the tree size it refers to.
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size the index was checked against.
        size: u64,
    },
    /// A tree size is larger than the tree holds.
    #[error("tree size {size} is larger than the tree's size {max}")]
    SizeOutOfRange {
        /// The requested tree size.
        size: u64,
        /// The tree's current size.
        max: u64,
    },
    /// A proof has the wrong number of hashes for its index and sizes.
    #[error("wrong proof length: expected {expected} hashes, got {got}")]
    WrongProofLength {
        /// The number of hashes the proof must have.
        expected: u64,
        /// The number of hashes the proof has.
        got: u64,
    },
    /// The root computed from a proof differs from the expected root.
    #[error("root mismatch: computed {}, expected {}", to_hex(.computed), to_hex(.expected))]
    RootMismatch {
        /// The root recomputed from the proof.
        computed: Hash,
        /// The root the caller expected.
        expected: Hash,
    },
    /// Consistency sizes are unusable: the old size is 0 or larger than the new size.
    #[error("invalid consistency sizes: old {old}, new {new} (need 0 < old <= new)")]
    InvalidSizes {
        /// The old (first) tree size.
        old: u64,
        /// The new (second) tree size.
        new: u64,
    },
    /// A consistency proof between equal sizes must be empty, and this one is not.
    #[error("consistency proof between equal sizes must be empty")]
    NonEmptyProofForEqualSizes,
    /// A byte string given as a hash is not 32 bytes long.
    #[error("hash must be 32 bytes, got {got}")]
    BadHashLength {
        /// The length of the byte string given.
        got: usize,
    },
}

/// Lower-case hex of a hash, for error messages.
fn to_hex(hash: &Hash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in hash {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
thread_local! {
    /// Interior-node hash operations done on this thread (tests count them to check O(log n)).
    static NODE_HASHES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The RFC 9162 leaf hash: `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// The RFC 9162 interior node hash: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    #[cfg(test)]
    NODE_HASHES.with(|n| n.set(n.get() + 1));
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Converts a byte slice to a [`Hash`], rejecting any length other than 32.
pub fn hash_from_slice(bytes: &[u8]) -> Result<Hash, MerkleError> {
    Hash::try_from(bytes).map_err(|_| MerkleError::BadHashLength { got: bytes.len() })
}

/// The largest power of two strictly smaller than `n`; `n` must be at least 2.
fn split_point(n: u64) -> u64 {
    1u64 << (n - 1).ilog2()
}

/// An append-only, in-memory RFC 9162 Merkle tree.
///
/// It stores the leaf hashes and every complete aligned subtree hash: `levels[k][i]` is the hash
/// of the perfect subtree of `2^k` leaves starting at leaf `i·2^k`. Appending is amortised O(1);
/// [`root`](Self::root), [`root_at`](Self::root_at),
/// [`inclusion_proof`](Self::inclusion_proof) and
/// [`consistency_proof`](Self::consistency_proof) cost O(log n) hash operations for any size up to
/// the current one. Memory is about two hashes per leaf. Cloning is cheap: complete chunks of
/// each level are shared (the chain's speculative copies clone the log once per block).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerkleTree {
    /// `levels[0]` are the leaf hashes; `levels[k][i]` is the perfect subtree of `2^k` leaves at
    /// `i·2^k`. `levels[k].len()` is always `size >> k`.
    levels: Vec<Level>,
}

/// Hashes per shared chunk of a [`Level`].
const CHUNK: usize = 256;

/// One level's hashes: complete chunks of [`CHUNK`] hashes shared by `Arc` (immutable once
/// full: the tree is append-only), then the growing tail. A clone copies one pointer per chunk
/// and at most `CHUNK − 1` hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Level {
    full: Vec<Arc<[Hash]>>,
    tail: Vec<Hash>,
}

impl Level {
    fn len(&self) -> usize {
        self.full.len() * CHUNK + self.tail.len()
    }

    fn is_empty(&self) -> bool {
        self.full.is_empty() && self.tail.is_empty()
    }

    fn get(&self, index: usize) -> Option<&Hash> {
        let (chunk, offset) = (index / CHUNK, index % CHUNK);
        match self.full.get(chunk) {
            Some(c) => c.get(offset),
            None if chunk == self.full.len() => self.tail.get(offset),
            None => None,
        }
    }

    fn last(&self) -> Option<&Hash> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    fn push(&mut self, hash: Hash) {
        self.tail.push(hash);
        if self.tail.len() == CHUNK {
            let full: Arc<[Hash]> = Arc::from(std::mem::take(&mut self.tail));
            self.full.push(full);
        }
    }

    fn truncate(&mut self, keep: usize) {
        if keep >= self.len() {
            return;
        }
        let (chunk, offset) = (keep / CHUNK, keep % CHUNK);
        if chunk < self.full.len() {
            self.tail = self
                .full
                .get(chunk)
                .map_or_else(Vec::new, |c| c[..offset].to_vec());
            self.full.truncate(chunk);
        } else {
            self.tail.truncate(offset);
        }
    }
}

impl MerkleTree {
    /// An empty tree (size 0, root [`empty_root`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree holding the given leaf hashes, in order.
    pub fn from_leaf_hashes(leaf_hashes: impl IntoIterator<Item = Hash>) -> Self {
        let mut tree = Self::new();
        for hash in leaf_hashes {
            tree.push_leaf_hash(hash);
        }
        tree
    }

    /// Appends a leaf given by its leaf hash (see [`leaf_hash`]) and returns its index.
    /// Amortised O(1): each completed pair is hashed once into the level above.
    pub fn push_leaf_hash(&mut self, hash: Hash) -> u64 {
        let index = self.size();
        let mut carry = hash;
        let mut level_no = 0;
        loop {
            if self.levels.len() <= level_no {
                self.levels.push(Level::default());
            }
            let Some(level) = self.levels.get_mut(level_no) else {
                break;
            };
            level.push(carry);
            let n = level.len();
            if n % 2 == 1 {
                break;
            }
            let (Some(left), Some(right)) = (level.get(n - 2), level.get(n - 1)) else {
                break;
            };
            carry = node_hash(left, right);
            level_no += 1;
        }
        index
    }

    /// Drops every leaf at index `size` and above (used to roll back a block that was
    /// executed but not committed). A `size` at or above the current size changes nothing.
    pub fn truncate(&mut self, size: u64) {
        for (k, level) in self.levels.iter_mut().enumerate() {
            let keep = usize::try_from(size >> k).unwrap_or(usize::MAX);
            level.truncate(keep);
        }
        while self.levels.last().is_some_and(Level::is_empty) {
            self.levels.pop();
        }
    }

    /// Appends a leaf by its data (hashed with [`leaf_hash`]) and returns its index.
    pub fn append(&mut self, data: &[u8]) -> u64 {
        self.push_leaf_hash(leaf_hash(data))
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// The root at the current size, from the stored levels in O(log n) hash operations.
    pub fn root(&self) -> Hash {
        // Level k has an odd number of entries exactly when bit k of the size is set, and its
        // last entry is then the perfect subtree of that bit in the size's decomposition.
        let mut acc: Option<Hash> = None;
        for level in &self.levels {
            if level.len() % 2 == 1 {
                if let Some(piece) = level.last() {
                    acc = Some(match acc {
                        None => *piece,
                        Some(right) => node_hash(piece, &right),
                    });
                }
            }
        }
        acc.unwrap_or_else(empty_root)
    }

    /// The root the tree had at `size` leaves (`size` ≤ [`size`](Self::size)).
    pub fn root_at(&self, size: u64) -> Result<Hash, MerkleError> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        self.range_hash(0, size, size)
    }

    /// The leaf hash at `index`, if the tree has that leaf.
    pub fn leaf_hash_at(&self, index: u64) -> Option<Hash> {
        self.node(0, index)
    }

    /// The RFC 9162 inclusion proof (audit path, `PATH(index, D[0:size])`) for leaf `index` in
    /// the tree of `size` leaves, lowest sibling first.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(size)?;
        if index >= size {
            return Err(MerkleError::IndexOutOfRange { index, size });
        }
        let (mut start, mut end) = (0u64, size);
        let mut proof = Vec::new();
        while end - start > 1 {
            let mid = start + split_point(end - start);
            if index < mid {
                proof.push(self.range_hash(mid, end, size)?);
                end = mid;
            } else {
                proof.push(self.range_hash(start, mid, size)?);
                start = mid;
            }
        }
        proof.reverse();
        Ok(proof)
    }

    /// The RFC 9162 consistency proof (`PROOF(old_size, D[0:new_size])`) between the tree at
    /// `old_size` and at `new_size`. Equal sizes give an empty proof; an old size of 0 is
    /// rejected, as [`verify_consistency`] rejects it.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(new_size)?;
        if old_size == 0 || old_size > new_size {
            return Err(MerkleError::InvalidSizes {
                old: old_size,
                new: new_size,
            });
        }
        // Iterative SUBPROOF(m, D[start:end], whole): `m` counts from `start`.
        let (mut start, mut end, mut m, mut whole) = (0u64, new_size, old_size, true);
        let mut proof = Vec::new();
        loop {
            let len = end - start;
            if m == len {
                if !whole {
                    proof.push(self.range_hash(start, end, new_size)?);
                }
                break;
            }
            let k = split_point(len);
            if m <= k {
                proof.push(self.range_hash(start + k, end, new_size)?);
                end = start + k;
            } else {
                proof.push(self.range_hash(start, start + k, new_size)?);
                start += k;
                m -= k;
                whole = false;
            }
        }
        proof.reverse();
        Ok(proof)
    }

    /// Errors unless `size` ≤ the current size.
    fn check_size(&self, size: u64) -> Result<(), MerkleError> {
        let max = self.size();
        if size > max {
            return Err(MerkleError::SizeOutOfRange { size, max });
        }
        Ok(())
    }

    /// The stored hash `levels[level][index]`.
    fn node(&self, level: usize, index: u64) -> Option<Hash> {
        let index = usize::try_from(index).ok()?;
        self.levels.get(level)?.get(index).copied()
    }

    /// `MTH(D[start:end])` for a non-empty range whose `start` is a multiple of the smallest
    /// power of two ≥ `end - start` (true of every subtree the RFC recursion visits). The range
    /// splits into the perfect subtrees of the binary digits of its length, which are folded
    /// right to left: popcount(len) − 1 hash operations. `size` is only for the error, which
    /// cannot happen after `check_size(size)` with `end ≤ size`.
    fn range_hash(&self, start: u64, end: u64, size: u64) -> Result<Hash, MerkleError> {
        let missing = MerkleError::SizeOutOfRange {
            size,
            max: self.size(),
        };
        let len = end.checked_sub(start).ok_or_else(|| missing.clone())?;
        let mut acc: Option<Hash> = None;
        for level in 0..64usize {
            if (len >> level) & 1 == 0 {
                continue;
            }
            // The pieces of the higher bits come first; this one starts after them.
            let higher = len & !((2u64 << level).wrapping_sub(1));
            let piece = self
                .node(level, (start + higher) >> level)
                .ok_or_else(|| missing.clone())?;
            acc = Some(match acc {
                None => piece,
                Some(right) => node_hash(&piece, &right),
            });
        }
        acc.ok_or(missing)
    }
}

/// Sizes of the two parts of an inclusion proof for `index` in a tree of `size` leaves
/// (`index < size`): the inner part below the point where the paths to `index` and to the last
/// leaf meet, and the border part along the right border above it.
fn decomp_incl_proof(index: u64, size: u64) -> (usize, usize) {
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = index.checked_shr(inner as u32).unwrap_or(0).count_ones() as usize;
    (inner, border)
}

/// Bit `bit` of `index` (0 past bit 63).
fn bit_set(index: u64, bit: usize) -> bool {
    u32::try_from(bit)
        .ok()
        .and_then(|b| index.checked_shr(b))
        .is_some_and(|v| v & 1 == 1)
}

/// Chains `seed` with the inner proof hashes, on the side given by each bit of `index`.
fn chain_inner(seed: Hash, proof: &[Hash], index: u64) -> Hash {
    proof.iter().enumerate().fold(seed, |acc, (i, h)| {
        if bit_set(index, i) {
            node_hash(h, &acc)
        } else {
            node_hash(&acc, h)
        }
    })
}

/// Chains `seed` with only the inner proof hashes that lie to its left.
fn chain_inner_right(seed: Hash, proof: &[Hash], index: u64) -> Hash {
    proof.iter().enumerate().fold(seed, |acc, (i, h)| {
        if bit_set(index, i) {
            node_hash(h, &acc)
        } else {
            acc
        }
    })
}

/// Chains `seed` with border hashes, each of which lies to its left.
fn chain_border_right(seed: Hash, proof: &[Hash]) -> Hash {
    proof.iter().fold(seed, |acc, h| node_hash(h, &acc))
}

/// Errors unless `computed == expected`.
fn verify_match(computed: &Hash, expected: &Hash) -> Result<(), MerkleError> {
    if computed != expected {
        return Err(MerkleError::RootMismatch {
            computed: *computed,
            expected: *expected,
        });
    }
    Ok(())
}

/// The [`MerkleError::WrongProofLength`] error unless `proof` has `expected` hashes.
fn check_len(proof: &[Hash], expected: usize) -> Result<(), MerkleError> {
    if proof.len() != expected {
        return Err(MerkleError::WrongProofLength {
            expected: expected as u64,
            got: proof.len() as u64,
        });
    }
    Ok(())
}

/// Recomputes the root of a tree of `size` leaves from the leaf hash at `index` and its
/// inclusion proof (RFC 9162 §2.1.3.2). Errors if `index ≥ size` or the proof has the wrong
/// length for `(index, size)`.
pub fn root_from_inclusion_proof(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let (inner, border) = decomp_incl_proof(index, size);
    check_len(proof, inner + border)?;
    let (inner_part, border_part) = proof.split_at(inner);
    let res = chain_inner(*leaf_hash, inner_part, index);
    Ok(chain_border_right(res, border_part))
}

/// Verifies that `leaf_hash` is the leaf at `index` in the tree of `size` leaves whose root is
/// `root`, given its inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    let computed = root_from_inclusion_proof(leaf_hash, index, size, proof)?;
    verify_match(&computed, root)
}

/// Verifies that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root`, given their consistency proof (RFC 9162 §2.1.4.2).
///
/// `old_size` 0 is rejected (even 0 → 0), as is `old_size > new_size`. For equal sizes the proof
/// must be empty and the roots equal.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if old_size == 0 || old_size > new_size {
        return Err(MerkleError::InvalidSizes {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(MerkleError::NonEmptyProofForEqualSizes);
        }
        return verify_match(new_root, old_root);
    }

    // The proof is a suffix of the inclusion proof of leaf old_size − 1 in the new tree, from
    // level `shift` up, preceded by the root of the old tree's last perfect subtree (2^shift
    // leaves) unless the old tree is that subtree, whose root is then `old_root` itself.
    let (inner, border) = decomp_incl_proof(old_size - 1, new_size);
    let shift = old_size.trailing_zeros();
    let inner = inner.saturating_sub(shift as usize);
    let (seed, rest) = if old_size.is_power_of_two() {
        check_len(proof, inner + border)?;
        (*old_root, proof)
    } else {
        check_len(proof, 1 + inner + border)?;
        match proof.split_first() {
            Some((first, rest)) => (*first, rest),
            None => {
                return Err(MerkleError::WrongProofLength {
                    expected: 1,
                    got: 0,
                })
            }
        }
    };
    let (inner_part, border_part) = rest.split_at(inner);
    let mask = (old_size - 1) >> shift;

    let old_computed = chain_border_right(chain_inner_right(seed, inner_part, mask), border_part);
    verify_match(&old_computed, old_root)?;
    let new_computed = chain_border_right(chain_inner(seed, inner_part, mask), border_part);
    verify_match(&new_computed, new_root)
}

#[cfg(test)]
mod truncate_tests {
    use super::*;

    #[test]
    fn truncate_then_regrow_matches_a_fresh_tree() {
        let mut t = MerkleTree::new();
        for i in 0..37u32 {
            t.append(&i.to_be_bytes());
        }
        for cut in [0u64, 1, 2, 16, 17, 31, 36, 37, 50] {
            let mut c = t.clone();
            c.truncate(cut);
            let fresh = MerkleTree::from_leaf_hashes(
                (0..cut.min(37)).map(|i| leaf_hash(&(i as u32).to_be_bytes())),
            );
            assert_eq!(c, fresh, "cut {cut}");
            assert_eq!(c.root(), t.root_at(cut.min(37)).unwrap());
            c.append(b"x");
            assert_eq!(c.size(), cut.min(37) + 1);
        }
    }

    /// Levels are stored in shared chunks of `CHUNK` hashes: truncating inside, at and across
    /// chunk boundaries, and growing a clone, must behave exactly like a fresh tree and leave
    /// the original untouched.
    #[test]
    fn chunked_levels_truncate_clone_and_prove_like_a_fresh_tree() {
        let n = 4 * CHUNK as u64 + 77;
        let leaf = |i: u64| leaf_hash(&i.to_be_bytes());
        let t = MerkleTree::from_leaf_hashes((0..n).map(leaf));
        let root = t.root();
        let c256 = CHUNK as u64;
        for cut in [
            c256 - 1,
            c256,
            c256 + 1,
            2 * c256,
            2 * c256 + 3,
            3 * c256 - 1,
            n - 1,
        ] {
            let mut c = t.clone();
            c.truncate(cut);
            let fresh = MerkleTree::from_leaf_hashes((0..cut).map(leaf));
            assert_eq!(c, fresh, "cut {cut}");
            assert_eq!(c.root(), fresh.root());
            assert_eq!(c.root(), t.root_at(cut).unwrap());
            for extra in cut..n {
                c.push_leaf_hash(leaf(extra + 1_000_000));
            }
            assert_ne!(c.root(), root);
            assert_eq!(c.leaf_hash_at(cut), Some(leaf(cut + 1_000_000)));
            // The original is untouched by the clone's truncation and growth.
            assert_eq!(t.root(), root);
            assert_eq!(t.leaf_hash_at(cut), Some(leaf(cut)));
            let proof = t.inclusion_proof(cut, n).unwrap();
            let fresh_full = MerkleTree::from_leaf_hashes((0..n).map(leaf));
            assert_eq!(proof, fresh_full.inclusion_proof(cut, n).unwrap());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;
    use serde_json::Value;
    use std::path::{Path, PathBuf};

    // ---- Naive reference, straight from the RFC 9162 §2.1.1 definitions. ----

    /// Largest power of two smaller than n (n > 1), the RFC's k.
    fn k_of(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    /// MTH(D[n]) over leaf hashes.
    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = k_of(n);
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    /// PATH(m, D[n]).
    fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
        let n = d.len();
        if n <= 1 {
            return vec![];
        }
        let k = k_of(n);
        if m < k {
            let mut p = path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    /// SUBPROOF(m, D[n], b).
    fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![mth(d)] };
        }
        let k = k_of(n);
        if m <= k {
            let mut p = subproof(m, &d[..k], b);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = subproof(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        }
    }

    /// PROOF(m, D[n]).
    fn naive_consistency(m: usize, d: &[Hash]) -> Vec<Hash> {
        subproof(m, d, true)
    }

    // ---- Vector files. ----

    fn vectors_dir() -> PathBuf {
        std::env::var_os("XINYI_VECTORS").map_or_else(
            || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors")),
            PathBuf::from,
        )
    }

    fn merkle_dir() -> PathBuf {
        let dir = vectors_dir().join("merkle");
        assert!(
            dir.is_dir(),
            "Merkle test vectors missing: {} is not a folder (set XINYI_VECTORS to the vectors folder)",
            dir.display()
        );
        dir
    }

    fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read vector folder {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                json_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }

    fn cases(kind: &str) -> Vec<(String, Value)> {
        let root = merkle_dir();
        let dir = root.join(kind);
        assert!(dir.is_dir(), "vector folder missing: {}", dir.display());
        let mut files = Vec::new();
        json_files(&dir, &mut files);
        files.sort();
        assert!(
            files.len() >= 98,
            "expected at least 98 {kind} cases in {}, found {}",
            dir.display(),
            files.len()
        );
        files
            .into_iter()
            .map(|f| {
                let text = std::fs::read_to_string(&f)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", f.display()));
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("bad JSON in {}: {e}", f.display()));
                let name = f.strip_prefix(&root).unwrap().display().to_string();
                (name, v)
            })
            .collect()
    }

    fn b64(v: &Value) -> Vec<u8> {
        let s = v.as_str().expect("hash field must be a string");
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("hash field must be standard base64")
    }

    fn b64_hash(v: &Value) -> Result<Hash, MerkleError> {
        hash_from_slice(&b64(v))
    }

    fn b64_proof(v: &Value) -> Result<Vec<Hash>, MerkleError> {
        match v {
            Value::Null => Ok(vec![]),
            Value::Array(items) => items.iter().map(b64_hash).collect(),
            other => panic!("proof must be an array or null, got {other}"),
        }
    }

    fn num(v: &Value, field: &str) -> u64 {
        v[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field} must be a u64, got {}", v[field]))
    }

    fn want_err(v: &Value) -> bool {
        v["wantErr"].as_bool().expect("wantErr must be a boolean")
    }

    #[test]
    fn inclusion_vectors() {
        let cases = cases("inclusion");
        let mut failures = Vec::new();
        let (mut accepted, mut rejected) = (0, 0);
        for (name, c) in &cases {
            let verdict = (|| {
                let leaf = b64_hash(&c["leafHash"])?;
                let root = b64_hash(&c["root"])?;
                let proof = b64_proof(&c["proof"])?;
                verify_inclusion(&leaf, num(c, "leafIdx"), num(c, "treeSize"), &proof, &root)
            })();
            if verdict.is_err() != want_err(c) {
                failures.push(format!(
                    "{name}: wantErr {} but got {verdict:?}",
                    want_err(c)
                ));
            }
            if verdict.is_ok() {
                accepted += 1;
            } else {
                rejected += 1;
            }
        }
        assert!(
            failures.is_empty(),
            "inclusion vector failures:\n{}",
            failures.join("\n")
        );
        assert!(
            accepted > 0 && rejected > 0,
            "{accepted} accepted, {rejected} rejected"
        );
    }

    const DOCUMENTED_DIFFERENCE: &str =
        "consistency/additional/sizes-are-equal-one-and-proof-is-empty.json";

    #[test]
    fn consistency_vectors() {
        let cases = cases("consistency");
        let mut failures = Vec::new();
        let mut documented = Vec::new();
        let (mut accepted, mut rejected) = (0, 0);
        for (name, c) in &cases {
            let parsed = (|| {
                Ok::<_, MerkleError>((
                    b64_hash(&c["root1"])?,
                    b64_hash(&c["root2"])?,
                    b64_proof(&c["proof"])?,
                ))
            })();
            let verdict = parsed.clone().and_then(|(r1, r2, proof)| {
                verify_consistency(num(c, "size1"), num(c, "size2"), &r1, &r2, &proof)
            });
            if verdict.is_err() != want_err(c) {
                if !want_err(c) && matches!(parsed, Err(MerkleError::BadHashLength { .. })) {
                    documented.push(name.clone());
                } else {
                    failures.push(format!(
                        "{name}: wantErr {} but got {verdict:?}",
                        want_err(c)
                    ));
                }
            }
            if verdict.is_ok() {
                accepted += 1;
            } else {
                rejected += 1;
            }
        }
        assert!(
            failures.is_empty(),
            "consistency vector failures:\n{}",
            failures.join("\n")
        );
        assert_eq!(
            documented,
            vec![DOCUMENTED_DIFFERENCE.to_string()],
            "only the documented 12-byte-root case may differ"
        );
        assert!(
            accepted > 0 && rejected > 0,
            "{accepted} accepted, {rejected} rejected"
        );
    }

    /// The documented case, with 32-byte roots: equal sizes, empty proof, equal roots pass.
    #[test]
    fn documented_difference_holds_with_full_length_roots() {
        let c = cases("consistency")
            .into_iter()
            .find(|(n, _)| n == DOCUMENTED_DIFFERENCE)
            .unwrap_or_else(|| panic!("{DOCUMENTED_DIFFERENCE} missing"))
            .1;
        let (s1, s2) = (num(&c, "size1"), num(&c, "size2"));
        assert_eq!(b64(&c["root1"]), b64(&c["root2"]));
        assert!(matches!(
            b64_hash(&c["root1"]),
            Err(MerkleError::BadHashLength { got: 12 })
        ));
        let r = leaf_hash(&b64(&c["root1"]));
        assert_eq!(
            verify_consistency(s1, s2, &r, &r, &b64_proof(&c["proof"]).unwrap()),
            Ok(())
        );
    }

    fn hex_hash(v: &Value) -> Hash {
        let bytes = hex::decode(v.as_str().expect("hex string")).expect("valid hex");
        hash_from_slice(&bytes).expect("32-byte hash")
    }

    fn hex_proof(v: &Value) -> Vec<Hash> {
        v.as_array()
            .expect("proof array")
            .iter()
            .map(hex_hash)
            .collect()
    }

    #[test]
    fn reference_tree() {
        let path = merkle_dir().join("reference_tree.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let v: Value = serde_json::from_str(&text).unwrap();
        let leaves: Vec<Vec<u8>> = v["leaves_hex"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| hex::decode(h.as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(leaves.len(), 8);

        let mut tree = MerkleTree::new();
        let roots = v["roots"].as_object().unwrap();
        assert_eq!(roots.len(), 9);
        assert_eq!(tree.root(), hex_hash(&roots["0"]));
        for (i, leaf) in leaves.iter().enumerate() {
            assert_eq!(tree.append(leaf), i as u64);
            assert_eq!(
                tree.root(),
                hex_hash(&roots[&(i + 1).to_string()]),
                "root() at size {}",
                i + 1
            );
        }
        for n in 0..=8u64 {
            assert_eq!(
                tree.root_at(n).unwrap(),
                hex_hash(&roots[&n.to_string()]),
                "root_at({n})"
            );
        }

        let inclusion = v["inclusion"].as_array().unwrap();
        assert_eq!(inclusion.len(), 36);
        for c in inclusion {
            let (m, n) = (num(c, "leaf_index"), num(c, "tree_size"));
            let want = hex_proof(&c["proof"]);
            assert_eq!(
                tree.inclusion_proof(m, n).unwrap(),
                want,
                "inclusion proof ({m}, {n})"
            );
            let leaf = leaf_hash(&leaves[m as usize]);
            assert_eq!(tree.leaf_hash_at(m), Some(leaf));
            verify_inclusion(&leaf, m, n, &want, &tree.root_at(n).unwrap())
                .unwrap_or_else(|e| panic!("inclusion ({m}, {n}) does not verify: {e}"));
        }

        let consistency = v["consistency"].as_array().unwrap();
        assert_eq!(consistency.len(), 36);
        for c in consistency {
            let (m, n) = (num(c, "size1"), num(c, "size2"));
            let want = hex_proof(&c["proof"]);
            assert_eq!(
                tree.consistency_proof(m, n).unwrap(),
                want,
                "consistency proof ({m}, {n})"
            );
            let (r1, r2) = (tree.root_at(m).unwrap(), tree.root_at(n).unwrap());
            verify_consistency(m, n, &r1, &r2, &want)
                .unwrap_or_else(|e| panic!("consistency ({m}, {n}) does not verify: {e}"));
        }
    }

    // ---- Property tests against the naive reference. ----

    fn flip(proof: &[Hash], which: usize, bit: usize) -> Vec<Hash> {
        let mut p = proof.to_vec();
        let i = which % p.len();
        p[i][(bit / 8) % 32] ^= 1 << (bit % 8);
        p
    }

    fn leaf_sets() -> impl Strategy<Value = Vec<Hash>> {
        // Leaf i's data starts with i, so leaf hashes are distinct.
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 1..300).prop_map(|salts| {
            salts
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut data = (i as u64).to_le_bytes().to_vec();
                    data.extend_from_slice(s);
                    leaf_hash(&data)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn agrees_with_naive_reference(
            leaves in leaf_sets(),
            a in any::<prop::sample::Index>(),
            b in any::<prop::sample::Index>(),
            c in any::<prop::sample::Index>(),
            which in any::<usize>(),
            bit in 0usize..256,
        ) {
            let total = leaves.len();
            let mut tree = MerkleTree::new();
            for (i, h) in leaves.iter().enumerate() {
                prop_assert_eq!(tree.push_leaf_hash(*h), i as u64);
            }
            prop_assert_eq!(tree.size(), total as u64);
            prop_assert_eq!(&tree, &MerkleTree::from_leaf_hashes(leaves.iter().copied()));
            prop_assert_eq!(tree.root(), mth(&leaves));
            for n in 0..=total {
                prop_assert_eq!(tree.root_at(n as u64).unwrap(), mth(&leaves[..n]), "root_at({})", n);
            }

            // Inclusion: random size n in 1..=total, random index m < n.
            let n = 1 + a.index(total);
            let m = b.index(n);
            let root = mth(&leaves[..n]);
            let proof = tree.inclusion_proof(m as u64, n as u64).unwrap();
            prop_assert_eq!(&proof, &path(m, &leaves[..n]));
            prop_assert_eq!(verify_inclusion(&leaves[m], m as u64, n as u64, &proof, &root), Ok(()));
            prop_assert_eq!(root_from_inclusion_proof(&leaves[m], m as u64, n as u64, &proof), Ok(root));
            let bad_leaf = flip(&[leaves[m]], 0, bit)[0];
            prop_assert!(verify_inclusion(&bad_leaf, m as u64, n as u64, &proof, &root).is_err());
            let bad_root = flip(&[root], 0, bit)[0];
            prop_assert!(verify_inclusion(&leaves[m], m as u64, n as u64, &proof, &bad_root).is_err());
            if !proof.is_empty() {
                let bad = flip(&proof, which, bit);
                prop_assert!(verify_inclusion(&leaves[m], m as u64, n as u64, &bad, &root).is_err());
            }
            if n > 1 {
                let wrong_m = (m + 1 + c.index(n - 1)) % n;
                prop_assert_ne!(wrong_m, m);
                prop_assert!(verify_inclusion(&leaves[m], wrong_m as u64, n as u64, &proof, &root).is_err());
            }
            // A wrong size (with that size's true root) must fail.
            let wrong_n = 1 + c.index(total);
            if wrong_n != n && m < wrong_n {
                let wrong_root = mth(&leaves[..wrong_n]);
                prop_assert!(verify_inclusion(&leaves[m], m as u64, wrong_n as u64, &proof, &wrong_root).is_err());
            }
            let mut longer = proof.clone();
            longer.push(root);
            let too_long = verify_inclusion(&leaves[m], m as u64, n as u64, &longer, &root);
            let is_wrong_len = matches!(too_long, Err(MerkleError::WrongProofLength { .. }));
            prop_assert!(is_wrong_len, "too-long proof gave {:?}", too_long);

            // Consistency: random 1 <= m2 <= n2 <= total.
            let n2 = 1 + a.index(total);
            let m2 = 1 + c.index(n2);
            let (r1, r2) = (mth(&leaves[..m2]), mth(&leaves[..n2]));
            let cproof = tree.consistency_proof(m2 as u64, n2 as u64).unwrap();
            prop_assert_eq!(&cproof, &naive_consistency(m2, &leaves[..n2]));
            prop_assert_eq!(verify_consistency(m2 as u64, n2 as u64, &r1, &r2, &cproof), Ok(()));
            if !cproof.is_empty() {
                let bad = flip(&cproof, which, bit);
                prop_assert!(verify_consistency(m2 as u64, n2 as u64, &r1, &r2, &bad).is_err());
            }
            if m2 < n2 {
                prop_assert!(verify_consistency(m2 as u64, n2 as u64, &r2, &r1, &cproof).is_err());
            }
            // Full-length wrong roots (the vectors' wrong roots are short and fail at parsing).
            let bad_r1 = flip(&[r1], 0, bit)[0];
            let bad_r2 = flip(&[r2], 0, bit)[0];
            prop_assert!(verify_consistency(m2 as u64, n2 as u64, &bad_r1, &r2, &cproof).is_err());
            prop_assert!(verify_consistency(m2 as u64, n2 as u64, &r1, &bad_r2, &cproof).is_err());
            // A wrong old size (with that size's true root) must fail.
            let wrong_m2 = 1 + (m2 + b.index(n2)) % n2;
            if wrong_m2 != m2 {
                let wr1 = mth(&leaves[..wrong_m2]);
                prop_assert!(verify_consistency(wrong_m2 as u64, n2 as u64, &wr1, &r2, &cproof).is_err());
            }
            // A wrong new size (with that size's true root) must fail.
            if total > n2 {
                let wrong_n2 = n2 + 1 + b.index(total - n2);
                let wr2 = mth(&leaves[..wrong_n2]);
                prop_assert!(verify_consistency(m2 as u64, wrong_n2 as u64, &r1, &wr2, &cproof).is_err());
            }
        }
    }

    // ---- Edge cases. ----

    #[test]
    fn empty_tree() {
        let tree = MerkleTree::default();
        assert_eq!(tree.size(), 0);
        assert_eq!(
            to_hex(&tree.root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(tree.root(), empty_root());
        assert_eq!(tree.root_at(0), Ok(empty_root()));
        assert_eq!(
            tree.root_at(1),
            Err(MerkleError::SizeOutOfRange { size: 1, max: 0 })
        );
        assert_eq!(tree.leaf_hash_at(0), None);
        assert_eq!(
            tree.inclusion_proof(0, 0),
            Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(
            tree.consistency_proof(0, 0),
            Err(MerkleError::InvalidSizes { old: 0, new: 0 })
        );
    }

    #[test]
    fn error_cases() {
        let mut tree = MerkleTree::new();
        for i in 0..5u8 {
            tree.append(&[i]);
        }
        let root = tree.root();
        assert_eq!(tree.leaf_hash_at(5), None);
        assert_eq!(tree.leaf_hash_at(4), Some(leaf_hash(&[4])));
        assert_eq!(
            tree.inclusion_proof(5, 5),
            Err(MerkleError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            tree.inclusion_proof(0, 6),
            Err(MerkleError::SizeOutOfRange { size: 6, max: 5 })
        );
        assert_eq!(
            tree.consistency_proof(4, 3),
            Err(MerkleError::InvalidSizes { old: 4, new: 3 })
        );
        assert_eq!(
            tree.consistency_proof(0, 3),
            Err(MerkleError::InvalidSizes { old: 0, new: 3 })
        );
        assert_eq!(
            tree.consistency_proof(3, 6),
            Err(MerkleError::SizeOutOfRange { size: 6, max: 5 })
        );
        assert_eq!(tree.consistency_proof(5, 5), Ok(vec![]));
        assert_eq!(tree.consistency_proof(3, 5).map(|p| p.len()), Ok(4));
        assert_eq!(
            verify_inclusion(&leaf_hash(&[0]), 5, 5, &[], &root),
            Err(MerkleError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            verify_inclusion(&leaf_hash(&[4]), 4, 5, &[], &root),
            Err(MerkleError::WrongProofLength {
                expected: 1,
                got: 0
            })
        );
        assert_eq!(
            verify_consistency(4, 3, &root, &root, &[]),
            Err(MerkleError::InvalidSizes { old: 4, new: 3 })
        );
        assert_eq!(
            verify_consistency(0, 0, &root, &root, &[]),
            Err(MerkleError::InvalidSizes { old: 0, new: 0 })
        );
        assert_eq!(
            verify_consistency(0, 5, &empty_root(), &root, &[]),
            Err(MerkleError::InvalidSizes { old: 0, new: 5 })
        );
        assert_eq!(verify_consistency(5, 5, &root, &root, &[]), Ok(()));
        assert_eq!(
            verify_consistency(5, 5, &root, &root, &[root]),
            Err(MerkleError::NonEmptyProofForEqualSizes)
        );
        let other = tree.root_at(4).unwrap();
        let err = verify_consistency(5, 5, &root, &other, &[]).unwrap_err();
        assert_eq!(
            err,
            MerkleError::RootMismatch {
                computed: other,
                expected: root
            }
        );
        assert!(
            err.to_string().contains(&to_hex(&other)) && err.to_string().contains(&to_hex(&root))
        );
        assert_eq!(
            verify_consistency(3, 5, &tree.root_at(3).unwrap(), &root, &[]),
            Err(MerkleError::WrongProofLength {
                expected: 4,
                got: 0
            })
        );
        assert_eq!(
            hash_from_slice(&[0u8; 31]),
            Err(MerkleError::BadHashLength { got: 31 })
        );
        assert_eq!(hash_from_slice(&[7u8; 32]), Ok([7u8; 32]));
    }

    #[test]
    fn known_answers() {
        assert_eq!(
            to_hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let (l, r) = ([1u8; 32], [2u8; 32]);
        let mut pre = vec![1u8];
        pre.extend_from_slice(&l);
        pre.extend_from_slice(&r);
        assert_eq!(node_hash(&l, &r), <[u8; 32]>::from(Sha256::digest(&pre)));
        assert_ne!(node_hash(&l, &r), node_hash(&r, &l));
    }

    fn hashes_during<T>(f: impl FnOnce() -> T) -> (T, u64) {
        let before = NODE_HASHES.with(std::cell::Cell::get);
        let out = f();
        (out, NODE_HASHES.with(std::cell::Cell::get) - before)
    }

    /// Roots and proofs at any size cost O(log n) hash operations; appends are amortised O(1).
    #[test]
    fn logarithmic_cost() {
        let n: u64 = (1 << 16) + 12_345;
        let (tree, pushes) = hashes_during(|| {
            MerkleTree::from_leaf_hashes((0..n).map(|i| leaf_hash(&i.to_le_bytes())))
        });
        assert!(pushes < n, "{pushes} node hashes for {n} appends");
        let bound = 2 * 17;
        for size in [1, 2, 3, 1000, 4097, 40_000, n - 1, n] {
            let (_, h) = hashes_during(|| tree.root_at(size).unwrap());
            assert!(h <= bound, "root_at({size}) took {h} hashes");
            let (_, h) = hashes_during(|| tree.inclusion_proof(size / 2, size).unwrap());
            assert!(
                h <= bound,
                "inclusion_proof({}, {size}) took {h} hashes",
                size / 2
            );
            let (_, h) = hashes_during(|| tree.consistency_proof(size / 3 + 1, size).unwrap());
            assert!(
                h <= bound,
                "consistency_proof({}, {size}) took {h} hashes",
                size / 3 + 1
            );
        }
        let (_, h) = hashes_during(|| tree.root());
        assert!(h <= bound, "root() took {h} hashes");
    }
}

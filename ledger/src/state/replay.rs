//! The replay set: every id (entry id or query-request id) listed by the `n` values inside the
//! replay window, plus the ids the open block's committed entries recorded. Derived, not
//! stored (`specs/state.md` §4 step 2): the `n` values are the stored form.
//!
//! Compact and cheap to copy. The full 32-byte ids are not copied: each `n` value (sorted ids,
//! shared with the state's key-values) is kept by reference, and an index holds, per listed id,
//! 16 bytes — the id's first 8 bytes and the number of the `n` value listing it — in 65,536
//! buckets by the id's top 16 bits. A lookup scans one bucket (about 30 items at 2M ids) and
//! confirms a prefix match against the full ids of that `n` value, so a prefix collision can
//! never refuse an entry. A copy is one reference count; a change copies the touched buckets
//! and their 256-bucket chunks only if a copy shares them (an open block keeps an undo record
//! for its rollback instead of a copy). Not a general set: ids come from block-sized batches.

use std::sync::Arc;

/// A 32-byte replay id.
pub(crate) type ReplayId = [u8; 32];

/// Bucket chunks (by the id's top byte) and buckets per chunk (by its second byte).
const FANOUT: usize = 256;

/// (id prefix, number of the `n` value listing it).
type Item = (u64, u64);
type Bucket = Arc<Vec<Item>>;
type Chunk = Arc<Vec<Bucket>>;

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct ReplaySet {
    /// The `n` values by number: concatenated 32-byte ids, ascending.
    lists: imbl::OrdMap<u64, Arc<Vec<u8>>>,
    /// Number of each `n` value by its key.
    numbers: imbl::OrdMap<Vec<u8>, u64>,
    /// `FANOUT` chunks of `FANOUT` buckets.
    index: Arc<Vec<Chunk>>,
    /// Ids recorded by the open block's committed entries (not in an `n` value yet).
    open: std::collections::BTreeSet<ReplayId>,
    /// Distinct ids in `lists`.
    distinct: usize,
    /// Number of the next `n` value added.
    next: u64,
    /// What the open block changed, to undo it on rollback (None outside a block).
    undo: Option<Undo>,
}

/// The open block's changes: the `n` values its start pruned, and the counters before it.
#[derive(Debug, Clone)]
struct Undo {
    removed: Vec<(Vec<u8>, u64, Arc<Vec<u8>>)>,
    distinct: usize,
    next: u64,
}

impl Default for ReplaySet {
    fn default() -> Self {
        let bucket: Bucket = Arc::new(Vec::new());
        let chunk: Chunk = Arc::new(vec![bucket; FANOUT]);
        ReplaySet {
            lists: imbl::OrdMap::new(),
            numbers: imbl::OrdMap::new(),
            index: Arc::new(vec![chunk; FANOUT]),
            open: std::collections::BTreeSet::new(),
            distinct: 0,
            next: 0,
            undo: None,
        }
    }
}

use crate::hash::prefix64 as prefix;

/// Chunk and bucket of a prefix.
fn slot(p: u64) -> (usize, usize) {
    ((p >> 56) as usize, ((p >> 48) & 0xff) as usize)
}

/// Whether the sorted list of ids `list` holds `id`.
fn listed(list: &[u8], id: &ReplayId) -> bool {
    let n = list.len() / 32;
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match list.get(mid * 32..mid * 32 + 32) {
            Some(x) => match x.cmp(id.as_slice()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            },
            None => return false,
        }
    }
    false
}

impl ReplaySet {
    /// Distinct ids in the set.
    pub(crate) fn len(&self) -> usize {
        self.distinct + self.open.iter().filter(|id| !self.listed(id)).count()
    }

    /// Whether `id` is in the set.
    pub(crate) fn contains(&self, id: &ReplayId) -> bool {
        self.open.contains(id) || self.listed(id)
    }

    /// Whether an `n` value in the set lists `id`.
    fn listed(&self, id: &ReplayId) -> bool {
        let p = prefix(id);
        let (c, b) = slot(p);
        let Some(bucket) = self.index.get(c).and_then(|chunk| chunk.get(b)) else {
            return false;
        };
        bucket
            .iter()
            .any(|&(q, number)| q == p && self.lists.get(&number).is_some_and(|l| listed(l, id)))
    }

    fn bucket_mut(&mut self, p: u64) -> &mut Vec<Item> {
        let (c, b) = slot(p);
        let chunks = Arc::make_mut(&mut self.index);
        // `slot` is below FANOUT in both coordinates and both vectors have FANOUT elements.
        let chunk = Arc::make_mut(&mut chunks[c]);
        Arc::make_mut(&mut chunk[b])
    }

    /// Records an id of the open block's entry just committed.
    pub(crate) fn record_open(&mut self, id: ReplayId) {
        self.open.insert(id);
    }

    /// Forgets the open block's ids (when it closes: its `n` value, added just before, lists
    /// them).
    pub(crate) fn clear_open(&mut self) {
        self.open.clear();
    }

    /// A block opens: from here, what changes can be undone by [`ReplaySet::rollback_block`].
    pub(crate) fn begin_block(&mut self) {
        self.open.clear();
        self.undo = Some(Undo {
            removed: Vec::new(),
            distinct: self.distinct,
            next: self.next,
        });
    }

    /// The open block closed: its changes stay.
    pub(crate) fn commit_block(&mut self) {
        self.undo = None;
    }

    /// The open block is discarded: the set is again what it was when the block began (the
    /// pruned `n` values come back under their numbers, the open ids are forgotten).
    pub(crate) fn rollback_block(&mut self) {
        self.open.clear();
        let Some(undo) = self.undo.take() else {
            return;
        };
        // Only pruning changes the lists inside a block (a list is added when the block
        // closes, after which there is no rollback).
        for (key, number, list) in undo.removed.into_iter().rev() {
            for id in list.chunks_exact(32) {
                let mut x = [0u8; 32];
                x.copy_from_slice(id);
                self.bucket_mut(prefix(&x)).push((prefix(&x), number));
            }
            self.numbers.insert(key, number);
            self.lists.insert(number, list);
        }
        self.distinct = undo.distinct;
        self.next = undo.next;
    }

    /// Adds the `n` value stored under `key` (a whole number of 32-byte ids).
    pub(crate) fn add_list(&mut self, key: &[u8], list: Arc<Vec<u8>>) {
        self.add(key, list, false);
    }

    /// Adds the `n` value of the block closing now: its ids are distinct and in no list (each
    /// passed [`ReplaySet::contains`] when its entry recorded it), so they are not looked up.
    pub(crate) fn add_new_list(&mut self, key: &[u8], list: Arc<Vec<u8>>) {
        self.add(key, list, true);
    }

    fn add(&mut self, key: &[u8], list: Arc<Vec<u8>>, new_ids: bool) {
        let sorted = list
            .chunks_exact(32)
            .zip(list.chunks_exact(32).skip(1))
            .all(|(a, b)| a < b);
        let list = if sorted {
            list
        } else {
            let mut ids: Vec<&[u8]> = list.chunks_exact(32).collect();
            ids.sort_unstable();
            Arc::new(ids.concat())
        };
        let number = self.next;
        self.next += 1;
        let mut previous: Option<&[u8]> = None;
        for id in list.chunks_exact(32) {
            let mut x = [0u8; 32];
            x.copy_from_slice(id);
            // Sorted: a repeated id is adjacent, and counted once.
            if new_ids || (previous != Some(id) && !self.listed(&x)) {
                self.distinct += 1;
            }
            previous = Some(id);
            self.bucket_mut(prefix(&x)).push((prefix(&x), number));
        }
        self.numbers.insert(key.to_vec(), number);
        self.lists.insert(number, list);
    }

    /// Removes the `n` value stored under `key`: its ids leave the set unless another `n`
    /// value lists them too.
    pub(crate) fn remove_list(&mut self, key: &[u8]) {
        let Some(number) = self.numbers.remove(key) else {
            return;
        };
        let Some(list) = self.lists.remove(&number) else {
            return;
        };
        if let Some(undo) = self.undo.as_mut() {
            undo.removed.push((key.to_vec(), number, list.clone()));
        }
        let mut previous: Option<&[u8]> = None;
        for id in list.chunks_exact(32) {
            let mut x = [0u8; 32];
            x.copy_from_slice(id);
            let p = prefix(&x);
            let bucket = self.bucket_mut(p);
            if let Some(at) = bucket.iter().position(|&it| it == (p, number)) {
                bucket.swap_remove(at);
            }
            // A list keeps repeated ids once each in `distinct` (sorted: repeats are adjacent).
            if previous != Some(id) && !self.listed(&x) {
                self.distinct -= 1;
            }
            previous = Some(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The `n` values by key.
    type Model = BTreeMap<Vec<u8>, Vec<ReplayId>>;

    fn id(seed: u64, same_prefix: bool) -> ReplayId {
        let mut x = [0u8; 32];
        let h = crate::hash::tagged(crate::hash::Domain::Entry, &[&seed.to_be_bytes()]);
        x.copy_from_slice(h.as_bytes());
        if same_prefix {
            // Forces prefix collisions: a lookup must confirm against the full id.
            x[..8].copy_from_slice(&[7; 8]);
        }
        x
    }

    /// Random adds, removals, open ids, copies: the set always equals the union computed from
    /// scratch (a model of `n` values), copies stay independent, prefix collisions never
    /// answer for another id.
    #[test]
    fn matches_the_union_of_its_lists_under_random_operations() {
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut set = ReplaySet::default();
        let mut model = Model::new();
        let mut copies: Vec<(ReplaySet, Model)> = Vec::new();
        for step in 0..400u64 {
            match next() % 4 {
                0 | 1 => {
                    let n = (next() % 6) as usize;
                    let mut ids: Vec<ReplayId> =
                        (0..n).map(|_| id(next() % 300, next() % 3 == 0)).collect();
                    if next() % 2 == 0 {
                        ids.sort_unstable();
                    }
                    let key = step.to_be_bytes().to_vec();
                    let listed: std::collections::BTreeSet<ReplayId> =
                        model.values().flatten().copied().collect();
                    let distinct: std::collections::BTreeSet<&ReplayId> = ids.iter().collect();
                    let new =
                        distinct.len() == ids.len() && !ids.iter().any(|x| listed.contains(x));
                    if new && next() % 2 == 0 {
                        set.add_new_list(&key, Arc::new(ids.concat()));
                    } else {
                        set.add_list(&key, Arc::new(ids.concat()));
                    }
                    model.insert(key, ids);
                }
                2 => {
                    if let Some(key) = model.keys().nth((next() % 4) as usize).cloned() {
                        set.remove_list(&key);
                        model.remove(&key);
                    }
                }
                _ => {
                    // The copies must stay as they were whatever happens to the set after.
                    if copies.len() == 6 {
                        copies.remove(0);
                    }
                    copies.push((set.clone(), model.clone()));
                }
            }
            for (s, m) in copies
                .iter()
                .chain(std::iter::once(&(set.clone(), model.clone())))
            {
                let union: std::collections::BTreeSet<ReplayId> =
                    m.values().flatten().copied().collect();
                assert_eq!(s.len(), union.len(), "step {step}");
                for probe in 0..300 {
                    for same in [false, true] {
                        let x = id(probe, same);
                        assert_eq!(s.contains(&x), union.contains(&x), "step {step}");
                    }
                }
            }
        }
        // A block that prunes lists and records ids, then is rolled back, leaves the set as it
        // was (with no copy taken), and a copy taken mid-block is unaffected by the rollback.
        let before = (set.len(), set.clone());
        set.begin_block();
        let keys: Vec<Vec<u8>> = model.keys().take(3).cloned().collect();
        for k in &keys {
            set.remove_list(k);
        }
        set.record_open(id(9_999, false));
        let mid = set.clone();
        set.rollback_block();
        assert_eq!(set.len(), before.0);
        for probe in 0..300 {
            for same in [false, true] {
                let x = id(probe, same);
                assert_eq!(set.contains(&x), before.1.contains(&x));
            }
        }
        assert!(!set.contains(&id(9_999, false)) && mid.contains(&id(9_999, false)));
        for k in &keys {
            let gone: std::collections::BTreeSet<ReplayId> = model
                .iter()
                .filter(|(key, _)| !keys.contains(key))
                .flat_map(|(_, ids)| ids.iter().copied())
                .collect();
            for x in &model[k] {
                assert_eq!(mid.contains(x), gone.contains(x), "pruned in the copy");
            }
        }
        // Pruning again after the rollback forgets them for good.
        for k in &keys {
            set.remove_list(k);
            model.remove(k);
        }
        let union: std::collections::BTreeSet<ReplayId> =
            model.values().flatten().copied().collect();
        assert_eq!(set.len(), union.len());

        // Open ids count until the list that holds them is added.
        let mut s = ReplaySet::default();
        s.record_open(id(1, false));
        s.record_open(id(2, true));
        assert!(s.contains(&id(1, false)) && s.contains(&id(2, true)));
        assert!(!s.contains(&id(2, false)) && !s.contains(&id(3, true)));
        assert_eq!(s.len(), 2);
        let mut ids = [id(1, false), id(2, true)];
        ids.sort_unstable();
        s.add_list(b"k", Arc::new(ids.concat()));
        s.clear_open();
        assert_eq!(s.len(), 2);
        assert!(s.contains(&id(1, false)) && s.contains(&id(2, true)));
        s.remove_list(b"k");
        assert_eq!(s.len(), 0);
        assert!(!s.contains(&id(1, false)));
    }
}

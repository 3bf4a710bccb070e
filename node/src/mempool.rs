//! The validator's transaction pool in a multi-node consortium: signed entries admitted by this
//! node or forwarded by a peer, waiting to be proposed.
//!
//! What it is: a bounded, de-duplicated FIFO keyed by entry id, handed to the consensus
//! proposer through [`consensus::Mempool`](crate::consensus::Mempool). Entries leave it when a
//! block containing them is committed, when a proposal drops them for a permanent reason, or
//! when they are too old for any block to accept (the ledger's entry time window). What it is
//! not: admission (the engine checks signatures and rules before inserting), ordering policy
//! beyond arrival order, or persistence (a restarted node's pool is empty; clients retry).

use crate::consensus::Mempool;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use xinyi_ledger::chain::Dropped;
use xinyi_ledger::state::StateError;
use xinyi_ledger::{Chain, Digest, Entry, TimeMs};

/// Why an entry was not pooled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The pool is at capacity (answered with 429).
    #[error("the mempool is full; retry later")]
    Full,
}

/// The pool's contents.
#[derive(Debug)]
pub struct Pool {
    entries: BTreeMap<Digest, Entry>,
    order: VecDeque<Digest>,
    capacity: usize,
    max_batch: usize,
    window_ms: u64,
}

impl Pool {
    /// A pool of at most `capacity` entries, proposing at most `max_batch` per block and
    /// evicting entries more than `window_ms` older than the block time.
    pub fn new(capacity: usize, max_batch: usize, window_ms: u64) -> Pool {
        Pool {
            entries: BTreeMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            max_batch: max_batch.max(1),
            window_ms,
        }
    }

    /// Adds `entry`; `Ok(false)` if it is already pooled.
    pub fn insert(&mut self, entry: Entry) -> Result<bool, PoolError> {
        if self.entries.contains_key(&entry.id) {
            return Ok(false);
        }
        if self.entries.len() >= self.capacity {
            return Err(PoolError::Full);
        }
        self.order.push_back(entry.id);
        self.entries.insert(entry.id, entry);
        Ok(true)
    }

    /// Whether `id` is pooled.
    pub fn contains(&self, id: &Digest) -> bool {
        self.entries.contains_key(id)
    }

    /// Number of pooled entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets everything (the node stopped validating).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// Removes entries (committed, or refused for good).
    pub fn remove<'a>(&mut self, ids: impl IntoIterator<Item = &'a Digest>) {
        let mut any = false;
        for id in ids {
            any |= self.entries.remove(id).is_some();
        }
        if any {
            let entries = &self.entries;
            self.order.retain(|id| entries.contains_key(id));
        }
    }

    /// Up to `max_batch` entries in arrival order, after evicting those no block at `time`
    /// can accept any more.
    pub fn candidates(&mut self, time: TimeMs) -> Vec<Entry> {
        let window = self.window_ms;
        let old: Vec<Digest> = self
            .entries
            .values()
            .filter(|e| e.body.time.saturating_add(window) < time)
            .map(|e| e.id)
            .collect();
        self.remove(old.iter());
        self.order
            .iter()
            .take(self.max_batch)
            .filter_map(|id| self.entries.get(id).cloned())
            .collect()
    }
}

/// A [`Pool`] shared between the API, the forwarding receiver and the proposer, with a signal
/// that wakes a leader waiting for entries as soon as some arrive (instead of at its next poll).
#[derive(Debug, Clone)]
pub struct SharedPool {
    pool: Arc<Mutex<Pool>>,
    arrivals: Arc<tokio::sync::Notify>,
}

impl SharedPool {
    /// Wraps `pool`.
    pub fn new(pool: Pool) -> SharedPool {
        SharedPool {
            pool: Arc::new(Mutex::new(pool)),
            arrivals: Arc::default(),
        }
    }

    /// Locks the pool.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes whoever waits on [`arrivals`](Self::arrivals) (call after inserting, unlocked).
    pub fn notify_arrival(&self) {
        self.arrivals.notify_waiters();
    }

    /// The signal raised when entries are pooled.
    pub fn arrivals(&self) -> Arc<tokio::sync::Notify> {
        self.arrivals.clone()
    }
}

impl Mempool for SharedPool {
    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn candidates(&mut self, _parent: &Chain, time: TimeMs) -> Vec<Entry> {
        self.lock().candidates(time)
    }

    fn dropped(&mut self, dropped: &[Dropped]) {
        // A replay may only mean "already in an ancestor that is not committed yet": keep it
        // until that ancestor commits (which removes it) or it ages out. Every other reason is
        // final for this entry.
        let gone: Vec<Digest> = dropped
            .iter()
            .filter(|d| !matches!(d.reason, StateError::Replay(_)))
            .map(|d| d.id)
            .collect();
        self.lock().remove(gone.iter());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xinyi_ledger::sample::{sample_firm, SampleConsortium};

    const T0: TimeMs = 1_795_000_000_000;

    fn entries(n: u64, time: TimeMs) -> Vec<Entry> {
        let c = SampleConsortium::new(b"pool", 1, T0);
        (0..n)
            .map(|i| {
                c.registration("gz-credit", &sample_firm(i as u32).unwrap(), time, i)
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn dedups_bounds_and_keeps_arrival_order() {
        let es = entries(4, T0);
        let mut p = Pool::new(3, 2, 60_000);
        assert_eq!(p.insert(es[0].clone()), Ok(true));
        assert_eq!(p.insert(es[0].clone()), Ok(false));
        assert_eq!(p.insert(es[1].clone()), Ok(true));
        assert_eq!(p.insert(es[2].clone()), Ok(true));
        assert_eq!(p.insert(es[3].clone()), Err(PoolError::Full));
        let c: Vec<Digest> = p.candidates(T0).iter().map(|e| e.id).collect();
        assert_eq!(c, vec![es[0].id, es[1].id]);
        p.remove([es[0].id].iter());
        let c: Vec<Digest> = p.candidates(T0).iter().map(|e| e.id).collect();
        assert_eq!(c, vec![es[1].id, es[2].id]);
        assert_eq!(p.insert(es[3].clone()), Ok(true));
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn entries_too_old_for_any_block_are_evicted() {
        let es = entries(2, T0);
        let mut p = Pool::new(10, 10, 60_000);
        p.insert(es[0].clone()).unwrap();
        assert_eq!(p.candidates(T0 + 60_000).len(), 1);
        assert!(p.candidates(T0 + 60_001).is_empty());
        assert!(p.is_empty());
    }

    #[test]
    fn drops_forget_entries_except_replays() {
        let es = entries(2, T0);
        let mut sp = SharedPool::new(Pool::new(10, 10, 60_000));
        sp.lock().insert(es[0].clone()).unwrap();
        sp.lock().insert(es[1].clone()).unwrap();
        sp.dropped(&[
            Dropped {
                id: es[0].id,
                reason: StateError::Replay(es[0].id),
            },
            Dropped {
                id: es[1].id,
                reason: StateError::UnknownAuthor("x".into()),
            },
        ]);
        assert!(sp.lock().contains(&es[0].id));
        assert!(!sp.lock().contains(&es[1].id));
    }
}

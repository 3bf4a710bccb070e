//! The sled store: one database per node, one atomic, flushed batch per block.
//!
//! All data lives in one sled tree under one-byte key prefixes (`specs/storage.md`), so a
//! block — header, certificate, all its entries as one value, per-block firm / organisation
//! index values, and the block's state write set — is written with a single `apply_batch` and
//! flushed before [`Store::append`] returns. Keys are per block, not per entry (a sled key
//! costs far more than its bytes); what is needed per entry — the block of a log position and
//! the position of an entry id — is derived in memory when the store opens, from each block's
//! log index value (its entries' leaf hashes and id prefixes, 40 bytes per entry), which it
//! reads anyway to rebuild the Merkle log; the entries themselves are not read at open. Every
//! value carries a CRC-32 of its key and value; a mismatch is reported as
//! [`StoreError::Corrupt`] naming the key, never used. Opening reloads state and log and checks
//! them against the head header. Full cryptographic re-verification of stored blocks is
//! [`crate::verify`]'s job, not the store's.

use crate::block::{Block, BlockHeader, CommitCertificate};
use crate::chain::{Chain, CommittedBlock};
use crate::codec::{self, CodecError};
use crate::entry::{Author, EntryKind};
use crate::firmtag::FirmTag;
use crate::genesis::{Genesis, GenesisError};
use crate::hash::{self, Digest, Domain};
use crate::merkle::MerkleTree;
use crate::state::{State, StateHead, WriteSet};
use crate::types::OrgId;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

mod prefix {
    pub const META: u8 = b'm';
    pub const HEADER: u8 = b'H';
    pub const CERT: u8 = b'C';
    pub const ENTRIES: u8 = b'E';
    pub const LOG_INDEX: u8 = b'L';
    pub const BY_FIRM: u8 = b'F';
    pub const BY_ORG: u8 = b'O';
    pub const BY_BANK: u8 = b'Q';
    pub const STATE: u8 = b'S';
}

const META_GENESIS: &[u8] = b"mgenesis";
const META_HEAD: &[u8] = b"mhead";
const META_VERSION: &[u8] = b"mversion";
/// 4: the state holds no `N ‖ id` keys; the replay set is derived from the `n` values.
/// 5: a log index value (`L`) per block, so open rebuilds the log without reading entries.
const STORE_VERSION: u32 = 5;
/// The format this build upgrades in place at open (writing the `L` values of every block).
const UPGRADABLE_VERSION: u32 = 4;
/// Bytes per entry in a log index value: leaf hash (32) ‖ first 8 bytes of the entry id.
const LOG_INDEX_ITEM: usize = 40;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an I/O or internal error.
    #[error("storage I/O: {0}")]
    Io(#[from] sled::Error),
    /// A stored value is damaged.
    #[error("damaged data at {location}: {reason}")]
    Corrupt {
        /// Where (key description).
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// Genesis problem.
    #[error("genesis: {0}")]
    Genesis(#[from] GenesisError),
    /// The directory holds no ledger.
    #[error("no ledger in {0}")]
    Missing(String),
    /// The directory holds a ledger of another chain.
    #[error("the store holds chain {stored}, not {wanted}")]
    WrongChain {
        /// Stored chain id.
        stored: Digest,
        /// Expected chain id.
        wanted: Digest,
    },
    /// Block does not follow the stored head.
    #[error("block {got} does not follow stored head {head}")]
    OutOfOrder {
        /// Stored head height.
        head: u64,
        /// Offered height.
        got: u64,
    },
    /// Encoding failure.
    #[error("encoding: {0}")]
    Codec(#[from] CodecError),
}

impl StoreError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Io(_) => "store.io",
            StoreError::Corrupt { .. } => "store.corrupt",
            StoreError::Genesis(_) => "store.genesis",
            StoreError::Missing(_) => "store.missing",
            StoreError::WrongChain { .. } => "store.wrong_chain",
            StoreError::OutOfOrder { .. } => "store.out_of_order",
            StoreError::Codec(_) => "store.codec",
        }
    }
}

fn describe(key: &[u8]) -> String {
    let rest = &key[1.min(key.len())..];
    let num = |b: &[u8]| {
        b.get(..8)
            .and_then(|x| x.try_into().ok())
            .map(u64::from_be_bytes)
    };
    match key.first() {
        Some(&prefix::HEADER) => format!("header of block {}", num(rest).unwrap_or(0)),
        Some(&prefix::CERT) => format!("certificate of block {}", num(rest).unwrap_or(0)),
        Some(&prefix::ENTRIES) => format!("entries of block {}", num(rest).unwrap_or(0)),
        Some(&prefix::LOG_INDEX) => format!("log index of block {}", num(rest).unwrap_or(0)),
        Some(&prefix::STATE) => format!("state key {}", hex::encode(rest)),
        Some(&prefix::META) => format!("metadata {}", String::from_utf8_lossy(rest)),
        _ => format!("key {}", hex::encode(key)),
    }
}

fn seal(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut h = crc32fast::Hasher::new();
    h.update(key);
    h.update(value);
    let mut v = Vec::with_capacity(value.len() + 4);
    v.extend_from_slice(value);
    v.extend_from_slice(&h.finalize().to_le_bytes());
    v
}

fn unseal(key: &[u8], stored: &[u8]) -> Result<Vec<u8>, StoreError> {
    if stored.len() < 4 {
        return Err(StoreError::Corrupt {
            location: describe(key),
            reason: "value shorter than its checksum".into(),
        });
    }
    let (value, crc) = stored.split_at(stored.len() - 4);
    let mut h = crc32fast::Hasher::new();
    h.update(key);
    h.update(value);
    if h.finalize().to_le_bytes() != crc {
        return Err(StoreError::Corrupt {
            location: describe(key),
            reason: "checksum mismatch".into(),
        });
    }
    Ok(value.to_vec())
}

/// File beside sled's own in the store directory recording the last appended block (height and
/// header hash, CRC-sealed; `specs/storage.md` §4.1). sled's recovery treats a damaged log record
/// as the torn end of its log and silently drops everything after it; the marker turns that
/// rollback into `store.corrupt` at open (docs/reliability.md). Written after sled's flush,
/// without fsync: a crash can only leave it behind the store (or empty), never ahead, so it
/// cannot raise a false alarm; a marker behind the store is normal.
const HEAD_MARKER: &str = "xinyi-head";

/// One marker slot: `BE64(height) ‖ header hash ‖ LE32(CRC-32 of the first 40 bytes)`.
const MARKER_SLOT: usize = 44;

fn marker_slot(height: u64, hash: &Digest) -> [u8; MARKER_SLOT] {
    let mut v = [0u8; MARKER_SLOT];
    v[..8].copy_from_slice(&height.to_be_bytes());
    v[8..40].copy_from_slice(hash.as_bytes());
    let crc = crc32fast::hash(&v[..40]);
    v[40..].copy_from_slice(&crc.to_le_bytes());
    v
}

/// The head marker of an open store. The file has two slots; block `h` goes to slot `h % 2`, in
/// place (one positioned write per block: no file created, renamed or opened per block), so a
/// write torn by a crash damages only the slot being written and the other still names the
/// block before. The first write of a session lays out the whole file (both slots) through a
/// temporary file and a rename, which also replaces a one-slot marker of an older build.
struct HeadMarker {
    dir: PathBuf,
    /// The marker file, once this session laid it out.
    file: Mutex<Option<std::fs::File>>,
}

impl HeadMarker {
    fn new(dir: &Path) -> HeadMarker {
        HeadMarker {
            dir: dir.to_path_buf(),
            file: Mutex::new(None),
        }
    }

    /// Records block `height` (best effort: the block is durable in sled already; a marker
    /// that is missing or behind only weakens the check).
    fn write(&self, height: u64, hash: &Digest) {
        use std::os::unix::fs::FileExt as _;
        let slot = marker_slot(height, hash);
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(f) = file.as_ref() {
            let at = (height % 2) * MARKER_SLOT as u64;
            if f.write_all_at(&slot, at).is_ok() {
                return;
            }
        }
        let path = self.dir.join(HEAD_MARKER);
        let tmp = self.dir.join(format!("{HEAD_MARKER}.tmp"));
        *file = None;
        if std::fs::write(&tmp, [slot, slot].concat()).is_ok()
            && std::fs::rename(&tmp, &path).is_ok()
        {
            *file = std::fs::OpenOptions::new().write(true).open(&path).ok();
        }
    }
}

/// The marker, if present and non-empty: the valid slot with the greater height (a one-slot
/// file of an older build is its one slot). A file of another length, or with no valid slot,
/// is `store.corrupt`.
fn read_marker(dir: &Path) -> Result<Option<(u64, Digest)>, StoreError> {
    let v = match std::fs::read(dir.join(HEAD_MARKER)) {
        Ok(v) if v.is_empty() => return Ok(None),
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    let bad = || corrupt(format!("head marker file {HEAD_MARKER}"), "damaged");
    if v.len() != MARKER_SLOT && v.len() != 2 * MARKER_SLOT {
        return Err(bad());
    }
    v.chunks_exact(MARKER_SLOT)
        .filter(|s| crc32fast::hash(&s[..40]).to_le_bytes() == s[40..])
        .map(|s| {
            let mut h = [0u8; 8];
            h.copy_from_slice(&s[..8]);
            let mut d = [0u8; 32];
            d.copy_from_slice(&s[8..40]);
            (u64::from_be_bytes(h), Digest(d))
        })
        .max_by_key(|(h, _)| *h)
        .map(Some)
        .ok_or_else(bad)
}

/// Refuses a store that sled recovered to a point before the marker's block.
fn check_marker(dir: &Path, store: &Store, chain: &Chain) -> Result<(), StoreError> {
    let Some((height, hash)) = read_marker(dir)? else {
        return Ok(());
    };
    let have = store.height()?;
    if height > have {
        return Err(corrupt(
            "block log",
            format!(
                "block {height} was stored but the database holds blocks only up to {have}: \
                 its log is damaged after that point (sled recovery dropped the rest)"
            ),
        ));
    }
    let stored = if height == 0 {
        *chain.chain_id()
    } else {
        match store.header(height)? {
            Some(h) => h.hash()?,
            None => return Err(corrupt(format!("header of block {height}"), "missing")),
        }
    };
    if stored != hash {
        return Err(corrupt(
            format!("header of block {height}"),
            "differs from the block recorded in the head marker",
        ));
    }
    Ok(())
}

/// Opens sled in `dir` without its background flusher (every block is flushed explicitly before
/// `append` returns). sled's other threads release the file lock of a dropped handle a moment
/// after the drop, so opening right after this process closed the database can find it still
/// locked: a lock refusal is retried for up to 5 s (a database held by another process is
/// refused after that; any other error at once).
fn open_db(dir: &Path) -> Result<sled::Db, sled::Error> {
    let mut waited = std::time::Duration::ZERO;
    loop {
        match sled::Config::new().path(dir).flush_every_ms(None).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && waited < std::time::Duration::from_secs(5) =>
            {
                let pause = std::time::Duration::from_millis(2);
                std::thread::sleep(pause);
                waited += pause;
            }
            r => return r,
        }
    }
}

fn k(p: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut v = vec![p];
    for x in parts {
        v.extend_from_slice(x);
    }
    v
}

/// Encodes a block's entries as one value: `BE32(n)` then `n` × (`BE32(len)` ‖ bytes).
fn encode_entries<'a>(entries: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + entries.len() * 512);
    v.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        v.extend_from_slice(&(e.len() as u32).to_be_bytes());
        v.extend_from_slice(e);
    }
    v
}

/// Splits an entries value into its entries (byte ranges of `v`).
fn split_entries(v: &[u8]) -> Option<Vec<std::ops::Range<usize>>> {
    let be32 = |at: usize| -> Option<usize> {
        let b: [u8; 4] = v.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_be_bytes(b) as usize)
    };
    let n = be32(0)?;
    let mut out = Vec::with_capacity(n.min(v.len() / 4));
    let mut at = 4;
    for _ in 0..n {
        let len = be32(at)?;
        at += 4;
        let end = at.checked_add(len)?;
        if end > v.len() {
            return None;
        }
        out.push(at..end);
        at = end;
    }
    (at == v.len()).then_some(out)
}

/// A block's log index value: per entry, in log order, its leaf hash ‖ first 8 bytes of its id.
fn encode_log_index(items: impl ExactSizeIterator<Item = (crate::merkle::Hash, u64)>) -> Vec<u8> {
    let mut v = Vec::with_capacity(items.len() * LOG_INDEX_ITEM);
    for (leaf, id) in items {
        v.extend_from_slice(&leaf);
        v.extend_from_slice(&id.to_be_bytes());
    }
    v
}

/// Splits a log index value into (leaf hash, id prefix) pairs; None if its length is not a
/// multiple of [`LOG_INDEX_ITEM`].
fn split_log_index(v: &[u8]) -> Option<Vec<(crate::merkle::Hash, u64)>> {
    if !v.len().is_multiple_of(LOG_INDEX_ITEM) {
        return None;
    }
    v.chunks_exact(LOG_INDEX_ITEM)
        .map(|c| {
            let (leaf, id) = c.split_at(32);
            Some((
                leaf.try_into().ok()?,
                u64::from_be_bytes(id.try_into().ok()?),
            ))
        })
        .collect()
}

/// Offsets within a block as an index value: concatenated `BE32(offset)`, ascending.
fn encode_offsets(offsets: &[u32]) -> Vec<u8> {
    offsets.iter().flat_map(|o| o.to_be_bytes()).collect()
}

/// What the store derives in memory on open and keeps up to date on append.
#[derive(Default)]
struct Index {
    /// `ends[i]` = log size after block `i + 1`.
    ends: Vec<u64>,
    /// First 8 bytes of an entry id → its position (confirmed against the stored entry on
    /// lookup, so a prefix collision cannot give a wrong answer).
    ids: HashMap<u64, u64>,
    /// Further positions of colliding id prefixes (rare).
    id_collisions: BTreeMap<u64, Vec<u64>>,
}

impl Index {
    fn add_id(&mut self, p: u64, pos: u64) {
        match self.ids.entry(p) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(pos);
            }
            std::collections::hash_map::Entry::Occupied(o) => {
                if *o.get() != pos {
                    self.id_collisions.entry(p).or_default().push(pos);
                }
            }
        }
    }

    fn height(&self) -> u64 {
        self.ends.len() as u64
    }

    fn log_size(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// First position of block `h` (1-based).
    fn first(&self, h: u64) -> u64 {
        if h <= 1 {
            0
        } else {
            self.ends.get(h as usize - 2).copied().unwrap_or(0)
        }
    }

    /// Height of the block holding `pos`.
    fn height_of(&self, pos: u64) -> Option<u64> {
        if pos >= self.log_size() {
            return None;
        }
        // The first block whose end is beyond `pos`.
        Some(self.ends.partition_point(|&e| e <= pos) as u64 + 1)
    }
}

fn id_prefix(id: &Digest) -> u64 {
    hash::prefix64(&id.0)
}

/// A block's entries as read from the store, shared with the cache.
type BlockEntries = Arc<Vec<Vec<u8>>>;

/// A node's ledger database.
pub struct Store {
    db: sled::Db,
    genesis: Genesis,
    chain_id: Digest,
    index: RwLock<Index>,
    /// The last block's entries read (reads of consecutive positions hit one block).
    cache: Mutex<Option<(u64, BlockEntries)>>,
    /// The head marker (set when opened through `open`/`open_or_create`).
    marker: Option<HeadMarker>,
}

/// Persisted head.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct StoredHead {
    state: StateHead,
    log_size: u64,
}

fn corrupt(location: impl Into<String>, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        location: location.into(),
        reason: reason.into(),
    }
}

impl Store {
    fn new(db: sled::Db, genesis: Genesis, chain_id: Digest) -> Store {
        Store {
            db,
            genesis,
            chain_id,
            index: RwLock::new(Index::default()),
            cache: Mutex::new(None),
            marker: None,
        }
    }

    /// Opens the ledger in `dir`, creating it from `genesis` if the directory holds none.
    /// An existing ledger must be of the same chain.
    pub fn open_or_create(dir: &Path, genesis: &Genesis) -> Result<(Store, Chain), StoreError> {
        let db = open_db(dir)?;
        if db.get(META_GENESIS)?.is_some() {
            let (mut store, chain) = Store::load(db, dir)?;
            check_marker(dir, &store, &chain)?;
            store.marker = Some(HeadMarker::new(dir));
            let wanted = genesis.chain_id()?;
            if store.chain_id != wanted {
                return Err(StoreError::WrongChain {
                    stored: store.chain_id,
                    wanted,
                });
            }
            return Ok((store, chain));
        }
        let (chain, ws) = Chain::from_genesis(genesis)?;
        if read_marker(dir)?.is_some() {
            return Err(corrupt(
                "database",
                "the head marker shows a ledger was stored here but the database holds none",
            ));
        }
        let mut store = Store::new(db, genesis.clone(), *chain.chain_id());
        store.marker = Some(HeadMarker::new(dir));
        let mut batch = sled::Batch::default();
        store.put(
            &mut batch,
            META_VERSION.to_vec(),
            &STORE_VERSION.to_be_bytes(),
        );
        store.put(
            &mut batch,
            META_GENESIS.to_vec(),
            genesis.to_json().as_bytes(),
        );
        store.put_state(&mut batch, &ws);
        let head = StoredHead {
            state: chain.state_head(),
            log_size: 0,
        };
        store.put(&mut batch, META_HEAD.to_vec(), &codec::encode(&head)?);
        store.db.apply_batch(batch)?;
        store.db.flush()?;
        if let Some(m) = &store.marker {
            m.write(0, chain.chain_id());
        }
        Ok((store, chain))
    }

    /// Opens an existing ledger.
    pub fn open(dir: &Path) -> Result<(Store, Chain), StoreError> {
        if !dir.exists() {
            return Err(StoreError::Missing(dir.display().to_string()));
        }
        let db = open_db(dir)?;
        if db.get(META_GENESIS)?.is_none() {
            if read_marker(dir)?.is_some() {
                return Err(corrupt(
                    "database",
                    "the head marker shows a ledger was stored here but the database holds none",
                ));
            }
            return Err(StoreError::Missing(dir.display().to_string()));
        }
        let (mut store, chain) = Store::load(db, dir)?;
        check_marker(dir, &store, &chain)?;
        store.marker = Some(HeadMarker::new(dir));
        Ok((store, chain))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.db.get(key)? {
            None => Ok(None),
            Some(v) => unseal(key, &v).map(Some),
        }
    }

    fn put(&self, batch: &mut sled::Batch, key: Vec<u8>, value: &[u8]) {
        let sealed = seal(&key, value);
        batch.insert(key, sealed);
    }

    fn put_state(&self, batch: &mut sled::Batch, ws: &WriteSet) {
        for (key, v) in ws {
            let full = k(prefix::STATE, &[key]);
            match v {
                Some(v) => self.put(batch, full, v),
                None => batch.remove(full),
            }
        }
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn load(db: sled::Db, dir: &Path) -> Result<(Store, Chain), StoreError> {
        let tmp = |db: &sled::Db, key: &[u8]| -> Result<Vec<u8>, StoreError> {
            let v = db
                .get(key)?
                .ok_or_else(|| corrupt(describe(key), "missing"))?;
            unseal(key, &v)
        };
        let version = tmp(&db, META_VERSION)?;
        let upgrade = if version.as_slice() == STORE_VERSION.to_be_bytes() {
            false
        } else if version.as_slice() == UPGRADABLE_VERSION.to_be_bytes() {
            true
        } else {
            return Err(corrupt(
                describe(META_VERSION),
                format!(
                    "store format {}, this build reads format {STORE_VERSION} and upgrades \
                     format {UPGRADABLE_VERSION} (no other migrations before 1.0: recreate the \
                     node's data directory)",
                    hex::encode(&version)
                ),
            ));
        };
        let genesis = Genesis::from_json(&tmp(&db, META_GENESIS)?)?;
        let head: StoredHead = codec::decode("head", &tmp(&db, META_HEAD)?, 1024)
            .map_err(|e| corrupt(describe(META_HEAD), e.to_string()))?;
        let chain_id = genesis.chain_id()?;
        let mut store = Store::new(db, genesis, chain_id);
        let mut kv = Vec::new();
        for item in store.db.scan_prefix([prefix::STATE]) {
            let (key, v) = item?;
            kv.push((key[1..].to_vec(), unseal(&key, &v)?));
        }
        let state = State::restore(&store.genesis, head.state, kv)?;
        // The log and the in-memory indexes are rebuilt from every block's log index value
        // (seal checked; the leaves must give the head header's log root below). The entries
        // are not read: each is checked (seal, layout) when it is read. A format-4 store has no
        // log index: its entries are read instead, once, and the values written before the
        // store is marked format 5.
        let mut leaves = Vec::with_capacity(head.log_size as usize);
        let mut index = Index::default();
        let mut last_header = None;
        let mut upgrade_batch = upgrade.then(sled::Batch::default);
        let scanned = if upgrade {
            prefix::ENTRIES
        } else {
            prefix::LOG_INDEX
        };
        for item in store.db.scan_prefix([scanned]) {
            let (key, v) = item?;
            let expected = index.height() + 1;
            if key.get(1..) != Some(&expected.to_be_bytes()[..]) {
                return Err(corrupt(
                    describe(&key),
                    format!(
                        "expected the {} block {expected}",
                        if upgrade {
                            "entries of"
                        } else {
                            "log index of"
                        }
                    ),
                ));
            }
            let value = unseal(&key, &v)?;
            let items = if upgrade {
                let ranges = split_entries(&value)
                    .ok_or_else(|| corrupt(describe(&key), "entries value is malformed"))?;
                ranges
                    .into_iter()
                    .map(|r| {
                        let bytes = &value[r];
                        (
                            crate::merkle::leaf_hash(bytes),
                            id_prefix(&hash::tagged(Domain::Entry, &[bytes])),
                        )
                    })
                    .collect()
            } else {
                split_log_index(&value)
                    .ok_or_else(|| corrupt(describe(&key), "log index value is malformed"))?
            };
            let header = store
                .header(expected)?
                .ok_or_else(|| corrupt(format!("header of block {expected}"), "missing"))?;
            let first = index.log_size();
            if header.entry_count as usize != items.len()
                || header.log_size != first + items.len() as u64
            {
                return Err(corrupt(
                    describe(&key),
                    format!(
                        "{} entries stored, the header says {} ending at log size {}",
                        items.len(),
                        header.entry_count,
                        header.log_size
                    ),
                ));
            }
            if let Some(batch) = upgrade_batch.as_mut() {
                store.put(
                    batch,
                    k(prefix::LOG_INDEX, &[&expected.to_be_bytes()]),
                    &encode_log_index(items.iter().copied()),
                );
            }
            for (i, (leaf, id)) in items.into_iter().enumerate() {
                leaves.push(leaf);
                index.add_id(id, first + i as u64);
            }
            index.ends.push(header.log_size);
            last_header = Some(header);
        }
        if index.height() != head.state.height {
            return Err(corrupt(
                "block log",
                format!(
                    "entries of {} blocks stored, head says height {}",
                    index.height(),
                    head.state.height
                ),
            ));
        }
        if leaves.len() as u64 != head.log_size {
            return Err(corrupt(
                "entry log",
                format!(
                    "{} leaves stored, head says {}",
                    leaves.len(),
                    head.log_size
                ),
            ));
        }
        // sled keeps every page it has read until its LRU has seen many accesses per shard, so
        // the state and log index pages read once above (≈ 100 MiB at 1M entries) would stay
        // in memory; closing and reopening the database (nothing was written) lets the log
        // and the indexes built next reuse that memory instead. An upgrade keeps the handle
        // open: it writes below.
        if upgrade_batch.is_none() {
            let Store {
                db,
                genesis,
                chain_id,
                ..
            } = store;
            drop(db);
            store = Store::new(open_db(dir)?, genesis, chain_id);
        }
        let log = MerkleTree::from_leaf_hashes(leaves);
        if let Some(h) = &last_header {
            if h.log_root.0 != log.root() || h.log_size != log.size() {
                return Err(corrupt(
                    "entry log",
                    "stored leaves do not give the head header's log root",
                ));
            }
            if h.state_root != head.state.root {
                return Err(corrupt(
                    describe(META_HEAD),
                    "state root differs from the head header's",
                ));
            }
        }
        if let Some(mut batch) = upgrade_batch {
            // Everything checked: write the log index values and the new format in one batch.
            store.put(
                &mut batch,
                META_VERSION.to_vec(),
                &STORE_VERSION.to_be_bytes(),
            );
            store.db.apply_batch(batch)?;
            store.db.flush()?;
        }
        *store
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = index;
        let chain = Chain::restore(&store.genesis, state, log, last_header)?;
        Ok((store, chain))
    }

    /// Genesis of the stored chain.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// Appends a committed block atomically and durably.
    pub fn append(&self, b: &CommittedBlock) -> Result<(), StoreError> {
        let height = b.block.header.height;
        let stored = self.index().height();
        if height != stored + 1 {
            return Err(StoreError::OutOfOrder {
                head: stored,
                got: height,
            });
        }
        let hb = height.to_be_bytes();
        let mut batch = sled::Batch::default();
        self.put(
            &mut batch,
            k(prefix::HEADER, &[&hb]),
            &b.block.header.encode()?,
        );
        self.put(
            &mut batch,
            k(prefix::CERT, &[&hb]),
            &b.certificate.encode()?,
        );
        self.put(
            &mut batch,
            k(prefix::ENTRIES, &[&hb]),
            &encode_entries(b.entries.iter().map(|e| e.bytes.as_slice())),
        );
        self.put(
            &mut batch,
            k(prefix::LOG_INDEX, &[&hb]),
            &encode_log_index(
                b.entries
                    .iter()
                    .map(|e| (crate::merkle::leaf_hash(&e.bytes), id_prefix(&e.id))),
            ),
        );
        let mut by_firm: BTreeMap<&[u8; 32], Vec<u32>> = BTreeMap::new();
        let mut by_org: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        let mut by_bank: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for (i, e) in b.entries.iter().enumerate() {
            let bank = match &e.body.kind {
                EntryKind::QueryServed(q) => Some(&q.request.request.bank),
                EntryKind::QueryDenied { request, .. } => Some(&request.request.bank),
                EntryKind::AlertsDelivered(a) => Some(&a.bank),
                _ => None,
            };
            if let Some(bank) = bank {
                by_bank.entry(bank.as_str()).or_default().push(i as u32);
            }
            if let Some(f) = b.firms.get(i).and_then(Option::as_ref) {
                by_firm.entry(f.as_bytes()).or_default().push(i as u32);
            }
            if let Author::Org(o) = &e.body.author {
                by_org.entry(o.as_str()).or_default().push(i as u32);
            }
        }
        for (f, offs) in &by_firm {
            self.put(
                &mut batch,
                k(prefix::BY_FIRM, &[&f[..], &hb]),
                &encode_offsets(offs),
            );
        }
        for (o, offs) in &by_org {
            self.put(
                &mut batch,
                k(prefix::BY_ORG, &[o.as_bytes(), &[0], &hb]),
                &encode_offsets(offs),
            );
        }
        for (o, offs) in &by_bank {
            self.put(
                &mut batch,
                k(prefix::BY_BANK, &[o.as_bytes(), &[0], &hb]),
                &encode_offsets(offs),
            );
        }
        self.put_state(&mut batch, &b.write_set);
        let new_head = StoredHead {
            state: StateHead {
                height,
                time: b.block.header.time,
                root: b.block.header.state_root,
            },
            log_size: b.block.header.log_size,
        };
        self.put(&mut batch, META_HEAD.to_vec(), &codec::encode(&new_head)?);
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        if let Some(m) = &self.marker {
            m.write(height, &b.header_hash);
        }
        let mut index = self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (i, e) in b.entries.iter().enumerate() {
            index.add_id(id_prefix(&e.id), b.first_position + i as u64);
        }
        index.ends.push(b.block.header.log_size);
        Ok(())
    }

    /// Height of the last stored block (0 = genesis only).
    pub fn height(&self) -> Result<u64, StoreError> {
        Ok(self.index().height())
    }

    /// Header at `height`.
    pub fn header(&self, height: u64) -> Result<Option<BlockHeader>, StoreError> {
        let key = k(prefix::HEADER, &[&height.to_be_bytes()]);
        match self.get(&key)? {
            None => Ok(None),
            Some(v) => codec::decode("header", &v, crate::block::MAX_HEADER_BYTES)
                .map(Some)
                .map_err(|e| corrupt(describe(&key), e.to_string())),
        }
    }

    /// Certificate of block `height`.
    pub fn certificate(&self, height: u64) -> Result<Option<CommitCertificate>, StoreError> {
        let key = k(prefix::CERT, &[&height.to_be_bytes()]);
        match self.get(&key)? {
            None => Ok(None),
            Some(v) => CommitCertificate::decode(&v)
                .map(Some)
                .map_err(|e| corrupt(describe(&key), e.to_string())),
        }
    }

    /// The entries of block `height` (from the one-block cache when it holds them).
    fn block_entries(&self, height: u64) -> Result<Option<BlockEntries>, StoreError> {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((h, e)) = cache.as_ref() {
            if *h == height {
                return Ok(Some(e.clone()));
            }
        }
        let key = k(prefix::ENTRIES, &[&height.to_be_bytes()]);
        let Some(value) = self.get(&key)? else {
            return Ok(None);
        };
        let ranges = split_entries(&value)
            .ok_or_else(|| corrupt(describe(&key), "entries value is malformed"))?;
        // Open rebuilt the log from the log index, not from this value: its entry count must
        // be the one the log has for this block.
        let expected = {
            let index = self.index();
            (height >= 1 && height <= index.height())
                .then(|| index.ends[height as usize - 1] - index.first(height))
        };
        if let Some(n) = expected.filter(|&n| n != ranges.len() as u64) {
            return Err(corrupt(
                describe(&key),
                format!("{} entries stored, the log has {n}", ranges.len()),
            ));
        }
        let entries: BlockEntries =
            Arc::new(ranges.into_iter().map(|r| value[r].to_vec()).collect());
        *cache = Some((height, entries.clone()));
        Ok(Some(entries))
    }

    /// Stored bytes of the entry at log `position`.
    pub fn entry(&self, position: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let (height, first) = {
            let index = self.index();
            match index.height_of(position) {
                None => return Ok(None),
                Some(h) => (h, index.first(h)),
            }
        };
        let entries = self
            .block_entries(height)?
            .ok_or_else(|| corrupt(format!("entries of block {height}"), "missing"))?;
        let at = (position - first) as usize;
        entries.get(at).cloned().map(Some).ok_or_else(|| {
            corrupt(
                format!("entries of block {height}"),
                format!("no entry at log position {position}"),
            )
        })
    }

    /// Log position of the entry with this id.
    pub fn position_of(&self, id: &Digest) -> Result<Option<u64>, StoreError> {
        let p = id_prefix(id);
        let candidates: Vec<u64> = {
            let index = self.index();
            let mut c: Vec<u64> = index.ids.get(&p).copied().into_iter().collect();
            if let Some(more) = index.id_collisions.get(&p) {
                c.extend(more);
            }
            c
        };
        for pos in candidates {
            if let Some(bytes) = self.entry(pos)? {
                if hash::tagged(Domain::Entry, &[&bytes]) == *id {
                    return Ok(Some(pos));
                }
            }
        }
        Ok(None)
    }

    /// The block with its certificate.
    pub fn block(&self, height: u64) -> Result<Option<(Block, CommitCertificate)>, StoreError> {
        let Some(header) = self.header(height)? else {
            return Ok(None);
        };
        let cert = self
            .certificate(height)?
            .ok_or_else(|| corrupt(format!("certificate of block {height}"), "missing"))?;
        let entries = self
            .block_entries(height)?
            .ok_or_else(|| corrupt(format!("entries of block {height}"), "missing"))?;
        if entries.len() != header.entry_count as usize {
            return Err(corrupt(
                format!("entries of block {height}"),
                format!(
                    "{} entries stored, the header says {}",
                    entries.len(),
                    header.entry_count
                ),
            ));
        }
        let entries = entries
            .iter()
            .map(|e| serde_bytes::ByteBuf::from(e.clone()))
            .collect();
        Ok(Some((Block { header, entries }, cert)))
    }

    /// Height of the block holding log position `position`.
    pub fn height_of_position(&self, position: u64) -> Result<Option<u64>, StoreError> {
        Ok(self.index().height_of(position))
    }

    /// Positions from per-block index values under `pfx` (`pfx ‖ BE64(height)` → offsets).
    fn positions(
        &self,
        pfx: Vec<u8>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let from_height = match after {
            Some(p) => match self.index().height_of(p) {
                Some(h) => h,
                None => return Ok(Vec::new()),
            },
            None => 1,
        };
        let mut start = pfx.clone();
        start.extend_from_slice(&from_height.to_be_bytes());
        let mut out = Vec::new();
        for item in self.db.range(start..) {
            if out.len() >= limit {
                break;
            }
            let (key, v) = item?;
            if !key.starts_with(&pfx) {
                break;
            }
            let where_ = || format!("index key {}", hex::encode(&key));
            let hb: [u8; 8] = key[pfx.len()..]
                .try_into()
                .map_err(|_| corrupt(where_(), "bad height"))?;
            let height = u64::from_be_bytes(hb);
            let value = unseal(&key, &v)?;
            if value.len() % 4 != 0 {
                return Err(corrupt(where_(), "offsets are not 4-byte values"));
            }
            let (first, end) = {
                let index = self.index();
                if height == 0 {
                    return Err(corrupt(where_(), "height 0 holds no entries"));
                }
                if height > index.height() {
                    // A block being stored right now: its index keys are written before the
                    // in-memory position index learns its height. Keys are in height order, so
                    // nothing after this one is visible yet either.
                    break;
                }
                (index.first(height), index.ends[height as usize - 1])
            };
            for c in value.chunks_exact(4) {
                let mut b = [0u8; 4];
                b.copy_from_slice(c);
                let pos = first + u64::from(u32::from_be_bytes(b));
                if pos >= end {
                    return Err(corrupt(where_(), "offset beyond the block"));
                }
                if after.is_some_and(|a| pos <= a) {
                    continue;
                }
                if out.len() >= limit {
                    break;
                }
                out.push(pos);
            }
        }
        Ok(out)
    }

    /// Log positions of entries concerning `firm`, in order, after position `after`.
    pub fn firm_positions(
        &self,
        firm: &FirmTag,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        self.positions(k(prefix::BY_FIRM, &[firm.as_bytes()]), after, limit)
    }

    /// Log positions of entries signed by `org`, in order, after position `after`.
    pub fn org_positions(
        &self,
        org: &OrgId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        self.positions(
            k(prefix::BY_ORG, &[org.as_str().as_bytes(), &[0]]),
            after,
            limit,
        )
    }

    /// Log positions of query records (`query_served`, `query_denied`) and alert deliveries
    /// (`alerts_delivered`) naming `bank` as the querying or alerted bank, in order, after position `after`.
    pub fn bank_query_positions(
        &self,
        bank: &OrgId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        self.positions(
            k(prefix::BY_BANK, &[bank.as_str().as_bytes(), &[0]]),
            after,
            limit,
        )
    }

    /// Bytes on disk (sled's estimate).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Flushes and closes (dropping also closes; this reports flush errors).
    pub fn close(self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Entry;
    use crate::sample::{sample_firm, SampleConsortium};
    use crate::types::TimeMs;

    const T0: TimeMs = 1_795_000_000_000;

    /// A store with `blocks` blocks of `per` firm registrations each; returns the entries.
    fn filled(dir: &Path, blocks: u32, per: u32) -> (SampleConsortium, Vec<Entry>) {
        let c = SampleConsortium::new(b"store-tests", 1, T0);
        let (store, mut chain) = Store::open_or_create(dir, &c.genesis).unwrap();
        let mut all = Vec::new();
        for b in 0..blocks {
            let time = T0 + 10 + u64::from(b);
            let entries: Vec<Entry> = (b * per..(b + 1) * per)
                .map(|i| {
                    c.registration("gz-credit", &sample_firm(i).unwrap(), time, u64::from(i))
                        .unwrap()
                })
                .collect();
            all.extend(entries.clone());
            let proposer = OrgId::new("gz-credit").unwrap();
            let (block, dropped) = chain.build_block(time, proposer, entries).unwrap();
            assert!(dropped.is_empty());
            let cert = c.certify(&block).unwrap();
            store.append(&chain.commit_built(cert).unwrap()).unwrap();
        }
        (c, all)
    }

    #[test]
    fn per_block_values_serve_every_per_entry_read_before_and_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (c, all) = filled(dir.path(), 4, 3);
        let (store, chain) = Store::open(dir.path()).unwrap();
        assert_eq!(store.height().unwrap(), 4);
        assert_eq!(chain.log().size(), 12);
        for (pos, e) in all.iter().enumerate() {
            let pos = pos as u64;
            assert_eq!(store.entry(pos).unwrap().unwrap(), e.bytes);
            assert_eq!(store.position_of(&e.id).unwrap(), Some(pos));
            assert_eq!(store.height_of_position(pos).unwrap(), Some(pos / 3 + 1));
        }
        assert_eq!(store.entry(12).unwrap(), None);
        assert_eq!(store.height_of_position(12).unwrap(), None);
        assert_eq!(store.position_of(&Digest([9; 32])).unwrap(), None);
        // Each registration concerns its own firm.
        let f7 = c.tag(&sample_firm(7).unwrap());
        assert_eq!(store.firm_positions(&f7, None, 10).unwrap(), vec![7]);
        assert!(store.firm_positions(&f7, Some(7), 10).unwrap().is_empty());
        let org = OrgId::new("gz-credit").unwrap();
        assert_eq!(
            store.org_positions(&org, None, 100).unwrap(),
            (0..12).collect::<Vec<u64>>()
        );
        assert_eq!(
            store.org_positions(&org, Some(4), 3).unwrap(),
            vec![5, 6, 7]
        );
        let (b2, _) = store.block(2).unwrap().unwrap();
        assert_eq!(b2.entries.len(), 3);
        assert_eq!(b2.entries[0].as_ref(), all[3].bytes.as_slice());
    }

    fn poke(dir: &Path, key: &[u8], f: impl FnOnce(&mut Vec<u8>)) {
        let db = open_db(dir).unwrap();
        let mut v = db.get(key).unwrap().unwrap().to_vec();
        f(&mut v);
        db.insert(key, v).unwrap();
        db.flush().unwrap();
    }

    #[test]
    fn index_keys_of_a_block_still_being_stored_are_not_read() {
        // `put_block` writes a block's index keys before the in-memory position index learns
        // its height; a reader in between must see the earlier blocks, not an error.
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 2, 2);
        let org = OrgId::new("gz-credit").unwrap();
        let next = k(
            prefix::BY_ORG,
            &[org.as_str().as_bytes(), &[0], &3u64.to_be_bytes()],
        );
        {
            let db = open_db(dir.path()).unwrap();
            db.insert(next.as_slice(), seal(&next, &0u32.to_be_bytes()))
                .unwrap();
            db.flush().unwrap();
        }
        let (store, _) = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.org_positions(&org, None, 10).unwrap(),
            vec![0, 1, 2, 3]
        );
    }

    #[test]
    fn damaged_index_value_is_reported_with_its_key_when_read() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 2, 2);
        let org = OrgId::new("gz-credit").unwrap();
        poke(
            dir.path(),
            &k(
                prefix::BY_ORG,
                &[org.as_str().as_bytes(), &[0], &2u64.to_be_bytes()],
            ),
            |v| v[0] ^= 1,
        );
        let (store, _) = Store::open(dir.path()).unwrap();
        let e = store.org_positions(&org, None, 10).unwrap_err();
        assert_eq!(e.code(), "store.corrupt");
        assert!(e.to_string().contains("checksum"), "{e}");
    }

    #[test]
    fn missing_block_and_other_format_version_are_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 3, 1);
        {
            let db = open_db(dir.path()).unwrap();
            db.remove(k(prefix::LOG_INDEX, &[&2u64.to_be_bytes()]))
                .unwrap();
            db.flush().unwrap();
        }
        let e = Store::open(dir.path()).err().unwrap();
        assert_eq!(e.code(), "store.corrupt");
        assert!(
            e.to_string().contains("expected the log index of block 2"),
            "{e}"
        );

        // Format 1, and format 3 (which kept the replay set as `N ‖ id` state keys).
        for old in [1u32, 3] {
            let dir = tempfile::tempdir().unwrap();
            filled(dir.path(), 1, 1);
            {
                let db = open_db(dir.path()).unwrap();
                db.insert(META_VERSION, seal(META_VERSION, &old.to_be_bytes()))
                    .unwrap();
                db.flush().unwrap();
            }
            let e = Store::open(dir.path()).err().unwrap();
            assert_eq!(e.code(), "store.corrupt");
            assert!(e.to_string().contains("format"), "{e}");
        }
    }

    /// Flips one byte of the stored value under `key` (its seal then fails).
    fn damage(dir: &Path, key: &[u8], at: usize) {
        let db = open_db(dir).unwrap();
        let mut v = db.get(key).unwrap().unwrap().to_vec();
        v[at] ^= 0x40;
        db.insert(key, v).unwrap();
        db.flush().unwrap();
    }

    /// Open rebuilds the log from the log index values and never reads an entries value: a
    /// damaged log index value (or one of the wrong length, or naming other leaves) is refused
    /// at open by name; a damaged entries value opens and is refused, by name, by the read that
    /// meets it, while the other blocks' entries still read.
    #[test]
    fn open_checks_the_log_index_and_reads_check_the_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (_, all) = filled(dir.path(), 3, 2);
        let l2 = k(prefix::LOG_INDEX, &[&2u64.to_be_bytes()]);
        let e2 = k(prefix::ENTRIES, &[&2u64.to_be_bytes()]);
        let original = open_db(dir.path()).unwrap().get(&l2).unwrap().unwrap();

        damage(dir.path(), &l2, 5);
        let e = Store::open(dir.path()).err().unwrap();
        assert_eq!(e.code(), "store.corrupt");
        assert!(e.to_string().contains("log index of block 2"), "{e}");

        // Well sealed but one byte short, then a whole item short, then other leaves.
        let sealed = |v: &[u8]| seal(&l2, v);
        let body = &original[..original.len() - 4];
        for (bad, says) in [
            (
                sealed(&body[..body.len() - 1]),
                "log index value is malformed",
            ),
            (
                sealed(&body[..LOG_INDEX_ITEM]),
                "1 entries stored, the header says 2",
            ),
            (
                sealed(&[&body[LOG_INDEX_ITEM..], &body[..LOG_INDEX_ITEM]].concat()),
                "stored leaves do not give the head header's log root",
            ),
        ] {
            let db = open_db(dir.path()).unwrap();
            db.insert(&l2, bad).unwrap();
            db.flush().unwrap();
            drop(db);
            let e = Store::open(dir.path()).err().unwrap();
            assert_eq!(e.code(), "store.corrupt");
            assert!(e.to_string().contains(says), "{e}");
        }
        let db = open_db(dir.path()).unwrap();
        db.insert(&l2, original).unwrap();
        db.flush().unwrap();
        drop(db);

        damage(dir.path(), &e2, 9);
        let (store, chain) = Store::open(dir.path()).unwrap();
        assert_eq!(chain.log().size(), 6);
        assert_eq!(store.entry(1).unwrap().unwrap(), all[1].bytes);
        let e = store.entry(2).err().unwrap();
        assert_eq!(e.code(), "store.corrupt");
        assert!(e.to_string().contains("entries of block 2"), "{e}");
        assert_eq!(store.entry(4).unwrap().unwrap(), all[4].bytes);
        assert_eq!(store.position_of(&all[5].id).unwrap(), Some(5));
    }

    /// A format-4 store (no log index values) is upgraded at open: its entries are read once,
    /// the log index values and format 5 are written, and the store then reads exactly as a
    /// store written by this build; a damaged entries value stops the upgrade (nothing is
    /// written).
    #[test]
    fn format_4_store_is_upgraded_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (_, all) = filled(dir.path(), 3, 2);
        let (root, values) = {
            let (_, chain) = Store::open(dir.path()).unwrap();
            let db = open_db(dir.path()).unwrap();
            let values: Vec<_> = db
                .scan_prefix([prefix::LOG_INDEX])
                .map(|r| r.unwrap())
                .collect();
            (chain.log().root(), values)
        };
        assert_eq!(values.len(), 3);
        let downgrade = || {
            let db = open_db(dir.path()).unwrap();
            for (key, _) in &values {
                db.remove(key).unwrap();
            }
            db.insert(META_VERSION, seal(META_VERSION, &4u32.to_be_bytes()))
                .unwrap();
            db.flush().unwrap();
        };
        downgrade();
        damage(dir.path(), &k(prefix::ENTRIES, &[&3u64.to_be_bytes()]), 3);
        let e = Store::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("entries of block 3"), "{e}");
        {
            let db = open_db(dir.path()).unwrap();
            assert_eq!(db.scan_prefix([prefix::LOG_INDEX]).count(), 0);
            assert_eq!(
                unseal(META_VERSION, &db.get(META_VERSION).unwrap().unwrap()).unwrap(),
                4u32.to_be_bytes()
            );
        }
        // Undo the damage.
        damage(dir.path(), &k(prefix::ENTRIES, &[&3u64.to_be_bytes()]), 3);

        let (store, chain) = Store::open(dir.path()).unwrap();
        assert_eq!(chain.log().root(), root);
        assert_eq!(store.position_of(&all[3].id).unwrap(), Some(3));
        drop((store, chain));
        let db = open_db(dir.path()).unwrap();
        let rewritten: Vec<_> = db
            .scan_prefix([prefix::LOG_INDEX])
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(rewritten, values, "the upgrade writes what append writes");
        assert_eq!(
            unseal(META_VERSION, &db.get(META_VERSION).unwrap().unwrap()).unwrap(),
            STORE_VERSION.to_be_bytes()
        );
        drop(db);
        let (store, chain) = Store::open(dir.path()).unwrap();
        assert_eq!(chain.log().root(), root);
        for (pos, e) in all.iter().enumerate() {
            assert_eq!(store.entry(pos as u64).unwrap().unwrap(), e.bytes);
            assert_eq!(store.position_of(&e.id).unwrap(), Some(pos as u64));
        }
    }

    /// The marker has two slots written in place: after 5 blocks they name blocks 5 and 4; a
    /// slot torn by a crash falls back to the other (behind the store, which is normal); a
    /// marker with no valid slot or of another length is `store.corrupt`; a one-slot marker of
    /// an older build is read and replaced by the first append.
    #[test]
    fn head_marker_slots_survive_a_torn_write_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 5, 1);
        let path = dir.path().join(HEAD_MARKER);
        let file = std::fs::read(&path).unwrap();
        assert_eq!(file.len(), 2 * MARKER_SLOT);
        let slot_height = |i: usize| {
            u64::from_be_bytes(
                file[i * MARKER_SLOT..i * MARKER_SLOT + 8]
                    .try_into()
                    .unwrap(),
            )
        };
        assert_eq!((slot_height(0), slot_height(1)), (4, 5));
        let (store, _) = Store::open(dir.path()).unwrap();
        let h5 = store.header(5).unwrap().unwrap().hash().unwrap();
        let h4 = store.header(4).unwrap().unwrap().hash().unwrap();
        drop(store);
        assert_eq!(read_marker(dir.path()).unwrap(), Some((5, h5)));

        // Block 5's slot torn: the marker names block 4 and the store opens.
        let mut torn = file.clone();
        torn[MARKER_SLOT + 3] ^= 0xff;
        std::fs::write(&path, &torn).unwrap();
        assert_eq!(read_marker(dir.path()).unwrap(), Some((4, h4)));
        Store::open(dir.path()).unwrap();

        // Both slots damaged, or a file of another length: refused.
        for bad in [
            {
                let mut b = file.clone();
                b[3] ^= 1;
                b[MARKER_SLOT + 3] ^= 1;
                b
            },
            file[..=MARKER_SLOT].to_vec(),
        ] {
            std::fs::write(&path, &bad).unwrap();
            let e = Store::open(dir.path()).err().unwrap();
            assert_eq!(e.code(), "store.corrupt");
            assert!(e.to_string().contains("head marker"), "{e}");
        }

        // A valid slot naming a block the store does not hold (sled rolled back): refused.
        std::fs::write(&path, [marker_slot(4, &h4), marker_slot(9, &h5)].concat()).unwrap();
        let e = Store::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("block 9 was stored"), "{e}");

        // An older build's one-slot marker is read, then laid out in two slots on append.
        std::fs::write(&path, marker_slot(5, &h5)).unwrap();
        let c = SampleConsortium::new(b"store-tests", 1, T0);
        let (store, mut chain) = Store::open(dir.path()).unwrap();
        let e = c
            .registration("gz-credit", &sample_firm(99).unwrap(), T0 + 100, 99)
            .unwrap();
        let proposer = OrgId::new("gz-credit").unwrap();
        let (block, _) = chain.build_block(T0 + 100, proposer, vec![e]).unwrap();
        let cert = c.certify(&block).unwrap();
        let b6 = chain.commit_built(cert).unwrap();
        store.append(&b6).unwrap();
        assert_eq!(read_marker(dir.path()).unwrap(), Some((6, b6.header_hash)));
        assert_eq!(std::fs::read(&path).unwrap().len(), 2 * MARKER_SLOT);
    }
}

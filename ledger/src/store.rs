//! The sled store: one database per node, one atomic, flushed batch per block.
//!
//! All data lives in one sled tree under one-byte key prefixes (`specs/storage.md`), so a
//! block — header, certificate, entries, Merkle leaves, indexes by entry id / firm /
//! organisation, and the block's state write set — is written with a single `apply_batch` and
//! flushed before [`Store::append`] returns. Every value carries a CRC-32 of its key and value;
//! a mismatch is reported as [`StoreError::Corrupt`] naming the key, never used. Opening
//! reloads state and log and checks them against the head header. Full cryptographic
//! re-verification of stored blocks is [`crate::verify`]'s job, not the store's.

use crate::block::{Block, BlockHeader, CommitCertificate};
use crate::chain::{Chain, CommittedBlock};
use crate::codec::{self, CodecError};
use crate::entry::Author;
use crate::genesis::{Genesis, GenesisError};
use crate::hash::Digest;
use crate::merkle::MerkleTree;
use crate::state::{State, StateHead, WriteSet};
use crate::types::OrgId;
use crate::uscc::Uscc;
use std::path::Path;

mod prefix {
    pub const META: u8 = b'm';
    pub const HEADER: u8 = b'H';
    pub const CERT: u8 = b'C';
    pub const ENTRY: u8 = b'E';
    pub const BY_ID: u8 = b'I';
    pub const BY_FIRM: u8 = b'F';
    pub const BY_ORG: u8 = b'O';
    pub const STATE: u8 = b'S';
}

const META_GENESIS: &[u8] = b"mgenesis";
const META_HEAD: &[u8] = b"mhead";
const META_VERSION: &[u8] = b"mversion";
const STORE_VERSION: u32 = 1;

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
        Some(&prefix::ENTRY) => format!("entry at log position {}", num(rest).unwrap_or(0)),
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

/// Opens sled without its background flusher: every block is flushed explicitly before
/// `append` returns, and without the flusher thread a dropped store releases the directory
/// at once (so it can be reopened in the same process).
fn open_db(dir: &Path) -> Result<sled::Db, sled::Error> {
    sled::Config::new().path(dir).flush_every_ms(None).open()
}

fn k(p: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut v = vec![p];
    for x in parts {
        v.extend_from_slice(x);
    }
    v
}

/// A node's ledger database.
pub struct Store {
    db: sled::Db,
    genesis: Genesis,
    chain_id: Digest,
}

/// Persisted head.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct StoredHead {
    state: StateHead,
    log_size: u64,
}

impl Store {
    /// Opens the ledger in `dir`, creating it from `genesis` if the directory holds none.
    /// An existing ledger must be of the same chain.
    pub fn open_or_create(dir: &Path, genesis: &Genesis) -> Result<(Store, Chain), StoreError> {
        let db = open_db(dir)?;
        if db.get(META_GENESIS)?.is_some() {
            let (store, chain) = Store::load(db)?;
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
        let store = Store {
            db,
            genesis: genesis.clone(),
            chain_id: *chain.chain_id(),
        };
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
        Ok((store, chain))
    }

    /// Opens an existing ledger.
    pub fn open(dir: &Path) -> Result<(Store, Chain), StoreError> {
        if !dir.exists() {
            return Err(StoreError::Missing(dir.display().to_string()));
        }
        let db = open_db(dir)?;
        if db.get(META_GENESIS)?.is_none() {
            return Err(StoreError::Missing(dir.display().to_string()));
        }
        Store::load(db)
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

    fn load(db: sled::Db) -> Result<(Store, Chain), StoreError> {
        let tmp = |db: &sled::Db, key: &[u8]| -> Result<Vec<u8>, StoreError> {
            let v = db.get(key)?.ok_or_else(|| StoreError::Corrupt {
                location: describe(key),
                reason: "missing".into(),
            })?;
            unseal(key, &v)
        };
        let genesis = Genesis::from_json(&tmp(&db, META_GENESIS)?)?;
        let head: StoredHead = codec::decode("head", &tmp(&db, META_HEAD)?, 1024).map_err(|e| {
            StoreError::Corrupt {
                location: describe(META_HEAD),
                reason: e.to_string(),
            }
        })?;
        let chain_id = genesis.chain_id()?;
        let store = Store {
            db,
            genesis,
            chain_id,
        };
        let mut kv = Vec::new();
        for item in store.db.scan_prefix([prefix::STATE]) {
            let (key, v) = item?;
            kv.push((key[1..].to_vec(), unseal(&key, &v)?));
        }
        let state = State::restore(&store.genesis, head.state, kv)?;
        // The log is rebuilt from the stored entries themselves (no separate leaf keys): every
        // entry is read, its seal checked and its leaf hash recomputed.
        let mut leaves = Vec::with_capacity(head.log_size as usize);
        for item in store.db.scan_prefix([prefix::ENTRY]) {
            let (key, v) = item?;
            let expected = leaves.len() as u64;
            if key.get(1..) != Some(&expected.to_be_bytes()[..]) {
                return Err(StoreError::Corrupt {
                    location: describe(&key),
                    reason: format!("expected the entry at log position {expected}"),
                });
            }
            leaves.push(crate::merkle::leaf_hash(&unseal(&key, &v)?));
        }
        if leaves.len() as u64 != head.log_size {
            return Err(StoreError::Corrupt {
                location: "entry log".into(),
                reason: format!(
                    "{} leaves stored, head says {}",
                    leaves.len(),
                    head.log_size
                ),
            });
        }
        let log = MerkleTree::from_leaf_hashes(leaves);
        let header = if head.state.height == 0 {
            None
        } else {
            Some(
                store
                    .header(head.state.height)?
                    .ok_or_else(|| StoreError::Corrupt {
                        location: format!("header of block {}", head.state.height),
                        reason: "missing".into(),
                    })?,
            )
        };
        if let Some(h) = &header {
            if h.log_root.0 != log.root() || h.log_size != log.size() {
                return Err(StoreError::Corrupt {
                    location: "entry log".into(),
                    reason: "stored leaves do not give the head header's log root".into(),
                });
            }
            if h.state_root != head.state.root {
                return Err(StoreError::Corrupt {
                    location: describe(META_HEAD),
                    reason: "state root differs from the head header's".into(),
                });
            }
        }
        let chain = Chain::restore(&store.genesis, state, log, header)?;
        Ok((store, chain))
    }

    /// Genesis of the stored chain.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// Appends a committed block atomically and durably.
    pub fn append(&self, b: &CommittedBlock) -> Result<(), StoreError> {
        let height = b.block.header.height;
        let head = self.head()?;
        if height != head.state.height + 1 {
            return Err(StoreError::OutOfOrder {
                head: head.state.height,
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
        for (i, e) in b.entries.iter().enumerate() {
            let pos = (b.first_position + i as u64).to_be_bytes();
            self.put(&mut batch, k(prefix::ENTRY, &[&pos]), &e.bytes);
            self.put(&mut batch, k(prefix::BY_ID, &[e.id.as_bytes()]), &pos);
            if let Some(f) = b.firms.get(i).copied().flatten() {
                self.put(
                    &mut batch,
                    k(prefix::BY_FIRM, &[f.as_str().as_bytes(), &pos]),
                    &[],
                );
            }
            if let Author::Org(o) = &e.body.author {
                self.put(
                    &mut batch,
                    k(prefix::BY_ORG, &[o.as_str().as_bytes(), &[0], &pos]),
                    &[],
                );
            }
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
        Ok(())
    }

    fn head(&self) -> Result<StoredHead, StoreError> {
        let v = self.get(META_HEAD)?.ok_or_else(|| StoreError::Corrupt {
            location: describe(META_HEAD),
            reason: "missing".into(),
        })?;
        codec::decode("head", &v, 1024).map_err(|e| StoreError::Corrupt {
            location: describe(META_HEAD),
            reason: e.to_string(),
        })
    }

    /// Height of the last stored block (0 = genesis only).
    pub fn height(&self) -> Result<u64, StoreError> {
        Ok(self.head()?.state.height)
    }

    /// Header at `height`.
    pub fn header(&self, height: u64) -> Result<Option<BlockHeader>, StoreError> {
        let key = k(prefix::HEADER, &[&height.to_be_bytes()]);
        match self.get(&key)? {
            None => Ok(None),
            Some(v) => codec::decode("header", &v, crate::block::MAX_HEADER_BYTES)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    location: describe(&key),
                    reason: e.to_string(),
                }),
        }
    }

    /// Certificate of block `height`.
    pub fn certificate(&self, height: u64) -> Result<Option<CommitCertificate>, StoreError> {
        let key = k(prefix::CERT, &[&height.to_be_bytes()]);
        match self.get(&key)? {
            None => Ok(None),
            Some(v) => CommitCertificate::decode(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    location: describe(&key),
                    reason: e.to_string(),
                }),
        }
    }

    /// Stored bytes of the entry at log `position`.
    pub fn entry(&self, position: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(&k(prefix::ENTRY, &[&position.to_be_bytes()]))
    }

    /// Log position of the entry with this id.
    pub fn position_of(&self, id: &Digest) -> Result<Option<u64>, StoreError> {
        let key = k(prefix::BY_ID, &[id.as_bytes()]);
        match self.get(&key)? {
            None => Ok(None),
            Some(v) => Ok(Some(u64::from_be_bytes(v.as_slice().try_into().map_err(
                |_| StoreError::Corrupt {
                    location: format!("id index {id}"),
                    reason: "position is not 8 bytes".into(),
                },
            )?))),
        }
    }

    /// The block with its certificate.
    pub fn block(&self, height: u64) -> Result<Option<(Block, CommitCertificate)>, StoreError> {
        let Some(header) = self.header(height)? else {
            return Ok(None);
        };
        let cert = self
            .certificate(height)?
            .ok_or_else(|| StoreError::Corrupt {
                location: format!("certificate of block {height}"),
                reason: "missing".into(),
            })?;
        let first = header.log_size - u64::from(header.entry_count);
        let mut entries = Vec::with_capacity(header.entry_count as usize);
        for pos in first..header.log_size {
            let e = self.entry(pos)?.ok_or_else(|| StoreError::Corrupt {
                location: format!("entry at log position {pos}"),
                reason: "missing".into(),
            })?;
            entries.push(serde_bytes::ByteBuf::from(e));
        }
        Ok(Some((Block { header, entries }, cert)))
    }

    /// Height of the block holding log position `position`.
    pub fn height_of_position(&self, position: u64) -> Result<Option<u64>, StoreError> {
        let (mut lo, mut hi) = (1u64, self.height()?);
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            let h = self.header(mid)?.ok_or_else(|| StoreError::Corrupt {
                location: format!("header of block {mid}"),
                reason: "missing".into(),
            })?;
            let first = h.log_size - u64::from(h.entry_count);
            if position < first {
                hi = mid - 1;
            } else if position >= h.log_size {
                lo = mid + 1;
            } else {
                return Ok(Some(mid));
            }
        }
        Ok(None)
    }

    fn positions(
        &self,
        pfx: Vec<u8>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let start = match after {
            Some(p) => {
                let mut s = pfx.clone();
                s.extend_from_slice(&(p + 1).to_be_bytes());
                s
            }
            None => pfx.clone(),
        };
        let mut out = Vec::new();
        for item in self.db.range(start..) {
            let (key, v) = item?;
            if !key.starts_with(&pfx) || out.len() >= limit {
                break;
            }
            unseal(&key, &v)?;
            let pos: [u8; 8] = key[pfx.len()..]
                .try_into()
                .map_err(|_| StoreError::Corrupt {
                    location: format!("index key {}", hex::encode(&key)),
                    reason: "bad position".into(),
                })?;
            out.push(u64::from_be_bytes(pos));
        }
        Ok(out)
    }

    /// Log positions of entries concerning `firm`, in order, after position `after`.
    pub fn firm_positions(
        &self,
        firm: &Uscc,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        self.positions(
            k(prefix::BY_FIRM, &[firm.as_str().as_bytes()]),
            after,
            limit,
        )
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

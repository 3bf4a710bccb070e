//! Consensus glue: Commonware's simplex BFT engine orders block *digests*; the ledger's
//! [`Chain`](xinyi_ledger::chain::Chain) owns the blocks. This is the one module that knows the
//! engine (CONSENSUS.md): replacing the engine touches only this directory.
//!
//! What it is: the engine's `Automaton` (propose: `Chain::build_block` over a [`Mempool`] on
//! the parent's state, the payload is the ledger header hash; verify: the proposal is executed
//! with every ledger rule on a [`Speculative`](xinyi_ledger::chain::Speculative) copy of the
//! parent's state before the validator votes), its `Relay` (the proposer sends the block bytes
//! on a fourth, ledger-owned channel) and its `Reporter` (a finalized digest, and with it every
//! ancestor, gets this validator's app-level commit vote, `ledger::block::sign_commit`; votes are
//! exchanged on the ledger channel and, once they carry more than two thirds of the power, form
//! the [`CommitCertificate`](xinyi_ledger::CommitCertificate) with which the block is applied by
//! `Chain::apply_block` and appended to the [`BlockStore`]). The same channel carries catch-up:
//! a replica that lacks a block or is behind asks for it (`Want`, `Sync`) and applies committed
//! blocks only with a certificate that verifies. A validator's two verified commit votes for
//! different headers at one height become equivocation evidence ([`Core::take_evidence`],
//! which the node signs into a `misbehaviour` entry; `specs/consensus.md` §10). Wire format:
//! [`wire`].
//!
//! The engine-facing glue ([`Application`]) drives any [`Replica`]: the ledger's [`Core`], or
//! the benchmark's [`noop::NoopReplica`], which orders opaque payloads through the same engine
//! and transport without ledger work (`xinyi-bench cluster --app noop`).
//!
//! What it is not: a transport (the engine runs over any commonware-p2p `Sender`/`Receiver`;
//! the simulation uses the simulated network, the libp2p adapter is separate work), a mempool
//! (entries come through the [`Mempool`] trait), persistence (the [`BlockStore`] trait; sled
//! comes with the node's store), or validator-set changes (one epoch, fixed set). Nothing an
//! auditor checks depends on the engine: the commit certificate is verified by the ledger alone
//! (`specs/blocks.md` §4).

mod app;
mod core;
pub mod noop;
pub mod wire;

pub use self::app::{start_validator, Application, EngineParams, Peers, Replica};
pub use self::core::{Core, Stats, To, Verdict};

use commonware_codec::DecodeExt as _;
use commonware_cryptography::{ed25519, sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use xinyi_ledger::block::{Block, CommitCertificate};
use xinyi_ledger::chain::{Chain, CommittedBlock};
use xinyi_ledger::{Digest, Entry, Genesis, KeyPair, TimeMs};

/// The engine's digest type (32 bytes: the ledger header hash, unchanged).
pub type EngineDigest = sha256::Digest;
/// The engine's identity keys (ed25519, the organisation's ledger key).
pub type EnginePublicKey = ed25519::PublicKey;
/// The engine's signing scheme.
pub type Scheme = commonware_consensus::simplex::scheme::ed25519::Scheme;
/// What the engine reports.
pub type Activity = commonware_consensus::simplex::types::Activity<Scheme, EngineDigest>;

/// Ledger digest → engine digest.
pub fn engine_digest(d: &Digest) -> EngineDigest {
    sha256::Digest(d.0)
}

/// Engine digest → ledger digest.
pub fn ledger_digest(d: &EngineDigest) -> Digest {
    Digest(d.0)
}

/// The engine key of an organisation: the same ed25519 key as its ledger key.
pub fn engine_key(key: &KeyPair) -> Option<ed25519::PrivateKey> {
    let seed = key.seed();
    ed25519::PrivateKey::decode(commonware_runtime::IoBuf::from(seed.to_vec())).ok()
}

/// The engine's signature namespace for a chain (votes of one chain are useless on another).
pub fn namespace(chain_id: &Digest) -> Vec<u8> {
    let mut n = b"xinyi/v1/simplex/".to_vec();
    n.extend_from_slice(chain_id.as_bytes());
    n
}

/// Where transactions come from: the proposer asks for entries to include on top of `parent`
/// (the chain as it will be when the block executes) at block time `time`. Entries the rules
/// refuse are dropped by `build_block`.
pub trait Mempool: Send + 'static {
    /// Candidate entries, in order.
    fn candidates(&mut self, parent: &Chain, time: TimeMs) -> Vec<Entry>;
    /// Whether there is nothing to propose (cheap; checked before any state is copied).
    fn is_empty(&self) -> bool {
        false
    }
    /// Entries a proposal built from the candidates left out, with the reason.
    fn dropped(&mut self, _dropped: &[xinyi_ledger::chain::Dropped]) {}
}

/// Why a certified block was not committed.
#[derive(Debug)]
pub enum CommitError {
    /// The ledger refused the block or its certificate (nothing changed).
    Invalid(xinyi_ledger::ChainError),
    /// The block was applied in memory but could not be persisted: the replica must stop
    /// committing (a restart rebuilds from what is durable).
    Store(String),
}

/// The committed ledger a replica extends: the chain and its durable store. The node
/// implements it over its sled store (shared with the HTTP API); the simulation uses
/// [`StoreLedger`].
pub trait Ledger: Send + 'static {
    /// The committed chain.
    fn chain(&self) -> &Chain;
    /// Applies the next block with its certificate (every ledger check,
    /// `Chain::apply_block`) and persists it durably before returning.
    fn commit(&mut self, block: Block, cert: CommitCertificate) -> Result<(), CommitError>;
    /// The committed block and certificate at `height`.
    fn stored(&self, height: u64) -> Option<(Block, CommitCertificate)>;
    /// Height of the committed block with this header hash.
    fn position(&self, header_hash: &Digest) -> Option<u64>;
    /// This replica's signed checkpoint note to share after it committed (validators).
    fn checkpoint_note(&self) -> Option<String> {
        None
    }
    /// A checkpoint note from a peer (verified by the implementation before any use).
    fn on_checkpoint_note(&mut self, _note: &str) {}
}

/// A ledger shared between the consensus core and its readers. Lock order: the consensus
/// core's lock (if any) before this one, never the reverse.
pub type SharedLedger = Arc<Mutex<dyn Ledger>>;

/// The committed chain, borrowed under the ledger lock.
pub struct ChainGuard<'a>(std::sync::MutexGuard<'a, dyn Ledger>);

impl std::ops::Deref for ChainGuard<'_> {
    type Target = Chain;
    fn deref(&self) -> &Chain {
        self.0.chain()
    }
}

/// Locks a mutex, recovering from poisoning (the state behind it is consistent per call).
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A [`Ledger`] made of an in-memory chain over any [`BlockStore`].
pub struct StoreLedger {
    chain: Chain,
    store: Box<dyn BlockStore>,
}

impl StoreLedger {
    /// Rebuilds the chain from genesis by re-applying every stored block with its certificate.
    pub fn open(genesis: &Genesis, store: Box<dyn BlockStore>) -> Result<StoreLedger, String> {
        let (mut chain, _) = Chain::from_genesis(genesis).map_err(|e| e.to_string())?;
        for h in 1..=store.height() {
            let (b, c) = store
                .get(h)
                .ok_or_else(|| format!("store lacks block {h}"))?;
            chain.apply_block(b, c).map_err(|e| e.to_string())?;
        }
        Ok(StoreLedger { chain, store })
    }
}

impl Ledger for StoreLedger {
    fn chain(&self) -> &Chain {
        &self.chain
    }
    fn commit(&mut self, block: Block, cert: CommitCertificate) -> Result<(), CommitError> {
        let cb = self
            .chain
            .apply_block(block, cert)
            .map_err(CommitError::Invalid)?;
        self.store.append(&cb).map_err(CommitError::Store)
    }
    fn stored(&self, height: u64) -> Option<(Block, CommitCertificate)> {
        self.store.get(height)
    }
    fn position(&self, header_hash: &Digest) -> Option<u64> {
        self.store.position(header_hash)
    }
}

/// Committed blocks with their certificates, in height order (the node's sled store in
/// production; [`MemStore`] in the simulation).
pub trait BlockStore: Send + 'static {
    /// Height of the last stored block (0: none).
    fn height(&self) -> u64;
    /// Block and certificate at `height`.
    fn get(&self, height: u64) -> Option<(Block, CommitCertificate)>;
    /// Height of the stored block with this header hash.
    fn position(&self, header_hash: &Digest) -> Option<u64>;
    /// Appends the next block, durably, before returning.
    fn append(&mut self, block: &CommittedBlock) -> Result<(), String>;
}

/// Contents of a [`MemStore`].
#[derive(Debug, Default, Clone)]
pub struct MemStoreData {
    /// Blocks and certificates, height `i + 1` at index `i`.
    pub blocks: Vec<(Block, CommitCertificate)>,
    /// State root after each block, as the replica computed it when committing.
    pub state_roots: Vec<Digest>,
    index: BTreeMap<Digest, u64>,
}

/// An in-memory [`BlockStore`] shared with whoever holds a clone (the simulation's "disk":
/// it survives a crashed replica and is read by the invariant checker).
#[derive(Debug, Default, Clone)]
pub struct MemStore(pub Arc<Mutex<MemStoreData>>);

impl MemStore {
    /// A snapshot of the contents.
    pub fn snapshot(&self) -> MemStoreData {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl BlockStore for MemStore {
    fn height(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .blocks
            .len() as u64
    }
    fn get(&self, height: u64) -> Option<(Block, CommitCertificate)> {
        let d = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let i = usize::try_from(height.checked_sub(1)?).ok()?;
        d.blocks.get(i).cloned()
    }
    fn position(&self, header_hash: &Digest) -> Option<u64> {
        let d = self.0.lock().unwrap_or_else(|e| e.into_inner());
        d.index.get(header_hash).copied()
    }
    fn append(&mut self, b: &CommittedBlock) -> Result<(), String> {
        let mut d = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let next = d.blocks.len() as u64 + 1;
        if b.block.header.height != next {
            return Err(format!(
                "append of height {} after {}",
                b.block.header.height,
                next - 1
            ));
        }
        d.index.insert(b.header_hash, next);
        d.blocks.push((b.block.clone(), b.certificate.clone()));
        d.state_roots.push(b.block.header.state_root);
        Ok(())
    }
}

//! Executing blocks: the one code path that validators, the dev node, the store and the
//! auditor's verifier all use to turn (genesis, blocks, certificates) into state.
//!
//! A [`Chain`] holds the state machine, the global RFC 9162 entry log and the head header.
//! [`Chain::apply_block`] verifies a received block completely (header links, certificate,
//! entries, signatures batched, Merkle roots, state root) and commits it, or changes nothing.
//! [`Chain::build_block`] is the proposer's side: it executes candidate entries, drops the
//! ones the rules refuse, and leaves the block pending until [`Chain::commit_built`] gets its
//! certificate (or [`Chain::abort_built`] discards it). No I/O happens here.

use crate::block::{
    Block, BlockHeader, CertError, CommitCertificate, ValidatorSet, HEADER_VERSION,
};
use crate::codec::CodecError;
use crate::entry::{Entry, EntryError};
use crate::firmtag::FirmTag;
use crate::genesis::Genesis;
use crate::hash::Digest;
use crate::keys::{self, KeyError, SigCheck};
use crate::merkle::{self, MerkleTree};
use crate::state::{Applied, State, StateError, StateHead, WriteSet};
use crate::types::{OrgId, TimeMs};
use ed25519_dalek::VerifyingKey;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

/// A block's entries decoded and leaf-hashed ahead of execution, or the first entry that does
/// not decode. Decoding is pure, so the verifier does it on another thread while the previous
/// block executes ([`Chain::apply_block_deferred_decoded`]); the result is the same as decoding
/// inside the chain, and a decoding error is reported at the same point of the checks.
#[derive(Debug)]
pub struct DecodedEntries(Result<(Vec<Entry>, Vec<merkle::Hash>), (usize, EntryError)>);

impl DecodedEntries {
    /// Decodes every entry of `block` and computes its Merkle leaf hash.
    pub fn new(block: &Block) -> DecodedEntries {
        let mut entries = Vec::with_capacity(block.entries.len());
        let mut leaves = Vec::with_capacity(block.entries.len());
        for (i, b) in block.entries.iter().enumerate() {
            match Entry::decode(b) {
                Ok(e) => {
                    leaves.push(merkle::leaf_hash(&e.bytes));
                    entries.push(e);
                }
                Err(e) => return DecodedEntries(Err((i, e))),
            }
        }
        DecodedEntries(Ok((entries, leaves)))
    }
}

/// What went wrong with a block, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block {height}{}: {kind}", .entry.map(|i| format!(" entry {i}")).unwrap_or_default())]
pub struct ChainError {
    /// Height of the failing block.
    pub height: u64,
    /// Index of the failing entry in the block, if an entry is at fault.
    pub entry: Option<usize>,
    /// The reason.
    pub kind: ChainErrorKind,
}

/// The reason a block is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainErrorKind {
    /// Header or block bytes malformed.
    #[error("encoding: {0}")]
    Codec(#[from] CodecError),
    /// Header field inconsistent with the chain.
    #[error("header: {0}")]
    Header(String),
    /// Certificate does not prove finality.
    #[error("certificate: {0}")]
    Certificate(#[from] CertError),
    /// Entry statically invalid.
    #[error("entry: {0}")]
    Entry(#[from] EntryError),
    /// Entry refused by the state rules.
    #[error("rule: {0}")]
    State(#[from] StateError),
    /// A signature does not verify.
    #[error("signature does not verify")]
    Signature,
    /// A root in the header does not match the recomputed one.
    #[error("{what} mismatch: header says {claimed}, recomputed {computed}")]
    RootMismatch {
        /// Which root.
        what: &'static str,
        /// In the header.
        claimed: Digest,
        /// Recomputed.
        computed: Digest,
    },
}

impl ChainErrorKind {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ChainErrorKind::Codec(e) => e.code(),
            ChainErrorKind::Header(_) => "block.header",
            ChainErrorKind::Certificate(e) => e.code(),
            ChainErrorKind::Entry(e) => e.code(),
            ChainErrorKind::State(e) => e.code(),
            ChainErrorKind::Signature => "entry.bad_signature",
            ChainErrorKind::RootMismatch { .. } => "block.root_mismatch",
        }
    }
}

/// A committed block with everything the store needs to index it.
#[derive(Debug, Clone)]
pub struct CommittedBlock {
    /// The block.
    pub block: Block,
    /// Header hash.
    pub header_hash: Digest,
    /// Its certificate.
    pub certificate: CommitCertificate,
    /// Decoded entries.
    pub entries: Vec<Entry>,
    /// Firm each entry concerns.
    pub firms: Vec<Option<FirmTag>>,
    /// Log position of the first entry.
    pub first_position: u64,
    /// State changes.
    pub write_set: WriteSet,
}

/// A candidate the proposer dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Entry id.
    pub id: Digest,
    /// Why.
    pub reason: StateError,
}

struct Pending {
    block: Block,
    entries: Vec<Entry>,
    firms: Vec<Option<FirmTag>>,
    header_hash: Digest,
    log_size_before: u64,
}

/// Signatures per batch. Blocks are verified in fixed chunks of this size (spread over the
/// machine's cores), so the verdict on a block is a function of the block alone, identical on
/// every node whatever its core count: ed25519-dalek's batch coefficients are derived from the
/// chunk's inputs.
pub const SIGNATURE_CHUNK: usize = 256;

/// Batch-verifies `checks` in fixed chunks of [`SIGNATURE_CHUNK`], chunks spread across the
/// machine's cores. Returns the index of the first failing signature (the smallest index over
/// all failing chunks).
fn verify_parallel(checks: &[SigCheck<'_>]) -> Result<(), usize> {
    let chunk_verdict = |i: usize, part: &[SigCheck<'_>]| match keys::verify_many(part) {
        Ok(()) => Ok(()),
        Err(KeyError::BadSignatureInBatch { index }) => Err(i * SIGNATURE_CHUNK + index),
        Err(_) => Err(i * SIGNATURE_CHUNK),
    };
    let chunks: Vec<&[SigCheck<'_>]> = checks.chunks(SIGNATURE_CHUNK).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(chunks.len());
    let results: Vec<Result<(), usize>> = if threads <= 1 {
        chunks
            .iter()
            .enumerate()
            .map(|(i, part)| chunk_verdict(i, part))
            .collect()
    } else {
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(part) = chunks.get(i) else { break };
                            out.push(chunk_verdict(i, part));
                        }
                        out
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_else(|_| vec![Err(0)]))
                .collect()
        })
    };
    match results.into_iter().filter_map(Result::err).min() {
        None => Ok(()),
        Some(i) => Err(i),
    }
}

/// What executing a block does with its entries' signatures.
enum Sigs<'a> {
    /// Batch-verify them (fixed chunks over the cores).
    Verify,
    /// This chain or a speculative copy of it already executed this very block (same header
    /// hash, hence same parent chain, state and entries) with every check, signatures
    /// included: the requirements and their verdict would be identical.
    AlreadyVerified,
    /// Hand them back for the caller to verify ([`Chain::apply_block_deferred`]).
    Defer(&'a mut Option<PendingSignatures>),
}

/// The entry signatures of a block executed by [`Chain::apply_block_deferred`], owned, so that
/// they can be verified on another thread.
pub struct PendingSignatures {
    height: u64,
    /// Index in the block of the entry each check belongs to.
    owner: Vec<usize>,
    checks: Vec<(Vec<u8>, VerifyingKey, crate::keys::Signature)>,
}

impl PendingSignatures {
    /// Height of the block.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Number of signatures.
    pub fn len(&self) -> usize {
        self.checks.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Batch-verifies them exactly as [`Chain::apply_block`] would (fixed chunks, spread over
    /// the cores); a failure names the block and the entry.
    pub fn verify(&self) -> Result<(), ChainError> {
        let checks: Vec<SigCheck<'_>> = self
            .checks
            .iter()
            .map(|(m, k, s)| SigCheck {
                message: m,
                key: k,
                signature: s,
            })
            .collect();
        verify_parallel(&checks).map_err(|index| ChainError {
            height: self.height,
            entry: Some(self.owner.get(index).copied().unwrap_or(0)),
            kind: ChainErrorKind::Signature,
        })
    }
}

/// State, log and head: a replica of the ledger in memory.
///
/// State and log are shared copy-on-write (`Arc`) with [`Speculative`] copies: taking or cloning
/// a copy costs two reference counts, and the first change on either side copies what it
/// changes (`Arc::make_mut`), so a speculative copy costs one state copy when it executes, not
/// one per clone. Decompressed keys are shared the same way, and so is the set of blocks whose
/// signatures a copy verified (see [`Chain::apply_block`]).
pub struct Chain {
    genesis: Genesis,
    // The specs' name for it (`specs/blocks.md`).
    #[allow(clippy::struct_field_names)]
    chain_id: Digest,
    state: Arc<State>,
    log: Arc<MerkleTree>,
    head: Option<BlockHeader>,
    head_hash: Digest,
    key_cache: Arc<Mutex<BTreeMap<[u8; 32], VerifyingKey>>>,
    verified: Arc<Mutex<VerifiedBlocks>>,
    pending: Option<Pending>,
}

/// Header hashes of blocks executed with every check, signatures included, by this chain or
/// a speculative copy of it (bounded; oldest forgotten first).
#[derive(Default)]
struct VerifiedBlocks {
    set: BTreeSet<Digest>,
    order: VecDeque<Digest>,
    /// The results of the most recent speculative executions, by header hash, for the chain to
    /// adopt when the block commits instead of executing it again.
    executed: BTreeMap<Digest, Executed>,
}

/// What executing a block speculatively produced: everything [`Chain::apply_block`] would.
struct Executed {
    height: u64,
    prev: Digest,
    state: Arc<State>,
    log: Arc<MerkleTree>,
    entries: Vec<Entry>,
    firms: Vec<Option<FirmTag>>,
    first_position: u64,
    write_set: WriteSet,
}

impl VerifiedBlocks {
    const CAP: usize = 1_024;
    /// Speculative results kept (each holds a state, shared with the copy that made it).
    const EXECUTED_CAP: usize = 8;

    fn record(&mut self, d: Digest, e: Executed) {
        self.insert(d);
        self.executed.insert(d, e);
        while self.executed.len() > Self::EXECUTED_CAP {
            // Forget the lowest block first (the likeliest to be stale).
            let lowest = self
                .executed
                .iter()
                .min_by_key(|(_, e)| e.height)
                .map(|(d, _)| *d);
            match lowest {
                Some(d) => {
                    self.executed.remove(&d);
                }
                None => break,
            }
        }
    }

    fn insert(&mut self, d: Digest) {
        if self.set.insert(d) {
            self.order.push_back(d);
            while self.order.len() > Self::CAP {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Chain {
    /// A chain at genesis, and the genesis write set.
    pub fn from_genesis(genesis: &Genesis) -> Result<(Chain, WriteSet), CodecError> {
        let (state, ws) = State::from_genesis(genesis)?;
        let chain_id = genesis.chain_id()?;
        Ok((
            Chain {
                genesis: genesis.clone(),
                chain_id,
                state: Arc::new(state),
                log: Arc::new(MerkleTree::new()),
                head: None,
                head_hash: chain_id,
                key_cache: Arc::default(),
                verified: Arc::default(),
                pending: None,
            },
            ws,
        ))
    }

    /// Rebuilds a chain from stored parts (used by the store on open; the store checks them).
    pub fn restore(
        genesis: &Genesis,
        state: State,
        log: MerkleTree,
        head: Option<BlockHeader>,
    ) -> Result<Chain, CodecError> {
        let chain_id = genesis.chain_id()?;
        let head_hash = match &head {
            Some(h) => h.hash()?,
            None => chain_id,
        };
        Ok(Chain {
            genesis: genesis.clone(),
            chain_id,
            state: Arc::new(state),
            log: Arc::new(log),
            head,
            head_hash,
            key_cache: Arc::default(),
            verified: Arc::default(),
            pending: None,
        })
    }

    /// Genesis document.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }
    /// Chain id.
    pub fn chain_id(&self) -> &Digest {
        &self.chain_id
    }
    /// State machine.
    pub fn state(&self) -> &State {
        &self.state
    }
    /// Mutable state (for admission checks).
    pub fn state_mut(&mut self) -> &mut State {
        Arc::make_mut(&mut self.state)
    }
    /// Global entry log.
    pub fn log(&self) -> &MerkleTree {
        &self.log
    }
    /// Head header (None at genesis).
    pub fn head(&self) -> Option<&BlockHeader> {
        self.head.as_ref()
    }
    /// Head header hash (chain id at genesis).
    pub fn head_hash(&self) -> &Digest {
        &self.head_hash
    }
    /// Height of the head (0 at genesis).
    pub fn height(&self) -> u64 {
        self.state.head().height
    }
    /// State head.
    pub fn state_head(&self) -> StateHead {
        self.state.head()
    }

    /// Checks that an entry could be included now (signatures included). Changes nothing.
    pub fn admit(&mut self, e: &Entry, now: TimeMs) -> Result<(), ChainErrorKind> {
        let now = now.max(self.state.head().time.saturating_add(1));
        let applied = Arc::make_mut(&mut self.state).check_entry(e, &self.log, now)?;
        self.verify_signatures(std::slice::from_ref(&applied))
            .map_err(|_| ChainErrorKind::Signature)
    }

    fn vk(&mut self, k: &crate::keys::PublicKey) -> Result<VerifyingKey, KeyError> {
        if let Some(v) = lock(&self.key_cache).get(&k.0) {
            return Ok(*v);
        }
        let v = k.verifying_key()?;
        let mut cache = lock(&self.key_cache);
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(k.0, v);
        Ok(v)
    }

    /// Batch-verifies every signature requirement; on failure returns the index in `applied`.
    fn verify_signatures(&mut self, applied: &[Applied]) -> Result<(), usize> {
        let mut owner = Vec::new();
        let mut vks = Vec::new();
        for (i, a) in applied.iter().enumerate() {
            for s in &a.signatures {
                vks.push(self.vk(&s.key).map_err(|_| i)?);
                owner.push(i);
            }
        }
        let checks: Vec<SigCheck<'_>> = applied
            .iter()
            .flat_map(|a| a.signatures.iter())
            .zip(&vks)
            .map(|(s, k)| SigCheck {
                message: &s.message,
                key: k,
                signature: &s.signature,
            })
            .collect();
        match verify_parallel(&checks) {
            Ok(()) => Ok(()),
            Err(index) => Err(owner.get(index).copied().unwrap_or(0)),
        }
    }

    /// Takes the signature requirements out of `applied` with their decompressed keys, to be
    /// verified later ([`PendingSignatures::verify`]); on an unusable key, the entry's index.
    fn collect_signatures(
        &mut self,
        height: u64,
        applied: &mut [Applied],
    ) -> Result<PendingSignatures, usize> {
        let mut p = PendingSignatures {
            height,
            owner: Vec::new(),
            checks: Vec::new(),
        };
        for (i, a) in applied.iter_mut().enumerate() {
            for s in std::mem::take(&mut a.signatures) {
                let key = self.vk(&s.key).map_err(|_| i)?;
                p.owner.push(i);
                p.checks.push((s.message, key, s.signature));
            }
        }
        Ok(p)
    }

    /// Like [`Chain::apply_block`], but the entries' signatures are returned for the caller to
    /// verify instead of being verified here (the certificate is verified). For the offline
    /// verifier, which verifies block `h`'s signatures on other cores while `h + 1` executes:
    /// the block is committed to this chain before its signatures are known to be good, so a
    /// caller must discard the chain if [`PendingSignatures::verify`] fails. On an error the
    /// chain is unchanged, and an error found after the signature step is reported only after
    /// the block's signatures were verified (a bad signature is reported first, as by
    /// [`Chain::apply_block`]).
    pub fn apply_block_deferred(
        &mut self,
        block: Block,
        cert: CommitCertificate,
    ) -> Result<(CommittedBlock, PendingSignatures), ChainError> {
        let decoded = DecodedEntries::new(&block);
        self.apply_block_deferred_decoded(block, decoded, cert)
    }

    /// [`apply_block_deferred`](Self::apply_block_deferred) with the block's entries decoded
    /// beforehand ([`DecodedEntries::new`] of this very block).
    pub fn apply_block_deferred_decoded(
        &mut self,
        block: Block,
        decoded: DecodedEntries,
        cert: CommitCertificate,
    ) -> Result<(CommittedBlock, PendingSignatures), ChainError> {
        let height = block.header.height;
        let log_before = self.log.size();
        let mut slot = None;
        let r = self.apply_block_inner(&block, Some(decoded), Some(&cert), Sigs::Defer(&mut slot));
        match (r, slot) {
            (Ok((entries, firms)), Some(pending)) => {
                let write_set = Arc::make_mut(&mut self.state)
                    .end_block(height, block.header.time)
                    .map_err(|e| ChainError {
                        height,
                        entry: None,
                        kind: e.into(),
                    })?;
                let header_hash = cert.header_hash;
                self.head_hash = header_hash;
                self.head = Some(block.header.clone());
                Ok((
                    CommittedBlock {
                        block,
                        header_hash,
                        certificate: cert,
                        entries,
                        firms,
                        first_position: log_before,
                        write_set,
                    },
                    pending,
                ))
            }
            (r, _) => {
                Arc::make_mut(&mut self.state).rollback_block();
                Arc::make_mut(&mut self.log).truncate(log_before);
                Err(r.err().unwrap_or(ChainError {
                    height,
                    entry: None,
                    kind: ChainErrorKind::Header("signatures were not collected".into()),
                }))
            }
        }
    }

    fn validator_set_now(&self, height: u64) -> Result<ValidatorSet, ChainError> {
        self.state.validators().map_err(|e| ChainError {
            height,
            entry: None,
            kind: e.into(),
        })
    }

    /// Verifies and commits a received block. On any error nothing changes.
    pub fn apply_block(
        &mut self,
        block: Block,
        cert: CommitCertificate,
    ) -> Result<CommittedBlock, ChainError> {
        let height = block.header.height;
        if let Some(done) = self.adopt(&block, &cert)? {
            return Ok(done);
        }
        let log_before = self.log.size();
        let sigs = match block.header.hash() {
            Ok(h) if lock(&self.verified).set.contains(&h) => Sigs::AlreadyVerified,
            _ => Sigs::Verify,
        };
        let r = self.apply_block_inner(&block, None, Some(&cert), sigs);
        match r {
            Ok((entries, firms)) => {
                let write_set = Arc::make_mut(&mut self.state)
                    .end_block(height, block.header.time)
                    .map_err(|e| ChainError {
                        height,
                        entry: None,
                        kind: e.into(),
                    })?;
                let header_hash = cert.header_hash;
                self.head_hash = header_hash;
                self.head = Some(block.header.clone());
                Ok(CommittedBlock {
                    block,
                    header_hash,
                    certificate: cert,
                    entries,
                    firms,
                    first_position: log_before,
                    write_set,
                })
            }
            Err(e) => {
                Arc::make_mut(&mut self.state).rollback_block();
                Arc::make_mut(&mut self.log).truncate(log_before);
                Err(e)
            }
        }
    }

    /// Commits `block` by adopting the result of a speculative copy that executed this very
    /// block (same header hash) on this chain's head, if there is one: the certificate is
    /// checked, nothing is executed again. `None`: no such result (or a pending built block),
    /// execute normally.
    fn adopt(
        &mut self,
        block: &Block,
        cert: &CommitCertificate,
    ) -> Result<Option<CommittedBlock>, ChainError> {
        let h = &block.header;
        if self.pending.is_some() || h.prev != self.head_hash {
            return Ok(None);
        }
        let Ok(hash) = h.hash() else {
            return Ok(None);
        };
        let Some(ex) = lock(&self.verified).executed.remove(&hash) else {
            return Ok(None);
        };
        let err = |kind: ChainErrorKind| ChainError {
            height: h.height,
            entry: None,
            kind,
        };
        if ex.prev != self.head_hash || ex.first_position != self.log.size() {
            return Ok(None);
        }
        self.check_header_link(h)
            .map_err(|m| err(ChainErrorKind::Header(m)))?;
        // The set in force at this height: the executed state's (membership changes due at
        // this height were applied when the block began), not the head's. It must be the set
        // the header names, as executing the block checked; if not, execute normally.
        let set = ex.state.validators().map_err(|e| err(e.into()))?;
        if set.hash().map_err(|e| err(e.into()))? != h.validator_set {
            return Ok(None);
        }
        cert.verify(h, &set).map_err(|e| err(e.into()))?;
        self.state = ex.state;
        self.log = ex.log;
        self.head_hash = cert.header_hash;
        self.head = Some(h.clone());
        Ok(Some(CommittedBlock {
            block: block.clone(),
            header_hash: cert.header_hash,
            certificate: cert.clone(),
            entries: ex.entries,
            firms: ex.firms,
            first_position: ex.first_position,
            write_set: ex.write_set,
        }))
    }

    fn check_header_link(&self, h: &BlockHeader) -> Result<(), String> {
        if h.version != HEADER_VERSION {
            return Err(format!("unknown header version {}", h.version));
        }
        if h.chain != self.chain_id {
            return Err(format!(
                "chain id {} is not this chain's {}",
                h.chain, self.chain_id
            ));
        }
        if h.height != self.height() + 1 {
            return Err(format!(
                "height {} does not follow {}",
                h.height,
                self.height()
            ));
        }
        if h.prev != self.head_hash {
            return Err(format!(
                "previous hash {} is not the head {}",
                h.prev, self.head_hash
            ));
        }
        Ok(())
    }

    /// Executes `block`; what happens to the entries' signatures is `sigs`'s choice.
    #[allow(clippy::type_complexity)]
    fn apply_block_inner(
        &mut self,
        block: &Block,
        decoded: Option<DecodedEntries>,
        cert: Option<&CommitCertificate>,
        sigs: Sigs<'_>,
    ) -> Result<(Vec<Entry>, Vec<Option<FirmTag>>), ChainError> {
        let h = &block.header;
        let height = h.height;
        let err = |entry: Option<usize>, kind: ChainErrorKind| ChainError {
            height,
            entry,
            kind,
        };
        self.check_header_link(h)
            .map_err(|m| err(None, ChainErrorKind::Header(m)))?;
        if h.entry_count as usize != block.entries.len() {
            return Err(err(
                None,
                ChainErrorKind::Header(format!(
                    "entry_count {} but the block holds {}",
                    h.entry_count,
                    block.entries.len()
                )),
            ));
        }
        if block.entries.len() > self.state.params().max_block_entries as usize {
            return Err(err(None, ChainErrorKind::Header("too many entries".into())));
        }
        let decoded = decoded.unwrap_or_else(|| DecodedEntries::new(block));
        let (entries, leaves) = decoded.0.map_err(|(i, e)| err(Some(i), e.into()))?;
        Arc::make_mut(&mut self.state)
            .begin_block(height, h.time)
            .map_err(|e| err(None, e.into()))?;
        // From here on, errors are rolled back by the caller.
        let set = self.validator_set_now(height)?;
        let set_hash = set.hash().map_err(|e| err(None, e.into()))?;
        if set_hash != h.validator_set {
            return Err(err(
                None,
                ChainErrorKind::RootMismatch {
                    what: "validator set hash",
                    claimed: h.validator_set,
                    computed: set_hash,
                },
            ));
        }
        if set.get(&h.proposer).is_none() {
            return Err(err(
                None,
                ChainErrorKind::Header(format!("proposer {} is not a validator", h.proposer)),
            ));
        }
        // Only a [`Speculative`] copy executes without a certificate.
        if let Some(cert) = cert {
            cert.verify(h, &set).map_err(|e| err(None, e.into()))?;
        }
        let mut applied: Vec<Applied> = Vec::with_capacity(entries.len());
        for (i, (e, leaf)) in entries.iter().zip(&leaves).enumerate() {
            let a = Arc::make_mut(&mut self.state)
                .apply_entry(e, &self.log)
                .map_err(|x| err(Some(i), x.into()))?;
            Arc::make_mut(&mut self.log).push_leaf_hash(*leaf);
            applied.push(a);
        }
        match sigs {
            Sigs::Verify => self
                .verify_signatures(&applied)
                .map_err(|i| err(Some(i), ChainErrorKind::Signature))?,
            Sigs::AlreadyVerified => {}
            Sigs::Defer(slot) => {
                let pending = self
                    .collect_signatures(height, &mut applied)
                    .map_err(|i| err(Some(i), ChainErrorKind::Signature))?;
                // A later check of this block failing must still be reported after a bad
                // signature of the same block, as in the undeferred order: verify now.
                if let Err(e) = self.check_after_signatures(block, &leaves) {
                    pending.verify()?;
                    return Err(e);
                }
                *slot = Some(pending);
                let firms = applied.into_iter().map(|a| a.firm).collect();
                return Ok((entries, firms));
            }
        }
        self.check_after_signatures(block, &leaves)?;
        let firms = applied.into_iter().map(|a| a.firm).collect();
        Ok((entries, firms))
    }

    /// The checks after the signatures: entries root, log and state roots.
    fn check_after_signatures(
        &self,
        block: &Block,
        leaves: &[merkle::Hash],
    ) -> Result<(), ChainError> {
        let h = &block.header;
        let err = |kind: ChainErrorKind| ChainError {
            height: h.height,
            entry: None,
            kind,
        };
        // The entries root is checked last among the per-entry checks so that a changed entry
        // byte is reported against its entry (decode or signature failure) rather than only as
        // a root mismatch of the whole block.
        // The entries root is the RFC 9162 root over the same leaf hashes as the log's.
        let block_tree = MerkleTree::from_leaf_hashes(leaves.iter().copied());
        let computed = Digest(block_tree.root());
        if computed != h.entries_root {
            return Err(err(ChainErrorKind::RootMismatch {
                what: "entries root",
                claimed: h.entries_root,
                computed,
            }));
        }
        self.check_roots(h).map_err(err)
    }

    fn check_roots(&self, h: &BlockHeader) -> Result<(), ChainErrorKind> {
        if self.log.size() != h.log_size {
            return Err(ChainErrorKind::Header(format!(
                "log size {} but recomputed {}",
                h.log_size,
                self.log.size()
            )));
        }
        let log_root = Digest(self.log.root());
        if log_root != h.log_root {
            return Err(ChainErrorKind::RootMismatch {
                what: "log root",
                claimed: h.log_root,
                computed: log_root,
            });
        }
        let state_root = self.state.pending_root(h.height)?;
        if state_root != h.state_root {
            return Err(ChainErrorKind::RootMismatch {
                what: "state root",
                claimed: h.state_root,
                computed: state_root,
            });
        }
        Ok(())
    }

    /// Proposer side: executes `candidates` at `time` (clamped above the head time), drops the
    /// ones the rules or signatures refuse, and returns the unsigned block. The block stays
    /// pending until [`Chain::commit_built`] or [`Chain::abort_built`]. Callers pass at most
    /// `params.max_block_entries` candidates (a mempool keeps the rest for the next block);
    /// candidates beyond that limit are not considered and not reported as dropped.
    pub fn build_block(
        &mut self,
        time: TimeMs,
        proposer: OrgId,
        candidates: Vec<Entry>,
    ) -> Result<(Block, Vec<Dropped>), ChainError> {
        if self.pending.is_some() {
            self.abort_built();
        }
        let height = self.height() + 1;
        let time = time.max(self.state.head().time.saturating_add(1));
        let max = self.state.params().max_block_entries as usize;
        let mut candidates = candidates;
        let mut dropped = Vec::new();
        if candidates.len() > max {
            candidates.truncate(max);
        }
        loop {
            let log_before = self.log.size();
            Arc::make_mut(&mut self.state)
                .begin_block(height, time)
                .map_err(|e| ChainError {
                    height,
                    entry: None,
                    kind: e.into(),
                })?;
            let mut kept = Vec::with_capacity(candidates.len());
            let mut applied = Vec::with_capacity(candidates.len());
            for e in candidates.drain(..) {
                match Arc::make_mut(&mut self.state).apply_entry(&e, &self.log) {
                    Ok(a) => {
                        Arc::make_mut(&mut self.log).push_leaf_hash(merkle::leaf_hash(&e.bytes));
                        applied.push(a);
                        kept.push(e);
                    }
                    Err(reason) => dropped.push(Dropped { id: e.id, reason }),
                }
            }
            if let Err(bad) = self.verify_signatures(&applied) {
                // Rare: a key changed inside the block after admission. Retry without it.
                Arc::make_mut(&mut self.state).rollback_block();
                Arc::make_mut(&mut self.log).truncate(log_before);
                let e = kept.remove(bad);
                dropped.push(Dropped {
                    id: e.id,
                    reason: StateError::Invalid("signature does not verify".into()),
                });
                candidates = kept;
                continue;
            }
            let set = self.validator_set_now(height)?;
            let mk = |kind: ChainErrorKind| ChainError {
                height,
                entry: None,
                kind,
            };
            let mut block_tree = MerkleTree::new();
            for e in &kept {
                block_tree.push_leaf_hash(merkle::leaf_hash(&e.bytes));
            }
            let header = BlockHeader {
                version: HEADER_VERSION,
                chain: self.chain_id,
                height,
                prev: self.head_hash,
                time,
                proposer,
                validator_set: set.hash().map_err(|e| mk(e.into()))?,
                entries_root: Digest(block_tree.root()),
                entry_count: kept.len() as u32,
                log_size: self.log.size(),
                log_root: Digest(self.log.root()),
                state_root: self.state.pending_root(height).map_err(|e| mk(e.into()))?,
            };
            let header_hash = header.hash().map_err(|e| mk(e.into()))?;
            let block = Block {
                header,
                entries: kept
                    .iter()
                    .map(|e| serde_bytes::ByteBuf::from(e.bytes.clone()))
                    .collect(),
            };
            self.pending = Some(Pending {
                block: block.clone(),
                entries: kept,
                firms: applied.into_iter().map(|a| a.firm).collect(),
                header_hash,
                log_size_before: log_before,
            });
            return Ok((block, dropped));
        }
    }

    /// The validator set that must certify the pending block.
    pub fn pending_validators(&self) -> Result<ValidatorSet, StateError> {
        self.state.validators()
    }

    /// Commits the pending block with its certificate (verified here).
    pub fn commit_built(&mut self, cert: CommitCertificate) -> Result<CommittedBlock, ChainError> {
        let Some(p) = self.pending.take() else {
            return Err(ChainError {
                height: self.height() + 1,
                entry: None,
                kind: ChainErrorKind::Header("no pending block".into()),
            });
        };
        let height = p.block.header.height;
        let set = self.validator_set_now(height)?;
        if let Err(e) = cert.verify(&p.block.header, &set) {
            self.pending = Some(p);
            return Err(ChainError {
                height,
                entry: None,
                kind: e.into(),
            });
        }
        let write_set = Arc::make_mut(&mut self.state)
            .end_block(height, p.block.header.time)
            .map_err(|e| ChainError {
                height,
                entry: None,
                kind: e.into(),
            })?;
        self.head_hash = p.header_hash;
        self.head = Some(p.block.header.clone());
        Ok(CommittedBlock {
            block: p.block,
            header_hash: p.header_hash,
            certificate: cert,
            entries: p.entries,
            firms: p.firms,
            first_position: p.log_size_before,
            write_set,
        })
    }

    /// Discards the pending block.
    pub fn abort_built(&mut self) {
        if let Some(p) = self.pending.take() {
            Arc::make_mut(&mut self.state).rollback_block();
            Arc::make_mut(&mut self.log).truncate(p.log_size_before);
        }
    }

    /// A [`Speculative`] copy of the committed chain (a pending built block is not copied).
    pub fn speculate(&self) -> Speculative {
        let mut state = self.state.clone();
        let mut log = self.log.clone();
        if let Some(p) = &self.pending {
            Arc::make_mut(&mut state).rollback_block();
            Arc::make_mut(&mut log).truncate(p.log_size_before);
        }
        Speculative {
            chain: Chain {
                genesis: self.genesis.clone(),
                chain_id: self.chain_id,
                state,
                log,
                head: self.head.clone(),
                head_hash: self.head_hash,
                key_cache: self.key_cache.clone(),
                verified: self.verified.clone(),
                pending: None,
            },
        }
    }
}

/// A copy of a chain that runs ahead of finality, for the consensus engine.
///
/// Consensus votes on blocks before they are final, and a proposal may build on a parent that
/// is notarized but not final yet (its certificate does not exist yet). A validator verifies
/// such a proposal, or builds its own on such a parent, on a `Speculative` copy: it executes
/// blocks with every check of [`Chain::apply_block`] except the certificate. A speculative copy
/// is a throw-away value: it cannot become a [`Chain`] again, is never persisted and never
/// serves reads; the committed chain advances only through [`Chain::apply_block`] or
/// [`Chain::commit_built`], both with a certificate.
pub struct Speculative {
    chain: Chain,
}

impl Clone for Speculative {
    fn clone(&self) -> Speculative {
        self.chain.speculate()
    }
}

impl Speculative {
    /// The chain as executed so far (read-only).
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Verifies `block` like [`Chain::apply_block`] except for the certificate, and advances
    /// past it. Returns the header hash. On any error nothing changes.
    pub fn execute(&mut self, block: &Block) -> Result<Digest, ChainError> {
        let c = &mut self.chain;
        let height = block.header.height;
        let mk = |kind: ChainErrorKind| ChainError {
            height,
            entry: None,
            kind,
        };
        let header_hash = block.header.hash().map_err(|e| mk(e.into()))?;
        let log_before = c.log.size();
        let prev = c.head_hash;
        match c.apply_block_inner(block, None, None, Sigs::Verify) {
            Ok((entries, firms)) => {
                let write_set =
                    match Arc::make_mut(&mut c.state).end_block(height, block.header.time) {
                        Ok(ws) => ws,
                        Err(e) => {
                            Arc::make_mut(&mut c.state).rollback_block();
                            Arc::make_mut(&mut c.log).truncate(log_before);
                            return Err(mk(e.into()));
                        }
                    };
                c.head_hash = header_hash;
                c.head = Some(block.header.clone());
                lock(&c.verified).record(
                    header_hash,
                    Executed {
                        height,
                        prev,
                        state: c.state.clone(),
                        log: c.log.clone(),
                        entries,
                        firms,
                        first_position: log_before,
                        write_set,
                    },
                );
                Ok(header_hash)
            }
            Err(e) => {
                Arc::make_mut(&mut c.state).rollback_block();
                Arc::make_mut(&mut c.log).truncate(log_before);
                Err(e)
            }
        }
    }

    /// Builds a block like [`Chain::build_block`] and advances past it (no certificate).
    pub fn build(
        &mut self,
        time: TimeMs,
        proposer: OrgId,
        candidates: Vec<Entry>,
    ) -> Result<(Block, Vec<Dropped>), ChainError> {
        let c = &mut self.chain;
        let (block, dropped) = c.build_block(time, proposer, candidates)?;
        let height = block.header.height;
        let Some(p) = c.pending.take() else {
            return Err(ChainError {
                height,
                entry: None,
                kind: ChainErrorKind::Header("no pending block".into()),
            });
        };
        let prev = c.head_hash;
        let write_set = match Arc::make_mut(&mut c.state).end_block(height, block.header.time) {
            Ok(ws) => ws,
            Err(e) => {
                Arc::make_mut(&mut c.state).rollback_block();
                Arc::make_mut(&mut c.log).truncate(p.log_size_before);
                return Err(ChainError {
                    height,
                    entry: None,
                    kind: e.into(),
                });
            }
        };
        c.head_hash = p.header_hash;
        c.head = Some(block.header.clone());
        lock(&c.verified).record(
            p.header_hash,
            Executed {
                height,
                prev,
                state: c.state.clone(),
                log: c.log.clone(),
                entries: p.entries,
                firms: p.firms,
                first_position: p.log_size_before,
                write_set,
            },
        );
        Ok((block, dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{sample_firm, SampleConsortium};

    const T0: TimeMs = 1_795_000_000_000;

    fn setup() -> (SampleConsortium, Chain) {
        let c = SampleConsortium::new(b"speculative", 4, T0);
        let (chain, _) = Chain::from_genesis(&c.genesis).unwrap();
        (c, chain)
    }

    fn registrations(c: &SampleConsortium, from: u32, n: u32, time: TimeMs) -> Vec<Entry> {
        (from..from + n)
            .map(|i| {
                c.registration("gz-credit", &sample_firm(i).unwrap(), time, u64::from(i))
                    .unwrap()
            })
            .collect()
    }

    fn proposer() -> OrgId {
        OrgId::new("gz-credit").unwrap()
    }

    #[test]
    fn speculative_execute_matches_commit_and_leaves_chain_alone() {
        let (c, mut builder) = setup();
        let (mut replica, _) = Chain::from_genesis(&c.genesis).unwrap();
        let (block, dropped) = builder
            .build_block(T0 + 10, proposer(), registrations(&c, 0, 3, T0 + 10))
            .unwrap();
        assert!(dropped.is_empty());
        let mut spec = replica.speculate();
        let hh = spec.execute(&block).unwrap();
        assert_eq!(hh, block.header.hash().unwrap());
        assert_eq!(spec.chain().height(), 1);
        assert_eq!(spec.chain().head_hash(), &hh);
        assert_eq!(spec.chain().state_head().root, block.header.state_root);
        // The committed replica did not move.
        assert_eq!(replica.height(), 0);
        assert_eq!(replica.log().size(), 0);
        // Committing with the certificate reaches the same state.
        let cert = c.certify(&block).unwrap();
        replica.apply_block(block, cert).unwrap();
        assert_eq!(replica.state_head(), spec.chain().state_head());
    }

    #[test]
    fn speculative_execute_rejects_bad_block_and_changes_nothing() {
        let (c, mut builder) = setup();
        let (block, _) = builder
            .build_block(T0 + 10, proposer(), registrations(&c, 0, 2, T0 + 10))
            .unwrap();
        let (replica, _) = Chain::from_genesis(&c.genesis).unwrap();
        let mut spec = replica.speculate();
        let mut bad = block.clone();
        bad.header.state_root = Digest([7; 32]);
        let e = spec.execute(&bad).unwrap_err();
        assert_eq!(e.kind.code(), "block.root_mismatch");
        let mut wrong_parent = block.clone();
        wrong_parent.header.prev = Digest([1; 32]);
        assert_eq!(
            spec.execute(&wrong_parent).unwrap_err().kind.code(),
            "block.header"
        );
        assert_eq!(spec.chain().height(), 0);
        assert_eq!(spec.chain().log().size(), 0);
        // The good block still executes afterwards.
        spec.execute(&block).unwrap();
        assert_eq!(spec.chain().height(), 1);
    }

    #[test]
    fn speculative_build_chain_then_commit_with_certificates() {
        let (c, chain) = setup();
        // Proposer builds two blocks ahead of finality; a verifier executes both.
        let mut proposer_spec = chain.speculate();
        let (b1, _) = proposer_spec
            .build(T0 + 10, proposer(), registrations(&c, 0, 2, T0 + 10))
            .unwrap();
        let (b2, _) = proposer_spec
            .build(T0 + 20, proposer(), registrations(&c, 2, 2, T0 + 20))
            .unwrap();
        assert_eq!(b2.header.prev, b1.header.hash().unwrap());
        let mut verifier = chain.speculate();
        verifier.execute(&b1).unwrap();
        let fork = verifier.clone();
        verifier.execute(&b2).unwrap();
        assert_eq!(
            verifier.chain().state_head(),
            proposer_spec.chain().state_head()
        );
        // The clone taken before b2 is independent.
        assert_eq!(fork.chain().height(), 1);
        // Replaying a block twice is refused (height no longer follows).
        assert!(verifier.execute(&b2).is_err());
        // The committed chain advances only with certificates, to the same state.
        let (mut committed, _) = Chain::from_genesis(&c.genesis).unwrap();
        let cert1 = c.certify(&b1).unwrap();
        committed.apply_block(b1, cert1).unwrap();
        let cert2 = c.certify(&b2).unwrap();
        committed.apply_block(b2, cert2).unwrap();
        assert_eq!(committed.state_head(), proposer_spec.chain().state_head());
    }

    #[test]
    fn speculate_ignores_a_pending_built_block() {
        let (c, mut chain) = setup();
        let (block, _) = chain
            .build_block(T0 + 10, proposer(), registrations(&c, 0, 2, T0 + 10))
            .unwrap();
        let mut spec = chain.speculate();
        assert_eq!(spec.chain().height(), 0);
        assert_eq!(spec.chain().log().size(), 0);
        spec.execute(&block).unwrap();
        // The original pending block can still be committed.
        let cert = c.certify(&block).unwrap();
        chain.commit_built(cert).unwrap();
        assert_eq!(chain.state_head(), spec.chain().state_head());
    }

    #[test]
    fn only_a_block_verified_in_full_skips_signature_checks_at_commit() {
        let (c, mut builder) = setup();
        let (block, _) = builder
            .build_block(T0 + 10, proposer(), registrations(&c, 0, 2, T0 + 10))
            .unwrap();
        // A forged signature in entry 1: the speculative copy refuses the block, so the
        // committed chain must check the signatures itself and refuse it too.
        let mut forged = block.clone();
        let mut wire: crate::entry::EntryWire =
            crate::codec::decode("entry", &forged.entries[1], 1 << 16).unwrap();
        wire.signature.0[0] ^= 1;
        forged.entries[1] = serde_bytes::ByteBuf::from(crate::codec::encode(&wire).unwrap());
        let (mut replica, _) = Chain::from_genesis(&c.genesis).unwrap();
        let mut spec = replica.speculate();
        let e = spec.execute(&forged).unwrap_err();
        assert_eq!((e.kind.code(), e.entry), ("entry.bad_signature", Some(1)));
        let cert = c.certify(&forged).unwrap();
        let e = replica.apply_block(forged, cert).unwrap_err();
        assert_eq!((e.kind.code(), e.entry), ("entry.bad_signature", Some(1)));
        // The genuine block, executed in full by a speculative copy, commits to the same state.
        spec.execute(&block).unwrap();
        let hh = block.header.hash().unwrap();
        assert!(lock(&replica.verified).set.contains(&hh));
        let cert = c.certify(&block).unwrap();
        replica.apply_block(block, cert).unwrap();
        assert_eq!(replica.state_head(), spec.chain().state_head());
        assert_eq!(replica.log().root(), spec.chain().log().root());
    }

    #[test]
    fn committing_a_speculatively_executed_block_adopts_the_same_result() {
        let (c, mut builder) = setup();
        let (b1, _) = builder
            .build_block(T0 + 10, proposer(), registrations(&c, 0, 3, T0 + 10))
            .unwrap();
        let cert1 = c.certify(&b1).unwrap();
        builder.commit_built(cert1.clone()).unwrap();
        let (b2, _) = builder
            .build_block(T0 + 20, proposer(), registrations(&c, 3, 2, T0 + 20))
            .unwrap();
        let cert2 = c.certify(&b2).unwrap();
        builder.commit_built(cert2.clone()).unwrap();
        // `fresh` executes at commit; `adopting` commits what its speculative copy executed
        // (b1, then b2 built on b1 before b1 was final).
        let (mut fresh, _) = Chain::from_genesis(&c.genesis).unwrap();
        let (mut adopting, _) = Chain::from_genesis(&c.genesis).unwrap();
        let mut spec = adopting.speculate();
        spec.execute(&b1).unwrap();
        spec.execute(&b2).unwrap();
        assert_eq!(lock(&adopting.verified).executed.len(), 2);
        for (b, cert) in [(b1, cert1), (b2, cert2)] {
            let x = fresh.apply_block(b.clone(), cert.clone()).unwrap();
            let y = adopting.apply_block(b.clone(), cert.clone()).unwrap();
            assert_eq!(x.write_set, y.write_set);
            assert_eq!(x.firms, y.firms);
            assert_eq!(x.first_position, y.first_position);
            assert_eq!(x.header_hash, y.header_hash);
            assert_eq!(x.block, y.block);
            let ids = |v: &[Entry]| v.iter().map(|e| e.id).collect::<Vec<_>>();
            assert_eq!(ids(&x.entries), ids(&y.entries));
            assert_eq!(fresh.state_head(), adopting.state_head());
            assert_eq!(fresh.log().root(), adopting.log().root());
            assert_eq!(fresh.head_hash(), adopting.head_hash());
        }
        // Each result was taken when adopted.
        assert!(lock(&adopting.verified).executed.is_empty());
        // Adoption still checks the certificate.
        let (b3, _) = builder
            .build_block(T0 + 30, proposer(), registrations(&c, 5, 1, T0 + 30))
            .unwrap();
        let mut spec = adopting.speculate();
        spec.execute(&b3).unwrap();
        let mut weak = c.certify(&b3).unwrap();
        weak.votes.truncate(2);
        let e = adopting.apply_block(b3, weak).unwrap_err();
        assert_eq!(e.kind.code(), "cert.below_quorum");
        assert_eq!(adopting.height(), 2);
        assert_eq!(adopting.state_head(), fresh.state_head());
    }

    #[test]
    fn apply_block_still_requires_a_certificate() {
        let (c, mut builder) = setup();
        let (block, _) = builder
            .build_block(T0 + 10, proposer(), registrations(&c, 0, 1, T0 + 10))
            .unwrap();
        let (mut replica, _) = Chain::from_genesis(&c.genesis).unwrap();
        let mut cert = c.certify(&block).unwrap();
        cert.votes.truncate(2);
        let e = replica.apply_block(block, cert).unwrap_err();
        assert_eq!(e.kind.code(), "cert.below_quorum");
        assert_eq!(replica.height(), 0);
    }
}

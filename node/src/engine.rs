//! The engine: the ledger replica (`Chain` + `Store`), the mempool and the block producer.
//!
//! Writers hand signed entries to [`Engine::submit`]: the entry is admitted against the current
//! state (`Chain::admit`, signatures included), queued in a bounded mempool, and a dedicated
//! producer thread builds a block from whatever is waiting (`Chain::build_block`), certifies it
//! with this node's validator key (a 1-of-1 commit certificate, `block::sign_commit`), commits
//! it (`Chain::commit_built`), appends it to sled atomically and flushed (`Store::append`), and
//! only then answers each waiter with its position, inclusion proof and a signed checkpoint.
//! Chain and store sit behind one mutex; every caller that takes it runs on a blocking thread,
//! never on the async runtime. Not here: HTTP (`api`), consensus between several validators.

use crate::clock::Clock;
use crate::consensus::{CommitError, Ledger, SharedLedger};
use crate::mempool::{Pool, PoolError, SharedPool};
use crate::metrics::Metrics;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::sync::{mpsc, oneshot};
use xinyi_ledger::block::{sign_commit, Block, CommitCertificate};
use xinyi_ledger::chain::ChainErrorKind;
use xinyi_ledger::entry::{Author, EntryBody, EntryError, MemberChange};
use xinyi_ledger::hash::Digest;
use xinyi_ledger::keys::SigDomain;
use xinyi_ledger::merkle::Hash;
use xinyi_ledger::note::{sign_checkpoint, Checkpoint, Note, NoteSigner, VerifierKey};
use xinyi_ledger::state::{OrgRecord, StateError};
use xinyi_ledger::store::Store;
use xinyi_ledger::{Chain, Entry, EntryKind, Genesis, KeyPair, OrgId, TimeMs};

/// The answer to a committed write.
#[derive(Debug, Clone, Serialize)]
pub struct Committed {
    /// Entry id (also the consent / repair / commitment id where the entry creates one).
    pub id: Digest,
    /// Entry kind name.
    pub kind: &'static str,
    /// Log position.
    pub position: u64,
    /// Block height.
    pub height: u64,
    /// Block header hash.
    pub block_hash: Digest,
    /// RFC 9162 inclusion proof in the log of the checkpoint's size, hex.
    #[serde(serialize_with = "ser_proof")]
    pub inclusion_proof: Vec<Hash>,
    /// Signed checkpoint (C2SP note) for the log after this block.
    pub checkpoint: String,
}

/// Serialises a proof as a list of hex strings.
pub fn ser_proof<S: serde::Serializer>(p: &[Hash], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(p.iter().map(hex::encode))
}

/// Why a write was not committed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Refused at admission (before the mempool).
    #[error("{0}")]
    Rejected(ChainErrorKind),
    /// Dropped by the block builder.
    #[error("{0}")]
    Dropped(StateError),
    /// The mempool is full.
    #[error("the mempool is full; retry later")]
    MempoolFull,
    /// The node cannot commit (storage failure or shutting down).
    #[error("node unavailable: {0}")]
    Unavailable(String),
}

struct Job {
    entry: Entry,
    reply: oneshot::Sender<Result<Committed, SubmitError>>,
}

/// Callers waiting for entries submitted through this node, by entry id (cluster mode).
pub type Waiters =
    Arc<Mutex<BTreeMap<Digest, Vec<oneshot::Sender<Result<Committed, SubmitError>>>>>>;

/// How many recent header hashes are indexed for peers asking for a block by hash.
const RECENT_HEADERS: u64 = 4_096;

/// What a cluster-mode core does around each block consensus commits.
pub struct CommitHooks {
    /// This node votes; its own signature makes its checkpoints valid. A follower's are not:
    /// it serves the latest note a validator sent it (see `on_checkpoint_note`).
    validator: bool,
    /// Follower: answers waiting for a validator-signed checkpoint covering them.
    pending: Vec<PendingAnswer>,
    /// Follower: validator notes for log sizes it has not committed yet (bounded).
    early: BTreeMap<u64, String>,
    /// Follower: a validator's note has been adopted since start.
    adopted: bool,
    producer: Producer,
    metrics: Arc<Metrics>,
    failed: Arc<AtomicBool>,
    waiters: Waiters,
    pool: Option<SharedPool>,
    recent: BTreeMap<Digest, u64>,
}

/// A committed entry whose submitter waits on a follower for a validator checkpoint.
struct PendingAnswer {
    answer: Committed,
    waiters: Vec<oneshot::Sender<Result<Committed, SubmitError>>>,
}

/// Most early checkpoint notes a follower keeps.
const MAX_EARLY_NOTES: usize = 64;

/// Checkpoint verifier keys of the validators, each with its voting power.
type PoweredKeys = Vec<(VerifierKey, u64)>;

/// Chain, store and the latest checkpoint, kept consistent under one lock.
pub struct Core {
    /// The replica.
    pub chain: Chain,
    /// Its durable store.
    pub store: Arc<Store>,
    /// Signed note for the durable log size.
    pub checkpoint: String,
    /// Log size of the last block that is in the store (the checkpoint's size). The chain may
    /// be one block ahead while that block is being flushed: proofs and entry reads use this.
    pub durable_size: u64,
    /// The latest checkpoint signed by validators holding more than two thirds of the power,
    /// with its size ([`Core::read_checkpoint`]). In a consortium the newest checkpoint is final
    /// only once the other validators' cosignatures arrive; reads prove against this one so a
    /// reader who requires finality need not race them.
    final_note: Option<(u64, String)>,
    /// Cluster mode: what happens when consensus commits a block.
    hooks: Option<CommitHooks>,
    /// The checkpoint verifier keys of the last validator set asked for (decompressing every
    /// validator key for every peer checkpoint was a visible share of a validator's CPU).
    verifier_cache: Mutex<Option<(xinyi_ledger::ValidatorSet, PoweredKeys)>>,
}

impl Core {
    /// The checkpoint an entry read at `position` proves against: the latest final one if it
    /// covers the position, else the newest (which the reader may have to wait on). Returns its
    /// size and note.
    pub fn read_checkpoint(&self, position: u64) -> (u64, String) {
        match &self.final_note {
            Some((size, note)) if position < *size && *size <= self.durable_size => {
                (*size, note.clone())
            }
            _ => (self.durable_size, self.checkpoint.clone()),
        }
    }

    /// Remembers the served checkpoint as the latest final one when validators holding more
    /// than two thirds of the power signed it. Every signature line of `self.checkpoint` that
    /// names a validator key was verified before it was served (this node's own, or merged and
    /// adopted only after [`Core::check_note`]), so lines are counted by key ID here; a key ID
    /// two validators share counts for neither.
    fn note_if_final(&mut self) {
        let Ok(note) = Note::parse(&self.checkpoint) else {
            return;
        };
        let Ok(cp) = Checkpoint::parse_text(&note.text) else {
            return;
        };
        if self.final_note.as_ref().is_some_and(|(s, _)| *s >= cp.size) {
            return;
        }
        let keys = self.verifier_powers();
        let total: u128 = keys.iter().map(|(_, p)| u128::from(*p)).sum();
        let power: u128 = keys
            .iter()
            .filter(|(k, _)| keys.iter().filter(|(o, _)| o.key_id == k.key_id).count() == 1)
            .filter(|(k, _)| {
                note.signatures
                    .iter()
                    .any(|s| s.name == k.name && s.key_id == k.key_id)
            })
            .map(|(_, p)| u128::from(*p))
            .sum();
        if total > 0 && power * 3 > total * 2 {
            self.final_note = Some((cp.size, self.checkpoint.clone()));
        }
    }

    /// The validators' checkpoint verifier keys at the committed head.
    fn verifiers(&self) -> Vec<VerifierKey> {
        self.verifier_powers().into_iter().map(|(k, _)| k).collect()
    }

    /// The validators' checkpoint verifier keys at the committed head, with their power.
    fn verifier_powers(&self) -> PoweredKeys {
        let origin = self.chain.genesis().name.clone();
        let Ok(set) = self.chain.state().validators() else {
            return vec![];
        };
        let mut cache = self
            .verifier_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((cached, keys)) = cache.as_ref() {
            if *cached == set {
                return keys.clone();
            }
        }
        let keys: PoweredKeys = set
            .validators
            .iter()
            .filter(|v| v.power > 0)
            .filter_map(|v| {
                let k = VerifierKey::new(origin.clone(), v.key.verifying_key().ok()?).ok()?;
                Some((k, v.power))
            })
            .collect();
        *cache = Some((set, keys.clone()));
        keys
    }

    /// Checks a peer's checkpoint note against the committed log: parses, origin, size
    /// within the committed log, root equal to ours at that size, signed by a validator.
    fn check_note(&self, note: &Note) -> Result<(Checkpoint, Vec<VerifierKey>), &'static str> {
        let cp = Checkpoint::parse_text(&note.text).map_err(|_| "malformed checkpoint")?;
        if cp.origin != self.chain.genesis().name {
            return Err("other origin");
        }
        if cp.size > self.chain.log().size() {
            return Err("ahead");
        }
        if self.chain.log().root_at(cp.size).ok() != Some(cp.root) {
            return Err("root differs from the committed log");
        }
        let verified = note
            .verify(&self.verifiers())
            .map_err(|_| "not signed by a validator")?;
        Ok((cp, verified))
    }

    /// Follower: serves `text` as its checkpoint if it is newer, verified and consistent with
    /// the committed log, and answers every waiter it covers. Returns whether it was adopted.
    fn adopt_note(&mut self, text: &str) -> bool {
        let Ok(note) = Note::parse(text) else {
            tracing::debug!("checkpoint note refused: malformed note");
            return false;
        };
        let (cp, verified) = match self.check_note(&note) {
            Ok(x) => x,
            Err("ahead") => {
                if let (Some(h), Ok(cp)) = (self.hooks.as_mut(), Checkpoint::parse_text(&note.text))
                {
                    h.early.insert(cp.size, text.to_string());
                    while h.early.len() > MAX_EARLY_NOTES {
                        h.early.pop_first();
                    }
                }
                return false;
            }
            Err(why) => {
                tracing::debug!("checkpoint note refused: {why}");
                return false;
            }
        };
        let adopted = self.hooks.as_ref().is_some_and(|h| h.adopted);
        if adopted && cp.size <= self.durable_size {
            // The same checkpoint with more validators' cosignatures: serve the merged note.
            if let Ok(mine) = Note::parse(&self.checkpoint) {
                self.merge_cosignatures(mine, note, &verified);
            }
            return false;
        }
        self.checkpoint = text.to_string();
        self.durable_size = cp.size;
        self.note_if_final();
        let Some(h) = self.hooks.as_mut() else {
            return true;
        };
        h.adopted = true;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut h.pending)
            .into_iter()
            .partition(|p| p.answer.position < cp.size);
        h.pending = waiting;
        for mut p in ready {
            p.answer.inclusion_proof = self
                .chain
                .log()
                .inclusion_proof(p.answer.position, cp.size)
                .unwrap_or_default();
            p.answer.checkpoint = self.checkpoint.clone();
            for w in p.waiters {
                let _ = w.send(Ok(p.answer.clone()));
            }
        }
        true
    }

    /// Validator: adds other validators' signatures on the same checkpoint to its own note.
    fn add_cosignatures(&mut self, text: &str) {
        let (Ok(mine), Ok(other)) = (Note::parse(&self.checkpoint), Note::parse(text)) else {
            return;
        };
        // A note on another checkpoint is not verified at all.
        if mine.text != other.text {
            return;
        }
        let Ok((_, verified)) = self.check_note(&other) else {
            return;
        };
        self.merge_cosignatures(mine, other, &verified);
    }

    /// Adds to `mine` (this node's note) the signatures of `other` on the same text that were
    /// `verified` ([`Core::check_note`]), and serves the result.
    fn merge_cosignatures(&mut self, mut mine: Note, other: Note, verified: &[VerifierKey]) {
        if mine.text != other.text {
            return;
        }
        for sig in other.signatures {
            let known = verified.iter().any(|k| k.key_id == sig.key_id);
            let have = mine.signatures.iter().any(|s| s.key_id == sig.key_id);
            if known && !have {
                mine.signatures.push(sig);
            }
        }
        self.checkpoint = mine.to_string();
        self.note_if_final();
    }
}

impl Ledger for Core {
    fn chain(&self) -> &Chain {
        &self.chain
    }

    fn commit(&mut self, block: Block, cert: CommitCertificate) -> Result<(), CommitError> {
        let Some(hooks) = self.hooks.as_mut() else {
            return Err(CommitError::Store(
                "this node does not run consensus".into(),
            ));
        };
        if hooks.failed.load(Ordering::SeqCst) {
            return Err(CommitError::Store(
                "the node stopped committing after a storage failure".into(),
            ));
        }
        let cb = self
            .chain
            .apply_block(block, cert)
            .map_err(CommitError::Invalid)?;
        let height = cb.block.header.height;
        crate::failpoint::check("commit.before_store", height);
        if let Err(e) = self.store.append(&cb) {
            hooks.failed.store(true, Ordering::SeqCst);
            tracing::error!("storing block {height} failed, node stops committing: {e}");
            return Err(CommitError::Store(e.to_string()));
        }
        crate::failpoint::check("commit.after_store", height);
        hooks.recent.insert(cb.header_hash, height);
        if hooks.recent.len() as u64 > RECENT_HEADERS {
            let floor = height.saturating_sub(RECENT_HEADERS);
            hooks.recent.retain(|_, h| *h > floor);
        }
        let size = cb.block.header.log_size;
        if hooks.validator {
            match sign_cp_at(&self.chain, &hooks.producer, size) {
                Ok(cp) => {
                    self.checkpoint = cp;
                    self.durable_size = size;
                }
                Err(e) => tracing::error!("{e}"),
            }
        }
        if let Ok(orgs) = self.chain.state().orgs() {
            *hooks
                .producer
                .orgs
                .write()
                .unwrap_or_else(|e| e.into_inner()) = orgs.into_iter().collect();
        }
        let m = &hooks.metrics;
        m.height.store(height, Ordering::Relaxed);
        m.log_size.store(size, Ordering::Relaxed);
        Metrics::inc(&m.blocks_produced);
        m.entries_committed
            .fetch_add(cb.entries.len() as u64, Ordering::Relaxed);
        if let Some(pool) = &hooks.pool {
            let mut p = pool.lock();
            p.remove(cb.entries.iter().map(|e| &e.id));
            m.mempool_depth.store(p.len() as u64, Ordering::Relaxed);
        }
        let mut waiters = hooks.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let validator = hooks.validator;
        let mut pending = Vec::new();
        if !waiters.is_empty() {
            for (i, e) in cb.entries.iter().enumerate() {
                let Some(ws) = waiters.remove(&e.id) else {
                    continue;
                };
                let position = cb.first_position + i as u64;
                let mut answer = Committed {
                    id: e.id,
                    kind: e.body.kind.name(),
                    position,
                    height,
                    block_hash: cb.header_hash,
                    inclusion_proof: vec![],
                    checkpoint: String::new(),
                };
                if validator {
                    answer.inclusion_proof = self
                        .chain
                        .log()
                        .inclusion_proof(position, size)
                        .unwrap_or_default();
                    answer.checkpoint = self.checkpoint.clone();
                    for w in ws {
                        let _ = w.send(Ok(answer.clone()));
                    }
                } else {
                    pending.push(PendingAnswer {
                        answer,
                        waiters: ws,
                    });
                }
            }
        }
        drop(waiters);
        if !validator {
            hooks.pending.extend(pending);
            // Notes that arrived before this block did.
            let early: Vec<String> = hooks
                .early
                .range(..=size)
                .rev()
                .map(|(_, n)| n.clone())
                .collect();
            hooks.early = hooks.early.split_off(&(size + 1));
            for n in early {
                if self.adopt_note(&n) {
                    break;
                }
            }
        } else {
            // A single validator's own signature can be a quorum.
            self.note_if_final();
        }
        Ok(())
    }

    fn checkpoint_note(&self) -> Option<String> {
        self.hooks
            .as_ref()
            .filter(|h| h.validator)
            .map(|_| self.checkpoint.clone())
    }

    fn on_checkpoint_note(&mut self, note: &str) {
        let Some(validator) = self.hooks.as_ref().map(|h| h.validator) else {
            return;
        };
        if validator {
            self.add_cosignatures(note);
        } else {
            self.adopt_note(note);
        }
    }

    fn stored(&self, height: u64) -> Option<(Block, CommitCertificate)> {
        self.store.block(height).ok().flatten()
    }

    fn position(&self, header_hash: &Digest) -> Option<u64> {
        if header_hash == self.chain.head_hash() {
            return Some(self.chain.height());
        }
        self.hooks.as_ref()?.recent.get(header_hash).copied()
    }
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Mempool capacity (entries); submissions beyond it get 429.
    pub mempool_capacity: usize,
    /// Largest batch per block (capped by the chain's max_block_entries).
    pub max_batch: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            mempool_capacity: 50_000,
            max_batch: 5_000,
        }
    }
}

/// The ledger engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    core: Arc<Mutex<Core>>,
    store: Arc<Store>,
    mode: Mode,
    clock: Arc<Clock>,
    org: OrgId,
    key: KeyPair,
    genesis: Arc<Genesis>,
    chain_id: Digest,
    metrics: Arc<Metrics>,
    failed: Arc<AtomicBool>,
    orgs: OrgCache,
}

/// How blocks are made.
#[derive(Clone)]
enum Mode {
    /// This node is the only validator: a local producer thread builds and certifies blocks.
    Solo(mpsc::Sender<Job>),
    /// Consensus among several nodes commits blocks; this node pools (if it validates),
    /// forwards and waits.
    Cluster(ClusterSide),
}

#[derive(Clone)]
struct ClusterSide {
    pool: Option<SharedPool>,
    waiters: Waiters,
    forward: mpsc::Sender<Entry>,
    validator: Arc<AtomicBool>,
}

/// The registered organisations, refreshed after every block (read without the core lock).
pub type OrgCache = Arc<RwLock<BTreeMap<OrgId, OrgRecord>>>;

struct Producer {
    orgs: OrgCache,
    org: OrgId,
    key: KeyPair,
    signer: NoteSigner,
    origin: String,
    chain_id: Digest,
}

fn sign_cp_at(chain: &Chain, p: &Producer, size: u64) -> Result<String, String> {
    let root = chain
        .log()
        .root_at(size)
        .map_err(|e| format!("log root at {size}: {e}"))?;
    let cp = Checkpoint {
        origin: p.origin.clone(),
        size,
        root,
        extensions: vec![],
    };
    sign_checkpoint(&cp, &[&p.signer]).map_err(|e| format!("signing checkpoint: {e}"))
}

impl Engine {
    /// Opens (or creates) the ledger in `dir` and starts the block producer thread.
    /// `org`/`key` must be the chain's only validator.
    pub fn open(
        dir: &Path,
        genesis: &Genesis,
        org: OrgId,
        key: KeyPair,
        clock: Arc<Clock>,
        metrics: Arc<Metrics>,
        cfg: EngineConfig,
    ) -> anyhow::Result<Engine> {
        let (store, chain) = open_store(dir, genesis)?;
        let set = chain
            .state()
            .validators()
            .map_err(|e| anyhow::anyhow!("reading the validator set: {e}"))?;
        match set.get(&org) {
            Some(v) if v.key == key.public() => {}
            Some(_) => anyhow::bail!(
                "the key file's public key {} is not the key of validator {org} in the ledger",
                key.public()
            ),
            None => anyhow::bail!("{org} is not a validator of this chain"),
        }
        if set.validators.len() != 1 {
            anyhow::bail!(
                "this chain has {} validators; this version runs single-validator chains only \
                 (multi-node consensus comes with the network release)",
                set.validators.len()
            );
        }
        let signer = NoteSigner::new(genesis.name.clone(), key.signing_key().clone())
            .map_err(|e| anyhow::anyhow!("checkpoint signer: {e}"))?;
        let chain_id = *chain.chain_id();
        let orgs = org_cache(&chain)?;
        let producer = Producer {
            orgs: orgs.clone(),
            org: org.clone(),
            key: key.clone(),
            signer,
            origin: genesis.name.clone(),
            chain_id,
        };
        let durable_size = chain.log().size();
        let checkpoint =
            sign_cp_at(&chain, &producer, durable_size).map_err(|e| anyhow::anyhow!(e))?;
        metrics.height.store(chain.height(), Ordering::Relaxed);
        metrics
            .log_size
            .store(chain.log().size(), Ordering::Relaxed);
        let store = Arc::new(store);
        let core = Arc::new(Mutex::new(Core {
            chain,
            store: store.clone(),
            checkpoint,
            durable_size,
            hooks: None,
            final_note: None,
            verifier_cache: Mutex::default(),
        }));
        core.lock()
            .unwrap_or_else(|p| p.into_inner())
            .note_if_final();
        let max_block = genesis.params.max_block_entries as usize;
        let max_batch = cfg.max_batch.clamp(1, max_block.max(1));
        let (tx, rx) = mpsc::channel(cfg.mempool_capacity.max(1));
        let failed = Arc::new(AtomicBool::new(false));
        {
            let core = core.clone();
            let clock = clock.clone();
            let metrics = metrics.clone();
            let failed = failed.clone();
            std::thread::Builder::new()
                .name("xinyi-producer".into())
                .spawn(move || {
                    producer_loop(rx, core, producer, clock, metrics, failed, max_batch)
                })?;
        }
        Ok(Engine {
            core,
            store,
            mode: Mode::Solo(tx),
            clock,
            org,
            key,
            genesis: Arc::new(genesis.clone()),
            chain_id,
            metrics,
            failed,
            orgs,
        })
    }

    /// Chain id.
    pub fn chain_id(&self) -> &Digest {
        &self.chain_id
    }
    /// Genesis document.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }
    /// This node's organisation.
    pub fn org(&self) -> &OrgId {
        &self.org
    }
    /// The node clock.
    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }
    /// Metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
    /// The store (thread-safe reads without the core lock).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
    /// A registered organisation, from the cache refreshed after every block.
    pub fn org_record(&self, id: &OrgId) -> Option<OrgRecord> {
        self.orgs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// The core lock if it is free right now (None while a block is being built).
    pub fn try_lock(&self) -> Option<MutexGuard<'_, Core>> {
        match self.core.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Whether the node stopped committing after a storage failure.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Locks the core. Call only from blocking threads.
    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with the core locked, on a blocking thread.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core) -> T + Send + 'static,
    ) -> Result<T, SubmitError> {
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = core.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut g)
        })
        .await
        .map_err(|e| SubmitError::Unavailable(format!("worker failed: {e}")))
    }

    /// Signs an entry by this node's organisation at the node clock, with a random nonce.
    pub fn sign_own(&self, kind: EntryKind) -> Result<Entry, EntryError> {
        Entry::sign(
            &self.chain_id,
            EntryBody {
                author: Author::Org(self.org.clone()),
                time: self.clock.now(),
                nonce: rand::random(),
                kind,
            },
            &self.key,
        )
    }

    /// Admits `entry` against the current state, then queues it and waits until its block is
    /// committed and flushed.
    pub async fn submit(&self, entry: Entry) -> Result<Committed, SubmitError> {
        let now = self.clock.now();
        let core = self.core.clone();
        let chain_id = self.chain_id;
        let entry = tokio::task::spawn_blocking(move || admit(&core, &chain_id, entry, now))
            .await
            .map_err(|e| SubmitError::Unavailable(format!("worker failed: {e}")))?
            .map_err(SubmitError::Rejected)?;
        self.enqueue(entry).await
    }

    /// Queues an entry without admission (for entries this node built and checked itself).
    pub async fn enqueue(&self, entry: Entry) -> Result<Committed, SubmitError> {
        if self.failed() {
            return Err(SubmitError::Unavailable(
                "the node stopped committing after a storage failure".into(),
            ));
        }
        let tx = match &self.mode {
            Mode::Solo(tx) => tx,
            Mode::Cluster(c) => return self.enqueue_cluster(c, entry).await,
        };
        let (reply, rx) = oneshot::channel();
        match tx.try_send(Job { entry, reply }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                Metrics::inc(&self.metrics.mempool_full);
                return Err(SubmitError::MempoolFull);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(SubmitError::Unavailable("block producer stopped".into()))
            }
        }
        self.metrics
            .mempool_depth
            .store(self.mempool_depth() as u64, Ordering::Relaxed);
        rx.await
            .map_err(|_| SubmitError::Unavailable("block producer stopped".into()))?
    }

    fn mempool_depth(&self) -> usize {
        match &self.mode {
            Mode::Solo(tx) => tx.max_capacity() - tx.capacity(),
            Mode::Cluster(c) => c.pool.as_ref().map_or(0, |p| p.lock().len()),
        }
    }

    /// Cluster mode: registers a waiter, pools the entry (validators), forwards it to the peers
    /// and waits for the block that commits it.
    async fn enqueue_cluster(
        &self,
        c: &ClusterSide,
        entry: Entry,
    ) -> Result<Committed, SubmitError> {
        let id = entry.id;
        let (reply, rx) = oneshot::channel();
        c.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_default()
            .push(reply);
        let forget = || {
            c.waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        };
        let validating = c.validator.load(Ordering::SeqCst);
        if let Some(pool) = c.pool.as_ref().filter(|_| validating) {
            if let Err(PoolError::Full) = pool.lock().insert(entry.clone()) {
                forget();
                Metrics::inc(&self.metrics.mempool_full);
                return Err(SubmitError::MempoolFull);
            }
            pool.notify_arrival();
        }
        match c.forward.try_send(entry) {
            Ok(()) => {}
            // A validator still has it in its own pool; a follower cannot get it anywhere.
            Err(mpsc::error::TrySendError::Full(_)) if validating => {}
            Err(_) => {
                forget();
                Metrics::inc(&self.metrics.mempool_full);
                return Err(SubmitError::MempoolFull);
            }
        }
        self.metrics
            .mempool_depth
            .store(self.mempool_depth() as u64, Ordering::Relaxed);
        rx.await
            .map_err(|_| SubmitError::Unavailable("the node stopped".into()))?
    }

    /// Opens (or creates) the ledger in `dir` for a member of a multi-node consortium: blocks
    /// come from consensus (which drives [`Engine::ledger`]); submitted entries are pooled (if
    /// this node validates) and sent to the returned receiver for forwarding to the peers.
    pub fn open_cluster(
        dir: &Path,
        genesis: &Genesis,
        org: OrgId,
        key: KeyPair,
        clock: Arc<Clock>,
        metrics: Arc<Metrics>,
        cfg: EngineConfig,
    ) -> anyhow::Result<(Engine, mpsc::Receiver<Entry>)> {
        let (store, chain) = open_store(dir, genesis)?;
        let record = chain
            .state()
            .org(&org)
            .map_err(|e| anyhow::anyhow!("reading organisation {org}: {e}"))?
            .ok_or_else(|| {
                anyhow::anyhow!("{org} is not a registered organisation of this chain")
            })?;
        // The key the ledger gives `org` now, or the key of a committed rotation not yet in
        // force: a node that fell behind the effective height of its own rotation restarts with
        // the new key and follows until its ledger reaches that height (it cannot vote before:
        // the validator set there still names the old key).
        if record.key != key.public() {
            let pending = chain
                .state()
                .pending_changes()
                .map_err(|e| anyhow::anyhow!("reading pending membership changes: {e}"))?;
            let rotation = pending.iter().rev().find_map(|(h, c)| match c {
                MemberChange::RotateKey { org: o, key: k } if o == &org && *k == key.public() => {
                    Some(*h)
                }
                _ => None,
            });
            match rotation {
                Some(effective) => tracing::info!(
                    "{org}'s key {} is in force from height {effective} (a committed rotation); \
                     following the chain until then",
                    key.public()
                ),
                None => anyhow::bail!(
                    "the key file's public key {} is not the key of {org} in the ledger (nor \
                     the key of a committed rotation not yet in force)",
                    key.public()
                ),
            }
        }
        let validator = chain
            .state()
            .validators()
            .map_err(|e| anyhow::anyhow!("reading the validator set: {e}"))?
            .get(&org)
            .is_some_and(|v| v.power > 0);
        let chain_id = *chain.chain_id();
        let orgs = org_cache(&chain)?;
        let producer = Producer {
            orgs: orgs.clone(),
            org: org.clone(),
            key: key.clone(),
            signer: NoteSigner::new(genesis.name.clone(), key.signing_key().clone())
                .map_err(|e| anyhow::anyhow!("checkpoint signer: {e}"))?,
            origin: genesis.name.clone(),
            chain_id,
        };
        let durable_size = chain.log().size();
        let checkpoint =
            sign_cp_at(&chain, &producer, durable_size).map_err(|e| anyhow::anyhow!(e))?;
        metrics.height.store(chain.height(), Ordering::Relaxed);
        metrics.log_size.store(durable_size, Ordering::Relaxed);
        let max_block = genesis.params.max_block_entries as usize;
        let pool = Some({
            SharedPool::new(Pool::new(
                cfg.mempool_capacity,
                cfg.max_batch.clamp(1, max_block.max(1)),
                genesis.params.entry_time_window_ms,
            ))
        });
        let mut recent = BTreeMap::new();
        let top = chain.height();
        for h in top.saturating_sub(RECENT_HEADERS).max(1)..=top {
            if let Ok(Some(hd)) = store.header(h) {
                if let Ok(hash) = hd.hash() {
                    recent.insert(hash, h);
                }
            }
        }
        let waiters: Waiters = Arc::default();
        let failed = Arc::new(AtomicBool::new(false));
        let store = Arc::new(store);
        let core = Arc::new(Mutex::new(Core {
            chain,
            store: store.clone(),
            checkpoint,
            durable_size,
            hooks: Some(CommitHooks {
                validator,
                pending: Vec::new(),
                early: BTreeMap::new(),
                adopted: false,
                producer,
                metrics: metrics.clone(),
                failed: failed.clone(),
                waiters: waiters.clone(),
                pool: pool.clone(),
                recent,
            }),
            final_note: None,
            verifier_cache: Mutex::default(),
        }));
        core.lock()
            .unwrap_or_else(|p| p.into_inner())
            .note_if_final();
        let (forward, forwarded) = mpsc::channel(cfg.mempool_capacity.max(1));
        Ok((
            Engine {
                core,
                store,
                mode: Mode::Cluster(ClusterSide {
                    pool,
                    waiters,
                    forward,
                    validator: Arc::new(AtomicBool::new(validator)),
                }),
                clock,
                org,
                key,
                genesis: Arc::new(genesis.clone()),
                chain_id,
                metrics,
                failed,
                orgs,
            },
            forwarded,
        ))
    }

    /// The replica consensus extends (cluster mode; the same chain the API reads).
    pub fn ledger(&self) -> SharedLedger {
        self.core.clone()
    }

    /// The pool (cluster mode; fed only while this node validates).
    pub fn pool(&self) -> Option<SharedPool> {
        match &self.mode {
            Mode::Cluster(c) if c.validator.load(Ordering::SeqCst) => c.pool.clone(),
            _ => None,
        }
    }

    /// The pool the proposer reads (cluster mode), whether or not this node validates now.
    pub fn proposer_pool(&self) -> Option<SharedPool> {
        match &self.mode {
            Mode::Cluster(c) => c.pool.clone(),
            Mode::Solo(_) => None,
        }
    }

    /// Cluster mode: this node starts or stops validating (a new epoch's validator set). A
    /// validator signs the checkpoints it serves; a follower serves validators' notes.
    pub fn set_validator(&self, validator: bool) {
        if let Mode::Cluster(c) = &self.mode {
            c.validator.store(validator, Ordering::SeqCst);
            if let Some(h) = self.lock().hooks.as_mut() {
                h.validator = validator;
                h.adopted = false;
            }
            if !validator {
                if let Some(p) = &c.pool {
                    p.lock().clear();
                }
            }
        }
    }

    /// "solo" (single-validator chain), "validator" or "follower".
    pub fn role(&self) -> &'static str {
        match &self.mode {
            Mode::Solo(_) => "solo",
            Mode::Cluster(c) if c.validator.load(Ordering::SeqCst) => "validator",
            Mode::Cluster(_) => "follower",
        }
    }

    /// Entries a peer forwarded (decoded and statically checked by the transaction channel):
    /// pooled as they are. The submitting member authenticated and admitted them; this
    /// validator's proposals check every rule and batch-verify every signature anyway
    /// (`Chain::build_block` drops what fails), so checking each one again here would double
    /// the signature work per validator. A member forwarding junk only fills the bounded pool,
    /// at the p2p rate limit. Returns how many did not fit.
    pub fn pool_forwarded(&self, entries: Vec<Entry>) -> usize {
        let Some(pool) = self.pool() else {
            return 0;
        };
        let mut p = pool.lock();
        let mut refused = 0;
        for e in entries {
            if p.insert(e).is_err() {
                refused += 1;
            }
        }
        self.metrics
            .mempool_depth
            .store(p.len() as u64, Ordering::Relaxed);
        drop(p);
        pool.notify_arrival();
        refused
    }

    /// Commits `entries` in one block right now, on the calling thread (start-up seeding).
    pub fn commit_now(&self, entries: Vec<Entry>) -> Vec<Result<Committed, SubmitError>> {
        if !matches!(self.mode, Mode::Solo(_)) {
            return entries
                .iter()
                .map(|_| {
                    Err(SubmitError::Unavailable(
                        "blocks of a consortium are made by consensus".into(),
                    ))
                })
                .collect();
        }
        let producer = match self.producer() {
            Ok(p) => p,
            Err(e) => {
                return entries
                    .iter()
                    .map(|_| Err(SubmitError::Unavailable(e.clone())))
                    .collect()
            }
        };
        produce(
            &self.core,
            &producer,
            self.clock.now(),
            entries,
            &self.metrics,
            &self.failed,
        )
    }

    fn producer(&self) -> Result<Producer, String> {
        Ok(Producer {
            orgs: self.orgs.clone(),
            org: self.org.clone(),
            key: self.key.clone(),
            signer: NoteSigner::new(self.genesis.name.clone(), self.key.signing_key().clone())
                .map_err(|e| e.to_string())?,
            origin: self.genesis.name.clone(),
            chain_id: self.chain_id,
        })
    }

    /// Current node time.
    pub fn now(&self) -> TimeMs {
        self.clock.now()
    }
}

/// Opens (or creates) the sled ledger, with a hint when another process holds it.
fn open_store(dir: &Path, genesis: &Genesis) -> anyhow::Result<(Store, Chain)> {
    Store::open_or_create(dir, genesis).map_err(|e| {
        let hint = if e.to_string().contains("could not acquire lock") {
            " (is another xinyi-node using this data directory?)"
        } else {
            ""
        };
        anyhow::anyhow!("opening the ledger in {}: {e}{hint}", dir.display())
    })
}

/// The registered organisations of `chain`, as the cache the API reads.
fn org_cache(chain: &Chain) -> anyhow::Result<OrgCache> {
    Ok(Arc::new(RwLock::new(
        chain
            .state()
            .orgs()
            .map_err(|e| anyhow::anyhow!("reading organisations: {e}"))?
            .into_iter()
            .collect(),
    )))
}

/// Authenticates `entry` under its author's registered key, then applies the admission rules
/// at `now`. An entry whose signature does not verify is refused as such (401), whatever else
/// is wrong with it.
fn admit(
    core: &Mutex<Core>,
    chain_id: &Digest,
    entry: Entry,
    now: TimeMs,
) -> Result<Entry, ChainErrorKind> {
    let key = {
        let g = core.lock().unwrap_or_else(|p| p.into_inner());
        let st = g.chain.state();
        match &entry.body.author {
            Author::Org(o) => st.org(o).map(|r| r.map(|r| r.key)),
            Author::Firm(f) => st.firm(f).map(|r| r.map(|r| r.key)),
        }
    };
    let key = match key {
        Ok(Some(k)) => k,
        Ok(None) => {
            let who = match &entry.body.author {
                Author::Org(o) => o.to_string(),
                Author::Firm(f) => f.to_string(),
            };
            return Err(ChainErrorKind::State(StateError::UnknownAuthor(who)));
        }
        Err(e) => return Err(ChainErrorKind::State(e)),
    };
    key.verify(
        SigDomain::Entry,
        &entry.signing_payload(chain_id),
        &entry.signature,
    )
    .map_err(|_| ChainErrorKind::Signature)?;
    let mut g = core.lock().unwrap_or_else(|p| p.into_inner());
    g.chain.admit(&entry, now).map(|()| entry)
}

fn producer_loop(
    mut rx: mpsc::Receiver<Job>,
    core: Arc<Mutex<Core>>,
    p: Producer,
    clock: Arc<Clock>,
    metrics: Arc<Metrics>,
    failed: Arc<AtomicBool>,
    max_batch: usize,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut entries = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        for j in jobs {
            entries.push(j.entry);
            replies.push(j.reply);
        }
        let results = produce(&core, &p, clock.now(), entries, &metrics, &failed);
        metrics
            .mempool_depth
            .store(rx.len() as u64, Ordering::Relaxed);
        for (reply, r) in replies.into_iter().zip(results) {
            let _ = reply.send(r);
        }
    }
}

/// Builds, certifies, commits and stores one block of `entries`; one result per entry, in order.
///
/// The core lock is held while the block is built and committed in memory, released while it
/// is written and flushed (so readers and admission checks are not stalled by the disk), and
/// taken again to publish the new durable size and checkpoint and to compute the proofs. Only
/// this (single) producer appends, so blocks reach the store in order.
fn produce(
    core: &Mutex<Core>,
    p: &Producer,
    now: TimeMs,
    entries: Vec<Entry>,
    metrics: &Metrics,
    failed: &AtomicBool,
) -> Vec<Result<Committed, SubmitError>> {
    let n = entries.len();
    let fail_all = |msg: String| -> Vec<Result<Committed, SubmitError>> {
        (0..n)
            .map(|_| Err(SubmitError::Unavailable(msg.clone())))
            .collect()
    };
    if failed.load(Ordering::SeqCst) {
        return fail_all("the node stopped committing after a storage failure".into());
    }
    let ids: Vec<Digest> = entries.iter().map(|e| e.id).collect();
    let take_dropped = |dropped: &mut Vec<xinyi_ledger::chain::Dropped>, id: &Digest| {
        let i = dropped.iter().position(|d| &d.id == id)?;
        Some(dropped.remove(i).reason)
    };
    let t0 = std::time::Instant::now();
    // Phase 1 (locked): build, certify, commit in memory.
    let (committed, mut dropped, store) = {
        let mut g = core.lock().unwrap_or_else(|p| p.into_inner());
        let (block, mut dropped) = match g.chain.build_block(now, p.org.clone(), entries) {
            Ok(x) => x,
            Err(e) => {
                g.chain.abort_built();
                tracing::error!("building a block failed: {e}");
                return fail_all(format!("building a block failed: {e}"));
            }
        };
        if block.entries.is_empty() {
            g.chain.abort_built();
            return ids
                .iter()
                .map(|id| {
                    Metrics::inc(&metrics.entries_dropped);
                    Err(match take_dropped(&mut dropped, id) {
                        Some(r) => SubmitError::Dropped(r),
                        None => SubmitError::Unavailable("entry was not included".into()),
                    })
                })
                .collect();
        }
        let height = block.header.height;
        let header_hash = match block.header.hash() {
            Ok(h) => h,
            Err(e) => {
                g.chain.abort_built();
                return fail_all(format!("hashing the header: {e}"));
            }
        };
        let cert = CommitCertificate {
            height,
            header_hash,
            votes: vec![sign_commit(
                &p.key,
                p.org.clone(),
                &p.chain_id,
                height,
                &header_hash,
            )],
        };
        match g.chain.commit_built(cert) {
            Ok(c) => (c, dropped, g.store.clone()),
            Err(e) => {
                g.chain.abort_built();
                tracing::error!("committing block {height} failed: {e}");
                return fail_all(format!("committing block {height} failed: {e}"));
            }
        }
    };
    let height = committed.block.header.height;
    let header_hash = committed.header_hash;
    let size = committed.block.header.log_size;
    let t1 = t0.elapsed();
    // Phase 2 (unlocked): one atomic, flushed batch.
    if let Err(e) = store.append(&committed) {
        // The in-memory replica is now ahead of the disk: stop committing, answer nobody
        // "committed"; a restart reloads the durable state.
        failed.store(true, Ordering::SeqCst);
        tracing::error!("storing block {height} failed, node stops committing: {e}");
        return fail_all(format!("storing block {height} failed: {e}"));
    }
    let t2 = t0.elapsed();
    // Phase 3 (locked): publish the durable size and checkpoint; proofs.
    let mut g = core.lock().unwrap_or_else(|p| p.into_inner());
    match sign_cp_at(&g.chain, p, size) {
        Ok(cp) => {
            g.checkpoint = cp;
            g.durable_size = size;
            g.note_if_final();
        }
        Err(e) => tracing::error!("{e}"),
    }
    // Membership changes (new orgs, rotated keys) take effect at block boundaries.
    if let Ok(orgs) = g.chain.state().orgs() {
        *p.orgs.write().unwrap_or_else(|e| e.into_inner()) = orgs.into_iter().collect();
    }
    metrics.height.store(height, Ordering::Relaxed);
    metrics.log_size.store(size, Ordering::Relaxed);
    Metrics::inc(&metrics.blocks_produced);
    let mut out = Vec::with_capacity(n);
    let mut kept = committed.entries.iter().enumerate().peekable();
    for id in &ids {
        match kept.peek() {
            Some((i, e)) if &e.id == id => {
                let position = committed.first_position + *i as u64;
                let proof = g
                    .chain
                    .log()
                    .inclusion_proof(position, size)
                    .unwrap_or_default();
                out.push(Ok(Committed {
                    id: e.id,
                    kind: e.body.kind.name(),
                    position,
                    height,
                    block_hash: header_hash,
                    inclusion_proof: proof,
                    checkpoint: g.checkpoint.clone(),
                }));
                metrics.entries_committed.fetch_add(1, Ordering::Relaxed);
                kept.next();
            }
            _ => {
                Metrics::inc(&metrics.entries_dropped);
                out.push(Err(match take_dropped(&mut dropped, id) {
                    Some(r) => SubmitError::Dropped(r),
                    None => SubmitError::Unavailable("entry was not included".into()),
                }))
            }
        }
    }
    tracing::debug!(
        "block {height}: {} of {n} entries, build {t1:?}, store {:?}, total {:?}",
        committed.entries.len(),
        t2 - t1,
        t0.elapsed()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use xinyi_ledger::sample::{sample_firm, SampleConsortium};

    const T0: TimeMs = 1_795_000_000_000;

    /// A note on the checkpoint of `core`'s log at `size`, signed by the first `n` validators.
    fn signed_by(c: &SampleConsortium, core: &Core, size: u64, n: usize) -> String {
        let root = core.chain.log().root_at(size).unwrap();
        let cp = Checkpoint {
            origin: c.genesis.name.clone(),
            size,
            root,
            extensions: vec![],
        };
        let signers: Vec<NoteSigner> = c.validators[..n]
            .iter()
            .map(|o| NoteSigner::new(c.genesis.name.clone(), c.keys[o].signing_key().clone()))
            .collect::<Result<_, _>>()
            .unwrap();
        sign_checkpoint(&cp, &signers.iter().collect::<Vec<_>>()).unwrap()
    }

    /// Entry reads prove against the latest quorum-signed checkpoint that covers the entry, not
    /// against a newer one whose cosignatures have not arrived; an entry only the newer one
    /// covers gets the newer note.
    #[test]
    fn reads_prove_against_the_latest_final_checkpoint_covering_them() {
        let dir = tempfile::tempdir().unwrap();
        let c = SampleConsortium::new(b"final-reads", 4, T0);
        let (store, chain) = Store::open_or_create(dir.path(), &c.genesis).unwrap();
        let (mut builder, _) = Chain::from_genesis(&c.genesis).unwrap();
        let mut core = Core {
            chain,
            store: Arc::new(store),
            checkpoint: String::new(),
            durable_size: 0,
            final_note: None,
            hooks: None,
            verifier_cache: Mutex::default(),
        };
        let mut block = |core: &mut Core, from: u32, time: TimeMs| {
            let entries = (from..from + 2)
                .map(|i| {
                    c.registration("gz-credit", &sample_firm(i).unwrap(), time, u64::from(i))
                        .unwrap()
                })
                .collect();
            let (b, dropped) = builder
                .build_block(time, OrgId::new("gz-credit").unwrap(), entries)
                .unwrap();
            assert!(dropped.is_empty());
            let cert = c.certify(&b).unwrap();
            builder.commit_built(cert.clone()).unwrap();
            core.chain.apply_block(b, cert).unwrap();
            core.durable_size = core.chain.log().size();
            core.durable_size
        };

        let s1 = block(&mut core, 0, T0 + 10);
        // Two of four validators: not more than two thirds, so nothing is final yet.
        core.checkpoint = signed_by(&c, &core, s1, 2);
        core.note_if_final();
        assert_eq!(core.read_checkpoint(0), (s1, core.checkpoint.clone()));
        assert!(core.final_note.is_none());
        // The third cosignature makes it final.
        let final1 = signed_by(&c, &core, s1, 3);
        core.checkpoint = final1.clone();
        core.note_if_final();
        assert_eq!(core.final_note, Some((s1, final1.clone())));

        // A newer block, signed so far only by this node.
        let s2 = block(&mut core, 2, T0 + 20);
        let fresh = signed_by(&c, &core, s2, 1);
        core.checkpoint = fresh.clone();
        core.note_if_final();
        assert_eq!(core.read_checkpoint(s1 - 1), (s1, final1.clone()));
        assert_eq!(core.read_checkpoint(s1), (s2, fresh));
        // The older final note stays until a newer one is final; then reads move to it.
        let final2 = signed_by(&c, &core, s2, 4);
        core.checkpoint = final2.clone();
        core.note_if_final();
        assert_eq!(core.read_checkpoint(0), (s2, final2.clone()));
        // A final note of an older size never replaces a newer one.
        core.checkpoint = final1;
        core.note_if_final();
        assert_eq!(core.final_note, Some((s2, final2)));
    }
}

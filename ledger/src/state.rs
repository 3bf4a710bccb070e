//! The deterministic state machine: which entries are allowed at a point of the ledger, and
//! what they change.
//!
//! State is a sorted key-value map (CBOR values) with two overlays: one for the block being
//! executed and one for the entry being applied, so a rejected entry leaves no trace and a
//! rejected block can be rolled back. The committed map is a persistent B-tree
//! (`imbl::OrdMap`, keys and values behind `Arc`s): cloning a `State` — consensus takes one copy
//! per speculatively executed block — shares the whole tree and costs O(1); a change copies only
//! the nodes on its path. The replay set (entry and query-request ids inside the replay window)
//! is not a key-value: it is derived in memory from the per-block `n` values and kept as a
//! persistent set too (`specs/state.md` §3 step 5, §4 step 2). The only clock is the block time given to
//! [`State::begin_block`]. Signatures are not checked here: applying an entry returns the
//! signature checks it needs (against the keys in force at that point), and the caller verifies
//! them, batched (`chain`). The state root is a hash chain over each block's sorted write set
//! (`specs/state.md`), so two nodes that applied the same blocks hold byte-identical roots.
//! The rule families live in child modules (`access`, `membership`, `repairs`, `alerts`,
//! `erasure`); this file holds the overlays, the block lifecycle and the entry dispatch.
//! Not here: persistence (`store`), block structure (`block`), the Merkle log (`merkle`).

mod access;
mod alerts;
mod erasure;
mod membership;
mod repairs;
mod replay;
pub use alerts::trigger_category;
pub use erasure::{ErasureIndexEntry, ErasureRefusal};
pub use membership::FirmKeyEpoch;

use crate::block::{Validator, ValidatorSet};
use crate::codec::{self, CodecError};
use crate::entry::{
    entry_signing_payload, Author, Consent, DenialReason, Entry, EntryKind, MemberChange,
};
use crate::firmtag::FirmTag;
use crate::genesis::{Genesis, Params};
use crate::hash::{self, Digest, Domain};
use crate::keys::{signing_message, PublicKey, SigDomain, Signature};
use crate::merkle::MerkleTree;
use crate::types::{Category, Grade, OrgId, Role, Severity, TimeMs};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

/// Maximum size of one state value.
const MAX_VALUE_BYTES: usize = 64 * 1024;

/// A registered organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRecord {
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Current key.
    pub key: PublicKey,
    /// Voting power.
    pub power: u64,
}

/// A registered firm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmRecord {
    /// The firm's current key.
    pub key: PublicKey,
    /// Agency that registered it.
    pub registered_by: OrgId,
}

/// A consent and its use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    /// Granting firm.
    pub firm: FirmTag,
    /// Terms.
    pub consent: Consent,
    /// Queries served under it.
    pub used: u32,
    /// Revoked by the firm.
    pub revoked: bool,
    /// Block time of the grant.
    pub granted_at: TimeMs,
}

/// A published penalty or list record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordState {
    /// Publishing agency.
    pub agency: OrgId,
    /// Firm.
    pub firm: FirmTag,
    /// Category.
    pub category: Category,
    /// Severity.
    pub severity: Severity,
    /// Minimum publicity days.
    pub min_publicity_days: u16,
    /// Block time of publication.
    pub published_at: TimeMs,
    /// A repair in progress.
    pub open_repair: Option<Digest>,
    /// Repaired in both registries.
    pub repaired: bool,
    /// Block time its category's retention period ended (it is no longer shown); absent from
    /// the encoding while `None`, so records of chains without retention keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<TimeMs>,
}

/// A credit commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentRecord {
    /// Firm.
    pub firm: FirmTag,
    /// Agency.
    pub agency: OrgId,
    /// Digest of the text.
    pub content: Digest,
    /// Due time.
    pub due: TimeMs,
    /// Block time made.
    pub made_at: TimeMs,
    /// Recorded as broken.
    pub broken: bool,
}

/// A supervision grade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GradeRecord {
    /// Grading agency.
    pub agency: OrgId,
    /// Grade.
    pub grade: Grade,
    /// Block time assigned.
    pub assigned_at: TimeMs,
}

/// Where a repair stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairStatus {
    /// Waiting for the agency's decision.
    Requested,
    /// Approved; waiting for the registries.
    Approved,
    /// Rejected.
    Rejected,
    /// Applied by both registries.
    Applied,
}

/// A repair case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairRecord {
    /// Firm.
    pub firm: FirmTag,
    /// Record to repair.
    pub record: Digest,
    /// Agency that must decide.
    pub agency: OrgId,
    /// Status.
    pub status: RepairStatus,
    /// Block time requested.
    pub requested_at: TimeMs,
    /// Block time decided.
    pub decided_at: Option<TimeMs>,
    /// Decision reason.
    pub reason: Option<String>,
    /// Both registries must have applied by then.
    pub deadline: Option<TimeMs>,
    /// Block time 信用中国 applied it.
    pub credit_china_applied_at: Option<TimeMs>,
    /// Block time 公示系统 applied it.
    pub gsxt_applied_at: Option<TimeMs>,
    /// Set by the first block whose time is past the deadline while not both applied.
    pub overdue: bool,
}

impl RepairRecord {
    /// Whether the repair is overdue at `now` (the flag, or computed for a later clock).
    pub fn overdue_at(&self, now: TimeMs) -> bool {
        self.overdue
            || (self.status == RepairStatus::Approved && self.deadline.is_some_and(|d| now >= d))
    }
}

/// One signature the caller must verify for an applied entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigRequirement {
    /// Complete signed message.
    pub message: Vec<u8>,
    /// Key that must have signed it.
    pub key: PublicKey,
    /// The signature.
    pub signature: Signature,
}

/// What applying an entry produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Signatures to verify before the block counts as valid.
    pub signatures: Vec<SigRequirement>,
    /// The firm the entry concerns (for the per-firm access index).
    pub firm: Option<FirmTag>,
}

/// Why an entry is not allowed at this point of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The author is not registered.
    #[error("author {0} is not registered")]
    UnknownAuthor(String),
    /// The author's role cannot make this statement.
    #[error("{author} (role {role:?}) may not sign a {kind} entry")]
    Forbidden {
        /// Author.
        author: String,
        /// Its role.
        role: Role,
        /// Entry kind.
        kind: &'static str,
    },
    /// Author is not the party this statement belongs to.
    #[error("{0}")]
    NotOwner(String),
    /// A referenced object does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// Kind.
        what: &'static str,
        /// Id.
        id: String,
    },
    /// Already exists.
    #[error("{what} {id} already exists")]
    AlreadyExists {
        /// Kind.
        what: &'static str,
        /// Id.
        id: String,
    },
    /// Entry time too far from block time.
    #[error("entry time {entry} is outside the window around block time {block}")]
    StaleOrFuture {
        /// Entry time.
        entry: TimeMs,
        /// Block time.
        block: TimeMs,
    },
    /// Entry already on the ledger (replay).
    #[error("entry {0} is a replay")]
    Replay(Digest),
    /// The query does not satisfy its consent.
    #[error("query not authorized: {}", .0.code())]
    QueryNotAuthorized(DenialReason),
    /// A denial whose reason is not the one the rules give.
    #[error("denial reason {claimed:?} is wrong: the rules give {actual:?}")]
    WrongDenial {
        /// Claimed.
        claimed: DenialReason,
        /// Computed (None = the query is authorized).
        actual: Option<DenialReason>,
    },
    /// The query request is signed by a different bank than the consent's or the request's.
    #[error("{0}")]
    Invalid(String),
    /// Repair workflow step out of order.
    #[error("repair {repair}: {reason}")]
    RepairState {
        /// Repair id.
        repair: Digest,
        /// Why.
        reason: String,
    },
    /// Minimum publicity period not yet over.
    #[error("record's minimum publicity period ends at {ends}, block time is {now}")]
    PublicityPeriodNotElapsed {
        /// End of the period.
        ends: TimeMs,
        /// Block time.
        now: TimeMs,
    },
    /// Membership approvals below quorum or from non-validators.
    #[error("membership change: {0}")]
    Membership(String),
    /// Checkpoint or anchor does not match the log.
    #[error("checkpoint of size {size} does not match the log: {reason}")]
    Checkpoint {
        /// Size claimed.
        size: u64,
        /// Why.
        reason: String,
    },
    /// Block sequencing (height/time) broken.
    #[error("block sequence: {0}")]
    Sequence(String),
    /// An alert of an `alerts_delivered` batch is not allowed by its consent and trigger.
    #[error("alert not authorized: {}", .0.code())]
    AlertNotAuthorized(crate::monitor::AlertRefusal),
    /// A `data_erased` entry whose reference does not support its reason.
    #[error("erasure refused: {} ({})", .0.message(), .0.code())]
    Erasure(ErasureRefusal),
    /// Stored state value could not be decoded.
    #[error("state value {key}: {err}")]
    Corrupt {
        /// Key (hex).
        key: String,
        /// Decoder error.
        err: CodecError,
    },
}

impl StateError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            StateError::UnknownAuthor(_) => "state.unknown_author",
            StateError::Forbidden { .. } => "state.forbidden",
            StateError::NotOwner(_) => "state.not_owner",
            StateError::NotFound { .. } => "state.not_found",
            StateError::AlreadyExists { .. } => "state.already_exists",
            StateError::StaleOrFuture { .. } => "state.stale_or_future",
            StateError::Replay(_) => "state.replay",
            StateError::QueryNotAuthorized(r) => r.code(),
            StateError::WrongDenial { .. } => "state.wrong_denial",
            StateError::Invalid(_) => "state.invalid",
            StateError::RepairState { .. } => "state.repair",
            StateError::PublicityPeriodNotElapsed { .. } => "state.publicity_period",
            StateError::Membership(_) => "state.membership",
            StateError::Checkpoint { .. } => "state.checkpoint",
            StateError::Sequence(_) => "state.sequence",
            StateError::AlertNotAuthorized(r) => r.code(),
            StateError::Erasure(r) => r.code(),
            StateError::Corrupt { .. } => "state.corrupt",
        }
    }
}

/// Key prefixes of the state map (one byte each; see `specs/state.md`).
mod prefix {
    pub const ORG: u8 = b'o';
    pub const FIRM: u8 = b'f';
    pub const CONSENT: u8 = b'c';
    pub const RECORD: u8 = b'r';
    pub const COMMITMENT: u8 = b'm';
    pub const GRADE: u8 = b'g';
    pub const REPAIR: u8 = b'p';
    pub const DEADLINE: u8 = b'd';
    pub const PENDING: u8 = b'M';
    pub const PENDING_ORG: u8 = b'P';
    pub const RECENT: u8 = b'n';
    pub const EVIDENCE: u8 = b'x';
    pub const COSIGNED: u8 = b'k';
    pub const ANCHOR: u8 = b'a';
    pub const VALIDATORS: u8 = b'V';
    pub const ACCESS: u8 = b'h';
    pub const WATCH: u8 = b'W';
    pub const TRIGGER: u8 = b'T';
    pub const ALERT: u8 = b'A';
    pub const ERASED: u8 = b'e';
    pub const EXPIRY: u8 = b'X';
    pub const FIRM_KEYS: u8 = b'F';
}

/// Head of a firm's chain of access entries (`query_served` / `query_denied` on that firm, in
/// log order): `head_i = SHA-256("xinyi/v1/access" ‖ 0x00 ‖ head_{i-1} ‖ entry id)`, `head_0` = 32
/// zero bytes; stored under `h ‖ tag` and committed to by the access map root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessHead {
    /// Hash-chain head.
    pub head: Digest,
    /// Number of access entries.
    pub count: u64,
}

impl AccessHead {
    /// The head after appending access entry `id`.
    pub fn next(&self, id: &Digest) -> AccessHead {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        h.update(b"xinyi/v1/access\0");
        h.update(self.head.as_bytes());
        h.update(id.as_bytes());
        AccessHead {
            head: Digest(h.finalize().into()),
            count: self.count.saturating_add(1),
        }
    }
}

/// The access-map key of a firm: `SHA-256("xinyi/v1/access-key" ‖ 0x00 ‖ tag)` (the firm tag's
/// 32 bytes; the tag is already keyed, the hash only spreads keys for the sparse Merkle map).
pub fn access_key(firm: &[u8]) -> crate::smt::H256 {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(b"xinyi/v1/access-key\0");
    h.update(firm);
    h.finalize().into()
}

/// The access-map value of a stored `AccessHead`: SHA-256 of its CBOR bytes.
pub fn access_value(cbor: &[u8]) -> crate::smt::H256 {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(cbor).into()
}

/// What a client needs to check a firm's access head against a block header's state root.
#[derive(Debug, Clone)]
pub struct AccessProof {
    /// Height of the state.
    pub height: u64,
    /// State root of the previous block.
    pub prev_root: Digest,
    /// Hash of this block's write set.
    pub write_set_hash: Digest,
    /// Root of the access map.
    pub access_root: Digest,
    /// The firm's access head (None: no access recorded).
    pub value: Option<AccessHead>,
    /// Sparse Merkle proof for the firm's key.
    pub proof: crate::smt::Proof,
}

/// A stored pending membership change (value under `prefix::PENDING`).
fn pending_change(k: &[u8], v: &[u8]) -> Result<MemberChange, StateError> {
    codec::decode("pending change", v, MAX_VALUE_BYTES).map_err(|err| StateError::Corrupt {
        key: hex::encode(k),
        err,
    })
}

fn key(p: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![p];
    for part in parts {
        k.extend_from_slice(part);
    }
    k
}

/// One block's sorted state changes (`None` = deleted).
pub type WriteSet = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// A committed state key: shared bytes, ordered (and borrowed, for lookups) as a byte string.
/// Behind an `Arc` so copying a tree node on write costs reference counts, not allocations.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SharedKey(Arc<Vec<u8>>);

impl std::borrow::Borrow<[u8]> for SharedKey {
    fn borrow(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// The committed key-values: a persistent ordered map, so a clone is O(1) and shares the tree.
type Base = imbl::OrdMap<SharedKey, Arc<Vec<u8>>>;

use replay::{ReplayId, ReplaySet};

/// The ledger state.
#[derive(Debug, Clone)]
pub struct State {
    chain: Digest,
    origin: String,
    params: Params,
    base: Base,
    block: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    entry: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Replay ids live now: those of the committed `n` values, minus what the open block's start
    /// pruned, plus what its committed entries recorded (derived, not a key-value).
    replay: ReplaySet,
    /// Ids recorded by the open block's committed entries (its `n` value, once sorted).
    block_ids: Vec<ReplayId>,
    /// Ids recorded by the entry being applied (at most two).
    entry_ids: Vec<ReplayId>,
    height: u64,
    time: TimeMs,
    root: Digest,
    in_block: bool,
    block_time: TimeMs,
    /// Access map over the `h` keys (derived from `base`).
    access: crate::smt::SparseMap,
    /// Its root.
    access_root: Digest,
    /// (previous root, write-set hash) of the last block closed since this state was built
    /// (None after `restore` until the next block).
    last_step: Option<(Digest, Digest)>,
    /// What [`State::pending_root`] computed for the open block, reused by `end_block`.
    prepared: PreparedBlock,
}

/// The write set, access map and roots [`State::pending_root`] computed for the open block, so
/// that closing the block does not compute them again (validators and the verifier check the
/// header's state root before they close the block). Every other `&mut self` entry point of
/// [`State`] clears it first, so it is used only if the state did not change in between; a
/// clone of the state starts without it.
#[derive(Debug, Default)]
struct PreparedBlock(std::sync::Mutex<Option<Prepared>>);

impl Clone for PreparedBlock {
    fn clone(&self) -> Self {
        PreparedBlock::default()
    }
}

impl PreparedBlock {
    fn clear(&mut self) {
        *self.0.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn take(&mut self, height: u64) -> Option<Prepared> {
        self.0
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .filter(|p| p.height == height)
    }

    fn set(&self, p: Prepared) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(p);
    }
}

#[derive(Debug)]
struct Prepared {
    height: u64,
    ws: WriteSet,
    access: Option<crate::smt::SparseMap>,
    access_root: Digest,
    ws_hash: Digest,
}

/// Height, time and root of the last applied block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHead {
    /// Height (0 = genesis).
    pub height: u64,
    /// Block time.
    pub time: TimeMs,
    /// State root.
    pub root: Digest,
}

impl State {
    /// The state defined by a genesis document, and its write set (height 0).
    pub fn from_genesis(g: &Genesis) -> Result<(State, WriteSet), CodecError> {
        let chain = g.chain_id()?;
        let mut s = State {
            chain,
            origin: g.name.clone(),
            params: g.params.clone(),
            base: Base::new(),
            block: BTreeMap::new(),
            entry: BTreeMap::new(),
            replay: ReplaySet::default(),
            block_ids: Vec::new(),
            entry_ids: Vec::new(),
            height: 0,
            time: g.time,
            root: chain,
            in_block: true,
            block_time: g.time,
            access: crate::smt::SparseMap::new(),
            access_root: Digest(crate::smt::EMPTY),
            last_step: None,
            prepared: PreparedBlock::default(),
        };
        let mut validators = Vec::new();
        for o in &g.orgs {
            s.put(
                key(prefix::ORG, &[o.id.as_str().as_bytes()]),
                &OrgRecord {
                    name: o.name.clone(),
                    role: o.role,
                    key: o.key,
                    power: o.power,
                },
            )?;
            if o.power > 0 {
                validators.push(Validator {
                    org: o.id.clone(),
                    key: o.key,
                    power: o.power,
                });
            }
        }
        s.put(vec![prefix::VALIDATORS], &ValidatorSet { validators })?;
        s.commit_entry();
        let ws = s.finish_block(0, g.time)?;
        Ok((s, ws))
    }

    /// Rebuilds a state from stored key-values and the head they belong to. The derived parts
    /// — the access map and the replay set — are rebuilt from the `h` and `n` values.
    pub fn restore(
        g: &Genesis,
        head: StateHead,
        kv: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<State, CodecError> {
        let base: Base = kv
            .into_iter()
            .map(|(k, v)| (SharedKey(Arc::new(k)), Arc::new(v)))
            .collect();
        let mut access = crate::smt::SparseMap::new();
        for (k, v) in prefix_range(&base, &[prefix::ACCESS]) {
            access.insert(access_key(k.0.get(1..).unwrap_or(&[])), access_value(v));
        }
        let access_root = Digest(access.root());
        let mut replay = ReplaySet::default();
        for (k, v) in prefix_range(&base, &[prefix::RECENT]) {
            if !v.len().is_multiple_of(32) {
                return Err(CodecError::NonCanonical {
                    what: "replay index value",
                });
            }
            replay.add_list(&k.0, v.clone());
        }
        Ok(State {
            chain: g.chain_id()?,
            origin: g.name.clone(),
            params: g.params.clone(),
            base,
            block: BTreeMap::new(),
            entry: BTreeMap::new(),
            replay,
            block_ids: Vec::new(),
            entry_ids: Vec::new(),
            height: head.height,
            time: head.time,
            root: head.root,
            in_block: false,
            block_time: head.time,
            access,
            access_root,
            last_step: None,
            prepared: PreparedBlock::default(),
        })
    }

    /// Root of the access map (committed in the state root, `specs/state.md`).
    pub fn access_root(&self) -> Digest {
        self.access_root
    }

    /// The firm's access head and its proof against this state's root (the header state root
    /// at this height). None if no block was closed since the state was restored.
    pub fn access_proof(&self, firm: &FirmTag) -> Result<Option<AccessProof>, StateError> {
        let Some((prev_root, write_set_hash)) = self.last_step else {
            return Ok(None);
        };
        let value: Option<AccessHead> = self.get(&key(prefix::ACCESS, &[firm.as_bytes()]))?;
        Ok(Some(AccessProof {
            height: self.height,
            prev_root,
            write_set_hash,
            access_root: self.access_root,
            value,
            proof: self.access.prove(&access_key(firm.as_bytes())),
        }))
    }

    /// The access map with the open block's changes applied, and its root.
    fn access_with(&self, ws: &WriteSet) -> (Option<crate::smt::SparseMap>, Digest) {
        let mut changed: Option<crate::smt::SparseMap> = None;
        for (k, v) in ws {
            if k.first() != Some(&prefix::ACCESS) {
                continue;
            }
            let firm = k.get(1..).unwrap_or(&[]);
            let m = changed.get_or_insert_with(|| self.access.clone());
            match v {
                Some(v) => m.insert(access_key(firm), access_value(v)),
                None => m.remove(&access_key(firm)),
            }
        }
        let root = changed
            .as_ref()
            .map_or(self.access_root, |m| Digest(m.root()));
        (changed, root)
    }

    /// Chain id.
    pub fn chain(&self) -> &Digest {
        &self.chain
    }

    /// Checkpoint origin (consortium name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Chain parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Head of the committed state.
    pub fn head(&self) -> StateHead {
        StateHead {
            height: self.height,
            time: self.time,
            root: self.root,
        }
    }

    /// Number of committed key-values.
    pub fn len(&self) -> usize {
        self.base.len()
    }

    /// Whether the committed state is empty (never true after genesis).
    pub fn is_empty(&self) -> bool {
        self.base.is_empty()
    }

    /// Iterates the committed key-values in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.base.iter().map(|(k, v)| (&*k.0, &**v))
    }

    /// Number of replay ids (entry and query-request ids) inside the replay window: the ids the
    /// committed `n` values list, plus those the open block recorded so far.
    pub fn replay_ids_len(&self) -> usize {
        self.replay.len()
    }

    /// Whether `id` was recorded inside the replay window (an entry or request with this id
    /// would be refused as `state.replay`).
    pub fn is_replay(&self, id: &Digest) -> bool {
        self.replay.contains(&id.0) || self.entry_ids.contains(&id.0)
    }

    /// Records replay id `id` for the entry being applied, or refuses it as a replay.
    fn record_replay_id(&mut self, id: &Digest) -> Result<(), StateError> {
        if self.is_replay(id) {
            return Err(StateError::Replay(*id));
        }
        self.entry_ids.push(id.0);
        Ok(())
    }

    // ---- key-value access through the overlays ----

    fn raw(&self, k: &[u8]) -> Option<&[u8]> {
        if let Some(v) = self.entry.get(k) {
            return v.as_deref();
        }
        if let Some(v) = self.block.get(k) {
            return v.as_deref();
        }
        self.base.get(k).map(|v| v.as_slice())
    }

    fn get<T: Serialize + DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>, StateError> {
        match self.raw(k) {
            None => Ok(None),
            // Every state value was encoded by `put` (or restored from the CRC-sealed store,
            // which holds what `put` wrote): skip the canonical re-encoding check.
            Some(b) => codec::decode_own("state value", b, MAX_VALUE_BYTES)
                .map(Some)
                .map_err(|err| StateError::Corrupt {
                    key: hex::encode(k),
                    err,
                }),
        }
    }

    fn put<T: Serialize>(&mut self, k: Vec<u8>, v: &T) -> Result<(), CodecError> {
        let bytes = codec::encode(v)?;
        self.entry.insert(k, Some(bytes));
        Ok(())
    }

    /// Appends access entry `id` to `firm`'s access chain (`h ‖ tag`).
    fn record_access(&mut self, firm: &FirmTag, id: &Digest) -> Result<(), StateError> {
        let k = key(prefix::ACCESS, &[firm.as_bytes()]);
        let cur: AccessHead = self.get(&k)?.unwrap_or(AccessHead {
            head: Digest([0; 32]),
            count: 0,
        });
        self.put_s(k, &cur.next(id))
    }

    fn put_s<T: Serialize>(&mut self, k: Vec<u8>, v: &T) -> Result<(), StateError> {
        self.put(k.clone(), v).map_err(|err| StateError::Corrupt {
            key: hex::encode(&k),
            err,
        })
    }

    fn delete(&mut self, k: Vec<u8>) {
        self.entry.insert(k, None);
    }

    fn commit_entry(&mut self) {
        if self.block.is_empty() {
            std::mem::swap(&mut self.block, &mut self.entry);
        } else {
            let e = std::mem::take(&mut self.entry);
            self.block.extend(e);
        }
        for id in self.entry_ids.drain(..) {
            self.replay.record_open(id);
            self.block_ids.push(id);
        }
    }

    /// Forgets the entry being applied (its writes and replay ids).
    fn discard_entry(&mut self) {
        self.entry.clear();
        self.entry_ids.clear();
    }

    /// Committed keys with `prefix`, from the base only (used at block start, when the
    /// overlays are empty).
    fn base_range(&self, p: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        prefix_range(&self.base, p)
            .map(|(k, v)| (k.0.to_vec(), v.to_vec()))
            .collect()
    }

    /// Committed key-values with prefix `p` whose next 8 bytes (a big-endian time) are below
    /// `bound`, in key order. Reads only what it returns, so pruning costs what it prunes.
    fn base_before(&self, p: u8, bound: u64) -> Vec<(Vec<u8>, Arc<Vec<u8>>)> {
        let end = key(p, &[&bound.to_be_bytes()]);
        self.base
            .range::<_, [u8]>((Bound::Included(&[p][..]), Bound::Excluded(end.as_slice())))
            .map(|(k, v)| (k.0.to_vec(), v.clone()))
            .collect()
    }

    // ---- typed reads (public, through the overlays) ----

    /// An organisation.
    pub fn org(&self, id: &OrgId) -> Result<Option<OrgRecord>, StateError> {
        self.get(&key(prefix::ORG, &[id.as_str().as_bytes()]))
    }

    /// Committed membership changes not yet in force, as (effective height, change), in the
    /// order they will take effect (height, then entry id).
    pub fn pending_changes(&self) -> Result<Vec<(u64, MemberChange)>, StateError> {
        let mut out = Vec::new();
        for (k, v) in self.base_range(&[prefix::PENDING]) {
            let height = k
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| StateError::Corrupt {
                    key: hex::encode(&k),
                    err: CodecError::Malformed {
                        what: "pending change key",
                        reason: "shorter than its effective height".into(),
                    },
                })?;
            out.push((height, pending_change(&k, &v)?));
        }
        Ok(out)
    }

    /// All organisations, sorted by id.
    pub fn orgs(&self) -> Result<Vec<(OrgId, OrgRecord)>, StateError> {
        let mut out = Vec::new();
        for (k, _) in self.base_range(&[prefix::ORG]) {
            let id = std::str::from_utf8(&k[1..])
                .ok()
                .and_then(|s| OrgId::new(s).ok());
            if let (Some(id), Some(rec)) = (id.clone(), self.get::<OrgRecord>(&k)?) {
                out.push((id, rec));
            }
        }
        Ok(out)
    }

    /// The `tx` of the committed anchor receipt for log size `size` on `chain`, if any.
    pub fn anchor_tx(&self, size: u64, chain: &str) -> Option<&[u8]> {
        self.raw(&key(
            prefix::ANCHOR,
            &[&size.to_be_bytes(), chain.as_bytes()],
        ))
    }

    /// A firm.
    pub fn firm(&self, f: &FirmTag) -> Result<Option<FirmRecord>, StateError> {
        self.get(&key(prefix::FIRM, &[f.as_bytes()]))
    }

    /// A consent.
    pub fn consent(&self, id: &Digest) -> Result<Option<ConsentRecord>, StateError> {
        self.get(&key(prefix::CONSENT, &[id.as_bytes()]))
    }

    /// A published record.
    pub fn record(&self, id: &Digest) -> Result<Option<RecordState>, StateError> {
        self.get(&key(prefix::RECORD, &[id.as_bytes()]))
    }

    /// A commitment.
    pub fn commitment(&self, id: &Digest) -> Result<Option<CommitmentRecord>, StateError> {
        self.get(&key(prefix::COMMITMENT, &[id.as_bytes()]))
    }

    /// The latest grade of a firm in a supervision domain.
    pub fn grade(&self, f: &FirmTag, domain: &str) -> Result<Option<GradeRecord>, StateError> {
        self.get(&key(
            prefix::GRADE,
            &[f.as_bytes(), b"/", domain.as_bytes()],
        ))
    }

    /// A repair.
    pub fn repair(&self, id: &Digest) -> Result<Option<RepairRecord>, StateError> {
        self.get(&key(prefix::REPAIR, &[id.as_bytes()]))
    }

    /// The validator set in force.
    pub fn validators(&self) -> Result<ValidatorSet, StateError> {
        Ok(self
            .get(&[prefix::VALIDATORS])?
            .unwrap_or(ValidatorSet { validators: vec![] }))
    }

    // ---- block lifecycle ----

    /// Starts block `height` at `time`: applies membership changes due at this height, flags
    /// overdue repairs and prunes the replay window.
    pub fn begin_block(&mut self, height: u64, time: TimeMs) -> Result<(), StateError> {
        self.prepared.clear();
        if self.in_block {
            return Err(StateError::Sequence("a block is already open".into()));
        }
        if height != self.height + 1 {
            return Err(StateError::Sequence(format!(
                "expected height {}, got {height}",
                self.height + 1
            )));
        }
        if time <= self.time {
            return Err(StateError::Sequence(format!(
                "block time {time} is not after the previous block time {}",
                self.time
            )));
        }
        self.in_block = true;
        self.block_time = time;
        self.replay.begin_block();
        let result = self.block_start_effects(height, time);
        if result.is_err() {
            self.rollback_block();
        }
        result
    }

    fn block_start_effects(&mut self, height: u64, time: TimeMs) -> Result<(), StateError> {
        // Membership changes effective at this height, in (height, entry id) order.
        let due = self.base_range(&key(prefix::PENDING, &[&height.to_be_bytes()]));
        for (k, v) in due {
            self.effect_membership(&pending_change(&k, &v)?)?;
            self.delete(k);
        }
        // Overdue repairs.
        for (k, _) in self.base_before(prefix::DEADLINE, time.saturating_add(1)) {
            let id =
                Digest::from_slice(k.get(9..).unwrap_or(&[])).map_err(|_| StateError::Corrupt {
                    key: hex::encode(&k),
                    err: CodecError::NonCanonical {
                        what: "deadline key",
                    },
                })?;
            if let Some(mut r) = self.repair(&id)? {
                if r.status == RepairStatus::Approved {
                    r.overdue = true;
                    self.put_s(key(prefix::REPAIR, &[id.as_bytes()]), &r)?;
                }
            }
            self.delete(k);
        }
        // Records whose retention period ended.
        self.expire_records(time)?;
        // Replay window: an id recorded by a block at time B can be replayed only by an entry
        // (or request) whose own time is at least now - window, and such a time was at most
        // B + window when it was recorded; so blocks older than two windows are forgotten: the
        // `n` value is deleted and its ids leave the (derived) replay set.
        let cutoff = time.saturating_sub(self.params.entry_time_window_ms.saturating_mul(2));
        for (k, v) in self.base_before(prefix::RECENT, cutoff) {
            if !v.len().is_multiple_of(32) {
                return Err(StateError::Corrupt {
                    key: hex::encode(&k),
                    err: CodecError::NonCanonical {
                        what: "replay index value",
                    },
                });
            }
            self.replay.remove_list(&k);
            self.delete(k);
        }
        self.commit_entry();
        Ok(())
    }

    /// Applies one statically valid entry inside the open block, atomically: on error nothing
    /// changes. `log` is the global entry log including every entry before this one.
    pub fn apply_entry(&mut self, e: &Entry, log: &MerkleTree) -> Result<Applied, StateError> {
        self.prepared.clear();
        if !self.in_block {
            return Err(StateError::Sequence("no block is open".into()));
        }
        let r = self.apply_inner(e, log);
        match r {
            Ok(a) => {
                self.commit_entry();
                Ok(a)
            }
            Err(err) => {
                self.discard_entry();
                Err(err)
            }
        }
    }

    /// Checks an entry against the current state (the open block, if any) without changing
    /// anything; returns the signatures it needs. Used by nodes to admit transactions.
    pub fn check_entry(
        &mut self,
        e: &Entry,
        log: &MerkleTree,
        now: TimeMs,
    ) -> Result<Applied, StateError> {
        self.prepared.clear();
        let was_open = self.in_block;
        let saved_time = self.block_time;
        if !was_open {
            self.in_block = true;
            self.block_time = now;
        }
        let r = self.apply_inner(e, log);
        self.discard_entry();
        if !was_open {
            self.in_block = false;
            self.block_time = saved_time;
        }
        r
    }

    fn author_key(&self, a: &Author) -> Result<(PublicKey, Option<OrgRecord>), StateError> {
        match a {
            Author::Org(o) => {
                let rec = self
                    .org(o)?
                    .ok_or_else(|| StateError::UnknownAuthor(o.to_string()))?;
                Ok((rec.key, Some(rec)))
            }
            Author::Firm(f) => {
                let rec = self
                    .firm(f)?
                    .ok_or_else(|| StateError::UnknownAuthor(f.to_string()))?;
                Ok((rec.key, None))
            }
        }
    }

    fn apply_inner(&mut self, e: &Entry, log: &MerkleTree) -> Result<Applied, StateError> {
        let now = self.block_time;
        let w = self.params.entry_time_window_ms;
        let body = &e.body;
        if body.time.saturating_add(w) < now || body.time > now.saturating_add(w) {
            return Err(StateError::StaleOrFuture {
                entry: body.time,
                block: now,
            });
        }
        self.record_replay_id(&e.id)?;

        let (author_key, org) = self.author_key(&body.author)?;
        let mut sigs = vec![SigRequirement {
            message: signing_message(
                SigDomain::Entry,
                &entry_signing_payload(&self.chain, &e.body_bytes),
            ),
            key: author_key,
            signature: e.signature,
        }];
        let kind = body.kind.name();
        let org_id = match &body.author {
            Author::Org(o) => Some(o.clone()),
            Author::Firm(_) => None,
        };
        let role = org.as_ref().map(|o| o.role);
        let require_role = |ok: bool| -> Result<(), StateError> {
            match (ok, role, &org_id) {
                (true, _, _) => Ok(()),
                (false, Some(role), Some(o)) => Err(StateError::Forbidden {
                    author: o.to_string(),
                    role,
                    kind,
                }),
                _ => Err(StateError::Invalid(format!(
                    "{kind} must be signed by an organisation"
                ))),
            }
        };
        let author_firm = match &body.author {
            Author::Firm(f) => Some(*f),
            Author::Org(_) => None,
        };
        let mut firm = body.firm();

        match &body.kind {
            EntryKind::Membership(m) => {
                let set = self.validators()?;
                require_role(org_id.as_ref().is_some_and(|o| set.get(o).is_some()))?;
                self.apply_membership(m, &set, &e.id, &mut sigs)?;
            }
            EntryKind::FirmRegistered { firm: f, key: k } => {
                require_role(role == Some(Role::Agency))?;
                if let Some(existing) = self.firm(f)? {
                    // Re-registration rotates the firm's key: only the registering agency may.
                    if Some(&existing.registered_by) != org_id.as_ref() {
                        return Err(StateError::NotOwner(format!(
                            "firm {f} was registered by {}; only it may rotate the firm's key",
                            existing.registered_by
                        )));
                    }
                }
                k.verifying_key()
                    .map_err(|_| StateError::Invalid("firm key is invalid".into()))?;
                self.put_s(
                    key(prefix::FIRM, &[f.as_bytes()]),
                    &FirmRecord {
                        key: *k,
                        registered_by: org_id
                            .clone()
                            .ok_or_else(|| StateError::Invalid("no org".into()))?,
                    },
                )?;
            }
            EntryKind::ConsentGranted(c) => {
                self.apply_consent_granted(author_firm, c, &e.id, now)?;
            }
            EntryKind::ConsentRevoked { consent } => {
                self.apply_consent_revoked(author_firm, consent)?;
            }
            EntryKind::QueryServed(q) => {
                require_role(role == Some(Role::Agency))?;
                sigs.push(self.apply_query_served(q, &e.id, now)?);
            }
            EntryKind::QueryDenied { request, reason } => {
                require_role(role == Some(Role::Agency))?;
                sigs.push(self.apply_query_denied(request, *reason, &e.id, now)?);
            }
            EntryKind::CreditRecordPublished(r) => {
                require_role(role == Some(Role::Agency))?;
                let k = key(prefix::RECORD, &[r.record.as_bytes()]);
                if self.raw(&k).is_some() {
                    return Err(StateError::AlreadyExists {
                        what: "record",
                        id: r.record.to_hex(),
                    });
                }
                self.put_s(
                    k,
                    &RecordState {
                        agency: org_id
                            .clone()
                            .ok_or_else(|| StateError::Invalid("no org".into()))?,
                        firm: r.firm,
                        category: r.category,
                        severity: r.severity,
                        min_publicity_days: r.min_publicity_days,
                        published_at: now,
                        open_repair: None,
                        repaired: false,
                        expired_at: None,
                    },
                )?;
                self.schedule_expiry(&r.record, r.category, now);
            }
            EntryKind::CommitmentMade {
                agency,
                content,
                due,
            } => {
                let f = author_firm.ok_or_else(|| {
                    StateError::Invalid("commitment must be signed by the firm".into())
                })?;
                match self.org(agency)? {
                    Some(a) if a.role == Role::Agency => {}
                    _ => {
                        return Err(StateError::NotFound {
                            what: "agency",
                            id: agency.to_string(),
                        })
                    }
                }
                self.put_s(
                    key(prefix::COMMITMENT, &[e.id.as_bytes()]),
                    &CommitmentRecord {
                        firm: f,
                        agency: agency.clone(),
                        content: *content,
                        due: *due,
                        made_at: now,
                        broken: false,
                    },
                )?;
            }
            EntryKind::CommitmentBroken { commitment, .. } => {
                let k = key(prefix::COMMITMENT, &[commitment.as_bytes()]);
                let mut c: CommitmentRecord =
                    self.get(&k)?.ok_or_else(|| StateError::NotFound {
                        what: "commitment",
                        id: commitment.to_hex(),
                    })?;
                if org_id.as_ref() != Some(&c.agency) {
                    return Err(StateError::NotOwner(format!(
                        "only {} may record commitment {commitment} as broken",
                        c.agency
                    )));
                }
                if c.broken {
                    return Err(StateError::Invalid(
                        "commitment already recorded as broken".into(),
                    ));
                }
                c.broken = true;
                firm = Some(c.firm);
                self.put_s(k, &c)?;
            }
            EntryKind::GradeAssigned {
                firm: f,
                domain,
                grade,
            } => {
                require_role(role == Some(Role::Agency))?;
                self.put_s(
                    key(prefix::GRADE, &[f.as_bytes(), b"/", domain.as_bytes()]),
                    &GradeRecord {
                        agency: org_id
                            .clone()
                            .ok_or_else(|| StateError::Invalid("no org".into()))?,
                        grade: *grade,
                        assigned_at: now,
                    },
                )?;
            }
            EntryKind::RepairRequested { record, .. } => {
                let f = author_firm.ok_or_else(|| {
                    StateError::Invalid("repair must be requested by the firm".into())
                })?;
                self.apply_repair_requested(f, record, &e.id, now)?;
            }
            EntryKind::RepairDecided {
                repair,
                approved,
                reason,
            } => {
                firm = Some(self.apply_repair_decided(
                    org_id.as_ref(),
                    repair,
                    *approved,
                    reason,
                    now,
                )?);
            }
            EntryKind::RepairApplied { repair } => {
                require_role(role.is_some_and(Role::is_registry))?;
                firm = Some(self.apply_repair_applied(role, repair, now)?);
            }
            EntryKind::CheckpointCosigned {
                size,
                root,
                signature,
            } => {
                let set = self.validators()?;
                require_role(org_id.as_ref().is_some_and(|o| set.get(o).is_some()))?;
                self.check_log_root(log, *size, root)?;
                let text = checkpoint_text(&self.origin, *size, root);
                sigs.push(SigRequirement {
                    message: text.into_bytes(),
                    key: author_key,
                    signature: *signature,
                });
                let o = org_id
                    .clone()
                    .ok_or_else(|| StateError::Invalid("no org".into()))?;
                let k = key(
                    prefix::COSIGNED,
                    &[&size.to_be_bytes(), o.as_str().as_bytes()],
                );
                if self.raw(&k).is_some() {
                    return Err(StateError::AlreadyExists {
                        what: "cosignature",
                        id: format!("{o}@{size}"),
                    });
                }
                self.entry.insert(k, Some(signature.0.to_vec()));
            }
            EntryKind::AnchorReceipt {
                size,
                root,
                chain,
                tx,
            } => {
                require_role(matches!(role, Some(Role::Agency | Role::Auditor)))?;
                self.check_log_root(log, *size, root)?;
                self.entry.insert(
                    key(prefix::ANCHOR, &[&size.to_be_bytes(), chain.as_bytes()]),
                    Some(tx.as_bytes().to_vec()),
                );
            }
            EntryKind::Misbehaviour(ev) => {
                let set = self.validators()?;
                require_role(org_id.as_ref().is_some_and(|o| set.get(o).is_some()))?;
                let offender = self
                    .org(&ev.validator)?
                    .ok_or_else(|| StateError::NotFound {
                        what: "validator",
                        id: ev.validator.to_string(),
                    })?;
                for (h, s) in [
                    (&ev.header_a, &ev.signature_a),
                    (&ev.header_b, &ev.signature_b),
                ] {
                    sigs.push(SigRequirement {
                        message: signing_message(
                            SigDomain::Commit,
                            &crate::block::commit_payload(&self.chain, ev.height, h),
                        ),
                        key: offender.key,
                        signature: *s,
                    });
                }
                let k = key(
                    prefix::EVIDENCE,
                    &[
                        ev.validator.as_str().as_bytes(),
                        b"/",
                        &ev.height.to_be_bytes(),
                    ],
                );
                if self.raw(&k).is_some() {
                    return Err(StateError::AlreadyExists {
                        what: "evidence",
                        id: format!("{}@{}", ev.validator, ev.height),
                    });
                }
                self.entry.insert(k, Some(e.id.0.to_vec()));
            }
            EntryKind::AlertsDelivered(b) => {
                require_role(role == Some(Role::Agency))?;
                self.apply_alerts(b, &e.id, now)?;
            }
            EntryKind::DataErased(x) => {
                require_role(role == Some(Role::Agency))?;
                let o = org_id
                    .clone()
                    .ok_or_else(|| StateError::Invalid("no org".into()))?;
                self.apply_erasure(&o, x, &e.id, now)?;
            }
        }
        self.record_trigger(&body.kind, firm, &e.id, log.size(), now)?;
        Ok(Applied {
            signatures: sigs,
            firm,
        })
    }

    fn require_org(&self, org: &OrgId) -> Result<(), StateError> {
        if self.org(org)?.is_none() {
            return Err(StateError::NotFound {
                what: "organisation",
                id: org.to_string(),
            });
        }
        Ok(())
    }

    fn check_log_root(&self, log: &MerkleTree, size: u64, root: &Digest) -> Result<(), StateError> {
        let actual = log.root_at(size).map_err(|e| StateError::Checkpoint {
            size,
            reason: e.to_string(),
        })?;
        if actual != root.0 {
            return Err(StateError::Checkpoint {
                size,
                reason: "root differs from the log's root at that size".into(),
            });
        }
        Ok(())
    }

    /// Closes the open block: returns its sorted write set, advances the state root and
    /// commits the changes.
    pub fn end_block(&mut self, height: u64, time: TimeMs) -> Result<WriteSet, StateError> {
        if !self.in_block {
            return Err(StateError::Sequence("no block is open".into()));
        }
        self.finish_block(height, time)
            .map_err(|err| StateError::Corrupt {
                key: "write set".into(),
                err,
            })
    }

    /// The state root the open block would produce, without closing it.
    pub fn pending_root(&self, height: u64) -> Result<Digest, CodecError> {
        let mut block = self.block.clone();
        block.extend(self.entry.clone());
        let mut ids = self.block_ids.clone();
        ids.extend_from_slice(&self.entry_ids);
        if let Some((k, v)) = self.replay_index(ids, height) {
            block.insert(k, Some(v));
        }
        let ws: WriteSet = block.into_iter().collect();
        let (access, access_root) = self.access_with(&ws);
        let ws_hash = write_set_hash(&ws)?;
        let root = root_step(&self.root, height, &ws_hash, &access_root);
        self.prepared.set(Prepared {
            height,
            ws,
            access,
            access_root,
            ws_hash,
        });
        Ok(root)
    }

    /// The block's replay-index record: `n ‖ block time ‖ height →` the 32-byte ids of every
    /// replay id (entry or request) this block recorded, in ascending order. It is the only
    /// stored form of the replay set: pruning reads it back to forget the ids, and
    /// [`State::restore`] rebuilds the set from these values.
    fn replay_index(&self, mut ids: Vec<ReplayId>, height: u64) -> Option<(Vec<u8>, Vec<u8>)> {
        if ids.is_empty() {
            return None;
        }
        ids.sort_unstable();
        Some((
            key(
                prefix::RECENT,
                &[&self.block_time.to_be_bytes(), &height.to_be_bytes()],
            ),
            ids.concat(),
        ))
    }

    fn finish_block(&mut self, height: u64, time: TimeMs) -> Result<WriteSet, CodecError> {
        self.commit_entry();
        let ids = std::mem::take(&mut self.block_ids);
        let listed = self.replay_index(ids, height).map(|(k, v)| {
            self.block.insert(k.clone(), Some(v));
            k
        });
        let block = std::mem::take(&mut self.block);
        // Two cases with a comment each read better as a match.
        #[allow(clippy::single_match_else)]
        let (ws, changed, access_root, ws_hash) = match self.prepared.take(height) {
            // `pending_root` of this very block, and nothing changed since.
            Some(p) => (p.ws, p.access, p.access_root, p.ws_hash),
            None => {
                let ws: WriteSet = block.into_iter().collect();
                let (changed, access_root) = self.access_with(&ws);
                let ws_hash = write_set_hash(&ws)?;
                (ws, changed, access_root, ws_hash)
            }
        };
        if let Some(m) = changed {
            self.access = m;
        }
        self.access_root = access_root;
        let prev = self.root;
        self.root = root_step(&prev, height, &ws_hash, &access_root);
        self.last_step = Some((prev, ws_hash));
        for (k, v) in &ws {
            match v {
                Some(v) => {
                    self.base
                        .insert(SharedKey(Arc::new(k.clone())), Arc::new(v.clone()));
                }
                None => {
                    self.base.remove(k.as_slice());
                }
            }
        }
        // The block's `n` value now holds the ids its entries recorded (shared, not copied).
        if let Some((k, v)) =
            listed.and_then(|k| self.base.get(k.as_slice()).map(|v| (k, v.clone())))
        {
            self.replay.add_new_list(&k, v);
        }
        self.replay.clear_open();
        self.replay.commit_block();
        self.height = height;
        self.time = time;
        self.in_block = false;
        Ok(ws)
    }

    /// Discards the open block.
    pub fn rollback_block(&mut self) {
        self.prepared.clear();
        self.discard_entry();
        self.block.clear();
        self.block_ids.clear();
        self.replay.rollback_block();
        self.in_block = false;
    }
}

/// The committed key-values whose key starts with `p`, in key order.
fn prefix_range<'a>(
    base: &'a Base,
    p: &'a [u8],
) -> impl Iterator<Item = (&'a SharedKey, &'a Arc<Vec<u8>>)> + 'a {
    base.range::<_, [u8]>((Bound::Included(p), Bound::Unbounded))
        .take_while(move |(k, _)| k.0.starts_with(p))
}

/// `tagged(WriteSet, CBOR(write set))`.
pub fn write_set_hash(ws: &WriteSet) -> Result<Digest, CodecError> {
    let encoded: Vec<(&serde_bytes::Bytes, Option<&serde_bytes::Bytes>)> = ws
        .iter()
        .map(|(k, v)| {
            (
                serde_bytes::Bytes::new(k),
                v.as_deref().map(serde_bytes::Bytes::new),
            )
        })
        .collect();
    Ok(hash::tagged(Domain::WriteSet, &[&codec::encode(&encoded)?]))
}

/// `root_h = tagged(State, root_{h-1} ‖ h (u64 BE) ‖ tagged(WriteSet, CBOR(write set)) ‖
/// access map root)`.
pub fn next_root(
    prev: &Digest,
    height: u64,
    ws: &WriteSet,
    access_root: &Digest,
) -> Result<Digest, CodecError> {
    Ok(root_step(prev, height, &write_set_hash(ws)?, access_root))
}

/// One step of the state-root chain from its parts (what a client recomputes from an
/// [`AccessProof`]).
pub fn root_step(prev: &Digest, height: u64, ws_hash: &Digest, access_root: &Digest) -> Digest {
    hash::tagged(
        Domain::State,
        &[
            prev.as_bytes(),
            &height.to_be_bytes(),
            ws_hash.as_bytes(),
            access_root.as_bytes(),
        ],
    )
}

/// The C2SP tlog-checkpoint body for this log: origin, size, base64 root.
pub fn checkpoint_text(origin: &str, size: u64, root: &Digest) -> String {
    use base64::Engine as _;
    format!(
        "{origin}\n{size}\n{}\n",
        base64::engine::general_purpose::STANDARD.encode(root.0)
    )
}

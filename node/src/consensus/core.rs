//! The replica's synchronous core: committed chain, known blocks, speculative states, commit
//! votes and certificates. No I/O and no async: every input is a method call, every output a
//! message pushed to the outbox, so the logic is testable without a runtime.

use super::wire::Wire;
use super::{lock, BlockStore, ChainGuard, CommitError, Mempool, SharedLedger, StoreLedger};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use xinyi_ledger::block::{
    commit_payload, sign_commit, Block, CommitCertificate, CommitVote, ValidatorSet,
};
use xinyi_ledger::chain::Speculative;
use xinyi_ledger::entry::Equivocation;
use xinyi_ledger::keys::SigDomain;
use xinyi_ledger::{Digest, Genesis, KeyPair, OrgId, PublicKey, Signature, TimeMs};

/// Blocks further than this above the committed head are ignored (bounded memory).
pub const WINDOW: u64 = 256;
/// Committed blocks sent per `Sync` request.
pub const SYNC_BATCH: u64 = 32;
/// A proposal whose time is further ahead of the local clock waits (it is not refused).
pub const MAX_CLOCK_DRIFT_MS: u64 = 2_000;
/// A missing block is asked for this many ticks, then given up (asked again when needed).
pub const MAX_WANT_TRIES: u32 = 40;
/// A validator re-sends its checkpoint note every this many ticks.
pub const NOTE_EVERY_TICKS: u64 = 8;
/// At most this many known uncommitted blocks are kept.
pub const MAX_BLOCKS: usize = 4_096;
/// Each validator's first verified commit vote is remembered for this many committed heights
/// below the head (and every uncommitted one), to catch a second vote for another header.
pub const EVIDENCE_WINDOW: u64 = WINDOW;
/// At most this many equivocations wait in the evidence outbox.
pub const MAX_EVIDENCE: usize = 64;
/// At most this many reported (validator, height) pairs are remembered for de-duplication.
pub const MAX_REPORTED: usize = 4_096;

/// Where an outgoing message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To {
    /// Every peer.
    All,
    /// One peer (by organisation).
    One(OrgId),
}

/// Outcome of a verification request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid on its parent: vote for it.
    Valid,
    /// Permanently invalid for this context.
    Invalid,
    /// Data missing or too early: ask again later.
    Pending,
}

/// Counters for tests and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Blocks proposed.
    pub proposed: u64,
    /// Verify verdicts valid / invalid.
    pub verified: u64,
    /// Verify verdicts invalid.
    pub rejected: u64,
    /// Blocks committed through collected votes.
    pub committed_by_votes: u64,
    /// Blocks committed from a received certificate (catch-up).
    pub committed_by_sync: u64,
    /// Messages refused (malformed, bad vote, bad certificate).
    pub refused: u64,
    /// Two different final digests seen at one height (must stay 0).
    pub conflicts: u64,
    /// Equivocations detected (two verified commit votes by one validator at one height for
    /// different headers), each (validator, height) counted once.
    pub equivocations: u64,
}

/// The replica's state.
pub struct Core {
    me: OrgId,
    key: KeyPair,
    chain_id: Digest,
    ledger: SharedLedger,
    mempool: Box<dyn Mempool>,
    blocks: HashMap<Digest, Block>,
    spec: HashMap<Digest, Speculative>,
    invalid: HashSet<Digest>,
    final_tips: BTreeSet<Digest>,
    final_at: BTreeMap<u64, Digest>,
    voted: BTreeMap<u64, (Digest, CommitVote)>,
    votes: BTreeMap<(u64, Digest), BTreeMap<OrgId, CommitVote>>,
    /// Each validator's first verified commit vote per height (uncommitted heights and the
    /// last [`EVIDENCE_WINDOW`] committed ones): header hash and signature.
    seen: BTreeMap<u64, BTreeMap<OrgId, (Digest, Signature)>>,
    /// Equivocations found and not yet taken ([`Core::take_evidence`]).
    evidence: Vec<Equivocation>,
    /// (height, validator) pairs already reported (bounded, lowest heights forgotten first).
    reported: BTreeSet<(u64, OrgId)>,
    certs: HashMap<Digest, CommitCertificate>,
    missing: BTreeMap<Digest, u32>,
    behind: bool,
    store_error: Option<String>,
    outbox: Vec<(To, Wire)>,
    ticks: u64,
    engine_set: Option<Digest>,
    /// Counters.
    pub stats: Stats,
}

impl Core {
    /// Opens a replica over an in-memory chain rebuilt from `store` by re-applying (and so
    /// re-verifying) every block it holds with its certificate (the simulation's replica).
    pub fn open(
        genesis: &Genesis,
        me: OrgId,
        key: KeyPair,
        store: Box<dyn BlockStore>,
        mempool: Box<dyn Mempool>,
    ) -> Result<Core, String> {
        let ledger = StoreLedger::open(genesis, store)?;
        Ok(Core::new(me, key, Arc::new(Mutex::new(ledger)), mempool))
    }

    /// A replica extending `ledger` (the committed chain and its durable store, which the node
    /// shares with its API). `me`/`key` vote only if the ledger makes `me` a validator.
    pub fn new(me: OrgId, key: KeyPair, ledger: SharedLedger, mempool: Box<dyn Mempool>) -> Core {
        let chain_id = *lock(&ledger).chain().chain_id();
        Core {
            me,
            key,
            chain_id,
            ledger,
            mempool,
            blocks: HashMap::new(),
            spec: HashMap::new(),
            invalid: HashSet::new(),
            final_tips: BTreeSet::new(),
            final_at: BTreeMap::new(),
            voted: BTreeMap::new(),
            votes: BTreeMap::new(),
            seen: BTreeMap::new(),
            evidence: Vec::new(),
            reported: BTreeSet::new(),
            certs: HashMap::new(),
            missing: BTreeMap::new(),
            behind: false,
            store_error: None,
            outbox: Vec::new(),
            ticks: 0,
            engine_set: None,
            stats: Stats::default(),
        }
    }

    /// The validator set (hash) the running engine was started with: blocks under another set
    /// are neither proposed nor voted for, so an engine stops at the end of its epoch (the last
    /// block before a validator-set change) and the next epoch's engine takes over. `None`:
    /// no restriction (the simulation's fixed set).
    pub fn set_engine_set(&mut self, set: Option<Digest>) {
        self.engine_set = set;
    }

    /// The committed chain (holds the ledger lock while alive).
    pub fn chain(&self) -> ChainGuard<'_> {
        ChainGuard(lock(&self.ledger))
    }

    fn stored(&self, height: u64) -> Option<(Block, CommitCertificate)> {
        lock(&self.ledger).stored(height)
    }

    fn position(&self, d: &Digest) -> Option<u64> {
        lock(&self.ledger).position(d)
    }

    fn height(&self) -> u64 {
        self.chain().height()
    }

    fn head_hash(&self) -> Digest {
        *self.chain().head_hash()
    }

    /// This validator's organisation.
    pub fn me(&self) -> &OrgId {
        &self.me
    }

    /// Takes the messages to send.
    pub fn take_outbox(&mut self) -> Vec<(To, Wire)> {
        std::mem::take(&mut self.outbox)
    }

    /// Takes the equivocation evidence found since the last call (each (validator, height)
    /// once; a validator node signs it into a `misbehaviour` entry, `specs/consensus.md` §10).
    pub fn take_evidence(&mut self) -> Vec<Equivocation> {
        std::mem::take(&mut self.evidence)
    }

    /// Remembers a verified commit vote by `validator` at `height` for `d`; if a verified vote
    /// by the same validator for another header at that height is known, reports both.
    fn note_vote(&mut self, height: u64, d: Digest, validator: &OrgId, signature: Signature) {
        let at = self.seen.entry(height).or_default();
        match at.get(validator) {
            None => {
                at.insert(validator.clone(), (d, signature));
            }
            Some((prev, _)) if *prev == d => {}
            Some((prev, prev_sig)) => {
                let (prev, prev_sig) = (*prev, *prev_sig);
                self.found(validator, height, (prev, prev_sig), (d, signature));
            }
        }
    }

    /// Queues evidence of an equivocation (both signatures already verified), once per
    /// (validator, height). The headers are ordered: `header_a < header_b`.
    fn found(
        &mut self,
        validator: &OrgId,
        height: u64,
        x: (Digest, Signature),
        y: (Digest, Signature),
    ) {
        let key = (height, validator.clone());
        if x.0 == y.0 || self.reported.contains(&key) {
            return;
        }
        if self.evidence.len() >= MAX_EVIDENCE {
            // Not marked as reported: a later copy of either vote finds it again.
            tracing::debug!("consensus: evidence outbox full; equivocation by {validator} at {height} not queued");
            return;
        }
        if self.reported.len() >= MAX_REPORTED {
            self.reported.pop_first();
        }
        self.reported.insert(key);
        let ((header_a, signature_a), (header_b, signature_b)) =
            if x.0 < y.0 { (x, y) } else { (y, x) };
        tracing::warn!(
            "consensus: validator {validator} equivocated at height {height}: commit votes for {header_a} and {header_b}"
        );
        self.stats.equivocations += 1;
        self.evidence.push(Equivocation {
            validator: validator.clone(),
            height,
            header_a,
            signature_a,
            header_b,
            signature_b,
        });
    }

    fn send(&mut self, to: To, w: Wire) {
        self.outbox.push((to, w));
    }

    fn want(&mut self, d: Digest) {
        if self.missing.insert(d, 0).is_none() {
            self.send(To::All, Wire::Want(d));
        }
    }

    /// The state after block `d`, executing known uncommitted ancestors as needed.
    fn state_after(&mut self, d: Digest) -> Option<Speculative> {
        {
            let c = self.chain();
            if d == *c.head_hash() {
                return Some(c.speculate());
            }
        }
        if let Some(s) = self.spec.get(&d) {
            return Some(s.clone());
        }
        if self.invalid.contains(&d) {
            return None;
        }
        let Some(block) = self.blocks.get(&d).cloned() else {
            self.want(d);
            return None;
        };
        if block.header.height <= self.height() {
            return None;
        }
        let mut s = self.state_after(block.header.prev)?;
        match s.execute(&block) {
            Ok(_) => {
                self.spec.insert(d, s.clone());
                Some(s)
            }
            Err(_) => {
                self.invalid.insert(d);
                None
            }
        }
    }

    /// Proposer: builds a block on `parent` at `now`; `None` while the parent's state is not
    /// available (its block not received yet), or while the mempool is empty unless
    /// `allow_empty` (an idle chain does not grow by a block per view).
    pub fn propose(&mut self, parent: Digest, now: TimeMs, allow_empty: bool) -> Option<Digest> {
        if !allow_empty && self.mempool.is_empty() {
            return None;
        }
        let mut s = self.state_after(parent)?;
        let time = now.max(s.chain().state_head().time.saturating_add(1));
        let candidates = self.mempool.candidates(s.chain(), time);
        match s.build(time, self.me.clone(), candidates) {
            Ok((block, dropped)) => {
                if self
                    .engine_set
                    .is_some_and(|es| block.header.validator_set != es)
                {
                    // The next block belongs to the next epoch's engine.
                    return None;
                }
                if !dropped.is_empty() {
                    self.mempool.dropped(&dropped);
                }
                let d = *s.chain().head_hash();
                self.blocks.insert(d, block);
                self.spec.insert(d, s);
                self.stats.proposed += 1;
                Some(d)
            }
            Err(_) => None,
        }
    }

    /// Validator: may the block `d`, proposed by `leader` on `parent`, be voted for?
    pub fn verify(&mut self, parent: Digest, leader: &OrgId, d: Digest, now: TimeMs) -> Verdict {
        if self.invalid.contains(&d) {
            return Verdict::Invalid;
        }
        let Some(block) = self.blocks.get(&d).cloned() else {
            self.want(d);
            return Verdict::Pending;
        };
        if self
            .engine_set
            .is_some_and(|es| block.header.validator_set != es)
        {
            self.stats.rejected += 1;
            return Verdict::Invalid;
        }
        if block.header.prev != parent || &block.header.proposer != leader {
            // The same bytes are invalid in this context only; do not mark the digest.
            self.stats.rejected += 1;
            return Verdict::Invalid;
        }
        if block.header.time > now.saturating_add(MAX_CLOCK_DRIFT_MS) {
            return Verdict::Pending;
        }
        if self.spec.contains_key(&d) {
            self.stats.verified += 1;
            return Verdict::Valid;
        }
        if self.invalid.contains(&parent) {
            self.stats.rejected += 1;
            return Verdict::Invalid;
        }
        let Some(mut s) = self.state_after(parent) else {
            return Verdict::Pending;
        };
        match s.execute(&block) {
            Ok(_) => {
                self.spec.insert(d, s);
                self.stats.verified += 1;
                Verdict::Valid
            }
            Err(_) => {
                self.invalid.insert(d);
                self.stats.rejected += 1;
                Verdict::Invalid
            }
        }
    }

    /// Relay: the block to broadcast for digest `d`, if known.
    pub fn block(&self, d: &Digest) -> Option<&Block> {
        self.blocks.get(d)
    }

    /// The engine finalized `d` (and so every ancestor of it).
    pub fn on_finalized(&mut self, d: Digest) {
        self.final_tips.insert(d);
        self.advance();
    }

    /// Walks every finalized tip back to the committed head, votes for the final blocks,
    /// asks for missing ones and commits what has a quorum.
    fn advance(&mut self) {
        let tips: Vec<Digest> = self.final_tips.iter().copied().collect();
        for tip in tips {
            let mut path = Vec::new();
            let mut cur = tip;
            let mut stale = false;
            loop {
                if cur == self.head_hash() {
                    break;
                }
                match self.blocks.get(&cur) {
                    Some(b) if b.header.height > self.height() => {
                        path.push(cur);
                        cur = b.header.prev;
                    }
                    Some(_) => {
                        stale = true;
                        break;
                    }
                    None => {
                        if self.position(&cur).is_some() {
                            stale = true;
                        } else {
                            self.want(cur);
                            self.behind = true;
                        }
                        break;
                    }
                }
            }
            if stale && path.is_empty() {
                self.final_tips.remove(&tip);
            }
            for d in path.into_iter().rev() {
                self.mark_final(d);
            }
        }
        self.try_commit();
    }

    fn mark_final(&mut self, d: Digest) {
        let Some(h) = self.blocks.get(&d).map(|b| b.header.height) else {
            return;
        };
        match self.final_at.get(&h) {
            Some(prev) if *prev != d => {
                self.stats.conflicts += 1;
                return;
            }
            Some(_) => {}
            None => {
                self.final_at.insert(h, d);
            }
        }
        if self.voted.contains_key(&h) {
            return;
        }
        let vote = sign_commit(&self.key, self.me.clone(), &self.chain_id, h, &d);
        let me = self.me.clone();
        self.note_vote(h, d, &me, vote.signature);
        self.voted.insert(h, (d, vote.clone()));
        self.votes
            .entry((h, d))
            .or_default()
            .insert(self.me.clone(), vote.clone());
        self.send(
            To::All,
            Wire::Vote {
                height: h,
                header_hash: d,
                vote,
            },
        );
    }

    /// Commits, in height order, every next block that has a certificate or a quorum of votes.
    fn try_commit(&mut self) {
        let before = self.height();
        self.commit_ready();
        if self.height() > before {
            let note = lock(&self.ledger).checkpoint_note();
            if let Some(n) = note {
                self.send(To::All, Wire::Checkpoint(n));
            }
        }
    }

    fn commit_ready(&mut self) {
        loop {
            if self.store_error.is_some() {
                return;
            }
            let h = self.height() + 1;
            let Some((d, cert, by_sync)) = self.next_certified(h) else {
                return;
            };
            let Some(block) = self.blocks.get(&d).cloned() else {
                self.want(d);
                return;
            };
            let r = lock(&self.ledger).commit(block, cert);
            match r {
                Ok(()) => {
                    if by_sync {
                        self.stats.committed_by_sync += 1;
                    } else {
                        self.stats.committed_by_votes += 1;
                    }
                    self.prune();
                }
                Err(CommitError::Store(e)) => {
                    // The in-memory chain is ahead of the store: stop committing; a restart
                    // rebuilds the chain from what the store holds.
                    self.store_error = Some(format!("height {h}: {e}"));
                    return;
                }
                Err(CommitError::Invalid(e)) => {
                    tracing::warn!("block {h} {d} with its certificate refused: {e}");
                    self.stats.refused += 1;
                    self.certs.remove(&d);
                    if !by_sync {
                        // A quorum of valid votes for a block the ledger refuses: never again.
                        self.invalid.insert(d);
                        self.votes.remove(&(h, d));
                    }
                    return;
                }
            }
        }
    }

    /// The validator set in force at the height of block `d`: from its speculative execution
    /// if this replica executed it (membership changes due at that height are applied by then),
    /// else the committed head's.
    fn set_at(&self, d: &Digest) -> Option<ValidatorSet> {
        match self.spec.get(d) {
            Some(s) => s.chain().state().validators().ok(),
            None => self.chain().state().validators().ok(),
        }
    }

    fn next_certified(&self, h: u64) -> Option<(Digest, CommitCertificate, bool)> {
        for (d, c) in &self.certs {
            if c.height == h {
                return Some((*d, c.clone(), true));
            }
        }
        for ((vh, d), vs) in self.votes.range((h, Digest::ZERO)..) {
            if *vh != h {
                break;
            }
            let Some(set) = self.set_at(d) else {
                continue;
            };
            let power: u64 = vs
                .keys()
                .filter_map(|o| set.get(o))
                .map(|v| v.power)
                .fold(0, u64::saturating_add);
            if power >= set.quorum() {
                let cert = CommitCertificate {
                    height: h,
                    header_hash: *d,
                    votes: vs
                        .iter()
                        .filter(|(o, _)| set.get(o).is_some())
                        .map(|(_, v)| v.clone())
                        .collect(),
                };
                return Some((*d, cert, false));
            }
        }
        None
    }

    fn prune(&mut self) {
        let h = self.height();
        let head = self.head_hash();
        self.blocks.retain(|_, b| b.header.height > h);
        let blocks = &self.blocks;
        self.spec.retain(|d, _| blocks.contains_key(d));
        self.certs.retain(|d, _| blocks.contains_key(d));
        self.final_tips
            .retain(|d| *d != head && blocks.get(d).is_none_or(|b| b.header.height > h));
        self.final_at = self.final_at.split_off(&(h + 1));
        self.voted = self.voted.split_off(&(h + 1));
        self.votes = self.votes.split_off(&(h + 1, Digest::ZERO));
        self.seen = self
            .seen
            .split_off(&h.saturating_sub(EVIDENCE_WINDOW).saturating_add(1));
        self.missing.remove(&head);
        if self.invalid.len() > MAX_BLOCKS {
            self.invalid.clear();
        }
    }

    fn accepts_height(&self, height: u64) -> bool {
        height > self.height() && height <= self.height() + WINDOW
    }

    /// A message from peer `from`.
    pub fn on_message(&mut self, from: &OrgId, w: Wire) {
        match w {
            Wire::Block(b) => self.on_block(b),
            Wire::Vote {
                height,
                header_hash,
                vote,
            } => self.on_vote(from, height, header_hash, vote),
            Wire::Certified(b, c) => self.on_certified(b, c),
            Wire::Checkpoint(n) => lock(&self.ledger).on_checkpoint_note(&n),
            Wire::Want(d) => {
                if let Some(h) = self.position(&d) {
                    if let Some((b, c)) = self.stored(h) {
                        self.send(To::One(from.clone()), Wire::Certified(b, c));
                    }
                } else if let Some(b) = self.blocks.get(&d).cloned() {
                    self.send(To::One(from.clone()), Wire::Block(b));
                }
            }
            Wire::Sync(from_h) => {
                let top = self.height().min(from_h.saturating_add(SYNC_BATCH - 1));
                for h in from_h.max(1)..=top {
                    if let Some((b, c)) = self.stored(h) {
                        self.send(To::One(from.clone()), Wire::Certified(b, c));
                    }
                }
            }
        }
    }

    fn on_block(&mut self, b: Block) {
        if !self.accepts_height(b.header.height) || self.blocks.len() >= MAX_BLOCKS {
            return;
        }
        let Ok(d) = b.header.hash() else {
            self.refuse("a block whose header does not encode");
            return;
        };
        self.missing.remove(&d);
        if self.blocks.insert(d, b).is_none() {
            self.advance();
        }
    }

    fn on_vote(&mut self, from: &OrgId, height: u64, d: Digest, vote: CommitVote) {
        if height <= self.height() {
            let stored = self.stored(height);
            self.on_late_vote(height, d, &vote, stored.as_ref().map(|(_, c)| c));
            if let Some((b, c)) = stored {
                if c.header_hash == d {
                    // The sender is behind: give it the committed block.
                    self.send(To::One(from.clone()), Wire::Certified(b, c));
                }
            }
            return;
        }
        if !self.accepts_height(height) || &vote.validator != from {
            self.refuse(&format!(
                "a commit vote from {from} for height {height} outside the window or signed as {}",
                vote.validator
            ));
            return;
        }
        let Some(set) = self.set_at(&d) else {
            return;
        };
        let ok = set.get(&vote.validator).is_some_and(|v| {
            v.key
                .verify(
                    SigDomain::Commit,
                    &commit_payload(&self.chain_id, height, &d),
                    &vote.signature,
                )
                .is_ok()
        });
        if !ok {
            self.refuse(&format!("a commit vote from {from} at height {height} that does not verify under the validator set"));
            return;
        }
        self.note_vote(height, d, &vote.validator, vote.signature);
        self.votes
            .entry((height, d))
            .or_default()
            .insert(vote.validator.clone(), vote);
        if height > self.height() + 1 {
            self.behind = true;
        }
        if !self.blocks.contains_key(&d) {
            self.want(d);
        }
        self.try_commit();
    }

    /// A commit vote for an already committed height (the sender is behind, the vote is late,
    /// or it is a vote for another header than the committed one: equivocation if it
    /// verifies). It may be relayed by any member: the signature speaks for the validator.
    /// Checked against the validator's key in the committed head's set (the key the ledger's
    /// `misbehaviour` rule checks); the validator's other vote comes from the votes seen at
    /// that height, else from the stored certificate `cert`.
    fn on_late_vote(
        &mut self,
        height: u64,
        d: Digest,
        vote: &CommitVote,
        cert: Option<&CommitCertificate>,
    ) {
        let v = &vote.validator;
        if self.reported.contains(&(height, v.clone())) {
            return;
        }
        let in_window = height.saturating_add(EVIDENCE_WINDOW) > self.height();
        let known = self.seen.get(&height).and_then(|m| m.get(v)).copied();
        if known.is_some_and(|(k, _)| k == d) {
            return;
        }
        let certified = cert.and_then(|c| {
            let sig = c.votes.iter().find(|x| &x.validator == v)?.signature;
            Some((c.header_hash, sig))
        });
        if known.is_none() && certified.is_some_and(|(k, _)| k == d) {
            // The same vote as in the certificate (verified when it was committed).
            if let (true, Some(x)) = (in_window, certified) {
                self.seen.entry(height).or_default().insert(v.clone(), x);
            }
            return;
        }
        let other = known.or(certified.filter(|(k, _)| *k != d));
        if other.is_none() && !in_window {
            return;
        }
        let Some(key) = self.validator_key(v) else {
            return;
        };
        if !self.commit_sig_ok(&key, height, &d, &vote.signature) {
            self.refuse(&format!(
                "a late commit vote for height {height} signed as {v} that does not verify"
            ));
            return;
        }
        match other {
            Some((o, osig)) => {
                // The other vote may be a certificate's, checked under the key then in force.
                if self.commit_sig_ok(&key, height, &o, &osig) {
                    self.found(v, height, (o, osig), (d, vote.signature));
                }
            }
            None => {
                self.seen
                    .entry(height)
                    .or_default()
                    .insert(v.clone(), (d, vote.signature));
            }
        }
    }

    /// The key of `org` if it is a validator (power > 0) at the committed head.
    fn validator_key(&self, org: &OrgId) -> Option<PublicKey> {
        let set = self.chain().state().validators().ok()?;
        set.get(org).filter(|x| x.power > 0).map(|x| x.key)
    }

    fn commit_sig_ok(&self, key: &PublicKey, height: u64, d: &Digest, sig: &Signature) -> bool {
        key.verify(
            SigDomain::Commit,
            &commit_payload(&self.chain_id, height, d),
            sig,
        )
        .is_ok()
    }

    fn on_certified(&mut self, b: Block, c: CommitCertificate) {
        if !self.accepts_height(b.header.height) {
            return;
        }
        let Ok(d) = b.header.hash() else {
            self.refuse("a certified block whose header does not encode");
            return;
        };
        if c.header_hash != d || c.height != b.header.height {
            self.refuse(&format!(
                "a certificate for height {} that does not match its block",
                c.height
            ));
            return;
        }
        // Pre-checked against the current set when the block says it is in force (an
        // epoch's first block is checked by `apply_block` alone, with the set at its height).
        let Ok(set) = self.chain().state().validators() else {
            return;
        };
        if set.hash().ok() == Some(b.header.validator_set) && c.verify(&b.header, &set).is_err() {
            self.refuse(&format!(
                "a certificate for block {} below quorum or with a bad vote",
                b.header.height
            ));
            return;
        }
        if b.header.height > self.height() + 1 {
            self.behind = true;
        }
        self.missing.remove(&d);
        self.blocks.insert(d, b);
        self.certs.insert(d, c);
        self.try_commit();
        self.advance();
    }

    /// Periodic work: re-ask for missing blocks, ask for committed blocks when behind,
    /// re-send own votes for final blocks not committed yet (votes may be lost).
    pub fn tick(&mut self) {
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks.is_multiple_of(NOTE_EVERY_TICKS) {
            // Followers that joined or restarted while the chain is idle still get a note.
            let note = lock(&self.ledger).checkpoint_note();
            if let Some(n) = note {
                self.send(To::All, Wire::Checkpoint(n));
            }
        }
        self.advance();
        // A digest nobody can serve (e.g. a Byzantine leader's) is given up after a while.
        self.missing.retain(|_, tries| *tries < MAX_WANT_TRIES);
        let missing: Vec<Digest> = self.missing.keys().take(8).copied().collect();
        for d in missing {
            if let Some(t) = self.missing.get_mut(&d) {
                *t += 1;
            }
            self.send(To::All, Wire::Want(d));
        }
        if self.behind || !self.missing.is_empty() {
            self.behind = false;
            self.send(To::All, Wire::Sync(self.height() + 1));
        }
        let mine: Vec<(u64, Digest, CommitVote)> = self
            .voted
            .iter()
            .take(4)
            .map(|(h, (d, v))| (*h, *d, v.clone()))
            .collect();
        for (height, header_hash, vote) in mine {
            self.send(
                To::All,
                Wire::Vote {
                    height,
                    header_hash,
                    vote,
                },
            );
        }
    }

    /// The committed block at `height` (for tests and the checker).
    pub fn committed(&self, height: u64) -> Option<(Block, CommitCertificate)> {
        lock(&self.ledger).stored(height)
    }

    /// Marks a message as refused (malformed).
    pub fn refused(&mut self) {
        self.refuse("a malformed ledger-channel message");
    }

    /// Counts and logs a refused message: the first ten and then every thousandth at warn
    /// level (a flood cannot flood the log), all at debug level.
    fn refuse(&mut self, what: &str) {
        self.stats.refused += 1;
        let n = self.stats.refused;
        if n <= 10 || n.is_multiple_of(1_000) {
            tracing::warn!("consensus: refused {what} ({n} refused so far)");
        } else {
            tracing::debug!("consensus: refused {what}");
        }
    }
}

/// The ledger's replica behind the engine: each method is the inherent one of the same name;
/// messages are the ledger channel's [`Wire`].
impl super::app::Replica for Core {
    type Message = Wire;
    fn propose(&mut self, parent: Digest, now: TimeMs, allow_empty: bool) -> Option<Digest> {
        Core::propose(self, parent, now, allow_empty)
    }
    fn verify(&mut self, parent: Digest, leader: &OrgId, d: Digest, now: TimeMs) -> Verdict {
        Core::verify(self, parent, leader, d, now)
    }
    fn body(&self, d: &Digest) -> Option<Wire> {
        self.block(d).cloned().map(Wire::Block)
    }
    fn on_finalized(&mut self, d: Digest) {
        Core::on_finalized(self, d);
    }
    fn on_message(&mut self, from: &OrgId, m: Wire) {
        Core::on_message(self, from, m);
    }
    fn refused(&mut self) {
        Core::refused(self);
    }
    fn tick(&mut self) {
        Core::tick(self);
    }
    fn take_outbox(&mut self) -> Vec<(To, Wire)> {
        Core::take_outbox(self)
    }
    fn encode(m: &Wire) -> Option<Vec<u8>> {
        m.encode().ok()
    }
    fn decode(bytes: &[u8]) -> Option<Wire> {
        Wire::decode(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::MemStore;
    use xinyi_ledger::entry::EntryKind;
    use xinyi_ledger::sample::{sample_firm, SampleConsortium};
    use xinyi_ledger::Chain;

    const T0: TimeMs = 1_795_000_000_000;

    /// Registers the next two sample firms.
    struct Firms(std::sync::Arc<SampleConsortium>);

    impl Mempool for Firms {
        fn candidates(&mut self, parent: &Chain, time: TimeMs) -> Vec<xinyi_ledger::Entry> {
            let n = parent.log().size();
            (n..n + 2)
                .map(|i| {
                    let uscc = sample_firm(i as u32).unwrap();
                    let firm = self.0.tag(&uscc);
                    let key = self.0.firm_key(&uscc).public();
                    self.0
                        .org_entry(
                            "gz-credit",
                            time,
                            i,
                            EntryKind::FirmRegistered { firm, key },
                        )
                        .unwrap()
                })
                .collect()
        }
    }

    struct Net {
        c: std::sync::Arc<SampleConsortium>,
        cores: Vec<Core>,
        stores: Vec<MemStore>,
    }

    impl Net {
        fn new() -> Net {
            let c = std::sync::Arc::new(SampleConsortium::new(b"core-tests", 4, T0));
            let stores: Vec<MemStore> = (0..4).map(|_| MemStore::default()).collect();
            let cores = (0..4).map(|i| Net::open(&c, &stores[i], i)).collect();
            Net { c, cores, stores }
        }

        fn open(c: &std::sync::Arc<SampleConsortium>, store: &MemStore, i: usize) -> Core {
            let org = c.validators[i].clone();
            Core::open(
                &c.genesis,
                org.clone(),
                c.keys[&org].clone(),
                Box::new(store.clone()),
                Box::new(Firms(c.clone())),
            )
            .unwrap()
        }

        fn org(&self, i: usize) -> OrgId {
            self.c.validators[i].clone()
        }

        /// Delivers queued messages until none are left (only among `alive`).
        fn settle(&mut self, alive: &[usize]) {
            for _ in 0..100 {
                let mut any = false;
                for i in 0..self.cores.len() {
                    let out = self.cores[i].take_outbox();
                    if !alive.contains(&i) {
                        continue;
                    }
                    for (to, w) in out {
                        any = true;
                        let from = self.org(i);
                        for j in alive.iter().copied().filter(|j| *j != i) {
                            let deliver = match &to {
                                To::All => true,
                                To::One(o) => *o == self.org(j),
                            };
                            if deliver {
                                self.cores[j].on_message(&from, w.clone());
                            }
                        }
                    }
                }
                if !any {
                    return;
                }
            }
        }

        /// Node `p` proposes on its head, everyone verifies and finalizes, votes settle.
        fn round(&mut self, p: usize, alive: &[usize]) -> Digest {
            let parent = *self.cores[p].chain().head_hash();
            let d = self.cores[p].propose(parent, T0 + 1_000, true).unwrap();
            let block = self.cores[p].block(&d).unwrap().clone();
            let op = self.org(p);
            for i in alive.iter().copied().filter(|i| *i != p) {
                self.cores[i].on_message(&op, Wire::Block(block.clone()));
            }
            let leader = self.org(p);
            for i in alive.iter().copied() {
                assert_eq!(
                    self.cores[i].verify(parent, &leader, d, T0 + 1_000),
                    Verdict::Valid
                );
            }
            for i in alive.iter().copied() {
                self.cores[i].on_finalized(d);
            }
            self.settle(alive);
            d
        }
    }

    #[test]
    fn propose_verify_finalize_commit() {
        let mut net = Net::new();
        let all = [0, 1, 2, 3];
        let d = net.round(0, &all);
        for (i, core) in net.cores.iter().enumerate() {
            assert_eq!(core.chain().height(), 1, "node {i}");
            assert_eq!(*core.chain().head_hash(), d);
            assert_eq!(core.stats.committed_by_votes, 1);
            assert!(net.stores[i].snapshot().blocks[0].1.votes.len() >= 3);
        }
        // The next proposer builds on the committed head.
        net.round(1, &all);
        assert!(net.cores.iter().all(|c| c.chain().height() == 2));
    }

    #[test]
    fn verify_before_parent_is_final_uses_speculative_state() {
        let mut net = Net::new();
        let p0 = *net.cores[0].chain().head_hash();
        let d1 = net.cores[0].propose(p0, T0 + 1_000, true).unwrap();
        let b1 = net.cores[0].block(&d1).unwrap().clone();
        // Node 1 builds on d1 before anything is final, node 2 verifies both.
        let o0 = net.org(0);
        net.cores[1].on_message(&o0, Wire::Block(b1.clone()));
        let d2 = net.cores[1].propose(d1, T0 + 1_100, true).unwrap();
        let b2 = net.cores[1].block(&d2).unwrap().clone();
        let (o0, o1) = (net.org(0), net.org(1));
        // Child first: pending until the parent block arrives.
        net.cores[2].on_message(&o1, Wire::Block(b2));
        assert_eq!(
            net.cores[2].verify(d1, &o1, d2, T0 + 1_100),
            Verdict::Pending
        );
        net.cores[2].on_message(&o0, Wire::Block(b1));
        assert_eq!(net.cores[2].verify(d1, &o1, d2, T0 + 1_100), Verdict::Valid);
        assert_eq!(net.cores[2].verify(p0, &o0, d1, T0 + 1_100), Verdict::Valid);
        assert_eq!(net.cores[2].chain().height(), 0);
    }

    #[test]
    fn invalid_proposals_are_refused() {
        let mut net = Net::new();
        let p0 = *net.cores[0].chain().head_hash();
        let d = net.cores[0].propose(p0, T0 + 1_000, true).unwrap();
        let mut bad = net.cores[0].block(&d).unwrap().clone();
        bad.header.state_root = Digest([9; 32]);
        let bd = bad.header.hash().unwrap();
        let o0 = net.org(0);
        net.cores[1].on_message(&o0, Wire::Block(bad));
        assert_eq!(
            net.cores[1].verify(p0, &o0, bd, T0 + 1_000),
            Verdict::Invalid
        );
        // Wrong leader or wrong parent for a good block.
        let good = net.cores[0].block(&d).unwrap().clone();
        net.cores[1].on_message(&o0, Wire::Block(good));
        let o2 = net.org(2);
        assert_eq!(
            net.cores[1].verify(p0, &o2, d, T0 + 1_000),
            Verdict::Invalid
        );
        assert_eq!(
            net.cores[1].verify(Digest([1; 32]), &o0, d, T0 + 1_000),
            Verdict::Invalid
        );
        // Far in the future: wait, do not refuse.
        assert_eq!(
            net.cores[1].verify(p0, &o0, d, T0 - 10_000),
            Verdict::Pending
        );
        assert_eq!(net.cores[1].verify(p0, &o0, d, T0 + 1_000), Verdict::Valid);
    }

    #[test]
    fn bad_votes_and_certificates_are_refused() {
        let mut net = Net::new();
        let p0 = *net.cores[0].chain().head_hash();
        let d = net.cores[0].propose(p0, T0 + 1_000, true).unwrap();
        let block = net.cores[0].block(&d).unwrap().clone();
        let (o0, o1, o2) = (net.org(0), net.org(1), net.org(2));
        let core = &mut net.cores[1];
        core.on_message(&o0, Wire::Block(block.clone()));
        // A vote signed by validator 0 but sent as validator 2's.
        let v0 = sign_commit(&net.c.keys[&o0], o0.clone(), &net.c.chain, 1, &d);
        let mut forged = v0.clone();
        forged.validator = o2.clone();
        core.on_message(
            &o2,
            Wire::Vote {
                height: 1,
                header_hash: d,
                vote: forged,
            },
        );
        // A vote for another height than signed.
        core.on_message(
            &o0,
            Wire::Vote {
                height: 2,
                header_hash: d,
                vote: v0.clone(),
            },
        );
        assert_eq!(core.stats.refused, 2);
        // A certificate below quorum, and one for another header.
        let mut cert = net.c.certify(&block).unwrap();
        cert.votes.truncate(2);
        core.on_message(&o0, Wire::Certified(block.clone(), cert));
        let mut other = block.clone();
        other.header.time += 1;
        core.on_message(&o0, Wire::Certified(other, net.c.certify(&block).unwrap()));
        assert_eq!(core.stats.refused, 4);
        assert_eq!(core.chain().height(), 0);
        // A full certificate commits (catch-up path).
        core.on_message(
            &o0,
            Wire::Certified(block.clone(), net.c.certify(&block).unwrap()),
        );
        assert_eq!(core.chain().height(), 1);
        assert_eq!(core.stats.committed_by_sync, 1);
        let _ = o1;
    }

    /// Whether `ev` is accepted by the ledger's `misbehaviour` rule on top of `core`'s chain
    /// (both signatures by the offender's key, author a validator, not recorded yet).
    fn evidence_accepted(net: &Net, core: usize, ev: &Equivocation) -> Result<(), String> {
        let e = net
            .c
            .org_entry(
                net.org(0).as_str(),
                T0 + 5_000,
                99,
                EntryKind::Misbehaviour(ev.clone()),
            )
            .map_err(|e| e.to_string())?;
        let mut s = net.cores[core].chain().speculate();
        let (_, dropped) = s
            .build(T0 + 5_000, net.org(0), vec![e])
            .map_err(|e| e.to_string())?;
        match dropped.first() {
            None => Ok(()),
            Some(d) => Err(d.reason.to_string()),
        }
    }

    fn vote(net: &Net, signer: usize, as_: usize, height: u64, d: &Digest) -> Wire {
        let mut v = sign_commit(
            &net.c.keys[&net.org(signer)],
            net.org(signer),
            &net.c.chain,
            height,
            d,
        );
        v.validator = net.org(as_);
        Wire::Vote {
            height,
            header_hash: *d,
            vote: v,
        }
    }

    #[test]
    fn equivocation_before_commit_gives_evidence_once() {
        let mut net = Net::new();
        let p0 = *net.cores[0].chain().head_hash();
        let d = net.cores[0].propose(p0, T0 + 1_000, true).unwrap();
        let block = net.cores[0].block(&d).unwrap().clone();
        let bogus = Digest([0xee; 32]);
        let (o0, o2, o3) = (net.org(0), net.org(2), net.org(3));
        net.cores[1].on_message(&o0, Wire::Block(block));
        // Validator 2 votes for d, then for another header at the same height.
        let good = vote(&net, 2, 2, 1, &d);
        let other = vote(&net, 2, 2, 1, &bogus);
        net.cores[1].on_message(&o2, good.clone());
        assert!(net.cores[1].take_evidence().is_empty());
        net.cores[1].on_message(&o2, other.clone());
        // Again, and in the other order: still one piece of evidence.
        net.cores[1].on_message(&o2, other);
        net.cores[1].on_message(&o2, good);
        let ev = net.cores[1].take_evidence();
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(net.cores[1].stats.equivocations, 1);
        let e = &ev[0];
        assert_eq!((e.validator.clone(), e.height), (o2.clone(), 1));
        assert!(e.header_a < e.header_b);
        assert_eq!(
            [e.header_a, e.header_b]
                .iter()
                .copied()
                .collect::<BTreeSet<_>>(),
            [d, bogus].into_iter().collect()
        );
        evidence_accepted(&net, 1, e).unwrap();
        // A second vote "by validator 3" that validator 0 signed: refused, no evidence.
        let w = vote(&net, 3, 3, 1, &d);
        net.cores[1].on_message(&o3, w);
        let refused = net.cores[1].stats.refused;
        let w = vote(&net, 0, 3, 1, &bogus);
        net.cores[1].on_message(&o3, w);
        assert_eq!(net.cores[1].stats.refused, refused + 1);
        assert!(net.cores[1].take_evidence().is_empty());
        assert_eq!(net.cores[1].stats.equivocations, 1);
        // Our own vote is remembered too: a vote of ours for another header (our key used
        // elsewhere) is caught against the one this node signed on finalization.
        net.cores[1].on_finalized(d);
        let o1 = net.org(1);
        let w = vote(&net, 1, 1, 1, &bogus);
        net.cores[1].on_message(&o1, w);
        let ev = net.cores[1].take_evidence();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].validator, o1);
    }

    #[test]
    fn equivocation_after_commit_gives_evidence_once() {
        let mut net = Net::new();
        let all = [0, 1, 2, 3];
        let d = net.round(0, &all);
        net.round(1, &all);
        assert!(net.cores.iter().all(|c| c.chain().height() == 2));
        assert!(net.cores.iter_mut().all(|c| c.take_evidence().is_empty()));
        let bogus = Digest([0x11; 32]);
        let (o0, o3) = (net.org(0), net.org(3));
        // Validator 3 signs another header at committed height 1; validator 0 relays it.
        let other = vote(&net, 3, 3, 1, &bogus);
        net.cores[2].on_message(&o0, other.clone());
        net.cores[2].on_message(&o3, other);
        let ev = net.cores[2].take_evidence();
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!((ev[0].validator.clone(), ev[0].height), (o3.clone(), 1));
        assert!([ev[0].header_a, ev[0].header_b].contains(&d));
        evidence_accepted(&net, 2, &ev[0]).unwrap();
        assert!(net.cores[2].take_evidence().is_empty());
        assert_eq!(net.cores[2].stats.equivocations, 1);
        // A badly signed one (validator 0's key, sent as validator 1's): refused, nothing.
        let refused = net.cores[2].stats.refused;
        let w = vote(&net, 0, 1, 1, &bogus);
        net.cores[2].on_message(&o0, w);
        assert_eq!(net.cores[2].stats.refused, refused + 1);
        assert!(net.cores[2].take_evidence().is_empty());
        // After a restart nothing is remembered but the stored certificate: its votes are
        // the other half of the evidence.
        let store = net.stores[2].clone();
        net.cores[2] = Net::open(&net.c, &store, 2);
        let (_, cert) = net.cores[2].committed(1).unwrap();
        let signer = net
            .c
            .validators
            .iter()
            .position(|o| cert.votes.iter().any(|v| &v.validator == o))
            .unwrap();
        let w = vote(&net, signer, signer, 1, &bogus);
        net.cores[2].on_message(&o0, w);
        let ev = net.cores[2].take_evidence();
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].validator, net.org(signer));
        evidence_accepted(&net, 2, &ev[0]).unwrap();
        // A late vote for the committed header itself is no evidence.
        let w = vote(&net, signer, signer, 1, &d);
        net.cores[2].on_message(&o0, w);
        assert!(net.cores[2].take_evidence().is_empty());
    }

    #[test]
    fn restart_rebuilds_from_store_and_catches_up() {
        let mut net = Net::new();
        let all = [0, 1, 2, 3];
        net.round(0, &all);
        // Node 3 is down for two blocks.
        let three = [0, 1, 2];
        net.round(1, &three);
        net.round(2, &three);
        assert_eq!(net.cores[3].chain().height(), 1);
        let store = net.stores[3].clone();
        net.cores[3] = Net::open(&net.c, &store, 3);
        assert_eq!(net.cores[3].chain().height(), 1);
        // Behind: it asks for blocks from its height on and applies them with certificates.
        net.cores[3].behind = true;
        net.cores[3].tick();
        net.settle(&all);
        assert_eq!(net.cores[3].chain().height(), 3);
        assert_eq!(
            net.cores[3].chain().head_hash(),
            net.cores[0].chain().head_hash()
        );
        assert_eq!(net.cores[3].stats.committed_by_sync, 2);
    }

    #[test]
    fn wire_round_trip_and_malformed() {
        let net = Net::new();
        let o0 = net.org(0);
        let d = Digest([3; 32]);
        let v = sign_commit(&net.c.keys[&o0], o0, &net.c.chain, 5, &d);
        let mut spec = net.cores[0].chain().speculate();
        let (b, _) = spec.build(T0 + 5, net.org(0), vec![]).unwrap();
        let cert = net.c.certify(&b).unwrap();
        for w in [
            Wire::Block(b.clone()),
            Wire::Vote {
                height: 5,
                header_hash: d,
                vote: v,
            },
            Wire::Certified(b, cert),
            Wire::Want(d),
            Wire::Sync(7),
        ] {
            assert_eq!(Wire::decode(&w.encode().unwrap()).unwrap(), w);
        }
        for bad in [
            &[][..],
            &[9][..],
            &[1, 0, 0][..],
            &[2, 255, 255, 255, 255][..],
            &[3, 1, 2][..],
            &[4, 0][..],
            &[0, 0xff][..],
        ] {
            assert!(Wire::decode(bad).is_err(), "{bad:?}");
        }
    }
}

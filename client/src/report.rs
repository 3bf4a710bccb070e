//! The audit report's contents beyond the verifier's: organisations, consents, queries, repairs
//! with their SLA status, checkpoint cosignatures and anchors. Computed on a second thread from
//! the same bundle bytes while `xinyi_ledger::verify` checks them (`audit::run` tees the input),
//! by replaying the ledger's own state transitions without re-checking signatures or
//! certificates — the verifier does that, and a report is only printed if it passed.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use xinyi_ledger::block::Block;
use xinyi_ledger::bundle::BundleReader;
use xinyi_ledger::merkle::{self, MerkleTree};
use xinyi_ledger::state::RepairStatus;
use xinyi_ledger::{Digest, Entry, EntryKind, Genesis, State};

/// Counts of one repair SLA class.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Repairs {
    /// Repairs requested.
    pub requested: u64,
    /// Waiting for the agency's decision.
    pub undecided: u64,
    /// Rejected.
    pub rejected: u64,
    /// Approved and applied by both registries (信用中国 and 公示系统).
    pub both_applied: u64,
    /// Approved, applied by exactly one registry.
    pub one_sided: u64,
    /// Approved, applied by neither yet.
    pub not_applied: u64,
    /// Overdue at the head block's time (deadline passed before both registries applied).
    pub overdue: u64,
    /// Ids of the overdue repairs.
    pub overdue_ids: Vec<String>,
}

/// One anchor receipt.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AnchorItem {
    /// Log size anchored.
    pub size: u64,
    /// Log root anchored, hex.
    pub root: String,
    /// External chain.
    pub chain: String,
    /// Transaction id.
    pub tx: String,
}

/// The report's ledger statistics.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AuditStats {
    /// Registered organisations by role.
    pub organisations: BTreeMap<String, u64>,
    /// Registered firms.
    pub firms: u64,
    /// Consents granted.
    pub consents: u64,
    /// Of those, revoked.
    pub consents_revoked: u64,
    /// Queries served.
    pub queries_served: u64,
    /// Queries denied, by reason code.
    pub queries_denied: BTreeMap<String, u64>,
    /// Repairs and their SLA status.
    pub repairs: Repairs,
    /// Checkpoints cosigned on the ledger: log size → number of validators.
    pub checkpoints_cosigned: BTreeMap<u64, u64>,
    /// Anchor receipts.
    pub anchors: Vec<AnchorItem>,
    /// Head block time.
    pub head_time: u64,
}

/// Replays the bundle read from `input` and collects [`AuditStats`]; `None` if the bundle or
/// a transition fails (the verifier reports that failure with its location).
pub fn collect(genesis: &Genesis, input: impl Read) -> Option<AuditStats> {
    let reader = BundleReader::new(input).ok()?;
    let (mut state, _) = State::from_genesis(genesis).ok()?;
    let mut log = MerkleTree::new();
    let mut s = AuditStats::default();
    let mut consents: Vec<Digest> = vec![];
    let mut repairs: Vec<Digest> = vec![];
    let mut cosigned: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for frames in reader {
        let (block_bytes, _) = frames.ok()?;
        let block = Block::decode(&block_bytes).ok()?;
        let (h, t) = (block.header.height, block.header.time);
        state.begin_block(h, t).ok()?;
        for bytes in &block.entries {
            let e = Entry::decode(bytes).ok()?;
            state.apply_entry(&e, &log).ok()?;
            log.push_leaf_hash(merkle::leaf_hash(&e.bytes));
            match &e.body.kind {
                EntryKind::ConsentGranted(_) => consents.push(e.id),
                EntryKind::QueryServed(_) => s.queries_served += 1,
                EntryKind::QueryDenied { reason, .. } => {
                    *s.queries_denied
                        .entry(reason.code().to_string())
                        .or_default() += 1
                }
                EntryKind::RepairRequested { .. } => repairs.push(e.id),
                EntryKind::CheckpointCosigned { size, .. } => {
                    cosigned
                        .entry(*size)
                        .or_default()
                        .insert(format!("{:?}", e.body.author));
                }
                EntryKind::AnchorReceipt {
                    size,
                    root,
                    chain,
                    tx,
                } => s.anchors.push(AnchorItem {
                    size: *size,
                    root: root.to_hex(),
                    chain: chain.clone(),
                    tx: tx.clone(),
                }),
                EntryKind::FirmRegistered { .. } => s.firms += 1,
                _ => {}
            }
        }
        state.end_block(h, t).ok()?;
        s.head_time = t;
    }
    for (_, o) in state.orgs().ok()? {
        *s.organisations
            .entry(format!("{:?}", o.role).to_lowercase())
            .or_default() += 1;
    }
    s.consents = consents.len() as u64;
    for id in &consents {
        if state.consent(id).ok()??.revoked {
            s.consents_revoked += 1;
        }
    }
    let r = &mut s.repairs;
    r.requested = repairs.len() as u64;
    for id in &repairs {
        let rec = state.repair(id).ok()??;
        let applied = u8::from(rec.credit_china_applied_at.is_some())
            + u8::from(rec.gsxt_applied_at.is_some());
        match rec.status {
            RepairStatus::Rejected => r.rejected += 1,
            RepairStatus::Applied => r.both_applied += 1,
            RepairStatus::Approved if applied == 1 => r.one_sided += 1,
            RepairStatus::Approved => r.not_applied += 1,
            _ => r.undecided += 1,
        }
        if rec.overdue_at(s.head_time) {
            r.overdue += 1;
            r.overdue_ids.push(id.to_hex());
        }
    }
    s.checkpoints_cosigned = cosigned
        .into_iter()
        .map(|(k, v)| (k, v.len() as u64))
        .collect();
    Some(s)
}

impl AuditStats {
    /// Human-readable lines.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let orgs: Vec<String> = self
            .organisations
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        out += &format!("organisations: {}\n", orgs.join(", "));
        out += &format!("firms registered: {}\n", self.firms);
        out += &format!(
            "consents: {} granted, {} revoked\n",
            self.consents, self.consents_revoked
        );
        let denied: u64 = self.queries_denied.values().sum();
        let reasons: Vec<String> = self
            .queries_denied
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out += &format!(
            "queries: {} served, {denied} denied{}\n",
            self.queries_served,
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            }
        );
        let r = &self.repairs;
        out += &format!(
            "repairs: {} requested, {} undecided, {} rejected, {} applied by both registries, {} one-sided, {} approved but not applied, {} overdue\n",
            r.requested, r.undecided, r.rejected, r.both_applied, r.one_sided, r.not_applied, r.overdue
        );
        for id in &r.overdue_ids {
            out += &format!("  overdue repair {id}\n");
        }
        out += &format!(
            "checkpoints cosigned on the ledger: {}{}\n",
            self.checkpoints_cosigned.len(),
            self.checkpoints_cosigned
                .iter()
                .next_back()
                .map(|(s, n)| format!(" (latest size {s}, {n} validators)"))
                .unwrap_or_default()
        );
        out += &format!("anchor receipts: {}\n", self.anchors.len());
        for a in self.anchors.iter().rev().take(3) {
            out += &format!("  size {} on {} tx {}\n", a.size, a.chain, a.tx);
        }
        out
    }
}

//! `xinyi audit verify`: run the ledger's streaming verifier over an audit bundle (a file, or
//! `GET /v1/export` streamed from a node) and report the result.
//!
//! All checking is the ledger's `Chain::apply_block`, in the same loop as
//! `xinyi_ledger::verify::verify_bundle`; this module adds the progress bar, the timing, the
//! report/failure formats and, when a block is rejected as a whole (a changed entry byte breaks
//! its entries root), a diagnosis naming the changed entry. It never trusts anything the bundle or node
//! says about itself beyond what the verifier recomputes.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::time::Instant;
use xinyi_ledger::block::{Block, CommitCertificate};
use xinyi_ledger::bundle::BundleReader;
use xinyi_ledger::chain::Chain;
use xinyi_ledger::entry::{Author, Entry, EntryKind};
use xinyi_ledger::genesis::Genesis;
use xinyi_ledger::genesis::GenesisError;
use xinyi_ledger::hash::Digest;
use xinyi_ledger::keys::{PublicKey, SigDomain};
use xinyi_ledger::verify::{VerifyError, VerifyReport};
use xinyi_ledger::Uscc;

/// A successful audit.
#[derive(Debug, Clone, Serialize)]
pub struct AuditSummary {
    /// `ok`.
    pub result: &'static str,
    /// The ledger verifier's report (chain id, blocks, entries by kind, head, roots).
    #[serde(flatten)]
    pub report: VerifyReport,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Entries verified per second.
    pub entries_per_second: f64,
}

/// A failed audit, located.
#[derive(Debug, Clone, Serialize)]
pub struct AuditFailure {
    /// `failed`.
    pub result: &'static str,
    /// Stable code.
    pub code: String,
    /// Failing block height, if a block is at fault.
    pub height: Option<u64>,
    /// Failing entry index in that block, if an entry is at fault.
    pub entry: Option<usize>,
    /// Reason.
    pub reason: String,
}

impl AuditFailure {
    /// The one-line form: `audit failed at block H, entry I: reason (code)`.
    pub fn line(&self) -> String {
        let at = match (self.height, self.entry) {
            (Some(h), Some(i)) => format!(" at block {h}, entry {i}"),
            (Some(h), None) => format!(" at block {h}"),
            _ => String::new(),
        };
        crate::api::one_line(&format!(
            "audit failed{at}: {} ({})",
            self.reason, self.code
        ))
    }
}

fn failure(e: &VerifyError, located: Option<(usize, String)>) -> AuditFailure {
    let reason = match e {
        VerifyError::Chain(c) => c.kind.to_string(),
        VerifyError::Decode { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    match located {
        Some((i, why)) => AuditFailure {
            result: "failed",
            code: e.code().to_string(),
            height: e.height(),
            entry: Some(i),
            reason: format!("{reason}; entry {i}: {why}"),
        },
        None => AuditFailure {
            result: "failed",
            code: e.code().to_string(),
            height: e.height(),
            entry: e.entry(),
            reason,
        },
    }
}

/// After a block-level failure (e.g. its entries root does not match), finds the entry that was
/// changed: the first one that does not decode or whose author signature does not verify under
/// the keys in force before the block. Diagnosis only: the block is already rejected.
fn locate_entry(chain: &Chain, block: &Block) -> Option<(usize, String)> {
    let mut firm_keys: BTreeMap<Uscc, PublicKey> = BTreeMap::new();
    for (i, b) in block.entries.iter().enumerate() {
        let e = match Entry::decode(b) {
            Ok(e) => e,
            Err(x) => return Some((i, format!("does not decode ({x})"))),
        };
        let key = match &e.body.author {
            Author::Org(o) => chain.state().org(o).ok().flatten().map(|r| r.key),
            Author::Firm(f) => firm_keys
                .get(f)
                .copied()
                .or_else(|| chain.state().firm(f).ok().flatten().map(|r| r.key)),
        };
        if let Some(k) = key {
            if k.verify(
                SigDomain::Entry,
                &e.signing_payload(chain.chain_id()),
                &e.signature,
            )
            .is_err()
            {
                return Some((i, "its author's signature does not verify".into()));
            }
        }
        if let EntryKind::FirmRegistered { firm, key } = &e.body.kind {
            firm_keys.insert(*firm, *key);
        }
    }
    None
}

/// The ledger's verifier loop (as `xinyi_ledger::verify::verify_bundle`), keeping the failing
/// block so that a changed entry can be named.
fn verify_stream(
    trusted: &Genesis,
    input: impl Read,
    mut progress: impl FnMut(u64, u64),
) -> Result<VerifyReport, AuditFailure> {
    let fail = |e: VerifyError| failure(&e, None);
    let reader = BundleReader::new(input).map_err(|e| fail(e.into()))?;
    let bundled = Genesis::from_json(reader.genesis()).map_err(|e| fail(e.into()))?;
    let (b, t) = (
        bundled
            .chain_id()
            .map_err(|e| fail(GenesisError::from(e).into()))?,
        trusted
            .chain_id()
            .map_err(|e| fail(GenesisError::from(e).into()))?,
    );
    if b != t {
        return Err(fail(VerifyError::GenesisMismatch {
            bundle: b,
            trusted: t,
        }));
    }
    let (mut chain, _) =
        Chain::from_genesis(trusted).map_err(|e| fail(GenesisError::from(e).into()))?;
    let mut report = VerifyReport {
        chain_id: *chain.chain_id(),
        blocks: 0,
        entries: 0,
        entries_by_kind: BTreeMap::new(),
        head_hash: *chain.chain_id(),
        log_size: 0,
        log_root: Digest(xinyi_ledger::merkle::empty_root()),
        state_root: chain.state_head().root,
    };
    for item in reader {
        let (block_bytes, cert_bytes) = item.map_err(|e| fail(e.into()))?;
        let height = chain.height() + 1;
        let block = Block::decode(&block_bytes).map_err(|e| {
            fail(VerifyError::Decode {
                height,
                reason: format!("block bytes: {e}"),
            })
        })?;
        let cert = CommitCertificate::decode(&cert_bytes).map_err(|e| {
            fail(VerifyError::Decode {
                height,
                reason: format!("certificate bytes: {e}"),
            })
        })?;
        match chain.apply_block(block, cert) {
            Ok(committed) => {
                report.blocks += 1;
                report.entries += committed.entries.len() as u64;
                for e in &committed.entries {
                    *report
                        .entries_by_kind
                        .entry(e.body.kind.name().to_string())
                        .or_insert(0) += 1;
                }
                progress(height, report.entries);
            }
            Err(ce) => {
                // Re-decode (it decoded a moment ago) rather than keep a copy of every block.
                let located = match (ce.entry, Block::decode(&block_bytes)) {
                    (None, Ok(kept)) => locate_entry(&chain, &kept),
                    _ => None,
                };
                return Err(failure(&VerifyError::Chain(ce), located));
            }
        }
    }
    report.head_hash = *chain.head_hash();
    report.log_size = chain.log().size();
    report.log_root = Digest(chain.log().root());
    report.state_root = chain.state_head().root;
    Ok(report)
}

/// Verifies the bundle read from `input` against `genesis`. `expected_blocks` sizes the progress
/// bar (0 = unknown); `show_progress` draws it on stderr.
pub fn run(
    genesis: &Genesis,
    input: impl Read,
    expected_blocks: u64,
    show_progress: bool,
) -> Result<AuditSummary, AuditFailure> {
    let bar = if show_progress {
        let b = if expected_blocks > 0 {
            ProgressBar::new(expected_blocks)
        } else {
            ProgressBar::new_spinner()
        };
        b.set_draw_target(ProgressDrawTarget::stderr());
        let style = if expected_blocks > 0 {
            ProgressStyle::with_template(
                "verifying {bar:40} block {pos}/{len} · {msg} · {elapsed_precise}",
            )
        } else {
            ProgressStyle::with_template(
                "verifying {spinner} block {pos} · {msg} · {elapsed_precise}",
            )
        };
        if let Ok(s) = style {
            b.set_style(s);
        }
        b
    } else {
        ProgressBar::hidden()
    };
    let start = Instant::now();
    let reader = std::io::BufReader::with_capacity(1 << 20, input);
    let result = verify_stream(genesis, reader, |height, entries| {
        bar.set_position(height);
        if height % 16 == 0 {
            bar.set_message(format!("{entries} entries"));
        }
    });
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    result.map(|r| summary(r, seconds))
}

fn summary(r: VerifyReport, seconds: f64) -> AuditSummary {
    let entries_per_second = if seconds > 0.0 {
        r.entries as f64 / seconds
    } else {
        0.0
    };
    AuditSummary {
        result: "ok",
        report: r,
        seconds,
        entries_per_second,
    }
}

impl AuditSummary {
    /// The human report.
    pub fn text(&self) -> String {
        let r = &self.report;
        let mut s = String::from("audit verify: OK\n");
        s += &format!("  chain id      {}\n", r.chain_id);
        s += &format!("  blocks        {}\n", r.blocks);
        s += &format!("  entries       {}\n", r.entries);
        for (k, n) in &r.entries_by_kind {
            s += &format!("    {k:<24}{n}\n");
        }
        s += &format!("  head hash     {}\n", r.head_hash);
        s += &format!("  log           size {} root {}\n", r.log_size, r.log_root);
        s += &format!("  state root    {}\n", r.state_root);
        s += &format!(
            "  time          {:.3} s ({:.0} entries/s)\n",
            self.seconds, self.entries_per_second
        );
        s
    }
}

//! The auditor's verifier: from a genesis document and a stream of blocks with certificates,
//! re-derive and check everything, and name the first failure.
//!
//! It trusts nothing stored: every header link, certificate, entry encoding and signature
//! (batched), Merkle root and state transition is recomputed by [`crate::chain::Chain`], the
//! same code validators run. The first failure is reported with its height, entry index and
//! a stable code. Streaming: memory is the state and the log, never the whole chain.

use crate::block::{Block, CommitCertificate};
use crate::bundle::{BundleError, BundleReader};
use crate::chain::{Chain, ChainError, DecodedEntries, PendingSignatures};
use crate::genesis::{Genesis, GenesisError};
use crate::hash::Digest;
use std::collections::BTreeMap;
use std::io::Read;

/// Summary of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Chain id.
    pub chain_id: Digest,
    /// Blocks verified.
    pub blocks: u64,
    /// Entries verified.
    pub entries: u64,
    /// Entries per kind.
    pub entries_by_kind: BTreeMap<String, u64>,
    /// Head header hash.
    pub head_hash: Digest,
    /// Final log size.
    pub log_size: u64,
    /// Final log root.
    pub log_root: Digest,
    /// Final state root.
    pub state_root: Digest,
}

/// The first failure found.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The genesis document is unusable.
    #[error("genesis: {0}")]
    Genesis(#[from] GenesisError),
    /// The bundle's genesis differs from the trusted one.
    #[error("the bundle's genesis is not the trusted genesis (chain {bundle} vs {trusted})")]
    GenesisMismatch {
        /// Chain id in the bundle.
        bundle: Digest,
        /// Trusted chain id.
        trusted: Digest,
    },
    /// The stream is malformed.
    #[error("{0}")]
    Bundle(#[from] BundleError),
    /// A block's bytes do not decode.
    #[error("block {height}: {reason}")]
    Decode {
        /// Height (the position in the stream).
        height: u64,
        /// Reason.
        reason: String,
    },
    /// A block is invalid.
    #[error("{0}")]
    Chain(#[from] ChainError),
    /// The stream source failed.
    #[error("source: {0}")]
    Source(String),
}

impl VerifyError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Genesis(_) => "verify.genesis",
            VerifyError::GenesisMismatch { .. } => "verify.genesis_mismatch",
            VerifyError::Bundle(e) => e.code(),
            VerifyError::Decode { .. } => "verify.decode",
            VerifyError::Chain(e) => e.kind.code(),
            VerifyError::Source(_) => "verify.source",
        }
    }

    /// Height of the failing block, when one is at fault.
    pub fn height(&self) -> Option<u64> {
        match self {
            VerifyError::Decode { height, .. } => Some(*height),
            VerifyError::Chain(e) => Some(e.height),
            _ => None,
        }
    }

    /// Index of the failing entry in its block, when one is at fault.
    pub fn entry(&self) -> Option<usize> {
        match self {
            VerifyError::Chain(e) => e.entry,
            _ => None,
        }
    }
}

/// Stored block and certificate bytes.
type RawBlock = (Vec<u8>, Vec<u8>);
/// A block, its certificate and its decoded entries.
type Decoded = (Block, CommitCertificate, DecodedEntries);

/// Decodes one stored block (the verifier's first stage).
fn decode_block(height: u64, block: &[u8], cert: &[u8]) -> Result<Decoded, VerifyError> {
    let block = Block::decode(block).map_err(|e| VerifyError::Decode {
        height,
        reason: format!("block bytes: {e}"),
    })?;
    let cert = CommitCertificate::decode(cert).map_err(|e| VerifyError::Decode {
        height,
        reason: format!("certificate bytes: {e}"),
    })?;
    let entries = DecodedEntries::new(&block);
    Ok((block, cert, entries))
}

/// Verifies `blocks` (stored block and certificate bytes, by ascending height) from `genesis`.
/// `progress` is called after each block with (height, entries so far).
pub fn verify_chain<I, E>(
    genesis: &Genesis,
    blocks: I,
    mut progress: impl FnMut(u64, u64),
) -> Result<VerifyReport, VerifyError>
where
    I: IntoIterator<Item = Result<(Vec<u8>, Vec<u8>), E>>,
    E: Into<VerifyError>,
{
    let (mut chain, _) = Chain::from_genesis(genesis).map_err(GenesisError::from)?;
    let mut report = VerifyReport {
        chain_id: *chain.chain_id(),
        blocks: 0,
        entries: 0,
        entries_by_kind: BTreeMap::new(),
        head_hash: *chain.chain_id(),
        log_size: 0,
        log_root: Digest(crate::merkle::empty_root()),
        state_root: chain.state_head().root,
    };
    // Pipeline of three stages: a decoding thread decodes block h+2 (block, certificate, every
    // entry and its leaf hash), this thread executes block h+1 (rules, Merkle log, roots) and a
    // verifying thread batch-verifies block h's signatures (chunks spread over the cores).
    // The first failure in chain order is reported: a signature verdict of an earlier block
    // wins over anything found later, and `apply_block_deferred_decoded` verifies a block's own
    // signatures before reporting a later check of that block. Decoding results come back in
    // order, so a decoding error of block h+2 is reported only after blocks up to h+1 passed.
    let (to_verifier, jobs) = std::sync::mpsc::sync_channel::<PendingSignatures>(2);
    let (verdict_tx, verdicts) = std::sync::mpsc::channel::<Result<(), ChainError>>();
    let (to_decoder, raw) = std::sync::mpsc::sync_channel::<Result<RawBlock, VerifyError>>(1);
    let (decoded_tx, decoded) = std::sync::mpsc::sync_channel::<Result<Decoded, VerifyError>>(1);
    let first_height = chain.height() + 1;
    let executed: Result<(), VerifyError> = std::thread::scope(|s| {
        s.spawn(move || {
            for p in jobs {
                let r = p.verify();
                let bad = r.is_err();
                if verdict_tx.send(r).is_err() || bad {
                    break;
                }
            }
        });
        s.spawn(move || {
            for (height, item) in (first_height..).zip(raw) {
                let d = item.and_then(|(b, c)| decode_block(height, &b, &c));
                let bad = d.is_err();
                if decoded_tx.send(d).is_err() || bad {
                    break;
                }
            }
        });
        // Moved in so that they are dropped (ending the other loops, which may be blocked on a
        // full channel) before the scope joins.
        let (to_verifier, to_decoder, decoded) = (to_verifier, to_decoder, decoded);
        let first_bad = || verdicts.try_iter().find_map(Result::err);
        let mut blocks = blocks.into_iter();
        let mut in_flight = 0usize;
        let mut reading = true;
        loop {
            // Keep the decoder one block ahead of execution (two in flight).
            while reading && in_flight < 2 {
                match blocks.next() {
                    Some(item) => {
                        if to_decoder.send(item.map_err(Into::into)).is_err() {
                            reading = false;
                        } else {
                            in_flight += 1;
                        }
                    }
                    None => reading = false,
                }
            }
            if in_flight == 0 {
                break;
            }
            in_flight -= 1;
            let Ok(next) = decoded.recv() else { break };
            let (block, cert, entries) = next?;
            let height = block.header.height;
            let (committed, pending) = chain.apply_block_deferred_decoded(block, entries, cert)?;
            report.blocks += 1;
            report.entries += committed.entries.len() as u64;
            for e in &committed.entries {
                *report
                    .entries_by_kind
                    .entry(e.body.kind.name().to_string())
                    .or_insert(0) += 1;
            }
            if !pending.is_empty() && to_verifier.send(pending).is_err() {
                // The verifier stopped: it found a bad signature.
                break;
            }
            if let Some(e) = first_bad() {
                return Err(e.into());
            }
            progress(height, report.entries);
        }
        Ok(())
    });
    // Whatever this thread found, an earlier block's bad signature comes first. The scope has
    // joined the verifier, so every verdict is in.
    if let Some(e) = verdicts.try_iter().find_map(Result::err) {
        return Err(e.into());
    }
    executed?;
    report.head_hash = *chain.head_hash();
    report.log_size = chain.log().size();
    report.log_root = Digest(chain.log().root());
    report.state_root = chain.state_head().root;
    Ok(report)
}

/// Verifies a bundle against a trusted genesis (the bundle's own genesis must be identical).
pub fn verify_bundle<R: Read>(
    trusted: &Genesis,
    input: R,
    progress: impl FnMut(u64, u64),
) -> Result<VerifyReport, VerifyError> {
    let reader = BundleReader::new(input)?;
    let bundled = Genesis::from_json(reader.genesis())?;
    let (b, t) = (
        bundled.chain_id().map_err(GenesisError::from)?,
        trusted.chain_id().map_err(GenesisError::from)?,
    );
    if b != t {
        return Err(VerifyError::GenesisMismatch {
            bundle: b,
            trusted: t,
        });
    }
    verify_chain(trusted, reader, progress)
}

//! Messages of the ledger channel (the one the glue owns, next to the engine's three).
//!
//! Layout: one tag byte, then the fields below. Blocks and certificates travel as their
//! canonical ledger bytes (`specs/blocks.md`); nothing here is trusted: every block is
//! re-executed and every certificate re-verified by the ledger before use.
//!
//! | tag | message | fields |
//! |---|---|---|
//! | 0 | `Block` | CBOR(Block) — a proposal, relayed by its proposer |
//! | 1 | `Vote` | BE64 height ‖ header hash (32) ‖ CBOR(CommitVote) — app-level commit vote |
//! | 2 | `Certified` | BE32 len ‖ CBOR(Block) ‖ CBOR(CommitCertificate) — a committed block |
//! | 3 | `Want` | header hash (32) — ask for a block (and its certificate if committed) |
//! | 4 | `Sync` | BE64 height — ask for committed blocks from this height on |

use xinyi_ledger::block::{Block, CommitCertificate, CommitVote};
use xinyi_ledger::codec;
use xinyi_ledger::Digest;

/// Largest message accepted on the ledger channel.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
const MAX_VOTE_BYTES: usize = 1024;

/// A message on the ledger channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    /// A proposed block.
    Block(Block),
    /// A commit vote for a finalized block.
    Vote {
        /// Block height.
        height: u64,
        /// Header hash.
        header_hash: Digest,
        /// The vote.
        vote: CommitVote,
    },
    /// A committed block with its certificate.
    Certified(Block, CommitCertificate),
    /// Request for a block by header hash.
    Want(Digest),
    /// Request for committed blocks from a height on.
    Sync(u64),
    /// A validator's signed checkpoint note (C2SP) for its committed log.
    Checkpoint(String),
}

/// Largest checkpoint note accepted on the wire.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Empty, truncated, oversized or unknown tag.
    #[error("malformed ledger message: {0}")]
    Malformed(&'static str),
    /// Embedded ledger bytes invalid.
    #[error("ledger message: {0}")]
    Codec(#[from] codec::CodecError),
}

fn digest(b: &[u8]) -> Result<Digest, WireError> {
    let a: [u8; 32] = b.try_into().map_err(|_| WireError::Malformed("digest"))?;
    Ok(Digest(a))
}

impl Wire {
    /// Encodes the message.
    pub fn encode(&self) -> Result<Vec<u8>, codec::CodecError> {
        let mut out = Vec::new();
        match self {
            Wire::Block(b) => {
                out.push(0);
                out.extend(b.encode()?);
            }
            Wire::Vote {
                height,
                header_hash,
                vote,
            } => {
                out.push(1);
                out.extend(height.to_be_bytes());
                out.extend(header_hash.as_bytes());
                out.extend(codec::encode(vote)?);
            }
            Wire::Certified(b, c) => {
                out.push(2);
                let bb = b.encode()?;
                out.extend((bb.len() as u32).to_be_bytes());
                out.extend(bb);
                out.extend(c.encode()?);
            }
            Wire::Want(d) => {
                out.push(3);
                out.extend(d.as_bytes());
            }
            Wire::Sync(h) => {
                out.push(4);
                out.extend(h.to_be_bytes());
            }
            Wire::Checkpoint(n) => {
                out.push(5);
                out.extend(n.as_bytes());
            }
        }
        Ok(out)
    }

    /// Decodes a message (canonical bytes only, bounded sizes).
    pub fn decode(bytes: &[u8]) -> Result<Wire, WireError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(WireError::Malformed("oversized"));
        }
        let (&tag, rest) = bytes.split_first().ok_or(WireError::Malformed("empty"))?;
        match tag {
            0 => Ok(Wire::Block(Block::decode(rest)?)),
            1 => {
                if rest.len() < 40 || rest.len() > 40 + MAX_VOTE_BYTES {
                    return Err(WireError::Malformed("vote length"));
                }
                let mut h = [0u8; 8];
                h.copy_from_slice(&rest[..8]);
                Ok(Wire::Vote {
                    height: u64::from_be_bytes(h),
                    header_hash: digest(&rest[8..40])?,
                    vote: codec::decode("commit vote", &rest[40..], MAX_VOTE_BYTES)?,
                })
            }
            2 => {
                if rest.len() < 4 {
                    return Err(WireError::Malformed("certified length"));
                }
                let mut l = [0u8; 4];
                l.copy_from_slice(&rest[..4]);
                let len = u32::from_be_bytes(l) as usize;
                let body = &rest[4..];
                if len > body.len() {
                    return Err(WireError::Malformed("certified length"));
                }
                Ok(Wire::Certified(
                    Block::decode(&body[..len])?,
                    CommitCertificate::decode(&body[len..])?,
                ))
            }
            3 => Ok(Wire::Want(digest(rest)?)),
            4 => {
                let h: [u8; 8] = rest.try_into().map_err(|_| WireError::Malformed("sync"))?;
                Ok(Wire::Sync(u64::from_be_bytes(h)))
            }
            5 => {
                if rest.len() > MAX_NOTE_BYTES {
                    return Err(WireError::Malformed("checkpoint length"));
                }
                let n =
                    std::str::from_utf8(rest).map_err(|_| WireError::Malformed("checkpoint"))?;
                Ok(Wire::Checkpoint(n.to_string()))
            }
            _ => Err(WireError::Malformed("unknown tag")),
        }
    }
}

//! Audit bundles: a self-contained stream of the genesis document and every block with its
//! certificate, for offline verification.
//!
//! Format (`specs/bundle.md`): the 16-byte magic `xinyi-bundle/v1\n`, then frames of
//! `kind (1 byte) ‖ length (u32 BE) ‖ payload`: one `G` frame (genesis JSON), then `B` (block)
//! and `C` (certificate) frames in pairs by ascending height, then one `Z` frame whose payload
//! is the number of blocks (u64 BE), so a truncated bundle is detected. Reading is streaming
//! and bounded by the block size limit; verification is [`crate::verify`]'s job.

use crate::block::MAX_BLOCK_BYTES;
use std::io::{Read, Write};

/// Magic prefix.
pub const MAGIC: &[u8; 16] = b"xinyi-bundle/v1\n";

/// Bundle format errors.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// I/O failure.
    #[error("bundle I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Does not start with the magic.
    #[error("not a xinyi bundle (bad magic)")]
    BadMagic,
    /// Ends before its end frame.
    #[error("bundle is truncated after {blocks} blocks")]
    Truncated {
        /// Blocks read.
        blocks: u64,
    },
    /// A frame is not where the format puts it.
    #[error("unexpected frame {kind:?} at frame {index}")]
    UnexpectedFrame {
        /// Frame kind byte, as a char.
        kind: char,
        /// Frame index.
        index: u64,
    },
    /// Frame larger than allowed.
    #[error("frame {index} of {len} bytes exceeds the limit")]
    TooLarge {
        /// Frame index.
        index: u64,
        /// Claimed length.
        len: u64,
    },
    /// End frame count differs from blocks read.
    #[error("end frame says {claimed} blocks, bundle holds {actual}")]
    CountMismatch {
        /// Count in the end frame.
        claimed: u64,
        /// Blocks read.
        actual: u64,
    },
    /// Data after the end frame.
    #[error("data after the end of the bundle")]
    TrailingData,
    /// A block or certificate to write could not be encoded.
    #[error("encoding a block for the bundle: {0}")]
    Encode(#[from] crate::codec::CodecError),
}

impl BundleError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            BundleError::Io(_) => "bundle.io",
            BundleError::BadMagic => "bundle.bad_magic",
            BundleError::Truncated { .. } => "bundle.truncated",
            BundleError::UnexpectedFrame { .. } => "bundle.unexpected_frame",
            BundleError::TooLarge { .. } => "bundle.too_large",
            BundleError::CountMismatch { .. } => "bundle.count_mismatch",
            BundleError::TrailingData => "bundle.trailing_data",
            BundleError::Encode(_) => "bundle.encode",
        }
    }
}

/// One block's stored bytes and its certificate's stored bytes.
pub type BlockFrames = (Vec<u8>, Vec<u8>);

/// Writes a bundle.
pub struct BundleWriter<W: Write> {
    out: W,
    blocks: u64,
}

fn frame<W: Write>(out: &mut W, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    out.write_all(&[kind])?;
    out.write_all(&(payload.len() as u32).to_be_bytes())?;
    out.write_all(payload)
}

impl<W: Write> BundleWriter<W> {
    /// Starts a bundle with the genesis document's JSON.
    pub fn new(mut out: W, genesis_json: &[u8]) -> Result<Self, BundleError> {
        out.write_all(MAGIC)?;
        frame(&mut out, b'G', genesis_json)?;
        Ok(BundleWriter { out, blocks: 0 })
    }

    /// Adds the next block and its certificate (stored bytes).
    pub fn block(&mut self, block: &[u8], cert: &[u8]) -> Result<(), BundleError> {
        frame(&mut self.out, b'B', block)?;
        frame(&mut self.out, b'C', cert)?;
        self.blocks += 1;
        Ok(())
    }

    /// Adds the next committed block with its certificate (encoded here).
    pub fn committed(&mut self, b: &crate::CommittedBlock) -> Result<(), BundleError> {
        self.block(&b.block.encode()?, &b.certificate.encode()?)
    }

    /// Writes the end frame and returns the writer.
    pub fn finish(mut self) -> Result<W, BundleError> {
        frame(&mut self.out, b'Z', &self.blocks.to_be_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The whole bundle of a chain in memory: `genesis`, then `blocks` (the committed chain from
/// height 1, in order).
pub fn bundle_of(
    genesis: &crate::Genesis,
    blocks: &[crate::CommittedBlock],
) -> Result<Vec<u8>, BundleError> {
    let mut w = BundleWriter::new(Vec::new(), genesis.to_json().as_bytes())?;
    for b in blocks {
        w.committed(b)?;
    }
    w.finish()
}

/// Reads a bundle: first [`BundleReader::genesis`], then [`Iterator`] over (block, cert) bytes.
pub struct BundleReader<R: Read> {
    input: R,
    genesis: Vec<u8>,
    frames: u64,
    blocks: u64,
    done: bool,
}

impl<R: Read> BundleReader<R> {
    /// Reads the magic and the genesis frame.
    pub fn new(mut input: R) -> Result<Self, BundleError> {
        let mut magic = [0u8; 16];
        input
            .read_exact(&mut magic)
            .map_err(|_| BundleError::BadMagic)?;
        if &magic != MAGIC {
            return Err(BundleError::BadMagic);
        }
        let mut r = BundleReader {
            input,
            genesis: Vec::new(),
            frames: 0,
            blocks: 0,
            done: false,
        };
        match r.frame(crate::genesis::MAX_GENESIS_BYTES)? {
            Some((b'G', g)) => r.genesis = g,
            Some((k, _)) => {
                return Err(BundleError::UnexpectedFrame {
                    kind: k as char,
                    index: 0,
                })
            }
            None => return Err(BundleError::Truncated { blocks: 0 }),
        }
        Ok(r)
    }

    /// The genesis JSON carried in the bundle.
    pub fn genesis(&self) -> &[u8] {
        &self.genesis
    }

    fn frame(&mut self, limit: usize) -> Result<Option<(u8, Vec<u8>)>, BundleError> {
        let mut head = [0u8; 5];
        let mut got = 0;
        while got < 5 {
            let n = self.input.read(&mut head[got..])?;
            if n == 0 {
                return if got == 0 {
                    Ok(None)
                } else {
                    Err(BundleError::Truncated {
                        blocks: self.blocks,
                    })
                };
            }
            got += n;
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let index = self.frames;
        self.frames += 1;
        if len > limit {
            return Err(BundleError::TooLarge {
                index,
                len: len as u64,
            });
        }
        let mut payload = vec![0u8; len];
        self.input
            .read_exact(&mut payload)
            .map_err(|_| BundleError::Truncated {
                blocks: self.blocks,
            })?;
        Ok(Some((head[0], payload)))
    }

    fn next_pair(&mut self) -> Result<Option<BlockFrames>, BundleError> {
        let index = self.frames;
        match self.frame(MAX_BLOCK_BYTES)? {
            None => Err(BundleError::Truncated {
                blocks: self.blocks,
            }),
            Some((b'Z', p)) => {
                let claimed = u64::from_be_bytes(
                    p.as_slice()
                        .try_into()
                        .map_err(|_| BundleError::UnexpectedFrame { kind: 'Z', index })?,
                );
                if claimed != self.blocks {
                    return Err(BundleError::CountMismatch {
                        claimed,
                        actual: self.blocks,
                    });
                }
                let mut extra = [0u8; 1];
                if self.input.read(&mut extra)? != 0 {
                    return Err(BundleError::TrailingData);
                }
                Ok(None)
            }
            Some((b'B', block)) => {
                let ci = self.frames;
                match self.frame(crate::block::MAX_CERT_BYTES)? {
                    Some((b'C', cert)) => {
                        self.blocks += 1;
                        Ok(Some((block, cert)))
                    }
                    Some((k, _)) => Err(BundleError::UnexpectedFrame {
                        kind: k as char,
                        index: ci,
                    }),
                    None => Err(BundleError::Truncated {
                        blocks: self.blocks,
                    }),
                }
            }
            Some((k, _)) => Err(BundleError::UnexpectedFrame {
                kind: k as char,
                index,
            }),
        }
    }
}

impl<R: Read> Iterator for BundleReader<R> {
    type Item = Result<BlockFrames, BundleError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_pair() {
            Ok(Some(p)) => Some(Ok(p)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

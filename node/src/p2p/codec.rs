//! Frame codec of the `/xinyi/p2p/1` stream protocol (specs/p2p.md §3).
//!
//! What it is: the byte layout of one frame (`tag u8 = 0x01 | channel u64 BE | length u32 BE |
//! payload`), an encoder for the 13-byte header and an async reader that checks the tag and the
//! length limit *before* allocating the payload. What it is not: a message format — the payload
//! is opaque bytes owned by whoever registered the channel; nor a policy — the caller decides
//! what to do with a [`FrameError`] (the network disconnects and blocks the peer).

use commonware_runtime::IoBuf;
use futures::{AsyncRead, AsyncReadExt as _};
use std::io;

/// The only valid first byte of a frame (version 1 data frame).
pub const TAG_DATA: u8 = 0x01;
/// The single byte the accepting side writes on a new stream before reading frames; the opening
/// side writes no frame before it has read it.
pub const ACK_ACCEPTED: u8 = 0x01;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 1 + 8 + 4;

/// One decoded frame.
#[derive(Debug)]
pub struct Frame {
    /// Channel the payload belongs to.
    pub channel: u64,
    /// The payload (owned, no further copies on the way to the receiver).
    pub payload: IoBuf,
}

/// Why reading a frame stopped.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended cleanly at a frame boundary.
    #[error("stream closed")]
    Eof,
    /// The stream failed or ended inside a frame (not the peer's fault necessarily: a crash or
    /// a reset connection looks the same).
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The header announced more than the receiver's limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// Announced payload length.
        len: u64,
        /// The receiver's limit.
        max: usize,
    },
    /// The header is not a valid frame header.
    #[error("malformed frame: unknown tag {0:#04x}")]
    BadTag(u8),
}

/// The 13-byte header of a frame carrying `len` payload bytes on `channel`.
pub fn encode_header(channel: u64, len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = TAG_DATA;
    h[1..9].copy_from_slice(&channel.to_be_bytes());
    h[9..13].copy_from_slice(&len.to_be_bytes());
    h
}

/// Parses a header; `Err` if the tag is wrong or the length exceeds `max`.
pub fn decode_header(h: &[u8; HEADER_LEN], max: usize) -> Result<(u64, usize), FrameError> {
    if h[0] != TAG_DATA {
        return Err(FrameError::BadTag(h[0]));
    }
    let mut c = [0u8; 8];
    c.copy_from_slice(&h[1..9]);
    let mut l = [0u8; 4];
    l.copy_from_slice(&h[9..13]);
    let len = u32::from_be_bytes(l);
    match usize::try_from(len) {
        Ok(n) if n <= max => Ok((u64::from_be_bytes(c), n)),
        _ => Err(FrameError::Oversized {
            len: u64::from(len),
            max,
        }),
    }
}

/// Reads one frame. A clean end of stream before the first header byte is [`FrameError::Eof`].
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Frame, FrameError> {
    let mut h = [0u8; HEADER_LEN];
    // First byte separately, so that a clean close is told apart from a truncated header.
    let n = r.read(&mut h[..1]).await?;
    if n == 0 {
        return Err(FrameError::Eof);
    }
    r.read_exact(&mut h[1..]).await?;
    let (channel, len) = decode_header(&h, max)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Frame {
        channel,
        payload: IoBuf::from(payload),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_limits() {
        let h = encode_header(7, 100);
        assert_eq!(decode_header(&h, 100).unwrap(), (7, 100));
        assert!(matches!(
            decode_header(&h, 99),
            Err(FrameError::Oversized { len: 100, max: 99 })
        ));
        let mut bad = h;
        bad[0] = 0xff;
        assert!(matches!(
            decode_header(&bad, 100),
            Err(FrameError::BadTag(0xff))
        ));
    }

    #[test]
    fn read_frames_eof_and_truncation() {
        let mut bytes = encode_header(3, 2).to_vec();
        bytes.extend_from_slice(b"hi");
        bytes.extend_from_slice(&encode_header(4, 5));
        bytes.extend_from_slice(b"ab"); // truncated
        let mut r = futures::io::Cursor::new(bytes);
        futures::executor::block_on(async {
            let f = read_frame(&mut r, 10).await.unwrap();
            assert_eq!((f.channel, f.payload.as_ref()), (3, &b"hi"[..]));
            assert!(matches!(
                read_frame(&mut r, 10).await,
                Err(FrameError::Io(_))
            ));
        });
        let mut empty = futures::io::Cursor::new(Vec::<u8>::new());
        futures::executor::block_on(async {
            assert!(matches!(
                read_frame(&mut empty, 10).await,
                Err(FrameError::Eof)
            ));
        });
    }
}

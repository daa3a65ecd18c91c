//! The incremental decoder: bytes in any splits to frames (`docs/hpks.md` §2, §9).

use bytes::{Bytes, BytesMut};

use crate::error::DecodeError;
use crate::frame::{FORMAT_VERSION, Frame, MAGIC};
use crate::limits::Limits;
use crate::parse;
use crate::varint::{self, VarintError};

/// Turns bytes, fed in any splits, into frames.
///
/// It holds at most the unfinished frame plus what was fed since the last
/// [`decode`](Decoder::decode): call `decode` until it returns `Ok(None)`
/// after each [`feed`](Decoder::feed), and memory stays bounded by
/// [`Limits::max_frame_len`]. Decoded fields share the decoder's buffer
/// instead of copying it.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    limits: Limits,
    failed: Option<DecodeError>,
}

impl Decoder {
    /// A decoder with the default [`Limits`].
    pub fn new() -> Decoder {
        Decoder::with_limits(Limits::default())
    }

    /// A decoder with the given limits.
    pub fn with_limits(limits: Limits) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            limits,
            failed: None,
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Appends received bytes; ignored once the decoder has failed.
    pub fn feed(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next complete frame, or `Ok(None)` if more bytes are needed.
    ///
    /// An error in a frame header (bad magic, version or frame length) is
    /// final: this and every later call return it. Any other error consumes
    /// the offending frame, and the next call goes on after it (§9).
    pub fn decode(&mut self) -> Result<Option<Frame>, DecodeError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let header = match frame_header(&self.buf, &self.limits) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(None),
            Err(error) => {
                self.failed = Some(error.clone());
                self.buf = BytesMut::new();
                return Err(error);
            }
        };
        if self.buf.len() < header.frame_len() {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(header.frame_len());
        let rest = frame.split_off(header.len).freeze();
        parse::frame(header.frame_type, rest, &self.limits).map(Some)
    }

    /// Whether a frame header error has stopped this decoder for good.
    pub fn has_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Checks that the input ended on a frame boundary: call it at end of input.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match &self.failed {
            Some(error) => Err(error.clone()),
            None if self.buf.is_empty() => Ok(()),
            None => Err(DecodeError::UnexpectedEof {
                buffered: self.buf.len(),
            }),
        }
    }
}

/// Decodes the one frame at the start of `src`, without copying, and returns
/// it with the number of bytes it took. An unfinished frame is
/// [`DecodeError::UnexpectedEof`].
pub fn decode_frame(src: &Bytes, limits: &Limits) -> Result<(Frame, usize), DecodeError> {
    let eof = || DecodeError::UnexpectedEof {
        buffered: src.len(),
    };
    let header = frame_header(src, limits)?.ok_or_else(eof)?;
    let end = header.frame_len();
    if src.len() < end {
        return Err(eof());
    }
    let frame = parse::frame(header.frame_type, src.slice(header.len..end), limits)?;
    Ok((frame, end))
}

/// The fixed part of a frame, up to and including its length field (§2).
struct FrameHeader {
    /// Bytes from the magic through the length field.
    len: usize,
    frame_type: u8,
    /// The length field: the bytes after it.
    rest_len: usize,
}

impl FrameHeader {
    fn frame_len(&self) -> usize {
        // Saturating: `Limits::max_frame_len` may be `usize::MAX`, and a
        // frame that long can never be buffered anyway.
        self.len.saturating_add(self.rest_len)
    }
}

/// Offset of the frame length field: magic, version, type (§2).
const LENGTH_OFFSET: usize = MAGIC.len() + 2;

/// Reads the frame header at the start of `buf`; `Ok(None)` if it is not all
/// there yet. Fails as soon as the bytes seen so far cannot start a frame, so
/// garbage is rejected without waiting for more of it.
fn frame_header(buf: &[u8], limits: &Limits) -> Result<Option<FrameHeader>, DecodeError> {
    let seen = buf.len().min(MAGIC.len());
    if buf[..seen] != MAGIC[..seen] {
        return Err(DecodeError::BadMagic);
    }
    match buf.get(MAGIC.len()) {
        None => return Ok(None),
        Some(&FORMAT_VERSION) => {}
        Some(&other) => return Err(DecodeError::UnsupportedVersion(other)),
    }
    let Some(&frame_type) = buf.get(MAGIC.len() + 1) else {
        return Ok(None);
    };
    let field = "frame length";
    let (rest_len, varint_len) = match varint::get(&buf[LENGTH_OFFSET..]) {
        Ok(decoded) => decoded,
        Err(VarintError::Incomplete) => return Ok(None),
        Err(VarintError::Overflow) => return Err(DecodeError::VarintOverflow { field }),
        Err(VarintError::NonCanonical) => return Err(DecodeError::NonCanonicalVarint { field }),
    };
    // §9: checked before a single byte of the frame is buffered for it.
    let too_large = DecodeError::FrameTooLarge {
        len: rest_len,
        limit: limits.max_frame_len,
    };
    let rest_len = usize::try_from(rest_len).map_err(|_| too_large.clone())?;
    if rest_len > limits.max_frame_len {
        return Err(too_large);
    }
    Ok(Some(FrameHeader {
        len: LENGTH_OFFSET + varint_len,
        frame_type,
        rest_len,
    }))
}

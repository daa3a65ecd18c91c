//! What can go wrong while decoding (`docs/hpks.md` §9).

/// Why bytes are not a valid HPKS frame (§9).
///
/// Errors in a frame header (magic, version, frame length) leave a
/// [`Decoder`](crate::Decoder) failed for good; every other error consumes
/// exactly the offending frame, and decoding can go on with the next one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame does not start with `HPKS` (§2).
    #[error("not an HPKS frame: bad magic")]
    BadMagic,
    /// The format version is not one this decoder reads (§10).
    #[error("unsupported HPKS format version {0}")]
    UnsupportedVersion(u8),
    /// The frame type code is not one of §3–§8; the frame was skipped.
    #[error("unknown HPKS frame type 0x{0:02x}")]
    UnknownFrameType(u8),
    /// A varint does not fit in 64 bits (§1.2).
    #[error("varint overflow in {field}")]
    VarintOverflow {
        /// The field being read.
        field: &'static str,
    },
    /// A varint used more bytes than its value needs (§1.2).
    #[error("non-canonical varint in {field}")]
    NonCanonicalVarint {
        /// The field being read.
        field: &'static str,
    },
    /// The frame length exceeds [`Limits::max_frame_len`](crate::Limits::max_frame_len).
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    FrameTooLarge {
        /// The declared frame length.
        len: u64,
        /// The limit.
        limit: usize,
    },
    /// The frame ended inside a field (§2).
    #[error("frame truncated inside {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// The frame has bytes after its last field (§2).
    #[error("{extra} unexpected bytes after the last field")]
    TrailingBytes {
        /// How many bytes were left over.
        extra: usize,
    },
    /// The head has more header fields than [`Limits::max_headers`](crate::Limits::max_headers).
    #[error("{count} header fields exceed the limit of {limit}")]
    TooManyHeaders {
        /// The declared count.
        count: u64,
        /// The limit.
        limit: usize,
    },
    /// A header name or value is longer than its limit.
    #[error("header {part} of {len} bytes exceeds the limit of {limit}")]
    HeaderTooLarge {
        /// `"name"` or `"value"`.
        part: &'static str,
        /// The declared length.
        len: u64,
        /// The limit.
        limit: usize,
    },
    /// The head's strings add up to more than [`Limits::max_header_bytes`](crate::Limits::max_header_bytes).
    #[error("head exceeds the limit of {limit} bytes")]
    HeadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The method is not an HTTP token (§3).
    #[error("invalid method")]
    InvalidMethod,
    /// The scheme is not a valid URI scheme (§3).
    #[error("invalid scheme")]
    InvalidScheme,
    /// The authority is not a valid URI authority (§3).
    #[error("invalid authority")]
    InvalidAuthority,
    /// The path is not a valid path-and-query (§3).
    #[error("invalid path")]
    InvalidPath,
    /// The HTTP version code is not one of §1.4.
    #[error("unknown HTTP version code 0x{0:02x}")]
    UnknownHttpVersion(u8),
    /// The status is outside 100..=999 (§4).
    #[error("invalid status {0}")]
    InvalidStatus(u16),
    /// A header name is not a lowercase token (§5).
    #[error("invalid header name")]
    InvalidHeaderName,
    /// A header value holds a control byte (§5).
    #[error("invalid header value")]
    InvalidHeaderValue,
    /// The abort message is too long or not UTF-8 (§8).
    #[error("invalid abort message")]
    InvalidAbortMessage,
    /// The input ended inside a frame.
    #[error("input ended inside a frame ({buffered} bytes buffered)")]
    UnexpectedEof {
        /// How many bytes of the unfinished frame were received.
        buffered: usize,
    },
}

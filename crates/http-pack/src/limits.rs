//! Decoder limits (`docs/hpks.md` §9).

/// Bounds on what a [`Decoder`](crate::Decoder) accepts, so that hostile
/// input costs at most one frame of `max_frame_len` bytes of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most header fields in one head.
    pub max_headers: usize,
    /// Longest header name, in bytes.
    pub max_name_len: usize,
    /// Longest header value, in bytes.
    pub max_value_len: usize,
    /// Most bytes of strings in one head: method, scheme, authority, path,
    /// and every header name and value.
    pub max_header_bytes: usize,
    /// Largest frame length field (§2): the bytes after it, stream id included.
    pub max_frame_len: usize,
}

impl Limits {
    /// The defaults: generous for real clients, small enough to bound memory.
    pub const DEFAULT: Limits = Limits {
        max_headers: 256,
        max_name_len: 1024,
        max_value_len: 16 * 1024,
        max_header_bytes: 64 * 1024,
        max_frame_len: 4 * 1024 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

//! Stream handles that cannot alias a later stream reusing the same ring.

use std::fmt;

/// Names one stream for its whole life: the ring index plus the generation
/// that ring had when the stream was opened.
///
/// A ring is reused once its stream is released; the generation then moves
/// on, so an old id gets [`StreamError::Stale`](crate::StreamError::Stale)
/// instead of another stream's bytes. The `u64` form (see [`StreamId::as_u64`])
/// is what travels over the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(u64);

impl StreamId {
    pub(crate) fn new(index: u32, generation: u32) -> Self {
        Self((u64::from(generation) << 32) | u64::from(index))
    }

    /// The id as one integer (generation in the high 32 bits, ring index in the low).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Rebuilds an id from [`StreamId::as_u64`]; a forged or old value is
    /// caught by the cache as unknown or stale, never misread.
    pub fn from_u64(raw: u64) -> Self {
        Self(raw)
    }

    /// Ring index inside the cache.
    pub fn index(self) -> u32 {
        self.0 as u32
    }

    /// Generation of the ring when the stream was opened.
    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({}:{})", self.index(), self.generation())
    }
}

//! Cache dimensions and their validation.

use crate::error::ConfigError;

/// The numbers that bound a [`ChunkCache`](crate::ChunkCache)'s memory.
///
/// The cache never holds more than `num_streams * slots_per_stream * slot_size`
/// bytes of slot data, however much is written through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Streams that can be open at once.
    pub num_streams: usize,
    /// Largest slot, in bytes.
    pub slot_size: usize,
    /// Slots a stream retains at once: slot 1 (headers) plus a ring of
    /// `slots_per_stream - 1` body/end slots.
    pub slots_per_stream: usize,
}

/// Streams are indexed by 32 bits inside a [`StreamId`](crate::StreamId).
pub(crate) const MAX_STREAMS: usize = 1 << 24;
/// Slot numbers share a 64-bit atomic with the generation and the state.
pub(crate) const MAX_SLOT: u64 = (1 << 30) - 1;

impl CacheConfig {
    /// The seed's defaults: 100 streams, 64 KiB slots, 16384 slots per stream.
    pub const fn new(num_streams: usize, slot_size: usize, slots_per_stream: usize) -> Self {
        Self {
            num_streams,
            slot_size,
            slots_per_stream,
        }
    }

    /// Checks the numbers; [`ChunkCache::new`](crate::ChunkCache::new) calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.num_streams == 0 || self.num_streams > MAX_STREAMS {
            return Err(ConfigError::NumStreams(self.num_streams));
        }
        if self.slot_size == 0 {
            return Err(ConfigError::SlotSize(self.slot_size));
        }
        if self.slots_per_stream < 2 || self.slots_per_stream as u64 > MAX_SLOT {
            return Err(ConfigError::SlotsPerStream(self.slots_per_stream));
        }
        Ok(())
    }

    /// Upper bound of the slot bytes the cache can hold at once.
    pub fn max_bytes(&self) -> u64 {
        self.num_streams as u64 * self.slots_per_stream as u64 * self.slot_size as u64
    }

    /// Number of ring positions for body and end slots (slot 1 lives outside).
    pub(crate) fn ring_len(&self) -> usize {
        self.slots_per_stream - 1
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self::new(100, 64 * 1024, 16384)
    }
}

//! One small error enum per operation, each message saying what to do.

use crate::{AbortReason, StreamId};

/// A [`CacheConfig`](crate::CacheConfig) that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Stream count out of range.
    #[error("num_streams must be between 1 and 16777216, got {0}")]
    NumStreams(usize),
    /// Slot size out of range.
    #[error("slot_size must be at least 1 byte, got {0}")]
    SlotSize(usize),
    /// Ring length out of range.
    #[error(
        "slots_per_stream must be between 2 and 1073741823 (slot 1 plus at least one body slot), got {0}"
    )]
    SlotsPerStream(usize),
}

/// Why a stream could not be opened at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Every stream is in use; wait with [`ChunkCache::open`](crate::ChunkCache::open) or retry later.
    #[error("all {0} streams are in use; retry when one is released or raise num_streams")]
    Full(usize),
}

/// Why a stream handle could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The id names a stream that was released; its ring may now hold another stream.
    #[error("stream {0} is gone: it was released and its ring may hold a newer stream")]
    Stale(StreamId),
    /// The id's index is outside this cache.
    #[error("stream {0} does not belong to this cache")]
    Unknown(StreamId),
}

/// Why a write was refused. The stream is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Slot larger than the configured slot size.
    #[error("slot of {len} bytes exceeds slot_size {max}; split it first")]
    TooLarge {
        /// Bytes offered.
        len: usize,
        /// The configured slot size.
        max: usize,
    },
    /// An empty body slot would read as the end marker.
    #[error("empty body slot refused: an empty slot is the end marker, call end()")]
    Empty,
    /// Slots are written in order, starting at 1.
    #[error("slot {got} written out of order: the next slot is {expected}")]
    OutOfOrder {
        /// The slot number the stream expects next.
        expected: u64,
        /// The slot number offered.
        got: u64,
    },
    /// The end marker cannot be slot 1: the headers come first.
    #[error("end marker before the headers slot: write slot 1 (headers) first")]
    MissingHeaders,
    /// The stream already ended or was aborted.
    #[error("stream already finished; no more slots can be written")]
    Finished,
    /// Slot numbers are 30-bit.
    #[error("stream exceeded 1073741823 slots; use larger slots")]
    TooManySlots,
    /// [`StreamWriter::try_append`](crate::StreamWriter::try_append) only: the ring is
    /// full and a registered reader has not consumed the slot that would be overwritten.
    #[error("ring full: a registered reader has not consumed slot {0} yet")]
    WouldBlock(u64),
    /// [`StreamWriter::try_append`](crate::StreamWriter::try_append) only: the
    /// memory budget (or this cache's share of it) cannot take the slot now.
    #[error("memory budget spent; retry when other streams release slots")]
    BudgetSpent,
}

/// Why a slot could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The writer gave up; the stream will never complete. Never a clean end.
    #[error("stream aborted: {0}")]
    Aborted(AbortReason),
    /// The slot was recycled by the ring; its bytes are gone.
    #[error("slot {slot} was recycled; the oldest retained body slot is {oldest}")]
    Evicted {
        /// The slot asked for.
        slot: u64,
        /// The oldest body slot still retained.
        oldest: u64,
    },
    /// Asked for a slot after the end marker.
    #[error("slot {slot} is past the end marker at slot {end}")]
    PastEnd {
        /// The slot asked for.
        slot: u64,
        /// The end marker's slot number.
        end: u64,
    },
    /// The handle no longer names a live stream.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

//! Errors of the coordination API, each mapped to what a worker can do about it.

use chunk_cache::{AbortReason, ConfigError, ReadError, StreamError, WriteError};

/// The service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The stream dimensions are unusable.
    #[error("invalid stream configuration: {0}")]
    Config(#[from] ConfigError),
    /// Slots must hold an encoded request head.
    #[error("slot_size_kb must be at least 4 (a slot must hold the encoded request head)")]
    SlotTooSmall,
    /// The budget must fit a few slots or nothing could ever be written.
    #[error("memory_budget must be at least 4 slots (4 x slot_size_kb KiB)")]
    BudgetTooSmall,
}

/// A coordination call on a stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordError {
    /// No request in flight has this id (finished, or never existed).
    #[error("no stream {0} in flight")]
    UnknownStream(u64),
    /// Another worker owns the response, or nobody does.
    #[error("worker {worker} does not own the response of stream {stream}")]
    NotOwner {
        /// The stream.
        stream: u64,
        /// The worker that asked.
        worker: String,
    },
    /// The response was already claimed by another worker.
    #[error("the response of stream {0} is already claimed")]
    AlreadyClaimed(u64),
    /// The worker already registered as a reader of the stream.
    #[error("worker {worker} already reads stream {stream}")]
    AlreadyReading {
        /// The stream.
        stream: u64,
        /// The worker.
        worker: String,
    },
    /// Response headers were already written.
    #[error("response headers of stream {0} were already written")]
    HeadersSent(u64),
    /// Response body or end before the headers.
    #[error("response headers of stream {0} must be written first")]
    HeadersMissing(u64),
    /// The response stream refused the write (ended, aborted by a timeout or
    /// by the client going away).
    #[error("response write failed: {0}")]
    Write(#[from] WriteError),
    /// Another call of the same worker is writing this response right now.
    #[error("another call is writing the response of stream {0}; calls must not overlap")]
    Busy(u64),
    /// The response head is not valid HTTP.
    #[error("invalid response head: {0}")]
    InvalidHead(String),
}

impl From<StreamError> for CoordError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Stale(id) | StreamError::Unknown(id) => Self::UnknownStream(id.as_u64()),
        }
    }
}

/// A request slot could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TailError {
    /// The client went away or the request was abandoned: never a clean end.
    #[error("request aborted: {0}")]
    Aborted(AbortReason),
    /// The slot was recycled before it was read (read faster, or register as a reader).
    #[error("slot {slot} was recycled; oldest retained body slot is {oldest}")]
    Evicted {
        /// Slot asked for.
        slot: u64,
        /// Oldest slot still retained.
        oldest: u64,
    },
    /// Past the end marker.
    #[error("slot {slot} is past the end of the request (end marker at {end})")]
    PastEnd {
        /// Slot asked for.
        slot: u64,
        /// End marker slot.
        end: u64,
    },
    /// The stream is no longer in flight.
    #[error("no stream {0} in flight")]
    UnknownStream(u64),
    /// Slot 1 did not hold a request head (a bug, or memory corruption: the hash is checked).
    #[error("corrupt request head: {0}")]
    CorruptHead(String),
}

impl From<ReadError> for TailError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Aborted(r) => Self::Aborted(r),
            ReadError::Evicted { slot, oldest } => Self::Evicted { slot, oldest },
            ReadError::PastEnd { slot, end } => Self::PastEnd { slot, end },
            ReadError::Stream(StreamError::Stale(id) | StreamError::Unknown(id)) => {
                Self::UnknownStream(id.as_u64())
            }
        }
    }
}

//! What a slot holds and how a reader tells it from a recycled one.

use bytes::Bytes;
use std::fmt;

use crate::sync::RwLock;

/// What a slot is, by its position in the stream format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// Slot 1: the encoded headers.
    Headers,
    /// Slots 2..N-1: raw body bytes.
    Body,
    /// Slot N: the empty end marker.
    End,
}

/// One slot as read: zero-copy bytes plus the xxhash the writer stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Slot {
    /// Slot number, from 1.
    pub number: u64,
    /// Headers, body or end marker.
    pub kind: SlotKind,
    /// The bytes (a `Bytes` clone: no copy).
    pub bytes: Bytes,
    /// xxh3-64 of `bytes`, computed by the writer.
    pub hash: u64,
}

impl Slot {
    /// Recomputes the hash and compares it with the stored one.
    pub fn verify(&self) -> bool {
        hash(&self.bytes) == self.hash
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("number", &self.number)
            .field("kind", &self.kind)
            .field("len", &self.bytes.len())
            .field("hash", &format_args!("{:016x}", self.hash))
            .finish()
    }
}

/// Why a stream ended without its end marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbortReason {
    /// The client went away mid-request or mid-response.
    ClientGone,
    /// The worker went away or gave up.
    WorkerGone,
    /// The writer handle was dropped without `end()` or `abort()`.
    WriterDropped,
    /// A deadline passed.
    Timeout,
    /// The body exceeded a configured limit.
    TooLarge,
    /// The process is shutting down.
    Shutdown,
    /// An internal failure.
    Internal,
    /// Any other code, kept as is.
    Other(u16),
}

impl AbortReason {
    /// The reason as a stable number. Codes 1-5 are HPKS's abort reasons
    /// (`docs/hpks.md`), so a reason crosses the wire unchanged.
    pub fn code(self) -> u16 {
        match self {
            Self::ClientGone => 1,
            Self::WorkerGone => 2,
            Self::Timeout => 3,
            Self::TooLarge => 4,
            Self::Internal => 5,
            Self::WriterDropped => 6,
            Self::Shutdown => 7,
            Self::Other(code) => code,
        }
    }

    /// The reason for a number from [`AbortReason::code`].
    pub fn from_code(code: u16) -> Self {
        match code {
            1 => Self::ClientGone,
            2 => Self::WorkerGone,
            3 => Self::Timeout,
            4 => Self::TooLarge,
            5 => Self::Internal,
            6 => Self::WriterDropped,
            7 => Self::Shutdown,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientGone => f.write_str("client went away"),
            Self::WorkerGone => f.write_str("worker went away"),
            Self::WriterDropped => f.write_str("writer dropped without ending the stream"),
            Self::Timeout => f.write_str("timed out"),
            Self::TooLarge => f.write_str("body too large"),
            Self::Shutdown => f.write_str("shutting down"),
            Self::Internal => f.write_str("internal error"),
            Self::Other(code) => write!(f, "reason code {code}"),
        }
    }
}

/// The xxhash every slot carries.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// A slot's identity: generation in the high half, slot number in the low.
/// Compared under the slot's lock, it is what makes a recycled or reused slot
/// an error instead of wrong bytes.
pub(crate) fn stamp(generation: u32, number: u64) -> u64 {
    (u64::from(generation) << 32) | number
}

/// Stored contents of one ring position.
pub(crate) struct SlotData {
    pub(crate) stamp: u64,
    pub(crate) bytes: Bytes,
    pub(crate) hash: u64,
    /// Bytes charged to the budget for this slot (its real allocation).
    pub(crate) charge: u64,
}

/// Set in a stamp whose slot was freed before the ring reached it: readers
/// get `Evicted`, never the (gone) bytes.
pub(crate) const FREED: u64 = 1 << 31;

/// One ring position. A per-slot lock keeps readers of different slots from
/// contending, and makes stamp + bytes one atomic unit without `unsafe`.
pub(crate) struct RingSlot(pub(crate) RwLock<SlotData>);

impl RingSlot {
    pub(crate) fn empty() -> Self {
        Self(RwLock::new(SlotData {
            stamp: 0,
            bytes: Bytes::new(),
            hash: 0,
            charge: 0,
        }))
    }
}

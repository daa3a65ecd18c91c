//! The chunk signatures of a signed S3 streaming upload
//! (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`), kept for workers.
//!
//! The ingress decodes `aws-chunked` bodies, so workers read plain bytes and
//! never see the chunk lines. A worker that verifies SigV4 needs what those
//! lines carried: where each chunk starts and ends in the decoded bytes and
//! the signature the client gave it, then the trailer's signature. The
//! ingress holds no credentials and verifies none of them; it records them
//! here as they are decoded (`s3_body.rs`) and workers read them through
//! [`ChunkSignatures`] (in process: `Job::chunk_signatures`; remote: `GET
//! /v1/streams/{id}/signatures`).
//!
//! The record is a ring of at most
//! `(slots_per_stream + 1) * slot_size / 8192 + 8` entries ([`capacity`]):
//! every signed chunk but the last is at least 8192 bytes (S3's rule,
//! enforced by the ingress), and the decoder never runs more than the
//! stream's slot window ahead of its slowest reader, so a worker that reads
//! the signatures of the bytes it has received (or reads them concurrently
//! with the body) never loses one. A reader that falls
//! further behind gets [`SignatureError::Evicted`], never a silent gap. Only
//! signed bodies get a record, and its ring grows as chunks arrive.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::entry::lock;

/// The smallest size of a signed chunk other than the last (S3's rule).
pub const MIN_SIGNED_CHUNK: u64 = 8192;

/// The most records a signed stream of `slots_per_stream` slots of
/// `slot_size` bytes keeps. The decoder runs at most `slots_per_stream *
/// slot_size` decoded bytes ahead of what the slowest body reader has
/// received (the ring holds `slots_per_stream - 1` body slots, the pump one
/// more in hand while it waits to publish), and a reader that reads the
/// records of the bytes it received lags them by up to one more slot. At
/// most one chunk starts per 8192 of those bytes; 8 covers the chunk being
/// decoded, the one the reader is inside and the empty final chunk.
pub(crate) fn capacity(slots_per_stream: usize, slot_size: usize) -> usize {
    slots_per_stream.saturating_add(1).saturating_mul(slot_size) / MIN_SIGNED_CHUNK as usize + 8
}

/// One signed chunk as the client framed it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChunkSignature {
    /// The chunk's position among the body's chunks, from 0.
    pub index: u64,
    /// Where its data starts in the decoded body.
    pub offset: u64,
    /// Its data length (0 for the final chunk).
    pub len: u64,
    /// Its `chunk-signature`: 64 lowercase hex digits (the ingress refuses
    /// any other form), unverified.
    pub signature: String,
}

/// A signature as 32 bytes: 64 lowercase hex digits, what SigV4 produces.
/// Anything else is refused by the ingress, which also bounds what a record
/// holds (a chunk line may be 4096 bytes long).
pub(crate) fn parse_signature(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

fn to_hex(signature: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in signature {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

/// Why chunk signatures cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The reader fell behind: the record `index` was dropped from the ring.
    #[error("chunk signature {index} was evicted; the oldest kept is {oldest}")]
    Evicted {
        /// The index asked for.
        index: u64,
        /// The oldest index still kept.
        oldest: u64,
    },
    /// The request body failed or was abandoned: the record is incomplete.
    #[error("the request body was aborted before its chunk signatures were complete")]
    Aborted,
}

/// Some records and the state of the record after them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignatureBatch {
    /// Records from the asked index on, in order.
    pub records: Vec<ChunkSignature>,
    /// The `x-amz-trailer-signature`, once the body ended with one.
    pub trailer_signature: Option<String>,
    /// The body ended cleanly and `records` reaches its last chunk: no more
    /// will come.
    pub complete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Open,
    Complete,
    Aborted,
}

/// One record as the ring keeps it (its index follows from its place).
struct Kept {
    offset: u64,
    len: u64,
    signature: [u8; 32],
}

struct State {
    ring: VecDeque<Kept>,
    capacity: usize,
    /// Records ever pushed: the next record's index.
    pushed: u64,
    trailer: Option<[u8; 32]>,
    ending: Ending,
}

impl State {
    fn oldest(&self) -> u64 {
        self.pushed - self.ring.len() as u64
    }

    fn batch(&self, from: u64, max: usize) -> Result<SignatureBatch, SignatureError> {
        if self.ending == Ending::Aborted {
            return Err(SignatureError::Aborted);
        }
        let oldest = self.oldest();
        if from < oldest {
            return Err(SignatureError::Evicted {
                index: from,
                oldest,
            });
        }
        let skip = usize::try_from(from - oldest).unwrap_or(usize::MAX);
        let records: Vec<_> = (from..)
            .zip(self.ring.iter().skip(skip).take(max))
            .map(|(index, kept)| ChunkSignature {
                index,
                offset: kept.offset,
                len: kept.len,
                signature: to_hex(&kept.signature),
            })
            .collect();
        let reached = from.saturating_add(records.len() as u64) >= self.pushed;
        let complete = self.ending == Ending::Complete && reached;
        Ok(SignatureBatch {
            records,
            trailer_signature: complete
                .then(|| self.trailer.as_ref().map(to_hex))
                .flatten(),
            complete,
        })
    }
}

struct Shared {
    state: Mutex<State>,
    changed: tokio::sync::Notify,
}

/// A reader of one stream's chunk signatures; clones read independently.
#[derive(Clone)]
pub struct ChunkSignatures {
    shared: Arc<Shared>,
    next: u64,
}

impl std::fmt::Debug for ChunkSignatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSignatures")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl ChunkSignatures {
    /// A fresh record of at most `capacity` entries, and its writer.
    pub(crate) fn new(capacity: usize) -> (Self, SignatureSink) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                // Grows as chunks arrive: nothing is allocated up front.
                ring: VecDeque::new(),
                capacity: capacity.max(1),
                pushed: 0,
                trailer: None,
                ending: Ending::Open,
            }),
            changed: tokio::sync::Notify::new(),
        });
        (
            Self {
                shared: shared.clone(),
                next: 0,
            },
            SignatureSink { shared },
        )
    }

    /// The index [`next`](Self::next) reads.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Makes [`next`](Self::next) read from record `index` on.
    pub fn seek(&mut self, index: u64) {
        self.next = index;
    }

    /// The next record; waits for it while the body is still arriving.
    /// `None` once the body ended cleanly and every record was read (then
    /// [`trailer_signature`](Self::trailer_signature) is final).
    pub async fn next(&mut self) -> Option<Result<ChunkSignature, SignatureError>> {
        loop {
            let changed = self.shared.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Registered before the look, so a push in between still wakes us.
            changed.as_mut().enable();
            match self.batch(self.next, 1) {
                Err(e) => return Some(Err(e)),
                Ok(batch) => {
                    if let Some(record) = batch.records.into_iter().next() {
                        self.next = record.index + 1;
                        return Some(Ok(record));
                    }
                    if batch.complete {
                        return None;
                    }
                }
            }
            changed.await;
        }
    }

    /// Up to `max` records from `from` on, without waiting.
    pub fn batch(&self, from: u64, max: usize) -> Result<SignatureBatch, SignatureError> {
        lock(&self.shared.state).batch(from, max)
    }

    /// Waits until there is a record at `from`, the body ended, or
    /// `timeout` passed; then answers like [`batch`](Self::batch).
    pub async fn wait_batch(
        &self,
        from: u64,
        max: usize,
        timeout: std::time::Duration,
    ) -> Result<SignatureBatch, SignatureError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            let batch = self.batch(from, max)?;
            if !batch.records.is_empty() || batch.complete || max == 0 {
                return Ok(batch);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.batch(from, max);
            }
        }
    }

    /// The `x-amz-trailer-signature`, once the body ended cleanly with one.
    pub fn trailer_signature(&self) -> Option<String> {
        let state = lock(&self.shared.state);
        (state.ending == Ending::Complete)
            .then(|| state.trailer.as_ref().map(to_hex))
            .flatten()
    }
}

/// The ingress's side: records chunks as the decoder meets them. Dropped
/// before [`complete`](Self::complete), it marks the record aborted, so no
/// reader mistakes a failed body's signatures for a whole chain.
pub(crate) struct SignatureSink {
    shared: Arc<Shared>,
}

impl SignatureSink {
    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut lock(&self.shared.state));
        self.shared.changed.notify_waiters();
    }

    /// A chunk line: `len` data bytes from decoded `offset`, signed `signature`.
    pub(crate) fn chunk(&self, offset: u64, len: u64, signature: [u8; 32]) {
        self.update(|state| {
            if state.ring.len() == state.capacity {
                state.ring.pop_front();
            } else if state.ring.len() == state.ring.capacity() {
                // Doubling, but never past the bound (VecDeque's own growth
                // could allocate up to twice it).
                let want = state
                    .ring
                    .len()
                    .saturating_mul(2)
                    .max(8)
                    .min(state.capacity);
                state.ring.reserve_exact(want - state.ring.len());
            }
            state.ring.push_back(Kept {
                offset,
                len,
                signature,
            });
            state.pushed += 1;
        });
    }

    /// The `x-amz-trailer-signature` trailer.
    pub(crate) fn trailer(&self, signature: [u8; 32]) {
        self.update(|state| state.trailer = Some(signature));
    }

    /// The body ended and passed every check.
    pub(crate) fn complete(&self) {
        self.update(|state| {
            if state.ending == Ending::Open {
                state.ending = Ending::Complete;
            }
        });
    }
}

impl Drop for SignatureSink {
    fn drop(&mut self) {
        self.update(|state| {
            if state.ending == Ending::Open {
                state.ending = Ending::Aborted;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(n: u64) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[24..].copy_from_slice(&n.to_be_bytes());
        out
    }

    #[test]
    fn signatures_are_64_lowercase_hex_digits_and_come_back_as_sent() {
        let text = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648";
        let parsed = parse_signature(text).unwrap();
        assert_eq!(to_hex(&parsed), text);
        assert_eq!(to_hex(&sig(9)), format!("{:064x}", 9));
        for bad in [&text[1..], &text.to_uppercase(), &format!("{text}0"), ""] {
            assert_eq!(parse_signature(bad), None, "{bad}");
        }
        assert_eq!(parse_signature(&text.replace('a', "g")), None);
    }

    #[tokio::test]
    async fn a_reader_gets_every_record_then_the_end_and_the_trailer() {
        let (mut reader, sink) = ChunkSignatures::new(4);
        let task = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(record) = reader.next().await {
                got.push(record.unwrap());
            }
            (got, reader.trailer_signature())
        });
        for i in 0..3 {
            sink.chunk(i * 8192, 8192, sig(i));
            tokio::task::yield_now().await;
        }
        sink.chunk(3 * 8192, 0, sig(3));
        sink.trailer(sig(9));
        sink.complete();
        let (got, trailer) = task.await.unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[2].offset, 2 * 8192);
        assert_eq!(got[3].len, 0);
        assert_eq!(trailer, Some(to_hex(&sig(9))));
    }

    #[test]
    fn a_reader_that_fell_behind_is_told_never_skipped() {
        let (reader, sink) = ChunkSignatures::new(2);
        for i in 0..5 {
            sink.chunk(i * 8192, 8192, sig(i));
        }
        assert_eq!(
            reader.batch(2, 10),
            Err(SignatureError::Evicted {
                index: 2,
                oldest: 3
            })
        );
        let batch = reader.batch(3, 10).unwrap();
        assert_eq!(batch.records.len(), 2);
        assert!(!batch.complete, "the body has not ended");
        sink.complete();
        assert!(reader.batch(3, 10).unwrap().complete);
        assert!(!reader.batch(3, 1).unwrap().complete, "one record left");
    }

    #[tokio::test]
    async fn a_dropped_sink_aborts_waiting_readers() {
        let (mut reader, sink) = ChunkSignatures::new(4);
        sink.chunk(0, 8192, sig(0));
        assert!(matches!(reader.next().await, Some(Ok(_))));
        let task = tokio::spawn(async move { reader.next().await });
        tokio::task::yield_now().await;
        drop(sink);
        assert_eq!(task.await.unwrap(), Some(Err(SignatureError::Aborted)));
    }

    #[test]
    fn the_bound_covers_the_window_in_minimal_chunks() {
        // The defaults: 64 slots of 64 KiB.
        assert_eq!(capacity(64, 64 * 1024), 65 * 8 + 8);
    }
}

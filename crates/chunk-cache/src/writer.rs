//! The one writer of a stream.

use bytes::Bytes;

use crate::entry::{Entry, WriterState};
use crate::error::WriteError;
use crate::sync::Ordering;
use crate::{AbortReason, ChunkCache, StreamId};

/// The only handle that writes a stream. Slots go in order: slot 1 (headers),
/// body slots, then the end marker. Dropping it before [`end`](Self::end)
/// aborts the stream with [`AbortReason::WriterDropped`], so readers never
/// mistake a vanished writer for a clean end.
pub struct StreamWriter {
    cache: ChunkCache,
    index: u32,
    state: WriterState,
    finished: bool,
}

impl StreamWriter {
    pub(crate) fn new(cache: ChunkCache, index: u32, state: WriterState) -> Self {
        Self {
            cache,
            index,
            state,
            finished: false,
        }
    }

    fn entry(&self) -> &Entry {
        &self.cache.shared.entries[self.index as usize]
    }

    /// The stream this writer fills.
    pub fn id(&self) -> StreamId {
        StreamId::new(self.index, self.state.generation)
    }

    /// The cache the stream lives in.
    pub fn cache(&self) -> &ChunkCache {
        &self.cache
    }

    /// Number the next written slot will get.
    pub fn next_slot(&self) -> u64 {
        self.state.next
    }

    /// Writes slot `slot`, which must be the next one (slot 1 for the headers).
    pub async fn add(&mut self, slot: u64, bytes: Bytes) -> Result<u64, WriteError> {
        if slot != self.state.next {
            return Err(WriteError::OutOfOrder {
                expected: self.state.next,
                got: slot,
            });
        }
        self.write(bytes, false).await
    }

    /// Writes the next slot and returns its number, waiting while the ring is
    /// full of slots a registered reader has not consumed (backpressure).
    pub async fn append(&mut self, bytes: Bytes) -> Result<u64, WriteError> {
        self.write(bytes, false).await
    }

    /// Writes the end marker (an empty slot) and returns its number.
    pub async fn end(&mut self) -> Result<u64, WriteError> {
        let slot = self.write(Bytes::new(), true).await?;
        self.finished = true;
        Ok(slot)
    }

    /// Like [`append`](Self::append) but never waits: a full ring is
    /// [`WriteError::WouldBlock`].
    pub fn try_append(&mut self, bytes: Bytes) -> Result<u64, WriteError> {
        self.try_write(&bytes, false)
    }

    /// Like [`end`](Self::end) but never waits.
    pub fn try_end(&mut self) -> Result<u64, WriteError> {
        let slot = self.try_write(&Bytes::new(), true)?;
        self.finished = true;
        Ok(slot)
    }

    /// Ends the stream without an end marker; readers see
    /// [`ReadError::Aborted`](crate::ReadError::Aborted) after the last slot.
    pub fn abort(&mut self, reason: AbortReason) {
        self.finished = true;
        self.entry().abort(self.state.generation, reason);
    }

    fn try_write(&mut self, bytes: &Bytes, end: bool) -> Result<u64, WriteError> {
        let entry = &self.cache.shared.entries[self.index as usize];
        entry.check_write(&self.state, bytes.len(), end)?;
        let (slot, freed) = entry.try_write(&mut self.state, bytes, end)?;
        let held = &self.cache.shared.bytes_held;
        held.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        held.fetch_sub(freed as u64, Ordering::Relaxed);
        Ok(slot)
    }

    async fn write(&mut self, bytes: Bytes, end: bool) -> Result<u64, WriteError> {
        loop {
            match self.try_write(&bytes, end) {
                Err(WriteError::WouldBlock(victim)) => self.wait_for_space(victim).await,
                other => return other,
            }
        }
    }

    async fn wait_for_space(&self, victim: u64) {
        let entry = self.entry();
        let notified = entry.space.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        entry.writer_waiting.store(victim, Ordering::SeqCst);
        // Re-check after announcing: a reader that advanced before the
        // announcement did not notify.
        if entry.min_cursor() <= victim && entry.last(self.state.generation).is_ok() {
            notified.await;
        }
        entry.writer_waiting.store(u64::MAX, Ordering::SeqCst);
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.entry()
                .abort(self.state.generation, AbortReason::WriterDropped);
        }
        self.cache.release_lease(self.index);
    }
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter")
            .field("id", &self.id())
            .field("next_slot", &self.state.next)
            .finish()
    }
}

//! The one writer of a stream.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use bytes::{Bytes, BytesMut};

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
        let charge = bytes.len() as u64;
        self.write(bytes, charge, false).await
    }

    /// Writes the next slot and returns its number, waiting while the ring is
    /// full of slots a registered reader has not consumed, or while the
    /// memory budget cannot take it (backpressure). The slot is charged its
    /// length: use [`append_buffer`](Self::append_buffer) for pooled buffers.
    pub async fn append(&mut self, bytes: Bytes) -> Result<u64, WriteError> {
        let charge = bytes.len() as u64;
        self.write(bytes, charge, false).await
    }

    /// An empty slot-sized buffer from the budget's pool (fill it, then
    /// [`append_buffer`](Self::append_buffer) it).
    pub fn buffer(&self) -> BytesMut {
        self.cache.shared.budget.buffer()
    }

    /// Like [`append`](Self::append) for a buffer from [`buffer`](Self::buffer):
    /// charged by its capacity (its real allocation, whatever its length),
    /// and its allocation returns to the pool once the slot is freed and no
    /// reader still holds the bytes.
    pub async fn append_buffer(&mut self, buf: BytesMut) -> Result<u64, WriteError> {
        let charge = buf.capacity().max(buf.len()) as u64;
        self.write(buf.freeze(), charge, false).await
    }

    /// Writes the end marker (an empty slot) and returns its number.
    pub async fn end(&mut self) -> Result<u64, WriteError> {
        let slot = self.write(Bytes::new(), 0, true).await?;
        self.finished = true;
        Ok(slot)
    }

    /// Like [`append`](Self::append) but never waits: a full ring is
    /// [`WriteError::WouldBlock`].
    pub fn try_append(&mut self, bytes: Bytes) -> Result<u64, WriteError> {
        let charge = bytes.len() as u64;
        self.try_write(&bytes, charge, false)
    }

    /// Like [`end`](Self::end) but never waits.
    pub fn try_end(&mut self) -> Result<u64, WriteError> {
        let slot = self.try_write(&Bytes::new(), 0, true)?;
        self.finished = true;
        Ok(slot)
    }

    /// Ends the stream without an end marker; readers see
    /// [`ReadError::Aborted`](crate::ReadError::Aborted) after the last slot.
    pub fn abort(&mut self, reason: AbortReason) {
        self.finished = true;
        self.entry().abort(self.state.generation, reason);
    }

    fn try_write(&mut self, bytes: &Bytes, charge: u64, end: bool) -> Result<u64, WriteError> {
        let cache = &self.cache;
        let entry = &cache.shared.entries[self.index as usize];
        entry.check_write(&self.state, bytes.len(), end)?;
        let number = self.state.next;
        entry.check_space(&mut self.state, number)?;
        // What the overwritten position held is freed by this write, and so
        // is the credit of slots this writer freed early: only the rest is
        // a new charge.
        let mut old = entry.position_charge(number);
        let mut need = charge.saturating_sub(old + self.state.credit);
        while need > 0 && !cache.try_charge(self.index, need) {
            // Short of budget: reuse this stream's own consumed slots before
            // waiting for other streams to release theirs.
            let Some((freed, bytes)) = entry.free_oldest(&self.state) else {
                return Err(WriteError::BudgetSpent);
            };
            cache.shared.budget.recycle(bytes);
            self.state.credit += freed;
            // The freed slot may be the very position being overwritten.
            old = entry.position_charge(number);
            need = charge.saturating_sub(old + self.state.credit);
        }
        // Charged now: `charge` for this slot, and whatever is left over.
        self.state.credit = (self.state.credit + old + need) - charge;
        let result = entry.try_write(&mut self.state, bytes, charge, end);
        if let Ok((_, (_, old_bytes))) = &result {
            cache.shared.budget.recycle(old_bytes.clone());
        }
        // More than a slot of spare credit goes back to the other streams.
        let spare = self
            .state
            .credit
            .saturating_sub(cache.shared.config.slot_size as u64);
        if spare > 0 {
            self.state.credit -= spare;
            cache.release_charge(self.index, spare);
        }
        result.map(|(slot, _)| slot)
    }

    async fn write(&mut self, bytes: Bytes, charge: u64, end: bool) -> Result<u64, WriteError> {
        loop {
            let budget = self.cache.shared.budget.clone();
            let freed = budget.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_write(&bytes, charge, end) {
                Err(WriteError::WouldBlock(victim)) => self.wait_for_space(victim).await,
                Err(WriteError::BudgetSpent) => {
                    budget.wait_started();
                    self.wait_for_budget(freed).await;
                    budget.wait_ended();
                }
                other => return other,
            }
        }
    }

    /// Waits until another stream releases budget or one of this stream's
    /// readers consumes a slot (so this writer can free it early), or the
    /// stream is aborted.
    async fn wait_for_budget(&self, mut freed: Pin<&mut tokio::sync::futures::Notified<'_>>) {
        let entry = self.entry();
        let space = entry.space.notified();
        tokio::pin!(space);
        std::future::poll_fn(|cx| {
            if freed.as_mut().poll(cx).is_ready() || space.as_mut().poll(cx).is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        entry.writer_waiting.store(u64::MAX, Ordering::SeqCst);
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

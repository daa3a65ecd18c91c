//! A registered reader: a cursor the writer respects.

use crate::entry::{Cursor, Entry};
use crate::error::ReadError;
use crate::sync::{Arc, Ordering, lock};
use crate::{ChunkCache, Slot, StreamId};

/// Reads a stream in order from slot 1 (or, registered late, from the
/// oldest slot still held). While it lives the writer waits
/// rather than overwrite a slot this reader has not consumed, so a
/// registered reader never sees [`ReadError::Evicted`] for slots that were
/// retained when it registered.
pub struct StreamReader {
    cache: ChunkCache,
    id: StreamId,
    cursor: Arc<Cursor>,
    hold: bool,
}

impl StreamReader {
    pub(crate) fn new(cache: ChunkCache, id: StreamId, cursor: Arc<Cursor>, hold: bool) -> Self {
        Self {
            cache,
            id,
            cursor,
            hold,
        }
    }

    fn entry(&self) -> &Entry {
        &self.cache.shared.entries[self.id.index() as usize]
    }

    /// The stream being read.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Number of the next slot [`next`](Self::next) returns.
    pub fn position(&self) -> u64 {
        self.cursor.next.load(Ordering::SeqCst)
    }

    /// The next slot, waiting for it if needed (a notification, no polling).
    /// Returns the end marker as a slot of kind [`SlotKind::End`](crate::SlotKind::End);
    /// reading on after it is [`ReadError::PastEnd`].
    pub async fn next(&mut self) -> Result<Slot, ReadError> {
        let number = self.position();
        let slot = self.cache.wait(self.id, number).await?;
        self.advance(number + 1);
        Ok(slot)
    }

    /// The next slot if it is already written, without waiting.
    pub fn try_next(&mut self) -> Result<Option<Slot>, ReadError> {
        let number = self.position();
        let slot = self.entry().try_read(self.id.generation(), number)?;
        if slot.is_some() {
            self.advance(number + 1);
        }
        Ok(slot)
    }

    /// Declares every slot up to `number` consumed (for readers that read by
    /// slot number through [`ChunkCache::wait`] rather than [`next`](Self::next)).
    /// The cursor only moves forward.
    pub fn consume_through(&self, number: u64) {
        if number >= self.position() {
            self.advance(number + 1);
        }
    }

    fn advance(&self, next: u64) {
        self.cursor.next.store(next, Ordering::SeqCst);
        self.entry().reader_advanced(next);
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        let entry = self.entry();
        lock(&entry.readers).retain(|c| c.id != self.cursor.id);
        entry.reader_count.fetch_sub(1, Ordering::SeqCst);
        // The writer may be waiting on this reader alone.
        entry.space.notify_one();
        if self.hold {
            self.cache.drop_hold(self.id.index());
        }
        self.cache.release_lease(self.id.index());
    }
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader")
            .field("id", &self.id)
            .field("position", &self.position())
            .finish()
    }
}

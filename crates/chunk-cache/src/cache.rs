//! The cache: a fixed set of stream rings, handed out and taken back.

use tokio::sync::Notify;

use crate::entry::{Cursor, Entry, STATE_ABORTED, STATE_ENDED, WriterState};
use crate::error::{ConfigError, OpenError, ReadError, StreamError};
use crate::sync::{Arc, AtomicU64, AtomicUsize, Mutex, Ordering, lock};
use crate::{
    AbortReason, Admission, CacheConfig, MemoryBudget, Slot, StreamId, StreamReader, StreamWriter,
};

/// Where a stream stands, as seen by any holder of its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    /// Still being written; `last` slots are published.
    Open {
        /// Last published slot.
        last: u64,
    },
    /// The end marker is slot `last`.
    Ended {
        /// The end marker's slot number.
        last: u64,
    },
    /// The writer gave up after `last` slots.
    Aborted {
        /// Last published slot.
        last: u64,
        /// Why.
        reason: AbortReason,
    },
}

pub(crate) struct Shared {
    pub(crate) config: CacheConfig,
    pub(crate) entries: Box<[Entry]>,
    free: Mutex<Vec<u32>>,
    free_notify: Notify,
    /// Bytes this cache's streams have charged (changed under the budget's lock).
    pub(crate) bytes_held: AtomicU64,
    /// The part of `bytes_held` charged by unclaimed streams.
    pub(crate) unclaimed_held: AtomicU64,
    open_streams: AtomicUsize,
    pub(crate) budget: Arc<MemoryBudget>,
    pub(crate) admission: Admission,
}

/// A cache of `num_streams` streams, each a ring of slots (see the crate docs).
///
/// Cheap to clone: clones share the same rings.
#[derive(Clone)]
pub struct ChunkCache {
    pub(crate) shared: Arc<Shared>,
}

impl ChunkCache {
    /// Builds a cache with a budget of its own that is never the binding
    /// limit (`config.max_bytes()`); rings are allocated lazily, segment by
    /// segment, as streams grow.
    pub fn new(config: CacheConfig) -> Result<Self, ConfigError> {
        let budget = Arc::new(MemoryBudget::new(config.max_bytes(), config.slot_size));
        Self::with_budget(config, budget, Admission::unlimited())
    }

    /// Builds a cache whose slot bytes are charged to `budget` (which other
    /// caches may share), within the caps of `admission`.
    pub fn with_budget(
        config: CacheConfig,
        budget: Arc<MemoryBudget>,
        admission: Admission,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let entries: Box<[Entry]> = (0..config.num_streams)
            .map(|i| Entry::new(i as u32, &config))
            .collect();
        // Pop from the end: lowest indices first, which keeps small caches warm.
        let free = (0..config.num_streams as u32).rev().collect();
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                entries,
                free: Mutex::new(free),
                free_notify: Notify::new(),
                bytes_held: AtomicU64::new(0),
                unclaimed_held: AtomicU64::new(0),
                open_streams: AtomicUsize::new(0),
                budget,
                admission,
            }),
        })
    }

    /// The configuration this cache was built with.
    pub fn config(&self) -> &CacheConfig {
        &self.shared.config
    }

    /// Opens a stream if a ring is free, else fails at once.
    pub fn try_open(&self) -> Result<StreamWriter, OpenError> {
        let index = lock(&self.shared.free)
            .pop()
            .ok_or(OpenError::Full(self.shared.config.num_streams))?;
        let entry = &self.shared.entries[index as usize];
        let generation = {
            let mut meta = lock(&entry.meta);
            meta.live = true;
            meta.leases = 1;
            meta.generation
        };
        self.shared.open_streams.fetch_add(1, Ordering::Relaxed);
        Ok(StreamWriter::new(
            self.clone(),
            index,
            WriterState {
                generation,
                next: 1,
                known_free: 0,
                credit: 0,
            },
        ))
    }

    /// Opens a stream, waiting (without polling) until a ring is free.
    /// Wrap it in a timeout to bound the wait.
    pub async fn open(&self) -> StreamWriter {
        loop {
            let notified = self.shared.free_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Ok(writer) = self.try_open() {
                return writer;
            }
            notified.await;
        }
    }

    pub(crate) fn entry(&self, id: StreamId) -> Result<&Entry, StreamError> {
        self.shared
            .entries
            .get(id.index() as usize)
            .ok_or(StreamError::Unknown(id))
    }

    /// Last published slot of the stream: one atomic load.
    pub fn last(&self, id: StreamId) -> Result<u64, StreamError> {
        self.entry(id)?.last(id.generation())
    }

    /// Where the stream stands.
    pub fn status(&self, id: StreamId) -> Result<StreamStatus, StreamError> {
        let entry = self.entry(id)?;
        let (state, last) = entry.state(id.generation())?;
        Ok(match state {
            STATE_ENDED => StreamStatus::Ended { last },
            STATE_ABORTED => StreamStatus::Aborted {
                last,
                reason: entry.abort_reason(),
            },
            _ => StreamStatus::Open { last },
        })
    }

    /// Reads slot `number` without waiting; `Ok(None)` if it is not written yet.
    pub fn get(&self, id: StreamId, number: u64) -> Result<Option<Slot>, ReadError> {
        self.entry(id)?.try_read(id.generation(), number)
    }

    /// Waits for slot `number` (a notification, no polling) and reads it.
    ///
    /// This reader is not registered: the writer does not wait for it, so a
    /// slow caller may get [`ReadError::Evicted`]. Use
    /// [`ChunkCache::register_reader`] to hold the writer back instead.
    pub async fn wait(&self, id: StreamId, number: u64) -> Result<Slot, ReadError> {
        let entry = self.entry(id)?;
        loop {
            let notified = entry.data_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(slot) = entry.try_read(id.generation(), number)? {
                return Ok(slot);
            }
            notified.await;
        }
    }

    /// Oldest body slot still retained (2 while the ring has not wrapped).
    pub fn oldest_retained(&self, id: StreamId) -> Result<u64, StreamError> {
        let entry = self.entry(id)?;
        Ok(entry.oldest_retained(entry.last(id.generation())?))
    }

    /// Aborts the stream on behalf of anyone holding its id (e.g. a timeout);
    /// returns `false` if it had already ended or aborted.
    pub fn abort(&self, id: StreamId, reason: AbortReason) -> Result<bool, StreamError> {
        let entry = self.entry(id)?;
        entry.last(id.generation())?;
        Ok(entry.abort(id.generation(), reason))
    }

    /// Registers a reader. Its cursor starts at slot 1 while every body slot
    /// is still held, else at the oldest body slot still held (read slot 1
    /// with [`get`](Self::get)): a late reader never holds the writer back
    /// for a slot that no longer exists. While it lives, the writer never
    /// overwrites or frees a slot it has not consumed.
    pub fn register_reader(&self, id: StreamId) -> Result<StreamReader, StreamError> {
        self.register(id, false)
    }

    /// Registers a *hold*: a reader (as [`register_reader`](Self::register_reader))
    /// that also marks the stream as waiting for a worker. While a stream has
    /// a hold, its bytes count against [`Admission::unclaimed_max`]; dropping
    /// the last hold moves them to the claimed side.
    pub fn register_hold(&self, id: StreamId) -> Result<StreamReader, StreamError> {
        self.register(id, true)
    }

    fn register(&self, id: StreamId, hold: bool) -> Result<StreamReader, StreamError> {
        let entry = self.entry(id)?;
        self.acquire_lease(id)?;
        let reader_id = {
            let mut meta = lock(&entry.meta);
            meta.next_reader_id += 1;
            meta.next_reader_id
        };
        if hold {
            self.shared.budget.with_lock(|| {
                if entry.holds.fetch_add(1, Ordering::SeqCst) == 0 {
                    let charged = entry.charged.load(Ordering::SeqCst);
                    self.shared
                        .unclaimed_held
                        .fetch_add(charged, Ordering::SeqCst);
                }
            });
        }
        let cursor = {
            let mut readers = lock(&entry.readers);
            let cursor = Arc::new(Cursor {
                id: reader_id,
                next: AtomicU64::new(entry.first_readable(&readers)),
            });
            readers.push(cursor.clone());
            entry.note_reader_registered();
            cursor
        };
        entry.reader_count.fetch_add(1, Ordering::SeqCst);
        Ok(StreamReader::new(self.clone(), id, cursor, hold))
    }

    /// A hold went away: the stream's bytes leave the unclaimed account when
    /// it was the last one, which may let unclaimed writers in.
    pub(crate) fn drop_hold(&self, index: u32) {
        let entry = &self.shared.entries[index as usize];
        self.shared.budget.with_lock(|| {
            if entry.holds.fetch_sub(1, Ordering::SeqCst) == 1 {
                let charged = entry.charged.load(Ordering::SeqCst);
                self.shared
                    .unclaimed_held
                    .fetch_sub(charged, Ordering::SeqCst);
            }
        });
        self.shared.budget.freed.notify_waiters();
    }

    /// Charges `bytes` for a slot of stream `index` if the budget and this
    /// cache's caps allow it.
    pub(crate) fn try_charge(&self, index: u32, bytes: u64) -> bool {
        if bytes == 0 {
            return true;
        }
        let entry = &self.shared.entries[index as usize];
        let shared = &self.shared;
        shared.budget.try_charge(bytes, || {
            let unclaimed = entry.holds.load(Ordering::SeqCst) > 0;
            let held = shared.bytes_held.load(Ordering::SeqCst);
            let unclaimed_held = shared.unclaimed_held.load(Ordering::SeqCst);
            if held.saturating_add(bytes) > shared.admission.cache_max
                || (unclaimed
                    && unclaimed_held.saturating_add(bytes) > shared.admission.unclaimed_max)
            {
                return false;
            }
            shared.bytes_held.fetch_add(bytes, Ordering::SeqCst);
            if unclaimed {
                shared.unclaimed_held.fetch_add(bytes, Ordering::SeqCst);
            }
            entry.charged.fetch_add(bytes, Ordering::SeqCst);
            true
        })
    }

    /// Gives back `bytes` that stream `index` had charged.
    pub(crate) fn release_charge(&self, index: u32, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let entry = &self.shared.entries[index as usize];
        let shared = &self.shared;
        shared.budget.release(bytes, || {
            shared.bytes_held.fetch_sub(bytes, Ordering::SeqCst);
            if entry.holds.load(Ordering::SeqCst) > 0 {
                shared.unclaimed_held.fetch_sub(bytes, Ordering::SeqCst);
            }
            entry.charged.fetch_sub(bytes, Ordering::SeqCst);
        });
    }

    /// The budget this cache charges.
    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.shared.budget
    }

    /// Bytes charged by streams that wait for a worker (have a hold).
    pub fn unclaimed_bytes(&self) -> u64 {
        self.shared.unclaimed_held.load(Ordering::Relaxed)
    }

    /// Streams that have a hold (wait for a worker) right now. O(num_streams):
    /// for gauges, not hot paths.
    pub fn unclaimed_streams(&self) -> usize {
        self.shared
            .entries
            .iter()
            .filter(|e| e.holds.load(Ordering::Relaxed) > 0)
            .count()
    }

    /// Registered readers of the stream: one atomic load.
    pub fn reader_count(&self, id: StreamId) -> Result<usize, StreamError> {
        let entry = self.entry(id)?;
        entry.last(id.generation())?;
        Ok(entry.reader_count.load(Ordering::SeqCst))
    }

    /// Keeps the stream allocated while the returned lease lives, without
    /// reading or writing it (e.g. for a table of in-flight requests).
    pub fn lease(&self, id: StreamId) -> Result<StreamLease, StreamError> {
        self.acquire_lease(id)?;
        Ok(StreamLease {
            cache: self.clone(),
            id,
        })
    }

    /// Streams currently allocated.
    pub fn open_streams(&self) -> usize {
        self.shared.open_streams.load(Ordering::Relaxed)
    }

    /// Slot bytes this cache's streams have charged to the budget (at most
    /// `config().max_bytes()` and the budget's limit).
    pub fn bytes_held(&self) -> u64 {
        self.shared.bytes_held.load(Ordering::Relaxed)
    }

    pub(crate) fn acquire_lease(&self, id: StreamId) -> Result<(), StreamError> {
        let entry = self.entry(id)?;
        let mut meta = lock(&entry.meta);
        if !meta.live || meta.generation != id.generation() {
            return Err(StreamError::Stale(id));
        }
        meta.leases += 1;
        Ok(())
    }

    /// Drops one lease; the last one frees the ring for another stream.
    pub(crate) fn release_lease(&self, index: u32) {
        let entry = &self.shared.entries[index as usize];
        {
            let mut meta = lock(&entry.meta);
            meta.leases -= 1;
            if meta.leases > 0 {
                return;
            }
            meta.live = false;
            meta.generation = meta.generation.wrapping_add(1);
            let budget = &self.shared.budget;
            entry.reset(meta.generation, |bytes| budget.recycle(bytes));
            let charged = entry.charged.load(Ordering::SeqCst);
            self.release_charge(index, charged);
        }
        self.shared.open_streams.fetch_sub(1, Ordering::Relaxed);
        lock(&self.shared.free).push(index);
        self.shared.free_notify.notify_one();
    }
}

/// Keeps a stream allocated (see [`ChunkCache::lease`]). Clone for another lease.
pub struct StreamLease {
    cache: ChunkCache,
    id: StreamId,
}

impl StreamLease {
    /// The leased stream.
    pub fn id(&self) -> StreamId {
        self.id
    }
}

impl Clone for StreamLease {
    fn clone(&self) -> Self {
        let entry = &self.cache.shared.entries[self.id.index() as usize];
        lock(&entry.meta).leases += 1;
        Self {
            cache: self.cache.clone(),
            id: self.id,
        }
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        self.cache.release_lease(self.id.index());
    }
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCache")
            .field("config", &self.shared.config)
            .field("open_streams", &self.open_streams())
            .field("bytes_held", &self.bytes_held())
            .finish()
    }
}

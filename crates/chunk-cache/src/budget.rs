//! One memory budget shared by several caches, and the pool of slot buffers
//! it recycles.
//!
//! Every slot byte a cache holds is charged here first. A writer whose charge
//! does not fit waits (asynchronously) for a release: that wait is the
//! backpressure a client feels as TCP/QUIC flow control. Buffers of freed
//! slots come back to a pool when nobody else still holds them, so a busy
//! server stops paying malloc and free per slot; pooled buffers count
//! against the same limit, so `in use + pooled <= limit` always holds.

use bytes::BytesMut;
use tokio::sync::Notify;

use crate::sync::{AtomicU64, AtomicUsize, Mutex, Ordering, lock};

/// How much of a [`MemoryBudget`] one cache may hold (see the crate docs on
/// admission: the caps are what keeps streams that wait for a worker from
/// starving streams that have one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Most bytes this cache's streams may hold together.
    pub cache_max: u64,
    /// Most bytes this cache's *unclaimed* streams (those with a hold, see
    /// [`ChunkCache::register_hold`](crate::ChunkCache::register_hold)) may hold together.
    pub unclaimed_max: u64,
}

impl Admission {
    /// No cap beyond the budget itself.
    pub const fn unlimited() -> Self {
        Self {
            cache_max: u64::MAX,
            unclaimed_max: u64::MAX,
        }
    }
}

struct Accounts {
    used: u64,
    pool: Vec<BytesMut>,
    /// Buffers [`MemoryBudget::buffer`] allocated that may still come back:
    /// the pool never holds more than that, so bytes a writer brought from
    /// elsewhere (a proxy's origin frames) are freed, not hoarded. Before this
    /// bound the pool kept every unique freed slot up to the limit, and a
    /// cache built with [`ChunkCache::new`](crate::ChunkCache::new) (limit =
    /// its whole ring size) grew by a fraction of everything streamed.
    issued: usize,
}

/// A process-wide byte limit for slot data, shared (as an `Arc`) by caches.
pub struct MemoryBudget {
    limit: u64,
    buffer_size: usize,
    accounts: Mutex<Accounts>,
    /// Mirrors `accounts.used` for lock-free gauges.
    used: AtomicU64,
    waiting: AtomicUsize,
    pub(crate) freed: Notify,
}

impl MemoryBudget {
    /// A budget of `limit` bytes whose pooled buffers are `buffer_size` bytes
    /// (the slot size of the caches that share it).
    pub fn new(limit: u64, buffer_size: usize) -> Self {
        Self {
            limit,
            buffer_size: buffer_size.max(1),
            accounts: Mutex::new(Accounts {
                used: 0,
                pool: Vec::new(),
                issued: 0,
            }),
            used: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes charged right now (slot bytes held by every cache sharing it).
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Free buffers kept for reuse.
    pub fn pooled(&self) -> usize {
        lock(&self.accounts).pool.len()
    }

    /// Writers waiting for a charge right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Size of a pooled buffer.
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    /// An empty buffer of `buffer_size` capacity: from the pool, or newly
    /// allocated. It is charged only when written as a slot.
    pub fn buffer(&self) -> BytesMut {
        let mut acc = lock(&self.accounts);
        match acc.pool.pop() {
            Some(buf) => buf,
            None => {
                acc.issued += 1;
                BytesMut::with_capacity(self.buffer_size)
            }
        }
    }

    /// Charges `bytes` if `fits` agrees under the budget's lock (the caller's
    /// own caps are checked in the same critical section, so two writers
    /// cannot both squeeze into the last bytes). Pooled buffers are dropped
    /// to make room rather than refusing a charge.
    pub(crate) fn try_charge(&self, bytes: u64, fits: impl FnOnce() -> bool) -> bool {
        let mut acc = lock(&self.accounts);
        if acc.used.saturating_add(bytes) > self.limit || !fits() {
            return false;
        }
        acc.used += bytes;
        let room = self.limit - acc.used;
        while (acc.pool.len() * self.buffer_size) as u64 > room {
            acc.pool.pop();
            acc.issued = acc.issued.saturating_sub(1);
        }
        self.used.store(acc.used, Ordering::Relaxed);
        true
    }

    /// Gives `bytes` back; `after` runs under the lock (the caller's own
    /// counters move with the budget's). Wakes every waiting writer.
    pub(crate) fn release(&self, bytes: u64, after: impl FnOnce()) {
        {
            let mut acc = lock(&self.accounts);
            acc.used = acc.used.saturating_sub(bytes);
            after();
            self.used.store(acc.used, Ordering::Relaxed);
        }
        if bytes > 0 {
            self.freed.notify_waiters();
        }
    }

    /// Runs `f` under the budget's lock (to move a stream's charge between
    /// a cache's claimed and unclaimed accounts atomically).
    pub(crate) fn with_lock<T>(&self, f: impl FnOnce() -> T) -> T {
        let _acc = lock(&self.accounts);
        f()
    }

    /// Takes back a freed slot's buffer if nobody else holds it and the pool
    /// has room under the limit; otherwise it is simply dropped.
    pub(crate) fn recycle(&self, bytes: bytes::Bytes) {
        if bytes.is_empty() {
            return;
        }
        let Ok(mut buf) = bytes.try_into_mut() else {
            return;
        };
        if buf.capacity() != self.buffer_size {
            return;
        }
        buf.clear();
        let mut acc = lock(&self.accounts);
        let pooled = ((acc.pool.len() + 1) * self.buffer_size) as u64;
        if acc.pool.len() < acc.issued && acc.used.saturating_add(pooled) <= self.limit {
            acc.pool.push(buf);
        } else {
            acc.issued = acc.issued.saturating_sub(1);
        }
    }

    pub(crate) fn wait_started(&self) {
        self.waiting.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn wait_ended(&self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.limit)
            .field("used", &self.used())
            .field("waiting", &self.waiting())
            .finish()
    }
}

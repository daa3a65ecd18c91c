//! Per-stream rings of fixed-size slots: the buffer between whoever receives
//! an HTTP message and whoever processes it.
//!
//! A [`ChunkCache`] holds `num_streams` streams. Each stream is written by one
//! [`StreamWriter`] in numbered slots (the stream format of
//! `ARCHITECTURE.md` §3):
//!
//! | slot | content |
//! |---|---|
//! | 1 | encoded headers |
//! | 2..N-1 | raw body bytes, at most `slot_size` each |
//! | N | end marker (an empty slot) |
//!
//! and read by any number of readers, zero-copy (`Bytes` clones), each slot
//! carrying its xxhash. Memory is bounded by the configuration and by the
//! [`MemoryBudget`] (below): a stream retains at most `slots_per_stream` slots; slot 1 stays readable for the
//! stream's whole life, body slots live in a ring. When the ring is full the
//! writer waits (asynchronously) until every registered [`StreamReader`] has
//! consumed the slot it would overwrite: that wait is the backpressure that
//! reaches a client as TCP/QUIC flow control. An unregistered reader that
//! falls behind gets [`ReadError::Evicted`], never wrong bytes.
//!
//! # Memory budget
//!
//! Caches built with [`ChunkCache::with_budget`] charge every slot to one
//! shared [`MemoryBudget`] before writing it: a slot from
//! [`StreamWriter::buffer`] is charged its capacity (its real allocation),
//! any other slot its length. A writer whose charge does not fit waits
//! asynchronously ([`WriteError::BudgetSpent`] from `try_append`). A stream
//! costs only metadata until it holds bytes; freed buffers go back to the
//! budget's pool when nobody else holds them (`in use + pooled <= limit`).
//!
//! A body slot is freed when the ring needs its position and every
//! registered reader has consumed it (it left the window of
//! `slots_per_stream`), or earlier, when its own writer is short of budget
//! and every registered reader has consumed it: the window shrinks rather
//! than taking bytes from other streams. Slot 1 stays for the stream's
//! life. A reader registering after slots were freed starts at the oldest
//! slot still held, so it never holds the writer back for a slot that no
//! longer exists.
//!
//! ## Admission: why waiting streams cannot starve working ones
//!
//! A stream with a *hold* ([`ChunkCache::register_hold`], a reader parked
//! at slot 1 while no worker reads it) is *unclaimed*; the others are
//! *claimed*. Each cache has an [`Admission`]: its streams together may hold
//! at most `cache_max`, its unclaimed streams at most `unclaimed_max`.
//!
//! 1. Unclaimed streams hold at most `unclaimed_max < limit` in total, so
//!    whenever a claimed writer waits, either the budget has room (it is
//!    woken by every release) or claimed streams hold the rest.
//! 2. A claimed writer whose readers consumed its oldest slot frees it and
//!    reuses its charge without going through the shared budget, so a
//!    claimed stream whose worker keeps reading never waits on anybody.
//! 3. A claimed stream that holds nothing consumed waits only for claimed
//!    streams, which make progress by (2) and release everything when they
//!    finish (or are aborted by a timeout). No cycle of waits exists as long
//!    as the consumers of claimed streams do not themselves wait on the
//!    same share: the service gives responses a share requests cannot
//!    take (requests get `cache_max = 3/4` of the budget), so a worker
//!    reading a request can always write its response.
//!
//! `tests/budget.rs` runs the argument as a stress test (many unclaimed
//! writers parked at their cap, claimed streams still finishing) and
//! `tests/loom.rs` checks that two writers racing for the last charge never
//! exceed the limit.
//!
//! Known limit, open: once in about 50 runs under load, a writer of that
//! stress test parked behind a hold kept completing writes without waiting
//! (sampled stacks: slot after slot written and checksummed), holding a
//! worker thread; its parked writers now yield after each write so the test
//! cannot hang, and why the hold did not stop that writer is not yet known.
//!
//! Outcomes are explicit: the end marker ([`SlotKind::End`]), an abort
//! ([`ReadError::Aborted`], never mistaken for an end), a recycled slot
//! ([`ReadError::Evicted`]) and a stream that no longer exists
//! ([`StreamError::Stale`]: ids carry a generation, so a released ring reused
//! by a later stream is never read through an old id).
//!
//! ```
//! use bytes::Bytes;
//! use chunk_cache::{CacheConfig, ChunkCache, SlotKind};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let cache = ChunkCache::new(CacheConfig::new(4, 16 * 1024, 8)).unwrap();
//! let mut writer = cache.try_open().unwrap();
//! let mut reader = cache.register_reader(writer.id()).unwrap();
//!
//! writer.add(1, Bytes::from_static(b"headers")).await.unwrap();
//! writer.append(Bytes::from_static(b"hello")).await.unwrap();
//! writer.end().await.unwrap();
//! assert_eq!(cache.last(writer.id()).unwrap(), 3);
//!
//! assert_eq!(reader.next().await.unwrap().kind, SlotKind::Headers);
//! let body = reader.next().await.unwrap();
//! assert_eq!(&body.bytes[..], b"hello");
//! assert!(body.verify());
//! assert_eq!(reader.next().await.unwrap().kind, SlotKind::End);
//! # });
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod budget;
mod cache;
mod config;
mod entry;
mod error;
mod id;
mod reader;
mod slot;
mod sync;
mod writer;

pub use budget::{Admission, MemoryBudget};
pub use cache::{ChunkCache, StreamLease, StreamStatus};
pub use config::CacheConfig;
pub use error::{ConfigError, OpenError, ReadError, StreamError, WriteError};
pub use id::StreamId;
pub use reader::StreamReader;
pub use slot::{AbortReason, Slot, SlotKind};
pub use writer::StreamWriter;

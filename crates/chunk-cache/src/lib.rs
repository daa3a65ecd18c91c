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
//! carrying its xxhash. Memory is bounded by the configuration: a stream
//! retains at most `slots_per_stream` slots; slot 1 stays readable for the
//! stream's whole life, body slots live in a ring. When the ring is full the
//! writer waits (asynchronously) until every registered [`StreamReader`] has
//! consumed the slot it would overwrite: that wait is the backpressure that
//! reaches a client as TCP/QUIC flow control. An unregistered reader that
//! falls behind gets [`ReadError::Evicted`], never wrong bytes.
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

mod cache;
mod config;
mod entry;
mod error;
mod id;
mod reader;
mod slot;
mod sync;
mod writer;

pub use cache::{ChunkCache, StreamLease, StreamStatus};
pub use config::CacheConfig;
pub use error::{ConfigError, OpenError, ReadError, StreamError, WriteError};
pub use id::StreamId;
pub use reader::StreamReader;
pub use slot::{AbortReason, Slot, SlotKind};
pub use writer::StreamWriter;

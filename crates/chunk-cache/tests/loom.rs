//! Exhaustive interleavings of the slot publication protocol (loom).
//!
//! Run with `cargo xtask test` (or `RUSTFLAGS="--cfg chunk_cache_loom"
//! cargo test --release -p chunk-cache --test loom`). Only the non-blocking
//! operations are modelled: the async waits are those same operations plus a
//! notification, which tokio's own loom suite covers.
#![cfg(chunk_cache_loom)]

use bytes::Bytes;
use chunk_cache::{
    Admission, CacheConfig, ChunkCache, MemoryBudget, ReadError, SlotKind, StreamError, WriteError,
};
use loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

fn spin_append(w: &mut chunk_cache::StreamWriter, bytes: &'static [u8]) -> u64 {
    loop {
        match w.try_append(Bytes::from_static(bytes)) {
            Ok(n) => return n,
            Err(WriteError::WouldBlock(_)) => thread::yield_now(),
            Err(e) => panic!("append: {e}"),
        }
    }
}

/// A reader that sees `last >= n` also sees slot n's bytes, never older ones.
#[test]
fn published_slot_is_fully_visible() {
    model(|| {
        let cache = ChunkCache::new(CacheConfig::new(1, 8, 4)).unwrap();
        let mut w = cache.try_open().unwrap();
        let id = w.id();
        let reader = {
            let cache = cache.clone();
            thread::spawn(move || {
                if cache.last(id).unwrap() >= 2 {
                    let slot = cache.get(id, 2).unwrap().unwrap();
                    assert_eq!(&slot.bytes[..], b"body");
                    assert!(slot.verify());
                } else if let Some(slot) = cache.get(id, 2).unwrap() {
                    assert_eq!(&slot.bytes[..], b"body");
                }
            })
        };
        spin_append(&mut w, b"head");
        spin_append(&mut w, b"body");
        reader.join().unwrap();
    });
}

/// Ring of one body slot: a registered reader still gets every slot in order.
#[test]
fn registered_reader_never_loses_a_slot() {
    model(|| {
        let cache = ChunkCache::new(CacheConfig::new(1, 8, 2)).unwrap();
        let mut w = cache.try_open().unwrap();
        let mut r = cache.register_reader(w.id()).unwrap();
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                match r.try_next().unwrap() {
                    Some(slot) if slot.kind == SlotKind::End => return got,
                    Some(slot) => got.push(slot.bytes),
                    None => thread::yield_now(),
                }
            }
        });
        spin_append(&mut w, b"h");
        spin_append(&mut w, b"a");
        spin_append(&mut w, b"b");
        loop {
            match w.try_end() {
                Ok(_) => break,
                Err(WriteError::WouldBlock(_)) => thread::yield_now(),
                Err(e) => panic!("end: {e}"),
            }
        }
        let got = reader.join().unwrap();
        assert_eq!(got, [&b"h"[..], b"a", b"b"]);
    });
}

/// An unregistered reader racing an overwrite gets the right bytes or
/// `Evicted`, never the newer slot's bytes under the old number.
#[test]
fn overwrite_is_evicted_not_misread() {
    model(|| {
        let cache = ChunkCache::new(CacheConfig::new(1, 8, 2)).unwrap();
        let mut w = cache.try_open().unwrap();
        let id = w.id();
        spin_append(&mut w, b"h");
        spin_append(&mut w, b"old");
        let reader = {
            let cache = cache.clone();
            thread::spawn(move || match cache.get(id, 2) {
                Ok(Some(slot)) => assert_eq!(&slot.bytes[..], b"old"),
                Err(ReadError::Evicted { slot: 2, oldest }) => assert_eq!(oldest, 3),
                other => panic!("unexpected {other:?}"),
            })
        };
        spin_append(&mut w, b"new");
        reader.join().unwrap();
    });
}

/// A ring released and reused by a new stream is never read through the old id.
#[test]
fn reused_ring_is_stale_for_old_ids() {
    model(|| {
        let cache = ChunkCache::new(CacheConfig::new(1, 8, 2)).unwrap();
        let mut w = cache.try_open().unwrap();
        let old = w.id();
        spin_append(&mut w, b"first");
        let reader = {
            let cache = cache.clone();
            thread::spawn(move || match cache.get(old, 1) {
                Ok(Some(slot)) => assert_eq!(&slot.bytes[..], b"first"),
                Err(ReadError::Stream(StreamError::Stale(id))) => assert_eq!(id, old),
                other => panic!("unexpected {other:?}"),
            })
        };
        drop(w);
        let mut w2 = cache.try_open().unwrap();
        spin_append(&mut w2, b"second");
        reader.join().unwrap();
    });
}

/// Two writers racing for the budget's last slot: exactly one gets it, the
/// other is told to wait, and the budget never goes over its limit.
#[test]
fn last_charge_goes_to_one_writer() {
    model(|| {
        let budget = loom::sync::Arc::new(MemoryBudget::new(8, 8));
        let cache = ChunkCache::with_budget(
            CacheConfig::new(2, 8, 4),
            budget.clone(),
            Admission::unlimited(),
        )
        .unwrap();
        let mut writers: Vec<_> = (0..2)
            .map(|_| {
                let mut w = cache.try_open().unwrap();
                // A reader that consumed nothing: no early free to fall back on.
                let r = cache.register_reader(w.id()).unwrap();
                w.try_append(Bytes::new()).unwrap();
                (w, r)
            })
            .collect();
        let (mut w1, r1) = writers.pop().unwrap();
        let racer = thread::spawn(move || {
            let got = w1.try_append(Bytes::from_static(b"12345678"));
            (got, w1, r1)
        });
        let mine = writers[0].0.try_append(Bytes::from_static(b"abcdefgh"));
        let (theirs, _w1, _r1) = racer.join().unwrap();
        let won = [&mine, &theirs].iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "{mine:?} {theirs:?}");
        assert!([&mine, &theirs].contains(&&Err(WriteError::BudgetSpent)));
        assert_eq!(budget.used(), 8);
    });
}

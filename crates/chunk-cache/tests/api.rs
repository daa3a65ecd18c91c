//! The cache's contract, one behaviour per test.

use bytes::Bytes;
use chunk_cache::{
    AbortReason, CacheConfig, ChunkCache, OpenError, ReadError, SlotKind, StreamError,
    StreamStatus, WriteError,
};

fn cache(streams: usize, slot: usize, slots: usize) -> ChunkCache {
    ChunkCache::new(CacheConfig::new(streams, slot, slots)).unwrap()
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

#[tokio::test]
async fn slots_are_numbered_and_typed() {
    let c = cache(2, 16, 8);
    let mut w = c.try_open().unwrap();
    let id = w.id();
    assert_eq!(c.last(id).unwrap(), 0);
    assert_eq!(w.add(1, b("H")).await.unwrap(), 1);
    assert_eq!(w.append(b("body")).await.unwrap(), 2);
    assert_eq!(w.end().await.unwrap(), 3);
    assert_eq!(c.last(id).unwrap(), 3);
    assert_eq!(c.status(id).unwrap(), StreamStatus::Ended { last: 3 });

    let kinds: Vec<_> = (1..=3)
        .map(|n| c.get(id, n).unwrap().unwrap().kind)
        .collect();
    assert_eq!(kinds, [SlotKind::Headers, SlotKind::Body, SlotKind::End]);
    let body = c.get(id, 2).unwrap().unwrap();
    assert!(body.verify());
    assert_eq!(body.hash, xxhash_of(b"body"));
    assert_eq!(
        c.get(id, 4).unwrap_err(),
        ReadError::PastEnd { slot: 4, end: 3 }
    );
}

fn xxhash_of(bytes: &[u8]) -> u64 {
    // The same bytes through a second cache give the same stored hash.
    let c = cache(1, 64, 2);
    let mut w = c.try_open().unwrap();
    w.try_append(Bytes::copy_from_slice(bytes)).unwrap();
    c.get(w.id(), 1).unwrap().unwrap().hash
}

#[tokio::test]
async fn bad_writes_are_refused_and_change_nothing() {
    let c = cache(1, 4, 8);
    let mut w = c.try_open().unwrap();
    assert_eq!(w.try_end().unwrap_err(), WriteError::MissingHeaders);
    assert_eq!(
        w.add(2, b("x")).await.unwrap_err(),
        WriteError::OutOfOrder {
            expected: 1,
            got: 2
        }
    );
    w.add(1, b("h")).await.unwrap();
    assert_eq!(
        w.append(b("toolong")).await.unwrap_err(),
        WriteError::TooLarge { len: 7, max: 4 }
    );
    assert_eq!(w.append(Bytes::new()).await.unwrap_err(), WriteError::Empty);
    assert_eq!(c.last(w.id()).unwrap(), 1);
    w.end().await.unwrap();
    assert_eq!(w.append(b("x")).await.unwrap_err(), WriteError::Finished);
}

#[tokio::test]
async fn abort_is_never_a_clean_end() {
    let c = cache(1, 16, 8);
    let mut w = c.try_open().unwrap();
    let id = w.id();
    let mut r = c.register_reader(id).unwrap();
    w.add(1, b("h")).await.unwrap();
    w.append(b("part")).await.unwrap();
    w.abort(AbortReason::ClientGone);
    assert_eq!(r.next().await.unwrap().kind, SlotKind::Headers);
    assert_eq!(&r.next().await.unwrap().bytes[..], b"part");
    assert_eq!(
        r.next().await.unwrap_err(),
        ReadError::Aborted(AbortReason::ClientGone)
    );
    assert_eq!(
        c.status(id).unwrap(),
        StreamStatus::Aborted {
            last: 2,
            reason: AbortReason::ClientGone
        }
    );
}

#[tokio::test]
async fn dropped_writer_aborts_waiting_readers() {
    let c = cache(1, 16, 8);
    let mut w = c.try_open().unwrap();
    let mut r = c.register_reader(w.id()).unwrap();
    w.add(1, b("h")).await.unwrap();
    let reading = tokio::spawn(async move {
        r.next().await.unwrap();
        r.next().await
    });
    tokio::task::yield_now().await;
    drop(w);
    assert_eq!(
        reading.await.unwrap().unwrap_err(),
        ReadError::Aborted(AbortReason::WriterDropped)
    );
}

#[tokio::test]
async fn unregistered_reader_sees_evicted_never_wrong_bytes() {
    let c = cache(1, 16, 3); // headers + a ring of 2
    let mut w = c.try_open().unwrap();
    let id = w.id();
    w.add(1, b("h")).await.unwrap();
    for body in ["a", "b", "c", "d"] {
        w.append(b(body)).await.unwrap();
    }
    // slots 2..=5 written into a ring of 2: 2 and 3 are gone.
    assert_eq!(
        c.get(id, 2).unwrap_err(),
        ReadError::Evicted { slot: 2, oldest: 4 }
    );
    assert_eq!(&c.get(id, 5).unwrap().unwrap().bytes[..], b"d");
    assert_eq!(c.oldest_retained(id).unwrap(), 4);
    // Slot 1 outlives any number of wraps.
    assert_eq!(&c.get(id, 1).unwrap().unwrap().bytes[..], b"h");
}

#[tokio::test]
async fn registered_reader_holds_the_writer_back() {
    let c = cache(1, 16, 3);
    let mut w = c.try_open().unwrap();
    let id = w.id();
    let mut r = c.register_reader(id).unwrap();
    assert_eq!(c.reader_count(id).unwrap(), 1);
    w.add(1, b("h")).await.unwrap();
    w.append(b("a")).await.unwrap();
    w.append(b("b")).await.unwrap();
    assert_eq!(w.try_append(b("c")).unwrap_err(), WriteError::WouldBlock(2));

    // The async append waits until the reader consumes slot 2.
    let writer = tokio::spawn(async move {
        let n = w.append(b("c")).await.unwrap();
        w.end().await.unwrap();
        n
    });
    let mut got = Vec::new();
    loop {
        let slot = r.next().await.unwrap();
        if slot.kind == SlotKind::End {
            break;
        }
        got.push(slot.bytes);
    }
    assert_eq!(got, [b("h"), b("a"), b("b"), b("c")]);
    assert_eq!(writer.await.unwrap(), 4);
}

#[tokio::test]
async fn dropping_the_only_reader_releases_the_writer() {
    let c = cache(1, 16, 2);
    let mut w = c.try_open().unwrap();
    let r = c.register_reader(w.id()).unwrap();
    w.add(1, b("h")).await.unwrap();
    w.append(b("a")).await.unwrap();
    let writer = tokio::spawn(async move { w.append(b("b")).await });
    tokio::task::yield_now().await;
    drop(r);
    assert_eq!(writer.await.unwrap().unwrap(), 3);
}

#[tokio::test]
async fn external_abort_wakes_a_blocked_writer() {
    let c = cache(1, 16, 2);
    let mut w = c.try_open().unwrap();
    let id = w.id();
    let _r = c.register_reader(id).unwrap();
    w.add(1, b("h")).await.unwrap();
    w.append(b("a")).await.unwrap();
    let writer = tokio::spawn(async move { w.append(b("b")).await });
    tokio::task::yield_now().await;
    assert!(c.abort(id, AbortReason::Timeout).unwrap());
    assert_eq!(writer.await.unwrap().unwrap_err(), WriteError::Finished);
}

#[tokio::test]
async fn released_ring_is_not_readable_through_an_old_id() {
    let c = cache(1, 16, 4);
    let mut w = c.try_open().unwrap();
    let old = w.id();
    w.add(1, b("old")).await.unwrap();
    w.end().await.unwrap();
    drop(w);
    assert_eq!(c.open_streams(), 0);
    assert_eq!(c.bytes_held(), 0);

    let mut w2 = c.try_open().unwrap();
    assert_eq!(w2.id().index(), old.index());
    assert_ne!(w2.id(), old);
    w2.add(1, b("new")).await.unwrap();
    assert_eq!(
        c.get(old, 1).unwrap_err(),
        ReadError::Stream(StreamError::Stale(old))
    );
    assert_eq!(c.last(old).unwrap_err(), StreamError::Stale(old));
    assert!(c.register_reader(old).is_err());
    let forged = chunk_cache::StreamId::from_u64(u64::from(u32::MAX));
    assert_eq!(c.last(forged).unwrap_err(), StreamError::Unknown(forged));
}

#[tokio::test]
async fn open_waits_for_a_free_ring() {
    let c = cache(1, 16, 4);
    let w = c.try_open().unwrap();
    assert_eq!(c.try_open().unwrap_err(), OpenError::Full(1));
    let c2 = c.clone();
    let waiting = tokio::spawn(async move { c2.open().await.id() });
    tokio::task::yield_now().await;
    let old = w.id();
    drop(w);
    let new = waiting.await.unwrap();
    assert_eq!(new.index(), old.index());
    assert_ne!(new, old);
}

#[tokio::test]
async fn a_lease_keeps_the_stream_after_its_writer() {
    let c = cache(1, 16, 4);
    let mut w = c.try_open().unwrap();
    let id = w.id();
    let lease = c.lease(id).unwrap();
    w.add(1, b("h")).await.unwrap();
    w.end().await.unwrap();
    drop(w);
    assert_eq!(&c.get(id, 1).unwrap().unwrap().bytes[..], b"h");
    let lease2 = lease.clone();
    drop(lease);
    assert_eq!(c.last(id).unwrap(), 2);
    drop(lease2);
    assert!(c.last(id).is_err());
    assert_eq!(c.open_streams(), 0);
}

#[tokio::test]
async fn memory_stays_within_the_configured_bound() {
    let config = CacheConfig::new(1, 1024, 8);
    let c = ChunkCache::new(config).unwrap();
    let mut w = c.try_open().unwrap();
    let mut r = c.register_reader(w.id()).unwrap();
    let reader = tokio::spawn(async move {
        let mut bytes = 0u64;
        loop {
            let slot = r.next().await.unwrap();
            if slot.kind == SlotKind::End {
                return bytes;
            }
            bytes += slot.bytes.len() as u64;
        }
    });
    w.add(1, Bytes::from(vec![b'h'; 1024])).await.unwrap();
    let mut max_held = 0;
    for _ in 0..5000 {
        w.append(Bytes::from(vec![7u8; 1024])).await.unwrap();
        max_held = max_held.max(c.bytes_held());
    }
    w.end().await.unwrap();
    assert_eq!(reader.await.unwrap(), 5001 * 1024);
    assert!(
        max_held <= config.max_bytes(),
        "{max_held} > {}",
        config.max_bytes()
    );
    drop(w);
    assert_eq!(c.bytes_held(), 0);
}

#[test]
fn bad_configs_are_rejected() {
    assert!(ChunkCache::new(CacheConfig::new(0, 16, 4)).is_err());
    assert!(ChunkCache::new(CacheConfig::new(1, 0, 4)).is_err());
    assert!(ChunkCache::new(CacheConfig::new(1, 16, 1)).is_err());
    assert!(CacheConfig::default().validate().is_ok());
}

#[tokio::test]
async fn a_reused_ring_frees_every_byte_whatever_each_stream_used() {
    let c = cache(1, 16, 200);
    // Large (wrapping the ring twice), small, medium, small again: each release
    // gives back exactly what the stream held, and the next stream starts empty.
    for slots in [450u64, 2, 130, 1] {
        let mut w = c.try_open().unwrap();
        let id = w.id();
        w.add(1, b("head")).await.unwrap();
        for _ in 0..slots {
            w.append(b("0123456789")).await.unwrap();
        }
        let retained = slots.min(c.config().slots_per_stream as u64 - 1);
        assert_eq!(c.bytes_held(), 4 + 10 * retained, "{slots} slots");
        let last = w.end().await.unwrap();
        assert_eq!(c.get(id, last).unwrap().unwrap().kind, SlotKind::End);
        drop(w);
        assert_eq!(c.bytes_held(), 0, "after {slots} slots");
    }
}

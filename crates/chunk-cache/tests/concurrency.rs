//! Many streams at once, each with one writer, several registered readers and
//! an unregistered straggler, the ring wrapping hundreds of times; every byte
//! checked by hash. No timing: it passes or fails on content alone.

use bytes::Bytes;
use chunk_cache::{CacheConfig, ChunkCache, ReadError, SlotKind};
use xxhash_rust::xxh3::Xxh3;

const STREAMS: usize = 12;
const ROUNDS: usize = 3;
const SLOTS: u64 = 3000;
const SLOT_SIZE: usize = 2048;
const RING: usize = 16;
const READERS: usize = 3;

/// Deterministic content of body slot `n` of stream `seed`, with varying size.
fn body(seed: u64, n: u64) -> Bytes {
    let len = 1 + ((seed * 7919 + n * 104_729) % SLOT_SIZE as u64) as usize;
    let base = (seed.wrapping_mul(31) ^ n.wrapping_mul(131)) as u8;
    Bytes::from(
        (0..len)
            .map(|i| base.wrapping_add(i as u8))
            .collect::<Vec<_>>(),
    )
}

fn headers(seed: u64) -> Bytes {
    Bytes::from(format!("stream-{seed}"))
}

fn expected_digest(seed: u64) -> (u64, u64) {
    let mut h = Xxh3::new();
    let mut len = 0;
    for n in 2..SLOTS + 2 {
        let b = body(seed, n);
        len += b.len() as u64;
        h.update(&b);
    }
    (h.digest(), len)
}

async fn registered_reader(
    cache: ChunkCache,
    mut r: chunk_cache::StreamReader,
    seed: u64,
) -> (u64, u64) {
    let first = r.next().await.unwrap();
    assert_eq!(first.kind, SlotKind::Headers);
    assert_eq!(first.bytes, headers(seed));
    let mut h = Xxh3::new();
    let mut len = 0;
    loop {
        let slot = r.next().await.unwrap();
        assert!(
            slot.verify(),
            "slot {} of stream {seed} fails its hash",
            slot.number
        );
        if slot.kind == SlotKind::End {
            assert_eq!(slot.number, SLOTS + 2);
            assert_eq!(cache.last(r.id()).unwrap(), SLOTS + 2);
            return (h.digest(), len);
        }
        len += slot.bytes.len() as u64;
        h.update(&slot.bytes);
    }
}

/// Never registered: may fall behind and be told so, but whatever bytes it
/// gets must be exactly the bytes written to that slot.
async fn straggler(cache: ChunkCache, id: chunk_cache::StreamId, seed: u64) -> (u64, u64) {
    let (mut n, mut ok, mut evicted) = (2, 0, 0);
    loop {
        match cache.wait(id, n).await {
            Ok(slot) if slot.kind == SlotKind::End => return (ok, evicted),
            Ok(slot) => {
                assert_eq!(
                    slot.bytes,
                    body(seed, n),
                    "straggler got wrong bytes for slot {n}"
                );
                ok += 1;
                n += 1;
                if n % 97 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            Err(ReadError::Evicted { slot, oldest }) => {
                assert_eq!(slot, n);
                assert!(oldest > n);
                evicted += 1;
                n = oldest;
            }
            // The stream may be released before the straggler catches up.
            Err(ReadError::Stream(_)) => return (ok, evicted),
            Err(e) => panic!("straggler: {e}"),
        }
    }
}

async fn one_stream(cache: ChunkCache, seed: u64) {
    let mut w = cache.open().await;
    let id = w.id();
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let r = cache.register_reader(id).unwrap();
            tokio::spawn(registered_reader(cache.clone(), r, seed))
        })
        .collect();
    let lease = cache.lease(id).unwrap();
    let stray = tokio::spawn(straggler(cache.clone(), id, seed));

    w.add(1, headers(seed)).await.unwrap();
    for n in 2..SLOTS + 2 {
        assert_eq!(w.append(body(seed, n)).await.unwrap(), n);
        if n % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    w.end().await.unwrap();
    drop(w);

    let want = expected_digest(seed);
    for r in readers {
        assert_eq!(
            r.await.unwrap(),
            want,
            "stream {seed}: reader digest differs"
        );
    }
    let (ok, evicted) = stray.await.unwrap();
    assert!(ok + evicted > 0);
    drop(lease);
}

#[test]
fn many_streams_many_readers_ring_wraps_every_byte_checked() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    let cache = ChunkCache::new(CacheConfig::new(STREAMS / 2, SLOT_SIZE, RING)).unwrap();
    rt.block_on(async {
        // Twice as many streams as rings: rings are reused across generations
        // while other streams are still running.
        let tasks: Vec<_> = (0..STREAMS * ROUNDS)
            .map(|seed| tokio::spawn(one_stream(cache.clone(), seed as u64)))
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert_eq!(cache.open_streams(), 0);
    assert_eq!(cache.bytes_held(), 0);
}

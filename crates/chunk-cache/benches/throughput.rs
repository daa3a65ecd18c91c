//! Cache throughput, each figure beside a memcpy of the same bytes measured in
//! the same run (the machines are shared and noisy: read the ratios).
//!
//! * `slot_size/{cache,memcpy}/N`: one stream, 512 MiB through append + a
//!   registered reader, slot sizes 16 KiB..2 MiB (seed: ~1.4 GB/s).
//! * `multi_stream/{cache,memcpy}`: 8 streams, 1 writer + 2 readers each
//!   (seed: 1.9 GB/s write, 4.0 GB/s read). Throughput counts bytes written;
//!   bytes read are twice that.
//! * `many_readers/{cache,clone}`: 1 writer + 1000 readers, read ops/s
//!   (seed: 22.1M ops/s on a many-core laptop).
//! * `stream_cycle/{fresh_ring,after_large}`: one small stream's whole life
//!   (open, head, 1 KiB, end, release) on a ring never used for more, and on a
//!   ring a 16,384-slot stream once filled; the two should cost the same.
//!
//! `cargo xtask bench cache`, or `cargo bench -p chunk-cache`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chunk_cache::{CacheConfig, ChunkCache, SlotKind, StreamReader, StreamWriter};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime")
}

/// What every write costs at minimum: copying network bytes into an owned buffer.
fn copy_slots(src: &[u8], total: usize, slot: usize) -> usize {
    let mut done = 0;
    while done < total {
        let n = slot.min(total - done);
        let b = Bytes::copy_from_slice(&src[..n]);
        done += black_box(b).len();
    }
    done
}

async fn write_stream(mut w: StreamWriter, src: Bytes, total: usize, slot: usize) {
    w.add(1, Bytes::from_static(b"headers"))
        .await
        .expect("headers");
    let mut done = 0;
    while done < total {
        let n = slot.min(total - done);
        w.append(Bytes::copy_from_slice(&src[..n]))
            .await
            .expect("append");
        done += n;
    }
    w.end().await.expect("end");
}

async fn drain(mut r: StreamReader) -> (u64, u64) {
    let (mut bytes, mut ops) = (0u64, 0u64);
    loop {
        let slot = r.next().await.expect("read");
        ops += 1;
        match slot.kind {
            SlotKind::End => return (bytes, ops),
            SlotKind::Body => bytes += slot.bytes.len() as u64,
            SlotKind::Headers => {}
        }
    }
}

fn slot_size(c: &mut Criterion) {
    const TOTAL: usize = 512 * MIB;
    let rt = runtime();
    let src = Bytes::from(vec![0x5au8; 2 * MIB]);
    let mut group = c.benchmark_group("slot_size");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Bytes(TOTAL as u64));
    for kib in [16, 32, 64, 100, 128, 256, 512, 768, 1024, 2048] {
        let slot = kib * KIB;
        let cache = ChunkCache::new(CacheConfig::new(1, slot, 16384)).expect("config");
        group.bench_with_input(BenchmarkId::new("cache", kib), &slot, |b, &slot| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let w = cache.open().await;
                        let r = cache.register_reader(w.id()).expect("reader");
                        let reader = tokio::spawn(drain(r));
                        write_stream(w, src.clone(), TOTAL, slot).await;
                        let (bytes, _) = reader.await.expect("reader task");
                        assert_eq!(bytes, TOTAL as u64);
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_with_input(BenchmarkId::new("memcpy", kib), &slot, |b, &slot| {
            b.iter(|| copy_slots(&src, TOTAL, slot))
        });
    }
    group.finish();
}

fn multi_stream(c: &mut Criterion) {
    const STREAMS: usize = 8;
    const PER_STREAM: usize = 64 * MIB;
    const SLOT: usize = 64 * KIB;
    let rt = runtime();
    let src = Bytes::from(vec![0x5au8; SLOT]);
    let cache = ChunkCache::new(CacheConfig::new(STREAMS, SLOT, 16384)).expect("config");
    let mut group = c.benchmark_group("multi_stream");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Bytes((STREAMS * PER_STREAM) as u64));
    group.bench_function("cache", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut tasks = Vec::new();
                    for _ in 0..STREAMS {
                        let w = cache.open().await;
                        let readers: Vec<_> = (0..2)
                            .map(|_| cache.register_reader(w.id()).expect("reader"))
                            .map(|r| tokio::spawn(drain(r)))
                            .collect();
                        tasks.push(tokio::spawn(write_stream(w, src.clone(), PER_STREAM, SLOT)));
                        for r in readers {
                            tasks.push(tokio::spawn(async move {
                                let (bytes, _) = r.await.expect("reader task");
                                assert_eq!(bytes, PER_STREAM as u64);
                            }));
                        }
                    }
                    for t in tasks {
                        t.await.expect("task");
                    }
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("memcpy", |b| {
        b.iter(|| copy_slots(&src, STREAMS * PER_STREAM, SLOT))
    });
    group.finish();
}

fn many_readers(c: &mut Criterion) {
    const READERS: usize = 1000;
    const SLOTS: usize = 1000;
    const SLOT: usize = KIB;
    let rt = runtime();
    let src = Bytes::from(vec![0x5au8; SLOT]);
    let cache = ChunkCache::new(CacheConfig::new(1, SLOT, SLOTS + 2)).expect("config");
    // Each reader reads headers + SLOTS bodies + end.
    let reads = (READERS * (SLOTS + 2)) as u64;
    let mut group = c.benchmark_group("many_readers");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(reads));
    group.bench_function("cache", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let w = cache.open().await;
                    let readers: Vec<_> = (0..READERS)
                        .map(|_| cache.register_reader(w.id()).expect("reader"))
                        .map(|r| tokio::spawn(drain(r)))
                        .collect();
                    write_stream(w, src.clone(), SLOTS * SLOT, SLOT).await;
                    for r in readers {
                        let (_, ops) = r.await.expect("reader task");
                        assert_eq!(ops, (SLOTS + 2) as u64);
                    }
                }
                start.elapsed()
            })
        })
    });
    // Baseline for a read: what it fundamentally is, a `Bytes` clone, plus
    // a memcpy of the same bytes for scale.
    let slots: Vec<Bytes> = (0..SLOTS).map(|_| src.clone()).collect();
    group.throughput(Throughput::Elements((READERS * SLOTS) as u64));
    group.bench_function("bytes_clone", |b| {
        b.iter(|| {
            let mut n = 0;
            for _ in 0..READERS {
                for s in &slots {
                    n += black_box(s.clone()).len();
                }
            }
            n
        })
    });
    group.throughput(Throughput::Bytes((READERS * SLOTS * SLOT) as u64));
    group.bench_function("memcpy", |b| {
        b.iter(|| copy_slots(&src, READERS * SLOTS * SLOT, SLOT))
    });
    group.finish();
}

fn stream_cycle(c: &mut Criterion) {
    const SLOTS: usize = 16 * KIB;
    let head = Bytes::from_static(b"head");
    let body = Bytes::from(vec![7u8; KIB]);
    let cycle = |cache: &ChunkCache| {
        let mut w = cache.try_open().expect("a free stream");
        w.try_append(head.clone()).expect("head");
        w.try_append(body.clone()).expect("body");
        black_box(w.try_end().expect("end"));
    };
    let fresh = ChunkCache::new(CacheConfig::new(1, 64 * KIB, SLOTS)).expect("cache");
    let used = ChunkCache::new(CacheConfig::new(1, 64 * KIB, SLOTS)).expect("cache");
    {
        // Every ring position allocated and written once.
        let mut w = used.try_open().expect("a free stream");
        for _ in 0..SLOTS {
            w.try_append(body.clone())
                .expect("no reader, no backpressure");
        }
    }
    let mut group = c.benchmark_group("stream_cycle");
    group.sample_size(20).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));
    group.bench_function("fresh_ring", |b| b.iter(|| cycle(&fresh)));
    group.bench_function("after_large", |b| b.iter(|| cycle(&used)));
    group.finish();
}

criterion_group!(benches, slot_size, multi_stream, many_readers, stream_cycle);
criterion_main!(benches);

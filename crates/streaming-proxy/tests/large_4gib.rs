//! A 4 GiB object through the proxy with peak memory bounded by the configuration.
//! Its own test binary, so the peak memory it measures (the process high-water mark)
//! is not inflated by other tests running in the same process.
#![allow(clippy::unwrap_used)]

mod support;

use support::*;

const MIB: u64 = 1024 * 1024;

/// A cold miss only: with L2 off and an 8 MiB L1 a hit would be another 4 GiB
/// from the origin, doubling the runtime for no new memory path (the 1 GiB test
/// in `large.rs` covers miss then hit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_4gib_object_miss_in_memory_bounded_by_config() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let slice = 4 * MIB;
    let mut cfg = config(&origin, dir.path(), slice);
    cfg.l1_bytes = 8 * MIB;
    // No disk writes: the figure is about streaming memory, and 4 GiB of disk
    // traffic would dominate the runtime.
    cfg.l2_bytes = 0;
    // The bound the configuration implies: all of L1, plus the slices alive at once
    // for one sequential miss (the fill assembling one, the response reading the
    // previous one), plus a fixed allowance for runtime, sockets and the buffers of
    // the in-process origin and client. Nothing in it grows with the object.
    let slices_alive = 2;
    let allowance = 96 * MIB;
    let bound = cfg.l1_bytes + slice * slices_alive + allowance;
    let proxy = Proxy::start(cfg).await;
    let c = client();
    let len = 4096 * MIB;
    origin.add("/4gib", Spec::new(len, 44));
    // Hashing the expected bytes concurrently with the transfer keeps the runtime
    // near one pass over the object.
    let want = tokio::task::spawn_blocking(move || object_sha(44, len));
    let before = peak_rss_kib();
    let miss = get_hashed(&c, &proxy, "/4gib").await;
    let grown = (peak_rss_kib().saturating_sub(before)) * 1024;
    assert_eq!(miss, (200, "MISS".into(), want.await.unwrap(), len, false));
    assert_eq!(
        origin.requests("/4gib").len(),
        1024,
        "one request per slice"
    );
    eprintln!("peak RSS grew by {} MiB for a 4 GiB object", grown / MIB);
    assert!(
        grown < bound,
        "peak memory grew by {grown} bytes, bound {bound}, for a {len}-byte object"
    );
    proxy.shutdown().await;
}

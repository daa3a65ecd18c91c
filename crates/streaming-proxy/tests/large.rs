//! A whole 1 GiB object through the proxy. Its own test binary, so the peak
//! memory it measures is not inflated by other tests running in the same process.
#![allow(clippy::unwrap_used)]

mod support;

use support::*;

const MIB: u64 = 1024 * 1024;

/// The costliest test (a GiB generated, hashed twice and written to disk: about
/// 20 s on a shared 2-core machine), kept because flat memory is the point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_1gib_object_miss_then_hit_in_flat_memory() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&origin, dir.path(), 4 * MIB);
    // A small L1 keeps the figure about the streaming path, not about the allocator
    // churning through a large LRU of 4 MiB pieces.
    cfg.l1_bytes = 8 * MIB;
    let proxy = Proxy::start(cfg).await;
    let c = client();
    let len = 1024 * MIB;
    origin.add("/gib", Spec::new(len, 24));
    let want = object_sha(24, len);
    let before = peak_rss_kib();
    let miss = get_hashed(&c, &proxy, "/gib").await;
    assert_eq!(miss, (200, "MISS".into(), want.clone(), len, false));
    proxy.idle().await; // the last piece is stored just after its bytes went out
    let hit = get_hashed(&c, &proxy, "/gib").await;
    assert_eq!(hit, (200, "HIT".into(), want, len, false));
    assert_eq!(
        origin.requests("/gib").len(),
        256,
        "one request per 4 MiB slice"
    );
    // Measured about 55 MiB (L1, one slice per fill and response, rings, buffers
    // of origin and client); a whole-object buffer would be 1 GiB.
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 160 * 1024,
        "peak memory grew by {grown} KiB for a 1 GiB object"
    );
    proxy.shutdown().await;
}

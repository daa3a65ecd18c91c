//! Bounded bookkeeping (issue 12): long keys refused, metadata evicted like data.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use streaming_proxy::{DEFAULT_MAX_KEY, Metrics, ObjectMeta, ProxyConfig, TieredCache};
use support::*;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_60_kib_key_gets_414_and_one_at_the_limit_is_served() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let long = format!("/{}", "k".repeat(60 * 1024));
    origin.add(&long, Spec::new(1000, 1));
    let got = get(&c, &proxy, &long).await;
    assert_eq!((got.status, got.x_cache()), (414, "BYPASS"));
    assert!(origin.requests(&long).is_empty(), "never forwarded");
    assert!(proxy.proxy.cache().meta(&long).is_none());
    // Exactly at the default limit: served and stored; one byte more: refused.
    let at_limit = format!("/{}", "a".repeat(DEFAULT_MAX_KEY - 1));
    origin.add(&at_limit, Spec::new(1000, 2));
    let got = get(&c, &proxy, &at_limit).await;
    assert_eq!((got.status, got.x_cache()), (200, "MISS"));
    assert_eq!(sha(&got.body), object_sha(2, 1000));
    let over = format!("{at_limit}?");
    assert_eq!(get(&c, &proxy, &over).await.status, 414);
    proxy.shutdown().await;
}

fn meta(i: usize) -> ObjectMeta {
    ObjectMeta {
        key: format!("/object/{i}"),
        status: 200,
        headers: (0..8)
            .map(|h| (format!("x-header-{h}"), format!("value {i} {h:>30}")))
            .collect(),
        total: Some(64),
        slice_size: 1024 * 1024,
        fresh_until: u64::MAX / 2,
        cacheable: true,
        stored_at: 1,
        vary: Vec::new(),
        parsed: Default::default(),
    }
}

/// With the default L1 budget and L2 off, metadata of more objects than fit is
/// evicted (oldest first) and the bytes charged never exceed the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_l1_budget_bounds_the_metadata_of_many_objects() {
    let budget = ProxyConfig::default().l1_bytes;
    let dir = tempfile::tempdir().unwrap();
    let cache = TieredCache::open(dir.path(), budget, 0, Arc::new(Metrics::default())).unwrap();
    // Each meta is charged over 1 KiB: 300,000 of them are more than 256 MiB.
    let n = 300_000;
    for i in 0..n {
        cache.put_meta(meta(i)).await;
    }
    let (held, objects) = (cache.bytes_held().0, cache.objects_held().0);
    assert!(held <= budget, "{held} > {budget}");
    assert!(held > budget - MIB, "the budget is used: {held}");
    assert!(objects < n, "{objects} objects held");
    assert!(cache.meta(&meta(0).key).is_none(), "the oldest went");
    assert!(cache.meta(&meta(n - 1).key).is_some(), "the newest stays");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "L2 off: nothing on disk"
    );
}

/// 100,000 distinct URLs through the binary with L2 off: once L1 evicts, the proxy's
/// resident memory stops growing (metadata is evicted with the pieces).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_stays_flat_over_100k_distinct_urls_with_l2_off() {
    const URLS: usize = 100_000;
    const TASKS: usize = 8;
    let origin = Origin::start().await;
    for i in 0..URLS {
        origin.add(&format!("/u/{i}"), Spec::new(64, (i % 251) as u8));
    }
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().display().to_string();
    let proxy = Binary::start(&[
        "--upstream",
        &origin.url(),
        "--cache-dir",
        &cache_dir,
        "--l2-bytes",
        "0",
        "--l1-bytes",
        "8388608",
        "--metrics",
        "127.0.0.1:0",
    ])
    .await;
    let proxy = Arc::new(proxy);
    let fetch = |from: usize, to: usize| {
        let proxy = proxy.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for t in 0..TASKS {
                let (proxy, c) = (proxy.clone(), client());
                tasks.spawn(async move {
                    for i in (from + t..to).step_by(TASKS) {
                        let got = request(&c, "GET", proxy.url(&format!("/u/{i}")), None).await;
                        assert_eq!((got.status, got.x_cache()), (200, "MISS"), "/u/{i}");
                        assert_eq!(sha(&got.body), object_sha((i % 251) as u8, 64));
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        }
    };
    // 8 MiB hold some 10,000 of these objects: by 30,000 eviction has long started.
    fetch(0, 30_000).await;
    let early = proxy.rss_kib();
    let metrics_url = format!("http://{}/metrics", proxy.metrics.unwrap());
    let text = String::from_utf8(
        request(&client(), "GET", metrics_url.clone(), None)
            .await
            .body,
    )
    .unwrap();
    assert!(
        !text.contains("streaming_proxy_l1_evictions_total 0"),
        "eviction started: {text}"
    );
    fetch(30_000, URLS).await;
    let late = proxy.rss_kib();
    eprintln!("proxy RSS: {early} KiB after 30,000 URLs, {late} KiB after {URLS}");
    // 70,000 more objects' metadata kept would be tens of MiB.
    assert!(
        late < early + 6 * 1024,
        "RSS grew from {early} KiB to {late} KiB"
    );
}
